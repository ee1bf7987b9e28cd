//! The metadata quorum: the metadata log replicated by Raft among the controller voters
//! (DESIGN.md "Cluster": "Metadata quorum: Raft from a library").
//!
//! Moldau uses the `openraft` crate rather than re-implementing KRaft's own RPCs
//! (Vote, BeginQuorumEpoch, Fetch on `__cluster_metadata`): Raft is not what Moldau
//! exists for, and a well-tested library beats a new implementation of a consensus
//! protocol. The metadata log is still Kafka-shaped: it is the partition log
//! `__cluster_metadata-0` in Kafka's segment format, one Raft entry per record batch,
//! the batch's base offset being the Raft log index and its partition leader epoch the
//! Raft term; the vote lives in `quorum-state` and snapshots of the image in
//! `<offset>-<term>.checkpoint`, as KRaft names them.
//!
//! - [`log_store`]: openraft's log storage over [`moldau_storage::Log`].
//! - [`state_machine`]: applies committed entries to the [`MetadataImage`], snapshots.
//!
//! The network (who sends Raft messages where) is the server's business: it implements
//! openraft's `RaftNetworkFactory` over its controller listener.

#![allow(clippy::result_large_err)] // openraft's error types are large; they are its API.

pub mod log_store;
pub mod state_machine;

use crate::image::MetadataImage;
use crate::records::MetadataRecord;
use serde::{Deserialize, Serialize};
use std::io::Cursor;
use std::sync::Arc;

pub use log_store::MetadataLogStore;
pub use state_machine::{MetadataFeed, MetadataStateMachine, MetadataView};

/// One controller operation: the records it writes, committed and applied together.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataBatch {
    /// Records, applied in order.
    pub records: Vec<MetadataRecord>,
}

impl std::fmt::Display for MetadataBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} metadata record(s)", self.records.len())
    }
}

openraft::declare_raft_types!(
    /// openraft's type configuration for the metadata quorum: entries carry
    /// [`MetadataBatch`]es, nodes are Kafka node ids, a node's address is its
    /// controller listener (`host:port`).
    pub TypeConfig:
        D = MetadataBatch,
        R = (),
);

/// A node id (`node.id`, non-negative).
pub type NodeId = u64;
/// openraft's node record: the address of the controller listener.
pub type Node = openraft::BasicNode;
/// A Raft log entry.
pub type Entry = openraft::Entry<TypeConfig>;
/// A Raft log id (term, leader, index).
pub type LogId = openraft::LogId<NodeId>;
/// The Raft handle.
pub type Raft = openraft::Raft<TypeConfig>;
/// openraft's storage error.
pub type StorageError = openraft::StorageError<NodeId>;

/// Converts a Kafka node id to openraft's.
pub fn node_id(id: i32) -> NodeId {
    u64::try_from(id).unwrap_or(0)
}

/// The image published after each applied batch of entries.
pub type ImageRef = Arc<MetadataImage>;

/// Timing of the quorum, from Kafka's `controller.quorum.*` settings.
#[derive(Debug, Clone, Copy)]
pub struct QuorumTiming {
    /// `controller.quorum.election.timeout.ms`: a follower that hears nothing from the
    /// leader for a random time in `[t, 2t)` starts an election (ms).
    pub election_timeout_ms: u64,
    /// Entries kept in the log below the newest snapshot, so a follower slightly behind
    /// catches up from the log rather than a whole snapshot.
    pub logs_to_keep: u64,
}

/// A running member of the metadata quorum.
pub struct Quorum {
    /// The openraft handle.
    pub raft: Raft,
    /// The applied metadata.
    pub view: MetadataView,
    /// The log (also read to serve brokers that follow the log without voting).
    pub store: MetadataLogStore,
    /// Records of a metadata log written before the quorum existed, to be written by
    /// the first active controller ([`MetadataLogStore::open`]).
    pub legacy: parking_lot::Mutex<Option<Vec<MetadataRecord>>>,
}

/// Why the quorum could not start.
#[derive(Debug, thiserror::Error)]
pub enum QuorumError {
    /// The metadata log or its state could not be read or written.
    #[error("metadata log: {0}")]
    Io(#[from] std::io::Error),
    /// openraft refused its configuration or failed.
    #[error("metadata quorum: {0}")]
    Raft(String),
}

impl Quorum {
    /// Opens the metadata log in `log_dir` and starts this node's Raft member.
    /// `voters` maps every voter's node id to its controller listener address (empty
    /// for the implicit single node, which has no network). A pristine voter (no log,
    /// no vote) initialises the quorum with exactly `voters`; every voter started with
    /// the same `controller.quorum.voters` does the same, which openraft allows, so
    /// nodes form one cluster with no separate formatting step.
    ///
    /// `member_before`: this node's data says it already belonged to a cluster (its
    /// `meta.properties` holds a cluster id). A voter in that state with no Raft log and
    /// no vote lost its Raft state; voting again could elect a leader that lacks
    /// committed metadata, so start-up is refused.
    pub async fn start<N>(
        node: NodeId,
        voters: std::collections::BTreeMap<NodeId, Node>,
        log_dir: &std::path::Path,
        timing: QuorumTiming,
        member_before: bool,
        network: N,
    ) -> Result<Self, QuorumError>
    where
        N: openraft::RaftNetworkFactory<TypeConfig>,
    {
        let (store, legacy) = MetadataLogStore::open(log_dir)?;
        let dir = log_dir.join(log_store::METADATA_LOG_DIR);
        let (state_machine, view) = MetadataStateMachine::open(&dir)?;
        let election = timing.election_timeout_ms.max(10);
        let config = openraft::Config {
            cluster_name: "moldau-metadata".into(),
            election_timeout_min: election,
            election_timeout_max: election * 2,
            heartbeat_interval: (election / 5).max(5),
            install_snapshot_timeout: election.max(5_000) * 4,
            // Snapshots are triggered by the runtime from Kafka's byte and interval
            // settings (`metadata.log.max.record.bytes.between.snapshots`).
            snapshot_policy: openraft::SnapshotPolicy::Never,
            max_in_snapshot_log_to_keep: timing.logs_to_keep,
            ..Default::default()
        }
        .validate()
        .map_err(|e| QuorumError::Raft(e.to_string()))?;
        let raft = Raft::new(
            node,
            Arc::new(config),
            network,
            store.clone(),
            state_machine,
        )
        .await
        .map_err(|e| QuorumError::Raft(e.to_string()))?;
        if voters.contains_key(&node) {
            let pristine = store.log_end_offset() == 0
                && raft
                    .with_raft_state(|s| s.vote_ref().leader_id().term == 0)
                    .await
                    .unwrap_or(false);
            if pristine && member_before && legacy.is_none() {
                let _ = raft.shutdown().await;
                return Err(QuorumError::Raft(format!(
                    "node {node} was a voter of this cluster but its metadata log ({}) is empty: its Raft state is lost, and a voter that forgot its votes and log may let a leader without committed metadata be elected. Restore the directory, or remove this node's data entirely and replace it with a new node id",
                    dir.display()
                )));
            }
            if pristine {
                match raft.initialize(voters).await {
                    Ok(()) => tracing::info!("initialised the metadata quorum"),
                    Err(e) => tracing::info!(error = %e, "metadata quorum already initialised"),
                }
            }
        }
        Ok(Self {
            raft,
            view,
            store,
            legacy: parking_lot::Mutex::new(legacy),
        })
    }
}

#[cfg(test)]
mod tests;
