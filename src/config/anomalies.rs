//! `[anomalies]`: the weight of every anomaly and the thresholds of the
//! checks (`reputation::anomaly` decides them).

use serde::{Deserialize, Serialize};

/// The default `[anomalies.brands]`: brands that phishing most often
/// names, each with the names of its own registrable domains (any
/// suffix: `paypal` stands for paypal.com, paypal.de, paypal.co.uk).
/// Online services, banks, payment, parcel carriers, tax offices and
/// crypto-currency wallets and exchanges. No public mailbox provider is a
/// brand's own domain: "Microsoft" at outlook.com is someone's account.
const BRANDS: &[(&str, &[&str])] = &[
    ("adobe", &["adobe"]),
    ("airbnb", &["airbnb"]),
    ("amazon", &["amazon", "amazonses", "aws", "amazonaws"]),
    ("american express", &["americanexpress", "aexp"]),
    ("apple", &["apple", "icloud", "itunes"]),
    ("banco do brasil", &["bb"]),
    ("bank of america", &["bankofamerica", "bofa"]),
    ("binance", &["binance"]),
    ("booking.com", &["booking"]),
    ("bradesco", &["bradesco"]),
    ("chase bank", &["chase", "jpmorgan"]),
    ("citibank", &["citi", "citibank"]),
    ("coinbase", &["coinbase"]),
    ("dhl", &["dhl"]),
    ("docusign", &["docusign"]),
    ("dropbox", &["dropbox", "dropboxmail"]),
    ("ebay", &["ebay"]),
    ("facebook", &["facebook", "facebookmail", "meta"]),
    ("fedex", &["fedex"]),
    ("google", &["google", "googlemail", "youtube"]),
    ("hmrc", &["hmrc"]),
    ("hsbc", &["hsbc"]),
    ("icloud", &["apple", "icloud"]),
    ("instagram", &["instagram", "facebookmail", "meta"]),
    ("irs", &["irs"]),
    ("itau", &["itau"]),
    ("kraken", &["kraken"]),
    ("ledger", &["ledger"]),
    ("linkedin", &["linkedin"]),
    ("mastercard", &["mastercard"]),
    ("mcafee", &["mcafee"]),
    (
        "mercado pago",
        &["mercadopago", "mercadolivre", "mercadolibre"],
    ),
    ("metamask", &["metamask", "consensys"]),
    (
        "microsoft",
        &[
            "microsoft",
            "microsoftonline",
            "office",
            "office365",
            "onmicrosoft",
            "sharepoint",
        ],
    ),
    ("netflix", &["netflix"]),
    ("norton", &["norton", "nortonlifelock"]),
    ("nubank", &["nubank"]),
    ("office 365", &["microsoft", "office", "office365"]),
    ("onedrive", &["microsoft", "onedrive"]),
    ("opensea", &["opensea"]),
    ("pagseguro", &["pagseguro", "uol"]),
    ("paypal", &["paypal"]),
    ("royal mail", &["royalmail"]),
    ("santander", &["santander"]),
    ("sharepoint", &["microsoft", "sharepoint"]),
    ("spotify", &["spotify"]),
    ("trust wallet", &["trustwallet"]),
    ("usps", &["usps"]),
    ("wells fargo", &["wellsfargo"]),
    ("wetransfer", &["wetransfer"]),
    ("whatsapp", &["whatsapp", "facebookmail", "meta"]),
];

/// The longest word of a brand's name, in letters: `brand_impersonation`
/// looks for no longer word in a display name.
pub const MAX_BRAND_WORD: usize = 40;

