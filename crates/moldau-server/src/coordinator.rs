//! The runtime around the group coordinator state machines ([`moldau_coordinator`]):
//! one [`Shard`] per `__consumer_offsets` partition this broker leads, the appends
//! their effects ask for, and the timer task that drives their deadlines.
//!
//! A request runs its state-machine call under the shard's lock, and the records it
//! returns are appended to the partition under that same lock, so the log holds them in
//! the order the state machine produced them. Replies that depend on a write are sent
//! once it is fsynced (the partition's group commit), off the lock.
//!
//! A shard is loaded by replaying its partition from the log start (Kafka's
//! `GroupMetadataManager.loadGroupsAndOffsets`) when the broker starts or when the
//! topic is created; until then requests for its groups get COORDINATOR_LOAD_IN_PROGRESS.

use crate::broker::Broker;
use crate::partition::Partition;
use crate::replay::{replay_partition, Replayed};
use crate::replica_manager::{now_ms, ReplicaManager};
use crate::shard_map::{create_internal_topic, ShardMap, ShardOf};
use moldau_coordinator::{Effect, GroupConfig, GroupShard, Reply, Undo, OFFSETS_TOPIC};
use moldau_metadata::MetadataImage;
use moldau_protocol::batch::{self, ControlRecordType, ProducerFields};
use moldau_protocol::error::ResponseError;
use moldau_storage::AppendOrigin;
use parking_lot::Mutex;
use std::sync::Arc;
use tokio::sync::{oneshot, Notify};

/// Where a parked request's reply goes.
pub type Responder = oneshot::Sender<Reply>;

/// The groups of one `__consumer_offsets` partition.
pub struct Shard {
    partition: Arc<Partition>,
    /// The coordinator's timer wake-up, for changes made off a request (a failed
    /// fsync's undo).
    wake: Arc<Notify>,
    state: Mutex<GroupShard<Responder>>,
}

/// All shards on this broker.
pub struct GroupCoordinator {
    config: GroupConfig,
    /// By `__consumer_offsets` partition.
    shards: ShardMap<Shard>,
    /// Wakes the timer task when a deadline may have moved earlier.
    wake: Arc<Notify>,
}

impl GroupCoordinator {
    /// An empty coordinator; [`GroupCoordinator::sync`] loads the shards.
    pub fn new(config: GroupConfig) -> Self {
        GroupCoordinator {
            config,
            shards: ShardMap::new(OFFSETS_TOPIC),
            wake: Arc::new(Notify::new()),
        }
    }

    /// Follows the metadata image: loads a shard for every `__consumer_offsets`
    /// partition hosted here that has none yet, and drops shards whose partition is
    /// gone (their parked requests then fail with COORDINATOR_NOT_AVAILABLE).
    pub fn sync(&self, image: &MetadataImage, replicas: &ReplicaManager) {
        let dropped = self.shards.sync(image, replicas, |partition| {
            load(&self.config, partition, self.wake.clone())
        });
        for shard in dropped {
            // Handlers waiting on this shard hold it alive; emptying its state drops
            // their responders, so they answer NOT_COORDINATOR instead of hanging.
            self.release(&shard);
        }
        self.wake.notify_one();
    }

    /// The shard coordinating `group_id`. Errors: COORDINATOR_NOT_AVAILABLE before
    /// `__consumer_offsets` exists, NOT_COORDINATOR if its partition is not led here.
    pub fn shard_for(&self, group_id: &str) -> Result<Arc<Shard>, ResponseError> {
        self.shards.shard_for(group_id)
    }

    /// Every shard (ListGroups asks them all).
    pub fn shards(&self) -> Vec<Arc<Shard>> {
        self.shards.all()
    }

    /// A transaction marker of `producer_id` was written to `__consumer_offsets`
    /// partition `partition`: its pending transactional offsets there become committed
    /// (or are dropped on abort). Kafka's `GroupCoordinator.onTransactionCompleted`.
    pub fn complete_txn(&self, partition: i32, producer_id: i64, commit: bool) {
        if let Some(shard) = self.shards.get(partition) {
            shard.state.lock().complete_txn(producer_id, commit);
        }
    }

    /// The `__consumer_offsets` partition count, 0 before the topic exists.
    pub fn partition_count(&self) -> i32 {
        self.shards.partition_count()
    }

