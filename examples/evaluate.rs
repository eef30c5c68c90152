//! How well do the prequential ratings separate ham from spam?
//!
//!     sra-milter replay -c CONFIG --jsonl OUT.jsonl CORPUS...
//!     cargo run --example evaluate -- OUT.jsonl LABELS
//!
//! LABELS has one `ham|spam PATH` line per message (TREC's `index`); a
//! record is matched to its label by the file name of its `source`. Prints
//! the ROC AUC of the sender, MTA and combined scores (ham should score
//! higher; combined = the verdict's `score`, or the mean of the two in
//! records that have none), and the class × label tables.
//!
//!     cargo run --example evaluate -- --synthetic OUT.jsonl LABELS.tsv
//!
//! prints the table of docs/evaluation.md for the synthetic organisation
//! of `examples/synth_org.rs`.
//! The ratings are the ones each message met *before* it was learned.

use std::collections::{BTreeMap, HashMap};

/// Area under the ROC curve: P(score of a ham > score of a spam), ties
/// counting one half (Mann-Whitney U).
fn auc(points: &[(f64, bool)]) -> Option<f64> {
    let mut v: Vec<(f64, bool)> = points.to_vec();
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (mut rank_sum, mut n_pos, mut i) = (0.0, 0usize, 0usize);
    while i < v.len() {
        let mut j = i;
        while j < v.len() && v[j].0 == v[i].0 {
            j += 1;
        }
        let avg_rank = (i + 1 + j) as f64 / 2.0;
        for p in &v[i..j] {
            if p.1 {
                rank_sum += avg_rank;
                n_pos += 1;
            }
        }
        i = j;
    }
    let n_neg = v.len() - n_pos;
    if n_pos == 0 || n_neg == 0 {
        return None;
    }
    Some((rank_sum - (n_pos * (n_pos + 1)) as f64 / 2.0) / (n_pos as f64 * n_neg as f64))
}

fn base_name(s: &str) -> &str {
    let s = s.split('@').next().unwrap_or(s);
    s.rsplit('/').next().unwrap_or(s)
}

/// The combined score of a record: the verdict's own (`score`), else the
/// mean of the sender's and the MTA's.
fn combined_score(v: &serde_json::Value) -> Option<f64> {
    if let Some(s) = v["score"].as_f64() {
        return Some(s);
    }
    let both: Vec<f64> = [v["sender"]["score"].as_f64(), v["mta"]["score"].as_f64()]
        .into_iter()
        .flatten()
        .collect();
    (!both.is_empty()).then(|| both.iter().sum::<f64>() / both.len() as f64)
}

fn class_of<'a>(v: &'a serde_json::Value, who: &str) -> &'a str {
    v[who]["class"].as_str().unwrap_or("none")
}

/// Flagged: the sender or the MTA is suspicious or malicious.
fn flagged(v: &serde_json::Value) -> bool {
    ["sender", "mta"]
        .iter()
        .any(|w| matches!(class_of(v, w), "suspicious" | "malicious"))
}

fn pct(n: usize, d: usize) -> String {
    if d == 0 {
        "n/a".into()
    } else {
        format!("{:.1} %", 100.0 * n as f64 / d as f64)
    }
}

/// The share of `attacks` flagged by a threshold on the combined score that
/// flags at most `fpr` of `legit` (lower scores are worse).
fn tpr_at_fpr(legit: &[f64], attacks: &[f64], fpr: f64) -> f64 {
    let mut l = legit.to_vec();
    l.sort_by(f64::total_cmp);
    let allowed = (fpr * l.len() as f64).floor() as usize;
    // Flag scores strictly below the (allowed+1)-th lowest legitimate score.
    let Some(&cut) = l.get(allowed) else {
        return 1.0;
    };
    let cut = if l.iter().filter(|s| **s < cut).count() <= allowed {
        cut
    } else {
        f64::NEG_INFINITY
    };
    attacks.iter().filter(|s| **s < cut).count() as f64 / attacks.len().max(1) as f64
}

