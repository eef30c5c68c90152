//! Ratings: factors → score → class.
//!
//! A score is `base` plus a sum of named contributions, so the header, the
//! log and `explain` can print exactly why. Each factor contributes
//! `weight * min(1, ln(1 + x) / ln(1 + cap))`: it grows with the logarithm
//! of its count and stops at `cap`, so no single factor, and no volume of
//! inbound mail, dominates. Negative weights make penalties the same way.
//!
//! Classes, checked in this order:
//! - `malicious` when score ≤ `malicious`, `suspicious` when ≤ `suspicious`;
//! - `unrated` while the history holds fewer than `min_history` messages;
//! - `trusted` when score ≥ `trusted` *and* the enterprise took part (it
//!   wrote to the sender or replied to it; for an MTA, replies came back
//!   through it). Attackers can send as much as they like; they cannot make
//!   the enterprise answer. (With the default weights the history a
//!   sender earns by sending alone also stays at 70 < 75.)
//! - `neutral` otherwise.
//!
//! A new address (too little history of its own) at a known domain is
//! backed by its domain: `domain_reputation` adds
//! `domain_backing * (domain score - base)` and the domain's history counts
//! towards `min_history`. It can never make the new address trusted, since
//! the address itself has no bidirectional evidence.

use crate::overrides::Override;
use crate::record::{Counter, Record, SetKind};
use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    Unrated,
    Neutral,
    Trusted,
    Suspicious,
    Malicious,
}

impl Class {
    pub const ALL: [Class; 5] = [
        Class::Unrated,
        Class::Neutral,
        Class::Trusted,
        Class::Suspicious,
        Class::Malicious,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Class::Unrated => "unrated",
            Class::Neutral => "neutral",
            Class::Trusted => "trusted",
            Class::Suspicious => "suspicious",
            Class::Malicious => "malicious",
        }
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Class {
    type Err = String;
    fn from_str(s: &str) -> Result<Class, String> {
        Class::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| {
                format!("unknown class {s:?} (unrated, neutral, trusted, suspicious, malicious)")
            })
    }
}

/// One factor's weight and the count at which it stops growing.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Weight {
    pub weight: f64,
    pub cap: f64,
}

const fn w(weight: f64, cap: f64) -> Weight {
    Weight { weight, cap }
}

impl Weight {
    /// `weight * min(1, ln(1+x)/ln(1+cap))`.
    pub fn points(&self, x: f64) -> f64 {
        self.weight * log_fraction(x, self.cap)
    }
}

fn log_fraction(x: f64, cap: f64) -> f64 {
    if x <= 0.0 || cap <= 0.0 {
        return 0.0;
    }
    ((1.0 + x).ln() / (1.0 + cap).ln()).min(1.0)
}

/// Weights of the eleven sender factors (canonical names).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SenderWeights {
    pub days_known: Weight,
    pub enterprise_recipients: Weight,
    /// `cap` is the conversation size (sent + received) at which a balanced
    /// ratio earns the full weight.
    pub sender_enterprise_ratio: Weight,
    /// `cap` is the number of measured messages at which the ratio counts
    /// fully; the contribution runs from `-weight` (none opened) to
    /// `+weight` (all opened).
    pub open_ratio: Weight,
    pub messages_received: Weight,
    pub replies_sent: Weight,
    pub not_opened: Weight,
    pub not_opened_with_attachment: Weight,
    pub not_opened_with_url: Weight,
    pub messages_sent: Weight,
    pub replies_received: Weight,
}

impl Default for SenderWeights {
    fn default() -> Self {
        SenderWeights {
            days_known: w(10.0, 365.0),
            enterprise_recipients: w(5.0, 20.0),
            sender_enterprise_ratio: w(5.0, 20.0),
            open_ratio: w(8.0, 20.0),
            messages_received: w(5.0, 100.0),
            replies_sent: w(12.0, 10.0),
            not_opened: w(-4.0, 50.0),
            not_opened_with_attachment: w(-8.0, 20.0),
            not_opened_with_url: w(-8.0, 20.0),
            messages_sent: w(10.0, 20.0),
            replies_received: w(10.0, 10.0),
        }
    }
}

