//! `sra-milter explain`: a rating with every factor and contribution, as a
//! table for people or JSON for scripts. It opens the store read-only, so
//! it works beside the running daemon.

use crate::config::Config;
use crate::identity::{clean_address, mta_key};
use crate::pipeline::Engine;
use crate::rating::Rating;
use crate::store::{Kind, ReputationStore, RocksStore, StoreError};
use crate::verdict::{rating_json, rfc3339};
use serde_json::json;
use std::net::IpAddr;
use std::sync::Arc;

pub enum Subject {
    Sender(String),
    Domain(String),
    Mta(IpAddr),
}

#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    #[error("{0}")]
    Input(String),
    #[error("cannot open the store at {path}: {source}")]
    Store { path: String, source: StoreError },
}

pub struct Explained {
    pub rating: Rating,
    pub first_seen: u64,
    pub last_seen: u64,
    pub label: String,
    /// The sender's domain rating (sender subject only).
    pub domain: Option<Rating>,
    /// The MTAs and networks the sender's authenticated mail came through,
    /// most used first: (key, messages, last seen).
    pub mtas: Vec<(String, u64, u64)>,
}

pub fn explain(cfg: &Config, subject: &Subject, now: u64) -> Result<Explained, ExplainError> {
    let path = cfg.state_dir.display().to_string();
    let store = RocksStore::open_read_only(&cfg.state_dir, cfg.message_index_ttl.0.as_secs())
        .map_err(|source| ExplainError::Store {
            path: path.clone(),
            source,
        })?;
    let store: Arc<dyn ReputationStore> = Arc::new(store);
    let err = |source| ExplainError::Store {
        path: path.clone(),
        source,
    };
    let engine = Engine::new(store.clone(), cfg).map_err(err)?;
    let mut mtas = Vec::new();
    let (rating, rec, domain) = match subject {
        Subject::Sender(a) => {
            let a = clean_address(a)
                .ok_or_else(|| ExplainError::Input(format!("{a:?} is not an email address")))?;
            let r = engine.rate_sender(cfg, &a, now).map_err(err)?;
            let rec = store.record(Kind::Sender, &a).map_err(err)?;
            let d = engine
                .rate_domain(cfg, crate::identity::domain_of(&a), now)
                .map_err(err)?;
            mtas = store
                .pairs_of(&a, 1000)
                .map_err(err)?
                .into_iter()
                .map(|(k, r)| {
                    (
                        k,
                        r.count(crate::record::Counter::MessagesReceived),
                        r.last_seen,
                    )
                })
                .collect();
            mtas.sort_by(|x, y| y.1.cmp(&x.1).then(x.0.cmp(&y.0)));
            mtas.truncate(20);
            (r, rec, Some(d))
        }
        Subject::Domain(d) => {
            let d = d.trim().trim_end_matches('.').to_ascii_lowercase();
            let r = engine.rate_domain(cfg, &d, now).map_err(err)?;
            let rec = store.record(Kind::Domain, &d).map_err(err)?;
            (r, rec, None)
        }
        Subject::Mta(ip) => {
            let r = engine.rate_mta(cfg, *ip, now).map_err(err)?;
            let rec = store.record(Kind::Mta, &mta_key(*ip)).map_err(err)?;
            (r, rec, None)
        }
    };
    Ok(Explained {
        rating,
        first_seen: rec.first_seen,
        last_seen: rec.last_seen,
        label: rec.label,
        domain,
        mtas,
    })
}

pub fn to_json(e: &Explained) -> serde_json::Value {
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

pub fn to_text(e: &Explained) -> String {
    use std::fmt::Write;
    let r = &e.rating;
    let mut s = String::new();
    let subject = match r.subject {
        crate::rating::Subject::Sender => "sender",
        crate::rating::Subject::Domain => "domain",
        crate::rating::Subject::Mta => "mta",
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
