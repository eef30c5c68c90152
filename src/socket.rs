//! Milter socket specifications and the listener the daemon accepts on.
//!
//! Both spellings admins know from OpenDKIM are accepted: `inet:HOST:PORT`,
//! `inet:PORT@HOST`, `inet6:[HOST]:PORT` / `inet6:PORT@HOST`, `unix:PATH`
//! (also `local:PATH`).
//!
//! indymilter does not set `TCP_NODELAY`; over TCP, Nagle's algorithm and the
//! MTA's delayed ACKs then stall each small milter reply by ~40 ms, twice per
//! message. [`MilterListener`] sets it on every accepted TCP stream. It also
//! stops accepting (and closes the listening socket) as soon as shutdown
//! begins, while open sessions are allowed to finish.

use indymilter::Listener;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::str::FromStr;
use std::task::{Context, Poll};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SocketSpec {
    /// `host:port` as given (resolved at bind time).
    Inet(String),
    Unix(PathBuf),
}

impl FromStr for SocketSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!("invalid socket {s:?} (use inet:HOST:PORT, inet:PORT@HOST, inet6:[HOST]:PORT or unix:PATH)")
        };
        let (proto, rest) = s.split_once(':').ok_or_else(bad)?;
        match proto {
            "unix" | "local" => {
                if rest.is_empty() || !rest.starts_with('/') {
                    return Err(format!("unix socket path must be absolute in {s:?}"));
                }
                Ok(SocketSpec::Unix(PathBuf::from(rest)))
            }
            "inet" | "inet6" => {
                let (host, port) = if let Some((port, host)) = rest.split_once('@') {
                    (host.to_string(), port)
                } else if let Some(stripped) = rest.strip_prefix('[') {
                    let (h, p) = stripped.split_once("]:").ok_or_else(bad)?;
                    (h.to_string(), p)
                } else {
                    let (h, p) = rest.rsplit_once(':').ok_or_else(bad)?;
                    (h.to_string(), p)
                };
                let port: u16 = port.parse().map_err(|_| bad())?;
                let host = host.trim_start_matches('[').trim_end_matches(']');
                if host.is_empty() {
                    return Err(bad());
                }
                let addr = if host.contains(':') {
                    format!("[{host}]:{port}")
                } else {
                    format!("{host}:{port}")
                };
                Ok(SocketSpec::Inet(addr))
            }
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for SocketSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SocketSpec::Inet(a) if a.starts_with('[') => write!(f, "inet6:{a}"),
            SocketSpec::Inet(a) => write!(f, "inet:{a}"),
            SocketSpec::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

impl<'de> Deserialize<'de> for SocketSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl Serialize for SocketSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Removes a leftover unix socket file, but only if it really is a socket:
/// a typo in the config must never delete a regular file.
pub fn remove_stale_socket(path: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(md) if md.file_type().is_socket() => std::fs::remove_file(path),
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} exists and is not a socket", path.display()),
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

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
            let _ = remove_stale_socket(&path);
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
                    let _ = remove_stale_socket(&path);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_specs_in_both_spellings() {
        let a: SocketSpec = "inet:127.0.0.1:8894".parse().unwrap();
        let b: SocketSpec = "inet:8894@127.0.0.1".parse().unwrap();
        assert_eq!(a, b);
        assert_eq!(a, SocketSpec::Inet("127.0.0.1:8894".into()));
        let c: SocketSpec = "inet6:[::1]:8894".parse().unwrap();
        let d: SocketSpec = "inet6:8894@::1".parse().unwrap();
        assert_eq!(c, d);
        assert_eq!(c.to_string(), "inet6:[::1]:8894");
        assert_eq!(
            "unix:/run/sra-milter/sra-milter.sock"
                .parse::<SocketSpec>()
                .unwrap(),
            SocketSpec::Unix("/run/sra-milter/sra-milter.sock".into())
        );
        assert!("unix:relative".parse::<SocketSpec>().is_err());
        assert!("tcp:1.2.3.4:5".parse::<SocketSpec>().is_err());
        assert!("inet:host:notaport".parse::<SocketSpec>().is_err());
    }

    #[test]
    fn stale_socket_removed_but_regular_file_kept() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-socket");
        std::fs::write(&file, b"precious").unwrap();
        assert!(remove_stale_socket(&file).is_err());
        assert_eq!(std::fs::read(&file).unwrap(), b"precious");

        let sock = dir.path().join("s.sock");
        let l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        drop(l);
        assert!(sock.exists());
        remove_stale_socket(&sock).unwrap();
        assert!(!sock.exists());
        remove_stale_socket(&sock).unwrap();
    }
}