/// Weights of the five MTA factors (canonical names).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MtaWeights {
    pub days_known: Weight,
    pub sender_domains: Weight,
    pub enterprise_recipients: Weight,
    pub messages_received: Weight,
    pub replies_received: Weight,
}

impl Default for MtaWeights {
    fn default() -> Self {
        MtaWeights {
            days_known: w(8.0, 365.0),
            sender_domains: w(3.0, 50.0),
            enterprise_recipients: w(5.0, 50.0),
            messages_received: w(7.0, 1000.0),
            replies_received: w(15.0, 20.0),
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ScoringConfig {
    /// Score of an identity with no history.
    pub base: f64,
    /// Messages (either direction) before an identity leaves `unrated`.
    pub min_history: u64,
    pub trusted: f64,
    pub suspicious: f64,
    pub malicious: f64,
    /// Share of a domain's score difference that backs a new address.
    pub domain_backing: f64,
    /// Junk reports from recipients (net of `not_junk`), for senders and
    /// MTAs alike: the `junk` contribution.
    pub junk: Weight,
    pub sender: SenderWeights,
    pub mta: MtaWeights,
}

impl Default for ScoringConfig {
    fn default() -> Self {
        ScoringConfig {
            base: 50.0,
            min_history: 2,
            trusted: 75.0,
            suspicious: 35.0,
            malicious: 15.0,
            domain_backing: 0.5,
            junk: w(-25.0, 5.0),
            sender: SenderWeights::default(),
            mta: MtaWeights::default(),
        }
    }
}

impl ScoringConfig {
    pub fn validate(&self) -> Result<(), String> {
        if !(self.malicious < self.suspicious
            && self.suspicious < self.base
            && self.base < self.trusted)
        {
            return Err(format!(
                "scoring: thresholds must satisfy malicious < suspicious < base < trusted (got {} < {} < {} < {})",
                self.malicious, self.suspicious, self.base, self.trusted
            ));
        }
        if !(0.0..=1.0).contains(&self.domain_backing) {
            return Err("scoring.domain_backing must be within 0..1".into());
        }
        let s = &self.sender;
        let m = &self.mta;
        let all = [
            ("sender.days_known", s.days_known),
            ("sender.enterprise_recipients", s.enterprise_recipients),
            ("sender.sender_enterprise_ratio", s.sender_enterprise_ratio),
            ("sender.open_ratio", s.open_ratio),
            ("sender.messages_received", s.messages_received),
            ("sender.replies_sent", s.replies_sent),
            ("sender.not_opened", s.not_opened),
            (
                "sender.not_opened_with_attachment",
                s.not_opened_with_attachment,
            ),
            ("sender.not_opened_with_url", s.not_opened_with_url),
            ("sender.messages_sent", s.messages_sent),
            ("sender.replies_received", s.replies_received),
            ("mta.days_known", m.days_known),
            ("mta.sender_domains", m.sender_domains),
            ("mta.enterprise_recipients", m.enterprise_recipients),
            ("mta.messages_received", m.messages_received),
            ("mta.replies_received", m.replies_received),
            ("junk", self.junk),
        ];
        for (name, wt) in all {
            if !(wt.weight.is_finite() && wt.cap.is_finite() && wt.cap > 0.0) {
                return Err(format!("scoring.{name}: weight must be finite and cap > 0"));
            }
        }
        Ok(())
    }
}

/// One factor: its canonical name, its value (`None`: no data) and the
/// points it contributed.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Factor {
    pub name: &'static str,
    pub value: Option<f64>,
    pub contribution: f64,
}

/// A contribution that is not one of the factors (domain backing, an
/// override, and later the anomalies).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Contribution {
    pub name: String,
    pub points: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Subject {
    Sender,
    Domain,
    Mta,
}

#[derive(Clone, Debug, Serialize)]
pub struct Rating {
    pub subject: Subject,
    pub key: String,
    pub class: Class,
    pub score: f64,
    pub factors: Vec<Factor>,
    pub extra: Vec<Contribution>,
    /// Messages of history (either direction) behind the rating.
    pub history: u64,
    /// The enterprise took part (bidirectional evidence).
    pub bidirectional: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backed_by: Option<String>,
    #[serde(rename = "override", skip_serializing_if = "Option::is_none")]
    pub override_: Option<Override>,
}

impl Rating {
    /// All contributions, factors first, largest magnitude first.
    pub fn contributions(&self) -> Vec<(String, f64)> {
        let mut v: Vec<(String, f64)> = self
            .factors
            .iter()
            .filter(|f| f.contribution != 0.0)
            .map(|f| (f.name.to_string(), f.contribution))
            .chain(self.extra.iter().map(|c| (c.name.clone(), c.points)))
            .collect();
        v.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()));
        v
    }

