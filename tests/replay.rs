//! Replay on fixtures the tests write: Maildir, mbox and .eml inputs, time
//! order across files, unreadable input, and parity with the milter.

mod common;

use sra_milter::config::Config;
use sra_milter::replay::{replay, ReplayOptions, Summary};
use std::path::{Path, PathBuf};

/// A message as an archive holds it: our MX's Received on top.
fn archived(from: &str, to: &str, id: &str, date: &str, extra: &str) -> String {
    format!(
        "Return-Path: <{from}>\r\nDelivered-To: {to}\r\nReceived: from mx.partner.example (mx.partner.example [192.0.2.10])\r\n\tby mx.example.com (Postfix) with ESMTP id 4ABC; {date}\r\nFrom: Carol <{from}>\r\nTo: <{to}>\r\nSubject: hello\r\nDate: {date}\r\nMessage-ID: <{id}>\r\n{extra}\r\nHello.\r\n"
    )
}

fn outbound(to: &str, id: &str, date: &str, extra: &str) -> String {
    format!(
        "Return-Path: <alice@example.com>\r\nReceived: from laptop (unknown [198.51.100.7])\r\n\t(Authenticated sender: alice)\r\n\tby mx.example.com (Postfix) with ESMTPSA id 5DEF; {date}\r\nFrom: Alice <alice@example.com>\r\nTo: <{to}>\r\nSubject: question\r\nDate: {date}\r\nMessage-ID: <{id}>\r\n{extra}\r\nHi.\r\n"
    )
}

fn cfg(dir: &Path) -> Config {
    let mut c = common::config(dir);
    c.mode = sra_milter::vocab::Mode::Monitor;
    c
}

fn run(cfg: &Config, paths: Vec<PathBuf>, dry_run: bool) -> (Summary, Vec<serde_json::Value>) {
    let opts = ReplayOptions {
        paths,
        dry_run,
        batch: 3,
        ..ReplayOptions::default()
    };
    let mut out = Vec::new();
    let s = replay(cfg, &opts, &mut out).unwrap();
    let recs = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (s, recs)
}

fn strip(mut v: serde_json::Value) -> serde_json::Value {
    v.as_object_mut().unwrap().remove("source");
    v
}

fn messages() -> Vec<String> {
    vec![
        archived(
            "carol@partner.example",
            "alice@example.com",
            "m1@p",
            "Tue, 10 Apr 2007 10:00:00 +0000",
            "",
        ),
        archived(
            "carol@partner.example",
            "bob@example.com",
            "m2@p",
            "Wed, 11 Apr 2007 10:00:00 +0000",
            "",
        ),
        archived(
            "dave@other.example",
            "alice@example.com",
            "m3@o",
            "Thu, 12 Apr 2007 10:00:00 +0000",
            "",
        ),
    ]
}

#[test]
fn maildir_mbox_and_eml_inputs_give_the_same_records() {
    let base = tempfile::tempdir().unwrap();
    let msgs = messages();
    // Maildir
    let md = base.path().join("Maildir");
    for d in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(md.join(d)).unwrap();
    }
    for (i, m) in msgs.iter().enumerate() {
        let sub = if i == 0 { "new" } else { "cur" };
        std::fs::write(md.join(sub).join(format!("1700000000.{i}.host:2,S")), m).unwrap();
    }
    // mbox (with a body line that must be quoted)
    let mut mbox = String::new();
    for m in &msgs {
        mbox.push_str("From MAILER-DAEMON Tue Apr 10 10:00:00 2007\n");
        mbox.push_str(&m.replace("\r\n", "\n"));
        mbox.push('\n');
    }
    let mbox_path = base.path().join("archive.mbox");
    std::fs::write(&mbox_path, mbox).unwrap();
    // .eml
    let eml = base.path().join("eml");
    std::fs::create_dir_all(&eml).unwrap();
    for (i, m) in msgs.iter().enumerate() {
        std::fs::write(eml.join(format!("{i}.eml")), m).unwrap();
    }

    let mut results = Vec::new();
    for input in [md, mbox_path, eml] {
        let d = tempfile::tempdir().unwrap();
        let (s, recs) = run(&cfg(d.path()), vec![input.clone()], false);
        assert_eq!(s.messages, 3, "{}", input.display());
        assert!(s.failures.is_empty(), "{:?}", s.failures);
        results.push(recs.into_iter().map(strip).collect::<Vec<_>>());
    }
    assert_eq!(results[0], results[1], "Maildir vs mbox");
    assert_eq!(results[0], results[2], "Maildir vs .eml");
    let r = &results[0];
    assert_eq!(r[0]["client_ip"], "192.0.2.10");
    assert_eq!(r[0]["helo"], "mx.partner.example");
    assert_eq!(r[0]["time"], "2007-04-10T10:00:00Z");
    assert_eq!(r[0]["envelope_from"], "carol@partner.example");
    assert_eq!(r[0]["recipients"], serde_json::json!(["alice@example.com"]));
    // Prequential: the second message of carol sees the first.
    assert_eq!(r[0]["sender"]["factors"]["messages_received"], 0.0);
    assert_eq!(r[1]["sender"]["factors"]["messages_received"], 1.0);
    assert_eq!(r[1]["sender"]["factors"]["days_known"], 1.0);
}

