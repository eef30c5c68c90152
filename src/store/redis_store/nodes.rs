//! A cluster flight's commands, one pipeline per master.
//!
//! redis-rs's cluster connection routes each command on its own: its
//! pipelines must keep to one slot, and a message's keys are in many. It
//! cannot be given a pipeline per master either: when one command of a
//! pipeline meets `MOVED` or `ASK`, it sends the whole pipeline again to
//! the new node, so the merges that had run would run twice.
//!
//! So a flight to a cluster is grouped here by the master that owns each
//! command's slot (the map read with `CLUSTER SLOTS`), and each group goes
//! as one pipeline on a multiplexed connection to its master. A command a
//! master refused without running it (`MOVED`, `ASK`, `TRYAGAIN`,
//! `CLUSTERDOWN`, `MASTERDOWN`, `LOADING`, `READONLY`) is sent again on its
//! own through the cluster connection, which follows redirections; nothing
//! that ran is sent again. A refusal, a broken connection or a timeout drops
//! the map; it is read again in the background (at most once a second),
//! and until then every command goes through the cluster connection, as a
//! command the map does not place does.

use super::conn::{async_config, node_url, single_client};
use crate::config::RedisConfig;
use redis::aio::MultiplexedConnection;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{Cmd, ErrorKind, RedisResult, RetryMethod, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Hash slots in a Redis Cluster.
const SLOTS: usize = 16384;
/// A slot no master is known for.
const NOBODY: u16 = u16::MAX;
/// The map is read at most this often.
const READ_AGAIN_AFTER: Duration = Duration::from_secs(1);

/// Which master owns each slot, and a connection to each master.
struct Map {
    owner: Vec<u16>,
    masters: Vec<MultiplexedConnection>,
}

#[derive(Default)]
struct State {
    map: Option<Arc<Map>>,
    reading: bool,
    last_read: Option<Instant>,
    /// The last read failed and was logged as a warning.
    warned: bool,
}

/// The cluster's masters as the milter's flights reach them.
pub(super) struct Masters {
    cfg: RedisConfig,
    state: Mutex<State>,
    /// Commands a master refused, sent again through the cluster connection.
    redirected: AtomicU64,
}

impl Masters {
    pub(super) fn new(cfg: RedisConfig) -> Arc<Masters> {
        Arc::new(Masters {
            cfg,
            state: Mutex::new(State::default()),
            redirected: AtomicU64::new(0),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The map when known; otherwise it starts reading it (in the
    /// background) and answers `None`.
    fn map(self: &Arc<Self>, cluster: &ClusterConnection) -> Option<Arc<Map>> {
        let mut s = self.lock();
        if let Some(m) = &s.map {
            return Some(m.clone());
        }
        let due = s.last_read.is_none_or(|t| t.elapsed() >= READ_AGAIN_AFTER);
        if !s.reading && due {
            s.reading = true;
            s.last_read = Some(Instant::now());
            let (me, cluster) = (self.clone(), cluster.clone());
            tokio::spawn(async move {
                let limit = me.cfg.connect_timeout.0 + me.cfg.command_timeout.0;
                let read = tokio::time::timeout(limit, me.read_map(cluster)).await;
                let mut s = me.lock();
                s.reading = false;
                let why = match read {
                    Ok(Ok(map)) => {
                        s.map = Some(Arc::new(map));
                        s.warned = false;
                        return;
                    }
                    Ok(Err(e)) => e,
                    Err(_) => format!("no answer within {limit:?}"),
                };
                // Once per failing spell: the flights still work, command
                // by command.
                if s.warned {
                    tracing::debug!("store: cluster masters' map not read: {why}");
                } else {
                    s.warned = true;
                    tracing::warn!(
                        "store: cluster masters' map not read ({why}); flights go command by command, trying again every {READ_AGAIN_AFTER:?}"
                    );
                }
            });
        }
        None
    }

    /// How many masters the flights reach directly (`None`: the map is not
    /// known now), and how many commands a master refused so far.
    pub(super) fn known(&self) -> (Option<usize>, u64) {
        let masters = self.lock().map.as_ref().map(|m| m.masters.len());
        (masters, self.redirected.load(Ordering::Relaxed))
    }

    /// Drops the map (stale, or a master's connection broke).
    fn forget(&self) {
        self.lock().map = None;
    }

    async fn read_map(&self, mut cluster: ClusterConnection) -> Result<Map, String> {
        let random = RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random);
        let slots = cluster
            .route_command(redis::cmd("CLUSTER").arg("SLOTS").clone(), random)
            .await
            .map_err(|e| e.to_string())?;
        let config = async_config(&self.cfg);
        let mut owner = vec![NOBODY; SLOTS];
        let mut index: HashMap<String, u16> = HashMap::new();
        let mut masters = Vec::new();
        for (first, last, addr) in slot_ranges(&slots)? {
            let n = match index.get(&addr) {
                Some(n) => *n,
                None => {
                    let url = node_url(&self.cfg, &addr);
                    let client = single_client(&url, &self.cfg).map_err(|e| e.to_string())?;
                    let conn = client
                        .get_multiplexed_async_connection_with_config(&config)
                        .await
                        .map_err(|e| format!("{addr}: {e}"))?;
                    masters.push(conn);
                    let n = (masters.len() - 1) as u16;
                    index.insert(addr, n);
                    n
                }
            };
            owner[first..=last].fill(n);
        }
        Ok(Map { owner, masters })
    }

    /// Sends `cmds` and answers each one's reply, in order (see the
    /// module's text).
    pub(super) async fn send(
        self: &Arc<Self>,
        cluster: &ClusterConnection,
        cmds: &[Cmd],
    ) -> Vec<RedisResult<Value>> {
        let mut out: Vec<Option<RedisResult<Value>>> = (0..cmds.len()).map(|_| None).collect();
        let mut alone = Vec::new();
        if let Some(map) = self.map(cluster) {
            let mut groups: Vec<Vec<usize>> = vec![Vec::new(); map.masters.len()];
            for (i, c) in cmds.iter().enumerate() {
                match slot_of(c).map(|s| map.owner[s]) {
                    Some(n) if n != NOBODY => groups[n as usize].push(i),
                    _ => alone.push(i),
                }
            }
            let flights = groups
                .iter()
                .zip(&map.masters)
                .filter(|(g, _)| !g.is_empty())
                .map(|(g, conn)| {
                    let mut conn = conn.clone();
                    let mut p = redis::pipe();
                    for i in g {
                        p.add_command(cmds[*i].clone());
                    }
                    async move {
                        let replies: RedisResult<Vec<RedisResult<Value>>> =
                            p.ignore_errors().query_async(&mut conn).await;
                        (g, replies)
                    }
                });
            let mut stale = false;
            for (g, replies) in futures_util::future::join_all(flights).await {
                match replies {
                    Ok(replies) if replies.len() == g.len() => {
                        for (i, r) in g.iter().zip(replies) {
                            match r {
                                Err(e) if refused(&e) => {
                                    stale = true;
                                    self.redirected.fetch_add(1, Ordering::Relaxed);
                                    alone.push(*i);
                                }
                                r => out[*i] = Some(r),
                            }
                        }
                    }
                    Ok(_) => {
                        stale = true;
                        for i in g {
                            out[*i] = Some(Err(broken("fewer replies than commands")));
                        }
                    }
                    // Whether these ran is not known: they fail, as a
                    // command on a broken connection does. A timeout drops
                    // the map too: the master may have been replaced
                    // while unreachable, which only the cluster's routing
                    // and a new map learn.
                    Err(e) => {
                        stale = true;
                        for i in g {
                            out[*i] = Some(Err(e.clone()));
                        }
                    }
                }
            }
            if stale {
                self.forget();
            }
        } else {
            alone.extend(0..cmds.len());
        }
        let one_by_one = alone.iter().map(|i| {
            let mut c = cluster.clone();
            async move { (*i, cmds[*i].query_async::<Value>(&mut c).await) }
        });
        for (i, r) in futures_util::future::join_all(one_by_one).await {
            out[i] = Some(r);
        }
        out.into_iter()
            .map(|r| r.unwrap_or_else(|| Err(broken("no reply"))))
            .collect()
    }
}

fn broken(what: &'static str) -> redis::RedisError {
    redis::RedisError::from((ErrorKind::Client, what))
}

/// A master said no without running the command: the slot is elsewhere
/// (`MOVED`, `ASK`), in migration (`TRYAGAIN`), or the cluster or the
/// node cannot serve it now.
fn refused(e: &redis::RedisError) -> bool {
    matches!(e.kind(), ErrorKind::Server(_))
        && matches!(
            e.retry_method(),
            RetryMethod::MovedRedirect
                | RetryMethod::AskRedirect
                | RetryMethod::WaitAndRetry
                | RetryMethod::RefreshSlotsAndRetry
        )
}

/// The slot of a flight's command: of its key, the first argument (the
/// third of a function call). `None` for a command not known here.
fn slot_of(c: &Cmd) -> Option<usize> {
    let mut args = c.args_iter().map(|a| match a {
        redis::Arg::Simple(b) => Some(b),
        _ => None,
    });
    let name = args.next()??;
    let key = match name.to_ascii_uppercase().as_slice() {
        b"FCALL" | b"FCALL_RO" => args.nth(2)??,
        b"GET" | b"SET" | b"SADD" | b"ZADD" | b"ZREM" | b"HSETNX" => args.next()??,
        _ => return None,
    };
    Some(key_slot(key))
}

/// Redis Cluster's slot of `key`: CRC16 (XMODEM) of its hash tag (the
/// part between the first `{` and the next `}`, when not empty) or of the
/// whole key, modulo 16384.
fn key_slot(key: &[u8]) -> usize {
    let tagged = key.iter().position(|b| *b == b'{').and_then(|open| {
        let rest = &key[open + 1..];
        let close = rest.iter().position(|b| *b == b'}')?;
        (close > 0).then(|| &rest[..close])
    });
    usize::from(crc16::State::<crc16::XMODEM>::calculate(
        tagged.unwrap_or(key),
    )) % SLOTS
}

/// `CLUSTER SLOTS`' ranges: first slot, last slot, and the master's
/// `host:port`.
fn slot_ranges(v: &Value) -> Result<Vec<(usize, usize, String)>, String> {
    let bad = || "unexpected reply to CLUSTER SLOTS".to_string();
    let Value::Array(ranges) = v else {
        return Err(bad());
    };
    ranges
        .iter()
        .map(|r| {
            let Value::Array(r) = r else {
                return Err(bad());
            };
            let (Some(Value::Int(first)), Some(Value::Int(last)), Some(Value::Array(master))) =
                (r.first(), r.get(1), r.get(2))
            else {
                return Err(bad());
            };
            let host = match master.first() {
                Some(Value::BulkString(h)) => String::from_utf8_lossy(h).into_owned(),
                Some(Value::SimpleString(h)) => h.clone(),
                _ => return Err(bad()),
            };
            let Some(Value::Int(port)) = master.get(1) else {
                return Err(bad());
            };
            let in_range = |n: i64| usize::try_from(n).ok().filter(|n| *n < SLOTS);
            let (Some(first), Some(last)) = (in_range(*first), in_range(*last)) else {
                return Err(bad());
            };
            // An unknown endpoint ("?" or empty): the map is not usable.
            if host.is_empty() || host == "?" || first > last {
                return Err(bad());
            }
            let addr = if host.contains(':') {
                format!("[{host}]:{port}")
            } else {
                format!("{host}:{port}")
            };
            Ok((first, last, addr))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The slots of Redis Cluster's specification (CRC16 XMODEM, hash
    /// tags), as `CLUSTER KEYSLOT` answers them.
    #[test]
    fn slots_as_the_cluster_computes_them() {
        // `redis-cli cluster keyslot KEY` of Redis 7.
        assert_eq!(key_slot(b"123456789"), 12739);
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"foo{}{bar}"), 8363);
        assert_eq!(key_slot(b"foo{{bar}}zap"), 4015);
        assert_eq!(key_slot(b"k:s:a@b"), 3038);
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        assert_eq!(key_slot(b"foo{bar}{zap}"), key_slot(b"bar"));
        let merge = redis::cmd("FCALL")
            .arg("sra_merge_2")
            .arg(2)
            .arg("p:{k:s:a@b}")
            .arg("p:{k:s:a@b}:z1")
            .clone();
        assert_eq!(slot_of(&merge), Some(key_slot(b"k:s:a@b")));
        let set = redis::cmd("SET").arg("p:{x:id}").arg("v").clone();
        assert_eq!(slot_of(&set), Some(key_slot(b"x:id")));
        assert_eq!(slot_of(&redis::cmd("DBSIZE")), None);
    }

    #[test]
    fn a_map_with_an_unknown_endpoint_is_not_used() {
        let range = |host: &str| {
            Value::Array(vec![Value::Array(vec![
                Value::Int(0),
                Value::Int(16383),
                Value::Array(vec![
                    Value::BulkString(host.as_bytes().to_vec()),
                    Value::Int(7000),
                ]),
            ])])
        };
        assert_eq!(
            slot_ranges(&range("127.0.0.1")).unwrap(),
            vec![(0, 16383, "127.0.0.1:7000".to_string())]
        );
        assert!(slot_ranges(&range("?")).is_err());
        assert!(slot_ranges(&Value::Int(1)).is_err());
    }
}
