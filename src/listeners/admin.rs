//! The admin listener: `GET /metrics` (Prometheus text) and `GET /health`.

use super::http::error;
use crate::metrics::CONTENT_TYPE;
use crate::shared::Shared;
use crate::store::run_blocking;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::sync::Arc;

/// The admin router: no request body is read.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(|| async { "ok\n" }))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "not found; GET /metrics or /health") })
        .with_state(shared)
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    let s = shared.clone();
    let stats = run_blocking(move || Ok(s.engine.store().stats()))
        .await
        .unwrap_or_default();
    let body = shared.metrics.render(shared.active_sessions(), &stats);
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response()
}
