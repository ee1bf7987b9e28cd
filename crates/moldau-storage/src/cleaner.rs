//! The log cleaner (`cleanup.policy=compact`): keeps the latest record per key.
//!
//! Follows Kafka's `LogCleaner` (`Cleaner.doClean` / `cleanSegments`) and
//! `LogCleanerManager.cleanableOffsets`, split in three phases so a partition's lock is
//! held only briefly:
//!
//! 1. [`Log::clean_plan`] (read lock, cheap): decides whether the log is due and
//!    snapshots the sealed segments to clean (`clean_plan.rs`);
//! 2. [`CleanPlan::build`] (no lock, the heavy part): builds the key → latest-offset map
//!    of the dirty range and writes the cleaned segments as `*.cleaned` files;
//! 3. [`Log::install_clean`] (write lock, short): checks the plan is still current and
//!    swaps the new segments in (`clean_install.rs`).
//!
//! Offsets: the *clean* part of the log is `[log start, first dirty)`, already cleaned;
//! the *dirty* part `[first dirty, first uncleanable)`; the active segment (and
//! anything newer than `min.compaction.lag.ms`) is uncleanable. The caller keeps the
//! first dirty offset (Kafka's `cleaner-offset-checkpoint`) and advances it to
//! [`CleanStats::first_dirty_offset`] after each installed clean.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
#[cfg(test)]
use std::time::SystemTime;
use std::time::{Duration, UNIX_EPOCH};

use moldau_protocol::batch::{self, BatchHeader, Compression, Record, RECORD_BATCH_OVERHEAD};

use crate::clean_plan::{CleanPlan, PlannedSegment};
use crate::config::LogConfig;
use crate::error::{IoContext, Result};
use crate::index::OffsetIndex;
#[cfg(doc)]
use crate::log::Log;
use crate::offset_map::OffsetMap;
use crate::records::{self, corrupt, Decompress, HeaderScanner};
use crate::segment::{self, Indexes, NO_TIMESTAMP};
use crate::time_index::TimeIndex;
use crate::txn_index::TxnIndex;

/// Compresses a records section for a rewritten batch: given the batch's codec and the
/// uncompressed records (laid end to end), returns the compressed bytes in the format
/// Kafka expects for that codec, or `None` if it cannot (the cleaner then writes the
/// batch uncompressed). The counterpart of [`Decompress`]; the broker supplies both.
pub type Compress = dyn Fn(Compression, &[u8]) -> Option<Vec<u8>>;

/// Suffix of a cleaned segment file not yet committed (Kafka `LogFileUtils.CLEANED_FILE_SUFFIX`).
pub(crate) const CLEANED_SUFFIX: &str = ".cleaned";
/// Suffix of a cleaned segment file that is committed but not yet in place (Kafka
/// `LogFileUtils.SWAP_FILE_SUFFIX`).
pub(crate) const SWAP_SUFFIX: &str = ".swap";
/// Extensions of a segment's files, in the order they are renamed: the `.log` last, so
/// its `.swap` name is the commit point of the segment.
pub(crate) const SEGMENT_EXTS: [&str; 4] = ["index", "timeindex", "txnindex", "log"];

/// `<dir>/<base, 20 digits>.<ext><suffix>`.
pub(crate) fn segment_path(dir: &Path, base_offset: i64, ext: &str, suffix: &str) -> PathBuf {
    dir.join(format!("{}{suffix}", segment::file_name(base_offset, ext)))
}

/// Figures of one clean.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CleanStats {
    /// Segments rewritten.
    pub segments_before: usize,
    /// Segments written in their place (consecutive inputs are merged).
    pub segments_after: usize,
    /// Bytes of the rewritten segments' `.log` files before the clean.
    pub bytes_before: u64,
    /// Bytes of the written `.log` files.
    pub bytes_after: u64,
    /// Records copied into the cleaned segments.
    pub records_kept: u64,
    /// Records dropped: superseded by a later record of the same key, null keys, and
    /// tombstones past `delete.retention.ms`.
    pub records_removed: u64,
    /// The first dirty offset for the next clean (the exclusive end of the range the
    /// key map covered); store it once [`Log::install_clean`] installed the clean.
    pub first_dirty_offset: i64,
}

