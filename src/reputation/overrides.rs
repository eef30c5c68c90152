//! Administrator overrides: a fixed class for a sender, a domain, an MTA or
//! a network, from `sra-milter override` (kept in the store) or from the
//! config's `[lists]` (`allow` = trusted, `block` = malicious).
//!
//! The most specific match wins: an address over its domain, a domain over
//! its parent domain, a longer network prefix over a shorter one. At equal
//! specificity an override from the store (the newer, deliberate act) wins
//! over a config list entry.

use crate::config::ListsConfig;
use crate::store::Override;
use crate::vocab::{canonical_ip, domain_of, Class, Target};
use std::net::IpAddr;

/// All overrides in force, ready for look-ups.
#[derive(Clone, Debug, Default)]
pub struct OverrideTable {
    entries: Vec<Override>,
}

impl OverrideTable {
    pub fn new(from_store: Vec<Override>, cfg: &ListsConfig) -> OverrideTable {
        let mut entries = from_store;
        for (list, class) in [(&cfg.block, Class::Malicious), (&cfg.allow, Class::Trusted)] {
            for e in list {
                if let Ok(target) = Target::parse_list_entry(e) {
                    entries.push(Override {
                        target,
                        class,
                        reason: "config list".into(),
                        time: 0,
                        source: "config".into(),
                    });
                }
            }
        }
        OverrideTable { entries }
    }

    pub fn entries(&self) -> &[Override] {
        &self.entries
    }

    fn best(&self, mut rank: impl FnMut(&Target) -> Option<u32>) -> Option<&Override> {
        self.entries
            .iter()
            .filter_map(|o| rank(&o.target).map(|r| (r, o.source == "store", o)))
            .max_by_key(|(r, from_store, _)| (*r, *from_store))
            .map(|(_, _, o)| o)
    }

    /// The override for a sender address: the address itself (in clear,
    /// or `stored` as the store keeps it, `ReputationStore::address_key`),
    /// else its domain or the nearest parent domain.
    pub fn for_sender(&self, addr: &str, stored: &str) -> Option<&Override> {
        let domain = domain_of(addr);
        self.best(|t| match t {
            Target::Sender(a) if a == addr || a == stored => Some(1000),
            Target::Domain(d) => domain_rank(domain, d),
            _ => None,
        })
    }

    pub fn for_domain(&self, domain: &str) -> Option<&Override> {
        self.best(|t| match t {
            Target::Domain(d) => domain_rank(domain, d),
            _ => None,
        })
    }

    pub fn for_ip(&self, ip: IpAddr) -> Option<&Override> {
        let ip = canonical_ip(ip);
        self.best(|t| match t {
            Target::Mta(n) if n.contains(&ip) => Some(u32::from(n.prefix_len())),
            _ => None,
        })
    }
}

/// How specifically domain rule `rule` matches `domain` (more labels, more
/// specific), or `None`.
fn domain_rank(domain: &str, rule: &str) -> Option<u32> {
    let matches = domain == rule
        || (domain.len() > rule.len()
            && domain.ends_with(rule)
            && domain.as_bytes()[domain.len() - rule.len() - 1] == b'.');
    matches.then(|| rule.split('.').count() as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(t: Target, class: Class) -> Override {
        Override {
            target: t,
            class,
            reason: String::new(),
            time: 1,
            source: "store".into(),
        }
    }

    #[test]
    fn most_specific_override_wins() {
        let table = OverrideTable::new(
            vec![
                o(Target::domain("example.org").unwrap(), Class::Malicious),
                o(Target::sender("ceo@example.org").unwrap(), Class::Trusted),
                o(Target::mta("192.0.2.0/24").unwrap(), Class::Suspicious),
                o(Target::mta("192.0.2.9").unwrap(), Class::Trusted),
            ],
            &ListsConfig::default(),
        );
        assert_eq!(
            table
                .for_sender("ceo@example.org", "ceo@example.org")
                .unwrap()
                .class,
            Class::Trusted
        );
        assert_eq!(
            table
                .for_sender("x@example.org", "x@example.org")
                .unwrap()
                .class,
            Class::Malicious
        );
        assert_eq!(
            table
                .for_sender("x@mail.example.org", "x@mail.example.org")
                .unwrap()
                .class,
            Class::Malicious
        );
        assert!(table
            .for_sender("x@notexample.org", "x@notexample.org")
            .is_none());
        assert_eq!(
            table.for_ip("192.0.2.9".parse().unwrap()).unwrap().class,
            Class::Trusted
        );
        assert_eq!(
            table.for_ip("192.0.2.8".parse().unwrap()).unwrap().class,
            Class::Suspicious
        );
        assert!(table.for_ip("198.51.100.1".parse().unwrap()).is_none());
    }

    #[test]
    fn config_lists_apply_and_store_wins_ties() {
        let lists = ListsConfig {
            allow: vec!["partner.example".into()],
            block: vec!["203.0.113.0/24".into(), "spam@partner.example".into()],
        };
        let table = OverrideTable::new(
            vec![o(
                Target::domain("partner.example").unwrap(),
                Class::Suspicious,
            )],
            &lists,
        );
        assert_eq!(
            table
                .for_sender("a@partner.example", "a@partner.example")
                .unwrap()
                .class,
            Class::Suspicious
        );
        assert_eq!(
            table
                .for_sender("spam@partner.example", "spam@partner.example")
                .unwrap()
                .class,
            Class::Malicious
        );
        assert_eq!(
            table.for_ip("203.0.113.5".parse().unwrap()).unwrap().class,
            Class::Malicious
        );
    }
}
