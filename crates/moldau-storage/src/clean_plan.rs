//! Phase 1 of a clean: deciding whether a log is due and snapshotting what to clean
//! (Kafka `LogCleanerManager.cleanableOffsets` / `grabFilthiestCompactedLog`).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use crate::config::LogConfig;
use crate::error::{IoContext, Result};
use crate::log::Log;
use crate::segment::{Segment, NO_TIMESTAMP};
use crate::txn_index::AbortedTxn;

/// Last-modified time of `file` in ms since the epoch.
pub(crate) fn mtime_ms(file: &File, path: &Path) -> Result<i64> {
    let modified = file
        .metadata()
        .and_then(|m| m.modified())
        .ctx(|| format!("stat {}", path.display()))?;
    Ok(modified
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)))
}

/// A sealed segment as [`Log::clean_plan`] saw it: enough to read it and to recognise
/// it again at install time, without the [`Log`].
#[derive(Debug, Clone)]
pub(crate) struct PlannedSegment {
    pub(crate) base_offset: i64,
    /// Exclusive end offset.
    pub(crate) next_offset: i64,
    /// Bytes of the `.log`.
    pub(crate) size: u64,
    /// Last-modified time of the `.log`, ms since the epoch.
    pub(crate) last_modified_ms: i64,
    pub(crate) offset_index_entries: usize,
    pub(crate) time_index_entries: usize,
    pub(crate) log_path: PathBuf,
    /// The open `.log`: reads keep working if retention deletes the file meanwhile, and
    /// install compares it with the log's handle to detect a replaced segment.
    pub(crate) file: Arc<File>,
    /// The segment's `.txnindex` entries, carried over to its cleaned output.
    pub(crate) aborted: Vec<AbortedTxn>,
}

impl PlannedSegment {
    fn of(segment: &Segment) -> Result<PlannedSegment> {
        Ok(PlannedSegment {
            base_offset: segment.base_offset,
            next_offset: segment.next_offset,
            size: segment.size,
            last_modified_ms: mtime_ms(&segment.log, &segment.log_path)?,
            offset_index_entries: segment.ix.offset.len(),
            time_index_entries: segment.ix.time.len(),
            log_path: segment.log_path.clone(),
            file: Arc::clone(&segment.log),
            aborted: segment.txn.entries().to_vec(),
        })
    }

    /// True if `segment` is still the very segment this snapshot was taken of.
    pub(crate) fn matches(&self, segment: &Segment) -> bool {
        segment.base_offset == self.base_offset
            && segment.next_offset == self.next_offset
            && segment.size == self.size
            && Arc::ptr_eq(&segment.log, &self.file)
    }
}

/// What [`Log::clean_plan`] decided to clean: the sealed segments of the cleanable range
/// `[log start offset, first uncleanable offset)` and where the dirty part begins. Holds
/// open handles of the segment files, no reference to the [`Log`]; consume it with
/// [`CleanPlan::build`] outside the partition lock.
#[derive(Debug)]
pub struct CleanPlan {
    pub(crate) dir: PathBuf,
    pub(crate) config: LogConfig,
    pub(crate) first_dirty_offset: i64,
    pub(crate) first_uncleanable_offset: i64,
    pub(crate) dirty_bytes: u64,
    pub(crate) total_bytes: u64,
    pub(crate) segments: Vec<PlannedSegment>,
    pub(crate) rewrite_epoch: u64,
    /// Aborted transactions overlapping the cleanable range (from every segment's
    /// `.txnindex`: a marker may lie beyond the range): their records are removed.
    pub(crate) aborted_txns: Vec<AbortedTxn>,
}

impl CleanPlan {
    /// First offset of the dirty part (inclusive): the caller's first dirty offset,
    /// or the log start offset if that was below the log start or above the log end.
    pub fn first_dirty_offset(&self) -> i64 {
        self.first_dirty_offset
    }

    /// Exclusive end of the cleanable range: the active segment's base offset, lowered
    /// by `min.compaction.lag.ms` and the caller's bound.
    pub fn first_uncleanable_offset(&self) -> i64 {
        self.first_uncleanable_offset
    }

    /// Bytes of the cleanable range's segments (`.log` files).
    pub fn total_bytes(&self) -> u64 {
        self.total_bytes
    }

    /// Bytes of the segments holding dirty offsets.
    pub fn dirty_bytes(&self) -> u64 {
        self.dirty_bytes
    }

    /// `dirty_bytes / total_bytes`, compared with `min.cleanable.dirty.ratio`.
    pub fn dirty_ratio(&self) -> f64 {
        self.dirty_bytes as f64 / self.total_bytes.max(1) as f64
    }

    /// Number of sealed segments in the cleanable range.
    pub fn num_segments(&self) -> usize {
        self.segments.len()
    }
}

impl Log {
    /// [`Log::clean_plan_below`] without an upper bound.
    pub fn clean_plan(&self, first_dirty_offset: i64, now_ms: i64) -> Result<Option<CleanPlan>> {
        self.clean_plan_below(first_dirty_offset, i64::MAX, now_ms)
    }