/// Result of [`Log::install_clean`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CleanOutcome {
    /// The cleaned segments replaced the originals.
    Installed(CleanStats),
    /// Retention, DeleteRecords, truncation or another clean changed the planned
    /// segments after the plan was made; the cleaned files were deleted and the log is
    /// unchanged. Not an error: plan again later.
    Stale,
}

/// One written `*.cleaned` segment and the inputs it replaces.
#[derive(Debug)]
pub(crate) struct CleanedSegment {
    pub(crate) base_offset: i64,
    /// Exclusive end offset; equals the last input's next offset.
    pub(crate) next_offset: i64,
    /// Indexes into [`CleanedLog::inputs`].
    pub(crate) inputs: Range<usize>,
}

/// The output of [`CleanPlan::build`]: cleaned segments written next to the log as
/// `<base>.log.cleaned`, `<base>.index.cleaned`, `<base>.timeindex.cleaned` (fsynced),
/// waiting for [`Log::install_clean`].
///
/// Each output segment replaces a run of consecutive input segments, is named after the
/// first one's base offset and ends exactly where the last one ended (its last batch is
/// kept, as an empty batch if need be), so it covers the offset range
/// `[base offset, next offset)` of its inputs, which crash recovery relies on (see
/// `Log::open`). Dropping a `CleanedLog` without installing it deletes its files
/// (best effort; leftovers are deleted by the next `Log::open`), as does
/// [`CleanedLog::discard`].
#[derive(Debug)]
pub struct CleanedLog {
    pub(crate) dir: PathBuf,
    pub(crate) rewrite_epoch: u64,
    pub(crate) interval: u64,
    pub(crate) inputs: Vec<PlannedSegment>,
    pub(crate) outputs: Vec<CleanedSegment>,
    pub(crate) stats: CleanStats,
    /// Whether dropping still owns (and deletes) the `.cleaned` files.
    pub(crate) armed: bool,
}

impl CleanedLog {
    /// What the clean did (bytes, records, the next first dirty offset).
    pub fn stats(&self) -> &CleanStats {
        &self.stats
    }

    /// Deletes the cleaned files without installing them. Errors: [`crate::StorageError::Io`].
    pub fn discard(mut self) -> Result<()> {
        self.armed = false;
        remove_cleaned_files(&self.dir, &self.outputs)
    }
}

impl Drop for CleanedLog {
    fn drop(&mut self) {
        if self.armed {
            if let Err(e) = remove_cleaned_files(&self.dir, &self.outputs) {
                tracing::warn!(error = %e, "could not remove cleaned segment files");
            }
        }
    }
}

/// Removes the `*.cleaned` files of `outputs` (missing ones are fine).
pub(crate) fn remove_cleaned_files(dir: &Path, outputs: &[CleanedSegment]) -> Result<()> {
    for out in outputs {
        for ext in SEGMENT_EXTS {
            remove_if_exists(&segment_path(dir, out.base_offset, ext, CLEANED_SUFFIX))?;
        }
    }
    Ok(())
}

/// `fs::remove_file`, with a missing file counting as removed.
pub(crate) fn remove_if_exists(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(crate::StorageError::io(
            format!("remove {}", path.display()),
            e,
        )),
        _ => Ok(()),
    }
}

/// What to do with one input batch.
enum Verdict {
    /// Copy the batch byte for byte.
    Copy,
    /// Write this re-encoded batch instead.
    Rewrite(Vec<u8>),
    /// Leave the batch out.
    Drop,
}

/// The state shared by the two passes of [`CleanPlan::build`].
struct Cleaner<'a> {
    plan: &'a CleanPlan,
    map: OffsetMap,
    now_ms: i64,
    decompress: &'a Decompress,
    compress: &'a Compress,
    stats: CleanStats,
    buf: Vec<u8>,
    /// Aborted transactions of the plan by producer id: `(first offset, marker offset)`.
    aborted: HashMap<i64, Vec<(i64, i64)>>,
}

