//! Operations endpoints: `/metrics`, `/healthz`, `/readyz`, and the JSON 404.

use crate::error::ApiError;
use crate::AppState;
use axum::extract::State;
use axum::http::{header, StatusCode, Uri};
use axum::response::IntoResponse;
use axum::Json;
use serde_json::json;
use std::time::Duration;

/// `GET /metrics`: the broker's metrics in Prometheus text format 0.0.4.
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let source = state.inner.metrics.clone();
    let text = tokio::task::spawn_blocking(move || source())
        .await
        .unwrap_or_default();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
}

/// `GET /healthz`: 200 `{"status": "ok"}` while the process serves HTTP (liveness).
pub async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

/// `GET /readyz`: 200 `{"status": "ready"}` when the broker answers a Metadata request
/// over the Kafka protocol within 2 s, else 503 `{"status": "unavailable", "reason"}`.
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let check = tokio::time::timeout(
        Duration::from_secs(2),
        state.client().metadata(Some(&[]), false),
    )
    .await;
    match check {
        Ok(Ok(_)) => (StatusCode::OK, Json(json!({"status": "ready"}))),
        Ok(Err(e)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unavailable", "reason": e.to_string()})),
        ),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unavailable", "reason": "no answer within 2 s"})),
        ),
    }
}

/// Any other path: 404 JSON.
pub async fn not_found(uri: Uri) -> ApiError {
    ApiError::invalid(format!("no such endpoint: {}", uri.path()))
        .with_status(StatusCode::NOT_FOUND)
}

/// A known path with the wrong method: 405 JSON.
pub async fn method_not_allowed(method: axum::http::Method, uri: Uri) -> ApiError {
    ApiError::invalid(format!("{method} is not allowed on {}", uri.path()))
        .with_status(StatusCode::METHOD_NOT_ALLOWED)
}
