//! The leader-epoch cache of a partition (KIP-101, KIP-279; Kafka `LeaderEpochFileCache`
//! and `LeaderEpochCheckpointFile`) and the [`Log`] methods that answer from it.
//!
//! Each entry `(epoch, start_offset)` says that leader epoch `epoch` wrote its first
//! batch at offset `start_offset`; an epoch's range of offsets runs up to the next
//! entry's start offset (exclusive), the latest one up to the log end offset. Followers
//! use it through OffsetForLeaderEpoch to find where their log diverged from the
//! leader's, and consumers to detect truncation (KIP-320).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::checkpoint;
use crate::error::{Result, StorageError};
use crate::log::Log;
use crate::segment::Segment;

/// File name of the cache in the partition directory (Kafka
/// `LeaderEpochCheckpointFile.LEADER_EPOCH_CHECKPOINT_FILENAME`).
pub(crate) const LEADER_EPOCH_CHECKPOINT_FILE: &str = "leader-epoch-checkpoint";

/// Kafka `RecordBatch.NO_PARTITION_LEADER_EPOCH` / `UNDEFINED_EPOCH`: no epoch.
pub(crate) const UNDEFINED_EPOCH: i32 = -1;

/// Kafka `UNDEFINED_EPOCH_OFFSET`: no offset.
pub(crate) const UNDEFINED_EPOCH_OFFSET: i64 = -1;

/// Largest `leader-epoch-checkpoint` read (bytes); a longer file is corrupt. An entry
/// takes at most 31 bytes, so this is room for half a million epochs.
const MAX_FILE_BYTES: u64 = 16 << 20;

/// One entry of the cache: leader epoch `epoch` starts at offset `start_offset`
/// (Kafka `EpochEntry`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEntry {
    /// The leader epoch (>= 0).
    pub epoch: i32,
    /// Offset of the first batch written in `epoch` (inclusive, >= 0).
    pub start_offset: i64,
}

/// What [`LeaderEpochCache::load`] found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FileState {
    /// No `leader-epoch-checkpoint` (a new partition, or one written before the cache).
    Missing,
    /// A well-formed file; the cache holds its entries.
    Valid,
    /// A file that does not parse; the cache is empty and must be rebuilt. The reason.
    Corrupt(String),
}

/// The leader-epoch cache (Kafka `LeaderEpochFileCache`, KIP-101 / KIP-279): the start
/// offset of every leader epoch still in the log, ascending in both epoch and start
/// offset, kept in memory and in the file `leader-epoch-checkpoint` of the partition
/// directory.
///
/// File format (Kafka `LeaderEpochCheckpointFile`, byte-compatible), UTF-8 text, `\n`
/// line ends:
///
/// ```text
/// 0              <- version
/// 3              <- number of entries
/// 0 0            <- "<epoch> <start offset>", single space, ascending
/// 2 150
/// 5 1200
/// ```
///
/// Writes: only when the entries changed (epoch changes are rare: an append in the
/// latest epoch costs a comparison), by atomic replacement (`<file>.tmp`, fsync, rename,
/// fsync of the directory; shared with the offset checkpoints in [`checkpoint`]), so
/// after a crash the file holds either the old or the new entries.
///
/// Recovery rule ([`Log::open`]): a missing file is an empty cache; if the log holds
/// batches, the cache is rebuilt from them (every v2 batch header carries its
/// `partitionLeaderEpoch` and `baseOffset`) and written, which also upgrades data
/// directories written before the cache existed. A file that does not parse (wrong
/// version, count mismatch, a bad line, entries not strictly ascending) is never
/// trusted and never stops the broker: a warning is logged and the cache is rebuilt the
/// same way. A valid file is extended by the batches that crash recovery re-validates,
/// then cut to the recovered log end and advanced to the log start offset (Kafka
/// `LogLoader.load`). The file may run ahead of unflushed data (it is fsynced at each
/// change, the data at the next flush); that same cut at open repairs it.
///
/// The [`Log`] owns and updates its cache (appends, truncation, retention,
/// DeleteRecords); others read it through [`Log::leader_epoch_cache`],
/// [`Log::end_offset_for_epoch`] and [`Log::epoch_for_offset`].
#[derive(Debug)]
pub struct LeaderEpochCache {
    path: PathBuf,
    entries: Vec<EpochEntry>,
    /// True while `entries` differ from what the file holds (a write is due).
    dirty: bool,
}

