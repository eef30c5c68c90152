//! How well do the prequential ratings separate ham from spam?
//!
//!     sra-milter replay -c CONFIG --jsonl OUT.jsonl CORPUS...
//!     cargo run --example evaluate -- OUT.jsonl LABELS
//!
//! LABELS has one `ham|spam PATH` line per message (TREC's `index`); a
//! record is matched to its label by the file name of its `source`. Prints
//! the ROC AUC of the sender, MTA and combined scores (ham should score
//! higher; combined = the mean of the two), and the class × label tables.
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

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(jsonl), Some(labels)) = (args.first(), args.get(1)) else {
        eprintln!("usage: evaluate OUT.jsonl LABELS");
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
        let both: Vec<f64> = [s, m].into_iter().flatten().collect();
        if !both.is_empty() {
            combined.push((both.iter().sum::<f64>() / both.len() as f64, is_ham));
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
