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
        match &self.inner {
            None => Poll::Pending,
            Some(Inner::Tcp(l)) => match l.poll_accept(cx) {
                Poll::Ready(Ok((s, _))) => {
                    if let Err(e) = s.set_nodelay(true) {
                        tracing::warn!("cannot set TCP_NODELAY on milter connection: {e}");
                    }
                    Poll::Ready(Ok(indymilter::EitherStream::Tcp(s)))
                }
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            },
            Some(Inner::Unix(l, _)) => l
                .poll_accept(cx)
                .map_ok(|(s, _)| indymilter::EitherStream::Unix(s)),
        }
    }
}
