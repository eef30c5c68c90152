//! The milter driven as Postfix drives it, on a real RocksDB store.

mod common;

use common::{send, start, Mail};
use indymilter_test::Status;
use sra_milter::listeners::control::{send_control, ControlRequest};
use sra_milter::store::Counter;
use sra_milter::store::Kind;
use sra_milter::vocab::Action;
use sra_milter::vocab::Class;
use sra_milter::vocab::Target;
use sra_milter::vocab::{Mode, OnError};

async fn set_override(m: &common::Milter, target: Target, class: Class) {
    let path = m.shared.config().control_socket();
    let resp = send_control(
        &path,
        &ControlRequest::SetOverride {
            target,
            class,
            reason: "test".into(),
        },
    )
    .await
    .unwrap();
    assert!(resp.ok, "{}", resp.message);
}

fn reply_text(s: &Status) -> String {
    match s {
        Status::Reject { message: Some(m) } | Status::Tempfail { message: Some(m) } => {
            m.to_string_lossy().into_owned()
        }
        other => format!("{other:?}"),
    }
}

#[tokio::test]
async fn inbound_mail_gets_a_verdict_header_and_is_accepted() {
    let m = start(|_| {}).await;
    let t = send(
        m.addr,
        &Mail::inbound("carol@partner.example", "in1@partner.example"),
    )
    .await;
    assert_eq!(t.connect, Status::Continue);
    assert_eq!(t.eom_status(), Some(&Status::Continue));
    let h = t.header("X-SRA-Verdict").expect("verdict header");
    assert!(
        h.starts_with("sender=unrated (50.0); mta=unrated (50.0); action=accept; monitor=no"),
        "{h}"
    );
    m.stop().await;
}

#[tokio::test]
async fn malicious_mta_is_rejected_at_connect() {
    let m = start(|_| {}).await;
    set_override(&m, Target::mta("192.0.2.0/24").unwrap(), Class::Malicious).await;
    let t = send(m.addr, &Mail::inbound("carol@partner.example", "x@y")).await;
    let text = reply_text(&t.connect);
    assert!(text.starts_with("550 5.7.1 "), "{text}");
    assert!(text.contains("mta malicious"), "{text}");
    assert!(t.mail.is_none());
    m.stop().await;
}

#[tokio::test]
async fn malicious_envelope_sender_is_rejected_at_mail() {
    let m = start(|_| {}).await;
    set_override(
        &m,
        Target::sender("spammer@bad.example").unwrap(),
        Class::Malicious,
    )
    .await;
    let t = send(m.addr, &Mail::inbound("spammer@bad.example", "x@y")).await;
    assert_eq!(t.connect, Status::Continue);
    let text = reply_text(t.mail.as_ref().unwrap());
    assert!(text.starts_with("550 5.7.1 "), "{text}");
    assert!(text.contains("sender malicious"), "{text}");
    // A tagged +address is the same sender.
    let t = send(m.addr, &Mail::inbound("spammer+x@bad.example", "x2@y")).await;
    assert!(matches!(t.mail, Some(Status::Reject { .. })));
    m.stop().await;
}

#[tokio::test]
async fn rcpt_policy_refuses_each_recipient() {
    let m = start(|c| c.policy.rcpt.sender.suspicious = Action::Tempfail).await;
    set_override(
        &m,
        Target::domain("shady.example").unwrap(),
        Class::Suspicious,
    )
    .await;
    let mut mail = Mail::inbound("who@shady.example", "r@y");
    mail.rcpts = vec!["alice@example.com".into(), "bob@example.com".into()];
    let t = send(m.addr, &mail).await;
    assert_eq!(t.mail, Some(Status::Continue));
    assert_eq!(t.rcpts.len(), 2);
    for r in &t.rcpts {
        assert!(reply_text(r).starts_with("451 4.7.1 "), "{r:?}");
    }
    assert!(t.eom.is_none());
    m.stop().await;
}

#[tokio::test]
async fn suspicious_sender_is_quarantined_at_end_of_message() {
    let m = start(|_| {}).await;
    set_override(
        &m,
        Target::sender("odd@partner.example").unwrap(),
        Class::Suspicious,
    )
    .await;
    let t = send(m.addr, &Mail::inbound("odd@partner.example", "q@y")).await;
    assert_eq!(
        t.mail,
        Some(Status::Continue),
        "suspicious passes MAIL by default"
    );
    assert!(t.quarantined());
    let h = t.header("X-SRA-Verdict").unwrap();
    assert!(
        h.contains("sender=suspicious") && h.contains("action=quarantine"),
        "{h}"
    );
    m.stop().await;
}

