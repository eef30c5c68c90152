//! Many mail hosts, one reputation: two milters on one real Redis Cluster
//! (three masters, three replicas, started by the test). The submission
//! host sees the organisation's outbound mail, the MX host receives the
//! reply: the MX rates the partner with the bidirectional evidence the
//! submission host recorded.

mod common;
mod support;

use common::{send, Mail};
use indymilter_test::Status;
use sra_milter::config::{Backend, RedisConfig};
use support::redis::Redis;

fn on_cluster(r: &Redis, c: &mut sra_milter::config::Config) {
    c.store.backend = Backend::Redis;
    c.store.redis = RedisConfig {
        nodes: r.urls(),
        cluster: true,
        prefix: "acme".into(),
        ..RedisConfig::default()
    };
}

#[tokio::test(flavor = "multi_thread")]
async fn the_mx_sees_what_the_submission_host_learned() {
    let r = tokio::task::spawn_blocking(Redis::cluster).await.unwrap();
    let submission = common::start(|c| on_cluster(&r, c)).await;
    let mx = common::start(|c| on_cluster(&r, c)).await;

    // Outbound through the submission host.
    for i in 0..2 {
        let out = send(
            submission.addr,
            &Mail::outbound("carol@partner.example", &format!("out{i}@example.com")),
        )
        .await;
        assert_eq!(out.eom_status(), Some(&Status::Continue));
    }
    // The partner's reply arrives at the MX.
    let reply = Mail::inbound("carol@partner.example", "in1@partner.example")
        .header("In-Reply-To", "<out1@example.com>")
        .header("References", "<out0@example.com> <out1@example.com>");
    let t = send(mx.addr, &reply).await;
    assert!(t.header("X-SRA-Verdict").is_some(), "{t:?}");

    // The MX rates carol with both directions.
    let cfg = mx.shared.config();
    let rating = mx
        .shared
        .engine
        .rate_sender(&cfg, "carol@partner.example", sra_milter::now())
        .unwrap();
    let v = |n: &str| rating.factor(n).unwrap().value;
    assert_eq!(
        v("messages_sent"),
        Some(2.0),
        "recorded by the submission host"
    );
    assert_eq!(
        v("replies_received"),
        Some(1.0),
        "matched to its outbound mail"
    );
    assert_eq!(v("messages_received"), Some(1.0));
    assert!(rating.bidirectional);
    // And the submission host sees the reply the MX learned.
    let cfg = submission.shared.config();
    let seen = submission
        .shared
        .engine
        .rate_sender(&cfg, "carol@partner.example", sra_milter::now())
        .unwrap();
    assert_eq!(seen.factor("replies_received").unwrap().value, Some(1.0));
    mx.stop().await;
    submission.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_master_killed_while_mail_flows_never_hangs_a_session() {
    let mut r = tokio::task::spawn_blocking(Redis::cluster).await.unwrap();
    let m = common::start(|c| on_cluster(&r, c)).await;
    let hot = "carol@partner.example";
    let master = r.master_of(&format!("acme:{{k:s:{hot}}}"));

    let traffic = Traffic::start(m.addr, 4, hot, std::time::Duration::from_secs(10));
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let killed_at = std::time::Instant::now();
    r.kill(master);
    tokio::time::sleep(std::time::Duration::from_secs(8)).await;
    let sent = traffic.stop().await;
    let slowest = sent.iter().map(|s| s.1).max().unwrap();
    let with_verdict = sent.iter().filter(|s| s.2).count();
    let during: Vec<_> = sent.iter().filter(|s| s.0 >= killed_at).collect();
    let recovered = during.iter().rev().take(10).all(|s| s.2);
    let metrics = m.shared.metrics.render(0, &[]);
    let errors = metrics
        .lines()
        .find(|l| l.starts_with("sra_milter_errors_total{kind=\"store\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .unwrap_or(0);
    // What the store holds for the hot sender, read through the replica
    // that took over.
    let cfg = m.shared.config();
    let stored = m
        .shared
        .engine
        .rate_sender(&cfg, hot, sra_milter::now())
        .map(|r| r.factor("messages_received").unwrap().value.unwrap_or(0.0) as usize)
        .expect("the store answers again after the failover");
    eprintln!(
        "failover: {} sessions, {with_verdict} with a verdict, slowest {slowest:?}, {errors} store errors, {stored} messages stored for the hot sender ({} of the verdicts' updates lost)",
        sent.len(),
        with_verdict.saturating_sub(stored)
    );
    assert!(slowest < std::time::Duration::from_secs(5), "{slowest:?}");
    assert!(errors > 0, "the failover was felt and counted: {metrics}");
    assert!(recovered, "verdicts again once a replica took over");
    assert!(
        stored <= sent.len(),
        "{stored} stored for {} sent",
        sent.len()
    );
    m.stop().await;
}

/// The hot sender's slot moves to another master while mail flows (as in
/// a resharding): the milter follows `ASK`, `TRYAGAIN` and `MOVED`, no
/// session hangs, verdicts come back once the slot has moved, and no
/// record counts a message twice: the sender's record (whose slot moved)
/// and its domain's and MTA's (written beside it, on other slots) each
/// count every message with a verdict, and none counts more messages than
/// were sent. A session answered per `on_error` while the slot's keys
/// were in flight (`TRYAGAIN` past the retries) may have had some of its
/// records written.
#[tokio::test(flavor = "multi_thread")]
async fn a_slot_moved_while_mail_flows_counts_no_message_twice() {
    use sra_milter::store::{Counter, Kind};
    let r = std::sync::Arc::new(tokio::task::spawn_blocking(Redis::cluster).await.unwrap());
    let m = common::start(|c| on_cluster(&r, c)).await;
    let hot = "carol@partner.example";
    let key = format!("acme:{{k:s:{hot}}}");
    let from = r.master_of(&key);
    let to = *r.masters().iter().find(|p| **p != from).unwrap();

    let traffic = Traffic::start(m.addr, 4, hot, std::time::Duration::from_secs(10));
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let (r2, key2) = (r.clone(), key.clone());
    tokio::task::spawn_blocking(move || {
        r2.move_slot(&key2, to, std::time::Duration::from_millis(300))
    })
    .await
    .unwrap();
    let moved_at = std::time::Instant::now();
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let sent = traffic.stop().await;
    let with_verdict = sent.iter().filter(|s| s.2).count();
    let store = m.shared.engine.store();
    let count = |kind: Kind, key: &str| {
        store
            .record(kind, key)
            .unwrap()
            .count(Counter::MessagesReceived) as usize
    };
    let mta = Mail::inbound(hot, "x@partner.example").ip.to_string();
    let counts = [
        count(Kind::Sender, hot),
        count(Kind::Domain, "partner.example"),
        count(Kind::Mta, &mta),
    ];
    let stats = store.stats();
    eprintln!(
        "slot moved: {} sessions, {with_verdict} with a verdict; sender, domain and MTA count {counts:?}; {stats:?}",
        sent.len()
    );
    // The flights went to the masters directly and met the move: the
    // commands refused were sent again through the cluster's routing.
    let redirected = stats
        .iter()
        .find(|(k, _)| k == "redirected:redis-cluster")
        .map(|(_, v)| *v);
    assert!(redirected.is_some_and(|n| n > 0), "{stats:?}");
    assert_eq!(r.master_of(&key), to);
    let after: Vec<_> = sent.iter().filter(|s| s.0 > moved_at).collect();
    assert!(
        !after.is_empty() && after.iter().all(|s| s.2),
        "verdicts once the slot moved"
    );
    for c in counts {
        assert!(
            (with_verdict..=sent.len()).contains(&c),
            "{c} counted for {with_verdict} verdicts of {} sessions",
            sent.len()
        );
    }
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_that_stops_answering_never_hangs_a_session() {
    let r = tokio::task::spawn_blocking(Redis::single).await.unwrap();
    let port = r.ports[0];
    let m = common::start(|c| {
        c.store.backend = Backend::Redis;
        c.store.redis = RedisConfig {
            nodes: r.urls(),
            prefix: "hung".into(),
            ..RedisConfig::default()
        };
    })
    .await;
    mail_through_a_frozen_server(&r, port, m, std::time::Duration::from_secs(4)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_master_that_stops_answering_never_hangs_a_session() {
    let r = tokio::task::spawn_blocking(Redis::cluster).await.unwrap();
    let m = common::start(|c| on_cluster(&r, c)).await;
    let master = r.master_of("acme:{k:s:carol@partner.example}");
    mail_through_a_frozen_server(&r, master, m, std::time::Duration::from_secs(6)).await;
}

/// 8 clients send mail from one sender while the server on `port` (the
/// one holding the sender) is frozen for 5 s: no session takes `limit`,
/// the sessions meanwhile are answered per `on_error`, and verdicts come
/// back once it thaws.
async fn mail_through_a_frozen_server(
    r: &Redis,
    port: u16,
    m: common::Milter,
    limit: std::time::Duration,
) {
    let traffic = Traffic::start(
        m.addr,
        8,
        "carol@partner.example",
        std::time::Duration::from_secs(20),
    );
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let paused_at = std::time::Instant::now();
    r.pause(port);
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    r.resume(port);
    let resumed_at = std::time::Instant::now();
    // Until the last 8 sessions got verdicts again (a cluster settles its
    // failover first), for at most 20 s.
    let recovered_in = loop {
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        let done = traffic.sessions();
        let back = done.len() >= 8 && done.iter().rev().take(8).all(|s| s.0 > resumed_at && s.2);
        if back || resumed_at.elapsed() > std::time::Duration::from_secs(20) {
            break resumed_at.elapsed();
        }
    };
    let sent = traffic.stop().await;
    let while_hung: Vec<_> = sent
        .iter()
        .filter(|s| s.0 >= paused_at && s.0 < resumed_at)
        .collect();
    let slowest = sent.iter().map(|s| s.1).max().unwrap();
    let answered_while_hung = while_hung.iter().filter(|s| !s.2).count();
    let recovered = sent.iter().rev().take(8).all(|s| s.2);
    eprintln!(
        "hung server: {} sessions, {} started while it was frozen ({answered_while_hung} answered per on_error), slowest {slowest:?}, verdicts again {recovered_in:?} after it thawed",
        sent.len(),
        while_hung.len()
    );
    // Three stages wait on the store, each for at most the command
    // timeout (500 ms; in a cluster, with its two retries) or a
    // reconnection's connect timeout (2 s); no stage queues behind
    // another's reconnection.
    assert!(slowest < limit, "{slowest:?}");
    assert!(
        answered_while_hung >= 8,
        "mail kept flowing while the store hung: {answered_while_hung}"
    );
    assert!(
        recovered,
        "verdicts again once the server answers (waited {recovered_in:?})"
    );
    m.stop().await;
}

/// One session of [`Traffic`]: when it started, how long it took, and
/// whether it got a verdict.
type Session = (std::time::Instant, std::time::Duration, bool);

/// Clients that each send inbound mail from `sender`, one session after
/// another, until stopped. Every session must end within `deadline` (no
/// session hangs) and be answered Continue at end of message (per
/// `on_error`).
struct Traffic {
    sent: std::sync::Arc<std::sync::Mutex<Vec<Session>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    clients: Vec<tokio::task::JoinHandle<()>>,
}

impl Traffic {
    fn start(
        addr: std::net::SocketAddr,
        clients: usize,
        sender: &'static str,
        deadline: std::time::Duration,
    ) -> Traffic {
        let sent = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let clients = (0..clients)
            .map(|c| {
                let (sent, stop) = (sent.clone(), stop.clone());
                tokio::spawn(async move {
                    let mut i = 0;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        i += 1;
                        let id = format!("c{c}m{i}@partner.example");
                        let started = std::time::Instant::now();
                        let t =
                            tokio::time::timeout(deadline, send(addr, &Mail::inbound(sender, &id)))
                                .await
                                .expect("no session hangs");
                        let took = started.elapsed();
                        assert_eq!(t.eom_status(), Some(&Status::Continue), "per on_error");
                        let verdict = t.header("X-SRA-Verdict").is_some();
                        sent.lock().unwrap().push((started, took, verdict));
                    }
                })
            })
            .collect();
        Traffic {
            sent,
            stop,
            clients,
        }
    }

    /// The sessions ended so far, in the order they ended.
    fn sessions(&self) -> std::sync::MutexGuard<'_, Vec<Session>> {
        self.sent.lock().unwrap()
    }

    /// Stops the clients after their sessions in flight; every session.
    async fn stop(self) -> Vec<Session> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for c in self.clients {
            c.await.unwrap();
        }
        self.sent.lock().unwrap().clone()
    }
}

/// Everything a store exports, sorted, for comparing two stores.
fn exported(s: &dyn sra_milter::store::ReputationStore) -> Vec<String> {
    let mut out = Vec::new();
    s.export(&mut |item| {
        out.push(format!("{item:?}"));
        Ok(())
    })
    .unwrap();
    out.sort();
    out
}

#[test]
fn store_copy_moves_a_history_to_the_cluster_and_back() {
    use sra_milter::store::{
        engagement_key, Counter, IndexEntry, Kind, NameEntry, Override, Record, ReputationStore,
        RocksStore, SetKind, Update,
    };
    use sra_milter::vocab::{Class, Direction, Target};
    let r = Redis::cluster();
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    {
        let s = RocksStore::open(&a, 86400).unwrap();
        let mut u = Update::default();
        for i in 0..300 {
            let mut rec = Record::seen_at(1_700_000_000 + i);
            rec.add(Counter::MessagesReceived, i + 1)
                .insert(SetKind::EnterpriseRecipients, &format!("u{}", i % 7));
            let kind = [Kind::Sender, Kind::Domain, Kind::Mta, Kind::Pair][(i % 4) as usize];
            u.records
                .push((kind, format!("key{i}@x{}.example", i % 3), rec));
        }
        for i in 0..50 {
            u.messages.push((
                format!("m{i}@example.com"),
                IndexEntry {
                    time: 1_700_000_000 + i,
                    direction: Direction::Outbound,
                    sender: "alice@example.com".into(),
                    mta: None,
                    net: None,
                    recipients: vec![format!("r{i}@partner.example")],
                    has_attachment: i % 2 == 0,
                    has_url: false,
                    opened: false,
                    junk: false,
                    not_opened_counted: false,
                    habits: Vec::new(),
                },
            ));
            u.engagement_add.push(engagement_key(
                1_700_000_000 + i,
                &format!("m{i}@example.com"),
            ));
        }
        u.names.push((
            "alice example".into(),
            NameEntry {
                address: "alice@example.com".into(),
                enterprise: true,
            },
        ));
        u.engagement_since = Some(1_699_999_000);
        s.apply(&u).unwrap();
        s.set_override(&Override {
            target: Target::Domain("bad.example".into()),
            class: Class::Malicious,
            reason: "seen phishing".into(),
            time: 7,
            source: "store".into(),
        })
        .unwrap();
        s.flush().unwrap();
    }
    let cfg = dir.path().join("sra.toml");
    std::fs::write(&cfg, "enterprise_domains = [\"example.com\"]\n").unwrap();
    let seed = r.urls()[0].clone();
    let run = |from: &str, to: &str, flag: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_sra-milter"))
            .args(["store", "copy", "-c"])
            .arg(&cfg)
            .args(["--from", from, "--to", to, flag, "--prefix", "moved"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("verified"), "{text}");
        assert!(
            text.contains("sender records: 75 copied, 75 in the destination"),
            "{text}"
        );
        text
    };
    let there = run(&format!("rocksdb:{}", a.display()), &seed, "--to-cluster");
    assert!(
        there.contains("message index entries: 50 copied"),
        "{there}"
    );
    // An index entry whose record was never written (its merge failed
    // after the entry went in with the write) is not a record: the copy
    // back counts 75 senders, and the round trip holds no empty record.
    let index = "moved:{i:s:0}";
    let added = r.on_master_of(index, &["SADD", index, "ghost@nowhere.example"]);
    assert_eq!(added.trim(), "1", "{added}");
    run(&seed, &format!("rocksdb:{}", b.display()), "--from-cluster");
    // Into a store that is not empty: refused.
    let again = std::process::Command::new(env!("CARGO_BIN_EXE_sra-milter"))
        .args(["store", "copy", "-c"])
        .arg(&cfg)
        .args([
            "--from",
            &format!("rocksdb:{}", a.display()),
            "--to",
            &seed,
            "--to-cluster",
            "--prefix",
            "moved",
        ])
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("not empty"));
    // The round trip holds exactly what the source held.
    let sa = RocksStore::open(&a, 86400).unwrap();
    let sb = RocksStore::open(&b, 86400).unwrap();
    assert_eq!(exported(&sa), exported(&sb));
}

/// An archive of a small organisation's mail as its MX kept it: inbound
/// from 30 correspondents through 10 MTAs, outbound to them, and replies
/// both ways, over 60 days.
fn archive(dir: &std::path::Path) {
    std::fs::create_dir_all(dir).unwrap();
    let day = 86_400u64;
    for i in 0..300u64 {
        let t = 1_176_000_000 + i * day / 5;
        let date = sra_milter::vocab::rfc5322(t);
        let who = format!("p{}@partner{}.example", i % 30, i % 7);
        let mta = format!("192.0.2.{}", 10 + i % 10);
        let text = if i % 4 == 0 {
            format!(
                "Return-Path: <alice@example.com>\r\nReceived: from laptop (unknown [198.51.100.7])\r\n\t(Authenticated sender: alice)\r\n\tby mx.example.com (Postfix) with ESMTPSA id 5DEF; {date}\r\nFrom: Alice <alice@example.com>\r\nTo: <{who}>\r\nSubject: question {i}\r\nDate: {date}\r\nMessage-ID: <o{i}@example.com>\r\n\r\nHi.\r\n"
            )
        } else {
            let reply = if i % 4 == 1 {
                format!("In-Reply-To: <o{}@example.com>\r\n", i - 1)
            } else {
                String::new()
            };
            format!(
                "Return-Path: <{who}>\r\nDelivered-To: alice@example.com\r\nReceived: from mx.partner.example (mx.partner.example [{mta}])\r\n\tby mx.example.com (Postfix) with ESMTP id 4ABC; {date}\r\nFrom: P <{who}>\r\nTo: <alice@example.com>\r\nSubject: hello {i}\r\nDate: {date}\r\nMessage-ID: <i{i}@partner.example>\r\n{reply}\r\nHello, see https://partner.example/x\r\n"
            )
        };
        std::fs::write(dir.join(format!("{i:04}.eml")), text).unwrap();
    }
}

#[test]
fn replay_into_rocksdb_and_into_the_cluster_gives_the_same_answers() {
    use sra_milter::replay::{replay, ReplayOptions};
    use sra_milter::store::Item;
    let r = Redis::cluster();
    let dir = tempfile::tempdir().unwrap();
    let mail = dir.path().join("mail");
    archive(&mail);
    let mut outputs = Vec::new();
    let mut held = Vec::new();
    for redis in [false, true] {
        let d = tempfile::tempdir().unwrap();
        let mut cfg = common::config(d.path());
        cfg.mode = sra_milter::vocab::Mode::Monitor;
        if redis {
            on_cluster(&r, &mut cfg);
        }
        let opts = ReplayOptions {
            paths: vec![mail.clone()],
            batch: 50,
            ..ReplayOptions::default()
        };
        let mut out = Vec::new();
        let s = replay(&cfg, &opts, &mut out).unwrap();
        assert_eq!(s.messages, 300);
        let lines: Vec<serde_json::Value> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| {
                let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                v.as_object_mut().unwrap().remove("source");
                v
            })
            .collect();
        outputs.push(lines);
        let store = sra_milter::store::open(&cfg).unwrap();
        let mut items = Vec::new();
        store
            .export(&mut |item| {
                if matches!(item, Item::Record(..) | Item::Message(..)) {
                    items.push(format!("{item:?}"));
                }
                Ok(())
            })
            .unwrap();
        items.sort();
        held.push(items);
        store.flush().unwrap();
    }
    assert_eq!(outputs[0].len(), 300);
    for (a, b) in outputs[0].iter().zip(&outputs[1]) {
        assert_eq!(a, b, "the same verdict record, message by message");
    }
    assert!(
        held[0].len() > 300,
        "{} records and index entries",
        held[0].len()
    );
    assert_eq!(held[0], held[1], "the same records and index");
}
