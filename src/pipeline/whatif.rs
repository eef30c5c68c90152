//! What-if: recent verdict records (the daemon's journal, or `replay`'s
//! output) re-rated under a candidate configuration beside the current
//! one, and the verdicts that would change.
//!
//! A record carries each rating as named contributions, its history and
//! whether the enterprise took part, so a rating is re-scored without the
//! store:
//! - a factor's, an anomaly's, `junk`'s and a backing's points scale with
//!   the candidate's weight over the current one (points are linear in
//!   their weight); other contributions stay;
//! - the class follows the candidate's thresholds and `min_history` (an
//!   override keeps its class);
//! - the stages run as the milter runs them: connect, MAIL and RCPT under
//!   the candidate's tables (a refusal there ends the message; `tag` and
//!   `quarantine` are carried), then end of message with the DMARC policy,
//!   the actions `[policy.anomalies]` names, and monitor-only mode.
//!
//! `reply_to_diverted` runs between `reply_to_divergence` and its own
//! weight by the relationship, which its points and the current weights
//! give back.
//!
//! What a record cannot tell is counted as *inexact*, not guessed: a
//! factor's `cap` or `volume_maturity_days` changed, the brands of
//! `brand_impersonation` changed, a weight moved away from zero, `[lists]`
//! changed, or a message the current config refused before end of
//! message would go on under the candidate (its content was never rated).
//! `[policy.rcpt.new_recipient]` is per recipient and a record does not
//! say which were new: a change of it is warned of, not applied.
//! Re-rating under the current config as well shows how faithfully the
//! records reproduce: `reproduced` of `records`.

use crate::config::Config;
use crate::policy::outcome;
use crate::reputation::classify;
use crate::vocab::{Action, Class, Stage};
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};

/// Examples kept per change.
pub const EXAMPLES: usize = 5;

/// (current weight, candidate weight) by contribution name, for the
/// sender's and the MTA's ratings.
struct Scales {
    sender: HashMap<String, (f64, f64)>,
    mta: HashMap<String, (f64, f64)>,
    caps_changed: bool,
    /// `[anomalies] brands` changed: which messages name a brand is not in
    /// the records.
    brands_changed: bool,
}

/// `name → weight` (and `name → cap`) of a serialised weights table
/// (`{name: {weight, cap}}`) or anomaly table (`{name: number}`).
fn weights(v: Value) -> (HashMap<String, f64>, HashMap<String, f64>) {
    let mut w = HashMap::new();
    let mut caps = HashMap::new();
    if let Value::Object(m) = v {
        for (k, x) in m {
            if let Some(n) = x.as_f64() {
                w.insert(k, n);
            } else if let (Some(n), Some(c)) = (x["weight"].as_f64(), x["cap"].as_f64()) {
                w.insert(k.clone(), n);
                caps.insert(k, c);
            }
        }
    }
    (w, caps)
}

fn table(cfg: &Config, mta: bool) -> (HashMap<String, f64>, HashMap<String, f64>) {
    let s = &cfg.scoring;
    let (mut w, mut caps) = weights(
        if mta {
            serde_json::to_value(&s.mta)
        } else {
            serde_json::to_value(&s.sender)
        }
        .unwrap_or_default(),
    );
    let (anomalies, _) = weights(serde_json::to_value(&cfg.anomalies).unwrap_or_default());
    for (k, v) in anomalies {
        w.entry(k).or_insert(v);
    }
    w.insert("junk".into(), s.junk.weight);
    caps.insert("junk".into(), s.junk.cap);
    w.insert("domain_reputation".into(), s.domain_backing);
    w.insert("network_reputation".into(), s.domain_backing);
    // Like a cap, it shapes points from counts a record does not hold.
    caps.insert("volume_maturity_days".into(), s.volume_maturity_days);
    (w, caps)
}

impl Scales {
    fn new(cur: &Config, cand: &Config) -> Scales {
        let mut caps_changed = false;
        let mut pair = |mta: bool| {
            let (cw, cc) = table(cur, mta);
            let (nw, nc) = table(cand, mta);
            caps_changed |= cc != nc;
            cw.into_iter()
                .filter_map(|(k, c)| Some((k.clone(), (c, *nw.get(&k)?))))
                .collect()
        };
        let sender = pair(false);
        let mta = pair(true);
        Scales {
            sender,
            mta,
            caps_changed,
            brands_changed: cur.anomalies.brands != cand.anomalies.brands,
        }
    }
}