    /// Runs a state-machine call that may park its reply, and waits for the reply.
    /// `None` if the shard went away before answering.
    pub async fn call(
        &self,
        shard: &Arc<Shard>,
        f: impl FnOnce(&mut GroupShard<Responder>, i64, Responder) -> Vec<Effect<Responder>>,
    ) -> Option<Reply> {
        let (tx, rx) = oneshot::channel();
        {
            let mut state = shard.state.lock();
            let before = state.next_deadline();
            let fx = f(&mut state, now_ms(), tx);
            shard.run(&mut state, fx);
            self.wake_if_earlier(before, state.next_deadline());
        }
        rx.await.ok()
    }

    /// Runs a state-machine call that answers at once.
    pub fn with<T>(
        &self,
        shard: &Shard,
        f: impl FnOnce(&mut GroupShard<Responder>, i64) -> T,
    ) -> T {
        let mut state = shard.state.lock();
        let before = state.next_deadline();
        let out = f(&mut state, now_ms());
        self.wake_if_earlier(before, state.next_deadline());
        out
    }

    /// Wakes the timer task only when a shard's earliest deadline moved earlier: a
    /// heartbeat pushes deadlines later, and the task re-reads every shard whenever it
    /// wakes, so waking it for each request would cost a pass over all shards.
    fn wake_if_earlier(&self, before: i64, after: i64) {
        if after < before {
            self.wake.notify_one();
        }
    }

    /// Creates `__consumer_offsets` (compacted, `offsets.topic.*` settings) if it does
    /// not exist, as Kafka does on the first FindCoordinator, and loads its shards.
    pub async fn ensure_topic(&self, broker: &Broker) {
        create_internal_topic(
            broker,
            OFFSETS_TOPIC,
            broker.config.offsets_topic_num_partitions,
            broker.config.offsets_topic_replication_factor,
            broker.config.offsets_topic_segment_bytes,
            "producer",
            &[],
        )
        .await;
    }

    /// Drives every shard's timers until `shutdown` flips.
    pub async fn run_timers(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        loop {
            let now = now_ms();
            let mut next = now + 60_000;
            for shard in self.shards() {
                let mut state = shard.state.lock();
                if state.next_deadline() <= now {
                    let fx = state.tick(now);
                    shard.run(&mut state, fx);
                }
                next = next.min(state.next_deadline());
            }
            let wait = std::time::Duration::from_millis((next - now_ms()).clamp(1, 60_000) as u64);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.wake.notified() => {}
                _ = shutdown.changed() => {
                    self.release_parked();
                    return;
                }
            }
        }
    }

    /// Shutdown: drops every shard's state, so requests parked in JoinGroup or
    /// SyncGroup are answered NOT_COORDINATOR now instead of holding their connections
    /// open until the grace period ends. Everything acknowledged is already in the log.
    fn release_parked(&self) {
        for shard in self.shards() {
            self.release(&shard);
        }
    }

    /// Drops a shard's state (and with it every parked responder).
    fn release(&self, shard: &Shard) {
        let fresh = GroupShard::new(self.config.clone(), now_ms());
        drop(std::mem::replace(&mut *shard.state.lock(), fresh));
    }
}

impl ShardOf for Shard {
    fn partition(&self) -> &Arc<Partition> {
        &self.partition
    }
}

impl Shard {
    /// Carries out effects. Called with the state lock held (`state` is the guarded
    /// state) so appends keep the order the state machine produced them in.
    fn run(self: &Arc<Self>, state: &mut GroupShard<Responder>, fx: Vec<Effect<Responder>>) {
        for effect in fx {
            match effect {
                Effect::Reply(tx, reply) => {
                    let _ = tx.send(reply);
                }
                Effect::TxnWrite {
                    group_id,
                    producer_id,
                    producer_epoch,
                    records,
                    offsets,
                    replies,
                } => {
                    let producer = ProducerFields {
                        producer_id,
                        producer_epoch,
                        base_sequence: 0,
                        transactional: true,
                    };
                    match self.write(records, producer, replies, None) {
                        // Appended (the producer state accepted the epoch): stage the
                        // offsets; a refused append stages nothing.
                        Ok(()) => state.stage_txn_offsets(&group_id, producer_id, offsets),
                        Err((replies, _, error)) => fail(replies, error),
                    }
                }
                Effect::Write {
                    records,
                    replies,
                    undo,
                } => {
                    if let Err((replies, undo, error)) =
                        self.write(records, ProducerFields::NONE, replies, undo)
                    {
                        // The append itself failed: take the change back right away.
                        fail(replies, error);
                        if let Some(undo) = undo {
                            let more = state.undo(now_ms(), undo);
                            self.run(state, more);
                        }
                    }
                }
            }
        }
    }

