//! What a never-seen MTA's connection shows of it, before any history can:
//! `no_reverse_dns`, `dynamic_reverse_dns` (an access line's name: its
//! address in it, or `dsl`, `dyn`, `pool`, …) and `helo_not_fqdn`. Mail
//! servers have a reverse DNS name of their own and greet with a domain
//! name; a compromised home computer does neither. They are the long-known
//! connection checks of MTAs (Postfix's `reject_unknown_client_hostname`
//! and `reject_non_fqdn_helo_hostname`), here weighed, not refused, and
//! only while the MTA and its network have no history to speak
//! (`Engine::assess` applies them to the MTA's rating).

use super::Anomaly;
use crate::config::AnomalyConfig;
use crate::message::{Message, ReverseDns};
use crate::vocab::org_domain;
use std::net::IpAddr;

/// Labels of access-line names (`dsl-1-2.example.net`, `pool-12.x`); a
/// label counts with digits after it (`ppp85`), not inside a word.
const ACCESS_LABELS: [&str; 24] = [
    "dsl",
    "adsl",
    "vdsl",
    "xdsl",
    "dyn",
    "dynamic",
    "dynip",
    "pool",
    "dhcp",
    "cable",
    "ppp",
    "pppoe",
    "dial",
    "dialup",
    "dialin",
    "broadband",
    "cust",
    "customer",
    "client",
    "res",
    "residential",
    "home",
    "user",
    "catv",
];

/// Whether a reverse DNS name looks like an access line's: three or more
/// of the address's numbers in it (IPv4), or an access label.
pub fn dynamic_name(name: &str, ip: IpAddr) -> bool {
    let lower = name.to_ascii_lowercase();
    if let IpAddr::V4(v4) = ip {
        let numbers: Vec<&str> = lower
            .split(|c: char| !c.is_ascii_digit())
            .filter(|s| !s.is_empty())
            .collect();
        let hits = v4
            .octets()
            .iter()
            .filter(|o| numbers.contains(&o.to_string().as_str()))
            .count();
        if hits >= 3 {
            return true;
        }
    }
    // The labels left of the registrable domain only: a provider may be
    // called "home" or "cable" itself.
    let org = org_domain(&lower);
    let Some(host_part) = lower
        .strip_suffix(org.as_str())
        .and_then(|h| h.strip_suffix('.'))
    else {
        return false;
    };
    host_part
        .split(['.', '-', '_'])
        .map(|w| w.trim_end_matches(|c: char| c.is_ascii_digit()))
        .any(|w| ACCESS_LABELS.contains(&w))
}

/// A HELO name that is no domain name: no dot, or a bare address.
pub fn helo_not_fqdn(helo: &str) -> bool {
    let h = helo.trim().trim_end_matches('.');
    if h.is_empty() || h.starts_with('[') {
        // None given is another matter; an address literal is allowed.
        return false;
    }
    !h.contains('.') || h.parse::<IpAddr>().is_ok()
}

/// The connection anomalies of an inbound message's MTA.
pub fn connection_anomalies(ac: &AnomalyConfig, msg: &Message) -> Vec<Anomaly> {
    let mut out = Vec::new();
    let Some(ip) = msg.client_ip else {
        return out;
    };
    match &msg.reverse_dns {
        ReverseDns::Unknown => {}
        ReverseDns::None => out.push(Anomaly::new(
            "no_reverse_dns",
            ac.no_reverse_dns,
            format!("{ip} has no reverse DNS name"),
        )),
        ReverseDns::Name(n) if dynamic_name(n, ip) => out.push(Anomaly::new(
            "dynamic_reverse_dns",
            ac.dynamic_reverse_dns,
            format!("{n} looks like an access line"),
        )),
        ReverseDns::Name(_) => {}
    }
    if helo_not_fqdn(&msg.helo) {
        out.push(Anomaly::new(
            "helo_not_fqdn",
            ac.helo_not_fqdn,
            format!("HELO {}", msg.helo.chars().take(60).collect::<String>()),
        ));
    }
    out.retain(|a| a.points != 0.0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_line_names_are_told_from_mail_servers() {
        let ip = |s: &str| s.parse().unwrap();
        for (name, addr) in [
            ("89-243-122-175.dsl.example.net", "89.243.122.175"),
            ("host175.122.243.89.example.net", "89.243.122.175"),
            ("pool-71-105-9-4.nycmny.fios.example.net", "71.105.9.4"),
            ("ppp85-140-1-2.pppoe.example.ru", "85.140.1.2"),
            ("c-24-1-2-3.hsd1.il.comcast.example", "24.1.2.3"),
            ("dyn.example-isp.com.br", "200.1.2.3"),
            ("cpe.cable12.example.org", "10.1.2.3"),
        ] {
            assert!(dynamic_name(name, ip(addr)), "{name}");
        }
        for (name, addr) in [
            ("mail-ed1-f65.google.com", "209.85.208.65"),
            ("a8-31.smtp-out.amazonses.com", "54.240.8.31"),
            (
                "mail-db5eur03on2090.outbound.protection.outlook.com",
                "40.107.3.90",
            ),
            ("murphy.debian.org", "70.103.162.31"),
            ("mx.home.example", "192.0.2.1"),
            ("smtp.cable.example", "192.0.2.1"),
            ("o1.email.userbase.example", "192.0.2.1"),
            ("example.com", "192.0.2.1"),
        ] {
            assert!(!dynamic_name(name, ip(addr)), "{name}");
        }
    }

    #[test]
    fn reported_names() {
        assert_eq!(ReverseDns::reported("unknown"), ReverseDns::None);
        assert_eq!(ReverseDns::reported("[192.0.2.1]"), ReverseDns::None);
        assert_eq!(
            ReverseDns::reported("MX.Partner.Example."),
            ReverseDns::Name("mx.partner.example".into())
        );
    }

    #[test]
    fn helo_names_without_a_dot_or_bare_addresses_are_not_domains() {
        assert!(helo_not_fqdn("your-c94f920e24"));
        assert!(helo_not_fqdn("129.97.78.23"));
        assert!(helo_not_fqdn("localhost"));
        assert!(!helo_not_fqdn("mx.partner.example"));
        assert!(!helo_not_fqdn("[192.0.2.1]"));
        assert!(!helo_not_fqdn(""));
    }

    #[test]
    fn a_connection_names_what_it_lacks() {
        let ac = AnomalyConfig::default();
        let mut m = Message {
            client_ip: Some("89.243.122.175".parse().unwrap()),
            helo: "your-c94f920e24".into(),
            ..Message::default()
        };
        let names = |m: &Message| -> Vec<&'static str> {
            connection_anomalies(&ac, m)
                .iter()
                .map(|a| a.name)
                .collect()
        };
        assert_eq!(names(&m), ["helo_not_fqdn"], "an archive that does not say");
        m.reverse_dns = ReverseDns::None;
        assert_eq!(names(&m), ["no_reverse_dns", "helo_not_fqdn"]);
        m.reverse_dns = ReverseDns::Name("89-243-122-175.dsl.example.net".into());
        assert_eq!(names(&m), ["dynamic_reverse_dns", "helo_not_fqdn"]);
        m.reverse_dns = ReverseDns::Name("mx.partner.example".into());
        m.helo = "mx.partner.example".into();
        assert!(names(&m).is_empty());
        m.client_ip = None;
        m.reverse_dns = ReverseDns::None;
        assert!(names(&m).is_empty(), "locally submitted mail has no MTA");
    }
}
