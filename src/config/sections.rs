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
    /// `HOST:PORT` for `GET /metrics` and `GET /health`; empty: off. Keep it
    /// on loopback.
    pub listen: String,
}

#[allow(clippy::derivable_impls)]
impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            control_socket: None,
            listen: String::new(),
        }
    }
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
        let t = std::fs::read_to_string(&self.token_file)
            .map_err(|e| format!("events.token_file {}: {e}", self.token_file.display()))?;
        let t = t.trim().to_string();
        if t.len() < 16 {
            return Err(format!(
                "events.token_file {}: the token must be at least 16 characters",
                self.token_file.display()
            ));
        }
        Ok(t)
    }
}
