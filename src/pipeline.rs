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
//!
//! Authentication (see `auth`): only messages whose identity is
//! authenticated (or not verified at all) add to the counters that build
//! trust. Unauthenticated mail claiming a sender counts apart
//! (`UnauthMessagesReceived`), and the message itself is rated without
//! the sender's positive history (`unauthenticated` contribution), so a
//! spoofer can neither inherit nor build the real sender's trust.

use crate::anomaly::{self, Anomaly, Protected};
use crate::auth::AuthSummary;
use crate::config::Config;
use crate::identity::{domain_of, mta_key, mta_net_key, Direction};
use crate::overrides::OverrideTable;
use crate::rating::{self, Class, Rating};
use crate::record::{Counter, Record, SetKind};
use crate::store::{pair_key, IndexEntry, Kind, NameEntry, ReputationStore, StoreError, Update};
use serde::Serialize;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};

/// Recipients remembered per message-index entry.
const MAX_INDEXED_RECIPIENTS: usize = 64;
/// References looked up per message (long threads carry dozens).
const MAX_REFERENCES: usize = 20;

/// Whether a message's `From:` identity was authenticated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthState {
    /// Not verified (verification switched off and no trusted upstream):
    /// the identity is taken as given.
    #[default]
    Unverified,
    Pass,
    Fail,
    /// DNS trouble: builds no trust, is not held against the sender.
    TempError,
}

impl AuthState {
    pub fn from_summary(s: &AuthSummary) -> AuthState {
        match s.authenticated {
            Some(true) => AuthState::Pass,
            Some(false) => AuthState::Fail,
            None => AuthState::TempError,
        }
    }

    /// May this message add to the history that builds trust?
    pub fn builds_trust(self) -> bool {
        matches!(self, AuthState::Pass | AuthState::Unverified)
    }

    /// The verdict record's `authenticated`: true, false or null.
    pub fn as_json(self) -> Option<bool> {
        match self {
            AuthState::Pass => Some(true),
            AuthState::Fail => Some(false),
            _ => None,
        }
    }
}

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
    /// `From:` display name, as written.
    pub display_name: Option<String>,
    /// First `Reply-To:` address.
    pub reply_to: Option<String>,
    /// Normalised envelope recipients.
    pub recipients: Vec<String>,
    pub message_id: Option<String>,
    /// Identifiers from In-Reply-To and References, nearest first.
    pub references: Vec<String>,
    pub has_attachment: bool,
    pub has_url: bool,
    pub auth_state: AuthState,
    pub auth: Option<AuthSummary>,
    /// Anomalies found before the store is consulted (DNS checks).
    pub anomalies: Vec<Anomaly>,
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
    pub anomalies: Vec<Anomaly>,
    /// Inbound: the outbound message this one answers.
    pub answers_outbound: Option<IndexEntry>,
    /// Outbound: the senders of the inbound messages this one answers.
    pub answers_inbound: Vec<String>,
    /// The display name's normalised key and its current owner.
    pub name: Option<(String, Option<NameEntry>)>,
}

/// The end-of-message decision: what is done, and the short reason given
/// with a refusal.
#[derive(Clone, Debug)]
pub struct Decision {
    pub outcome: crate::policy::Outcome,
    pub reason: String,
}

impl Decision {
    /// Refused mail is not history: only what is delivered (or held) is
    /// learned.
    pub fn learns(&self) -> bool {
        use crate::policy::Action;
        !matches!(
            self.outcome.applied,
            Action::Reject | Action::Discard | Action::Tempfail
        )
    }
}

/// The short reason given with a refusal: `mta malicious`, `sender suspicious`.
pub fn class_reason(what: &str, r: &Option<Rating>) -> String {
    match r {
        Some(r) => format!("{what} {}", r.class),
        None => what.to_string(),
    }
}