#[tokio::test]
async fn tag_action_adds_the_tag_header() {
    let m = start(|c| c.policy.eom.sender.unrated = Action::Tag).await;
    let t = send(m.addr, &Mail::inbound("new@stranger.example", "t@y")).await;
    assert_eq!(t.header("X-SRA-Flag").as_deref(), Some("YES"));
    assert!(t.header("X-SRA-Verdict").unwrap().contains("action=tag"));
    m.stop().await;
}

#[tokio::test]
async fn eom_reject_and_discard_answer_the_mta() {
    let m = start(|c| c.policy.eom.sender.suspicious = Action::Discard).await;
    set_override(
        &m,
        Target::sender("a@bad.example").unwrap(),
        Class::Suspicious,
    )
    .await;
    set_override(
        &m,
        Target::sender("b@bad.example").unwrap(),
        Class::Malicious,
    )
    .await;
    let t = send(m.addr, &Mail::inbound("a@bad.example", "d@y")).await;
    assert_eq!(t.eom_status(), Some(&Status::Discard));
    // Malicious in the From: header only (envelope is someone else): refused at eom.
    let mut mail = Mail::inbound("bounce@lists.example", "e@y");
    mail.headers[0] = ("From".into(), "B <b@bad.example>".into());
    let t = send(m.addr, &mail).await;
    let text = reply_text(t.eom_status().unwrap());
    assert!(text.starts_with("550 5.7.1 "), "{text}");
    // Refused mail is not learned.
    assert_eq!(
        m.store
            .record(Kind::Sender, "b@bad.example")
            .unwrap()
            .count(Counter::MessagesReceived),
        0
    );
    m.stop().await;
}

#[tokio::test]
async fn monitor_only_never_rejects() {
    let m = start(|c| {
        c.mode = Mode::Monitor;
        c.policy.rcpt.sender.malicious = Action::Reject;
        c.policy.eom.sender.malicious = Action::Discard;
    })
    .await;
    set_override(&m, Target::mta("192.0.2.10").unwrap(), Class::Malicious).await;
    set_override(&m, Target::domain("bad.example").unwrap(), Class::Malicious).await;
    set_override(
        &m,
        Target::sender("odd@partner.example").unwrap(),
        Class::Suspicious,
    )
    .await;
    for from in ["x@bad.example", "odd@partner.example"] {
        let t = send(m.addr, &Mail::inbound(from, &format!("{from}.id"))).await;
        assert_eq!(t.connect, Status::Continue);
        assert_eq!(t.mail, Some(Status::Continue));
        assert!(t.rcpts.iter().all(|r| *r == Status::Continue));
        assert_eq!(t.eom_status(), Some(&Status::Continue));
        assert!(!t.quarantined());
        let h = t.header("X-SRA-Verdict").unwrap();
        assert!(h.contains("monitor=yes"), "{h}");
        assert!(h.contains("action=would_"), "{h}");
    }
    m.stop().await;
}

#[tokio::test]
async fn outbound_then_reply_moves_the_conversation_factors() {
    let m = start(|_| {}).await;
    let cfg = m.shared.config();
    let out = send(
        m.addr,
        &Mail::outbound("carol@partner.example", "out1@example.com"),
    )
    .await;
    assert_eq!(out.eom_status(), Some(&Status::Continue));
    assert!(
        out.header("X-SRA-Verdict").is_none(),
        "outbound mail carries no verdict"
    );

    let reply = Mail::inbound("carol@partner.example", "in1@partner.example")
        .header("In-Reply-To", "<out1@example.com>")
        .header("References", "<out1@example.com>");
    send(m.addr, &reply).await;

    let answer = Mail::outbound("carol@partner.example", "out2@example.com")
        .header("In-Reply-To", "<in1@partner.example>");
    send(m.addr, &answer).await;

    let r = m
        .shared
        .engine
        .rate_sender(&cfg, "carol@partner.example", sra_milter::now())
        .unwrap();
    let v = |n: &str| r.factor(n).unwrap().value;
    assert_eq!(v("messages_sent"), Some(2.0));
    assert_eq!(v("replies_received"), Some(1.0));
    assert_eq!(v("replies_sent"), Some(1.0));
    assert_eq!(v("messages_received"), Some(1.0));
    assert_eq!(v("sender_enterprise_ratio"), Some(0.333));
    assert!(r.bidirectional);
    let mta = m
        .shared
        .engine
        .rate_mta(&cfg, "192.0.2.10".parse().unwrap(), sra_milter::now())
        .unwrap();
    assert_eq!(mta.factor("replies_received").unwrap().value, Some(1.0));
    m.stop().await;
}

