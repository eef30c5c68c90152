//! A sender's habits, for behaviour change: a compromised correspondent's
//! account sends authenticated mail, so authentication cannot tell; its
//! habits can. Per sender a bounded set (`SetKind::Fingerprint`, exact up
//! to `DISTINCT_K` members) of the mail clients (`User-Agent:` /
//! `X-Mailer:` names without versions), the DKIM selectors of its aligned
//! signatures, the organisations its Reply-To pointed to, and the hours
//! of the week it writes at (weekday × six-hour block, UTC: 28 values,
//! judged only once `TIMED_SETTLED` messages have shown them, counted by
//! `Counter::Timed`; a new one breaks only when that block of the day is
//! new on every day of its kind, working day or weekend — a Tuesday
//! morning is not new for someone who writes on Wednesday mornings, a
//! night or a first Saturday is); with the networks it sends from
//! (`SetKind::MtaNetworks`). `behaviour_change` is
//! raised when two or more break at once (`reputation::anomaly`). The
//! habits of such a message are learned only once the enterprise answers
//! it (`pipeline::learn`).

use crate::auth::AuthResult;
use crate::message::Message;
use crate::store::{Counter, Record, SetKind};
use crate::vocab::{domain_of, org_domain};

/// Messages with their hour of the week recorded after which a new hour
/// of the week counts as a break: a correspondent's hours are known only
/// from many messages.
pub const TIMED_SETTLED: u64 = 20;

/// One habit of a message: what it is (for the anomaly's detail), the
/// member stored, and whether seeing it anew counts as a break.
pub struct Habit {
    pub what: &'static str,
    pub member: String,
    pub counts: bool,
    /// The counter that must reach its figure before a new value counts.
    pub settled_by: Option<(Counter, u64)>,
}

impl Habit {
    /// Whether `rec` has seen enough of this habit to judge a new value.
    pub fn judged(&self, rec: &Record) -> bool {
        self.counts && self.settled_by.is_none_or(|(c, n)| rec.count(c) >= n)
    }

    /// Whether this habit breaks for `rec`: judged, and neither its value
    /// nor one alike (an hour of the week's block on the other days of its
    /// kind) is among the sender's habits (`set` of `rec`).
    pub fn breaks(&self, rec: &Record, set: SetKind) -> bool {
        let unseen = |m: &str| rec.contains(set, m) == Some(false);
        self.judged(rec)
            && unseen(&self.member)
            && same_block_on_like_days(&self.member)
                .iter()
                .all(|m| unseen(m))
    }
}

/// Whether a stored habit is an hour of the week (`Counter::Timed`
/// counts the messages that recorded one).
pub fn is_hour_of_week(member: &str) -> bool {
    member.starts_with(WHEN)
}

/// The prefix of an hour-of-the-week habit's value.
const WHEN: &str = "when:";

/// The hour-of-the-week habit's value at `time`: weekday and six-hour
/// block, UTC (`when:sat/00-06`).
pub fn hour_of_week(time: u64) -> String {
    let (day, block) = day_and_block(time);
    when(day, block)
}

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// The weekday (0: Monday) and the six-hour block's first hour of `time`
/// (UTC; 1970-01-01 was a Thursday).
fn day_and_block(time: u64) -> (usize, u64) {
    (
        ((time / 86_400 + 3) % 7) as usize,
        (time % 86_400) / 21_600 * 6,
    )
}

fn when(day: usize, block: u64) -> String {
    format!("{WHEN}{}/{block:02}-{:02}", DAYS[day], block + 6)
}

/// For an hour-of-the-week habit (`when:tue/06-12`), the same six-hour
/// block on the other days of its kind (Monday to Friday, or the
/// weekend); for any other habit, none.
fn same_block_on_like_days(member: &str) -> Vec<String> {
    let Some((day, block)) = member.strip_prefix(WHEN).and_then(|v| {
        let (d, b) = v.split_once('/')?;
        Some((
            DAYS.iter().position(|x| *x == d)?,
            b.get(..2)?.parse().ok()?,
        ))
    }) else {
        return Vec::new();
    };
    let kind = if day < 5 { 0..5 } else { 5..7 };
    kind.filter(|d| *d != day).map(|d| when(d, block)).collect()
}

/// The habit of a Reply-To in organisation `org` (`none`: no Reply-To
/// elsewhere).
pub fn reply_to_habit(org: &str) -> String {
    format!("replyto:{org}")
}

