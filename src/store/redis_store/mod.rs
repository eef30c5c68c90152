//! The shared backend: a Redis server or a Redis Cluster, so that several
//! mail hosts (MX and submission) keep one reputation.
//!
//! The same meaning as the RocksDB store, in Redis's own structures:
//!
//! - a record is a hash `P:{k:KIND:KEY}` (`f` first seen, `l` last seen,
//!   `b` label, `cTAG` counters) and one sorted set per distinct set,
//!   `P:{k:KIND:KEY}:zTAG`, holding the sketch's hashes; the hash tag puts
//!   a record's keys in one slot. A delta is merged by the Redis function
//!   `sra_merge_2` (loaded at start on every master): counters by
//!   `HINCRBY`, first/last seen by compare-and-set, the sketch by `ZADD`
//!   and a trim to its `DISTINCT_K` smallest hashes (the score is the hash's
//!   top 53 bits, exact in a double; the member the whole hash). Merges are
//!   atomic per record, so hosts never read-modify-write.
//! - the message index `P:{x:ID}` with a TTL of `message_index_ttl`; the
//!   expiry by the mail's clock is applied on read, as on RocksDB;
//! - display names `P:{n:NAME}`, overrides in the hash `P:{o}`, the schema
//!   version and the first engagement time in `P:{meta}`;
//! - the engagement queue in 16 sorted sets `P:{e:N}` (by Message-ID), so
//!   that no key is hot; a sender's pair records are listed in
//!   `P:{pi:SENDER}`; every record's key in `P:{i:KIND:N}` (16 shards), for
//!   the background scans.
//!
//! All writes of one message go in one pipeline (routed by slot in a
//! cluster); they are atomic per record, not across records. The milter's
//! stages read and write on one async multiplexed connection ([`flight`]);
//! everything else (events, sweeps, the console, the CLI) on a pool of
//! synchronous ones. A lost connection is dropped and the next operation
//! opens a new one (a read is tried once more on it at once); the cluster
//! clients follow MOVED and ASK themselves.

use super::{
    decode_index, engagement_key, record::Record, IndexEntry, Item, Kind, Loaded, NameEntry,
    Override, ReputationStore, StoreError, StoreFuture, Update, Want, DISTINCT_K, SCHEMA_VERSION,
};
use crate::config::RedisConfig;
use crate::vocab::Target;
use conn::{single_client, Conn};
use redis::cluster::ClusterClient;
use redis::{Cmd, Value};

mod conn;
mod export;
mod flight;
mod nodes;
mod write;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Shards of the engagement queue and of the key indexes.
const SHARDS: u64 = 16;
/// Distinct-set tags a record may hold (`SetKind`).
const SET_TAGS: [u8; 5] = [1, 2, 3, 4, 5];

/// The merge function (a Redis function library); its name carries the
/// version of the layout.
const LIBRARY: &str = include_str!("merge.lua");

// One per store, made at start and never moved: its size does not matter.
#[allow(clippy::large_enum_variant)]
enum Client {
    Single(redis::Client),
    Cluster(ClusterClient),
}

pub struct RedisStore {
    client: Client,
    cfg: RedisConfig,
    pool: Mutex<Vec<Conn>>,
    ttl_secs: u64,
    /// Newest message time seen: the clock for index expiry.
    newest: AtomicU64,
    /// Records read in the last [`READ_CACHE_TTL`]: one message's stages
    /// read the same sender, domain and MTA again; this host's own writes
    /// drop their keys from it.
    recent: Mutex<HashMap<(Kind, String), (Instant, Record)>>,
    /// The milter stages' connection ([`flight`]), opened on first use.
    async_conn: tokio::sync::Mutex<flight::Slot>,
}

/// How long a record read is reused. Within one message's stages; another
/// host's update shows this much later at most.
const READ_CACHE_TTL: Duration = Duration::from_millis(250);
/// Records kept for reuse at most (the map is emptied past this).
const READ_CACHE_MAX: usize = 4096;

/// The command that loads the merge functions (on every master).
fn library_cmd() -> Cmd {
    cmd("FUNCTION")
        .arg("LOAD")
        .arg("REPLACE")
        .arg(LIBRARY)
        .clone()
}

/// What is logged when a server lost the functions, before they are
/// loaded again (by either kind of connection).
const LOST_FUNCTIONS: &str =
    "store: a Redis server does not have sra-milter's functions; loading them again";

