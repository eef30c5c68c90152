//! The milter's listening socket: TCP with `TCP_NODELAY`, or a unix socket.
//!
//! - indymilter does not set `TCP_NODELAY`; over TCP, Nagle's algorithm and
//!   the MTA's delayed ACKs then stall each small milter reply by ~40 ms,
//!   twice per message. Every accepted TCP stream gets it here.
//! - A session starts when the client speaks: the MTA opens every milter
//!   connection by sending option negotiation at once. An acceptor task
//!   takes each connection off the socket immediately and hands it to the
//!   milter (and one of `max_connections`) only once it has sent something.
//!   A connection that stays silent holds no session slot: it is closed
//!   after `milter_timeout`, at most [`SILENT_TIMEOUT`] (Postfix's
//!   `milter_connect_timeout`), and
//!   past [`MAX_SILENT`] of them the oldest is closed first. So idle clients
//!   cannot lock the MTA out, however many they open, and the kernel's
//!   backlog never fills with them ahead of the MTA.
//! - When every session slot is taken and a connection that spoke waits
//!   for one, the milter is under stress (Postfix's term): sessions idle
//!   for [`STRESS_IDLE`] (Postfix's `smtpd_timeout` under stress) are
//!   closed, longest idle first, one per waiting connection. The MTA applies
//!   `milter_default_action` to a closed session's mail.
//! - Running out of file descriptors pauses accepting (logged once per
//!   episode) instead of ending the daemon.
//! - Once shutdown begins the listening socket is closed, while open
//!   sessions are allowed to finish.

use super::outbox::Outbox;
use crate::config::{remove_own_socket, remove_stale_socket, SocketSpec};
use indymilter::Listener;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll, Waker};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// How long a connection may stay silent before it is closed, at most
/// (`milter_timeout` when shorter).
pub const SILENT_TIMEOUT: Duration = Duration::from_secs(30);
/// Silent connections kept at once; past this, the oldest is closed.
pub const MAX_SILENT: usize = 1024;
/// Under stress, a session idle this long is closed to make room.
pub const STRESS_IDLE: Duration = Duration::from_secs(10);
/// How often the acceptor looks for stress.
const STRESS_CHECK: Duration = Duration::from_secs(1);
/// Connections that spoke and wait for a session slot, in the channel.
const READY_QUEUE: usize = 64;
/// How long accepting pauses after a transient accept error.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

enum Inner {
    Tcp(TcpListener),
    Unix(UnixListener),
}

type Stop = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The daemon's listener: TCP with `TCP_NODELAY`, or a unix socket.
pub struct MilterListener {
    /// Until the first accept: the socket and the shutdown signal.
    pending: Option<(Inner, Option<Stop>)>,
    silent_timeout: Duration,
    /// Session slots (indymilter's `max_connections`).
    slots: usize,
    acceptor: Option<JoinHandle<()>>,
    ready: Option<mpsc::Receiver<io::Result<Session>>>,
    local: Option<SocketAddr>,
    unix_path: Option<PathBuf>,
}

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
        let (inner, local, unix_path) = match spec {
            SocketSpec::Inet(addr) => {
                let l = TcpListener::bind(addr.as_str()).await?;
                let local = l.local_addr().ok();
                (Inner::Tcp(l), local, None)
            }
            SocketSpec::Unix(path) => {
                remove_stale_socket(path)?;
                let l = UnixListener::bind(path)?;
                // Postfix runs as another user: `socket_mode` and the
                // directory's permissions decide who may connect.
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
                (Inner::Unix(l), None, Some(path.clone()))
            }
        };
        Ok(MilterListener {
            pending: Some((inner, None)),
            silent_timeout: SILENT_TIMEOUT,
            slots: usize::MAX,
            acceptor: None,
            ready: None,
            local,
            unix_path,
        })
    }

    /// Once `stop` completes, the listening socket is closed and no further
    /// connection is accepted (the MTA then applies its
    /// `milter_default_action`), while accepted sessions go on.
    pub fn stop_accepting_on(mut self, stop: impl Future<Output = ()> + Send + 'static) -> Self {
        if let Some((_, s)) = self.pending.as_mut() {
            *s = Some(Box::pin(stop));
        }
        self
    }

    /// Closes connections that send nothing for `timeout` (at most
    /// [`SILENT_TIMEOUT`]).
    pub fn close_silent_after(mut self, timeout: Duration) -> Self {
        self.silent_timeout = timeout.min(SILENT_TIMEOUT);
        self
    }

    /// The milter's session slots (`max_connections`): when all are taken
    /// and a connection waits, idle sessions are closed to make room.
    pub fn with_slots(mut self, slots: usize) -> Self {
        self.slots = slots;
        self
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local
    }
}

