//! System tests: sra-milter in a real Postfix (Debian's package), real SMTP
//! in, delivered mail read back from a sink, Postfix's own log and queue.

mod support;
mod system;

use std::time::Duration;
use system::{serial, Milter, Msg, Postfix, Rig, Sink};

fn transcript_has(t: &[String], needle: &str) -> bool {
    t.iter().any(|l| l.contains(needle))
}

#[test]
fn postfix_inbound_mail_gets_a_verdict_header_and_is_delivered() {
    let _g = serial();
    let rig = Rig::tcp("enforce", "");
    let (r, t) = rig.inbound(
        "192.0.2.10",
        &Msg::new(
            "carol@partner.example",
            "alice@example.com",
            "in1@partner.example",
        ),
    );
    assert!(r.is_ok(), "{t:#?}");
    let d = rig.sink.wait_for("in1@partner.example");
    let v = d
        .header("X-SRA-Verdict")
        .expect("X-SRA-Verdict on the delivered message");
    assert!(
        v.starts_with("sender=unrated (50.0); mta=unrated (50.0); action=accept; monitor=no"),
        "{v}"
    );
    // "Name: value", one space after the colon, as every other header.
    let line = d.field_line("X-SRA-Verdict").unwrap();
    assert!(line.starts_with("X-SRA-Verdict: sender="), "{line}");
    assert_eq!(d.rcpts, vec!["<alice@example.com>"]);
    // The milter logged the verdict under Postfix's queue id.
    let qid = r.unwrap();
    assert!(
        rig.milter
            .log_text()
            .contains(&format!("{qid}: verdict direction=inbound")),
        "{}",
        rig.milter.log_text()
    );
}

#[test]
fn postfix_refuses_a_blocked_mta_at_connect() {
    let _g = serial();
    let rig = Rig::tcp("enforce", "[lists]\nblock = [\"203.0.113.0/24\"]\n");
    let (r, t) = rig.inbound(
        "203.0.113.5",
        &Msg::new("x@anywhere.example", "alice@example.com", "blk@x"),
    );
    assert!(r.is_err());
    assert!(
        transcript_has(
            &t,
            "550 5.7.1 rejected by sender reputation policy (mta malicious)"
        ),
        "{t:#?}"
    );
    let log = rig.postfix.wait_for_log("milter-reject");
    assert!(
        log.contains("milter-reject: XCLIENT from mx.partner.example[203.0.113.5]: 550 5.7.1"),
        "{log}"
    );
    assert!(rig.sink.find("blk@x").is_none());
}

#[test]
fn postfix_refuses_a_blocked_envelope_sender_at_mail_from() {
    let _g = serial();
    let rig = Rig::tcp("enforce", "[lists]\nblock = [\"spammer@bad.example\"]\n");
    let mut c = rig.postfix.client();
    c.xclient(
        "192.0.2.10",
        "mx.partner.example",
        "mx.partner.example",
        None,
    );
    let r = c.cmd("MAIL FROM:<spammer@bad.example>");
    assert_eq!(r.0, 550, "{:#?}", c.transcript);
    assert!(
        r.1.contains("5.7.1 rejected by sender reputation policy (sender malicious)"),
        "{}",
        r.1
    );
    c.quit();
    let log = rig.postfix.wait_for_log("milter-reject: MAIL from");
    assert!(log.contains("550 5.7.1 rejected by sender reputation policy (sender malicious); from=<spammer@bad.example>"), "{log}");
}

#[test]
fn postfix_holds_a_quarantined_message() {
    let _g = serial();
    let rig = Rig::tcp("enforce", "");
    let out = rig.milter.cli(
        "override",
        &[
            "--sender",
            "odd@partner.example",
            "suspicious",
            "--reason",
            "test",
        ],
    );
    assert!(out.contains("override set"), "{out}");
    let (r, t) = rig.inbound(
        "192.0.2.10",
        &Msg::new(
            "odd@partner.example",
            "alice@example.com",
            "hold1@partner.example",
        ),
    );
    let qid = r.unwrap_or_else(|e| panic!("{e}: {t:#?}"));
    let mut held = Vec::new();
    system::wait_until(
        "the message in the hold queue",
        Duration::from_secs(20),
        || {
            held = rig.postfix.queue();
            held.iter()
                .any(|m| m["queue_id"] == qid.as_str() && m["queue_name"] == "hold")
        },
    );
    rig.postfix
        .wait_for_log(&format!("{qid}: milter-hold: END-OF-MESSAGE"));
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        rig.sink.find("hold1@partner.example").is_none(),
        "held mail must not be delivered"
    );
}

