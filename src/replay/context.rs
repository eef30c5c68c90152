//! The SMTP context of an archived message, rebuilt from its headers: the
//! client IP and HELO from the topmost `Received:` whose client is not one
//! of `trusted_relays` (so the hops inside the organisation are skipped),
//! the time from that header (else `Date:`), and the envelope.

use crate::config::Config;
use crate::message::{direction, normalize_envelope, Content, Envelope, ReverseDns};
use crate::vocab::{canonical_ip, clean_address, domain_of, Direction};
use ipnet::IpNet;
use mail_parser::HeaderValue;
use std::net::IpAddr;

/// `with` protocols of authenticated submission (RFC 3848).
const AUTH_PROTOCOLS: [mail_parser::Protocol; 8] = {
    use mail_parser::Protocol::*;
    [
        ESMTPA, ESMTPSA, LMTPA, LMTPSA, UTF8SMTPA, UTF8SMTPSA, UTF8LMTPA, UTF8LMTPSA,
    ]
};

/// The SMTP context of an archived message.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Context {
    pub client_ip: Option<IpAddr>,
    /// The reverse DNS name the receiving MTA wrote, when its format says.
    pub reverse_dns: ReverseDns,
    pub helo: String,
    pub time: Option<u64>,
    pub authenticated_submission: bool,
}

/// Rebuilds the client, HELO and time from `Received:` headers.
pub fn smtp_context(msg: &mail_parser::Message<'_>, relays: &[IpNet]) -> Context {
    let raw_received: Vec<&str> = msg
        .headers_raw()
        .filter(|(n, _)| n.eq_ignore_ascii_case("received"))
        .map(|(_, v)| v)
        .collect();
    let mut ctx = Context::default();
    for (i, r) in msg.received_all().enumerate() {
        let ip = r.from_ip.or(match &r.from {
            Some(mail_parser::Host::IpAddr(ip)) => Some(*ip),
            _ => None,
        });
        let Some(ip) = ip.map(canonical_ip) else {
            continue;
        };
        if relays.iter().any(|n| n.contains(&ip)) {
            continue;
        }
        ctx.client_ip = Some(ip);
        // Postfix writes `(NAME [IP])` or `(unknown [IP])`, Sendmail `([IP])`
        // when there is none; other formats (`(IP)`) do not say.
        ctx.reverse_dns = match r.from_iprev() {
            Some(n) => ReverseDns::reported(n),
            None if raw_received
                .get(i)
                .is_some_and(|v| v.contains(&format!("([{ip}])"))) =>
            {
                ReverseDns::None
            }
            None => ReverseDns::Unknown,
        };
        ctx.helo = match r.helo.as_ref().or(r.from.as_ref()) {
            Some(mail_parser::Host::Name(n)) => n.to_string(),
            Some(mail_parser::Host::IpAddr(ip)) => format!("[{ip}]"),
            None => String::new(),
        };
        ctx.time = r
            .date
            .as_ref()
            .map(|d| d.to_timestamp())
            .filter(|t| *t > 0)
            .map(|t| t as u64);
        ctx.authenticated_submission = r.with.as_ref().is_some_and(|w| AUTH_PROTOCOLS.contains(w))
            || raw_received
                .get(i)
                .is_some_and(|v| v.contains("Authenticated sender:"));
        break;
    }
    if ctx.time.is_none() {
        ctx.time = msg
            .date()
            .map(|d| d.to_timestamp())
            .filter(|t| *t > 0)
            .map(|t| t as u64);
    }
    ctx
}

fn addresses(v: &HeaderValue<'_>) -> Vec<String> {
    match v {
        HeaderValue::Address(a) => a
            .iter()
            .filter_map(|x| x.address())
            .filter_map(clean_address)
            .collect(),
        HeaderValue::Text(t) => clean_address(t).into_iter().collect(),
        HeaderValue::TextList(l) => l.iter().filter_map(|t| clean_address(t)).collect(),
        _ => Vec::new(),
    }
}

