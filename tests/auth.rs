//! Authenticated identity through the milter: DNS answers pre-loaded into
//! mail-auth's caches (there is no network), messages really signed.

mod common;
mod support;

use common::{send, Mail};
use mail_auth::common::parse::TxtRecordParser;
use mail_auth::common::verify::DomainKey;
use mail_auth::dmarc::Dmarc;
use mail_auth::spf::Spf;
use sra_milter::auth::Authenticator;
use sra_milter::config::DnsConfig;
use sra_milter::message::{AuthState, Message};
use sra_milter::vocab::Class;
use sra_milter::vocab::Direction;
use sra_milter::vocab::Span;
use std::sync::Arc;
use std::time::Duration;

const DAY: u64 = 86400;

/// partner.example's DNS: SPF for 192.0.2.0/24, DMARC p=none, a DKIM key.
struct World {
    auth: Arc<Authenticator>,
    key: support::dkim::TestKey,
}

fn world() -> World {
    let closed = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let auth = Authenticator::new(&DnsConfig {
        servers: vec![format!("127.0.0.1:{port}")],
        timeout: Span(Duration::from_millis(300)),
        cache_size: 1000,
    })
    .unwrap();
    let key = support::dkim::TestKey::new();
    let spf = |d: &str, r: &str| auth.preload_txt(d, Spf::parse(r.as_bytes()).unwrap());
    spf("partner.example", "v=spf1 ip4:192.0.2.0/24 -all");
    spf("mx.partner.example", "v=spf1 ip4:192.0.2.0/24 -all");
    spf("mx.elsewhere.example", "v=spf1 -all");
    auth.preload_txt(
        "_dmarc.partner.example",
        Dmarc::parse(b"v=DMARC1; p=none").unwrap(),
    );
    auth.preload_txt(
        "s1._domainkey.partner.example",
        DomainKey::parse(key.dns_record().as_bytes()).unwrap(),
    );
    for missing in [
        "_dmarc.example",
        "examp1e.com",
        "_dmarc.examp1e.com",
        "_dmarc.com",
        "partmer.example",
        "_dmarc.partmer.example",
        "freemail.example",
        "_dmarc.freemail.example",
        "mx.examp1e.com",
    ] {
        auth.preload_txt_missing(missing);
    }
    World {
        auth: Arc::new(auth),
        key,
    }
}

impl World {
    /// A message from carol@partner.example, DKIM-signed by partner.example.
    fn signed(&self, id: &str) -> Mail {
        let mut m = Mail::inbound("carol@partner.example", id);
        m.headers[0] = ("From".into(), "Carol Jones <carol@partner.example>".into());
        let mut text = String::new();
        for (n, v) in &m.headers {
            text.push_str(&format!("{n}: {v}\r\n"));
        }
        text.push_str("\r\n");
        text.push_str(&m.body);
        let (name, value) = self.key.sign(&text, "partner.example", "s1");
        m.headers.insert(0, (name, value));
        m
    }
}

async fn start(w: &World) -> common::Milter {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = common::config(dir.path());
    cfg.auth.verify = true;
    cfg.auth.authserv_id = "mx.example.com".into();
    cfg.dns.timeout = Span(Duration::from_millis(300));
    common::start_with_auth(dir, cfg, w.auth.clone()).await
}