#[test]
fn messages_are_replayed_in_time_order_across_files() {
    let base = tempfile::tempdir().unwrap();
    let late = archived(
        "carol@partner.example",
        "alice@example.com",
        "late@p",
        "Fri, 13 Apr 2007 10:00:00 +0000",
        "",
    );
    let early = archived(
        "carol@partner.example",
        "alice@example.com",
        "early@p",
        "Mon, 09 Apr 2007 10:00:00 +0000",
        "",
    );
    std::fs::write(base.path().join("a.eml"), late).unwrap();
    std::fs::write(base.path().join("b.eml"), early).unwrap();
    let d = tempfile::tempdir().unwrap();
    let (_, recs) = run(&cfg(d.path()), vec![base.path().to_path_buf()], false);
    assert_eq!(recs[0]["message_id"], "early@p");
    assert_eq!(recs[1]["message_id"], "late@p");
    assert_eq!(recs[1]["sender"]["factors"]["days_known"], 4.0);
}

#[test]
fn unreadable_messages_are_reported_and_the_run_goes_on() {
    let base = tempfile::tempdir().unwrap();
    std::fs::write(base.path().join("good.eml"), &messages()[0]).unwrap();
    std::fs::write(
        base.path().join("nodate.eml"),
        "From: x@y.example\r\nSubject: no date\r\n\r\nbody\r\n",
    )
    .unwrap();
    std::fs::write(
        base.path().join("binary.eml"),
        [0u8, 159, 146, 150, 255, 0, 1],
    )
    .unwrap();
    let d = tempfile::tempdir().unwrap();
    let (s, recs) = run(&cfg(d.path()), vec![base.path().to_path_buf()], false);
    assert_eq!(s.messages, 1);
    assert_eq!(s.failures.len(), 2, "{:?}", s.failures);
    let errors: Vec<_> = recs.iter().filter(|r| r.get("error").is_some()).collect();
    assert_eq!(errors.len(), 2);
    assert!(errors
        .iter()
        .all(|e| e["source"].as_str().unwrap().contains(".eml")));
    assert!(s.to_text().contains("2 unreadable"));
}

#[test]
fn dry_run_rates_without_learning() {
    let base = tempfile::tempdir().unwrap();
    std::fs::write(base.path().join("a.eml"), &messages()[0]).unwrap();
    std::fs::write(base.path().join("b.eml"), &messages()[1]).unwrap();
    let d = tempfile::tempdir().unwrap();
    let c = cfg(d.path());
    run(&c, vec![base.path().to_path_buf()], false);
    // A dry run over the same mail sees the learned history but adds none.
    let (_, recs) = run(&c, vec![base.path().to_path_buf()], true);
    assert_eq!(recs[0]["sender"]["factors"]["messages_received"], 2.0);
    assert_eq!(recs[1]["sender"]["factors"]["messages_received"], 2.0);
}

