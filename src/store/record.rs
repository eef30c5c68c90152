//! The reputation record: counters, first/last seen, bounded distinct sets.
//!
//! One record type serves senders, sender domains, MTAs and sender×MTA
//! pairs. A record is also its own *delta*: merging two records adds the
//! counters, keeps the earliest first-seen and latest last-seen, and unions
//! the distinct sets. That merge is associative and commutative, so it runs
//! as a RocksDB merge operator and concurrent connections never
//! read-modify-write.
//!
//! Distinct counts (enterprise recipients, sender domains) use a
//! k-minimum-values sketch: the `DISTINCT_K` smallest 64-bit hashes of the
//! members. Below `DISTINCT_K` members the count is exact; above it the
//! estimate is `(k-1) / (kth smallest hash / 2^64)`. A bulk sender to
//! 100,000 employees costs at most `8 * DISTINCT_K` bytes per set.
//!
//! Encoding (little-endian varints, tags so new counters can be added):
//! `version:u8, first_seen, last_seen, n_counts, (tag:u8, value)*, n_sets,
//! (tag:u8, n, u64le*n)*, label_len, label`.

use std::collections::BTreeMap;

pub const DISTINCT_K: usize = 256;
const VERSION: u8 = 1;

/// Counter tags. Never renumber: they are stored on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Counter {
    /// Inbound messages (authenticated or not yet verifiable).
    MessagesReceived = 1,
    /// Inbound messages that answer enterprise mail.
    RepliesReceived = 2,
    /// Outbound messages addressed to this correspondent.
    MessagesSent = 3,
    /// Outbound messages that answer this correspondent's mail.
    RepliesSent = 4,
    /// Messages opened by at least one enterprise recipient.
    Opened = 5,
    /// Messages not opened within the grace period.
    NotOpened = 6,
    NotOpenedWithAttachment = 7,
    NotOpenedWithUrl = 8,
    /// Junk reports from recipients (engagement source).
    Junk = 9,
    /// Inbound messages claiming this sender that were not authenticated:
    /// kept apart, they never build trust.
    UnauthMessagesReceived = 10,
    /// Opened after the grace period had counted them not opened (the
    /// not-opened counts are read net of these: merges only add).
    LateOpened = 11,
    LateOpenedWithAttachment = 12,
    LateOpenedWithUrl = 13,
    /// Junk reports withdrawn (`not_junk`).
    NotJunk = 14,
    /// Authenticated inbound messages whose habits joined `Fingerprint`.
    Fingerprinted = 15,
    /// Of those, the messages whose hour of the week joined it too (the
    /// habit is judged once enough have: `reputation::habits`).
    Timed = 16,
}

impl Counter {
    fn from_tag(t: u8) -> Option<Counter> {
        use Counter::*;
        Some(match t {
            1 => MessagesReceived,
            2 => RepliesReceived,
            3 => MessagesSent,
            4 => RepliesSent,
            5 => Opened,
            6 => NotOpened,
            7 => NotOpenedWithAttachment,
            8 => NotOpenedWithUrl,
            9 => Junk,
            10 => UnauthMessagesReceived,
            11 => LateOpened,
            12 => LateOpenedWithAttachment,
            13 => LateOpenedWithUrl,
            14 => NotJunk,
            15 => Fingerprinted,
            16 => Timed,
            _ => return None,
        })
    }
}

/// Distinct-set tags. Never renumber.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum SetKind {
    EnterpriseRecipients = 1,
    SenderDomains = 2,
    Senders = 3,
    /// /24 (IPv4) or /48 (IPv6) networks a sender's mail came from.
    MtaNetworks = 4,
    /// A sender's habits: mail clients, DKIM selectors, Reply-To
    /// organisations (`reputation::anomaly` behaviour change).
    Fingerprint = 5,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("corrupt reputation record: {0}")]
