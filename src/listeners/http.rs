//! The HTTP listeners (engagement events, metrics and health): axum routers
//! served by hyper, HTTP/1.1, with what a listener open to strangers needs
//! around them:
//!
//! - at most [`MAX_CONNECTIONS`] connections at once; more are closed at
//!   accept (idle clients cannot pile up descriptors);
//! - the request head within [`HEAD_TIMEOUT`] and at most [`MAX_HEAD`]
//!   bytes (hyper's own limits), the whole exchange within
//!   [`CONNECTION_DEADLINE`], one request per connection;
//! - bodies bounded per router (axum's `DefaultBodyLimit`), and gates (a
//!   bearer token) that run as middleware on the request head, before any
//!   body is read;
//! - a listener out of file descriptors pauses and retries, logged once,
//!   and never ends the daemon.
//!
//! So a listener holds at most `MAX_CONNECTIONS × (MAX_HEAD + body limit)`
//! of buffers.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use serde_json::json;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Connections one listener keeps open at once; more are closed at accept.
pub const MAX_CONNECTIONS: usize = 64;
/// The request line and headers (hyper's read buffer).
pub const MAX_HEAD: usize = 16 * 1024;
/// Time for a client to send its request head.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// Time for one whole exchange: head, body and answer.
pub const CONNECTION_DEADLINE: Duration = Duration::from_secs(30);
/// How long accepting pauses after an accept error.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// A JSON answer.
pub fn json(status: StatusCode, v: serde_json::Value) -> Response {
    (status, axum::Json(v)).into_response()
}

/// A JSON error: `{"error": message}`.
pub fn error(status: StatusCode, message: &str) -> Response {
    json(status, json!({ "error": message }))
}

/// The answer to a request without the right bearer token.
pub fn unauthorized(message: &str) -> Response {
    let mut r = error(StatusCode::UNAUTHORIZED, message);
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    r
}

/// Whether the request's `Authorization: Bearer` matches `token`, in time
/// independent of where they differ.
pub fn bearer_matches(headers: &axum::http::HeaderMap, token: Option<&str>) -> bool {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    matches!((token, given), (Some(t), Some(g)) if constant_time_eq(t.as_bytes(), g.as_bytes()))
}

/// Serves `router` on `listener` until `shutdown` completes.
pub async fn serve(listener: TcpListener, router: Router, shutdown: impl Future<Output = ()>) {
    let name = listener
        .local_addr()
        .map_or_else(|_| "http".to_string(), |a| a.to_string());
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut starved = false;
    let mut full = false;
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = &mut shutdown => return,
        };
        let stream = match accepted {
            Ok((s, _)) => s,
            Err(e) => {
                // Out of file descriptors or a client that left: pause, log
                // once, and go on; never end the listener (or the daemon).
                if !starved {
                    tracing::warn!("http listener {name}: cannot accept: {e}; retrying");
                    starved = true;
                }
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        starved = false;
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            if !full {
                tracing::warn!(
                    "http listener {name}: {MAX_CONNECTIONS} connections open; closing new ones until some finish"
                );
                full = true;
            }
            drop(stream);
            continue;
        };
        full = false;
        let service = TowerToHyperService::new(router.clone());
        tokio::spawn(async move {
            let _slot = slot;
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .max_buf_size(MAX_HEAD)
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service);
            // A client too slow for the deadline is cut off.
            let _ = tokio::time::timeout(CONNECTION_DEADLINE, conn).await;
        });
    }
}

/// Compares secrets in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
