//! Milter throughput benchmark: the real daemon (`daemon::serve`) on a
//! fresh RocksDB store in a temp dir, driven over loopback TCP by
//! concurrent indymilter-test clients that speak to it as Postfix does
//! (connect, HELO, MAIL, RCPT, DATA, headers, body, end of message).
//!
//!     cargo run --release --example milter_bench -- [MESSAGES] [CONCURRENCY] [SENDERS] [tcp|unix] [zipf] [redis=URL|redis-cluster=URL] [admin=HOST:PORT] [journal=off] [workers=N]
//!
//! `workers=N` runs the daemon's runtime with N worker threads (default:
//! `worker_threads`' default, as `sra-milter run` does).
//!
//! `admin=127.0.0.1:PORT` also serves the console there (to measure the
//! mail flow while pages are loaded, e.g. with curl in a loop).
//!
//! `redis=redis://HOST:PORT` (one server) or `redis-cluster=redis://HOST:PORT`
//! (a seed node) runs on the shared Redis store instead of RocksDB, under a
//! fresh key prefix.
//!
//! Prints messages/s and per-message latency percentiles, and the
//! percentiles of the three replies that wait on the store (connect, MAIL,
//! end of message).
//!
//! The default mix spreads messages evenly over SENDERS addresses in 97
//! domains and 250 MTAs. `zipf` is the realistic mix: senders and MTAs drawn
//! Zipf-distributed (s = 1) over SENDERS identities and SENDERS/10 MTAs, so a
//! few are very busy, as big providers are; 20 % of the messages outbound
//! (an authenticated employee writing to a correspondent), 5 % replies to
//! an earlier outbound message.
//!
//! Over TCP the figures include the *client's* Nagle delays: indymilter-test
//! sends each macro definition as its own small write, without
//! TCP_NODELAY, so the following command waits for a delayed ACK. The unix
//! socket measures the milter itself; the Postfix system tests measure TCP
//! with a real MTA.

use indymilter_test::{MacroStage, TestConnection};
use sra_milter::config::Config;
use sra_milter::config::SocketSpec;
use sra_milter::daemon::{self, Shared};
use sra_milter::milter::MilterListener;
use sra_milter::pipeline::Engine;
use sra_milter::vocab::Mode;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The daemon's allocator (src/main.rs), so the figures are the daemon's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // The daemon's runtime (`sra-milter run`): `worker_threads` workers,
    // the configured default unless `workers=N` is given. The load
    // generator's clients run on it too.
    let workers = std::env::args()
        .find_map(|a| a.strip_prefix("workers=").and_then(|n| n.parse().ok()))
        .unwrap_or(Config::default().worker_threads);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(bench());
}

async fn bench() {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let unix = !raw.iter().any(|a| a == "tcp");
    let args: Vec<usize> = raw.iter().filter_map(|a| a.parse().ok()).collect();
    let messages = args.first().copied().unwrap_or(5000);
    let concurrency = args.get(1).copied().unwrap_or(4).max(1);
    let senders = args.get(2).copied().unwrap_or(500).max(1);
    let zipf = raw.iter().any(|a| a == "zipf");
    let mix = Arc::new(Mix::new(senders, zipf));

    let dir = tempfile::tempdir().expect("temp dir");
    let sock = dir.path().join("milter.sock");
    let mut cfg = Config {
        socket: if unix {
            SocketSpec::Unix(sock.clone())
        } else {
            SocketSpec::Inet("127.0.0.1:0".into())
        },
        state_dir: dir.path().join("store"),
        mode: Mode::Enforce,
        enterprise_domains: vec!["example.com".into()],
        ..Config::default()
    };
    cfg.admin.control_socket = Some(dir.path().join("control.sock"));
    // Measures the milter and the store, not DNS round trips.
    cfg.auth.verify = false;
    for a in &raw {
        if a == "journal=off" {
            cfg.admin.journal_keep = sra_milter::vocab::Span(Duration::ZERO);
            continue;
        }
        if let Some(listen) = a.strip_prefix("admin=") {
            cfg.admin.listen = listen.to_string();
            continue;
        }
        let (cluster, url) = match a.split_once('=') {
            Some(("redis", u)) => (false, u),
            Some(("redis-cluster", u)) => (true, u),
            _ => continue,
        };
        cfg.store.backend = sra_milter::config::Backend::Redis;
        cfg.store.redis.nodes = vec![url.to_string()];
        cfg.store.redis.cluster = cluster;
        cfg.store.redis.prefix = format!("bench{}", std::process::id());
    }
    cfg.validate().expect("config");
    let store = sra_milter::store::open(&cfg).expect("store");
    let engine = Arc::new(Engine::new(store.clone(), &cfg).expect("engine"));
    let listener = MilterListener::bind(&cfg.socket, 0o600)
        .await
        .expect("bind");
    let addr = listener.local_addr();
    let shared = Shared::new(cfg, engine).expect("resolver");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(daemon::serve(listener, shared, async move {
        let _ = rx.await;
    }));

    let start = Instant::now();
    let per_worker = messages / concurrency;
    let mut workers = Vec::new();
    for w in 0..concurrency {
        let sock = sock.clone();
        let mix = mix.clone();
        workers.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(per_worker);
            // The replies that wait on the store: connect, MAIL, end of
            // message.
            let mut stages: [Vec<Duration>; 3] = Default::default();
            for i in 0..per_worker {
                let n = w * per_worker + i;
                let m = mix.message(n);
                let t0 = Instant::now();
                let mut c = match addr {
                    Some(a) => TestConnection::open(a).await.expect("open"),
                    None => TestConnection::configure()
                        .open_unix(&sock)
                        .await
                        .expect("open"),
                };
                let t = Instant::now();
                c.connect("mx.sender.example", m.ip).await.expect("connect");
                stages[0].push(t.elapsed());
                c.helo("mx.sender.example").await.expect("helo");
                let mut macros = vec![("i", format!("Q{n:08X}"))];
                if m.outbound {
                    macros.push(("{auth_authen}", "staff".into()));
                }
                c.macros(MacroStage::Mail, macros).await.expect("macros");
                let t = Instant::now();
                c.mail([format!("<{}>", m.from)]).await.expect("mail");
                stages[1].push(t.elapsed());
                c.rcpt([format!("<{}>", m.to)]).await.expect("rcpt");
                c.data().await.expect("data");
                c.header("From", format!("Sender <{}>", m.from))
                    .await
                    .expect("header");
                c.header("To", m.to.as_str()).await.expect("header");
                c.header("Subject", "benchmark").await.expect("header");
                c.header("Message-ID", format!("<bench{n}@bench.example>"))
                    .await
                    .expect("header");
                if let Some(r) = m.in_reply_to {
                    c.header("In-Reply-To", format!("<bench{r}@bench.example>"))
                        .await
                        .expect("header");
                }
                c.eoh().await.expect("eoh");
                c.body("Hello,\r\nsee https://example.org/x\r\n".repeat(20))
                    .await
                    .expect("body");
                let t = Instant::now();
                c.eom().await.expect("eom");
                stages[2].push(t.elapsed());
                c.close().await.expect("close");
                lat.push(t0.elapsed());
            }
            (lat, stages)
        }));
    }
    let mut lat: Vec<Duration> = Vec::new();
    let mut stages: [Vec<Duration>; 3] = Default::default();
    for w in workers {
        let (l, s) = w.await.expect("worker");
        lat.extend(l);
        for (all, one) in stages.iter_mut().zip(s) {
            all.extend(one);
        }
    }
    let elapsed = start.elapsed();
    lat.sort();
    let pct = |p: f64| percentile(&lat, p);
    println!(
        "{} {}{} messages, {} connections in parallel, {} senders: {:.0} msg/s; latency p50 {:.2} ms, p99 {:.2} ms",
        if unix { "unix" } else { "tcp" },
        if zipf { "zipf " } else { "" },
        lat.len(),
        concurrency,
        senders,
        lat.len() as f64 / elapsed.as_secs_f64(),
        pct(0.5).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3
    );
    for s in &mut stages {
        s.sort();
    }
    let ms = |s: &[Duration], p: f64| percentile(s, p).as_secs_f64() * 1e3;
    println!(
        "  per stage p50/p99: connect {:.2}/{:.2} ms, mail {:.2}/{:.2} ms, eom {:.2}/{:.2} ms",
        ms(&stages[0], 0.5),
        ms(&stages[0], 0.99),
        ms(&stages[1], 0.5),
        ms(&stages[1], 0.99),
        ms(&stages[2], 0.5),
        ms(&stages[2], 0.99)
    );
    let _ = tx.send(());
    let _ = server.await;
}

