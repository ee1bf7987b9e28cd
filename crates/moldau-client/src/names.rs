//! Kafka's string types built from `&str`, for request fields.

use kafka_protocol::messages::{GroupId, TopicName, TransactionalId};
use kafka_protocol::protocol::StrBytes;

/// A protocol string.
pub(crate) fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_owned())
}

/// A topic name.
pub(crate) fn topic_name(s: &str) -> TopicName {
    TopicName(str_bytes(s))
}

/// A group id.
pub(crate) fn group_id(s: &str) -> GroupId {
    GroupId(str_bytes(s))
}

/// A transactional id.
pub(crate) fn transactional_id(s: &str) -> TransactionalId {
    TransactionalId(str_bytes(s))
}
