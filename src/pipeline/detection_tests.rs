//! The detection rules over a real store: relayed and answered paths, the
//! relationship weighing, freemail, first contact, network backing and the
//! combined score.

use super::tests::{run, setup};
use super::{Assessment, Engine};
use crate::auth::{AuthResult, AuthSummary, DkimVerdict};
use crate::config::Config;
use crate::message::{AuthState, Message};
use crate::reputation::{combined_score, Anomaly, PathTrust};
use crate::vocab::{Class, Direction};

pub(super) const T: u64 = 1_800_000_000;
pub(super) const DAY: u64 = 86_400;

fn auth(dmarc: AuthResult, arc: AuthResult, dkim: Option<(&str, AuthResult)>) -> AuthSummary {
    AuthSummary {
        source: "authserv:mx.example.com".into(),
        dmarc,
        arc,
        dkim: dkim
            .map(|(d, r)| DkimVerdict {
                domain: d.into(),
                result: r,
                selector: "s1".into(),
            })
            .into_iter()
            .collect(),
        ..AuthSummary::default()
    }
}

pub(super) fn inbound(from: &str, ip: &str, time: u64, id: &str, refs: &[&str]) -> Message {
    Message {
        time,
        direction: Some(Direction::Inbound),
        client_ip: Some(ip.parse().unwrap()),
        // A mail server's: a reverse DNS name, a domain in HELO.
        reverse_dns: crate::message::ReverseDns::Name(format!(
            "mx.{}",
            crate::vocab::domain_of(from)
        )),
        helo: format!("mx.{}", crate::vocab::domain_of(from)),
        envelope_from: Some(from.into()),
        header_from: Some(from.into()),
        recipients: vec!["alice@example.com".into()],
        addressed: vec!["alice@example.com".into()],
        message_id: Some(id.into()),
        references: refs.iter().map(|s| s.to_string()).collect(),
        auth_state: AuthState::Pass,
        auth: Some(auth(AuthResult::Pass, AuthResult::None, None)),
        mail_client: Some("mozilla thunderbird".into()),
        ..Message::default()
    }
}

fn failing(mut m: Message, a: AuthSummary) -> Message {
    m.auth_state = AuthState::Fail;
    m.auth = Some(a);
    m
}

pub(super) fn outbound(to: &str, time: u64, id: &str, refs: &[&str]) -> Message {
    Message {
        time,
        direction: Some(Direction::Outbound),
        client_ip: Some("10.0.0.5".parse().unwrap()),
        envelope_from: Some("alice@example.com".into()),
        header_from: Some("alice@example.com".into()),
        display_name: Some("Alice Example".into()),
        recipients: vec![to.into()],
        message_id: Some(id.into()),
        references: refs.iter().map(|s| s.to_string()).collect(),
        ..Message::default()
    }
}

/// `n` exchanges with `who` from `ip`, authenticated or not: we write, they
/// answer, we answer that; a day apart.
pub(super) fn correspond(
    e: &Engine,
    cfg: &Config,
    who: &str,
    ip: &str,
    n: u64,
    authenticated: bool,
) {
    correspond_on(e, cfg, who, ip, 0..n, authenticated)
}

/// As [`correspond`], on the given days after `T` (a Friday) only.
pub(super) fn correspond_on(
    e: &Engine,
    cfg: &Config,
    who: &str,
    ip: &str,
    days: impl Iterator<Item = u64>,
    authenticated: bool,
) {
    for i in days {
        let t = T + i * DAY;
        let (o, r, o2) = (
            format!("o{i}@example.com"),
            format!("r{i}@x"),
            format!("p{i}@example.com"),
        );
        run(e, cfg, &outbound(who, t, &o, &[]));
        let mut m = inbound(who, ip, t + 3600, &r, &[&o]);
        if !authenticated {
            m = failing(m, auth(AuthResult::None, AuthResult::None, None));
        }
        run(e, cfg, &m);
        run(e, cfg, &outbound(who, t + 7200, &o2, &[&r]));
    }
}

