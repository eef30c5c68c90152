//! A stage's work over a snapshot of the store (`store::run_loaded`, the
//! milter's path on a network store) gives what the same work gives on
//! the store directly: the same ratings, anomalies and decisions, and the
//! same store afterwards.

use super::detection_tests::{inbound, outbound, DAY, T};
use super::tests::setup;
use super::Engine;
use crate::config::Config;
use crate::message::Message;
use crate::store::{run_loaded, ReputationStore};
use crate::vocab::Action;

/// A timeline that reaches every read a message makes: correspondents
/// who answer and are answered (message index, pair records), one of
/// them from new hosts of a known network, a lookalike of a
/// correspondent's domain, a stranger writing to many people, a display
/// name of the enterprise's own from a freemail address, and replies to
/// messages that do not exist.
fn timeline() -> Vec<Message> {
    let partners = ["carol@partner.example", "dan@supplier.example"];
    let mut out = Vec::new();
    let mut seed: u64 = 7;
    let mut next = |n: u64| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) % n
    };
    for i in 0..160u64 {
        let t = T + i * DAY / 8;
        let who = partners[(i % 2) as usize];
        match next(6) {
            0 => out.push(outbound(who, t, &format!("o{i}@example.com"), &[])),
            1 => {
                let refs = [format!("o{}@example.com", i.saturating_sub(next(4) + 1))];
                let ip = format!("192.0.2.{}", 10 + next(3));
                let refs: Vec<&str> = refs.iter().map(String::as_str).collect();
                out.push(inbound(who, &ip, t, &format!("r{i}@x"), &refs));
            }
            2 => {
                let refs = [format!("r{}@x", i.saturating_sub(next(3) + 1))];
                let refs: Vec<&str> = refs.iter().map(String::as_str).collect();
                out.push(outbound(who, t, &format!("o{i}@example.com"), &refs));
            }
            3 => {
                let mut m = inbound(
                    "carol@partner-example.com",
                    "203.0.113.9",
                    t,
                    &format!("l{i}@x"),
                    &[],
                );
                m.has_url = true;
                out.push(m);
            }
            4 => {
                let mut m = inbound(
                    "promo@stranger.example",
                    "198.51.100.4",
                    t,
                    &format!("s{i}@x"),
                    &[],
                );
                m.recipients = vec![format!("user{}@example.com", next(20))];
                m.has_attachment = true;
                out.push(m);
            }
            _ => {
                let mut m = inbound(
                    "alice.example@freemail.example",
                    "198.51.100.77",
                    t,
                    &format!("f{i}@x"),
                    &["nowhere@x"],
                );
                m.display_name = Some("Alice Example".into());
                m.reply_to = Some("pay@elsewhere.example".into());
                out.push(m);
            }
        }
    }
    out
}

fn everything(store: &dyn ReputationStore) -> Vec<String> {
    let mut items = Vec::new();
    store
        .export(&mut |item| {
            items.push(format!("{item:?}"));
            Ok(())
        })
        .unwrap();
    items.sort();
    items
}

fn answer(e: &Engine, cfg: &Config, m: &Message) -> String {
    let (a, d) = e.process(cfg, m, Action::Accept, true).unwrap();
    format!("{a:?} {d:?}")
}

#[test]
fn the_snapshot_path_rates_and_learns_as_the_store_does() {
    let (_d1, direct, cfg) = setup();
    let (_d2, snapped, _) = setup();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let messages = timeline();
    for (i, m) in messages.iter().enumerate() {
        let want = answer(&direct, &cfg, m);
        let got = rt
            .block_on(run_loaded(snapped.store(), |s| {
                Ok(answer(&snapped.view(s), &cfg, m))
            }))
            .unwrap();
        assert_eq!(got, want, "message {i}");
    }
    let stored = everything(direct.store().as_ref());
    assert!(
        stored.len() > 100,
        "the timeline wrote {} items",
        stored.len()
    );
    assert_eq!(everything(snapped.store().as_ref()), stored);
}
