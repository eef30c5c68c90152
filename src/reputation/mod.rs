//! Reputation: what the store's history says of a sender, a sender domain
//! or an MTA — the factors, the score and the class ([`rating`],
//! [`factors`]), the administrator's overrides ([`overrides`]), and every
//! anomaly ([`anomaly`]), all as named contributions.
//!
//! To add a factor: its counter in `store::Counter`, its weight in
//! `config::scoring`, its value and points in [`factors`]. To add an
//! anomaly: its weight in `config::anomalies`, its check in [`anomaly`].

pub mod anomaly;
pub mod factors;
pub mod habits;
pub mod overrides;
pub mod path;
pub mod rating;

pub use anomaly::{Anomaly, Protected};
pub use overrides::OverrideTable;
pub use path::{mta_network_key, PathTrust};
pub use rating::{
    classify, rate_domain, rate_mta, rate_sender, Contribution, Factor, Rating, Subject,
};

use crate::config::Config;
use crate::message::{mta_key, AuthState, Message};
use crate::store::{Counter, Kind, NameEntry, Record, ReputationStore, StoreError};
use crate::vocab::{domain_of, Class};
use std::net::IpAddr;
use std::sync::{Arc, RwLock};

/// The share of a sender's positive history withheld from a message that
/// a known relay carried unauthenticated (`path::PathTrust::Indirect`).
pub const INDIRECT_SHARE: f64 = 0.25;

/// Ratings over one store, with the overrides in force and the domains
/// lookalikes are checked against.
pub struct Reputation {
    store: Arc<dyn ReputationStore>,
    overrides: RwLock<Arc<OverrideTable>>,
    protected: RwLock<Arc<Protected>>,
}

impl Reputation {
    pub fn new(store: Arc<dyn ReputationStore>, cfg: &Config) -> Result<Reputation, StoreError> {
        let table = OverrideTable::new(store.overrides()?, &cfg.lists);
        let engine = Reputation {
            store,
            overrides: RwLock::new(Arc::new(table)),
            protected: RwLock::new(Arc::new(Protected::new(
                cfg.enterprise_domains.iter().map(String::as_str),
            ))),
        };
        Ok(engine)
    }

    /// The same ratings over `store` (a stage's snapshot of this one's
    /// store): the overrides and protected domains in force now.
    pub fn view(&self, store: Arc<dyn ReputationStore>) -> Reputation {
        Reputation {
            store,
            overrides: RwLock::new(self.overrides()),
            protected: RwLock::new(self.protected()),
        }
    }

    pub fn store(&self) -> &Arc<dyn ReputationStore> {
        &self.store
    }

    /// Re-reads the overrides (after `override` or a config reload).
    pub fn reload_overrides(&self, cfg: &Config) -> Result<(), StoreError> {
        let table = OverrideTable::new(self.store.overrides()?, &cfg.lists);
        if let Ok(mut g) = self.overrides.write() {
            *g = Arc::new(table);
        }
        Ok(())
    }

    pub fn overrides(&self) -> Arc<OverrideTable> {
        self.overrides.read().map(|g| g.clone()).unwrap_or_default()
    }

    /// Rebuilds the set of domains lookalikes are checked against: the
    /// enterprise's, and every correspondent's — a domain the enterprise
    /// has written to that is not rated suspicious or worse — except the
    /// public mailbox providers. A scan of the sender-domain family; the
    /// daemon runs it at start and periodically, replay every mail day.
    pub fn refresh_protected(&self, cfg: &Config, now: u64) -> Result<usize, StoreError> {
        let mut domains: Vec<String> = cfg.enterprise_domains.clone();
        self.store.scan(Kind::Domain, &mut |key, rec| {
            if rating::from_enterprise(rec) > 0
                && !cfg.scoring.is_freemail(key)
                && rate_domain(key, rec, now, &cfg.scoring).class < Class::Suspicious
            {
                domains.push(key.to_string());
            }
        })?;
        let p = Protected::new(domains.iter().map(String::as_str));
        let n = p.len();
        if let Ok(mut g) = self.protected.write() {
            *g = Arc::new(p);
        }
        Ok(n)
    }

    pub fn protected(&self) -> Arc<Protected> {
        self.protected.read().map(|g| g.clone()).unwrap_or_default()
    }

    /// Rates an MTA. A new one (too little history of its own) in a
    /// network (/24, /48) with history is backed by the network, as a new
    /// address is by its domain: `network_reputation` adds
    /// `domain_backing × (network score − base)`, and the network's history
    /// counts towards `min_history`. A provider's new outbound host starts
    /// where its neighbours stand; a host in a network never seen starts
    /// from nothing.
    pub fn rate_mta(&self, cfg: &Config, ip: IpAddr, now: u64) -> Result<Rating, StoreError> {
        let key = mta_key(ip);
        let rec = self.store.record(Kind::Mta, &key)?;
        let mut r = rate_mta(&key, &rec, now, &cfg.scoring);
        if r.history < cfg.scoring.min_history {
            let net_key = mta_network_key(ip);
            let net = self.store.record(Kind::Mta, &net_key)?;
            if net.count(Counter::MessagesReceived) >= cfg.scoring.min_history {
                let n = rate_mta(&net_key, &net, now, &cfg.scoring);
                r.back_by(&n, net_key, "network_reputation", &cfg.scoring);
            }
        }
        r.apply_override(self.overrides().for_ip(ip), &cfg.scoring);
        Ok(r)
    }

