//! One store conformance suite, the same assertions against every backend:
//! RocksDB in a temp dir, one real Redis server, and a real Redis Cluster
//! (three masters, three replicas) started by the test. Each run also
//! replays one stream of random updates into RocksDB and into the Redis
//! backend and compares every record read back, byte for byte.

mod support;

use sra_milter::config::RedisConfig;
use sra_milter::store::{
    engagement_key, pair_key, with_identity_key, Counter, IdentityKey, IndexEntry, Item, Kind,
    Loaded, NameEntry, Override, Record, RedisStore, ReputationStore, RocksStore, SetKind, Update,
    Want, DISTINCT_K, META_IDENTITY,
};
use sra_milter::vocab::{Class, Direction, Target};
use std::sync::Arc;
use support::redis::Redis;

fn redis_store(r: &Redis, cluster: bool, prefix: &str) -> RedisStore {
    let cfg = RedisConfig {
        nodes: r.urls(),
        cluster,
        prefix: prefix.into(),
        ..RedisConfig::default()
    };
    cfg.validate().unwrap();
    RedisStore::open(&cfg, 86400).unwrap()
}

fn entry(time: u64, sender: &str) -> IndexEntry {
    IndexEntry {
        time,
        direction: Direction::Outbound,
        sender: sender.into(),
        mta: None,
        net: None,
        recipients: vec!["bob@partner.example".into()],
        has_attachment: false,
        has_url: true,
        opened: false,
        junk: false,
        not_opened_counted: false,
        habits: Vec::new(),
    }
}

fn records(v: Vec<(Kind, &str, Record)>) -> Update {
    Update {
        records: v
            .into_iter()
            .map(|(k, s, r)| (k, s.to_string(), r))
            .collect(),
        ..Update::default()
    }
}

/// The milter's asynchronous path (`store::run_loaded`): what
/// `apply_async` writes, `load` reads back as the synchronous reads do,
/// in the order asked; what `peek` answers, when it answers, is what a
/// read gives.
fn loads_as_it_reads(s: &dyn ReputationStore, rt: &tokio::runtime::Runtime) {
    let who = "async@partner.example";
    let pair = pair_key(who, "192.0.2.77");
    let mut rec = Record::seen_at(1_700_000_100);
    rec.add(Counter::MessagesReceived, 3)
        .insert(SetKind::EnterpriseRecipients, "bob@example.com");
    let mut u = records(vec![
        (Kind::Sender, who, rec.clone()),
        (Kind::Pair, &pair, rec.clone()),
    ]);
    u.messages
        .push(("async-1@partner.example".into(), entry(1_700_000_100, who)));
    u.names.push((
        "async sender".into(),
        NameEntry {
            address: who.into(),
            enterprise: false,
        },
    ));
    rt.block_on(s.apply_async(u)).unwrap();
    rt.block_on(s.apply_async(Update::default())).unwrap();
    let wants = vec![
        Want::Record(Kind::Sender, who.into()),
        Want::Record(Kind::Pair, pair.clone()),
        Want::Record(Kind::Domain, "never.example".into()),
        Want::Message("async-1@partner.example".into()),
        Want::Message("missing@partner.example".into()),
        Want::Name("async sender".into()),
        Want::Name("nobody at all".into()),
    ];
    let loaded = rt.block_on(s.load(wants.clone())).unwrap();
    let read: Vec<Loaded> = wants.iter().map(|w| w.read(s).unwrap()).collect();
    assert_eq!(loaded, read);
    assert!(
        matches!(&loaded[0], Loaded::Record(r) if r.count(Counter::MessagesReceived) == 3),
        "{loaded:?}"
    );
    assert!(
        matches!(&loaded[3], Loaded::Message(Some(e)) if e.sender == who),
        "{loaded:?}"
    );
    assert!(matches!(&loaded[5], Loaded::Name(Some(n)) if n.address == who));
    assert_eq!(loaded[2], Loaded::Record(Record::default()));
    assert_eq!(loaded[4], Loaded::Message(None));
    assert_eq!(loaded[6], Loaded::Name(None));
    for w in &wants {
        if let Some(p) = s.peek(w) {
            assert_eq!(p, w.read(s).unwrap(), "{w:?}");
        }
    }
    // A second write merges into the first, and reads see it at once.
    rt.block_on(s.apply_async(records(vec![(Kind::Sender, who, rec)])))
        .unwrap();
    let again = rt
        .block_on(s.load(vec![Want::Record(Kind::Sender, who.into())]))
        .unwrap();
    assert!(
        matches!(&again[0], Loaded::Record(r) if r.count(Counter::MessagesReceived) == 6),
        "{again:?}"
    );
    // Records read as absent and then written are in the key index, and a
    // pair record in its sender's list (on Redis they go out with the
    // write itself).
    let fresh = "fresh@partner.example";
    let fresh_pair = pair_key(fresh, "192.0.2.78");
    let fresh_wants = vec![
        Want::Record(Kind::Sender, fresh.into()),
        Want::Record(Kind::Pair, fresh_pair.clone()),
    ];
    rt.block_on(s.load(fresh_wants)).unwrap();
    let seen = Record::seen_at(1_700_000_200);
    rt.block_on(s.apply_async(records(vec![
        (Kind::Sender, fresh, seen.clone()),
        (Kind::Pair, &fresh_pair, seen),
    ])))
    .unwrap();
    let mut senders = Vec::new();
    s.scan(Kind::Sender, &mut |k, _| senders.push(k.to_string()))
        .unwrap();
    assert!(senders.iter().any(|k| k == fresh), "{senders:?}");
    let pairs = s.pairs_of(fresh, 10).unwrap();
    assert!(pairs.iter().any(|(m, _)| m == "192.0.2.78"), "{pairs:?}");
    // A pair record written unread, of a sender read as absent.
    let other = "fresh2@partner.example";
    let other_pair = pair_key(other, "192.0.2.79");
    rt.block_on(s.load(vec![Want::Record(Kind::Sender, other.into())]))
        .unwrap();
    let seen = Record::seen_at(1_700_000_300);
    rt.block_on(s.apply_async(records(vec![
        (Kind::Sender, other, seen.clone()),
        (Kind::Pair, &other_pair, seen),
    ])))
    .unwrap();
    let pairs = s.pairs_of(other, 10).unwrap();
    assert!(pairs.iter().any(|(m, _)| m == "192.0.2.79"), "{pairs:?}");
}