#[test]
fn postfix_monitor_only_delivers_everything() {
    let _g = serial();
    let rig = Rig::tcp(
        "monitor",
        "[lists]\nblock = [\"203.0.113.0/24\", \"spammer@bad.example\"]\n",
    );
    rig.milter.cli(
        "override",
        &["--sender", "odd@partner.example", "suspicious"],
    );
    let cases = [
        (
            "203.0.113.5",
            "x@anywhere.example",
            "mon1@x",
            "would_reject",
        ),
        (
            "192.0.2.10",
            "spammer@bad.example",
            "mon2@x",
            "would_reject",
        ),
        (
            "192.0.2.10",
            "odd@partner.example",
            "mon3@x",
            "would_quarantine",
        ),
    ];
    for (ip, from, id, would) in cases {
        let (r, t) = rig.inbound(ip, &Msg::new(from, "alice@example.com", id));
        assert!(r.is_ok(), "{t:#?}");
        let d = rig.sink.wait_for(id);
        let v = d.header("X-SRA-Verdict").unwrap();
        assert!(
            v.contains("monitor=yes") && v.contains(&format!("action={would}")),
            "{v}"
        );
    }
    assert!(!rig.postfix.maillog().contains("milter-reject"));
    assert!(rig
        .postfix
        .queue()
        .iter()
        .all(|m| m["queue_name"] != "hold"));
}

#[test]
fn postfix_outbound_then_reply_changes_the_factors() {
    let _g = serial();
    let rig = Rig::tcp("enforce", "");
    rig.outbound(&Msg::new(
        "alice@example.com",
        "carol@partner.example",
        "out1@example.com",
    ))
    .unwrap();
    let out = rig.sink.wait_for("out1@example.com");
    assert!(
        out.header("X-SRA-Verdict").is_none(),
        "outbound mail carries no verdict"
    );

    let reply = Msg::new(
        "carol@partner.example",
        "alice@example.com",
        "re1@partner.example",
    )
    .header("In-Reply-To", "<out1@example.com>")
    .header("References", "<out1@example.com>");
    let (r, t) = rig.inbound("192.0.2.10", &reply);
    assert!(r.is_ok(), "{t:#?}");
    rig.sink.wait_for("re1@partner.example");

    // An authenticated submission (XCLIENT LOGIN) from outside the internal
    // networks answers Carol: outbound, so it counts as a reply sent.
    let mut c = rig.postfix.client();
    c.xclient("198.51.100.7", "home.isp.example", "laptop", Some("alice"));
    c.send(
        &Msg::new(
            "alice@example.com",
            "carol@partner.example",
            "out2@example.com",
        )
        .header("In-Reply-To", "<re1@partner.example>"),
    )
    .unwrap();
    c.quit();
    rig.sink.wait_for("out2@example.com");

    let v = rig.milter.explain(&["--sender", "carol@partner.example"]);
    assert_eq!(v["factors"]["messages_sent"], 2.0, "{v}");
    assert_eq!(v["factors"]["replies_received"], 1.0, "{v}");
    assert_eq!(v["factors"]["replies_sent"], 1.0, "{v}");
    assert_eq!(v["factors"]["messages_received"], 1.0, "{v}");
    let m = rig.milter.explain(&["--mta", "192.0.2.10"]);
    assert_eq!(m["factors"]["replies_received"], 1.0, "{m}");
    assert_eq!(m["factors"]["messages_received"], 1.0, "{m}");
    // The laptop's address is not an MTA of anyone's inbound mail.
    let laptop = rig.milter.explain(&["--mta", "198.51.100.7"]);
    assert_eq!(laptop["factors"]["messages_received"], 0.0, "{laptop}");
}

