//! Committed offsets of the groups in a shard: OffsetCommit (with Kafka's
//! `validateOffsetCommit`), OffsetFetch, OffsetDelete (KIP-496), DeleteGroups and
//! KIP-211 offset expiry.

use crate::api::*;
use crate::group::{Group, GroupState};
use crate::records::{self, OffsetValue};
use crate::shard::{Effects, GroupShard};
use moldau_protocol::error::ResponseError;

impl<R> GroupShard<R> {
    /// Handles an OffsetCommit (Kafka `handleCommitOffsets` for classic groups).
    /// Partitions of unknown topics are the caller's to reject beforehand.
    pub fn commit(&mut self, now: i64, req: OffsetCommit, reply: R) -> Effects<R> {
        let mut fx = Vec::new();
        let all_fail = |e: ResponseError, parts: &[CommitPartition]| {
            Reply::Commit(
                parts
                    .iter()
                    .map(|p| (p.topic.clone(), p.partition, Some(e)))
                    .collect(),
            )
        };
        if req.group_id.is_empty() {
            fx.push(Effect::Reply(
                reply,
                all_fail(ResponseError::InvalidGroupId, &req.partitions),
            ));
            return fx;
        }
        let error = match self.groups.get_mut(&req.group_id) {
            None if req.generation_id < 0 => {
                // A commit outside group management creates the group (Kafka).
                self.groups
                    .insert(req.group_id.clone(), Group::new(req.group_id.clone(), now));
                None
            }
            None if req.api_version >= 9 => Some(ResponseError::GroupIdNotFound),
            None => Some(ResponseError::IllegalGeneration),
            Some(g) => validate_offset_commit(g, &req, false, now),
        };
        if let Some(e) = error {
            fx.push(Effect::Reply(reply, all_fail(e, &req.partitions)));
            return fx;
        }
        let Some(group) = self.groups.get_mut(&req.group_id) else {
            return fx;
        };
        let expire_timestamp = if req.retention_time_ms >= 0 {
            now.saturating_add(req.retention_time_ms)
        } else {
            -1
        };
        let mut results = Vec::with_capacity(req.partitions.len());
        let mut recs = Vec::new();
        let mut previous = Vec::new();
        for p in req.partitions {
            let (topic, partition) = (p.topic.clone(), p.partition);
            let max = self.config.offset_metadata_max_bytes;
            match offset_record(max, &group.id, p, now, expire_timestamp) {
                Err(e) => results.push((topic, partition, Some(e))),
                Ok((value, record)) => {
                    recs.push(record);
                    let old = group.offsets.insert((topic.clone(), partition), value);
                    previous.push(((topic.clone(), partition), old));
                    results.push((topic, partition, None));
                }
            }
        }
        let group_id = group.id.clone();
        if recs.is_empty() {
            fx.push(Effect::Reply(reply, Reply::Commit(results)));
        } else {
            fx.push(Effect::Write {
                records: recs,
                replies: vec![(reply, Reply::Commit(results))],
                undo: Some(Undo::Offsets {
                    group_id: group_id.clone(),
                    previous,
                }),
            });
        }
        self.reschedule(&group_id);
        fx
    }

    /// Committed offsets of a group (OffsetFetch). `partitions = None` asks for every
    /// committed partition; named partitions without a commit come back as offset -1.
    pub fn fetch_offsets(
        &self,
        group_id: &str,
        partitions: Option<&[(String, Vec<i32>)]>,
    ) -> Vec<FetchedOffset> {
        let group = self.groups.get(group_id);
        let found = |topic: &str, partition: i32| {
            let key = (topic.to_owned(), partition);
            let v = group.and_then(|g| g.offsets.get(&key));
            let unstable =
                group.is_some_and(|g| g.pending_txn_offsets.values().any(|m| m.contains_key(&key)));
            FetchedOffset {
                unstable,
                topic: topic.to_owned(),
                partition,
                offset: v.map_or(-1, |v| v.offset),
                leader_epoch: v.map_or(-1, |v| v.leader_epoch),
                metadata: v.map(|v| v.metadata.clone()).unwrap_or_default(),
            }
        };
        match partitions {
            Some(wanted) => wanted
                .iter()
                .flat_map(|(t, ps)| ps.iter().map(move |&p| (t, p)))
                .map(|(t, p)| found(t, p))
                .collect(),
            None => {
                let mut all: Vec<FetchedOffset> = group
                    .map(|g| g.offsets.keys().map(|(t, p)| found(t, *p)).collect())
                    .unwrap_or_default();
                all.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
                all
            }
        }
    }

