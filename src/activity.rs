//! What the daemon decided lately, for the console: the last
//! `admin.recent` verdict records, verdicts per hour by class and action
//! for a week, and the senders whose class changed (the movers).
//!
//! Everything here is in memory and starts empty with the daemon; the
//! store keeps the history that ratings need. One short lock per verdict,
//! never held across I/O.

use crate::verdict::{RatingRecord, VerdictRecord};
use crate::vocab::Class;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

/// Hours of per-hour counts kept.
pub const HOURS: usize = 7 * 24;
/// Senders whose last class is remembered for the movers.
const MOVER_KEYS: usize = 100_000;
/// Class changes kept (newest last).
const MOVES: usize = 10_000;

/// One verdict as the console keeps it: what its lists and pictures
/// need, and the whole record. Its JSON line is written where it is
/// needed: by the journal's writer (off the milter's path) and, in the
/// JSON log format, for the log.
#[derive(Debug)]
pub struct Seen {
    /// Its number since the daemon started (the console's link to it).
    pub n: u64,
    /// Unix seconds.
    pub time: u64,
    /// The sender's class, the MTA's when no sender was rated, or
    /// `outbound`/`none`.
    pub class: String,
    pub sender_class: Option<Class>,
    pub mta_class: Option<Class>,
    /// The rated sender's key (the envelope sender when none was rated).
    pub sender: Option<String>,
    pub mta: Option<String>,
    pub score: Option<f64>,
    pub direction: &'static str,
    pub anomalies: Vec<&'static str>,
    /// Authentication failed (DMARC fail, or the identity did not
    /// authenticate).
    pub auth_failed: bool,
    /// The verdict record.
    pub record: VerdictRecord,
}

impl Seen {
    fn new(n: u64, time: u64, record: VerdictRecord) -> Seen {
        let key = |v: &Option<RatingRecord>| v.as_ref().map(|r| r.key.clone());
        let (sender_class, mta_class) = (
            record.sender.as_ref().map(|r| r.class),
            record.mta.as_ref().map(|r| r.class),
        );
        let headline = if record.direction == "outbound" {
            "outbound".to_string()
        } else {
            sender_class
                .or(mta_class)
                .map_or_else(|| "none".to_string(), |c| c.to_string())
        };
        Seen {
            n,
            time,
            class: headline,
            sender_class,
            mta_class,
            sender: key(&record.sender).or_else(|| record.envelope_from.clone()),
            mta: key(&record.mta),
            score: record
                .sender
                .as_ref()
                .map(|s| s.score)
                .filter(|s| s.is_finite()),
            direction: record.direction,
            auth_failed: record.authenticated == Some(false)
                || record
                    .auth
                    .as_ref()
                    .is_some_and(|a| a.dmarc == crate::auth::AuthResult::Fail),
            anomalies: record.anomalies.iter().map(|a| a.name).collect(),
            record,
        }
    }

    /// The rated sender's key (the envelope sender when none was rated).
    pub fn sender(&self) -> Option<&str> {
        self.sender.as_deref()
    }

    pub fn mta(&self) -> Option<&str> {
        self.mta.as_deref()
    }

    pub fn score(&self) -> Option<f64> {
        self.score
    }

    /// Whether the sender's or the MTA's class is `class` (or the
    /// headline class is, for `outbound` and `none`).
    pub fn has_class(&self, class: &str) -> bool {
        self.class == class
            || [self.sender_class, self.mta_class]
                .iter()
                .flatten()
                .any(|c| c.as_str() == class)
    }

    /// Monitor-only mode held this verdict's action back.
    pub fn held_back(&self) -> bool {
        self.record.action.starts_with("would_")
    }

    /// The verdict record as the JSON log and the journal write it.
    pub fn json(&self) -> String {
        self.record.to_json_line()
    }

    /// [`Seen::json`] appended to `out`.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        self.record.write_json_line(out);
    }

    /// The whole record as JSON values (the verdict page).
    pub fn record_json(&self) -> serde_json::Value {
        serde_json::to_value(&self.record).unwrap_or_default()
    }

    pub fn recipients(&self) -> &[String] {
        &self.record.recipients
    }

    pub fn action(&self) -> &str {
        &self.record.action
    }
}

/// Verdicts of one hour.
#[derive(Clone, Debug, Default)]
pub struct Hour {
    /// Unix seconds at the start of the hour.
    pub start: u64,
    pub by_class: BTreeMap<String, u64>,
    pub by_action: BTreeMap<String, u64>,
    pub held_back: u64,
    pub auth_failed: u64,
}