/// The policy at end of message: the `[policy.eom]` tables over the
/// sender's and the MTA's classes, what earlier stages carried (`tag`,
/// `quarantine`), and the From domain's DMARC policy (RFC 7489 §6.3).
pub fn decide_eom(
    cfg: &Config,
    msg: &Message,
    a: &Assessment,
    carried: crate::policy::Action,
) -> Decision {
    use crate::policy::{outcome, Action, Stage};
    if msg.direction() == Direction::Outbound {
        return Decision {
            outcome: outcome(Action::Accept, cfg.mode),
            reason: String::new(),
        };
    }
    let sender = a.sender.as_ref().map(|r| r.class);
    let rated = cfg
        .policy
        .decide(Stage::Eom, sender, a.mta.as_ref().map(|r| r.class))
        .max(carried);
    let dmarc = msg.auth.as_ref().and_then(|s| {
        let act = if s.dmarc_failed_with("reject") {
            cfg.auth.dmarc_reject_action
        } else if s.dmarc_failed_with("quarantine") {
            cfg.auth.dmarc_quarantine_action
        } else {
            return None;
        };
        Some((act, format!("dmarc fail, p={}", s.dmarc_policy)))
    });
    let action = dmarc.as_ref().map_or(rated, |(d, _)| rated.max(*d));
    let reason = match dmarc {
        Some((d, why)) if d == action && d > rated => why,
        _ if sender.is_some_and(|c| c >= Class::Suspicious) => class_reason("sender", &a.sender),
        _ => class_reason("mta", &a.mta),
    };
    Decision {
        outcome: outcome(action, cfg.mode),
        reason,
    }
}

/// Ratings and learning over one store, with the overrides in force.
pub struct Engine {
    store: Arc<dyn ReputationStore>,
    /// Serialises engagement batches and sweeps (their index entries are
    /// read, changed and written back).
    events: std::sync::Mutex<()>,
    overrides: RwLock<Arc<OverrideTable>>,
    protected: RwLock<Arc<Protected>>,
}

impl Engine {
    pub fn new(store: Arc<dyn ReputationStore>, cfg: &Config) -> Result<Engine, StoreError> {
        let table = OverrideTable::new(store.overrides()?, &cfg.lists);
        let engine = Engine {
            store,
            events: std::sync::Mutex::new(()),
            overrides: RwLock::new(Arc::new(table)),
            protected: RwLock::new(Arc::new(Protected::new(
                cfg.enterprise_domains.iter().map(String::as_str),
            ))),
        };
        Ok(engine)
    }

    pub fn store(&self) -> &Arc<dyn ReputationStore> {
        &self.store
    }

