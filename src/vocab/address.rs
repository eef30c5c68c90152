//! Addresses, domains and IP addresses as sra-milter compares them, and
//! the target of an administrator's override.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::IpAddr;

/// IPv4-mapped IPv6 addresses (`::ffff:192.0.2.1`) are their IPv4 address.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// Lower-cases and trims an address; strips angle brackets. Returns `None`
/// for anything without a local part and a domain.
pub fn clean_address(addr: &str) -> Option<String> {
    let a = addr
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim()
        .to_lowercase();
    let (local, domain) = a.rsplit_once('@')?;
    let domain = domain.trim_end_matches('.');
    if local.is_empty()
        || domain.is_empty()
        || !domain.contains('.') && domain != "localhost"
        || a.contains(char::is_whitespace)
    {
        return None;
    }
    Some(format!("{local}@{domain}"))
}

/// The domain part of a cleaned address.
pub fn domain_of(addr: &str) -> &str {
    addr.rsplit_once('@').map(|(_, d)| d).unwrap_or("")
}

/// The organisational (registrable) domain, by the public suffix list.
pub fn org_domain(domain: &str) -> String {
    let d = domain.trim_end_matches('.').to_ascii_lowercase();
    psl::domain_str(&d).map(str::to_string).unwrap_or(d)
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "lowercase")]
pub enum Target {
    Sender(String),
    Domain(String),
    Mta(IpNet),
}

impl Target {
    pub fn sender(addr: &str) -> Result<Target, String> {
        clean_address(addr)
            .map(Target::Sender)
            .ok_or_else(|| format!("{addr:?} is not an email address"))
    }

    pub fn domain(d: &str) -> Result<Target, String> {
        let d = d.trim().trim_end_matches('.').to_ascii_lowercase();
        if d.is_empty()
            || d.contains('@')
            || d.contains(char::is_whitespace)
            || d.starts_with('.')
            || !d.contains('.')
        {
            return Err(format!("{d:?} is not a domain name"));
        }
        Ok(Target::Domain(d))
    }

    pub fn mta(s: &str) -> Result<Target, String> {
        let s = s.trim();
        let net = if s.contains('/') {
            s.parse::<IpNet>()
                .map_err(|_| format!("{s:?} is not an IP address or network"))?
                .trunc()
        } else {
            let ip: IpAddr = s
                .parse()
                .map_err(|_| format!("{s:?} is not an IP address or network"))?;
            IpNet::from(canonical_ip(ip))
        };
        Ok(Target::Mta(net))
    }

    /// A `[lists]` entry: address, domain, IP or CIDR.
    pub fn parse_list_entry(s: &str) -> Result<Target, String> {
        if s.contains('@') {
            Target::sender(s)
        } else if s.contains(':') || s.contains('/') || s.parse::<IpAddr>().is_ok() {
            Target::mta(s)
        } else {
            Target::domain(s)
        }
    }

    /// The target as the command line would have written it: addresses
    /// and domains in their normal form, networks truncated. A target that
    /// the command line would refuse (an empty address) is refused here too,
    /// whoever sends it.
    pub fn normalized(&self) -> Result<Target, String> {
        match self {
            Target::Sender(a) => Target::sender(a),
            Target::Domain(d) => Target::domain(d),
            Target::Mta(n) => Ok(Target::Mta(n.trunc())),
        }
    }

    pub fn store_key(&self) -> String {
        match self {
            Target::Sender(a) => format!("sender:{a}"),
            Target::Domain(d) => format!("domain:{d}"),
            Target::Mta(n) => format!("mta:{n}"),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.store_key())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_and_reject_nonsense() {
        assert_eq!(
            Target::mta("192.0.2.9/24").unwrap().to_string(),
            "mta:192.0.2.0/24"
        );
        assert_eq!(
            Target::mta("::ffff:192.0.2.9").unwrap().to_string(),
            "mta:192.0.2.9/32"
        );
        assert!(Target::mta("nonsense").is_err());
        assert!(Target::domain("no_dots").is_err());
        assert!(Target::sender("nobody").is_err());
        assert!(Target::parse_list_entry("2001:db8::/32").is_ok());
        assert_eq!(
            Target::Sender("Ceo@Example.ORG".into()).normalized(),
            Target::sender("ceo@example.org")
        );
        assert!(Target::Sender(String::new()).normalized().is_err());
        assert!(Target::Domain("Not A Domain".into()).normalized().is_err());
    }
}
