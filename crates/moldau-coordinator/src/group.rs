//! One consumer group's state (Kafka `ClassicGroup` / `GroupMetadata`): members, the
//! rebalance phase, and committed offsets. The protocol logic that moves it lives in
//! [`crate::shard`].

use crate::records::{GroupValue, MemberValue, OffsetValue};
use bytes::Bytes;
use std::collections::HashMap;

/// The classic group states (Kafka `GroupState`, KIP-848 names them "classic").
///
/// ```text
/// Empty ──join──▶ PreparingRebalance ──all joined / timeout──▶ CompletingRebalance
///   ▲                 ▲      │ (no members left)                 │ leader's SyncGroup
///   └─────────────────┼──────┘                                   ▼
///                     └──── join / leave / session expiry ──── Stable
/// Dead: removed (DeleteGroups, or Empty with no offsets left); never seen by clients
/// except as DescribeGroups' answer for an unknown group.
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    /// No members; may still hold committed offsets.
    Empty,
    /// Collecting JoinGroup requests for the next generation.
    PreparingRebalance,
    /// Generation formed; waiting for the leader's SyncGroup with assignments.
    CompletingRebalance,
    /// Every member has its assignment.
    Stable,
    /// Deleted.
    Dead,
}

impl GroupState {
    /// The name Kafka uses in DescribeGroups and ListGroups.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }

    /// Parses a Kafka state name, case-insensitively (ListGroups `states_filter`).
    pub fn parse(name: &str) -> Option<GroupState> {
        [
            GroupState::Empty,
            GroupState::PreparingRebalance,
            GroupState::CompletingRebalance,
            GroupState::Stable,
            GroupState::Dead,
        ]
        .into_iter()
        .find(|s| s.name().eq_ignore_ascii_case(name))
    }
}

/// A group member and the requests it has parked with the coordinator.
#[derive(Debug)]
pub(crate) struct Member<R> {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    /// `(protocol name, metadata)` in the member's order of preference.
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    /// A JoinGroup waiting for the generation to form.
    pub awaiting_join: Option<R>,
    /// A SyncGroup waiting for the leader's assignment.
    pub awaiting_sync: Option<R>,
    /// Sent SyncGroup for the current generation.
    pub synced: bool,
    /// Joined in the current rebalance and never part of a generation yet.
    pub is_new: bool,
    /// When a new member's JoinGroup arrived (ms), for the new-member join timeout.
    pub joined_at: i64,
    /// Session expiry (ms) unless the member is parked in a join or sync.
    pub heartbeat_deadline: i64,
}

impl<R> Member<R> {
    pub fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }

    pub fn supports(&self, protocol: &str) -> bool {
        self.protocols.iter().any(|(name, _)| name == protocol)
    }

    pub fn same_protocols(&self, protocols: &[(String, Bytes)]) -> bool {
        self.protocols == protocols
    }
}

/// One group.
#[derive(Debug)]
pub(crate) struct Group<R> {
    pub id: String,
    pub state: GroupState,
    /// When the group entered `state` (ms); KIP-211 offset expiry counts from Empty.
    pub state_since: i64,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub generation: i32,
    pub leader: Option<String>,
    /// Members in join order (the first one becomes leader when none is).
    pub members: Vec<Member<R>>,
    /// Members told MEMBER_ID_REQUIRED, until they rejoin or the deadline (ms) passes.
    pub pending_members: HashMap<String, i64>,
    /// End of the join phase (ms) while PreparingRebalance.
    pub join_deadline: i64,
    /// The join phase started from Empty: only its deadline ends it (KIP-134).
    pub initial_delay: bool,
    /// Rebalance timeout left for extending the initial delay (ms); 0 outside it.
    pub initial_delay_left: i64,
    /// A new member arrived during the current initial delay.
    pub joined_during_delay: bool,
    /// End of the sync phase (ms) while CompletingRebalance.
    pub sync_deadline: i64,
    /// Committed offsets by (topic, partition).
    pub offsets: HashMap<(String, i32), OffsetValue>,
    /// Offsets committed inside open transactions (TxnOffsetCommit), by producer id:
    /// they become [`Group::offsets`] when that producer's commit marker arrives and are
    /// dropped by its abort marker (KIP-98, KIP-447).
    pub pending_txn_offsets: HashMap<i64, HashMap<(String, i32), OffsetValue>>,
    /// The deadline (ms) this group is registered under in the shard's timer set.
    pub scheduled: Option<i64>,
}