/// A brand that display names may name: its name as they write it
/// (`"banco do brasil"`) and the names of its registrable domains without
/// suffix (`["bb"]` for bb.com.br).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Brand {
    pub name: String,
    pub domains: Vec<String>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AnomalyConfig {
    // Weights (points added to the sender's score; negative penalises).
    pub auth_regression: f64,
    pub new_mta_for_sender: f64,
    pub lookalike_domain: f64,
    pub display_name_impersonation: f64,
    /// A display name naming a brand of `brands`, sent from outside it.
    pub brand_impersonation: f64,
    pub reply_to_divergence: f64,
    /// A correspondent's Reply-To to an address never dealt with.
    pub reply_to_diverted: f64,
    /// Beside `reply_to_diverted`: the diversion goes to a public mailbox
    /// provider's address (`freemail_domains`), the sender's is not one.
    pub reply_to_freemail: f64,
    /// A never-answered sender writing to one new person after another.
    pub recipient_spray: f64,
    pub first_contact_unauthenticated: f64,
    pub display_name_mismatch: f64,
    /// First contact: no enterprise address in To/Cc (sent Bcc).
    pub undisclosed_recipients: f64,
    /// First contact: HTML without a plain-text alternative.
    pub html_only: f64,
    /// First contact: every URL points to another organisation.
    pub links_elsewhere: f64,
    /// Per broken habit, when two or more break at once.
    pub behaviour_change: f64,
    pub hash_like_local_part: f64,
    pub hash_like_display_name: f64,
    pub suspicious_tld: f64,
    pub long_domain: f64,
    pub sender_domain_without_mx: f64,
    pub dnsbl_listed: f64,
    /// A never-seen MTA (its own and its network's history under
    /// `min_history`) without a reverse DNS name: points on the MTA's score.
    pub no_reverse_dns: f64,
    /// A never-seen MTA whose reverse DNS name looks like an access line's
    /// (its address in the name, `dsl`, `dyn`, `pool`, …).
    pub dynamic_reverse_dns: f64,
    /// A never-seen MTA that greeted with a name that is not a domain (no
    /// dot, or a bare address).
    pub helo_not_fqdn: f64,
    /// The From organisation's domain was registered fewer than
    /// `young_domain_days` days before the message (with `rdap_url`).
    pub young_domain: f64,
    pub young_domain_days: u64,
    /// Authenticated messages after which a sender is settled.
    pub settled_messages: u64,
    /// A settled sender uses at most this many /24 (/48) networks.
    pub settled_max_networks: u64,
    /// Messages the enterprise sent to, or answered from, an address at
    /// which the identity anomalies (lookalike, impersonation, heuristics)
    /// no longer count against that authenticated address; they shrink
    /// logarithmically on the way, and count in full for a stranger.
    pub relationship_cap: f64,
    pub suspicious_tlds: Vec<String>,
    /// The brands of `brand_impersonation`; replaces the default list
    /// when set.
    pub brands: Vec<Brand>,
    /// Longer From domains are `long_domain` (as are more than 5 labels).
    pub max_domain_length: usize,
    /// Look up MX/A of the From domain (costs a DNS query per new domain).
    pub check_sender_domain: bool,
    /// DNSBL zones queried for the client IP (none by default).
    pub dnsbl_zones: Vec<String>,
    /// RDAP base URL the From organisation's domain is appended to
    /// (`https://rdap.org/domain/`); empty: domain age is not looked up.
    pub rdap_url: String,
    /// The deadline of one RDAP lookup.
    pub rdap_timeout: crate::vocab::Span,
}