impl Cleaner<'_> {
    /// True for a transactional data batch inside one of its producer's aborted
    /// transactions: its records are never mapped nor kept (Kafka
    /// `CleanedTransactionMetadata`).
    fn is_aborted(&self, header: &BatchHeader) -> bool {
        header.is_transactional()
            && !header.is_control()
            && self.aborted.get(&header.producer_id).is_some_and(|txns| {
                txns.iter()
                    .any(|&(first, last)| first <= header.base_offset && header.base_offset <= last)
            })
    }
}

/// The records of a batch (decompressed if need be) and the buffer they borrow.
fn decode<'b>(
    batch: &'b [u8],
    header: &BatchHeader,
    decompress: &Decompress,
    inflated: &'b mut Vec<u8>,
) -> Option<Vec<Record<'b>>> {
    let section = batch.get(RECORD_BATCH_OVERHEAD..header.size_in_bytes())?;
    let body: &'b [u8] = if header.compression() == Compression::None {
        section
    } else {
        *inflated = decompress(header.compression(), section)?;
        &inflated[..]
    };
    batch::records_in(body, header.records_count)
}

impl CleanPlan {
    /// The heavy phase of a clean (Kafka `Cleaner.doClean`); needs no [`Log`] and no
    /// lock. `now_ms`: wall-clock ms for the tombstone rule; `dedupe_buffer_bytes`:
    /// memory for the key map (Kafka `log.cleaner.dedupe.buffer.size`, default
    /// 134217728); `decompress` / `compress`: the broker's codecs.
    ///
    /// 1. Builds the map key → latest offset over the dirty part, batch by batch
    ///    (control batches, null keys and the records of aborted transactions are
    ///    skipped). When the next batch's new keys
    ///    would not fit the buffer, the mapped range ends before that batch and the rest
    ///    stays dirty for the next clean; at least one batch is always mapped, so every
    ///    clean makes progress (a single batch may exceed a tiny buffer).
    /// 2. Rewrites every segment of the cleanable range that starts below the end of
    ///    the mapped range, grouping consecutive segments so each output stays within
    ///    `segment.bytes` and `segment.index.bytes` (by input sizes, Kafka
    ///    `groupSegmentsBySize`). A record is kept iff it has a key, no later offset for
    ///    its key is mapped, and it is not a tombstone (null value) that lies in the
    ///    clean part (`offset < first dirty`) of a segment last modified before
    ///    `now_ms - delete.retention.ms` (Kafka's rule before KIP-534). A record of an
    ///    aborted transaction (a transactional batch of a producer inside one of its
    ///    aborted transactions' `[first offset, marker offset]`, from the plan's
    ///    `.txnindex` entries; Kafka `CleanedTransactionMetadata`) is never kept.
    ///    Control batches are copied unchanged (Kafka eventually removes markers after
    ///    `delete.retention.ms`; Moldau keeps them). A batch keeping all its records is copied byte for byte;
    ///    one keeping some is re-encoded with the same header fields, the kept records'
    ///    bytes verbatim and a new count, length and CRC, recompressed with its codec (or
    ///    written uncompressed if `compress` gives `None`); one keeping none is dropped,
    ///    except the last batch of each output segment, kept as an empty batch so the
    ///    segment still ends at its inputs' last offset. A batch that cannot be
    ///    decompressed or decoded is copied unchanged (and its keys are not mapped).
    ///    Each output gets its inputs' `.txnindex` entries (as `.txnindex.cleaned`, only
    ///    if there are any), its files are fsynced and the `.log` gets the newest
    ///    modification time of its inputs.
    ///
    /// Errors: [`crate::StorageError::Io`], [`crate::StorageError::CorruptSegment`] (a
    /// malformed batch header, which a concurrent truncation can also cause); files
    /// written so far are deleted.
    pub fn build(
        self,
        now_ms: i64,
        dedupe_buffer_bytes: usize,
        decompress: &Decompress,
        compress: &Compress,
    ) -> Result<CleanedLog> {
        let mut cleaner = Cleaner {
            plan: &self,
            map: OffsetMap::new(dedupe_buffer_bytes),
            now_ms,
            decompress,
            compress,
            stats: CleanStats::default(),
            buf: Vec::new(),
            aborted: HashMap::new(),
        };
        for txn in &self.aborted_txns {
            cleaner
                .aborted
                .entry(txn.producer_id)
                .or_default()
                .push((txn.first_offset, txn.last_offset));
        }
        let end = cleaner.build_offset_map()?;
        cleaner.stats.first_dirty_offset = end;
        let rewrite = self
            .segments
            .iter()
            .take_while(|s| s.base_offset < end)
            .count();
        let groups = group_segments(&self.config, &self.segments[..rewrite]);
        let mut cleaned = CleanedLog {
            dir: self.dir.clone(),
            rewrite_epoch: self.rewrite_epoch,
            interval: self.config.index_interval_bytes,
            inputs: Vec::new(),
            outputs: Vec::with_capacity(groups.len()),
            stats: CleanStats::default(),
            armed: true,
        };
        for group in groups {
            let inputs = &self.segments[group];
            let at = cleaned.inputs.len();
            // Registered before writing, so a failure removes the partial files too.
            cleaned.outputs.push(CleanedSegment {
                base_offset: inputs[0].base_offset,
                next_offset: inputs[0].base_offset,
                inputs: at..at + inputs.len(),
            });
            cleaned.inputs.extend(inputs.iter().cloned());
            let next_offset = cleaner.write_segment(inputs)?;
            if let Some(out) = cleaned.outputs.last_mut() {
                out.next_offset = next_offset;
            }
        }
        cleaner.stats.segments_before = cleaned.inputs.len();
        cleaner.stats.segments_after = cleaned.outputs.len();
        cleaned.stats = cleaner.stats;
        tracing::debug!(dir = %self.dir.display(), stats = ?cleaned.stats, "built cleaned segments");
        Ok(cleaned)
    }
}

