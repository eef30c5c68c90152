//! Lookalike domains: the From domain resembles an enterprise domain or a
//! correspondent's (edit distance, homoglyphs and punycode, swapped TLD,
//! hyphens and dots inside the name, the real name with words added, the
//! real domain used as a subdomain).

use crate::vocab::org_domain;
use std::collections::HashSet;

/// One protected organisational domain, with what the check compares
/// precomputed (the check runs for every inbound message, over every
/// correspondent's domain).
#[derive(Clone, Debug)]
struct Entry {
    org: String,
    /// `org` followed by a dot: the real domain used as a subdomain.
    dotted: String,
    /// Byte length of the registrable label (`example` of `example.co.uk`).
    label_len: usize,
    /// The label's skeleton, and its length in characters.
    sk: String,
    sk_chars: usize,
}

impl Entry {
    fn label(&self) -> &str {
        &self.org[..self.label_len]
    }
    fn suffix(&self) -> &str {
        &self.org[self.label_len..]
    }
}

/// Domains a lookalike may imitate: the enterprise's and its
/// correspondents' organisational domains.
#[derive(Clone, Debug, Default)]
pub struct Protected {
    orgs: Vec<Entry>,
    names: HashSet<String>,
}

impl Protected {
    pub fn new<'a>(domains: impl IntoIterator<Item = &'a str>) -> Protected {
        let mut p = Protected::default();
        for d in domains {
            let org = org_domain(d);
            if p.names.insert(org.clone()) {
                let label_len = label_of(&org).len();
                let sk = skeleton(&org[..label_len]);
                p.orgs.push(Entry {
                    dotted: format!("{org}."),
                    label_len,
                    sk_chars: sk.chars().count(),
                    sk,
                    org,
                });
            }
        }
        p
    }

    pub fn len(&self) -> usize {
        self.orgs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.orgs.is_empty()
    }

    pub fn contains(&self, org: &str) -> bool {
        self.names.contains(org)
    }

    /// The protected domain `domain` imitates, and how. Covers the fuzzer
    /// classes of dnstwist: addition, omission, repetition, insertion,
    /// replacement, transposition, vowel swap and bitsquatting (edit
    /// distance), homoglyphs incl. Unicode/IDN confusables, `rn` for `m`
    /// and `vv` for `w` (the skeleton), hyphenation (hyphens ignored),
    /// subdomain (a dot inside the name), TLD swap, and dictionary words
    /// added; and the real domain used as a subdomain.
    pub fn lookalike(&self, domain: &str) -> Option<String> {
        let unicode = to_unicode(domain);
        let org = org_domain(&unicode);
        if self.contains(&org) || self.contains(&org_domain(domain)) {
            return None;
        }
        let label = label_of(&org);
        let suffix = &org[label.len()..];
        // The name as read: the labels before the public suffix, without
        // dots and hyphens (`acm.ecorp.com`, `acme-corp.com` read `acmecorp`).
        let unicode = unicode.trim_end_matches('.');
        let read: String = unicode
            .get(..unicode.len().saturating_sub(suffix.len()))
            .unwrap_or(label)
            .chars()
            .filter(|c| *c != '.' && *c != '-')
            .collect();
        let sk = skeleton(label);
        let read_sk = skeleton(&read);
        let bare_sk = skeleton(&label.replace('-', ""));
        let cands: [(&str, usize); 3] =
            [&sk, &bare_sk, &read_sk].map(|c| (c.as_str(), c.chars().count()));
        for e in &self.orgs {
            let (p, plabel, psk) = (&e.org, e.label(), e.sk.as_str());
            if plabel.len() < 4 {
                continue;
            }
            if unicode.starts_with(&e.dotted) {
                return Some(format!("{p} used as a subdomain of {org}"));
            }
            if label == plabel && suffix != e.suffix() {
                return Some(format!("{p} with another suffix"));
            }
            if sk == psk && label != plabel {
                return Some(format!("{p} spelled with look-alike characters"));
            }
            if bare_sk == psk || read_sk == psk {
                return Some(format!("{p} split by a dot or hyphen"));
            }
            for (cand, chars) in cands {
                if chars.abs_diff(e.sk_chars) > 2 {
                    continue;
                }
                let d = distance(cand, psk);
                if (d == 1 && e.sk_chars >= 5) || (d == 2 && e.sk_chars >= 10) {
                    return Some(format!("{p} at edit distance {d}"));
                }
            }
            let words_added = |rest: Option<&str>| rest.is_some_and(|r| r.starts_with(['-', '.']));
            if words_added(label.strip_prefix(plabel))
                || label
                    .strip_suffix(plabel)
                    .is_some_and(|r| r.ends_with(['-', '.']))
            {
                return Some(format!("{p} with words added"));
            }
        }
        None
    }
}