impl Drop for MilterListener {
    fn drop(&mut self) {
        if let Some(a) = self.acceptor.take() {
            a.abort();
        }
        if let Some(path) = self.unix_path.take() {
            remove_own_socket(&path);
        }
    }
}

pub type Stream = indymilter::EitherStream<TcpStream, UnixStream>;

impl Listener for MilterListener {
    type Io = Session;

    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Self::Io>> {
        if let Some((inner, stop)) = self.pending.take() {
            // Room for the connections that spoke while every session slot
            // is busy: beyond it they wait in the acceptor.
            let (tx, rx) = mpsc::channel(READY_QUEUE);
            let stop = stop.unwrap_or_else(|| Box::pin(std::future::pending()));
            self.acceptor = Some(tokio::spawn(accept_loop(
                inner,
                stop,
                tx,
                self.unix_path.clone(),
                self.silent_timeout,
                self.slots,
            )));
            self.ready = Some(rx);
        }
        match self.ready.as_mut().map(|r| r.poll_recv(cx)) {
            Some(Poll::Ready(Some(r))) => Poll::Ready(r),
            // Stopped: no connection comes any more.
            _ => Poll::Pending,
        }
    }
}

/// Connections accepted that have not spoken yet, oldest first.
#[derive(Default)]
struct Silent {
    next: u64,
    waiting: VecDeque<(u64, oneshot::Sender<()>)>,
    /// The pool has overflowed since it last had room (logged once).
    overflowing: bool,
}

impl Silent {
    /// Registers a connection; closes the oldest one past [`MAX_SILENT`].
    fn add(&mut self) -> (u64, oneshot::Receiver<()>) {
        let (tx, rx) = oneshot::channel();
        let id = self.next;
        self.next += 1;
        self.waiting.push_back((id, tx));
        if self.waiting.len() > MAX_SILENT {
            if !self.overflowing {
                tracing::warn!(
                    "milter socket: {MAX_SILENT} connections that sent nothing are open; closing the oldest"
                );
                self.overflowing = true;
            }
            if let Some((_, close)) = self.waiting.pop_front() {
                let _ = close.send(());
            }
        } else if self.waiting.len() < MAX_SILENT / 2 {
            self.overflowing = false;
        }
        (id, rx)
    }

    fn remove(&mut self, id: u64) {
        if let Some(i) = self.waiting.iter().position(|(n, _)| *n == id) {
            self.waiting.remove(i);
        }
    }
}

async fn accept_one(inner: &Inner) -> io::Result<Stream> {
    match inner {
        Inner::Tcp(l) => {
            let (s, _) = l.accept().await?;
            if let Err(e) = s.set_nodelay(true) {
                tracing::warn!("cannot set TCP_NODELAY on milter connection: {e}");
            }
            Ok(indymilter::EitherStream::Tcp(s))
        }
        Inner::Unix(l) => Ok(indymilter::EitherStream::Unix(l.accept().await?.0)),
    }
}

