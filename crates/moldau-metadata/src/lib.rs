//! Cluster metadata as a log (DESIGN.md "Cluster metadata"; KIP-500/KIP-631).
//!
//! - [`records`]: the metadata records, the only way metadata changes.
//! - [`image`]: the [`MetadataImage`] built by applying records in order.
//! - [`controller`]: the state machine that validates a change and returns records.
//! - [`configs`]: topic configs, their types and defaults.
//! - [`log`]: the local metadata log that commits records and publishes images.

pub mod configs;
pub mod controller;
pub mod image;
pub mod log;
pub mod records;

pub use image::{BrokerImage, MetadataImage, PartitionImage, TopicImage};
pub use log::{MetadataError, MetadataLog};
pub use records::{ConfigResource, MetadataRecord};
