//! The hot-key curve: the cost of one message as its sender, domain and MTA
//! get busier. Every message comes from the same MTA and domain (one of
//! `SENDERS` addresses there), so each one adds to the same few records —
//! as the big mailbox providers and the organisation's own relays do in
//! real traffic. The engine runs in-process on a RocksDB store in a temp
//! dir (rating, decision and learning: `Engine::process`, as the milter
//! does at end of message), without the milter protocol.
//!
//!     cargo run --release --example hotkey_bench -- [MESSAGES] [SENDERS] [WINDOW]
//!
//! Prints, every WINDOW messages, how many messages the hot keys had seen
//! and the mean cost of a message over the last window, then the ratio of
//! the last window to the first.

use sra_milter::config::Config;
use sra_milter::message::{AuthState, Message};
use sra_milter::pipeline::Engine;
use sra_milter::store::RocksStore;
use sra_milter::vocab::{Action, Direction};
use std::sync::Arc;
use std::time::Instant;

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let messages = args.first().copied().unwrap_or(100_000);
    let senders = args.get(1).copied().unwrap_or(300).max(1);
    let window = args.get(2).copied().unwrap_or(10_000).max(1);

    let dir = tempfile::tempdir().expect("temp dir");
    let mut cfg = Config {
        state_dir: dir.path().join("store"),
        enterprise_domains: vec!["example.com".into()],
        ..Config::default()
    };
    cfg.validate().expect("config");
    let store = Arc::new(RocksStore::open(&cfg.state_dir, 86400 * 90).expect("store"));
    let engine = Engine::new(store, &cfg).expect("engine");

    let t0: u64 = 1_800_000_000;
    let mut first: Option<f64> = None;
    let mut last = 0.0;
    let mut started = Instant::now();
    println!("{:>10} {:>14}", "messages", "us/message");
    for i in 0..messages {
        let s = i % senders;
        let msg = Message {
            time: t0 + i as u64,
            direction: Some(Direction::Inbound),
            client_ip: Some("192.0.2.10".parse().expect("literal")),
            helo: "mx.bigprovider.example".into(),
            envelope_from: Some(format!("user{s}@bigprovider.example")),
            header_from: Some(format!("user{s}@bigprovider.example")),
            display_name: Some(format!("User Number{s}")),
            recipients: vec![format!("employee{}@example.com", i % 50)],
            message_id: Some(format!("m{i}@bigprovider.example")),
            auth_state: AuthState::Pass,
            ..Message::default()
        };
        engine
            .process(&cfg, &msg, Action::Accept, true)
            .expect("process");
        if (i + 1) % window == 0 {
            let us = started.elapsed().as_secs_f64() * 1e6 / window as f64;
            println!("{:>10} {:>14.1}", i + 1, us);
            first.get_or_insert(us);
            last = us;
            started = Instant::now();
        }
    }
    if let Some(f) = first {
        println!("last window / first window: {:.2}", last / f);
    }
}