#[tokio::test]
async fn a_replayed_thread_yields_the_same_factors_as_the_milter() {
    use common::{send, Mail};
    // Through the milter.
    let m = common::start(|_| {}).await;
    send(
        m.addr,
        &Mail::outbound("carol@partner.example", "o1@example.com"),
    )
    .await;
    send(
        m.addr,
        &Mail::inbound("carol@partner.example", "r1@partner.example")
            .header("In-Reply-To", "<o1@example.com>"),
    )
    .await;
    send(
        m.addr,
        &Mail::outbound("carol@partner.example", "o2@example.com")
            .header("In-Reply-To", "<r1@partner.example>"),
    )
    .await;
    let live_cfg = m.shared.config();
    let live = m
        .shared
        .engine
        .rate_sender(&live_cfg, "carol@partner.example", sra_milter::now())
        .unwrap();
    let live_mta = m
        .shared
        .engine
        .rate_mta(&live_cfg, "192.0.2.10".parse().unwrap(), sra_milter::now())
        .unwrap();
    m.stop().await;

    // The same thread from an archive.
    let base = tempfile::tempdir().unwrap();
    std::fs::write(
        base.path().join("1.eml"),
        outbound(
            "carol@partner.example",
            "o1@example.com",
            "Tue, 10 Apr 2007 10:00:00 +0000",
            "",
        ),
    )
    .unwrap();
    std::fs::write(
        base.path().join("2.eml"),
        archived(
            "carol@partner.example",
            "alice@example.com",
            "r1@partner.example",
            "Tue, 10 Apr 2007 11:00:00 +0000",
            "In-Reply-To: <o1@example.com>\r\n",
        ),
    )
    .unwrap();
    std::fs::write(
        base.path().join("3.eml"),
        outbound(
            "carol@partner.example",
            "o2@example.com",
            "Tue, 10 Apr 2007 12:00:00 +0000",
            "In-Reply-To: <r1@partner.example>\r\n",
        ),
    )
    .unwrap();
    let d = tempfile::tempdir().unwrap();
    let c = cfg(d.path());
    let (s, recs) = run(&c, vec![base.path().to_path_buf()], false);
    assert_eq!(s.by_direction.get("outbound"), Some(&2), "{recs:?}");
    let store =
        std::sync::Arc::new(sra_milter::store::RocksStore::open(&c.state_dir, 86400 * 90).unwrap());
    let engine = sra_milter::pipeline::Engine::new(store, &c).unwrap();
    let t = 1176206400 + 3600 * 2;
    let replayed = engine.rate_sender(&c, "carol@partner.example", t).unwrap();
    let replayed_mta = engine
        .rate_mta(&c, "192.0.2.10".parse().unwrap(), t)
        .unwrap();
    for name in [
        "enterprise_recipients",
        "sender_enterprise_ratio",
        "messages_received",
        "replies_sent",
        "messages_sent",
        "replies_received",
        "open_ratio",
    ] {
        assert_eq!(
            live.factor(name).unwrap().value,
            replayed.factor(name).unwrap().value,
            "{name}"
        );
    }
    for name in [
        "sender_domains",
        "enterprise_recipients",
        "messages_received",
        "replies_received",
    ] {
        assert_eq!(
            live_mta.factor(name).unwrap().value,
            replayed_mta.factor(name).unwrap().value,
            "mta {name}"
        );
    }
    assert_eq!(replayed.factor("replies_sent").unwrap().value, Some(1.0));
    assert_eq!(
        replayed.factor("replies_received").unwrap().value,
        Some(1.0)
    );
}

#[test]
fn replayed_events_warm_the_engagement_factors() {
    let base = tempfile::tempdir().unwrap();
    let days = [
        "Mon, 09 Apr 2007 10:00:00 +0000",
        "Tue, 10 Apr 2007 10:00:00 +0000",
        "Wed, 11 Apr 2007 10:00:00 +0000",
    ];
    for (i, d) in days.iter().enumerate() {
        std::fs::write(
            base.path().join(format!("{i}.eml")),
            archived(
                "carol@partner.example",
                "alice@example.com",
                &format!("e{i}@p"),
                d,
                "",
            ),
        )
        .unwrap();
    }
    // The source's first report precedes the mail; e0 is read on the day;
    // e1 and e2 never are.
    let events = sra_milter::pipeline::engagement::parse_batch(
        "{\"event\":\"opened\",\"message_id\":\"<none@x>\",\"mailbox\":\"alice@example.com\",\"time\":\"2007-04-01T00:00:00Z\"}\n\
         {\"event\":\"opened\",\"message_id\":\"<e0@p>\",\"mailbox\":\"alice@example.com\",\"time\":\"2007-04-09T12:00:00Z\"}\n\
         {\"event\":\"junk\",\"message_id\":\"<e2@p>\",\"mailbox\":\"alice@example.com\",\"time\":\"2007-04-20T00:00:00Z\"}\n",
    )
    .unwrap();
    let d = tempfile::tempdir().unwrap();
    let c = cfg(d.path());
    let opts = ReplayOptions {
        paths: vec![base.path().to_path_buf()],
        batch: 2,
        events,
        ..ReplayOptions::default()
    };
    let mut out = Vec::new();
    replay(&c, &opts, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    let recs: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // e2 (Apr 11) met the open of e0 and e1 still within its grace (72 h).
    assert_eq!(recs[2]["sender"]["factors"]["open_ratio"], 1.0);
    let store =
        std::sync::Arc::new(sra_milter::store::RocksStore::open(&c.state_dir, 86400 * 90).unwrap());
    let engine = sra_milter::pipeline::Engine::new(store, &c).unwrap();
    let r = engine
        .rate_sender(&c, "carol@partner.example", 1177000000)
        .unwrap();
    assert_eq!(r.factor("not_opened").unwrap().value, Some(2.0));
    assert_eq!(r.factor("open_ratio").unwrap().value, Some(0.333));
    assert!(r.extra.iter().any(|x| x.name == "junk"));
}
