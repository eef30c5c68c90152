//! The events listener: `POST /v1/events` from the mailbox server — the
//! bearer token (on the request head, before the body is read), the whole
//! batch validated, then applied atomically.

use super::http::{bearer_matches, error, json, unauthorized};
use crate::pipeline::engagement::parse_batch;
use crate::shared::Shared;
use crate::store::{run_blocking, StoreError};
use crate::vocab::now;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use serde_json::json;
use std::sync::Arc;

/// The events router; bodies are bounded by `max_body` bytes.
pub fn router(shared: Arc<Shared>, max_body: usize) -> Router {
    Router::new()
        .route("/v1/events", post(accept))
        // Runs on the head of a request to /v1/events: a client without
        // the token cannot make the listener buffer a body.
        .route_layer(middleware::from_fn_with_state(
            shared.clone(),
            require_token,
        ))
        .layer(DefaultBodyLimit::max(max_body))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "not found; POST /v1/events") })
        .with_state(shared)
}

async fn require_token(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    if bearer_matches(req.headers(), shared.events_token().as_deref()) {
        return next.run(req).await;
    }
    shared.metrics.events("unauthorized", 1);
    tracing::warn!("events: request without the right bearer token refused");
    unauthorized("missing or wrong bearer token")
}

/// Validates the whole batch, then applies it.
async fn accept(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let Ok(body) = String::from_utf8(body.to_vec()) else {
        return json(
            StatusCode::BAD_REQUEST,
            json!({ "error": "line 1: body is not UTF-8", "line": 1 }),
        );
    };
    let events = match parse_batch(&body) {
        Ok(e) => e,
        Err(bad) => {
            shared.metrics.events("bad_request", 1);
            tracing::warn!("events: batch refused, {bad}");
            return json(
                StatusCode::BAD_REQUEST,
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
            json(
                StatusCode::ACCEPTED,
                json!({ "accepted": r.accepted, "unknown": r.unknown, "duplicate": r.duplicate }),
            )
        }
        Err(e @ StoreError::Task(_)) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        Err(e) => {
            tracing::error!("events: {e}");
            error(StatusCode::SERVICE_UNAVAILABLE, &format!("store: {e}"))
        }
    }
}