pub(super) fn names(a: &Assessment) -> Vec<&'static str> {
    a.anomalies.iter().map(|x| x.name).collect()
}

pub(super) fn anomaly<'a>(a: &'a Assessment, name: &str) -> Option<&'a Anomaly> {
    a.anomalies.iter().find(|x| x.name == name)
}

pub(super) fn contribution(a: &Assessment, name: &str) -> Option<f64> {
    let s = a.sender.as_ref()?;
    s.extra.iter().find(|c| c.name == name).map(|c| c.points)
}

/// A relay that has carried mail of `n` sender domains to us.
fn make_relay(e: &Engine, cfg: &Config, ip: &str, n: usize) {
    for i in 0..n {
        run(
            e,
            cfg,
            &inbound(
                &format!("member@domain{i}.example"),
                ip,
                T,
                &format!("l{i}@x"),
                &[],
            ),
        );
    }
}

#[test]
fn a_correspondent_through_a_known_list_keeps_most_history_a_spoof_none() {
    let (_d, e, cfg) = setup();
    correspond(&e, &cfg, "carol@partner.example", "192.0.2.10", 12, true);
    make_relay(&e, &cfg, "198.51.100.50", 6);
    let later = T + 40 * DAY;
    let broken = auth(AuthResult::Fail, AuthResult::Pass, None);

    let mut list = failing(
        inbound("carol@partner.example", "198.51.100.50", later, "l@x", &[]),
        broken.clone(),
    );
    list.list_id = Some("<forum.lists.example>".into());
    let a = e.assess(&cfg, &list).unwrap();
    assert_eq!(a.path, PathTrust::Indirect("arc pass"));
    assert!(
        names(&a).is_empty(),
        "no regression, no new MTA: {:?}",
        names(&a)
    );
    assert!(contribution(&a, "unauthenticated_indirect").is_some());
    assert!(contribution(&a, "unauthenticated").is_none());
    assert_eq!(a.sender.as_ref().unwrap().class, Class::Trusted);

    // The same message from a host that never relayed anything to us.
    let mut spoof = list.clone();
    spoof.client_ip = Some("203.0.113.9".parse().unwrap());
    let a = e.assess(&cfg, &spoof).unwrap();
    assert_eq!(a.path, PathTrust::Unproven);
    assert!(names(&a).contains(&"auth_regression"));
    assert!(names(&a).contains(&"new_mta_for_sender"));
    assert!(a.sender.as_ref().unwrap().class >= Class::Suspicious);
}

#[test]
fn a_broken_signature_of_the_from_domain_through_a_relay_is_forwarding() {
    let (_d, e, cfg) = setup();
    correspond(&e, &cfg, "carol@partner.example", "192.0.2.10", 6, true);
    make_relay(&e, &cfg, "198.51.100.80", 6);
    let fwd = failing(
        inbound(
            "carol@partner.example",
            "198.51.100.80",
            T + 20 * DAY,
            "f@x",
            &[],
        ),
        auth(
            AuthResult::Fail,
            AuthResult::None,
            Some(("partner.example", AuthResult::Fail)),
        ),
    );
    let a = e.assess(&cfg, &fwd).unwrap();
    assert!(matches!(a.path, PathTrust::Indirect(_)));
    // Without the broken signature the relay proves nothing.
    let bare = failing(fwd.clone(), auth(AuthResult::Fail, AuthResult::None, None));
    assert_eq!(e.assess(&cfg, &bare).unwrap().path, PathTrust::Unproven);
}

