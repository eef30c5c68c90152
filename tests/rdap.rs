//! Domain age from RDAP (`[anomalies] rdap_url`): the milter asks a real
//! HTTP server on loopback (hyper, serving RDAP domain objects), names a
//! young domain, caches the answer, and treats a server that never answers
//! as "unknown" within `rdap_timeout`.

mod common;

use bytes::Bytes;
use common::{send, Mail};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// An RDAP server: `young.example` registered three days ago,
/// `old.example` in 2001, anything else unknown (404). Counts requests.
async fn rdap_server() -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else {
                return;
            };
            let h = h.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    h.fetch_add(1, Ordering::SeqCst);
                    let young = sra_milter::vocab::rfc3339(sra_milter::now() - 3 * 86_400);
                    let (status, body) = match req.uri().path() {
                        "/domain/young.example" => (
                            200,
                            format!(
                                r#"{{"objectClassName":"domain","ldhName":"young.example","events":[{{"eventAction":"registration","eventDate":"{young}"}}]}}"#
                            ),
                        ),
                        "/domain/old.example" => (
                            200,
                            r#"{"objectClassName":"domain","events":[{"eventAction":"registration","eventDate":"2001-05-01T00:00:00Z"}]}"#.to_string(),
                        ),
                        _ => (404, r#"{"errorCode":404}"#.to_string()),
                    };
                    async move {
                        Ok::<_, std::convert::Infallible>(
                            hyper::Response::builder()
                                .status(status)
                                .header("Content-Type", "application/rdap+json")
                                .body(Full::new(Bytes::from(body)))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    (port, hits)
}

fn anomalies(verdict: &Option<String>) -> String {
    verdict
        .as_deref()
        .and_then(|v| v.split("; ").find(|p| p.starts_with("anomalies=")))
        .unwrap_or("")
        .to_string()
}

#[tokio::test]
async fn a_young_domain_is_named_once_looked_up_and_a_silent_server_costs_its_timeout() {
    let (port, hits) = rdap_server().await;
    let m = common::start(|c| {
        c.mode = sra_milter::vocab::Mode::Monitor;
        c.anomalies.rdap_url = format!("http://127.0.0.1:{port}/domain/");
    })
    .await;
    let young = send(
        m.addr,
        &Mail::inbound("eve@mail.young.example", "y1@young.example"),
    )
    .await;
    let v = young.header("X-SRA-Verdict");
    assert!(anomalies(&v).contains("young_domain"), "{v:?}");
    let old = send(m.addr, &Mail::inbound("bob@old.example", "o1@old.example")).await;
    let v = old.header("X-SRA-Verdict");
    assert!(!anomalies(&v).contains("young_domain"), "{v:?}");
    let unknown = send(
        m.addr,
        &Mail::inbound("ann@nobody.example", "n1@nobody.example"),
    )
    .await;
    assert!(!anomalies(&unknown.header("X-SRA-Verdict")).contains("young_domain"));
    // The organisation's domain was asked once, whatever the host part.
    let before = hits.load(Ordering::SeqCst);
    assert_eq!(before, 3);
    let again = send(
        m.addr,
        &Mail::inbound("eve@young.example", "y2@young.example"),
    )
    .await;
    assert!(anomalies(&again.header("X-SRA-Verdict")).contains("young_domain"));
    assert_eq!(hits.load(Ordering::SeqCst), before, "cached");
    m.stop().await;

    // A server that accepts and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sport = silent.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let m = common::start(|c| {
        c.mode = sra_milter::vocab::Mode::Monitor;
        c.anomalies.rdap_url = format!("http://127.0.0.1:{sport}/domain/");
        c.anomalies.rdap_timeout = sra_milter::vocab::Span(Duration::from_millis(300));
    })
    .await;
    let t0 = Instant::now();
    let t = send(
        m.addr,
        &Mail::inbound("eve@young.example", "y3@young.example"),
    )
    .await;
    let took = t0.elapsed();
    let v = t.header("X-SRA-Verdict");
    assert!(
        v.is_some() && !anomalies(&v).contains("young_domain"),
        "{v:?}"
    );
    assert!(took < Duration::from_secs(3), "{took:?}");
    m.stop().await;
}
