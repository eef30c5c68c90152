//! A stage's store work over a network store, without a thread waiting on
//! it: the stage's logic runs against a [`Snapshot`] of the records it has
//! read so far, and what it missed is loaded asynchronously before it runs
//! again.
//!
//! The logic (rating, anomalies, what a message teaches) is synchronous and
//! costs microseconds; a round trip to Redis costs far more. So
//! [`run_loaded`] runs it on the async worker against a snapshot: a read of
//! something not loaded yet answers *empty* (a record with no history, no
//! message, no name) and is noted, so that one run names every read it can
//! reach; the notes are loaded in one go ([`ReputationStore::load`], all
//! keys at once), and the logic runs again. Only a run that missed nothing
//! counts: its writes, held until then, go out in one asynchronous write
//! ([`ReputationStore::apply_async`]). A message needs two or three runs:
//! the second sees what the first named (sender, domain, MTA, the replied
//! messages), the third what those lead to (a pair record, a replied
//! message's author). What the store keeps in memory from an earlier
//! stage ([`ReputationStore::peek`]: the MTA read at connect, the sender
//! and its domain at MAIL) the first run sees as it is, so it follows the
//! path the real records lead down and names fewer reads it will not need.
//!
//! The embedded store does not come here: its reads take microseconds and
//! the logic reads it directly.

use super::{
    IndexEntry, Item, Kind, NameEntry, Override, Record, ReputationStore, StoreError, Update,
};
use crate::vocab::Target;
use std::borrow::Cow;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};

/// What an asynchronous store call returns.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Something a stage reads.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Want {
    Record(Kind, String),
    Message(String),
    Name(String),
}

/// What was read for a [`Want`], in its order.
#[derive(Clone, Debug, PartialEq)]
pub enum Loaded {
    Record(Record),
    Message(Option<IndexEntry>),
    Name(Option<NameEntry>),
}

impl Want {
    /// Reads it from `store` (synchronously).
    pub fn read<S: ReputationStore + ?Sized>(&self, store: &S) -> Result<Loaded, StoreError> {
        Ok(match self {
            Want::Record(kind, key) => Loaded::Record(store.record(*kind, key)?),
            Want::Message(id) => Loaded::Message(store.message(id)?),
            Want::Name(n) => Loaded::Name(store.name(n)?),
        })
    }
}

/// Runs after this many runs that still missed something are an error
/// (answered per `on_error`): a message's reads lead two or three deep.
const MAX_RUNS: usize = 8;

/// Runs `logic` against a snapshot of `store` until a run reads only what
/// is loaded, loading what each run missed; then writes what that run
/// wrote. `logic` may run several times: it must only read and write
/// through the store it is given.
pub async fn run_loaded<T>(
    store: &Arc<dyn ReputationStore>,
    logic: impl Fn(Arc<dyn ReputationStore>) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let snap = Arc::new(Snapshot::new(store.clone()));
    for _ in 0..MAX_RUNS {
        let result = logic(snap.clone());
        let (missing, updates) = snap.end_run();
        if missing.is_empty() {
            let value = result?;
            for u in updates {
                store.apply_async(u).await?;
            }
            return Ok(value);
        }
        let loaded = store.load(missing.clone()).await?;
        snap.add(missing, loaded)?;
    }
    Err(StoreError::Task(format!(
        "the stage still read records not loaded after {MAX_RUNS} runs"
    )))
}

/// The records one stage has read, over the store they came from.
pub struct Snapshot {
    base: Arc<dyn ReputationStore>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    loaded: HashMap<Want, Loaded>,
    /// Read in this run and not loaded (each once, in the order read).
    missing: Vec<Want>,
    /// Written in this run.
    updates: Vec<Update>,
}

impl Snapshot {
    pub fn new(base: Arc<dyn ReputationStore>) -> Snapshot {
        Snapshot {
            base,
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What this run missed and what it wrote; the next run starts clean.
    pub fn end_run(&self) -> (Vec<Want>, Vec<Update>) {
        let mut s = self.lock();
        (
            std::mem::take(&mut s.missing),
            std::mem::take(&mut s.updates),
        )
    }

    /// Adds what was loaded for `wants` (in their order).
    pub fn add(&self, wants: Vec<Want>, loaded: Vec<Loaded>) -> Result<(), StoreError> {
        if wants.len() != loaded.len() {
            return Err(StoreError::Task(format!(
                "{} reads asked, {} answered",
                wants.len(),
                loaded.len()
            )));
        }
        self.lock().loaded.extend(wants.into_iter().zip(loaded));
        Ok(())
    }

    /// The loaded value of `want` (or one the store keeps in memory), or
    /// a note that it is missing.
    fn get(&self, want: Want) -> Option<Loaded> {
        let mut s = self.lock();
        if let Some(v) = s.loaded.get(&want) {
            return Some(v.clone());
        }
        if let Some(v) = self.base.peek(&want) {
            s.loaded.insert(want, v.clone());
            return Some(v);
        }
        if !s.missing.contains(&want) {
            s.missing.push(want);
        }
        None
    }
}

/// Reads answer from the snapshot (empty when not loaded); writes are held
/// for [`run_loaded`]. What no stage calls goes to the store underneath.
impl ReputationStore for Snapshot {
    fn record(&self, kind: Kind, key: &str) -> Result<Record, StoreError> {
        Ok(match self.get(Want::Record(kind, key.to_string())) {
            Some(Loaded::Record(r)) => r,
            _ => Record::default(),
        })
    }

    fn message(&self, id: &str) -> Result<Option<IndexEntry>, StoreError> {
        Ok(match self.get(Want::Message(id.to_string())) {
            Some(Loaded::Message(m)) => m,
            _ => None,
        })
    }

    fn name(&self, normalized: &str) -> Result<Option<NameEntry>, StoreError> {
        Ok(match self.get(Want::Name(normalized.to_string())) {
            Some(Loaded::Name(n)) => n,
            _ => None,
        })
    }

    fn apply(&self, update: &Update) -> Result<(), StoreError> {
        self.lock().updates.push(update.clone());
        Ok(())
    }

    fn observe_time(&self, time: u64) {
        self.base.observe_time(time)
    }

    fn address_key<'a>(&self, addr: &'a str) -> Cow<'a, str> {
        self.base.address_key(addr)
    }