pub struct DecodeError(pub &'static str);

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Record {
    /// Unix seconds; 0 when never seen.
    pub first_seen: u64,
    pub last_seen: u64,
    /// Keyed by tag; unknown tags from newer versions are kept as they are.
    counts: BTreeMap<u8, u64>,
    sets: BTreeMap<u8, Vec<u64>>,
    /// Latest free-text attribute (the MTA's HELO name); last writer by
    /// `last_seen` wins.
    pub label: String,
}

/// FNV-1a, then a 64-bit finaliser: stable across versions and platforms
/// (the hashes are stored), and well spread for the KMV estimate.
pub fn stable_hash(s: &str) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in s.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100000001b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51afd7ed558ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ceb9fe1a85ec53);
    h ^ (h >> 33)
}

impl Record {
    /// A delta that marks an event at `time`.
    pub fn seen_at(time: u64) -> Record {
        Record {
            first_seen: time,
            last_seen: time,
            ..Record::default()
        }
    }

    /// A delta that moves `last_seen` only (unauthenticated mail must not
    /// start the `days_known` clock).
    pub fn touched_at(time: u64) -> Record {
        Record {
            last_seen: time,
            ..Record::default()
        }
    }

    pub fn count(&self, c: Counter) -> u64 {
        self.counts.get(&(c as u8)).copied().unwrap_or(0)
    }

    /// `a - b`, for counters read net of their withdrawals.
    pub fn net(&self, a: Counter, b: Counter) -> u64 {
        self.count(a).saturating_sub(self.count(b))
    }

    pub fn add(&mut self, c: Counter, n: u64) -> &mut Self {
        if n > 0 {
            let v = self.counts.entry(c as u8).or_insert(0);
            *v = v.saturating_add(n);
        }
        self
    }

    pub fn insert(&mut self, kind: SetKind, member: &str) -> &mut Self {
        let set = self.sets.entry(kind as u8).or_default();
        merge_sketch(set, &[stable_hash(member)]);
        self
    }

    /// Is `member` in the set? Exact while the set holds every member
    /// (fewer than `DISTINCT_K`) or the member's hash is below the kept
    /// ones; `None` when the sketch cannot tell.
    pub fn contains(&self, kind: SetKind, member: &str) -> Option<bool> {
        let Some(set) = self.sets.get(&(kind as u8)) else {
            return Some(false);
        };
        let h = stable_hash(member);
        if set.binary_search(&h).is_ok() {
            Some(true)
        } else if set.len() < DISTINCT_K || set.last().is_some_and(|max| h < *max) {
            Some(false)
        } else {
            None
        }
    }

    /// Distinct members (exact below `DISTINCT_K`, estimated above).
    pub fn distinct(&self, kind: SetKind) -> u64 {
        let Some(set) = self.sets.get(&(kind as u8)) else {
            return 0;
        };
        if set.len() < DISTINCT_K {
            return set.len() as u64;
        }
        let kth = set[DISTINCT_K - 1].max(1) as f64 / u64::MAX as f64;
        ((DISTINCT_K as f64 - 1.0) / kth).round() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.first_seen == 0 && self.counts.is_empty() && self.sets.is_empty()
    }

    /// Folds `other` into `self` (the merge operator).
    pub fn merge(&mut self, other: &Record) {
        if other.first_seen != 0 && (self.first_seen == 0 || other.first_seen < self.first_seen) {
            self.first_seen = other.first_seen;
        }
        if other.last_seen >= self.last_seen {
            if !other.label.is_empty() {
                self.label = other.label.clone();
            }
            self.last_seen = other.last_seen;
        }
        for (t, v) in &other.counts {
            let e = self.counts.entry(*t).or_insert(0);
            *e = e.saturating_add(*v);
        }
        for (t, s) in &other.sets {
            merge_sketch(self.sets.entry(*t).or_default(), s);
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32);
        out.push(VERSION);
        put_varint(&mut out, self.first_seen);
        put_varint(&mut out, self.last_seen);
        put_varint(&mut out, self.counts.len() as u64);
        for (t, v) in &self.counts {
            out.push(*t);
            put_varint(&mut out, *v);
        }
        put_varint(&mut out, self.sets.len() as u64);
        for (t, s) in &self.sets {
            out.push(*t);
            put_varint(&mut out, s.len() as u64);
            for h in s {
                out.extend_from_slice(&h.to_le_bytes());
            }
        }
        put_varint(&mut out, self.label.len() as u64);
        out.extend_from_slice(self.label.as_bytes());
        out
    }

