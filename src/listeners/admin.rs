//! The admin listener: `GET /metrics` (Prometheus text) and `GET /health`.

use super::http::{Request, Response, ResponseFuture};
use crate::shared::Shared;
use crate::store::run_blocking;
use std::sync::Arc;

/// `GET /metrics` and `GET /health`.
pub fn handler(shared: Arc<Shared>) -> impl Fn(Request) -> ResponseFuture + Send + Sync {
    move |req| {
        let shared = shared.clone();
        Box::pin(async move {
            if req.method != "GET" {
                return Response::json(405, serde_json::json!({ "error": "use GET" }));
            }
            match req.path.as_str() {
                "/metrics" => {
                    let s = shared.clone();
                    let stats = run_blocking(move || Ok(s.engine.store().stats()))
                        .await
                        .unwrap_or_default();
                    let body = shared.metrics.render(shared.active_sessions(), &stats);
                    Response::text(200, "text/plain; version=0.0.4; charset=utf-8", body)
                }
                "/health" => Response::text(200, "text/plain", "ok\n".into()),
                _ => Response::json(
                    404,
                    serde_json::json!({ "error": "not found; GET /metrics or /health" }),
                ),
            }
        })
    }
}
