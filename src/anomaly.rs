//! Anomalies: signals beside the eleven factors, each a named contribution
//! with its own weight in `[anomalies]`, shown in the header, the verdict
//! record and `explain`.
//!
//! - `auth_regression`: a sender with authenticated history arrives
//!   unauthenticated or failing (DNS trouble excepted);
//! - `new_mta_for_sender`: a settled sender (enough authenticated mail from
//!   few networks) arrives from an MTA and a /24 (/48) never seen for it;
//! - `lookalike_domain`: the From domain resembles an enterprise domain or a
//!   trusted correspondent's (edit distance, homoglyphs and punycode,
//!   swapped TLD, the real name with words added, the real domain used as a
//!   subdomain);
//! - `display_name_impersonation`: the display name is an enterprise
//!   person's (learned from outbound mail) or a trusted correspondent's, on
//!   another address, or it shows an enterprise address;
//! - `reply_to_divergence`: Reply-To in another organisation than From;
//! - the seed framework's heuristics: `hash_like_local_part`,
//!   `hash_like_display_name`, `suspicious_tld`, `long_domain`;
//! - optional DNS checks: `sender_domain_without_mx`, `dnsbl_listed`.

use crate::auth::org_domain;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AnomalyConfig {
    // Weights (points added to the sender's score; negative penalises).
    pub auth_regression: f64,
    pub new_mta_for_sender: f64,
    pub lookalike_domain: f64,
    pub display_name_impersonation: f64,
    pub reply_to_divergence: f64,
    pub hash_like_local_part: f64,
    pub hash_like_display_name: f64,
    pub suspicious_tld: f64,
    pub long_domain: f64,
    pub sender_domain_without_mx: f64,
    pub dnsbl_listed: f64,
    /// Authenticated messages after which a sender is settled.
    pub settled_messages: u64,
    /// A settled sender uses at most this many /24 (/48) networks.
    pub settled_max_networks: u64,
    pub suspicious_tlds: Vec<String>,
    /// Longer From domains are `long_domain` (as are more than 5 labels).
    pub max_domain_length: usize,
    /// Look up MX/A of the From domain (costs a DNS query per new domain).
    pub check_sender_domain: bool,
    /// DNSBL zones queried for the client IP (none by default).
    pub dnsbl_zones: Vec<String>,
}

