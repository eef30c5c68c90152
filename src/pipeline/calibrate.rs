//! Calibration: the weights of the named factors (the eleven sender and
//! five MTA factors) fitted to the site's own feedback, proposed as
//! `[scoring.sender]` and `[scoring.mta]` tables beside the separation it
//! measures. It never applies itself, and the score stays a sum of named
//! contributions.
//!
//! Each verdict record carries a factor's points, `weight × g(value)`;
//! dividing by the current weight gives back `g(value)`, the factor's
//! feature. The sender's and the MTA's points count together, as the
//! record's combined score adds them. A logistic regression of the feedback (bad: reported junk, or
//! an override to suspicious/malicious; good: a sender the enterprise has
//! answered, or an override to trusted) on those features and on the
//! rest of the score (anomalies, backing: kept as they are) gives each
//! factor's coefficient; divided by the coefficient of the rest, it is a
//! weight in points. The records are split by time: the fit learns on the
//! earlier days and the ROC AUC of the current and the fitted scores is
//! measured on the later, held-out days.

use crate::config::Config;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// A record with its feedback.
pub struct Labelled<'a> {
    pub record: &'a Value,
    /// true: bad (junk, malicious); false: good.
    pub bad: bool,
}

/// One factor's weight now and as fitted.
#[derive(Clone, Debug, Serialize)]
pub struct Fitted {
    pub factor: String,
    pub current: f64,
    pub fitted: f64,
    /// The feedback never saw this factor vary: its weight is kept.
    pub kept: bool,
}

#[derive(Debug, Default, Serialize)]
pub struct Calibration {
    pub train: (u64, u64),
    /// (bad, good) messages held out.
    pub held_out: (u64, u64),
    /// ROC AUC on the held-out days: how often a good message scores
    /// above a bad one (1.0: always; 0.5: chance).
    pub auc_current: Option<f64>,
    pub auc_fitted: Option<f64>,
    pub weights: Vec<Fitted>,
    /// The fitted weights separate at least as well as the current ones.
    pub better: bool,
    /// Why no fit was made, when none was.
    pub refused: Option<String>,
}

/// (features by factor, the rest of the points) of a record: the
/// sender's and the MTA's ratings together, as the record's combined
/// score adds them.
fn features(
    rec: &Value,
    names: &[String],
    current: &BTreeMap<String, f64>,
) -> Option<(Vec<f64>, f64)> {
    let sender = rec["sender"]["contributions"].as_object()?;
    let empty = serde_json::Map::new();
    let mta = rec["mta"]["contributions"].as_object().unwrap_or(&empty);
    let mut f = vec![0.0; names.len()];
    let mut rest = 0.0;
    for (who, c) in [("sender", sender), ("mta", mta)] {
        for (k, p) in c {
            let p = p.as_f64().unwrap_or(0.0);
            let name = format!("{who}.{k}");
            match names.iter().position(|n| *n == name) {
                Some(i) if current[&name] != 0.0 => f[i] = p / current[&name],
                _ => rest += p,
            }
        }
    }
    Some((f, rest))
}

/// ROC AUC of `scores` (higher: better) against `bad`.
pub fn auc(scores: &[(f64, bool)]) -> Option<f64> {
    let mut v: Vec<(f64, bool)> = scores.to_vec();
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    let bad = v.iter().filter(|x| x.1).count() as f64;
    let good = v.len() as f64 - bad;
    if bad == 0.0 || good == 0.0 {
        return None;
    }
    // Mann-Whitney U over ranks, ties sharing their mean rank.
    let mut rank_sum_good = 0.0;
    let mut i = 0;
    while i < v.len() {
        let mut j = i;
        while j < v.len() && v[j].0 == v[i].0 {
            j += 1;
        }
        let mean_rank = (i + j + 1) as f64 / 2.0;
        rank_sum_good += mean_rank * v[i..j].iter().filter(|x| !x.1).count() as f64;
        i = j;
    }
    Some((rank_sum_good - good * (good + 1.0) / 2.0) / (good * bad))
}