/// The assertions every backend must pass.
fn conformance(s: &dyn ReputationStore) {
    // One runtime for the asynchronous calls, as in the daemon: the
    // store's async connection lives in the runtime that opened it.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // An unknown key reads as an empty record.
    assert!(s
        .record(Kind::Sender, "nobody@x.example")
        .unwrap()
        .is_empty());

    // Records merge: counters add, first seen is the earliest non-zero,
    // last seen the latest (with its label), sets unite.
    let mut a = Record::seen_at(200);
    a.add(Counter::MessagesReceived, 2)
        .insert(SetKind::EnterpriseRecipients, "alice@example.com");
    a.label = "mx1.partner.example".into();
    let mut b = Record::seen_at(100);
    b.add(Counter::MessagesReceived, 1)
        .add(Counter::RepliesSent, 4)
        .insert(SetKind::EnterpriseRecipients, "bob@example.com")
        .insert(SetKind::EnterpriseRecipients, "alice@example.com");
    b.label = "older.partner.example".into();
    let c = Record::touched_at(300);
    s.apply(&records(vec![(Kind::Sender, "carol@partner.example", a)]))
        .unwrap();
    s.apply(&records(vec![(Kind::Sender, "carol@partner.example", b)]))
        .unwrap();
    s.apply(&records(vec![(Kind::Sender, "carol@partner.example", c)]))
        .unwrap();
    let r = s.record(Kind::Sender, "carol@partner.example").unwrap();
    assert_eq!(r.count(Counter::MessagesReceived), 3);
    assert_eq!(r.count(Counter::RepliesSent), 4);
    assert_eq!((r.first_seen, r.last_seen), (100, 300));
    assert_eq!(r.label, "mx1.partner.example");
    assert_eq!(r.distinct(SetKind::EnterpriseRecipients), 2);
    assert_eq!(
        r.contains(SetKind::EnterpriseRecipients, "bob@example.com"),
        Some(true)
    );

    // A distinct set past the sketch size is estimated within its error
    // (k = 256: about 6 %; 20 % here).
    let mut many = Record::seen_at(50);
    for i in 0..3000 {
        many.insert(SetKind::EnterpriseRecipients, &format!("u{i}@example.com"));
    }
    s.apply(&records(vec![(Kind::Domain, "bulk.example", many)]))
        .unwrap();
    let d = s.record(Kind::Domain, "bulk.example").unwrap();
    let est = d.distinct(SetKind::EnterpriseRecipients) as f64;
    assert!((est - 3000.0).abs() / 3000.0 < 0.2, "{est}");

    // Kinds are apart.
    assert!(s
        .record(Kind::Mta, "carol@partner.example")
        .unwrap()
        .is_empty());

    // The message index, and its expiry by the store's clock.
    s.apply(&Update {
        messages: vec![("m1@example.com".into(), entry(1000, "alice@example.com"))],
        ..Update::default()
    })
    .unwrap();
    assert_eq!(
        s.message("m1@example.com").unwrap(),
        Some(entry(1000, "alice@example.com"))
    );
    assert_eq!(s.message("m2@example.com").unwrap(), None);
    s.observe_time(1000 + 86400 + 1);
    assert_eq!(s.message("m1@example.com").unwrap(), None, "expired");

    // Display names.
    let name = NameEntry {
        address: "alice@example.com".into(),
        enterprise: true,
    };
    s.apply(&Update {
        names: vec![("alice example".into(), name.clone())],
        ..Update::default()
    })
    .unwrap();
    assert_eq!(s.name("alice example").unwrap(), Some(name));
    assert_eq!(s.name("nobody").unwrap(), None);

    // Overrides.
    let target = Target::Sender("mallory@bad.example".into());
    let o = Override {
        target: target.clone(),
        class: Class::Malicious,
        reason: "phish".into(),
        time: 5,
        source: "store".into(),
    };
    s.set_override(&o).unwrap();
    assert_eq!(s.overrides().unwrap(), vec![o]);
    assert!(s.remove_override(&target).unwrap());
    assert!(!s.remove_override(&target).unwrap());
    assert!(s.overrides().unwrap().is_empty());

    // The engagement queue: due entries oldest first, at most `limit`;
    // removed entries are gone; the first engagement time is kept.
    let keys: Vec<Vec<u8>> = (0..40u64)
        .map(|i| engagement_key(1000 + (i * 7919) % 40, &format!("e{i}@example.com")))
        .collect();
    s.apply(&Update {
        engagement_add: keys.clone(),
        engagement_since: Some(900),
        ..Update::default()
    })
    .unwrap();
    s.apply(&Update {
        engagement_since: Some(950),
        ..Update::default()
    })
    .unwrap();
    assert_eq!(s.engagement_since().unwrap(), Some(900));
    let due = s.engagement_due(1019, 15).unwrap();
    assert_eq!(due.len(), 15);
    assert!(due.windows(2).all(|w| w[0].1 <= w[1].1), "oldest first");
    assert!(due.iter().all(|(_, t, _)| *t <= 1019));
    assert_eq!(due[0].1, 1000);
    for (k, t, id) in &due {
        assert_eq!(*k, engagement_key(*t, id));
    }
    s.apply(&Update {
        engagement_del: due.iter().map(|(k, _, _)| k.clone()).collect(),
        ..Update::default()
    })
    .unwrap();
    let rest = s.engagement_due(u64::MAX / 2, 1000).unwrap();
    assert_eq!(rest.len(), 25);
    assert!(rest.iter().all(|r| !due.contains(r)));

    // A sender's pair records, in key order, at most `limit`.
    let mut pairs = Vec::new();
    for mta in ["192.0.2.30", "192.0.2.10", "net:192.0.2.0/24", "192.0.2.20"] {
        let mut p = Record::seen_at(10);
        p.add(Counter::MessagesReceived, 1);
        pairs.push((Kind::Pair, pair_key("dave@partner.example", mta), p));
    }
    s.apply(&Update {
        records: pairs,
        ..Update::default()
    })
    .unwrap();
    let got: Vec<String> = s
        .pairs_of("dave@partner.example", 3)
        .unwrap()
        .into_iter()
        .map(|(m, r)| {
            assert_eq!(r.count(Counter::MessagesReceived), 1);
            m
        })
        .collect();
    assert_eq!(got, ["192.0.2.10", "192.0.2.20", "192.0.2.30"]);
    assert!(s.pairs_of("nobody@x.example", 10).unwrap().is_empty());
    // A known pair's next message and a new pair in one update, written
    // as the milter writes (asynchronously): the list gains the new one.
    let mut one = Record::seen_at(20);
    one.add(Counter::MessagesReceived, 1);
    let again = records(vec![
        (
            Kind::Pair,
            &pair_key("dave@partner.example", "192.0.2.10"),
            one.clone(),
        ),
        (
            Kind::Pair,
            &pair_key("dave@partner.example", "192.0.2.5"),
            one,
        ),
    ]);
    rt.block_on(s.apply_async(again)).unwrap();
    let got: Vec<(String, u64)> = s
        .pairs_of("dave@partner.example", 10)
        .unwrap()
        .into_iter()
        .map(|(m, r)| (m, r.count(Counter::MessagesReceived)))
        .collect();
    let want = [
        ("192.0.2.10", 2),
        ("192.0.2.20", 1),
        ("192.0.2.30", 1),
        ("192.0.2.5", 1),
        ("net:192.0.2.0/24", 1),
    ];
    let want: Vec<(String, u64)> = want.iter().map(|(m, n)| (m.to_string(), *n)).collect();
    assert_eq!(got, want);

    // A scan sees every record of its kind.
    let mut seen = Vec::new();
    s.scan(Kind::Domain, &mut |k, r| {
        seen.push((k.to_string(), r.count(Counter::MessagesReceived)))
    })
    .unwrap();
    assert_eq!(seen, vec![("bulk.example".to_string(), 0)]);
    s.flush().unwrap();
    loads_as_it_reads(s, &rt);
}

