//! Configuration: TOML file, command-line overrides, defaults, validation.
//!
//! Precedence is command line over file over defaults. Unknown keys are
//! errors (with the line the TOML parser reports), so a typo never silently
//! falls back to a default. The whole file is parsed and validated before it
//! replaces a running configuration (see `reload` in `daemon`).

mod anomalies;
mod policy;
mod scoring;
mod sections;
mod socket;
mod store;

pub use anomalies::{AnomalyConfig, Brand, MAX_BRAND_WORD};
pub use policy::{ClassActions, PolicyConfig, RcptPolicy, StagePolicy};
pub use scoring::{log_fraction, MtaWeights, ScoringConfig, SenderWeights, Weight};
pub use sections::{
    AdminConfig, AuthConfig, DnsConfig, EventsConfig, ListsConfig, LogConfig, LogFormat, LogTarget,
};
pub use socket::{remove_own_socket, remove_stale_socket, SocketSpec};
pub use store::{read_identity_secret, Backend, RedisConfig, StoreConfig, MIN_IDENTITY_KEY};

pub use crate::vocab::{Mode, OnError, Span};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

pub const DEFAULT_CONFIG_PATH: &str = "/etc/sra-milter/sra-milter.toml";

/// Exit status for a bad configuration (EX_CONFIG from sysexits.h); the
/// systemd unit has `RestartPreventExitStatus=78`.
pub const EX_CONFIG: i32 = 78;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Milter socket: `inet:HOST:PORT`, `inet:PORT@HOST`, `inet6:...`, `unix:PATH`.
    pub socket: SocketSpec,
    /// Permissions of a unix milter socket (octal). Postfix must be able to
    /// write to it: group `postfix` with 0660, or 0666 inside a private
    /// directory.
    pub socket_mode: String,
    /// RocksDB reputation store directory.
    pub state_dir: PathBuf,
    pub mode: Mode,
    pub on_error: OnError,
    /// The organisation's own domains (subdomains included).
    pub enterprise_domains: Vec<String>,
    /// Clients connecting from these networks send outbound mail.
    pub internal_networks: Vec<IpNet>,
    /// Postfix `{daemon_name}` values of services that only take the
    /// organisation's own mail (submission with
    /// `-o milter_macro_daemon_name=ORIGINATING`): outbound from connect on.
    pub originating_daemon_names: Vec<String>,
    /// Relays whose `Received:` headers are trusted by `replay`.
    pub trusted_relays: Vec<IpNet>,
    /// Sub-address delimiters removed from envelope addresses (`user+tag`).
    pub recipient_delimiter: String,
    /// How long the message index remembers a Message-ID (reply matching).
    pub message_index_ttl: Span,
    /// Bytes of a message kept for parsing (attachments, URLs). The rest is
    /// passed through unread.
    pub max_message_bytes: usize,
    /// How long SIGTERM waits for open SMTP sessions to finish.
    pub shutdown_timeout: Span,
    /// Maximum simultaneous milter connections.
    pub max_connections: usize,
    /// Threads that run the milter sessions (the async runtime's workers).
    /// One serves thousands of messages a second and spends the least CPU
    /// per message: each packet from the MTA wakes no other thread.
    pub worker_threads: usize,
    /// How long a milter connection may wait for the MTA's next command
    /// before it is closed (Postfix's `milter_*_timeout` are the guide; above
    /// its `smtpd_timeout`, so a slow SMTP client is not cut off). An idle
    /// connection holds one of `max_connections`.
    pub milter_timeout: Span,
    /// Header added to messages whose action is `tag`.
    pub tag_header: String,
    pub log: LogConfig,
    pub dns: DnsConfig,
    pub auth: AuthConfig,
    pub anomalies: AnomalyConfig,
    pub events: EventsConfig,
    pub admin: AdminConfig,
    pub lists: ListsConfig,
    pub policy: PolicyConfig,
    pub scoring: ScoringConfig,
    pub store: StoreConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            socket: SocketSpec::Inet("127.0.0.1:8894".into()),
            socket_mode: "0660".into(),
            state_dir: PathBuf::from("/var/lib/sra-milter"),
            mode: Mode::Monitor,
            on_error: OnError::Accept,
            enterprise_domains: Vec::new(),
            internal_networks: vec![
                "127.0.0.0/8".parse().expect("literal network"),
                "::1/128".parse().expect("literal network"),
            ],
            originating_daemon_names: vec!["ORIGINATING".into()],
            trusted_relays: Vec::new(),
            recipient_delimiter: "+".into(),
            message_index_ttl: Span(Duration::from_secs(90 * 86400)),
            max_message_bytes: 4 * 1024 * 1024,
            shutdown_timeout: Span(Duration::from_secs(30)),
            max_connections: 200,
            worker_threads: 1,
            milter_timeout: Span(Duration::from_secs(600)),
            tag_header: "X-SRA-Flag".into(),
            log: LogConfig::default(),
            dns: DnsConfig::default(),
            auth: AuthConfig::default(),
            anomalies: AnomalyConfig::default(),
            events: EventsConfig::default(),
            admin: AdminConfig::default(),
            lists: ListsConfig::default(),
            policy: PolicyConfig::default(),
            scoring: ScoringConfig::default(),
            store: StoreConfig::default(),
        }
    }
}