/// The synthetic organisation's table (examples/synth_org.rs labels).
fn synthetic(jsonl: &str, labels: &str) {
    let labels: HashMap<String, (String, bool)> = std::fs::read_to_string(labels)
        .expect("labels")
        .lines()
        .filter_map(|l| {
            let mut it = l.split('\t');
            let (id, cat, est) = (it.next()?, it.next()?, it.next()?);
            Some((id.to_string(), (cat.to_string(), est == "1")))
        })
        .collect();
    let text = std::fs::read_to_string(jsonl).expect("jsonl");
    let mut recs: Vec<(String, bool, serde_json::Value)> = Vec::new();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let id = v["message_id"]
            .as_str()
            .unwrap_or("")
            .trim_matches(['<', '>']);
        if let Some((cat, est)) = labels.get(id) {
            recs.push((cat.clone(), *est, v));
        }
    }
    let of = |f: &dyn Fn(&str, bool) -> bool| -> Vec<&serde_json::Value> {
        recs.iter()
            .filter(|(c, e, _)| f(c, *e))
            .map(|r| &r.2)
            .collect()
    };
    let count = |v: &[&serde_json::Value], f: &dyn Fn(&serde_json::Value) -> bool| {
        v.iter().filter(|r| f(r)).count()
    };
    let trusted = |r: &serde_json::Value| class_of(r, "sender") == "trusted";
    println!(
        "{} labelled inbound records of {}",
        recs.len(),
        labels.len()
    );
    println!("\n| mail | n | result |\n|---|---:|---|");
    let spoof = of(&|c, _| c == "attack_spoof");
    println!(
        "| spoofs of established correspondents | {} | {} flagged, {} trusted |",
        spoof.len(),
        pct(count(&spoof, &flagged), spoof.len()),
        count(&spoof, &trusted)
    );
    for (cat, what) in [
        (
            "attack_lookalike",
            "lookalike domains of the enterprise and correspondents",
        ),
        (
            "attack_display_name",
            "display-name impersonation of employees",
        ),
        (
            "attack_compromised",
            "a correspondent's account taken over (authenticated)",
        ),
    ] {
        let v = of(&|c, _| c == cat);
        println!(
            "| {what} | {} | {} flagged |",
            v.len(),
            pct(count(&v, &flagged), v.len())
        );
    }
    let phish = of(&|c, _| c == "attack_phish");
    let first = of(&|c, _| c == "legit_first_contact");
    let score = |v: &[&serde_json::Value]| -> Vec<f64> {
        v.iter().filter_map(|r| combined_score(r)).collect()
    };
    let (ps, fs) = (score(&phish), score(&first));
    let pts: Vec<(f64, bool)> = fs
        .iter()
        .map(|s| (*s, true))
        .chain(ps.iter().map(|s| (*s, false)))
        .collect();
    println!(
        "| real phishing, first contact | {} | {} flagged; AUC vs legitimate first contact {}; {:.1} % caught at ≤ 1 % of legitimate first contact |",
        phish.len(),
        pct(count(&phish, &flagged), phish.len()),
        auc(&pts).map_or("n/a".into(), |a| format!("{a:.3}")),
        100.0 * tpr_at_fpr(&fs, &ps, 0.01)
    );
    println!(
        "| legitimate first contact | {} | {} flagged |",
        first.len(),
        pct(count(&first, &flagged), first.len())
    );
    let est = of(&|c, e| c.starts_with("legit") && e);
    println!(
        "| legitimate mail, ≥ 90 days of two-way history | {} | {} flagged, {} trusted |",
        est.len(),
        pct(count(&est, &flagged), est.len()),
        pct(count(&est, &trusted), est.len())
    );
    let legit = of(&|c, _| c.starts_with("legit"));
    println!(
        "| all legitimate inbound mail | {} | {} flagged |",
        legit.len(),
        pct(count(&legit, &flagged), legit.len())
    );
    println!("\nby category: n, flagged, trusted, top contributions of the flagged");
    let mut cats: Vec<&str> = recs.iter().map(|r| r.0.as_str()).collect();
    cats.sort();
    cats.dedup();
    for cat in cats {
        let v = of(&|c, _| c == cat);
        let mut why: BTreeMap<String, usize> = BTreeMap::new();
        for r in v.iter().filter(|r| flagged(r)) {
            for a in r["anomalies"].as_array().into_iter().flatten() {
                *why.entry(a["name"].as_str().unwrap_or("?").to_string())
                    .or_default() += 1;
            }
        }
        let mut why: Vec<(String, usize)> = why.into_iter().collect();
        why.sort_by_key(|w| std::cmp::Reverse(w.1));
        let why: Vec<String> = why
            .iter()
            .take(4)
            .map(|(n, c)| format!("{n} {c}"))
            .collect();
        println!(
            "  {cat:<26} {:>6} {:>8} {:>8}  {}",
            v.len(),
            pct(count(&v, &flagged), v.len()),
            pct(count(&v, &trusted), v.len()),
            why.join(", ")
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--synthetic") {
        let (Some(jsonl), Some(labels)) = (args.get(1), args.get(2)) else {
            eprintln!("usage: evaluate --synthetic OUT.jsonl LABELS.tsv");
            std::process::exit(64);
        };
        synthetic(jsonl, labels);
        return;
    }
    let (Some(jsonl), Some(labels)) = (args.first(), args.get(1)) else {
        eprintln!("usage: evaluate OUT.jsonl LABELS | evaluate --synthetic OUT.jsonl LABELS.tsv");
        std::process::exit(64);
    };
    let labels: HashMap<String, bool> = std::fs::read_to_string(labels)
        .expect("labels")
        .lines()
        .filter_map(|l| {
            let (label, path) = l.split_once(char::is_whitespace)?;
            Some((
                base_name(path.trim()).to_string(),
                label.eq_ignore_ascii_case("ham"),
            ))
        })
        .collect();
    let text = std::fs::read_to_string(jsonl).expect("jsonl");
    let (mut sender, mut mta, mut combined) = (Vec::new(), Vec::new(), Vec::new());
    let mut tables: BTreeMap<&str, BTreeMap<(String, bool), usize>> = BTreeMap::new();
    let (mut matched, mut errors) = (0usize, 0usize);
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if v.get("error").is_some_and(|e| !e.is_null()) {
            errors += 1;
            continue;
        }
        let Some(&is_ham) = v["source"].as_str().and_then(|s| labels.get(base_name(s))) else {
            continue;
        };
        matched += 1;
        let s = v["sender"]["score"].as_f64();
        let m = v["mta"]["score"].as_f64();
        if let Some(s) = s {
            sender.push((s, is_ham));
        }
        if let Some(m) = m {
            mta.push((m, is_ham));
        }
        if let Some(c) = combined_score(&v) {
            combined.push((c, is_ham));
        }
        for (name, key) in [("sender", "sender"), ("mta", "mta")] {
            let class = v[key]["class"].as_str().unwrap_or("none").to_string();
            *tables
                .entry(name)
                .or_default()
                .entry((class, is_ham))
                .or_default() += 1;
        }
    }
    let hams = sender.iter().filter(|p| p.1).count();
    println!(
        "{matched} labelled records ({hams} ham, {} spam), {errors} unreadable",
        matched - hams
    );
    for (name, pts) in [("sender", &sender), ("mta", &mta), ("combined", &combined)] {
        match auc(pts) {
            Some(a) => println!("ROC AUC {name:<9} {a:.3}  ({} scored)", pts.len()),
            None => println!("ROC AUC {name:<9} n/a"),
        }
    }
    for (name, t) in &tables {
        println!("\n{name} class     ham    spam");
        for class in [
            "trusted",
            "neutral",
            "unrated",
            "suspicious",
            "malicious",
            "none",
        ] {
            let h = t.get(&(class.to_string(), true)).copied().unwrap_or(0);
            let s = t.get(&(class.to_string(), false)).copied().unwrap_or(0);
            if h + s > 0 {
                println!("  {class:<11} {h:>6}  {s:>6}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn auc_of_perfect_random_and_inverted_rankings() {
        assert_eq!(super::auc(&[(1.0, false), (2.0, true)]), Some(1.0));
        assert_eq!(super::auc(&[(2.0, false), (1.0, true)]), Some(0.0));
        assert_eq!(super::auc(&[(1.0, false), (1.0, true)]), Some(0.5));
        assert_eq!(super::auc(&[(1.0, true)]), None);
    }
}