/// A deterministic stream of updates: many keys, repeated merges, sets
/// past the sketch size, out-of-order times.
fn random_updates(n: usize) -> Vec<Update> {
    let mut x: u64 = 0x2545f4914f6cdd1d;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..n)
        .map(|_| {
            let mut u = Update::default();
            for _ in 0..4 {
                let kind =
                    [Kind::Sender, Kind::Domain, Kind::Mta, Kind::Pair][(next() % 4) as usize];
                let key = format!("k{}@d{}.example", next() % 20, next() % 2);
                let t = 1_700_000_000 + next() % 100_000;
                let mut r = if next() % 3 == 0 {
                    Record::touched_at(t)
                } else {
                    Record::seen_at(t)
                };
                r.add(Counter::MessagesReceived, next() % 3)
                    .add(Counter::Opened, next() % 2);
                for _ in 0..(next() % 120) {
                    r.insert(
                        SetKind::EnterpriseRecipients,
                        &format!("e{}", next() % 2000),
                    );
                }
                if next() % 4 == 0 {
                    r.label = format!("helo{}", next() % 9);
                }
                u.records.push((kind, key, r));
            }
            u
        })
        .collect()
}

/// The same updates into RocksDB and into `other`: every record equal.
fn same_records_as_rocksdb(other: &dyn ReputationStore) {
    let dir = tempfile::tempdir().unwrap();
    let rocks = RocksStore::open(dir.path(), 86400).unwrap();
    let updates = random_updates(400);
    let mut keys = std::collections::BTreeSet::new();
    for u in &updates {
        rocks.apply(u).unwrap();
        other.apply(u).unwrap();
        for (k, key, _) in &u.records {
            keys.insert((*k as u8, key.clone()));
        }
    }
    let mut big_sets = 0;
    for (k, key) in &keys {
        let kind = [Kind::Sender, Kind::Domain, Kind::Mta, Kind::Pair][*k as usize];
        let a = rocks.record(kind, key).unwrap();
        let b = other.record(kind, key).unwrap();
        assert_eq!(a, b, "{key}");
        if a.distinct(SetKind::EnterpriseRecipients) as usize >= DISTINCT_K {
            big_sets += 1;
        }
    }
    assert!(
        keys.len() > 100 && big_sets > 10,
        "{} keys, {big_sets} big sets",
        keys.len()
    );
}

