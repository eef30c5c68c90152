//! Authentication-Results (RFC 8601) of a trusted upstream: which header
//! to believe, and what it says.

use super::{decide, AuthResult, AuthSummary, DkimVerdict};
use crate::vocab::{domain_of, org_domain};

/// The authserv-id of an Authentication-Results value (RFC 8601 §2.2).
pub fn authserv_id_of(value: &str) -> &str {
    let first = value.split(';').next().unwrap_or("").trim();
    first.split_whitespace().next().unwrap_or("")
}

/// The results of the topmost Authentication-Results whose authserv-id is
/// trusted (the nearest upstream added it), read for the From domain.
/// `values` are the header values in message order.
pub fn trusted_results<'a>(
    values: impl IntoIterator<Item = &'a str>,
    trusted_ids: &[String],
    from_domain: Option<&str>,
) -> Option<AuthSummary> {
    values
        .into_iter()
        .find(|v| {
            let id = authserv_id_of(v);
            trusted_ids.iter().any(|t| t.eq_ignore_ascii_case(id))
        })
        .map(|v| parse_authentication_results(v, from_domain))
}

/// Reads the results of a trusted upstream Authentication-Results value.
pub fn parse_authentication_results(value: &str, from_domain: Option<&str>) -> AuthSummary {
    let mut s = AuthSummary {
        source: format!("authserv:{}", authserv_id_of(value)),
        spf: AuthResult::None,
        spf_helo: AuthResult::None,
        dmarc: AuthResult::None,
        arc: AuthResult::None,
        ..AuthSummary::default()
    };
    // Comments in parentheses carry no results.
    let mut clean = String::with_capacity(value.len());
    let mut depth = 0u32;
    for c in value.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            _ if depth == 0 => clean.push(c),
            _ => {}
        }
    }
    for part in clean.split(';').skip(1) {
        let mut words = part.split_whitespace();
        let Some((method, result)) = words.next().and_then(|w| w.split_once('=')) else {
            continue;
        };
        let result = AuthResult::from(result.to_ascii_lowercase());
        let props: Vec<(String, String)> = words
            .filter_map(|w| w.split_once('='))
            .map(|(k, v)| {
                (
                    k.to_ascii_lowercase(),
                    v.trim_matches('"').to_ascii_lowercase(),
                )
            })
            .collect();
        let prop = |k: &str| props.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        match method.to_ascii_lowercase().as_str() {
            "spf" => {
                s.spf = result;
                if let Some(m) = prop("smtp.mailfrom") {
                    s.spf_domain = domain_of(&m).to_string();
                    if s.spf_domain.is_empty() {
                        s.spf_domain = m;
                    }
                } else if let Some(h) = prop("smtp.helo") {
                    s.spf_domain = h;
                }
            }
            "dkim" => {
                let domain = prop("header.d")
                    .or_else(|| {
                        prop("header.i").map(|i| i.rsplit('@').next().unwrap_or("").to_string())
                    })
                    .unwrap_or_default();
                let selector = prop("header.s").unwrap_or_default();
                s.dkim.push(DkimVerdict {
                    domain,
                    result,
                    selector,
                });
            }
            "dmarc" => {
                s.dmarc = result;
                if let Some(p) = prop("policy.dmarc") {
                    s.dmarc_policy = p.as_str().into();
                }
            }
            "arc" => s.arc = result,
            _ => {}
        }
    }
    s.temperror = s.spf == AuthResult::TempError
        || s.dmarc == AuthResult::TempError
        || s.dkim.iter().any(|d| d.result == AuthResult::TempError);
    s.authenticated = decide(&s, from_domain.map(org_domain).as_deref());
    s
}
