//! Logging: tracing-subscriber to stderr or to syslog (facility mail,
//! through `/dev/log`), as text or JSON. Per-message lines start with the
//! Postfix queue id, so they line up with `mail.log`.
//!
//! In JSON mode each message's verdict record is written as one bare JSON
//! object line (the SIEM feed, see `Shared::verdict`); in text mode a
//! one-line summary is logged.

use crate::config::{Config, LogFormat, LogTarget};
use std::io::{self, IsTerminal, Write};
use std::os::unix::net::UnixDatagram;
use std::sync::{Mutex, OnceLock};
use tracing::Level;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::prelude::*;
use tracing_subscriber::{reload, EnvFilter, Registry};

const FACILITY_MAIL: u8 = 2;

struct Sink {
    target: LogTarget,
    format: LogFormat,
    syslog: Option<Mutex<UnixDatagram>>,
}

static SINK: OnceLock<Sink> = OnceLock::new();
static FILTER: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

fn severity(level: Level) -> u8 {
    match level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

fn send_syslog(sock: &Mutex<UnixDatagram>, sev: u8, line: &str) {
    let msg = format!(
        "<{}>sra-milter[{}]: {}",
        FACILITY_MAIL * 8 + sev,
        std::process::id(),
        line.trim_end()
    );
    if let Ok(s) = sock.lock() {
        if s.send(msg.as_bytes()).is_err() {
            // syslog is gone (restarting); keep the line on stderr.
            let _ = writeln!(io::stderr(), "{}", line.trim_end());
        }
    }
}

/// One syslog datagram per formatted event.
struct SyslogWriter {
    sev: u8,
    buf: Vec<u8>,
}

impl Write for SyslogWriter {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for SyslogWriter {
    fn drop(&mut self) {
        if let Some(Sink {
            syslog: Some(sock), ..
        }) = SINK.get()
        {
            send_syslog(sock, self.sev, &String::from_utf8_lossy(&self.buf));
        }
    }
}

struct SyslogMaker;

impl<'a> MakeWriter<'a> for SyslogMaker {
    type Writer = SyslogWriter;
    fn make_writer(&'a self) -> SyslogWriter {
        SyslogWriter {
            sev: 6,
            buf: Vec::new(),
        }
    }
    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> SyslogWriter {
        SyslogWriter {
            sev: severity(*meta.level()),
            buf: Vec::new(),
        }
    }
}

/// Installs the global subscriber. Call once, early; later calls only
/// adjust the level.
pub fn init(cfg: &Config) -> io::Result<()> {
    if SINK.get().is_some() {
        set_level(&cfg.log.level);
        return Ok(());
    }
    let syslog = match cfg.log.target {
        LogTarget::Syslog => {
            let s = UnixDatagram::unbound()?;
            s.connect(&cfg.log.syslog_socket).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("syslog socket {}: {e}", cfg.log.syslog_socket.display()),
                )
            })?;
            Some(Mutex::new(s))
        }
        LogTarget::Stderr => None,
    };
    let _ = SINK.set(Sink {
        target: cfg.log.target,
        format: cfg.log.format,
        syslog,
    });
    let filter = EnvFilter::try_new(&cfg.log.level).unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    let _ = FILTER.set(handle);
    let registry = tracing_subscriber::registry().with(filter);
    let result = match (cfg.log.target, cfg.log.format) {
        (LogTarget::Stderr, LogFormat::Text) => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(io::stderr)
                    .with_target(false)
                    // Colour only for a person at a terminal: journald and
                    // log files keep plain text.
                    .with_ansi(io::stderr().is_terminal()),
            )
            .try_init(),
        (LogTarget::Stderr, LogFormat::Json) => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(io::stderr),
            )
            .try_init(),
        (LogTarget::Syslog, LogFormat::Text) => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(SyslogMaker)
                    .without_time()
                    .with_target(false)
                    .with_ansi(false),
            )
            .try_init(),
        (LogTarget::Syslog, LogFormat::Json) => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(SyslogMaker)
                    .without_time(),
            )
            .try_init(),
    };
    // Already initialised (tests in one process): keep the first one.
    let _ = result;
    Ok(())
}

/// Changes the level filter at run time (SIGHUP).
pub fn set_level(level: &str) {
    if let (Some(h), Ok(f)) = (FILTER.get(), EnvFilter::try_new(level)) {
        let _ = h.reload(f);
    }
}

/// The format the installed subscriber writes, once installed.
pub fn format() -> Option<LogFormat> {
    SINK.get().map(|s| s.format)
}

/// Writes one bare record line (a JSON verdict record) where the log goes:
/// a syslog datagram, or a line on stderr.
pub fn write_record(line: &str) {
    match SINK.get() {
        Some(Sink {
            target: LogTarget::Syslog,
            syslog: Some(sock),
            ..
        }) => send_syslog(sock, 6, line),
        _ => {
            let _ = writeln!(io::stderr().lock(), "{line}");
        }
    }
}