    /// Handles an OffsetDelete (KIP-496): only partitions the group is not subscribed
    /// to (or any, when the group is Empty) may lose their commits.
    pub fn delete_offsets(
        &mut self,
        group_id: &str,
        partitions: Vec<(String, i32)>,
        reply: R,
    ) -> Effects<R> {
        let mut fx = Vec::new();
        let Some(group) = self
            .groups
            .get_mut(group_id)
            .filter(|g| g.state != GroupState::Dead)
        else {
            fx.push(Effect::Reply(
                reply,
                Reply::DeleteOffsets(Some(ResponseError::GroupIdNotFound), Vec::new()),
            ));
            return fx;
        };
        let subscribed: Vec<String> = if group.state == GroupState::Empty {
            Vec::new()
        } else if group.protocol_type.as_deref() == Some("consumer") {
            let protocol = group.protocol.clone().unwrap_or_default();
            group
                .members
                .iter()
                .filter_map(|m| records::subscribed_topics(&m.metadata_for(&protocol)))
                .flatten()
                .collect()
        } else {
            // A non-consumer group's subscriptions are opaque: refuse, as Kafka does.
            fx.push(Effect::Reply(
                reply,
                Reply::DeleteOffsets(Some(ResponseError::NonEmptyGroup), Vec::new()),
            ));
            return fx;
        };
        let mut results = Vec::new();
        let mut recs = Vec::new();
        for (topic, partition) in partitions {
            if subscribed.contains(&topic) {
                results.push((
                    topic,
                    partition,
                    Some(ResponseError::GroupSubscribedToTopic),
                ));
                continue;
            }
            if group.offsets.remove(&(topic.clone(), partition)).is_some() {
                recs.push((records::offset_key(group_id, &topic, partition), None));
            }
            results.push((topic, partition, None));
        }
        fx.push(Effect::Write {
            records: recs,
            replies: vec![(reply, Reply::DeleteOffsets(None, results))],
            undo: None,
        });
        fx
    }

    /// Handles DeleteGroups for one group: only an Empty group may go.
    pub fn delete_group(&mut self, group_id: &str, reply: R) -> Effects<R> {
        let mut fx = Vec::new();
        let error = match self.groups.get(group_id) {
            None => Some(ResponseError::GroupIdNotFound),
            Some(g) if g.state == GroupState::Dead => Some(ResponseError::GroupIdNotFound),
            Some(g) if g.state != GroupState::Empty => Some(ResponseError::NonEmptyGroup),
            Some(_) => None,
        };
        if let Some(e) = error {
            fx.push(Effect::Reply(reply, Reply::DeleteGroup(Some(e))));
            return fx;
        }
        let recs = self.remove_group(group_id);
        fx.push(Effect::Write {
            records: recs,
            replies: vec![(reply, Reply::DeleteGroup(None))],
            undo: None,
        });
        fx
    }

    /// Removes a group, returning the tombstones that delete it from the log.
    pub(crate) fn remove_group(&mut self, group_id: &str) -> Vec<OffsetsRecord> {
        let Some(group) = self.groups.remove(group_id) else {
            return Vec::new();
        };
        if let Some(at) = group.scheduled {
            self.timers.remove(&(at, group.id.clone()));
        }
        let mut recs: Vec<OffsetsRecord> = group
            .offsets
            .keys()
            .map(|(t, p)| (records::offset_key(group_id, t, *p), None))
            .collect();
        recs.push((records::group_key(group_id), None));
        recs
    }

