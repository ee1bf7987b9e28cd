//! The runtime around the transaction coordinator state machines
//! ([`moldau_coordinator::txn`]): one [`TxnShardRuntime`] per `__transaction_state`
//! partition this broker leads, the appends and marker writes their effects ask for,
//! and the timer task that aborts timed-out transactions and expires idle ids.
//!
//! As for groups, a state-machine call and the append of the record it returns happen
//! under the shard's lock, so the log holds transitions in the order they were made;
//! `write_done` runs once the append is fsynced. Markers are written off the lock by a
//! task per transaction, retried until every partition took them (a partition that no
//! longer exists is skipped, as Kafka drops markers for deleted partitions), and then
//! the shard writes the transaction's Complete* state.
//!
//! A shard is loaded by replaying its partition (Kafka
//! `TransactionStateManager.loadTransactionMetadata`); transactions found prepared get
//! their markers written again.

use crate::broker::Broker;
use crate::partition::Partition;
use crate::producer_ids::ProducerIdManager;
use crate::replay::{replay_partition, Replayed};
use crate::replica_manager::{now_ms, ReplicaManager};
use crate::shard_map::{create_internal_topic, ShardMap, ShardOf};
use crate::txn_markers::{write_markers, Markers};
use moldau_coordinator::txn::{
    DescribedTxn, InitProducerId, TxnConfig, TxnEffect, TxnListing, TxnReply, TxnShard, WriteToken,
    TRANSACTION_STATE_TOPIC,
};
use moldau_metadata::MetadataImage;
use moldau_protocol::batch;
use moldau_protocol::error::ResponseError;
use moldau_storage::AppendOrigin;
use parking_lot::{Mutex, RwLock};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use tokio::sync::{oneshot, Notify};

/// Where a parked request's reply goes.
pub type TxnResponder = oneshot::Sender<TxnReply>;

type Effects = Vec<TxnEffect<TxnResponder>>;

/// The transactional ids of one `__transaction_state` partition.
pub struct TxnShardRuntime {
    partition: Arc<Partition>,
    state: Mutex<TxnShard<TxnResponder>>,
    /// Effects produced outside a request (at load): run by the timer task.
    deferred: Mutex<Effects>,
    /// Set when the shard's partition left this broker: marker tasks stop retrying.
    dropped: AtomicBool,
}

impl ShardOf for TxnShardRuntime {
    fn partition(&self) -> &Arc<Partition> {
        &self.partition
    }
}

/// All transaction coordinator shards on this broker.
pub struct TxnCoordinator {
    config: TxnConfig,
    shards: ShardMap<TxnShardRuntime>,
    /// Wakes the timer task when a deadline may have moved earlier or work was deferred.
    wake: Arc<Notify>,
    /// Producer ids, for transactional and idempotent producers alike.
    pub producer_ids: ProducerIdManager,
    /// The broker, for marker writes (set once it exists).
    broker: RwLock<Weak<Broker>>,
}

impl TxnCoordinator {
    /// An empty coordinator; [`TxnCoordinator::sync`] loads the shards.
    pub fn new(config: TxnConfig, broker_id: i32) -> Self {
        TxnCoordinator {
            config,
            shards: ShardMap::new(TRANSACTION_STATE_TOPIC),
            wake: Arc::new(Notify::new()),
            producer_ids: ProducerIdManager::new(broker_id),
            broker: RwLock::new(Weak::new()),
        }
    }

    /// Tells the coordinator its broker (needed to write markers).
    pub fn attach(&self, broker: &Arc<Broker>) {
        *self.broker.write() = Arc::downgrade(broker);
    }

    /// Follows the metadata image: loads a shard for every `__transaction_state`
    /// partition hosted here that has none yet (coordinator epoch = the partition's
    /// leader epoch), and drops shards whose partition is gone (writes and marker tasks
    /// in flight finish on the dropped shard; their replies still go out).
    pub fn sync(&self, image: &MetadataImage, replicas: &ReplicaManager) {
        let dropped = self
            .shards
            .sync(image, replicas, |partition| self.load(partition));
        for shard in dropped {
            shard.dropped.store(true, Ordering::Relaxed);
        }
        self.wake.notify_one();
    }

    /// The shard coordinating `transactional_id`. Errors: COORDINATOR_NOT_AVAILABLE
    /// before `__transaction_state` exists, NOT_COORDINATOR if its partition is not led
    /// here.
    pub fn shard_for(&self, transactional_id: &str) -> Result<Arc<TxnShardRuntime>, ResponseError> {
        self.shards.shard_for(transactional_id)
    }

    /// Every shard, by partition.
    pub fn shards(&self) -> Vec<Arc<TxnShardRuntime>> {
        self.shards.all()
    }

    /// The `__transaction_state` partition count, 0 before the topic exists.
    pub fn partition_count(&self) -> i32 {
        self.shards.partition_count()
    }