/// On a cluster the milter's flights go as one pipeline per master once
/// the masters' map is read (src/store/redis_store/nodes.rs): wait until
/// the store says it reaches all three, then the asynchronous path must
/// write and read what RocksDB does, update for update, and keep reaching
/// them (no command was refused and the map stayed).
fn flights_by_master_agree_with_rocksdb(s: &RedisStore) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let stat = |s: &RedisStore, name: &str| {
        s.stats()
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    };
    let masters = |s: &RedisStore| stat(s, "masters:redis-cluster");
    let start = std::time::Instant::now();
    while masters(s) != Some(3) {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(10),
            "the masters' map was not read: {:?}",
            s.stats()
        );
        rt.block_on(async {
            s.load(vec![Want::Record(Kind::Sender, "warm@x.example".into())])
                .await
                .unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        });
    }
    loads_as_it_reads(s, &rt);
    let dir = tempfile::tempdir().unwrap();
    let rocks = RocksStore::open(dir.path(), 86400).unwrap();
    let mut keys = std::collections::BTreeSet::new();
    for u in random_updates(400) {
        rocks.apply(&u).unwrap();
        for (k, key, _) in &u.records {
            keys.insert((*k as u8, key.clone()));
        }
        rt.block_on(s.apply_async(u)).unwrap();
    }
    let kinds = [Kind::Sender, Kind::Domain, Kind::Mta, Kind::Pair];
    let wants: Vec<Want> = keys
        .iter()
        .map(|(k, key)| Want::Record(kinds[*k as usize], key.clone()))
        .collect();
    let loaded = rt.block_on(s.load(wants.clone())).unwrap();
    for (w, l) in wants.iter().zip(loaded) {
        assert_eq!(l, w.read(&rocks).unwrap(), "{w:?}");
    }
    assert_eq!(masters(s), Some(3), "{:?}", s.stats());
    assert_eq!(
        stat(s, "redirected:redis-cluster"),
        Some(0),
        "every command went to its master: {:?}",
        s.stats()
    );
}

