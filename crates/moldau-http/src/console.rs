//! The web console: three static files compiled into the binary (no CDN), a plain
//! JavaScript page over the REST API.

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

const INDEX: &str = include_str!("console/index.html");
const APP_JS: &str = include_str!("console/app.js");
const STYLE_CSS: &str = include_str!("console/style.css");

/// `GET /`: the console page. Where the API requires credentials, so does the page, so
/// that a browser asks for them once and sends them with the page's API calls.
pub async fn index(_session: crate::Session) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        INDEX,
    )
        .into_response()
}

/// `GET /console/{file}`: `app.js` or `style.css`.
pub async fn asset(Path(file): Path<String>) -> Response {
    let (kind, body) = match file.as_str() {
        "app.js" => ("text/javascript; charset=utf-8", APP_JS),
        "style.css" => ("text/css; charset=utf-8", STYLE_CSS),
        _ => {
            return crate::error::ApiError::invalid(format!("no console file {file:?}"))
                .with_status(StatusCode::NOT_FOUND)
                .into_response()
        }
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}