#[tokio::test]
async fn inbound_mail_moves_the_mta_factors() {
    let m = start(|_| {}).await;
    let cfg = m.shared.config();
    for (i, from) in ["a@one.example", "b@two.example", "c@two.example"]
        .iter()
        .enumerate()
    {
        let mut mail = Mail::inbound(from, &format!("{i}@x"));
        mail.rcpts = vec![format!("user{i}@example.com")];
        send(m.addr, &mail).await;
    }
    let r = m
        .shared
        .engine
        .rate_mta(&cfg, "192.0.2.10".parse().unwrap(), sra_milter::now())
        .unwrap();
    let v = |n: &str| r.factor(n).unwrap().value.unwrap();
    assert_eq!(v("messages_received"), 3.0);
    assert_eq!(v("sender_domains"), 2.0);
    assert_eq!(v("enterprise_recipients"), 3.0);
    assert!(v("days_known") < 0.01);
    assert_eq!(r.class, Class::Neutral, "history of 3 leaves unrated");
    m.stop().await;
}

#[tokio::test]
async fn overrides_win_over_history() {
    let m = start(|_| {}).await;
    let cfg = m.shared.config();
    for i in 0..3 {
        send(
            m.addr,
            &Mail::inbound("carol@partner.example", &format!("{i}@p")),
        )
        .await;
    }
    let before = m
        .shared
        .engine
        .rate_sender(&cfg, "carol@partner.example", sra_milter::now())
        .unwrap();
    assert_eq!(before.class, Class::Neutral);
    set_override(
        &m,
        Target::sender("carol@partner.example").unwrap(),
        Class::Malicious,
    )
    .await;
    let t = send(m.addr, &Mail::inbound("carol@partner.example", "after@p")).await;
    assert!(matches!(t.mail, Some(Status::Reject { .. })));
    let resp = send_control(
        &cfg.control_socket(),
        &ControlRequest::RemoveOverride {
            target: Target::sender("carol@partner.example").unwrap(),
        },
    )
    .await
    .unwrap();
    assert!(resp.ok);
    let t = send(m.addr, &Mail::inbound("carol@partner.example", "after2@p")).await;
    assert_eq!(t.eom_status(), Some(&Status::Continue));
    m.stop().await;
}

#[tokio::test]
async fn config_lists_block_and_allow() {
    let m = start(|c| {
        c.lists.block = vec!["192.0.2.0/24".into()];
        c.lists.allow = vec!["friend.example".into()];
    })
    .await;
    let t = send(m.addr, &Mail::inbound("x@y.example", "l@y")).await;
    assert!(matches!(t.connect, Status::Reject { .. }));
    let mut mail = Mail::inbound("pal@friend.example", "l2@y");
    mail.ip = "198.51.100.3".parse().unwrap();
    let t = send(m.addr, &mail).await;
    assert!(t
        .header("X-SRA-Verdict")
        .unwrap()
        .starts_with("sender=trusted"));
    m.stop().await;
}

#[tokio::test]
async fn forged_verdict_headers_are_removed() {
    let m = start(|_| {}).await;
    let mail = Mail::inbound("carol@partner.example", "f@p")
        .header("X-SRA-Verdict", "sender=trusted (99.0); action=accept")
        .header("x-sra-verdict", "forged again");
    let t = send(m.addr, &mail).await;
    let actions = &t.eom.as_ref().unwrap().0;
    assert!(actions.has_delete_header("X-SRA-Verdict", 1));
    assert!(actions.has_delete_header("X-SRA-Verdict", 2));
    m.stop().await;
}

