//! A sender's habits, for behaviour change: a compromised correspondent's
//! account sends authenticated mail, so authentication cannot tell; its
//! habits can. Per sender a bounded set (`SetKind::Fingerprint`, exact up
//! to `DISTINCT_K` members) of the mail clients (`User-Agent:` /
//! `X-Mailer:` names without versions), the DKIM selectors of its aligned
//! signatures, and the organisations its Reply-To pointed to; with the
//! networks it sends from (`SetKind::MtaNetworks`). `behaviour_change` is
//! raised when two or more break at once (`reputation::anomaly`). The
//! habits of such a message are learned only once the enterprise answers
//! it (`pipeline::learn`).

use crate::auth::AuthResult;
use crate::message::Message;
use crate::vocab::{domain_of, org_domain};

/// One habit of a message: what it is (for the anomaly's detail), the
/// member stored, and whether seeing it anew counts as a break.
pub struct Habit {
    pub what: &'static str,
    pub member: String,
    pub counts: bool,
}

/// The habits `msg` shows for `sender`.
pub fn habits(msg: &Message, sender: &str) -> Vec<Habit> {
    let from_org = org_domain(domain_of(sender));
    let mut out = vec![Habit {
        what: "mail client",
        member: format!("client:{}", msg.mail_client.as_deref().unwrap_or("none")),
        counts: true,
    }];
    if let Some(a) = &msg.auth {
        for d in a.dkim.iter().filter(|d| {
            d.result == AuthResult::Pass
                && !d.selector.is_empty()
                && org_domain(&d.domain) == from_org
        }) {
            out.push(Habit {
                what: "DKIM selector",
                member: format!("dkim:{}/{}", d.domain, d.selector),
                counts: true,
            });
        }
    }
    let reply_org = msg
        .reply_to
        .as_deref()
        .map(|r| org_domain(domain_of(r)))
        .filter(|o| *o != from_org);
    out.push(Habit {
        what: "Reply-To organisation",
        counts: reply_org.is_some(),
        member: format!("replyto:{}", reply_org.as_deref().unwrap_or("none")),
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{AuthSummary, DkimVerdict};

    #[test]
    fn habits_of_a_message() {
        let m = Message {
            mail_client: Some("mozilla thunderbird".into()),
            reply_to: Some("pay@elsewhere.example".into()),
            auth: Some(AuthSummary {
                dkim: vec![
                    DkimVerdict {
                        domain: "partner.example".into(),
                        result: AuthResult::Pass,
                        selector: "s1".into(),
                    },
                    DkimVerdict {
                        domain: "esp.example".into(),
                        result: AuthResult::Pass,
                        selector: "x".into(),
                    },
                ],
                ..AuthSummary::default()
            }),
            ..Message::default()
        };
        let h: Vec<String> = habits(&m, "carol@partner.example")
            .into_iter()
            .map(|h| h.member)
            .collect();
        assert_eq!(
            h,
            [
                "client:mozilla thunderbird",
                "dkim:partner.example/s1",
                "replyto:elsewhere.example"
            ]
        );
        let none = habits(&Message::default(), "carol@partner.example");
        assert_eq!(none[0].member, "client:none");
        assert!(!none[1].counts, "no Reply-To elsewhere is no break");
    }
}