/// Behind an identity key: every record read by its clear key equals
/// RocksDB's in clear, and the backend itself holds only hashed sender,
/// MTA and pair keys, under the key's fingerprint.
fn keyed_agrees_and_hides(raw: Arc<dyn ReputationStore>) {
    let key = IdentityKey::new(b"the conformance suite's identity key").unwrap();
    let keyed = with_identity_key(raw.clone(), Some(key.clone()), true).unwrap();
    same_records_as_rocksdb(keyed.as_ref());
    assert_eq!(
        raw.meta(META_IDENTITY).unwrap().as_deref(),
        Some(key.fingerprint())
    );
    let (mut hashed, mut domains) = (0, 0);
    raw.export(&mut |item| {
        if let Item::Record(kind, k, _) = item {
            if kind == Kind::Domain {
                domains += 1;
            } else {
                assert!(k.starts_with('~') && !k.contains("k1"), "{kind:?} {k}");
                hashed += 1;
            }
        }
        Ok(())
    })
    .unwrap();
    assert!(hashed > 50 && domains > 0, "{hashed} {domains}");
}

#[test]
fn rocksdb_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let s = RocksStore::open(dir.path(), 86400).unwrap();
    conformance(&s);
    let dir = tempfile::tempdir().unwrap();
    keyed_agrees_and_hides(Arc::new(RocksStore::open(dir.path(), 86400).unwrap()));
}

#[test]
fn a_redis_server_conforms_and_agrees_with_rocksdb() {
    let r = Redis::single();
    conformance(&redis_store(&r, false, "t1"));
    same_records_as_rocksdb(&redis_store(&r, false, "t2"));
}

#[test]
fn a_redis_cluster_conforms_and_agrees_with_rocksdb() {
    let r = Redis::cluster();
    conformance(&redis_store(&r, true, "t1"));
    same_records_as_rocksdb(&redis_store(&r, true, "t2"));
    keyed_agrees_and_hides(Arc::new(redis_store(&r, true, "t3")));
    flights_by_master_agree_with_rocksdb(&redis_store(&r, true, "t4"));
}

#[test]
fn prefixes_keep_sites_apart_on_one_cluster() {
    let r = Redis::single();
    let a = redis_store(&r, false, "site-a");
    let b = redis_store(&r, false, "site-b");
    let mut d = Record::seen_at(1);
    d.add(Counter::MessagesReceived, 1);
    a.apply(&records(vec![(Kind::Sender, "x@y.example", d)]))
        .unwrap();
    assert_eq!(
        a.record(Kind::Sender, "x@y.example")
            .unwrap()
            .count(Counter::MessagesReceived),
        1
    );
    assert!(b.record(Kind::Sender, "x@y.example").unwrap().is_empty());
}

