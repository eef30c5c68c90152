//! Milter socket specifications, in both spellings admins know from
//! OpenDKIM: `inet:HOST:PORT`, `inet:PORT@HOST`, `inet6:[HOST]:PORT` /
//! `inet6:PORT@HOST`, `unix:PATH` (also `local:PATH`).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::io;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

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

/// Removes a leftover unix socket file before binding, but only if it
/// really is a socket (a typo in the config must never delete a regular
/// file) and nobody answers on it (a second instance must not steal a
/// running daemon's socket).
pub fn remove_stale_socket(path: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(md) if md.file_type().is_socket() => {
            match std::os::unix::net::UnixStream::connect(path) {
                Ok(_) => Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!(
                        "{} is in use: another process listens on it (a running sra-milter?)",
                        path.display()
                    ),
                )),
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    std::fs::remove_file(path)
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(io::Error::new(
                    e.kind(),
                    format!("{}: cannot tell whether it is in use: {e}", path.display()),
                )),
            }
        }
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} exists and is not a socket", path.display()),
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Removes the socket this process bound, as it stops listening (only if
/// it is still a socket).
pub fn remove_own_socket(path: &Path) {
    if std::fs::symlink_metadata(path).is_ok_and(|md| md.file_type().is_socket()) {
        let _ = std::fs::remove_file(path);
    }
}

/// The TCP listeners of one daemon (the milter's when on TCP, the console's
/// and the events', each named by its key) must not share a port: the
/// second bind would fail at start, after the milter socket was opened.
/// Two addresses collide when their ports are equal and their IPs are
/// equal or either is the unspecified one (`0.0.0.0`, `::`). Host names
/// are resolved only at bind time and are not compared.
pub fn distinct_listeners(listeners: &[(&str, &str)]) -> Result<(), String> {
    let addrs: Vec<(&str, std::net::SocketAddr)> = listeners
        .iter()
        .filter_map(|(key, a)| a.parse().ok().map(|a| (*key, a)))
        .collect();
    for (i, (key_a, a)) in addrs.iter().enumerate() {
        for (key_b, b) in &addrs[i + 1..] {
            let overlap = a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified();
            if a.port() == b.port() && overlap {
                return Err(format!(
                    "{key_a} {a} and {key_b} {b} are the same port: give each listener its own"
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listeners_on_one_port_are_refused() {
        let same = distinct_listeners(&[
            ("socket", "127.0.0.1:8894"),
            ("admin.listen", "127.0.0.1:8894"),
        ])
        .unwrap_err();
        assert!(
            same.contains("socket") && same.contains("admin.listen"),
            "{same}"
        );
        assert!(distinct_listeners(&[
            ("admin.listen", "0.0.0.0:9000"),
            ("events.listen", "127.0.0.1:9000"),
        ])
        .is_err());
        assert!(
            distinct_listeners(&[("socket", "[::]:25"), ("admin.listen", "[::1]:25")]).is_err()
        );
        distinct_listeners(&[
            ("socket", "127.0.0.1:8894"),
            ("admin.listen", "127.0.0.1:8895"),
            ("events.listen", "10.0.0.1:8894"),
            ("socket", "localhost:8895"),
        ])
        .unwrap();
    }

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
        let e = remove_stale_socket(&sock).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse, "{e}");
        assert!(sock.exists(), "a socket somebody listens on is kept");
        drop(l);
        assert!(sock.exists());
        remove_stale_socket(&sock).unwrap();
        assert!(!sock.exists());
        remove_stale_socket(&sock).unwrap();
    }
}
