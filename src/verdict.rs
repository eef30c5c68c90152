//! The verdict of one message: the `X-SRA-Verdict` header and the JSON
//! verdict record (the SIEM feed). Field names are contracts (DESIGN.md).

use crate::config::{Config, LogFormat};
use crate::message::Message;
use crate::pipeline::Assessment;
use crate::policy::Outcome;
use crate::reputation::{Anomaly, Rating};
use crate::vocab::{rfc3339, Class, Stage};
use serde::Serialize;
use serde_json::{json, Value};
use std::borrow::Cow;

pub const VERDICT_HEADER: &str = "X-SRA-Verdict";

/// Contributions named in the header, largest first.
const HEADER_TOP: usize = 4;

fn signed(p: f64) -> String {
    if p >= 0.0 {
        format!("+{p:.1}")
    } else {
        format!("{p:.1}")
    }
}

/// The action as the header and the log say it: `reject`, or
/// `would_reject` when monitor-only mode held it back.
pub fn action_label(o: &Outcome) -> String {
    o.label()
}

/// `sender=trusted (82.0); mta=neutral (55.0); action=accept; monitor=no;
/// top=replies_sent+12.0,days_known+8.1`
pub fn header_value(a: &Assessment, outcome: &Outcome, monitor: bool) -> String {
    let mut parts = Vec::new();
    let part = |label: &str, r: &Option<Rating>| match r {
        Some(r) => format!("{label}={} ({:.1})", r.class, r.score),
        None => format!("{label}=none"),
    };
    parts.push(part("sender", &a.sender));
    parts.push(part("mta", &a.mta));
    parts.push(format!("action={}", action_label(outcome)));
    parts.push(format!("monitor={}", if monitor { "yes" } else { "no" }));
    if !a.anomalies.is_empty() {
        let names: Vec<&str> = a.anomalies.iter().map(|x| x.name).collect();
        parts.push(format!("anomalies={}", names.join(",")));
    }
    let mut top: Vec<(String, f64)> = a
        .sender
        .iter()
        .flat_map(|r| r.contributions())
        .chain(a.mta.iter().flat_map(|r| {
            r.contributions()
                .into_iter()
                .map(|(n, p)| (format!("mta.{n}"), p))
        }))
        .collect();
    top.sort_by(|x, y| y.1.abs().total_cmp(&x.1.abs()));
    if !top.is_empty() {
        let list: Vec<String> = top
            .iter()
            .take(HEADER_TOP)
            .map(|(n, p)| format!("{n}{}", signed(*p)))
            .collect();
        parts.push(format!("top={}", list.join(",")));
    }
    parts.join("; ")
}

/// A rating as the verdict record and `explain --json` write it: its keys
/// in alphabetical order, as a JSON map writes them, built without a
/// tree of JSON values (one message's record is written per message).
#[derive(Clone, Debug, Serialize)]
pub struct RatingRecord {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backed_by: Option<String>,
    pub bidirectional: bool,
    pub class: Class,
    /// Every factor's contribution and every other contribution, by name.
    pub contributions: Named<f64>,
    /// Every factor's value (`null` when unknown), by name.
    pub factors: Named<Option<f64>>,
    pub history: u64,
    pub key: String,
    /// The override that decided the class, as its JSON object.
    #[serde(rename = "override", skip_serializing_if = "Option::is_none")]
    pub override_: Option<Value>,
    pub score: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub untrusted_because: Option<String>,
}

/// Values by name, sorted by name, one per name (the last given wins, as
/// in a JSON map): written as a JSON object.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Named<T>(pub Vec<(Cow<'static, str>, T)>);

impl<T> Named<T> {
    fn new(mut v: Vec<(Cow<'static, str>, T)>) -> Named<T> {
        // Stable: among equal names the last given stays last, and is kept.
        v.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out: Vec<(Cow<'static, str>, T)> = Vec::with_capacity(v.len());
        for (k, x) in v {
            match out.last_mut() {
                Some(last) if last.0 == k => last.1 = x,
                _ => out.push((k, x)),
            }
        }
        Named(out)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &T)> {
        self.0.iter().map(|(k, v)| (k.as_ref(), v))
    }
}

impl<T: Serialize> Serialize for Named<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, v)| (k.as_ref(), v)))
    }
}

