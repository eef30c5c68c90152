//! Keys and normal forms: the MTA key and network of a client IP, envelope
//! addresses with their tags undone, Message-IDs.

use crate::vocab::{canonical_ip, clean_address};
use std::net::{IpAddr, Ipv6Addr};

/// The MTA key: `192.0.2.1` or `2001:db8:1:2::/64`.
pub fn mta_key(ip: IpAddr) -> String {
    match canonical_ip(ip) {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let seg = v6.segments();
            let net = Ipv6Addr::new(seg[0], seg[1], seg[2], seg[3], 0, 0, 0, 0);
            format!("{net}/64")
        }
    }
}

/// The sender's network for `new_mta_for_sender`: IPv4 /24, IPv6 /48.
pub fn mta_net_key(ip: IpAddr) -> String {
    match canonical_ip(ip) {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.0/24", o[0], o[1], o[2])
        }
        IpAddr::V6(v6) => {
            let seg = v6.segments();
            format!(
                "{}/48",
                Ipv6Addr::new(seg[0], seg[1], seg[2], 0, 0, 0, 0, 0)
            )
        }
    }
}

/// Normalises an envelope address: SRS and BATV are undone, then the
/// sub-address tag is removed from the local part.
pub fn normalize_envelope(addr: &str, delimiters: &str) -> Option<String> {
    let a = clean_address(addr)?;
    let (local, domain) = a.rsplit_once('@')?;
    let (mut local, mut domain) = (local.to_string(), domain.to_string());

    // SRS (Sender Rewriting Scheme):
    //   SRS0=HHH=TT=orig-domain=orig-local@forwarder
    //   SRS1=HHH=first-forwarder==HHH=TT=orig-domain=orig-local@forwarder
    let srs = local
        .strip_prefix("srs0=")
        .or_else(|| local.strip_prefix("srs0+"))
        .or_else(|| local.strip_prefix("srs0-"))
        .map(str::to_string)
        .or_else(|| {
            let rest = local
                .strip_prefix("srs1=")
                .or_else(|| local.strip_prefix("srs1+"))
                .or_else(|| local.strip_prefix("srs1-"))?;
            rest.split_once("==").map(|(_, inner)| inner.to_string())
        });
    if let Some(rest) = srs {
        let parts: Vec<&str> = rest.splitn(4, '=').collect();
        if parts.len() == 4 && !parts[2].is_empty() && !parts[3].is_empty() {
            domain = parts[2].to_string();
            local = parts[3].to_string();
        }
    }

    // BATV: prvs=TAG=local (RFC draft), also seen as prvs=local/TAG.
    for prefix in ["prvs=", "msprvs1=", "btv1="] {
        if let Some(rest) = local.strip_prefix(prefix) {
            if let Some((_, l)) = rest.split_once('=') {
                if !l.is_empty() {
                    local = l.to_string();
                }
            } else if let Some((l, _)) = rest.split_once('/') {
                local = l.to_string();
            }
            break;
        }
    }

    if !delimiters.is_empty() {
        if let Some(pos) = local.find(|c| delimiters.contains(c)) {
            if pos > 0 {
                local.truncate(pos);
            }
        }
    }
    Some(format!("{local}@{domain}"))
}

/// Normalises a Message-ID for index look-ups: angle brackets and
/// surrounding white space removed. Case is kept (the left part is
/// case-sensitive in RFC 5322 §3.6.4).
pub fn normalize_message_id(id: &str) -> Option<String> {
    let t = id
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim();
    if t.is_empty() || t.len() > 998 || t.contains(char::is_whitespace) {
        None
    } else {
        Some(t.to_string())
    }
}

/// Extracts every `<...>` message identifier from an In-Reply-To or
/// References header value.
pub fn message_ids_in(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = value;
    while let Some(start) = rest.find('<') {
        let Some(len) = rest[start..].find('>') else {
            break;
        };
        if let Some(id) = normalize_message_id(&rest[start + 1..start + len]) {
            if !out.contains(&id) {
                out.push(id);
            }
        }
        rest = &rest[start + len + 1..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mta_keys_are_v4_host_and_v6_slash_64() {
        assert_eq!(mta_key("192.0.2.7".parse().unwrap()), "192.0.2.7");
        assert_eq!(
            mta_key("2001:db8:1:2:3:4:5:6".parse().unwrap()),
            "2001:db8:1:2::/64"
        );
        assert_eq!(
            mta_key("2001:db8:1:2:ffff::1".parse().unwrap()),
            mta_key("2001:db8:1:2::99".parse().unwrap())
        );
        assert_eq!(mta_key("::ffff:192.0.2.7".parse().unwrap()), "192.0.2.7");
        assert_eq!(mta_net_key("192.0.2.7".parse().unwrap()), "192.0.2.0/24");
        assert_eq!(
            mta_net_key("2001:db8:1:2::9".parse().unwrap()),
            "2001:db8:1::/48"
        );
    }

    #[test]
    fn envelope_normalisation() {
        let n = |a| normalize_envelope(a, "+");
        assert_eq!(
            n("<Bob+news@Example.ORG>").as_deref(),
            Some("bob@example.org")
        );
        assert_eq!(
            n("prvs=1234abcd5e=bob@example.org").as_deref(),
            Some("bob@example.org")
        );
        assert_eq!(
            n("SRS0=HHH=TT=example.org=bob@forwarder.net").as_deref(),
            Some("bob@example.org")
        );
        assert_eq!(
            n("SRS1=HHH=first.net==HHH=TT=example.org=bob@second.net").as_deref(),
            Some("bob@example.org")
        );
        assert_eq!(n("+only@example.org").as_deref(), Some("+only@example.org"));
        assert_eq!(n("<>"), None);
        assert_eq!(n("no-at-sign"), None);
        assert_eq!(n("a@nodot"), None);
    }

    #[test]
    fn message_ids_extracted() {
        assert_eq!(
            message_ids_in(" <a@x> <b@y>\r\n\t<a@x> <broken"),
            vec!["a@x".to_string(), "b@y".to_string()]
        );
        assert_eq!(
            normalize_message_id(" <id@host> ").as_deref(),
            Some("id@host")
        );
        assert_eq!(normalize_message_id("<>"), None);
    }
}
