//! Anomalies: signals beside the eleven factors, each a named contribution
//! with its own weight in `[anomalies]`, shown in the header, the verdict
//! record and `explain`.
//!
//! - `auth_regression`: a sender with authenticated history arrives
//!   unauthenticated or failing (DNS trouble excepted);
//! - `new_mta_for_sender`: a settled sender (enough authenticated mail from
//!   few networks) arrives from an MTA and a /24 (/48) never seen for it;
//! - `lookalike_domain`: the From domain resembles an enterprise domain or a
//!   trusted correspondent's (edit distance, homoglyphs and punycode,
//!   swapped TLD, the real name with words added, the real domain used as a
//!   subdomain);
//! - `display_name_impersonation`: the display name is an enterprise
//!   person's (learned from outbound mail) or a trusted correspondent's, on
//!   another address, or it shows an enterprise address;
//! - `reply_to_divergence`: Reply-To in another organisation than From;
//! - the seed framework's heuristics: `hash_like_local_part`,
//!   `hash_like_display_name`, `suspicious_tld`, `long_domain`;
//! - optional DNS checks: `sender_domain_without_mx`, `dnsbl_listed`.

//!
//! Every anomaly is decided here: the store-backed checks, the heuristics
//! ([`heuristics`]), lookalikes ([`lookalike`]) and the answers of the
//! optional DNS checks that the milter looked up
//! ([`crate::message::DnsFacts`]).

mod heuristics;
mod lookalike;

pub use heuristics::{hash_like, heuristics, normalize_name};
pub use lookalike::{distance, skeleton, Protected};

use super::Reputation;
use crate::config::Config;
use crate::message::{mta_key, mta_net_key, AuthState, Message};
use crate::store::{pair_key, Counter, Kind, NameEntry, Record, SetKind, StoreError};
use crate::vocab::{clean_address, domain_of, Class};
use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Anomaly {
    pub name: &'static str,
    pub points: f64,
    pub detail: String,
}

impl Anomaly {
    pub fn new(name: &'static str, points: f64, detail: impl Into<String>) -> Anomaly {
        Anomaly {
            name,
            points,
            detail: detail.into(),
        }
    }
}

impl Reputation {
    /// The anomalies of an inbound message that need the store.
    pub fn anomalies(
        &self,
        cfg: &Config,
        msg: &Message,
        sender: &str,
        rec: &Record,
        name: &Option<(String, Option<NameEntry>)>,
    ) -> Result<Vec<Anomaly>, StoreError> {
        let ac = &cfg.anomalies;
        let mut out = Vec::new();
        let domain = domain_of(sender);
        let own_domain = cfg.is_enterprise_domain(domain);
        let authenticated_history = rec.count(Counter::MessagesReceived) >= cfg.scoring.min_history;
        if msg.auth_state == AuthState::Fail && (authenticated_history || own_domain) {
            let detail = if own_domain {
                "the enterprise's own domain, unauthenticated".to_string()
            } else {
                format!(
                    "{} authenticated messages before",
                    rec.count(Counter::MessagesReceived)
                )
            };
            out.push(Anomaly::new("auth_regression", ac.auth_regression, detail));
        }
        if let Some(ip) = msg.client_ip {
            let networks = rec.distinct(SetKind::MtaNetworks);
            let settled = rec.count(Counter::MessagesReceived) >= ac.settled_messages
                && networks > 0
                && networks <= ac.settled_max_networks;
            if settled {
                let (m, net) = (mta_key(ip), mta_net_key(ip));
                let seen_host = self.store.record(Kind::Pair, &pair_key(sender, &m))?;
                let seen_net = self
                    .store
                    .record(Kind::Pair, &pair_key(sender, &format!("net:{net}")))?;
                if seen_host.count(Counter::MessagesReceived) == 0
                    && seen_net.count(Counter::MessagesReceived) == 0
                {
                    out.push(Anomaly::new(
                        "new_mta_for_sender",
                        ac.new_mta_for_sender,
                        format!("first mail from {net}"),
                    ));
                }
            }
        }
        if let Some(why) = self.protected().lookalike(domain) {
            out.push(Anomaly::new("lookalike_domain", ac.lookalike_domain, why));
        }
        if let Some(dn) = &msg.display_name {
            let shown = clean_address(dn.trim_matches(|c| c == '"' || c == '\'' || c == ' '));
            if let Some(a) = shown.filter(|a| a != sender && cfg.is_enterprise_domain(domain_of(a)))
            {
                out.push(Anomaly::new(
                    "display_name_impersonation",
                    ac.display_name_impersonation,
                    format!("shows {a}"),
                ));
            } else if let Some((_, Some(owner))) = name {
                if owner.address != sender {
                    let impersonated = owner.enterprise
                        || self.rate_sender(cfg, &owner.address, msg.time)?.class == Class::Trusted;
                    if impersonated {
                        out.push(Anomaly::new(
                            "display_name_impersonation",
                            ac.display_name_impersonation,
                            format!("name of {}", owner.address),
                        ));
                    }
                }
            }
        }
        out.extend(heuristics(
            ac,
            sender,
            msg.display_name.as_deref(),
            msg.reply_to.as_deref(),
        ));
        if msg.dns.sender_domain_accepts_mail == Some(false) {
            out.push(Anomaly::new(
                "sender_domain_without_mx",
                ac.sender_domain_without_mx,
                format!("{domain} has no MX or A record"),
            ));
        }
        if let Some(zone) = &msg.dns.dnsbl_listed {
            out.push(Anomaly::new("dnsbl_listed", ac.dnsbl_listed, zone.clone()));
        }
        Ok(out)
    }
}
