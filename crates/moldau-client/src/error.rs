//! The client's one error type.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::ApiKey;
use std::time::Duration;
use thiserror::Error;

/// Result alias for the client.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything a client call can fail with.
///
/// [`Error::Kafka`] carries a broker's error code; [`Error::is_retriable`] says whether
/// retrying (after a metadata refresh) can help, following the protocol guide's error
/// table.
#[derive(Debug, Error)]
pub enum Error {
    /// No TCP connection could be made.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// `host:port` tried.
        addr: String,
        /// The socket error.
        source: std::io::Error,
    },
    /// An established connection broke (reset, closed, or bytes that do not decode);
    /// requests in flight on it fail with this.
    #[error("connection to {addr} failed: {reason}")]
    Connection {
        /// `host:port` of the broker.
        addr: String,
        /// What happened.
        reason: String,
    },
    /// The broker does not serve `api` at any version this client speaks.
    #[error("the broker does not support {api:?} at a version this client speaks")]
    UnsupportedApi {
        /// The API that was needed.
        api: ApiKey,
    },
    /// A Kafka error code from the broker (protocol guide, "Error Codes").
    #[error("{}{}", kafka_error_name(*code), message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    Kafka {
        /// The error.
        code: ResponseError,
        /// The broker's error message, when it sent one.
        message: Option<String>,
    },
    /// SASL authentication failed (wrong password, unknown user, mechanism not offered).
    #[error("authentication failed: {0}")]
    Authentication(String),
    /// No answer within the request timeout.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// A bad argument or configuration value.
    #[error("{0}")]
    Invalid(String),
    /// The client, producer or consumer was closed.
    #[error("closed")]
    Closed,
}

impl Error {
    /// A [`Error::Kafka`] for a non-zero code; `None` for 0 (`NONE`).
    pub fn from_code(code: i16, message: Option<String>) -> Option<Error> {
        ResponseError::try_from_code(code).map(|code| Error::Kafka { code, message })
    }

    /// A [`Error::Kafka`] for `code` with a message.
    pub fn kafka(code: ResponseError, message: impl Into<String>) -> Error {
        Error::Kafka {
            code,
            message: Some(message.into()),
        }
    }

    /// `Err` for a non-zero error code, with the broker's error message when it sent one.
    pub fn check_message(
        code: i16,
        message: Option<&kafka_protocol::protocol::StrBytes>,
    ) -> Result<()> {
        match Error::from_code(code, message.map(|m| m.to_string())) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// `Err` for a non-zero error code.
    pub fn check(code: i16) -> Result<()> {
        match Error::from_code(code, None) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// The Kafka error, if this is one.
    pub fn kafka_code(&self) -> Option<ResponseError> {
        match self {
            Error::Kafka { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Whether a retry can succeed: retriable Kafka errors (NOT_LEADER_OR_FOLLOWER,
    /// UNKNOWN_TOPIC_OR_PARTITION, …), broken connections and timeouts.
    pub fn is_retriable(&self) -> bool {
        match self {
            Error::Kafka { code, .. } => code.is_retriable(),
            Error::Connect { .. } | Error::Connection { .. } | Error::Timeout(_) => true,
            _ => false,
        }
    }

    /// Whether the client's metadata is stale after this error (the leader moved, the
    /// topic or broker is not where the cache said).
    pub fn needs_metadata_refresh(&self) -> bool {
        match self {
            Error::Kafka { code, .. } => matches!(
                code,
                ResponseError::NotLeaderOrFollower
                    | ResponseError::UnknownTopicOrPartition
                    | ResponseError::LeaderNotAvailable
                    | ResponseError::FencedLeaderEpoch
                    | ResponseError::UnknownLeaderEpoch
                    | ResponseError::NotCoordinator
                    | ResponseError::CoordinatorNotAvailable
            ),
            Error::Connect { .. } | Error::Connection { .. } => true,
            _ => false,
        }
    }
}

/// Kafka's name for an error, as its Java `Errors` enum and the protocol guide spell it:
/// `UNKNOWN_TOPIC_OR_PARTITION`, `NOT_LEADER_OR_FOLLOWER`, …; `UNKNOWN(<code>)` for a
/// code this client does not know.
pub fn kafka_error_name(code: ResponseError) -> String {
    if let ResponseError::Unknown(c) = code {
        return format!("UNKNOWN({c})");
    }
    let camel = format!("{code}");
    let mut out = String::with_capacity(camel.len() + 8);
    for (i, ch) in camel.chars().enumerate() {
        if ch.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(ch.to_ascii_uppercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_kafka() {
        assert_eq!(
            kafka_error_name(ResponseError::UnknownTopicOrPartition),
            "UNKNOWN_TOPIC_OR_PARTITION"
        );
        assert_eq!(
            kafka_error_name(ResponseError::TopicAlreadyExists),
            "TOPIC_ALREADY_EXISTS"
        );
        assert_eq!(
            kafka_error_name(ResponseError::Unknown(999)),
            "UNKNOWN(999)"
        );
        let e = Error::from_code(3, Some("no such topic".into())).expect("an error");
        assert_eq!(e.to_string(), "UNKNOWN_TOPIC_OR_PARTITION: no such topic");
        assert!(e.is_retriable() && e.needs_metadata_refresh());
        assert!(Error::from_code(0, None).is_none());
    }
}
