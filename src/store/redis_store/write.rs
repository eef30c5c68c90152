//! What one message writes to Redis: the commands of an [`Update`], in one
//! pipeline, and what the store does around them (the read cache, the key
//! index of records new to the store).

use super::{cmd, kind_letter, shard_of, RedisStore};
use crate::store::{encode_index, Kind, Record, StoreError, Update, DISTINCT_K};
use redis::{Cmd, Value};

impl RedisStore {
    /// The merge of one record delta.
    fn merge_cmd(&self, kind: Kind, key: &str, delta: &Record) -> Cmd {
        let rk = self.record_key(kind, key);
        let sets: Vec<(u8, &Vec<u64>)> = delta.raw_sets().iter().map(|(t, s)| (*t, s)).collect();
        let mut c = cmd("FCALL");
        c.arg("sra_merge_2").arg(1 + sets.len()).arg(&rk);
        for (t, _) in &sets {
            c.arg(Self::set_key(&rk, *t));
        }
        c.arg(delta.first_seen)
            .arg(delta.last_seen)
            .arg(&delta.label)
            .arg(DISTINCT_K)
            .arg(delta.raw_counts().len());
        for (t, v) in delta.raw_counts() {
            c.arg(format!("c{t}")).arg(*v);
        }
        for (_, s) in &sets {
            c.arg(s.len());
            for h in s.iter() {
                // The score: the hash's top 53 bits, exact in a double.
                c.arg((h >> 11) as f64).arg(*h);
            }
        }
        c
    }

    fn index_cmd(&self, kind: Kind, key: &str) -> Cmd {
        cmd("SADD")
            .arg(self.key(&format!("{{i:{}:{}}}", kind_letter(kind), shard_of(key))))
            .arg(key)
            .clone()
    }

    /// The writes of `update`, in one pipeline: the record merges first
    /// (`merges` of them, each answering 1 when the record is new), then
    /// the rest. A record this host has just read as absent (the read
    /// cache holds it empty), and a sender×MTA record of a sender just read
    /// as absent, are new: their index entries go out with them
    /// ([`Self::index_entries`]), which spares the flight after the
    /// merges. Were one not new after all, adding its entries again is
    /// harmless; a new record not seen so still gets them from its merge's
    /// answer. The records are forgotten from the read cache first.
    pub(super) fn write_cmds(&self, update: &Update) -> Result<Write, StoreError> {
        let mut cmds = Vec::new();
        let mut newest = 0;
        for (kind, key, delta) in &update.records {
            cmds.push(self.merge_cmd(*kind, key, delta));
            newest = newest.max(delta.last_seen);
        }
        let merges = cmds.len();
        let absent = |kind, key: &str| self.cached(kind, key).is_some_and(|r| r.is_empty());
        let indexed: Vec<bool> = update
            .records
            .iter()
            .map(|(kind, key, _)| {
                absent(*kind, key)
                    || *kind == Kind::Pair
                        && key
                            .split_once('\0')
                            .is_some_and(|(sender, _)| absent(Kind::Sender, sender))
            })
            .collect();
        for ((kind, key, _), _) in update.records.iter().zip(&indexed).filter(|r| *r.1) {
            cmds.extend(self.index_entries(*kind, key));
        }
        // Forget what this host is about to change.
        self.forget(update);
        for k in &update.engagement_add {
            let (time, id) = split_engagement_key(k)?;
            cmds.push(
                cmd("ZADD")
                    .arg(self.engagement_shard(&id))
                    .arg(time)
                    .arg(&id)
                    .clone(),
            );
        }
        for k in &update.engagement_del {
            let (_, id) = split_engagement_key(k)?;
            cmds.push(cmd("ZREM").arg(self.engagement_shard(&id)).arg(&id).clone());
        }
        if let Some(t) = update.engagement_since {
            cmds.push(
                cmd("HSETNX")
                    .arg(self.key("{meta}"))
                    .arg("engagement_since")
                    .arg(t)
                    .clone(),
            );
        }
        for (name, entry) in &update.names {
            let v = serde_json::to_vec(entry).map_err(|e| StoreError::Task(e.to_string()))?;
            cmds.push(
                cmd("SET")
                    .arg(self.key(&format!("{{n:{name}}}")))
                    .arg(v)
                    .clone(),
            );
        }
        for (id, entry) in &update.messages {
            cmds.push(
                cmd("SET")
                    .arg(self.key(&format!("{{x:{id}}}")))
                    .arg(encode_index(entry)?)
                    .arg("EX")
                    .arg(self.ttl_secs.max(1))
                    .clone(),
            );
            newest = newest.max(entry.time);
        }
        Ok(Write {
            cmds,
            merges,
            indexed,
            newest,
        })
    }

    /// Drops `update`'s records from the read cache: before the write,
    /// and again after it (a read that raced the write may have kept the
    /// old value).
    pub(super) fn forget(&self, update: &Update) {
        let mut recent = self.recent_lock();
        for (kind, key, _) in &update.records {
            recent.remove(&(*kind, key.clone()));
        }
    }

    /// A new record's index entries: the key index of its kind, and for a
    /// sender×MTA record its sender's list (`{pi:SENDER}`).
    fn index_entries(&self, kind: Kind, key: &str) -> Vec<Cmd> {
        let mut cmds = vec![self.index_cmd(kind, key)];
        if let (Kind::Pair, Some((sender, mta))) = (kind, key.split_once('\0')) {
            cmds.push(
                cmd("SADD")
                    .arg(self.key(&format!("{{pi:{sender}}}")))
                    .arg(mta)
                    .clone(),
            );
        }
        cmds
    }

    /// Records new to the store (their merge answered 1 in `replies`) and
    /// not indexed with their write join the index. Only a host that made
    /// the record, or read it as absent just before, adds them: a
    /// record's later messages cost no index writes.
    pub(super) fn index_cmds(
        &self,
        update: &Update,
        w: &Write,
        replies: &[Value],
    ) -> Result<Vec<Cmd>, StoreError> {
        let merged = replies
            .get(..w.merges)
            .ok_or_else(|| StoreError::Redis("fewer replies than writes".into()))?;
        Ok(update
            .records
            .iter()
            .zip(merged)
            .zip(&w.indexed)
            .filter(|((_, v), indexed)| matches!(v, Value::Int(1)) && !**indexed)
            .flat_map(|(((kind, key, _), _), _)| self.index_entries(*kind, key))
            .collect())
    }
}

/// The writes of one update ([`RedisStore::write_cmds`]).
pub(super) struct Write {
    pub(super) cmds: Vec<Cmd>,
    merges: usize,
    /// Per record: its index entries went out with the write.
    indexed: Vec<bool>,
    /// The newest time they carry (the clock of index expiry).
    pub(super) newest: u64,
}

/// The time and Message-ID of an engagement queue key.
pub(super) fn split_engagement_key(k: &[u8]) -> Result<(u64, String), StoreError> {
    let t = k
        .get(..8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| StoreError::Redis("malformed engagement key".into()))?;
    Ok((t, String::from_utf8_lossy(&k[8..]).into_owned()))
}