/// Parses an entry line `<epoch> <start offset>` (whitespace separated, as Kafka's
/// `LeaderEpochCheckpointFile.Formatter` reads it).
fn parse_line(line: &str) -> std::result::Result<EpochEntry, String> {
    let mut fields = line.split_ascii_whitespace();
    let (Some(epoch), Some(start), None) = (fields.next(), fields.next(), fields.next()) else {
        return Err(format!("expected \"<epoch> <start offset>\", got {line:?}"));
    };
    let epoch: i32 = epoch.parse().map_err(|_| format!("bad epoch {epoch:?}"))?;
    let start_offset: i64 = start
        .parse()
        .map_err(|_| format!("bad start offset {start:?}"))?;
    if epoch < 0 || start_offset < 0 {
        return Err(format!("negative entry {line:?}"));
    }
    Ok(EpochEntry {
        epoch,
        start_offset,
    })
}

impl LeaderEpochCache {
    /// Loads `<dir>/leader-epoch-checkpoint`. A missing file gives an empty cache
    /// ([`FileState::Missing`]); a corrupt one an empty cache marked for writing
    /// ([`FileState::Corrupt`]; the caller rebuilds it with
    /// [`LeaderEpochCache::rebuild`]). Errors: [`StorageError::Io`] if the file exists
    /// but cannot be read.
    pub(crate) fn load(dir: &Path) -> Result<(LeaderEpochCache, FileState)> {
        let path = dir.join(LEADER_EPOCH_CHECKPOINT_FILE);
        let (entries, state) = match checkpoint::read_with(&path, MAX_FILE_BYTES, parse_line) {
            Ok(None) => (Vec::new(), FileState::Missing),
            Ok(Some(entries)) => match entries
                .windows(2)
                .position(|w| w[1].epoch <= w[0].epoch || w[1].start_offset <= w[0].start_offset)
            {
                None => (entries, FileState::Valid),
                Some(i) => (
                    Vec::new(),
                    FileState::Corrupt(format!(
                        "entry {} {:?} does not follow {:?}",
                        i + 2,
                        entries[i + 1],
                        entries[i]
                    )),
                ),
            },
            Err(e @ StorageError::CorruptCheckpoint { .. }) => {
                (Vec::new(), FileState::Corrupt(e.to_string()))
            }
            Err(e) => return Err(e),
        };
        let dirty = matches!(state, FileState::Corrupt(_));
        Ok((
            LeaderEpochCache {
                path,
                entries,
                dirty,
            },
            state,
        ))
    }

    /// The `leader-epoch-checkpoint` file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// All entries, ascending (for tests and debugging).
    pub fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    /// The entry of the latest epoch (Kafka `latestEntry`).
    pub fn latest_entry(&self) -> Option<EpochEntry> {
        self.entries.last().copied()
    }

    /// The entry of the earliest epoch still cached (Kafka `earliestEntry`).
    pub fn earliest_entry(&self) -> Option<EpochEntry> {
        self.entries.first().copied()
    }

    /// The latest leader epoch, `None` if the cache is empty (Kafka `latestEpoch`).
    pub fn latest_epoch(&self) -> Option<i32> {
        self.entries.last().map(|e| e.epoch)
    }

    /// Whether [`LeaderEpochCache::assign`] of `(epoch, start_offset)` would change the
    /// cache (Kafka `isUpdateNeeded`, plus the ignored negative values): false for a
    /// negative epoch or offset, and when the latest entry has this epoch and a start
    /// offset `<= start_offset`. One comparison with the latest entry, no allocation:
    /// the append path calls it for every append.
    #[inline]
    pub(crate) fn is_update_needed(&self, epoch: i32, start_offset: i64) -> bool {
        epoch >= 0
            && start_offset >= 0
            && self
                .entries
                .last()
                .is_none_or(|l| l.epoch != epoch || start_offset < l.start_offset)
    }

    /// Records that leader epoch `epoch` starts at offset `start_offset` (Kafka
    /// `LeaderEpochFileCache.assign`, KIP-101 / KIP-279). A negative epoch (a batch
    /// without one, `NO_PARTITION_LEADER_EPOCH`) or offset is ignored, and so is the
    /// latest epoch again at a start offset at or above its own. Otherwise every entry
    /// whose epoch is `>= epoch` or whose start offset is `>= start_offset` is removed
    /// (they would no longer be monotonic: an older epoch re-assigned truncates the
    /// later ones), the entry is added and the file is written. Errors:
    /// [`StorageError::Io`] (the entry stays in memory and is written by the next
    /// successful write).
    pub(crate) fn assign(&mut self, epoch: i32, start_offset: i64) -> Result<()> {
        self.assign_in_memory(epoch, start_offset);
        self.flush()
    }