#[tokio::test]
async fn store_error_follows_on_error() {
    for (policy, expect_tempfail) in [(OnError::Accept, false), (OnError::Tempfail, true)] {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = common::config(dir.path());
        cfg.on_error = policy;
        {
            // A record that cannot be decoded: a real store error on read.
            let mut opts = rocksdb::Options::default();
            opts.create_if_missing(true);
            opts.create_missing_column_families(true);
            let db = rocksdb::DB::open_cf(&opts, &cfg.state_dir, sra_milter::store::CFS).unwrap();
            let cf = db.cf_handle("senders").unwrap();
            db.put_cf(cf, b"broken@partner.example", b"\x63not a record")
                .unwrap();
            let meta = db.cf_handle("meta").unwrap();
            db.put_cf(meta, b"schema_version", b"1").unwrap();
        }
        let m = common::start_with(dir, cfg).await;
        let t = send(m.addr, &Mail::inbound("broken@partner.example", "e@p")).await;
        let mail = t.mail.clone().unwrap();
        if expect_tempfail {
            assert!(reply_text(&mail).starts_with("451 4.3.0"), "{mail:?}");
        } else {
            assert_eq!(mail, Status::Continue);
            // End of message fails the same way and is accepted.
            assert_eq!(t.eom_status(), Some(&Status::Continue));
            assert!(t.header("X-SRA-Verdict").is_none());
        }
        // The corrupt record is still there, untouched.
        let raw = m.store.record(Kind::Sender, "broken@partner.example");
        assert!(raw.is_err());
        // Other senders are unaffected.
        let t = send(m.addr, &Mail::inbound("fine@partner.example", "ok@p")).await;
        assert_eq!(t.eom_status(), Some(&Status::Continue));
        m.stop().await;
    }
}

#[tokio::test]
async fn shutdown_lets_open_sessions_finish() {
    use indymilter_test::{MacroStage, TestConnection};
    let m = start(|_| {}).await;
    let addr = m.addr;
    let mut conn = TestConnection::open(addr).await.unwrap();
    conn.connect("mx.partner.example", [192, 0, 2, 10])
        .await
        .unwrap();
    conn.macros(MacroStage::Mail, [("i", "SHUT1")])
        .await
        .unwrap();
    conn.mail(["<carol@partner.example>"]).await.unwrap();
    let store = m.store.clone();
    let stopping = tokio::spawn(m.stop());
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    // New connections are refused while the open session continues.
    assert!(TestConnection::open(addr).await.is_err());
    conn.rcpt(["<alice@example.com>"]).await.unwrap();
    conn.data().await.unwrap();
    conn.header("From", "carol@partner.example").await.unwrap();
    conn.header("Message-ID", "<shut@p>").await.unwrap();
    conn.eoh().await.unwrap();
    let (_, status) = conn.eom().await.unwrap();
    assert_eq!(status, Status::Continue);
    conn.close().await.unwrap();
    stopping.await.unwrap();
    assert_eq!(
        store
            .record(Kind::Sender, "carol@partner.example")
            .unwrap()
            .count(Counter::MessagesReceived),
        1
    );
}

/// The stages whose answer is always "go on" are not answered when the MTA
/// agrees (one round trip less per header); an MTA that does not offer that
/// is answered at every stage, as before. The verdict is the same.
#[tokio::test]
async fn stages_that_always_go_on_are_not_answered_when_the_mta_agrees() {
    use indymilter_test::{MacroStage, ProtoOpts, TestConnection};
    let m = start(|_| {}).await;
    for (offer, want) in [
        (ProtoOpts::all(), Status::Noreply),
        (
            ProtoOpts::all().difference(sra_milter::milter::SILENT_STAGES),
            Status::Continue,
        ),
    ] {
        let mut conn = TestConnection::configure()
            .available_opts(offer)
            .open_tcp(m.addr)
            .await
            .unwrap_or_else(|e| panic!("offering {offer:?}: {e:?}"));
        let negotiated = conn.negotiated_opts();
        assert_eq!(
            negotiated.contains(sra_milter::milter::SILENT_STAGES),
            want == Status::Noreply,
            "{negotiated:?}"
        );
        conn.connect("mx.partner.example", [192, 0, 2, 10])
            .await
            .unwrap();
        assert_eq!(conn.helo("mx.partner.example").await.unwrap(), want);
        conn.macros(MacroStage::Mail, [("i", "QUIET1")])
            .await
            .unwrap();
        assert_eq!(
            conn.mail(["<carol@partner.example>"]).await.unwrap(),
            Status::Continue
        );
        conn.rcpt(["<alice@example.com>"]).await.unwrap();
        assert_eq!(conn.data().await.unwrap(), want);
        assert_eq!(
            conn.header("From", "carol@partner.example").await.unwrap(),
            want
        );
        let id = format!("<quiet-{}@p>", want == Status::Noreply);
        assert_eq!(conn.header("Message-ID", id).await.unwrap(), want);
        assert_eq!(conn.eoh().await.unwrap(), want);
        assert_eq!(conn.body("Hello Alice.\r\n").await.unwrap(), want);
        let (actions, status) = conn.eom().await.unwrap();
        assert_eq!(status, Status::Continue);
        assert!(
            actions.has_insert_header(0, "X-SRA-Verdict", indymilter_test::any()),
            "{actions:?}"
        );
        conn.close().await.unwrap();
    }
    m.stop().await;
}

