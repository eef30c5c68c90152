//! `[policy]`: per stage, the action for each class of the sender and of
//! the MTA, and the SMTP replies. The decision itself is `policy`'s.

use crate::vocab::{Action, Class, Stage};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Class → action.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClassActions {
    pub unrated: Action,
    pub neutral: Action,
    pub trusted: Action,
    pub suspicious: Action,
    pub malicious: Action,
}

impl Default for ClassActions {
    fn default() -> Self {
        ClassActions::all(Action::Accept)
    }
}

impl ClassActions {
    fn all(a: Action) -> Self {
        ClassActions {
            unrated: a,
            neutral: a,
            trusted: a,
            suspicious: a,
            malicious: a,
        }
    }

    fn with(mut self, class: Class, a: Action) -> Self {
        *self.slot(class) = a;
        self
    }

    fn slot(&mut self, class: Class) -> &mut Action {
        match class {
            Class::Unrated => &mut self.unrated,
            Class::Neutral => &mut self.neutral,
            Class::Trusted => &mut self.trusted,
            Class::Suspicious => &mut self.suspicious,
            Class::Malicious => &mut self.malicious,
        }
    }

    pub fn get(&self, class: Class) -> Action {
        match class {
            Class::Unrated => self.unrated,
            Class::Neutral => self.neutral,
            Class::Trusted => self.trusted,
            Class::Suspicious => self.suspicious,
            Class::Malicious => self.malicious,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StagePolicy {
    pub sender: ClassActions,
    pub mta: ClassActions,
}

/// `[policy.rcpt]`: as every stage, and for a recipient new to the sender.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RcptPolicy {
    pub sender: ClassActions,
    pub mta: ClassActions,
    /// By the sender's class, for a recipient the sender has never dealt
    /// with (no mail between them, either way): a per-recipient verdict,
    /// the other recipients of the message are not touched.
    pub new_recipient: ClassActions,
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    pub connect: StagePolicy,
    pub mail: StagePolicy,
    pub rcpt: RcptPolicy,
    pub eom: StagePolicy,
    /// SMTP reply for `reject`: code, enhanced code, text.
    pub reject_code: String,
    pub reject_xcode: String,
    pub reject_text: String,
    /// SMTP reply for `tempfail`.
    pub tempfail_code: String,
    pub tempfail_xcode: String,
    pub tempfail_text: String,
    /// Anomaly → the least action at end of message when it is raised
    /// (`behaviour_change = "tag"`); empty: the classes alone decide.
    pub anomalies: BTreeMap<String, Action>,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            connect: StagePolicy {
                sender: ClassActions::default(),
                mta: ClassActions::default().with(Class::Malicious, Action::Reject),
            },
            mail: StagePolicy {
                sender: ClassActions::default().with(Class::Malicious, Action::Reject),
                mta: ClassActions::default(),
            },
            rcpt: RcptPolicy::default(),
            eom: StagePolicy {
                sender: ClassActions::default()
                    .with(Class::Malicious, Action::Reject)
                    .with(Class::Suspicious, Action::Quarantine),
                mta: ClassActions::default()
                    .with(Class::Malicious, Action::Reject)
                    .with(Class::Suspicious, Action::Tag),
            },
            reject_code: "550".into(),
            reject_xcode: "5.7.1".into(),
            reject_text: "rejected by sender reputation policy".into(),
            tempfail_code: "451".into(),
            tempfail_xcode: "4.7.1".into(),
            tempfail_text: "deferred by sender reputation policy, try again later".into(),
            anomalies: BTreeMap::new(),
        }
    }
}

