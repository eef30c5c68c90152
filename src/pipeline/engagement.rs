//! Engagement events from the mailbox server: opens and junk reports feed
//! the four opened/not-opened factors and the `junk` contribution.
//!
//! Contract (DESIGN.md): a body of one JSON object or JSON lines, each
//! `{"event": "opened" | "junk" | "not_junk", "message_id": "<...>",
//! "mailbox": "user@enterprise", "time": RFC 3339 (optional)}`. A batch is
//! validated completely before anything is applied; a bad line rejects the
//! batch with its line number and reason, and nothing is stored.
//!
//! Matching: an event applies to the message-index entry of its Message-ID
//! when the mailbox is one of the message's enterprise recipients (or the
//! entry recorded none). Anything else is counted as unknown, not an
//! error. A message counts as opened at most once, however many recipients
//! open it; a junk report counts once until withdrawn by `not_junk`.
//!
//! *Not opened* is derived, not guessed: once an engagement source has
//! reported its first event, an inbound message delivered after that which
//! sees no open within `open_grace` counts as not opened, split by
//! has-attachment and has-URL as recorded at end of message. An open that
//! arrives later moves it back (`LateOpened*` counters; merges only add).

use super::Engine;
use crate::config::Config;
use crate::message::{normalize_envelope, normalize_message_id};
use crate::store::{engagement_key, Counter, Deltas, IndexEntry, Kind, Record, StoreError, Update};
use crate::vocab::{domain_of, parse_rfc3339, Direction};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Opened,
    Junk,
    NotJunk,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    pub message_id: String,
    pub mailbox: String,
    pub time: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEvent {
    event: String,
    message_id: String,
    mailbox: String,
    #[serde(default)]
    time: Option<String>,
}

/// A bad event: its line (1-based) and why.
#[derive(Debug, PartialEq, Eq)]
pub struct BadEvent {
    pub line: usize,
    pub reason: String,
}

impl std::fmt::Display for BadEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

fn parse_one(v: RawEvent) -> Result<Event, String> {
    let kind = match v.event.as_str() {
        "opened" => EventKind::Opened,
        "junk" => EventKind::Junk,
        "not_junk" => EventKind::NotJunk,
        other => {
            return Err(format!(
                "unknown event type {other:?} (opened, junk, not_junk)"
            ))
        }
    };
    let message_id =
        normalize_message_id(&v.message_id).ok_or("message_id is empty or malformed")?;
    let mailbox = normalize_envelope(&v.mailbox, "+").ok_or("mailbox is not an email address")?;
    let time = match v.time {
        None => None,
        Some(t) => Some(parse_rfc3339(&t).ok_or_else(|| format!("time {t:?} is not RFC 3339"))?),
    };
    Ok(Event {
        kind,
        message_id,
        mailbox,
        time,
    })
}

/// Parses a body: one JSON object, or JSON lines (blank lines skipped).
pub fn parse_batch(body: &str) -> Result<Vec<Event>, BadEvent> {
    let trimmed = body.trim();
    if trimmed.is_empty() {
        return Err(BadEvent {
            line: 1,
            reason: "empty body".into(),
        });
    }
    if let Ok(v) = serde_json::from_str::<RawEvent>(trimmed) {
        return parse_one(v)
            .map(|e| vec![e])
            .map_err(|reason| BadEvent { line: 1, reason });
    }
    let mut out = Vec::new();
    for (i, line) in body.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let raw: RawEvent = serde_json::from_str(line).map_err(|e| BadEvent {
            line: i + 1,
            reason: e.to_string(),
        })?;
        out.push(parse_one(raw).map_err(|reason| BadEvent {
            line: i + 1,
            reason,
        })?);
    }
    Ok(out)
}

/// What a batch did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    pub accepted: usize,
    /// Events for a message (or mailbox) the index does not know.
    pub unknown: usize,
    /// Events that changed nothing (a second open, a repeated report).
    pub duplicate: usize,
}

fn delta(time: u64) -> Record {
    Record::touched_at(time)
}

fn bump(d: &mut Deltas, kind: Kind, key: &str, time: u64, counters: &[Counter]) {
    let mut r = delta(time);
    for c in counters {
        r.add(*c, 1);
    }
    d.merge(kind, key, &r);
}

