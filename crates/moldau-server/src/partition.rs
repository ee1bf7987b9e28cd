//! One partition replica hosted by this broker: its [`Log`], its replica state
//! ([`moldau_partition::ReplicaState`]: role, leader epoch, ISR, follower positions,
//! high watermark), the group commit that makes appends durable, and the signals that
//! wake long-polling fetches and `acks=-1` producers.
//!
//! As leader it takes produce appends (stamped with its leader epoch), serves consumer
//! fetches below the high watermark and follower fetches up to the log end offset, and
//! advances the high watermark as the ISR's durable positions move. As follower it takes
//! the leader's batches as they are. Positions count only fsynced data (DESIGN.md,
//! "Durable by default, also replicated"), so a record below the high watermark is on
//! the disk of every ISR member.
//!
//! Lock order: the group-commit state (`sync`), then the log, then the replica state.

use crate::config::TopicSettings;
use moldau_partition::{Action, IsrProposal, PartitionAssignment, ReplicaState};
use moldau_protocol::batch::{self, ControlRecordType};
use moldau_protocol::error::ResponseError;
use moldau_storage::{
    AbortedTxn, AppendOrigin, FetchDataInfo, Log, LogAppendInfo, Result as StorageResult,
    StorageError,
};
use moldau_types::TopicPartition;
use parking_lot::{Mutex, RwLock};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use uuid::Uuid;

/// Pause before proposing another ISR change after one was refused or failed, ms.
const ISR_RETRY_BACKOFF_MS: i64 = 1_000;

/// Which records a fetch may see (Fetch `isolation_level`, KIP-98).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// 0: everything up to the high watermark, open and aborted transactions included.
    ReadUncommitted,
    /// 1: only up to the last stable offset, with the aborted transactions listed so
    /// the client drops their records.
    ReadCommitted,
}

/// Why a partition operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum PartitionError {
    /// This broker does not lead the partition (any more).
    #[error("this broker is not the leader")]
    NotLeader,
    /// The ISR is smaller than `min.insync.replicas`.
    #[error("the ISR has {isr} member(s), below min.insync.replicas={min}")]
    NotEnoughReplicas {
        /// ISR size.
        isr: usize,
        /// `min.insync.replicas`.
        min: usize,
    },
    /// The ISR fell below `min.insync.replicas` after the batch was written.
    #[error(
        "the ISR shrank to {isr} member(s), below min.insync.replicas={min}, after the append"
    )]
    NotEnoughReplicasAfterAppend {
        /// ISR size.
        isr: usize,
        /// `min.insync.replicas`.
        min: usize,
    },
    /// The batch was not committed in time.
    #[error("not replicated within {0} ms")]
    Timeout(u64),
    /// The log failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl PartitionError {
    /// The Kafka error a client gets.
    pub fn response_error(&self) -> ResponseError {
        match self {
            PartitionError::NotLeader => ResponseError::NotLeaderOrFollower,
            PartitionError::NotEnoughReplicas { .. } => ResponseError::NotEnoughReplicas,
            PartitionError::NotEnoughReplicasAfterAppend { .. } => {
                ResponseError::NotEnoughReplicasAfterAppend
            }
            PartitionError::Timeout(_) => ResponseError::RequestTimedOut,
            PartitionError::Storage(e) => e.response_error(),
        }
    }
}

/// A hosted partition.
pub struct Partition {
    /// Topic and index.
    pub tp: TopicPartition,
    /// Topic id (KIP-516).
    pub topic_id: Uuid,
    log: RwLock<Log>,
    settings: RwLock<TopicSettings>,
    replica: Mutex<ReplicaState>,
    /// Notified after every append; follower fetches long-poll on it.
    appended: Notify,
    /// Notified when the high watermark advances or the role changes: consumer fetches
    /// long-poll on it, `acks=-1` producers wait on it.
    committed: Notify,
    sync: Mutex<SyncState>,
    synced: Notify,
}

