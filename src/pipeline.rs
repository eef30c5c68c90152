//! The shared path of every message: identity → rating → (policy) → learning.
//!
//! The milter and `replay` both describe a message as a [`Message`] and call
//! [`Engine::assess`] then [`Engine::learn`], with the clock given by the
//! caller (wall clock live, the mail's own time in replay). Ratings are
//! computed *before* the message is learned, so a message never vouches for
//! itself.
//!
//! What a message teaches:
//! - inbound: the sender, its domain, the MTA and the sender×MTA pair count
//!   one more message; the enterprise recipients join the distinct sets; if
//!   it answers an outbound message (In-Reply-To/References names one whose
//!   recipients include this sender or its domain), `replies_received` moves
//!   for the sender, domain and MTA;
//! - outbound: each outside recipient (and its domain) counts
//!   `messages_sent`, with the internal author in its enterprise
//!   recipients; if it answers inbound messages, each of their senders
//!   counts one `replies_sent`;
//! - both: the Message-ID goes into the message index.
//!
//! `days_known` runs from the first interaction in either direction.

use crate::config::Config;
use crate::identity::{domain_of, mta_key, Direction};
use crate::overrides::OverrideTable;
use crate::rating::{self, Rating};
use crate::record::{Counter, Record, SetKind};
use crate::store::{pair_key, IndexEntry, Kind, ReputationStore, StoreError, Update};
use serde::Serialize;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};

/// Recipients remembered per message-index entry.
const MAX_INDEXED_RECIPIENTS: usize = 64;
/// References looked up per message (long threads carry dozens).
const MAX_REFERENCES: usize = 20;

/// What is known of one message when it is rated.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Message {
    pub time: u64,
    pub queue_id: String,
    pub direction: Option<Direction>,
    pub client_ip: Option<IpAddr>,
    pub helo: String,
    /// Normalised envelope sender (None for the null sender `<>`).
    pub envelope_from: Option<String>,
    /// `From:` address, lower-cased.
    pub header_from: Option<String>,
    /// Normalised envelope recipients.
    pub recipients: Vec<String>,
    pub message_id: Option<String>,
    /// Identifiers from In-Reply-To and References, nearest first.
    pub references: Vec<String>,
    pub has_attachment: bool,
    pub has_url: bool,
}

impl Message {
    /// The sender key: `From:`, else the envelope sender.
    pub fn sender_key(&self) -> Option<&str> {
        self.header_from
            .as_deref()
            .or(self.envelope_from.as_deref())
    }

    pub fn direction(&self) -> Direction {
        self.direction.unwrap_or(Direction::Inbound)
    }
}

/// The ratings of a message, before it is learned.
#[derive(Clone, Debug, Default)]
pub struct Assessment {
    pub sender: Option<Rating>,
    pub mta: Option<Rating>,
    /// Inbound: the outbound message this one answers.
    pub answers_outbound: Option<IndexEntry>,
    /// Outbound: the senders of the inbound messages this one answers.
    pub answers_inbound: Vec<String>,
}

/// Ratings and learning over one store, with the overrides in force.
pub struct Engine {
    store: Arc<dyn ReputationStore>,
    overrides: RwLock<Arc<OverrideTable>>,
}