/// Settings given on the command line; they win over the file.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub socket: Option<SocketSpec>,
    pub state_dir: Option<PathBuf>,
    pub monitor_only: bool,
}

impl Config {
    /// Parses TOML text, rejecting unknown keys, then validates.
    ///
    /// A table names only the keys it changes: the others keep their
    /// defaults (`[policy.eom.sender] neutral = "tag"` leaves `malicious`
    /// at `reject`), as [`Config::overlay`] does over a running config.
    pub fn from_toml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let parse = |e: toml::de::Error| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string().trim_end().replace('\n', " "),
        };
        let over: toml::Table = toml::from_str(text).map_err(parse)?;
        Config::default().merged(over).map_err(|e| {
            // Unknown keys and bad values: the text parsed alone names
            // their line.
            match toml::from_str::<Config>(text) {
                Err(with_line) => parse(with_line),
                Ok(_) => ConfigError::Parse {
                    path: path.to_owned(),
                    message: e,
                },
            }
        })
    }

    /// This configuration with `over`'s keys laid over it (not validated).
    fn merged(&self, over: toml::Table) -> Result<Config, String> {
        fn merge(into: &mut toml::Table, from: toml::Table) {
            for (k, v) in from {
                match (into.get_mut(&k), v) {
                    (Some(toml::Value::Table(a)), toml::Value::Table(b)) => merge(a, b),
                    (_, v) => {
                        into.insert(k, v);
                    }
                }
            }
        }
        let mut base = toml::Table::try_from(self).map_err(|e| e.to_string())?;
        merge(&mut base, over);
        base.try_into()
            .map_err(|e: toml::de::Error| e.to_string().trim_end().replace('\n', " "))
    }

    /// This configuration with the keys of `text` (TOML) laid over it: a
    /// table given replaces only the keys it names. Validated.
    pub fn overlay(&self, text: &str) -> Result<Config, ConfigError> {
        let path = Path::new("(candidate)");
        let parse = |message: String| ConfigError::Parse {
            path: path.to_owned(),
            message,
        };
        // The keys alone first, for unknown keys and bad values.
        Config::from_toml(text, path)?;
        let over: toml::Table = toml::from_str(text).map_err(|e| parse(e.to_string()))?;
        let mut cfg = self.merged(over).map_err(parse)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Reads the file (missing default file means built-in defaults), applies
    /// command-line overrides, then validates the result.
    pub fn load(path: Option<&Path>, ov: &Overrides) -> Result<Config, ConfigError> {
        let mut cfg = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.to_owned(),
                    source,
                })?;
                Config::from_toml(&text, p)?
            }
            None => {
                let p = Path::new(DEFAULT_CONFIG_PATH);
                match std::fs::read_to_string(p) {
                    Ok(text) => Config::from_toml(&text, p)?,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Config::default(),
                    Err(source) => {
                        return Err(ConfigError::Read {
                            path: p.to_owned(),
                            source,
                        })
                    }
                }
            }
        };
        cfg.apply(ov);
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn apply(&mut self, ov: &Overrides) {
        if let Some(s) = &ov.socket {
            self.socket = s.clone();
        }
        if let Some(d) = &ov.state_dir {
            self.state_dir = d.clone();
        }
        if ov.monitor_only {
            self.mode = Mode::Monitor;
        }
    }

    pub fn validate(&mut self) -> Result<(), ConfigError> {
        for d in &mut self.enterprise_domains {
            *d = d.trim().trim_end_matches('.').to_ascii_lowercase();
            if d.is_empty() || d.contains('@') || d.contains(char::is_whitespace) {
                return Err(ConfigError::Invalid(format!(
                    "enterprise_domains: {d:?} is not a domain name"
                )));
            }
        }
        self.socket_mode_bits()?;
        self.dns.server_addrs().map_err(ConfigError::Invalid)?;
        if self.dns.timeout.0 < Duration::from_millis(50)
            || self.dns.timeout.0 > Duration::from_secs(60)
        {
            return Err(ConfigError::Invalid(
                "dns.timeout must be within 50ms..60s".into(),
            ));
        }
        if self.auth.authserv_id.is_empty()
            || self
                .auth
                .authserv_id
                .contains(|c: char| c.is_whitespace() || c == ';')
        {
            return Err(ConfigError::Invalid(format!(
                "auth.authserv_id {:?} must be a single token (a host name)",
                self.auth.authserv_id
            )));
        }
        if self.max_message_bytes < 1024 {
            return Err(ConfigError::Invalid(
                "max_message_bytes must be at least 1024".into(),
            ));
        }
        if self.max_connections == 0 {
            return Err(ConfigError::Invalid("max_connections must be > 0".into()));
        }
        if !(1..=64).contains(&self.worker_threads) {
            return Err(ConfigError::Invalid(
                "worker_threads must be within 1..64".into(),
            ));
        }
        if self.milter_timeout.0 < Duration::from_secs(1) {
            return Err(ConfigError::Invalid(
                "milter_timeout must be at least 1s".into(),
            ));
        }
        if self.message_index_ttl.0.as_secs() < 3600 {
            return Err(ConfigError::Invalid(
                "message_index_ttl must be at least 1h".into(),
            ));
        }
        if !crate::vocab::is_valid_header_name(&self.tag_header) {
            return Err(ConfigError::Invalid(format!(
                "tag_header {:?} is not a valid header field name",
                self.tag_header
            )));
        }
        for (list, entries) in [("allow", &self.lists.allow), ("block", &self.lists.block)] {
            for e in entries.iter() {
                crate::vocab::Target::parse_list_entry(e)
                    .map_err(|m| ConfigError::Invalid(format!("lists.{list}: {e:?}: {m}")))?;
            }
        }
        tracing_subscriber::EnvFilter::try_new(&self.log.level)
            .map_err(|e| ConfigError::Invalid(format!("log.level {:?}: {e}", self.log.level)))?;
        if self.store.backend == Backend::Redis {
            self.store.redis.validate().map_err(ConfigError::Invalid)?;
        }
        self.store.identity_secret().map_err(ConfigError::Invalid)?;
        self.policy.validate().map_err(ConfigError::Invalid)?;
        // [policy.anomalies] names anomalies that exist: their weights.
        let known = toml::Table::try_from(&self.anomalies).unwrap_or_default();
        for name in self.policy.anomalies.keys() {
            if !known.get(name).is_some_and(toml::Value::is_float) {
                let names: Vec<&String> = known
                    .iter()
                    .filter(|(_, v)| v.is_float())
                    .map(|(k, _)| k)
                    .collect();
                return Err(ConfigError::Invalid(format!(
                    "policy.anomalies.{name}: no such anomaly (one of {names:?})"
                )));
            }
        }
        self.anomalies.validate().map_err(ConfigError::Invalid)?;
        self.events.validate().map_err(ConfigError::Invalid)?;
        if !self.events.listen.is_empty() {
            // The listener refuses to run without its token: say so now.
            self.events.token().map_err(ConfigError::Invalid)?;
        }
        self.admin.validate().map_err(ConfigError::Invalid)?;
        let milter = match &self.socket {
            SocketSpec::Inet(a) => a.as_str(),
            SocketSpec::Unix(_) => "",
        };
        socket::distinct_listeners(&[
            ("socket", milter),
            ("admin.listen", &self.admin.listen),
            ("events.listen", &self.events.listen),
        ])
        .map_err(ConfigError::Invalid)?;
        self.scoring.validate().map_err(ConfigError::Invalid)?;
        Ok(())
    }

    pub fn socket_mode_bits(&self) -> Result<u32, ConfigError> {
        u32::from_str_radix(self.socket_mode.trim_start_matches("0o"), 8)
            .ok()
            .filter(|m| *m <= 0o777)
            .ok_or_else(|| {
                ConfigError::Invalid(format!(
                    "socket_mode {:?} is not an octal file mode like \"0660\"",
                    self.socket_mode
                ))
            })
    }

    pub fn control_socket(&self) -> PathBuf {
        self.admin
            .control_socket
            .clone()
            .unwrap_or_else(|| self.state_dir.join("control.sock"))
    }

    /// True when `domain` is an enterprise domain or a subdomain of one.
    /// The recipients inside the enterprise (all of them when no
    /// enterprise domain is configured): whom a correspondent deals with.
    pub fn enterprise_recipients<'a>(&self, recipients: &'a [String]) -> Vec<&'a String> {
        recipients
            .iter()
            .filter(|r| {
                self.enterprise_domains.is_empty()
                    || self.is_enterprise_domain(crate::vocab::domain_of(r))
            })
            .collect()
    }

    pub fn is_enterprise_domain(&self, domain: &str) -> bool {
        self.enterprise_domains.iter().any(|d| {
            domain == d
                || (domain.len() > d.len()
                    && domain.ends_with(d.as_str())
                    && domain.as_bytes()[domain.len() - d.len() - 1] == b'.')
        })
    }

    pub fn is_internal_ip(&self, ip: IpAddr) -> bool {
        let ip = crate::vocab::canonical_ip(ip);
        self.internal_networks.iter().any(|n| n.contains(&ip))
    }

    /// Where the store is, for messages: the RocksDB directory or the
    /// Redis nodes and prefix.
    pub fn store_location(&self) -> String {
        match self.store.backend {
            Backend::Rocksdb => format!("at {}", self.state_dir.display()),
            Backend::Redis => format!(
                "on redis {} (prefix {:?})",
                self.store.redis.nodes.join(","),
                self.store.redis.prefix
            ),
        }
    }

    /// For a reload: puts back the running value of every key that needs a
    /// restart, and names the ones the new file changed.
    pub fn keep_restart_only(&mut self, running: &Config) -> Vec<&'static str> {
        let mut changed = Vec::new();
        macro_rules! keep {
            ($name:literal, $($field:ident).+) => {
                if self.$($field).+ != running.$($field).+ {
                    changed.push($name);
                    self.$($field).+ = running.$($field).+.clone();
                }
            };
        }
        keep!("socket", socket);
        keep!("socket_mode", socket_mode);
        keep!("state_dir", state_dir);
        keep!("store", store);
        keep!("max_connections", max_connections);
        keep!("worker_threads", worker_threads);
        keep!("milter_timeout", milter_timeout);
        keep!("message_index_ttl", message_index_ttl);
        keep!("admin", admin);
        keep!("log.target", log.target);
        keep!("log.format", log.format);
        keep!("log.syslog_socket", log.syslog_socket);
        keep!("dns", dns);
        keep!("events.listen", events.listen);
        changed
    }
}

