//! The shared path of every message: rating → policy → learning.
//!
//! The milter and `replay` both build a [`Message`] (`Message::new`) and call
//! [`Engine::process`] — [`Engine::assess`], `policy::decide_eom`, then
//! [`Engine::learn`] — with the clock given by the caller (wall clock live, the mail's own time in replay). Ratings are
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

mod assess;
pub mod calibrate;
pub mod engagement;
pub mod explain;
mod learn;
pub mod whatif;

pub use assess::Assessment;

use crate::config::Config;
use crate::message::Message;
use crate::policy::{decide_eom, Decision};
use crate::reputation::Reputation;
use crate::store::{ReputationStore, StoreError};
use crate::vocab::Action;
use std::sync::{Arc, Mutex, MutexGuard};

/// Ratings and learning over one store: the [`Reputation`] it rates with
/// (reached through `Deref`), and the lock that serialises engagement
/// batches and sweeps (their index entries are read, changed and written
/// back).
pub struct Engine {
    reputation: Reputation,
    events: Mutex<()>,
}

impl std::ops::Deref for Engine {
    type Target = Reputation;
    fn deref(&self) -> &Reputation {
        &self.reputation
    }
}

impl Engine {
    pub fn new(store: Arc<dyn ReputationStore>, cfg: &Config) -> Result<Engine, StoreError> {
        Ok(Engine {
            reputation: Reputation::new(store, cfg)?,
            events: Mutex::new(()),
        })
    }

    /// This engine over `store` (a stage's snapshot of its store,
    /// `store::run_loaded`); engagement batches are not run on a view.
    pub fn view(&self, store: Arc<dyn ReputationStore>) -> Engine {
        Engine {
            reputation: self.reputation.view(store),
            events: Mutex::new(()),
        }
    }

    pub(crate) fn events_lock(&self) -> MutexGuard<'_, ()> {
        self.events.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One complete message, as the milter and replay both run it: rate,
    /// decide, then learn (unless refused, or `learn` is false).
    pub fn process(
        &self,
        cfg: &Config,
        msg: &Message,
        carried: Action,
        learn: bool,
    ) -> Result<(Assessment, Decision), StoreError> {
        let a = self.assess(cfg, msg)?;
        let d = decide_eom(
            cfg,
            msg,
            a.sender.as_ref(),
            a.mta.as_ref(),
            carried,
            &a.anomalies,
        );
        if learn && d.learns() {
            self.learn(cfg, msg, &a)?;
        }
        Ok((a, d))
    }
}

#[cfg(test)]
mod behaviour_tests;

#[cfg(test)]
mod detection_tests;

#[cfg(test)]
mod first_contact_tests;

#[cfg(test)]
mod signal_tests;

#[cfg(test)]
mod snapshot_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{pair_key, Counter, Kind, RocksStore};
    use crate::vocab::Direction;

    /// An engine over a fresh RocksDB store in a temp dir (example.com is
    /// the enterprise).
    pub(super) fn setup() -> (tempfile::TempDir, Engine, Config) {
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

    /// Assesses and learns one message, as `Engine::process` does.
    pub(super) fn run(e: &Engine, cfg: &Config, m: &Message) -> Assessment {
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
            addressed: vec!["alice@example.com".into()],
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
