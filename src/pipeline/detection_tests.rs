//! The detection rules over a real store: relayed and answered paths, the
//! relationship weighing, freemail, first contact, network backing and the
//! combined score.

use super::tests::{run, setup};
use super::{Assessment, Engine};
use crate::auth::{AuthResult, AuthSummary, DkimVerdict};
use crate::config::Config;
use crate::message::{AuthState, Message};
use crate::reputation::{combined_score, PathTrust};
use crate::vocab::{Action, Class, Direction};

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
    for i in 0..n {
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
    let full = a
        .anomalies
        .iter()
        .find(|x| x.name == "display_name_impersonation")
        .unwrap();
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
    let an = a
        .anomalies
        .iter()
        .find(|x| x.name == "display_name_impersonation")
        .unwrap();
    assert_eq!(an.points, cfg.anomalies.display_name_impersonation);
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
fn first_contact_signals_one_leaves_neutral_two_make_suspicious() {
    let (_d, e, cfg) = setup();
    let unauth = auth(AuthResult::Fail, AuthResult::None, None);
    let mut m = failing(
        inbound("no-reply@x7.example", "203.0.113.20", T, "p1@x", &[]),
        unauth,
    );
    let a = e.assess(&cfg, &m).unwrap();
    assert_eq!(names(&a), ["first_contact_unauthenticated"]);
    assert!(a.sender.as_ref().unwrap().class < Class::Suspicious);

    m.display_name = Some("Microsoft 365".into());
    let a = e.assess(&cfg, &m).unwrap();
    assert_eq!(
        names(&a),
        ["first_contact_unauthenticated", "display_name_mismatch"]
    );
    assert_eq!(a.sender.as_ref().unwrap().class, Class::Suspicious);

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
fn reply_to_of_a_list_or_the_envelope_domain_does_not_diverge() {
    let (_d, e, cfg) = setup();
    let mut m = inbound("poster@one.example", "192.0.2.50", T, "rt@x", &[]);
    m.reply_to = Some("pay@other.example".into());
    assert!(names(&e.assess(&cfg, &m).unwrap()).contains(&"reply_to_divergence"));
    m.list_id = Some("<list.lists.example>".into());
    assert!(!names(&e.assess(&cfg, &m).unwrap()).contains(&"reply_to_divergence"));
    m.list_id = None;
    m.envelope_from = Some("bounces@other.example".into());
    assert!(!names(&e.assess(&cfg, &m).unwrap()).contains(&"reply_to_divergence"));
}

#[test]
fn a_reply_to_that_is_a_settled_habit_does_not_diverge() {
    let (_d, e, cfg) = setup();
    let msg = |i: u64, time: u64| {
        let mut m = inbound(
            "alerts@weather.example",
            "192.0.2.50",
            time,
            &format!("w{i}@x"),
            &[],
        );
        m.reply_to = Some("help@support-desk.example".into());
        m
    };
    // Every message diverges while the sender is new, habit or not.
    for i in 0..6 {
        let m = msg(i, T + i * DAY / 2);
        let a = e.assess(&cfg, &m).unwrap();
        assert!(names(&a).contains(&"reply_to_divergence"), "message {i}");
        e.learn(&cfg, &m, &a).unwrap();
    }
    // Known for the days its history had to be contradicted, with that
    // Reply-To every time: its habit.
    let later = msg(9, T + 4 * DAY);
    assert!(!names(&e.assess(&cfg, &later).unwrap()).contains(&"reply_to_divergence"));
    // A Reply-To elsewhere still diverges.
    let mut other = msg(10, T + 4 * DAY);
    other.reply_to = Some("pay@elsewhere.example".into());
    assert!(names(&e.assess(&cfg, &other).unwrap()).contains(&"reply_to_divergence"));
}

#[test]
fn a_correspondents_replies_diverted_to_a_stranger_are_not_weighed_by_the_relationship() {
    let (_d, e, cfg) = setup();
    correspond(&e, &cfg, "carol@partner.example", "192.0.2.10", 10, true);
    let later = T + 30 * DAY;
    let mut m = inbound("carol@partner.example", "192.0.2.10", later, "d1@x", &[]);
    let plain = e.assess(&cfg, &m).unwrap();
    assert_eq!(plain.sender.as_ref().unwrap().class, Class::Trusted);

    m.reply_to = Some("carol.partner@freemail.example".into());
    let a = e.assess(&cfg, &m).unwrap();
    assert!(names(&a).contains(&"reply_to_diverted"), "{:?}", names(&a));
    assert!(!names(&a).contains(&"reply_to_divergence"));
    assert_eq!(
        contribution(&a, "reply_to_diverted"),
        Some(cfg.anomalies.reply_to_diverted),
        "the full weight, whatever the relationship"
    );
    let s = a.sender.as_ref().unwrap();
    assert_ne!(s.class, Class::Trusted);
    assert_eq!(s.untrusted_because.as_deref(), Some("reply_to_diverted"));

    // An address the enterprise has written to is no stranger: the plain
    // divergence, weighed by the relationship.
    run(
        &e,
        &cfg,
        &outbound(
            "carol.partner@freemail.example",
            later + 60,
            "o-x@example.com",
            &[],
        ),
    );
    m.time = later + 120;
    let a = e.assess(&cfg, &m).unwrap();
    assert!(!names(&a).contains(&"reply_to_diverted"));
    let weighed = contribution(&a, "reply_to_divergence").unwrap_or(0.0);
    assert!(weighed > cfg.anomalies.reply_to_divergence, "{weighed}");
    assert!(a.sender.as_ref().unwrap().untrusted_because.is_none());

    // A correspondent of one exchange: the diversion weighs as much as the
    // relationship would vouch, between the plain divergence and the full
    // weight.
    correspond(&e, &cfg, "dave@small.example", "192.0.2.20", 1, true);
    let mut d = inbound("dave@small.example", "192.0.2.20", later, "d3@x", &[]);
    d.reply_to = Some("dave.small@freemail.example".into());
    let points = contribution(&e.assess(&cfg, &d).unwrap(), "reply_to_diverted").unwrap();
    assert!(
        points < cfg.anomalies.reply_to_divergence && points > cfg.anomalies.reply_to_diverted,
        "{points}"
    );

    // A stranger's Reply-To elsewhere is only the plain divergence.
    let mut s = inbound("new@other.example", "198.51.100.4", later, "d2@x", &[]);
    s.reply_to = Some("pay@elsewhere.example".into());
    let a = e.assess(&cfg, &s).unwrap();
    assert!(names(&a).contains(&"reply_to_divergence"));
    assert!(!names(&a).contains(&"reply_to_diverted"));
}

#[test]
fn a_never_answered_sender_writing_to_one_person_after_another_is_a_spray() {
    let (_d, e, cfg) = setup();
    let to = |who: &str, i: u64| {
        let mut m = inbound(
            "offers@cold.example",
            "198.51.100.7",
            T + i * 600,
            &format!("s{i}@x"),
            &[],
        );
        m.recipients = vec![format!("{who}@example.com")];
        m
    };
    for (i, who) in ["ann", "bob"].iter().enumerate() {
        let m = to(who, i as u64);
        let a = e.assess(&cfg, &m).unwrap();
        assert!(
            !names(&a).contains(&"recipient_spray"),
            "history of {i} messages"
        );
        e.learn(&cfg, &m, &a).unwrap();
    }
    let third = to("cid", 2);
    let a = e.assess(&cfg, &third).unwrap();
    assert!(names(&a).contains(&"recipient_spray"), "{:?}", names(&a));
    assert_eq!(
        contribution(&a, "recipient_spray"),
        Some(cfg.anomalies.recipient_spray)
    );
    // Writing again to someone it already wrote to is no spread.
    assert!(!names(&e.assess(&cfg, &to("ann", 3)).unwrap()).contains(&"recipient_spray"));
    // Once the enterprise answers, the sender is a correspondent.
    run(
        &e,
        &cfg,
        &outbound(
            "offers@cold.example",
            T + 3000,
            "o-c@example.com",
            &["s1@x"],
        ),
    );
    assert!(!names(&e.assess(&cfg, &to("dan", 4)).unwrap()).contains(&"recipient_spray"));
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

#[test]
fn behaviour_change_needs_two_habits_broken_at_once() {
    let (_d, e, cfg) = setup();
    correspond(&e, &cfg, "carol@partner.example", "192.0.2.10", 8, true);
    let later = T + 30 * DAY;
    let usual = inbound("carol@partner.example", "192.0.2.10", later, "u@x", &[]);
    assert!(names(&e.assess(&cfg, &usual).unwrap()).is_empty());

    // Webmail alone: people change clients.
    let mut one = usual.clone();
    one.mail_client = Some("roundcube webmail".into());
    assert!(names(&e.assess(&cfg, &one).unwrap()).is_empty());

    // Webmail and Reply-To to a freemail address, from her own network.
    let mut two = one.clone();
    two.reply_to = Some("carol.partner@gmail.com".into());
    let a = e.assess(&cfg, &two).unwrap();
    let bc = a
        .anomalies
        .iter()
        .find(|x| x.name == "behaviour_change")
        .expect("raised");
    assert_eq!(bc.points, 2.0 * cfg.anomalies.behaviour_change);
    assert_eq!(
        bc.detail,
        "new mail client roundcube webmail, new Reply-To organisation gmail.com"
    );
    let s = a.sender.as_ref().unwrap();
    assert_ne!(s.class, Class::Trusted, "never trusted, whatever the score");
    assert_eq!(s.untrusted_because.as_deref(), Some("behaviour_change"));

    // And from a network never used: three habits, plus the new MTA.
    let mut three = two.clone();
    three.client_ip = Some("203.0.113.50".parse().unwrap());
    let a = e.assess(&cfg, &three).unwrap();
    let bc = a
        .anomalies
        .iter()
        .find(|x| x.name == "behaviour_change")
        .unwrap();
    assert_eq!(bc.points, 3.0 * cfg.anomalies.behaviour_change);
    assert!(names(&a).contains(&"new_mta_for_sender"));
    assert!(a.sender.as_ref().unwrap().class >= Class::Suspicious);
}

#[test]
fn policy_anomalies_act_on_a_taken_over_account() {
    let (_d, e, mut cfg) = setup();
    cfg.mode = crate::vocab::Mode::Enforce;
    correspond(&e, &cfg, "carol@partner.example", "192.0.2.10", 8, true);
    let mut taken = inbound(
        "carol@partner.example",
        "192.0.2.10",
        T + 30 * DAY,
        "t@x",
        &[],
    );
    taken.mail_client = Some("roundcube webmail".into());
    taken.reply_to = Some("carol.partner@gmail.com".into());
    // Replies diverted to a stranger, with her habits broken: suspicious
    // by class.
    let (a, d) = e.process(&cfg, &taken, Action::Accept, false).unwrap();
    assert!(names(&a).contains(&"behaviour_change"));
    assert!(names(&a).contains(&"reply_to_diverted"));
    assert_eq!(d.outcome.applied, Action::Quarantine);
    // Habits broken without a diversion (webmail from a new network): not
    // trusted, yet accepted by class alone.
    taken.reply_to = None;
    taken.client_ip = Some("203.0.113.9".parse().unwrap());
    let (a, d) = e.process(&cfg, &taken, Action::Accept, false).unwrap();
    assert!(names(&a).contains(&"behaviour_change"));
    assert_eq!(d.outcome.applied, Action::Accept);
    // With [policy.anomalies] behaviour_change = "quarantine".
    cfg.policy
        .anomalies
        .insert("behaviour_change".into(), Action::Quarantine);
    let (_, d) = e.process(&cfg, &taken, Action::Accept, false).unwrap();
    assert_eq!(d.outcome.applied, Action::Quarantine);
    assert_eq!(d.reason, "anomaly behaviour_change");
    // Her usual mail is not touched.
    let usual = inbound(
        "carol@partner.example",
        "192.0.2.10",
        T + 30 * DAY,
        "u@x",
        &[],
    );
    let (_, d) = e.process(&cfg, &usual, Action::Accept, false).unwrap();
    assert_eq!(d.outcome.applied, Action::Accept);
}

#[test]
fn mail_to_people_the_sender_never_dealt_with_is_a_broken_habit() {
    let (_d, e, cfg) = setup();
    correspond(&e, &cfg, "carol@partner.example", "192.0.2.10", 8, true);
    let later = T + 30 * DAY;
    let mut finance = inbound("carol@partner.example", "192.0.2.10", later, "f@x", &[]);
    finance.recipients = vec!["finance@example.com".into()];
    // A new colleague alone is no change of behaviour.
    assert!(names(&e.assess(&cfg, &finance).unwrap()).is_empty());
    // With Reply-To to a new organisation it is.
    finance.reply_to = Some("carol.partner@gmail.com".into());
    let a = e.assess(&cfg, &finance).unwrap();
    let bc = a
        .anomalies
        .iter()
        .find(|x| x.name == "behaviour_change")
        .expect("raised");
    assert_eq!(
        bc.detail,
        "new Reply-To organisation gmail.com, first mail to finance@example.com"
    );
    // To alice, whom she writes to, the Reply-To alone is one break.
    finance.recipients = vec!["alice@example.com".into()];
    assert!(!names(&e.assess(&cfg, &finance).unwrap()).contains(&"behaviour_change"));
}

#[test]
fn broken_habits_are_learned_only_once_the_enterprise_answers() {
    let (_d, e, cfg) = setup();
    correspond(&e, &cfg, "carol@partner.example", "192.0.2.10", 8, true);
    let later = T + 30 * DAY;
    let mut m = inbound("carol@partner.example", "192.0.2.10", later, "c1@x", &[]);
    m.mail_client = Some("roundcube webmail".into());
    m.reply_to = Some("carol.partner@gmail.com".into());
    let a = run(&e, &cfg, &m);
    assert!(names(&a).contains(&"behaviour_change"));

    // Delivered, but its habits were not learned: the next one breaks too.
    let mut m2 = m.clone();
    m2.message_id = Some("c2@x".into());
    m2.time = later + 3600;
    let a = run(&e, &cfg, &m2);
    assert!(names(&a).contains(&"behaviour_change"));

    // The enterprise answers it: the new habits are hers now.
    run(
        &e,
        &cfg,
        &outbound(
            "carol@partner.example",
            later + 7200,
            "ans@example.com",
            &["c2@x"],
        ),
    );
    let mut m3 = m.clone();
    m3.message_id = Some("c3@x".into());
    m3.time = later + 10_800;
    let a = e.assess(&cfg, &m3).unwrap();
    assert!(
        !names(&a).contains(&"behaviour_change"),
        "{:?}",
        a.anomalies
    );
}