#[derive(Default)]
struct SyncState {
    in_progress: bool,
    /// Appends arrived while a round ran: run another one right after it.
    again: bool,
}

/// Offsets of a partition at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionOffsets {
    /// First offset still in the log (inclusive).
    pub log_start_offset: i64,
    /// High watermark: end of what consumers may read (exclusive).
    pub high_watermark: i64,
    /// Last stable offset: end of what `read_committed` consumers may read (exclusive;
    /// at most the high watermark).
    pub last_stable_offset: i64,
    /// Log end offset: next offset to assign (exclusive).
    pub log_end_offset: i64,
}

/// The offsets of `log` with high watermark `hw` (clamped to the log). The last stable
/// offset is the first offset of the earliest open transaction, capped by the high
/// watermark and never below the log start (Kafka `UnifiedLog.lastStableOffset`,
/// `maybeIncrementFirstUnstableOffset`).
fn offsets_of(log: &Log, hw: i64) -> PartitionOffsets {
    let high_watermark = hw.clamp(log.log_start_offset(), log.log_end_offset());
    PartitionOffsets {
        log_start_offset: log.log_start_offset(),
        high_watermark,
        last_stable_offset: log
            .first_unstable_offset()
            .map_or(high_watermark, |f| f.min(high_watermark))
            .max(log.log_start_offset()),
        log_end_offset: log.log_end_offset(),
    }
}

/// A follower's fetch as the leader sees it (Fetch with `replica_id >= 0`).
#[derive(Debug, Clone, Copy)]
pub struct FollowerFetch {
    /// The follower's broker id.
    pub replica: i32,
    /// Its fetch offset: its durable log end offset.
    pub fetch_offset: i64,
    /// The epoch of its last fetched batch (-1 if unknown).
    pub last_fetched_epoch: i32,
}

impl Partition {
    /// Wraps an opened log, hosted on broker `local`, starting from high watermark
    /// `high_watermark` (from the `replication-offset-checkpoint`).
    pub fn new(
        tp: TopicPartition,
        topic_id: Uuid,
        log: Log,
        settings: TopicSettings,
        local: i32,
        high_watermark: i64,
    ) -> Self {
        let hw = high_watermark.min(log.log_end_offset());
        Self {
            tp,
            topic_id,
            log: RwLock::new(log),
            settings: RwLock::new(settings),
            replica: Mutex::new(ReplicaState::new(local, hw)),
            appended: Notify::new(),
            committed: Notify::new(),
            sync: Mutex::new(SyncState::default()),
            synced: Notify::new(),
        }
    }

    /// The produce-side settings (`max.message.bytes`, timestamp type, …).
    pub fn settings(&self) -> TopicSettings {
        *self.settings.read()
    }

    /// Applies config changes: new settings and log config. Takes the write locks only
    /// for what actually changed.
    pub fn reconfigure(&self, log_config: moldau_storage::LogConfig, settings: TopicSettings) {
        if *self.settings.read() != settings {
            *self.settings.write() = settings;
        }
        if self.log.read().config() != &log_config {
            self.log.write().set_config(log_config);
        }
    }