    pub fn factor(&self, name: &str) -> Option<&Factor> {
        self.factors.iter().find(|f| f.name == name)
    }

    /// Adds a named contribution and re-classifies.
    pub fn add(&mut self, name: impl Into<String>, points: f64, cfg: &ScoringConfig) {
        self.extra.push(Contribution {
            name: name.into(),
            points: round1(points),
        });
        self.rescore(cfg);
    }

    fn rescore(&mut self, cfg: &ScoringConfig) {
        let sum: f64 = self.factors.iter().map(|f| f.contribution).sum::<f64>()
            + self.extra.iter().map(|c| c.points).sum::<f64>();
        self.score = round1((cfg.base + sum).clamp(0.0, 100.0));
        self.class = match &self.override_ {
            Some(o) => o.class,
            None => classify(self.score, self.history, self.bidirectional, cfg),
        };
    }

    pub fn apply_override(&mut self, o: Option<&Override>, cfg: &ScoringConfig) {
        if let Some(o) = o {
            self.override_ = Some(o.clone());
            self.rescore(cfg);
        }
    }
}

pub fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

pub fn classify(score: f64, history: u64, bidirectional: bool, cfg: &ScoringConfig) -> Class {
    if score <= cfg.malicious {
        Class::Malicious
    } else if score <= cfg.suspicious {
        Class::Suspicious
    } else if history < cfg.min_history {
        Class::Unrated
    } else if score >= cfg.trusted && bidirectional {
        Class::Trusted
    } else {
        Class::Neutral
    }
}

fn days_known(r: &Record, now: u64) -> Option<f64> {
    (r.first_seen != 0).then(|| now.saturating_sub(r.first_seen) as f64 / 86400.0)
}

fn factor(name: &'static str, value: Option<f64>, contribution: f64) -> Factor {
    Factor {
        name,
        value: value.map(|v| (v * 1000.0).round() / 1000.0),
        contribution: round1(contribution),
    }
}

/// The eleven D3-SRA sender factors of a sender (or sender-domain) record.
pub fn sender_factors(r: &Record, now: u64, wt: &SenderWeights) -> Vec<Factor> {
    let c = |k| r.count(k) as f64;
    let received = c(Counter::MessagesReceived);
    let sent = c(Counter::MessagesSent);
    let opened = c(Counter::Opened);
    let not_opened = r.net(Counter::NotOpened, Counter::LateOpened) as f64;
    let days = days_known(r, now);
    let recipients = r.distinct(SetKind::EnterpriseRecipients) as f64;

    let conversation = received + sent;
    let (ratio, ratio_points) = if conversation > 0.0 {
        let share = received / conversation;
        let balance = 1.0 - (share - 0.5).abs() * 2.0;
        (
            Some(share),
            wt.sender_enterprise_ratio.weight
                * balance
                * log_fraction(conversation, wt.sender_enterprise_ratio.cap),
        )
    } else {
        (None, 0.0)
    };
    let measured = opened + not_opened;
    let (open_ratio, open_points) = if measured > 0.0 {
        let ratio = opened / measured;
        (
            Some(ratio),
            wt.open_ratio.weight * (2.0 * ratio - 1.0) * log_fraction(measured, wt.open_ratio.cap),
        )
    } else {
        (None, 0.0)
    };
    // "No data is not not-opened": the not-opened counts only exist once an
    // engagement source has measured something for this sender.
    let engaged = |x: f64| (measured > 0.0).then_some(x);
    let n_att = r.net(
        Counter::NotOpenedWithAttachment,
        Counter::LateOpenedWithAttachment,
    ) as f64;
    let n_url = r.net(Counter::NotOpenedWithUrl, Counter::LateOpenedWithUrl) as f64;
    vec![
        factor(
            "days_known",
            days,
            days.map_or(0.0, |d| wt.days_known.points(d)),
        ),
        factor(
            "enterprise_recipients",
            Some(recipients),
            wt.enterprise_recipients.points(recipients),
        ),
        factor("sender_enterprise_ratio", ratio, ratio_points),
        factor("open_ratio", open_ratio, open_points),
        factor(
            "messages_received",
            Some(received),
            wt.messages_received.points(received),
        ),
        factor(
            "replies_sent",
            Some(c(Counter::RepliesSent)),
            wt.replies_sent.points(c(Counter::RepliesSent)),
        ),
        factor(
            "not_opened",
            engaged(not_opened),
            wt.not_opened.points(not_opened),
        ),
        factor(
            "not_opened_with_attachment",
            engaged(n_att),
            wt.not_opened_with_attachment.points(n_att),
        ),
        factor(
            "not_opened_with_url",
            engaged(n_url),
            wt.not_opened_with_url.points(n_url),
        ),
        factor("messages_sent", Some(sent), wt.messages_sent.points(sent)),
        factor(
            "replies_received",
            Some(c(Counter::RepliesReceived)),
            wt.replies_received.points(c(Counter::RepliesReceived)),
        ),
    ]
}

