//! First contact: what a stranger's message shows of how it was sent, a
//! team's initials, a reply in a thread the enterprise started, and a name
//! shown to its own owner.

use super::detection_tests::{inbound, outbound, T};
use super::tests::{run, setup};
use crate::auth::AuthSummary;
use crate::message::{AuthState, Message};
use crate::reputation::PathTrust;
use crate::vocab::Class;

/// An authenticated stranger's first message to alice, addressed to her.
fn stranger(from: &str) -> Message {
    inbound(from, "198.51.100.9", T, "m1@x", &[])
}

fn names(e: &super::Engine, cfg: &crate::config::Config, m: &Message) -> Vec<&'static str> {
    e.assess(cfg, m)
        .unwrap()
        .anomalies
        .iter()
        .map(|a| a.name)
        .collect()
}

fn class(e: &super::Engine, cfg: &crate::config::Config, m: &Message) -> Class {
    e.assess(cfg, m).unwrap().sender.unwrap().class
}

#[test]
fn each_content_signal_is_named_and_weak_alone() {
    let (_d, e, cfg) = setup();
    let plain = stranger("jo@vendor.example");
    assert!(names(&e, &cfg, &plain).is_empty());

    let mut bcc = plain.clone();
    bcc.addressed = vec!["someone@else.example".into()];
    assert_eq!(names(&e, &cfg, &bcc), ["undisclosed_recipients"]);
    assert!(class(&e, &cfg, &bcc) < Class::Suspicious);
    bcc.addressed.clear();
    assert_eq!(names(&e, &cfg, &bcc), ["undisclosed_recipients"]);
    // List mail names the list, not its readers.
    bcc.list_id = Some("<news.lists.example>".into());
    assert!(names(&e, &cfg, &bcc).is_empty());

    let mut html = plain.clone();
    html.html_only = true;
    assert_eq!(names(&e, &cfg, &html), ["html_only"]);

    let mut links = plain.clone();
    links.link_orgs = vec!["elsewhere.example".into(), "cdn.example".into()];
    assert_eq!(names(&e, &cfg, &links), ["links_elsewhere"]);
    // One link to its own organisation, or to the envelope sender's (a
    // bulk sender's click tracking), and the links are not elsewhere.
    links.link_orgs.push("vendor.example".into());
    assert!(names(&e, &cfg, &links).is_empty());
    links.link_orgs = vec!["esp.example".into()];
    links.envelope_from = Some("bounce-42@mail.esp.example".into());
    assert!(names(&e, &cfg, &links).is_empty());

    // HTML and links together leave a stranger neutral.
    let mut two = html.clone();
    two.link_orgs = vec!["elsewhere.example".into()];
    assert_eq!(names(&e, &cfg, &two), ["html_only", "links_elsewhere"]);
    assert!(class(&e, &cfg, &two) < Class::Suspicious);
}

#[test]
fn content_signals_add_up_with_the_first_contact_signals() {
    let (_d, e, cfg) = setup();
    // Phishing under a name of no listed brand, authenticated for its own
    // domain.
    let mut m = stranger("no-reply@x7.example");
    m.display_name = Some("Northwind Rewards".into());
    assert_eq!(names(&e, &cfg, &m), ["display_name_mismatch"]);
    assert!(class(&e, &cfg, &m) < Class::Suspicious);
    m.addressed.clear();
    assert_eq!(
        names(&e, &cfg, &m),
        ["display_name_mismatch", "undisclosed_recipients"]
    );
    // Two signs leave it neutral; its links elsewhere make three.
    assert!(class(&e, &cfg, &m) < Class::Suspicious);
    m.link_orgs = vec!["login-portal.example".into()];
    assert_eq!(
        names(&e, &cfg, &m),
        [
            "display_name_mismatch",
            "undisclosed_recipients",
            "links_elsewhere"
        ]
    );
    assert_eq!(class(&e, &cfg, &m), Class::Suspicious);

    // All three weak ones together.
    let mut w = stranger("offers@y8.example");
    w.addressed.clear();
    w.html_only = true;
    w.link_orgs = vec!["z9.example".into()];
    assert_eq!(class(&e, &cfg, &w), Class::Suspicious);
}

#[test]
fn content_signals_are_for_first_contact_only() {
    let (_d, e, cfg) = setup();
    let mut m = stranger("jo@vendor.example");
    m.html_only = true;
    m.link_orgs = vec!["elsewhere.example".into()];
    m.addressed.clear();
    assert_eq!(names(&e, &cfg, &m).len(), 3);
    run(&e, &cfg, &m);
    let mut again = m.clone();
    again.message_id = Some("m2@x".into());
    again.time = T + 60;
    assert!(names(&e, &cfg, &again).is_empty());
}