    /// Applies the partition's committed metadata: becomes leader (recording the new
    /// leader epoch's start in the leader-epoch cache, Kafka `makeLeader`) or follower,
    /// or adopts a new ISR. Wakes everyone waiting on the partition, so producers waiting
    /// under a lost leadership get NOT_LEADER_OR_FOLLOWER. Returns the actions (the
    /// high watermark may move) and whether this call made the broker leader of a new
    /// epoch.
    pub fn apply_metadata(
        &self,
        assignment: &PartitionAssignment,
        now_ms: i64,
    ) -> (Vec<Action>, bool) {
        let mut log = self.log.write();
        let mut replica = self.replica.lock();
        // An image applied late, from before a leadership change this replica already
        // saw, changes nothing: not the role, and not the epoch cache either (assigning
        // an older epoch would drop the newer entries).
        if assignment.leader_epoch < replica.leader_epoch() {
            return (Vec::new(), false);
        }
        let was = (
            replica.is_leader(),
            replica.leader_epoch(),
            replica.leader(),
        );
        let new_leader_epoch =
            assignment.leader == replica.local() && (!was.0 || assignment.leader_epoch != was.1);
        if new_leader_epoch {
            if let Err(e) = log.assign_epoch_start(assignment.leader_epoch) {
                // A leader without its epoch in the cache would answer divergence checks
                // wrongly: refuse every write to this log until it is reopened.
                tracing::error!(partition = %self.tp, error = %e, "cannot record the new leader epoch; log poisoned");
                log.poison();
            }
        }
        let actions = replica.apply_metadata(
            assignment,
            log.log_end_offset(),
            log.recovery_point(),
            now_ms,
        );
        let changed = (
            replica.is_leader(),
            replica.leader_epoch(),
            replica.leader(),
        ) != was;
        drop(replica);
        drop(log);
        if changed {
            tracing::info!(
                partition = %self.tp,
                leader = assignment.leader,
                leader_epoch = assignment.leader_epoch,
                isr = ?assignment.isr,
                "{}",
                if new_leader_epoch { "leading the partition" } else { "following the partition" }
            );
            self.committed.notify_waiters();
            self.appended.notify_waiters();
        }
        self.act(&actions);
        (actions, new_leader_epoch)
    }

    fn act(&self, actions: &[Action]) {
        if actions
            .iter()
            .any(|a| matches!(a, Action::HighWatermark(_)))
        {
            self.committed.notify_waiters();
        }
    }

    /// While leading, whether the high watermark is still below the log end offset this
    /// leader epoch began at: the followers have not yet fetched what this broker had
    /// when it took over, so the high watermark may be older than the one clients saw
    /// from the previous leader (KIP-207).
    pub fn high_watermark_behind_epoch_start(&self) -> bool {
        let replica = self.replica.lock();
        replica
            .epoch_start_offset()
            .is_some_and(|start| start > replica.high_watermark())
    }

    /// The current leader epoch (-1 before any metadata).
    pub fn leader_epoch(&self) -> i32 {
        self.replica.lock().leader_epoch()
    }

    /// Whether this broker leads the partition.
    pub fn is_leader(&self) -> bool {
        self.replica.lock().is_leader()
    }

    /// The leader's broker id (-1 if none).
    pub fn leader(&self) -> i32 {
        self.replica.lock().leader()
    }

    /// The committed ISR (empty unless leading).
    pub fn isr(&self) -> Vec<i32> {
        self.replica.lock().isr().to_vec()
    }

    /// Runs `f` on the replica state (for tests, metrics and the ISR manager).
    pub fn with_replica<T>(&self, f: impl FnOnce(&mut ReplicaState) -> T) -> T {
        f(&mut self.replica.lock())
    }

    /// Checks a request's `current_leader_epoch` (KIP-320): -1 skips the check; an
    /// older epoch is `FENCED_LEADER_EPOCH`, a newer one `UNKNOWN_LEADER_EPOCH` (this
    /// broker has not seen the metadata yet).
    pub fn check_leader_epoch(&self, current_leader_epoch: i32) -> Result<(), ResponseError> {
        let ours = self.leader_epoch();
        if current_leader_epoch < 0 || current_leader_epoch == ours {
            Ok(())
        } else if current_leader_epoch < ours {
            Err(ResponseError::FencedLeaderEpoch)
        } else {
            Err(ResponseError::UnknownLeaderEpoch)
        }
    }

    /// Log start offset, high watermark, last stable offset and log end offset.
    pub fn offsets(&self) -> PartitionOffsets {
        let log = self.log.read();
        let hw = self.replica.lock().high_watermark();
        offsets_of(&log, hw)
    }

