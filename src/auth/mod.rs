//! Authenticated identity: SPF, DKIM, ARC and DMARC with mail-auth, or the
//! `Authentication-Results` of a trusted upstream authserv-id.
//!
//! A message is *authenticated* when its `From:` domain passes DMARC (RFC
//! 7489 §3.1 alignment; mail-auth finds the organisational domain by the
//! DNS tree walk). For a `From:` domain without a DMARC record it is
//! authenticated when SPF or DKIM passes for a domain in the same
//! organisation (relaxed alignment, organisational domain from the public
//! suffix list). DNS trouble (`temperror`) leaves it undecided: such a
//! message builds no trust, but is not held against the sender either.
//!
//! Every DNS step runs under a deadline: SPF at MAIL gets `dns.timeout`,
//! DKIM, ARC and DMARC at end of message share one `dns.timeout`. A
//! resolver that never answers costs at most that, and the result is
//! `temperror`. Answers are cached in bounded caches (`dns.cache_size`
//! entries per record type), which tests pre-load instead of using a
//! network.

mod dns;
mod rdap;
mod results;
mod verify;

pub use dns::{Authenticator, DnsCache};
pub use rdap::{registration, Rdap};
pub use results::{authserv_id_of, parse_authentication_results, trusted_results};
pub use verify::SpfState;

use crate::vocab::org_domain;
use mail_auth::{DkimResult, DmarcResult, SpfResult};
use serde::{Serialize, Serializer};
use std::fmt;

pub const AR_HEADER: &str = "Authentication-Results";

/// The result of one authentication method (RFC 8601 §2.7), as this
/// verifier or a trusted upstream reported it. `Absent` is a method that
/// was not evaluated; `Other` keeps a result word this list lacks (upstream
/// verifiers write a few of their own), as written.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum AuthResult {
    #[default]
    Absent,
    Pass,
    Fail,
    SoftFail,
    Neutral,
    None,
    TempError,
    PermError,
    Other(String),
}

impl AuthResult {
    pub fn as_str(&self) -> &str {
        match self {
            AuthResult::Absent => "",
            AuthResult::Pass => "pass",
            AuthResult::Fail => "fail",
            AuthResult::SoftFail => "softfail",
            AuthResult::Neutral => "neutral",
            AuthResult::None => "none",
            AuthResult::TempError => "temperror",
            AuthResult::PermError => "permerror",
            AuthResult::Other(s) => s,
        }
    }
}

impl From<&str> for AuthResult {
    fn from(s: &str) -> AuthResult {
        match s {
            "" => AuthResult::Absent,
            "pass" => AuthResult::Pass,
            "fail" => AuthResult::Fail,
            "softfail" => AuthResult::SoftFail,
            "neutral" => AuthResult::Neutral,
            "none" => AuthResult::None,
            "temperror" => AuthResult::TempError,
            "permerror" => AuthResult::PermError,
            other => AuthResult::Other(other.to_string()),
        }
    }
}

impl From<String> for AuthResult {
    fn from(s: String) -> AuthResult {
        AuthResult::from(s.as_str())
    }
}

impl From<SpfResult> for AuthResult {
    fn from(r: SpfResult) -> AuthResult {
        match r {
            SpfResult::Pass => AuthResult::Pass,
            SpfResult::Fail => AuthResult::Fail,
            SpfResult::SoftFail => AuthResult::SoftFail,
            SpfResult::Neutral => AuthResult::Neutral,
            SpfResult::TempError => AuthResult::TempError,
            SpfResult::PermError => AuthResult::PermError,
            SpfResult::None => AuthResult::None,
        }
    }
}

impl From<&DkimResult> for AuthResult {
    fn from(r: &DkimResult) -> AuthResult {
        match r {
            DkimResult::Pass => AuthResult::Pass,
            DkimResult::Neutral(_) => AuthResult::Neutral,
            DkimResult::Fail(_) => AuthResult::Fail,
            DkimResult::PermError(_) => AuthResult::PermError,
            DkimResult::TempError(_) => AuthResult::TempError,
            DkimResult::None => AuthResult::None,
        }
    }
}