#[test]
fn a_teams_initials_match_its_address() {
    use crate::reputation::anomaly::name_mismatch;
    assert!(!name_mismatch("Accounts Payable", "ap@vendor.example"));
    assert!(!name_mismatch("Human Resources", "hr@vendor.example"));
    // One word is no team's initials.
    assert!(name_mismatch("Payroll", "p@vendor.example"));
    assert!(name_mismatch("Account Security", "xy@vendor.example"));
    // A team named in generic words names no one; a brand does.
    assert!(!name_mismatch("Customer Service", "hello@vendor.example"));
    assert!(!name_mismatch("Recruiting", "jobs@vendor.example"));
    assert!(name_mismatch("PayPal Service", "info@x7.example"));
    assert!(name_mismatch(
        "Microsoft Account Team",
        "no-reply@x7.example"
    ));
}

#[test]
fn a_name_fits_the_usual_ways_addresses_are_made_of_it() {
    use crate::reputation::anomaly::name_mismatch;
    for (name, addr) in [
        ("Mike C. Fletcher", "mcfletch@vrplumber.example"),
        ("Michael Lawrence", "lawremi@uni.example"),
        ("Noah Kantrowitz", "kantrn@uni.example"),
        ("MJ Ray", "mjr@coop.example"),
        ("Gervase Markham", "gerv@gerv.example"),
        ("Ivan Krstić", "krstic@uni.example"),
        ("staackjt", "staack@mail.example"),
        ("Olivia Fischer", "o.fischer@maple.example"),
        ("José Núñez", "jnunez@maple.example"),
        ("Peter Danenberg", "pcd@wikitex.example"),
        // A word past the sixth, after a name in another script.
        ("進念‧二十面體 Zuni Icosahedron", "info@zuni.example"),
        // Diacritics and invisible characters between the letters.
        ("Wállét.com", "wallet@gotgel.example"),
        // Umlauts as German and Nordic addresses spell them, or plain.
        ("Martin Plöderl", "m.ploederl@salk.example"),
        ("Jörg Müller", "joerg.mueller@firma.example"),
        ("Jörg Müller", "jmuller@firma.example"),
        ("Ævar Arnfjörð Bjarmason", "avarab@gmail.com"),
    ] {
        assert!(!name_mismatch(name, addr), "{name} <{addr}>");
    }
    for (name, addr) in [
        ("Frans Pop", "elendil@planet.example"),
        ("PayPal", "pp@x7.example"),
        ("Olivia Fischer", "ofxq@maple.example"),
        ("Payroll", "p@vendor.example"),
        ("Apple Support", "xk@promo.example"),
        ("Jörg Müller", "xk@promo.example"),
        // Letters held apart by zero-width joiners are still a brand.
        ("V\u{200d}e\u{200d}n\u{200d}m\u{200d}o S\u{200d}u\u{200d}p\u{200d}p\u{200d}o\u{200d}r\u{200d}t", "mailsus24395@dev.example"),
    ] {
        assert!(name_mismatch(name, addr), "{name} <{addr}>");
    }
}

#[test]
fn a_hostile_name_and_address_cost_little_to_compare() {
    use crate::reputation::anomaly::name_mismatch;
    // Every way of cutting the local part into beginnings of these words
    // is a candidate, and none fits: a first version, which tried them one
    // by one, spent 3 s on this message (and more with longer addresses).
    let word = "a".repeat(200);
    let name = [word.as_str(); 8].join(" ");
    let address = format!("{}b@x.example", "a".repeat(60));
    assert!(name_mismatch(&name, &address));
}

#[test]
fn a_reply_in_a_thread_the_enterprise_started_is_believed() {
    let (_d, e, cfg) = setup();
    // The enterprise writes to a small domain without DKIM or DMARC.
    run(
        &e,
        &cfg,
        &outbound("bob@small.example", T, "o1@example.com", &[]),
    );
    let mut reply = stranger("bob@small.example");
    reply.time = T + 3600;
    reply.auth_state = AuthState::Fail;
    reply.auth = Some(AuthSummary::default());
    reply.references = vec!["o1@example.com".into()];
    assert_eq!(e.assess(&cfg, &reply).unwrap().path, PathTrust::Answered);
    // The same claim without the thread, or answering mail sent to
    // someone else, is unproven.
    let mut cold = reply.clone();
    cold.references.clear();
    assert_eq!(e.assess(&cfg, &cold).unwrap().path, PathTrust::Unproven);
    let mut other = reply.clone();
    other.header_from = Some("carol@small.example".into());
    other.envelope_from = Some("carol@small.example".into());
    assert_eq!(e.assess(&cfg, &other).unwrap().path, PathTrust::Unproven);
}

#[test]
fn a_name_shown_to_its_own_owner_is_no_impersonation() {
    let (_d, e, cfg) = setup();
    // Alice signs outbound mail as "Alice Example".
    run(
        &e,
        &cfg,
        &outbound("x@elsewhere.example", T, "o1@example.com", &[]),
    );
    let mut home = stranger("alice.home@mailbox.example");
    home.display_name = Some("Alice Example".into());
    home.time = T + 60;
    assert!(!names(&e, &cfg, &home).contains(&"display_name_impersonation"));
    // To her and a colleague: the colleague is shown her name.
    home.recipients.push("bob@example.com".into());
    assert!(names(&e, &cfg, &home).contains(&"display_name_impersonation"));
}
