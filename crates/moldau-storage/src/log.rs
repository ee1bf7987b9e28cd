//! The partition log: an ordered list of segments, the last one active.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use moldau_protocol::batch::{self, BatchError, BatchHeader};

use crate::config::LogConfig;
use crate::error::{IoContext, Result, StorageError};
use crate::flush::FlushTarget;
use crate::leader_epoch::LeaderEpochCache;
use crate::producer_state::{
    AppendOrigin, BatchInfo, Origin, ProducerStateManager, ProducerUpdate,
};
use crate::segment::{Segment, NO_TIMESTAMP};

/// What an append did (Kafka `LogAppendInfo`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogAppendInfo {
    /// Offset of the first record appended.
    pub first_offset: i64,
    /// Offset of the last record appended (inclusive).
    pub last_offset: i64,
    /// Largest batch `maxTimestamp` appended (ms; after LogAppendTime stamping), -1 if
    /// no batch carried a timestamp.
    pub max_timestamp: i64,
    /// Last offset of the first batch holding `max_timestamp` (Kafka's
    /// "shallow offset of max timestamp"; batch level, records are not walked), -1 if none.
    pub offset_of_max_timestamp: i64,
    /// The broker time stamped into the batches under `LogAppendTime`, else -1.
    pub log_append_time_ms: i64,
    /// Records appended (sum of `recordsCount`).
    pub record_count: u64,
    /// Bytes appended to the `.log`.
    pub bytes: u64,
    /// True if a client append repeated a batch still retained in its producer's state
    /// (same producer id, epoch and sequence range; KIP-98 idempotence): nothing was
    /// written, `first_offset`/`last_offset` are those of the original batch (Kafka
    /// answers them with error NONE), `record_count` and `bytes` are 0,
    /// `max_timestamp`/`offset_of_max_timestamp` are -1, and `log_append_time_ms` is the
    /// original batch's timestamp if the append asked for LogAppendTime, else -1.
    pub duplicate: bool,
}

/// Result of [`Log::read`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchDataInfo {
    /// Whole v2 batches as stored, end to end; empty if nothing qualifies.
    pub records: bytes::Bytes,
    /// `baseOffset` of the first batch in `records` (may be below the requested offset
    /// when that offset lies inside a batch), `None` if `records` is empty.
    pub first_batch_offset: Option<i64>,
    /// The offset just past the last batch in `records` (exclusive), `None` if `records`
    /// is empty: the upper bound of the aborted transactions a `read_committed` fetch
    /// returns, known without walking the batches again.
    pub end_offset: Option<i64>,
}

/// A partition's log (Kafka `UnifiedLog`/`LocalLog`): segments `<base>.log` +
/// `<base>.index` + `<base>.timeindex` in one directory, offsets `[log_start_offset,
/// log_end_offset)`.
///
/// One writer (`&mut self`) appends, rolls, truncates and deletes; reads take `&self`
/// and use positional reads, so a caller may share the log behind a read-write lock.
/// Durability: appends go to the page cache; [`Log::flush_target`] /
/// [`Log::mark_flushed`] (group commit) or [`Log::flush`] make them durable and advance
/// the recovery point. A failed write or fsync poisons the log: writes then fail with
/// [`StorageError::Poisoned`] until it is reopened, which recovers from the recovery
/// point.
#[derive(Debug)]
pub struct Log {
    pub(crate) dir: PathBuf,
    pub(crate) config: LogConfig,
    /// Sorted by base offset, never empty; the last one is active.
    pub(crate) segments: Vec<Segment>,
    pub(crate) log_start_offset: i64,
    pub(crate) recovery_point: i64,
    pub(crate) poisoned: bool,
    /// When the oldest unflushed append happened (ms), `None` if all is flushed.
    pub(crate) unflushed_since_ms: Option<i64>,
    pub(crate) last_append_ms: i64,
    /// Bumped whenever sealed segments may change other than by appending to the
    /// active one (deletion, truncation, an installed clean), so a [`crate::CleanPlan`]
    /// made before can be recognised as stale.
    pub(crate) rewrite_epoch: u64,
    /// Idempotent and transactional producers as of the log end offset.
    pub(crate) producers: ProducerStateManager,
    /// Offset of the snapshot that holds exactly the current producer state, if any
    /// (so [`Log::take_producer_snapshot`] can skip rewriting it).
    pub(crate) snapshot_offset: Option<i64>,
    /// The start offset of each leader epoch (KIP-101), `leader-epoch-checkpoint`.
    pub(crate) epochs: LeaderEpochCache,
}

/// Per-append summary gathered while walking the batches.
struct Walk {
    first_offset: i64,
    last_offset: i64,
    record_count: u64,
}

