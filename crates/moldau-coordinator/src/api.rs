//! The requests the group coordinator takes and the replies and effects it returns,
//! independent of wire versions (handlers map them to and from `kafka-protocol`
//! structs).

use crate::group::GroupState;
use bytes::Bytes;
use moldau_protocol::error::ResponseError;

/// A record for `__consumer_offsets`: encoded key and value (`None` = tombstone).
pub type OffsetsRecord = (Bytes, Option<Bytes>);

/// What the runtime must do after a call.
#[derive(Debug)]
pub enum Effect<R> {
    /// Send this reply now.
    Reply(R, Reply),
    /// Append `records` as one transactional batch of `producer_id`/`producer_epoch`
    /// (a TxnOffsetCommit); if the append succeeds, stage `offsets` as pending, wait
    /// until durable, then send `replies`. On failure send each reply after
    /// [`Reply::fail`] and stage nothing (a client whose TxnOffsetCommit failed aborts).
    TxnWrite {
        /// The committing group.
        group_id: String,
        /// Producer id of the transaction.
        producer_id: i64,
        /// Its epoch.
        producer_epoch: i16,
        /// Offset-commit records in append order.
        records: Vec<OffsetsRecord>,
        /// The offsets to stage with `GroupShard::stage_txn_offsets` once the append
        /// succeeded.
        offsets: Vec<((String, i32), crate::records::OffsetValue)>,
        /// Replies that depend on the write.
        replies: Vec<(R, Reply)>,
    },
    /// Append `records` to this shard's partition, wait until they are durable, then send
    /// `replies`. If the append or its fsync fails, send each reply after
    /// [`Reply::fail`] and hand `undo` (if any) to `GroupShard::undo`.
    Write {
        /// Records in append order.
        records: Vec<OffsetsRecord>,
        /// Replies that depend on the write.
        replies: Vec<(R, Reply)>,
        /// How to take the in-memory change back if the write fails.
        undo: Option<Undo>,
    },
}

/// The in-memory change behind a failed write, to be taken back (Kafka reverts its
/// timeline snapshot in the same case).
#[derive(Debug, Clone, PartialEq)]
pub enum Undo {
    /// Restore a group's offsets as they were (`None` = not committed).
    Offsets {
        /// Group id.
        group_id: String,
        /// Previous value per `(topic, partition)`.
        previous: Vec<((String, i32), Option<crate::records::OffsetValue>)>,
    },
    /// The leader's assignment for `generation` was not stored: rebalance the group if
    /// it is still in that generation (Kafka `resetAndPropagateAssignmentWithError`).
    Rebalance {
        /// Group id.
        group_id: String,
        /// The generation whose assignment was lost.
        generation: i32,
    },
}

/// A reply to one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// JoinGroup.
    Join(JoinResult),
    /// SyncGroup.
    Sync(SyncResult),
    /// Heartbeat: `None` = success.
    Heartbeat(Option<ResponseError>),
    /// LeaveGroup.
    Leave(LeaveResult),
    /// OffsetCommit: per partition `(topic, partition, error)`.
    Commit(Vec<(String, i32, Option<ResponseError>)>),
    /// OffsetDelete: group-level error, then per partition.
    DeleteOffsets(
        Option<ResponseError>,
        Vec<(String, i32, Option<ResponseError>)>,
    ),
    /// DeleteGroups, for one group.
    DeleteGroup(Option<ResponseError>),
}

impl Reply {
    /// Replaces every error in the reply with `error`: used when the write the reply
    /// depended on failed.
    pub fn fail(&mut self, error: ResponseError) {
        match self {
            Reply::Join(j) => j.error = Some(error),
            Reply::Sync(s) => s.error = Some(error),
            Reply::Heartbeat(e) | Reply::DeleteGroup(e) => *e = Some(error),
            Reply::Leave(l) => l.error = Some(error),
            Reply::Commit(parts) => parts.iter_mut().for_each(|p| p.2 = Some(error)),
            Reply::DeleteOffsets(e, parts) => {
                *e = Some(error);
                parts.iter_mut().for_each(|p| p.2 = Some(error));
            }
        }
    }
}

/// A JoinGroup request (all versions; the handler fills defaults for old ones).
#[derive(Debug, Clone, Default)]
pub struct JoinGroup {
    /// Group id.
    pub group_id: String,
    /// Member id, empty on the first join.
    pub member_id: String,
    /// `group.instance.id` (v5+).
    pub group_instance_id: Option<String>,
    /// e.g. `consumer`.
    pub protocol_type: String,
    /// `(name, metadata)` in order of preference.
    pub protocols: Vec<(String, Bytes)>,
    /// ms.
    pub session_timeout_ms: i32,
    /// ms (v0 has none: use the session timeout).
    pub rebalance_timeout_ms: i32,
    /// Request header client id.
    pub client_id: String,
    /// Client address, `/ip`.
    pub client_host: String,
    /// v4+: a new dynamic member first gets MEMBER_ID_REQUIRED (KIP-394).
    pub require_known_member_id: bool,
    /// v9+: the client understands `skip_assignment` (KIP-814).
    pub supports_skip_assignment: bool,
}

/// JoinGroup's outcome.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JoinResult {
    /// `None` = success.
    pub error: Option<ResponseError>,
    /// Generation id, -1 on error.
    pub generation_id: i32,
    /// Group protocol type (v7+).
    pub protocol_type: Option<String>,
    /// Chosen protocol.
    pub protocol_name: Option<String>,
    /// Leader member id.
    pub leader: String,
    /// The member's id (also set with MEMBER_ID_REQUIRED).
    pub member_id: String,
    /// v9+: the leader already has an assignment and must not compute one (KIP-814).
    pub skip_assignment: bool,
    /// For the leader: every member with its metadata for the chosen protocol.
    pub members: Vec<JoinedMember>,
}