impl Hour {
    pub fn total(&self) -> u64 {
        self.by_class.values().sum()
    }
}

/// A sender whose class changed.
#[derive(Clone, Debug)]
pub struct Move {
    pub time: u64,
    pub sender: String,
    pub from: Class,
    pub to: Class,
    /// The verdict that showed the new class.
    pub n: u64,
}

#[derive(Default)]
struct Inner {
    recent: VecDeque<Arc<Seen>>,
    hours: VecDeque<Hour>,
    last_class: HashMap<String, Class>,
    moves: VecDeque<Move>,
    next: u64,
}

/// The recent verdicts (see the module documentation).
pub struct Activity {
    capacity: usize,
    started: u64,
    inner: Mutex<Inner>,
}

impl Activity {
    pub fn new(capacity: usize, started: u64) -> Activity {
        Activity {
            capacity: capacity.max(1),
            started,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Unix seconds when the daemon started keeping verdicts.
    pub fn started(&self) -> u64 {
        self.started
    }

    /// Keeps one verdict made at `time`; the kept verdict.
    pub fn push(&self, record: VerdictRecord, time: u64) -> Arc<Seen> {
        // Built outside the lock.
        let mut seen = Seen::new(0, time, record);
        let mut g = self.lock();
        seen.n = g.next;
        g.next += 1;
        let seen = Arc::new(seen);
        count_hour(&mut g.hours, &seen);
        // Outbound verdicts rate no sender: no class to note.
        if let (Some(key), Some(class)) = (&seen.sender, seen.sender_class) {
            note_class(&mut g, key, class, time, seen.n);
        }
        g.recent.push_back(seen.clone());
        while g.recent.len() > self.capacity {
            g.recent.pop_front();
        }
        seen
    }

    /// The kept verdicts, newest first, that `keep` accepts (at most
    /// `limit`).
    pub fn recent(&self, limit: usize, keep: impl Fn(&Seen) -> bool) -> Vec<Arc<Seen>> {
        let g = self.lock();
        g.recent
            .iter()
            .rev()
            .filter(|s| keep(s))
            .take(limit)
            .cloned()
            .collect()
    }

    /// Verdict number `n`, while it is kept.
    pub fn get(&self, n: u64) -> Option<Arc<Seen>> {
        let g = self.lock();
        let first = g.recent.front()?.n;
        let i = usize::try_from(n.checked_sub(first)?).ok()?;
        g.recent.get(i).filter(|s| s.n == n).cloned()
    }

    /// How many verdicts are kept now, and the oldest one's time.
    pub fn window(&self) -> (usize, Option<u64>) {
        let g = self.lock();
        (g.recent.len(), g.recent.front().map(|s| s.time))
    }

    /// The hours since `since` (unix seconds), oldest first; hours without
    /// mail are included with zero counts, up to `now`.
    pub fn hours(&self, since: u64, now: u64) -> Vec<Hour> {
        let g = self.lock();
        let mut out = Vec::new();
        let mut start = since - since % 3600;
        let mut it = g.hours.iter().peekable();
        while start <= now {
            while it.peek().is_some_and(|h| h.start < start) {
                it.next();
            }
            match it.peek() {
                Some(h) if h.start == start => out.push((*h).clone()),
                _ => out.push(Hour {
                    start,
                    ..Hour::default()
                }),
            }
            start += 3600;
        }
        out
    }

    /// Class changes since `since`, newest first.
    pub fn moves(&self, since: u64) -> Vec<Move> {
        let g = self.lock();
        g.moves
            .iter()
            .rev()
            .take_while(|m| m.time >= since)
            .cloned()
            .collect()
    }
}

fn count_hour(hours: &mut VecDeque<Hour>, seen: &Seen) {
    let start = seen.time - seen.time % 3600;
    // Clocks move forward; a verdict from an earlier hour (a clock step)
    // counts in the newest hour rather than reordering the list.
    if hours.back().is_none_or(|h| h.start < start) {
        hours.push_back(Hour {
            start,
            ..Hour::default()
        });
        while hours.len() > HOURS {
            hours.pop_front();
        }
    }
    let Some(h) = hours.back_mut() else { return };
    bump(&mut h.by_class, &seen.class);
    bump(&mut h.by_action, seen.action());
    h.held_back += u64::from(seen.held_back());
    h.auth_failed += u64::from(seen.auth_failed);
}

/// One more in `m[key]`, allocating the key only the first time.
fn bump(m: &mut BTreeMap<String, u64>, key: &str) {
    match m.get_mut(key) {
        Some(n) => *n += 1,
        None => {
            m.insert(key.to_string(), 1);
        }
    }
}

fn note_class(g: &mut Inner, key: &str, class: Class, time: u64, n: u64) {
    match g.last_class.get_mut(key) {
        Some(before) if *before == class => {}
        Some(before) => {
            let from = std::mem::replace(before, class);
            g.moves.push_back(Move {
                time,
                sender: key.to_string(),
                from,
                to: class,
                n,
            });
            while g.moves.len() > MOVES {
                g.moves.pop_front();
            }
        }
        None => {
            if g.last_class.len() >= MOVER_KEYS {
                // Forget everyone rather than grow: movers are a recent view.
                g.last_class.clear();
            }
            g.last_class.insert(key.to_string(), class);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn record(sender: &str, class: &str, action: &str) -> VerdictRecord {
        VerdictRecord {
            time: String::new(),
            queue_id: "Q".into(),
            message_id: None,
            direction: "inbound",
            client_ip: None,
            helo: String::new(),
            envelope_from: Some(sender.into()),
            header_from: None,
            recipients: vec!["alice@example.com".into()],
            authenticated: Some(true),
            auth: None,
            sender: Some(RatingRecord {
                key: sender.into(),
                class: class.parse().expect("a class"),
                score: 50.0,
                ..crate::verdict::tests::rating_record()
            }),
            mta: None,
            anomalies: Vec::new(),
            score: None,
            stage: crate::vocab::Stage::Eom,
            action: action.into(),
            monitor: false,
            error: None,
            source: None,
        }
    }

    #[test]
    fn keeps_the_newest_and_finds_them_by_number() {
        let a = Activity::new(3, 0);
        for i in 0..5 {
            a.push(
                record(&format!("s{i}@x.example"), "neutral", "accept"),
                100 + i,
            );
        }
        let r = a.recent(10, |_| true);
        assert_eq!(r.len(), 3);
        assert_eq!(r[0].n, 4);
        assert_eq!(r[2].n, 2);
        assert!(a.get(1).is_none());
        assert_eq!(a.get(3).unwrap().sender(), Some("s3@x.example"));
        assert!(a.get(9).is_none());
    }

    #[test]
    fn a_kept_verdict_writes_its_record_as_the_log_and_journal_line() {
        let a = Activity::new(3, 0);
        let seen = a.push(record("s@x.example", "suspicious", "would_reject"), 100);
        let line = seen.json();
        assert_eq!(line, seen.record.to_json_line());
        // The journal's way: the same bytes, after what was there.
        let mut out = b"x".to_vec();
        seen.write_json(&mut out);
        assert_eq!(out, [b"x", line.as_bytes()].concat());
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v, seen.record_json());
        assert_eq!(v["sender"]["class"], "suspicious");
        assert_eq!(v["sender"]["key"], "s@x.example");
        assert_eq!(seen.score(), Some(50.0));
        assert!(seen.held_back());
    }

    #[test]
    fn counts_hours_by_class_action_and_held_back() {
        let a = Activity::new(100, 0);
        a.push(record("a@x.example", "neutral", "accept"), 3600);
        a.push(record("b@x.example", "malicious", "would_reject"), 3700);
        a.push(record("c@x.example", "malicious", "reject"), 3 * 3600 + 5);
        let h = a.hours(3600, 3 * 3600 + 10);
        assert_eq!(h.len(), 3);
        assert_eq!(h[0].total(), 2);
        assert_eq!(h[0].held_back, 1);
        assert_eq!(h[0].by_class["malicious"], 1);
        assert_eq!(h[1].total(), 0);
        assert_eq!(h[2].by_action["reject"], 1);
    }

    #[test]
    fn a_class_change_is_a_move() {
        let a = Activity::new(100, 0);
        a.push(record("a@x.example", "neutral", "accept"), 10);
        a.push(record("a@x.example", "neutral", "accept"), 20);
        a.push(record("a@x.example", "trusted", "accept"), 30);
        a.push(record("b@x.example", "suspicious", "tag"), 40);
        let m = a.moves(0);
        assert_eq!(m.len(), 1);
        assert_eq!((m[0].from, m[0].to), (Class::Neutral, Class::Trusted));
        assert_eq!(m[0].n, 2);
        assert!(a.moves(31).is_empty());
    }
}
