//! The embedded backend: RocksDB, one column family per record kind, an
//! associative merge operator for records, a compaction filter that expires
//! the message index.

use super::{
    decode_index, encode_index, IndexEntry, Item, Kind, NameEntry, Override, Record,
    ReputationStore, StoreError, Update, CFS, CF_ENGAGEMENT, CF_MESSAGES, CF_META, CF_NAMES,
    CF_OVERRIDES, CF_PAIRS, SCHEMA_VERSION,
};
use crate::vocab::Target;
use rocksdb::{Options, WriteBatch, DB};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

mod setup;

pub struct RocksStore {
    /// `None` only while a reopen after a write error failed (see
    /// [`RocksStore::recover_if_due`]).
    db: RwLock<Option<DB>>,
    /// Since when writes fail with an I/O error (a full disk): RocksDB then
    /// refuses every write until it is reopened.
    failing: Mutex<Option<Failing>>,
    path: PathBuf,
    read_only: bool,
    ttl_secs: u64,
    /// Newest message time seen: the clock for index expiry.
    newest: Arc<AtomicU64>,
}

/// How often a store whose writes fail tries to reopen.
const REOPEN_EVERY: Duration = Duration::from_secs(2);

/// Writes failing since `since`; the last reopen was tried at `tried`.
struct Failing {
    since: Instant,
    tried: Option<Instant>,
}

/// A read lock on the open database.
struct Db<'a>(RwLockReadGuard<'a, Option<DB>>);

impl std::ops::Deref for Db<'_> {
    type Target = DB;
    fn deref(&self) -> &DB {
        // `RocksStore::db` hands out a `Db` only over an open database.
        self.0.as_ref().expect("checked open")
    }
}

/// A column family of `db`.
fn handle<'a>(db: &'a DB, name: &str) -> Result<&'a rocksdb::ColumnFamily, StoreError> {
    db.cf_handle(name)
        .ok_or_else(|| StoreError::Io(format!("missing column family {name}")))
}

impl RocksStore {
    /// The options every writable open uses (`create` for a new store).
    fn write_options(create: bool) -> Options {
        let mut opts = Options::default();
        opts.create_if_missing(create);
        opts.create_missing_column_families(true);
        opts.set_keep_log_file_num(5);
        opts.increase_parallelism(2);
        opts
    }

    fn open_db(&self, create: bool) -> Result<DB, StoreError> {
        DB::open_cf_descriptors(
            &Self::write_options(create),
            &self.path,
            setup::descriptors(self.ttl_secs, &self.newest),
        )
        .map_err(|e| setup::open_error(&self.path, e))
    }

    fn closed(path: &Path, message_ttl_secs: u64, read_only: bool) -> RocksStore {
        RocksStore {
            db: RwLock::new(None),
            failing: Mutex::new(None),
            path: path.to_owned(),
            read_only,
            ttl_secs: message_ttl_secs,
            // The expiry clock is the mail's: it advances with what the
            // store learns (live mail: now; a replayed archive: its own
            // dates).
            newest: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Opens the store at `path` for writing; only one process may. A
    /// missing or empty directory becomes a new store; a directory holding
    /// a store is opened as it is; anything else is refused without a byte
    /// written ([`StoreError::NotAStore`]): a store that lost its `CURRENT`
    /// file must never be taken for an empty one and initialised over.
    pub fn open(path: &Path, message_ttl_secs: u64) -> Result<RocksStore, StoreError> {
        let new = setup::is_new(path)?;
        if new {
            std::fs::create_dir_all(path)
                .map_err(|e| StoreError::Io(format!("cannot create {}: {e}", path.display())))?;
        }
        let store = Self::closed(path, message_ttl_secs, false);
        let db = store.open_db(new)?;
        *store.db.write().unwrap_or_else(|p| p.into_inner()) = Some(db);
        store.check_schema(true)?;
        Ok(store)
    }
    /// Opens an existing store read-only, beside a running daemon.
    pub fn open_read_only(path: &Path, message_ttl_secs: u64) -> Result<RocksStore, StoreError> {
        let store = Self::closed(path, message_ttl_secs, true);
        let db = DB::open_cf_descriptors_read_only(
            &Options::default(),
            path,
            setup::descriptors(message_ttl_secs, &store.newest),
            false,
        )?;
        *store.db.write().unwrap_or_else(|p| p.into_inner()) = Some(db);
        store.check_schema(false)?;
        Ok(store)
    }

    /// The open database, for one operation.
    fn db(&self) -> Result<Db<'_>, StoreError> {
        let guard = self.db.read().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            return Err(StoreError::Io(format!(
                "the store {} is closed after a write error; it is reopened once writes succeed",
                self.path.display()
            )));
        }
        Ok(Db(guard))
    }

