//! `sra-milter store copy`: a site's whole history from one store into
//! another (RocksDB to Redis and back), verified by counts.

use super::{Item, ReputationStore, StoreError, Update};
use std::collections::BTreeMap;

/// Items copied per kind, and what the destination holds afterwards.
#[derive(Debug, Default)]
pub struct CopyReport {
    pub copied: BTreeMap<&'static str, u64>,
    pub found: BTreeMap<&'static str, u64>,
}

impl CopyReport {
    /// Every kind the source had is in the destination, as many.
    pub fn verified(&self) -> bool {
        self.copied == self.found
    }
}

/// Items applied to the destination per write.
const BATCH: usize = 500;

fn count(from: &dyn ReputationStore) -> Result<BTreeMap<&'static str, u64>, StoreError> {
    let mut found = BTreeMap::new();
    from.export(&mut |item| {
        *found.entry(item.kind_name()).or_insert(0) += 1;
        Ok(())
    })?;
    Ok(found)
}

/// Refuses a copy's destination that holds anything.
pub fn ensure_empty(to: &dyn ReputationStore) -> Result<(), StoreError> {
    if super::is_empty(to)? {
        Ok(())
    } else {
        Err(StoreError::Io(
            "the destination store is not empty: copy into an empty one".into(),
        ))
    }
}

/// Copies everything `from` holds into `to`, which must be empty, then
/// counts what `to` holds. A source hashed under an identity key passes
/// its key's fingerprint on (`to` then opens only with that key).
pub fn copy(
    from: &dyn ReputationStore,
    to: &dyn ReputationStore,
) -> Result<CopyReport, StoreError> {
    ensure_empty(to)?;
    if let Some(f) = from.meta(super::META_IDENTITY)? {
        to.set_meta(super::META_IDENTITY, &f)?;
    }
    let mut report = CopyReport::default();
    let mut batch = Update::default();
    let mut pending = 0;
    let flush = |batch: &mut Update, pending: &mut usize| -> Result<(), StoreError> {
        to.apply(&std::mem::take(batch))?;
        *pending = 0;
        Ok(())
    };
    from.export(&mut |item| {
        *report.copied.entry(item.kind_name()).or_insert(0) += 1;
        match item {
            Item::Record(kind, key, rec) => batch.records.push((kind, key, rec)),
            Item::Message(id, entry) => batch.messages.push((id, entry)),
            Item::Name(n, entry) => batch.names.push((n, entry)),
            Item::Engagement(k) => batch.engagement_add.push(k),
            Item::EngagementSince(t) => batch.engagement_since = Some(t),
            Item::Override(o) => to.set_override(&o)?,
        }
        pending += 1;
        if pending >= BATCH {
            flush(&mut batch, &mut pending)?;
        }
        Ok(())
    })?;
    flush(&mut batch, &mut pending)?;
    to.flush()?;
    report.found = count(to)?;
    Ok(report)
}