/// The `p` quantile of sorted durations.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

/// One message of the mix.
struct Generated {
    ip: [u8; 4],
    from: String,
    to: String,
    outbound: bool,
    /// The earlier (outbound) message this one answers.
    in_reply_to: Option<usize>,
}

/// The messages of a run, a pure function of their number (so that every
/// worker draws from the same distribution without sharing state).
struct Mix {
    senders: usize,
    zipf: Option<(Vec<f64>, Vec<f64>)>,
}

impl Mix {
    fn new(senders: usize, zipf: bool) -> Mix {
        let cdf = |n: usize| {
            let mut acc = 0.0;
            let mut v: Vec<f64> = (1..=n)
                .map(|k| {
                    acc += 1.0 / k as f64;
                    acc
                })
                .collect();
            for x in &mut v {
                *x /= acc;
            }
            v
        };
        Mix {
            senders,
            zipf: zipf.then(|| (cdf(senders), cdf((senders / 10).max(1)))),
        }
    }

    /// A uniform number in 0..1 for message `n` and stream `k` (splitmix64).
    fn uniform(n: usize, k: u64) -> f64 {
        let mut z =
            (n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ k.wrapping_mul(0xD1B5_4A32_D192_ED03);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) as f64 / u64::MAX as f64
    }

    fn draw(cdf: &[f64], u: f64) -> usize {
        cdf.partition_point(|c| *c < u).min(cdf.len() - 1)
    }

    fn message(&self, n: usize) -> Generated {
        let Some((senders, mtas)) = &self.zipf else {
            return Generated {
                ip: [192, 0, 2, (n % 250) as u8 + 1],
                from: format!("user{}@sender{}.example", n % self.senders, n % 97),
                to: format!("staff{}@example.com", n % 50),
                outbound: false,
                in_reply_to: None,
            };
        };
        let s = Self::draw(senders, Self::uniform(n, 1));
        let who = format!("user{s}@sender{}.example", s % 997);
        let kind = Self::uniform(n, 2);
        if kind < 0.20 {
            // An employee writes to the correspondent, from inside.
            return Generated {
                ip: [10, 0, 0, 5],
                from: format!("staff{}@example.com", n % 50),
                to: who,
                outbound: true,
                in_reply_to: None,
            };
        }
        let m = Self::draw(mtas, Self::uniform(n, 3));
        Generated {
            ip: [198, 18, (m / 250) as u8, (m % 250) as u8 + 1],
            from: who,
            to: format!("staff{}@example.com", n % 50),
            outbound: false,
            // A reply names an earlier message: the index look-up a reply
            // costs.
            in_reply_to: (kind < 0.25 && n > 0).then_some(n / 2),
        }
    }
}