    /// Notes a failed write. An I/O error (a full disk) stops every later
    /// write of RocksDB until the database is reopened: from now on,
    /// [`Self::recover_if_due`] tries that.
    fn note_write_error(&self, e: &rocksdb::Error) {
        if e.kind() != rocksdb::ErrorKind::IOError {
            return;
        }
        let mut f = self.failing.lock().unwrap_or_else(|p| p.into_inner());
        if f.is_none() {
            tracing::error!(
                "store: write failed: {e}; reopening {} every {REOPEN_EVERY:?} until writes succeed",
                self.path.display()
            );
            *f = Some(Failing {
                since: Instant::now(),
                tried: None,
            });
        }
    }

    /// After a failed write, reopens the database (at most every
    /// [`REOPEN_EVERY`]): RocksDB replays its log, and learning resumes
    /// once the disk has room again, without a restart. While the reopen
    /// fails the store is opened read-only, so ratings are still read.
    fn recover_if_due(&self) {
        {
            let mut f = self.failing.lock().unwrap_or_else(|p| p.into_inner());
            let Some(fail) = f.as_mut() else { return };
            if fail.tried.is_some_and(|t| t.elapsed() < REOPEN_EVERY) {
                return;
            }
            fail.tried = Some(Instant::now());
        }
        let mut db = self.db.write().unwrap_or_else(|p| p.into_inner());
        // Close first: one process holds the store's lock once.
        *db = None;
        match self.open_db(false) {
            Ok(fresh) => {
                *db = Some(fresh);
                let fail = self
                    .failing
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .take();
                let secs = fail.map_or(0, |f| f.since.elapsed().as_secs());
                tracing::info!(
                    "store: reopened {} after {secs} s of failed writes; learning resumes",
                    self.path.display()
                );
            }
            Err(e) => {
                tracing::warn!("store: cannot reopen {} yet: {e}", self.path.display());
                *db = DB::open_cf_descriptors_read_only(
                    &Options::default(),
                    &self.path,
                    setup::descriptors(self.ttl_secs, &self.newest),
                    false,
                )
                .map_err(|e| {
                    tracing::error!(
                        "store: cannot open {} even read-only: {e}",
                        self.path.display()
                    )
                })
                .ok();
            }
        }
    }

    /// Runs a write, noting an I/O failure for [`Self::recover_if_due`].
    fn write_with(&self, f: impl FnOnce(&DB) -> Result<(), StoreError>) -> Result<(), StoreError> {
        self.writable()?;
        self.recover_if_due();
        let db = self.db()?;
        let r = f(&db);
        if let Err(StoreError::Db(e)) = &r {
            self.note_write_error(e);
        }
        r
    }