impl JoinResult {
    /// An error answer: generation -1 and the member id the client should keep.
    pub fn failed(error: ResponseError, member_id: impl Into<String>) -> Self {
        JoinResult {
            error: Some(error),
            generation_id: -1,
            member_id: member_id.into(),
            ..JoinResult::default()
        }
    }
}

/// A member as the leader sees it in JoinGroup's response.
#[derive(Debug, Clone, PartialEq)]
pub struct JoinedMember {
    /// Member id.
    pub member_id: String,
    /// Static instance id.
    pub group_instance_id: Option<String>,
    /// Metadata for the chosen protocol.
    pub metadata: Bytes,
}

/// A SyncGroup request.
#[derive(Debug, Clone, Default)]
pub struct SyncGroup {
    /// Group id.
    pub group_id: String,
    /// Generation id.
    pub generation_id: i32,
    /// Member id.
    pub member_id: String,
    /// Static instance id (v3+).
    pub group_instance_id: Option<String>,
    /// v5+: must match the group's.
    pub protocol_type: Option<String>,
    /// v5+: must match the group's.
    pub protocol_name: Option<String>,
    /// The leader's assignment per member id (empty from followers).
    pub assignments: Vec<(String, Bytes)>,
}

/// SyncGroup's outcome.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SyncResult {
    /// `None` = success.
    pub error: Option<ResponseError>,
    /// Group protocol type (v5+).
    pub protocol_type: Option<String>,
    /// Chosen protocol (v5+).
    pub protocol_name: Option<String>,
    /// The member's assignment.
    pub assignment: Bytes,
}

impl SyncResult {
    /// An error answer with no assignment.
    pub fn failed(error: ResponseError) -> Self {
        SyncResult {
            error: Some(error),
            ..SyncResult::default()
        }
    }
}

/// A Heartbeat request.
#[derive(Debug, Clone, Default)]
pub struct Heartbeat {
    /// Group id.
    pub group_id: String,
    /// Generation id.
    pub generation_id: i32,
    /// Member id.
    pub member_id: String,
    /// Static instance id (v3+).
    pub group_instance_id: Option<String>,
}

/// LeaveGroup's outcome.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LeaveResult {
    /// Group-level error (the coordinator could not act at all).
    pub error: Option<ResponseError>,
    /// `(member id, instance id, error)` per member named; v0–v2 report the single
    /// member's error as the response's.
    pub members: Vec<(String, Option<String>, Option<ResponseError>)>,
}

/// One partition of an OffsetCommit.
#[derive(Debug, Clone)]
pub struct CommitPartition {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
    /// The next offset to consume.
    pub offset: i64,
    /// Leader epoch (v6+), -1 if unknown.
    pub leader_epoch: i32,
    /// Client metadata (`None` is stored as empty).
    pub metadata: Option<String>,
}

/// An OffsetCommit request.
#[derive(Debug, Clone, Default)]
pub struct OffsetCommit {
    /// Group id.
    pub group_id: String,
    /// Generation id, -1 for a commit outside group management.
    pub generation_id: i32,
    /// Member id, empty outside group management.
    pub member_id: String,
    /// Static instance id (v7+).
    pub group_instance_id: Option<String>,
    /// v2–v4 `retention_time_ms`; -1 = broker default.
    pub retention_time_ms: i64,
    /// The request's version: from v9 an unknown group is GROUP_ID_NOT_FOUND.
    pub api_version: i16,
    /// What to commit.
    pub partitions: Vec<CommitPartition>,
}

/// A TxnOffsetCommit request (KIP-98; v3+ carries the member fields, KIP-447).
#[derive(Debug, Clone)]
pub struct TxnOffsetCommit {
    /// Group id.
    pub group_id: String,
    /// The transaction's producer id.
    pub producer_id: i64,
    /// Its epoch.
    pub producer_epoch: i16,
    /// Generation id, -1 before v3 or outside group management.
    pub generation_id: i32,
    /// Member id, empty before v3 or outside group management.
    pub member_id: String,
    /// Static instance id (v3+).
    pub group_instance_id: Option<String>,
    /// What to commit when the transaction commits.
    pub partitions: Vec<CommitPartition>,
}

/// A committed offset as OffsetFetch reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedOffset {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Committed offset, -1 if none.
    pub offset: i64,
    /// Leader epoch, -1 if unknown.
    pub leader_epoch: i32,
    /// Metadata, empty if none.
    pub metadata: String,
    /// An offset committed inside a still-open transaction waits for this partition
    /// (OffsetFetch `require_stable` answers UNSTABLE_OFFSET_COMMIT, KIP-447).
    pub unstable: bool,
}

/// A group as ListGroups reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    /// Group id.
    pub group_id: String,
    /// Protocol type, empty for a group that only commits offsets.
    pub protocol_type: String,
    /// State.
    pub state: GroupState,
}

/// A group as DescribeGroups reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupDescription {
    /// Group id.
    pub group_id: String,
    /// State (`Dead` for an unknown group, as Kafka answers).
    pub state: GroupState,
    /// Protocol type.
    pub protocol_type: String,
    /// Chosen protocol when Stable, else empty.
    pub protocol: String,
    /// Generation id.
    pub generation: i32,
    /// Members: metadata and assignment only when Stable, as Kafka reports them.
    pub members: Vec<DescribedMember>,
}

/// A member as DescribeGroups reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct DescribedMember {
    /// Member id.
    pub member_id: String,
    /// Static instance id.
    pub group_instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
    /// Metadata for the chosen protocol.
    pub metadata: Bytes,
    /// Assignment.
    pub assignment: Bytes,
}