    /// Creates `__transaction_state` (compacted, `transaction.state.log.*` settings)
    /// if it does not exist, as Kafka does on the first FindCoordinator for a
    /// transactional id, and loads its shards.
    pub async fn ensure_topic(&self, broker: &Broker) {
        create_internal_topic(
            broker,
            TRANSACTION_STATE_TOPIC,
            broker.config.transaction_state_log_num_partitions,
            broker.config.transaction_state_log_replication_factor,
            broker.config.transaction_state_log_segment_bytes,
            "uncompressed",
            &[(
                "min.insync.replicas",
                broker
                    .config
                    .cluster
                    .transaction_state_log_min_isr
                    .to_string(),
            )],
        )
        .await;
    }

    /// InitProducerId for a transactional id (KIP-98; KIP-360 when `expected` is set).
    /// A fresh producer id, when needed, is taken under the shard's lock: call
    /// `producer_ids.prefetch` first, on a blocking thread, so that never writes the
    /// metadata log.
    pub async fn init_producer_id(
        self: &Arc<Self>,
        broker: &Broker,
        req: InitProducerId,
    ) -> Result<(i64, i16), ResponseError> {
        let shard = self.shard_for(&req.transactional_id)?;
        let reply = self
            .call(&shard, |sm, now, tx| {
                let mut alloc = || broker.txns.producer_ids.take();
                sm.init_producer_id(now, req, &mut alloc, tx)
            })
            .await;
        match reply {
            Some(TxnReply::InitProducerId(r)) => r,
            _ => Err(ResponseError::NotCoordinator),
        }
    }

    /// Runs a state-machine call that may park its reply, and waits for the reply.
    /// `None` if the shard went away before answering.
    pub async fn call(
        self: &Arc<Self>,
        shard: &Arc<TxnShardRuntime>,
        f: impl FnOnce(&mut TxnShard<TxnResponder>, i64, TxnResponder) -> Effects,
    ) -> Option<TxnReply> {
        let (tx, rx) = oneshot::channel();
        {
            let mut state = shard.state.lock();
            let before = state.next_deadline();
            let fx = f(&mut state, now_ms(), tx);
            self.run(shard, &mut state, fx);
            if state.next_deadline() < before {
                self.wake.notify_one();
            }
        }
        rx.await.ok()
    }

    /// Each id's transaction as its shard describes it (DescribeTransactions): its
    /// coordinator's error (COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR) or
    /// TRANSACTIONAL_ID_NOT_FOUND when it has none.
    pub fn describe(&self, ids: &[String]) -> Vec<(String, Result<DescribedTxn, ResponseError>)> {
        ids.iter()
            .map(|id| {
                let found = self.shard_for(id).and_then(|shard| {
                    let state = shard.state.lock();
                    state
                        .describe(std::slice::from_ref(id))
                        .into_iter()
                        .next()
                        .map_or(Err(ResponseError::TransactionalIdNotFound), |d| d.result)
                });
                (id.clone(), found)
            })
            .collect()
    }

    /// Every transaction on this broker matching the filters (ListTransactions).
    pub fn list(
        &self,
        states: &[String],
        producer_ids: &[i64],
        duration_ms: i64,
    ) -> Vec<TxnListing> {
        let now = now_ms();
        self.shards()
            .iter()
            .flat_map(|s| s.state.lock().list(states, producer_ids, duration_ms, now))
            .collect()
    }

    /// Carries out effects under the shard's lock (`state` is the guarded state).
    fn run(
        self: &Arc<Self>,
        shard: &Arc<TxnShardRuntime>,
        state: &mut TxnShard<TxnResponder>,
        fx: Effects,
    ) {
        for effect in fx {
            match effect {
                TxnEffect::Reply(tx, reply) => {
                    let _ = tx.send(reply);
                }
                TxnEffect::Write { key, value, token } => {
                    if let Err(e) = self.write(shard, &key, value.as_deref(), token) {
                        let more = state.write_done(now_ms(), token, Err(e));
                        self.run(shard, state, more);
                    }
                }
                TxnEffect::WriteMarkers {
                    transactional_id,
                    producer_id,
                    producer_epoch,
                    coordinator_epoch,
                    commit,
                    partitions,
                } => {
                    let markers = Markers {
                        producer_id,
                        producer_epoch,
                        commit,
                        coordinator_epoch,
                    };
                    let (me, shard) = (self.clone(), shard.clone());
                    tokio::spawn(async move {
                        me.send_markers(&shard, transactional_id, markers, partitions)
                            .await
                    });
                }
            }
        }
    }

