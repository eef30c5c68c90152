//! Engagement events through the daemon's HTTP listener, on a real store.

mod common;
mod support;

use common::{send, Mail};
use sra_milter::store::Counter;
use sra_milter::store::Kind;
use std::io::{Read, Write};

const TOKEN: &str = "test-token-0123456789abcdef";

async fn start() -> (common::Milter, String) {
    let addr = format!("127.0.0.1:{}", support::free_port());
    let a = addr.clone();
    let m = common::start(move |c| {
        let token = c.state_dir.parent().unwrap().join("events.token");
        std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
        c.events.listen = a;
        c.events.token_file = token;
    })
    .await;
    for _ in 0..100 {
        if std::net::TcpStream::connect(&addr).is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    (m, addr)
}

/// POSTs `body`; returns the status and the JSON answer.
async fn post(addr: &str, token: Option<&str>, body: &str) -> (u16, serde_json::Value) {
    let addr = addr.to_string();
    let token = token.map(str::to_string);
    let body = body.to_string();
    tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
        write!(
            s,
            "POST /v1/events HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/x-ndjson\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        let status = resp[9..12].parse().unwrap();
        let json = resp.split("\r\n\r\n").nth(1).unwrap_or("").trim();
        (status, serde_json::from_str(json).unwrap_or(serde_json::Value::Null))
    })
    .await
    .unwrap()
}

fn ev(kind: &str, id: &str, mailbox: &str) -> String {
    format!(r#"{{"event": "{kind}", "message_id": "<{id}>", "mailbox": "{mailbox}"}}"#)
}

fn count(m: &common::Milter, kind: Kind, key: &str, c: Counter) -> u64 {
    m.store.record(kind, key).unwrap().count(c)
}

#[tokio::test]
async fn a_wrong_or_missing_token_is_refused() {
    let (m, addr) = start().await;
    let body = ev("opened", "x@y", "alice@example.com");
    assert_eq!(post(&addr, None, &body).await.0, 401);
    assert_eq!(
        post(&addr, Some("wrong-token-0123456789"), &body).await.0,
        401
    );
    assert_eq!(post(&addr, Some(TOKEN), &body).await.0, 202);
    m.stop().await;
}

#[tokio::test]
async fn malformed_json_and_unknown_event_types_are_refused_with_the_line() {
    let (m, addr) = start().await;
    let (s, v) = post(&addr, Some(TOKEN), "{not json").await;
    assert_eq!((s, v["line"].as_u64()), (400, Some(1)), "{v}");
    let body = format!(
        "{}\n{}",
        ev("opened", "a@y", "alice@example.com"),
        ev("clicked", "a@y", "alice@example.com")
    );
    let (s, v) = post(&addr, Some(TOKEN), &body).await;
    assert_eq!(s, 400);
    assert_eq!(v["line"], 2);
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("unknown event type \"clicked\""),
        "{v}"
    );
    m.stop().await;
}

#[tokio::test]
async fn a_batch_with_one_bad_line_applies_nothing() {
    let (m, addr) = start().await;
    send(
        m.addr,
        &Mail::inbound("carol@partner.example", "in1@partner.example"),
    )
    .await;
    let body = format!(
        "{}\n{}\n{}",
        ev("opened", "in1@partner.example", "alice@example.com"),
        r#"{"event": "opened", "message_id": "<in1@partner.example>"}"#,
        ev("junk", "in1@partner.example", "alice@example.com")
    );
    let (s, v) = post(&addr, Some(TOKEN), &body).await;
    assert_eq!((s, v["line"].as_u64()), (400, Some(2)), "{v}");
    assert_eq!(
        count(&m, Kind::Sender, "carol@partner.example", Counter::Opened),
        0
    );
    assert_eq!(
        count(&m, Kind::Sender, "carol@partner.example", Counter::Junk),
        0
    );
    m.stop().await;
}

#[tokio::test]
async fn unknown_message_ids_are_counted_not_errors() {
    let (m, addr) = start().await;
    send(
        m.addr,
        &Mail::inbound("carol@partner.example", "in1@partner.example"),
    )
    .await;
    let body = format!(
        "{}\n{}\n{}",
        ev("opened", "never-seen@nowhere", "alice@example.com"),
        ev("opened", "in1@partner.example", "mallory@example.com"),
        ev("opened", "in1@partner.example", "alice@example.com")
    );
    let (s, v) = post(&addr, Some(TOKEN), &body).await;
    assert_eq!(s, 202, "{v}");
    assert_eq!(
        (v["accepted"].as_u64(), v["unknown"].as_u64()),
        (Some(1), Some(2)),
        "{v}"
    );
    m.stop().await;
}

#[tokio::test]
async fn a_message_counts_as_opened_once_however_many_open_it() {
    let (m, addr) = start().await;
    let mut mail = Mail::inbound("carol@partner.example", "in1@partner.example");
    mail.rcpts = vec!["alice@example.com".into(), "bob@example.com".into()];
    send(m.addr, &mail).await;
    let body = format!(
        "{}\n{}\n{}",
        ev("opened", "in1@partner.example", "alice@example.com"),
        ev("opened", "in1@partner.example", "bob@example.com"),
        ev("opened", "in1@partner.example", "alice@example.com")
    );
    let (s, v) = post(&addr, Some(TOKEN), &body).await;
    assert_eq!(s, 202);
    assert_eq!(
        (v["accepted"].as_u64(), v["duplicate"].as_u64()),
        (Some(1), Some(2)),
        "{v}"
    );
    assert_eq!(
        count(&m, Kind::Sender, "carol@partner.example", Counter::Opened),
        1
    );
    let r = m
        .shared
        .engine
        .rate_sender(
            &m.shared.config(),
            "carol@partner.example",
            sra_milter::now(),
        )
        .unwrap();
    assert_eq!(r.factor("open_ratio").unwrap().value, Some(1.0));
    m.stop().await;
}

