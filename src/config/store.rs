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
}

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
    /// Connections kept open for reuse.
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