impl From<&DmarcResult> for AuthResult {
    fn from(r: &DmarcResult) -> AuthResult {
        match r {
            DmarcResult::Pass => AuthResult::Pass,
            DmarcResult::Fail(_) => AuthResult::Fail,
            DmarcResult::TempError(_) => AuthResult::TempError,
            DmarcResult::PermError(_) => AuthResult::PermError,
            DmarcResult::None => AuthResult::None,
        }
    }
}

impl PartialEq<str> for AuthResult {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for AuthResult {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Display for AuthResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for AuthResult {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// The policy a From domain publishes (RFC 7489 §6.3): `Absent` when no
/// DMARC record applies.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum DmarcPolicy {
    #[default]
    Absent,
    None,
    Quarantine,
    Reject,
    Other(String),
}

impl DmarcPolicy {
    pub fn as_str(&self) -> &str {
        match self {
            DmarcPolicy::Absent => "",
            DmarcPolicy::None => "none",
            DmarcPolicy::Quarantine => "quarantine",
            DmarcPolicy::Reject => "reject",
            DmarcPolicy::Other(s) => s,
        }
    }
}

impl From<&str> for DmarcPolicy {
    fn from(s: &str) -> DmarcPolicy {
        match s {
            "" => DmarcPolicy::Absent,
            "none" => DmarcPolicy::None,
            "quarantine" => DmarcPolicy::Quarantine,
            "reject" => DmarcPolicy::Reject,
            other => DmarcPolicy::Other(other.to_string()),
        }
    }
}

impl PartialEq<&str> for DmarcPolicy {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Display for DmarcPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for DmarcPolicy {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// One DKIM signature's outcome.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct DkimVerdict {
    pub domain: String,
    pub result: AuthResult,
    /// The signature's selector (`s=`), when known.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub selector: String,
}

/// The authentication of one message, as recorded and shown.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct AuthSummary {
    /// `verified` (here) or `authserv:ID` (a trusted upstream).
    pub source: String,
    pub spf: AuthResult,
    pub spf_domain: String,
    pub spf_helo: AuthResult,
    pub dkim: Vec<DkimVerdict>,
    pub dmarc: AuthResult,
    /// Policy of the From domain when DMARC applies.
    pub dmarc_policy: DmarcPolicy,
    pub arc: AuthResult,
    /// Aligned with the From domain: true, false, or undecided (DNS trouble).
    pub authenticated: Option<bool>,
    /// A DNS temperror took part in the decision.
    pub temperror: bool,
}

impl AuthSummary {
    /// DMARC failed and the From domain publishes `policy`.
    pub fn dmarc_failed_with(&self, policy: &str) -> bool {
        self.dmarc == AuthResult::Fail && self.dmarc_policy == policy
    }
}

/// The authentication decision from a summary (verified here or parsed
/// from a trusted Authentication-Results).
pub fn decide(s: &AuthSummary, from_org: Option<&str>) -> Option<bool> {
    let Some(from_org) = from_org else {
        return Some(false);
    };
    match s.dmarc {
        AuthResult::Pass => return Some(true),
        AuthResult::Fail => return Some(false),
        _ => {}
    }
    // No DMARC record: aligned SPF or DKIM (relaxed, RFC 7489 §3.1).
    let spf_aligned = s.spf == AuthResult::Pass && org_domain(&s.spf_domain) == from_org;
    let dkim_aligned = s
        .dkim
        .iter()
        .any(|d| d.result == AuthResult::Pass && org_domain(&d.domain) == from_org);
    if spf_aligned || dkim_aligned {
        Some(true)
    } else if s.temperror || s.dmarc == AuthResult::TempError {
        None
    } else {
        Some(false)
    }
}

#[cfg(test)]
mod tests;