/// Splits `segments` into runs of consecutive segments whose combined `.log` bytes,
/// `.index` and `.timeindex` entries stay within the limits of one segment and whose
/// offsets fit 32-bit relative offsets. A run never ends with an empty segment (so its
/// output ends exactly where its last input ends); runs of empty segments only are left
/// out.
fn group_segments(config: &LogConfig, segments: &[PlannedSegment]) -> Vec<Range<usize>> {
    let max_bytes = config.effective_segment_bytes();
    let max_index = config.max_index_entries(8);
    let max_time = config.max_index_entries(12);
    let mut groups = Vec::new();
    let mut i = 0;
    while i < segments.len() {
        let first = &segments[i];
        let (mut bytes, mut index, mut time) = (
            first.size,
            first.offset_index_entries,
            first.time_index_entries,
        );
        let mut j = i + 1;
        while let Some(s) = segments.get(j) {
            if bytes + s.size > max_bytes
                || index + s.offset_index_entries > max_index
                || time + s.time_index_entries > max_time
                || s.next_offset - 1 - first.base_offset > i64::from(i32::MAX)
            {
                break;
            }
            bytes += s.size;
            index += s.offset_index_entries;
            time += s.time_index_entries;
            j += 1;
        }
        let mut end = j;
        while end > i && segments[end - 1].size == 0 {
            end -= 1;
        }
        if end > i {
            groups.push(i..end);
            i = end;
        } else {
            i = j;
        }
    }
    groups
}

