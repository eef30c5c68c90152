use super::*;

#[path = "../../tests/support/dkim.rs"]
mod dkim;
use crate::config::DnsConfig;
use crate::vocab::Span;
use mail_auth::common::headers::HeaderWriter;
use mail_auth::common::parse::TxtRecordParser;
use mail_auth::common::verify::DomainKey;
use mail_auth::dmarc::Dmarc;
use mail_auth::spf::Spf;
use mail_auth::{AuthenticatedMessage, AuthenticationResults, RecordSet, ResolverCache, MX};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// SPF results as the verdict shows them.
fn spf_str(r: mail_auth::SpfResult) -> AuthResult {
    r.into()
}
const IP: &str = "192.0.2.10";

/// An authenticator whose resolver is a closed port: every answer must
/// come from the pre-loaded caches.
fn offline() -> Authenticator {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = sock.local_addr().unwrap().port();
    drop(sock);
    let cfg = DnsConfig {
        servers: vec![format!("127.0.0.1:{port}")],
        timeout: Span(Duration::from_millis(500)),
        cache_size: 100,
    };
    Authenticator::new(&cfg).unwrap()
}

fn spf(a: &Authenticator, domain: &str, record: &str) {
    a.preload_txt(domain, Spf::parse(record.as_bytes()).unwrap());
}

async fn mail_spf(a: &Authenticator, from: &str) -> SpfState {
    a.check_spf(
        IP.parse().unwrap(),
        "mx.partner.example",
        Some(from),
        "mx.example.com",
    )
    .await
}

