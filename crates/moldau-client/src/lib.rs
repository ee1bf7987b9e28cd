//! Moldau's async Kafka client (tokio), built on the same protocol crate as the broker.
//!
//! Layout:
//! - [`connection`]: one TCP connection; pipelined requests matched by correlation id,
//!   versions negotiated with ApiVersions.
//! - [`client`]: [`Client`], connections to a cluster plus a metadata cache that follows
//!   leaders and retries on NOT_LEADER_OR_FOLLOWER / UNKNOWN_TOPIC_OR_PARTITION; single
//!   partition fetch, list-offsets and produce.
//! - [`admin`]: [`Admin`], topics, configs, groups, committed offsets and lag.
//! - [`producer`]: [`Producer`], records batched per partition (`batch.size`, `linger.ms`,
//!   compression), one batch in flight per partition, retries, idempotence (KIP-98).
//! - [`partitioner`]: Kafka's murmur2 key partitioning ([`partition_for_key`]) and the
//!   sticky choice for keyless records (KIP-480).
//! - [`consumer`]: [`Consumer`], positions per assigned partition, concurrent fetches
//!   kept in flight across polls, commits; with [`group`], membership in a consumer
//!   group (join/sync, background heartbeat, leave) and Kafka's `range` assignor.
//! - [`record`]: [`ProducerRecord`], [`ConsumerRecord`] and batch decoding.
//! - [`versions`]: the API versions the client speaks.
//!
//! It speaks to any Kafka broker, not only Moldau.

pub mod admin;
pub mod admin_security;
pub mod client;
pub mod connection;
pub mod consumer;
pub mod error;
pub mod group;
mod names;
pub mod partitioner;
pub mod producer;
pub mod record;
pub mod security;
pub mod versions;

pub use admin::{
    Admin, ConfigEntry, ConfigResource, GroupDescription, GroupListing, MemberDescription,
    NewTopic, PartitionLag, PartitionOffsets, QuorumInfo, TransactionDescription,
    TransactionListing,
};
pub use client::{
    BrokerInfo, Client, ClientConfig, ClusterMetadata, FetchOptions, FetchedPartition, OffsetSpec,
    PartitionInfo, ProduceAck, TopicInfo,
};
pub use consumer::{AutoOffsetReset, Consumer, ConsumerConfig};
pub use error::{kafka_error_name, Error, Result};
pub use kafka_protocol;
pub use moldau_protocol::batch::Compression;
pub use partitioner::{murmur2, partition_for_key};
pub use producer::{
    parse_compression, Acks, DeliveryFuture, Producer, ProducerConfig, RecordMetadata,
};
pub use record::{ConsumerRecord, Header, IsolationLevel, ProducerRecord};
