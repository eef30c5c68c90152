//! The smaller sections of the configuration: logging, the admin and
//! events listeners, address lists, DNS and authentication.

use crate::vocab::{Action, Span};
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogTarget {
    #[default]
    Stderr,
    Syslog,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `stderr` or `syslog` (facility mail, through /dev/log).
    pub target: LogTarget,
    /// `text` (one line per event) or `json` (one JSON verdict record per
    /// message, JSON events otherwise).
    pub format: LogFormat,
    /// Level filter, in `RUST_LOG` syntax (`info`, `debug`, `sra_milter=debug`).
    pub level: String,
    /// The syslog socket (`target = "syslog"`).
    pub syslog_socket: PathBuf,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            target: LogTarget::Stderr,
            format: LogFormat::Text,
            level: "info".into(),
            syslog_socket: PathBuf::from("/dev/log"),
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Unix socket through which `sra-milter override` reaches the running
    /// daemon (the store has a single writer). Empty: `<state_dir>/control.sock`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub control_socket: Option<PathBuf>,
    /// `HOST:PORT` for the console (`/`), `GET /metrics` and `GET /health`;
    /// empty: off. A bind other than loopback needs `token_file`.
    pub listen: String,
    /// File holding the console's token (at least 16 characters): scripts
    /// send it as a bearer header, browsers log in with it. Unset: the
    /// console runs without a token, which only a loopback bind allows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    /// Verdicts the console keeps in memory for its recent views.
    pub recent: usize,
    /// How long a console login lasts.
    pub session_lifetime: Span,
    /// How long verdict records stay in `<state_dir>/journal` for
    /// `sra-milter whatif` and the console's what-if; 0: no journal.
    pub journal_keep: Span,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            control_socket: None,
            listen: String::new(),
            token_file: None,
            recent: 5000,
            session_lifetime: Span(Duration::from_secs(12 * 3600)),
            journal_keep: Span(Duration::from_secs(7 * 86400)),
        }
    }
}

impl AdminConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.listen.is_empty() {
            return Ok(());
        }
        let addr = self.listen.parse::<std::net::SocketAddr>().map_err(|_| {
            format!(
                "admin.listen {:?} is not HOST:PORT (an IP address and a port)",
                self.listen
            )
        })?;
        match &self.token_file {
            Some(_) => {
                self.token()?;
            }
            None if !addr.ip().is_loopback() => {
                return Err(format!(
                    "admin.listen {} is not a loopback address: set admin.token_file, or the console and its overrides are open to anyone who reaches it",
                    self.listen
                ))
            }
            None => {}
        }
        if !(10..=1_000_000).contains(&self.recent) {
            return Err("admin.recent must be between 10 and 1000000".into());
        }
        if self.session_lifetime.0 < Duration::from_secs(60) {
            return Err("admin.session_lifetime must be at least 1m".into());
        }
        Ok(())
    }

    /// The console's token (trimmed), if `token_file` is set; an empty,
    /// short or unreadable file is an error.
    pub fn token(&self) -> Result<Option<String>, String> {
        let Some(path) = &self.token_file else {
            return Ok(None);
        };
        read_token("admin.token_file", path).map(Some)
    }
}

/// A token file's contents, trimmed; at least 16 characters.
fn read_token(key: &str, path: &std::path::Path) -> Result<String, String> {
    let t = std::fs::read_to_string(path).map_err(|e| format!("{key} {}: {e}", path.display()))?;
    let t = t.trim().to_string();
    if t.len() < 16 {
        return Err(format!(
            "{key} {}: the token must be at least 16 characters",
            path.display()
        ));
    }
    Ok(t)
}

/// Address lists that fix a class without consulting history. Entries are
/// email addresses (`ceo@example.com`), domains (`example.com`), IP
/// addresses or CIDR networks.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ListsConfig {
    pub allow: Vec<String>,
    pub block: Vec<String>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DnsConfig {
    /// Resolvers as `IP` or `IP:PORT`; empty: the system's (/etc/resolv.conf).
    pub servers: Vec<String>,
    /// Deadline for the DNS work of one SMTP stage.
    pub timeout: Span,
    /// Cached answers per record type.
    pub cache_size: usize,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            servers: Vec::new(),
            timeout: Span(Duration::from_secs(5)),
            cache_size: 10_000,
        }
    }
}

impl DnsConfig {
    pub fn server_addrs(&self) -> Result<Vec<SocketAddr>, String> {
        self.servers
            .iter()
            .map(|s| {
                s.parse::<SocketAddr>()
                    .or_else(|_| s.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
                    .map_err(|_| format!("dns.servers: {s:?} is not IP or IP:PORT"))
            })
            .collect()
    }
}

/// What to do with a DMARC failure whose domain publishes p=reject or
/// p=quarantine.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Verify SPF/DKIM/DMARC/ARC here (unless a trusted upstream did).
    pub verify: bool,
    /// authserv-id of the Authentication-Results header added.
    pub authserv_id: String,
    /// Add an Authentication-Results header to inbound mail.
    pub add_header: bool,
    /// Upstream authserv-ids whose Authentication-Results are believed.
    pub trusted_authserv_ids: Vec<String>,
    pub dmarc_reject_action: Action,
    pub dmarc_quarantine_action: Action,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            verify: true,
            authserv_id: default_hostname(),
            add_header: true,
            trusted_authserv_ids: Vec::new(),
            dmarc_reject_action: Action::Reject,
            dmarc_quarantine_action: Action::Quarantine,
        }
    }
}

fn default_hostname() -> String {
    std::fs::read_to_string("/etc/mailname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty() && !s.contains(char::is_whitespace))
        .unwrap_or_else(|| "localhost".into())
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// `HOST:PORT` of the events listener; empty: no listener.
    pub listen: String,
    /// File holding the bearer token the mailbox server sends.
    pub token_file: PathBuf,
    /// How long a message may stay unopened before it counts as not opened.
    pub open_grace: Span,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            listen: String::new(),
            token_file: PathBuf::from("/etc/sra-milter/events.token"),
            open_grace: Span(Duration::from_secs(72 * 3600)),
            max_body_bytes: 4 * 1024 * 1024,
        }
    }
}

impl EventsConfig {
    pub fn validate(&self) -> Result<(), String> {
        if !self.listen.is_empty() && self.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(format!(
                "events.listen {:?} is not HOST:PORT (an IP address and a port)",
                self.listen
            ));
        }
        if self.open_grace.0 < Duration::from_secs(1) {
            return Err("events.open_grace must be at least 1s".into());
        }
        Ok(())
    }

    /// The token, trimmed; an empty or unreadable file is an error.
    pub fn token(&self) -> Result<String, String> {
        read_token("events.token_file", &self.token_file)
    }
}