impl Default for AnomalyConfig {
    fn default() -> Self {
        AnomalyConfig {
            auth_regression: -30.0,
            new_mta_for_sender: -15.0,
            lookalike_domain: -35.0,
            display_name_impersonation: -30.0,
            brand_impersonation: -12.0,
            reply_to_divergence: -12.0,
            reply_to_diverted: -40.0,
            reply_to_freemail: -5.0,
            recipient_spray: -10.0,
            first_contact_unauthenticated: -6.0,
            display_name_mismatch: -7.0,
            undisclosed_recipients: -6.0,
            html_only: -2.0,
            links_elsewhere: -7.0,
            behaviour_change: -15.0,
            hash_like_local_part: -8.0,
            hash_like_display_name: -5.0,
            suspicious_tld: -10.0,
            long_domain: -8.0,
            sender_domain_without_mx: -15.0,
            dnsbl_listed: -30.0,
            no_reverse_dns: -10.0,
            dynamic_reverse_dns: -10.0,
            helo_not_fqdn: -6.0,
            young_domain: -15.0,
            young_domain_days: 30,
            settled_messages: 5,
            settled_max_networks: 3,
            relationship_cap: 10.0,
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
            brands: BRANDS
                .iter()
                .map(|(b, d)| Brand {
                    name: b.to_string(),
                    domains: d.iter().map(|s| s.to_string()).collect(),
                })
                .collect(),
            max_domain_length: 50,
            check_sender_domain: false,
            dnsbl_zones: Vec::new(),
            rdap_url: String::new(),
            rdap_timeout: crate::vocab::Span(std::time::Duration::from_secs(2)),
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
            self.brand_impersonation,
            self.reply_to_divergence,
            self.reply_to_diverted,
            self.reply_to_freemail,
            self.recipient_spray,
            self.first_contact_unauthenticated,
            self.display_name_mismatch,
            self.undisclosed_recipients,
            self.html_only,
            self.links_elsewhere,
            self.behaviour_change,
            self.hash_like_local_part,
            self.hash_like_display_name,
            self.suspicious_tld,
            self.long_domain,
            self.sender_domain_without_mx,
            self.dnsbl_listed,
            self.no_reverse_dns,
            self.dynamic_reverse_dns,
            self.helo_not_fqdn,
            self.young_domain,
        ];
        if weights.iter().any(|w| !w.is_finite()) {
            return Err("anomalies: weights must be finite numbers".into());
        }
        if !(self.relationship_cap.is_finite() && self.relationship_cap > 0.0) {
            return Err("anomalies.relationship_cap must be a number above 0".into());
        }
        let web = |u: &str| u.starts_with("https://") || u.starts_with("http://");
        if !(self.rdap_url.is_empty() || web(&self.rdap_url)) {
            return Err(format!(
                "anomalies.rdap_url {:?}: an http:// or https:// URL the domain is appended to",
                self.rdap_url
            ));
        }
        if self.rdap_timeout.0.is_zero() {
            return Err("anomalies.rdap_timeout must be > 0".into());
        }
        if let Some(b) = self.brands.iter().find(|b| {
            !b.name.chars().any(char::is_alphabetic)
                || b.domains.is_empty()
                || b.name
                    .split(|c: char| !c.is_alphabetic())
                    .any(|w| w.chars().count() > MAX_BRAND_WORD)
        }) {
            return Err(format!(
                "anomalies.brands {:?}: a name with letters (words of at most {MAX_BRAND_WORD}), and the names of its domains",
                b.name
            ));
        }
        if self.max_domain_length < 10 {
            return Err("anomalies.max_domain_length must be at least 10".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod rdap_tests {
    use super::*;

    #[test]
    fn brands_are_checked() {
        let mut a = AnomalyConfig::default();
        assert!(a.validate().is_ok());
        for (name, domains) in [
            ("--", vec!["x".to_string()]),
            ("acme", vec![]),
            (&*"a".repeat(41), vec!["x".to_string()]),
        ] {
            a.brands = vec![Brand {
                name: name.to_string(),
                domains,
            }];
            assert!(a.validate().is_err(), "{name:?}");
        }
    }

    #[test]
    fn rdap_settings_are_checked() {
        let mut a = AnomalyConfig::default();
        assert!(a.validate().is_ok(), "off by default");
        a.rdap_url = "https://rdap.org/domain/".into();
        assert!(a.validate().is_ok());
        a.rdap_url = "rdap.org/domain/".into();
        assert!(a.validate().unwrap_err().contains("anomalies.rdap_url"));
        a.rdap_url = "http://127.0.0.1:8080/domain/".into();
        a.rdap_timeout = crate::vocab::Span(std::time::Duration::ZERO);
        assert!(a.validate().unwrap_err().contains("rdap_timeout"));
    }
}
