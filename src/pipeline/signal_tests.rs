//! What a never-seen MTA's connection shows (reverse DNS, HELO), and the
//! hour of the week as a correspondent's habit.

use super::detection_tests::{
    anomaly, contribution, correspond, correspond_on, inbound, names, DAY, T,
};
use super::tests::{run, setup};
use crate::vocab::Class;

#[test]
fn a_never_seen_mta_without_a_mail_servers_name_is_flagged_until_it_has_history() {
    use crate::message::ReverseDns;
    let (_d, e, cfg) = setup();
    let mut m = inbound("bob@partner.example", "198.51.100.9", T, "b0@x", &[]);
    m.reverse_dns = ReverseDns::None;
    m.helo = "desktop-7f3a".into();
    let a = e.assess(&cfg, &m).unwrap();
    assert_eq!(names(&a), ["no_reverse_dns", "helo_not_fqdn"]);
    let mta = a.mta.as_ref().unwrap();
    let points = |n: &str| mta.extra.iter().find(|c| c.name == n).map(|c| c.points);
    assert_eq!(points("no_reverse_dns"), Some(-10.0));
    assert_eq!(points("helo_not_fqdn"), Some(-6.0));
    assert_eq!(mta.class, Class::Suspicious, "{}", mta.score);
    // The sender's own rating does not carry the MTA's anomalies.
    assert!(contribution(&a, "no_reverse_dns").is_none());

    // An access line's name is one signal; a mail server's name none.
    m.reverse_dns = ReverseDns::Name("198-51-100-9.dsl.isp.example".into());
    m.helo = "mx.partner.example".into();
    assert_eq!(names(&e.assess(&cfg, &m).unwrap()), ["dynamic_reverse_dns"]);
    m.reverse_dns = ReverseDns::Name("mx.partner.example".into());
    assert!(names(&e.assess(&cfg, &m).unwrap()).is_empty());

    // Once the MTA has history of its own, that history speaks instead.
    m.reverse_dns = ReverseDns::None;
    for i in 0..cfg.scoring.min_history {
        m.message_id = Some(format!("b{}@x", i + 1));
        run(&e, &cfg, &m);
    }
    m.message_id = Some("b9@x".into());
    let a = e.assess(&cfg, &m).unwrap();
    assert!(names(&a).is_empty(), "{:?}", names(&a));
}

#[test]
fn a_new_day_at_a_familiar_hour_is_no_break_but_a_first_weekend_is() {
    let (_d, e, cfg) = setup();
    // Carol writes at 09:00 UTC on Mondays, Wednesdays, Thursdays and
    // Fridays for six weeks (`T` is a Friday), answered.
    let workdays = (0..42).filter(|i| matches!(i % 7, 0 | 3 | 5 | 6));
    correspond_on(
        &e,
        &cfg,
        "carol@partner.example",
        "192.0.2.10",
        workdays,
        true,
    );
    let week7 = T + 42 * DAY + 3600;
    let mut m = inbound("carol@partner.example", "192.0.2.10", week7, "n1@x", &[]);
    m.mail_client = Some("roundcube webmail".into());
    // A first Tuesday morning: her mornings are known, the new client is
    // the only break.
    m.time = week7 + 4 * DAY;
    let a = e.assess(&cfg, &m).unwrap();
    assert!(
        !names(&a).contains(&"behaviour_change"),
        "{:?}",
        a.anomalies
    );
    // A first Saturday morning is new: two breaks.
    m.time = week7 + DAY;
    let a = e.assess(&cfg, &m).unwrap();
    let bc = anomaly(&a, "behaviour_change").unwrap_or_else(|| panic!("{:?}", a.anomalies));
    assert!(bc.detail.contains("sat/06-12"), "{}", bc.detail);
    // So is a Tuesday night.
    m.time = week7 + 4 * DAY + 12 * 3600;
    let a = e.assess(&cfg, &m).unwrap();
    let bc = anomaly(&a, "behaviour_change").unwrap_or_else(|| panic!("{:?}", a.anomalies));
    assert!(bc.detail.contains("tue/18-24"), "{}", bc.detail);
}

#[test]
fn a_new_hour_of_the_week_is_a_break_once_the_hours_are_known() {
    let (_d, e, cfg) = setup();
    // Carol writes at 09:00 UTC, every day for three weeks, answered.
    correspond(&e, &cfg, "carol@partner.example", "192.0.2.10", 21, true);
    let later = T + 30 * DAY;
    let at_night = later + 13 * 3600; // 21:00 UTC
    let mut m = inbound("carol@partner.example", "192.0.2.10", at_night, "n1@x", &[]);
    // At night alone: one break is not a behaviour change.
    let a = e.assess(&cfg, &m).unwrap();
    assert!(
        !names(&a).contains(&"behaviour_change"),
        "{:?}",
        a.anomalies
    );
    // At night from a new mail client: two.
    m.mail_client = Some("roundcube webmail".into());
    let a = e.assess(&cfg, &m).unwrap();
    let bc = anomaly(&a, "behaviour_change").unwrap_or_else(|| panic!("{:?}", a.anomalies));
    assert!(bc.detail.contains("new hour of the week"), "{}", bc.detail);
    assert!(bc.detail.contains("18-24"), "{}", bc.detail);
    // At her usual hour, the new client alone is one break.
    m.time = later + 3600;
    let a = e.assess(&cfg, &m).unwrap();
    assert!(
        !names(&a).contains(&"behaviour_change"),
        "{:?}",
        a.anomalies
    );

    // With fewer messages behind them, her hours are not judged.
    let (_d2, e2, cfg2) = setup();
    correspond(&e2, &cfg2, "carol@partner.example", "192.0.2.10", 8, true);
    m.time = at_night;
    let a = e2.assess(&cfg2, &m).unwrap();
    assert!(
        !names(&a).contains(&"behaviour_change"),
        "{:?}",
        a.anomalies
    );
}
