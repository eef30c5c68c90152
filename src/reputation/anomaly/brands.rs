//! `brand_impersonation`: a display name that names a brand, on an address
//! outside that brand's own domains ("PayPal" <service@x7.example>,
//! "Katie from Ledger" <device@university.example>). The brands are
//! `[anomalies] brands`: a name and the names of its registrable domains
//! (`paypal` for paypal.com, paypal.de, paypal.co.uk).

use super::names::{name_mismatch, name_tokens};
use crate::config::{Brand, MAX_BRAND_WORD};
use crate::vocab::{domain_of, org_domain};

/// Folds what homoglyphs and capitals blur: `I` and `l` read alike in a
/// display name ("Banco do BrasiI").
fn fold(tokens: Vec<String>) -> Vec<String> {
    tokens.into_iter().map(|t| t.replace('i', "l")).collect()
}

/// The name of a registrable domain without its suffix: `paypal` for
/// `mail.paypal.co.uk`.
fn org_name(domain: &str) -> String {
    let org = org_domain(domain);
    org.split('.').next().unwrap_or("").to_ascii_lowercase()
}

/// The brand that `name` names, when `sender` is not at one of its
/// domains. Not when the brand is one word of a person's name that fits
/// the address (`Scott Norton` <nortonsm@…>), nor when the sender's
/// domain spells the brand (`bigapplebagels.example` is no impersonation
/// of Apple; a lookalike of a correspondent's domain is `lookalike_domain`'s).
pub fn brand_named<'a>(brands: &'a [Brand], name: &str, sender: &str) -> Option<&'a str> {
    let words = fold(name_tokens(name));
    if words.is_empty() {
        return None;
    }
    // The words between spaces: a brand's phrase is found whole. A word
    // longer than any brand's is left out (a hostile name's megabyte of
    // letters is not searched 51 times).
    let mut hay = String::from(" ");
    for w in &words {
        if w.len() <= MAX_BRAND_WORD {
            hay.push_str(w);
        }
        // A word left out still stands between its neighbours.
        hay.push(' ');
    }
    let domain = domain_of(sender);
    let mut own: Option<String> = None;
    let mut needle = String::new();
    for Brand {
        name: brand,
        domains,
    } in brands
    {
        phrase_of(brand, &mut needle);
        if needle.len() <= 2 || !hay.contains(needle.as_str()) {
            continue;
        }
        let own = own.get_or_insert_with(|| org_name(domain));
        if domains.iter().any(|d| org_name(d) == *own) {
            return None;
        }
        let own_folded = own.replace('i', "l");
        if needle
            .split(' ')
            .any(|p| !p.is_empty() && own_folded.contains(p))
        {
            return None;
        }
        let one_word = needle.trim().split(' ').count() == 1;
        if one_word && words.len() >= 2 && !name_mismatch(name, sender) {
            return None;
        }
        return Some(brand.as_str());
    }
    None
}

/// A brand's words as [`fold`] and [`name_tokens`] make them, between
/// spaces (" banco do brasll "), into `out`: without allocating for a
/// brand written in ASCII, as the default ones are.
fn phrase_of(brand: &str, out: &mut String) {
    out.clear();
    out.push(' ');
    if brand.is_ascii() {
        for c in brand.chars() {
            if c.is_ascii_alphabetic() {
                out.push(match c.to_ascii_lowercase() {
                    'i' => 'l',
                    l => l,
                });
            } else if !out.ends_with(' ') {
                out.push(' ');
            }
        }
    } else {
        for w in fold(name_tokens(brand)) {
            out.push_str(&w);
            out.push(' ');
        }
    }
    if !out.ends_with(' ') {
        out.push(' ');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AnomalyConfig;

    fn named(name: &str, sender: &str) -> Option<String> {
        let cfg = AnomalyConfig::default();
        brand_named(&cfg.brands, name, sender).map(str::to_string)
    }

    #[test]
    fn a_brand_on_another_domain_is_named() {
        assert_eq!(
            named("PayPal", "service@x7.example").as_deref(),
            Some("paypal")
        );
        assert_eq!(
            named("Katie from Ledger", "device@university.example").as_deref(),
            Some("ledger")
        );
        assert_eq!(
            named(
                "[Banco do BrasiI - Comunicado 6333967970]",
                "h20286@gmail.com"
            )
            .as_deref(),
            Some("banco do brasil"),
            "capital I for l"
        );
        // Cyrillic and Greek letters, zero-width joiners between letters.
        assert_eq!(
            named("Μetamаsk.io", "a@b.example").as_deref(),
            Some("metamask")
        );
        assert_eq!(
            named(
                "P\u{200d}a\u{200d}y\u{200d}P\u{200d}a\u{200d}l",
                "a@b.example"
            )
            .as_deref(),
            Some("paypal")
        );
        assert_eq!(
            named("MetaMask", "metamask@gmail.com").as_deref(),
            Some("metamask")
        );
    }

    #[test]
    fn the_brand_itself_and_people_are_not() {
        // Its own domains, under any suffix.
        assert_eq!(named("PayPal", "service@mail.paypal.co.uk"), None);
        assert_eq!(named("Facebook", "security@facebookmail.com"), None);
        assert_eq!(
            named("Microsoft account team", "no-reply@microsoft.com"),
            None
        );
        assert_eq!(named("BANCO DO BRASIL", "059616@bb.com.br"), None);
        // A person whose surname is a brand's, on an address made of it.
        assert_eq!(named("Scott Norton", "nortonsm@yahoo.com"), None);
        // A domain that spells the brand says what it is.
        assert_eq!(
            named("Big Apple Bagels", "orders@bigapplebagels.example"),
            None
        );
        // A word inside another is no brand: "Upside" is not UPS.
        assert_eq!(named("Upside Partners", "a@b.example"), None);
        assert_eq!(named("", "a@b.example"), None);
        // A word longer than any brand's matches none.
        let long = format!("PayPal{}", "x".repeat(100));
        assert_eq!(named(&long, "a@b.example"), None);
        // Left out, it still parts the words around it.
        let parted = format!("Bank {} of America", "x".repeat(100));
        assert_eq!(named(&parted, "a@b.example"), None);
        assert_eq!(
            named("Bank of America", "a@b.example").as_deref(),
            Some("bank of america")
        );
        assert_eq!(
            named(&format!("{} PayPal", "x".repeat(100_000)), "a@b.example").as_deref(),
            Some("paypal")
        );
    }

    #[test]
    fn brands_fold_as_display_names_do() {
        let mut out = String::new();
        phrase_of("Banco do Brasil", &mut out);
        assert_eq!(out, " banco do brasll ");
        phrase_of("booking.com", &mut out);
        assert_eq!(out, " booklng com ");
        phrase_of("Itaú", &mut out);
        assert_eq!(out, " ltau ");
        phrase_of("--", &mut out);
        assert_eq!(out.trim(), "");
    }
}
