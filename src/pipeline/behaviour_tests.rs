//! Where answers go and how a sender behaves: Reply-To divergence, habits
//! and diversion to a stranger, a stranger spreading over the enterprise's
//! people, and a taken-over account's broken habits.

use super::detection_tests::{anomaly, contribution, correspond, inbound, names, outbound, DAY, T};
use super::tests::{run, setup};
use crate::vocab::{Action, Class};

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
    // Known for days with that Reply-To every time, but its mail never
    // wanted: persistence alone settles nothing.
    let later = msg(9, T + 4 * DAY);
    assert!(names(&e.assess(&cfg, &later).unwrap()).contains(&"reply_to_divergence"));
    // Once the enterprise answered it, the Reply-To is its habit.
    run(
        &e,
        &cfg,
        &outbound(
            "alerts@weather.example",
            T + 4 * DAY,
            "o-w@example.com",
            &["w5@x"],
        ),
    );
    let later = msg(10, T + 4 * DAY + 60);
    let a = e.assess(&cfg, &later).unwrap();
    assert!(
        !names(&a).contains(&"reply_to_divergence"),
        "{:?}",
        names(&a)
    );
    assert!(!names(&a).contains(&"reply_to_diverted"));
    // A Reply-To elsewhere still diverges (to a stranger, for an address
    // the enterprise now writes to).
    let mut other = msg(11, T + 4 * DAY + 120);
    other.reply_to = Some("pay@elsewhere.example".into());
    assert!(names(&e.assess(&cfg, &other).unwrap()).contains(&"reply_to_diverted"));
}

#[test]
fn a_diversion_to_a_free_mailbox_weighs_more_from_an_organisations_address() {
    let (_d, e, cfg) = setup();
    correspond(&e, &cfg, "carol@partner.example", "192.0.2.10", 10, true);
    let later = T + 30 * DAY;
    let mut m = inbound("carol@partner.example", "192.0.2.10", later, "f1@x", &[]);
    m.reply_to = Some("carol.partner@gmail.com".into());
    let a = e.assess(&cfg, &m).unwrap();
    assert!(names(&a).contains(&"reply_to_diverted"), "{:?}", names(&a));
    assert_eq!(
        contribution(&a, "reply_to_freemail"),
        Some(cfg.anomalies.reply_to_freemail)
    );
    // To another organisation: the diversion alone.
    m.reply_to = Some("office@partner-group.example".into());
    let a = e.assess(&cfg, &m).unwrap();
    assert!(names(&a).contains(&"reply_to_diverted"), "{:?}", names(&a));
    assert!(!names(&a).contains(&"reply_to_freemail"));
    // A free mailbox's own user answering from another free mailbox.
    correspond(&e, &cfg, "dave@yahoo.com", "192.0.2.30", 10, true);
    let mut d = inbound("dave@yahoo.com", "192.0.2.30", later, "f2@x", &[]);
    d.reply_to = Some("dave.home@gmail.com".into());
    let a = e.assess(&cfg, &d).unwrap();
    assert!(names(&a).contains(&"reply_to_diverted"), "{:?}", names(&a));
    assert!(!names(&a).contains(&"reply_to_freemail"));
    // A stranger's Reply-To at a free mailbox is the plain divergence.
    let mut s = inbound("erin@new.example", "192.0.2.40", later, "f3@x", &[]);
    s.reply_to = Some("erin@gmail.com".into());
    let a = e.assess(&cfg, &s).unwrap();
    assert!(
        names(&a).contains(&"reply_to_divergence"),
        "{:?}",
        names(&a)
    );
    assert!(!names(&a).contains(&"reply_to_freemail"));
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
    // Unanswered, the diversion teaches no habit: the next message with it
    // is diverted again.
    e.learn(&cfg, &m, &a).unwrap();
    m.message_id = Some("d1b@x".into());
    m.time = later + 30;
    assert!(names(&e.assess(&cfg, &m).unwrap()).contains(&"reply_to_diverted"));

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
    let bc = anomaly(&a, "behaviour_change").expect("raised");
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
    let bc = anomaly(&a, "behaviour_change").unwrap();
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
    let bc = anomaly(&a, "behaviour_change").expect("raised");
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
