//! Rating a message before it is learned: the sender (with its anomalies),
//! the MTA, the display name's owner, and the messages it answers.

use super::Engine;
use crate::config::Config;
use crate::message::Message;
use crate::reputation::anomaly::{connection_anomalies, normalize_name};
use crate::reputation::path::MAX_REFERENCES;
use crate::reputation::{combined_score, Anomaly, PathTrust, Rating};
use crate::store::{IndexEntry, NameEntry, StoreError};
use crate::vocab::{domain_of, Direction};

/// The ratings of a message, before it is learned.
#[derive(Clone, Debug, Default)]
pub struct Assessment {
    pub sender: Option<Rating>,
    pub mta: Option<Rating>,
    pub anomalies: Vec<Anomaly>,
    /// Inbound: the outbound message this one answers.
    pub answers_outbound: Option<IndexEntry>,
    /// Outbound: the inbound messages this one answers (one per sender and
    /// MTA): who sent them, the MTAs they came through, and the habits
    /// withheld from their senders, which the answer now vouches for.
    pub answers_inbound: Vec<IndexEntry>,
    /// Inbound: how far the path of an unauthenticated message is believed.
    pub path: PathTrust,
    /// Inbound: the sender's and MTA's ratings as one score, for ranking.
    pub score: Option<f64>,
    /// The display name's normalised key and its current owner.
    pub name: Option<(String, Option<NameEntry>)>,
}

impl Engine {
    /// Rates a complete message as it stands before it is learned.
    pub fn assess(&self, cfg: &Config, msg: &Message) -> Result<Assessment, StoreError> {
        let mut a = Assessment::default();
        if let Some(key) = msg.display_name.as_deref().and_then(normalize_name) {
            let owner = self.store().name(&key)?;
            a.name = Some((key, owner));
        }
        match msg.direction() {
            Direction::Inbound => {
                if let Some(s) = msg.sender_key() {
                    let rated = self.rate_inbound_sender(cfg, msg, s, &a.name)?;
                    a.anomalies = rated.anomalies;
                    a.sender = Some(rated.rating);
                    a.path = rated.path;
                    if msg.auth_state.builds_trust() {
                        let sender_domain = domain_of(s);
                        let stored = self.store().address_key(s);
                        a.answers_outbound = self.answered_outbound(msg, |e| {
                            e.recipients.iter().any(|r| {
                                domain_of(r) == sender_domain
                                    || self.store().address_key(r) == stored
                            })
                        })?;
                    }
                }
                if let Some(ip) = msg.client_ip {
                    let mut mta = self.rate_mta(cfg, ip, msg.time)?;
                    // A never-seen MTA (nor its network): what its
                    // connection shows speaks for it.
                    if mta.history < cfg.scoring.min_history {
                        for an in connection_anomalies(&cfg.anomalies, msg) {
                            mta.add(an.name, an.points, &cfg.scoring);
                            a.anomalies.push(an);
                        }
                    }
                    a.mta = Some(mta);
                }
                a.score = combined_score(
                    a.sender.as_ref(),
                    a.mta.as_ref(),
                    msg.auth_state,
                    cfg.scoring.base,
                );
            }
            Direction::Outbound => {
                for id in msg.references.iter().take(MAX_REFERENCES) {
                    if let Some(e) = self.store().message(id)? {
                        if e.direction == Direction::Inbound
                            && !a
                                .answers_inbound
                                .iter()
                                .any(|x| x.sender == e.sender && x.mta == e.mta)
                        {
                            a.answers_inbound.push(e);
                        }
                    }
                }
            }
        }
        Ok(a)
    }
}