    /// Appends `records` and, once they are durable, sends `replies`. If the fsync
    /// fails, the replies fail and `undo` runs under the lock. If the append fails, the
    /// replies and the undo come back to the caller (which holds the lock).
    #[allow(clippy::type_complexity)]
    fn write(
        self: &Arc<Self>,
        records: Vec<moldau_coordinator::OffsetsRecord>,
        producer: ProducerFields,
        replies: Vec<(Responder, Reply)>,
        undo: Option<Undo>,
    ) -> Result<(), (Vec<(Responder, Reply)>, Option<Undo>, ResponseError)> {
        if records.is_empty() {
            for (tx, reply) in replies {
                let _ = tx.send(reply);
            }
            return Ok(());
        }
        let now = now_ms();
        let kvs: Vec<batch::KeyValue<'_>> = records
            .iter()
            .map(|(k, v)| (Some(&k[..]), v.as_deref()))
            .collect();
        let mut bytes = batch::build_batch_with(0, now, &kvs, producer);
        let end = match self
            .partition
            .append(&mut bytes, None, now, AppendOrigin::Coordinator)
        {
            Ok((info, _)) => info.last_offset + 1,
            Err(e) => {
                tracing::warn!(partition = %self.partition.tp, error = %e, "coordinator write failed");
                let error = match e.response_error() {
                    // Refused by the producer state: the client learns why.
                    e @ (ResponseError::InvalidProducerEpoch
                    | ResponseError::ProducerFenced
                    | ResponseError::InvalidTxnState) => e,
                    _ => ResponseError::CoordinatorNotAvailable,
                };
                return Err((replies, undo, error));
            }
        };
        let shard = self.clone();
        tokio::spawn(async move {
            match shard
                .partition
                .wait_committed(end, std::time::Duration::from_secs(30))
                .await
            {
                Ok(()) => {
                    for (tx, reply) in replies {
                        let _ = tx.send(reply);
                    }
                }
                Err(e) => {
                    tracing::error!(partition = %shard.partition.tp, error = %e, "coordinator fsync failed");
                    fail(replies, ResponseError::CoordinatorNotAvailable);
                    if let Some(undo) = undo {
                        let mut state = shard.state.lock();
                        let more = state.undo(now_ms(), undo);
                        shard.run(&mut state, more);
                        shard.wake.notify_one();
                    }
                }
            }
        });
        Ok(())
    }
}

/// Answers replies whose write failed with `error` (COORDINATOR_NOT_AVAILABLE for
/// storage failures, retriable: the client finds the coordinator again and retries).
fn fail(replies: Vec<(Responder, Reply)>, error: ResponseError) {
    for (tx, mut reply) in replies {
        reply.fail(error);
        let _ = tx.send(reply);
    }
}

/// Replays a `__consumer_offsets` partition into a new shard. Offset commits from
/// transactional batches stay pending until their producer's marker.
fn load(config: &GroupConfig, partition: Arc<Partition>, wake: Arc<Notify>) -> Shard {
    let now = now_ms();
    let mut state = GroupShard::new(config.clone(), now);
    let (records, skipped) = replay_partition(&partition, |item| match item {
        Replayed::Record { header, key, value } if header.is_transactional() => {
            state.replay_txn(header.producer_id, key, value, now)
        }
        Replayed::Record { key, value, .. } => state.replay(key, value, now),
        Replayed::Marker { producer_id, kind } => {
            state.complete_txn(producer_id, kind == ControlRecordType::Commit);
            Ok(())
        }
    });
    state.finish_load(now);
    if records + skipped > 0 {
        tracing::info!(
            partition = %partition.tp,
            records,
            skipped,
            groups = state.group_count(),
            "loaded groups"
        );
    }
    Shard {
        partition,
        wake,
        state: Mutex::new(state),
    }
}