    /// Decides whether the log is due for cleaning (Kafka
    /// `LogCleanerManager.cleanableOffsets` and `grabFilthiestCompactedLog`) and, if so,
    /// snapshots what to clean. Cheap: one `fstat` per segment of the range, and no data
    /// read except, when the dirty ratio is too low and `max.compaction.lag.ms` is set,
    /// the first batch header of each dirty segment. Meant to run under a read lock.
    ///
    /// - `None` unless `cleanup.policy` includes `compact`, or if the log is poisoned.
    /// - `first_dirty_offset` (inclusive) is where the last clean stopped; below the log
    ///   start offset or above the log end offset it counts as the log start offset
    ///   (as Kafka does).
    /// - Cleanable range: the sealed segments from the one holding the log start
    ///   offset up to, exclusive, the first of: the active segment; the first segment
    ///   with an offset at or above `max_offset` (exclusive bound; pass the high
    ///   watermark so unreplicated data is never compacted) or at or above
    ///   [`Log::first_unstable_offset`] (an open transaction's records are never
    ///   compacted, Kafka's last-stable-offset bound); the first
    ///   segment holding dirty offsets whose newest record is younger than
    ///   `min.compaction.lag.ms` (KIP-58; a segment without timestamps uses its file's
    ///   modification time).
    /// - Dirty ratio = bytes of the range's segments holding offsets `>=
    ///   first_dirty_offset` / bytes of the whole range. A plan is returned if the dirty
    ///   bytes are non-zero and the ratio is at least `min.cleanable.dirty.ratio`, or
    ///   the oldest first-batch timestamp of a dirty segment is older than `now_ms -
    ///   max.compaction.lag.ms` (KIP-354).
    ///
    /// Errors: [`crate::StorageError::Io`], [`crate::StorageError::CorruptSegment`].
    pub fn clean_plan_below(
        &self,
        first_dirty_offset: i64,
        max_offset: i64,
        now_ms: i64,
    ) -> Result<Option<CleanPlan>> {
        if !self.config.cleanup_policy.compacts() || self.poisoned {
            return Ok(None);
        }
        let max_offset = max_offset.min(self.first_unstable_offset().unwrap_or(i64::MAX));
        let start = self.log_start_offset;
        let first_dirty =
            if first_dirty_offset < start || first_dirty_offset > self.log_end_offset() {
                start
            } else {
                first_dirty_offset
            };
        let sealed = &self.segments[..self.segments.len() - 1];
        let from = sealed.iter().take_while(|s| s.next_offset <= start).count();
        let lag_cutoff = (self.config.min_compaction_lag_ms > 0)
            .then(|| now_ms.saturating_sub(self.config.min_compaction_lag_ms));
        let mut until = from;
        for segment in &sealed[from..] {
            if segment.next_offset > max_offset {
                break;
            }
            if let Some(cutoff) = lag_cutoff {
                if segment.next_offset > first_dirty && largest_timestamp(segment)? > cutoff {
                    break;
                }
            }
            until += 1;
        }
        let range = &sealed[from..until];
        let first_uncleanable = self.segments[until].base_offset;
        let total_bytes: u64 = range.iter().map(|s| s.size).sum();
        let dirty: Vec<&Segment> = range
            .iter()
            .filter(|s| s.next_offset > first_dirty)
            .collect();
        let dirty_bytes: u64 = dirty.iter().map(|s| s.size).sum();
        if dirty_bytes == 0 {
            return Ok(None);
        }
        let ratio = dirty_bytes as f64 / total_bytes as f64;
        let due = ratio >= self.config.min_cleanable_dirty_ratio
            || self.max_lag_exceeded(&dirty, now_ms)?;
        if !due {
            return Ok(None);
        }
        let segments = range
            .iter()
            .map(PlannedSegment::of)
            .collect::<Result<Vec<_>>>()?;
        let range_start = range.first().map_or(first_uncleanable, |s| s.base_offset);
        let aborted_txns = self.collect_aborted_transactions(range_start, first_uncleanable);
        Ok(Some(CleanPlan {
            dir: self.dir.clone(),
            config: self.config.clone(),
            first_dirty_offset: first_dirty,
            first_uncleanable_offset: first_uncleanable,
            dirty_bytes,
            total_bytes,
            segments,
            rewrite_epoch: self.rewrite_epoch,
            aborted_txns,
        }))
    }

    /// KIP-354 (Kafka `LogCleanerManager.maxCompactionDelay`): true if some dirty
    /// segment's first batch has a (positive) timestamp below `now - max.compaction.lag.ms`.
    fn max_lag_exceeded(&self, dirty: &[&Segment], now_ms: i64) -> Result<bool> {
        if self.config.max_compaction_lag_ms == i64::MAX {
            return Ok(false);
        }
        let cutoff = now_ms.saturating_sub(self.config.max_compaction_lag_ms.max(0));
        for segment in dirty {
            if segment
                .first_batch_timestamp()?
                .is_some_and(|t| t > 0 && t < cutoff)
            {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// A segment's newest record timestamp, or its file's modification time if it holds no
/// timestamp (Kafka `LogSegment.largestTimestamp`).
fn largest_timestamp(segment: &Segment) -> Result<i64> {
    if segment.ix.max_timestamp != NO_TIMESTAMP {
        return Ok(segment.ix.max_timestamp);
    }
    mtime_ms(&segment.log, &segment.log_path)
}
