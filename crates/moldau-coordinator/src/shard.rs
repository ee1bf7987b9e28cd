//! The coordinator for the groups of one `__consumer_offsets` partition: Kafka's classic
//! group protocol (JoinGroup/SyncGroup/Heartbeat/LeaveGroup, KIP-345 static membership,
//! KIP-394 member-id-required joins) and committed offsets, as a state machine.
//!
//! It performs no I/O and reads no clock. Every call takes `now` (ms) and returns
//! [`Effect`]s: replies to hand to parked requests (`R` is the caller's reply handle,
//! e.g. a oneshot sender) and records to append to the partition before the replies that
//! depend on them are sent. A runtime calls [`GroupShard::tick`] at
//! [`GroupShard::next_deadline`] to drive session, join, sync and offset-expiry timers.

use crate::api::*;
use crate::group::{Group, GroupState, Member};
use crate::records;
use crate::GroupConfig;
use bytes::Bytes;
use moldau_protocol::error::ResponseError;
use std::collections::{BTreeSet, HashMap};

/// How long a new member's parked JoinGroup keeps it in the group without heartbeats
/// (Kafka `NewMemberJoinTimeoutMs`, 5 minutes).
pub const NEW_MEMBER_JOIN_TIMEOUT_MS: i64 = 300_000;

/// The groups of one `__consumer_offsets` partition.
#[derive(Debug)]
pub struct GroupShard<R> {
    pub(crate) config: GroupConfig,
    pub(crate) groups: HashMap<String, Group<R>>,
    /// `(deadline ms, group id)`: each group is registered under its earliest deadline.
    pub(crate) timers: BTreeSet<(i64, String)>,
    /// Next offsets-expiration pass (ms).
    next_expiry_check: i64,
    /// Groups holding pending transactional offsets, by producer id.
    pub(crate) txn_groups: HashMap<i64, std::collections::HashSet<String>>,
}

pub(crate) type Effects<R> = Vec<Effect<R>>;

fn new_member_id(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4())
}