#[test]
fn postfix_keeps_delivering_when_the_milter_stops_and_restarts() {
    let _g = serial();
    let mut rig = Rig::tcp("enforce", "");
    assert!(rig.milter.stop().success(), "SIGTERM exits 0");
    let (r, t) = rig.inbound(
        "192.0.2.10",
        &Msg::new("carol@partner.example", "alice@example.com", "down1@p"),
    );
    assert!(r.is_ok(), "{t:#?}");
    let d = rig.sink.wait_for("down1@p");
    assert!(
        d.header("X-SRA-Verdict").is_none(),
        "delivered without the milter"
    );
    rig.postfix
        .wait_for_log("connect to Milter service inet:127.0.0.1");

    // Restart in the middle of a stream of messages.
    rig.restart_milter();
    let port = rig.postfix.port;
    let sender = std::thread::spawn(move || {
        let mut ids = Vec::new();
        for i in 0..30 {
            let mut c = system::Smtp::connect(port);
            c.xclient(
                "192.0.2.10",
                "mx.partner.example",
                "mx.partner.example",
                None,
            );
            let id = format!("stream{i}@p");
            c.send(&Msg::new("carol@partner.example", "alice@example.com", &id))
                .unwrap();
            c.quit();
            ids.push(id);
            std::thread::sleep(Duration::from_millis(30));
        }
        ids
    });
    std::thread::sleep(Duration::from_millis(300));
    assert!(rig.milter.stop().success());
    rig.restart_milter();
    let ids = sender.join().unwrap();
    let mut stamped = 0;
    for id in &ids {
        if rig.sink.wait_for(id).header("X-SRA-Verdict").is_some() {
            stamped += 1;
        }
    }
    assert!(stamped > 0, "the milter rated part of the stream");
    // Nothing the milter rated was lost from the store across restarts.
    assert!(rig.milter.stop().success());
    let v = rig.milter.explain(&["--sender", "carol@partner.example"]);
    assert_eq!(v["factors"]["messages_received"], stamped as f64, "{v}");
}

