//! The events listener: `POST /v1/events` from the mailbox server — the
//! bearer token, the whole batch validated, then applied atomically.

use super::http::{constant_time_eq, Gate, Request, Response, ResponseFuture};
use crate::pipeline::engagement::parse_batch;
use crate::shared::Shared;
use crate::store::{run_blocking, StoreError};
use crate::vocab::now;
use serde_json::json;
use std::sync::Arc;

/// `POST /v1/events`: bearer token, validate the whole batch, apply it.
/// The bearer token, checked on the request head before the body is read:
/// a client without the token cannot make the listener buffer a body.
pub fn gate(shared: Arc<Shared>) -> Gate {
    Arc::new(move |req: &Request| {
        if req.path != "/v1/events" || req.method != "POST" {
            // 404 and 405 come from the handler.
            return None;
        }
        let token = shared.events_token();
        let given = req
            .header("authorization")
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim);
        let authorized = matches!((&token, given), (Some(t), Some(g)) if constant_time_eq(t.as_bytes(), g.as_bytes()));
        if authorized {
            return None;
        }
        shared.metrics.events("unauthorized", 1);
        tracing::warn!("events: request without the right bearer token refused");
        Some(Response::json(
            401,
            json!({ "error": "missing or wrong bearer token" }),
        ))
    })
}

/// Serves a request that passed [`gate`].
pub fn handler(shared: Arc<Shared>) -> impl Fn(Request) -> ResponseFuture + Send + Sync {
    move |req| {
        let shared = shared.clone();
        Box::pin(async move {
            if req.path != "/v1/events" {
                return Response::json(404, json!({ "error": "not found; POST /v1/events" }));
            }
            if req.method != "POST" {
                return Response::json(405, json!({ "error": "use POST" }));
            }
            let Ok(body) = String::from_utf8(req.body) else {
                return Response::json(
                    400,
                    json!({ "error": "line 1: body is not UTF-8", "line": 1 }),
                );
            };
            let events = match parse_batch(&body) {
                Ok(e) => e,
                Err(bad) => {
                    shared.metrics.events("bad_request", 1);
                    tracing::warn!("events: batch refused, {bad}");
                    return Response::json(
                        400,
                        json!({ "error": bad.to_string(), "line": bad.line }),
                    );
                }
            };
            let s = shared.clone();
            match run_blocking(move || s.engine.apply_events(&events, now())).await {
                Ok(r) => {
                    shared.metrics.events("accepted", r.accepted as u64);
                    shared.metrics.events("unknown", r.unknown as u64);
                    shared.metrics.events("duplicate", r.duplicate as u64);
                    tracing::info!(
                        "events: {} accepted, {} unknown, {} duplicate",
                        r.accepted,
                        r.unknown,
                        r.duplicate
                    );
                    Response::json(
                        202,
                        json!({ "accepted": r.accepted, "unknown": r.unknown, "duplicate": r.duplicate }),
                    )
                }
                Err(e @ StoreError::Task(_)) => {
                    Response::json(500, json!({ "error": e.to_string() }))
                }
                Err(e) => {
                    tracing::error!("events: {e}");
                    Response::json(503, json!({ "error": format!("store: {e}") }))
                }
            }
        })
    }
}