/// Months of authenticated correspondence with carol@partner.example,
/// learned through the pipeline with the clock in the past.
fn seed_history(m: &common::Milter) {
    let cfg = m.shared.config();
    let e = &m.shared.engine;
    let now = sra_milter::now();
    for i in 0..12u64 {
        let t = now - (200 - i * 10) * DAY;
        let out = Message {
            time: t,
            direction: Some(Direction::Outbound),
            header_from: Some("alice@example.com".into()),
            display_name: Some("Alice Liddell".into()),
            recipients: vec!["carol@partner.example".into()],
            message_id: Some(format!("o{i}@example.com")),
            ..Message::default()
        };
        let a = e.assess(&cfg, &out).unwrap();
        e.learn(&cfg, &out, &a).unwrap();
        let reply = Message {
            time: t + 3600,
            direction: Some(Direction::Inbound),
            client_ip: Some("192.0.2.10".parse().unwrap()),
            header_from: Some("carol@partner.example".into()),
            display_name: Some("Carol Jones".into()),
            recipients: vec!["alice@example.com".into()],
            message_id: Some(format!("r{i}@partner.example")),
            references: vec![format!("o{i}@example.com")],
            auth_state: AuthState::Pass,
            ..Message::default()
        };
        let a = e.assess(&cfg, &reply).unwrap();
        e.learn(&cfg, &reply, &a).unwrap();
        let answer = Message {
            time: t + 7200,
            references: vec![format!("r{i}@partner.example")],
            message_id: Some(format!("a{i}@example.com")),
            ..out.clone()
        };
        let a = e.assess(&cfg, &answer).unwrap();
        e.learn(&cfg, &answer, &a).unwrap();
    }
    e.refresh_protected(&cfg, now).unwrap();
}

#[tokio::test]
async fn signed_mail_from_the_real_sender_is_authenticated_and_trusted() {
    let w = world();
    let m = start(&w).await;
    seed_history(&m);
    let t = send(m.addr, &w.signed("real1@partner.example")).await;
    let verdict = t.header("X-SRA-Verdict").unwrap();
    assert!(verdict.starts_with("sender=trusted"), "{verdict}");
    let ar = t
        .header("Authentication-Results")
        .expect("Authentication-Results added");
    assert!(ar.starts_with("mx.example.com;"), "{ar}");
    assert!(
        ar.contains("dkim=pass") && ar.contains("spf=pass") && ar.contains("dmarc=pass"),
        "{ar}"
    );
    m.stop().await;
}

/// An MTA that passes header values as they are (Postfix with the
/// negotiated leading-space option) gets a header signed byte for byte
/// verified, and the headers sra-milter adds bring their own space after
/// the colon (Postfix adds none then). An MTA that takes the space off
/// gets values without one (it puts one back).
#[tokio::test]
async fn header_values_keep_their_exact_spacing_both_ways() {
    use indymilter_test::{ProtoOpts, TestConnection};
    use mail_auth::dkim::Canonicalization;
    let w = world();
    let m = start(&w).await;

    // Exact values: "Subject:" with no space, signed with simple
    // canonicalisation (one added space breaks the signature).
    let mut exact = Mail::inbound("carol@partner.example", "exact1@partner.example");
    exact.headers = vec![
        ("From".into(), " Carol Jones <carol@partner.example>".into()),
        ("To".into(), " alice@example.com".into()),
        ("Subject".into(), "no space before this".into()),
        ("Message-ID".into(), " <exact1@partner.example>".into()),
    ];
    let mut text = String::new();
    for (n, v) in &exact.headers {
        text.push_str(&format!("{n}:{v}\r\n"));
    }
    text.push_str("\r\n");
    text.push_str(&exact.body);
    let (name, value) = w
        .key
        .sign_with(&text, "partner.example", "s1", Canonicalization::Simple);
    exact.headers.insert(0, (name, format!(" {value}")));
    let conn = TestConnection::configure()
        .available_opts(ProtoOpts::all())
        .exact_leading_space(true)
        .open_tcp(m.addr)
        .await
        .unwrap();
    assert!(conn.negotiated_opts().contains(ProtoOpts::LEADING_SPACE));
    let t = common::send_on(conn, &exact).await.unwrap();
    let headers = t.added();
    assert!(!headers.is_empty(), "{t:?}");
    for (name, value) in &headers {
        assert!(value.starts_with(' '), "{name}:{value}");
    }
    let ar = t.header("Authentication-Results").unwrap();
    assert!(ar.starts_with("mx.example.com;"), "{ar}");
    assert!(ar.contains("dkim=pass"), "{ar}");
    assert!(t.header("X-SRA-Verdict").unwrap().starts_with("sender="));

    // Values with the space taken off, as Postfix sends them without the
    // option: the added ones have none either.
    let conn = TestConnection::configure()
        .available_opts(ProtoOpts::all().difference(ProtoOpts::LEADING_SPACE))
        .open_tcp(m.addr)
        .await
        .unwrap();
    let t = common::send_on(conn, &w.signed("plain1@partner.example"))
        .await
        .unwrap();
    let headers = t.added();
    assert!(!headers.is_empty(), "{t:?}");
    for (name, value) in &headers {
        assert!(!value.starts_with(' '), "{name}:{value}");
    }
    let ar = t.header("Authentication-Results").unwrap();
    assert!(
        ar.starts_with("mx.example.com;") && ar.contains("dkim=pass"),
        "{ar}"
    );
    m.stop().await;
}