#[test]
fn postfix_talks_to_the_milter_over_a_unix_socket_in_the_chroot() {
    let _g = serial();
    let sink = Sink::start();
    // The socket lives under the queue directory (Postfix's chroot); Postfix
    // names it relative to the queue directory.
    let postfix = Postfix::start(
        &sink,
        &system::readme_milter_lines("unix:sra-milter/sra-milter.sock"),
    );
    let sock_dir = postfix.queue_dir().join("sra-milter");
    std::fs::create_dir_all(&sock_dir).unwrap();
    let sock = sock_dir.join("sra-milter.sock");
    let dir = tempfile::tempdir().unwrap();
    let config = Milter::write_config(
        dir.path(),
        &format!("unix:{}", sock.display()),
        "enforce",
        "",
    );
    let s = sock.clone();
    let _milter = Milter::start(config, move || s.exists());
    let mut c = postfix.client();
    c.xclient(
        "192.0.2.10",
        "mx.partner.example",
        "mx.partner.example",
        None,
    );
    c.send(&Msg::new(
        "carol@partner.example",
        "alice@example.com",
        "unix1@p",
    ))
    .unwrap();
    c.quit();
    let d = sink.wait_for("unix1@p");
    assert!(d.header("X-SRA-Verdict").is_some(), "{}", postfix.maillog());
    // Locally submitted mail goes through non_smtpd_milters (cleanup, also
    // chrooted) as outbound mail.
    let out = std::process::Command::new("sendmail")
        .arg("-C")
        .arg(postfix.etc())
        .args(["-f", "alice@example.com", "dave@other.example"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut ch| {
            use std::io::Write;
            ch.stdin.take().unwrap().write_all(b"From: alice@example.com\nTo: dave@other.example\nMessage-ID: <local1@example.com>\nSubject: local\n\nhi\n")?;
            ch.wait()
        })
        .unwrap();
    assert!(out.success());
    let d = sink.wait_for("local1@example.com");
    assert!(d.header("X-SRA-Verdict").is_none());
}

#[test]
fn postfix_authenticates_signed_mail_against_a_real_dns_server() {
    let _g = serial();
    let key = support::dkim::TestKey::new();
    let dns = system::Dns::start(&[
        ("partner.example", "v=spf1 ip4:192.0.2.0/24 -all".into()),
        ("mx.partner.example", "v=spf1 ip4:192.0.2.0/24 -all".into()),
        ("_dmarc.partner.example", "v=DMARC1; p=reject".into()),
        ("s1._domainkey.partner.example", key.dns_record()),
    ]);
    let extra = format!(
        "[dns]\nservers = [\"127.0.0.1:{}\"]\ntimeout = \"2s\"\n[auth]\nverify = true\nauthserv_id = \"mx.example.com\"\n",
        dns.port
    );
    let rig = Rig::tcp("enforce", &extra);

    let signed = |id: &str, body: &str| {
        let mut m = Msg::new("carol@partner.example", "alice@example.com", id);
        m.body = body.into();
        let mut text = String::new();
        for (n, v) in &m.headers {
            text.push_str(&format!("{n}: {v}\r\n"));
        }
        text.push_str("\r\n");
        text.push_str(&m.body);
        let (n, v) = key.sign(&text, "partner.example", "s1");
        m.headers.insert(0, (n, v));
        m
    };

    // Signed and sent from partner.example's network: SPF, DKIM and DMARC pass.
    let (r, t) = rig.inbound(
        "192.0.2.10",
        &signed("auth1@partner.example", "Hello Alice.\r\n"),
    );
    assert!(r.is_ok(), "{t:#?}");
    let d = rig.sink.wait_for("auth1@partner.example");
    let ar = d
        .header("Authentication-Results")
        .expect("Authentication-Results");
    assert!(ar.starts_with("mx.example.com;"), "{ar}");
    let line = d.field_line("Authentication-Results").unwrap();
    assert!(
        line.starts_with("Authentication-Results: mx.example.com;"),
        "{line}"
    );
    for want in ["spf=pass", "dkim=pass", "dmarc=pass"] {
        assert!(ar.contains(want), "{want} in {ar}");
    }

    // The same message altered in transit and relayed from elsewhere: DKIM
    // breaks, SPF fails, DMARC fails under p=reject, and it is refused.
    let mut altered = signed("auth2@partner.example", "Hello Alice.\r\n");
    altered.body = "Hello Alice. Please pay the attached invoice.\r\n".into();
    let (r, t) = rig.inbound("203.0.113.66", &altered);
    let err = r.expect_err("refused");
    assert!(err.contains("5.7.1"), "{err}: {t:#?}");
    let log = rig.postfix.wait_for_log("milter-reject: END-OF-MESSAGE");
    assert!(
        log.contains("5.7.1 rejected by sender reputation policy (dmarc fail, p=reject)"),
        "{log}"
    );
    let record = rig.milter.log_text();
    assert!(record.contains("action=reject"), "{record}");
}

#[test]
fn dovecot_reports_opens_and_junk_through_the_shipped_lua_script() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("events.token");
    std::fs::write(&token, "dovecot-test-token-0123456789\n").unwrap();
    let events_port = support::free_port();
    let milter_port = support::free_port();
    let extra = format!(
        "[events]\nlisten = \"127.0.0.1:{events_port}\"\ntoken_file = \"{}\"\nopen_grace = \"2s\"\n",
        token.display()
    );
    let config = Milter::write_config(
        dir.path(),
        &format!("inet:127.0.0.1:{milter_port}"),
        "enforce",
        &extra,
    );
    let milter = Milter::start(config, move || {
        std::net::TcpStream::connect(("127.0.0.1", events_port)).is_ok()
    });
    let dovecot =
        system::Dovecot::start(&format!("http://127.0.0.1:{events_port}/v1/events"), &token);
    let sink = Sink::start();
    // Postfix delivers to Dovecot over LMTP.
    let postfix = Postfix::start_with(
        &sink,
        &system::readme_milter_lines(&format!("inet:127.0.0.1:{milter_port}")),
        &format!(
            "relayhost =\nrelay_transport = lmtp:inet:127.0.0.1:{}\n",
            dovecot.lmtp_port
        ),
    );
    let deliver = |id: &str| {
        let mut c = postfix.client();
        c.xclient(
            "192.0.2.10",
            "mx.partner.example",
            "mx.partner.example",
            None,
        );
        let mut m = Msg::new("carol@partner.example", "alice@example.com", id);
        if id.starts_with("att") {
            m.headers.push(("MIME-Version".into(), "1.0".into()));
            m.headers.push((
                "Content-Type".into(),
                "multipart/mixed; boundary=\"B\"".into(),
            ));
            m.body = "--B\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n--B\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"invoice.pdf\"\r\n\r\nJVBERi0=\r\n--B--\r\n".into();
        }
        // A refused or stalled delivery says where: the SMTP transcript,
        // Postfix's log and the milter's.
        if let Err(e) = c.send(&m) {
            panic!(
                "{id}: {e:?}\n{:#?}\n{}\n{}",
                c.transcript,
                postfix.maillog(),
                milter.log_text()
            );
        }
        c.quit();
    };
    let imap_port = dovecot.imap_port;
    let explain = || milter.explain(&["--sender", "carol@partner.example"]);

    // The engagement source reports for the first time: a read.
    deliver("warmup@partner.example");
    system::wait_until("delivery to Dovecot", Duration::from_secs(30), || {
        dovecot.inbox_count("alice@example.com") == 1
    });
    let mut imap = system::Imap::login(imap_port, "alice@example.com", "secret");
    imap.cmd("SELECT INBOX");
    let uid = imap.uid_of("warmup@partner.example");
    imap.cmd(&format!("UID FETCH {uid} (BODY[])"));
    system::wait_until("the first open", Duration::from_secs(20), || {
        explain()["factors"]["open_ratio"] == 1.0
    });

    // Three more: one read, one moved unread to Junk, one left alone.
    for id in [
        "read@partner.example",
        "att-junk@partner.example",
        "ignored@partner.example",
    ] {
        deliver(id);
    }
    system::wait_until("delivery to Dovecot", Duration::from_secs(30), || {
        dovecot.inbox_count("alice@example.com") == 4
    });
    imap.cmd("NOOP");
    let uid = imap.uid_of("read@partner.example");
    imap.cmd(&format!("UID STORE {uid} +FLAGS (\\Seen)"));
    let uid = imap.uid_of("att-junk@partner.example");
    let r = imap.cmd(&format!("UID MOVE {uid} Junk"));
    assert!(r.last().unwrap().contains("OK"), "{r:?}");
    imap.cmd("LOGOUT");

    // After the grace period, the two unopened ones count as not opened,
    // the one with an attachment apart; the junk report weighs on Carol.
    let mut v = serde_json::Value::Null;
    system::wait_until(
        "not-opened counts and the junk report",
        Duration::from_secs(30),
        || {
            v = explain();
            v["factors"]["not_opened"] == 2.0 && v["contributions"].get("junk").is_some()
        },
    );
    assert_eq!(v["factors"]["open_ratio"], 0.5, "{v}");
    assert_eq!(v["factors"]["not_opened_with_attachment"], 1.0, "{v}");
    assert_eq!(v["factors"]["not_opened_with_url"], 0.0, "{v}");
    assert!(v["contributions"]["junk"].as_f64().unwrap() < 0.0, "{v}");
    assert!(
        v["contributions"]["open_ratio"].as_f64().unwrap() == 0.0,
        "balanced opens weigh nothing: {v}"
    );
    let m = milter.explain(&["--mta", "192.0.2.10"]);
    assert!(m["contributions"]["junk"].as_f64().unwrap() < 0.0, "{m}");
    assert!(
        !dovecot.log().contains("sra-milter: "),
        "script errors: {}",
        dovecot.log()
    );
    assert!(
        milter.log_text().contains("events: 1 accepted"),
        "{}",
        milter.log_text()
    );
}