impl Default for AnomalyConfig {
    fn default() -> Self {
        AnomalyConfig {
            auth_regression: -30.0,
            new_mta_for_sender: -15.0,
            lookalike_domain: -35.0,
            display_name_impersonation: -30.0,
            reply_to_divergence: -10.0,
            hash_like_local_part: -8.0,
            hash_like_display_name: -5.0,
            suspicious_tld: -10.0,
            long_domain: -8.0,
            sender_domain_without_mx: -15.0,
            dnsbl_listed: -30.0,
            settled_messages: 5,
            settled_max_networks: 3,
            suspicious_tlds: [
                "zip",
                "mov",
                "xyz",
                "top",
                "click",
                "country",
                "kim",
                "work",
                "gq",
                "tk",
                "ml",
                "cf",
                "ga",
                "loan",
                "men",
                "date",
                "review",
                "stream",
                "download",
                "racing",
                "win",
                "bid",
                "party",
                "science",
                "trade",
                "accountant",
                "faith",
                "cricket",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
            max_domain_length: 50,
            check_sender_domain: false,
            dnsbl_zones: Vec::new(),
        }
    }
}

impl AnomalyConfig {
    pub fn validate(&self) -> Result<(), String> {
        let weights = [
            self.auth_regression,
            self.new_mta_for_sender,
            self.lookalike_domain,
            self.display_name_impersonation,
            self.reply_to_divergence,
            self.hash_like_local_part,
            self.hash_like_display_name,
            self.suspicious_tld,
            self.long_domain,
            self.sender_domain_without_mx,
            self.dnsbl_listed,
        ];
        if weights.iter().any(|w| !w.is_finite()) {
            return Err("anomalies: weights must be finite numbers".into());
        }
        if self.max_domain_length < 10 {
            return Err("anomalies.max_domain_length must be at least 10".into());
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Anomaly {
    pub name: &'static str,
    pub points: f64,
    pub detail: String,
}

impl Anomaly {
    pub fn new(name: &'static str, points: f64, detail: impl Into<String>) -> Anomaly {
        Anomaly {
            name,
            points,
            detail: detail.into(),
        }
    }
}

/// Domains a lookalike may imitate: the enterprise's and trusted
/// correspondents' organisational domains.
#[derive(Clone, Debug, Default)]
pub struct Protected {
    /// (organisational domain, its registrable label skeleton)
    orgs: Vec<(String, String)>,
}

impl Protected {
    pub fn new<'a>(domains: impl IntoIterator<Item = &'a str>) -> Protected {
        let mut orgs: Vec<(String, String)> = Vec::new();
        for d in domains {
            let org = org_domain(d);
            if !orgs.iter().any(|(o, _)| *o == org) {
                let sk = skeleton(label_of(&org));
                orgs.push((org, sk));
            }
        }
        Protected { orgs }
    }

    pub fn len(&self) -> usize {
        self.orgs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.orgs.is_empty()
    }

    pub fn contains(&self, org: &str) -> bool {
        self.orgs.iter().any(|(o, _)| o == org)
    }

    /// The protected domain `domain` imitates, and how.
    pub fn lookalike(&self, domain: &str) -> Option<String> {
        let unicode = to_unicode(domain);
        let org = org_domain(&unicode);
        if self.contains(&org) || self.contains(&org_domain(domain)) {
            return None;
        }
        let label = label_of(&org);
        let sk = skeleton(label);
        let suffix = &org[label.len()..];
        for (p, psk) in &self.orgs {
            let plabel = label_of(p);
            let psuffix = &p[plabel.len()..];
            if plabel.len() < 4 {
                continue;
            }
            if unicode.starts_with(&format!("{p}.")) {
                return Some(format!("{p} used as a subdomain of {org}"));
            }
            if label == plabel && suffix != psuffix {
                return Some(format!("{p} with another suffix"));
            }
            if sk == *psk && label != plabel {
                return Some(format!("{p} spelled with look-alike characters"));
            }
            let d = distance(&sk, psk);
            if (d == 1 && psk.chars().count() >= 5) || (d == 2 && psk.chars().count() >= 10) {
                return Some(format!("{p} at edit distance {d}"));
            }
            for sep in ['-', '.'] {
                if label.starts_with(&format!("{plabel}{sep}"))
                    || label.ends_with(&format!("{sep}{plabel}"))
                {
                    return Some(format!("{p} with words added"));
                }
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

/// A display name normalised for comparison: lower case, letters and
/// digits, single spaces. `None` when too generic to compare (one short
/// word).
pub fn normalize_name(name: &str) -> Option<String> {
    let cleaned: String = name
        .chars()
        .map(|c| if c.is_alphanumeric() { c } else { ' ' })
        .collect::<String>()
        .to_lowercase();
    let words: Vec<&str> = cleaned.split_whitespace().collect();
    let joined = words.join(" ");
    if words.len() >= 2 || joined.chars().count() >= 8 {
        Some(joined)
    } else {
        None
    }
}

/// Looks random: long hex runs, digits mixed into letters, or long
/// consonant runs.
pub fn hash_like(s: &str) -> bool {
    let t: String = s
        .chars()
        .filter(|c| c.is_alphanumeric())
        .collect::<String>()
        .to_lowercase();
    let n = t.chars().count();
    if n < 12 {
        return false;
    }
    let digits = t.chars().filter(|c| c.is_ascii_digit()).count();
    let letters = t.chars().filter(|c| c.is_alphabetic()).count();
    let hex = t.chars().all(|c| c.is_ascii_hexdigit());
    let mut run = 0;
    let mut longest = 0;
    for c in t.chars() {
        if c.is_alphabetic() && !"aeiouy".contains(c) {
            run += 1;
            longest = longest.max(run);
        } else {
            run = 0;
        }
    }
    (hex && digits >= 3 && letters >= 3)
        || (digits * 10 >= n * 3 && letters * 10 >= n * 3 && n >= 16)
        || longest >= 7
}

/// The message-level heuristics that need nothing but the message.
pub fn heuristics(
    cfg: &AnomalyConfig,
    sender: &str,
    display_name: Option<&str>,
    reply_to: Option<&str>,
) -> Vec<Anomaly> {
    let mut out = Vec::new();
    let (local, domain) = sender.rsplit_once('@').unwrap_or(("", sender));
    if hash_like(local) {
        out.push(Anomaly::new(
            "hash_like_local_part",
            cfg.hash_like_local_part,
            local,
        ));
    }
    if let Some(n) = display_name {
        if hash_like(n) {
            out.push(Anomaly::new(
                "hash_like_display_name",
                cfg.hash_like_display_name,
                n,
            ));
        }
    }
    let tld = domain.rsplit('.').next().unwrap_or("");
    if cfg
        .suspicious_tlds
        .iter()
        .any(|t| t.trim_start_matches('.').eq_ignore_ascii_case(tld))
    {
        out.push(Anomaly::new(
            "suspicious_tld",
            cfg.suspicious_tld,
            format!(".{tld}"),
        ));
    }
    if domain.len() > cfg.max_domain_length || domain.split('.').count() > 5 {
        out.push(Anomaly::new("long_domain", cfg.long_domain, domain));
    }
    if let Some(r) = reply_to {
        let rd = crate::identity::domain_of(r);
        if !rd.is_empty() && org_domain(rd) != org_domain(domain) {
            out.push(Anomaly::new(
                "reply_to_divergence",
                cfg.reply_to_divergence,
                format!("reply-to {r}"),
            ));
        }
    }
    out
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
        ] {
            assert_eq!(p.lookalike(d), None, "{d} should not be flagged");
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

    #[test]
    fn names_and_hash_likeness() {
        assert_eq!(
            normalize_name(" \"Jane  Q. Doe\" ").as_deref(),
            Some("jane q doe")
        );
        assert_eq!(normalize_name("Jane"), None);
        assert!(hash_like("a8f3c9d2e1b7"));
        assert!(hash_like("xk7q9z2mw4p8r6t1"));
        assert!(hash_like("qxkrtzplmnvbw"), "long consonant run");
        assert!(!hash_like("bcdfghjkl"), "too short to judge");
        assert!(!hash_like("jane.doe"));
        assert!(!hash_like("newsletter-team"));
        assert!(!hash_like("customer.service"));
    }

    #[test]
    fn heuristics_flag_what_they_name() {
        let cfg = AnomalyConfig::default();
        let names = |v: Vec<Anomaly>| v.into_iter().map(|a| a.name).collect::<Vec<_>>();
        assert_eq!(
            names(heuristics(
                &cfg,
                "a8f3c9d2e1b7@promo.xyz",
                Some("zq8x7w6v5t4s3r2p"),
                Some("pay@other.example")
            )),
            [
                "hash_like_local_part",
                "hash_like_display_name",
                "suspicious_tld",
                "reply_to_divergence"
            ]
        );
        let long = format!("a@{}.example.com", "x".repeat(60));
        assert_eq!(names(heuristics(&cfg, &long, None, None)), ["long_domain"]);
        assert!(heuristics(
            &cfg,
            "jane@partner.example",
            Some("Jane Doe"),
            Some("jane@mail.partner.example")
        )
        .is_empty());
    }
}