impl<R> GroupShard<R> {
    /// An empty shard.
    pub fn new(config: GroupConfig, now: i64) -> Self {
        let next_expiry_check = now + config.offsets_retention_check_interval_ms;
        GroupShard {
            config,
            groups: HashMap::new(),
            timers: BTreeSet::new(),
            next_expiry_check,
            txn_groups: HashMap::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &GroupConfig {
        &self.config
    }

    /// Handles a JoinGroup. The reply comes when the generation forms (or at once on an
    /// error, MEMBER_ID_REQUIRED, or a static member rejoining a stable group).
    pub fn join(&mut self, now: i64, req: JoinGroup, reply: R) -> Effects<R> {
        let mut fx = Vec::new();
        let err = |e: ResponseError, member_id: &str| {
            Reply::Join(JoinResult::failed(e, member_id.to_owned()))
        };
        if req.group_id.is_empty() {
            fx.push(Effect::Reply(
                reply,
                err(ResponseError::InvalidGroupId, &req.member_id),
            ));
            return fx;
        }
        if req.session_timeout_ms < self.config.min_session_timeout_ms
            || req.session_timeout_ms > self.config.max_session_timeout_ms
        {
            fx.push(Effect::Reply(
                reply,
                err(ResponseError::InvalidSessionTimeout, &req.member_id),
            ));
            return fx;
        }
        let group_id = req.group_id.clone();
        if !req.member_id.is_empty() && !self.groups.contains_key(&group_id) {
            // A member id for a group that does not exist (Kafka does not create it).
            fx.push(Effect::Reply(
                reply,
                err(ResponseError::UnknownMemberId, &req.member_id),
            ));
            return fx;
        }
        let group = self
            .groups
            .entry(group_id.clone())
            .or_insert_with(|| Group::new(group_id.clone(), now));
        if group.state == GroupState::Dead {
            fx.push(Effect::Reply(
                reply,
                err(ResponseError::CoordinatorNotAvailable, &req.member_id),
            ));
            return fx;
        }
        if !group.supports_protocols(&req.protocol_type, &req.protocols) {
            fx.push(Effect::Reply(
                reply,
                err(ResponseError::InconsistentGroupProtocol, &req.member_id),
            ));
            self.drop_if_unused(&group_id);
            return fx;
        }
        let known = !req.member_id.is_empty();
        let is_rejoining_static = req
            .group_instance_id
            .as_deref()
            .is_some_and(|i| group.static_member_id(i).is_some());
        if !is_rejoining_static
            && !accepts_joining_member(group, &req.member_id, self.config.max_size)
        {
            fx.push(Effect::Reply(
                reply,
                err(ResponseError::GroupMaxSizeReached, &req.member_id),
            ));
            return fx;
        }
        if !known {
            self.join_unknown_member(now, req, reply, &mut fx);
        } else {
            self.join_known_member(now, req, reply, &mut fx);
        }
        self.reschedule(&group_id);
        fx
    }

    fn join_unknown_member(&mut self, now: i64, req: JoinGroup, reply: R, fx: &mut Effects<R>) {
        let Some(group) = self.groups.get_mut(&req.group_id) else {
            return;
        };
        let prefix = req.group_instance_id.as_deref().unwrap_or(&req.client_id);
        let member_id = new_member_id(prefix);
        if let Some(instance) = req.group_instance_id.clone() {
            if let Some(old_id) = group.static_member_id(&instance).map(str::to_owned) {
                self.replace_static_member(now, old_id, member_id, req, reply, fx);
                return;
            }
            self.add_member_and_rebalance(now, member_id, req, reply, fx);
            return;
        }
        if req.require_known_member_id {
            let deadline = now + i64::from(req.session_timeout_ms);
            group.pending_members.insert(member_id.clone(), deadline);
            fx.push(Effect::Reply(
                reply,
                Reply::Join(JoinResult::failed(
                    ResponseError::MemberIdRequired,
                    member_id,
                )),
            ));
            return;
        }
        self.add_member_and_rebalance(now, member_id, req, reply, fx);
    }

    /// KIP-345: a static member rejoining with a fresh member id takes over the old
    /// member's place; the old id is fenced.
    fn replace_static_member(
        &mut self,
        now: i64,
        old_id: String,
        new_id: String,
        req: JoinGroup,
        reply: R,
        fx: &mut Effects<R>,
    ) {
        let Some(group) = self.groups.get_mut(&req.group_id) else {
            return;
        };
        let state = group.state;
        let supports_skip = req.supports_skip_assignment;
        let old_leader = group.leader.clone().unwrap_or_default();
        let Some(member) = group.member_mut(&old_id) else {
            return;
        };
        if let Some(parked) = member.awaiting_join.take() {
            fx.push(Effect::Reply(
                parked,
                Reply::Join(JoinResult::failed(
                    ResponseError::FencedInstanceId,
                    old_id.clone(),
                )),
            ));
        }
        if let Some(parked) = member.awaiting_sync.take() {
            fx.push(Effect::Reply(
                parked,
                Reply::Sync(SyncResult::failed(ResponseError::FencedInstanceId)),
            ));
        }
        member.member_id = new_id.clone();
        member.client_id = req.client_id.clone();
        member.client_host = req.client_host.clone();
        member.session_timeout_ms = req.session_timeout_ms;
        member.rebalance_timeout_ms = req.rebalance_timeout_ms;
        member.heartbeat_deadline = now + i64::from(req.session_timeout_ms);
        member.protocols = req.protocols;
        if group.leader.as_deref() == Some(old_id.as_str()) {
            group.leader = Some(new_id.clone());
        }
        // Kafka compares the protocol the group would select now with the one it runs:
        // a restarted client's metadata bytes differ (no owned partitions yet), and
        // that alone must not cost the group a rebalance.
        let protocol_unchanged = group.select_protocol() == group.protocol;
        match state {
            GroupState::Stable if protocol_unchanged => {
                // Same subscription: hand back the current generation without a
                // rebalance, and persist the new member id.
                // A leader that can skip the assignment (JoinGroup v9+, KIP-814) learns
                // it leads; an older client is answered as a follower under the old
                // leader id, so it does not run an assignment that would be ignored
                // (KAFKA-13435).
                let is_leader = group.is_leader(&new_id) && supports_skip;
                let leader = if supports_skip {
                    group.leader.clone().unwrap_or_default()
                } else {
                    old_leader
                };
                let mut result = current_generation(group, new_id, leader, is_leader);
                result.skip_assignment = is_leader;
                let record = (
                    records::group_key(&group.id),
                    Some(records::group_value(&group.to_value())),
                );
                fx.push(Effect::Write {
                    records: vec![record],
                    replies: vec![(reply, Reply::Join(result))],
                    undo: None,
                });
            }
            _ => {
                if let Some(member) = group.member_mut(&new_id) {
                    member.awaiting_join = Some(reply);
                }
                match state {
                    GroupState::PreparingRebalance => {
                        self.try_complete_join(now, &req.group_id, fx)
                    }
                    _ => self.prepare_rebalance(now, &req.group_id, fx),
                }
            }
        }
    }

    fn add_member_and_rebalance(
        &mut self,
        now: i64,
        member_id: String,
        req: JoinGroup,
        reply: R,
        fx: &mut Effects<R>,
    ) {
        let Some(group) = self.groups.get_mut(&req.group_id) else {
            return;
        };
        group.pending_members.remove(&member_id);
        if group.members.is_empty() {
            group.protocol_type = Some(req.protocol_type.clone());
        }
        group.members.push(Member {
            member_id,
            group_instance_id: req.group_instance_id,
            client_id: req.client_id,
            client_host: req.client_host,
            session_timeout_ms: req.session_timeout_ms,
            rebalance_timeout_ms: req.rebalance_timeout_ms,
            protocols: req.protocols,
            assignment: Bytes::new(),
            awaiting_join: Some(reply),
            awaiting_sync: None,
            synced: false,
            is_new: true,
            joined_at: now,
            heartbeat_deadline: now + i64::from(req.session_timeout_ms),
        });
        if group.state == GroupState::PreparingRebalance {
            group.joined_during_delay = true;
            self.try_complete_join(now, &req.group_id, fx);
        } else {
            self.prepare_rebalance(now, &req.group_id, fx);
        }
    }

    fn join_known_member(&mut self, now: i64, req: JoinGroup, reply: R, fx: &mut Effects<R>) {
        let Some(group) = self.groups.get_mut(&req.group_id) else {
            return;
        };
        let fail = |e: ResponseError| Reply::Join(JoinResult::failed(e, req.member_id.clone()));
        if group.pending_members.contains_key(&req.member_id) {
            let member_id = req.member_id.clone();
            self.add_member_and_rebalance(now, member_id, req, reply, fx);
            return;
        }
        if group.is_fenced(req.group_instance_id.as_deref(), &req.member_id) {
            fx.push(Effect::Reply(reply, fail(ResponseError::FencedInstanceId)));
            return;
        }
        let state = group.state;
        let is_leader = group.is_leader(&req.member_id);
        let Some(member) = group.member_mut(&req.member_id) else {
            fx.push(Effect::Reply(reply, fail(ResponseError::UnknownMemberId)));
            return;
        };
        member.heartbeat_deadline = now + i64::from(req.session_timeout_ms);
        let unchanged = member.same_protocols(&req.protocols);
        match state {
            GroupState::PreparingRebalance => {
                member.protocols = req.protocols;
                member.session_timeout_ms = req.session_timeout_ms;
                member.rebalance_timeout_ms = req.rebalance_timeout_ms;
                if let Some(old) = member.awaiting_join.replace(reply) {
                    // A retried join supersedes the parked one.
                    fx.push(Effect::Reply(old, fail(ResponseError::RebalanceInProgress)));
                }
                self.try_complete_join(now, &req.group_id, fx);
            }
            GroupState::CompletingRebalance | GroupState::Stable
                if unchanged && !(state == GroupState::Stable && is_leader) =>
            {
                // The member missed the response of the generation it is in: repeat it.
                let leader = group.leader.clone().unwrap_or_default();
                let result = current_generation(group, req.member_id.clone(), leader, is_leader);
                fx.push(Effect::Reply(reply, Reply::Join(result)));
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                member.protocols = req.protocols;
                member.awaiting_join = Some(reply);
                self.prepare_rebalance(now, &req.group_id, fx);
            }
            GroupState::Empty | GroupState::Dead => {
                fx.push(Effect::Reply(reply, fail(ResponseError::UnknownMemberId)));
            }
        }
    }

    /// Kafka `prepareRebalance`: start collecting joins for the next generation.
    fn prepare_rebalance(&mut self, now: i64, group_id: &str, fx: &mut Effects<R>) {
        let Some(group) = self.groups.get_mut(group_id) else {
            return;
        };
        if group.state == GroupState::CompletingRebalance {
            // Members parked in SyncGroup learn that the generation is void.
            for m in &mut group.members {
                m.assignment = Bytes::new();
                if let Some(parked) = m.awaiting_sync.take() {
                    fx.push(Effect::Reply(
                        parked,
                        Reply::Sync(SyncResult::failed(ResponseError::RebalanceInProgress)),
                    ));
                }
            }
        }
        let max_timeout = group.max_rebalance_timeout();
        if group.state == GroupState::Empty {
            // KIP-134: wait a little for more members before forming the first
            // generation, extending while new members keep arriving.
            let delay = i64::from(self.config.initial_rebalance_delay_ms).min(max_timeout);
            group.join_deadline = now + delay;
            group.initial_delay = true;
            group.initial_delay_left = (max_timeout - delay).max(0);
            group.joined_during_delay = false;
        } else if group.state != GroupState::PreparingRebalance {
            group.join_deadline = now + max_timeout;
            group.initial_delay = false;
            group.initial_delay_left = 0;
        }
        group.transition(GroupState::PreparingRebalance, now);
        self.try_complete_join(now, group_id, fx);
    }

    /// Completes the join phase if every member has joined (never during the initial
    /// delay, which only its deadline ends).
    fn try_complete_join(&mut self, now: i64, group_id: &str, fx: &mut Effects<R>) {
        let Some(group) = self.groups.get(group_id) else {
            return;
        };
        if group.state == GroupState::PreparingRebalance
            && group.all_members_joined()
            && !(group.initial_delay && group.join_deadline > now)
        {
            self.complete_join(now, group_id, fx);
        }
    }

    /// Kafka `onCompleteJoin`: drop dynamic members that did not rejoin, bump the
    /// generation, pick the protocol and leader, and answer every parked JoinGroup.
    fn complete_join(&mut self, now: i64, group_id: &str, fx: &mut Effects<R>) {
        let Some(group) = self.groups.get_mut(group_id) else {
            return;
        };
        group
            .members
            .retain(|m| m.awaiting_join.is_some() || m.group_instance_id.is_some());
        if !group.members.is_empty() && group.members.iter().all(|m| m.awaiting_join.is_none()) {
            // Only static members are left and none rejoined: there is nobody to lead
            // a new generation, so wait another rebalance timeout (Kafka
            // `completeClassicGroupJoin`).
            group.join_deadline = now + group.max_rebalance_timeout();
            return;
        }
        group.pending_members.clear();
        group.initial_delay = false;
        group.initial_delay_left = 0;
        group.generation += 1;
        if group.members.is_empty() {
            group.protocol = None;
            group.leader = None;
            group.transition(GroupState::Empty, now);
            let record = (
                records::group_key(&group.id),
                Some(records::group_value(&group.to_value())),
            );
            fx.push(Effect::Write {
                records: vec![record],
                replies: Vec::new(),
                undo: None,
            });
            return;
        }
        group.protocol = group.select_protocol();
        if !group.leader.as_deref().is_some_and(|l| {
            group
                .members
                .iter()
                .any(|m| m.member_id == l && m.awaiting_join.is_some())
        }) {
            group.leader = group
                .members
                .iter()
                .find(|m| m.awaiting_join.is_some())
                .or(group.members.first())
                .map(|m| m.member_id.clone());
        }
        group.transition(GroupState::CompletingRebalance, now);
        group.sync_deadline = now + group.max_rebalance_timeout();
        let leader = group.leader.clone().unwrap_or_default();
        let all = joined_members(group);
        let protocol_type = group.protocol_type.clone();
        let protocol_name = group.protocol.clone();
        let generation = group.generation;
        for m in &mut group.members {
            m.is_new = false;
            m.synced = false;
            m.assignment = Bytes::new();
            m.heartbeat_deadline = now + i64::from(m.session_timeout_ms);
            if let Some(parked) = m.awaiting_join.take() {
                let is_leader = m.member_id == leader;
                fx.push(Effect::Reply(
                    parked,
                    Reply::Join(JoinResult {
                        error: None,
                        generation_id: generation,
                        protocol_type: protocol_type.clone(),
                        protocol_name: protocol_name.clone(),
                        leader: leader.clone(),
                        member_id: m.member_id.clone(),
                        skip_assignment: false,
                        members: if is_leader { all.clone() } else { Vec::new() },
                    }),
                ));
            }
        }
    }

    /// Handles a SyncGroup. Followers park until the leader's assignment is written.
    pub fn sync(&mut self, now: i64, req: SyncGroup, reply: R) -> Effects<R> {
        let mut fx = Vec::new();
        let fail = |e: ResponseError| Reply::Sync(SyncResult::failed(e));
        let Some(group) = self.groups.get_mut(&req.group_id) else {
            fx.push(Effect::Reply(reply, fail(ResponseError::UnknownMemberId)));
            return fx;
        };
        let error = if group.state == GroupState::Dead {
            Some(ResponseError::CoordinatorNotAvailable)
        } else if group.is_fenced(req.group_instance_id.as_deref(), &req.member_id) {
            Some(ResponseError::FencedInstanceId)
        } else if group.member(&req.member_id).is_none() {
            Some(ResponseError::UnknownMemberId)
        } else if req.generation_id != group.generation {
            Some(ResponseError::IllegalGeneration)
        } else if req
            .protocol_type
            .as_ref()
            .is_some_and(|t| Some(t) != group.protocol_type.as_ref())
            || req
                .protocol_name
                .as_ref()
                .is_some_and(|p| Some(p) != group.protocol.as_ref())
        {
            Some(ResponseError::InconsistentGroupProtocol)
        } else {
            None
        };
        if let Some(e) = error {
            fx.push(Effect::Reply(reply, fail(e)));
            return fx;
        }
        let protocol_type = group.protocol_type.clone();
        let protocol_name = group.protocol.clone();
        let is_leader = group.is_leader(&req.member_id);
        match group.state {
            GroupState::PreparingRebalance => {
                fx.push(Effect::Reply(
                    reply,
                    fail(ResponseError::RebalanceInProgress),
                ));
            }
            GroupState::CompletingRebalance => {
                if let Some(m) = group.member_mut(&req.member_id) {
                    m.synced = true;
                    m.heartbeat_deadline = now + i64::from(m.session_timeout_ms);
                    if let Some(old) = m.awaiting_sync.replace(reply) {
                        fx.push(Effect::Reply(old, fail(ResponseError::RebalanceInProgress)));
                    }
                }
                if is_leader {
                    let assignments: HashMap<String, Bytes> = req.assignments.into_iter().collect();
                    let mut replies = Vec::new();
                    for m in &mut group.members {
                        m.assignment = assignments.get(&m.member_id).cloned().unwrap_or_default();
                        if let Some(parked) = m.awaiting_sync.take() {
                            replies.push((
                                parked,
                                Reply::Sync(SyncResult {
                                    error: None,
                                    protocol_type: protocol_type.clone(),
                                    protocol_name: protocol_name.clone(),
                                    assignment: m.assignment.clone(),
                                }),
                            ));
                        }
                    }
                    group.transition(GroupState::Stable, now);
                    let record = (
                        records::group_key(&group.id),
                        Some(records::group_value(&group.to_value())),
                    );
                    fx.push(Effect::Write {
                        records: vec![record],
                        replies,
                        undo: Some(Undo::Rebalance {
                            group_id: group.id.clone(),
                            generation: group.generation,
                        }),
                    });
                }
            }
            GroupState::Stable => {
                let Some(m) = group.member_mut(&req.member_id) else {
                    return fx;
                };
                m.synced = true;
                m.heartbeat_deadline = now + i64::from(m.session_timeout_ms);
                fx.push(Effect::Reply(
                    reply,
                    Reply::Sync(SyncResult {
                        error: None,
                        protocol_type,
                        protocol_name,
                        assignment: m.assignment.clone(),
                    }),
                ));
            }
            GroupState::Empty | GroupState::Dead => {
                fx.push(Effect::Reply(reply, fail(ResponseError::UnknownMemberId)));
            }
        }
        self.reschedule(&req.group_id);
        fx
    }

    /// Handles a Heartbeat; `None` = success.
    pub fn heartbeat(&mut self, now: i64, req: &Heartbeat) -> Option<ResponseError> {
        let Some(group) = self.groups.get_mut(&req.group_id) else {
            return Some(ResponseError::UnknownMemberId);
        };
        let result = if group.state == GroupState::Dead {
            Some(ResponseError::CoordinatorNotAvailable)
        } else if group.is_fenced(req.group_instance_id.as_deref(), &req.member_id) {
            Some(ResponseError::FencedInstanceId)
        } else if group.member(&req.member_id).is_none() {
            Some(ResponseError::UnknownMemberId)
        } else if req.generation_id != group.generation {
            Some(ResponseError::IllegalGeneration)
        } else {
            let state = group.state;
            if let Some(m) = group.member_mut(&req.member_id) {
                m.heartbeat_deadline = now + i64::from(m.session_timeout_ms);
            }
            match state {
                GroupState::PreparingRebalance => Some(ResponseError::RebalanceInProgress),
                GroupState::CompletingRebalance | GroupState::Stable => None,
                GroupState::Empty | GroupState::Dead => Some(ResponseError::UnknownMemberId),
            }
        };
        self.reschedule(&req.group_id);
        result
    }

    /// Handles a LeaveGroup for `members` (`(member id, instance id)`; v0–v2 send one
    /// member id and no instance id).
    pub fn leave(
        &mut self,
        now: i64,
        group_id: &str,
        members: Vec<(String, Option<String>)>,
        reply: R,
    ) -> Effects<R> {
        let mut fx = Vec::new();
        let Some(group) = self.groups.get_mut(group_id) else {
            fx.push(Effect::Reply(
                reply,
                Reply::Leave(LeaveResult {
                    error: None,
                    members: members
                        .into_iter()
                        .map(|(m, i)| (m, i, Some(ResponseError::UnknownMemberId)))
                        .collect(),
                }),
            ));
            return fx;
        };
        if group.state == GroupState::Dead {
            fx.push(Effect::Reply(
                reply,
                Reply::Leave(LeaveResult {
                    error: Some(ResponseError::CoordinatorNotAvailable),
                    members: Vec::new(),
                }),
            ));
            return fx;
        }
        let mut results = Vec::new();
        let mut removed = Vec::new();
        for (member_id, instance) in members {
            let target = match instance.as_deref() {
                Some(i) => match group.static_member_id(i) {
                    Some(registered) if !member_id.is_empty() && registered != member_id => {
                        Err(ResponseError::FencedInstanceId)
                    }
                    Some(registered) => Ok(registered.to_owned()),
                    None => Err(ResponseError::UnknownMemberId),
                },
                None if group.pending_members.remove(&member_id).is_some() => {
                    results.push((member_id, instance, None));
                    continue;
                }
                None if group.member(&member_id).is_some() => Ok(member_id.clone()),
                None => Err(ResponseError::UnknownMemberId),
            };
            match target {
                Ok(id) => {
                    removed.push(id);
                    results.push((member_id, instance, None));
                }
                Err(e) => results.push((member_id, instance, Some(e))),
            }
        }
        fx.push(Effect::Reply(
            reply,
            Reply::Leave(LeaveResult {
                error: None,
                members: results,
            }),
        ));
        for id in removed {
            self.remove_member(now, group_id, &id, &mut fx);
        }
        self.reschedule(group_id);
        fx
    }

    /// Removes a member (leave or session expiry) and rebalances what is left.
    fn remove_member(&mut self, now: i64, group_id: &str, member_id: &str, fx: &mut Effects<R>) {
        let Some(group) = self.groups.get_mut(group_id) else {
            return;
        };
        let Some(pos) = group.members.iter().position(|m| m.member_id == member_id) else {
            return;
        };
        let member = group.members.remove(pos);
        if let Some(parked) = member.awaiting_join {
            fx.push(Effect::Reply(
                parked,
                Reply::Join(JoinResult::failed(
                    ResponseError::UnknownMemberId,
                    member.member_id.clone(),
                )),
            ));
        }
        if let Some(parked) = member.awaiting_sync {
            fx.push(Effect::Reply(
                parked,
                Reply::Sync(SyncResult::failed(ResponseError::UnknownMemberId)),
            ));
        }
        if group.leader.as_deref() == Some(member_id) {
            group.leader = group.members.first().map(|m| m.member_id.clone());
        }
        match group.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.prepare_rebalance(now, group_id, fx)
            }
            GroupState::PreparingRebalance => self.try_complete_join(now, group_id, fx),
            GroupState::Empty | GroupState::Dead => {}
        }
    }