/// The registrable label: `example` of `example.co.uk`.
fn label_of(org: &str) -> &str {
    org.split('.').next().unwrap_or(org)
}

fn to_unicode(domain: &str) -> String {
    if domain.split('.').any(|l| l.starts_with("xn--")) {
        let (u, r) = idna::domain_to_unicode(domain);
        if r.is_ok() {
            return u;
        }
    }
    domain.to_string()
}

/// Maps characters readers confuse onto one representative (a small,
/// practical subset of Unicode's confusables: Cyrillic and Greek
/// look-alikes of Latin letters, digits for letters, `rn` for `m`).
pub fn skeleton(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars().flat_map(char::to_lowercase) {
        let m = match c {
            'а' | 'α' | '@' => 'a',
            'е' | 'ε' | '3' => 'e',
            'о' | 'ο' | '0' | 'ө' => 'o',
            'р' | 'ρ' => 'p',
            'с' | 'ϲ' => 'c',
            'у' | 'γ' => 'y',
            'х' | 'χ' => 'x',
            'і' | 'ı' | 'í' | 'ì' | '1' | 'l' | '|' | 'ӏ' => 'l',
            'ј' => 'j',
            'ѕ' | '5' | '$' => 's',
            'ԁ' => 'd',
            'ɡ' => 'g',
            'ո' => 'n',
            'ν' => 'v',
            'к' | 'κ' => 'k',
            'м' => 'm',
            'т' | 'τ' => 't',
            'в' => 'b',
            'н' => 'h',
            'ω' => 'w',
            'á' | 'à' | 'â' | 'ä' | 'ã' | 'å' => 'a',
            'é' | 'è' | 'ê' | 'ë' => 'e',
            'ó' | 'ò' | 'ô' | 'ö' | 'õ' => 'o',
            'ú' | 'ù' | 'û' | 'ü' => 'u',
            other => other,
        };
        out.push(m);
    }
    out.replace("rn", "m").replace("vv", "w")
}

/// Damerau-Levenshtein (optimal string alignment) distance.
pub fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    if a.len().abs_diff(b.len()) > 2 {
        return 3;
    }
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn protected() -> Protected {
        Protected::new(["example.com", "partner-bank.co.uk", "acme.org"])
    }

    #[test]
    fn lookalikes_of_enterprise_and_correspondent_domains() {
        let p = protected();
        for d in [
            "examp1e.com",          // digit for letter
            "exarnple.com",         // rn for m
            "exampel.com",          // transposition
            "example.net",          // swapped suffix
            "example.co",           // swapped suffix
            "xn--exmple-4nf.com",   // punycode with Cyrillic а
            "еxample.com",          // Cyrillic е (unicode form)
            "example-secure.com",   // words added
            "example.com.evil.net", // the real domain as a subdomain
            "partner-bank.com",     // correspondent's, swapped suffix
            "partnerbank.co.uk",    // distance 1
            "exa.mple.com",         // a dot inside the name (subdomain class)
            "exam-ple.com",         // hyphenation
            "exxample.com",         // repetition
            "exmple.com",           // omission
            "exampke.com",          // replacement
            "exampple.org",         // insertion, another suffix
            "exanple.com",          // bitsquatting (m ^ 0x03 = n)
            "exampla.com",          // vowel swap
            "examplex.com",         // addition
            "partnerbamk.co.uk",    // a correspondent's, replacement
            "acme.co",              // TLD swap
        ] {
            assert!(p.lookalike(d).is_some(), "{d} should be flagged");
        }
        for d in [
            "example.com",
            "mail.example.com",
            "acme.org",
            "partner.example",
            "sample.org",
            "examples-of-things.net",
            "google.com",
            "shop.bigexample.com",
            "examplebank.com",
        ] {
            assert_eq!(p.lookalike(d), None, "{d} should not be flagged");
        }
        // Odd input never panics (trailing dots, multi-byte letters).
        for d in ["x.öm..", "..", "", "exa\u{130}mple.com", "é.", "ß.öm."] {
            let _ = p.lookalike(d);
        }
        assert!(
            Protected::new(["abc.com"]).lookalike("abd.com").is_none(),
            "short labels are not compared"
        );
    }

    #[test]
    fn distances_and_skeletons() {
        assert_eq!(distance("example", "exmaple"), 1);
        assert_eq!(distance("example", "examples"), 1);
        assert_eq!(distance("example", "sample"), 2);
        assert_eq!(skeleton("pаypa1"), skeleton("paypal"));
        assert_eq!(skeleton("rnicrosoft"), skeleton("microsoft"));
    }
}
