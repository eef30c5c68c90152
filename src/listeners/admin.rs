//! The admin listener: the console (`/`, see [`super::console`]),
//! `GET /metrics` (Prometheus text) behind the console's access, and
//! `GET /health`, always open (for probes).

use super::console;
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

/// The admin router.
pub fn router(shared: Arc<Shared>) -> Router {
    let metrics = Router::new()
        .route("/metrics", get(metrics))
        .with_state(shared.clone());
    Router::new()
        .route("/health", get(|| async { "ok\n" }))
        .merge(console::router(shared, metrics))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "not found; the console is at /") })
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    let s = shared.clone();
    let stats = run_blocking(move || Ok(s.engine.store().stats()))
        .await
        .unwrap_or_default();
    let body = shared.metrics.render(shared.active_sessions(), &stats);
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response()
}