#[tokio::test]
async fn unopened_mail_counts_after_the_grace_period_split_by_attachment_and_url() {
    let (m, addr) = start().await;
    let cfg = m.shared.config();
    // Nothing counts before an engagement source has reported.
    send(
        m.addr,
        &Mail::inbound("carol@partner.example", "before@partner.example"),
    )
    .await;
    let grace = cfg.events.open_grace.0.as_secs();
    m.shared
        .engine
        .sweep_not_opened(&cfg, sra_milter::now() + grace + 10)
        .unwrap();
    assert_eq!(
        count(
            &m,
            Kind::Sender,
            "carol@partner.example",
            Counter::NotOpened
        ),
        0
    );
    let r = m
        .shared
        .engine
        .rate_sender(&cfg, "carol@partner.example", sra_milter::now())
        .unwrap();
    assert_eq!(
        r.factor("not_opened").unwrap().value,
        None,
        "no data is not not-opened"
    );

    // The source reports; from now on unopened mail counts.
    post(
        &addr,
        Some(TOKEN),
        &ev("opened", "unknown@x", "alice@example.com"),
    )
    .await;
    let mut with_url = Mail::inbound("carol@partner.example", "url@partner.example");
    with_url.body = "see https://example.org/invoice\r\n".into();
    send(m.addr, &with_url).await;
    let mut with_att = Mail::inbound("carol@partner.example", "att@partner.example");
    with_att.headers.push(("MIME-Version".into(), "1.0".into()));
    with_att.headers.push((
        "Content-Type".into(),
        "multipart/mixed; boundary=\"B\"".into(),
    ));
    with_att.body = "--B\r\nContent-Type: text/plain\r\n\r\nhi\r\n--B\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"x.pdf\"\r\n\r\nJVBERi0=\r\n--B--\r\n".into();
    send(m.addr, &with_att).await;
    send(
        m.addr,
        &Mail::inbound("carol@partner.example", "read@partner.example"),
    )
    .await;
    post(
        &addr,
        Some(TOKEN),
        &ev("opened", "read@partner.example", "alice@example.com"),
    )
    .await;

    // Within the grace period: nothing.
    assert_eq!(
        m.shared
            .engine
            .sweep_not_opened(&cfg, sra_milter::now() + 60)
            .unwrap(),
        0
    );
    // After it: the two unopened ones.
    assert_eq!(
        m.shared
            .engine
            .sweep_not_opened(&cfg, sra_milter::now() + grace + 10)
            .unwrap(),
        2
    );
    let r = m
        .shared
        .engine
        .rate_sender(&cfg, "carol@partner.example", sra_milter::now())
        .unwrap();
    let v = |n: &str| r.factor(n).unwrap().value;
    assert_eq!(v("not_opened"), Some(2.0));
    assert_eq!(v("not_opened_with_url"), Some(1.0));
    assert_eq!(v("not_opened_with_attachment"), Some(1.0));
    assert_eq!(v("open_ratio"), Some(0.333));
    assert!(r.factor("not_opened_with_attachment").unwrap().contribution < 0.0);

    // A late open moves one back.
    post(
        &addr,
        Some(TOKEN),
        &ev("opened", "att@partner.example", "alice@example.com"),
    )
    .await;
    let r = m
        .shared
        .engine
        .rate_sender(&cfg, "carol@partner.example", sra_milter::now())
        .unwrap();
    assert_eq!(r.factor("not_opened").unwrap().value, Some(1.0));
    assert_eq!(
        r.factor("not_opened_with_attachment").unwrap().value,
        Some(0.0)
    );
    assert_eq!(r.factor("open_ratio").unwrap().value, Some(0.667));
    m.stop().await;
}

#[tokio::test]
async fn junk_is_negative_evidence_for_sender_and_mta_and_not_junk_withdraws_it() {
    let (m, addr) = start().await;
    let cfg = m.shared.config();
    send(
        m.addr,
        &Mail::inbound("carol@partner.example", "j1@partner.example"),
    )
    .await;
    let before = m
        .shared
        .engine
        .rate_sender(&cfg, "carol@partner.example", sra_milter::now())
        .unwrap()
        .score;
    let (s, _) = post(
        &addr,
        Some(TOKEN),
        &ev("junk", "j1@partner.example", "alice@example.com"),
    )
    .await;
    assert_eq!(s, 202);
    let r = m
        .shared
        .engine
        .rate_sender(&cfg, "carol@partner.example", sra_milter::now())
        .unwrap();
    let junk = r
        .extra
        .iter()
        .find(|c| c.name == "junk")
        .expect("junk contribution");
    assert!(junk.points < 0.0 && r.score < before);
    let mta = m
        .shared
        .engine
        .rate_mta(&cfg, "192.0.2.10".parse().unwrap(), sra_milter::now())
        .unwrap();
    assert!(mta.extra.iter().any(|c| c.name == "junk"));
    // Reported twice: counted once.
    let (_, v) = post(
        &addr,
        Some(TOKEN),
        &ev("junk", "j1@partner.example", "alice@example.com"),
    )
    .await;
    assert_eq!(v["duplicate"], 1);
    post(
        &addr,
        Some(TOKEN),
        &ev("not_junk", "j1@partner.example", "alice@example.com"),
    )
    .await;
    let r = m
        .shared
        .engine
        .rate_sender(&cfg, "carol@partner.example", sra_milter::now())
        .unwrap();
    assert!(!r.extra.iter().any(|c| c.name == "junk"), "withdrawn");
    m.stop().await;
}
