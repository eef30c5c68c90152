//! `GET /metrics` after traffic: the counters moved.

mod common;
mod support;

use common::{send, Mail};
use std::io::{Read, Write};

fn free_addr() -> String {
    format!("127.0.0.1:{}", support::free_port())
}

async fn http(addr: &str, request: String) -> (u16, String) {
    let addr = addr.to_string();
    tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        let status = resp[9..12].parse().unwrap();
        (
            status,
            resp.split("\r\n\r\n").nth(1).unwrap_or("").to_string(),
        )
    })
    .await
    .unwrap()
}

fn value(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{series} not in\n{metrics}"))
}

#[tokio::test]
async fn metrics_count_verdicts_latency_events_and_the_store() {
    let (admin, events) = (free_addr(), free_addr());
    let (a, e) = (admin.clone(), events.clone());
    let m = common::start(move |c| {
        c.mode = sra_milter::vocab::Mode::Monitor;
        c.lists.block = vec!["203.0.113.0/24".into()];
        c.admin.listen = a;
        let token = c.state_dir.parent().unwrap().join("token");
        std::fs::write(&token, "metrics-token-0123456789").unwrap();
        c.events.listen = e;
        c.events.token_file = token;
    })
    .await;
    for _ in 0..100 {
        if std::net::TcpStream::connect(&admin).is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let (s, before) = http(&admin, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n".into()).await;
    assert_eq!(s, 200);
    assert!(!before.contains("sra_milter_verdicts_total{"), "{before}");

    send(m.addr, &Mail::inbound("carol@partner.example", "m1@p")).await;
    let mut blocked = Mail::inbound("x@bad.example", "m2@p");
    blocked.ip = "203.0.113.5".parse().unwrap();
    send(m.addr, &blocked).await;
    let body = r#"{"event":"opened","message_id":"<m1@p>","mailbox":"alice@example.com"}"#;
    let post = format!(
        "POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer metrics-token-0123456789\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    assert_eq!(http(&events, post).await.0, 202);
    let bad = "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}".to_string();
    assert_eq!(http(&events, bad).await.0, 401);

    let (_, after) = http(&admin, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n".into()).await;
    assert_eq!(
        value(
            &after,
            r#"sra_milter_verdicts_total{stage="eom",class="unrated",action="accept"}"#
        ),
        2.0
    );
    assert_eq!(
        value(
            &after,
            r#"sra_milter_verdicts_total{stage="connect",class="malicious",action="accept"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            &after,
            r#"sra_milter_monitor_would_total{stage="connect",action="reject"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            &after,
            r#"sra_milter_monitor_would_total{stage="eom",action="reject"}"#
        ),
        1.0
    );
    assert_eq!(
        value(&after, r#"sra_milter_stage_seconds_count{stage="eom"}"#),
        2.0
    );
    assert_eq!(
        value(&after, r#"sra_milter_stage_seconds_count{stage="connect"}"#),
        2.0
    );
    assert_eq!(
        value(&after, r#"sra_milter_events_total{result="accepted"}"#),
        1.0
    );
    assert_eq!(
        value(&after, r#"sra_milter_events_total{result="unauthorized"}"#),
        1.0
    );
    assert!(value(&after, r#"sra_milter_store_keys{family="senders"}"#) >= 1.0);
    assert!(after.contains("sra_milter_store_bytes{kind=\"sst\"}"));
    let (s, health) = http(&admin, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n".into()).await;
    assert_eq!((s, health.trim()), (200, "ok"));
    m.stop().await;
}
