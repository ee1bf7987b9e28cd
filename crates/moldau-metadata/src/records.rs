//! Metadata records: the only way cluster metadata changes.
//!
//! Modelled on KRaft's records (`TopicRecord`, `PartitionRecord`, `ConfigRecord`,
//! `RemoveTopicRecord`, `RegisterBrokerRecord`, KIP-631). Each record is stored as the
//! value of one Kafka record in the `__cluster_metadata-0` log, encoded as JSON with a
//! `type` tag. JSON instead of KRaft's binary schemas is a deliberate Moldau choice: the
//! log is only read by Moldau, and a human can inspect it with any Kafka tool; the
//! records' meaning follows KIP-631.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Kafka's config resource types (DescribeConfigs `resource_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ConfigResource {
    /// Resource type 2.
    Topic,
    /// Resource type 4.
    Broker,
}

/// One metadata change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum MetadataRecord {
    /// A broker joined (or re-registered) the cluster.
    RegisterBroker {
        /// `node.id`.
        broker_id: i32,
        /// Advertised host.
        host: String,
        /// Advertised Kafka port.
        port: i32,
        /// `broker.rack`, if set.
        rack: Option<String>,
    },
    /// A topic was created. Partitions follow as [`MetadataRecord::Partition`] records.
    Topic {
        /// Topic name.
        name: String,
        /// Topic id (KIP-516), never reused.
        topic_id: Uuid,
    },
    /// A partition's placement and leadership (creation or change).
    Partition {
        /// Owning topic.
        topic_id: Uuid,
        /// Partition index.
        partition: i32,
        /// Replica broker ids, preferred leader first.
        replicas: Vec<i32>,
        /// In-sync replicas.
        isr: Vec<i32>,
        /// Leader broker id, -1 if none.
        leader: i32,
        /// Leader epoch, bumped on every leader change.
        leader_epoch: i32,
        /// Bumped on every change of this partition's record.
        partition_epoch: i32,
    },
    /// A config override was set (`value: Some`) or removed (`None`).
    Config {
        /// Resource type.
        resource: ConfigResource,
        /// Topic name, or broker id as a string ("" for the cluster default).
        resource_name: String,
        /// Kafka property name, e.g. `retention.ms`.
        name: String,
        /// New value; `None` deletes the override.
        value: Option<String>,
    },
    /// A topic and all its partitions were deleted.
    RemoveTopic {
        /// The deleted topic.
        topic_id: Uuid,
    },
    /// A block of producer ids was handed to a broker (KRaft `ProducerIdsRecord`,
    /// KIP-730): the block is `[next_producer_id - block size, next_producer_id)`, and
    /// no id below `next_producer_id` is ever handed out again, across restarts.
    ProducerIds {
        /// The broker that owns the block.
        broker_id: i32,
        /// First id of the next block (exclusive end of this one).
        next_producer_id: i64,
    },
}

impl MetadataRecord {
    /// JSON bytes stored as the record value.
    pub fn encode(&self) -> Vec<u8> {
        // Serialising a plain enum of strings and numbers cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses a stored record value.
    pub fn decode(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}
