//! Moldau's group coordinator: Kafka's classic consumer-group protocol and committed
//! offsets, as state machines that perform no I/O (STYLE.md, "State machines return
//! actions").
//!
//! # Layout
//! - [`records`]: the keys and values of `__consumer_offsets`, in Kafka's formats.
//! - [`group`]: one group's state ([`GroupState`]).
//! - [`api`]: the requests it takes and the replies and effects it returns.
//! - [`shard`]: [`GroupShard`], every group of one `__consumer_offsets` partition, and
//!   the membership protocol; `offsets.rs` adds its committed-offset operations.
//! - [`txn`]: [`TxnShard`], the transaction coordinator for one `__transaction_state`
//!   partition (KIP-98).
//!
//! The server owns one [`GroupShard`] per `__consumer_offsets` partition it leads,
//! replays the partition into it at start ([`GroupShard::replay`]), feeds it requests,
//! appends the records it returns ([`Effect::Write`]) and sends the replies once those
//! are durable, and calls [`GroupShard::tick`] at [`GroupShard::next_deadline`].

mod admin;
pub mod api;
pub mod group;
mod offsets;
pub mod records;
mod replay;
pub mod shard;
pub mod txn;
mod wire;
pub use wire::WireError;
mod txn_offsets;

pub use api::{
    CommitPartition, DescribedMember, Effect, FetchedOffset, GroupDescription, GroupListing,
    Heartbeat, JoinGroup, JoinResult, JoinedMember, LeaveResult, OffsetCommit, OffsetsRecord,
    Reply, SyncGroup, SyncResult, TxnOffsetCommit, Undo,
};
pub use group::GroupState;
pub use shard::GroupShard;
pub use txn::{TxnConfig, TxnShard};

use thiserror::Error;

/// Name of the internal topic that holds group metadata and committed offsets.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// Errors of the coordinator layer.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum CoordinatorError {
    /// A `__consumer_offsets` record could not be decoded.
    #[error("{0}")]
    Record(#[from] records::RecordError),
}

/// Group coordinator settings, under Kafka's broker property names.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupConfig {
    /// `group.min.session.timeout.ms` (6000): shortest session a member may ask for.
    pub min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms` (1800000): longest session a member may ask for.
    pub max_session_timeout_ms: i32,
    /// `group.initial.rebalance.delay.ms` (3000): how long the first rebalance of an
    /// empty group waits for more members (KIP-134).
    pub initial_rebalance_delay_ms: i32,
    /// `group.max.size` (`i32::MAX`): members per group.
    pub max_size: usize,
    /// `offsets.retention.minutes` (10080, 7 days) in ms: how long offsets outlive an
    /// empty group (KIP-211).
    pub offsets_retention_ms: i64,
    /// `offsets.retention.check.interval.ms` (600000): how often expiry runs.
    pub offsets_retention_check_interval_ms: i64,
    /// `offset.metadata.max.bytes` (4096): longest commit metadata string, bytes.
    pub offset_metadata_max_bytes: usize,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            min_session_timeout_ms: 6_000,
            max_session_timeout_ms: 1_800_000,
            initial_rebalance_delay_ms: 3_000,
            max_size: i32::MAX as usize,
            offsets_retention_ms: 7 * 24 * 60 * 60 * 1000,
            offsets_retention_check_interval_ms: 600_000,
            offset_metadata_max_bytes: 4096,
        }
    }
}

/// The `__consumer_offsets` partition that coordinates `key` (a group id, or a
/// transactional id for `__transaction_state`): Java's `String.hashCode` of the key,
/// made non-negative with `& 0x7fffffff` (Kafka `Utils.abs`), modulo the partition count.
/// Matching Kafka keeps a group on the same partition when data moves between brokers.
pub fn partition_for(key: &str, partitions: i32) -> i32 {
    let hash = key
        .encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)));
    (hash & 0x7fff_ffff) % partitions.max(1)
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod partition_tests {
    use super::partition_for;

    #[test]
    fn placement_matches_javas_string_hash() {
        // "a".hashCode() == 97; "hello".hashCode() == 99162322;
        // "polygenelubricants".hashCode() == Integer.MIN_VALUE, which abs() maps to 0.
        assert_eq!(partition_for("a", 50), 97 % 50);
        assert_eq!(partition_for("hello", 50), 99_162_322 % 50);
        assert_eq!(partition_for("polygenelubricants", 50), 0);
        assert_eq!(partition_for("anything", 1), 0);
    }
}
