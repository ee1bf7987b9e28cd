//! JSON errors: every failure is `{"error": {"code", "name", "message"}}` with Kafka's
//! error code and name and an HTTP status that fits.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use moldau_client::kafka_protocol::error::ResponseError;
use moldau_client::{kafka_error_name, Error};

/// An HTTP API error.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Kafka error code (protocol guide, "Error Codes"); 42 INVALID_REQUEST for input
    /// errors that are not Kafka's.
    pub code: i16,
    /// Kafka error name, e.g. `UNKNOWN_TOPIC_OR_PARTITION`.
    pub name: String,
    /// What went wrong, for a person.
    pub message: String,
}

impl ApiError {
    /// A 400 INVALID_REQUEST with `message`.
    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::kafka(ResponseError::InvalidRequest, message)
    }

    /// An error for Kafka error `code`, with the status [`status_for`] gives.
    pub fn kafka(code: ResponseError, message: impl Into<String>) -> ApiError {
        ApiError {
            status: status_for(code),
            code: code.code(),
            name: kafka_error_name(code),
            message: message.into(),
        }
    }

    /// Overrides the status.
    pub fn with_status(mut self, status: StatusCode) -> ApiError {
        self.status = status;
        self
    }
}

/// The HTTP status for a Kafka error: 404 for what does not exist, 409 for conflicts,
/// 413 for sizes, 416 for offsets outside the log, 400 for invalid input, 503 for
/// retriable cluster conditions, 500 otherwise.
pub fn status_for(code: ResponseError) -> StatusCode {
    use ResponseError::*;
    match code {
        UnknownTopicOrPartition | GroupIdNotFound | UnknownTopicId | TransactionalIdNotFound => {
            StatusCode::NOT_FOUND
        }
        TopicAlreadyExists | NonEmptyGroup => StatusCode::CONFLICT,
        MessageTooLarge | RecordListTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        OffsetOutOfRange => StatusCode::RANGE_NOT_SATISFIABLE,
        InvalidTopicException
        | InvalidPartitions
        | InvalidReplicationFactor
        | InvalidConfig
        | InvalidRequest
        | PolicyViolation
        | InvalidRecord
        | CorruptMessage
        | InvalidReplicaAssignment
        | InvalidTimestamp
        | InvalidGroupId => StatusCode::BAD_REQUEST,
        TopicAuthorizationFailed | GroupAuthorizationFailed | ClusterAuthorizationFailed => {
            StatusCode::FORBIDDEN
        }
        RequestTimedOut => StatusCode::GATEWAY_TIMEOUT,
        e if e.is_retriable() => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> ApiError {
        let message = e.to_string();
        match e {
            Error::Kafka { code, message: m } => {
                ApiError::kafka(code, m.unwrap_or_else(|| kafka_error_name(code)))
            }
            Error::Invalid(m) => ApiError::invalid(m),
            Error::Timeout(_) => ApiError::kafka(ResponseError::RequestTimedOut, message),
            Error::UnsupportedApi { .. } => {
                ApiError::kafka(ResponseError::UnsupportedVersion, message)
                    .with_status(StatusCode::NOT_IMPLEMENTED)
            }
            Error::Authentication(_) => {
                ApiError::kafka(ResponseError::SaslAuthenticationFailed, message)
                    .with_status(StatusCode::BAD_GATEWAY)
            }
            Error::Connect { .. } | Error::Connection { .. } | Error::Closed => {
                ApiError::kafka(ResponseError::NetworkException, message)
                    .with_status(StatusCode::SERVICE_UNAVAILABLE)
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "error": {"code": self.code, "name": self.name, "message": self.message}
        });
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            // RFC 7617: names the scheme, so a browser asks for a user and password.
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static(r#"Basic realm="Moldau", charset="UTF-8""#),
            );
        }
        if self.status == StatusCode::PAYLOAD_TOO_LARGE {
            // The rest of an oversized body is never read, so the connection cannot
            // carry another request; say so rather than let the client find out.
            response.headers_mut().insert(
                axum::http::header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
        }
        response
    }
}

/// Result of a handler.
pub type ApiResult<T> = Result<T, ApiError>;