    /// Takes back the in-memory change of a write that failed ([`Undo`]).
    pub fn undo(&mut self, now: i64, undo: Undo) -> Effects<R> {
        let mut fx = Vec::new();
        match undo {
            Undo::Offsets { group_id, previous } => {
                if let Some(g) = self.groups.get_mut(&group_id) {
                    for (tp, old) in previous {
                        match old {
                            Some(v) => g.offsets.insert(tp, v),
                            None => g.offsets.remove(&tp),
                        };
                    }
                }
            }
            Undo::Rebalance {
                group_id,
                generation,
            } => {
                let current = self
                    .groups
                    .get_mut(&group_id)
                    .filter(|g| g.generation == generation && g.state == GroupState::Stable);
                if let Some(g) = current {
                    for m in &mut g.members {
                        m.assignment = Bytes::new();
                    }
                    self.prepare_rebalance(now, &group_id, &mut fx);
                    self.reschedule(&group_id);
                }
            }
        }
        fx
    }

    /// The earliest time (ms) [`GroupShard::tick`] has work to do.
    pub fn next_deadline(&self) -> i64 {
        self.timers
            .first()
            .map_or(self.next_expiry_check, |(at, _)| {
                (*at).min(self.next_expiry_check)
            })
    }

    /// Runs every timer due at `now`: session expiry, pending-member expiry, the end of
    /// a join or sync phase, and (every `offsets.retention.check.interval.ms`) offset
    /// expiry (KIP-211), which may also remove Empty groups with no offsets left.
    pub fn tick(&mut self, now: i64) -> Effects<R> {
        let mut fx = Vec::new();
        while let Some((at, group_id)) = self.timers.first().cloned() {
            if at > now {
                break;
            }
            self.timers.remove(&(at, group_id.clone()));
            if let Some(g) = self.groups.get_mut(&group_id) {
                g.scheduled = None;
            }
            self.expire_group(now, &group_id, &mut fx);
            self.reschedule(&group_id);
        }
        if now >= self.next_expiry_check {
            self.next_expiry_check = now + self.config.offsets_retention_check_interval_ms;
            let recs = self.expire_offsets(now);
            if !recs.is_empty() {
                fx.push(Effect::Write {
                    records: recs,
                    replies: Vec::new(),
                    undo: None,
                });
            }
        }
        fx
    }