#[tokio::test]
async fn malformed_mail_and_broken_packets_never_stop_the_milter() {
    use std::io::Write;
    let m = start(|_| {}).await;
    // Garbage where headers and bodies should be.
    let mut mail = Mail::inbound("carol@partner.example", "bad1@p");
    mail.headers = vec![
        ("From".into(), "\"unterminated <<@@>>".into()),
        ("Message-ID".into(), "<<<>>>".into()),
        ("References".into(), "<".repeat(5000)),
        ("Content-Type".into(), "multipart/mixed; boundary=".into()),
        ("Subject".into(), "=?utf-8?b?////?= \u{fffd}".into()),
    ];
    mail.body = "--\r\n--\r\nContent-Type: application/octet-stream\r\n\r\n".repeat(200);
    let t = send(m.addr, &mail).await;
    assert_eq!(t.eom_status(), Some(&Status::Continue));
    assert!(t.header("X-SRA-Verdict").is_some());
    // A message with no headers at all, and a null sender.
    let mut empty = Mail::inbound("", "x@y");
    empty.headers.clear();
    empty.from = String::new();
    let t = send(m.addr, &empty).await;
    assert_eq!(t.eom_status(), Some(&Status::Continue));

    // Broken milter packets: a huge length, then random bytes, then an
    // unknown command; each connection is dropped, the daemon goes on.
    for junk in [
        &b"\xff\xff\xff\xffO"[..],
        b"\x00\x00\x00\x05Xabcd",
        b"GET / HTTP/1.1\r\n\r\n",
    ] {
        let mut s = std::net::TcpStream::connect(m.addr).unwrap();
        let _ = s.write_all(junk);
        drop(s);
    }
    let t = send(m.addr, &Mail::inbound("carol@partner.example", "good@p")).await;
    assert_eq!(t.eom_status(), Some(&Status::Continue));
    m.stop().await;
}

#[tokio::test]
async fn an_originating_service_is_outbound_from_connect_on() {
    use indymilter_test::{MacroStage, TestConnection};
    let m = start(|c| c.lists.block = vec!["198.51.100.0/24".into()]).await;
    // A user at home, blocked as an MTA, submits through the ORIGINATING
    // service: no connect verdict, and the mail is outbound.
    let mut conn = TestConnection::open(m.addr).await.unwrap();
    conn.macros(MacroStage::Connect, [("{daemon_name}", "ORIGINATING")])
        .await
        .unwrap();
    assert_eq!(
        conn.connect("home.isp.example", [198, 51, 100, 7])
            .await
            .unwrap(),
        Status::Continue
    );
    conn.macros(MacroStage::Mail, [("i", "SUB1")])
        .await
        .unwrap();
    assert_eq!(
        conn.mail(["<alice@example.com>"]).await.unwrap(),
        Status::Continue
    );
    assert_eq!(
        conn.rcpt(["<carol@partner.example>"]).await.unwrap(),
        Status::Continue
    );
    conn.data().await.unwrap();
    conn.header("From", "Alice <alice@example.com>")
        .await
        .unwrap();
    conn.header("Message-ID", "<sub1@example.com>")
        .await
        .unwrap();
    conn.eoh().await.unwrap();
    let (actions, status) = conn.eom().await.unwrap();
    assert_eq!(status, Status::Continue);
    assert!(!actions.has_insert_header(
        indymilter_test::any(),
        "X-SRA-Verdict",
        indymilter_test::any()
    ));
    conn.close().await.unwrap();
    assert_eq!(
        m.store
            .record(Kind::Sender, "carol@partner.example")
            .unwrap()
            .count(Counter::MessagesSent),
        1
    );
    // The same address on the public port is an MTA, and blocked.
    let mut mail = Mail::inbound("x@y.example", "z@y");
    mail.ip = "198.51.100.7".parse().unwrap();
    assert!(matches!(
        send(m.addr, &mail).await.connect,
        Status::Reject { .. }
    ));
    m.stop().await;
}