async fn accept_loop(
    inner: Inner,
    mut stop: Stop,
    ready: mpsc::Sender<io::Result<Session>>,
    unix_path: Option<PathBuf>,
    silent_timeout: Duration,
    slots: usize,
) {
    let silent = Arc::new(Mutex::new(Silent::default()));
    let sessions = Arc::new(Sessions::default());
    let mut starved = false;
    let mut stress = tokio::time::interval(STRESS_CHECK);
    stress.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let accepted = tokio::select! {
            a = accept_one(&inner) => a,
            _ = stress.tick() => {
                let waiting = READY_QUEUE - ready.capacity();
                if waiting > 0 && sessions.open().saturating_sub(waiting) >= slots {
                    sessions.make_room(waiting);
                }
                continue;
            }
            _ = &mut stop => break,
        };
        match accepted {
            Ok(stream) => {
                if starved {
                    tracing::info!("milter socket: accepting again");
                    starved = false;
                }
                tokio::spawn(until_it_speaks(
                    stream,
                    ready.clone(),
                    silent.clone(),
                    silent_timeout,
                    sessions.clone(),
                ));
            }
            Err(e) if is_peer_gone(&e) => {}
            Err(e) if is_exhaustion(&e) => {
                // Out of file descriptors: the sessions already open go on;
                // try again shortly instead of ending the daemon.
                if !starved {
                    tracing::error!(
                        "milter socket: cannot accept: {e}; retrying every {ACCEPT_BACKOFF:?}"
                    );
                    starved = true;
                }
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
            Err(e) => {
                // The listening socket itself failed: the milter ends.
                let _ = ready.send(Err(e)).await;
                break;
            }
        }
    }
    drop(inner);
    if let Some(path) = unix_path {
        remove_own_socket(&path);
    }
}

/// Hands `stream` to the milter once it has sent its first bytes (kept
/// for the milter to read); closes it if it stays silent or leaves.
async fn until_it_speaks(
    stream: Stream,
    ready: mpsc::Sender<io::Result<Session>>,
    silent: Arc<Mutex<Silent>>,
    timeout: Duration,
    sessions: Arc<Sessions>,
) {
    let lock = || silent.lock().unwrap_or_else(|p| p.into_inner());
    let (id, closed) = lock().add();
    let first = tokio::select! {
        first = first_bytes(&stream) => Some(first),
        _ = tokio::time::sleep(timeout) => None,
        _ = closed => None,
    };
    lock().remove(id);
    match first {
        Some(Ok(head)) if !head.is_empty() => {
            let state = sessions.add();
            let session = Session {
                head,
                pos: 0,
                stream,
                out: Outbox::default(),
                state,
                sessions,
            };
            let _ = ready.send(Ok(session)).await;
        }
        _ => tracing::debug!("milter socket: closing a connection that sent nothing"),
    }
}

/// The first bytes the client sends (none: it closed the connection).
async fn first_bytes(stream: &Stream) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; 512];
    loop {
        // Readiness may be reported without data: try, and wait again.
        let n = match stream {
            indymilter::EitherStream::Tcp(s) => {
                s.readable().await?;
                s.try_read(&mut buf)
            }
            indymilter::EitherStream::Unix(s) => {
                s.readable().await?;
                s.try_read(&mut buf)
            }
        };
        match n {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
}

/// A milter connection handed to indymilter: the bytes read while waiting
/// for the client to speak, then the stream.
pub struct Session {
    head: Vec<u8>,
    pos: usize,
    stream: Stream,
    out: Outbox,
    state: Arc<SessionState>,
    sessions: Arc<Sessions>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.sessions.remove(self.state.id);
    }
}