    /// High watermark (exclusive).
    pub fn high_watermark(&self) -> i64 {
        self.offsets().high_watermark
    }

    /// Appends validated batches as leader (offsets assigned in place, stamped with the
    /// current leader epoch), then wakes follower fetches. `log_append_time_ms` is
    /// `Some` for LogAppendTime topics. Returns the append info and the log start offset
    /// after the append (Produce answers with it), read under the same lock.
    ///
    /// Batches with a producer id are checked against the partition's producer state
    /// (sequence, epoch, open transaction; see `moldau_storage::Log::append_with_origin`);
    /// a retried batch comes back as the original's offsets with `duplicate` set and
    /// writes nothing. `origin` is [`AppendOrigin::Coordinator`] for markers and
    /// transactional offset commits. Errors: [`PartitionError::NotLeader`], storage
    /// errors.
    ///
    /// Every append also starts (or queues) a group commit: a record becomes visible
    /// to consumers only once it is on the disk of every ISR member, so the leader
    /// keeps fsyncing in the background whatever the producer's `acks`.
    pub fn append(
        self: &Arc<Self>,
        batches: &mut [u8],
        log_append_time_ms: Option<i64>,
        now_ms: i64,
        origin: AppendOrigin,
    ) -> Result<(LogAppendInfo, i64), PartitionError> {
        let appended = {
            let mut log = self.log.write();
            let epoch = {
                let replica = self.replica.lock();
                if !replica.is_leader() {
                    return Err(PartitionError::NotLeader);
                }
                replica.leader_epoch()
            };
            let info =
                log.append_with_origin(batches, epoch, log_append_time_ms, now_ms, origin)?;
            (info, log.log_start_offset())
        };
        self.appended.notify_waiters();
        if !appended.0.duplicate {
            self.request_sync();
        }
        Ok(appended)
    }

    /// Starts a group commit on a blocking thread, or asks the running one to go
    /// round again when it finishes.
    fn request_sync(self: &Arc<Self>) {
        let mut state = self.sync.lock();
        if state.in_progress {
            state.again = true;
        } else {
            state.in_progress = true;
            let partition = self.clone();
            tokio::task::spawn_blocking(move || partition.sync_now());
        }
    }

    /// Refuses an `acks=-1` produce up front when the ISR is below `min.insync.replicas`
    /// (Kafka checks before appending). Errors: NOT_LEADER_OR_FOLLOWER,
    /// NOT_ENOUGH_REPLICAS.
    pub fn check_min_isr(&self) -> Result<(), PartitionError> {
        let min = self.settings().min_insync_replicas;
        let replica = self.replica.lock();
        if !replica.is_leader() {
            return Err(PartitionError::NotLeader);
        }
        let isr = replica.isr().len();
        if isr < min {
            return Err(PartitionError::NotEnoughReplicas { isr, min });
        }
        Ok(())
    }

    /// Appends a transaction marker (KIP-98 control batch) for `producer_id` at
    /// `producer_epoch`, as the leader does on WriteTxnMarkers. Returns the offset just
    /// past the marker (wait for it with [`Partition::wait_committed`]). Errors:
    /// NOT_LEADER_OR_FOLLOWER, INVALID_PRODUCER_EPOCH / TRANSACTION_COORDINATOR_FENCED
    /// from the producer state, or storage errors.
    pub fn write_marker(
        self: &Arc<Self>,
        producer_id: i64,
        producer_epoch: i16,
        kind: ControlRecordType,
        coordinator_epoch: i32,
        now_ms: i64,
    ) -> Result<i64, PartitionError> {
        let mut marker = batch::build_control_batch(
            0,
            now_ms,
            producer_id,
            producer_epoch,
            kind,
            coordinator_epoch,
        );
        let (info, _) = self.append(&mut marker, None, now_ms, AppendOrigin::Coordinator)?;
        Ok(info.last_offset + 1)
    }