#[test]
fn an_acl_user_with_a_password_file_connects_and_a_wrong_password_is_named() {
    let r = Redis::single_with_user("sra-milter", "s3cret-acl-password");
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("redis.password");
    std::fs::write(&pw, "s3cret-acl-password\n").unwrap();
    let mut cfg = RedisConfig {
        nodes: r.urls(),
        username: "sra-milter".into(),
        password_file: pw.clone(),
        prefix: "acl".into(),
        ..RedisConfig::default()
    };
    cfg.validate().unwrap();
    let s = RedisStore::open(&cfg, 86400).unwrap();
    conformance(&s);
    std::fs::write(&pw, "wrong").unwrap();
    let e = RedisStore::open(&cfg, 86400).err().expect("refused");
    assert!(
        e.to_string()
            .to_lowercase()
            .contains("authentication failed"),
        "{e}"
    );
    cfg.password_file = dir.path().join("missing");
    let e = cfg.validate().unwrap_err();
    assert!(e.contains("password_file"), "{e}");
}

#[test]
fn a_redis_server_over_tls_conforms_and_an_unknown_ca_is_refused() {
    let r = Redis::single_tls();
    let url = format!("rediss://127.0.0.1:{}", r.ports[0]);
    let mut cfg = RedisConfig {
        nodes: vec![url.clone()],
        ca_file: r.ca(),
        prefix: "tls".into(),
        ..RedisConfig::default()
    };
    cfg.validate().unwrap();
    conformance(&RedisStore::open(&cfg, 86400).unwrap());
    // Plain text to a TLS port, or TLS without the CA: refused.
    cfg.ca_file = std::path::PathBuf::new();
    assert!(
        RedisStore::open(&cfg, 86400).is_err(),
        "the system's roots do not know the test CA"
    );
    cfg.nodes = vec![format!("redis://127.0.0.1:{}", r.ports[0])];
    cfg.command_timeout = sra_milter::vocab::Span(std::time::Duration::from_millis(300));
    assert!(RedisStore::open(&cfg, 86400).is_err());
}

#[test]
fn a_redis_cluster_over_tls_conforms() {
    let r = Redis::cluster_tls();
    let cfg = RedisConfig {
        nodes: r.urls(),
        cluster: true,
        ca_file: r.ca(),
        prefix: "tlsc".into(),
        ..RedisConfig::default()
    };
    cfg.validate().unwrap();
    let s = RedisStore::open(&cfg, 86400).unwrap();
    conformance(&s);
    same_records_as_rocksdb(
        &RedisStore::open(
            &RedisConfig {
                prefix: "tlsc2".into(),
                ..cfg.clone()
            },
            86400,
        )
        .unwrap(),
    );
    flights_by_master_agree_with_rocksdb(
        &RedisStore::open(
            &RedisConfig {
                prefix: "tlsc3".into(),
                ..cfg
            },
            86400,
        )
        .unwrap(),
    );
}

#[test]
fn a_stage_on_redis_starts_from_what_an_earlier_stage_read() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let r = Redis::single();
    let store: Arc<dyn ReputationStore> = Arc::new(redis_store(&r, false, "peek"));
    let mut d = Record::seen_at(1_700_000_000);
    d.add(Counter::MessagesReceived, 4);
    store
        .apply(&records(vec![
            (Kind::Sender, "x@y.example", d.clone()),
            (Kind::Domain, "y.example", d),
        ]))
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // A sender with history leads to its domain (as rating it does).
    let runs = AtomicUsize::new(0);
    let stage = |s: Arc<dyn ReputationStore>| {
        runs.fetch_add(1, Ordering::Relaxed);
        let sender = s.record(Kind::Sender, "x@y.example")?;
        let domain = match sender.count(Counter::MessagesReceived) {
            0 => 0,
            _ => s
                .record(Kind::Domain, "y.example")?
                .count(Counter::MessagesReceived),
        };
        Ok(sender.count(Counter::MessagesReceived) * 10 + domain)
    };
    let cold = rt
        .block_on(sra_milter::store::run_loaded(&store, stage))
        .unwrap();
    assert_eq!((cold, runs.swap(0, Ordering::Relaxed)), (44, 3));
    // The next stage of the message, within the read cache's time: the
    // records read above are seen by its first run.
    let warm = rt
        .block_on(sra_milter::store::run_loaded(&store, stage))
        .unwrap();
    assert_eq!((warm, runs.load(Ordering::Relaxed)), (44, 1));
}

/// Drops the merge functions from every server (a replica promoted before
/// it had them, a restart without persistence, `FUNCTION FLUSH`); a
/// replica refuses, as it would get them from its master.
fn flush_functions(r: &Redis) {
    for p in &r.ports {
        let _ = std::process::Command::new("redis-cli")
            .args(["-p", &p.to_string(), "FUNCTION", "FLUSH"])
            .output()
            .unwrap();
    }
}

