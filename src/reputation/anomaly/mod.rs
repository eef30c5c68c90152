//! Anomalies: signals beside the eleven factors, each a named contribution
//! with its own weight in `[anomalies]`, shown in the header, the verdict
//! record and `explain`.
//!
//! - `auth_regression`: a sender with authenticated history arrives
//!   unauthenticated or failing (DNS trouble excepted), not through a relay
//!   we know (`path`); or a sender that never authenticates arrives from a
//!   network its mail was never answered from;
//! - `new_mta_for_sender`: a settled sender (enough authenticated — or, for
//!   one that never authenticates, answered-path — mail from few networks)
//!   arrives from an MTA and a /24 (/48) never seen for it, not through a
//!   relay;
//! - `lookalike_domain`: the From domain resembles an enterprise domain or a
//!   trusted correspondent's (edit distance, homoglyphs and punycode,
//!   swapped TLD, the real name with words added, the real domain used as a
//!   subdomain);
//! - `display_name_impersonation`: the display name is an enterprise
//!   person's (learned from outbound mail) or a trusted correspondent's, on
//!   another address (not when it goes to that person alone: an
//!   employee's home address writing to work), or it shows an enterprise
//!   address;
//! - `brand_impersonation`: the display name names a brand of
//!   `[anomalies] brands` ("PayPal", "Banco do Brasil"), sent from outside
//!   that brand's domains ([`brands`]);
//! - `reply_to_divergence`: Reply-To in another organisation than From
//!   (and than the envelope sender; never for list mail, whose Reply-To
//!   names the list, nor for a Reply-To that is the habit of a sender
//!   whose mail is answered or read, known for `volume_maturity_days`);
//! - `recipient_spray`: a sender the enterprise never wrote to or answered,
//!   with 2+ messages of history nearly each to a different person (distinct
//!   enterprise recipients ≥ 80 % of its messages), writes to yet another;
//! - `reply_to_diverted`: instead, when the sender is a correspondent (the
//!   enterprise wrote to it or answered it) and the Reply-To address has
//!   never been dealt with: replies would go to a stranger. From
//!   `reply_to_divergence` to `reply_to_diverted` as the relationship grows
//!   (the more it vouches, the more a diversion abuses it), and no trusted
//!   class for the message; `reply_to_freemail` beside it when that
//!   address is at a public mailbox provider and the sender's is not;
//! - first contact (an address with no history of its own, not ours):
//!   `first_contact_unauthenticated` (it fails authentication, not through
//!   a known relay) and `display_name_mismatch` (its display name shares no
//!   word with its address, as brand phishing's does); and what its
//!   message shows of how it was sent ([`first_contact_content`]):
//!   `undisclosed_recipients` (Bcc), `html_only`, `links_elsewhere`. They
//!   are weighed so that no one of the five, nor any two, makes a stranger
//!   suspicious, and most threes do: unauthenticated mail from lists,
//!   forwarders and small domains is not condemned by itself, nor a person
//!   whose address is a handle;
//! - the seed framework's heuristics: `hash_like_local_part`,
//!   `hash_like_display_name`, `suspicious_tld`, `long_domain`;
//! - `behaviour_change`: a settled sender (≥ `settled_messages`
//!   authenticated messages with recorded habits) sends authenticated mail
//!   in which two or more habits break at once — a network never used, a
//!   new mail client, a new DKIM selector, Reply-To to a new organisation
//!   ([`super::habits`]), mail to none of the enterprise people it has
//!   dealt with (its sender×recipient edges); `behaviour_change` points
//!   per broken habit, the detail names what broke;
//! - optional DNS checks: `sender_domain_without_mx`, `dnsbl_listed`.
//!
//! The identity anomalies (all but `auth_regression`, `new_mta_for_sender`,
//! `behaviour_change` and `dnsbl_listed`) weigh against the relationship of that exact
//! address: scaled by `1 - relationship`, where the relationship grows with
//! the messages the enterprise sent to or answered from it
//! (`relationship_cap`), when the message is authenticated or its path
//! vouched for (`path`). An employee's own home address, or a namesake the
//! enterprise corresponds with, is not an impersonator; for an address
//! without a relationship they count in full.

//!
//! Every anomaly is decided here: the store-backed checks, the heuristics
//! ([`heuristics`]), lookalikes ([`lookalike`]) and the answers of the
//! optional DNS checks that the milter looked up
//! ([`crate::message::DnsFacts`]).

mod brands;
mod connection;
mod heuristics;
mod lookalike;
mod names;

pub use brands::brand_named;
pub use connection::connection_anomalies;
pub use heuristics::{hash_like, heuristics, normalize_name};
pub use lookalike::{distance, skeleton, Protected};
pub use names::name_mismatch;