#[test]
fn a_forwarded_answer_through_an_unknown_forwarder_keeps_the_history() {
    let (_d, e, cfg) = setup();
    correspond(&e, &cfg, "carol@partner.example", "192.0.2.10", 6, true);
    // The enterprise writes to Carol; her answer comes through a
    // forwarding service never seen before, her DKIM signature broken.
    run(
        &e,
        &cfg,
        &outbound("carol@partner.example", T + 20 * DAY, "q1@example.com", &[]),
    );
    let answer = failing(
        inbound(
            "carol@partner.example",
            "198.51.100.99",
            T + 20 * DAY + 3600,
            "a1@x",
            &["q1@example.com"],
        ),
        auth(
            AuthResult::Fail,
            AuthResult::None,
            Some(("partner.example", AuthResult::Fail)),
        ),
    );
    let a = e.assess(&cfg, &answer).unwrap();
    assert!(matches!(a.path, PathTrust::Indirect(_)), "{:?}", a.path);
    assert!(!names(&a).contains(&"auth_regression"), "{:?}", a.anomalies);
    assert!(a.sender.as_ref().unwrap().class < Class::Suspicious);

    // The same message answering nothing, or mail sent to someone else,
    // is a spoof of her until the forwarder is known.
    let mut cold = answer.clone();
    cold.references.clear();
    let a = e.assess(&cfg, &cold).unwrap();
    assert_eq!(a.path, PathTrust::Unproven);
    assert!(names(&a).contains(&"auth_regression"));
    run(
        &e,
        &cfg,
        &outbound("dave@partner.example", T + 21 * DAY, "q2@example.com", &[]),
    );
    let mut other = answer.clone();
    other.references = vec!["q2@example.com".into()];
    assert_eq!(e.assess(&cfg, &other).unwrap().path, PathTrust::Unproven);
    // Nor does a thread vouch without a sign that the message was relayed.
    let bare = failing(
        answer.clone(),
        auth(AuthResult::Fail, AuthResult::None, None),
    );
    assert!(names(&e.assess(&cfg, &bare).unwrap()).contains(&"auth_regression"));
}

#[test]
fn a_never_authenticating_correspondent_builds_history_on_answered_paths() {
    let (_d, e, cfg) = setup();
    correspond(&e, &cfg, "bob@small.example", "192.0.2.20", 8, false);
    let next = failing(
        inbound("bob@small.example", "192.0.2.21", T + 30 * DAY, "n@x", &[]),
        auth(AuthResult::None, AuthResult::None, None),
    );
    let a = e.assess(&cfg, &next).unwrap();
    assert_eq!(a.path, PathTrust::Answered);
    assert!(names(&a).is_empty(), "{:?}", names(&a));
    assert!(contribution(&a, "unauthenticated").is_none());
    assert!(a.sender.as_ref().unwrap().score > 70.0);

    // The same claim from a network never answered: a spoof.
    let mut spoof = next.clone();
    spoof.client_ip = Some("203.0.113.7".parse().unwrap());
    let a = e.assess(&cfg, &spoof).unwrap();
    assert_eq!(a.path, PathTrust::Unproven);
    assert!(names(&a).contains(&"auth_regression"), "{:?}", names(&a));
    assert!(names(&a).contains(&"new_mta_for_sender"));
    assert!(a.sender.as_ref().unwrap().class >= Class::Suspicious);
}

#[test]
fn impersonation_weighs_against_the_relationship_of_that_address() {
    let (_d, e, cfg) = setup();
    // Alice signs outbound mail as "Alice Example".
    run(
        &e,
        &cfg,
        &outbound("x@elsewhere.example", T, "a0@example.com", &[]),
    );
    let mut stranger = inbound(
        "alice.home@mailbox.example",
        "192.0.2.30",
        T + DAY,
        "s@x",
        &[],
    );
    stranger.display_name = Some("Alice Example".into());
    // Shown to Alice alone, her name deceives no one (her home address
    // writing to work); shown to Bob, it impersonates her.
    let a = e.assess(&cfg, &stranger).unwrap();
    assert!(!names(&a).contains(&"display_name_impersonation"));
    stranger.recipients = vec!["bob@example.com".into()];
    stranger.addressed = vec!["bob@example.com".into()];
    let a = e.assess(&cfg, &stranger).unwrap();
    let full = anomaly(&a, "display_name_impersonation").unwrap();
    assert_eq!(full.points, cfg.anomalies.display_name_impersonation);
    assert!(a.sender.as_ref().unwrap().class >= Class::Suspicious);

    // Her own home address, which the enterprise has written to for months.
    correspond(
        &e,
        &cfg,
        "alice.home@mailbox.example",
        "192.0.2.30",
        12,
        true,
    );
    let mut home = stranger.clone();
    home.time = T + 60 * DAY;
    let a = e.assess(&cfg, &home).unwrap();
    assert!(
        !names(&a).contains(&"display_name_impersonation"),
        "{:?}",
        a.anomalies
    );
    assert!(a.sender.as_ref().unwrap().class < Class::Suspicious);

    // A spoof of that address does not inherit the relationship.
    let spoof = failing(home.clone(), auth(AuthResult::Fail, AuthResult::None, None));
    let mut spoof = spoof;
    spoof.client_ip = Some("203.0.113.8".parse().unwrap());
    let a = e.assess(&cfg, &spoof).unwrap();
    let an = anomaly(&a, "display_name_impersonation").unwrap();
    assert_eq!(an.points, cfg.anomalies.display_name_impersonation);
}

