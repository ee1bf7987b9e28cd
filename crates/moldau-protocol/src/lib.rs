//! Kafka wire-protocol glue for Moldau. Performs no I/O.
//!
//! - [`batch`]: the v2 record-batch header view (validate, CRC-32C, rewrite in place).
//! - [`frame`]: 4-byte size-prefixed framing with a size cap.
//! - [`apis`]: the API/version table Moldau advertises in ApiVersions.
//! - [`error`]: Kafka error codes.
//! - [`rope`]: an encode target that references record bytes instead of copying them.
//!
//! Message structs come from the `kafka-protocol` crate (generated from Kafka's JSON
//! schemas) and are re-exported as [`messages`].

pub mod apis;
pub mod batch;
pub mod compression;
pub mod error;
pub mod frame;
pub mod rope;
pub mod scram;

pub use kafka_protocol;
pub use kafka_protocol::messages;