#[tokio::test]
async fn a_silent_connection_holds_no_slot_and_is_closed_after_milter_timeout() {
    use tokio::io::AsyncReadExt;
    let m = start(|c| {
        c.max_connections = 1;
        c.milter_timeout = sra_milter::vocab::Span(std::time::Duration::from_secs(1));
    })
    .await;
    // A client that connects and says nothing does not take the only slot.
    let mut idle = tokio::net::TcpStream::connect(m.addr).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let started = std::time::Instant::now();
    let t = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        send(m.addr, &Mail::inbound("carol@partner.example", "idle1@x")),
    )
    .await
    .expect("a session beside the silent one gets its verdict");
    assert!(t.header("X-SRA-Verdict").is_some(), "{t:?}");
    assert!(
        started.elapsed() < std::time::Duration::from_millis(900),
        "not held up by the silent client: {:?}",
        started.elapsed()
    );
    // The silent connection is closed by the milter after milter_timeout.
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), idle.read(&mut buf))
        .await
        .expect("closed")
        .unwrap_or(0);
    assert_eq!(n, 0);
}

#[tokio::test]
async fn an_idle_session_is_closed_after_milter_timeout_and_frees_its_slot() {
    let m = start(|c| {
        c.max_connections = 1;
        c.milter_timeout = sra_milter::vocab::Span(std::time::Duration::from_secs(1));
    })
    .await;
    // A client that negotiates and then says nothing holds the only slot.
    let _idle = negotiated(m.addr).await;
    let started = std::time::Instant::now();
    let t = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        send(m.addr, &Mail::inbound("carol@partner.example", "idle2@x")),
    )
    .await
    .expect("a session after the idle one gets its verdict");
    assert!(t.header("X-SRA-Verdict").is_some(), "{t:?}");
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(500),
        "it waited for the idle session's slot: {:?}",
        started.elapsed()
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

/// Opens a milter session and negotiates (SMFIC_OPTNEG: version 6, all
/// actions and protocol steps), then leaves it idle.
async fn negotiated(addr: std::net::SocketAddr) -> tokio::net::TcpStream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut optneg = vec![0, 0, 0, 13, b'O'];
    optneg.extend_from_slice(&6u32.to_be_bytes());
    optneg.extend_from_slice(&0x1ffu32.to_be_bytes());
    optneg.extend_from_slice(&0x1fffffu32.to_be_bytes());
    s.write_all(&optneg).await.unwrap();
    let mut head = [0u8; 5];
    s.read_exact(&mut head).await.unwrap();
    assert_eq!(head[4], b'O', "negotiated");
    let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
    let mut rest = vec![0u8; len - 1];
    s.read_exact(&mut rest).await.unwrap();
    s
}

#[tokio::test]
async fn under_stress_an_idle_session_makes_room_for_a_waiting_one() {
    use tokio::io::AsyncReadExt;
    // Every slot is held by a negotiated, idle session; milter_timeout is
    // long. The waiting session gets the slot once the idle one has been
    // idle for the stress timeout, and the idle one is closed.
    let m = start(|c| c.max_connections = 1).await;
    let mut idle = negotiated(m.addr).await;
    let started = std::time::Instant::now();
    let t = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        send(m.addr, &Mail::inbound("carol@partner.example", "stress@x")),
    )
    .await
    .expect("the waiting session gets its verdict");
    assert!(t.header("X-SRA-Verdict").is_some(), "{t:?}");
    let waited = started.elapsed();
    assert!(
        waited >= sra_milter::milter::STRESS_IDLE - std::time::Duration::from_secs(1),
        "{waited:?}"
    );
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(std::time::Duration::from_secs(2), idle.read(&mut buf))
        .await
        .expect("the idle session was closed")
        .unwrap_or(0);
    assert_eq!(n, 0);
}

