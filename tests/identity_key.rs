//! `[store] identity_key_file`: with a key, the milter's verdicts are the
//! same as without, the store holds no address or IP address in clear,
//! look-ups and overrides by address still work, and a store is never
//! opened with the wrong key (or none).

mod common;
mod support;

use common::{send, Mail};
use sra_milter::store::{
    with_identity_key, IdentityKey, Item, ReputationStore, RocksStore, META_IDENTITY,
};
use sra_milter::vocab::{Class, Target};
use std::path::Path;
use std::sync::Arc;

const KEY: &str = "a site's identity key, 32 bytes.";

fn key_file(dir: &Path) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join("identity.key");
    std::fs::write(&p, format!("{KEY}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p
}

/// What each message of a conversation is told, and the ratings after.
struct Run {
    verdicts: Vec<Option<String>>,
    ratings: Vec<serde_json::Value>,
    dir: tempfile::TempDir,
}

/// A thread with Carol (answered both ways, from one MTA), Dave (first
/// contact), an impersonation of Alice's name, and a forged verdict.
async fn conversation(keyed: bool) -> Run {
    conversation_on(keyed, None).await
}

/// [`conversation`], on the Redis server at `redis` (with `prefix`) when
/// one is given.
async fn conversation_on(keyed: bool, redis: Option<(Vec<String>, &str)>) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = common::config(dir.path());
    cfg.mode = sra_milter::vocab::Mode::Monitor;
    if keyed {
        cfg.store.identity_key_file = key_file(dir.path());
    }
    if let Some((nodes, prefix)) = redis {
        cfg.store.backend = sra_milter::config::Backend::Redis;
        cfg.store.redis.nodes = nodes;
        cfg.store.redis.prefix = prefix.into();
    }
    cfg.validate().unwrap();
    let m = common::start_with(dir, cfg).await;
    let mut mails = vec![
        Mail::outbound("carol@partner.example", "o1@example.com"),
        Mail::inbound("carol@partner.example", "r1@partner.example")
            .header("In-Reply-To", "<o1@example.com>"),
        Mail::outbound("carol@partner.example", "o2@example.com")
            .header("In-Reply-To", "<r1@partner.example>"),
    ];
    for i in 0..4 {
        mails.push(Mail::inbound(
            "carol@partner.example",
            &format!("c{i}@partner.example"),
        ));
    }
    mails.push(Mail::inbound("dave@other.example", "d1@other.example"));
    let mut shown = Mail::inbound("mallory@freemail.example", "x1@freemail.example");
    shown.headers[0].1 = "Alice <mallory@freemail.example>".into();
    mails.push(shown);
    let mut verdicts = Vec::new();
    for mail in &mails {
        verdicts.push(send(m.addr, mail).await.header("X-SRA-Verdict"));
    }
    let cfg = m.shared.config();
    let now = sra_milter::now();
    let mut ratings = Vec::new();
    for who in [
        "carol@partner.example",
        "dave@other.example",
        "mallory@freemail.example",
    ] {
        let r = m.shared.engine.rate_sender(&cfg, who, now).unwrap();
        ratings.push(serde_json::to_value(r).unwrap());
    }
    let mta = m
        .shared
        .engine
        .rate_mta(&cfg, "192.0.2.10".parse().unwrap(), now)
        .unwrap();
    ratings.push(serde_json::to_value(mta).unwrap());
    let dir = m.stop().await;
    Run {
        verdicts,
        ratings,
        dir,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn on_redis_the_milter_says_what_it_says_on_rocksdb_with_or_without_a_key() {
    let r = tokio::task::spawn_blocking(support::redis::Redis::single)
        .await
        .unwrap();
    let rocks = conversation(false).await;
    let strip = |run: Run| -> (Vec<Option<String>>, Vec<serde_json::Value>) {
        let ratings = run.ratings.into_iter().map(strip_times).collect();
        (run.verdicts, ratings)
    };
    let rocks = strip(rocks);
    assert!(rocks.0.iter().flatten().count() >= 6, "{:?}", rocks.0);
    for (keyed, prefix) in [(false, "plain"), (true, "keyed")] {
        let redis = strip(conversation_on(keyed, Some((r.urls(), prefix))).await);
        assert_eq!(redis, rocks, "on Redis, keyed: {keyed}");
    }
}

/// Everything a store holds, as text.
fn dump(store: &dyn ReputationStore) -> Vec<String> {
    let mut out = Vec::new();
    store
        .export(&mut |item: Item| {
            out.push(format!("{item:?}"));
            Ok(())
        })
        .unwrap();
    out
}

fn strip_times(mut v: serde_json::Value) -> serde_json::Value {
    // Scores and factors depend on the clock only through days known,
    // the same in both runs; the subject key is the clear address in both.
    if let Some(o) = v.as_object_mut() {
        o.remove("first_seen");
        o.remove("last_seen");
    }
    v
}

#[tokio::test]
async fn an_identity_key_changes_no_verdict_and_keeps_no_address_in_clear() {
    let plain = conversation(false).await;
    let keyed = conversation(true).await;
    assert_eq!(plain.verdicts, keyed.verdicts);
    assert!(
        plain.verdicts.iter().flatten().count() >= 6,
        "{:?}",
        plain.verdicts
    );
    let plain_r: Vec<_> = plain.ratings.into_iter().map(strip_times).collect();
    let keyed_r: Vec<_> = keyed.ratings.into_iter().map(strip_times).collect();
    assert_eq!(plain_r, keyed_r);
    // Carol's answered thread counts on both sides.
    let replies = |v: &serde_json::Value| v.to_string().contains("\"replies_sent\"");
    assert!(replies(&keyed_r[0]), "{}", keyed_r[0]);

    // The raw stores: the plain one names everybody, the keyed one nobody.
    let names = [
        "carol@",
        "dave@",
        "alice@",
        "mallory@",
        "192.0.2.10",
        "192.0.2.0",
        "198.51.100",
    ];
    let plain_dump = dump(&RocksStore::open(&plain.dir.path().join("store"), 86400).unwrap());
    for n in ["carol@", "dave@", "alice@", "192.0.2.10"] {
        assert!(plain_dump.iter().any(|l| l.contains(n)), "{n} in clear");
    }
    let raw: Arc<dyn ReputationStore> =
        Arc::new(RocksStore::open(&keyed.dir.path().join("store"), 86400).unwrap());
    let keyed_dump = dump(raw.as_ref());
    assert!(keyed_dump.len() >= plain_dump.len() - 1, "{keyed_dump:?}");
    for line in &keyed_dump {
        for n in names {
            assert!(!line.contains(n), "{n} in clear: {line}");
        }
    }
    // Domains stay readable.
    assert!(keyed_dump
        .iter()
        .any(|l| l.contains("~") && l.contains("@partner.example")));

    // The store knows its key: refused without it and with another.
    let key = IdentityKey::new(KEY.as_bytes()).unwrap();
    assert_eq!(
        raw.meta(META_IDENTITY).unwrap().as_deref(),
        Some(key.fingerprint())
    );
    let e = with_identity_key(raw.clone(), None, true).err().unwrap();
    assert!(e.to_string().contains("identity_key_file"), "{e}");
    let other = IdentityKey::new(b"another key of enough length").unwrap();
    let e = with_identity_key(raw.clone(), Some(other), true)
        .err()
        .unwrap();
    assert!(e.to_string().contains("another identity key"), "{e}");
    // A clear store with history is not hashed from the middle.
    let clear: Arc<dyn ReputationStore> =
        Arc::new(RocksStore::open(&plain.dir.path().join("store"), 86400).unwrap());
    let e = with_identity_key(clear, Some(key.clone()), true)
        .err()
        .unwrap();
    assert!(e.to_string().contains("store copy --identity-key"), "{e}");

    // Look-ups and overrides by address go through the key.
    let store = with_identity_key(raw, Some(key), true).unwrap();
    let carol = store
        .record(sra_milter::store::Kind::Sender, "carol@partner.example")
        .unwrap();
    assert!(carol.count(sra_milter::store::Counter::RepliesSent) > 0);
    let mut cfg = common::config(keyed.dir.path());
    cfg.store.identity_key_file = keyed.dir.path().join("identity.key");
    store
        .set_override(&sra_milter::store::Override {
            target: Target::sender("dave@other.example").unwrap(),
            class: Class::Malicious,
            reason: "test".into(),
            time: 1,
            source: "store".into(),
        })
        .unwrap();
    let listed = store.overrides().unwrap();
    assert!(!format!("{listed:?}").contains("dave@"), "{listed:?}");
    let engine = sra_milter::pipeline::Engine::new(store.clone(), &cfg).unwrap();
    let r = engine
        .rate_sender(&cfg, "dave@other.example", sra_milter::now())
        .unwrap();
    assert_eq!(r.class, Class::Malicious);
    assert!(store
        .remove_override(&Target::sender("dave@other.example").unwrap())
        .unwrap());
}

fn copy(cfg: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_sra-milter"))
        .args(["store", "copy", "-c"])
        .arg(cfg)
        .args(args)
        .output()
        .unwrap()
}

#[tokio::test]
async fn store_copy_with_an_identity_key_converts_a_clear_store() {
    use sra_milter::store::{Counter, Kind};
    let plain = conversation(false).await;
    let dir = plain.dir.path();
    let key = key_file(dir);
    let cfg = dir.join("copy.toml");
    std::fs::write(&cfg, "enterprise_domains = [\"example.com\"]\n").unwrap();
    let (clear, hashed, onward) = (dir.join("store"), dir.join("hashed"), dir.join("onward"));
    let spec = |p: &Path| format!("rocksdb:{}", p.display());
    let out = copy(
        &cfg,
        &[
            "--from",
            &spec(&clear),
            "--to",
            &spec(&hashed),
            "--identity-key",
            key.to_str().unwrap(),
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("verified"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The converted store answers by address, and names no one.
    let clear_store = RocksStore::open(&clear, 86400).unwrap();
    let raw: Arc<dyn ReputationStore> = Arc::new(RocksStore::open(&hashed, 86400).unwrap());
    for line in dump(raw.as_ref()) {
        assert!(
            !line.contains("carol@") && !line.contains("192.0.2.10"),
            "{line}"
        );
    }
    let keyed =
        with_identity_key(raw, Some(IdentityKey::new(KEY.as_bytes()).unwrap()), false).unwrap();
    for who in ["carol@partner.example", "dave@other.example"] {
        let a = clear_store.record(Kind::Sender, who).unwrap();
        let b = keyed.record(Kind::Sender, who).unwrap();
        assert_eq!(a, b, "{who}");
        assert!(b.count(Counter::MessagesReceived) > 0, "{who}");
    }
    drop(keyed);
    // Copied on without the flag, the store keeps its key's mark.
    let out = copy(&cfg, &["--from", &spec(&hashed), "--to", &spec(&onward)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let moved: Arc<dyn ReputationStore> = Arc::new(RocksStore::open(&onward, 86400).unwrap());
    assert!(with_identity_key(moved, None, false).is_err());
    // A hashed store cannot be hashed again under another key.
    let other = dir.join("other.key");
    std::fs::write(&other, "another identity key, long enough").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = copy(
        &cfg,
        &[
            "--from",
            &spec(&hashed),
            "--to",
            &spec(&dir.join("again")),
            "--identity-key",
            other.to_str().unwrap(),
        ],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("another identity key"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A thread replayed from an archive, through the replay's write batches:
/// Carol's mail does not authenticate (no SPF, DKIM or DMARC for her
/// domain), so only the thread and the network the enterprise answered
/// vouch for her path — looked up by her address and her MTA's network,
/// which the keyed store holds only hashed.
fn thread(dir: &Path) {
    let inbound = |id: &str, date: &str, extra: &str| {
        format!(
            "Return-Path: <carol@partner.example>\r\nReceived: from mx.partner.example (mx.partner.example [192.0.2.10])\r\n\tby mx.example.com (Postfix) with ESMTP id 4ABC; {date}\r\nAuthentication-Results: mx.example.com; spf=none smtp.mailfrom=partner.example; dkim=none; dmarc=none header.from=partner.example\r\nFrom: Carol <carol@partner.example>\r\nTo: <alice@example.com>\r\nSubject: hello\r\nDate: {date}\r\nMessage-ID: <{id}>\r\n{extra}\r\nHello.\r\n"
        )
    };
    let outbound = |id: &str, date: &str, extra: &str| {
        format!(
            "Return-Path: <alice@example.com>\r\nReceived: from laptop (unknown [198.51.100.7])\r\n\t(Authenticated sender: alice)\r\n\tby mx.example.com (Postfix) with ESMTPSA id 5DEF; {date}\r\nFrom: Alice <alice@example.com>\r\nTo: <carol@partner.example>\r\nSubject: question\r\nDate: {date}\r\nMessage-ID: <{id}>\r\n{extra}\r\nHi.\r\n"
        )
    };
    let mails = [
        outbound("o1@example.com", "Tue, 10 Apr 2007 10:00:00 +0000", ""),
        inbound(
            "r1@partner.example",
            "Tue, 10 Apr 2007 11:00:00 +0000",
            "In-Reply-To: <o1@example.com>\r\n",
        ),
        outbound(
            "o2@example.com",
            "Tue, 10 Apr 2007 12:00:00 +0000",
            "In-Reply-To: <r1@partner.example>\r\n",
        ),
        inbound("r2@partner.example", "Wed, 11 Apr 2007 09:00:00 +0000", ""),
        inbound("r3@partner.example", "Thu, 12 Apr 2007 09:00:00 +0000", ""),
    ];
    for (i, m) in mails.iter().enumerate() {
        std::fs::write(dir.join(format!("{i}.eml")), m).unwrap();
    }
}

fn replayed(keyed: bool) -> Vec<serde_json::Value> {
    let dir = tempfile::tempdir().unwrap();
    let mail = dir.path().join("mail");
    std::fs::create_dir(&mail).unwrap();
    thread(&mail);
    let mut cfg = common::config(dir.path());
    cfg.mode = sra_milter::vocab::Mode::Monitor;
    cfg.auth.trusted_authserv_ids = vec!["mx.example.com".into()];
    if keyed {
        cfg.store.identity_key_file = key_file(dir.path());
    }
    cfg.validate().unwrap();
    let opts = sra_milter::replay::ReplayOptions {
        paths: vec![mail],
        batch: 3,
        ..Default::default()
    };
    let mut out = Vec::new();
    sra_milter::replay::replay(&cfg, &opts, &mut out).unwrap();
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            v.as_object_mut().unwrap().remove("source");
            v
        })
        .collect()
}

#[test]
fn a_replayed_thread_vouches_for_an_unauthenticated_path_with_or_without_a_key() {
    let plain = replayed(false);
    let keyed = replayed(true);
    assert_eq!(plain, keyed);
    let carol: Vec<&serde_json::Value> = keyed
        .iter()
        .filter(|r| r["direction"] == "inbound")
        .collect();
    assert_eq!(carol.len(), 3);
    for r in carol {
        assert_eq!(r["authenticated"], false, "{r}");
        let c = &r["sender"]["contributions"];
        assert!(
            c.get("unauthenticated").is_none(),
            "path not vouched for: {r}"
        );
    }
}