    pub fn decode(mut b: &[u8]) -> Result<Record, DecodeError> {
        let version = take_u8(&mut b)?;
        if version != VERSION {
            return Err(DecodeError("unknown record version"));
        }
        let mut r = Record {
            first_seen: take_varint(&mut b)?,
            last_seen: take_varint(&mut b)?,
            ..Record::default()
        };
        let n = take_varint(&mut b)?;
        for _ in 0..n {
            let t = take_u8(&mut b)?;
            r.counts.insert(t, take_varint(&mut b)?);
        }
        let n = take_varint(&mut b)?;
        for _ in 0..n {
            let t = take_u8(&mut b)?;
            let len = take_varint(&mut b)? as usize;
            if len > DISTINCT_K || b.len() < len * 8 {
                return Err(DecodeError("distinct set too long"));
            }
            let mut set = Vec::with_capacity(len);
            for chunk in b[..len * 8].chunks_exact(8) {
                let mut a = [0u8; 8];
                a.copy_from_slice(chunk);
                set.push(u64::from_le_bytes(a));
            }
            b = &b[len * 8..];
            if set.windows(2).any(|w| w[0] >= w[1]) {
                return Err(DecodeError("distinct set not sorted"));
            }
            r.sets.insert(t, set);
        }
        let len = take_varint(&mut b)? as usize;
        if b.len() != len {
            return Err(DecodeError("bad label length"));
        }
        r.label = String::from_utf8(b.to_vec()).map_err(|_| DecodeError("label not UTF-8"))?;
        Ok(r)
    }

    /// Named counters for display (`explain`, debugging).
    /// A record from its parts (a backend that stores them apart); each
    /// set is sorted and at most `DISTINCT_K` long.
    pub fn from_parts(
        first_seen: u64,
        last_seen: u64,
        counts: BTreeMap<u8, u64>,
        sets: BTreeMap<u8, Vec<u64>>,
        label: String,
    ) -> Record {
        Record {
            first_seen,
            last_seen,
            counts,
            sets,
            label,
        }
    }

    /// Counters by tag, unknown tags included.
    pub fn raw_counts(&self) -> &BTreeMap<u8, u64> {
        &self.counts
    }

    /// Distinct-set sketches by tag: sorted hashes, at most `DISTINCT_K`.
    pub fn raw_sets(&self) -> &BTreeMap<u8, Vec<u64>> {
        &self.sets
    }

    pub fn counters(&self) -> impl Iterator<Item = (Counter, u64)> + '_ {
        self.counts
            .iter()
            .filter_map(|(t, v)| Counter::from_tag(*t).map(|c| (c, *v)))
    }
}