/// The five D3-SRA MTA factors.
pub fn mta_factors(r: &Record, now: u64, wt: &MtaWeights) -> Vec<Factor> {
    let days = days_known(r, now);
    let domains = r.distinct(SetKind::SenderDomains) as f64;
    let recipients = r.distinct(SetKind::EnterpriseRecipients) as f64;
    let received = r.count(Counter::MessagesReceived) as f64;
    let replies = r.count(Counter::RepliesReceived) as f64;
    vec![
        factor(
            "days_known",
            days,
            days.map_or(0.0, |d| wt.days_known.points(d)),
        ),
        factor(
            "sender_domains",
            Some(domains),
            wt.sender_domains.points(domains),
        ),
        factor(
            "enterprise_recipients",
            Some(recipients),
            wt.enterprise_recipients.points(recipients),
        ),
        factor(
            "messages_received",
            Some(received),
            wt.messages_received.points(received),
        ),
        factor(
            "replies_received",
            Some(replies),
            wt.replies_received.points(replies),
        ),
    ]
}

fn sender_history(r: &Record) -> u64 {
    r.count(Counter::MessagesReceived) + r.count(Counter::MessagesSent)
}

fn sender_bidirectional(r: &Record) -> bool {
    r.count(Counter::MessagesSent) > 0 || r.count(Counter::RepliesSent) > 0
}

/// The `junk` contribution, when recipients reported any.
fn with_junk(mut r: Rating, rec: &Record, cfg: &ScoringConfig) -> Rating {
    let junk = rec.net(Counter::Junk, Counter::NotJunk) as f64;
    if junk > 0.0 {
        r.add("junk", cfg.junk.points(junk), cfg);
    }
    r
}

fn build(
    subject: Subject,
    key: &str,
    factors: Vec<Factor>,
    history: u64,
    bidirectional: bool,
    cfg: &ScoringConfig,
) -> Rating {
    let mut r = Rating {
        subject,
        key: key.to_string(),
        class: Class::Unrated,
        score: cfg.base,
        factors,
        extra: Vec::new(),
        history,
        bidirectional,
        backed_by: None,
        override_: None,
    };
    r.rescore(cfg);
    r
}

/// Rates a sender-domain record with the sender factors.
pub fn rate_domain(domain: &str, rec: &Record, now: u64, cfg: &ScoringConfig) -> Rating {
    let r = build(
        Subject::Domain,
        domain,
        sender_factors(rec, now, &cfg.sender),
        sender_history(rec),
        sender_bidirectional(rec),
        cfg,
    );
    with_junk(r, rec, cfg)
}

/// Rates a sender, backed by its domain when the address itself is new.
pub fn rate_sender(
    addr: &str,
    rec: &Record,
    domain_rec: &Record,
    now: u64,
    cfg: &ScoringConfig,
) -> Rating {
    let mut r = with_junk(
        build(
            Subject::Sender,
            addr,
            sender_factors(rec, now, &cfg.sender),
            sender_history(rec),
            sender_bidirectional(rec),
            cfg,
        ),
        rec,
        cfg,
    );
    if r.history < cfg.min_history && sender_history(domain_rec) >= cfg.min_history {
        let domain = crate::identity::domain_of(addr);
        let d = rate_domain(domain, domain_rec, now, cfg);
        r.history += d.history;
        r.backed_by = Some(format!("domain:{domain}"));
        r.add(
            "domain_reputation",
            cfg.domain_backing * (d.score - cfg.base),
            cfg,
        );
    }
    r
}

