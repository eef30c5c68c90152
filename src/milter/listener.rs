//! The milter's listening socket: TCP with `TCP_NODELAY`, or a unix socket.
//!
//! indymilter does not set `TCP_NODELAY`; over TCP, Nagle's algorithm and the
//! MTA's delayed ACKs then stall each small milter reply by ~40 ms, twice per
//! message. [`MilterListener`] sets it on every accepted TCP stream. It also
//! stops accepting (and closes the listening socket) as soon as shutdown
//! begins, while open sessions are allowed to finish.

use crate::config::{remove_own_socket, remove_stale_socket, SocketSpec};
use indymilter::Listener;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

enum Inner {
    Tcp(TcpListener),
    Unix(UnixListener, PathBuf),
}

/// The daemon's listener: TCP with `TCP_NODELAY`, or a unix socket.
pub struct MilterListener {
    inner: Option<Inner>,
    stop: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    /// After an accept error (no file descriptors left), when to try again.
    backoff: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Accepting has been failing since the last success.
    starved: bool,
}

/// How long accepting pauses after a transient accept error.
const ACCEPT_BACKOFF: std::time::Duration = std::time::Duration::from_millis(100);

/// Accept errors that say nothing about the listening socket itself but
/// that the process ran out of something: file descriptors (EMFILE,
/// ENFILE), buffers or memory (ENOBUFS, ENOMEM).
fn is_exhaustion(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(23 | 24 | 105 | 12))
}

/// A client that left before it was accepted.
fn is_peer_gone(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    )
}

impl MilterListener {
    /// Binds the socket; a unix socket gets permissions `mode`.
    pub async fn bind(spec: &SocketSpec, mode: u32) -> io::Result<MilterListener> {
        let inner = match spec {
            SocketSpec::Inet(addr) => Inner::Tcp(TcpListener::bind(addr.as_str()).await?),
            SocketSpec::Unix(path) => {
                remove_stale_socket(path)?;
                let l = UnixListener::bind(path)?;
                // Postfix runs as another user: `socket_mode` and the
                // directory's permissions decide who may connect.
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
                Inner::Unix(l, path.clone())
            }
        };
        Ok(MilterListener {
            inner: Some(inner),
            stop: None,
            backoff: None,
            starved: false,
        })
    }

    /// Once `stop` completes, the listening socket is closed and no further
    /// connection is accepted (the MTA then applies its
    /// `milter_default_action`), while accepted sessions go on.
    pub fn stop_accepting_on(mut self, stop: impl Future<Output = ()> + Send + 'static) -> Self {
        self.stop = Some(Box::pin(stop));
        self
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        match &self.inner {
            Some(Inner::Tcp(l)) => l.local_addr().ok(),
            _ => None,
        }
    }
}

impl Drop for MilterListener {
    fn drop(&mut self) {
        if let Some(Inner::Unix(_, path)) = self.inner.take() {
            remove_own_socket(&path);
        }
    }
}

pub type Stream = indymilter::EitherStream<TcpStream, UnixStream>;

impl Listener for MilterListener {
    type Io = Stream;

    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Self::Io>> {
        if let Some(stop) = self.stop.as_mut() {
            if stop.as_mut().poll(cx).is_ready() {
                self.stop = None;
                if let Some(Inner::Unix(_, path)) = self.inner.take() {
                    remove_own_socket(&path);
                }
                self.inner = None;
            }
        }
        if let Some(b) = self.backoff.as_mut() {
            if b.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.backoff = None;
        }
        let accepted = match &self.inner {
            None => return Poll::Pending,
            Some(Inner::Tcp(l)) => l.poll_accept(cx).map_ok(|(s, _)| {
                if let Err(e) = s.set_nodelay(true) {
                    tracing::warn!("cannot set TCP_NODELAY on milter connection: {e}");
                }
                indymilter::EitherStream::Tcp(s)
            }),
            Some(Inner::Unix(l, _)) => l
                .poll_accept(cx)
                .map_ok(|(s, _)| indymilter::EitherStream::Unix(s)),
        };
        match accepted {
            Poll::Ready(Err(e)) if is_peer_gone(&e) => {
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            Poll::Ready(Err(e)) if is_exhaustion(&e) => {
                // Out of file descriptors (or the peer gave up): the
                // sessions already open go on; try again shortly instead of
                // ending the daemon. Logged once per episode.
                if !self.starved {
                    tracing::error!(
                        "milter socket: cannot accept: {e}; retrying every {ACCEPT_BACKOFF:?}"
                    );
                    self.starved = true;
                }
                let mut sleep = Box::pin(tokio::time::sleep(ACCEPT_BACKOFF));
                let _ = sleep.as_mut().poll(cx);
                self.backoff = Some(sleep);
                Poll::Pending
            }
            Poll::Ready(Ok(s)) => {
                if self.starved {
                    tracing::info!("milter socket: accepting again");
                    self.starved = false;
                }
                Poll::Ready(Ok(s))
            }
            other => other,
        }
    }
}
