//! The reputation store: the trait every backend implements, and the types
//! that cross it. The only layer that knows keys and bytes on disk.
//!
//! The embedded backend is RocksDB ([`RocksStore`]); replay writes through
//! a [`BatchingStore`] over any backend. Column families (names are on-disk contracts, listed once in [`CFS`]):
//!
//! | family           | key                          | value                         |
//! |------------------|------------------------------|-------------------------------|
//! | `senders`        | `alice@example.org`          | [`Record`] (merge operator)   |
//! | `sender_domains` | `example.org`                | [`Record`] (merge operator)   |
//! | `mtas`           | `192.0.2.1`, `2001:db8::/64` | [`Record`] (merge operator)   |
//! | `pairs`          | `sender \0 mta`              | [`Record`] (merge operator)   |
//! | `messages`       | Message-ID without `<>`      | time (u64 LE) + JSON [`IndexEntry`] |
//! | `overrides`      | `sender:…`, `domain:…`, `mta:…` | JSON [`Override`] |
//! | `names`          | normalised display name      | JSON [`NameEntry`]            |
//! | `engagement`     | time (u64 BE) + Message-ID   | empty: inbound mail awaiting an open or the grace period |
//! | `meta`           | `schema_version`             | decimal text                  |
//!
//! All counters of one message are written in one `WriteBatch` of merge
//! operands, so a crash never leaves half a message counted, and concurrent
//! sessions never read-modify-write. Message-index entries older than
//! `message_index_ttl` (measured against the newest message time the store
//! has seen, so replayed archives age by their own clock) are ignored on
//! read and dropped by a compaction filter.
//!
//! The calls here block; async callers go through [`run_blocking`].

mod batching;
mod copy;
mod identity;
mod record;
#[cfg(feature = "redis")]
mod redis_store;
#[cfg(feature = "rocksdb")]
mod rocks;
mod snapshot;

pub use batching::BatchingStore;
pub use copy::{copy, ensure_empty, CopyReport};
pub use identity::{is_empty, with_identity_key, IdentityKey, KeyedStore, META_IDENTITY};
pub use record::{stable_hash, Counter, DecodeError, Record, SetKind, DISTINCT_K};
#[cfg(feature = "redis")]
pub use redis_store::RedisStore;
#[cfg(feature = "rocksdb")]
pub use rocks::RocksStore;
pub use snapshot::{run_loaded, Loaded, StoreFuture, Want};

/// Opens the store `[store]` names, for writing: RocksDB under
/// `state_dir`, or Redis; behind its identity key when one is set.
#[cfg(all(feature = "rocksdb", feature = "redis"))]
pub fn open(
    cfg: &crate::config::Config,
) -> Result<std::sync::Arc<dyn ReputationStore>, StoreError> {
    open_with(cfg, false, None)
}

/// Opens the store `[store]` names for reading beside a running daemon:
/// RocksDB read-only (Redis is shared anyway).
#[cfg(all(feature = "rocksdb", feature = "redis"))]
pub fn open_read_only(
    cfg: &crate::config::Config,
) -> Result<std::sync::Arc<dyn ReputationStore>, StoreError> {
    open_with(cfg, true, None)
}

/// Opens the store `[store]` names, RocksDB read-only when `read_only`
/// (Redis is then only not marked with the identity key), writing through
/// a [`BatchingStore`] of `batch` messages when one is asked for. The
/// identity key, when set, is in front of all: what the batch holds is
/// what the store will.
#[cfg(all(feature = "rocksdb", feature = "redis"))]
pub fn open_with(
    cfg: &crate::config::Config,
    read_only: bool,
    batch: Option<usize>,
) -> Result<std::sync::Arc<dyn ReputationStore>, StoreError> {
    let ttl = cfg.message_index_ttl.0.as_secs();
    let key = IdentityKey::from_config(&cfg.store).map_err(StoreError::Identity)?;
    let inner: std::sync::Arc<dyn ReputationStore> = match cfg.store.backend {
        crate::config::Backend::Rocksdb if read_only => {
            std::sync::Arc::new(RocksStore::open_read_only(&cfg.state_dir, ttl)?)
        }
        crate::config::Backend::Rocksdb => {
            std::sync::Arc::new(RocksStore::open(&cfg.state_dir, ttl)?)
        }
        crate::config::Backend::Redis => {
            std::sync::Arc::new(RedisStore::open(&cfg.store.redis, ttl)?)
        }
    };
    let inner: std::sync::Arc<dyn ReputationStore> = match batch {
        Some(n) => std::sync::Arc::new(BatchingStore::new(inner, n)),
        None => inner,
    };
    with_identity_key(inner, key, !read_only)
}