impl Engine {
    /// Applies a validated batch atomically. `now` dates events without a
    /// time of their own.
    pub fn apply_events(&self, events: &[Event], now: u64) -> Result<Report, StoreError> {
        let _guard = self.events_lock();
        let store = self.store();
        let mut report = Report::default();
        let mut entries: HashMap<String, Option<IndexEntry>> = HashMap::new();
        let mut records = Deltas::default();
        let mut first_time = u64::MAX;
        let mut changed: std::collections::HashSet<String> = std::collections::HashSet::new();
        for ev in events {
            let time = ev.time.unwrap_or(now);
            first_time = first_time.min(time);
            if !entries.contains_key(&ev.message_id) {
                entries.insert(ev.message_id.clone(), store.message(&ev.message_id)?);
            }
            let Some(Some(entry)) = entries.get_mut(&ev.message_id) else {
                report.unknown += 1;
                continue;
            };
            let mailbox = store.address_key(&ev.mailbox);
            let addressed = entry.recipients.is_empty()
                || entry
                    .recipients
                    .iter()
                    .any(|r| store.address_key(r) == mailbox);
            if entry.direction != Direction::Inbound || !addressed {
                report.unknown += 1;
                continue;
            }
            let sender = entry.sender.clone();
            let domain = domain_of(&sender).to_string();
            let mut counters: Vec<Counter> = Vec::new();
            let mut mta_counters: Vec<Counter> = Vec::new();
            match ev.kind {
                EventKind::Opened if !entry.opened => {
                    entry.opened = true;
                    counters.push(Counter::Opened);
                    if entry.not_opened_counted {
                        counters.push(Counter::LateOpened);
                        if entry.has_attachment {
                            counters.push(Counter::LateOpenedWithAttachment);
                        }
                        if entry.has_url {
                            counters.push(Counter::LateOpenedWithUrl);
                        }
                    }
                }
                EventKind::Junk if !entry.junk => {
                    entry.junk = true;
                    counters.push(Counter::Junk);
                    mta_counters.push(Counter::Junk);
                }
                EventKind::NotJunk if entry.junk => {
                    entry.junk = false;
                    counters.push(Counter::NotJunk);
                    mta_counters.push(Counter::NotJunk);
                }
                _ => {
                    report.duplicate += 1;
                    continue;
                }
            }
            report.accepted += 1;
            changed.insert(ev.message_id.clone());
            bump(&mut records, Kind::Sender, &sender, time, &counters);
            bump(&mut records, Kind::Domain, &domain, time, &counters);
            if let (Some(m), false) = (&entry.mta, mta_counters.is_empty()) {
                bump(&mut records, Kind::Mta, m, time, &mta_counters);
            }
        }
        let mut u = Update::default();
        u.records.extend(records.into_records());
        for (id, entry) in entries {
            let Some(e) = entry else { continue };
            if changed.contains(&id) {
                if e.opened && !e.not_opened_counted {
                    u.engagement_del.push(engagement_key(e.time, &id));
                }
                u.messages.push((id, e));
            }
        }
        if !events.is_empty() {
            u.engagement_since = Some(first_time.min(now));
        }
        store.apply(&u)?;
        Ok(report)
    }

    /// Counts the messages whose grace period has passed without an open,
    /// as of `now`. Returns how many were counted. Messages delivered
    /// before the first engagement event leave the queue uncounted.
    pub fn sweep_not_opened(&self, cfg: &Config, now: u64) -> Result<usize, StoreError> {
        let _guard = self.events_lock();
        let store = self.store();
        let grace = cfg.events.open_grace.0.as_secs();
        let since = store.engagement_since()?;
        let mut counted = 0;
        loop {
            let due = store.engagement_due(now.saturating_sub(grace), 1000)?;
            if due.is_empty() {
                return Ok(counted);
            }
            let mut u = Update::default();
            let mut records = Deltas::default();
            for (key, time, id) in due {
                u.engagement_del.push(key);
                let Some(mut e) = store.message(&id)? else {
                    continue;
                };
                let active = since.is_some_and(|s| time >= s);
                if e.opened || e.not_opened_counted || !active {
                    continue;
                }
                e.not_opened_counted = true;
                let mut c = vec![Counter::NotOpened];
                if e.has_attachment {
                    c.push(Counter::NotOpenedWithAttachment);
                }
                if e.has_url {
                    c.push(Counter::NotOpenedWithUrl);
                }
                let t = time.saturating_add(grace);
                bump(&mut records, Kind::Sender, &e.sender, t, &c);
                bump(&mut records, Kind::Domain, domain_of(&e.sender), t, &c);
                u.messages.push((id, e));
                counted += 1;
            }
            u.records.extend(records.into_records());
            store.apply(&u)?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_parse_as_one_object_or_json_lines() {
        let one = r#"{"event": "opened", "message_id": "<a@b>", "mailbox": "Alice+x@Example.com"}"#;
        let e = parse_batch(one).unwrap();
        assert_eq!(e[0].kind, EventKind::Opened);
        assert_eq!(e[0].message_id, "a@b");
        assert_eq!(e[0].mailbox, "alice@example.com");
        let pretty = "{\n  \"event\": \"junk\",\n  \"message_id\": \"<a@b>\",\n  \"mailbox\": \"a@example.com\"\n}";
        assert_eq!(parse_batch(pretty).unwrap()[0].kind, EventKind::Junk);
        let lines = format!(
            "{one}\n\n{}\n",
            r#"{"event": "not_junk", "message_id": "<c@d>", "mailbox": "a@example.com", "time": "2026-11-24T00:00:00Z"}"#
        );
        let e = parse_batch(&lines).unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(e[1].time, Some(1_795_478_400));
    }

    #[test]
    fn bad_lines_are_named() {
        let bad = format!(
            "{}\n{}\n",
            r#"{"event": "opened", "message_id": "<a@b>", "mailbox": "a@example.com"}"#,
            r#"{"event": "clicked", "message_id": "<a@b>", "mailbox": "a@example.com"}"#
        );
        let e = parse_batch(&bad).unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.reason.contains("unknown event type"), "{e}");
        assert_eq!(parse_batch("not json").unwrap_err().line, 1);
        assert!(parse_batch(
            r#"{"event": "opened", "message_id": "", "mailbox": "a@example.com"}"#
        )
        .is_err());
        assert!(
            parse_batch(r#"{"event": "opened", "message_id": "<a@b>", "mailbox": "nobody"}"#)
                .is_err()
        );
        assert!(parse_batch(
            r#"{"event": "opened", "message_id": "<a@b>", "mailbox": "a@example.com", "extra": 1}"#
        )
        .is_err());
        assert!(parse_batch("").is_err());
    }
}