    fn check_schema(&self, may_init: bool) -> Result<(), StoreError> {
        let db = self.db()?;
        let meta = handle(&db, CF_META)?;
        match db.get_cf(meta, b"schema_version")? {
            Some(v) if v == SCHEMA_VERSION.to_string().as_bytes() => Ok(()),
            Some(v) => Err(StoreError::Schema {
                found: String::from_utf8_lossy(&v).into_owned(),
                path: self.path.clone(),
            }),
            None if may_init => {
                db.put_cf(meta, b"schema_version", SCHEMA_VERSION.to_string())?;
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// RocksDB's estimate of the keys per column family.
    pub fn key_estimates(&self) -> Vec<(&'static str, u64)> {
        let Ok(db) = self.db() else {
            return Vec::new();
        };
        CFS.iter()
            .filter_map(|n| {
                let cf = db.cf_handle(n)?;
                let v = db
                    .property_int_value_cf(cf, "rocksdb.estimate-num-keys")
                    .ok()
                    .flatten()?;
                Some((*n, v))
            })
            .collect()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn writable(&self) -> Result<(), StoreError> {
        if self.read_only {
            Err(StoreError::ReadOnly)
        } else {
            Ok(())
        }
    }
}

impl ReputationStore for RocksStore {
    fn record(&self, kind: Kind, key: &str) -> Result<Record, StoreError> {
        let db = self.db()?;
        let cf = handle(&db, setup::family(kind))?;
        let value = db.get_pinned_cf(cf, key.as_bytes())?;
        match value {
            Some(v) => Ok(Record::decode(&v)?),
            None => Ok(Record::default()),
        }
    }

    fn message(&self, id: &str) -> Result<Option<IndexEntry>, StoreError> {
        let db = self.db()?;
        let cf = handle(&db, CF_MESSAGES)?;
        let Some(v) = db.get_pinned_cf(cf, id.as_bytes())? else {
            return Ok(None);
        };
        decode_index(id, &v, self.ttl_secs, self.newest.load(Ordering::Relaxed))
    }

    fn apply(&self, update: &Update) -> Result<(), StoreError> {
        if update.is_empty() {
            return Ok(());
        }
        let mut newest = 0;
        self.write_with(|db| {
            let mut batch = WriteBatch::default();
            for (kind, key, delta) in &update.records {
                batch.merge_cf(
                    handle(db, setup::family(*kind))?,
                    key.as_bytes(),
                    delta.encode(),
                );
                newest = newest.max(delta.last_seen);
            }
            let ecf = handle(db, CF_ENGAGEMENT)?;
            for k in &update.engagement_add {
                batch.put_cf(ecf, k, b"");
            }
            for k in &update.engagement_del {
                batch.delete_cf(ecf, k);
            }
            if let Some(t) = update.engagement_since {
                let meta = handle(db, CF_META)?;
                if db.get_pinned_cf(meta, b"engagement_since")?.is_none() {
                    batch.put_cf(meta, b"engagement_since", t.to_string());
                }
            }
            let ncf = handle(db, CF_NAMES)?;
            for (name, entry) in &update.names {
                let v = serde_json::to_vec(entry).map_err(|e| StoreError::Task(e.to_string()))?;
                batch.put_cf(ncf, name.as_bytes(), v);
            }
            let mcf = handle(db, CF_MESSAGES)?;
            for (id, entry) in &update.messages {
                let v = encode_index(entry)?;
                batch.put_cf(mcf, id.as_bytes(), v);
                newest = newest.max(entry.time);
            }
            db.write(batch)?;
            Ok(())
        })?;
        self.observe_time(newest);
        Ok(())
    }

    fn overrides(&self) -> Result<Vec<Override>, StoreError> {
        let db = self.db()?;
        let cf = handle(&db, CF_OVERRIDES)?;
        let mut out = Vec::new();
        for item in db.iterator_cf(cf, rocksdb::IteratorMode::Start) {
            let (k, v) = item?;
            match serde_json::from_slice::<Override>(&v) {
                Ok(o) => out.push(o),
                Err(e) => tracing::error!(
                    "store: ignoring unreadable override {:?}: {e}",
                    String::from_utf8_lossy(&k)
                ),
            }
        }
        Ok(out)
    }

    fn set_override(&self, o: &Override) -> Result<(), StoreError> {
        self.writable()?;
        let v = serde_json::to_vec(o).map_err(|e| StoreError::Task(e.to_string()))?;
        self.write_with(|db| {
            db.put_cf(handle(db, CF_OVERRIDES)?, o.target.store_key(), &v)?;
            Ok(())
        })
    }

    fn remove_override(&self, target: &Target) -> Result<bool, StoreError> {
        let mut existed = false;
        self.write_with(|db| {
            let cf = handle(db, CF_OVERRIDES)?;
            let key = target.store_key();
            existed = db.get_pinned_cf(cf, &key)?.is_some();
            db.delete_cf(cf, key)?;
            Ok(())
        })?;
        Ok(existed)
    }

    fn name(&self, normalized: &str) -> Result<Option<NameEntry>, StoreError> {
        let db = self.db()?;
        let cf = handle(&db, CF_NAMES)?;
        let value = db.get_pinned_cf(cf, normalized.as_bytes())?;
        match value {
            Some(v) => Ok(serde_json::from_slice(&v).ok()),
            None => Ok(None),
        }
    }

    fn engagement_due(
        &self,
        until: u64,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, u64, String)>, StoreError> {
        let db = self.db()?;
        let cf = handle(&db, CF_ENGAGEMENT)?;
        let mut out = Vec::new();
        for item in db.iterator_cf(cf, rocksdb::IteratorMode::Start) {
            let (k, _) = item?;
            let Some(t) = k
                .get(..8)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(u64::from_be_bytes)
            else {
                continue;
            };
            if t > until || out.len() >= limit {
                break;
            }
            out.push((k.to_vec(), t, String::from_utf8_lossy(&k[8..]).into_owned()));
        }
        Ok(out)
    }

    fn engagement_since(&self) -> Result<Option<u64>, StoreError> {
        let db = self.db()?;
        Ok(db
            .get_cf(handle(&db, CF_META)?, b"engagement_since")?
            .and_then(|v| String::from_utf8_lossy(&v).parse().ok()))
    }

    fn pairs_of(&self, sender: &str, limit: usize) -> Result<Vec<(String, Record)>, StoreError> {
        let db = self.db()?;
        let cf = handle(&db, CF_PAIRS)?;
        let prefix = format!("{sender}\0");
        let mut out = Vec::new();
        let mode = rocksdb::IteratorMode::From(prefix.as_bytes(), rocksdb::Direction::Forward);
        for item in db.iterator_cf(cf, mode) {
            let (k, v) = item?;
            let Some(rest) = k.strip_prefix(prefix.as_bytes()) else {
                break;
            };
            if out.len() >= limit {
                break;
            }
            out.push((
                String::from_utf8_lossy(rest).into_owned(),
                Record::decode(&v)?,
            ));
        }
        Ok(out)
    }

    fn observe_time(&self, time: u64) {
        self.newest.fetch_max(time, Ordering::Relaxed);
    }

    fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        let db = self.db()?;
        Ok(db
            .get_cf(handle(&db, CF_META)?, key.as_bytes())?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.writable()?;
        let db = self.db()?;
        db.put_cf(handle(&db, CF_META)?, key.as_bytes(), value.as_bytes())?;
        Ok(())
    }

    fn stats(&self) -> Vec<(String, u64)> {
        let mut out: Vec<(String, u64)> = self
            .key_estimates()
            .into_iter()
            .map(|(n, v)| (format!("keys:{n}"), v))
            .collect();
        let mut sst = 0;
        let mut mem = 0;
        let Ok(db) = self.db() else {
            return out;
        };
        for n in CFS {
            if let Some(cf) = db.cf_handle(n) {
                let p = |name: &str| {
                    db.property_int_value_cf(cf, name)
                        .ok()
                        .flatten()
                        .unwrap_or(0)
                };
                sst += p("rocksdb.total-sst-files-size");
                mem += p("rocksdb.cur-size-all-mem-tables");
            }
        }
        out.push(("bytes:sst".into(), sst));
        out.push(("bytes:memtables".into(), mem));
        out
    }

    fn scan(&self, kind: Kind, f: &mut dyn FnMut(&str, &Record)) -> Result<(), StoreError> {
        let db = self.db()?;
        let cf = handle(&db, setup::family(kind))?;
        for item in db.iterator_cf(cf, rocksdb::IteratorMode::Start) {
            let (k, v) = item?;
            // A corrupt record is reported where it is read for a message;
            // a scan skips it.
            if let (Ok(key), Ok(rec)) = (std::str::from_utf8(&k), Record::decode(&v)) {
                f(key, &rec);
            }
        }
        Ok(())
    }

    fn is_embedded(&self) -> bool {
        true
    }

    fn export(&self, f: &mut dyn FnMut(Item) -> Result<(), StoreError>) -> Result<(), StoreError> {
        let db = self.db()?;
        let all = |name: &str| -> Result<_, StoreError> {
            Ok(db.iterator_cf(handle(&db, name)?, rocksdb::IteratorMode::Start))
        };
        for kind in [Kind::Sender, Kind::Domain, Kind::Mta, Kind::Pair] {
            for item in all(setup::family(kind))? {
                let (k, v) = item?;
                let key = String::from_utf8_lossy(&k).into_owned();
                match Record::decode(&v) {
                    Ok(r) => f(Item::Record(kind, key, r))?,
                    Err(e) => tracing::error!("store: not exported: {e} for key {key:?}"),
                }
            }
        }
        for item in all(CF_MESSAGES)? {
            let (k, v) = item?;
            let id = String::from_utf8_lossy(&k).into_owned();
            // Every entry, expired by the mail's clock or not.
            if let Some(e) = decode_index(&id, &v, u64::MAX / 2, 0)? {
                f(Item::Message(id, e))?;
            }
        }
        for item in all(CF_NAMES)? {
            let (k, v) = item?;
            if let Ok(e) = serde_json::from_slice(&v) {
                f(Item::Name(String::from_utf8_lossy(&k).into_owned(), e))?;
            }
        }
        for item in all(CF_ENGAGEMENT)? {
            let (k, _) = item?;
            f(Item::Engagement(k.to_vec()))?;
        }
        drop(db);
        for o in self.overrides()? {
            f(Item::Override(o))?;
        }
        if let Some(t) = self.engagement_since()? {
            f(Item::EngagementSince(t))?;
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), StoreError> {
        if self.read_only {
            return Ok(());
        }
        let db = self.db()?;
        for n in CFS {
            db.flush_cf(handle(&db, n)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Counter, SetKind, CF_SENDERS};
    use crate::vocab::Direction;

    fn entry(time: u64) -> IndexEntry {
        IndexEntry {
            time,
            direction: Direction::Outbound,
            sender: "alice@example.com".into(),
            mta: None,
            net: None,
            recipients: vec!["bob@example.org".into()],
            has_attachment: false,
            has_url: true,
            opened: false,
            junk: false,
            not_opened_counted: false,
            habits: Vec::new(),
        }
    }

    #[test]
    fn merges_accumulate_across_batches_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = RocksStore::open(dir.path(), 86400).unwrap();
            for i in 0..3 {
                let mut d = Record::seen_at(100 + i);
                d.add(Counter::MessagesReceived, 1)
                    .insert(SetKind::EnterpriseRecipients, &format!("u{}", i % 2));
                s.apply(&Update {
                    records: vec![(Kind::Sender, "bob@example.org".into(), d)],
                    messages: vec![],
                    ..Update::default()
                })
                .unwrap();
            }
            s.flush().unwrap();
        }
        let s = RocksStore::open(dir.path(), 86400).unwrap();
        let r = s.record(Kind::Sender, "bob@example.org").unwrap();
        assert_eq!(r.count(Counter::MessagesReceived), 3);
        assert_eq!(r.distinct(SetKind::EnterpriseRecipients), 2);
        assert_eq!((r.first_seen, r.last_seen), (100, 102));
        assert!(s.record(Kind::Mta, "192.0.2.1").unwrap().is_empty());
    }

    #[test]
    fn a_hot_key_written_from_many_threads_loses_no_update() {
        let dir = tempfile::tempdir().unwrap();
        let s = Arc::new(RocksStore::open(dir.path(), 86400).unwrap());
        let threads: Vec<_> = (0..4u64)
            .map(|n| {
                let s = s.clone();
                std::thread::spawn(move || {
                    for i in 0..250u64 {
                        let mut d = Record::seen_at(1000 + n * 1000 + i);
                        d.add(Counter::MessagesReceived, 1)
                            .insert(SetKind::EnterpriseRecipients, &format!("u{}", i % 7));
                        s.apply(&Update {
                            records: vec![(Kind::Domain, "big.example".into(), d)],
                            ..Update::default()
                        })
                        .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let r = s.record(Kind::Domain, "big.example").unwrap();
        assert_eq!(r.count(Counter::MessagesReceived), 1000);
        assert_eq!(r.distinct(SetKind::EnterpriseRecipients), 7);
        assert_eq!((r.first_seen, r.last_seen), (1000, 4249));
    }

    /// Every file under `dir` with its bytes.
    fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_file() {
                out.push((p.clone(), std::fs::read(&p).unwrap()));
            }
        }
        out.sort();
        out
    }

    #[test]
    fn a_store_without_current_is_refused_and_left_untouched() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = RocksStore::open(dir.path(), 86400).unwrap();
            let mut d = Record::seen_at(5);
            d.add(Counter::MessagesReceived, 3);
            s.apply(&Update {
                records: vec![(Kind::Sender, "x@example.org".into(), d)],
                ..Update::default()
            })
            .unwrap();
            s.flush().unwrap();
        }
        std::fs::remove_file(dir.path().join("CURRENT")).unwrap();
        let before = snapshot(dir.path());
        for _ in 0..2 {
            // A second start (systemd restarts) must not initialise either.
            let e = RocksStore::open(dir.path(), 86400).err().unwrap();
            assert!(matches!(e, StoreError::NotAStore { .. }), "{e}");
            assert!(e.to_string().contains("CURRENT"), "{e}");
            assert_eq!(snapshot(dir.path()), before, "no byte changed");
        }
        // Put back, the store opens with its history.
        let current = before
            .iter()
            .find(|(p, _)| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("MANIFEST")
            })
            .map(|(p, _)| p.file_name().unwrap().to_string_lossy().into_owned())
            .unwrap();
        std::fs::write(dir.path().join("CURRENT"), format!("{current}\n")).unwrap();
        let s = RocksStore::open(dir.path(), 86400).unwrap();
        assert_eq!(
            s.record(Kind::Sender, "x@example.org")
                .unwrap()
                .count(Counter::MessagesReceived),
            3
        );
    }

    #[test]
    fn a_directory_of_other_files_is_refused_but_an_empty_one_becomes_a_store() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("notes.txt"), b"precious").unwrap();
        let e = RocksStore::open(dir.path(), 86400).err().unwrap();
        assert!(e.to_string().contains("notes.txt"), "{e}");
        assert_eq!(
            std::fs::read(dir.path().join("notes.txt")).unwrap(),
            b"precious"
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

        let empty = tempfile::tempdir().unwrap();
        std::os::unix::net::UnixListener::bind(empty.path().join("control.sock")).unwrap();
        RocksStore::open(empty.path(), 86400).unwrap();
        RocksStore::open(&empty.path().join("sub/dir"), 86400).unwrap();
    }

    #[test]
    fn read_only_open_sees_a_running_writer() {
        let dir = tempfile::tempdir().unwrap();
        let w = RocksStore::open(dir.path(), 86400).unwrap();
        let mut d = Record::seen_at(5);
        d.add(Counter::MessagesSent, 2);
        w.apply(&Update {
            records: vec![(Kind::Sender, "x@example.org".into(), d)],
            messages: vec![("id@h".into(), entry(crate::vocab::now()))],
            ..Update::default()
        })
        .unwrap();
        let r = RocksStore::open_read_only(dir.path(), 86400).unwrap();
        assert_eq!(
            r.record(Kind::Sender, "x@example.org")
                .unwrap()
                .count(Counter::MessagesSent),
            2
        );
        assert_eq!(
            r.message("id@h").unwrap(),
            Some(entry(r.message("id@h").unwrap().unwrap().time))
        );
        let write = Update {
            engagement_since: Some(1),
            ..Update::default()
        };
        assert!(matches!(r.apply(&write), Err(StoreError::ReadOnly)));
        let second = RocksStore::open(dir.path(), 86400);
        assert!(
            matches!(second, Err(StoreError::Locked(_))),
            "second writer must fail: {:?}",
            second.err()
        );
    }

    #[test]
    fn message_index_entries_expire_by_the_store_clock() {
        let dir = tempfile::tempdir().unwrap();
        let s = RocksStore::open(dir.path(), 3600).unwrap();
        let t = crate::vocab::now();
        s.apply(&Update {
            records: vec![],
            messages: vec![
                ("old@h".into(), entry(t)),
                ("new@h".into(), entry(t + 7200)),
            ],
            ..Update::default()
        })
        .unwrap();
        assert!(s.message("old@h").unwrap().is_none(), "older than the ttl");
        assert!(s.message("new@h").unwrap().is_some());
        assert!(s.message("unknown@h").unwrap().is_none());
    }

    #[test]
    fn schema_version_is_checked_at_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = RocksStore::open(dir.path(), 86400).unwrap();
            let db = s.db().unwrap();
            db.put_cf(handle(&db, CF_META).unwrap(), b"schema_version", b"99")
                .unwrap();
        }
        let e = RocksStore::open(dir.path(), 86400).err().unwrap();
        assert!(matches!(e, StoreError::Schema { .. }), "{e}");
    }

    #[test]
    fn corrupt_record_is_an_error_and_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let s = RocksStore::open(dir.path(), 86400).unwrap();
        {
            let db = s.db().unwrap();
            db.put_cf(
                handle(&db, CF_SENDERS).unwrap(),
                b"bad@example.org",
                b"\x07garbage",
            )
            .unwrap();
        }
        assert!(s.record(Kind::Sender, "bad@example.org").is_err());
        let mut d = Record::seen_at(1);
        d.add(Counter::MessagesReceived, 1);
        s.apply(&Update {
            records: vec![(Kind::Sender, "bad@example.org".into(), d)],
            messages: vec![],
            ..Update::default()
        })
        .unwrap();
        let db = s.db().unwrap();
        let cf = handle(&db, CF_SENDERS).unwrap();
        db.compact_range_cf(cf, None::<&[u8]>, None::<&[u8]>);
        assert_eq!(
            db.get_cf(cf, b"bad@example.org").unwrap().as_deref(),
            Some(&b"\x07garbage"[..])
        );
    }
}
