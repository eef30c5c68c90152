//! What a message teaches, as one atomic store update.

use super::{Assessment, Engine};
use crate::config::Config;
use crate::message::{mta_key, mta_net_key, Message};
use crate::reputation::habits::{habits, is_hour_of_week};
use crate::reputation::path::{net_of_mta_key, net_pair_key};
use crate::reputation::{mta_network_key, PathTrust};
use crate::store::{
    engagement_key, pair_key, Counter, IndexEntry, Kind, NameEntry, Record, SetKind, StoreError,
    Update,
};
use crate::vocab::{domain_of, Direction};

/// Recipients remembered per message-index entry.
const MAX_INDEXED_RECIPIENTS: usize = 64;

impl Engine {
    /// Everything `msg` teaches, as one atomic update.
    pub fn update_for(&self, cfg: &Config, msg: &Message, a: &Assessment) -> Update {
        let mut u = Update::default();
        let t = msg.time;
        match msg.direction() {
            Direction::Inbound => {
                let Some(sender) = msg.sender_key() else {
                    return u;
                };
                let trusted = msg.auth_state.builds_trust();
                let domain = domain_of(sender).to_string();
                let ent = cfg.enterprise_recipients(&msg.recipients);
                let replied = trusted && a.answers_outbound.is_some();
                // Unauthenticated mail of a sender that never authenticates,
                // on a network the enterprise answered: path history.
                let answered = a.path == PathTrust::Answered;
                let delta = if trusted {
                    let mut d = Record::seen_at(t);
                    d.add(Counter::MessagesReceived, 1);
                    if replied {
                        d.add(Counter::RepliesReceived, 1);
                    }
                    for r in &ent {
                        d.insert(SetKind::EnterpriseRecipients, r);
                    }
                    d
                } else {
                    let mut d = Record::touched_at(t);
                    d.add(Counter::UnauthMessagesReceived, 1);
                    d
                };
                let mut dom_delta = delta.clone();
                dom_delta.insert(SetKind::Senders, sender);
                let mut sender_delta = delta;
                // Habits a message broke (behaviour change), or a Reply-To
                // that diverts answers to a stranger, are not learned from
                // it: they wait in its index entry until the enterprise
                // answers it, so a taken-over account does not teach its
                // own habits by sending.
                let broke = a
                    .anomalies
                    .iter()
                    .any(|x| matches!(x.name, "behaviour_change" | "reply_to_diverted"));
                let mut withheld: Vec<String> = Vec::new();
                if trusted {
                    for h in habits(msg, sender) {
                        if broke {
                            withheld.push(h.member);
                        } else {
                            if is_hour_of_week(&h.member) {
                                sender_delta.add(Counter::Timed, 1);
                            }
                            sender_delta.insert(SetKind::Fingerprint, &h.member);
                        }
                    }
                    if !broke {
                        sender_delta.add(Counter::Fingerprinted, 1);
                    }
                }
                let mta = msg.client_ip.map(mta_key);
                if let (Some(ip), true) = (msg.client_ip, trusted || answered) {
                    sender_delta.insert(SetKind::MtaNetworks, &mta_net_key(ip));
                }
                u.records
                    .push((Kind::Sender, sender.to_string(), sender_delta));
                u.records.push((Kind::Domain, domain.clone(), dom_delta));
                if let (Some(m), Some(ip)) = (&mta, msg.client_ip) {
                    // The MTA is identified by its IP address, which TCP
                    // authenticates: it learns from every message.
                    let mut md = Record::seen_at(t);
                    md.label = msg.helo.chars().take(255).collect();
                    md.add(Counter::MessagesReceived, 1)
                        .insert(SetKind::SenderDomains, &domain);
                    if replied {
                        md.add(Counter::RepliesReceived, 1);
                    }
                    for r in &ent {
                        md.insert(SetKind::EnterpriseRecipients, r);
                    }
                    // Its network too, which backs a new MTA there.
                    u.records.push((Kind::Mta, mta_network_key(ip), md.clone()));
                    u.records.push((Kind::Mta, m.clone(), md));
                    if trusted || answered {
                        let counter = if trusted {
                            Counter::MessagesReceived
                        } else {
                            Counter::UnauthMessagesReceived
                        };
                        for key in [pair_key(sender, m), net_pair_key(sender, &mta_net_key(ip))] {
                            let mut pd = Record::seen_at(t);
                            pd.add(counter, 1);
                            u.records.push((Kind::Pair, key, pd));
                        }
                    }
                }
                if let (true, Some((key, None))) = (trusted, &a.name) {
                    u.names.push((
                        key.clone(),
                        NameEntry {
                            address: sender.to_string(),
                            enterprise: false,
                        },
                    ));
                }
                if let Some(id) = &msg.message_id {
                    // Awaits an open, or the grace period (engagement).
                    u.engagement_add.push(engagement_key(t, id));
                    let mut entry = index_entry(msg, Direction::Inbound, sender, mta, &ent);
                    entry.net = msg.client_ip.map(mta_net_key);
                    entry.habits = withheld;
                    u.messages.push((id.clone(), entry));
                }
            }
            Direction::Outbound => {
                let author = msg.sender_key().unwrap_or("");
                let outside: Vec<&String> = msg
                    .recipients
                    .iter()
                    .filter(|r| !cfg.is_enterprise_domain(domain_of(r)))
                    .collect();
                let mut domains: Vec<&str> = Vec::new();
                for r in &outside {
                    let mut d = Record::seen_at(t);
                    d.add(Counter::MessagesSent, 1);
                    if !author.is_empty() {
                        d.insert(SetKind::EnterpriseRecipients, author);
                    }
                    let dom = domain_of(r);
                    if !domains.contains(&dom) {
                        domains.push(dom);
                        u.records.push((Kind::Domain, dom.to_string(), d.clone()));
                    }
                    u.records.push((Kind::Sender, r.to_string(), d));
                }
                let mut answered_domains: Vec<&str> = Vec::new();
                let mut answered_senders: Vec<&str> = Vec::new();
                for answered in &a.answers_inbound {
                    let (s, mta) = (&answered.sender, &answered.mta);
                    let mut d = Record::seen_at(t);
                    d.add(Counter::RepliesSent, 1);
                    // The enterprise answered mail that came this way: the
                    // path is vouched for (reputation::path).
                    let net = answered
                        .net
                        .clone()
                        .or_else(|| mta.as_deref().and_then(net_of_mta_key));
                    if let Some(net) = net {
                        let mut pd = Record::touched_at(t);
                        pd.add(Counter::RepliesSent, 1);
                        u.records.push((Kind::Pair, net_pair_key(s, &net), pd));
                    }
                    if answered_senders.contains(&s.as_str()) {
                        continue;
                    }
                    answered_senders.push(s);
                    let dom = domain_of(s);
                    if !answered_domains.contains(&dom) {
                        answered_domains.push(dom);
                        u.records.push((Kind::Domain, dom.to_string(), d.clone()));
                    }
                    u.records.push((Kind::Sender, s.clone(), d));
                }
                for answered in a.answers_inbound.iter().filter(|e| !e.habits.is_empty()) {
                    let mut d = Record::touched_at(t);
                    for m in &answered.habits {
                        d.insert(SetKind::Fingerprint, m);
                    }
                    d.add(Counter::Fingerprinted, 1);
                    if answered.habits.iter().any(|m| is_hour_of_week(m)) {
                        d.add(Counter::Timed, 1);
                    }
                    u.records.push((Kind::Sender, answered.sender.clone(), d));
                }
                // The enterprise's people, by the names they sign with.
                if let (Some((key, owner)), false) = (&a.name, author.is_empty()) {
                    let entry = NameEntry {
                        address: author.to_string(),
                        enterprise: true,
                    };
                    let store = self.store();
                    let same = owner.as_ref().is_some_and(|o| {
                        o.enterprise && store.address_key(&o.address) == store.address_key(author)
                    });
                    if !same {
                        u.names.push((key.clone(), entry));
                    }
                }
                if let (Some(id), false) = (&msg.message_id, outside.is_empty()) {
                    u.messages.push((
                        id.clone(),
                        index_entry(msg, Direction::Outbound, author, None, &outside),
                    ));
                }
            }
        }
        u
    }

    pub fn learn(&self, cfg: &Config, msg: &Message, a: &Assessment) -> Result<(), StoreError> {
        self.store().apply(&self.update_for(cfg, msg, a))
    }
}

/// What the message index remembers of `msg`: its author, MTA and the
/// recipients on the other side (enterprise ones for inbound mail, outside
/// ones for outbound), for reply and open matching.
fn index_entry(
    msg: &Message,
    direction: Direction,
    sender: &str,
    mta: Option<String>,
    recipients: &[&String],
) -> IndexEntry {
    IndexEntry {
        time: msg.time,
        direction,
        sender: sender.to_string(),
        mta,
        net: None,
        recipients: recipients
            .iter()
            .take(MAX_INDEXED_RECIPIENTS)
            .map(|s| s.to_string())
            .collect(),
        has_attachment: msg.has_attachment,
        has_url: msg.has_url,
        opened: false,
        junk: false,
        not_opened_counted: false,
        habits: Vec::new(),
    }
}
