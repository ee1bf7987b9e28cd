//! Cluster metadata as a log (DESIGN.md "Cluster"; KIP-500/KIP-631).
//!
//! - [`records`]: the metadata records, the only way metadata changes.
//! - [`image`]: the [`MetadataImage`] built by applying records in order.
//! - [`controller`]: topic and config operations: validate a change, return records.
//! - [`cluster`]: brokers and partition leadership: registration, heartbeats, fencing,
//!   elections, ISR changes.
//! - [`configs`]: topic configs, their types and defaults.
//! - [`quorum`]: the metadata log replicated by Raft, applied to the image.

pub mod acl;
pub mod cluster;
pub mod configs;
pub mod controller;
pub mod image;
pub mod quorum;
pub mod quota;
pub mod records;
#[cfg(test)]
pub(crate) mod testing;

pub use image::{BrokerImage, MetadataImage, PartitionImage, TopicImage};
pub use records::{
    BrokerEndpoint, ConfigResource, MetadataRecord, ScramCredential, ScramMechanism,
};