    /// Appends one record; once it is durable, `write_done` runs under the lock. An
    /// append that fails at once comes back as the error for `write_done`.
    fn write(
        self: &Arc<Self>,
        shard: &Arc<TxnShardRuntime>,
        key: &[u8],
        value: Option<&[u8]>,
        token: WriteToken,
    ) -> Result<(), ResponseError> {
        let now = now_ms();
        let mut bytes = batch::build_batch(0, now, &[(Some(key), value)]);
        let end = match shard
            .partition
            .append(&mut bytes, None, now, AppendOrigin::Coordinator)
        {
            Ok((info, _)) => info.last_offset + 1,
            Err(e) => {
                tracing::error!(partition = %shard.partition.tp, error = %e, "transaction log write failed");
                return Err(ResponseError::NotCoordinator);
            }
        };
        let (me, shard) = (self.clone(), shard.clone());
        tokio::spawn(async move {
            let result = shard.partition.wait_committed(end, std::time::Duration::from_secs(30)).await.map_err(|e| {
                tracing::error!(partition = %shard.partition.tp, error = %e, "transaction log fsync failed");
                ResponseError::NotCoordinator
            });
            let mut state = shard.state.lock();
            let more = state.write_done(now_ms(), token, result);
            me.run(&shard, &mut state, more);
            // A completed write may arm a timeout or a retry: let the timers see it.
            me.wake.notify_one();
        });
        Ok(())
    }

    /// Writes a transaction's markers until every partition took them, then lets the
    /// shard complete the transaction.
    async fn send_markers(
        self: Arc<Self>,
        shard: &Arc<TxnShardRuntime>,
        transactional_id: String,
        markers: Markers,
        mut partitions: Vec<(String, i32)>,
    ) {
        let Some(broker) = self.broker.read().upgrade() else {
            return;
        };
        let mut backoff = std::time::Duration::from_millis(20);
        loop {
            let outcomes = write_markers(&broker, &markers, &partitions, now_ms()).await;
            let mut retry = Vec::new();
            for (p, outcome) in partitions.into_iter().zip(outcomes) {
                match outcome {
                    None => {}
                    Some(ResponseError::UnknownTopicOrPartition)
                        if !partition_exists(&broker, &p.0, p.1) =>
                    {
                        tracing::warn!(topic = %p.0, partition = p.1, "partition gone; marker dropped");
                    }
                    Some(
                        e @ (ResponseError::InvalidProducerEpoch
                        | ResponseError::TransactionCoordinatorFenced),
                    ) => {
                        // A newer epoch or coordinator already wrote there: this marker
                        // is obsolete (Kafka drops it as well).
                        tracing::warn!(topic = %p.0, partition = p.1, error = ?e, "marker not needed");
                    }
                    Some(e) => {
                        tracing::warn!(topic = %p.0, partition = p.1, error = ?e, "marker write failed; retrying");
                        retry.push(p);
                    }
                }
            }
            if retry.is_empty() {
                break;
            }
            if shard.dropped.load(Ordering::Relaxed) {
                return; // the partition's next owner loads the state and resends
            }
            partitions = retry;
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(std::time::Duration::from_secs(5));
        }
        if shard.dropped.load(Ordering::Relaxed) {
            return;
        }
        let mut state = shard.state.lock();
        let more = state.markers_written(
            now_ms(),
            &transactional_id,
            markers.producer_id,
            markers.producer_epoch,
        );
        self.run(shard, &mut state, more);
        self.wake.notify_one();
    }

    /// Drives every shard's timers (transaction timeouts, id expiry) and runs deferred
    /// effects until `shutdown` flips.
    pub async fn run_timers(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        loop {
            let now = now_ms();
            let mut next = now + 60_000;
            for shard in self.shards() {
                let deferred = std::mem::take(&mut *shard.deferred.lock());
                let mut state = shard.state.lock();
                self.run(&shard, &mut state, deferred);
                if state.next_deadline() <= now {
                    let fx = state.tick(now);
                    self.run(&shard, &mut state, fx);
                }
                next = next.min(state.next_deadline());
            }
            let wait = std::time::Duration::from_millis((next - now_ms()).clamp(1, 60_000) as u64);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.wake.notified() => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    /// Replays a `__transaction_state` partition into a new shard; its `finish_load`
    /// effects (markers of prepared transactions) are deferred to the timer task.
    fn load(&self, partition: Arc<Partition>) -> TxnShardRuntime {
        let now = now_ms();
        let mut state = TxnShard::new(self.config.clone(), partition.leader_epoch(), now);
        let (records, skipped) = replay_partition(&partition, |item| match item {
            Replayed::Record { key, value, .. } => state.replay(key, value),
            Replayed::Marker { .. } => Ok(()),
        });
        let deferred = state.finish_load(now);
        if records + skipped > 0 {
            tracing::info!(partition = %partition.tp, records, skipped, "loaded transactions");
        }
        TxnShardRuntime {
            partition,
            state: Mutex::new(state),
            deferred: Mutex::new(deferred),
            dropped: AtomicBool::new(false),
        }
    }
}

/// Whether the metadata image still has `topic`-`partition` (a marker for a partition
/// that exists but is not open here, e.g. a log that failed to open, is retried).
fn partition_exists(broker: &Broker, topic: &str, partition: i32) -> bool {
    broker
        .image()
        .topics
        .get(topic)
        .is_some_and(|t| t.partitions.contains_key(&partition))
}
