//! What the daemon decided lately, for the console: the last
//! `admin.recent` verdict records, verdicts per hour by class and action
//! for a week, and the senders whose class changed (the movers).
//!
//! Everything here is in memory and starts empty with the daemon; the
//! store keeps the history that ratings need. One short lock per verdict,
//! never held across I/O.

use crate::verdict::VerdictRecord;
use crate::vocab::Class;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

/// Hours of per-hour counts kept.
pub const HOURS: usize = 7 * 24;
/// Senders whose last class is remembered for the movers.
const MOVER_KEYS: usize = 100_000;
/// Class changes kept (newest last).
const MOVES: usize = 10_000;

/// One verdict as the console keeps it.
#[derive(Debug)]
pub struct Seen {
    /// Its number since the daemon started (the console's link to it).
    pub n: u64,
    /// Unix seconds.
    pub time: u64,
    /// The sender's class, the MTA's when no sender was rated, or
    /// `outbound`/`none`.
    pub class: String,
    pub record: VerdictRecord,
}

impl Seen {
    /// The rated sender's key (the envelope sender when none was rated).
    pub fn sender(&self) -> Option<&str> {
        self.record
            .sender
            .as_ref()
            .and_then(|s| s["key"].as_str())
            .or(self.record.envelope_from.as_deref())
    }

    pub fn mta(&self) -> Option<&str> {
        self.record.mta.as_ref().and_then(|s| s["key"].as_str())
    }

    /// Whether the sender's or the MTA's class is `class` (or the
    /// headline class is, for `outbound` and `none`).
    pub fn has_class(&self, class: &str) -> bool {
        self.class == class
            || [&self.record.sender, &self.record.mta]
                .iter()
                .any(|r| r.as_ref().and_then(|r| r["class"].as_str()) == Some(class))
    }

    pub fn score(&self) -> Option<f64> {
        self.record
            .sender
            .as_ref()
            .and_then(|s| s["score"].as_f64())
    }

    /// Monitor-only mode held this verdict's action back.
    pub fn held_back(&self) -> bool {
        self.record.action.starts_with("would_")
    }

    /// Authentication failed (DMARC fail, or the identity did not
    /// authenticate).
    pub fn auth_failed(&self) -> bool {
        self.record.authenticated == Some(false)
            || self
                .record
                .auth
                .as_ref()
                .is_some_and(|a| a.dmarc == crate::auth::AuthResult::Fail)
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

    /// Keeps one verdict made at `time`.
    pub fn push(&self, record: VerdictRecord, time: u64) {
        let rated = |v: &Option<serde_json::Value>| {
            v.as_ref()
                .and_then(|r| r["class"].as_str())
                .map(str::to_string)
        };
        let class = if record.direction == "outbound" {
            "outbound".to_string()
        } else {
            rated(&record.sender)
                .or_else(|| rated(&record.mta))
                .unwrap_or_else(|| "none".into())
        };
        let sender_class: Option<(String, Class)> = record.sender.as_ref().and_then(|s| {
            let key = s["key"].as_str()?.to_string();
            let class = serde_json::from_value(s["class"].clone()).ok()?;
            Some((key, class))
        });
        let mut g = self.lock();
        let n = g.next;
        g.next += 1;
        let seen = Arc::new(Seen {
            n,
            time,
            class,
            record,
        });
        count_hour(&mut g.hours, &seen);
        if let Some((key, class)) = sender_class {
            note_class(&mut g, key, class, time, n);
        }
        g.recent.push_back(seen);
        while g.recent.len() > self.capacity {
            g.recent.pop_front();
        }
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
    *h.by_class.entry(seen.class.clone()).or_default() += 1;
    *h.by_action.entry(seen.record.action.clone()).or_default() += 1;
    h.held_back += u64::from(seen.held_back());
    h.auth_failed += u64::from(seen.auth_failed());
}

fn note_class(g: &mut Inner, key: String, class: Class, time: u64, n: u64) {
    match g.last_class.get(&key).copied() {
        Some(before) if before == class => {}
        Some(from) => {
            g.moves.push_back(Move {
                time,
                sender: key.clone(),
                from,
                to: class,
                n,
            });
            while g.moves.len() > MOVES {
                g.moves.pop_front();
            }
            g.last_class.insert(key, class);
        }
        None => {
            if g.last_class.len() >= MOVER_KEYS {
                // Forget everyone rather than grow: movers are a recent view.
                g.last_class.clear();
            }
            g.last_class.insert(key, class);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(sender: &str, class: &str, action: &str) -> VerdictRecord {
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
            sender: Some(json!({"key": sender, "class": class, "score": 50.0})),
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
