//! Milter throughput benchmark: the real daemon (`daemon::serve`) on a
//! fresh RocksDB store in a temp dir, driven over loopback TCP by
//! concurrent indymilter-test clients that speak to it as Postfix does
//! (connect, HELO, MAIL, RCPT, DATA, headers, body, end of message).
//!
//!     cargo run --release --example milter_bench -- [MESSAGES] [CONCURRENCY] [SENDERS] [tcp|unix]
//!
//! Prints messages/s and per-message latency percentiles.
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
use sra_milter::store::RocksStore;
use sra_milter::vocab::Mode;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[tokio::main]
async fn main() {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let unix = !raw.iter().any(|a| a == "tcp");
    let args: Vec<usize> = raw.iter().filter_map(|a| a.parse().ok()).collect();
    let messages = args.first().copied().unwrap_or(5000);
    let concurrency = args.get(1).copied().unwrap_or(4).max(1);
    let senders = args.get(2).copied().unwrap_or(500).max(1);

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
    cfg.validate().expect("config");
    let store = Arc::new(RocksStore::open(&cfg.state_dir, 86400 * 90).expect("store"));
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
        workers.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(per_worker);
            for i in 0..per_worker {
                let n = w * per_worker + i;
                let sender = format!("user{}@sender{}.example", n % senders, n % 97);
                let ip = [192, 0, 2, (n % 250) as u8 + 1];
                let t0 = Instant::now();
                let mut c = match addr {
                    Some(a) => TestConnection::open(a).await.expect("open"),
                    None => TestConnection::configure()
                        .open_unix(&sock)
                        .await
                        .expect("open"),
                };
                c.connect("mx.sender.example", ip).await.expect("connect");
                c.helo("mx.sender.example").await.expect("helo");
                c.macros(MacroStage::Mail, [("i", format!("Q{n:08X}"))])
                    .await
                    .expect("macros");
                c.mail([format!("<{sender}>")]).await.expect("mail");
                c.rcpt([format!("<staff{}@example.com>", n % 50)])
                    .await
                    .expect("rcpt");
                c.data().await.expect("data");
                c.header("From", format!("Sender <{sender}>"))
                    .await
                    .expect("header");
                c.header("To", "staff@example.com").await.expect("header");
                c.header("Subject", "benchmark").await.expect("header");
                c.header("Message-ID", format!("<bench{n}@sender.example>"))
                    .await
                    .expect("header");
                c.eoh().await.expect("eoh");
                c.body("Hello,\r\nsee https://example.org/x\r\n".repeat(20))
                    .await
                    .expect("body");
                c.eom().await.expect("eom");
                c.close().await.expect("close");
                lat.push(t0.elapsed());
            }
            lat
        }));
    }
    let mut lat: Vec<Duration> = Vec::new();
    for w in workers {
        lat.extend(w.await.expect("worker"));
    }
    let elapsed = start.elapsed();
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    println!(
        "{} {} messages, {} connections in parallel, {} senders: {:.0} msg/s; latency p50 {:.2} ms, p99 {:.2} ms",
        if unix { "unix" } else { "tcp" },
        lat.len(),
        concurrency,
        senders,
        lat.len() as f64 / elapsed.as_secs_f64(),
        pct(0.5).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3
    );
    let _ = tx.send(());
    let _ = server.await;
}