/// The habits `msg` shows for `sender`.
pub fn habits(msg: &Message, sender: &str) -> Vec<Habit> {
    let from_org = org_domain(domain_of(sender));
    let mut out = vec![Habit {
        what: "mail client",
        member: format!("client:{}", msg.mail_client.as_deref().unwrap_or("none")),
        counts: true,
        settled_by: None,
    }];
    if let Some(a) = &msg.auth {
        for d in a.dkim.iter().filter(|d| {
            d.result == AuthResult::Pass
                && !d.selector.is_empty()
                && org_domain(&d.domain) == from_org
        }) {
            out.push(Habit {
                what: "DKIM selector",
                member: format!("dkim:{}/{}", d.domain, d.selector),
                counts: true,
                settled_by: None,
            });
        }
    }
    let reply_org = msg
        .reply_to
        .as_deref()
        .map(|r| org_domain(domain_of(r)))
        .filter(|o| *o != from_org);
    out.push(Habit {
        what: "Reply-To organisation",
        counts: reply_org.is_some(),
        member: reply_to_habit(reply_org.as_deref().unwrap_or("none")),
        settled_by: None,
    });
    if msg.time > 0 {
        out.push(Habit {
            what: "hour of the week",
            member: hour_of_week(msg.time),
            counts: true,
            settled_by: Some((Counter::Timed, TIMED_SETTLED)),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{AuthSummary, DkimVerdict};

    #[test]
    fn habits_of_a_message() {
        let m = Message {
            mail_client: Some("mozilla thunderbird".into()),
            reply_to: Some("pay@elsewhere.example".into()),
            auth: Some(AuthSummary {
                dkim: vec![
                    DkimVerdict {
                        domain: "partner.example".into(),
                        result: AuthResult::Pass,
                        selector: "s1".into(),
                    },
                    DkimVerdict {
                        domain: "esp.example".into(),
                        result: AuthResult::Pass,
                        selector: "x".into(),
                    },
                ],
                ..AuthSummary::default()
            }),
            ..Message::default()
        };
        let h: Vec<String> = habits(&m, "carol@partner.example")
            .into_iter()
            .map(|h| h.member)
            .collect();
        assert_eq!(
            h,
            [
                "client:mozilla thunderbird",
                "dkim:partner.example/s1",
                "replyto:elsewhere.example"
            ]
        );
        let none = habits(&Message::default(), "carol@partner.example");
        assert_eq!(none[0].member, "client:none");
        assert!(!none[1].counts, "no Reply-To elsewhere is no break");
    }

    #[test]
    fn the_hour_of_the_week_is_judged_once_enough_messages_showed_it() {
        // 2025-11-28 was a Friday.
        assert_eq!(hour_of_week(1_764_288_000 + 3 * 3600), "when:fri/00-06");
        assert_eq!(
            hour_of_week(1_764_288_000 + 86_400 + 23 * 3600),
            "when:sat/18-24"
        );
        let m = Message {
            time: 1_764_288_000 + 3 * 3600,
            ..Message::default()
        };
        let h = habits(&m, "carol@partner.example");
        let when = h.iter().find(|h| h.what == "hour of the week").unwrap();
        let mut rec = Record::default();
        rec.add(Counter::Timed, TIMED_SETTLED - 1);
        assert!(!when.judged(&rec));
        rec.add(Counter::Timed, 1);
        assert!(when.judged(&rec));
        assert!(
            h[0].judged(&Record::default()),
            "the mail client is judged at once"
        );
    }

    #[test]
    fn an_hour_of_the_week_is_alike_to_its_block_on_days_of_its_kind() {
        // 2025-11-28 was a Friday; 09:00 and 21:00 UTC.
        let fri = 1_764_288_000 + 9 * 3600;
        assert_eq!(
            same_block_on_like_days(&hour_of_week(fri)),
            [
                "when:mon/06-12",
                "when:tue/06-12",
                "when:wed/06-12",
                "when:thu/06-12"
            ]
        );
        assert_eq!(
            same_block_on_like_days(&hour_of_week(fri + 86_400 + 12 * 3600)),
            ["when:sun/18-24"]
        );
        assert!(same_block_on_like_days("client:none").is_empty());
        let mut rec = Record::default();
        rec.add(Counter::Timed, TIMED_SETTLED);
        rec.insert(SetKind::Fingerprint, "when:wed/06-12");
        let at = |time| {
            habits(
                &Message {
                    time,
                    ..Message::default()
                },
                "carol@partner.example",
            )
            .into_iter()
            .find(|h| h.what == "hour of the week")
            .unwrap()
        };
        assert!(
            !at(fri).breaks(&rec, SetKind::Fingerprint),
            "Wednesday mornings are known"
        );
        assert!(
            at(fri + 86_400).breaks(&rec, SetKind::Fingerprint),
            "a Saturday morning"
        );
        assert!(
            at(fri + 12 * 3600).breaks(&rec, SetKind::Fingerprint),
            "a Friday night"
        );
    }
}