/// What the acceptor knows of a session: since when it is idle, and how to
/// close it.
struct SessionState {
    id: u64,
    last_read: Mutex<Instant>,
    close: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

/// The sessions handed to the milter and still open.
#[derive(Default)]
struct Sessions {
    next: AtomicU64,
    open: Mutex<HashMap<u64, Arc<SessionState>>>,
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<SessionState>>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn add(&self) -> Arc<SessionState> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let state = Arc::new(SessionState {
            id,
            last_read: Mutex::new(Instant::now()),
            close: AtomicBool::new(false),
            waker: Mutex::new(None),
        });
        self.lock().insert(id, state.clone());
        state
    }

    fn remove(&self, id: u64) {
        self.lock().remove(&id);
    }

    fn open(&self) -> usize {
        self.lock().len()
    }

    /// Closes up to `n` sessions idle for [`STRESS_IDLE`], longest idle
    /// first.
    fn make_room(&self, n: usize) {
        let mut idle: Vec<(Instant, Arc<SessionState>)> = self
            .lock()
            .values()
            .filter(|s| !s.close.load(Ordering::Relaxed))
            .map(|s| {
                (
                    *s.last_read.lock().unwrap_or_else(|p| p.into_inner()),
                    s.clone(),
                )
            })
            .filter(|(t, _)| t.elapsed() >= STRESS_IDLE)
            .collect();
        idle.sort_by_key(|(t, _)| *t);
        let closed = idle.len().min(n);
        for (_, s) in idle.into_iter().take(n) {
            s.close.store(true, Ordering::Relaxed);
            if let Some(w) = s.waker.lock().unwrap_or_else(|p| p.into_inner()).take() {
                w.wake();
            }
        }
        if closed > 0 {
            tracing::warn!(
                "milter socket: every session slot is taken and {n} connection(s) wait; closing {closed} session(s) idle for {STRESS_IDLE:?} or more"
            );
        }
    }
}

impl AsyncRead for Session {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.state.close.load(Ordering::Relaxed) {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "idle session closed to make room for a waiting one",
            )));
        }
        if self.pos < self.head.len() {
            let n = (self.head.len() - self.pos).min(buf.remaining());
            let start = self.pos;
            buf.put_slice(&self.head[start..start + n]);
            self.pos += n;
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let r = Pin::new(&mut self.stream).poll_read(cx, buf);
        match &r {
            Poll::Ready(Ok(())) if buf.filled().len() > before => {
                *self
                    .state
                    .last_read
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = Instant::now();
                if let indymilter::EitherStream::Tcp(s) = &self.stream {
                    quick_ack(s);
                }
            }
            Poll::Pending => {
                *self.state.waker.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some(cx.waker().clone());
            }
            _ => {}
        }
        r
    }
}

/// Acknowledges what was just read at once instead of after the delayed-ACK
/// timer (~40 ms on Linux). The MTA does not wait for an answer to every
/// stage (the milter's `SILENT_STAGES`), so it writes several small packets
/// in a row; its socket holds each next one until the last is acknowledged
/// (Nagle's algorithm: Postfix does not set `TCP_NODELAY` on milter
/// connections), and without this every message would wait for the timer.
/// Linux leaves quick-ACK mode on its own, so it is asked for after each
/// read; setting it also sends an acknowledgement that is due. Elsewhere
/// (and on a unix socket) there is nothing to do.
fn quick_ack(s: &TcpStream) {
    // A socket the peer already closed may refuse it; the next read says so.
    #[cfg(target_os = "linux")]
    let _ = socket2::SockRef::from(s).set_tcp_quickack(true);
    #[cfg(not(target_os = "linux"))]
    let _ = s;
}

/// Writes go through the [`Outbox`]: each packet goes out at the flush
/// after it, except the end of message's actions, which wait for the reply
/// that ends it.
impl AsyncWrite for Session {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.out.push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        ready!(this.out.poll_drain(Pin::new(&mut this.stream), cx, false))?;
        Pin::new(&mut this.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        ready!(this.out.poll_drain(Pin::new(&mut this.stream), cx, true))?;
        Pin::new(&mut this.stream).poll_shutdown(cx)
    }
}
