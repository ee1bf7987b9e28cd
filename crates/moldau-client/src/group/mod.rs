//! Consumer group membership over Kafka's classic group protocol (protocol guide, "The
//! Consumer Group Protocol"; KIP-62 for the background heartbeat, KIP-394 for
//! MEMBER_ID_REQUIRED): FindCoordinator → JoinGroup → (leader assigns) SyncGroup →
//! Heartbeat … → LeaveGroup; the `range` assignor; the `consumer` embedded protocol's
//! subscription and assignment encodings; the group's OffsetCommit and OffsetFetch. All
//! group requests travel on a connection of the consumer's own (`CoordinatorLink`).
//!
//! The membership is eager, as Kafka's RangeAssignor is: a rebalance revokes every
//! partition and the new generation's assignment replaces the old one.
//!
//! Embedded protocol (Kafka `ConsumerProtocol`): JoinGroup metadata is an `int16`
//! version followed by a `ConsumerProtocolSubscription` at that version; a SyncGroup
//! assignment is an `int16` version followed by a `ConsumerProtocolAssignment`. Versions
//! only ever append fields, so one newer than this client knows is read by the fields it
//! knows, as Kafka does.

mod assignor;
mod membership;
mod protocol;

pub use assignor::{range_assign, MemberSubscription};
pub(crate) use membership::{
    commit_offsets, fetch_committed, CoordinatorLink, Membership, MembershipTimeouts,
};
pub use protocol::*;
