//! Newtypes shared by every Moldau layer.
//!
//! Offsets stay plain `i64` in the storage and protocol layers because they are
//! arithmetic everywhere (`base offset + last offset delta`); identifiers that must never
//! be mixed up with each other (broker ids, leader epochs, partitions) get types here.

use std::fmt;
use std::sync::Arc;

/// A broker's `node.id` (Kafka `BrokerId`, int32 on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BrokerId(pub i32);

impl fmt::Display for BrokerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The epoch of a partition's leader (int32). Bumped on every leadership change; stamped
/// into each record batch's `partitionLeaderEpoch` field by the leader (KIP-101).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct LeaderEpoch(pub i32);

/// A topic name and partition index, the address of one log.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    /// Topic name (1..=249 characters of `[a-zA-Z0-9._-]`).
    pub topic: Arc<str>,
    /// Partition index, `0..num_partitions`.
    pub partition: i32,
}

impl TopicPartition {
    /// Builds a topic-partition from any string-like topic name.
    pub fn new(topic: impl Into<Arc<str>>, partition: i32) -> Self {
        Self {
            topic: topic.into(),
            partition,
        }
    }

    /// The directory name Kafka uses for this partition's log: `<topic>-<partition>`.
    pub fn dir_name(&self) -> String {
        format!("{}-{}", self.topic, self.partition)
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// Why a topic name is not legal. Kafka's rule (`Topic.validate`): 1 to 249 characters,
/// each of `[a-zA-Z0-9._-]`, and neither `.` nor `..`.
pub fn validate_topic_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("topic name is empty");
    }
    if name == "." || name == ".." {
        return Err("topic name cannot be '.' or '..'");
    }
    if name.len() > 249 {
        return Err("topic name is longer than 249 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return Err("topic name contains a character outside [a-zA-Z0-9._-]");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_kafka_rules() {
        assert!(validate_topic_name("orders.v1_x-2").is_ok());
        assert!(validate_topic_name("").is_err());
        assert!(validate_topic_name("..").is_err());
        assert!(validate_topic_name("a b").is_err());
        assert!(validate_topic_name(&"x".repeat(250)).is_err());
        assert_eq!(TopicPartition::new("t", 3).dir_name(), "t-3");
    }
}