/// The server answered that it does not know one of the functions.
fn lacks_functions(e: &redis::RedisError) -> bool {
    e.to_string().contains("Function not found")
}

/// The bytes of a string reply.
fn bytes(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

/// A decimal number in a reply.
fn decimal(b: &[u8]) -> Option<u64> {
    std::str::from_utf8(b).ok()?.parse().ok()
}

fn redis_error(e: redis::RedisError) -> StoreError {
    StoreError::Redis(e.to_string())
}

fn kind_letter(kind: Kind) -> char {
    match kind {
        Kind::Sender => 's',
        Kind::Domain => 'd',
        Kind::Mta => 'm',
        Kind::Pair => 'p',
    }
}

fn shard_of(s: &str) -> u64 {
    super::stable_hash(s) % SHARDS
}

fn cmd(name: &str) -> Cmd {
    redis::cmd(name)
}

impl RedisStore {
    /// Connects, loads the merge function on every master and checks the
    /// schema version (setting it on an empty store).
    pub fn open(cfg: &RedisConfig, message_ttl_secs: u64) -> Result<RedisStore, StoreError> {
        let password = cfg.password().map_err(StoreError::Io)?;
        let user = (!cfg.username.is_empty()).then(|| cfg.username.clone());
        let client = if cfg.cluster {
            let mut b = ClusterClient::builder(cfg.nodes.clone())
                .connection_timeout(cfg.connect_timeout.0)
                .response_timeout(cfg.command_timeout.0)
                // A failed command is retried briefly (a failover, MOVED
                // and ASK are followed) and then answered per on_error: the
                // client's default of 16 retries would hold an SMTP session
                // for minutes.
                .retries(2)
                .min_retry_wait(50)
                .max_retry_wait(250);
            if let Some(u) = &user {
                b = b.username(u.clone());
            }
            if let Some(p) = &password {
                b = b.password(p.clone());
            }
            if let Some(certs) = conn::tls_certificates(cfg)? {
                b = b.certs(certs);
            }
            Client::Cluster(b.build().map_err(redis_error)?)
        } else {
            Client::Single(single_client(&cfg.nodes[0], cfg)?)
        };
        let store = RedisStore {
            client,
            cfg: cfg.clone(),
            pool: Mutex::new(Vec::new()),
            ttl_secs: message_ttl_secs,
            newest: AtomicU64::new(0),
            recent: Mutex::new(HashMap::new()),
            async_conn: tokio::sync::Mutex::new(flight::Slot::default()),
        };
        store.with(|c| c.query::<Value>(&library_cmd()).map(|_| ()))?;
        let meta = store.key("{meta}");
        let found: Option<String> =
            store.with(|c| c.query(cmd("HGET").arg(&meta).arg("schema_version")))?;
        match found {
            Some(v) if v == SCHEMA_VERSION.to_string() => {}
            Some(v) => {
                return Err(StoreError::Redis(format!(
                    "store schema version {v} under prefix {:?}, this sra-milter uses {SCHEMA_VERSION}: refusing to use it",
                    cfg.prefix
                )))
            }
            None => store.with(|c| {
                c.query::<Value>(cmd("HSETNX").arg(&meta).arg("schema_version").arg(SCHEMA_VERSION))
                    .map(|_| ())
            })?,
        }
        Ok(store)
    }

    fn connect(&self) -> redis::RedisResult<Conn> {
        let timeout = self.cfg.command_timeout.0;
        match &self.client {
            Client::Single(c) => {
                let conn = c.get_connection_with_timeout(self.cfg.connect_timeout.0)?;
                conn.set_read_timeout(Some(timeout))?;
                conn.set_write_timeout(Some(timeout))?;
                Ok(Conn::Single(conn))
            }
            Client::Cluster(c) => Ok(Conn::Cluster(Box::new(c.get_connection()?))),
        }
    }

    /// Runs `f` on a pooled connection; a connection that failed is
    /// dropped. When a pooled connection failed on its connection (the
    /// server it knew went away: a restart, a failover; not a timeout),
    /// `f` is tried once more on a new one, so `f` must be safe to repeat
    /// (see [`Self::with_once`]).
    fn with<T>(&self, f: impl Fn(&mut Conn) -> redis::RedisResult<T>) -> Result<T, StoreError> {
        match self.try_with(&f) {
            (Err(e), _) if lacks_functions(&e) => {
                self.reload_library()?;
                self.try_with(&f).0.map_err(redis_error)
            }
            (Err(e), true) if (e.is_io_error() || e.is_connection_dropped()) && !e.is_timeout() => {
                self.try_with(&f).0.map_err(redis_error)
            }
            (r, _) => r.map_err(redis_error),
        }
    }

    /// Runs `f` once on a pooled connection (for writes that must not be
    /// repeated); a connection that failed is dropped.
    fn with_once<T>(
        &self,
        f: impl Fn(&mut Conn) -> redis::RedisResult<T>,
    ) -> Result<T, StoreError> {
        let r = self.try_with(&f).0;
        if matches!(&r, Err(e) if lacks_functions(e)) {
            // Part of it may have run: answered as failed, with the
            // functions back for the next write.
            self.reload_library()?;
        }
        r.map_err(redis_error)
    }

    /// Loads the merge functions again (a server lost them).
    fn reload_library(&self) -> Result<(), StoreError> {
        tracing::warn!("{LOST_FUNCTIONS}");
        self.try_with(&|c: &mut Conn| c.query::<Value>(&library_cmd()))
            .0
            .map(|_| ())
            .map_err(redis_error)
    }

    /// `f`'s result, and whether it ran on a connection from the pool.
    fn try_with<T>(
        &self,
        f: &impl Fn(&mut Conn) -> redis::RedisResult<T>,
    ) -> (redis::RedisResult<T>, bool) {
        let pooled = self.pool.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let was_pooled = pooled.is_some();
        let mut conn = match pooled {
            Some(c) => c,
            None => match self.connect() {
                Ok(c) => c,
                Err(e) => return (Err(e), false),
            },
        };
        let r = f(&mut conn);
        if r.is_ok() && conn.is_open() {
            let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
            if pool.len() < self.cfg.pool_size {
                pool.push(conn);
            }
        }
        (r, was_pooled)
    }

    fn key(&self, rest: &str) -> String {
        format!("{}:{rest}", self.cfg.prefix)
    }

    fn record_key(&self, kind: Kind, key: &str) -> String {
        self.key(&format!("{{k:{}:{key}}}", kind_letter(kind)))
    }

    fn set_key(record: &str, tag: u8) -> String {
        format!("{record}:z{tag}")
    }

    /// The command that reads one record: its hash and its sets, in one
    /// call of the function `sra_read_2`.
    fn read_record_cmd(&self, kind: Kind, key: &str) -> Cmd {
        let rk = self.record_key(kind, key);
        let mut c = cmd("FCALL_RO");
        c.arg("sra_read_2").arg(1 + SET_TAGS.len()).arg(&rk);
        for t in SET_TAGS {
            c.arg(Self::set_key(&rk, t));
        }
        c
    }

    /// A record from the reply of [`Self::read_record_cmd`]: the hash as a
    /// flat field/value list, then each set's members as one string
    /// (a domain's sets hold hundreds of members: one reply element each
    /// would cost the client a parse and an allocation per member). Read
    /// in place from the reply's bytes.
    fn record_from(value: Value) -> Result<Record, StoreError> {
        let bad = |what: &str| StoreError::Redis(format!("unexpected reply for a record's {what}"));
        let Value::Array(values) = value else {
            return Err(StoreError::Redis("unexpected reply for a record".into()));
        };
        if values.len() != 1 + SET_TAGS.len() {
            return Err(StoreError::Redis("unexpected reply for a record".into()));
        }
        let num = |v: &Value| bytes(v).and_then(decimal).ok_or_else(|| bad("number"));
        let Value::Array(fields) = &values[0] else {
            return Err(bad("hash"));
        };
        if fields.len() % 2 != 0 {
            return Err(bad("hash"));
        }
        let mut first_seen = 0;
        let mut last_seen = 0;
        let mut label = String::new();
        let mut counts = BTreeMap::new();
        for pair in fields.chunks_exact(2) {
            let (f, v) = (bytes(&pair[0]).ok_or_else(|| bad("hash"))?, &pair[1]);
            match f {
                b"f" => first_seen = num(v)?,
                b"l" => last_seen = num(v)?,
                b"b" => {
                    label = bytes(v)
                        .and_then(|b| std::str::from_utf8(b).ok())
                        .ok_or_else(|| bad("label"))?
                        .to_string()
                }
                c => {
                    let tag = c
                        .strip_prefix(b"c")
                        .and_then(|t| std::str::from_utf8(t).ok())
                        .and_then(|t| t.parse::<u8>().ok());
                    if let Some(tag) = tag {
                        counts.insert(tag, num(v)?);
                    }
                }
            }
        }
        let mut sets = BTreeMap::new();
        for (t, members) in SET_TAGS.iter().zip(&values[1..]) {
            let members = bytes(members).ok_or_else(|| bad("set"))?;
            if members.is_empty() {
                continue;
            }
            let mut hashes = members
                .split(|b| *b == b' ')
                .map(|m| decimal(m).ok_or_else(|| bad("set")))
                .collect::<Result<Vec<u64>, _>>()?;
            hashes.sort_unstable();
            hashes.truncate(DISTINCT_K);
            sets.insert(*t, hashes);
        }
        Ok(Record::from_parts(
            first_seen, last_seen, counts, sets, label,
        ))
    }

    fn engagement_shard(&self, id: &str) -> String {
        self.key(&format!("{{e:{}}}", shard_of(id)))
    }

    fn recent_lock(&self) -> std::sync::MutexGuard<'_, HashMap<(Kind, String), (Instant, Record)>> {
        self.recent.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps a record read for [`READ_CACHE_TTL`].
    fn remember(&self, kind: Kind, key: &str, r: &Record) {
        let mut recent = self.recent_lock();
        if recent.len() >= READ_CACHE_MAX {
            recent.clear();
        }
        recent.insert((kind, key.to_string()), (Instant::now(), r.clone()));
    }

    /// The newest message time seen (the clock of index expiry).
    fn newest(&self) -> u64 {
        self.newest.load(Ordering::Relaxed)
    }

    fn message_cmd(&self, id: &str) -> Cmd {
        cmd("GET").arg(self.key(&format!("{{x:{id}}}"))).clone()
    }

    fn name_cmd(&self, normalized: &str) -> Cmd {
        cmd("GET")
            .arg(self.key(&format!("{{n:{normalized}}}")))
            .clone()
    }

    /// Reads many records in one pipeline.
    fn records(&self, kind: Kind, keys: &[String]) -> Result<Vec<Record>, StoreError> {
        let cmds: Vec<Cmd> = keys.iter().map(|k| self.read_record_cmd(kind, k)).collect();
        let values = self.with(|c| c.pipeline(&cmds))?;
        values.into_iter().map(Self::record_from).collect()
    }
}

impl ReputationStore for RedisStore {
    fn record(&self, kind: Kind, key: &str) -> Result<Record, StoreError> {
        if let Some(r) = self.cached(kind, key) {
            return Ok(r);
        }
        let c = self.read_record_cmd(kind, key);
        let value = self.with(|conn| conn.query::<Value>(&c))?;
        let r = Self::record_from(value)?;
        self.remember(kind, key, &r);
        Ok(r)
    }

    fn message(&self, id: &str) -> Result<Option<IndexEntry>, StoreError> {
        let v: Option<Vec<u8>> = self.with(|c| c.query(&self.message_cmd(id)))?;
        match v {
            None => Ok(None),
            Some(v) => decode_index(id, &v, self.ttl_secs, self.newest()),
        }
    }

    fn apply(&self, update: &Update) -> Result<(), StoreError> {
        if update.is_empty() {
            return Ok(());
        }
        let w = self.write_cmds(update)?;
        // Merges count: not repeated on a new connection.
        let values = self.with_once(|c| c.pipeline(&w.cmds));
        self.forget(update);
        let index = self.index_cmds(update, &w, &values?)?;
        self.with(|c| c.pipeline(&index))?;
        self.observe_time(w.newest);
        Ok(())
    }

    fn load(&self, wants: Vec<Want>) -> StoreFuture<'_, Vec<Loaded>> {
        Box::pin(self.load_async(wants))
    }

    fn peek(&self, want: &Want) -> Option<Loaded> {
        match want {
            Want::Record(kind, key) => self.cached(*kind, key).map(Loaded::Record),
            _ => None,
        }
    }

    fn apply_async(&self, update: Update) -> StoreFuture<'_, ()> {
        Box::pin(self.write_async(update))
    }

    fn overrides(&self) -> Result<Vec<Override>, StoreError> {
        let all: BTreeMap<String, Vec<u8>> =
            self.with(|c| c.query(cmd("HGETALL").arg(self.key("{o}"))))?;
        let mut out = Vec::new();
        for (k, v) in all {
            match serde_json::from_slice::<Override>(&v) {
                Ok(o) => out.push(o),
                Err(e) => tracing::error!("store: ignoring unreadable override {k:?}: {e}"),
            }
        }
        Ok(out)
    }

    fn set_override(&self, o: &Override) -> Result<(), StoreError> {
        let v = serde_json::to_vec(o).map_err(|e| StoreError::Task(e.to_string()))?;
        self.with(|c| {
            c.query::<Value>(
                cmd("HSET")
                    .arg(self.key("{o}"))
                    .arg(o.target.store_key())
                    .arg(&v),
            )
            .map(|_| ())
        })
    }

    fn remove_override(&self, target: &Target) -> Result<bool, StoreError> {
        let n: u64 =
            self.with(|c| c.query(cmd("HDEL").arg(self.key("{o}")).arg(target.store_key())))?;
        Ok(n > 0)
    }

    fn flush(&self) -> Result<(), StoreError> {
        // Every write is acknowledged by the server; its persistence
        // (AOF, replicas) is the server's configuration.
        Ok(())
    }

    fn name(&self, normalized: &str) -> Result<Option<NameEntry>, StoreError> {
        let v: Option<Vec<u8>> = self.with(|c| c.query(&self.name_cmd(normalized)))?;
        Ok(v.and_then(|v| serde_json::from_slice(&v).ok()))
    }

    fn engagement_due(
        &self,
        until: u64,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, u64, String)>, StoreError> {
        let cmds: Vec<Cmd> = (0..SHARDS)
            .map(|s| {
                cmd("ZRANGE")
                    .arg(self.key(&format!("{{e:{s}}}")))
                    .arg("-inf")
                    .arg(until)
                    .arg("BYSCORE")
                    .arg("LIMIT")
                    .arg(0)
                    .arg(limit)
                    .arg("WITHSCORES")
                    .clone()
            })
            .collect();
        let values = self.with(|c| c.pipeline(&cmds))?;
        let mut due = Vec::new();
        for v in &values {
            let pairs: Vec<(String, f64)> = redis::from_redis_value_ref(v)
                .map_err(|e| StoreError::Redis(format!("engagement queue: {e}")))?;
            for (id, t) in pairs {
                due.push((t as u64, id));
            }
        }
        due.sort();
        due.truncate(limit);
        Ok(due
            .into_iter()
            .map(|(t, id)| (engagement_key(t, &id), t, id))
            .collect())
    }

    fn engagement_since(&self) -> Result<Option<u64>, StoreError> {
        let v: Option<String> =
            self.with(|c| c.query(cmd("HGET").arg(self.key("{meta}")).arg("engagement_since")))?;
        Ok(v.and_then(|v| v.parse().ok()))
    }

    fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.with(|c| c.query(cmd("HGET").arg(self.key("{meta}")).arg(key)))
    }

    fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.with(|c| {
            c.query::<Value>(cmd("HSET").arg(self.key("{meta}")).arg(key).arg(value))
                .map(|_| ())
        })
    }

    fn pairs_of(&self, sender: &str, limit: usize) -> Result<Vec<(String, Record)>, StoreError> {
        let mut mtas: Vec<String> =
            self.with(|c| c.query(cmd("SMEMBERS").arg(self.key(&format!("{{pi:{sender}}}")))))?;
        mtas.sort();
        mtas.truncate(limit);
        let keys: Vec<String> = mtas.iter().map(|m| super::pair_key(sender, m)).collect();
        let records = self.records(Kind::Pair, &keys)?;
        Ok(mtas.into_iter().zip(records).collect())
    }

    fn observe_time(&self, time: u64) {
        self.newest.fetch_max(time, Ordering::Relaxed);
    }

    fn stats(&self) -> Vec<(String, u64)> {
        // DBSIZE is summed over the masters by the cluster client.
        let keys = self.with(|c| c.query::<u64>(&cmd("DBSIZE")));
        let (masters, redirected) = self.masters_reached().unwrap_or_default();
        let stats = [
            ("keys:redis", keys.ok()),
            ("masters:redis-cluster", masters.map(|n| n as u64)),
            ("redirected:redis-cluster", masters.map(|_| redirected)),
        ];
        stats
            .into_iter()
            .filter_map(|(k, v)| Some((k.into(), v?)))
            .collect()
    }

    fn export(&self, f: &mut dyn FnMut(Item) -> Result<(), StoreError>) -> Result<(), StoreError> {
        self.export_all(f)
    }

    fn scan(&self, kind: Kind, f: &mut dyn FnMut(&str, &Record)) -> Result<(), StoreError> {
        self.each_record(kind, &mut |k, r| {
            f(k, &r);
            Ok(())
        })
    }
}
