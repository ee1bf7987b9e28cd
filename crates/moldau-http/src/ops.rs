//! Operations endpoints: `/metrics`, `/healthz`, `/readyz`, and the JSON 404.

use crate::error::ApiError;
use crate::{AppState, Principals, Session};
use axum::extract::State;
use axum::http::{header, StatusCode, Uri};
use axum::response::IntoResponse;
use axum::Json;
use serde_json::json;
use std::time::Duration;

/// `GET /metrics`: the broker's metrics in Prometheus text format 0.0.4.
pub async fn metrics(state: Session) -> impl IntoResponse {
    let source = state.state().inner.metrics.clone();
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

/// `GET /readyz`: 200 `{"status": "ready"}` when the broker answers over the Kafka
/// protocol within 2 s (a Metadata request, or where its listener requires SASL, the
/// ApiVersions exchange that precedes a login), else 503 `{"status": "unavailable",
/// "reason"}`. Needs no credentials, like `/healthz`.
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let timeout = Duration::from_secs(2);
    let check = tokio::time::timeout(timeout, async {
        match state.access() {
            Principals::Shared(clients) => {
                clients.client().metadata(Some(&[]), false).await.map(drop)
            }
            Principals::Basic(_) => {
                let probe = &state.inner.probe;
                let addr = probe.bootstrap_servers.first().map_or("", String::as_str);
                moldau_client::connection::Connection::connect(
                    addr,
                    "moldau-http",
                    timeout,
                    &probe.security,
                )
                .await
                .map(drop)
            }
        }
    })
    .await;
    match check {
        Ok(Ok(())) => (StatusCode::OK, Json(json!({"status": "ready"}))),
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

/// Turns an error response that is not JSON (axum's own rejections: a path segment that
/// is not UTF-8, a query that does not parse, a body of the wrong content type) into the
/// API's JSON error with the same status, so every error a client sees has one shape.
pub async fn json_errors(response: axum::response::Response) -> axum::response::Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let body = axum::body::to_bytes(response.into_body(), 64 * 1024)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&body).trim().to_owned();
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_owned()
    } else {
        text
    };
    ApiError::invalid(message)
        .with_status(status)
        .into_response()
}
