//! `[store]`: which backend keeps the reputation (the embedded RocksDB
//! under `state_dir`, or Redis shared by several mail hosts) and how to
//! reach Redis.

use crate::vocab::Span;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Embedded, under `state_dir`; one mail host.
    #[default]
    Rocksdb,
    /// A Redis server or Redis Cluster, shared by several mail hosts.
    Redis,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    pub backend: Backend,
    pub redis: RedisConfig,
    /// A secret (at least 16 bytes, not readable by every user): the store
    /// keeps addresses and IP addresses as keyed hashes under it
    /// (`store::KeyedStore`); empty: in clear.
    pub identity_key_file: PathBuf,
}

impl StoreConfig {
    /// The secret of `identity_key_file` (without a trailing newline), when
    /// one is set. A file that every user may read is refused, as is one
    /// shorter than [`MIN_IDENTITY_KEY`] bytes.
    pub fn identity_secret(&self) -> Result<Option<Vec<u8>>, String> {
        let path = &self.identity_key_file;
        if path.as_os_str().is_empty() {
            return Ok(None);
        }
        read_identity_secret(path).map(Some)
    }
}

/// An identity key file's secret, checked as `identity_key_file`'s is
/// (`store copy --identity-key` reads one too).
pub fn read_identity_secret(path: &std::path::Path) -> Result<Vec<u8>, String> {
    let what = |e: String| format!("store.identity_key_file {}: {e}", path.display());
    let mut bytes = std::fs::read(path).map_err(|e| what(e.to_string()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map_err(|e| what(e.to_string()))?
            .permissions()
            .mode();
        if mode & 0o004 != 0 {
            return Err(what(format!(
                "every user may read it (mode {:o}): make it 0640 or tighter",
                mode & 0o777
            )));
        }
    }
    while bytes.last().is_some_and(|b| matches!(b, b'\n' | b'\r')) {
        bytes.pop();
    }
    if bytes.len() < MIN_IDENTITY_KEY {
        return Err(what(format!(
            "{} bytes; a key needs at least {MIN_IDENTITY_KEY} (e.g. `head -c 32 /dev/urandom | base64`)",
            bytes.len()
        )));
    }
    Ok(bytes)
}

/// The least identity key length, in bytes.
pub const MIN_IDENTITY_KEY: usize = 16;

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// Seed nodes, `redis://HOST:PORT`, or `rediss://HOST:PORT` for TLS.
    pub nodes: Vec<String>,
    /// CA certificates (PEM) that sign the servers' TLS certificates;
    /// empty: the system's roots.
    pub ca_file: PathBuf,
    /// A Redis Cluster (slots spread over masters) rather than one server.
    pub cluster: bool,
    /// ACL user; empty: the default user.
    pub username: String,
    /// File holding the ACL password; empty: none.
    pub password_file: PathBuf,
    /// Prefix of every key, so that several sites share a cluster.
    pub prefix: String,
    pub connect_timeout: Span,
    /// Deadline of one command (or pipeline) on a connection.
    pub command_timeout: Span,
    /// Synchronous connections kept open for reuse (engagement events,
    /// sweeps, the console); the milter's stages share one async
    /// multiplexed connection.
    pub pool_size: usize,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            nodes: Vec::new(),
            ca_file: PathBuf::new(),
            cluster: false,
            username: String::new(),
            password_file: PathBuf::new(),
            prefix: "sra".into(),
            connect_timeout: Span(Duration::from_secs(2)),
            command_timeout: Span(Duration::from_millis(500)),
            pool_size: 16,
        }
    }
}

impl RedisConfig {
    /// The password from `password_file`, if one is set.
    pub fn password(&self) -> Result<Option<String>, String> {
        if self.password_file.as_os_str().is_empty() {
            return Ok(None);
        }
        let p = std::fs::read_to_string(&self.password_file).map_err(|e| {
            format!(
                "store.redis.password_file {}: {e}",
                self.password_file.display()
            )
        })?;
        Ok(Some(p.trim_end_matches(['\r', '\n']).to_string()))
    }

    /// The CA certificates from `ca_file`, if one is set.
    pub fn ca_certificates(&self) -> Result<Option<Vec<u8>>, String> {
        if self.ca_file.as_os_str().is_empty() {
            return Ok(None);
        }
        std::fs::read(&self.ca_file)
            .map(Some)
            .map_err(|e| format!("store.redis.ca_file {}: {e}", self.ca_file.display()))
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.nodes.is_empty() {
            return Err("store.redis.nodes: at least one redis://HOST:PORT".into());
        }
        let tls = self
            .nodes
            .iter()
            .filter(|n| n.starts_with("rediss://"))
            .count();
        for n in &self.nodes {
            if !n.starts_with("redis://") && !n.starts_with("rediss://") {
                return Err(format!(
                    "store.redis.nodes: {n:?}: use redis://HOST:PORT, or rediss://HOST:PORT for TLS"
                ));
            }
        }
        if tls != 0 && tls != self.nodes.len() {
            return Err("store.redis.nodes: all redis:// or all rediss://".into());
        }
        self.ca_certificates()?;
        if self.prefix.is_empty() || self.prefix.contains(['{', '}']) {
            return Err("store.redis.prefix: a non-empty name without braces".into());
        }
        if self.pool_size == 0 {
            return Err("store.redis.pool_size must be > 0".into());
        }
        if self.command_timeout.0.is_zero() || self.connect_timeout.0.is_zero() {
            return Err("store.redis timeouts must be > 0".into());
        }
        self.password()?;
        Ok(())
    }
}