impl Engine {
    pub fn new(store: Arc<dyn ReputationStore>, cfg: &Config) -> Result<Engine, StoreError> {
        let table = OverrideTable::new(store.overrides()?, &cfg.lists);
        Ok(Engine {
            store,
            overrides: RwLock::new(Arc::new(table)),
        })
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

    pub fn rate_mta(&self, cfg: &Config, ip: IpAddr, now: u64) -> Result<Rating, StoreError> {
        let key = mta_key(ip);
        let rec = self.store.record(Kind::Mta, &key)?;
        let mut r = rating::rate_mta(&key, &rec, now, &cfg.scoring);
        r.apply_override(self.overrides().for_ip(ip), &cfg.scoring);
        Ok(r)
    }

    pub fn rate_sender(&self, cfg: &Config, addr: &str, now: u64) -> Result<Rating, StoreError> {
        let rec = self.store.record(Kind::Sender, addr)?;
        let dom = self.store.record(Kind::Domain, domain_of(addr))?;
        let mut r = rating::rate_sender(addr, &rec, &dom, now, &cfg.scoring);
        r.apply_override(self.overrides().for_sender(addr), &cfg.scoring);
        Ok(r)
    }

    pub fn rate_domain(&self, cfg: &Config, domain: &str, now: u64) -> Result<Rating, StoreError> {
        let rec = self.store.record(Kind::Domain, domain)?;
        let mut r = rating::rate_domain(domain, &rec, now, &cfg.scoring);
        r.apply_override(self.overrides().for_domain(domain), &cfg.scoring);
        Ok(r)
    }

    /// Rates a complete message as it stands before it is learned.
    pub fn assess(&self, cfg: &Config, msg: &Message) -> Result<Assessment, StoreError> {
        let mut a = Assessment::default();
        let refs = msg.references.iter().take(MAX_REFERENCES);
        match msg.direction() {
            Direction::Inbound => {
                if let Some(s) = msg.sender_key() {
                    a.sender = Some(self.rate_sender(cfg, s, msg.time)?);
                    let sender_domain = domain_of(s);
                    for id in refs {
                        if let Some(e) = self.store.message(id)? {
                            let addressed = e
                                .recipients
                                .iter()
                                .any(|r| r == s || domain_of(r) == sender_domain);
                            if e.direction == Direction::Outbound && addressed {
                                a.answers_outbound = Some(e);
                                break;
                            }
                        }
                    }
                }
                if let Some(ip) = msg.client_ip {
                    a.mta = Some(self.rate_mta(cfg, ip, msg.time)?);
                }
            }
            Direction::Outbound => {
                for id in refs {
                    if let Some(e) = self.store.message(id)? {
                        if e.direction == Direction::Inbound
                            && !a.answers_inbound.contains(&e.sender)
                        {
                            a.answers_inbound.push(e.sender);
                        }
                    }
                }
            }
        }
        Ok(a)
    }

    /// Everything `msg` teaches, as one atomic update.
    pub fn update_for(&self, cfg: &Config, msg: &Message, a: &Assessment) -> Update {
        let mut u = Update::default();
        let t = msg.time;
        match msg.direction() {
            Direction::Inbound => {
                let Some(sender) = msg.sender_key() else {
                    return u;
                };
                let domain = domain_of(sender).to_string();
                let ent: Vec<&String> = msg
                    .recipients
                    .iter()
                    .filter(|r| {
                        cfg.enterprise_domains.is_empty() || cfg.is_enterprise_domain(domain_of(r))
                    })
                    .collect();
                let replied = a.answers_outbound.is_some();
                let mut delta = Record::seen_at(t);
                delta.add(Counter::MessagesReceived, 1);
                if replied {
                    delta.add(Counter::RepliesReceived, 1);
                }
                for r in &ent {
                    delta.insert(SetKind::EnterpriseRecipients, r);
                }
                let mut dom_delta = delta.clone();
                dom_delta.insert(SetKind::Senders, sender);
                u.records.push((Kind::Sender, sender.to_string(), delta));
                u.records.push((Kind::Domain, domain.clone(), dom_delta));
                let mta = msg.client_ip.map(mta_key);
                if let Some(m) = &mta {
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
                    u.records.push((Kind::Mta, m.clone(), md));
                    let mut pd = Record::seen_at(t);
                    pd.add(Counter::MessagesReceived, 1);
                    u.records.push((Kind::Pair, pair_key(sender, m), pd));
                }
                if let Some(id) = &msg.message_id {
                    u.messages.push((
                        id.clone(),
                        IndexEntry {
                            time: t,
                            direction: Direction::Inbound,
                            sender: sender.to_string(),
                            mta,
                            recipients: ent
                                .iter()
                                .take(MAX_INDEXED_RECIPIENTS)
                                .map(|s| s.to_string())
                                .collect(),
                            has_attachment: msg.has_attachment,
                            has_url: msg.has_url,
                        },
                    ));
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
                for s in &a.answers_inbound {
                    let mut d = Record::seen_at(t);
                    d.add(Counter::RepliesSent, 1);
                    let dom = domain_of(s);
                    if !answered_domains.contains(&dom) {
                        answered_domains.push(dom);
                        u.records.push((Kind::Domain, dom.to_string(), d.clone()));
                    }
                    u.records.push((Kind::Sender, s.clone(), d));
                }
                if let (Some(id), false) = (&msg.message_id, outside.is_empty()) {
                    u.messages.push((
                        id.clone(),
                        IndexEntry {
                            time: t,
                            direction: Direction::Outbound,
                            sender: author.to_string(),
                            mta: None,
                            recipients: outside
                                .iter()
                                .take(MAX_INDEXED_RECIPIENTS)
                                .map(|s| s.to_string())
                                .collect(),
                            has_attachment: msg.has_attachment,
                            has_url: msg.has_url,
                        },
                    ));
                }
            }
        }
        u
    }

    pub fn learn(&self, cfg: &Config, msg: &Message, a: &Assessment) -> Result<(), StoreError> {
        self.store.apply(&self.update_for(cfg, msg, a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::RocksStore;

    fn setup() -> (tempfile::TempDir, Engine, Config) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(RocksStore::open(dir.path(), 90 * 86400).unwrap());
        let mut cfg = Config {
            enterprise_domains: vec!["example.com".into()],
            ..Config::default()
        };
        cfg.validate().unwrap();
        let engine = Engine::new(store, &cfg).unwrap();
        (dir, engine, cfg)
    }

    fn run(e: &Engine, cfg: &Config, m: &Message) -> Assessment {
        let a = e.assess(cfg, m).unwrap();
        e.learn(cfg, m, &a).unwrap();
        a
    }

    const T: u64 = 1_800_000_000;

    fn inbound(from: &str, id: &str, refs: &[&str]) -> Message {
        Message {
            time: T,
            direction: Some(Direction::Inbound),
            client_ip: Some("192.0.2.10".parse().unwrap()),
            helo: "mx.partner.example".into(),
            envelope_from: Some(from.into()),
            header_from: Some(from.into()),
            recipients: vec!["alice@example.com".into()],
            message_id: Some(id.into()),
            references: refs.iter().map(|s| s.to_string()).collect(),
            ..Message::default()
        }
    }

    fn outbound(to: &str, id: &str, refs: &[&str]) -> Message {
        Message {
            time: T,
            direction: Some(Direction::Outbound),
            client_ip: Some("10.0.0.5".parse().unwrap()),
            envelope_from: Some("alice@example.com".into()),
            header_from: Some("alice@example.com".into()),
            recipients: vec![to.into(), "bob@example.com".into()],
            message_id: Some(id.into()),
            references: refs.iter().map(|s| s.to_string()).collect(),
            ..Message::default()
        }
    }

    fn count(e: &Engine, kind: Kind, key: &str, c: Counter) -> u64 {
        e.store().record(kind, key).unwrap().count(c)
    }

    #[test]
    fn outbound_then_reply_moves_the_bidirectional_factors() {
        let (_d, e, cfg) = setup();
        run(
            &e,
            &cfg,
            &outbound("carol@partner.example", "out1@example.com", &[]),
        );
        assert_eq!(
            count(
                &e,
                Kind::Sender,
                "carol@partner.example",
                Counter::MessagesSent
            ),
            1
        );
        assert_eq!(
            count(&e, Kind::Sender, "bob@example.com", Counter::MessagesSent),
            0,
            "internal recipients are not correspondents"
        );

        let a = run(
            &e,
            &cfg,
            &inbound(
                "carol@partner.example",
                "in1@partner.example",
                &["out1@example.com"],
            ),
        );
        assert!(a.answers_outbound.is_some());
        assert_eq!(
            count(
                &e,
                Kind::Sender,
                "carol@partner.example",
                Counter::RepliesReceived
            ),
            1
        );
        assert_eq!(
            count(&e, Kind::Mta, "192.0.2.10", Counter::RepliesReceived),
            1
        );
        assert_eq!(
            count(
                &e,
                Kind::Domain,
                "partner.example",
                Counter::RepliesReceived
            ),
            1
        );

        run(
            &e,
            &cfg,
            &outbound(
                "carol@partner.example",
                "out2@example.com",
                &["in1@partner.example", "out1@example.com"],
            ),
        );
        assert_eq!(
            count(
                &e,
                Kind::Sender,
                "carol@partner.example",
                Counter::RepliesSent
            ),
            1
        );
        assert_eq!(
            count(
                &e,
                Kind::Sender,
                "carol@partner.example",
                Counter::MessagesSent
            ),
            2
        );
    }

    #[test]
    fn a_reply_from_someone_not_addressed_is_not_a_reply() {
        let (_d, e, cfg) = setup();
        run(
            &e,
            &cfg,
            &outbound("carol@partner.example", "out1@example.com", &[]),
        );
        let a = run(
            &e,
            &cfg,
            &inbound(
                "mallory@evil.example",
                "in1@evil.example",
                &["out1@example.com"],
            ),
        );
        assert!(a.answers_outbound.is_none());
        assert_eq!(
            count(
                &e,
                Kind::Sender,
                "mallory@evil.example",
                Counter::RepliesReceived
            ),
            0
        );
    }

    #[test]
    fn inbound_mail_moves_the_mta_factors() {
        let (_d, e, cfg) = setup();
        run(&e, &cfg, &inbound("a@one.example", "1@x", &[]));
        let mut m = inbound("b@two.example", "2@x", &[]);
        m.recipients = vec![
            "carol@example.com".into(),
            "someone@elsewhere.example".into(),
        ];
        run(&e, &cfg, &m);
        let r = e
            .rate_mta(&cfg, "192.0.2.10".parse().unwrap(), T + 86400)
            .unwrap();
        let v = |n: &str| r.factor(n).unwrap().value.unwrap();
        assert_eq!(v("messages_received"), 2.0);
        assert_eq!(v("sender_domains"), 2.0);
        assert_eq!(
            v("enterprise_recipients"),
            2.0,
            "the outside recipient does not count"
        );
        assert_eq!(v("days_known"), 1.0);
        let pair = e
            .store()
            .record(Kind::Pair, &pair_key("a@one.example", "192.0.2.10"))
            .unwrap();
        assert_eq!(pair.count(Counter::MessagesReceived), 1);
    }

    #[test]
    fn ratings_are_taken_before_the_message_is_learned() {
        let (_d, e, cfg) = setup();
        let a = run(&e, &cfg, &inbound("a@one.example", "1@x", &[]));
        assert_eq!(
            a.sender.unwrap().factor("messages_received").unwrap().value,
            Some(0.0)
        );
        let a = run(&e, &cfg, &inbound("a@one.example", "2@x", &[]));
        assert_eq!(
            a.sender.unwrap().factor("messages_received").unwrap().value,
            Some(1.0)
        );
    }
}