/// A verdict as one configuration gives it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Verdict {
    pub stage: Stage,
    pub action: String,
    pub sender: Option<Class>,
    pub mta: Option<Class>,
    /// The record could not say (see the module documentation).
    pub exact: bool,
}

/// A rating re-scored: (class, score, exact).
fn rescore(
    cfg: &Config,
    rating: &Value,
    scales: &HashMap<String, (f64, f64)>,
    to_candidate: bool,
) -> Option<(Class, f64, bool)> {
    let mut exact = true;
    let mut sum = 0.0;
    for (name, p) in rating["contributions"].as_object()? {
        let p = p.as_f64().unwrap_or(0.0);
        // `reply_to_diverted` runs between two weights by the relationship
        // r: p = d + r (D − d), so r = (p − d) / (D − d) is read back and
        // the candidate's d and D applied.
        if name == "reply_to_diverted" && to_candidate {
            if let (Some((d, d2)), Some((big, big2))) =
                (scales.get("reply_to_divergence"), scales.get(name))
            {
                if big != d {
                    let r = ((p - d) / (big - d)).clamp(0.0, 1.0);
                    sum += d2 + r * (big2 - d2);
                    continue;
                }
            }
        }
        let factor = match (scales.get(name), to_candidate) {
            (Some(_), false) | (None, _) => 1.0,
            (Some((cur, _)), true) if *cur == 0.0 => {
                if scales[name].1 != 0.0 {
                    exact = false;
                }
                1.0
            }
            (Some((cur, cand)), true) => cand / cur,
        };
        sum += p * factor;
    }
    let s = &cfg.scoring;
    let score = ((s.base + sum).clamp(0.0, 100.0) * 10.0).round() / 10.0;
    if let Some(class) = rating
        .get("override")
        .and_then(|o| serde_json::from_value::<Class>(o["class"].clone()).ok())
    {
        return Some((class, score, exact));
    }
    let history = rating["history"].as_u64().unwrap_or(0);
    let both = rating["bidirectional"].as_bool().unwrap_or(false)
        && rating.get("untrusted_because").is_none();
    Some((classify(score, history, both, s), score, exact))
}

fn label(a: Action, cfg: &Config) -> String {
    outcome(a, cfg.mode).label()
}

/// The verdict `cfg` gives a record; `to_candidate` re-weighs its
/// contributions (the current config takes them as recorded).
fn verdict(cfg: &Config, rec: &Value, sc: &Scales, to_candidate: bool) -> Option<Verdict> {
    let recorded: Stage = serde_json::from_value(rec["stage"].clone()).ok()?;
    if rec["direction"].as_str() != Some("inbound") {
        return Some(Verdict {
            stage: recorded,
            action: label(Action::Accept, cfg),
            sender: None,
            mta: None,
            exact: true,
        });
    }
    let sender = rec
        .get("sender")
        .filter(|v| v.is_object())
        .and_then(|r| rescore(cfg, r, &sc.sender, to_candidate));
    let mta = rec
        .get("mta")
        .filter(|v| v.is_object())
        .and_then(|r| rescore(cfg, r, &sc.mta, to_candidate));
    let mut exact = sender.is_none_or(|s| s.2) && mta.is_none_or(|m| m.2);
    let (s, m) = (sender.map(|x| x.0), mta.map(|x| x.0));
    let mut carried = Action::Accept;
    for stage in [Stage::Connect, Stage::Mail, Stage::Rcpt] {
        let a = cfg
            .policy
            .decide(stage, if stage == Stage::Connect { None } else { s }, m);
        let o = outcome(a, cfg.mode);
        if matches!(
            o.applied,
            Action::Reject | Action::Tempfail | Action::Discard
        ) {
            return Some(Verdict {
                stage,
                action: o.label(),
                sender: s,
                mta: m,
                exact,
            });
        }
        if matches!(o.applied, Action::Tag | Action::Quarantine) {
            carried = carried.max(o.applied);
        }
    }
    if recorded != Stage::Eom {
        // Refused before its content was seen: what end of message would
        // make of it is not in the record.
        exact = false;
    }
    let rated = cfg.policy.decide(Stage::Eom, s, m).max(carried);
    let dmarc = match (&rec["auth"]["dmarc"], rec["auth"]["dmarc_policy"].as_str()) {
        (Value::String(r), Some("reject")) if r == "fail" => Some(cfg.auth.dmarc_reject_action),
        (Value::String(r), Some("quarantine")) if r == "fail" => {
            Some(cfg.auth.dmarc_quarantine_action)
        }
        _ => None,
    };
    let mut action = dmarc.map_or(rated, |d| rated.max(d));
    let names = rec["anomalies"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["name"].as_str());
    if let Some((a, _)) = crate::policy::anomaly_action(cfg, names) {
        action = action.max(a);
    }
    Some(Verdict {
        stage: Stage::Eom,
        action: label(action, cfg),
        sender: s,
        mta: m,
        exact,
    })
}