#[test]
fn a_brand_named_from_outside_its_domains_weighs_against_the_relationship() {
    let (_d, e, cfg) = setup();
    // Brand phishing that authenticates for its own domain.
    let mut m = inbound("service@x7.example", "203.0.113.20", T, "b1@x", &[]);
    m.display_name = Some("PayPal".into());
    let a = e.assess(&cfg, &m).unwrap();
    assert_eq!(names(&a), ["brand_impersonation", "display_name_mismatch"]);
    let an = anomaly(&a, "brand_impersonation").unwrap();
    assert_eq!(an.points, cfg.anomalies.brand_impersonation);
    assert!(an.detail.contains("paypal"), "{}", an.detail);
    assert_eq!(a.sender.as_ref().unwrap().class, Class::Suspicious);

    // The brand's own domain.
    let mut own = inbound("service@paypal.example", "203.0.113.21", T, "b2@x", &[]);
    own.display_name = Some("PayPal".into());
    assert!(!names(&e.assess(&cfg, &own).unwrap()).contains(&"brand_impersonation"));

    // A reseller the enterprise has dealt with for months: weighed by it.
    correspond(&e, &cfg, "service@x7.example", "203.0.113.20", 12, true);
    m.time = T + 60 * DAY;
    let a = e.assess(&cfg, &m).unwrap();
    assert!(
        !names(&a).contains(&"brand_impersonation"),
        "{:?}",
        a.anomalies
    );

    // A list of the site's own replaces the default one.
    let mut mine = cfg.clone();
    mine.anomalies.brands = vec![crate::config::Brand {
        name: "acme bank".into(),
        domains: vec!["acmebank".into()],
    }];
    let mut b = inbound("alerts@y8.example", "203.0.113.22", T, "b3@x", &[]);
    b.display_name = Some("ACME Bank alerts".into());
    assert!(names(&e.assess(&mine, &b).unwrap()).contains(&"brand_impersonation"));
    assert!(!names(&e.assess(&mine, &m).unwrap()).contains(&"brand_impersonation"));
}

#[test]
fn freemail_addresses_get_no_domain_backing() {
    let (_d, e, cfg) = setup();
    correspond(&e, &cfg, "friend@gmail.com", "192.0.2.40", 10, true);
    correspond(&e, &cfg, "carol@partner.example", "192.0.2.41", 10, true);
    let later = T + 30 * DAY;
    let fm = e.rate_sender(&cfg, "new.person@gmail.com", later).unwrap();
    assert!(fm.backed_by.is_none());
    assert_eq!(fm.score, cfg.scoring.base);
    let org = e.rate_sender(&cfg, "dave@partner.example", later).unwrap();
    assert_eq!(org.backed_by.as_deref(), Some("domain:partner.example"));
    assert!(org.score > cfg.scoring.base);
    assert!(cfg.scoring.is_freemail("mail.yahoo.com"));
    assert!(!cfg.scoring.is_freemail("notgmail.com"));
}