    /// Reads whole batches from `offset` for a consumer, bounded by the high watermark
    /// (see [`Log::read`] for KIP-74 and the errors), with the offsets as of that same
    /// read, so a response never reports a high watermark below the data it carries.
    ///
    /// Under [`Isolation::ReadCommitted`] the bound is the last stable offset, and the
    /// aborted transactions overlapping the returned batches come along (Kafka
    /// `UnifiedLog.collectAbortedTransactions`), first offset ascending.
    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one_batch: bool,
        isolation: Isolation,
    ) -> (
        PartitionOffsets,
        StorageResult<FetchDataInfo>,
        Vec<AbortedTxn>,
    ) {
        let log = self.log.read();
        let offsets = offsets_of(&log, self.replica.lock().high_watermark());
        let bound = match isolation {
            Isolation::ReadUncommitted => offsets.high_watermark,
            Isolation::ReadCommitted => offsets.last_stable_offset,
        };
        let data = log.read(offset, max_bytes, bound, min_one_batch);
        let aborted = match (&data, isolation) {
            (Ok(info), Isolation::ReadCommitted) if !info.records.is_empty() => {
                let start = info.first_batch_offset.unwrap_or(offset);
                log.collect_aborted_transactions(start, info.end_offset.unwrap_or(bound))
            }
            _ => Vec::new(),
        };
        (offsets, data, aborted)
    }

    /// True if a read from `offset` starts below the active segment: data written long
    /// enough ago that it may have to come from the disk rather than the page cache.
    pub fn reads_old_segments(&self, offset: i64) -> bool {
        offset < self.log.read().active_segment_base_offset()
    }

    /// The divergence check of a follower fetch (KIP-595 style, Kafka
    /// `Partition.fetchRecords`): when the follower's `last_fetched_epoch` ends earlier
    /// in this log than its fetch offset, or this log lacks that epoch, returns the
    /// `(epoch, end_offset)` the follower must truncate to first.
    pub fn diverging_epoch(
        &self,
        last_fetched_epoch: i32,
        fetch_offset: i64,
    ) -> Option<(i32, i64)> {
        if last_fetched_epoch < 0 {
            return None;
        }
        let (epoch, end) = self.log.read().end_offset_for_epoch(last_fetched_epoch);
        (epoch < last_fetched_epoch || end < fetch_offset).then_some((epoch, end))
    }

    /// Serves a follower's fetch on the leader: reads from its fetch offset up to the
    /// log end offset, then, with `record_at: Some(now)`, records its position (Kafka
    /// `updateFollowerFetchState`), which may advance the high watermark or propose an
    /// ISR expansion (returned). A long-poll re-read passes `None`. Errors:
    /// NOT_LEADER_OR_FOLLOWER.
    pub fn read_for_follower(
        &self,
        fetch: FollowerFetch,
        max_bytes: usize,
        min_one_batch: bool,
        record_at: Option<i64>,
    ) -> Result<(PartitionOffsets, StorageResult<FetchDataInfo>, Vec<Action>), PartitionError> {
        let (data, leo) = {
            let log = self.log.read();
            let leo = log.log_end_offset();
            (
                log.read(fetch.fetch_offset, max_bytes, leo, min_one_batch),
                leo,
            )
        };
        let actions = {
            let mut replica = self.replica.lock();
            if !replica.is_leader() {
                return Err(PartitionError::NotLeader);
            }
            match record_at {
                // A fetch the log could not serve (out of range) proves no position.
                Some(now_ms) if data.is_ok() => {
                    replica.follower_fetch(fetch.replica, fetch.fetch_offset.min(leo), leo, now_ms)
                }
                _ => Vec::new(),
            }
        };
        self.act(&actions);
        let offsets = self.offsets();
        Ok((offsets, data, actions))
    }

    /// Stops leading (see [`ReplicaState::step_down`]) and wakes every waiter, so
    /// producers waiting for replication get NOT_LEADER_OR_FOLLOWER at once.
    pub fn step_down(&self) {
        let was = {
            let mut replica = self.replica.lock();
            let was = replica.is_leader();
            replica.step_down();
            was
        };
        if was {
            tracing::warn!(partition = %self.tp, "stepping down as leader: out of contact with the controller");
            self.committed.notify_waiters();
            self.appended.notify_waiters();
        }
    }

    /// The periodic ISR check (see [`ReplicaState::tick`]).
    pub fn tick(&self, lag_max_ms: i64, now_ms: i64) -> Vec<Action> {
        let leo = self.log.read().log_end_offset();
        let actions = self.replica.lock().tick(leo, lag_max_ms, now_ms);
        self.act(&actions);
        actions
    }

    /// The controller answered this leader's ISR change (a refusal delays the next
    /// proposal by a second).
    pub fn isr_change_done(&self, proposal: &IsrProposal, committed: Option<(Vec<i32>, i32)>) {
        let actions = self.replica.lock().isr_change_done(
            proposal,
            committed,
            crate::replica_manager::now_ms(),
            ISR_RETRY_BACKOFF_MS,
        );
        self.act(&actions);
    }

    /// Applies a fetch answer from `leader` (Kafka `processFetchResponse`): `change` runs
    /// on the log only if this replica still follows `leader` in `leader_epoch` and its
    /// log still ends at `fetch_offset`, the offset the answered fetch was sent from;
    /// checked and applied under the log's write lock, which leadership changes also
    /// take. A stale answer (the role, the epoch or the log changed while it was in
    /// flight) is dropped: `Ok(None)`. Otherwise the high watermark is capped by the new
    /// log end and, when `leader_high_watermark` is given, set from it. Errors: storage
    /// errors of `change`.
    pub fn apply_from_leader<T>(
        &self,
        leader: i32,
        leader_epoch: i32,
        fetch_offset: i64,
        leader_high_watermark: Option<i64>,
        change: impl FnOnce(&mut Log) -> StorageResult<T>,
    ) -> StorageResult<Option<T>> {
        let mut log = self.log.write();
        {
            let r = self.replica.lock();
            if r.is_leader() || r.leader() != leader || r.leader_epoch() != leader_epoch {
                return Ok(None);
            }
        }
        if log.log_end_offset() != fetch_offset {
            return Ok(None);
        }
        let out = change(&mut log)?;
        let leo = log.log_end_offset();
        let moved = {
            let mut replica = self.replica.lock();
            let before = replica.high_watermark();
            replica.truncated(leo);
            if let Some(hw) = leader_high_watermark {
                replica.follower_high_watermark(hw, leo);
            }
            replica.high_watermark() != before
        };
        drop(log);
        self.appended.notify_waiters();
        if moved {
            self.committed.notify_waiters();
        }
        Ok(Some(out))
    }

    /// Runs `f` with shared access to the log (ListOffsets, DeleteRecords checks).
    pub fn with_log<T>(&self, f: impl FnOnce(&Log) -> T) -> T {
        f(&self.log.read())
    }

    /// Runs `f` with exclusive access to the log (retention, DeleteRecords, flush).
    pub fn with_log_mut<T>(&self, f: impl FnOnce(&mut Log) -> T) -> T {
        f(&mut self.log.write())
    }

    /// A future completing at the next append (create it *before* re-checking data).
    pub fn appended(&self) -> tokio::sync::futures::Notified<'_> {
        self.appended.notified()
    }

    /// A future completing when the high watermark advances or the role changes
    /// (create it *before* re-checking).
    pub fn committed(&self) -> tokio::sync::futures::Notified<'_> {
        self.committed.notified()
    }

    /// Waits until every offset below `end_offset` is committed: on this leader's disk
    /// and on the disk of every ISR member (the high watermark reached it), at most
    /// `timeout`. The append started the local group commit that covers it. Errors:
    /// NOT_LEADER_OR_FOLLOWER (leadership lost or moved to a new epoch meanwhile: the
    /// batch may be truncated), REQUEST_TIMED_OUT, storage errors (a failed fsync).
    pub async fn wait_committed(
        self: &Arc<Self>,
        end_offset: i64,
        timeout: Duration,
    ) -> Result<(), PartitionError> {
        let epoch = self.leader_epoch();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.committed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let replica = self.replica.lock();
                if !replica.is_leader() || replica.leader_epoch() != epoch {
                    return Err(PartitionError::NotLeader);
                }
                if replica.high_watermark() >= end_offset {
                    return Ok(());
                }
            }
            let poisoned = self.log.read().is_poisoned();
            if poisoned {
                return Err(PartitionError::Storage(StorageError::Poisoned));
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(PartitionError::Timeout(timeout.as_millis() as u64));
            }
        }
    }

    /// Waits until every offset below `end_offset` is fsynced here.
    ///
    /// Group commit: when no sync is running, a waiter starts one on a detached
    /// blocking task that fsyncs everything appended so far, advances the recovery
    /// point and wakes all waiters; later waiters queue behind it, so N concurrent
    /// producers cost one sync, not N. The sync runs to completion even if every waiter
    /// goes away (a closed connection cannot wedge the partition). A failed sync poisons
    /// the log (no later write is acknowledged; see STYLE.md on fsync failures).
    pub async fn wait_durable(self: &Arc<Self>, end_offset: i64) -> StorageResult<()> {
        loop {
            let notified = {
                let mut state = self.sync.lock();
                {
                    let log = self.log.read();
                    if log.is_poisoned() {
                        return Err(StorageError::Poisoned);
                    }
                    // Covered, or truncated away meanwhile: nothing left to sync.
                    if log.recovery_point() >= end_offset.min(log.log_end_offset()) {
                        return Ok(());
                    }
                }
                let notified = self.synced.notified();
                if !state.in_progress {
                    state.in_progress = true;
                    let partition = self.clone();
                    tokio::task::spawn_blocking(move || partition.sync_now());
                }
                notified
            };
            notified.await;
        }
    }

    /// Runs one group-commit round on this (blocking) thread unless one is already
    /// running (the flush scheduler's and the replica fetcher's entry point).
    pub fn flush_blocking(&self) {
        {
            let mut state = self.sync.lock();
            if state.in_progress {
                return;
            }
            state.in_progress = true;
        }
        self.sync_now();
    }

    /// The durable end of the local log (the recovery point).
    pub fn durable_offset(&self) -> i64 {
        self.log.read().recovery_point()
    }

    /// One group-commit round (blocking): fsync what was appended when it started,
    /// publish the new recovery point, move this leader's durable position (which may
    /// advance the high watermark), wake the waiters.
    fn sync_now(&self) {
        loop {
            let target = self.log.read().flush_target();
            let result = target.sync();
            let (actions, again) = {
                let mut state = self.sync.lock();
                let mut log = self.log.write();
                let actions = match &result {
                    Ok(()) => {
                        log.mark_flushed(target.end_offset());
                        self.replica.lock().local_durable(log.recovery_point())
                    }
                    Err(e) => {
                        tracing::error!(partition = %self.tp, error = %e, "fsync failed; log poisoned");
                        log.poison();
                        Vec::new()
                    }
                };
                let again =
                    state.again && result.is_ok() && log.recovery_point() < log.log_end_offset();
                state.again = false;
                if !again {
                    state.in_progress = false;
                }
                (actions, again)
            };
            self.synced.notify_waiters();
            self.act(&actions);
            if result.is_err() {
                self.committed.notify_waiters();
            }
            if !again {
                return;
            }
        }
    }
}