    fn expire_group(&mut self, now: i64, group_id: &str, fx: &mut Effects<R>) {
        let Some(group) = self.groups.get_mut(group_id) else {
            return;
        };
        group.pending_members.retain(|_, deadline| *deadline > now);
        let expired: Vec<String> = group
            .members
            .iter()
            .filter(|m| !keeps_alive(m, now))
            .map(|m| m.member_id.clone())
            .collect();
        for id in expired {
            self.remove_member(now, group_id, &id, fx);
        }
        let Some(group) = self.groups.get_mut(group_id) else {
            return;
        };
        match group.state {
            GroupState::PreparingRebalance if group.join_deadline <= now => {
                if group.initial_delay && group.initial_delay_left > 0 && group.joined_during_delay
                {
                    let delay = i64::from(self.config.initial_rebalance_delay_ms)
                        .min(group.initial_delay_left);
                    group.join_deadline = now + delay;
                    group.initial_delay_left -= delay;
                    group.joined_during_delay = false;
                } else {
                    self.complete_join(now, group_id, fx);
                }
            }
            GroupState::PreparingRebalance => self.try_complete_join(now, group_id, fx),
            GroupState::CompletingRebalance | GroupState::Stable
                if group.sync_deadline <= now && group.members.iter().any(|m| !m.synced) =>
            {
                // Kafka's pending-sync timeout: members that never sent SyncGroup (the leader above all) are
                // removed, and the rest rebalance.
                let unsynced: Vec<String> = group
                    .members
                    .iter()
                    .filter(|m| !m.synced)
                    .map(|m| m.member_id.clone())
                    .collect();
                for id in unsynced {
                    self.remove_member(now, group_id, &id, fx);
                }
            }
            _ => {}
        }
    }

