//! The embedded store at scale: SENDERS sender records and MTAS MTA records
//! (defaults 10 M and 1 M) written into a RocksDB store in DIR, then the
//! store is closed and reopened and point look-ups are timed.
//!
//!     cargo run --release --example store_scale -- DIR [SENDERS] [MTAS] [LOOKUPS]
//!
//! DIR may also be `redis://HOST:PORT` (one Redis server) or
//! `redis-cluster://HOST:PORT` (a Redis Cluster seed node): the same records
//! go to the shared store under the prefix `scale`, and the look-ups run
//! there (measure the server's memory with `redis-cli info memory`).
//!
//! Prints the load rate, the reopen (startup) time, the look-up latency
//! percentiles (random existing keys, and misses), the process's resident
//! memory now and at its peak, and the store's size on disk. DIR is kept
//! (delete it after); an existing store there is reused as it is, so a
//! second run measures startup and look-ups only.

use sra_milter::config::RedisConfig;
use sra_milter::store::{
    Counter, Kind, Record, RedisStore, ReputationStore, RocksStore, SetKind, Update,
};
use std::path::Path;
use std::time::Instant;

const DAY: u64 = 86_400;
const NOW: u64 = 1_800_000_000;

fn sender(i: u64) -> String {
    format!("user{i}@domain{}.example", i % 200_000)
}

fn mta(i: u64) -> String {
    format!(
        "{}.{}.{}.{}",
        10 + (i >> 24) % 200,
        (i >> 16) & 255,
        (i >> 8) & 255,
        i & 255
    )
}

fn record(i: u64) -> Record {
    let mut r = Record::seen_at(NOW - (i % 400) * DAY);
    r.add(Counter::MessagesReceived, 1 + i % 50);
    if i.is_multiple_of(3) {
        r.add(Counter::MessagesSent, 1 + i % 7);
    }
    r.insert(
        SetKind::EnterpriseRecipients,
        &format!("emp{}@example.com", i % 40),
    );
    r.insert(SetKind::MtaNetworks, "192.0.2.0/24");
    r
}

fn status(field: &str) -> String {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .map(|l| l[field.len()..].trim().to_string())
        .unwrap_or_else(|| "?".into())
}

fn du(p: &Path) -> u64 {
    std::fs::read_dir(p)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
        .sum()
}

/// A small xorshift for the look-up order.
fn next(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

fn percentile(v: &mut [u64], p: f64) -> f64 {
    v.sort_unstable();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i] as f64 / 1000.0
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(dir) = args.first().map(std::path::PathBuf::from) else {
        eprintln!("usage: store_scale DIR [SENDERS] [MTAS] [LOOKUPS]");
        std::process::exit(64);
    };
    let n = |i: usize, d: u64| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let (senders, mtas, lookups) = (n(1, 10_000_000), n(2, 1_000_000), n(3, 200_000));

    let target = dir.to_string_lossy().into_owned();
    let redis = if let Some(rest) = target.strip_prefix("redis-cluster://") {
        Some((format!("redis://{rest}"), true))
    } else if target.starts_with("redis://") {
        Some((target.clone(), false))
    } else {
        None
    };
    let open = || -> Box<dyn ReputationStore> {
        match &redis {
            Some((url, cluster)) => {
                let cfg = RedisConfig {
                    nodes: vec![url.clone()],
                    cluster: *cluster,
                    prefix: "scale".into(),
                    ..RedisConfig::default()
                };
                Box::new(RedisStore::open(&cfg, 90 * DAY).expect("redis"))
            }
            None => Box::new(RocksStore::open(&dir, 90 * DAY).expect("open the store")),
        }
    };
    let fresh = match &redis {
        Some(_) => open()
            .record(Kind::Sender, &sender(0))
            .expect("read")
            .is_empty(),
        None => !dir.join("CURRENT").exists(),
    };
    if fresh {
        let store = open();
        let t = Instant::now();
        let batch = 10_000u64;
        for (kind, total, key) in [
            (Kind::Sender, senders, sender as fn(u64) -> String),
            (Kind::Mta, mtas, mta as fn(u64) -> String),
        ] {
            let mut i = 0;
            while i < total {
                let mut u = Update::default();
                for j in i..(i + batch).min(total) {
                    u.records.push((kind, key(j), record(j)));
                }
                store.apply(&u).expect("write");
                i += batch;
                if i.is_multiple_of(1_000_000) {
                    eprintln!(
                        "  {kind:?}: {i} written, {:.0} s",
                        t.elapsed().as_secs_f64()
                    );
                }
            }
        }
        let secs = t.elapsed().as_secs_f64();
        println!(
            "load: {} records in {secs:.1} s ({:.0} records/s)",
            senders + mtas,
            (senders + mtas) as f64 / secs
        );
        drop(store);
    }

    let t = Instant::now();
    let store = open();
    println!(
        "startup (open an existing store): {:.2} s",
        t.elapsed().as_secs_f64()
    );

    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut hits = Vec::with_capacity(lookups as usize);
    for _ in 0..lookups {
        let i = next(&mut x) % senders;
        let t = Instant::now();
        let r = store.record(Kind::Sender, &sender(i)).expect("read");
        hits.push(t.elapsed().as_nanos() as u64);
        assert!(r.count(Counter::MessagesReceived) > 0, "sender {i} missing");
    }
    let mut mta_hits = Vec::with_capacity(lookups as usize / 4);
    for _ in 0..lookups / 4 {
        let i = next(&mut x) % mtas;
        let t = Instant::now();
        store.record(Kind::Mta, &mta(i)).expect("read");
        mta_hits.push(t.elapsed().as_nanos() as u64);
    }
    let mut misses = Vec::with_capacity(lookups as usize / 4);
    for _ in 0..lookups / 4 {
        let i = next(&mut x);
        let t = Instant::now();
        let r = store
            .record(Kind::Sender, &format!("nobody{i}@unknown.example"))
            .expect("read");
        misses.push(t.elapsed().as_nanos() as u64);
        assert!(r.is_empty());
    }
    for (what, v) in [
        ("sender hit", &mut hits),
        ("mta hit", &mut mta_hits),
        ("miss", &mut misses),
    ] {
        println!(
            "lookup {what:<10} n={:<7} p50 {:.1} µs  p99 {:.1} µs  p99.9 {:.1} µs",
            v.len(),
            percentile(v, 0.50),
            percentile(v, 0.99),
            percentile(v, 0.999)
        );
    }
    println!(
        "memory: RSS {} (peak {}); store on disk {:.0} MiB",
        status("VmRSS:"),
        status("VmHWM:"),
        du(&dir) as f64 / (1 << 20) as f64
    );
    println!("store: {:?}", store.stats());
}
