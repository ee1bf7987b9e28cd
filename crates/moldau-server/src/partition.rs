//! One partition replica hosted by this broker: its [`Log`], the offsets clients see, the
//! group commit that makes `acks=-1` durable, and the signal that wakes long-poll fetches.
//!
//! On a single node the broker leads every partition and the ISR is itself, so the high
//! watermark equals the log end offset (Kafka advances the HW once every ISR member has
//! a batch, not when it is fsynced). Replication replaces [`Partition::high_watermark`]
//! with the ISR's minimum fetch position.

use crate::config::TopicSettings;
use moldau_protocol::batch::{self, ControlRecordType};
use moldau_storage::{
    AbortedTxn, AppendOrigin, FetchDataInfo, Log, LogAppendInfo, Result as StorageResult,
    StorageError,
};
use moldau_types::TopicPartition;
use parking_lot::{Mutex, RwLock};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use tokio::sync::Notify;
use uuid::Uuid;

/// The offsets of `log` (one node: the high watermark is the log end offset). The last
/// stable offset is the first offset of the earliest open transaction, capped by the
/// high watermark (Kafka `UnifiedLog.lastStableOffset`).
fn offsets_of(log: &Log) -> PartitionOffsets {
    let high_watermark = log.log_end_offset();
    PartitionOffsets {
        log_start_offset: log.log_start_offset(),
        high_watermark,
        // Never below the log start: retention or DeleteRecords may pass the start of
        // an open transaction (Kafka `maybeIncrementFirstUnstableOffset`).
        last_stable_offset: log
            .first_unstable_offset()
            .map_or(high_watermark, |f| f.min(high_watermark))
            .max(log.log_start_offset()),
        log_end_offset: log.log_end_offset(),
    }
}

/// Which records a fetch may see (Fetch `isolation_level`, KIP-98).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// 0: everything up to the high watermark, open and aborted transactions included.
    ReadUncommitted,
    /// 1: only up to the last stable offset, with the aborted transactions listed so
    /// the client drops their records.
    ReadCommitted,
}

/// A hosted partition.
pub struct Partition {
    /// Topic and index.
    pub tp: TopicPartition,
    /// Topic id (KIP-516).
    pub topic_id: Uuid,
    log: RwLock<Log>,
    settings: RwLock<TopicSettings>,
    leader_epoch: AtomicI32,
    /// Notified after every append; long-poll fetches wait on it.
    appended: Notify,
    sync: Mutex<SyncState>,
    synced: Notify,
}

#[derive(Default)]
struct SyncState {
    in_progress: bool,
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

impl Partition {
    /// Wraps an opened log.
    pub fn new(
        tp: TopicPartition,
        topic_id: Uuid,
        log: Log,
        settings: TopicSettings,
        leader_epoch: i32,
    ) -> Self {
        Self {
            tp,
            topic_id,
            log: RwLock::new(log),
            settings: RwLock::new(settings),
            leader_epoch: AtomicI32::new(leader_epoch),
            appended: Notify::new(),
            sync: Mutex::new(SyncState::default()),
            synced: Notify::new(),
        }
    }

    /// The produce-side settings (`max.message.bytes`, timestamp type).
    pub fn settings(&self) -> TopicSettings {
        *self.settings.read()
    }

    /// Applies a metadata change: new settings, log config and leader epoch. Takes the
    /// write locks only for what actually changed.
    pub fn reconfigure(
        &self,
        log_config: moldau_storage::LogConfig,
        settings: TopicSettings,
        leader_epoch: i32,
    ) {
        self.leader_epoch.store(leader_epoch, Ordering::Relaxed);
        if *self.settings.read() != settings {
            *self.settings.write() = settings;
        }
        if self.log.read().config() != &log_config {
            self.log.write().set_config(log_config);
        }
    }

    /// Current leader epoch.
    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch.load(Ordering::Relaxed)
    }

    /// Log start offset, high watermark and log end offset.
    pub fn offsets(&self) -> PartitionOffsets {
        offsets_of(&self.log.read())
    }

    /// High watermark (exclusive).
    pub fn high_watermark(&self) -> i64 {
        self.log.read().log_end_offset()
    }

    /// Appends validated batches as leader (offsets assigned in place, epoch stamped),
    /// then wakes waiting fetches. `log_append_time_ms` is `Some` for LogAppendTime topics.
    /// Returns the append info and the log start offset after the append (Produce
    /// answers with it), read under the same lock.
    ///
    /// Batches with a producer id are checked against the partition's producer state
    /// (sequence, epoch, open transaction; see `moldau_storage::Log::append_with_origin`);
    /// a retried batch comes back as the original's offsets with `duplicate` set and
    /// writes nothing. `origin` is [`AppendOrigin::Coordinator`] for markers and
    /// transactional offset commits.
    pub fn append(
        &self,
        batches: &mut [u8],
        log_append_time_ms: Option<i64>,
        now_ms: i64,
        origin: AppendOrigin,
    ) -> StorageResult<(LogAppendInfo, i64)> {
        let appended = {
            let mut log = self.log.write();
            let info = log.append_with_origin(
                batches,
                self.leader_epoch(),
                log_append_time_ms,
                now_ms,
                origin,
            )?;
            (info, log.log_start_offset())
        };
        self.appended.notify_waiters();
        Ok(appended)
    }

    /// Appends a transaction marker (KIP-98 control batch) for `producer_id` at
    /// `producer_epoch`, as the leader does on WriteTxnMarkers. Returns the offset just
    /// past the marker (wait for it with [`Partition::wait_durable`]). Errors:
    /// INVALID_PRODUCER_EPOCH / TRANSACTION_COORDINATOR_FENCED from the producer state,
    /// or storage errors.
    pub fn write_marker(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        kind: ControlRecordType,
        coordinator_epoch: i32,
        now_ms: i64,
    ) -> StorageResult<i64> {
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

    /// Reads whole batches from `offset`, bounded by the high watermark (see
    /// [`Log::read`] for KIP-74 and the errors), with the offsets as of that same read,
    /// so a response never reports a high watermark below the data it carries.
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
        let offsets = offsets_of(&log);
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

    /// Waits until every offset below `end_offset` is fsynced (for `acks=-1`).
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
                    if log.recovery_point() >= end_offset {
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
    /// running (the flush scheduler's entry point).
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

    /// One group-commit round (blocking): fsync what was appended when it started,
    /// publish the new recovery point, wake the waiters.
    fn sync_now(&self) {
        let target = self.log.read().flush_target();
        let result = target.sync();
        {
            let mut state = self.sync.lock();
            let mut log = self.log.write();
            match &result {
                Ok(()) => log.mark_flushed(target.end_offset()),
                Err(e) => {
                    tracing::error!(partition = %self.tp, error = %e, "fsync failed; log poisoned");
                    log.poison();
                }
            }
            state.in_progress = false;
        }
        self.synced.notify_waiters();
    }
}