pub fn rate_mta(key: &str, rec: &Record, now: u64, cfg: &ScoringConfig) -> Rating {
    let r = build(
        Subject::Mta,
        key,
        mta_factors(rec, now, &cfg.mta),
        rec.count(Counter::MessagesReceived),
        rec.count(Counter::RepliesReceived) > 0,
        cfg,
    );
    with_junk(r, rec, cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 86400;
    const NOW: u64 = 1_800_000_000;

    fn cfg() -> ScoringConfig {
        ScoringConfig::default()
    }

    fn sender(f: impl FnOnce(&mut Record)) -> Record {
        let mut r = Record::seen_at(NOW - 400 * DAY);
        f(&mut r);
        r
    }

    fn contribution(r: &Rating, name: &str) -> f64 {
        r.factor(name).unwrap().contribution
    }

    #[test]
    fn all_eleven_sender_factors_have_canonical_names() {
        let names: Vec<_> = sender_factors(&Record::default(), NOW, &cfg().sender)
            .iter()
            .map(|f| f.name)
            .collect();
        assert_eq!(
            names,
            [
                "days_known",
                "enterprise_recipients",
                "sender_enterprise_ratio",
                "open_ratio",
                "messages_received",
                "replies_sent",
                "not_opened",
                "not_opened_with_attachment",
                "not_opened_with_url",
                "messages_sent",
                "replies_received"
            ]
        );
        let names: Vec<_> = mta_factors(&Record::default(), NOW, &cfg().mta)
            .iter()
            .map(|f| f.name)
            .collect();
        assert_eq!(
            names,
            [
                "days_known",
                "sender_domains",
                "enterprise_recipients",
                "messages_received",
                "replies_received"
            ]
        );
    }

    #[test]
    fn each_sender_factor_moves_its_contribution() {
        let c = cfg();
        let base = rate_sender("a@x.org", &Record::default(), &Record::default(), NOW, &c);
        assert_eq!(base.score, c.base);
        assert_eq!(base.factor("days_known").unwrap().value, None);

        type Case = (&'static str, Box<dyn Fn(&mut Record)>, bool);
        let cases: [Case; 10] = [
            ("days_known", Box::new(|_r: &mut Record| {}), true),
            (
                "enterprise_recipients",
                Box::new(|r: &mut Record| {
                    r.insert(SetKind::EnterpriseRecipients, "u1@ent");
                }),
                true,
            ),
            (
                "messages_received",
                Box::new(|r: &mut Record| {
                    r.add(Counter::MessagesReceived, 3);
                }),
                true,
            ),
            (
                "replies_sent",
                Box::new(|r: &mut Record| {
                    r.add(Counter::RepliesSent, 2);
                }),
                true,
            ),
            (
                "messages_sent",
                Box::new(|r: &mut Record| {
                    r.add(Counter::MessagesSent, 2);
                }),
                true,
            ),
            (
                "replies_received",
                Box::new(|r: &mut Record| {
                    r.add(Counter::RepliesReceived, 2);
                }),
                true,
            ),
            (
                "open_ratio",
                Box::new(|r: &mut Record| {
                    r.add(Counter::Opened, 5);
                }),
                true,
            ),
            (
                "not_opened",
                Box::new(|r: &mut Record| {
                    r.add(Counter::NotOpened, 5);
                }),
                false,
            ),
            (
                "not_opened_with_attachment",
                Box::new(|r: &mut Record| {
                    r.add(Counter::NotOpened, 5)
                        .add(Counter::NotOpenedWithAttachment, 5);
                }),
                false,
            ),
            (
                "not_opened_with_url",
                Box::new(|r: &mut Record| {
                    r.add(Counter::NotOpened, 5)
                        .add(Counter::NotOpenedWithUrl, 5);
                }),
                false,
            ),
        ];
        for (name, f, positive) in cases {
            let rec = sender(|r| f(r));
            let rating = rate_sender("a@x.org", &rec, &Record::default(), NOW, &c);
            let p = contribution(&rating, name);
            assert!(if positive { p > 0.0 } else { p < 0.0 }, "{name}: {p}");
            assert!(
                rating.factor(name).unwrap().value.is_some(),
                "{name} has a value"
            );
        }
    }

    #[test]
    fn sender_enterprise_ratio_rewards_balanced_conversation() {
        let c = cfg();
        let balanced = sender(|r| {
            r.add(Counter::MessagesReceived, 10)
                .add(Counter::MessagesSent, 10);
        });
        let one_sided = sender(|r| {
            r.add(Counter::MessagesReceived, 20);
        });
        let rb = rate_sender("a@x.org", &balanced, &Record::default(), NOW, &c);
        let ro = rate_sender("a@x.org", &one_sided, &Record::default(), NOW, &c);
        assert_eq!(
            rb.factor("sender_enterprise_ratio").unwrap().value,
            Some(0.5)
        );
        assert_eq!(
            ro.factor("sender_enterprise_ratio").unwrap().value,
            Some(1.0)
        );
        assert!(contribution(&rb, "sender_enterprise_ratio") > 4.0);
        assert_eq!(contribution(&ro, "sender_enterprise_ratio"), 0.0);
    }

    #[test]
    fn engagement_factors_read_no_data_until_measured() {
        let rec = sender(|r| {
            r.add(Counter::MessagesReceived, 50);
        });
        let r = rate_sender("a@x.org", &rec, &Record::default(), NOW, &cfg());
        for name in [
            "open_ratio",
            "not_opened",
            "not_opened_with_attachment",
            "not_opened_with_url",
        ] {
            assert_eq!(r.factor(name).unwrap().value, None, "{name}");
            assert_eq!(contribution(&r, name), 0.0, "{name}");
        }
        let rec = sender(|r| {
            r.add(Counter::Opened, 1).add(Counter::NotOpened, 3);
        });
        let r = rate_sender("a@x.org", &rec, &Record::default(), NOW, &cfg());
        assert_eq!(r.factor("open_ratio").unwrap().value, Some(0.25));
        assert!(contribution(&r, "open_ratio") < 0.0);
        assert_eq!(r.factor("not_opened").unwrap().value, Some(3.0));
    }

    #[test]
    fn contributions_are_capped() {
        let c = cfg();
        let wt = c.sender.messages_received;
        assert_eq!(wt.points(1e9), wt.weight);
        assert_eq!(wt.points(wt.cap), wt.weight);
        assert!(wt.points(wt.cap / 2.0) < wt.weight);
        assert!(
            wt.points(wt.cap / 2.0) > wt.weight / 2.0,
            "log-scaled, not linear"
        );
        let huge = sender(|r| {
            r.add(Counter::MessagesReceived, u64::MAX / 2)
                .add(Counter::RepliesSent, u64::MAX / 2);
        });
        let r = rate_sender("a@x.org", &huge, &Record::default(), NOW, &c);
        assert_eq!(
            contribution(&r, "messages_received"),
            c.sender.messages_received.weight
        );
        assert_eq!(
            contribution(&r, "replies_sent"),
            c.sender.replies_sent.weight
        );
        assert!(r.score <= 100.0);
    }

    #[test]
    fn ten_thousand_inbound_messages_without_participation_is_not_trusted() {
        let c = cfg();
        let rec = sender(|r| {
            r.add(Counter::MessagesReceived, 10_000);
            for i in 0..500 {
                r.insert(SetKind::EnterpriseRecipients, &format!("user{i}@ent"));
            }
            r.add(Counter::Opened, 10_000);
        });
        let r = rate_sender("bulk@x.org", &rec, &Record::default(), NOW, &c);
        assert_eq!(r.class, Class::Neutral, "score {}", r.score);
        // Even the score alone of the inbound-only factors stays below trusted.
        let no_open = sender(|r| {
            r.add(Counter::MessagesReceived, 10_000);
            for i in 0..500 {
                r.insert(SetKind::EnterpriseRecipients, &format!("user{i}@ent"));
            }
        });
        let r = rate_sender("bulk@x.org", &no_open, &Record::default(), NOW, &c);
        assert!(r.score < c.trusted, "score {}", r.score);
    }

    #[test]
    fn a_real_correspondent_becomes_trusted() {
        let mut rec = Record::seen_at(NOW - 30 * DAY);
        rec.add(Counter::MessagesReceived, 5)
            .add(Counter::MessagesSent, 3)
            .add(Counter::RepliesSent, 2)
            .add(Counter::RepliesReceived, 2)
            .insert(SetKind::EnterpriseRecipients, "a@ent")
            .insert(SetKind::EnterpriseRecipients, "b@ent");
        let r = rate_sender("partner@x.org", &rec, &Record::default(), NOW, &cfg());
        assert_eq!(r.class, Class::Trusted, "score {}", r.score);
    }

    #[test]
    fn class_boundaries() {
        let c = cfg();
        assert_eq!(classify(c.malicious, 100, true, &c), Class::Malicious);
        assert_eq!(
            classify(c.malicious + 0.1, 100, true, &c),
            Class::Suspicious
        );
        assert_eq!(classify(c.suspicious, 100, true, &c), Class::Suspicious);
        assert_eq!(classify(c.suspicious + 0.1, 100, true, &c), Class::Neutral);
        assert_eq!(classify(c.trusted - 0.1, 100, true, &c), Class::Neutral);
        assert_eq!(classify(c.trusted, 100, true, &c), Class::Trusted);
        assert_eq!(classify(c.trusted, 100, false, &c), Class::Neutral);
        assert_eq!(
            classify(c.trusted, c.min_history - 1, true, &c),
            Class::Unrated
        );
        assert_eq!(classify(c.base, 0, false, &c), Class::Unrated);
        assert_eq!(
            classify(0.0, 0, false, &c),
            Class::Malicious,
            "bad evidence needs no history"
        );
    }

    #[test]
    fn new_address_at_known_domain_is_backed_but_not_trusted() {
        let c = cfg();
        let mut dom = Record::seen_at(NOW - 300 * DAY);
        dom.add(Counter::MessagesReceived, 40)
            .add(Counter::MessagesSent, 30)
            .add(Counter::RepliesSent, 10)
            .add(Counter::RepliesReceived, 10);
        let d = rate_domain("x.org", &dom, NOW, &c);
        assert_eq!(d.class, Class::Trusted);
        let r = rate_sender("new@x.org", &Record::default(), &dom, NOW, &c);
        assert_eq!(r.class, Class::Neutral);
        assert_eq!(r.backed_by.as_deref(), Some("domain:x.org"));
        assert!(r
            .extra
            .iter()
            .any(|e| e.name == "domain_reputation" && e.points > 0.0));
        let unknown = rate_sender("new@y.org", &Record::default(), &Record::default(), NOW, &c);
        assert_eq!(unknown.class, Class::Unrated);
    }

    #[test]
    fn mta_factors_and_trust_need_replies() {
        let c = cfg();
        let mut rec = Record::seen_at(NOW - 400 * DAY);
        rec.add(Counter::MessagesReceived, 1_000_000);
        for i in 0..300 {
            rec.insert(SetKind::SenderDomains, &format!("d{i}.org"));
            rec.insert(SetKind::EnterpriseRecipients, &format!("u{i}@ent"));
        }
        let r = rate_mta("192.0.2.1", &rec, NOW, &c);
        assert_eq!(r.class, Class::Neutral);
        assert!(r.score < c.trusted);
        rec.add(Counter::RepliesReceived, 25);
        let r = rate_mta("192.0.2.1", &rec, NOW, &c);
        assert_eq!(r.class, Class::Trusted, "score {}", r.score);
        for f in &r.factors {
            assert!(f.contribution > 0.0, "{} contributes", f.name);
        }
    }

    #[test]
    fn overrides_fix_the_class() {
        let c = cfg();
        let mut r = rate_sender("a@x.org", &Record::default(), &Record::default(), NOW, &c);
        let o = Override {
            target: crate::overrides::Target::sender("a@x.org").unwrap(),
            class: Class::Malicious,
            reason: "intel".into(),
            time: 0,
            source: "store".into(),
        };
        r.apply_override(Some(&o), &c);
        assert_eq!(r.class, Class::Malicious);
    }
}