/// A logistic regression by gradient descent on standardised columns;
/// the coefficients in the columns' own units, intercept last. A column
/// that never varies gets `None`.
fn logistic(x: &[Vec<f64>], y: &[bool]) -> Vec<Option<f64>> {
    let n = x.len() as f64;
    let d = x[0].len();
    let mean: Vec<f64> = (0..d)
        .map(|j| x.iter().map(|r| r[j]).sum::<f64>() / n)
        .collect();
    let sd: Vec<f64> = (0..d)
        .map(|j| {
            let v = x.iter().map(|r| (r[j] - mean[j]).powi(2)).sum::<f64>() / n;
            if v > 1e-12 {
                v.sqrt()
            } else {
                0.0
            }
        })
        .collect();
    let z: Vec<Vec<f64>> = x
        .iter()
        .map(|r| {
            (0..d)
                .map(|j| {
                    if sd[j] > 0.0 {
                        (r[j] - mean[j]) / sd[j]
                    } else {
                        0.0
                    }
                })
                .collect()
        })
        .collect();
    let mut b = vec![0.0; d + 1];
    let l2 = 1e-3;
    for _ in 0..2000 {
        let mut g = vec![0.0; d + 1];
        for (r, &yi) in z.iter().zip(y) {
            let t = b[d] + r.iter().zip(&b).map(|(a, c)| a * c).sum::<f64>();
            let err = 1.0 / (1.0 + (-t).exp()) - f64::from(u8::from(yi));
            for j in 0..d {
                g[j] += err * r[j];
            }
            g[d] += err;
        }
        for j in 0..=d {
            let reg = if j < d { l2 * b[j] } else { 0.0 };
            b[j] -= 0.5 * (g[j] / n + reg);
        }
    }
    // Back to the columns' units.
    let mut out: Vec<Option<f64>> = (0..d)
        .map(|j| (sd[j] > 0.0).then(|| b[j] / sd[j]))
        .collect();
    let shift: f64 = (0..d).map(|j| out[j].unwrap_or(0.0) * mean[j]).sum();
    out.push(Some(b[d] - shift));
    out
}