    /// [`LeaderEpochCache::assign`] without the write; returns whether it changed the
    /// entries (then [`LeaderEpochCache::flush`] is due).
    pub(crate) fn assign_in_memory(&mut self, epoch: i32, start_offset: i64) -> bool {
        if !self.is_update_needed(epoch, start_offset) {
            return false;
        }
        let keep = self
            .entries
            .partition_point(|e| e.epoch < epoch && e.start_offset < start_offset);
        if keep < self.entries.len() {
            tracing::info!(
                path = %self.path.display(),
                epoch,
                start_offset,
                removed = ?&self.entries[keep..],
                "leader epoch cache: removing entries not below the new one"
            );
            self.entries.truncate(keep);
        }
        tracing::debug!(path = %self.path.display(), epoch, start_offset, "leader epoch cache: new epoch");
        self.entries.push(EpochEntry {
            epoch,
            start_offset,
        });
        self.dirty = true;
        true
    }

    /// Crash recovery's variant of [`LeaderEpochCache::assign_in_memory`] for a batch
    /// re-validated by recovery (Kafka `LogSegment.recover`): assigns only an epoch
    /// above the latest one, so recovered data never removes entries of a valid file.
    pub(crate) fn assign_recovered(&mut self, epoch: i32, start_offset: i64) {
        if self.latest_epoch().is_none_or(|latest| epoch > latest) {
            self.assign_in_memory(epoch, start_offset);
        }
    }

    /// The `(epoch, end offset)` OffsetForLeaderEpoch answers for `requested_epoch`
    /// (Kafka `LeaderEpochFileCache.endOffsetFor`, KIP-101 / KIP-279). The end offset
    /// is exclusive: the start offset of the next epoch, or `log_end_offset` for the
    /// latest epoch.
    ///
    /// - `requested_epoch == -1` (`UNDEFINED_EPOCH`): `(-1, -1)`;
    /// - the latest epoch: `(requested_epoch, log_end_offset)`;
    /// - no epoch above the requested one is known: `(-1, -1)`;
    /// - no entry at or below the requested epoch (it is older than the log start):
    ///   `(requested_epoch, start offset of the first epoch above it)`;
    /// - otherwise `(largest known epoch <= requested, start offset of the first epoch
    ///   above it)`: a follower that asks for an epoch this leader never had learns the
    ///   last common epoch and where it ended (KIP-279).
    pub fn end_offset_for(&self, requested_epoch: i32, log_end_offset: i64) -> (i32, i64) {
        if requested_epoch == UNDEFINED_EPOCH {
            return (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET);
        }
        if self.latest_epoch() == Some(requested_epoch) {
            return (requested_epoch, log_end_offset);
        }
        let higher = self.entries.partition_point(|e| e.epoch <= requested_epoch);
        let Some(higher_entry) = self.entries.get(higher) else {
            return (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET);
        };
        match higher.checked_sub(1).and_then(|i| self.entries.get(i)) {
            None => (requested_epoch, higher_entry.start_offset),
            Some(floor) => (floor.epoch, higher_entry.start_offset),
        }
    }

    /// The epoch whose range holds `offset` (Kafka `epochForOffset`): that of the last
    /// entry starting at or below `offset` (the latest epoch for offsets at or past the
    /// log end), `None` below the first entry or if the cache is empty.
    pub fn epoch_for_offset(&self, offset: i64) -> Option<i32> {
        let i = self.entries.partition_point(|e| e.start_offset <= offset);
        i.checked_sub(1)
            .and_then(|i| self.entries.get(i))
            .map(|e| e.epoch)
    }

    /// After the log was truncated to end at `end_offset` (exclusive): removes every
    /// entry starting at or above it and writes the file if that changed anything
    /// (Kafka `truncateFromEnd`). A negative `end_offset` does nothing. Errors:
    /// [`StorageError::Io`].
    pub(crate) fn truncate_from_end(&mut self, end_offset: i64) -> Result<()> {
        self.truncate_from_end_in_memory(end_offset);
        self.flush()
    }

    fn truncate_from_end_in_memory(&mut self, end_offset: i64) {
        if end_offset >= 0
            && self
                .entries
                .last()
                .is_some_and(|e| e.start_offset >= end_offset)
        {
            let keep = self
                .entries
                .partition_point(|e| e.start_offset < end_offset);
            self.entries.truncate(keep);
            self.dirty = true;
        }
    }

    /// After the log start offset advanced to `start_offset` (retention,
    /// DeleteRecords): removes the entries wholly below it and moves the start of the
    /// entry covering `start_offset` up to `start_offset` (Kafka `truncateFromStart`
    /// keeps that epoch with the new start), writing the file if that changed anything.
    /// Errors: [`StorageError::Io`].
    pub(crate) fn truncate_from_start(&mut self, start_offset: i64) -> Result<()> {
        self.truncate_from_start_in_memory(start_offset);
        self.flush()
    }

