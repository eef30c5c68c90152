//! `explain`: a rating with every factor and contribution, the record's
//! first and last sighting, and (for a sender) its domain and the MTAs its
//! mail came through. It opens the store read-only, so it works beside the
//! running daemon.

use super::Engine;
use crate::config::Config;
use crate::message::mta_key;
use crate::reputation::Rating;
use crate::store::{Counter, Kind, StoreError};
use crate::vocab::{clean_address, domain_of};
use std::net::IpAddr;

pub enum Subject {
    Sender(String),
    Domain(String),
    Mta(IpAddr),
}

#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    #[error("{0}")]
    Input(String),
    #[error("cannot open the store {path}: {source}")]
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

/// Opens the store `cfg` names (RocksDB read-only) and explains `subject`.
#[cfg(all(feature = "rocksdb", feature = "redis"))]
pub fn explain(cfg: &Config, subject: &Subject, now: u64) -> Result<Explained, ExplainError> {
    let path = cfg.store_location();
    // RocksDB read-only, beside the running daemon; Redis is shared anyway.
    let store = crate::store::open_read_only(cfg).map_err(|source| ExplainError::Store {
        path: path.clone(),
        source,
    })?;
    let err = |source| ExplainError::Store {
        path: path.clone(),
        source,
    };
    let engine = Engine::new(store, cfg).map_err(err)?;
    explain_with(&engine, cfg, subject, now).map_err(|e| match e {
        ExplainError::Store { source, .. } => err(source),
        other => other,
    })
}

/// `explain` over an engine already open (the daemon's, for the console).
pub fn explain_with(
    engine: &Engine,
    cfg: &Config,
    subject: &Subject,
    now: u64,
) -> Result<Explained, ExplainError> {
    let store = engine.store();
    let err = |source| ExplainError::Store {
        path: cfg.store_location(),
        source,
    };
    let mut mtas = Vec::new();
    let (rating, rec, domain) = match subject {
        Subject::Sender(a) => {
            let a = clean_address(a)
                .ok_or_else(|| ExplainError::Input(format!("{a:?} is not an email address")))?;
            let r = engine.rate_sender(cfg, &a, now).map_err(err)?;
            let rec = store.record(Kind::Sender, &a).map_err(err)?;
            let d = engine.rate_domain(cfg, domain_of(&a), now).map_err(err)?;
            mtas = store
                .pairs_of(&a, 1000)
                .map_err(err)?
                .into_iter()
                .map(|(k, r)| (k, r.count(Counter::MessagesReceived), r.last_seen))
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
