//! How far the path of an unauthenticated message is believed.
//!
//! Unauthenticated mail claiming a known sender is either a spoof or the
//! real sender on a path that breaks authentication: a mailing list, a
//! forwarder, or a small domain that publishes neither DKIM nor DMARC.
//! They differ in more than the authentication result — in the MTA, what
//! the path has carried before, and whether the enterprise ever answered
//! mail that came that way — and are weighed accordingly:
//!
//! - [`PathTrust::Indirect`]: the MTA is a relay that carries mail of many
//!   sender domains to us (`RELAY_DOMAINS`, or `SETTLED_RELAY_DOMAINS` once
//!   it has done so for `SETTLED_RELAY_DAYS`) *and* the message shows it was
//!   relayed: ARC passed at our MX, it carries `List-Id:`, or the From
//!   domain's own DKIM signature broke in transit. The sender keeps three
//!   quarters of its positive history (`unauthenticated_indirect` withholds
//!   `INDIRECT_SHARE`) and no regression or new-MTA
//!   anomaly is raised: the MTA is the relay's, not the sender's. A spoofer
//!   would have to send through a relay that already carries our mail. A
//!   relayed message through an MTA not (yet) known as a relay is
//!   `Indirect` too when it answers mail the enterprise sent to that very
//!   address: the thread's identifiers, not the relay, vouch for it.
//! - [`PathTrust::Answered`]: a sender that has never authenticated (too
//!   little authenticated history of its own) arrives from a network from
//!   which the enterprise has answered its mail before: the history stands.
//!   Answering is the enterprise's act; an attacker cannot cause it from
//!   another network. So is a message that answers mail the enterprise
//!   sent to that very address (In-Reply-To/References name it): the
//!   thread's identifiers are known to its correspondents only.
//! - [`PathTrust::Unproven`]: anything else — the claim to the address gets
//!   none of its history (`unauthenticated`).

use super::Reputation;
use crate::auth::AuthResult;
use crate::config::Config;
use crate::message::{mta_key, mta_net_key, AuthState, Message};
use crate::store::{pair_key, Counter, IndexEntry, Kind, Record, SetKind, StoreError};
use crate::vocab::{domain_of, org_domain, Direction};
use std::net::IpAddr;

/// Distinct sender domains an MTA must have carried to us to count as a
/// relay (a list server or a forwarder).
pub const RELAY_DOMAINS: u64 = 5;

/// A relay known this long (days) counts with fewer domains: a small
/// mailing list or a personal forwarder carries few of our correspondents,
/// and weeks of them are what an attacker cannot fake in a hurry.
pub const SETTLED_RELAY_DAYS: u64 = 21;
/// Distinct sender domains of a relay known `SETTLED_RELAY_DAYS`.
pub const SETTLED_RELAY_DOMAINS: u64 = 3;

/// Whether an MTA's record (at `now`) is that of a relay.
pub fn is_relay(mta: &Record, now: u64) -> bool {
    let domains = mta.distinct(SetKind::SenderDomains);
    let days = now.saturating_sub(mta.first_seen) / 86400;
    domains >= RELAY_DOMAINS
        || (mta.first_seen != 0 && days >= SETTLED_RELAY_DAYS && domains >= SETTLED_RELAY_DOMAINS)
}