impl Cleaner<'_> {
    /// Pass 1: maps the keys of the dirty part; returns the exclusive end offset of the
    /// mapped range.
    fn build_offset_map(&mut self) -> Result<i64> {
        let first_dirty = self.plan.first_dirty_offset;
        let mut end = first_dirty;
        let mut hashes: Vec<(u128, i64)> = Vec::new();
        let mut inflated = Vec::new();
        for segment in self
            .plan
            .segments
            .iter()
            .filter(|s| s.next_offset > first_dirty)
        {
            let mut scanner = HeaderScanner::new(&segment.file, &segment.log_path, 0, segment.size);
            while let Some((pos, header)) = scanner.next_batch()? {
                if header.last_offset() < first_dirty {
                    continue;
                }
                if !header.is_control() && !self.is_aborted(&header) {
                    records::read_batch(
                        &segment.file,
                        &segment.log_path,
                        pos,
                        &header,
                        &mut self.buf,
                    )?;
                    hashes.clear();
                    match decode(&self.buf, &header, self.decompress, &mut inflated) {
                        Some(recs) => {
                            for r in recs {
                                let offset = header.base_offset + i64::from(r.offset_delta);
                                if let (Some(key), true) = (r.key, offset >= first_dirty) {
                                    hashes.push((self.map.hash(key), offset));
                                }
                            }
                        }
                        None => tracing::warn!(
                            path = %segment.log_path.display(), position = pos,
                            "cannot decode batch; its keys are not compacted"
                        ),
                    }
                    hashes.sort_unstable();
                    let mut new_keys = 0;
                    for (i, &(h, _)) in hashes.iter().enumerate() {
                        if (i == 0 || hashes[i - 1].0 != h) && !self.map.contains(h) {
                            new_keys += 1;
                        }
                    }
                    if self.map.len() > 0 && self.map.len() + new_keys > self.map.capacity() {
                        tracing::debug!(end, keys = self.map.len(), "dedupe buffer full");
                        return Ok(end);
                    }
                    for &(h, offset) in &hashes {
                        self.map.put(h, offset);
                    }
                }
                end = header.next_offset();
            }
        }
        Ok(end)
    }

    /// Pass 2 for one group: writes the cleaned `.log`, `.index` and `.timeindex` as
    /// `*.cleaned` files, fsynced. Returns the output's next offset.
    fn write_segment(&mut self, inputs: &[PlannedSegment]) -> Result<i64> {
        let dir = &self.plan.dir;
        let base = inputs[0].base_offset;
        let log_path = segment_path(dir, base, "log", CLEANED_SUFFIX);
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&log_path)
            .ctx(|| format!("create {}", log_path.display()))?;
        let mut ix = Indexes {
            offset: OffsetIndex::create(&segment_path(dir, base, "index", CLEANED_SUFFIX), base)?,
            time: TimeIndex::create(&segment_path(dir, base, "timeindex", CLEANED_SUFFIX), base)?,
            max_timestamp: NO_TIMESTAMP,
            offset_of_max_timestamp: -1,
            bytes_since_last_entry: 0,
        };
        let interval = self.plan.config.index_interval_bytes;
        let mut out = BufWriter::with_capacity(1 << 20, &file);
        let mut position = 0u64;
        let mut next_offset = base;
        let mut inflated = Vec::new();
        let mut buf = std::mem::take(&mut self.buf);
        for (n, segment) in inputs.iter().enumerate() {
            let mut scanner = HeaderScanner::new(&segment.file, &segment.log_path, 0, segment.size);
            while let Some((pos, header)) = scanner.next_batch()? {
                let size = header.size_in_bytes() as u64;
                let last_of_output = n + 1 == inputs.len() && pos + size == segment.size;
                records::read_batch(&segment.file, &segment.log_path, pos, &header, &mut buf)?;
                let verdict =
                    self.filter_batch(&buf, &header, segment, last_of_output, &mut inflated)?;
                let bytes: Cow<'_, [u8]> = match verdict {
                    Verdict::Copy => Cow::Borrowed(&buf[..]),
                    Verdict::Rewrite(v) => Cow::Owned(v),
                    Verdict::Drop => continue,
                };
                let written = BatchHeader::parse(&bytes)
                    .map_err(|e| corrupt(&segment.log_path, pos, e.to_string()))?;
                out.write_all(&bytes)
                    .ctx(|| format!("write {}", log_path.display()))?;
                ix.track(position, &written, interval);
                position += bytes.len() as u64;
                next_offset = written.next_offset();
            }
        }
        self.buf = buf;
        out.flush()
            .ctx(|| format!("write {}", log_path.display()))?;
        drop(out);
        ix.seal()?;
        let newest = inputs.iter().map(|s| s.last_modified_ms).max().unwrap_or(0);
        file.set_modified(UNIX_EPOCH + Duration::from_millis(u64::try_from(newest).unwrap_or(0)))
            .ctx(|| format!("set modification time of {}", log_path.display()))?;
        let sync = |f: &File, p: &Path| f.sync_all().ctx(|| format!("fsync {}", p.display()));
        sync(&file, &log_path)?;
        sync(ix.offset.file().file(), ix.offset.file().path())?;
        sync(ix.time.file().file(), ix.time.file().path())?;
        // The inputs' aborted transactions (markers are always kept), if any.
        let aborted: Vec<_> = inputs
            .iter()
            .flat_map(|s| s.aborted.iter().copied())
            .collect();
        let mut txn = TxnIndex::create(&segment_path(dir, base, "txnindex", CLEANED_SUFFIX))?;
        txn.append(&aborted)?;
        if let Some(f) = txn.file() {
            sync(f, txn.path())?;
        }
        let expected = inputs.last().map_or(base, |s| s.next_offset);
        if next_offset != expected {
            return Err(corrupt(
                &log_path,
                position,
                format!("cleaned segment ends at offset {next_offset}, its inputs at {expected}"),
            ));
        }
        self.stats.bytes_before += inputs.iter().map(|s| s.size).sum::<u64>();
        self.stats.bytes_after += position;
        Ok(next_offset)
    }

    /// Decides the fate of one batch (see [`CleanPlan::build`]) and counts records.
    fn filter_batch(
        &mut self,
        batch: &[u8],
        header: &BatchHeader,
        segment: &PlannedSegment,
        last_of_output: bool,
        inflated: &mut Vec<u8>,
    ) -> Result<Verdict> {
        let count = u64::try_from(header.records_count).unwrap_or(0);
        if header.is_control() {
            self.stats.records_kept += count;
            return Ok(Verdict::Copy);
        }
        if self.is_aborted(header) {
            self.stats.records_removed += count;
            if !last_of_output {
                return Ok(Verdict::Drop);
            }
            if count == 0 && header.compression() == Compression::None {
                return Ok(Verdict::Copy);
            }
            return batch::with_records(batch, Compression::None, 0, &[])
                .map(Verdict::Rewrite)
                .map_err(|e| corrupt(&segment.log_path, 0, e.to_string()));
        }
        let Some(recs) = decode(batch, header, self.decompress, inflated) else {
            tracing::warn!(path = %segment.log_path.display(), offset = header.base_offset, "cannot decode batch; copied unchanged");
            self.stats.records_kept += count;
            return Ok(Verdict::Copy);
        };
        let tombstone_horizon = self
            .now_ms
            .saturating_sub(self.plan.config.delete_retention_ms);
        let drop_tombstones = segment.last_modified_ms < tombstone_horizon;
        let kept: Vec<&Record<'_>> = recs
            .iter()
            .filter(|r| {
                let Some(key) = r.key else { return false };
                let offset = header.base_offset + i64::from(r.offset_delta);
                if self
                    .map
                    .get(self.map.hash(key))
                    .is_some_and(|latest| offset < latest)
                {
                    return false;
                }
                !(r.value.is_none() && drop_tombstones && offset < self.plan.first_dirty_offset)
            })
            .collect();
        self.stats.records_kept += kept.len() as u64;
        self.stats.records_removed += (recs.len() - kept.len()) as u64;
        if !kept.is_empty() && kept.len() == recs.len() {
            return Ok(Verdict::Copy);
        }
        let rebuilt = if kept.is_empty() {
            if !last_of_output {
                return Ok(Verdict::Drop);
            }
            if recs.is_empty() && header.compression() == Compression::None {
                return Ok(Verdict::Copy); // already an empty batch
            }
            // Kafka's empty batch: header only, no codec (`writeEmptyHeader`).
            batch::with_records(batch, Compression::None, 0, &[])
        } else {
            let raw: Vec<u8> = kept.iter().flat_map(|r| r.raw.iter().copied()).collect();
            let n = kept.len() as i32;
            let codec = header.compression();
            match (codec != Compression::None)
                .then(|| (self.compress)(codec, &raw))
                .flatten()
            {
                Some(compressed) => batch::with_records(batch, codec, n, &compressed),
                None => batch::with_records(batch, Compression::None, n, &raw),
            }
        };
        rebuilt
            .map(Verdict::Rewrite)
            .map_err(|e| corrupt(&segment.log_path, 0, e.to_string()))
    }
}

/// Wall-clock time now in ms since the epoch (tests compare it with file times).
#[cfg(test)]
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
