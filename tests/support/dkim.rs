//! A DKIM test key: Ed25519 (RFC 8463), generated per test run, its DNS
//! record, and signing with mail-auth. The one signing helper of every
//! test: the library's unit tests include this file too.
#![allow(dead_code)]

use mail_auth::common::crypto::Ed25519Key;
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::{Canonicalization, DkimSigner};

pub struct TestKey {
    pkcs8: Vec<u8>,
}

fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            out.push(if i <= c.len() {
                A[((n >> (18 - 6 * i)) & 63) as usize] as char
            } else {
                '='
            });
        }
    }
    out
}

impl TestKey {
    pub fn new() -> TestKey {
        TestKey {
            pkcs8: Ed25519Key::generate_pkcs8().unwrap(),
        }
    }

    /// The signing key.
    pub fn key(&self) -> Ed25519Key {
        Ed25519Key::from_pkcs8_der(&self.pkcs8).unwrap()
    }

    /// The TXT record for `SELECTOR._domainkey.DOMAIN`.
    pub fn dns_record(&self) -> String {
        let public = Ed25519Key::from_pkcs8_der(&self.pkcs8)
            .unwrap()
            .public_key();
        format!("v=DKIM1; k=ed25519; p={}", base64(&public))
    }

    /// Signs `message` (CRLF text); returns the DKIM-Signature header's name
    /// and value.
    pub fn sign(&self, message: &str, domain: &str, selector: &str) -> (String, String) {
        self.sign_with(message, domain, selector, Canonicalization::Relaxed)
    }

    /// [`TestKey::sign`] with `canon` for the headers and the body
    /// (`Simple` signs each header byte for byte).
    pub fn sign_with(
        &self,
        message: &str,
        domain: &str,
        selector: &str,
        canon: Canonicalization,
    ) -> (String, String) {
        let sig = DkimSigner::from_key(Ed25519Key::from_pkcs8_der(&self.pkcs8).unwrap())
            .domain(domain)
            .selector(selector)
            .headers(["From", "To", "Subject", "Message-ID"])
            .header_canonicalization(canon)
            .body_canonicalization(canon)
            .sign(message.as_bytes())
            .unwrap();
        let h = sig.to_header();
        let (name, value) = h.trim_end().split_once(':').unwrap();
        (name.to_string(), value.trim_start().to_string())
    }
}
