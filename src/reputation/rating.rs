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
//! the address itself has no bidirectional evidence. Addresses at public
//! mailbox providers (`freemail_domains`) are never backed: anyone can open
//! one, so only the address's own history speaks for it.

use super::factors::{mta_factors, sender_factors};
use crate::config::ScoringConfig;
use crate::store::{Counter, Override, Record};
use crate::vocab::{domain_of, Class};
use serde::Serialize;

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
    /// Why this message may not be trusted whatever the score (a sender's
    /// habits broke: `behaviour_change`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub untrusted_because: Option<String>,
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
            None => classify(
                self.score,
                self.history,
                self.bidirectional && self.untrusted_because.is_none(),
                cfg,
            ),
        };
    }

    /// Backing of a subject with too little history of its own by the
    /// rating of what contains it (an address by its domain, an MTA by its
    /// network): `domain_backing × (parent score − base)` as the named
    /// contribution, and the parent's history counted towards
    /// `min_history`.
    pub fn back_by(
        &mut self,
        parent: &Rating,
        backed_by: String,
        contribution: &str,
        cfg: &ScoringConfig,
    ) {
        self.history += parent.history;
        self.backed_by = Some(backed_by);
        self.add(
            contribution,
            cfg.domain_backing * (parent.score - cfg.base),
            cfg,
        );
    }

    /// No trusted class for this message, whatever the score (the
    /// contributions still show why).
    pub fn withhold_trust(&mut self, why: &str, cfg: &ScoringConfig) {
        self.untrusted_because = Some(why.to_string());
        self.rescore(cfg);
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

fn sender_history(r: &Record) -> u64 {
    r.count(Counter::MessagesReceived) + r.count(Counter::MessagesSent)
}

/// Messages the enterprise sent to this sender or answered it with.
pub fn from_enterprise(r: &Record) -> u64 {
    r.count(Counter::MessagesSent) + r.count(Counter::RepliesSent)
}

fn sender_bidirectional(r: &Record) -> bool {
    from_enterprise(r) > 0
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
        untrusted_because: None,
    };
    r.rescore(cfg);
    r
}

/// Rates a sender-domain record with the sender factors.
pub fn rate_domain(domain: &str, rec: &Record, now: u64, cfg: &ScoringConfig) -> Rating {
    let r = build(
        Subject::Domain,
        domain,
        sender_factors(rec, now, &cfg.sender, cfg.volume_maturity_days),
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
            sender_factors(rec, now, &cfg.sender, cfg.volume_maturity_days),
            sender_history(rec),
            sender_bidirectional(rec),
            cfg,
        ),
        rec,
        cfg,
    );
    // A public mailbox provider's history says nothing of a new address
    // there: anyone can open one.
    if r.history < cfg.min_history
        && sender_history(domain_rec) >= cfg.min_history
        && !cfg.is_freemail(domain_of(addr))
    {
        let domain = domain_of(addr);
        let d = rate_domain(domain, domain_rec, now, cfg);
        r.back_by(&d, format!("domain:{domain}"), "domain_reputation", cfg);
    }
    r
}

pub fn rate_mta(key: &str, rec: &Record, now: u64, cfg: &ScoringConfig) -> Rating {
    let r = build(
        Subject::Mta,
        key,
        mta_factors(rec, now, &cfg.mta, cfg.volume_maturity_days),
        rec.count(Counter::MessagesReceived),
        rec.count(Counter::RepliesReceived) > 0,
        cfg,
    );
    with_junk(r, rec, cfg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SetKind;

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
        let names: Vec<_> = sender_factors(&Record::default(), NOW, &cfg().sender, 3.0)
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
        let names: Vec<_> = mta_factors(&Record::default(), NOW, &cfg().mta, 3.0)
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
    fn volume_earns_its_credit_with_time_known() {
        let c = cfg();
        // The same volume, reached in an hour or over a month.
        let burst = |age: u64| {
            let mut rec = Record::seen_at(NOW - age);
            rec.add(Counter::MessagesReceived, 600);
            for i in 0..300 {
                rec.insert(SetKind::SenderDomains, "bank.example");
                rec.insert(SetKind::EnterpriseRecipients, &format!("u{i}@ent"));
            }
            rec
        };
        let volume = |r: &Rating| {
            [
                "enterprise_recipients",
                "messages_received",
                "sender_domains",
            ]
            .iter()
            .filter_map(|n| r.factor(n))
            .map(|f| f.contribution)
            .sum::<f64>()
        };
        let hour = rate_sender("a@bank.example", &burst(3600), &Record::default(), NOW, &c);
        let month = rate_sender(
            "a@bank.example",
            &burst(30 * DAY),
            &Record::default(),
            NOW,
            &c,
        );
        assert!(volume(&hour) <= 0.3, "{:?}", hour.factors);
        assert_eq!(volume(&month), 10.0, "{:?}", month.factors);
        let day = rate_sender("a@bank.example", &burst(DAY), &Record::default(), NOW, &c);
        assert!(
            (volume(&day) - 10.0 / 3.0).abs() < 0.2,
            "a third at one day of three"
        );
        let hour = rate_mta("192.0.2.1", &burst(3600), NOW, &c);
        let month = rate_mta("192.0.2.1", &burst(30 * DAY), NOW, &c);
        assert!(volume(&hour) < 0.5 && volume(&month) > 10.0);
        // What the enterprise did is not scaled.
        let mut answered = burst(3600);
        answered.add(Counter::MessagesSent, 20);
        let r = rate_sender("a@bank.example", &answered, &Record::default(), NOW, &c);
        assert_eq!(r.factor("messages_sent").unwrap().contribution, 10.0);
        // Off: the whole credit at once.
        let off = ScoringConfig {
            volume_maturity_days: 0.0,
            ..cfg()
        };
        let hour = rate_sender(
            "a@bank.example",
            &burst(3600),
            &Record::default(),
            NOW,
            &off,
        );
        assert_eq!(volume(&hour), 10.0);
    }

    #[test]
    fn overrides_fix_the_class() {
        let c = cfg();
        let mut r = rate_sender("a@x.org", &Record::default(), &Record::default(), NOW, &c);
        let o = Override {
            target: crate::vocab::Target::sender("a@x.org").unwrap(),
            class: Class::Malicious,
            reason: "intel".into(),
            time: 0,
            source: "store".into(),
        };
        r.apply_override(Some(&o), &c);
        assert_eq!(r.class, Class::Malicious);
    }
}
