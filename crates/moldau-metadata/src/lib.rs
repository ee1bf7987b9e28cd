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

/// Runs `f`, file work that may wait on the disk (an fsync, a cold read, deleting
/// segments), without stalling the async worker it is called on: on a multi-threaded
/// Tokio runtime under `block_in_place`, so the worker's other tasks move to another
/// thread meanwhile; elsewhere (a current-thread runtime, where `block_in_place` would
/// panic, or no runtime) it just runs. Used by the metadata log and by the broker's
/// fetch, DeleteRecords and replica-fetcher paths.
pub fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}
pub use records::{
    BrokerEndpoint, ConfigResource, MetadataRecord, ScramCredential, ScramMechanism,
};
