//! kill -9 under load, repeated: `sra-milter run` is killed while clients
//! send mail as fast as it answers, then started again on the same store.
//! Every message whose end-of-message reply a client received was learned
//! (the store's count is at least the acknowledged count, and exceeds it by
//! no more than the messages in flight at the kill), and the store opens
//! after each kill.

mod common;
mod support;

use common::{try_send, Mail};
use indymilter_test::Status;
use sra_milter::store::{Counter, Kind, ReputationStore, RocksStore};
use std::path::Path;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use support::{free_port, spawn_listening};

const BIN: &str = env!("CARGO_BIN_EXE_sra-milter");
const SENDER: &str = "carol@partner.example";
/// Clients sending at once: at most this many messages are in flight.
const CLIENTS: u64 = 16;
const ROUNDS: usize = 5;

fn start(cfg: &Path, port: u16, log: &Path) -> Child {
    spawn_listening(
        Command::new(BIN).args(["run", "-c"]).arg(cfg),
        port,
        log,
        Duration::from_secs(15),
    )
}

fn stored(state: &Path) -> u64 {
    RocksStore::open(state, 86400)
        .unwrap()
        .record(Kind::Sender, SENDER)
        .unwrap()
        .count(Counter::MessagesReceived)
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_under_load_loses_no_acknowledged_message() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let port = free_port();
    let cfg = dir.path().join("sra-milter.toml");
    std::fs::write(
        &cfg,
        format!(
            "socket = \"inet:127.0.0.1:{port}\"\nstate_dir = \"{}\"\nenterprise_domains = [\"example.com\"]\n[admin]\ncontrol_socket = \"{}\"\n[auth]\nverify = false\n",
            state.display(),
            dir.path().join("control.sock").display(),
        ),
    )
    .unwrap();
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let mut acked_total = 0;
    let mut seq = 0u64;
    for round in 0..ROUNDS {
        let log = dir.path().join(format!("log{round}"));
        let mut child = start(&cfg, port, &log);
        let acked = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let clients: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let (acked, stop) = (acked.clone(), stop.clone());
                let base = seq + c * 1_000_000;
                tokio::spawn(async move {
                    let mut i = 0;
                    while !stop.load(Ordering::Relaxed) {
                        i += 1;
                        let id = format!("r{round}c{c}m{}@partner.example", base + i);
                        // A session cut by the kill is no acknowledgement.
                        let sent = tokio::time::timeout(
                            Duration::from_secs(5),
                            try_send(addr, &Mail::inbound(SENDER, &id)),
                        )
                        .await;
                        if let Ok(Ok(t)) = sent {
                            if t.eom_status() == Some(&Status::Continue) {
                                acked.fetch_add(1, Ordering::SeqCst);
                            }
                        } else {
                            break;
                        }
                    }
                })
            })
            .collect();
        seq += 10_000_000;
        // Load for a while (varied, so the kill lands anywhere), then kill.
        tokio::time::sleep(Duration::from_millis(600 + (round as u64 * 137) % 250)).await;
        let killed = Command::new("kill")
            .args(["-9", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        child.wait().unwrap();
        stop.store(true, Ordering::Relaxed);
        for c in clients {
            let _ = c.await;
        }
        let acked = acked.load(Ordering::SeqCst);
        assert!(acked > 0, "round {round}: no message was answered");
        let stored = stored(&state);
        assert!(
            stored >= acked_total + acked,
            "round {round}: {} acknowledged, {stored} stored",
            acked_total + acked
        );
        assert!(
            stored <= acked_total + acked + CLIENTS,
            "round {round}: {stored} stored for {} acknowledged",
            acked_total + acked
        );
        // What was in flight at the kill may have been learned without its
        // reply; the next round counts from what the store holds.
        acked_total = stored;
        eprintln!("round {round}: {acked} acknowledged, {stored} stored in all");
    }
}