impl<R> Group<R> {
    pub fn new(id: String, now: i64) -> Self {
        Group {
            id,
            state: GroupState::Empty,
            state_since: now,
            protocol_type: None,
            protocol: None,
            generation: 0,
            leader: None,
            members: Vec::new(),
            pending_members: HashMap::new(),
            join_deadline: 0,
            initial_delay: false,
            initial_delay_left: 0,
            joined_during_delay: false,
            sync_deadline: 0,
            offsets: HashMap::new(),
            pending_txn_offsets: HashMap::new(),
            scheduled: None,
        }
    }

    pub fn transition(&mut self, state: GroupState, now: i64) {
        self.state = state;
        self.state_since = now;
    }

    pub fn member(&self, member_id: &str) -> Option<&Member<R>> {
        self.members.iter().find(|m| m.member_id == member_id)
    }

    pub fn member_mut(&mut self, member_id: &str) -> Option<&mut Member<R>> {
        self.members.iter_mut().find(|m| m.member_id == member_id)
    }

    pub fn static_member_id(&self, instance_id: &str) -> Option<&str> {
        self.members
            .iter()
            .find(|m| m.group_instance_id.as_deref() == Some(instance_id))
            .map(|m| m.member_id.as_str())
    }

    /// Kafka `isStaticMemberFenced`: the instance id is registered under another
    /// member id.
    pub fn is_fenced(&self, instance_id: Option<&str>, member_id: &str) -> bool {
        instance_id
            .and_then(|i| self.static_member_id(i))
            .is_some_and(|registered| registered != member_id)
    }

    pub fn is_leader(&self, member_id: &str) -> bool {
        self.leader.as_deref() == Some(member_id)
    }

    pub fn max_rebalance_timeout(&self) -> i64 {
        self.members
            .iter()
            .map(|m| i64::from(m.rebalance_timeout_ms))
            .max()
            .unwrap_or(0)
    }

    /// Protocols every member supports (Kafka `candidateProtocols`), in the first
    /// member's order.
    pub fn candidate_protocols(&self) -> Vec<String> {
        let Some(first) = self.members.first() else {
            return Vec::new();
        };
        first
            .protocols
            .iter()
            .map(|(name, _)| name.clone())
            .filter(|p| self.members.iter().all(|m| m.supports(p)))
            .collect()
    }

    /// Kafka `supportsProtocols`: may a member with these protocols join?
    pub fn supports_protocols(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if self.members.is_empty() {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        let candidates = self.candidate_protocols();
        self.protocol_type.as_deref() == Some(protocol_type)
            && protocols.iter().any(|(p, _)| candidates.contains(p))
    }

    /// Kafka `selectProtocol`: each member votes for its most preferred candidate; the
    /// most votes wins, ties going to the earlier candidate.
    pub fn select_protocol(&self) -> Option<String> {
        let candidates = self.candidate_protocols();
        let mut votes = vec![0usize; candidates.len()];
        for m in &self.members {
            if let Some(i) = m
                .protocols
                .iter()
                .find_map(|(p, _)| candidates.iter().position(|c| c == p))
            {
                votes[i] += 1;
            }
        }
        let best = votes.iter().copied().max()?;
        let winner = votes.iter().position(|&v| v == best)?;
        candidates.get(winner).cloned()
    }

    pub fn all_members_joined(&self) -> bool {
        self.pending_members.is_empty() && self.members.iter().all(|m| m.awaiting_join.is_some())
    }

    /// The group as `GroupMetadataValue` stores it.
    pub fn to_value(&self) -> GroupValue {
        let protocol = self.protocol.clone().unwrap_or_default();
        GroupValue {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation,
            protocol: self.protocol.clone(),
            leader: self.leader.clone(),
            state_timestamp: self.state_since,
            members: self
                .members
                .iter()
                .map(|m| MemberValue {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    subscription: m.metadata_for(&protocol),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }
}