use super::factors::days_known;
use super::habits::{habits, reply_to_habit};
use super::path::{net_pair_key, PathTrust};
use super::rating::{from_enterprise, round1};
use super::Reputation;
use crate::auth::AuthResult;
use crate::config::{log_fraction, Config};
use crate::message::{mta_key, mta_net_key, normalize_envelope, AuthState, Message};
use crate::store::{pair_key, Counter, Kind, NameEntry, Record, SetKind, StoreError};
use crate::vocab::{clean_address, domain_of, org_domain, Class};
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

/// Anomalies about the path and the sender's behaviour, not the identity
/// claimed: never discounted by a relationship (a compromised partner's
/// account has one).
const UNWEIGHED_ANOMALIES: [&str; 6] = [
    "auth_regression",
    "new_mta_for_sender",
    "behaviour_change",
    "reply_to_diverted",
    "reply_to_freemail",
    "dnsbl_listed",
];

/// Messages of a sender's authenticated history before `recipient_spray`
/// judges how they spread.
const SPRAY_MIN_MESSAGES: u64 = 2;

/// How much the enterprise's own mail to this exact address vouches for
/// it: 0 (a stranger) to 1 (`relationship_cap` messages sent or answered).
pub fn relationship(rec: &Record, cap: f64) -> f64 {
    log_fraction(from_enterprise(rec) as f64, cap)
}

/// Messages of an address's own history, either way: none is a first
/// contact, or an address never dealt with.
fn own_history(rec: &Record) -> u64 {
    rec.count(Counter::MessagesReceived)
        + rec.count(Counter::UnauthMessagesReceived)
        + from_enterprise(rec)
}

