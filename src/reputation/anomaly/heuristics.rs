//! The message-level heuristics of the seed framework, which need nothing
//! but the message: hash-like local parts and display names, suspicious
//! TLDs, overly long domains, Reply-To in another organisation.

use super::Anomaly;
use crate::config::AnomalyConfig;
use crate::vocab::{domain_of, org_domain};

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

/// Looks random: a token (between separators) of 12 or more letters and
/// digits with a long hex run, digits mixed into letters, or a long run of
/// ASCII consonants. Structured addresses — a bounce address's numbers
/// (`bounce-9224459-5491332`), a VERP-encoded recipient — are tokens each
/// too short to judge.
pub fn hash_like(s: &str) -> bool {
    s.split(|c: char| !c.is_alphanumeric()).any(token_hash_like)
}

fn token_hash_like(token: &str) -> bool {
    let t = token.to_lowercase();
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
        // Letters outside ASCII (ö, ð) are not judged: a run breaks there.
        if c.is_ascii_alphabetic() && !"aeiouy".contains(c) {
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
        let rd = domain_of(r);
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
    use crate::config::AnomalyConfig;

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
        // Structured, not random: a bounce address, a VERP-encoded
        // recipient, a name written with letters outside ASCII.
        assert!(!hash_like("bounce-9224459-5491332"));
        assert!(!hash_like("news_weekend_html-jdoe=mail.example.org"));
        assert!(!hash_like("Ævar Arnfjörð Bjarmason"));
        assert!(
            hash_like("offers-a8f3c9d2e1b7"),
            "one random token suffices"
        );
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