/// Thread identifiers (In-Reply-To, References) looked up per message
/// (long threads carry dozens).
pub const MAX_REFERENCES: usize = 20;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PathTrust {
    /// Authenticated, or not verified at all: the history is the sender's.
    #[default]
    Full,
    /// Relayed by a list or forwarder we know (why).
    Indirect(&'static str),
    /// A never-authenticating sender on a network the enterprise answered,
    /// or answering mail the enterprise sent to it.
    Answered,
    /// Nothing vouches for the claim.
    Unproven,
}

impl PathTrust {
    pub fn is_indirect(self) -> bool {
        matches!(self, PathTrust::Indirect(_))
    }

    /// May the message count towards the sender's path history?
    pub fn vouched(self) -> bool {
        matches!(self, PathTrust::Full | PathTrust::Answered)
    }
}

/// A network's key (`net:192.0.2.0/24`): in the MTA family, the
/// network's own record; in a pair, a sender's mail from that network.
fn net_key(net: &str) -> String {
    format!("net:{net}")
}

/// The MTA-family key of an MTA's network (/24, /48).
pub fn mta_network_key(ip: IpAddr) -> String {
    net_key(&mta_net_key(ip))
}

/// The pair key of a sender and an MTA's network.
pub fn net_pair_key(sender: &str, net: &str) -> String {
    pair_key(sender, &net_key(net))
}

/// The network (/24, /48) of an MTA key (an address, or an IPv6 /64).
pub fn net_of_mta_key(key: &str) -> Option<String> {
    let ip = key.split('/').next()?.parse().ok()?;
    Some(mta_net_key(ip))
}

impl Reputation {
    /// The nearest outbound message of the thread `msg` answers (its
    /// In-Reply-To, then References) that was sent to whom `addressed`
    /// accepts.
    pub fn answered_outbound(
        &self,
        msg: &Message,
        addressed: impl Fn(&IndexEntry) -> bool,
    ) -> Result<Option<IndexEntry>, StoreError> {
        for id in msg.references.iter().take(MAX_REFERENCES) {
            if let Some(e) = self.store.message(id)? {
                if e.direction == Direction::Outbound && addressed(&e) {
                    return Ok(Some(e));
                }
            }
        }
        Ok(None)
    }

    /// How far the path of `msg`, claiming `sender` (history `rec`), is
    /// believed.
    pub fn path_trust(
        &self,
        cfg: &Config,
        msg: &Message,
        sender: &str,
        rec: &Record,
    ) -> Result<PathTrust, StoreError> {
        if msg.auth_state.builds_trust() {
            return Ok(PathTrust::Full);
        }
        let Some(ip) = msg.client_ip else {
            return Ok(PathTrust::Unproven);
        };
        // Whether the message answers mail the enterprise sent to `sender`,
        // once looked up.
        let mut answered: Option<bool> = None;
        if msg.auth_state == AuthState::Fail {
            let from_org = org_domain(domain_of(sender));
            let auth = msg.auth.as_ref();
            let sign = if auth.is_some_and(|s| s.arc == AuthResult::Pass) {
                Some("arc pass")
            } else if msg.list_id.is_some() {
                Some("mailing list")
            } else if auth.is_some_and(|s| {
                s.dkim
                    .iter()
                    .any(|d| d.result == AuthResult::Fail && org_domain(&d.domain) == from_org)
            }) {
                Some("forwarded, its DKIM signature broken")
            } else {
                None
            };
            if let Some(why) = sign {
                let mta = self.store.record(Kind::Mta, &mta_key(ip))?;
                if is_relay(&mta, msg.time) {
                    return Ok(PathTrust::Indirect(why));
                }
                // A forwarder not known as one yet (an alumni or personal
                // forwarding service): believed when the message answers
                // mail the enterprise sent to this very address.
                let answers = self.answers_mail_to(msg, sender)?;
                if answers {
                    return Ok(PathTrust::Indirect(
                        "relayed, answering the enterprise's mail",
                    ));
                }
                answered = Some(answers);
            }
        }
        if rec.count(Counter::MessagesReceived) < cfg.scoring.min_history {
            let pair = self
                .store
                .record(Kind::Pair, &net_pair_key(sender, &mta_net_key(ip)))?;
            // The thread is looked up once: above, or here.
            if pair.count(Counter::RepliesSent) > 0
                || answered.map_or_else(|| self.answers_mail_to(msg, sender), Ok)?
            {
                return Ok(PathTrust::Answered);
            }
        }
        Ok(PathTrust::Unproven)
    }

    /// Whether `msg` answers mail the enterprise sent to `sender` itself
    /// (In-Reply-To/References name it): a thread's identifiers are known
    /// only to its correspondents.
    fn answers_mail_to(&self, msg: &Message, sender: &str) -> Result<bool, StoreError> {
        let stored = self.store.address_key(sender);
        Ok(self
            .answered_outbound(msg, |e| {
                e.recipients
                    .iter()
                    .any(|r| self.store.address_key(r) == stored)
            })?
            .is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relay_carries_many_domains_or_a_few_for_weeks() {
        let now = 100 * 86400;
        let relay = |days: u64, domains: u64| {
            let mut r = Record::seen_at(now - days * 86400);
            for i in 0..domains {
                r.insert(SetKind::SenderDomains, &format!("d{i}.example"));
            }
            is_relay(&r, now)
        };
        assert!(relay(1, 5));
        assert!(!relay(1, 4));
        assert!(!relay(20, 4));
        assert!(relay(21, 3));
        assert!(!relay(60, 2));
        assert!(!is_relay(&Record::default(), now));
    }

    #[test]
    fn networks_of_mta_keys() {
        assert_eq!(net_of_mta_key("192.0.2.7").as_deref(), Some("192.0.2.0/24"));
        assert_eq!(
            net_of_mta_key("2001:db8:1:2::/64").as_deref(),
            Some("2001:db8:1::/48")
        );
        assert_eq!(net_of_mta_key("not an address"), None);
    }
}