impl PolicyConfig {
    /// The stage's sender and MTA tables.
    fn tables(&self, stage: Stage) -> (&ClassActions, &ClassActions) {
        match stage {
            Stage::Connect => (&self.connect.sender, &self.connect.mta),
            Stage::Mail => (&self.mail.sender, &self.mail.mta),
            Stage::Rcpt => (&self.rcpt.sender, &self.rcpt.mta),
            Stage::Eom => (&self.eom.sender, &self.eom.mta),
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        for c in Class::ALL {
            if self.connect.sender.get(c) != Action::Accept {
                return Err(format!(
                    "policy.connect.sender.{c}: the sender is not known at connect; use policy.connect.mta"
                ));
            }
            if matches!(
                self.rcpt.new_recipient.get(c),
                Action::Quarantine | Action::Discard
            ) {
                return Err(format!(
                    "policy.rcpt.new_recipient.{c}: a per-recipient verdict is accept, tag, reject or tempfail"
                ));
            }
            if self.connect.mta.get(c) == Action::Discard {
                return Err(format!(
                    "policy.connect.mta.{c}: discard is not possible at connect (use reject or tempfail)"
                ));
            }
        }
        let code_ok = |code: &str, first: char| {
            code.len() == 3 && code.starts_with(first) && code.chars().all(|c| c.is_ascii_digit())
        };
        let xcode_ok = |x: &str, first: &str| {
            let p: Vec<&str> = x.split('.').collect();
            p.len() == 3
                && p[0] == first
                && p[1..]
                    .iter()
                    .all(|n| !n.is_empty() && n.len() <= 3 && n.chars().all(|c| c.is_ascii_digit()))
        };
        if !code_ok(&self.reject_code, '5') || !xcode_ok(&self.reject_xcode, "5") {
            return Err("policy.reject_code/reject_xcode must be a 5xx code and 5.x.y".into());
        }
        if !code_ok(&self.tempfail_code, '4') || !xcode_ok(&self.tempfail_xcode, "4") {
            return Err("policy.tempfail_code/tempfail_xcode must be a 4xx code and 4.x.y".into());
        }
        for t in [&self.reject_text, &self.tempfail_text] {
            if t.chars().any(|c| c.is_control()) {
                return Err("policy reply texts must not contain control characters".into());
            }
        }
        Ok(())
    }

    /// The stage's action: the more severe of the sender's and the MTA's.
    pub fn decide(&self, stage: Stage, sender: Option<Class>, mta: Option<Class>) -> Action {
        let (st, mt) = self.tables(stage);
        let s = sender.map_or(Action::Accept, |c| st.get(c));
        let m = mta.map_or(Action::Accept, |c| mt.get(c));
        s.max(m)
    }

    /// The action at RCPT for one recipient: the stage's, and
    /// `[policy.rcpt.new_recipient]` when the sender never dealt with it;
    /// and whether it is the new-recipient table that decided (it asked for
    /// more than the stage's own tables), so that the reason names the new
    /// recipient only then.
    pub fn decide_rcpt(
        &self,
        sender: Option<Class>,
        mta: Option<Class>,
        new: bool,
    ) -> (Action, bool) {
        let a = self.decide(Stage::Rcpt, sender, mta);
        match (new, sender) {
            (true, Some(c)) => {
                let n = self.rcpt.new_recipient.get(c);
                (a.max(n), n > a)
            }
            _ => (a, false),
        }
    }
}

#[cfg(test)]
mod rcpt_tests {
    use super::*;

    #[test]
    fn a_new_recipient_adds_its_table_to_the_stage_and_only_per_recipient_actions() {
        let mut p = PolicyConfig::default();
        p.rcpt.new_recipient.suspicious = Action::Reject;
        let s = Some(Class::Suspicious);
        assert_eq!(p.decide_rcpt(s, None, false), (Action::Accept, false));
        assert_eq!(p.decide_rcpt(s, None, true), (Action::Reject, true));
        assert_eq!(
            p.decide_rcpt(Some(Class::Trusted), None, true),
            (Action::Accept, false)
        );
        assert_eq!(p.decide_rcpt(None, None, true), (Action::Accept, false));
        // The stage's own table already rejects: the new recipient adds
        // nothing, and is not named as the reason.
        p.rcpt.sender.suspicious = Action::Reject;
        assert_eq!(p.decide_rcpt(s, None, true), (Action::Reject, false));
        p.rcpt.sender.suspicious = Action::Accept;
        assert!(p.validate().is_ok());
        p.rcpt.new_recipient.malicious = Action::Quarantine;
        let e = p.validate().unwrap_err();
        assert!(e.contains("policy.rcpt.new_recipient.malicious"), "{e}");
    }
}
