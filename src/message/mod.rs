//! The message: what is known of one message when it is rated, built in one
//! place from the envelope (the live SMTP session, or its reconstruction
//! from an archived message's headers) and the message's own text.
//!
//! - The sender key is the `From:` address (what the reader sees),
//!   lower-cased. The envelope sender is kept beside it; envelope addresses
//!   are normalised for sub-address tags, BATV (`prvs=`) and SRS so that one
//!   correspondent keeps one key ([`address`]).
//! - The MTA key is the client IP: IPv4 as the /32, IPv6 as its /64 (one
//!   host commonly owns a whole /64). IPv4-mapped IPv6 is treated as IPv4.
//! - Direction ([`direction`]): SMTP-authenticated clients and clients in
//!   `internal_networks` send *outbound* mail; everything else is *inbound*.

pub mod address;
mod content;

pub use address::{message_ids_in, mta_key, mta_net_key, normalize_envelope, normalize_message_id};
pub use content::{client_name, Content};

use crate::auth::AuthSummary;
use crate::vocab::{canonical_ip, Direction};
use ipnet::IpNet;
use serde::Serialize;
use std::net::IpAddr;

/// Decides the direction of a connection: an SMTP-authenticated client
/// (`{auth_authen}`) or one in `internal` sends outbound mail.
pub fn direction(
    internal: &[IpNet],
    client_ip: Option<IpAddr>,
    auth_authen: Option<&str>,
) -> Direction {
    if auth_authen.is_some_and(|a| !a.trim().is_empty()) {
        return Direction::Outbound;
    }
    match client_ip.map(canonical_ip) {
        Some(ip) if internal.iter().any(|n| n.contains(&ip)) => Direction::Outbound,
        Some(_) => Direction::Inbound,
        // No IP at all: locally submitted mail (Postfix `non_smtpd_milters`).
        None => Direction::Outbound,
    }
}

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

/// What the SMTP session knows of a message before its text: the live
/// session's, or the one replay reconstructs from `Received:` headers.
#[derive(Clone, Debug, Default)]
pub struct Envelope {
    pub time: u64,
    pub queue_id: String,
    pub direction: Option<Direction>,
    pub client_ip: Option<IpAddr>,
    /// The client's reverse DNS name as the MTA found it.
    pub reverse_dns: ReverseDns,
    pub helo: String,
    /// Normalised envelope sender (None for the null sender `<>`).
    pub envelope_from: Option<String>,
    /// Normalised envelope recipients.
    pub recipients: Vec<String>,
}

/// What the receiving MTA found of the client's reverse DNS name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReverseDns {
    /// Not told (an archive whose `Received:` format does not say).
    #[default]
    Unknown,
    /// It has none.
    None,
    Name(String),
}

impl ReverseDns {
    /// A client name as an MTA reports it: Postfix says `unknown` and
    /// Sendmail shows the bracketed address when there is none.
    pub fn reported(name: &str) -> ReverseDns {
        let n = name.trim().trim_end_matches('.').to_ascii_lowercase();
        if n.is_empty() || n == "unknown" || n.starts_with('[') || n.parse::<IpAddr>().is_ok() {
            ReverseDns::None
        } else {
            ReverseDns::Name(n)
        }
    }
}

/// Answers of the optional DNS checks (`[anomalies]`), found before the
/// store is consulted; `reputation::anomaly` weighs them.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DnsFacts {
    /// The From domain has an MX or A record (None: not checked, or DNS
    /// trouble).
    pub sender_domain_accepts_mail: Option<bool>,
    /// The DNSBL zone that lists the client IP.
    pub dnsbl_listed: Option<String>,
    /// When the From organisation's domain was registered (RDAP), Unix
    /// seconds.
    pub domain_registered: Option<u64>,
}

/// What is known of one message when it is rated.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Message {
    pub time: u64,
    pub queue_id: String,
    pub direction: Option<Direction>,
    pub client_ip: Option<IpAddr>,
    pub reverse_dns: ReverseDns,
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
    /// HTML without a plain-text alternative.
    pub html_only: bool,
    /// The organisations the body's URLs point to (bounded).
    pub link_orgs: Vec<String>,
    /// The `To:` and `Cc:` addresses (bounded).
    pub addressed: Vec<String>,
    /// `List-Id:`: it came through a mailing list.
    pub list_id: Option<String>,
    /// The mail client's name (`User-Agent:`, `X-Mailer:`), no version.
    pub mail_client: Option<String>,
    pub auth_state: AuthState,
    pub auth: Option<AuthSummary>,
    pub dns: DnsFacts,
}

impl Message {
    /// A message of which only the envelope is known (a transaction ended
    /// before its text).
    pub fn from_envelope(env: Envelope) -> Message {
        Message {
            time: env.time,
            queue_id: env.queue_id,
            direction: env.direction,
            client_ip: env.client_ip,
            reverse_dns: env.reverse_dns,
            helo: env.helo,
            envelope_from: env.envelope_from,
            recipients: env.recipients,
            ..Message::default()
        }
    }

    /// The one builder of a complete message: the envelope and what its text
    /// says. The milter session and replay both call it.
    pub fn new(env: Envelope, content: &Content) -> Message {
        Message {
            header_from: content.header_from.clone(),
            display_name: content.display_name.clone(),
            reply_to: content.reply_to.clone(),
            message_id: content.message_id.clone(),
            references: content.references.clone(),
            has_attachment: content.has_attachment,
            has_url: content.has_url,
            html_only: content.html_only,
            link_orgs: content.link_orgs.clone(),
            addressed: content.addressed.clone(),
            list_id: content.list_id.clone(),
            mail_client: content.mail_client.clone(),
            ..Message::from_envelope(env)
        }
    }

    /// The sender key: `From:`, else the envelope sender.
    pub fn sender_key(&self) -> Option<&str> {
        self.header_from
            .as_deref()
            .or(self.envelope_from.as_deref())
    }

    pub fn direction(&self) -> Direction {
        self.direction.unwrap_or(Direction::Inbound)
    }

    /// Takes the authentication outcome.
    pub fn set_auth(&mut self, summary: Option<AuthSummary>) {
        if let Some(s) = &summary {
            self.auth_state = AuthState::from_summary(s);
        }
        self.auth = summary;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn cfg() -> Config {
        let mut c = Config {
            enterprise_domains: vec!["example.com".into()],
            internal_networks: vec!["10.0.0.0/8".parse().unwrap()],
            ..Config::default()
        };
        c.validate().unwrap();
        c
    }

    #[test]
    fn direction_from_auth_and_networks() {
        let c = cfg();
        let outside: IpAddr = "192.0.2.1".parse().unwrap();
        let inside: IpAddr = "10.1.2.3".parse().unwrap();
        assert_eq!(
            direction(&c.internal_networks, Some(outside), None),
            Direction::Inbound
        );
        assert_eq!(
            direction(&c.internal_networks, Some(outside), Some("")),
            Direction::Inbound
        );
        assert_eq!(
            direction(&c.internal_networks, Some(outside), Some("alice")),
            Direction::Outbound
        );
        assert_eq!(
            direction(&c.internal_networks, Some(inside), None),
            Direction::Outbound
        );
        let mapped: IpAddr = "::ffff:10.1.2.3".parse().unwrap();
        assert_eq!(
            direction(&c.internal_networks, Some(mapped), None),
            Direction::Outbound
        );
        assert_eq!(
            direction(&c.internal_networks, None, None),
            Direction::Outbound
        );
    }
}