impl RatingRecord {
    pub fn of(r: &Rating) -> RatingRecord {
        let factors = r
            .factors
            .iter()
            .map(|f| (Cow::Borrowed(f.name), f.value))
            .collect();
        let contributions = r
            .factors
            .iter()
            .map(|f| (Cow::Borrowed(f.name), f.contribution))
            .chain(
                r.extra
                    .iter()
                    .map(|c| (Cow::Owned(c.name.clone()), c.points)),
            )
            .collect();
        RatingRecord {
            backed_by: r.backed_by.clone(),
            bidirectional: r.bidirectional,
            class: r.class,
            contributions: Named::new(contributions),
            factors: Named::new(factors),
            history: r.history,
            key: r.key.clone(),
            override_: r.override_.as_ref().map(|o| json!(o)),
            score: r.score,
            untrusted_because: r.untrusted_because.clone(),
        }
    }

    /// The score as the JSON record writes it (`null` when not finite).
    pub fn score_json(&self) -> Value {
        Value::from(self.score)
    }
}

/// The rating as it appears in the JSON record and `explain --json`.
pub fn rating_json(r: &Rating) -> Value {
    serde_json::to_value(RatingRecord::of(r)).unwrap_or_default()
}

/// One JSON verdict record.
#[derive(Debug, Serialize)]
pub struct VerdictRecord {
    pub time: String,
    pub queue_id: String,
    pub message_id: Option<String>,
    pub direction: &'static str,
    pub client_ip: Option<String>,
    pub helo: String,
    pub envelope_from: Option<String>,
    pub header_from: Option<String>,
    pub recipients: Vec<String>,
    /// true, false, or null (not verified, or DNS trouble).
    pub authenticated: Option<bool>,
    /// SPF, DKIM, DMARC and ARC results, when known.
    pub auth: Option<crate::auth::AuthSummary>,
    pub sender: Option<RatingRecord>,
    pub mta: Option<RatingRecord>,
    pub anomalies: Vec<Anomaly>,
    /// The sender's and the MTA's ratings as one score
    /// (`reputation::combined_score`), for ranking.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    pub stage: Stage,
    pub action: String,
    pub monitor: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Replay: where the message came from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

impl VerdictRecord {
    pub fn new(
        msg: &Message,
        a: &Assessment,
        stage: Stage,
        outcome: &Outcome,
        monitor: bool,
    ) -> VerdictRecord {
        VerdictRecord {
            time: rfc3339(msg.time),
            queue_id: msg.queue_id.clone(),
            message_id: msg.message_id.clone(),
            direction: msg.direction().as_str(),
            client_ip: msg.client_ip.map(|i| i.to_string()),
            helo: msg.helo.clone(),
            envelope_from: msg.envelope_from.clone(),
            header_from: msg.header_from.clone(),
            recipients: msg.recipients.clone(),
            authenticated: msg.auth_state.as_json(),
            auth: msg.auth.clone(),
            sender: a.sender.as_ref().map(RatingRecord::of),
            mta: a.mta.as_ref().map(RatingRecord::of),
            anomalies: a.anomalies.clone(),
            score: a.score,
            stage,
            action: action_label(outcome),
            monitor,
            error: None,
            source: None,
        }
    }

