//! The shared vocabulary: the small nouns every layer speaks — classes,
//! actions, stages, modes, directions, durations and times, addresses and
//! override targets. A leaf: it imports nothing from the crate, so every
//! other module may import it.

mod address;
mod time;

pub use address::{canonical_ip, clean_address, domain_of, org_domain, Target};
pub use time::{now, parse_rfc3339, rfc3339, rfc5322, Span};

use serde::{Deserialize, Serialize};
use std::fmt;

/// A rating's class (D3-SRA's names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    Unrated,
    Neutral,
    Trusted,
    Suspicious,
    Malicious,
}

impl Class {
    pub const ALL: [Class; 5] = [
        Class::Unrated,
        Class::Neutral,
        Class::Trusted,
        Class::Suspicious,
        Class::Malicious,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Class::Unrated => "unrated",
            Class::Neutral => "neutral",
            Class::Trusted => "trusted",
            Class::Suspicious => "suspicious",
            Class::Malicious => "malicious",
        }
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Class {
    type Err = String;
    fn from_str(s: &str) -> Result<Class, String> {
        Class::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| {
                format!("unknown class {s:?} (unrated, neutral, trusted, suspicious, malicious)")
            })
    }
}

/// Actions in increasing severity.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    #[default]
    Accept,
    Tag,
    Quarantine,
    Tempfail,
    Reject,
    Discard,
}

impl Action {
    pub const ALL: [Action; 6] = [
        Action::Accept,
        Action::Tag,
        Action::Quarantine,
        Action::Tempfail,
        Action::Reject,
        Action::Discard,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Accept => "accept",
            Action::Tag => "tag",
            Action::Quarantine => "quarantine",
            Action::Tempfail => "tempfail",
            Action::Reject => "reject",
            Action::Discard => "discard",
        }
    }

    /// Actions that stop or withhold mail, which monitor-only never does.
    pub fn is_enforcing(self) -> bool {
        matches!(
            self,
            Action::Quarantine | Action::Tempfail | Action::Reject | Action::Discard
        )
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The SMTP stage a verdict is taken at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    Connect,
    Mail,
    Rcpt,
    Eom,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Connect => "connect",
            Stage::Mail => "mail",
            Stage::Rcpt => "rcpt",
            Stage::Eom => "eom",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Operating mode: monitor-only never rejects, tempfails, discards or
/// quarantines; it logs what it would have done.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Monitor,
    Enforce,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Monitor => "monitor",
            Mode::Enforce => "enforce",
        })
    }
}

/// What the milter answers when it cannot rate a message (store or internal
/// error).
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    #[default]
    Accept,
    Tempfail,
    Reject,
}

impl fmt::Display for OnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OnError::Accept => "accept",
            OnError::Tempfail => "tempfail",
            OnError::Reject => "reject",
        })
    }
}

/// Which way a message travels: *outbound* from the organisation (an
/// SMTP-authenticated or internal client), else *inbound*.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Inbound,
    Outbound,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

/// RFC 5322 §2.2 field name: printable ASCII except colon.
pub fn is_valid_header_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| (33..=126).contains(&b) && b != b':')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_names() {
        assert!(is_valid_header_name("X-SRA-Flag"));
        assert!(!is_valid_header_name("X SRA"));
        assert!(!is_valid_header_name("X:SRA"));
        assert!(!is_valid_header_name(""));
    }
}
