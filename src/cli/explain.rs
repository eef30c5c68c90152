//! `sra-milter explain`: a rating with every factor and contribution, as a
//! table for people or JSON for scripts.

use super::{load, Common, Who};
use serde_json::json;
use sra_milter::config::Overrides;
use sra_milter::pipeline::explain::{explain, Explained, Subject};
use sra_milter::reputation::Subject as RatingSubject;
use sra_milter::verdict::rating_json;
use sra_milter::vocab::{now, rfc3339};
use std::net::IpAddr;
use std::process::ExitCode;

pub fn main(common: &Common, who: Who, json: bool) -> ExitCode {
    let cfg = match load(common, Overrides::default()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let subject = match (who.sender, who.domain, who.mta) {
        (Some(s), _, _) => Subject::Sender(s),
        (_, Some(d), _) => Subject::Domain(d),
        (_, _, Some(m)) => match m.parse::<IpAddr>() {
            Ok(ip) => Subject::Mta(ip),
            Err(_) => {
                eprintln!("sra-milter: {m:?} is not an IP address");
                return ExitCode::from(64);
            }
        },
        _ => return ExitCode::from(64),
    };
    match explain(&cfg, &subject, now()) {
        Ok(e) if json => {
            println!(
                "{}",
                serde_json::to_string_pretty(&to_json(&e)).unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Ok(e) => {
            print!("{}", to_text(&e));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sra-milter: {e}");
            ExitCode::FAILURE
        }
    }
}

fn to_json(e: &Explained) -> serde_json::Value {
    let mut v = rating_json(&e.rating);
    v["subject"] = json!(e.rating.subject);
    v["first_seen"] = if e.first_seen == 0 {
        json!(null)
    } else {
        json!(rfc3339(e.first_seen))
    };
    v["last_seen"] = if e.last_seen == 0 {
        json!(null)
    } else {
        json!(rfc3339(e.last_seen))
    };
    if !e.label.is_empty() {
        v["helo"] = json!(e.label);
    }
    if let Some(d) = &e.domain {
        v["domain"] = rating_json(d);
        v["mtas"] = e
            .mtas
            .iter()
            .map(|(k, n, t)| json!({ "mta": k, "messages": n, "last_seen": rfc3339(*t) }))
            .collect();
    }
    v
}

fn to_text(e: &Explained) -> String {
    use std::fmt::Write;
    let r = &e.rating;
    let mut s = String::new();
    let subject = match r.subject {
        RatingSubject::Sender => "sender",
        RatingSubject::Domain => "domain",
        RatingSubject::Mta => "mta",
    };
    let _ = writeln!(s, "{subject} {}: {} (score {:.1})", r.key, r.class, r.score);
    if e.first_seen != 0 {
        let _ = writeln!(
            s,
            "  first seen {}, last seen {}",
            rfc3339(e.first_seen),
            rfc3339(e.last_seen)
        );
    } else {
        let _ = writeln!(s, "  never seen");
    }
    if !e.label.is_empty() {
        let _ = writeln!(s, "  helo {}", e.label);
    }
    let _ = writeln!(
        s,
        "  history {} message(s); enterprise participation: {}",
        r.history,
        if r.bidirectional { "yes" } else { "no" }
    );
    let _ = writeln!(s, "  {:<28} {:>12} {:>12}", "factor", "value", "points");
    for f in &r.factors {
        let value = f.value.map_or("no data".to_string(), |v| format!("{v}"));
        let _ = writeln!(
            s,
            "  {:<28} {:>12} {:>+12.1}",
            f.name, value, f.contribution
        );
    }
    for c in &r.extra {
        let _ = writeln!(s, "  {:<28} {:>12} {:>+12.1}", c.name, "", c.points);
    }
    if let Some(b) = &r.backed_by {
        let _ = writeln!(s, "  backed by {b}");
    }
    if let Some(o) = &r.override_ {
        let _ = writeln!(
            s,
            "  override: {} is {} ({}{})",
            o.target,
            o.class,
            o.source,
            if o.reason.is_empty() {
                String::new()
            } else {
                format!(": {}", o.reason)
            }
        );
    }
    if let Some(d) = &e.domain {
        let _ = writeln!(s, "  domain {}: {} (score {:.1})", d.key, d.class, d.score);
    }
    for (k, n, t) in &e.mtas {
        let _ = writeln!(s, "  via {k}: {n} message(s), last {}", rfc3339(*t));
    }
    s
}