    fn is_embedded(&self) -> bool {
        self.base.is_embedded()
    }

    fn overrides(&self) -> Result<Vec<Override>, StoreError> {
        self.base.overrides()
    }

    fn set_override(&self, o: &Override) -> Result<(), StoreError> {
        self.base.set_override(o)
    }

    fn remove_override(&self, target: &Target) -> Result<bool, StoreError> {
        self.base.remove_override(target)
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.base.flush()
    }

    fn engagement_due(
        &self,
        until: u64,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, u64, String)>, StoreError> {
        self.base.engagement_due(until, limit)
    }

    fn engagement_since(&self) -> Result<Option<u64>, StoreError> {
        self.base.engagement_since()
    }

    fn pairs_of(&self, sender: &str, limit: usize) -> Result<Vec<(String, Record)>, StoreError> {
        self.base.pairs_of(sender, limit)
    }

    fn stats(&self) -> Vec<(String, u64)> {
        self.base.stats()
    }

    fn scan(&self, kind: Kind, f: &mut dyn FnMut(&str, &Record)) -> Result<(), StoreError> {
        self.base.scan(kind, f)
    }

    fn export(&self, f: &mut dyn FnMut(Item) -> Result<(), StoreError>) -> Result<(), StoreError> {
        self.base.export(f)
    }

    fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.base.meta(key)
    }

    fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.base.set_meta(key, value)
    }
}

#[cfg(all(test, feature = "rocksdb"))]
mod tests {
    use super::*;
    use crate::store::{Counter, RocksStore};
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn block_on<T>(f: impl Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    fn counted(n: u64) -> Update {
        let mut r = Record::seen_at(1_800_000_000);
        r.add(Counter::MessagesReceived, n);
        Update {
            records: vec![(Kind::Sender, "a@one.example".into(), r)],
            ..Update::default()
        }
    }

    /// A stage's logic: reads the sender; one with history leads to its
    /// domain's record; writes one message.
    fn logic(store: &dyn ReputationStore, runs: &AtomicUsize) -> Result<u64, StoreError> {
        runs.fetch_add(1, Ordering::Relaxed);
        let seen = store
            .record(Kind::Sender, "a@one.example")?
            .count(Counter::MessagesReceived);
        let domain = if seen > 0 {
            store
                .record(Kind::Domain, "one.example")?
                .count(Counter::MessagesReceived)
        } else {
            0
        };
        store.apply(&counted(1))?;
        Ok(seen * 100 + domain)
    }

    #[test]
    fn a_run_that_missed_a_read_runs_again_and_only_the_last_run_writes() {
        let dir = tempfile::tempdir().unwrap();
        let rocks = RocksStore::open(dir.path(), 86400).unwrap();
        let mut u = counted(2);
        let mut d = Record::seen_at(1_800_000_000);
        d.add(Counter::MessagesReceived, 7);
        u.records.push((Kind::Domain, "one.example".into(), d));
        rocks.apply(&u).unwrap();
        let store: Arc<dyn ReputationStore> = Arc::new(rocks);
        let runs = AtomicUsize::new(0);

        let value = block_on(run_loaded(&store, |s| logic(s.as_ref(), &runs))).unwrap();
        assert_eq!(
            value, 207,
            "the answer is the one the stored records give, not the empty first run's"
        );
        assert_eq!(
            runs.load(Ordering::Relaxed),
            3,
            "sender missed, then the domain it led to, then none"
        );
        assert_eq!(
            store
                .record(Kind::Sender, "a@one.example")
                .unwrap()
                .count(Counter::MessagesReceived),
            3,
            "the message was written once (2 + 1), not once per run"
        );
    }

    #[test]
    fn a_failing_run_that_missed_nothing_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn ReputationStore> =
            Arc::new(RocksStore::open(dir.path(), 86400).unwrap());
        let r: Result<(), StoreError> = block_on(run_loaded(&store, |s| {
            s.apply(&counted(1))?;
            Err(StoreError::Task("the logic failed".into()))
        }));
        assert!(matches!(r, Err(StoreError::Task(m)) if m == "the logic failed"));
        assert!(store
            .record(Kind::Sender, "a@one.example")
            .unwrap()
            .is_empty());
    }

    #[test]
    fn logic_that_never_stops_missing_is_an_error_not_a_loop() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn ReputationStore> =
            Arc::new(RocksStore::open(dir.path(), 86400).unwrap());
        let runs = AtomicUsize::new(0);
        let r = block_on(run_loaded(&store, |s| {
            let n = runs.fetch_add(1, Ordering::Relaxed);
            s.record(Kind::Sender, &format!("{n}@one.example"))
        }));
        assert!(matches!(r, Err(StoreError::Task(_))), "{r:?}");
        assert_eq!(runs.load(Ordering::Relaxed), MAX_RUNS);
    }
}