/// What a first contact's message shows of how it was sent, each weak
/// alone (`[anomalies]` weighs them so that none, nor two, condemns a
/// stranger): the enterprise recipient is not among the To/Cc addresses
/// and it is not list mail (`undisclosed_recipients`: sent Bcc, as bulk
/// phishing is), an HTML body without a plain-text alternative
/// (`html_only`), and URLs that all point to organisations other than the
/// From's and the envelope sender's (`links_elsewhere`).
/// `ent` are the message's enterprise recipients.
pub fn first_contact_content(
    cfg: &Config,
    msg: &Message,
    sender: &str,
    ent: &[&String],
) -> Vec<Anomaly> {
    let ac = &cfg.anomalies;
    let mut out = Vec::new();
    if msg.list_id.is_none()
        && !ent.is_empty()
        && cfg.enterprise_recipients(&msg.addressed).is_empty()
    {
        let shown = if msg.addressed.is_empty() {
            "no To or Cc address".to_string()
        } else {
            format!("To/Cc: {}", msg.addressed[0])
        };
        out.push(Anomaly::new(
            "undisclosed_recipients",
            ac.undisclosed_recipients,
            shown,
        ));
    }
    if msg.html_only {
        out.push(Anomaly::new(
            "html_only",
            ac.html_only,
            "HTML without a plain-text part",
        ));
    }
    let own = [Some(sender), msg.envelope_from.as_deref()]
        .into_iter()
        .flatten()
        .map(|a| org_domain(domain_of(a)))
        .collect::<Vec<_>>();
    if !msg.link_orgs.is_empty() && msg.link_orgs.iter().all(|o| !own.contains(o)) {
        out.push(Anomaly::new(
            "links_elsewhere",
            ac.links_elsewhere,
            format!("links to {}", msg.link_orgs.join(", ")),
        ));
    }
    out
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
        path: PathTrust,
    ) -> Result<Vec<Anomaly>, StoreError> {
        let ac = &cfg.anomalies;
        let mut out = Vec::new();
        let domain = domain_of(sender);
        let ent = cfg.enterprise_recipients(&msg.recipients);
        // Mail to none of the enterprise people the sender has dealt with
        // (its sender×recipient edges: both directions feed the set).
        let to_new_people = || {
            !ent.is_empty()
                && ent
                    .iter()
                    .all(|r| rec.contains(SetKind::EnterpriseRecipients, r) == Some(false))
        };
        let own_domain = cfg.is_enterprise_domain(domain);
        let received = rec.count(Counter::MessagesReceived);
        let authenticated_history = received >= cfg.scoring.min_history;
        // A sender that never authenticates, with history on networks the
        // enterprise answered (path::PathTrust::Answered).
        let answered_history = !authenticated_history
            && rec.distinct(SetKind::MtaNetworks) > 0
            && rec.count(Counter::UnauthMessagesReceived) > 0;
        if msg.auth_state == AuthState::Fail && !path.is_indirect() {
            let detail = if own_domain {
                Some("the enterprise's own domain, unauthenticated".to_string())
            } else if authenticated_history {
                Some(format!("{received} authenticated messages before"))
            } else if answered_history && path == PathTrust::Unproven {
                Some("unauthenticated, from a network its mail was never answered from".into())
            } else {
                None
            };
            if let Some(detail) = detail {
                out.push(Anomaly::new("auth_regression", ac.auth_regression, detail));
            }
        }
        let mut new_network: Option<String> = None;
        if let (Some(ip), false) = (msg.client_ip, path.is_indirect()) {
            let networks = rec.distinct(SetKind::MtaNetworks);
            let history = if answered_history {
                rec.count(Counter::UnauthMessagesReceived)
            } else {
                received
            };
            let settled = history >= ac.settled_messages
                && networks > 0
                && networks <= ac.settled_max_networks;
            if settled {
                let (m, net) = (mta_key(ip), mta_net_key(ip));
                let seen = |r: &Record| {
                    r.count(Counter::MessagesReceived)
                        + r.count(Counter::UnauthMessagesReceived)
                        + r.count(Counter::RepliesSent)
                        > 0
                };
                let host = self.store.record(Kind::Pair, &pair_key(sender, &m))?;
                let netrec = self.store.record(Kind::Pair, &net_pair_key(sender, &net))?;
                if !seen(&host) && !seen(&netrec) {
                    new_network = Some(net.clone());
                    out.push(Anomaly::new(
                        "new_mta_for_sender",
                        ac.new_mta_for_sender,
                        format!("first mail from {net}"),
                    ));
                }
            }
        }
        // Behaviour change: a settled sender's habits break together.
        if msg.auth_state.builds_trust() && rec.count(Counter::Fingerprinted) >= ac.settled_messages
        {
            let mut broke: Vec<String> = new_network
                .iter()
                .map(|n| format!("first mail from {n}"))
                .collect();
            for h in habits(msg, sender) {
                if h.breaks(rec, SetKind::Fingerprint) {
                    let value = h.member.split_once(':').map_or("", |(_, v)| v);
                    broke.push(format!("new {} {value}", h.what));
                }
            }
            // Its recipients: the sender×recipient edges are the sender's
            // enterprise-recipient set (both directions feed it; learned
            // from the same `enterprise_recipients`). Mail to none of the
            // people it has dealt with is one more break.
            if rec.distinct(SetKind::EnterpriseRecipients) > 0 && to_new_people() {
                broke.push(format!("first mail to {}", ent[0]));
            }
            if broke.len() >= 2 {
                out.push(Anomaly::new(
                    "behaviour_change",
                    ac.behaviour_change * broke.len() as f64,
                    broke.join(", "),
                ));
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
                // A name shown only to its own owner deceives no one: an
                // employee's home address writing to their work address.
                let owner_key = self.store.address_key(&owner.address);
                let to_owner = owner.enterprise
                    && !ent.is_empty()
                    && ent.iter().all(|r| self.store.address_key(r) == owner_key);
                if self.store.address_key(sender) != owner_key && !to_owner {
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
        if let Some(brand) = msg
            .display_name
            .as_deref()
            .and_then(|n| brand_named(&ac.brands, n, sender))
        {
            out.push(Anomaly::new(
                "brand_impersonation",
                ac.brand_impersonation,
                format!("names {brand}, sent from {}", org_domain(domain)),
            ));
        }
        // A mailing list's Reply-To names the list, and a bulk sender's
        // its own envelope domain: neither diverges. Nor does a Reply-To
        // that is the habit of a sender whose mail is wanted (the enterprise
        // answered it, or its recipients read more of it than they left),
        // known for the days its history had to be contradicted
        // (`volume_maturity_days`). Persistence alone settles nothing: a
        // campaign can keep its Reply-To for days.
        let opened = rec.count(Counter::Opened);
        let wanted = from_enterprise(rec) > 0
            || (opened > 0 && opened > rec.net(Counter::NotOpened, Counter::LateOpened));
        let settled = wanted
            && days_known(rec, msg.time).is_some_and(|d| d >= cfg.scoring.volume_maturity_days);
        let reply_to = msg.reply_to.as_deref().filter(|r| {
            let org = org_domain(domain_of(r));
            msg.list_id.is_none()
                && msg
                    .envelope_from
                    .as_deref()
                    .is_none_or(|e| org_domain(domain_of(e)) != org)
                && !(settled
                    && rec.contains(SetKind::Fingerprint, &reply_to_habit(&org)) == Some(true))
        });
        // A correspondent whose replies would go to a stranger: the
        // relationship vouches for the From address, not for where the
        // answer goes (a taken-over account diverting a conversation). It
        // replaces the plain divergence, and weighs more the more the
        // relationship would vouch: from `reply_to_divergence` for a
        // stranger to `reply_to_diverted` for a full relationship.
        let vouched = if path != PathTrust::Unproven {
            relationship(rec, ac.relationship_cap)
        } else {
            0.0
        };
        let diverted = match reply_to {
            Some(r) if org_domain(domain_of(r)) != org_domain(domain) && vouched > 0.0 => {
                let key = normalize_envelope(r, &cfg.recipient_delimiter);
                let target = self
                    .store
                    .record(Kind::Sender, key.as_deref().unwrap_or(r))?;
                (own_history(&target) == 0).then_some(r)
            }
            _ => None,
        };
        if let Some(r) = diverted {
            let points =
                ac.reply_to_divergence + vouched * (ac.reply_to_diverted - ac.reply_to_divergence);
            out.push(Anomaly::new(
                "reply_to_diverted",
                round1(points),
                format!("replies to {r}, never dealt with (relationship x{vouched:.2})"),
            ));
            // To a free mailbox, from an organisation's address: the
            // business e-mail compromise's own move.
            let mailbox = domain_of(r);
            if cfg.scoring.is_freemail(mailbox) && !cfg.scoring.is_freemail(domain) {
                out.push(Anomaly::new(
                    "reply_to_freemail",
                    ac.reply_to_freemail,
                    format!("{mailbox} is a public mailbox provider"),
                ));
            }
        }
        out.extend(heuristics(
            ac,
            sender,
            msg.display_name.as_deref(),
            reply_to.filter(|_| diverted.is_none()),
        ));
        // Every message to someone new, and no one ever answered: a sender
        // working through the enterprise's people one by one.
        let reached = rec.distinct(SetKind::EnterpriseRecipients);
        if !own_domain
            && from_enterprise(rec) == 0
            && received >= SPRAY_MIN_MESSAGES
            && reached * 5 >= received * 4
            && to_new_people()
        {
            out.push(Anomaly::new(
                "recipient_spray",
                ac.recipient_spray,
                format!(
                    "{received} messages to {reached} people, none answered; now {}",
                    ent[0]
                ),
            ));
        }
        // First contact: an address with no history of its own.
        let first_contact = own_history(rec) == 0;
        if first_contact && !own_domain {
            if msg.auth_state == AuthState::Fail && !path.is_indirect() {
                let dmarc_failed = msg
                    .auth
                    .as_ref()
                    .is_some_and(|s| s.dmarc == AuthResult::Fail);
                out.push(Anomaly::new(
                    "first_contact_unauthenticated",
                    ac.first_contact_unauthenticated,
                    if dmarc_failed {
                        "dmarc fail"
                    } else {
                        "no aligned SPF or DKIM pass"
                    },
                ));
            }
            if let Some(name) = msg
                .display_name
                .as_deref()
                .filter(|n| name_mismatch(n, sender))
            {
                out.push(Anomaly::new(
                    "display_name_mismatch",
                    ac.display_name_mismatch,
                    format!(
                        "\"{}\" for {sender}",
                        name.chars().take(60).collect::<String>()
                    ),
                ));
            }
            out.extend(first_contact_content(cfg, msg, sender, &ent));
        }
        if msg.dns.sender_domain_accepts_mail == Some(false) {
            out.push(Anomaly::new(
                "sender_domain_without_mx",
                ac.sender_domain_without_mx,
                format!("{domain} has no MX or A record"),
            ));
        }
        if let Some(reg) = msg.dns.domain_registered {
            let days = msg.time.saturating_sub(reg) / 86_400;
            if days < ac.young_domain_days {
                out.push(Anomaly::new(
                    "young_domain",
                    ac.young_domain,
                    format!("{} registered {days} days before", org_domain(domain)),
                ));
            }
        }
        if let Some(zone) = &msg.dns.dnsbl_listed {
            out.push(Anomaly::new("dnsbl_listed", ac.dnsbl_listed, zone.clone()));
        }
        // The identity anomalies weigh against the address's own
        // relationship with the enterprise — when the message proves it is
        // that address, or came on a path that vouches for it (`path`); for
        // a stranger, or an unproven claim, they count in full.
        if vouched > 0.0 {
            let sent = from_enterprise(rec);
            for an in out
                .iter_mut()
                .filter(|a| !UNWEIGHED_ANOMALIES.contains(&a.name))
            {
                an.points = round1(an.points * (1.0 - vouched));
                an.detail = format!(
                    "{}; weighed by {sent} messages from the enterprise (x{:.2})",
                    an.detail,
                    1.0 - vouched
                );
            }
            out.retain(|a| a.points != 0.0 || UNWEIGHED_ANOMALIES.contains(&a.name));
        }
        Ok(out)
    }
}