#[tokio::test]
async fn spf_pass_fail_softfail_none_and_temperror() {
    let a = offline();
    spf(&a, "mx.partner.example", "v=spf1 ip4:192.0.2.0/24 -all");
    spf(&a, "pass.example", "v=spf1 ip4:192.0.2.0/24 -all");
    spf(&a, "fail.example", "v=spf1 ip4:198.51.100.0/24 -all");
    spf(&a, "soft.example", "v=spf1 ip4:198.51.100.0/24 ~all");
    a.preload_txt_missing("none.example");
    let r = |s: SpfState| spf_str(s.mail_from.result());
    assert_eq!(r(mail_spf(&a, "a@pass.example").await), "pass");
    assert_eq!(r(mail_spf(&a, "a@fail.example").await), "fail");
    assert_eq!(r(mail_spf(&a, "a@soft.example").await), "softfail");
    assert_eq!(r(mail_spf(&a, "a@none.example").await), "none");
    // Nothing cached and a resolver that never answers: temperror
    // within the deadline.
    let start = std::time::Instant::now();
    assert_eq!(r(mail_spf(&a, "a@unknown.example").await), "temperror");
    assert!(
        start.elapsed() < Duration::from_millis(1500),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(
        spf_str(mail_spf(&a, "a@pass.example").await.helo.result()),
        "pass"
    );
}

#[tokio::test]
async fn a_resolver_that_never_answers_costs_at_most_the_timeout() {
    // A UDP socket that swallows every query.
    let black_hole = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let cfg = DnsConfig {
        servers: vec![black_hole.local_addr().unwrap().to_string()],
        timeout: Span(Duration::from_millis(400)),
        cache_size: 10,
    };
    let a = Authenticator::new(&cfg).unwrap();
    let start = std::time::Instant::now();
    let st = a
        .check_spf(IP.parse().unwrap(), "h.example", Some("x@y.example"), "mx")
        .await;
    let spf_time = start.elapsed();
    assert_eq!(spf_str(st.mail_from.result()), "temperror");
    let raw = signed_message("y.example", "sel", "x@y.example", None).0;
    let start = std::time::Instant::now();
    let (s, _) = a
        .verify(
            raw.as_bytes(),
            &st,
            Some("y.example"),
            IP.parse().unwrap(),
            "mx.example.com",
        )
        .await;
    let eom_time = start.elapsed();
    assert_eq!(s.authenticated, None, "{s:?}");
    let limit = Duration::from_millis(400 + 250);
    assert!(
        spf_time < limit && eom_time < limit,
        "spf {spf_time:?} eom {eom_time:?}"
    );
}

/// A message signed by a fresh Ed25519 key; returns it and the key's
/// DNS record.
fn signed_message(
    domain: &str,
    selector: &str,
    from: &str,
    extra: Option<&str>,
) -> (String, String) {
    let key = dkim::TestKey::new();
    let body = format!(
        "From: Someone <{from}>\r\nTo: alice@example.com\r\nSubject: signed\r\nMessage-ID: <s1@{domain}>\r\n\r\nHello Alice.\r\n{}",
        extra.unwrap_or("")
    );
    let (name, value) = key.sign(&body, domain, selector);
    (format!("{name}: {value}\r\n{body}"), key.dns_record())
}

#[tokio::test]
async fn dkim_verifies_and_an_altered_message_fails() {
    let a = offline();
    spf(&a, "mx.partner.example", "v=spf1 -all");
    spf(&a, "partner.example", "v=spf1 -all");
    a.preload_txt_missing("_dmarc.partner.example");
    a.preload_txt_missing("_dmarc.example");
    let (raw, record) = signed_message("partner.example", "s1", "carol@partner.example", None);
    a.preload_txt(
        "s1._domainkey.partner.example",
        DomainKey::parse(record.as_bytes()).unwrap(),
    );
    let st = mail_spf(&a, "carol@partner.example").await;
    let (s, header) = a
        .verify(
            raw.as_bytes(),
            &st,
            Some("partner.example"),
            IP.parse().unwrap(),
            "mx.example.com",
        )
        .await;
    assert_eq!(
        s.dkim,
        vec![DkimVerdict {
            domain: "partner.example".into(),
            result: "pass".into(),
            selector: "s1".into(),
        }]
    );
    assert_eq!(s.authenticated, Some(true), "aligned DKIM without DMARC");
    let header = header.unwrap();
    assert!(header.starts_with("mx.example.com;"), "{header}");
    assert!(header.contains("dkim=pass"), "{header}");
    // Both SPF identities are named: the HELO given at connect, and the
    // envelope sender's domain.
    assert!(header.contains("smtp.helo=mx.partner.example"), "{header}");
    assert!(header.contains("smtp.mailfrom=partner.example"), "{header}");

    // Altered in transit: a signed header changed fails the signature;
    // a changed body fails the body hash (mail-auth reports that as
    // neutral, RFC 6376 §6.3 leaves it to the verifier).
    for (what, altered, expect) in [
        (
            "header",
            raw.replace("Subject: signed", "Subject: urgent invoice"),
            "fail",
        ),
        (
            "body",
            raw.replace("Hello Alice.", "Hello Alice, wire the money."),
            "neutral",
        ),
    ] {
        let (s, _) = a
            .verify(
                altered.as_bytes(),
                &st,
                Some("partner.example"),
                IP.parse().unwrap(),
                "mx",
            )
            .await;
        assert_eq!(s.dkim[0].result, expect, "{what}");
        assert_eq!(s.authenticated, Some(false), "{what}");
    }
}

#[tokio::test]
async fn dmarc_pass_by_spf_alignment_by_dkim_alignment_and_fail() {
    let a = offline();
    spf(&a, "mx.partner.example", "v=spf1 ip4:192.0.2.0/24 -all");
    spf(&a, "partner.example", "v=spf1 ip4:192.0.2.0/24 -all");
    spf(&a, "bounces.esp.example", "v=spf1 ip4:192.0.2.0/24 -all");
    a.preload_txt(
        "_dmarc.partner.example",
        Dmarc::parse(b"v=DMARC1; p=reject").unwrap(),
    );
    a.preload_txt_missing("_dmarc.example");
    a.preload_txt_missing("_dmarc.esp.example");
    a.preload_txt_missing("_dmarc.bounces.esp.example");
    let (raw, record) = signed_message("partner.example", "s1", "carol@partner.example", None);
    a.preload_txt(
        "s1._domainkey.partner.example",
        DomainKey::parse(record.as_bytes()).unwrap(),
    );
    let ip: IpAddr = IP.parse().unwrap();

    // SPF aligned (envelope at partner.example), signature broken.
    let broken = raw.replace("Hello Alice.", "Hello, changed.");
    let st = mail_spf(&a, "carol@partner.example").await;
    let (s, _) = a
        .verify(broken.as_bytes(), &st, Some("partner.example"), ip, "mx")
        .await;
    assert_eq!(
        (s.dmarc.as_str(), s.authenticated),
        ("pass", Some(true)),
        "{s:?}"
    );

    // DKIM aligned, SPF for another organisation (an ESP's bounce domain).
    let st = mail_spf(&a, "bounce-123@bounces.esp.example").await;
    assert_eq!(spf_str(st.mail_from.result()), "pass");
    let (s, _) = a
        .verify(raw.as_bytes(), &st, Some("partner.example"), ip, "mx")
        .await;
    assert_eq!(
        (s.dmarc.as_str(), s.authenticated),
        ("pass", Some(true)),
        "{s:?}"
    );

    // Neither aligned: fail, with the domain's policy.
    let (s, header) = a
        .verify(broken.as_bytes(), &st, Some("partner.example"), ip, "mx")
        .await;
    assert_eq!(s.dmarc, "fail", "{s:?}");
    assert_eq!(s.dmarc_policy, "reject");
    assert_eq!(s.authenticated, Some(false));
    assert!(s.dmarc_failed_with("reject"));
    assert!(header.unwrap().contains("dmarc=fail"));
}

#[tokio::test]
async fn an_arc_sealed_message_verifies_and_a_broken_seal_fails() {
    use mail_auth::arc::ArcSealer;
    let a = offline();
    spf(&a, "mx.partner.example", "v=spf1 ip4:192.0.2.0/24 -all");
    spf(&a, "partner.example", "v=spf1 ip4:192.0.2.0/24 -all");
    a.preload_txt_missing("_dmarc.partner.example");
    a.preload_txt_missing("_dmarc.example");
    let (raw, record) = signed_message("partner.example", "s1", "carol@partner.example", None);
    a.preload_txt(
        "s1._domainkey.partner.example",
        DomainKey::parse(record.as_bytes()).unwrap(),
    );
    // A forwarder (list.example) seals the message with its own key.
    let sealer = dkim::TestKey::new();
    let key = sealer.key();
    let arc_record = sealer.dns_record();
    a.preload_txt(
        "arc._domainkey.list.example",
        DomainKey::parse(arc_record.as_bytes()).unwrap(),
    );
    let msg = AuthenticatedMessage::parse(raw.as_bytes()).unwrap();
    let arc_out = a.inner.verify_arc(a.params(&msg)).await;
    let dkim_out = a.inner.verify_dkim(a.params(&msg)).await;
    let results = AuthenticationResults::new("mx.list.example")
        .with_dkim_results(&dkim_out, "partner.example");
    let set = ArcSealer::from_key(key)
        .domain("list.example")
        .selector("arc")
        .headers(["From", "To", "Subject", "DKIM-Signature"])
        .seal(&msg, &results, &arc_out)
        .unwrap();
    let sealed = format!("{}{raw}", set.to_header());
    let st = mail_spf(&a, "carol@partner.example").await;
    let (s, header) = a
        .verify(
            sealed.as_bytes(),
            &st,
            Some("partner.example"),
            IP.parse().unwrap(),
            "mx",
        )
        .await;
    assert_eq!(s.arc, "pass", "{s:?}");
    assert!(header.unwrap().contains("arc=pass"));
    // The seal's instance broken (a header it covers changed).
    let broken = sealed.replace("Subject: signed", "Subject: changed");
    let (s, _) = a
        .verify(
            broken.as_bytes(),
            &st,
            Some("partner.example"),
            IP.parse().unwrap(),
            "mx",
        )
        .await;
    assert_eq!(s.arc, "fail", "{s:?}");
}

#[tokio::test]
async fn optional_dns_checks_read_mx_a_and_dnsbl_answers() {
    let a = offline();
    let far = Instant::now() + Duration::from_secs(3600);
    // mail.example has an MX; a.example only an A.
    a.mx.insert(
        "mail.example.".into(),
        RecordSet {
            rrset: vec![MX {
                exchanges: vec!["mx.mail.example".into()].into_boxed_slice(),
                preference: 10,
            }]
            .into(),
            dnssec_status: mail_auth::DnssecStatus::Indeterminate,
        },
        far,
    );
    a.mx.insert(
        "a.example.".into(),
        RecordSet {
            rrset: Vec::new().into(),
            dnssec_status: mail_auth::DnssecStatus::Indeterminate,
        },
        far,
    );
    a.preload_a("a.example", &["192.0.2.80".parse().unwrap()]);
    assert_eq!(a.domain_accepts_mail("mail.example").await, Some(true));
    assert_eq!(a.domain_accepts_mail("a.example").await, Some(true));
    // Nothing cached and no resolver: undecided, not "no MX".
    assert_eq!(a.domain_accepts_mail("unknown.example").await, None);
    // DNSBL: 10.2.0.192.zen.test listed (127.0.0.2).
    a.preload_a("10.2.0.192.zen.test", &["127.0.0.2".parse().unwrap()]);
    a.preload_a("11.2.0.192.zen.test", &["192.0.2.1".parse().unwrap()]);
    assert_eq!(
        a.dnsbl_listed("192.0.2.10".parse().unwrap(), "zen.test")
            .await,
        Some(true)
    );
    assert_eq!(
        a.dnsbl_listed("192.0.2.11".parse().unwrap(), "zen.test")
            .await,
        Some(false),
        "answers outside 127/8 are not listings (RFC 5782)"
    );
    assert_eq!(
        a.dnsbl_listed("192.0.2.12".parse().unwrap(), "zen.test")
            .await,
        None
    );
}

#[test]
fn trusted_authentication_results_are_read() {
    let v = "mx.upstream.example; spf=pass (sender ok) smtp.mailfrom=carol@partner.example; dkim=pass header.d=partner.example header.s=s1; dmarc=pass (p=reject) header.from=partner.example";
    assert_eq!(authserv_id_of(v), "mx.upstream.example");
    let s = parse_authentication_results(v, Some("partner.example"));
    assert_eq!(s.source, "authserv:mx.upstream.example");
    assert_eq!(
        (s.spf.as_str(), s.spf_domain.as_str()),
        ("pass", "partner.example")
    );
    assert_eq!(s.dkim[0].domain, "partner.example");
    assert_eq!(s.authenticated, Some(true));
    let f = parse_authentication_results("mx.up; spf=softfail smtp.mailfrom=x@evil.example; dkim=none; dmarc=fail policy.dmarc=reject", Some("partner.example"));
    assert_eq!(f.authenticated, Some(false));
    assert!(f.dmarc_failed_with("reject"));
    let t = parse_authentication_results(
        "mx.up; spf=temperror smtp.mailfrom=x@partner.example",
        Some("partner.example"),
    );
    assert_eq!(t.authenticated, None);
    let aligned = parse_authentication_results(
        "mx.up; spf=pass smtp.mailfrom=b@mail.partner.example",
        Some("partner.example"),
    );
    assert_eq!(
        aligned.authenticated,
        Some(true),
        "relaxed alignment without DMARC"
    );
}

#[test]
fn organisational_domains_use_the_public_suffix_list() {
    assert_eq!(org_domain("mail.partner.example.co.uk"), "example.co.uk");
    assert_eq!(org_domain("a.b.example.com"), "example.com");
    assert_eq!(org_domain("EXAMPLE.COM."), "example.com");
}

#[test]
fn dns_cache_is_bounded() {
    let c: DnsCache<Box<str>, u32> = DnsCache::new(3);
    let t = Instant::now() + Duration::from_secs(60);
    for i in 0..10u32 {
        c.insert(format!("k{i}").into(), i, t + Duration::from_secs(i as u64));
    }
    assert_eq!(c.len(), 3);
    assert_eq!(c.get("k9"), Some(9));
    assert_eq!(c.get("k0"), None);
}
