//! The identity checks on a sender's own strings: the lookalike check of a
//! From domain (punycode, confusables, dots and hyphens), the display-name
//! checks (fitting, brands), the mail-client name and the heuristics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sra_milter::config::AnomalyConfig;
use sra_milter::message::client_name;
use sra_milter::reputation::anomaly::{
    brand_named, heuristics, name_mismatch, normalize_name, Protected,
};
use std::sync::OnceLock;

fn protected() -> &'static Protected {
    static P: OnceLock<Protected> = OnceLock::new();
    P.get_or_init(|| Protected::new(["example.com", "partner-bank.co.uk", "acme.org", "bücher.de"]))
}

fn anomalies() -> &'static AnomalyConfig {
    static A: OnceLock<AnomalyConfig> = OnceLock::new();
    A.get_or_init(AnomalyConfig::default)
}

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    let (name, rest) = s.split_once('\n').unwrap_or((&s, &s));
    // The second line is a domain, or a whole address (the display-name
    // fitting reads the local part).
    let (address, domain) = match rest.rsplit_once('@') {
        Some((_, d)) => (rest.to_string(), d),
        None => (format!("x@{rest}"), rest),
    };
    let _ = protected().lookalike(domain);
    let _ = name_mismatch(name, &address);
    let _ = normalize_name(name);
    let _ = client_name(name);
    let cfg = anomalies();
    let _ = brand_named(&cfg.brands, name, &address);
    let _ = heuristics(
        cfg,
        &address,
        Some(name),
        Some(domain),
    );
});