use crate::vocab::{Class, Direction, Target};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Bump only with an explicit migration.
pub const SCHEMA_VERSION: u32 = 1;

pub const CF_SENDERS: &str = "senders";
pub const CF_DOMAINS: &str = "sender_domains";
pub const CF_MTAS: &str = "mtas";
pub const CF_PAIRS: &str = "pairs";
pub const CF_MESSAGES: &str = "messages";
pub const CF_OVERRIDES: &str = "overrides";
pub const CF_META: &str = "meta";
pub const CF_NAMES: &str = "names";
pub const CF_ENGAGEMENT: &str = "engagement";
pub const CFS: [&str; 9] = [
    CF_SENDERS,
    CF_DOMAINS,
    CF_MTAS,
    CF_PAIRS,
    CF_MESSAGES,
    CF_OVERRIDES,
    CF_META,
    CF_NAMES,
    CF_ENGAGEMENT,
];

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[cfg(feature = "rocksdb")]
    #[error("rocksdb: {0}")]
    Db(#[from] rocksdb::Error),
    #[error("redis: {0}")]
    Redis(String),
    #[error("{0}")]
    Decode(#[from] record::DecodeError),
    #[error("corrupt message index entry for {0}")]
    BadIndex(String),
    #[error("store schema version {found} at {path}, this sra-milter uses {SCHEMA_VERSION}: refusing to open (an explicit migration is needed)")]
    Schema { found: String, path: PathBuf },
    #[error("{0}")]
    Io(String),
    #[error("identity key: {0}")]
    Identity(String),
    #[error("the store is open read-only")]
    ReadOnly,
    #[error("the store at {0} is in use by another process (a running sra-milter?): stop it, or use another --state-dir")]
    Locked(PathBuf),
    #[error("store task failed: {0}")]
    Task(String),
    #[error("cannot write the store at {path}: {reason}: refusing to start (the state_dir and its files must belong to the user sra-milter runs as, on a writable file system)")]
    Unwritable { path: PathBuf, reason: String },
    #[error("the store at {path} is damaged ({detail}): refusing to open it; restore it from a backup, or move it aside to start an empty one")]
    Damaged { path: PathBuf, detail: String },
    #[error("{path} is not an sra-milter store (it holds {found} but no RocksDB CURRENT file): refusing to open or initialise it; restore the store, or point state_dir at an empty directory")]
    NotAStore { path: PathBuf, found: String },
}

/// Which record family a key belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Sender,
    Domain,
    Mta,
    Pair,
}

pub fn pair_key(sender: &str, mta: &str) -> String {
    format!("{sender}\0{mta}")
}

/// What the message index remembers of a message (reply and open matching).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct IndexEntry {
    pub time: u64,
    pub direction: Direction,
    /// Sender key of the message's author.
    pub sender: String,
    /// MTA key (inbound mail only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mta: Option<String>,
    /// The MTA's network (`mta_net_key`), for the pair record an answer
    /// vouches for; entries written before it was kept derive it from
    /// `mta`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net: Option<String>,
    /// Enterprise recipients (inbound) or outside recipients (outbound).
    pub recipients: Vec<String>,
    pub has_attachment: bool,
    pub has_url: bool,
    /// An enterprise recipient opened it (counted once).
    #[serde(default, skip_serializing_if = "is_false")]
    pub opened: bool,
    /// Reported as junk (and not withdrawn).
    #[serde(default, skip_serializing_if = "is_false")]
    pub junk: bool,
    /// The grace period passed without an open and it was counted.
    #[serde(default, skip_serializing_if = "is_false")]
    pub not_opened_counted: bool,
    /// Inbound: the sender's habits this message broke, withheld from its
    /// record until the enterprise answers it (behaviour change).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub habits: Vec<String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// The engagement queue key: time first, so due entries are a prefix scan.
pub fn engagement_key(time: u64, message_id: &str) -> Vec<u8> {
    let mut k = time.to_be_bytes().to_vec();
    k.extend_from_slice(message_id.as_bytes());
    k
}