/// One record whose verdict changes.
#[derive(Clone, Debug, Serialize)]
pub struct Example {
    pub time: String,
    pub queue_id: String,
    pub message_id: Option<String>,
    pub sender: Option<String>,
    pub now: Verdict,
    pub candidate: Verdict,
}

/// What the candidate would change.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub records: u64,
    /// Records the current config re-rates to their recorded action.
    pub reproduced: u64,
    /// Records whose verdict could not be re-rated exactly.
    pub inexact: u64,
    pub unreadable: u64,
    /// Records whose action changes.
    pub changed: u64,
    /// `current action → candidate action`: count.
    pub actions: BTreeMap<String, u64>,
    /// `current class → candidate class` of the sender: count.
    pub sender_classes: BTreeMap<String, u64>,
    pub mta_classes: BTreeMap<String, u64>,
    /// `stage`: changed verdicts decided there under the candidate.
    pub stages: BTreeMap<String, u64>,
    /// Actions under each config: (action, current, candidate).
    pub totals: BTreeMap<String, (u64, u64)>,
    pub examples: BTreeMap<String, Vec<Example>>,
    /// Caps changed, a weight left zero or `[lists]` changed.
    pub warnings: Vec<String>,
}

fn name(c: Option<Class>) -> String {
    c.map_or("none".into(), |c| c.to_string())
}

/// Re-rates `records` under `cur` and `cand`.
pub fn whatif(cur: &Config, cand: &Config, records: &[Value]) -> Report {
    let mut w = WhatIf::new(cur, cand);
    for rec in records {
        w.add(rec);
    }
    w.finish()
}

/// A what-if fed one record at a time (a week of journal need not fit in
/// memory).
pub struct WhatIf<'a> {
    cur: &'a Config,
    cand: &'a Config,
    sc: Scales,
    r: Report,
}

impl<'a> WhatIf<'a> {
    pub fn new(cur: &'a Config, cand: &'a Config) -> WhatIf<'a> {
        let sc = Scales::new(cur, cand);
        let mut r = Report::default();
        if sc.caps_changed {
            r.warnings.push("a factor's cap or [scoring] volume_maturity_days changed: the records hold points, not the counts and ages behind them, so the candidate's are not applied (replay an archive under it for that)".into());
        }
        if sc.brands_changed {
            r.warnings.push("[anomalies] brands changed: a record says whether its display name named a brand of the current list only, so brand_impersonation is re-weighed where it was raised and nowhere else (replay an archive under it for that)".into());
        }
        if cur.lists != cand.lists {
            r.warnings
                .push("[lists] changed: a record's override is kept as it was".into());
        }
        if cur.policy.rcpt.new_recipient != cand.policy.rcpt.new_recipient {
            r.warnings.push("[policy.rcpt.new_recipient] changed: a record does not say which of its recipients were new to the sender, so that table is not applied (replay an archive under it for that)".into());
        }
        WhatIf { cur, cand, sc, r }
    }

    pub fn finish(self) -> Report {
        self.r
    }

    /// Re-rates one record.
    pub fn add(&mut self, rec: &Value) {
        let (sc, r) = (&self.sc, &mut self.r);
        let (Some(now), Some(new)) = (
            verdict(self.cur, rec, sc, false),
            verdict(self.cand, rec, sc, true),
        ) else {
            r.unreadable += 1;
            return;
        };
        r.records += 1;
        if rec["action"].as_str() == Some(now.action.as_str()) {
            r.reproduced += 1;
        }
        let exact = now.exact && new.exact && !sc.caps_changed && !sc.brands_changed;
        r.inexact += u64::from(!exact);
        r.totals.entry(now.action.clone()).or_default().0 += 1;
        r.totals.entry(new.action.clone()).or_default().1 += 1;
        if now.sender != new.sender {
            *r.sender_classes
                .entry(format!("{} → {}", name(now.sender), name(new.sender)))
                .or_default() += 1;
        }
        if now.mta != new.mta {
            *r.mta_classes
                .entry(format!("{} → {}", name(now.mta), name(new.mta)))
                .or_default() += 1;
        }
        if now.action == new.action {
            return;
        }
        r.changed += 1;
        let key = format!("{} → {}", now.action, new.action);
        *r.actions.entry(key.clone()).or_default() += 1;
        *r.stages.entry(new.stage.as_str().to_string()).or_default() += 1;
        let examples = r.examples.entry(key).or_default();
        if examples.len() < EXAMPLES {
            examples.push(Example {
                time: rec["time"].as_str().unwrap_or("").to_string(),
                queue_id: rec["queue_id"].as_str().unwrap_or("").to_string(),
                message_id: rec["message_id"].as_str().map(str::to_string),
                sender: rec["sender"]["key"]
                    .as_str()
                    .or(rec["envelope_from"].as_str())
                    .map(str::to_string),
                now,
                candidate: new,
            });
        }
    }
}