#[tokio::test]
async fn recipients_kept_per_message_are_bounded() {
    let m = start(|_| {}).await;
    let mut mail = Mail::outbound("r0@partner.example", "many@example.com");
    mail.rcpts = (0..1200).map(|i| format!("r{i}@partner.example")).collect();
    // An address no SMTP server could hold: refused as a recipient.
    mail.rcpts
        .push(format!("{}@partner.example", "x".repeat(100 * 1024)));
    let t = send(m.addr, &mail).await;
    assert!(t.rcpts.iter().all(|s| *s == Status::Continue), "{t:?}");
    let count = |who: &str| {
        m.store
            .record(Kind::Sender, who)
            .unwrap()
            .count(Counter::MessagesSent)
    };
    assert_eq!(count("r0@partner.example"), 1);
    assert_eq!(count("r999@partner.example"), 1);
    assert_eq!(count("r1000@partner.example"), 0, "the 1001st is not kept");
    assert_eq!(count("r1199@partner.example"), 0);
}

#[tokio::test]
async fn the_control_socket_refuses_what_the_command_line_would_and_normalises_the_rest() {
    let m = start(|_| {}).await;
    let path = m.shared.config().control_socket();
    let resp = send_control(
        &path,
        &ControlRequest::SetOverride {
            target: Target::Sender(String::new()),
            class: Class::Trusted,
            reason: String::new(),
        },
    )
    .await
    .unwrap();
    assert!(!resp.ok, "an empty sender is refused: {}", resp.message);
    assert!(m.store.overrides().unwrap().is_empty());
    // Mixed case, as a script might send it: stored in the normal form, so
    // it applies to the sender.
    set_override(
        &m,
        Target::Sender("Mallory@Partner.Example".into()),
        Class::Malicious,
    )
    .await;
    let t = send(m.addr, &Mail::inbound("mallory@partner.example", "c1@x")).await;
    assert!(
        matches!(t.mail, Some(Status::Reject { .. })),
        "the override applies: {t:?}"
    );
}

#[tokio::test]
async fn a_new_recipient_for_the_sender_is_refused_alone_where_the_policy_asks() {
    use sra_milter::vocab::Action;
    let m = common::start(|c| {
        c.policy.rcpt.new_recipient.unrated = Action::Reject;
        c.policy.rcpt.new_recipient.neutral = Action::Reject;
    })
    .await;
    // Alice has written to Carol; with Bob, Carol has never dealt.
    send(
        m.addr,
        &Mail::outbound("carol@partner.example", "a1@example.com"),
    )
    .await;
    // A stranger's first message is refused for every recipient.
    let t = send(
        m.addr,
        &Mail::inbound("dave@other.example", "d1@other.example"),
    )
    .await;
    assert!(matches!(t.rcpts[0], Status::Reject { .. }), "{t:?}");
    // Bob is new to her: refused; Alice is not: her mail goes on to the
    // end of message, rated as ever.
    let mut both = Mail::inbound("carol@partner.example", "c2@partner.example");
    both.rcpts = vec!["alice@example.com".into(), "bob@example.com".into()];
    let t = send(m.addr, &both).await;
    assert_eq!(t.mail, Some(Status::Continue));
    assert_eq!(t.rcpts[0], Status::Continue, "{t:?}");
    let reason = reply_text(&t.rcpts[1]);
    assert!(reason.contains("a new recipient for it"), "{reason}");
    assert!(matches!(t.rcpts[1], Status::Reject { .. }), "{t:?}");
    assert_eq!(t.eom_status(), Some(&Status::Continue));
    // Once Bob has written to her, she may write to him.
    let mut from_bob = Mail::outbound("carol@partner.example", "b1@example.com");
    from_bob.from = "bob@example.com".into();
    from_bob.headers[0].1 = "Bob <bob@example.com>".into();
    send(m.addr, &from_bob).await;
    let mut again = Mail::inbound("carol@partner.example", "c3@partner.example");
    again.rcpts = vec!["bob@example.com".into()];
    let t = send(m.addr, &again).await;
    assert_eq!(t.rcpts, vec![Status::Continue], "{t:?}");
    m.stop().await;
}