    /// Drops a group created by a failed first join.
    fn drop_if_unused(&mut self, group_id: &str) {
        if self.groups.get(group_id).is_some_and(|g| {
            g.members.is_empty()
                && g.offsets.is_empty()
                && g.generation == 0
                && g.pending_members.is_empty()
        }) {
            self.groups.remove(group_id);
        }
    }

    /// Re-registers a group under its earliest deadline.
    pub(crate) fn reschedule(&mut self, group_id: &str) {
        let Some(group) = self.groups.get_mut(group_id) else {
            return;
        };
        let next = group_deadline(group);
        if next == group.scheduled {
            return;
        }
        if let Some(old) = group.scheduled.take() {
            self.timers.remove(&(old, group_id.to_owned()));
        }
        if let Some(at) = next {
            self.timers.insert((at, group_id.to_owned()));
            group.scheduled = Some(at);
        }
    }

    /// Number of groups (for metrics and tests).
    pub fn group_count(&self) -> usize {
        self.groups.len()
    }

    /// Ids of all groups.
    pub fn group_ids(&self) -> Vec<String> {
        self.groups.keys().cloned().collect()
    }
}

/// Kafka `acceptJoiningMember`: an Empty group takes anyone; while members rejoin, the
/// ones already awaiting count against `group.max.size`; otherwise the members do.
/// Members parked with MEMBER_ID_REQUIRED do not count.
fn accepts_joining_member<R>(group: &Group<R>, member_id: &str, max_size: usize) -> bool {
    match group.state {
        GroupState::Empty | GroupState::Dead => true,
        GroupState::PreparingRebalance => {
            group
                .member(member_id)
                .is_some_and(|m| m.awaiting_join.is_some())
                || group
                    .members
                    .iter()
                    .filter(|m| m.awaiting_join.is_some())
                    .count()
                    < max_size
        }
        GroupState::CompletingRebalance | GroupState::Stable => {
            group.member(member_id).is_some() || group.members.len() < max_size
        }
    }
}