/// The milter's reads and writes load the functions again and succeed; a
/// synchronous read does too; a synchronous write fails once (part of it
/// may have run) and the next succeeds.
fn functions_come_back(s: &dyn ReputationStore, r: &Redis) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let one = |who: &str| {
        let mut d = Record::seen_at(1_700_000_000);
        d.add(Counter::MessagesReceived, 1);
        records(vec![(Kind::Sender, who, d)])
    };
    let count = |who: &str| {
        s.record(Kind::Sender, who)
            .unwrap()
            .count(Counter::MessagesReceived)
    };
    s.apply(&one("a@lost.example")).unwrap();
    flush_functions(r);
    rt.block_on(s.apply_async(one("a@lost.example"))).unwrap();
    flush_functions(r);
    let loaded = rt
        .block_on(s.load(vec![Want::Record(Kind::Sender, "a@lost.example".into())]))
        .unwrap();
    assert!(
        matches!(&loaded[0], Loaded::Record(r) if r.count(Counter::MessagesReceived) == 2),
        "{loaded:?}"
    );
    s.apply(&one("b@lost.example")).unwrap();
    flush_functions(r);
    assert_eq!(count("b@lost.example"), 1, "a read after the loss");
    flush_functions(r);
    assert!(s.apply(&one("c@lost.example")).is_err());
    s.apply(&one("c@lost.example")).unwrap();
    assert!(count("c@lost.example") >= 1);
}

#[test]
fn a_server_or_cluster_that_lost_the_functions_gets_them_again() {
    let single = Redis::single();
    functions_come_back(&redis_store(&single, false, "lost"), &single);
    let cluster = Redis::cluster();
    functions_come_back(&redis_store(&cluster, true, "lost"), &cluster);
}

/// The library of earlier builds (`sra_milter_1`), as they loaded it.
const LIBRARY_1: &str = include_str!("fixtures/sra_milter_1.lua");

/// A function's source in a library: from `local function NAME` to the
/// first line that is just `end`.
fn function_text<'a>(library: &'a str, name: &str) -> &'a str {
    let start = library
        .find(&format!("local function {name}("))
        .unwrap_or_else(|| panic!("no function {name}"));
    let len = library[start..].find("\nend\n").unwrap() + "\nend\n".len();
    &library[start..start + len]
}

/// Hosts of an earlier build and of this one share a store while a site
/// upgrades: both libraries stay loaded (an earlier host restarting loads
/// its own again with REPLACE), this build's reads and writes go on, and
/// both merge a delta alike, so either's records read the same.
#[test]
fn an_earlier_builds_functions_and_these_live_side_by_side() {
    let r = Redis::single();
    let cli = |args: &[&str]| {
        let out = std::process::Command::new("redis-cli")
            .args(["-p", &r.ports[0].to_string()])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    cli(&["FUNCTION", "LOAD", LIBRARY_1]);
    let s = redis_store(&r, false, "upgrade");
    let one = |who: &str| {
        let mut d = Record::seen_at(1_700_000_000);
        d.add(Counter::MessagesReceived, 1);
        d.insert(SetKind::EnterpriseRecipients, who);
        records(vec![(Kind::Sender, "a@upgrade.example", d)])
    };
    s.apply(&one("x@example.com")).unwrap();
    // An earlier host restarts and loads its library again.
    cli(&["FUNCTION", "LOAD", "REPLACE", LIBRARY_1]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(s.apply_async(one("y@example.com"))).unwrap();
    let loaded = rt
        .block_on(s.load(vec![Want::Record(Kind::Sender, "a@upgrade.example".into())]))
        .unwrap();
    let Loaded::Record(rec) = &loaded[0] else {
        panic!("{loaded:?}")
    };
    assert_eq!(rec.count(Counter::MessagesReceived), 2);
    assert_eq!(rec.distinct(SetKind::EnterpriseRecipients), 2);
    assert_eq!(rec, &s.record(Kind::Sender, "a@upgrade.example").unwrap());
    let libraries = cli(&["FUNCTION", "LIST"]);
    assert!(libraries.contains("sra_milter_1"), "{libraries}");
    assert!(libraries.contains("sra_milter_2"), "{libraries}");
    let library_2 = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src/store/redis_store/merge.lua"
    ))
    .unwrap();
    assert_eq!(
        function_text(LIBRARY_1, "merge"),
        function_text(&library_2, "merge")
    );
}