/// "No such name" is believed for a while (RFC 2308), as an answer is:
/// mail from a domain without SPF or DMARC does not ask the DNS server
/// again for every message.
#[test]
fn negative_dns_answers_are_cached_like_answers() {
    use sra_milter::auth::Authenticator;
    use sra_milter::config::DnsConfig;
    use sra_milter::vocab::Span;
    let dns = system::Dns::start(&[("partner.example", "v=spf1 ip4:192.0.2.0/24 -all".into())]);
    let auth = Authenticator::new(&DnsConfig {
        servers: vec![format!("127.0.0.1:{}", dns.port)],
        timeout: Span(Duration::from_secs(2)),
        cache_size: 100,
    })
    .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let ip = "192.0.2.10".parse().unwrap();
    rt.block_on(async {
        for _ in 0..3 {
            for (from, want) in [
                ("a@nospf.example", mail_auth::SpfResult::None),
                ("a@partner.example", mail_auth::SpfResult::Pass),
            ] {
                let st = auth
                    .check_spf(ip, "mx.nospf.example", Some(from), "mx")
                    .await;
                assert_eq!(st.mail_from.result(), want, "{from}: {st:?}");
            }
        }
    });
    assert_eq!(dns.queries("nospf.example"), 1, "the missing domain");
    assert_eq!(dns.queries("mx.nospf.example"), 1, "the missing HELO name");
    // (This server gives its records a TTL of 0: those are asked each time.)
    assert_eq!(dns.queries("partner.example"), 3, "the domain with SPF");
}
