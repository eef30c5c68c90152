//! `store copy`'s view of a Redis store: everything it holds, found
//! through the key indexes and, for the message index and display names,
//! `SCAN` on each master.

use super::conn::{node_url, single_client};
use super::{cmd, kind_letter, redis_error, Client, RedisStore, SHARDS};
use crate::store::{decode_index, engagement_key, Item, Kind, Record, ReputationStore, StoreError};

impl RedisStore {
    /// Everything the store holds ([`ReputationStore::export`]).
    pub(super) fn export_all(
        &self,
        f: &mut dyn FnMut(Item) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        for kind in [Kind::Sender, Kind::Domain, Kind::Mta, Kind::Pair] {
            self.each_record(kind, &mut |k, r| f(Item::Record(kind, k.to_string(), r)))?;
        }
        for (tag, message) in [("x", true), ("n", false)] {
            let start = self.key(&format!("{{{tag}:"));
            let keys = self.keys_like(&start)?;
            for chunk in keys.chunks(100) {
                let cmds: Vec<redis::Cmd> =
                    chunk.iter().map(|k| cmd("GET").arg(k).clone()).collect();
                let values = self.with(|c| c.pipeline(&cmds))?;
                for (k, v) in chunk.iter().zip(values) {
                    let Ok(Some(v)) = redis::from_redis_value::<Option<Vec<u8>>>(v) else {
                        continue;
                    };
                    // The key is START + name + "}".
                    let name = &k[start.len()..k.len().saturating_sub(1)];
                    if message {
                        if let Some(e) = decode_index(name, &v, u64::MAX / 2, 0)? {
                            f(Item::Message(name.to_string(), e))?;
                        }
                    } else if let Ok(e) = serde_json::from_slice(&v) {
                        f(Item::Name(name.to_string(), e))?;
                    }
                }
            }
        }
        for o in self.overrides()? {
            f(Item::Override(o))?;
        }
        for s in 0..SHARDS {
            let all: Vec<(String, f64)> = self.with(|c| {
                c.query(
                    cmd("ZRANGE")
                        .arg(self.key(&format!("{{e:{s}}}")))
                        .arg(0)
                        .arg(-1)
                        .arg("WITHSCORES"),
                )
            })?;
            for (id, t) in all {
                f(Item::Engagement(engagement_key(t as u64, &id)))?;
            }
        }
        if let Some(t) = self.engagement_since()? {
            f(Item::EngagementSince(t))?;
        }
        Ok(())
    }

    /// Every record of `kind`, found through its key index. An entry whose
    /// record was never written (its merge failed after the entry went in
    /// with the write) reads as empty and is not a record: skipped.
    pub(super) fn each_record(
        &self,
        kind: Kind,
        f: &mut dyn FnMut(&str, Record) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        for s in 0..SHARDS {
            let idx = self.key(&format!("{{i:{}:{s}}}", kind_letter(kind)));
            let keys: Vec<String> = self.with(|c| c.query(cmd("SMEMBERS").arg(&idx)))?;
            for chunk in keys.chunks(100) {
                for (k, r) in chunk.iter().zip(self.records(kind, chunk)?) {
                    if !r.is_empty() {
                        f(k, r)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Every key that starts with `start` (`SCAN` on each master; only for
    /// `store copy`).
    fn keys_like(&self, start: &str) -> Result<Vec<String>, StoreError> {
        let pattern = format!("{}*", glob_escape(start));
        let servers: Vec<String> = match &self.client {
            Client::Single(_) => vec![self.cfg.nodes[0].clone()],
            Client::Cluster(_) => {
                let nodes: String = self.with(|c| c.query(&cmd("CLUSTER").arg("NODES").clone()))?;
                nodes
                    .lines()
                    .filter_map(|l| {
                        let f: Vec<&str> = l.split_whitespace().collect();
                        let master = f.get(2)?.contains("master") && !f[2].contains("fail");
                        let addr = f.get(1)?.split('@').next()?;
                        master.then(|| node_url(&self.cfg, addr))
                    })
                    .collect()
            }
        };
        let mut out = Vec::new();
        for url in servers {
            let mut conn = single_client(&url, &self.cfg)?
                .get_connection_with_timeout(self.cfg.connect_timeout.0)
                .map_err(redis_error)?;
            let mut cursor: u64 = 0;
            loop {
                let (next, keys): (u64, Vec<String>) = cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(1000)
                    .query(&mut conn)
                    .map_err(redis_error)?;
                out.extend(keys);
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        // SCAN may return a key twice.
        out.sort();
        out.dedup();
        Ok(out)
    }
}

/// `s` with the glob characters of `SCAN MATCH` escaped.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
