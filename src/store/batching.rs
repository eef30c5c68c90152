//! A writer that batches: the updates of the last `batch` messages stay in
//! memory, visible to the next messages' ratings (read-your-writes, so a
//! replay stays prequential), and are written as one update. Replay uses it
//! over any backend; it implements every store operation.

use super::{
    Deltas, IndexEntry, Kind, NameEntry, Override, Record, ReputationStore, StoreError, Update,
};
use crate::vocab::Target;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Pending updates over a store: read-your-writes for the next messages,
/// written in batches.
pub struct BatchingStore {
    inner: Arc<dyn ReputationStore>,
    pending: Mutex<Pending>,
    batch: usize,
}

#[derive(Default)]
struct Pending {
    records: Deltas,
    messages: HashMap<String, IndexEntry>,
    names: HashMap<String, NameEntry>,
    engagement_add: Vec<Vec<u8>>,
    engagement_del: Vec<Vec<u8>>,
    engagement_since: Option<u64>,
    updates: usize,
}

impl BatchingStore {
    pub fn new(inner: Arc<dyn ReputationStore>, batch: usize) -> BatchingStore {
        BatchingStore {
            inner,
            pending: Mutex::new(Pending::default()),
            batch: batch.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes what is pending in one batch.
    pub fn write_pending(&self) -> Result<(), StoreError> {
        let p = std::mem::take(&mut *self.lock());
        let update = Update {
            records: p.records.into_records(),
            messages: p.messages.into_iter().collect(),
            names: p.names.into_iter().collect(),
            engagement_add: p.engagement_add,
            engagement_del: p.engagement_del,
            engagement_since: p.engagement_since,
        };
        self.inner.apply(&update)
    }
}

impl ReputationStore for BatchingStore {
    fn record(&self, kind: Kind, key: &str) -> Result<Record, StoreError> {
        let mut r = self.inner.record(kind, key)?;
        if let Some(delta) = self.lock().records.get(kind, key) {
            r.merge(delta);
        }
        Ok(r)
    }

    fn message(&self, id: &str) -> Result<Option<IndexEntry>, StoreError> {
        if let Some(e) = self.lock().messages.get(id) {
            return Ok(Some(e.clone()));
        }
        self.inner.message(id)
    }

    fn apply(&self, update: &Update) -> Result<(), StoreError> {
        let full = {
            let mut p = self.lock();
            for (kind, key, delta) in &update.records {
                p.records.merge(*kind, key, delta);
            }
            for (id, e) in &update.messages {
                p.messages.insert(id.clone(), e.clone());
            }
            for (n, e) in &update.names {
                p.names.insert(n.clone(), e.clone());
            }
            p.engagement_add
                .extend(update.engagement_add.iter().cloned());
            p.engagement_del
                .extend(update.engagement_del.iter().cloned());
            if p.engagement_since.is_none() {
                p.engagement_since = update.engagement_since;
            }
            self.inner.observe_time(
                update
                    .messages
                    .iter()
                    .map(|(_, e)| e.time)
                    .max()
                    .unwrap_or(0),
            );
            p.updates += 1;
            p.updates >= self.batch
        };
        if full {
            self.write_pending()?;
        }
        Ok(())
    }

    fn overrides(&self) -> Result<Vec<Override>, StoreError> {
        self.inner.overrides()
    }

    fn set_override(&self, o: &Override) -> Result<(), StoreError> {
        self.inner.set_override(o)
    }

    fn remove_override(&self, target: &Target) -> Result<bool, StoreError> {
        self.inner.remove_override(target)
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.write_pending()?;
        self.inner.flush()
    }

    fn name(&self, normalized: &str) -> Result<Option<NameEntry>, StoreError> {
        if let Some(e) = self.lock().names.get(normalized) {
            return Ok(Some(e.clone()));
        }
        self.inner.name(normalized)
    }

    fn scan(&self, kind: Kind, f: &mut dyn FnMut(&str, &Record)) -> Result<(), StoreError> {
        self.write_pending()?;
        self.inner.scan(kind, f)
    }

    fn is_embedded(&self) -> bool {
        self.inner.is_embedded()
    }

    fn export(
        &self,
        f: &mut dyn FnMut(super::Item) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.write_pending()?;
        self.inner.export(f)
    }

    fn engagement_due(
        &self,
        until: u64,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, u64, String)>, StoreError> {
        self.write_pending()?;
        self.inner.engagement_due(until, limit)
    }

    fn engagement_since(&self) -> Result<Option<u64>, StoreError> {
        self.write_pending()?;
        self.inner.engagement_since()
    }

    fn pairs_of(&self, sender: &str, limit: usize) -> Result<Vec<(String, Record)>, StoreError> {
        self.write_pending()?;
        self.inner.pairs_of(sender, limit)
    }

    fn observe_time(&self, time: u64) {
        self.inner.observe_time(time)
    }

    fn stats(&self) -> Vec<(String, u64)> {
        self.inner.stats()
    }

    fn address_key<'a>(&self, addr: &'a str) -> std::borrow::Cow<'a, str> {
        self.inner.address_key(addr)
    }

    fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.inner.meta(key)
    }

    fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.inner.set_meta(key, value)
    }
}