    /// KIP-211 offset expiry: offsets of an Empty consumer group expire
    /// `offsets.retention.minutes` after the group became empty; offsets of a group
    /// that only commits (no protocol type) expire that long after their commit; an
    /// explicit v1 expiry timestamp wins. An Empty group left without offsets is removed.
    pub(crate) fn expire_offsets(&mut self, now: i64) -> Vec<OffsetsRecord> {
        let retention = self.config.offsets_retention_ms;
        let mut recs = Vec::new();
        let mut gone = Vec::new();
        for g in self.groups.values_mut() {
            if g.state != GroupState::Empty {
                continue;
            }
            let standalone = g.protocol_type.is_none();
            let state_since = g.state_since;
            let id = g.id.clone();
            g.offsets.retain(|(topic, partition), v| {
                let expired = if v.expire_timestamp >= 0 {
                    v.expire_timestamp <= now
                } else if standalone || state_since < 0 {
                    // Group records before v2 carry no state timestamp: Kafka counts
                    // from the commit then.
                    v.commit_timestamp.saturating_add(retention) <= now
                } else {
                    state_since.saturating_add(retention) <= now
                };
                if expired {
                    recs.push((records::offset_key(&id, topic, *partition), None));
                }
                !expired
            });
            if g.offsets.is_empty() && g.members.is_empty() && g.pending_members.is_empty() {
                gone.push(id);
            }
        }
        for id in gone {
            // Its offsets are gone already, so only the group key's tombstone is left,
            // and only a group that ever formed a generation has a group record.
            let group_was_written = self.groups.get(&id).is_some_and(|g| g.generation > 0);
            let tombstones = self.remove_group(&id);
            if group_was_written {
                recs.extend(tombstones);
            }
        }
        recs
    }
}

/// Kafka `ClassicGroup.validateOffsetCommit` (in its order of checks); refreshes the
/// member's session on success.
/// Kafka's `validateOffsetCommit`; `transactional` commits (TxnOffsetCommit) are also
/// taken while the group completes a rebalance, as Kafka takes them.
pub(crate) fn validate_offset_commit<R>(
    g: &mut Group<R>,
    req: &OffsetCommit,
    transactional: bool,
    now: i64,
) -> Option<ResponseError> {
    if g.state == GroupState::Dead {
        return Some(ResponseError::CoordinatorNotAvailable);
    }
    if req.generation_id < 0 && g.state == GroupState::Empty {
        // The admin client, or a consumer that assigns partitions itself.
        return None;
    }
    if req.generation_id >= 0 || !req.member_id.is_empty() || req.group_instance_id.is_some() {
        match req.group_instance_id.as_deref() {
            Some(instance) => match g.static_member_id(instance) {
                None => return Some(ResponseError::UnknownMemberId),
                Some(id) if id != req.member_id => return Some(ResponseError::FencedInstanceId),
                Some(_) => {}
            },
            None if g.pending_members.contains_key(&req.member_id) => {
                return Some(ResponseError::RebalanceInProgress)
            }
            None if g.member(&req.member_id).is_none() => {
                return Some(ResponseError::UnknownMemberId)
            }
            None => {}
        }
        if req.generation_id != g.generation {
            return Some(ResponseError::IllegalGeneration);
        }
    } else if g.state != GroupState::Empty {
        // No member id and no generation: only an empty group takes such commits.
        return Some(ResponseError::UnknownMemberId);
    }
    if !transactional && g.state == GroupState::CompletingRebalance {
        // The member knows the new generation but has no assignment yet.
        return Some(ResponseError::RebalanceInProgress);
    }
    if let Some(m) = g.member_mut(&req.member_id) {
        m.heartbeat_deadline = now + i64::from(m.session_timeout_ms);
    }
    None
}

/// The stored value and the `__consumer_offsets` record of one committed partition.
/// Errors: OFFSET_METADATA_TOO_LARGE past `offset.metadata.max.bytes`.
pub(crate) fn offset_record(
    metadata_max_bytes: usize,
    group_id: &str,
    p: CommitPartition,
    now: i64,
    expire_timestamp: i64,
) -> Result<(OffsetValue, OffsetsRecord), ResponseError> {
    let metadata = p.metadata.unwrap_or_default();
    if metadata.len() > metadata_max_bytes {
        return Err(ResponseError::OffsetMetadataTooLarge);
    }
    let value = OffsetValue {
        offset: p.offset,
        leader_epoch: p.leader_epoch,
        metadata,
        commit_timestamp: now,
        expire_timestamp,
    };
    let record = (
        records::offset_key(group_id, &p.topic, p.partition),
        Some(records::offset_value(&value)),
    );
    Ok((value, record))
}
