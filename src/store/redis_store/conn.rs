//! A connection to a Redis server or to a Redis Cluster, behind one face.

use super::redis_error;
use crate::config::RedisConfig;
use crate::store::StoreError;
use redis::cluster::ClusterConnection;
use redis::{Cmd, ConnectionLike, Value};

pub(super) enum Conn {
    Single(redis::Connection),
    Cluster(Box<ClusterConnection>),
}

impl Conn {
    /// Runs `cmds` as one pipeline; a cluster routes each by its slot.
    pub(super) fn pipeline(&mut self, cmds: &[Cmd]) -> redis::RedisResult<Vec<Value>> {
        if cmds.is_empty() {
            return Ok(Vec::new());
        }
        match self {
            Conn::Single(c) => {
                let mut p = redis::pipe();
                for cmd in cmds {
                    p.add_command(cmd.clone());
                }
                p.query(c)
            }
            Conn::Cluster(c) => {
                let mut p = redis::cluster::cluster_pipe();
                for cmd in cmds {
                    p.add_command(cmd.clone());
                }
                p.query(c.as_mut())
            }
        }
    }

    pub(super) fn query<T: redis::FromRedisValue>(&mut self, cmd: &Cmd) -> redis::RedisResult<T> {
        match self {
            Conn::Single(c) => cmd.query(c),
            Conn::Cluster(c) => cmd.query(c.as_mut()),
        }
    }

    pub(super) fn is_open(&self) -> bool {
        match self {
            Conn::Single(c) => c.is_open(),
            Conn::Cluster(c) => c.is_open(),
        }
    }
}

/// A client of one server at `url`, with the configured credentials.
pub(super) fn single_client(url: &str, cfg: &RedisConfig) -> Result<redis::Client, StoreError> {
    let password = cfg.password().map_err(StoreError::Io)?;
    let mut info: redis::ConnectionInfo = url
        .parse()
        .map_err(|e: redis::RedisError| StoreError::Redis(e.to_string()))?;
    let mut settings = info.redis_settings().clone();
    if !cfg.username.is_empty() {
        settings = settings.set_username(cfg.username.clone());
    }
    if let Some(p) = password {
        settings = settings.set_password(p);
    }
    info = info.set_redis_settings(settings);
    match tls_certificates(cfg)? {
        Some(certs) if url.starts_with("rediss://") => {
            redis::Client::build_with_tls(info, certs).map_err(redis_error)
        }
        _ => redis::Client::open(info).map_err(redis_error),
    }
}

/// The URL of a cluster node found at `addr` (`host:port`), in the scheme
/// of the configured nodes (`rediss://` when they use TLS).
pub(super) fn node_url(cfg: &RedisConfig, addr: &str) -> String {
    let tls = cfg
        .nodes
        .first()
        .is_some_and(|n| n.starts_with("rediss://"));
    format!("{}://{addr}", if tls { "rediss" } else { "redis" })
}

/// The async connections' settings: `connect_timeout` to connect,
/// `command_timeout` for each reply.
pub(super) fn async_config(cfg: &RedisConfig) -> redis::AsyncConnectionConfig {
    redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(cfg.connect_timeout.0))
        .set_response_timeout(Some(cfg.command_timeout.0))
}

/// The CA of `ca_file` for TLS connections (`None`: the system's roots).
pub(super) fn tls_certificates(
    cfg: &RedisConfig,
) -> Result<Option<redis::TlsCertificates>, StoreError> {
    Ok(cfg
        .ca_certificates()
        .map_err(StoreError::Io)?
        .map(|pem| redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(pem),
        }))
}
