//! Policy: (stage, sender class, MTA class, mode) → action.
//!
//! Each stage has two tables, `sender` and `mta`, from class to action; the
//! stage's action is the more severe of the two. `connect` only knows the
//! MTA; `mail` and `rcpt` know the envelope sender; `eom` knows the full
//! rating of the `From:` sender.
//!
//! `tag` and `quarantine` can only be carried out at end of message: when an
//! earlier stage decides them they are remembered and applied there.
//! Monitor-only mode turns every `quarantine`, `tempfail`, `reject` and
//! `discard` into a logged `would_<action>`; the message is accepted and
//! stamped `monitor=yes`.

//! At end of message the From domain's DMARC policy (RFC 7489 §6.3) weighs
//! in too ([`decide_eom`]).

use crate::config::Config;
use crate::message::Message;
use crate::reputation::{Anomaly, Rating};
use crate::vocab::{Action, Class, Direction, Mode, Stage};

/// What is actually done, and what monitor-only mode held back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub applied: Action,
    /// The policy's action when monitor-only mode held it back.
    pub would: Option<Action>,
}

impl Outcome {
    /// The action as the header and the log say it: `reject`, or
    /// `would_reject` when monitor-only mode held it back.
    pub fn label(&self) -> String {
        match self.would {
            Some(a) => format!("would_{a}"),
            None => self.applied.to_string(),
        }
    }
}

pub fn outcome(action: Action, mode: Mode) -> Outcome {
    match mode {
        Mode::Monitor if action.is_enforcing() => Outcome {
            applied: Action::Accept,
            would: Some(action),
        },
        _ => Outcome {
            applied: action,
            would: None,
        },
    }
}

/// The end-of-message decision: what is done, and the short reason given
/// with a refusal.
#[derive(Clone, Debug)]
pub struct Decision {
    pub outcome: Outcome,
    pub reason: String,
}

impl Decision {
    /// Refused mail is not history: only what is delivered (or held) is
    /// learned.
    pub fn learns(&self) -> bool {
        !matches!(
            self.outcome.applied,
            Action::Reject | Action::Discard | Action::Tempfail
        )
    }
}

/// The most severe action `[policy.anomalies]` names for these anomalies,
/// and the anomaly.
pub fn anomaly_action<'a>(
    cfg: &Config,
    names: impl Iterator<Item = &'a str>,
) -> Option<(Action, &'a str)> {
    names
        .filter_map(|n| cfg.policy.anomalies.get(n).map(|a| (*a, n)))
        .max_by_key(|(a, _)| *a)
}

/// The short reason given with a refusal: `mta malicious`, `sender suspicious`.
pub fn class_reason(what: &str, r: Option<&Rating>) -> String {
    match r {
        Some(r) => format!("{what} {}", r.class),
        None => what.to_string(),
    }
}

/// The policy at end of message: the `[policy.eom]` tables over the
/// sender's and the MTA's classes, what earlier stages carried (`tag`,
/// `quarantine`), the From domain's DMARC policy (RFC 7489 §6.3), and the
/// least action `[policy.anomalies]` names for an anomaly raised.
pub fn decide_eom(
    cfg: &Config,
    msg: &Message,
    sender: Option<&Rating>,
    mta: Option<&Rating>,
    carried: Action,
    anomalies: &[Anomaly],
) -> Decision {
    if msg.direction() == Direction::Outbound {
        return Decision {
            outcome: outcome(Action::Accept, cfg.mode),
            reason: String::new(),
        };
    }
    let sender_class = sender.map(|r| r.class);
    let rated = cfg
        .policy
        .decide(Stage::Eom, sender_class, mta.map(|r| r.class))
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
    let mut reason = match dmarc {
        Some((d, why)) if d == action && d > rated => why,
        _ if sender_class.is_some_and(|c| c >= Class::Suspicious) => class_reason("sender", sender),
        _ => class_reason("mta", mta),
    };
    let mut action = action;
    if let Some((a, name)) = anomaly_action(cfg, anomalies.iter().map(|a| a.name)) {
        if a > action {
            action = a;
            reason = format!("anomaly {name}");
        }
    }
    Decision {
        outcome: outcome(action, cfg.mode),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PolicyConfig;
    use crate::vocab::{Class, Stage};

    #[test]
    fn defaults_reject_malicious_and_quarantine_suspicious() {
        let p = PolicyConfig::default();
        p.validate().unwrap();
        assert_eq!(
            p.decide(Stage::Connect, None, Some(Class::Malicious)),
            Action::Reject
        );
        assert_eq!(
            p.decide(Stage::Connect, None, Some(Class::Suspicious)),
            Action::Accept
        );
        assert_eq!(
            p.decide(Stage::Mail, Some(Class::Malicious), None),
            Action::Reject
        );
        assert_eq!(
            p.decide(Stage::Eom, Some(Class::Suspicious), Some(Class::Trusted)),
            Action::Quarantine
        );
        assert_eq!(
            p.decide(Stage::Eom, Some(Class::Trusted), Some(Class::Malicious)),
            Action::Reject,
            "the more severe of sender and MTA"
        );
        assert_eq!(
            p.decide(Stage::Eom, Some(Class::Unrated), Some(Class::Unrated)),
            Action::Accept
        );
    }

    #[test]
    fn monitor_mode_never_enforces() {
        for a in Action::ALL {
            let o = outcome(a, Mode::Monitor);
            assert!(!o.applied.is_enforcing(), "{a}");
            assert_eq!(o.would.is_some(), a.is_enforcing(), "{a}");
            let e = outcome(a, Mode::Enforce);
            assert_eq!(e.applied, a);
            assert_eq!(e.would, None);
        }
    }

    #[test]
    fn invalid_policies_are_rejected() {
        let mut p = PolicyConfig::default();
        p.connect.mta.malicious = Action::Discard;
        assert!(p.validate().is_err());
        let mut p = PolicyConfig::default();
        p.connect.sender.malicious = Action::Reject;
        assert!(p.validate().is_err());
        let p = PolicyConfig {
            reject_code: "451".into(),
            ..PolicyConfig::default()
        };
        assert!(p.validate().is_err());
        let p = PolicyConfig {
            reject_xcode: "5.7".into(),
            ..PolicyConfig::default()
        };
        assert!(p.validate().is_err());
    }
}