#[tokio::test]
async fn a_spoof_of_an_established_sender_from_a_new_mta_is_not_trusted() {
    let w = world();
    let m = start(&w).await;
    seed_history(&m);
    let cfg = m.shared.config();
    let mut spoof = Mail::inbound("carol@partner.example", "spoof1@partner.example");
    spoof.ip = "203.0.113.66".parse().unwrap();
    spoof.helo = "mx.elsewhere.example".into();
    spoof.headers[0] = ("From".into(), "Carol Jones <carol@partner.example>".into());
    let t = send(m.addr, &spoof).await;
    let verdict = t.header("X-SRA-Verdict").unwrap();
    assert!(
        verdict.starts_with("sender=malicious") || verdict.starts_with("sender=suspicious"),
        "{verdict}"
    );
    assert!(
        verdict.contains("anomalies=auth_regression,new_mta_for_sender"),
        "{verdict}"
    );
    // Enforcing: the default policy refuses or holds it.
    assert!(
        t.quarantined() || matches!(t.eom_status(), Some(indymilter_test::Status::Reject { .. })),
        "{t:?}"
    );
    // The real sender keeps its trust; the spoof is counted apart.
    let real = m
        .shared
        .engine
        .rate_sender(&cfg, "carol@partner.example", sra_milter::now())
        .unwrap();
    assert_eq!(real.class, Class::Trusted, "score {}", real.score);
    let rec = m
        .store
        .record(sra_milter::store::Kind::Sender, "carol@partner.example")
        .unwrap();
    assert_eq!(
        rec.count(sra_milter::store::Counter::UnauthMessagesReceived),
        0,
        "a refused spoof is not learned"
    );
    m.stop().await;
}

#[tokio::test]
async fn unauthenticated_mail_does_not_build_trust() {
    let w = world();
    let m = start(&w).await;
    let cfg = m.shared.config();
    // A reply to our outbound mail, from outside partner.example's SPF and
    // unsigned: DMARC fails; it is delivered (p=none), counted apart.
    send(
        m.addr,
        &Mail::outbound("carol@partner.example", "o1@example.com"),
    )
    .await;
    let mut spoof = Mail::inbound("carol@partner.example", "u1@partner.example")
        .header("In-Reply-To", "<o1@example.com>");
    spoof.ip = "203.0.113.66".parse().unwrap();
    spoof.helo = "mx.elsewhere.example".into();
    let t = send(m.addr, &spoof).await;
    assert_eq!(t.eom_status(), Some(&indymilter_test::Status::Continue));
    let rec = m
        .store
        .record(sra_milter::store::Kind::Sender, "carol@partner.example")
        .unwrap();
    use sra_milter::store::Counter;
    assert_eq!(rec.count(Counter::UnauthMessagesReceived), 1);
    assert_eq!(rec.count(Counter::MessagesReceived), 0);
    assert_eq!(
        rec.count(Counter::RepliesReceived),
        0,
        "an unauthenticated reply is no reply"
    );
    let r = m
        .shared
        .engine
        .rate_sender(&cfg, "carol@partner.example", sra_milter::now())
        .unwrap();
    assert_eq!(r.factor("replies_received").unwrap().value, Some(0.0));
    m.stop().await;
}