/// Union of two sorted hash sets, keeping the `DISTINCT_K` smallest.
fn merge_sketch(into: &mut Vec<u64>, other: &[u64]) {
    if other.is_empty() {
        return;
    }
    let mut merged = Vec::with_capacity((into.len() + other.len()).min(DISTINCT_K));
    let (mut i, mut j) = (0, 0);
    while merged.len() < DISTINCT_K && (i < into.len() || j < other.len()) {
        let next = match (into.get(i), other.get(j)) {
            (Some(a), Some(b)) if a == b => {
                i += 1;
                j += 1;
                *a
            }
            (Some(a), Some(b)) if a < b => {
                i += 1;
                *a
            }
            (Some(_), Some(b)) => {
                j += 1;
                *b
            }
            (Some(a), None) => {
                i += 1;
                *a
            }
            (None, Some(b)) => {
                j += 1;
                *b
            }
            (None, None) => break,
        };
        merged.push(next);
    }
    *into = merged;
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn take_u8(b: &mut &[u8]) -> Result<u8, DecodeError> {
    let (&first, rest) = b.split_first().ok_or(DecodeError("truncated"))?;
    *b = rest;
    Ok(first)
}

fn take_varint(b: &mut &[u8]) -> Result<u64, DecodeError> {
    let mut v: u64 = 0;
    for shift in (0..64).step_by(7) {
        let byte = take_u8(b)?;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(DecodeError("varint too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Record {
        let mut r = Record::seen_at(1000);
        r.add(Counter::MessagesReceived, 3)
            .add(Counter::RepliesSent, 1)
            .insert(SetKind::EnterpriseRecipients, "a@example.com");
        r.label = "mx.example.net".into();
        r
    }

    #[test]
    fn encode_decode_round_trip() {
        let r = sample();
        assert_eq!(Record::decode(&r.encode()).unwrap(), r);
        assert_eq!(
            Record::decode(&Record::default().encode()).unwrap(),
            Record::default()
        );
    }

    #[test]
    fn decode_rejects_garbage_without_panicking() {
        let good = sample().encode();
        for cut in 0..good.len() {
            assert!(Record::decode(&good[..cut]).is_err(), "cut at {cut}");
        }
        assert!(Record::decode(b"\x09garbage").is_err());
        assert!(Record::decode(&[
            1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff
        ])
        .is_err());
    }

    #[test]
    fn merge_is_associative_and_commutative() {
        let mut a = Record::seen_at(500);
        a.add(Counter::MessagesReceived, 1)
            .insert(SetKind::EnterpriseRecipients, "x");
        let mut b = Record::seen_at(2000);
        b.add(Counter::MessagesSent, 2)
            .insert(SetKind::EnterpriseRecipients, "y");
        b.label = "newer".into();
        let c = sample();

        let mut ab_c = a.clone();
        ab_c.merge(&b);
        ab_c.merge(&c);
        let mut bc = b.clone();
        bc.merge(&c);
        let mut a_bc = a.clone();
        a_bc.merge(&bc);
        let mut cba = c.clone();
        cba.merge(&b);
        cba.merge(&a);
        assert_eq!(ab_c, a_bc);
        assert_eq!(ab_c, cba);
        assert_eq!(ab_c.first_seen, 500);
        assert_eq!(ab_c.last_seen, 2000);
        assert_eq!(ab_c.label, "newer");
        assert_eq!(ab_c.count(Counter::MessagesReceived), 4);
        assert_eq!(ab_c.distinct(SetKind::EnterpriseRecipients), 3);
    }

    #[test]
    fn distinct_sets_are_bounded_and_estimate_large_counts() {
        let mut r = Record::default();
        for i in 0..100_000 {
            r.insert(
                SetKind::EnterpriseRecipients,
                &format!("user{i}@example.com"),
            );
        }
        assert!(r.encode().len() < DISTINCT_K * 8 + 64);
        let est = r.distinct(SetKind::EnterpriseRecipients) as f64;
        assert!((est - 100_000.0).abs() / 100_000.0 < 0.2, "estimate {est}");

        let mut small = Record::default();
        for i in 0..(DISTINCT_K - 1) {
            small.insert(SetKind::EnterpriseRecipients, &format!("u{i}"));
            small.insert(SetKind::EnterpriseRecipients, &format!("u{i}"));
        }
        assert_eq!(
            small.distinct(SetKind::EnterpriseRecipients),
            DISTINCT_K as u64 - 1
        );
    }

    #[test]
    fn unknown_counter_tags_survive_a_round_trip() {
        let mut r = Record::default();
        r.counts.insert(200, 7);
        let back = Record::decode(&r.encode()).unwrap();
        assert_eq!(back.counts.get(&200), Some(&7));
        assert_eq!(back.counters().count(), 0);
    }
}