#[test]
fn first_contact_signals_two_leave_neutral_a_third_makes_suspicious() {
    let (_d, e, cfg) = setup();
    let unauth = auth(AuthResult::Fail, AuthResult::None, None);
    let mut m = failing(
        inbound("no-reply@x7.example", "203.0.113.20", T, "p1@x", &[]),
        unauth,
    );
    let a = e.assess(&cfg, &m).unwrap();
    assert_eq!(names(&a), ["first_contact_unauthenticated"]);
    assert!(a.sender.as_ref().unwrap().class < Class::Suspicious);

    m.display_name = Some("Northwind Rewards".into());
    let a = e.assess(&cfg, &m).unwrap();
    assert_eq!(
        names(&a),
        ["first_contact_unauthenticated", "display_name_mismatch"]
    );
    // A person whose address is a handle, from a small domain without
    // DKIM, is not condemned for both.
    assert!(a.sender.as_ref().unwrap().class < Class::Suspicious);

    // With a third sign, of how the message was sent, it is.
    m.link_orgs = vec!["login-portal.example".into()];
    let a = e.assess(&cfg, &m).unwrap();
    assert_eq!(
        names(&a),
        [
            "first_contact_unauthenticated",
            "display_name_mismatch",
            "links_elsewhere"
        ]
    );
    assert_eq!(a.sender.as_ref().unwrap().class, Class::Suspicious);
    m.link_orgs.clear();

    // A known sender is no first contact.
    correspond(&e, &cfg, "no-reply@x7.example", "203.0.113.20", 2, true);
    let a = e.assess(&cfg, &m).unwrap();
    assert!(!names(&a).contains(&"first_contact_unauthenticated"));
    assert!(!names(&a).contains(&"display_name_mismatch"));

    use crate::reputation::anomaly::name_mismatch;
    assert!(name_mismatch("PayPal Service", "info@x7.example"));
    assert!(!name_mismatch(
        "Olivia Fischer",
        "olivia.fischer@maple.example"
    ));
    assert!(!name_mismatch("Olivia Fischer", "ofischer42@gmail.com"));
    assert!(
        !name_mismatch("J. D.", "x@y.example"),
        "no words to compare"
    );
}

#[test]
fn a_new_mta_in_a_known_network_is_backed_by_it() {
    let (_d, e, cfg) = setup();
    correspond(&e, &cfg, "carol@partner.example", "192.0.2.10", 10, true);
    let later = T + 30 * DAY;
    let neighbour = e
        .rate_mta(&cfg, "192.0.2.77".parse().unwrap(), later)
        .unwrap();
    assert_eq!(neighbour.backed_by.as_deref(), Some("net:192.0.2.0/24"));
    assert!(neighbour.score > cfg.scoring.base);
    let stranger = e
        .rate_mta(&cfg, "203.0.113.77".parse().unwrap(), later)
        .unwrap();
    assert!(stranger.backed_by.is_none());
    assert_eq!(stranger.class, Class::Unrated);
}

#[test]
fn the_combined_score_moves_the_mta_by_the_sender_and_ignores_unproven_praise() {
    let (_d, e, cfg) = setup();
    correspond(&e, &cfg, "carol@partner.example", "192.0.2.10", 10, true);
    let later = T + 30 * DAY;
    let s = e.rate_sender(&cfg, "carol@partner.example", later).unwrap();
    let m = e
        .rate_mta(&cfg, "192.0.2.10".parse().unwrap(), later)
        .unwrap();
    let base = cfg.scoring.base;
    let both = combined_score(Some(&s), Some(&m), AuthState::Pass, base).unwrap();
    assert_eq!(
        both,
        ((m.score + s.score - base).clamp(0.0, 100.0) * 10.0).round() / 10.0
    );
    assert_eq!(
        combined_score(Some(&s), Some(&m), AuthState::Unverified, base),
        Some(m.score),
        "an identity taken as given adds no praise"
    );
    assert_eq!(
        combined_score(None, Some(&m), AuthState::Pass, base),
        Some(m.score)
    );
    assert_eq!(combined_score(None, None, AuthState::Pass, base), None);
}
