//! Offsets committed inside transactions (TxnOffsetCommit, KIP-98; member checks from
//! KIP-447): written to `__consumer_offsets` as a transactional batch of the producer,
//! held pending per producer id, and made visible (or dropped) when the transaction's
//! commit (or abort) marker lands on this shard's partition.

use crate::api::*;
use crate::group::Group;
use crate::offsets::{offset_record, validate_offset_commit};
use crate::records::{self, OffsetValue};
use crate::shard::{Effects, GroupShard};
use moldau_protocol::error::ResponseError;

impl<R> GroupShard<R> {
    /// Handles a TxnOffsetCommit (Kafka `handleTxnCommitOffsets`): an unknown group is
    /// created (a producer may commit for a group no consumer joined yet); member and
    /// generation are checked as for OffsetCommit, except that a group completing a
    /// rebalance takes the commit. Nothing is visible to OffsetFetch until the
    /// producer's commit marker ([`GroupShard::complete_txn`]), and nothing is staged
    /// until the batch is appended ([`GroupShard::stage_txn_offsets`]).
    pub fn txn_commit(&mut self, now: i64, req: TxnOffsetCommit, reply: R) -> Effects<R> {
        let fail_all = |e: ResponseError, parts: &[CommitPartition]| {
            Reply::Commit(
                parts
                    .iter()
                    .map(|p| (p.topic.clone(), p.partition, Some(e)))
                    .collect(),
            )
        };
        if req.group_id.is_empty() {
            let r = fail_all(ResponseError::InvalidGroupId, &req.partitions);
            return vec![Effect::Reply(reply, r)];
        }
        let group = self
            .groups
            .entry(req.group_id.clone())
            .or_insert_with(|| Group::new(req.group_id.clone(), now));
        let check = OffsetCommit {
            group_id: req.group_id.clone(),
            generation_id: req.generation_id,
            member_id: req.member_id.clone(),
            group_instance_id: req.group_instance_id.clone(),
            retention_time_ms: -1,
            api_version: 0,
            partitions: Vec::new(),
        };
        if let Some(e) = validate_offset_commit(group, &check, true, now) {
            return vec![Effect::Reply(reply, fail_all(e, &req.partitions))];
        }
        let mut results = Vec::with_capacity(req.partitions.len());
        let mut recs = Vec::new();
        let mut pending = Vec::new();
        for p in req.partitions {
            let (topic, partition) = (p.topic.clone(), p.partition);
            let max = self.config.offset_metadata_max_bytes;
            match offset_record(max, &req.group_id, p, now, -1) {
                Err(e) => results.push((topic, partition, Some(e))),
                Ok((value, record)) => {
                    recs.push(record);
                    pending.push(((topic.clone(), partition), value));
                    results.push((topic, partition, None));
                }
            }
        }
        if recs.is_empty() {
            return vec![Effect::Reply(reply, Reply::Commit(results))];
        }
        vec![Effect::TxnWrite {
            group_id: req.group_id,
            producer_id: req.producer_id,
            producer_epoch: req.producer_epoch,
            records: recs,
            offsets: pending,
            replies: vec![(reply, Reply::Commit(results))],
        }]
    }

    /// Records the offsets of a TxnOffsetCommit whose batch was appended (the runtime
    /// calls this only after the partition took it, so a request the log refused — a
    /// fenced zombie's stale epoch — never touches the live transaction's offsets).
    pub fn stage_txn_offsets(
        &mut self,
        group_id: &str,
        producer_id: i64,
        offsets: Vec<((String, i32), OffsetValue)>,
    ) {
        let Some(group) = self.groups.get_mut(group_id) else {
            return;
        };
        group
            .pending_txn_offsets
            .entry(producer_id)
            .or_default()
            .extend(offsets);
        self.txn_groups
            .entry(producer_id)
            .or_default()
            .insert(group_id.to_owned());
    }

    /// A transaction marker of `producer_id` reached this shard's partition (written by
    /// the transaction coordinator, or met during replay): on `commit` its pending
    /// offsets become committed offsets, else they are dropped (Kafka
    /// `handleTxnCompletion`). Returns how many offsets changed state.
    pub fn complete_txn(&mut self, producer_id: i64, commit: bool) -> usize {
        let Some(groups) = self.txn_groups.remove(&producer_id) else {
            return 0;
        };
        let mut n = 0;
        for id in groups {
            let Some(g) = self.groups.get_mut(&id) else {
                continue;
            };
            let Some(pending) = g.pending_txn_offsets.remove(&producer_id) else {
                continue;
            };
            n += pending.len();
            if commit {
                g.offsets.extend(pending);
            }
        }
        n
    }

    /// Replay of a record from a transactional batch of `producer_id`: offset commits
    /// go pending until the marker ([`GroupShard::complete_txn`]); anything else is
    /// applied as [`GroupShard::replay`] would.
    pub fn replay_txn(
        &mut self,
        producer_id: i64,
        key: &[u8],
        value: Option<&[u8]>,
        now: i64,
    ) -> Result<(), crate::CoordinatorError> {
        let (
            records::RecordKey::Offset {
                group,
                topic,
                partition,
            },
            Some(v),
        ) = (records::decode_key(key)?, value)
        else {
            return self.replay(key, value, now);
        };
        let value = records::decode_offset_value(v)?;
        self.groups
            .entry(group.clone())
            .or_insert_with(|| Group::new(group.clone(), now))
            .pending_txn_offsets
            .entry(producer_id)
            .or_default()
            .insert((topic, partition), value);
        self.txn_groups
            .entry(producer_id)
            .or_default()
            .insert(group);
        Ok(())
    }

    /// Whether `(topic, partition)` of `group_id` has an offset waiting for a
    /// transaction to end: OffsetFetch with `require_stable` (v7+, KIP-447) answers
    /// UNSTABLE_OFFSET_COMMIT for it so the consumer retries.
    pub fn has_pending_txn_offset(&self, group_id: &str, topic: &str, partition: i32) -> bool {
        self.groups.get(group_id).is_some_and(|g| {
            let key = (topic.to_owned(), partition);
            g.pending_txn_offsets.values().any(|m| m.contains_key(&key))
        })
    }
}