/// Kafka `MemberMetadata.shouldKeepAlive`.
fn keeps_alive<R>(m: &Member<R>, now: i64) -> bool {
    if m.awaiting_join.is_some() {
        !m.is_new || m.joined_at + NEW_MEMBER_JOIN_TIMEOUT_MS > now
    } else if m.awaiting_sync.is_some() {
        true
    } else {
        m.heartbeat_deadline > now
    }
}

/// The earliest time anything in `group` can expire.
fn group_deadline<R>(group: &Group<R>) -> Option<i64> {
    let members = group.members.iter().filter_map(|m| {
        if m.awaiting_join.is_some() {
            m.is_new.then_some(m.joined_at + NEW_MEMBER_JOIN_TIMEOUT_MS)
        } else if m.awaiting_sync.is_some() {
            None
        } else {
            Some(m.heartbeat_deadline)
        }
    });
    let pending = group.pending_members.values().copied();
    let phase = match group.state {
        GroupState::PreparingRebalance => Some(group.join_deadline),
        GroupState::CompletingRebalance => Some(group.sync_deadline),
        GroupState::Stable if group.members.iter().any(|m| !m.synced) => Some(group.sync_deadline),
        _ => None,
    };
    members.chain(pending).chain(phase).min()
}

/// JoinGroup's answer for the group's current generation: `members` only for the
/// member told it leads.
fn current_generation<R>(
    group: &Group<R>,
    member_id: String,
    leader: String,
    is_leader: bool,
) -> JoinResult {
    JoinResult {
        error: None,
        generation_id: group.generation,
        protocol_type: group.protocol_type.clone(),
        protocol_name: group.protocol.clone(),
        leader,
        member_id,
        skip_assignment: false,
        members: if is_leader {
            joined_members(group)
        } else {
            Vec::new()
        },
    }
}

fn joined_members<R>(group: &Group<R>) -> Vec<JoinedMember> {
    let protocol = group.protocol.clone().unwrap_or_default();
    group
        .members
        .iter()
        .map(|m| JoinedMember {
            member_id: m.member_id.clone(),
            group_instance_id: m.group_instance_id.clone(),
            metadata: m.metadata_for(&protocol),
        })
        .collect()
}