/// Calls `f(position, header)` for each batch laid end to end in `buf`, checking only
/// what storage relies on: a parsable v2 header, the batch inside `buf`, a non-negative
/// `lastOffsetDelta`. Errors: [`StorageError::InvalidBatch`].
fn for_each_batch(buf: &[u8], mut f: impl FnMut(usize, &BatchHeader) -> Result<()>) -> Result<()> {
    let mut pos = 0;
    while pos < buf.len() {
        let header = BatchHeader::parse(&buf[pos..])?;
        let size = header.size_in_bytes();
        if size > buf.len() - pos {
            return Err(BatchError::Truncated {
                needed: size,
                available: buf.len() - pos,
            }
            .into());
        }
        if header.last_offset_delta < 0 {
            return Err(BatchError::InvalidRecordCount {
                count: header.records_count,
                last_offset_delta: header.last_offset_delta,
            }
            .into());
        }
        f(pos, &header)?;
        pos += size;
    }
    Ok(())
}

impl Log {
    /// The partition directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The current configuration.
    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// Replaces the configuration (dynamic topic-config change); applies from the next
    /// append, roll, flush or retention check.
    pub fn set_config(&mut self, config: LogConfig) {
        self.config = config;
    }

    /// First offset clients may read (inclusive). Kafka: log start offset.
    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset
    }

    /// Next offset to assign (exclusive end of the data). Kafka: log end offset (LEO).
    pub fn log_end_offset(&self) -> i64 {
        self.active().next_offset
    }

    /// Offsets below this are fsynced (exclusive bound); recovery after a crash starts
    /// at the segment containing it. Kafka: recovery point.
    pub fn recovery_point(&self) -> i64 {
        self.recovery_point
    }

    /// Bytes of all `.log` files (indexes excluded), as retention counts them.
    pub fn size_in_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.size).sum()
    }

    /// Number of segments (at least 1).
    pub fn num_segments(&self) -> usize {
        self.segments.len()
    }

    /// True once a write or fsync failed (see [`StorageError::Poisoned`]).
    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    /// Marks the log poisoned: called by the server when a [`FlushTarget::sync`] it ran
    /// failed. Further appends, truncations, deletions, flushes and reads fail with
    /// [`StorageError::Poisoned`]: the log is offline, as Kafka takes a log directory
    /// offline after a failed write or fsync, until a restart recovers it.
    pub fn poison(&mut self) {
        if !self.poisoned {
            tracing::error!(dir = %self.dir.display(), "log poisoned; refusing writes until reopened");
        }
        self.poisoned = true;
    }

    /// The base offset of the active (last) segment: reads below it go to older
    /// segments, whose pages are the likeliest to have left the page cache.
    pub fn active_segment_base_offset(&self) -> i64 {
        self.active().base_offset
    }

    pub(crate) fn active(&self) -> &Segment {
        // `segments` is never empty: open creates one and every removal keeps or adds one.
        &self.segments[self.segments.len() - 1]
    }

    fn active_mut(&mut self) -> &mut Segment {
        let last = self.segments.len() - 1;
        &mut self.segments[last]
    }

    pub(crate) fn check_writable(&self) -> Result<()> {
        if self.poisoned {
            return Err(StorageError::Poisoned);
        }
        Ok(())
    }

    /// Index of the segment that would hold `offset` (the last with base `<= offset`,
    /// or the first segment).
    pub(crate) fn segment_index_for(&self, offset: i64) -> usize {
        self.segments
            .partition_point(|s| s.base_offset <= offset)
            .saturating_sub(1)
    }

    /// Leader append (Kafka `UnifiedLog.appendAsLeader`). `batches`: one or more whole v2
    /// batches end to end, already validated by the caller (CRC, record counts). Assigns
    /// offsets from the log end offset by rewriting each `baseOffset` in place, stamps
    /// `leader_epoch` into `partitionLeaderEpoch`, and with `Some(t)` marks the batches
    /// `LogAppendTime` with `maxTimestamp = t` (CRC recomputed). Then rolls if needed and
    /// writes the bytes with one write to the active `.log` (page cache, no fsync unless
    /// `flush.messages` is exceeded). Never copies or decompresses the batches. If
    /// `leader_epoch` is new to the leader-epoch cache, it is assigned the first offset
    /// of the append (KIP-101; `leader-epoch-checkpoint` is written only then).
    ///
    /// Empty `batches` appends nothing (`record_count == 0`, `last_offset ==
    /// first_offset - 1`). Errors: [`StorageError::Poisoned`], [`StorageError::InvalidBatch`]
    /// (unparsable header or a batch cut short; `batches` may be partly rewritten),
    /// [`StorageError::RecordSetTooLarge`], [`StorageError::Io`] (which poisons the log),
    /// and the producer-state errors of [`Log::append_with_origin`] (origin
    /// [`AppendOrigin::Client`]).
    pub fn append_as_leader(
        &mut self,
        batches: &mut [u8],
        leader_epoch: i32,
        log_append_time_ms: Option<i64>,
        now_ms: i64,
    ) -> Result<LogAppendInfo> {
        self.append_with_origin(
            batches,
            leader_epoch,
            log_append_time_ms,
            now_ms,
            AppendOrigin::Client,
        )
    }

    /// [`Log::append_as_leader`] with the producer-state checks of `origin` (KIP-98; Kafka
    /// `UnifiedLog.appendAsLeader(records, leaderEpoch, origin)`). Every batch with a
    /// producer id (`producerId >= 0`) is checked against that producer's state before
    /// anything is written; on an error nothing is written and the state is unchanged.
    ///
    /// - [`AppendOrigin::Client`]: a batch repeating one of the producer's last
    ///   [`crate::NUM_BATCHES_TO_RETAIN`] batches (same epoch, first and last sequence)
    ///   makes the whole append a duplicate: nothing is written and the result carries
    ///   the original offsets with [`LogAppendInfo::duplicate`] set. Otherwise: an epoch
    ///   below the producer's is [`StorageError::InvalidProducerEpoch`]; a new epoch must
    ///   start at sequence 0 and the same epoch must continue at last sequence + 1
    ///   (wrapping after `i32::MAX`), else [`StorageError::OutOfOrderSequence`]; a
    ///   producer unknown here (never seen, or its state expired or lost with the data)
    ///   may start at any sequence (as Kafka since KIP-360); a non-transactional batch
    ///   while the producer's transaction is open is [`StorageError::InvalidTxnState`];
    ///   a control batch is [`StorageError::ControlBatchFromClient`].
    /// - [`AppendOrigin::Coordinator`]: no sequence checks and no duplicate detection;
    ///   epochs are checked as above, and a marker whose coordinator epoch is below the
    ///   producer's last one is [`StorageError::TransactionCoordinatorFenced`].
    ///
    /// A transactional batch of a producer without an open transaction opens one at its
    /// first offset (holding back [`Log::first_unstable_offset`]); a marker closes the
    /// producer's open transaction (if any) and takes its epoch and coordinator epoch;
    /// an abort marker of a non-empty transaction adds an [`crate::AbortedTxn`] to the
    /// active segment's `.txnindex`.
    pub fn append_with_origin(
        &mut self,
        batches: &mut [u8],
        leader_epoch: i32,
        log_append_time_ms: Option<i64>,
        now_ms: i64,
        origin: AppendOrigin,
    ) -> Result<LogAppendInfo> {
        self.check_writable()?;
        let leo = self.log_end_offset();
        // Validate the framing and the producer state of everything before rewriting
        // anything.
        let mut count = 0usize;
        let mut next = leo;
        let mut producer_batches = Vec::new();
        let view: &[u8] = batches;
        for_each_batch(view, |pos, header| {
            count += 1;
            let first = next;
            next += i64::from(header.last_offset_delta) + 1;
            if header.is_control() && origin == AppendOrigin::Client {
                return Err(StorageError::ControlBatchFromClient { offset: first });
            }
            if header.producer_id >= 0 {
                let bytes = &view[pos..pos + header.size_in_bytes()];
                let ts = log_append_time_ms.unwrap_or(header.max_timestamp);
                producer_batches.push(BatchInfo::of(bytes, header, first, ts));
            }
            Ok(())
        })?;
        let mut update = None;
        if !producer_batches.is_empty() {
            if origin == AppendOrigin::Client {
                if let Some(dup) = self.producers.find_duplicate(&producer_batches) {
                    return Ok(LogAppendInfo {
                        first_offset: dup.first_offset(),
                        last_offset: dup.last_offset,
                        max_timestamp: NO_TIMESTAMP,
                        offset_of_max_timestamp: -1,
                        log_append_time_ms: if log_append_time_ms.is_some() {
                            dup.timestamp
                        } else {
                            -1
                        },
                        record_count: 0,
                        bytes: 0,
                        duplicate: true,
                    });
                }
            }
            update = Some(self.producers.prepare(&producer_batches, origin.into())?);
        }
        let mut walk = Walk {
            first_offset: leo,
            last_offset: leo - 1,
            record_count: 0,
        };
        let mut pos = 0;
        for _ in 0..count {
            let header = BatchHeader::parse(&batches[pos..])?;
            let size = header.size_in_bytes();
            let one = &mut batches[pos..pos + size];
            batch::set_base_offset(one, walk.last_offset + 1);
            batch::set_partition_leader_epoch(one, leader_epoch);
            if let Some(t) = log_append_time_ms {
                batch::set_log_append_time(one, t);
            }
            walk.last_offset += i64::from(header.last_offset_delta) + 1;
            walk.record_count += u64::try_from(header.records_count).unwrap_or(0);
            pos += size;
        }
        let info = self.write_batches(
            batches,
            walk,
            log_append_time_ms.unwrap_or(-1),
            now_ms,
            update,
        )?;
        // Every batch now carries `leader_epoch`: one entry at the first offset if the
        // epoch is new (a comparison, no allocation, when it is not).
        if count > 0
            && self
                .epochs
                .is_update_needed(leader_epoch, info.first_offset)
        {
            if let Err(e) = self.epochs.assign(leader_epoch, info.first_offset) {
                self.poison();
                return Err(e);
            }
        }
        Ok(info)
    }

    /// Follower append (Kafka `UnifiedLog.appendAsFollower`): `batches` already carry the
    /// leader's offsets and epochs and are written as they are. The first batch must start
    /// at or above the log end offset and base offsets must not go backwards (gaps are
    /// allowed, as left by compaction on the leader). The producer state follows the
    /// batches without any check (Kafka's replication origin), and abort markers add
    /// `.txnindex` entries as on the leader. Each batch's `partitionLeaderEpoch` is
    /// assigned its `baseOffset` in the leader-epoch cache (KIP-101; the cache and its
    /// file change only when a batch brings a new epoch; a failed write of the file is
    /// [`StorageError::Io`] and poisons the log). Errors: [`StorageError::Poisoned`],
    /// [`StorageError::InvalidBatch`], [`StorageError::RecordSetTooLarge`],
    /// [`StorageError::Io`], [`StorageError::UnexpectedAppendOffset`].
    pub fn append_as_follower(&mut self, batches: &[u8], now_ms: i64) -> Result<LogAppendInfo> {
        self.check_writable()?;
        let leo = self.log_end_offset();
        let mut walk = Walk {
            first_offset: leo,
            last_offset: leo - 1,
            record_count: 0,
        };
        let mut first = true;
        let mut producer_batches = Vec::new();
        // Whether some batch brings an epoch the cache does not have yet (rare).
        let mut new_epoch = false;
        let epochs = &self.epochs;
        for_each_batch(batches, |pos, header| {
            new_epoch |= epochs.is_update_needed(header.partition_leader_epoch, header.base_offset);
            if header.base_offset <= walk.last_offset {
                return Err(StorageError::UnexpectedAppendOffset {
                    first_offset: header.base_offset,
                    log_end_offset: walk.last_offset + 1,
                });
            }
            if first {
                walk.first_offset = header.base_offset;
                first = false;
            }
            walk.last_offset = header.last_offset();
            walk.record_count += u64::try_from(header.records_count).unwrap_or(0);
            if header.producer_id >= 0 {
                let bytes = &batches[pos..pos + header.size_in_bytes()];
                producer_batches.push(BatchInfo::of(
                    bytes,
                    header,
                    header.base_offset,
                    header.max_timestamp,
                ));
            }
            Ok(())
        })?;
        let update = self
            .producers
            .prepare(&producer_batches, Origin::Replication)?;
        let info = self.write_batches(batches, walk, -1, now_ms, Some(update))?;
        if new_epoch {
            let epochs = &mut self.epochs;
            let assigned = for_each_batch(batches, |_, header| {
                epochs.assign_in_memory(header.partition_leader_epoch, header.base_offset);
                Ok(())
            })
            .and_then(|()| epochs.flush());
            if let Err(e) = assigned {
                self.poison();
                return Err(e);
            }
        }
        Ok(info)
    }

    /// The shared write path: roll if needed, one write, index bookkeeping, the
    /// producer-state update (and `.txnindex` entries), flush policy.
    fn write_batches(
        &mut self,
        batches: &[u8],
        walk: Walk,
        log_append_time_ms: i64,
        now_ms: i64,
        update: Option<ProducerUpdate>,
    ) -> Result<LogAppendInfo> {
        let mut info = LogAppendInfo {
            first_offset: walk.first_offset,
            last_offset: walk.last_offset,
            max_timestamp: NO_TIMESTAMP,
            offset_of_max_timestamp: -1,
            log_append_time_ms,
            record_count: walk.record_count,
            bytes: batches.len() as u64,
            duplicate: false,
        };
        if batches.is_empty() {
            return Ok(info);
        }
        let segment_bytes = self.config.effective_segment_bytes();
        if info.bytes > segment_bytes {
            return Err(StorageError::RecordSetTooLarge {
                size: info.bytes,
                segment_bytes: self.config.segment_bytes,
            });
        }
        self.maybe_roll(info.bytes, walk.first_offset, walk.last_offset, now_ms)?;
        let interval = self.config.index_interval_bytes;
        let active = self.active_mut();
        let start = active.size;
        let written = active.write(batches).and_then(|()| {
            active.next_offset = walk.last_offset + 1;
            active.roll_base_ms.get_or_insert(now_ms);
            let ix = &mut active.ix;
            for_each_batch(batches, |pos, header| {
                ix.track(start + pos as u64, header, interval);
                if header.max_timestamp > info.max_timestamp {
                    info.max_timestamp = header.max_timestamp;
                    info.offset_of_max_timestamp = header.last_offset();
                }
                Ok(())
            })?;
            ix.write_pending()
        });
        if let Err(e) = written {
            self.poison();
            return Err(e);
        }
        if let Some(update) = update.filter(|u| !u.is_empty()) {
            self.snapshot_offset = None;
            let aborted = self.producers.commit(update);
            if let Err(e) = self.active_mut().append_aborted(&aborted) {
                self.poison();
                return Err(e);
            }
        }
        self.last_append_ms = now_ms;
        self.unflushed_since_ms.get_or_insert(now_ms);
        let unflushed = self.log_end_offset() - self.recovery_point;
        if u64::try_from(unflushed).unwrap_or(0) >= self.config.flush_interval_messages {
            self.flush()?;
        }
        Ok(info)
    }

    /// Rolls before an append of `bytes` covering `[first_offset, last_offset]` when
    /// Kafka would (`LogSegment.shouldRoll`): the active segment is non-empty and the
    /// append would take it past `segment.bytes`, it is older than `segment.ms` (or
    /// `max.compaction.lag.ms` if lower on a compacted log, KIP-354), an
    /// index is full, or `last_offset` would not fit a relative offset (`i32::MAX`, as
    /// Kafka, although the entry field is u32).
    fn maybe_roll(
        &mut self,
        bytes: u64,
        first_offset: i64,
        last_offset: i64,
        now_ms: i64,
    ) -> Result<()> {
        let config = &self.config;
        let active = self.active();
        let offsets_overflow = last_offset - active.base_offset > i64::from(i32::MAX);
        if active.size == 0 {
            if offsets_overflow {
                // Empty active segment far below a follower's first offset: replace it.
                self.roll_to(first_offset)?;
            }
            return Ok(());
        }
        let full = active.size + bytes > config.effective_segment_bytes();
        let aged = active
            .roll_base_ms
            .is_some_and(|t| now_ms.saturating_sub(t) > config.effective_segment_ms());
        let index_full = active.ix.offset.len() >= config.max_index_entries(8)
            || active.ix.time.len() >= config.max_index_entries(12);
        if full || aged || index_full || offsets_overflow {
            tracing::debug!(dir = %self.dir.display(), full, aged, index_full, offsets_overflow, "rolling segment");
            self.roll_to(first_offset.max(self.log_end_offset()))?;
        }
        Ok(())
    }

    /// Seals the active segment and starts a new one at `base_offset` (>= LEO). An empty
    /// active segment is replaced instead. Errors poison the log.
    pub(crate) fn roll_to(&mut self, base_offset: i64) -> Result<()> {
        let result = self.try_roll_to(base_offset);
        if result.is_err() {
            self.poison();
        }
        result
    }

    fn try_roll_to(&mut self, base_offset: i64) -> Result<()> {
        let active = self.active_mut();
        if active.base_offset == base_offset {
            return Ok(());
        }
        let replace_empty = active.size == 0;
        if !replace_empty {
            active.ix.seal()?;
        }
        // Kafka takes a producer snapshot at every roll, named after the new segment.
        self.write_producer_snapshot_at(base_offset);
        // Create first (a different name), so the list is never left empty.
        let segment = Segment::create(&self.dir, base_offset)?;
        self.segments.push(segment);
        if replace_empty {
            let old = self.segments.remove(self.segments.len() - 2);
            old.delete_files()?;
        }
        Ok(())
    }

    /// Snapshot of what must be fsynced to make everything up to the current log end
    /// offset durable (group commit); see [`FlushTarget`]. Cheap: clones a few `Arc`s.
    pub fn flush_target(&self) -> FlushTarget {
        let mut files = Vec::new();
        let mut new_segments = Vec::new();
        // Segments before the one holding the recovery point are fully flushed, and
        // their directory entries were synced by an earlier flush or by `open`.
        let from = self.segment_index_for(self.recovery_point);
        for segment in &self.segments[from..] {
            if segment.next_offset > self.recovery_point {
                files.extend(segment.files().into_iter().map(Arc::clone));
            }
            if !segment.is_dir_synced() {
                new_segments.push(Arc::clone(&segment.dir_synced));
            }
        }
        FlushTarget {
            files,
            dir: (!new_segments.is_empty()).then(|| (self.dir.clone(), new_segments)),
            end_offset: self.log_end_offset(),
        }
    }

    /// Records that everything below `end_offset` is durable (after a successful
    /// [`FlushTarget::sync`]): the recovery point becomes `min(end_offset, log end
    /// offset)` if that is higher (it never goes back).
    pub fn mark_flushed(&mut self, end_offset: i64) {
        let leo = self.log_end_offset();
        self.recovery_point = self.recovery_point.max(end_offset.min(leo));
        self.unflushed_since_ms = if self.recovery_point >= leo {
            None
        } else {
            // The remaining data was appended after the snapshot; its exact age is not
            // tracked, so count from the latest append (at most `flush.ms` late).
            Some(self.last_append_ms)
        };
    }

    /// Synchronous flush: [`Log::flush_target`], sync, [`Log::mark_flushed`]. Errors:
    /// [`StorageError::Poisoned`]; [`StorageError::Io`] if an fsync failed, which poisons
    /// the log.
    pub fn flush(&mut self) -> Result<()> {
        self.check_writable()?;
        let target = self.flush_target();
        if let Err(e) = target.sync() {
            self.poison();
            return Err(StorageError::io(format!("fsync {}", self.dir.display()), e));
        }
        self.mark_flushed(target.end_offset());
        Ok(())
    }

    /// True if unflushed data has waited at least `flush.ms` (Kafka's periodic flush,
    /// `log.flush.interval.ms`). Measured from the oldest unflushed append rather than
    /// the last flush, so an idle log is never reported due.
    pub fn flush_due(&self, now_ms: i64) -> bool {
        self.unflushed_since_ms
            .is_some_and(|t| now_ms.saturating_sub(t) >= self.config.flush_interval_ms)
    }

    /// Deletes the first `n` segments (never the active one) and advances the log start
    /// offset to the new first segment's base offset.
    fn delete_first_segments(&mut self, n: usize) -> Result<usize> {
        let n = n.min(self.segments.len() - 1);
        if n > 0 {
            self.rewrite_epoch += 1;
        }
        for segment in self.segments.drain(..n) {
            tracing::info!(path = %segment.log_path.display(), "deleting segment");
            segment.delete_files()?;
        }
        let first = self.segments[0].base_offset;
        self.log_start_offset = self.log_start_offset.max(first);
        self.recovery_point = self.recovery_point.max(self.log_start_offset);
        if n > 0 {
            crate::producer_snapshot::delete_where(&self.dir, |o| o < first)?;
        }
        self.epochs.truncate_from_start(self.log_start_offset)?;
        Ok(n)
    }

    /// Retention (Kafka `UnifiedLog.deleteOldSegments`). Deletes whole non-active
    /// segments from the oldest while:
    /// - the next segment starts at or below the log start offset (after DeleteRecords;
    ///   whatever the `cleanup.policy`);
    /// - only if `cleanup.policy` includes `delete` (a `compact`-only log is never
    ///   trimmed by time or size):
    /// - `retention.ms >= 0` and the segment's largest timestamp `< now_ms - retention.ms`;
    ///   if every segment including a non-empty active one is expired, the active one is
    ///   rolled first so it can go too (as Kafka does);
    /// - `retention.bytes >= 0` and the log without the segment is still `>=
    ///   retention.bytes` bytes.
    ///
    /// Advances the log start offset to the new first segment's base offset, and the
    /// leader-epoch cache with it (Kafka `truncateFromStart`). Returns the
    /// number of segments deleted. A segment's largest timestamp is the largest batch
    /// `maxTimestamp` it holds; a segment with no timestamped batch counts as -1 and so
    /// expires at once (Kafka falls back to the file's modification time instead).
    /// Deletion renames the files (`.txnindex` included) to `*.deleted` and then removes
    /// them, synchronously; producer snapshots below the new first segment go too. The
    /// producer state itself is kept (producers expire by
    /// [`Log::remove_expired_producers`], as in Kafka).
    /// Errors: [`StorageError::Poisoned`], [`StorageError::Io`].
    pub fn apply_retention(&mut self, now_ms: i64) -> Result<usize> {
        self.check_writable()?;
        let mut deleted = 0;
        let below_start = self
            .segments
            .windows(2)
            .take_while(|w| w[1].base_offset <= self.log_start_offset)
            .count();
        deleted += self.delete_first_segments(below_start)?;
        if !self.config.cleanup_policy.deletes() {
            // `cleanup.policy=compact`: only DeleteRecords trims the log (as Kafka's
            // `deleteOldSegments` without the delete policy).
            return Ok(deleted);
        }

        if self.config.retention_ms >= 0 {
            let cutoff = now_ms.saturating_sub(self.config.retention_ms);
            let expired = |s: &Segment| s.ix.max_timestamp < cutoff;
            let last = self.segments.len() - 1;
            let mut n = self.segments[..last]
                .iter()
                .take_while(|s| expired(s))
                .count();
            if n == last && self.active().size > 0 && expired(self.active()) {
                let leo = self.log_end_offset();
                self.roll_to(leo)?;
                n += 1;
            }
            deleted += self.delete_first_segments(n)?;
        }

        if self.config.retention_bytes >= 0 {
            let limit = self.config.retention_bytes as u64;
            let mut total = self.size_in_bytes();
            let last = self.segments.len() - 1;
            let n = self.segments[..last]
                .iter()
                .take_while(|s| {
                    if total - s.size >= limit {
                        total -= s.size;
                        true
                    } else {
                        false
                    }
                })
                .count();
            deleted += self.delete_first_segments(n)?;
        }
        Ok(deleted)
    }

    /// DeleteRecords (KIP-107, Kafka `UnifiedLog.maybeIncrementLogStartOffset`): raises
    /// the log start offset to `offset` and deletes segments entirely below it (rolling a
    /// non-empty active segment first when `offset` is the log end offset), and moves
    /// the start of the leader-epoch cache to `offset` (Kafka `truncateFromStart`). The
    /// caller checks `offset` against the high watermark. Returns the new log start
    /// offset.
    /// Errors: [`StorageError::OffsetOutOfRange`] if `offset > log_end_offset`,
    /// [`StorageError::Poisoned`], [`StorageError::Io`].
    pub fn delete_records_before(&mut self, offset: i64) -> Result<i64> {
        self.check_writable()?;
        let leo = self.log_end_offset();
        if offset > leo {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                log_start_offset: self.log_start_offset,
                log_end_offset: leo,
            });
        }
        if offset <= self.log_start_offset {
            return Ok(self.log_start_offset);
        }
        self.log_start_offset = offset;
        self.recovery_point = self.recovery_point.max(offset);
        if offset == leo && self.active().size > 0 {
            self.roll_to(leo)?;
        }
        let n = self
            .segments
            .windows(2)
            .take_while(|w| w[1].base_offset <= offset)
            .count();
        self.delete_first_segments(n)?;
        Ok(self.log_start_offset)
    }

    /// Follower truncation (KIP-101, Kafka `UnifiedLog.truncateTo`): removes every batch
    /// whose last offset is `>= offset`. Segments with a base offset above `offset` are
    /// deleted and the segment holding `offset` is cut (its `.log` and indexes). A batch
    /// straddling `offset` is removed whole, so the new log end offset may be below
    /// `offset` (Kafka would report `offset`). `offset >= log_end_offset` is a no-op; an
    /// `offset` below the log start offset empties the log and restarts it at `offset`.
    /// The truncation is fsynced before returning so removed data cannot reappear after
    /// a crash. The producer state is rebuilt for the new end: snapshots above it are
    /// deleted, the newest one at or below it is loaded and the remaining batches are
    /// replayed (Kafka `ProducerStateManager.truncateAndReload`); `.txnindex` entries of
    /// removed markers go with them; emptying the log clears the state and all
    /// snapshots. The leader-epoch cache drops the epochs starting at or above the new
    /// log end offset (Kafka `truncateFromEnd`), or is cleared when the log is emptied.
    /// Errors: [`StorageError::Poisoned`], [`StorageError::Io`] (poisons).
    pub fn truncate_to(&mut self, offset: i64) -> Result<()> {
        self.check_writable()?;
        if offset >= self.log_end_offset() {
            return Ok(());
        }
        let result = self.try_truncate_to(offset.max(0));
        if result.is_err() {
            self.poison();
        }
        result
    }

    /// Empties the log and restarts it at `offset` (Kafka `truncateFullyAndStartAt`): a
    /// follower whose fetch offset fell below the leader's log start, or a Raft log
    /// that installed a snapshot past its end. `offset` may be above the log end offset.
    /// Producer state, snapshots and the leader-epoch cache are cleared; the change is
    /// fsynced. Errors: [`StorageError::Poisoned`], [`StorageError::Io`] (poisons).
    pub fn truncate_fully_and_start_at(&mut self, offset: i64) -> Result<()> {
        self.check_writable()?;
        let offset = offset.max(0);
        // `try_truncate_to` empties the log whenever the target is below the log start.
        self.log_start_offset = self.log_start_offset.max(offset + 1);
        let result = self.try_truncate_to(offset);
        if result.is_err() {
            self.poison();
        }
        result
    }

    /// Records that leader epoch `epoch` starts at the log end offset (Kafka
    /// `maybeAssignEpochStartOffset`, done when a replica becomes leader), so
    /// OffsetForLeaderEpoch and divergence checks know the epoch before its first
    /// append. No-op when the latest cached epoch is already `epoch` or newer. Errors:
    /// [`StorageError::Io`] writing the `leader-epoch-checkpoint`.
    pub fn assign_epoch_start(&mut self, epoch: i32) -> Result<()> {
        if self.epochs.latest_epoch().is_some_and(|e| e >= epoch) {
            return Ok(());
        }
        let leo = self.log_end_offset();
        self.epochs.assign(epoch, leo)
    }

    fn try_truncate_to(&mut self, offset: i64) -> Result<()> {
        tracing::info!(dir = %self.dir.display(), offset, "truncating log");
        self.rewrite_epoch += 1;
        if offset < self.log_start_offset {
            // Empty the log and restart it at `offset` (Kafka `truncateFullyAndStartAt`).
            // Reuse a segment already based at `offset`, else create one first, so the
            // list is never empty and no file name is shared by two segments.
            let reuse = self.segments.iter().position(|s| s.base_offset == offset);
            let keep = match reuse {
                Some(i) => i,
                None => {
                    self.segments.push(Segment::create(&self.dir, offset)?);
                    self.segments.len() - 1
                }
            };
            let kept = self.segments.remove(keep);
            let old: Vec<Segment> = std::mem::replace(&mut self.segments, vec![kept]);
            for segment in old {
                segment.delete_files()?;
            }
            let active = self.active_mut();
            active.truncate_to(offset)?;
            active.sync()?;
            sync_dir(&self.dir)?;
            self.log_start_offset = offset;
            // Kafka `truncateFullyAndStartAt`: no producer state and no leader epoch
            // survives.
            crate::producer_snapshot::delete_where(&self.dir, |_| true)?;
            self.producers = ProducerStateManager::default();
            self.snapshot_offset = None;
            self.epochs.clear()?;
        } else {
            let keep = self
                .segments
                .partition_point(|s| s.base_offset <= offset)
                .max(1);
            let removed: Vec<Segment> = self.segments.drain(keep..).collect();
            let dir_changed = !removed.is_empty();
            for segment in removed {
                segment.delete_files()?;
            }
            let active = self.active_mut();
            active.truncate_to(offset)?;
            active.sync()?;
            if dir_changed {
                sync_dir(&self.dir)?;
            }
            let leo = self.log_end_offset();
            self.epochs.truncate_from_end(leo)?;
            crate::producer_snapshot::delete_where(&self.dir, |o| o > leo)?;
            self.rebuild_producer_state(leo, i64::MAX)?;
        }
        let leo = self.log_end_offset();
        self.recovery_point = self.recovery_point.min(leo);
        if self.recovery_point >= leo {
            self.unflushed_since_ms = None;
        }
        Ok(())
    }

    /// Clean close (Kafka `UnifiedLog.close` after a flush): writes a producer snapshot at
    /// the log end offset (so the next open replays nothing), seals the active segment's
    /// time index and fsyncs all unflushed data, indexes and the directory. The server
    /// writes [`crate::CLEAN_SHUTDOWN_FILE`] only after every log closed successfully.
    /// Errors: [`StorageError::Poisoned`] (nothing is flushed: the next open must
    /// recover), [`StorageError::Io`].
    pub fn close(mut self) -> Result<()> {
        self.check_writable()?;
        self.take_producer_snapshot()?;
        self.active_mut().ix.seal()?;
        self.flush()?;
        self.active().sync()?;
        sync_dir(&self.dir)
    }

    /// Removes the partition directory with all its files (topic deletion). Works on a
    /// poisoned log. Errors: [`StorageError::Io`].
    pub fn delete(self) -> Result<()> {
        let dir = self.dir.clone();
        drop(self);
        fs::remove_dir_all(&dir).ctx(|| format!("remove {}", dir.display()))
    }
}

/// Creates `dir` and every missing ancestor, fsyncing the directory that holds each one
/// it creates: POSIX makes a new directory entry durable only once the directory holding
/// it is fsynced, so without this a power cut can drop a log directory (and everything
/// acknowledged under it) whose files were all synced. An existing `dir` costs one
/// `stat`.
///
/// Errors: the first failing `mkdir` or `fsync` (an `AlreadyExists` race is not one).
pub fn create_dir_durable(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let parent = match dir.parent() {
        Some(p) if p.as_os_str().is_empty() => Path::new("."),
        Some(p) => p,
        None => return fs::create_dir(dir),
    };
    create_dir_durable(parent)?;
    match fs::create_dir(dir) {
        Ok(()) => File::open(parent)?.sync_all(),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(e),
    }
}

/// Replaces the file at `path` with `bytes` so that a crash at any point leaves either
/// the old file or the new one, whole: writes `<path>.tmp`, fsyncs it, renames it over
/// `path` and fsyncs the directory (the rename is durable only then).
///
/// Errors: the first failing create, write, fsync or rename.
pub fn write_file_durable(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut file = File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&tmp, path)?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

/// fsyncs a directory so that file creations, renames and deletions in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .ctx(|| format!("fsync directory {}", dir.display()))
}
