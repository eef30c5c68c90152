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