/// Fits the factors' weights; `held_out` is the share of the days,
/// the latest, kept out of the fit.
pub fn calibrate(cfg: &Config, data: &[Labelled<'_>], held_out: f64) -> Calibration {
    let mut current = BTreeMap::new();
    for (who, table) in [
        ("sender", serde_json::to_value(&cfg.scoring.sender)),
        ("mta", serde_json::to_value(&cfg.scoring.mta)),
    ] {
        if let Ok(Value::Object(m)) = table {
            for (k, v) in m {
                current.insert(format!("{who}.{k}"), v["weight"].as_f64().unwrap_or(0.0));
            }
        }
    }
    let names: Vec<String> = current.keys().cloned().collect();
    let mut rows: Vec<(u64, Vec<f64>, f64, bool)> = data
        .iter()
        .filter_map(|l| {
            let t = l.record["time"]
                .as_str()
                .and_then(crate::vocab::parse_rfc3339)?;
            let (f, rest) = features(l.record, &names, &current)?;
            Some((t, f, rest, l.bad))
        })
        .collect();
    rows.sort_by_key(|r| r.0);
    let mut c = Calibration::default();
    let (Some(first), Some(last)) = (rows.first().map(|r| r.0), rows.last().map(|r| r.0)) else {
        c.refused = Some("no labelled inbound verdicts".into());
        return c;
    };
    let cut = last - ((last - first) as f64 * held_out.clamp(0.05, 0.95)) as u64;
    let (train, test): (Vec<_>, Vec<_>) = rows.into_iter().partition(|r| r.0 < cut);
    let count = |v: &[(u64, Vec<f64>, f64, bool)]| {
        let bad = v.iter().filter(|r| r.3).count() as u64;
        (bad, v.len() as u64 - bad)
    };
    c.train = count(&train);
    c.held_out = count(&test);
    if c.train.0 < 5 || c.train.1 < 5 {
        c.refused = Some(format!(
            "too little feedback before the held-out days: {} bad and {} good messages (5 of each needed)",
            c.train.0, c.train.1
        ));
        return c;
    }
    let x: Vec<Vec<f64>> = train
        .iter()
        .map(|r| {
            let mut v = r.1.clone();
            v.push(r.2);
            v
        })
        .collect();
    let y: Vec<bool> = train.iter().map(|r| r.3).collect();
    let beta = logistic(&x, &y);
    let gamma = beta[names.len()].unwrap_or(0.0);
    // Points per unit of a factor's feature: its coefficient over the
    // coefficient of a point of score (negative: points make bad less
    // likely). Without a usable one, keep the current weights' total.
    let scale = if gamma < -1e-6 {
        1.0 / gamma
    } else {
        let budget: f64 = names
            .iter()
            .zip(&beta)
            .filter(|(_, b)| b.is_some())
            .map(|(n, _)| current[n].abs())
            .sum();
        let have: f64 = beta[..names.len()].iter().flatten().map(|b| b.abs()).sum();
        -budget / have.max(1e-9)
    };
    c.weights = names
        .iter()
        .zip(&beta)
        .map(|(n, b)| Fitted {
            factor: n.clone(),
            current: current[n],
            // A factor the feedback never saw vary keeps its weight.
            fitted: b.map_or(current[n], |b| ((b * scale * 10.0).round() / 10.0) + 0.0),
            kept: b.is_none(),
        })
        .collect();
    let score = |r: &(u64, Vec<f64>, f64, bool), w: &dyn Fn(usize) -> f64| {
        r.2 + r.1.iter().enumerate().map(|(i, f)| f * w(i)).sum::<f64>()
    };
    let cur: Vec<(f64, bool)> = test
        .iter()
        .map(|r| (score(r, &|i| current[&names[i]]), r.3))
        .collect();
    let new: Vec<(f64, bool)> = test
        .iter()
        .map(|r| (score(r, &|i| c.weights[i].fitted), r.3))
        .collect();
    c.auc_current = auc(&cur);
    c.auc_fitted = auc(&new);
    c.better = matches!((c.auc_current, c.auc_fitted), (Some(a), Some(b)) if b >= a);
    c
}

impl Calibration {
    /// The report and, when it separates at least as well, the proposed
    /// table.
    pub fn text(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "feedback: {} bad and {} good messages to fit on, {} bad and {} good held out (the latest days)",
            self.train.0, self.train.1, self.held_out.0, self.held_out.1
        );
        if let Some(why) = &self.refused {
            let _ = writeln!(s, "no fit: {why}");
            return s;
        }
        let f = |a: Option<f64>| a.map_or("n/a (one class only)".into(), |a| format!("{a:.3}"));
        let _ = writeln!(
            s,
            "ROC AUC on the held-out days: current {}, fitted {}",
            f(self.auc_current),
            f(self.auc_fitted)
        );
        let _ = writeln!(s, "\n{:<34} {:>8} {:>8}", "factor", "current", "fitted");
        for w in &self.weights {
            let note = if w.kept {
                "  (never varied in the feedback: kept)"
            } else {
                ""
            };
            let _ = writeln!(
                s,
                "{:<34} {:>8.1} {:>8.1}{note}",
                w.factor, w.current, w.fitted
            );
        }
        if self.better {
            let _ = writeln!(s, "\nThe fitted weights separate at least as well. To try them, add to the configuration (nothing was changed):\n");
            for w in self
                .weights
                .iter()
                .filter(|w| !w.kept && w.fitted != w.current)
            {
                let _ = writeln!(s, "[scoring.{}]\nweight = {:.1}\n", w.factor, w.fitted);
            }
        } else {
            let _ = writeln!(
                s,
                "\nThe fitted weights separate worse on the held-out days: keep the current ones."
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn auc_counts_pairs_and_ties() {
        assert_eq!(auc(&[(1.0, true), (2.0, false)]), Some(1.0));
        assert_eq!(auc(&[(2.0, true), (1.0, false)]), Some(0.0));
        assert_eq!(auc(&[(1.0, true), (1.0, false)]), Some(0.5));
        assert_eq!(auc(&[(1.0, true)]), None);
    }

    /// Bad senders differ from good ones in `not_opened` only; the current
    /// weights ignore it (weight -0.1), the fit must find it.
    #[test]
    fn the_fit_finds_the_factor_that_separates() {
        let mut cfg = Config::default();
        cfg.scoring.sender.not_opened.weight = -0.1;
        let mut recs = Vec::new();
        for i in 0..400u64 {
            let bad = i % 3 == 0;
            let g = if bad { 0.8 } else { 0.1 } + (i % 7) as f64 * 0.02;
            let noise = ((i * 37) % 11) as f64 - 5.0;
            recs.push((
                json!({
                    "time": crate::vocab::rfc3339(1_800_000_000 + i * 3600),
                    "sender": {"contributions": {
                        "not_opened": -0.1 * g,
                        "messages_received": 3.0 + noise,
                    }}
                }),
                bad,
            ));
        }
        let data: Vec<Labelled> = recs
            .iter()
            .map(|(r, b)| Labelled { record: r, bad: *b })
            .collect();
        let c = calibrate(&cfg, &data, 0.3);
        assert!(c.refused.is_none(), "{c:?}");
        let w = c
            .weights
            .iter()
            .find(|w| w.factor == "sender.not_opened")
            .unwrap();
        assert!(w.fitted < -1.0, "not_opened now weighs: {w:?}");
        assert!(c.auc_fitted.unwrap() > 0.95, "{c:?}");
        assert!(c.auc_fitted >= c.auc_current && c.better);
        assert!(c.text().contains("[scoring.sender.not_opened]"));
        assert_eq!(
            c.weights.len(),
            16,
            "the eleven sender and five MTA factors"
        );
    }

    #[test]
    fn too_little_feedback_is_said() {
        let r = json!({"time": "2026-11-01T00:00:00Z", "sender": {"contributions": {}}});
        let c = calibrate(
            &Config::default(),
            &[Labelled {
                record: &r,
                bad: true,
            }],
            0.3,
        );
        assert!(c.refused.is_some());
        assert!(c.text().contains("no fit"));
    }
}