    pub fn rate_sender_record(
        &self,
        cfg: &Config,
        addr: &str,
        rec: &Record,
        now: u64,
    ) -> Result<Rating, StoreError> {
        let dom = self.store.record(Kind::Domain, domain_of(addr))?;
        let mut r = rate_sender(addr, rec, &dom, now, &cfg.scoring);
        let stored = self.store.address_key(addr);
        r.apply_override(self.overrides().for_sender(addr, &stored), &cfg.scoring);
        Ok(r)
    }

    pub fn rate_sender(&self, cfg: &Config, addr: &str, now: u64) -> Result<Rating, StoreError> {
        self.rate_sender_and_record(cfg, addr, now).map(|(r, _)| r)
    }

    /// A sender's rating and the record it was made from (the RCPT stage
    /// asks it which recipients the sender has dealt with).
    pub fn rate_sender_and_record(
        &self,
        cfg: &Config,
        addr: &str,
        now: u64,
    ) -> Result<(Rating, Record), StoreError> {
        let rec = self.store.record(Kind::Sender, addr)?;
        let r = self.rate_sender_record(cfg, addr, &rec, now)?;
        Ok((r, rec))
    }

    pub fn rate_domain(&self, cfg: &Config, domain: &str, now: u64) -> Result<Rating, StoreError> {
        let rec = self.store.record(Kind::Domain, domain)?;
        let mut r = rate_domain(domain, &rec, now, &cfg.scoring);
        r.apply_override(self.overrides().for_domain(domain), &cfg.scoring);
        Ok(r)
    }

    /// The sender of an inbound message, rated as it stands before it is
    /// learned, with its anomalies and how far its path is believed
    /// ([`path`]). `name` is the display name's key and its owner.
    pub fn rate_inbound_sender(
        &self,
        cfg: &Config,
        msg: &Message,
        sender: &str,
        name: &Option<(String, Option<NameEntry>)>,
    ) -> Result<InboundSender, StoreError> {
        let rec = self.store.record(Kind::Sender, sender)?;
        let mut r = self.rate_sender_record(cfg, sender, &rec, msg.time)?;
        let path = self.path_trust(cfg, msg, sender, &rec)?;
        // The history belongs to the proven sender: an unproven claim to
        // the address gets none of it, a relayed one most.
        let (share, label) = match path {
            PathTrust::Full | PathTrust::Answered => (0.0, ""),
            PathTrust::Indirect(_) => (INDIRECT_SHARE, "unauthenticated_indirect"),
            PathTrust::Unproven => (1.0, "unauthenticated"),
        };
        if share > 0.0 {
            let positive: f64 = r
                .factors
                .iter()
                .map(|f| f.contribution)
                .chain(r.extra.iter().map(|c| c.points))
                .filter(|p| *p > 0.0)
                .sum();
            if positive > 0.0 {
                r.add(label, -positive * share, &cfg.scoring);
            }
        }
        let anomalies = self.anomalies(cfg, msg, sender, &rec, name, path)?;
        for an in &anomalies {
            r.add(an.name, an.points, &cfg.scoring);
        }
        // Trust is for the sender as the enterprise knows it; a message
        // whose habits broke is not that, whatever the history's weight.
        if let Some(a) = anomalies
            .iter()
            .find(|a| matches!(a.name, "behaviour_change" | "reply_to_diverted"))
        {
            r.withhold_trust(a.name, &cfg.scoring);
        }
        Ok(InboundSender {
            rating: r,
            anomalies,
            path,
        })
    }
}

/// One score for a message, from its sender's and its MTA's ratings: the
/// MTA's score moved by the sender's difference from `base`. An identity
/// taken as given (`AuthState::Unverified`: verification off, no trusted
/// upstream) proves nothing, so its positive history is left out and only
/// what counts against it moves the score. Ranks messages (evaluation, the
/// verdict record's `score`); the classes, not this score, drive the
/// policy.
pub fn combined_score(
    sender: Option<&Rating>,
    mta: Option<&Rating>,
    auth: AuthState,
    base: f64,
) -> Option<f64> {
    let dev = sender.map(|s| {
        let d = s.score - base;
        if auth == AuthState::Unverified {
            d.min(0.0)
        } else {
            d
        }
    });
    let score = match (mta, dev) {
        (Some(m), Some(d)) => m.score + d,
        (Some(m), None) => m.score,
        (None, Some(d)) => base + d,
        (None, None) => return None,
    };
    Some(rating::round1(score.clamp(0.0, 100.0)))
}

/// The rated sender of an inbound message.
pub struct InboundSender {
    pub rating: Rating,
    pub anomalies: Vec<Anomaly>,
    pub path: PathTrust,
}