#[tokio::test]
async fn lookalikes_of_the_enterprise_and_of_a_trusted_correspondent_are_flagged() {
    let w = world();
    let m = start(&w).await;
    seed_history(&m);
    for (from, id) in [
        ("ceo@examp1e.com", "l1@x"),
        ("carol@partmer.example", "l2@x"),
    ] {
        let mut mail = Mail::inbound(from, id);
        mail.ip = "198.51.100.9".parse().unwrap();
        mail.helo = "mx.elsewhere.example".into();
        let t = send(m.addr, &mail).await;
        let v = t.header("X-SRA-Verdict").unwrap();
        assert!(v.contains("lookalike_domain"), "{from}: {v}");
        assert!(
            !v.starts_with("sender=trusted") && !v.starts_with("sender=neutral"),
            "{from}: {v}"
        );
    }
    m.stop().await;
}

#[tokio::test]
async fn display_name_impersonation_is_flagged() {
    let w = world();
    let m = start(&w).await;
    seed_history(&m);
    let mut mail = Mail::inbound("alice.liddell.office@freemail.example", "dn1@x");
    mail.headers[0] = (
        "From".into(),
        "Alice Liddell <alice.liddell.office@freemail.example>".into(),
    );
    mail.ip = "198.51.100.9".parse().unwrap();
    mail.helo = "mx.elsewhere.example".into();
    // Shown to Alice alone her own name deceives no one (her home
    // address writing to work); shown to a colleague it impersonates her.
    let t = send(m.addr, &mail).await;
    let v = t.header("X-SRA-Verdict").unwrap();
    assert!(!v.contains("display_name_impersonation"), "{v}");
    for h in mail.headers.iter_mut().filter(|h| h.0 == "Message-ID") {
        h.1 = "<dn1b@x>".into();
    }
    mail.rcpts = vec!["bob@example.com".into()];
    mail.headers[1] = ("To".into(), "bob@example.com".into());
    let t = send(m.addr, &mail).await;
    let v = t.header("X-SRA-Verdict").unwrap();
    assert!(v.contains("display_name_impersonation"), "{v}");
    // A trusted correspondent's name on another address, too.
    let mut mail = Mail::inbound("carol.jones@freemail.example", "dn2@x");
    mail.headers[0] = (
        "From".into(),
        "Carol Jones <carol.jones@freemail.example>".into(),
    );
    mail.ip = "198.51.100.9".parse().unwrap();
    mail.helo = "mx.elsewhere.example".into();
    let t = send(m.addr, &mail).await;
    assert!(t
        .header("X-SRA-Verdict")
        .unwrap()
        .contains("display_name_impersonation"));
    m.stop().await;
}

#[tokio::test]
async fn forged_authentication_results_are_removed_and_trusted_upstream_results_used() {
    let w = world();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = common::config(dir.path());
    cfg.auth.verify = true;
    cfg.auth.authserv_id = "mx.example.com".into();
    cfg.auth.trusted_authserv_ids = vec!["filter.example.com".into()];
    let m = common::start_with_auth(dir, cfg, w.auth.clone()).await;
    let mut mail = Mail::inbound("carol@partner.example", "ar1@x")
        .header("Authentication-Results", "mx.example.com; dmarc=pass header.from=partner.example")
        .header("Authentication-Results", "filter.example.com; spf=fail smtp.mailfrom=carol@partner.example; dmarc=fail policy.dmarc=reject header.from=partner.example");
    mail.ip = "203.0.113.66".parse().unwrap();
    let t = send(m.addr, &mail).await;
    let actions = &t.eom.as_ref().unwrap().0;
    assert!(
        actions.has_delete_header("Authentication-Results", 1),
        "{actions:?}"
    );
    // The trusted upstream said DMARC failed with p=reject: refused.
    assert!(
        matches!(t.eom_status(), Some(indymilter_test::Status::Reject { .. })),
        "{t:?}"
    );
    m.stop().await;
}
