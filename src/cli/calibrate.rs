//! `sra-milter calibrate`: the factors' weights fitted to the
//! site's feedback (`pipeline::calibrate`), proposed, never applied.
//!
//! Feedback per inbound verdict record, first that applies: a `--labels`
//! line; the message reported as junk (the store's message index); an
//! override of its sender or domain (suspicious or malicious: bad;
//! trusted: good); a sender the enterprise has answered (good).

use super::{load, Common};
use sra_milter::config::Overrides;
use sra_milter::journal::{self, Read};
use sra_milter::pipeline::calibrate::{calibrate, Labelled};
use sra_milter::reputation::Reputation;
use sra_milter::store::{Counter, Kind};
use sra_milter::vocab::{now, Class, Span};
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

pub struct Options {
    pub since: Span,
    pub records: Vec<PathBuf>,
    pub labels: Option<PathBuf>,
    pub held_out: f64,
    pub json: bool,
}

fn fail(msg: String) -> ExitCode {
    eprintln!("sra-milter: {msg}");
    ExitCode::FAILURE
}

/// `{"message_id": ..., "label": "bad" | "good"}` lines.
fn read_labels(path: &PathBuf) -> Result<HashMap<String, bool>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = HashMap::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let v: serde_json::Value = serde_json::from_str(line)
            .map_err(|e| format!("{} line {}: {e}", path.display(), i + 1))?;
        let (Some(id), Some(label)) = (v["message_id"].as_str(), v["label"].as_str()) else {
            return Err(format!(
                "{} line {}: needs message_id and label",
                path.display(),
                i + 1
            ));
        };
        let bad = match label {
            "bad" => true,
            "good" => false,
            other => {
                return Err(format!(
                    "{} line {}: label {other:?} is not bad or good",
                    path.display(),
                    i + 1
                ))
            }
        };
        out.insert(id.trim_matches(|c| c == '<' || c == '>').to_string(), bad);
    }
    Ok(out)
}

pub fn main(common: &Common, o: Options) -> ExitCode {
    let cfg = match load(common, Overrides::default()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let read = if o.records.is_empty() {
        let dir = journal::dir(&cfg.state_dir);
        match journal::read_since(&dir, now().saturating_sub(o.since.0.as_secs())) {
            Ok(r) => r,
            Err(e) => return fail(format!("the journal {}: {e}", dir.display())),
        }
    } else {
        let mut r = Read::default();
        for p in &o.records {
            let f = match std::fs::File::open(p) {
                Ok(f) => f,
                Err(e) => return fail(format!("{}: {e}", p.display())),
            };
            if let Err(e) = journal::read_lines(std::io::BufReader::new(f), 0, &mut r) {
                return fail(format!("{}: {e}", p.display()));
            }
        }
        r
    };
    let given = match o.labels.as_ref().map(read_labels).transpose() {
        Ok(l) => l.unwrap_or_default(),
        Err(e) => return fail(e),
    };
    let store = match sra_milter::store::open_read_only(&cfg) {
        Ok(s) => s,
        Err(e) => {
            return fail(format!(
                "cannot open the store {}: {e}",
                cfg.store_location()
            ))
        }
    };
    let rep = match Reputation::new(store.clone(), &cfg) {
        Ok(r) => r,
        Err(e) => return fail(e.to_string()),
    };
    let overrides = rep.overrides();
    let mut data = Vec::new();
    for rec in read.records.iter().filter(|r| r["direction"] == "inbound") {
        let (Some(sender), Some(id)) = (rec["sender"]["key"].as_str(), rec["message_id"].as_str())
        else {
            continue;
        };
        let label = match given.get(id) {
            Some(b) => Some(*b),
            None => {
                let junk = store.message(id).ok().flatten().is_some_and(|e| e.junk);
                let fixed = overrides
                    .for_sender(sender, &store.address_key(sender))
                    .map(|o| o.class);
                if junk || matches!(fixed, Some(Class::Suspicious | Class::Malicious)) {
                    Some(true)
                } else if fixed == Some(Class::Trusted)
                    || store
                        .record(Kind::Sender, sender)
                        .is_ok_and(|r| r.count(Counter::RepliesSent) > 0)
                {
                    Some(false)
                } else {
                    None
                }
            }
        };
        if let Some(bad) = label {
            data.push(Labelled { record: rec, bad });
        }
    }
    let c = calibrate(&cfg, &data, o.held_out);
    if o.json {
        match serde_json::to_string_pretty(&c) {
            Ok(s) => println!("{s}"),
            Err(e) => return fail(e.to_string()),
        }
    } else {
        print!("{}", c.text());
    }
    ExitCode::SUCCESS
}