/// The running configuration: replaced whole on reload, read as a snapshot
/// (a session keeps the snapshot it started with).
#[derive(Debug)]
pub struct LiveConfig(RwLock<Arc<Config>>);

impl LiveConfig {
    pub fn new(cfg: Config) -> LiveConfig {
        LiveConfig(RwLock::new(Arc::new(cfg)))
    }

    pub fn get(&self) -> Arc<Config> {
        match self.0.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn set(&self, cfg: Config) {
        match self.0.write() {
            Ok(mut g) => *g = Arc::new(cfg),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(cfg),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reload_keeps_restart_only_keys_and_names_them() {
        let running = Config::default();
        let mut new = Config {
            mode: Mode::Enforce,
            socket: "inet:127.0.0.1:9999".parse().unwrap(),
            state_dir: PathBuf::from("/elsewhere"),
            worker_threads: 4,
            ..Config::default()
        };
        new.dns.timeout = Span(Duration::from_secs(1));
        new.events.listen = "127.0.0.1:1".into();
        let changed = new.keep_restart_only(&running);
        assert_eq!(
            changed,
            [
                "socket",
                "state_dir",
                "worker_threads",
                "dns",
                "events.listen"
            ]
        );
        assert_eq!(new.worker_threads, 1);
        assert_eq!(new.socket, running.socket);
        assert_eq!(new.state_dir, running.state_dir);
        assert_eq!(new.dns, running.dns);
        assert_eq!(new.events.listen, running.events.listen);
        assert_eq!(
            new.mode,
            Mode::Enforce,
            "reloadable keys take the new value"
        );
    }

    #[test]
    fn worker_threads_must_be_within_bounds() {
        for (n, ok) in [(0, false), (1, true), (64, true), (65, false)] {
            let mut cfg = Config {
                worker_threads: n,
                ..Config::default()
            };
            assert_eq!(cfg.validate().is_ok(), ok, "worker_threads = {n}");
        }
    }

    #[test]
    fn unknown_keys_are_errors() {
        let e = Config::from_toml("mode = \"enforce\"\nbogus = 1\n", Path::new("x.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("bogus"), "{e}");
        let e = Config::from_toml("[policy.eom.sender]\nevil = \"reject\"\n", Path::new("x"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("evil"), "{e}");
    }

    #[test]
    fn cli_overrides_win_over_file() {
        let mut cfg = Config::from_toml(
            "mode = \"enforce\"\nsocket = \"inet:127.0.0.1:1\"\n",
            Path::new("x"),
        )
        .unwrap();
        cfg.apply(&Overrides {
            socket: Some("unix:/tmp/x.sock".parse().unwrap()),
            state_dir: None,
            monitor_only: true,
        });
        assert_eq!(cfg.mode, Mode::Monitor);
        assert_eq!(cfg.socket, SocketSpec::Unix("/tmp/x.sock".into()));
    }

    #[test]
    fn enterprise_domains_match_subdomains_only_on_label_boundary() {
        let mut cfg = Config {
            enterprise_domains: vec!["Example.COM.".into()],
            ..Config::default()
        };
        cfg.validate().unwrap();
        assert!(cfg.is_enterprise_domain("example.com"));
        assert!(cfg.is_enterprise_domain("mail.example.com"));
        assert!(!cfg.is_enterprise_domain("badexample.com"));
        assert!(!cfg.is_enterprise_domain("example.com.evil"));
    }

    #[test]
    fn invalid_values_are_rejected() {
        let mut cfg = Config {
            tag_header: "Bad Header:".into(),
            ..Config::default()
        };
        assert!(cfg.validate().is_err());
        let mut cfg = Config {
            lists: ListsConfig {
                allow: vec![],
                block: vec!["not a thing@@".into()],
            },
            ..Config::default()
        };
        assert!(cfg.validate().is_err());
    }
}

#[cfg(test)]
mod example_tests {
    use super::*;

    fn key_paths(v: &toml::Value, prefix: &str, out: &mut Vec<String>) {
        if let toml::Value::Table(t) = v {
            for (k, child) in t {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                // Weights are documented as one inline table per factor.
                if matches!(child, toml::Value::Table(c) if c.contains_key("weight")) {
                    out.push(path);
                } else if child.is_table() {
                    key_paths(child, &path, out);
                } else {
                    out.push(path);
                }
            }
        }
    }

    fn all_key_paths() -> Vec<String> {
        let defaults = toml::Value::try_from(Config::default()).unwrap();
        let mut paths = Vec::new();
        key_paths(&defaults, "", &mut paths);
        paths.push("admin.control_socket".into());
        paths
    }

    /// The man page documents every key under its section.
    #[test]
    fn man_page_documents_every_key() {
        let man = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/packaging/man/sra-milter.toml.5"
        ))
        .unwrap();
        for p in all_key_paths() {
            let (section, leaf) = p.rsplit_once('.').unwrap_or(("", &p));
            let heading = if section.is_empty() {
                ".SH TOP-LEVEL KEYS".to_string()
            } else {
                format!(".SH [{section}]")
            };
            let start = man
                .find(&heading)
                .unwrap_or_else(|| panic!("man page lacks {heading}"));
            let end = man[start + heading.len()..]
                .find(".SH ")
                .map_or(man.len(), |e| start + heading.len() + e);
            let entry = format!("\\fB{}\\fR", leaf.replace('-', "\\-"));
            assert!(man[start..end].contains(&entry), "man page lacks {p}");
        }
    }

    /// The commented example documents every key, with the default values
    /// (the organisation's own domains aside).
    #[test]
    fn an_overlay_replaces_only_the_keys_it_names() {
        let mut base = Config {
            enterprise_domains: vec!["example.com".into()],
            ..Config::default()
        };
        base.validate().unwrap();
        let c = base
            .overlay("[policy.eom.sender]\nneutral = \"quarantine\"\n[scoring]\nmin_history = 4\n")
            .unwrap();
        assert_eq!(
            c.policy.eom.sender.neutral,
            crate::vocab::Action::Quarantine
        );
        assert_eq!(
            c.policy.eom.sender.malicious,
            base.policy.eom.sender.malicious
        );
        assert_eq!(c.scoring.min_history, 4);
        assert_eq!(c.scoring.trusted, base.scoring.trusted);
        assert_eq!(c.enterprise_domains, base.enterprise_domains);
        assert!(base.overlay("[scoring]\nno_such_key = 1\n").is_err());
        assert!(base.overlay("not toml [").is_err());
        assert_eq!(base.overlay("").unwrap(), base);
    }

    #[test]
    fn policy_anomalies_name_real_anomalies() {
        let ok = Config::from_toml(
            "enterprise_domains = [\"example.com\"]\n[policy.anomalies]\nbehaviour_change = \"tag\"\n",
            Path::new("x.toml"),
        );
        let mut ok = ok.unwrap();
        ok.validate().unwrap();
        assert_eq!(
            ok.policy.anomalies["behaviour_change"],
            crate::vocab::Action::Tag
        );
        let mut bad = Config::from_toml(
            "enterprise_domains = [\"example.com\"]\n[policy.anomalies]\nsettled_messages = \"tag\"\n",
            Path::new("x.toml"),
        )
        .unwrap();
        let e = bad.validate().unwrap_err().to_string();
        assert!(e.contains("policy.anomalies.settled_messages"), "{e}");
    }

    #[test]
    fn a_partial_table_in_a_file_keeps_the_defaults_it_does_not_name() {
        let c = Config::from_toml(
            "[policy.eom.sender]\nneutral = \"tag\"\n[scoring.sender.replies_sent]\nweight = 9.0\n",
            Path::new("x.toml"),
        )
        .unwrap();
        let d = Config::default();
        assert_eq!(c.policy.eom.sender.neutral, crate::vocab::Action::Tag);
        assert_eq!(c.policy.eom.sender.malicious, crate::vocab::Action::Reject);
        assert_eq!(
            c.policy.eom.sender.suspicious,
            d.policy.eom.sender.suspicious
        );
        assert_eq!(c.scoring.sender.replies_sent.weight, 9.0);
        assert_eq!(
            c.scoring.sender.replies_sent.cap,
            d.scoring.sender.replies_sent.cap
        );
        let e = Config::from_toml(
            "[policy.eom.sender]\nfriendly = \"tag\"\n",
            Path::new("x.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("friendly") && e.contains("line 2"), "{e}");
    }

    #[test]
    fn example_config_documents_every_key_with_its_default() {
        let path = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/sra-milter.toml"
        ));
        let text = std::fs::read_to_string(path).unwrap();
        let mut example = Config::from_toml(&text, path).unwrap();
        example.validate().unwrap();
        let expected = Config {
            enterprise_domains: vec!["example.com".into()],
            ..Config::default()
        };
        assert_eq!(example, expected);

        for p in all_key_paths() {
            let leaf = p.rsplit('.').next().unwrap();
            let section = p.rsplit_once('.').map(|(s, _)| s);
            let section_ok = section.is_none_or(|s| {
                text.contains(&format!("[{s}]"))
                    || s.rsplit_once('.')
                        .is_some_and(|(parent, _)| text.contains(&format!("[{parent}.")))
            });
            assert!(
                section_ok && text.contains(&format!("{leaf} =")),
                "example lacks {p}"
            );
        }
    }
}
