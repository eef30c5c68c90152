//! The milter's stages on Redis: reads and writes in flight together on
//! one multiplexed connection (one socket per node), awaited on the async
//! worker. No thread waits on a socket, so a message costs no hand-offs
//! to the blocking pool and back (docs/performance.md, "The shared store").

use super::nodes::Masters;
use super::{redis_error, Client, RedisStore};
use crate::store::{decode_index, Kind, Loaded, Record, StoreError, Update, Want};
use redis::aio::MultiplexedConnection;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, RedisResult, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// An async connection: both kinds are handles onto one multiplexed
/// connection, cheap to clone.
#[derive(Clone)]
pub(super) enum AsyncConn {
    Single(MultiplexedConnection),
    /// The cluster connection, and the masters' own connections for the
    /// flights ([`super::nodes`]).
    Cluster(ClusterConnection, Arc<Masters>),
}

impl AsyncConn {
    /// Sends `cmds` and answers each one's reply, in order: to one server
    /// as one pipeline; to a cluster as one pipeline per master
    /// ([`super::nodes`]). The outer error is the connection's.
    async fn send(&mut self, cmds: &[Cmd]) -> RedisResult<Vec<RedisResult<Value>>> {
        match self {
            AsyncConn::Single(c) => {
                let mut p = redis::pipe();
                for cmd in cmds {
                    p.add_command(cmd.clone());
                }
                p.ignore_errors().query_async(c).await
            }
            AsyncConn::Cluster(c, masters) => Ok(masters.send(c, cmds).await),
        }
    }

    /// Loads the merge functions (on every master of a cluster).
    async fn load_library(&mut self) -> RedisResult<()> {
        let load = super::library_cmd();
        match self {
            AsyncConn::Single(c) => load.query_async::<Value>(c).await.map(|_| ()),
            AsyncConn::Cluster(c, _) => load.query_async::<Value>(c).await.map(|_| ()),
        }
    }
}

/// The async connection's place: the connection, or when opening one last
/// failed.
#[derive(Default)]
pub(super) struct Slot {
    conn: Option<AsyncConn>,
    failed: Option<(Instant, String)>,
}

/// After a failed attempt to connect, stages fail at once for this long
/// instead of each waiting for a server that does not answer.
const RECONNECT_AFTER: Duration = Duration::from_secs(1);