impl Report {
    /// The report as text, for the command line.
    pub fn text(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{} verdict records; the current config reproduces {} of them; {} would change{}",
            self.records,
            self.reproduced,
            self.changed,
            if self.inexact > 0 {
                format!(" ({} not exactly re-rated)", self.inexact)
            } else {
                String::new()
            }
        );
        if self.unreadable > 0 {
            let _ = writeln!(s, "{} records unreadable", self.unreadable);
        }
        for w in &self.warnings {
            let _ = writeln!(s, "warning: {w}");
        }
        let _ = writeln!(
            s,
            "\n{:<22} {:>10} {:>10}",
            "action", "current", "candidate"
        );
        for (a, (c, n)) in &self.totals {
            let _ = writeln!(s, "{a:<22} {c:>10} {n:>10}");
        }
        for (title, m) in [
            ("changed actions", &self.actions),
            ("by stage (candidate)", &self.stages),
            ("sender classes", &self.sender_classes),
            ("MTA classes", &self.mta_classes),
        ] {
            if m.is_empty() {
                continue;
            }
            let _ = writeln!(s, "\n{title}:");
            for (k, n) in m {
                let _ = writeln!(s, "  {k:<40} {n:>8}");
            }
        }
        for (k, list) in &self.examples {
            let _ = writeln!(s, "\nexamples of {k}:");
            for e in list {
                let _ = writeln!(
                    s,
                    "  {} {} {} sender={} ({} → {})",
                    e.time,
                    e.queue_id,
                    e.message_id.as_deref().unwrap_or("-"),
                    e.sender.as_deref().unwrap_or("-"),
                    name(e.now.sender),
                    name(e.candidate.sender)
                );
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cfg() -> Config {
        let mut c = Config {
            enterprise_domains: vec!["example.com".into()],
            mode: crate::vocab::Mode::Enforce,
            ..Config::default()
        };
        c.validate().unwrap();
        c
    }

    fn record(score_points: f64, history: u64, action: &str) -> Value {
        json!({
            "time": "2026-11-01T10:00:00Z", "queue_id": "Q", "direction": "inbound",
            "stage": "eom", "action": action,
            "sender": {"key": "a@x.example", "class": "neutral", "score": 50.0 + score_points,
                       "history": history, "bidirectional": false,
                       "contributions": {"messages_received": score_points}},
            "mta": {"key": "192.0.2.1", "class": "neutral", "score": 50.0, "history": history,
                    "bidirectional": false, "contributions": {}},
            "anomalies": []
        })
    }

    #[test]
    fn the_current_config_reproduces_and_a_stricter_policy_changes_only_its_class() {
        let cur = cfg();
        let mut cand = cfg();
        cand.policy.eom.sender.neutral = Action::Quarantine;
        let records = vec![
            record(4.0, 5, "accept"),       // neutral
            record(4.0, 1, "accept"),       // unrated
            record(-20.0, 5, "quarantine"), // 30: suspicious
        ];
        let r = whatif(&cur, &cand, &records);
        assert_eq!((r.records, r.reproduced, r.inexact), (3, 3, 0));
        assert_eq!(r.changed, 1);
        assert_eq!(r.actions["accept → quarantine"], 1);
        assert_eq!(
            r.examples["accept → quarantine"][0].now.sender,
            Some(Class::Neutral)
        );
    }

    #[test]
    fn weights_scale_points_and_thresholds_move_classes() {
        let cur = cfg();
        let mut cand = cfg();
        // Twice the weight: +4 becomes +8; a stricter suspicious line.
        cand.scoring.sender.messages_received.weight *= 2.0;
        cand.scoring.suspicious = 40.0;
        let records = vec![record(4.0, 5, "accept"), record(-12.0, 5, "accept")];
        let r = whatif(&cur, &cand, &records);
        assert_eq!(r.reproduced, 2);
        // 50-24 = 26 ≤ 40: suspicious → quarantine; 58 stays neutral.
        assert_eq!(r.sender_classes["neutral → suspicious"], 1);
        assert_eq!(r.actions["accept → quarantine"], 1);
        assert_eq!(r.changed, 1);
    }

    #[test]
    fn a_policy_for_an_anomaly_is_applied_from_the_record() {
        let cur = cfg();
        let mut cand = cfg();
        cand.policy
            .anomalies
            .insert("behaviour_change".into(), Action::Tag);
        let mut rec = record(4.0, 5, "accept");
        rec["anomalies"] = json!([{"name": "behaviour_change", "points": -30.0, "detail": "x"}]);
        let r = whatif(&cur, &cand, &[rec, record(4.0, 5, "accept")]);
        assert_eq!(r.reproduced, 2);
        assert_eq!(r.actions["accept → tag"], 1);
        assert_eq!(r.changed, 1);
    }

    #[test]
    fn monitor_mode_and_early_refusals() {
        let mut cur = cfg();
        cur.mode = crate::vocab::Mode::Monitor;
        let mut cand = cfg();
        cand.mode = crate::vocab::Mode::Enforce;
        let mut rec = record(-40.0, 5, "would_reject");
        rec["mta"]["contributions"] = json!({"messages_received": -40.0});
        let r = whatif(&cur, &cand, &[rec]);
        assert_eq!(r.reproduced, 1);
        // A malicious MTA is refused at connect once enforced.
        assert_eq!(r.stages["connect"], 1);
        assert_eq!(r.actions["would_reject → reject"], 1);
        assert_eq!(r.inexact, 0);
    }

    #[test]
    fn a_diversion_keeps_its_relationship_under_new_weights() {
        let mut cur = cfg();
        cur.anomalies.reply_to_divergence = -10.0;
        let mut cand = cur.clone();
        // -25 lies halfway between -10 and -40. With the plain divergence
        // at -30, halfway is -35: 50 - 25 = 25 (suspicious) becomes 15
        // (malicious), though the diversion's own weight did not change.
        cand.anomalies.reply_to_divergence = -30.0;
        let mut rec = record(0.0, 5, "quarantine");
        rec["sender"]["contributions"] = json!({"reply_to_diverted": -25.0});
        let r = whatif(&cur, &cand, &[rec]);
        assert_eq!((r.records, r.reproduced, r.inexact), (1, 1, 0));
        assert_eq!(r.sender_classes["suspicious → malicious"], 1);
    }

    #[test]
    fn a_changed_brand_list_is_flagged() {
        let cur = cfg();
        let mut cand = cfg();
        cand.anomalies.brands.truncate(3);
        let r = whatif(&cur, &cand, &[record(4.0, 5, "accept")]);
        assert_eq!((r.records, r.inexact), (1, 1));
        assert!(r.warnings[0].contains("brands"), "{:?}", r.warnings);
        let same = whatif(&cur, &cfg(), &[record(4.0, 5, "accept")]);
        assert_eq!(same.inexact, 0);
    }

    #[test]
    fn a_changed_volume_maturity_is_flagged() {
        let cur = cfg();
        let mut cand = cfg();
        cand.scoring.volume_maturity_days = 7.0;
        let r = whatif(&cur, &cand, &[record(4.0, 5, "accept")]);
        assert_eq!((r.records, r.inexact), (1, 1));
        assert!(
            r.warnings[0].contains("volume_maturity_days"),
            "{:?}",
            r.warnings
        );
    }

    #[test]
    fn a_changed_cap_is_flagged_and_outbound_never_changes() {
        let cur = cfg();
        let mut cand = cfg();
        cand.scoring.sender.replies_sent.cap *= 2.0;
        cand.policy.eom.sender.unrated = Action::Reject;
        let out = json!({"time": "2026-11-01T10:00:00Z", "direction": "outbound", "stage": "eom", "action": "accept"});
        let r = whatif(&cur, &cand, &[out, json!({"nonsense": 1})]);
        assert_eq!((r.records, r.changed, r.unreadable), (1, 0, 1));
        assert_eq!(r.warnings.len(), 1);
    }
}