    pub(crate) fn events_lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.events.lock().unwrap_or_else(|p| p.into_inner())
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
    /// enterprise's and every correspondent domain rated trusted. A scan of
    /// the sender-domain family; the daemon runs it at start and
    /// periodically.
    pub fn refresh_protected(&self, cfg: &Config, now: u64) -> Result<usize, StoreError> {
        let mut domains: Vec<String> = cfg.enterprise_domains.clone();
        self.store.scan(Kind::Domain, &mut |key, rec| {
            if rating::rate_domain(key, rec, now, &cfg.scoring).class == Class::Trusted {
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

    pub fn rate_mta(&self, cfg: &Config, ip: IpAddr, now: u64) -> Result<Rating, StoreError> {
        let key = mta_key(ip);
        let rec = self.store.record(Kind::Mta, &key)?;
        let mut r = rating::rate_mta(&key, &rec, now, &cfg.scoring);
        r.apply_override(self.overrides().for_ip(ip), &cfg.scoring);
        Ok(r)
    }

    fn rate_sender_record(
        &self,
        cfg: &Config,
        addr: &str,
        rec: &Record,
        now: u64,
    ) -> Result<Rating, StoreError> {
        let dom = self.store.record(Kind::Domain, domain_of(addr))?;
        let mut r = rating::rate_sender(addr, rec, &dom, now, &cfg.scoring);
        r.apply_override(self.overrides().for_sender(addr), &cfg.scoring);
        Ok(r)
    }

    pub fn rate_sender(&self, cfg: &Config, addr: &str, now: u64) -> Result<Rating, StoreError> {
        let rec = self.store.record(Kind::Sender, addr)?;
        self.rate_sender_record(cfg, addr, &rec, now)
    }

    pub fn rate_domain(&self, cfg: &Config, domain: &str, now: u64) -> Result<Rating, StoreError> {
        let rec = self.store.record(Kind::Domain, domain)?;
        let mut r = rating::rate_domain(domain, &rec, now, &cfg.scoring);
        r.apply_override(self.overrides().for_domain(domain), &cfg.scoring);
        Ok(r)
    }

    /// The anomalies of an inbound message that need the store.
    fn anomalies(
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
            let shown = crate::identity::clean_address(
                dn.trim_matches(|c| c == '"' || c == '\'' || c == ' '),
            );
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
        out.extend(anomaly::heuristics(
            ac,
            sender,
            msg.display_name.as_deref(),
            msg.reply_to.as_deref(),
        ));
        out.extend(msg.anomalies.iter().cloned());
        Ok(out)
    }

    /// Rates a complete message as it stands before it is learned.
    pub fn assess(&self, cfg: &Config, msg: &Message) -> Result<Assessment, StoreError> {
        let mut a = Assessment::default();
        let refs = msg.references.iter().take(MAX_REFERENCES);
        if let Some(key) = msg
            .display_name
            .as_deref()
            .and_then(anomaly::normalize_name)
        {
            let owner = self.store.name(&key)?;
            a.name = Some((key, owner));
        }
        match msg.direction() {
            Direction::Inbound => {
                if let Some(s) = msg.sender_key() {
                    let rec = self.store.record(Kind::Sender, s)?;
                    let mut r = self.rate_sender_record(cfg, s, &rec, msg.time)?;
                    if !msg.auth_state.builds_trust() {
                        // The history belongs to the authenticated sender;
                        // an unproven claim to the address gets none of it.
                        let positive: f64 = r
                            .factors
                            .iter()
                            .map(|f| f.contribution)
                            .chain(r.extra.iter().map(|c| c.points))
                            .filter(|p| *p > 0.0)
                            .sum();
                        if positive > 0.0 {
                            r.add("unauthenticated", -positive, &cfg.scoring);
                        }
                    }
                    a.anomalies = self.anomalies(cfg, msg, s, &rec, &a.name)?;
                    for an in &a.anomalies {
                        r.add(an.name, an.points, &cfg.scoring);
                    }
                    a.sender = Some(r);
                    if msg.auth_state.builds_trust() {
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
                let trusted = msg.auth_state.builds_trust();
                let domain = domain_of(sender).to_string();
                let ent: Vec<&String> = msg
                    .recipients
                    .iter()
                    .filter(|r| {
                        cfg.enterprise_domains.is_empty() || cfg.is_enterprise_domain(domain_of(r))
                    })
                    .collect();
                let replied = trusted && a.answers_outbound.is_some();
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
                let mta = msg.client_ip.map(mta_key);
                if let (Some(ip), true) = (msg.client_ip, trusted) {
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
                    u.records.push((Kind::Mta, m.clone(), md));
                    if trusted {
                        for key in [
                            pair_key(sender, m),
                            pair_key(sender, &format!("net:{}", mta_net_key(ip))),
                        ] {
                            let mut pd = Record::seen_at(t);
                            pd.add(Counter::MessagesReceived, 1);
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
                    u.engagement_add.push(crate::store::engagement_key(t, id));
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
                            opened: false,
                            junk: false,
                            not_opened_counted: false,
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
                // The enterprise's people, by the names they sign with.
                if let (Some((key, owner)), false) = (&a.name, author.is_empty()) {
                    let entry = NameEntry {
                        address: author.to_string(),
                        enterprise: true,
                    };
                    if owner.as_ref() != Some(&entry) {
                        u.names.push((key.clone(), entry));
                    }
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
                            opened: false,
                            junk: false,
                            not_opened_counted: false,
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

    /// One complete message, as the milter and replay both run it: rate,
    /// decide, then learn (unless refused, or `learn` is false).
    pub fn process(
        &self,
        cfg: &Config,
        msg: &Message,
        carried: crate::policy::Action,
        learn: bool,
    ) -> Result<(Assessment, Decision), StoreError> {
        let a = self.assess(cfg, msg)?;
        let d = decide_eom(cfg, msg, &a, carried);
        if learn && d.learns() {
            self.learn(cfg, msg, &a)?;
        }
        Ok((a, d))
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