impl RedisStore {
    /// The async connection, opened on first use and again after one
    /// broke. One stage opens it (within `connect_timeout`) while the
    /// others wait for it at most `command_timeout`; within
    /// [`RECONNECT_AFTER`] of a failed attempt they fail at once.
    async fn async_conn(&self) -> Result<AsyncConn, StoreError> {
        let wait = self.cfg.command_timeout.0;
        let mut slot = tokio::time::timeout(wait, self.async_conn.lock())
            .await
            .map_err(|_| {
                StoreError::Redis(format!(
                    "still connecting to {} after {wait:?}",
                    self.cfg.nodes.join(", ")
                ))
            })?;
        if let Some(c) = &slot.conn {
            return Ok(c.clone());
        }
        if let Some((at, why)) = &slot.failed {
            if at.elapsed() < RECONNECT_AFTER {
                return Err(StoreError::Redis(format!(
                    "not connected ({why}; trying again within {RECONNECT_AFTER:?})"
                )));
            }
        }
        let connect = async {
            Ok::<_, redis::RedisError>(match &self.client {
                Client::Single(c) => {
                    let config = super::conn::async_config(&self.cfg);
                    AsyncConn::Single(
                        c.get_multiplexed_async_connection_with_config(&config)
                            .await?,
                    )
                }
                Client::Cluster(c) => AsyncConn::Cluster(
                    c.get_async_connection().await?,
                    Masters::new(self.cfg.clone()),
                ),
            })
        };
        // The client's own connect timeout does not cover the handshake
        // after the TCP connection (a server that accepts and hangs).
        let limit = self.cfg.connect_timeout.0;
        let why = match tokio::time::timeout(limit, connect).await {
            Ok(Ok(conn)) => {
                *slot = Slot {
                    conn: Some(conn.clone()),
                    failed: None,
                };
                return Ok(conn);
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within the connect timeout ({limit:?})"),
        };
        slot.failed = Some((Instant::now(), why.clone()));
        Err(StoreError::Redis(why))
    }

    /// Sends `cmds` on the async connection; one that broke is dropped,
    /// so that a later call opens a new one. A command that timed out
    /// leaves it as it is: the server is slow, not gone, and the
    /// connection matches late answers to their commands.
    async fn send_async(&self, cmds: &[Cmd]) -> Result<Vec<Value>, StoreError> {
        if cmds.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.async_conn().await?;
        let mut replies = match conn.send(cmds).await {
            Ok(r) => r,
            Err(e) => {
                let broken =
                    e.is_connection_dropped() || e.is_unrecoverable_error() || e.is_io_error();
                if broken && !e.is_timeout() {
                    self.async_conn.lock().await.conn = None;
                }
                return Err(redis_error(e));
            }
        };
        // A server without the merge functions (a replica promoted before
        // it had them, a restart without persistence, FUNCTION FLUSH) ran
        // none of those commands: load the functions and send just them
        // again.
        let missing: Vec<usize> = (0..replies.len())
            .filter(|i| matches!(&replies[*i], Err(e) if super::lacks_functions(e)))
            .collect();
        if !missing.is_empty() {
            tracing::warn!("{}", super::LOST_FUNCTIONS);
            conn.load_library().await.map_err(redis_error)?;
            let again: Vec<Cmd> = missing.iter().map(|i| cmds[*i].clone()).collect();
            let redone = conn.send(&again).await.map_err(redis_error)?;
            for (i, r) in missing.into_iter().zip(redone) {
                replies[i] = r;
            }
        }
        replies
            .into_iter()
            .collect::<RedisResult<Vec<Value>>>()
            .map_err(redis_error)
    }

    /// [`crate::store::ReputationStore::load`]: what the read cache holds
    /// from it, the rest in one flight.
    pub(super) async fn load_async(&self, wants: Vec<Want>) -> Result<Vec<Loaded>, StoreError> {
        let mut out: Vec<Option<Loaded>> = Vec::with_capacity(wants.len());
        let mut cmds = Vec::new();
        for w in &wants {
            let cached = match w {
                Want::Record(kind, key) => self.cached(*kind, key).map(Loaded::Record),
                _ => None,
            };
            if cached.is_none() {
                cmds.push(match w {
                    Want::Record(kind, key) => self.read_record_cmd(*kind, key),
                    Want::Message(id) => self.message_cmd(id),
                    Want::Name(n) => self.name_cmd(n),
                });
            }
            out.push(cached);
        }
        let mut replies = self.send_async(&cmds).await?.into_iter();
        let newest = self.newest();
        wants
            .iter()
            .zip(out)
            .map(|(w, cached)| {
                if let Some(c) = cached {
                    return Ok(c);
                }
                let v = replies
                    .next()
                    .ok_or_else(|| StoreError::Redis("fewer replies than reads".into()))?;
                Ok(match w {
                    Want::Record(kind, key) => {
                        let r = Self::record_from(v)?;
                        self.remember(*kind, key, &r);
                        Loaded::Record(r)
                    }
                    Want::Message(id) => Loaded::Message(match bytes_of(v)? {
                        None => None,
                        Some(b) => decode_index(id, &b, self.ttl_secs, newest)?,
                    }),
                    Want::Name(_) => {
                        Loaded::Name(bytes_of(v)?.and_then(|b| serde_json::from_slice(&b).ok()))
                    }
                })
            })
            .collect()
    }

    /// [`crate::store::ReputationStore::apply_async`]: the writes of one
    /// message in one flight, then the key index of the records new to
    /// the store.
    pub(super) async fn write_async(&self, update: Update) -> Result<(), StoreError> {
        if update.is_empty() {
            return Ok(());
        }
        let w = self.write_cmds(&update)?;
        let values = self.send_async(&w.cmds).await;
        self.forget(&update);
        let index = self.index_cmds(&update, &w, &values?)?;
        self.send_async(&index).await?;
        crate::store::ReputationStore::observe_time(self, w.newest);
        Ok(())
    }

    /// How many cluster masters the milter's flights reach directly (when
    /// their map is known) and how many commands a master refused, since
    /// the connection opened (`None`: not a cluster, or no flight yet).
    pub(super) fn masters_reached(&self) -> Option<(Option<usize>, u64)> {
        match &self.async_conn.try_lock().ok()?.conn {
            Some(AsyncConn::Cluster(_, masters)) => Some(masters.known()),
            _ => None,
        }
    }

    /// A record read within the read cache's time.
    pub(super) fn cached(&self, kind: Kind, key: &str) -> Option<Record> {
        let recent = self.recent_lock();
        let (at, r) = recent.get(&(kind, key.to_string()))?;
        (at.elapsed() < super::READ_CACHE_TTL).then(|| r.clone())
    }
}

/// The bytes of a `GET` reply (`None`: no such key).
fn bytes_of(v: Value) -> Result<Option<Vec<u8>>, StoreError> {
    redis::from_redis_value(v).map_err(|_| StoreError::Redis("unexpected reply for a GET".into()))
}
