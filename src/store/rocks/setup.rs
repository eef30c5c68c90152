//! How the RocksDB store is laid out and opened: one column family per
//! record kind with its options (the record merge operator, the message
//! index's expiry filter, one block cache), and what an open may find.

use super::super::{
    index_time, Kind, Record, StoreError, CFS, CF_DOMAINS, CF_MESSAGES, CF_MTAS, CF_PAIRS,
    CF_SENDERS,
};
use rocksdb::{BlockBasedOptions, ColumnFamilyDescriptor, MergeOperands, Options};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The column family of a record kind.
pub(super) fn family(kind: Kind) -> &'static str {
    match kind {
        Kind::Sender => CF_SENDERS,
        Kind::Domain => CF_DOMAINS,
        Kind::Mta => CF_MTAS,
        Kind::Pair => CF_PAIRS,
    }
}

/// Merge operands a record may collect in the memtable before they are
/// folded into one value. A busy record is read about twice per write (at
/// MAIL or connect, and at end of message), and a read folds what has
/// collected: two costs less CPU per message than eight (hotkey_bench:
/// 26.0 against 27.5 µs; docs/performance.md).
const MAX_SUCCESSIVE_MERGES: usize = 2;

fn merge_records(key: &[u8], existing: Option<&[u8]>, ops: &MergeOperands) -> Option<Vec<u8>> {
    let mut acc = match existing {
        None => Record::default(),
        Some(bytes) => match Record::decode(bytes) {
            Ok(r) => r,
            Err(e) => {
                // Keep the stored bytes as they are rather than failing the
                // compaction (which would stop all writes): reads of this
                // key report the corruption and follow `on_error`.
                tracing::error!(
                    "store: {e} for key {:?}; keeping it untouched, dropping {} update(s)",
                    String::from_utf8_lossy(key),
                    ops.len()
                );
                return Some(bytes.to_vec());
            }
        },
    };
    for op in ops {
        match Record::decode(op) {
            Ok(r) => acc.merge(&r),
            Err(e) => tracing::error!(
                "store: skipping {e} in update for key {:?}",
                String::from_utf8_lossy(key)
            ),
        }
    }
    Some(acc.encode())
}

/// The block cache shared by the column families: with 10 M senders and
/// 1 M MTAs (a 460 MiB store) it keeps a point look-up's p99 under 100 µs
/// (examples/store_scale.rs, docs/performance.md) at ~100 MiB resident.
const BLOCK_CACHE_BYTES: usize = 64 << 20;

pub(super) fn cf_options(
    name: &str,
    ttl_secs: u64,
    newest: &Arc<AtomicU64>,
    cache: &rocksdb::Cache,
) -> Options {
    let mut o = Options::default();
    let mut bb = BlockBasedOptions::default();
    // Point look-ups dominate: a bloom filter saves a disk read per miss.
    bb.set_bloom_filter(10.0, false);
    // One block cache for every family, holding data, index and filter
    // blocks; the level-0 files' index and filters stay pinned.
    bb.set_block_cache(cache);
    bb.set_cache_index_and_filter_blocks(true);
    bb.set_pin_l0_filter_and_index_blocks_in_cache(true);
    o.set_block_based_table_factory(&bb);
    o.set_compression_type(rocksdb::DBCompressionType::Lz4);
    match name {
        CF_SENDERS | CF_DOMAINS | CF_MTAS | CF_PAIRS => {
            o.set_merge_operator_associative("sra_record_merge", merge_records);
            // A key that every message touches (a big provider's domain,
            // the organisation's relay) would otherwise pile up merge
            // operands in the memtable until a flush, and every read of
            // it would fold them all: a message would cost more with
            // every message before it. Past this many operands RocksDB
            // folds them into one value as it writes (RocksDB runs such
            // writes one at a time, so no update is lost).
            o.set_max_successive_merges(MAX_SUCCESSIVE_MERGES);
        }
        CF_MESSAGES => {
            let newest = newest.clone();
            o.set_compaction_filter("sra_message_ttl", move |_lvl, _k: &[u8], v: &[u8]| {
                let clock = newest.load(Ordering::Relaxed).max(1);
                match index_time(v) {
                    Some(t) if t.saturating_add(ttl_secs) < clock => {
                        rocksdb::compaction_filter::Decision::Remove
                    }
                    _ => rocksdb::compaction_filter::Decision::Keep,
                }
            });
        }
        _ => {}
    }
    o
}

pub(super) fn descriptors(ttl_secs: u64, newest: &Arc<AtomicU64>) -> Vec<ColumnFamilyDescriptor> {
    let cache = rocksdb::Cache::new_lru_cache(BLOCK_CACHE_BYTES);
    CFS.iter()
        .map(|n| ColumnFamilyDescriptor::new(*n, cf_options(n, ttl_secs, newest, &cache)))
        .collect()
}

/// Whether `path` is a place for a new store: missing, or a directory
/// with nothing in it but sockets (the control socket lives beside the
/// store) and `lost+found`. A directory with RocksDB's `CURRENT` is an
/// existing store; any other content is refused.
pub(super) fn is_new(path: &Path) -> Result<bool, StoreError> {
    use std::os::unix::fs::FileTypeExt;
    let entries = match std::fs::read_dir(path) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(true),
        Err(e) => {
            return Err(StoreError::Io(format!(
                "cannot read {}: {e}",
                path.display()
            )))
        }
    };
    let mut found = Vec::new();
    for e in entries {
        let e = e.map_err(|e| StoreError::Io(format!("cannot read {}: {e}", path.display())))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name == "CURRENT" {
            return Ok(false);
        }
        let socket = e.file_type().is_ok_and(|t| t.is_socket());
        if !socket && name != "lost+found" {
            found.push(name);
        }
    }
    if found.is_empty() {
        return Ok(true);
    }
    found.sort();
    let n = found.len();
    found.truncate(3);
    let mut listed = found.join(", ");
    if n > 3 {
        listed.push_str(&format!(" and {} more", n - 3));
    }
    Err(StoreError::NotAStore {
        path: path.to_owned(),
        found: listed,
    })
}

/// What a failed open means to an admin. RocksDB tells causes apart only
/// in its messages: the lock file names itself ("While lock file:
/// PATH/LOCK: Resource temporarily unavailable" for another process, "lock
/// hold by current process ... No locks available"), and the operating
/// system's reason ends the message. A corrupt block is not a lock.
pub(super) fn open_error(path: &Path, e: rocksdb::Error) -> StoreError {
    let text = e.as_ref();
    let locked = [
        "Resource temporarily unavailable",
        "No locks available",
        "lock hold by",
    ];
    if text.contains("/LOCK: ") && locked.iter().any(|l| text.contains(l)) {
        return StoreError::Locked(path.to_owned());
    }
    for reason in ["Permission denied", "Read-only file system"] {
        if text.contains(reason) {
            return StoreError::Unwritable {
                path: path.to_owned(),
                reason: text.to_string(),
            };
        }
    }
    if e.kind() == rocksdb::ErrorKind::Corruption {
        return StoreError::Damaged {
            path: path.to_owned(),
            detail: text.to_string(),
        };
    }
    StoreError::Db(e)
}