    pub fn to_json_line(&self) -> String {
        let mut out = Vec::new();
        self.write_json_line(&mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    /// The record's JSON appended to `out` (an error's JSON if it cannot
    /// be written, which a record of strings and numbers never is).
    pub fn write_json_line(&self, out: &mut Vec<u8>) {
        let start = out.len();
        if let Err(e) = serde_json::to_writer(&mut *out, self) {
            out.truncate(start);
            let msg = serde_json::to_string(&e.to_string()).unwrap_or_default();
            out.extend_from_slice(format!("{{\"error\":{msg}}}").as_bytes());
        }
    }
}

/// Whether verdicts are logged as JSON records (else as summary lines).
pub fn logs_json(cfg: &Config) -> bool {
    crate::logging::format().unwrap_or(cfg.log.format) == LogFormat::Json
}

/// The summary line of a verdict (the log's text mode).
pub fn emit_summary(rec: &VerdictRecord, msg: &Message) {
    let qid = if rec.queue_id.is_empty() {
        "NOQUEUE"
    } else {
        &rec.queue_id
    };
    let rating = |v: &Option<RatingRecord>| match v {
        Some(r) => format!("{} ({} {})", r.key, r.class, r.score_json()),
        None => "-".into(),
    };
    // A refused message carries no header: its log line names what decided.
    let why = if rec.action == "accept" {
        String::new()
    } else {
        format!(" why=\"{}\"", decided(rec))
    };
    tracing::info!(
        "{qid}: verdict direction={} stage={} from=<{}> sender={} mta={} action={} monitor={} message_id=<{}>{why}",
        rec.direction,
        rec.stage,
        msg.envelope_from.as_deref().unwrap_or(""),
        rating(&rec.sender),
        rating(&rec.mta),
        rec.action,
        if rec.monitor { "yes" } else { "no" },
        rec.message_id.as_deref().unwrap_or("")
    );
}

/// What decided a verdict, for its log line: the anomalies with their
/// points and details, then the other contributions that counted against
/// the sender or the MTA (most negative first), and the DMARC result.
pub fn decided(rec: &VerdictRecord) -> String {
    let anomalies: Vec<(&str, f64, &str)> = rec
        .anomalies
        .iter()
        .map(|a| (a.name, a.points, a.detail.as_str()))
        .collect();
    let dmarc = rec
        .auth
        .as_ref()
        .filter(|a| a.dmarc == crate::auth::AuthResult::Fail)
        .map(|a| a.dmarc_policy.to_string());
    fn contributions(r: &Option<RatingRecord>) -> Option<Vec<(&str, f64)>> {
        r.as_ref()
            .map(|r| r.contributions.iter().map(|(k, p)| (k, *p)).collect())
    }
    decided_from(
        &anomalies,
        [contributions(&rec.sender), contributions(&rec.mta)],
        dmarc,
    )
}

/// [`decided`] of a record read back from its JSON line (the console).
pub fn decided_json(rec: &Value) -> String {
    let anomalies: Vec<(&str, f64, &str)> = rec["anomalies"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|a| {
                    (
                        a["name"].as_str().unwrap_or(""),
                        a["points"].as_f64().unwrap_or(0.0),
                        a["detail"].as_str().unwrap_or(""),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let dmarc = (rec["auth"]["dmarc"] == "fail").then(|| {
        rec["auth"]["dmarc_policy"]
            .as_str()
            .unwrap_or("")
            .to_string()
    });
    let contributions = |k: &str| {
        rec[k]["contributions"].as_object().map(|c| {
            c.iter()
                .filter_map(|(k, p)| Some((k.as_str(), p.as_f64()?)))
                .collect()
        })
    };
    decided_from(
        &anomalies,
        [contributions("sender"), contributions("mta")],
        dmarc,
    )
}

/// `ratings`: the sender's and the MTA's contributions by name, when rated.
fn decided_from(
    anomalies: &[(&str, f64, &str)],
    ratings: [Option<Vec<(&str, f64)>>; 2],
    dmarc_failed_policy: Option<String>,
) -> String {
    let mut parts: Vec<String> = anomalies
        .iter()
        .map(|(name, points, detail)| format!("{name} {points} ({})", detail.replace('"', "'")))
        .collect();
    for (who, v) in ["sender", "mta"].into_iter().zip(ratings) {
        let Some(c) = v else {
            continue;
        };
        let mut neg: Vec<(&str, f64)> = c
            .into_iter()
            .filter(|(k, p)| *p < 0.0 && !anomalies.iter().any(|a| a.0 == *k))
            .collect();
        neg.sort_by(|a, b| a.1.total_cmp(&b.1));
        parts.extend(neg.iter().take(3).map(|(k, p)| format!("{who} {k} {p}")));
    }
    if let Some(p) = dmarc_failed_policy {
        parts.push(format!("dmarc fail, p={p}"));
    }
    if parts.is_empty() {
        parts.push("the class policy".into());
    }
    parts.join("; ")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::vocab::Action;
    use serde_json::Map;

    /// A rating record with nothing in it (for tests to fill in).
    pub(crate) fn rating_record() -> RatingRecord {
        RatingRecord {
            backed_by: None,
            bidirectional: false,
            class: Class::Unrated,
            contributions: Named::default(),
            factors: Named::default(),
            history: 0,
            key: String::new(),
            override_: None,
            score: 0.0,
            untrusted_because: None,
        }
    }

    /// The rating's JSON as a tree of values, as the record was built
    /// before [`RatingRecord`]: the reference it must write alike.
    fn rating_tree(r: &Rating) -> Value {
        let mut factors = Map::new();
        let mut contributions = Map::new();
        for f in &r.factors {
            factors.insert(f.name.into(), f.value.map_or(Value::Null, |v| json!(v)));
            contributions.insert(f.name.into(), json!(f.contribution));
        }
        for c in &r.extra {
            contributions.insert(c.name.clone(), json!(c.points));
        }
        let mut v = json!({
            "key": r.key,
            "class": r.class,
            "score": r.score,
            "factors": factors,
            "contributions": contributions,
            "history": r.history,
            "bidirectional": r.bidirectional,
        });
        if let Some(b) = &r.backed_by {
            v["backed_by"] = json!(b);
        }
        if let Some(o) = &r.override_ {
            v["override"] = json!(o);
        }
        if let Some(why) = &r.untrusted_because {
            v["untrusted_because"] = json!(why);
        }
        v
    }

    #[test]
    fn the_typed_rating_writes_what_the_value_tree_wrote() {
        let cfg = crate::config::ScoringConfig::default();
        let mut rec = crate::store::Record::default();
        rec.first_seen = 1_700_000_000;
        let mut plain = crate::reputation::rate_sender(
            "ap@partner.example",
            &rec,
            &crate::store::Record::default(),
            1_700_100_000,
            &cfg,
        );
        assert!(!plain.factors.is_empty());
        let mut full = plain.clone();
        full.add("lookalike_domain", -35.0, &cfg);
        full.add("unauthenticated", -12.0, &cfg);
        // A name given twice, and one that is also a factor's: the last wins.
        full.add("unauthenticated", -6.0, &cfg);
        let factor = full.factors[0].name;
        full.add(factor, 3.5, &cfg);
        full.backed_by = Some("partner.example".into());
        full.untrusted_because = Some("behaviour_change".into());
        full.override_ = Some(crate::store::Override {
            target: crate::vocab::Target::Sender("ap@partner.example".into()),
            class: Class::Trusted,
            reason: "a partner".into(),
            time: 1_700_000_000,
            source: "store".into(),
        });
        plain.score = f64::NAN;
        for r in [&plain, &full] {
            let typed = serde_json::to_string(&RatingRecord::of(r)).unwrap();
            let tree = serde_json::to_string(&rating_tree(r)).unwrap();
            assert_eq!(typed, tree);
            assert_eq!(rating_json(r), rating_tree(r));
        }
        let typed = RatingRecord::of(&full);
        assert_eq!(
            typed
                .contributions
                .iter()
                .find(|(k, _)| *k == "unauthenticated"),
            Some(("unauthenticated", &-6.0))
        );
        assert_eq!(plain_json_score(&plain), "null");
    }

    fn plain_json_score(r: &Rating) -> String {
        RatingRecord::of(r).score_json().to_string()
    }

    #[test]
    fn header_says_would_in_monitor_mode() {
        let a = Assessment::default();
        let o = Outcome {
            applied: Action::Accept,
            would: Some(Action::Reject),
        };
        let h = header_value(&a, &o, true);
        assert_eq!(h, "sender=none; mta=none; action=would_reject; monitor=yes");
    }

    #[test]
    fn a_refusal_names_what_decided() {
        let cfg = crate::config::ScoringConfig::default();
        let mut sender = crate::reputation::rate_sender(
            "ap@examp1e.com",
            &crate::store::Record::default(),
            &crate::store::Record::default(),
            0,
            &cfg,
        );
        sender.add("lookalike_domain", -35.0, &cfg);
        sender.add("unauthenticated", -12.0, &cfg);
        let a = Assessment {
            sender: Some(sender),
            anomalies: vec![Anomaly::new(
                "lookalike_domain",
                -35.0,
                "example.com at edit distance 1",
            )],
            ..Assessment::default()
        };
        let o = Outcome {
            applied: Action::Reject,
            would: None,
        };
        let rec = VerdictRecord::new(&Message::default(), &a, Stage::Eom, &o, false);
        assert_eq!(
            decided(&rec),
            "lookalike_domain -35 (example.com at edit distance 1); sender unauthenticated -12"
        );
        let plain = VerdictRecord::new(
            &Message::default(),
            &Assessment::default(),
            Stage::Eom,
            &o,
            false,
        );
        assert_eq!(decided(&plain), "the class policy");
    }
}
