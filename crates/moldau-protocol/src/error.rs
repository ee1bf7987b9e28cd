//! Kafka error codes (protocol guide, "Error Codes"), re-exported from `kafka-protocol`
//! with the handful Moldau's handlers use by name.

pub use kafka_protocol::error::ResponseError;

/// `NONE` (0): success.
pub const NONE: i16 = 0;

/// The wire code of a [`ResponseError`].
pub fn code(e: ResponseError) -> i16 {
    e.code()
}