/// A message index value: the entry's time (8 bytes, little-endian, read
/// by the expiry filter without parsing) and its JSON.
pub fn encode_index(entry: &IndexEntry) -> Result<Vec<u8>, StoreError> {
    let mut v = entry.time.to_le_bytes().to_vec();
    serde_json::to_writer(&mut v, entry).map_err(|e| StoreError::Task(e.to_string()))?;
    Ok(v)
}

/// The time of a message index value.
pub fn index_time(value: &[u8]) -> Option<u64> {
    let b: [u8; 8] = value.get(..8)?.try_into().ok()?;
    Some(u64::from_le_bytes(b))
}

/// A message index value read back: `None` once it is older than `ttl`
/// by the store's clock `newest`.
pub fn decode_index(
    id: &str,
    value: &[u8],
    ttl: u64,
    newest: u64,
) -> Result<Option<IndexEntry>, StoreError> {
    let time = index_time(value).ok_or_else(|| StoreError::BadIndex(id.into()))?;
    if time.saturating_add(ttl) < newest {
        return Ok(None);
    }
    serde_json::from_slice(&value[8..])
        .map(Some)
        .map_err(|_| StoreError::BadIndex(id.into()))
}

/// Who a display name belongs to (impersonation checks).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct NameEntry {
    pub address: String,
    /// Learned from the enterprise's own outbound mail.
    pub enterprise: bool,
}

/// Record deltas gathered before a write, one per (family, key), merged as
/// they come (events of one batch, the pending messages of a replay batch).
#[derive(Clone, Debug, Default)]
pub struct Deltas(std::collections::HashMap<(Kind, String), Record>);

impl Deltas {
    pub fn merge(&mut self, kind: Kind, key: &str, delta: &Record) {
        match self.0.get_mut(&(kind, key.to_string())) {
            Some(r) => r.merge(delta),
            None => {
                self.0.insert((kind, key.to_string()), delta.clone());
            }
        }
    }

    pub fn get(&self, kind: Kind, key: &str) -> Option<&Record> {
        self.0.get(&(kind, key.to_string()))
    }

    pub fn into_records(self) -> Vec<(Kind, String, Record)> {
        self.0
            .into_iter()
            .map(|((k, key), r)| (k, key, r))
            .collect()
    }
}

/// Everything one message changes, written atomically.
#[derive(Clone, Debug, Default)]
pub struct Update {
    pub records: Vec<(Kind, String, Record)>,
    pub messages: Vec<(String, IndexEntry)>,
    pub names: Vec<(String, NameEntry)>,
    /// Engagement queue keys to add / remove.
    pub engagement_add: Vec<Vec<u8>>,
    pub engagement_del: Vec<Vec<u8>>,
    /// The first engagement event: from then on, unopened mail counts.
    pub engagement_since: Option<u64>,
}

impl Update {
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
            && self.messages.is_empty()
            && self.names.is_empty()
            && self.engagement_add.is_empty()
            && self.engagement_del.is_empty()
            && self.engagement_since.is_none()
    }
}