    fn truncate_from_start_in_memory(&mut self, start_offset: i64) {
        let n = self
            .entries
            .partition_point(|e| e.start_offset <= start_offset);
        let Some(covering) = n.checked_sub(1).and_then(|i| self.entries.get(i)).copied() else {
            return;
        };
        if n == 1 && covering.start_offset == start_offset {
            return;
        }
        self.entries.drain(..n - 1);
        if let Some(first) = self.entries.first_mut() {
            first.start_offset = start_offset;
        }
        self.dirty = true;
    }

    /// Removes every entry and writes the (empty) file (Kafka `clearAndFlush`, used
    /// when the log is emptied and restarted by `truncateFullyAndStartAt`). Errors:
    /// [`StorageError::Io`].
    pub(crate) fn clear(&mut self) -> Result<()> {
        self.clear_in_memory();
        self.flush()
    }

    fn clear_in_memory(&mut self) {
        if !self.entries.is_empty() {
            self.entries.clear();
            self.dirty = true;
        }
    }

    /// Rebuilds the entries from the batch headers of `segments` (in order, as if each
    /// batch had been appended: [`LeaderEpochCache::assign_in_memory`]) and marks the
    /// file for writing. A segment whose batch chain breaks part way (trusted data
    /// damaged since) contributes its batches up to the break, with a warning.
    /// Errors: [`StorageError::Io`] if a segment cannot be read.
    pub(crate) fn rebuild(&mut self, segments: &[Segment]) -> Result<()> {
        self.entries.clear();
        self.dirty = true;
        for segment in segments {
            let mut scanner = segment.scanner(0);
            loop {
                match scanner.next_batch() {
                    Ok(Some((_, header))) => {
                        self.assign_in_memory(header.partition_leader_epoch, header.base_offset);
                    }
                    Ok(None) => break,
                    Err(StorageError::CorruptSegment {
                        path,
                        position,
                        reason,
                    }) => {
                        tracing::warn!(path = %path.display(), position, %reason, "leader epoch cache rebuild: skipping the rest of a damaged segment");
                        break;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    /// The open-time fix-up after recovery (Kafka `LogLoader.load`): clears the cache
    /// if the log restarted empty, else cuts it at `log_end_offset` and advances it to
    /// `log_start_offset`; then writes the file if anything changed or it was corrupt.
    /// Errors: [`StorageError::Io`].
    pub(crate) fn finish_load(
        &mut self,
        log_start_offset: i64,
        log_end_offset: i64,
        restarted_empty: bool,
    ) -> Result<()> {
        if restarted_empty {
            self.clear_in_memory();
        } else {
            self.truncate_from_end_in_memory(log_end_offset);
            self.truncate_from_start_in_memory(log_start_offset);
        }
        self.flush()
    }

    /// Writes the file if the entries changed since the last write. Errors:
    /// [`StorageError::Io`] (the cache stays marked for writing).
    pub(crate) fn flush(&mut self) -> Result<()> {
        if !self.dirty {
            return Ok(());
        }
        checkpoint::write_with(&self.path, &self.entries, |out, e| {
            let _ = write!(out, "{} {}", e.epoch, e.start_offset);
        })?;
        self.dirty = false;
        Ok(())
    }
}

impl Log {
    /// The latest leader epoch in the log, `None` if no batch carried one (Kafka
    /// `UnifiedLog.latestEpoch`; KIP-101).
    pub fn latest_epoch(&self) -> Option<i32> {
        self.epochs.latest_epoch()
    }

    /// `(epoch, end offset)` for OffsetForLeaderEpoch (KIP-101 / KIP-279, Kafka
    /// `LeaderEpochFileCache.endOffsetFor` with the log end offset): the end offset
    /// (exclusive) of `epoch`, or of the largest epoch below it that this log knows,
    /// with that epoch; `(epoch, log end offset)` for the latest epoch; `(-1, -1)` for
    /// `epoch == -1` or an epoch above every known one. An epoch older than every
    /// cached one gets `(epoch, start offset of the first cached epoch)`.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> (i32, i64) {
        self.epochs.end_offset_for(epoch, self.log_end_offset())
    }

    /// The leader epoch that wrote `offset`: the epoch of the last cached entry starting
    /// at or below it, `None` below the first (Kafka `epochForOffset`).
    pub fn epoch_for_offset(&self, offset: i64) -> Option<i32> {
        self.epochs.epoch_for_offset(offset)
    }

    /// The log's leader-epoch cache, read only.
    pub fn leader_epoch_cache(&self) -> &LeaderEpochCache {
        &self.epochs
    }

    /// Every cached `(epoch, start offset)`, ascending: the contents of
    /// `leader-epoch-checkpoint` (for tests, tools and debugging).
    pub fn leader_epoch_entries(&self) -> Vec<(i32, i64)> {
        self.epochs
            .entries()
            .iter()
            .map(|e| (e.epoch, e.start_offset))
            .collect()
    }
}