/// Rebuilds the envelope of an archived message as the milter would have
/// seen it (DESIGN.md): client, HELO and time from `Received:`, the
/// envelope sender from `Return-Path:`, recipients from `Delivered-To:` /
/// `X-Original-To:` (else To and Cc), the direction by the live rule — or,
/// without any usable `Received:`, outbound when `From:` is an enterprise
/// address.
pub fn envelope(
    cfg: &Config,
    relays: &[IpNet],
    msg: &mail_parser::Message<'_>,
    content: &Content,
) -> Result<Envelope, String> {
    let ctx = smtp_context(msg, relays);
    let time = ctx.time.ok_or("no date in Received: or Date:")?;
    let envelope_from = match msg.return_path() {
        HeaderValue::Address(a) => a.first().and_then(|x| x.address()).map(str::to_string),
        HeaderValue::Text(t) => Some(t.to_string()),
        HeaderValue::TextList(l) => l.first().map(|t| t.to_string()),
        _ => None,
    }
    .and_then(|a| normalize_envelope(&a, &cfg.recipient_delimiter));
    let mut recipients: Vec<String> = Vec::new();
    for name in ["Delivered-To", "X-Original-To"] {
        for (_, v) in msg
            .headers_raw()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            if let Some(a) = normalize_envelope(v.trim(), &cfg.recipient_delimiter) {
                if !recipients.contains(&a) {
                    recipients.push(a);
                }
            }
        }
    }
    if recipients.is_empty() {
        for h in [mail_parser::HeaderName::To, mail_parser::HeaderName::Cc] {
            for v in msg.header_values(h) {
                for a in addresses(v) {
                    if !recipients.contains(&a) {
                        recipients.push(a);
                    }
                }
            }
        }
    }
    let direction = match ctx.client_ip {
        Some(ip) => direction(
            &cfg.internal_networks,
            Some(ip),
            ctx.authenticated_submission.then_some("submission"),
        ),
        None if content
            .header_from
            .as_deref()
            .is_some_and(|f| cfg.is_enterprise_domain(domain_of(f))) =>
        {
            Direction::Outbound
        }
        None => Direction::Inbound,
    };
    Ok(Envelope {
        time,
        queue_id: String::new(),
        direction: Some(direction),
        client_ip: ctx.client_ip,
        reverse_dns: ctx.reverse_dns,
        helo: ctx.helo,
        envelope_from,
        recipients,
    })
}
#[cfg(test)]
mod tests {
    use super::*;
    use mail_parser::MessageParser;

    #[test]
    fn received_parsing_skips_trusted_relays_v4_and_v6() {
        let raw = b"Received: from relay2.example.com (relay2.example.com [10.1.1.2])\r\n\tby mx.example.com with ESMTP id A; Tue, 10 Apr 2007 10:00:02 +0000\r\nReceived: from mail.partner.example (mail.partner.example [192.0.2.10])\r\n\tby relay2.example.com with ESMTP id B; Tue, 10 Apr 2007 10:00:01 +0000\r\nReceived: from laptop ([198.51.100.1])\r\n\tby mail.partner.example with ESMTPSA id C; Tue, 10 Apr 2007 10:00:00 +0000\r\nFrom: x@partner.example\r\nDate: Mon, 09 Apr 2007 00:00:00 +0000\r\n\r\nbody\r\n";
        let m = MessageParser::new().parse(&raw[..]).unwrap();
        let relays: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let c = smtp_context(&m, &relays);
        assert_eq!(c.client_ip, Some("192.0.2.10".parse().unwrap()));
        assert_eq!(c.helo, "mail.partner.example");
        assert_eq!(c.time, Some(1176199201));
        assert!(!c.authenticated_submission);
        // Without trusted relays, the topmost hop is the client.
        let c = smtp_context(&m, &[]);
        assert_eq!(c.client_ip, Some("10.1.1.2".parse().unwrap()));

        let v6 = b"Received: from mx6.partner.example (mx6.partner.example [IPv6:2001:db8:5::25])\r\n\tby mx.example.com with ESMTPS; Tue, 10 Apr 2007 10:00:02 +0000\r\nFrom: y@partner.example\r\n\r\nb\r\n";
        let m = MessageParser::new().parse(&v6[..]).unwrap();
        assert_eq!(
            smtp_context(&m, &[]).client_ip,
            Some("2001:db8:5::25".parse().unwrap())
        );

        let none = b"From: z@partner.example\r\nDate: Tue, 10 Apr 2007 10:00:00 +0000\r\n\r\nb\r\n";
        let m = MessageParser::new().parse(&none[..]).unwrap();
        let c = smtp_context(&m, &[]);
        assert_eq!((c.client_ip, c.time), (None, Some(1176199200)));
    }
}