/// Store operations the rating pipeline needs. Implemented by RocksDB here;
/// a shared backend for several MX hosts can implement it too.
pub trait ReputationStore: Send + Sync + 'static {
    fn record(&self, kind: Kind, key: &str) -> Result<Record, StoreError>;
    fn message(&self, id: &str) -> Result<Option<IndexEntry>, StoreError>;
    fn apply(&self, update: &Update) -> Result<(), StoreError>;
    fn overrides(&self) -> Result<Vec<Override>, StoreError>;
    fn set_override(&self, o: &Override) -> Result<(), StoreError>;
    fn remove_override(&self, target: &Target) -> Result<bool, StoreError>;
    fn flush(&self) -> Result<(), StoreError>;
    fn name(&self, normalized: &str) -> Result<Option<NameEntry>, StoreError>;
    /// Engagement queue entries due at `until` (time ≤ until), oldest
    /// first, at most `limit`: (key, time, Message-ID).
    fn engagement_due(
        &self,
        until: u64,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, u64, String)>, StoreError>;
    /// When the first engagement event arrived, if one has.
    fn engagement_since(&self) -> Result<Option<u64>, StoreError>;
    /// The sender×MTA pair records of a sender (MTA keys and `net:` keys),
    /// at most `limit`.
    fn pairs_of(&self, sender: &str, limit: usize) -> Result<Vec<(String, Record)>, StoreError>;
    /// Moves the clock of index expiry to at least `time` (replay sets it
    /// from the mail it reads).
    fn observe_time(&self, time: u64);
    /// Size figures for metrics: `keys:<family>` and `bytes:<kind>`.
    fn stats(&self) -> Vec<(String, u64)>;
    /// Calls `f` for every record of `kind` (background scans only).
    fn scan(&self, kind: Kind, f: &mut dyn FnMut(&str, &Record)) -> Result<(), StoreError>;
    /// Whether the store lives in this process (RocksDB): its reads take
    /// microseconds and never wait on a network, so a stage may make them
    /// on the async runtime's worker instead of the blocking pool.
    fn is_embedded(&self) -> bool {
        false
    }
    /// Calls `f` for everything the store holds (`store copy`).
    fn export(&self, f: &mut dyn FnMut(Item) -> Result<(), StoreError>) -> Result<(), StoreError>;
    /// The form the store keeps an address in: itself, or its keyed hash
    /// under `[store] identity_key_file`. Idempotent: compare an address
    /// read from the store with one from the mail by this of both.
    fn address_key<'a>(&self, addr: &'a str) -> std::borrow::Cow<'a, str> {
        std::borrow::Cow::Borrowed(addr)
    }
    /// A value of the store's own meta data (`identity_key`).
    fn meta(&self, key: &str) -> Result<Option<String>, StoreError>;
    fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError>;
    /// Reads `wants` (answers in their order) for [`run_loaded`]; a store
    /// that waits on a network does so without holding a thread, with
    /// the reads in flight together. By default: read one by one, now.
    fn load(&self, wants: Vec<Want>) -> StoreFuture<'_, Vec<Loaded>> {
        let loaded = wants.iter().map(|w| w.read(self)).collect();
        Box::pin(std::future::ready(loaded))
    }
    /// What `want` is known to hold without asking anyone (a read the
    /// store keeps in memory), for [`run_loaded`]'s first run. By
    /// default: nothing.
    fn peek(&self, want: &Want) -> Option<Loaded> {
        let _ = want;
        None
    }
    /// [`ReputationStore::apply`] without holding a thread while the
    /// network answers. By default: apply now.
    fn apply_async(&self, update: Update) -> StoreFuture<'_, ()> {
        Box::pin(std::future::ready(self.apply(&update)))
    }
}

/// One thing a store holds, as [`ReputationStore::export`] hands it out.
#[derive(Clone, Debug, PartialEq)]
pub enum Item {
    Record(Kind, String, Record),
    Message(String, IndexEntry),
    Name(String, NameEntry),
    Override(Override),
    /// An engagement queue key ([`engagement_key`]).
    Engagement(Vec<u8>),
    EngagementSince(u64),
}

impl Item {
    /// The name of the item's kind, for counts.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Item::Record(Kind::Sender, ..) => "sender records",
            Item::Record(Kind::Domain, ..) => "domain records",
            Item::Record(Kind::Mta, ..) => "MTA records",
            Item::Record(Kind::Pair, ..) => "sender×MTA records",
            Item::Message(..) => "message index entries",
            Item::Name(..) => "display names",
            Item::Override(..) => "overrides",
            Item::Engagement(..) => "engagement queue entries",
            Item::EngagementSince(..) => "engagement start",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Override {
    pub target: Target,
    pub class: Class,
    #[serde(default)]
    pub reason: String,
    /// Unix seconds when it was set.
    #[serde(default)]
    pub time: u64,
    /// `store` (set with `sra-milter override`) or `config`.
    #[serde(default = "default_source")]
    pub source: String,
}

fn default_source() -> String {
    "store".into()
}

/// Runs blocking store work on the blocking pool (never on the async
/// runtime's workers). A task that panicked or was cancelled is a
/// [`StoreError::Task`], so callers handle one error type.
pub async fn run_blocking<T, F>(f: F) -> Result<T, StoreError>
where
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
    T: Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => Err(StoreError::Task(e.to_string())),
    }
}

impl StoreError {
    /// The metrics label of an error: `internal` for a failed task, `store`
    /// for the store itself.
    pub fn kind(&self) -> &'static str {
        match self {
            StoreError::Task(_) => "internal",
            _ => "store",
        }
    }
}
