//! One segment: a `.log` file of batches plus its `.index` and `.timeindex`.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use moldau_protocol::batch::BatchHeader;

use crate::error::{IoContext, Result, StorageError};
use crate::index::OffsetIndex;
use crate::records::{self, HeaderScanner};
use crate::time_index::TimeIndex;
use crate::txn_index::TxnIndex;

/// `Kafka`'s "no timestamp" value, used while a segment holds no timestamped batch.
pub(crate) const NO_TIMESTAMP: i64 = -1;

/// File name of a segment file: the base offset zero-padded to 20 digits plus `ext`
/// (`"log"`, `"index"`, `"timeindex"`), as Kafka's `LogFileUtils.filenamePrefixFromOffset`.
pub(crate) fn file_name(base_offset: i64, ext: &str) -> String {
    format!("{base_offset:020}.{ext}")
}

/// Parses `<20 digits>.<ext>` back into a base offset.
pub(crate) fn parse_file_name(name: &str, ext: &str) -> Option<i64> {
    let stem = name.strip_suffix(ext)?.strip_suffix('.')?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// The two indexes of a segment plus the running state that decides when they get
/// entries. Append and recovery both feed batches through [`Indexes::track`], so a
/// rebuilt index is identical to the one built while appending.
#[derive(Debug)]
pub(crate) struct Indexes {
    pub(crate) offset: OffsetIndex,
    pub(crate) time: TimeIndex,
    /// Largest batch `maxTimestamp` in the segment (ms), [`NO_TIMESTAMP`] if none.
    pub(crate) max_timestamp: i64,
    /// Last offset of the first batch that reached `max_timestamp`, -1 if none.
    pub(crate) offset_of_max_timestamp: i64,
    /// Bytes appended since the last `.index` entry.
    pub(crate) bytes_since_last_entry: u64,
}

impl Indexes {
    /// Accounts for the batch at `position`: updates the maximum timestamp and, once at
    /// least `interval` bytes were appended since the previous entry, adds an `.index`
    /// entry for this batch and a `.timeindex` entry if the maximum grew (Kafka
    /// `LogSegment.append`). Entries stay pending until [`Indexes::write_pending`].
    pub(crate) fn track(&mut self, position: u64, header: &BatchHeader, interval: u64) {
        if header.max_timestamp > self.max_timestamp {
            self.max_timestamp = header.max_timestamp;
            self.offset_of_max_timestamp = header.last_offset();
        }
        if self.bytes_since_last_entry >= interval {
            self.offset.append(header.last_offset(), position);
            self.add_time_entry();
            self.bytes_since_last_entry = 0;
        }
        self.bytes_since_last_entry += header.size_in_bytes() as u64;
    }

    fn add_time_entry(&mut self) {
        if self.offset_of_max_timestamp >= 0 {
            self.time
                .maybe_append(self.max_timestamp, self.offset_of_max_timestamp);
        }
    }

    /// Records the segment's final maximum timestamp in the time index (Kafka
    /// `LogSegment.onBecomeInactiveSegment`) and writes pending entries.
    pub(crate) fn seal(&mut self) -> Result<()> {
        self.add_time_entry();
        self.write_pending()
    }

    /// Writes pending entries of both indexes (one write each, if any).
    pub(crate) fn write_pending(&mut self) -> Result<()> {
        self.offset.write_pending()?;
        self.time.write_pending()
    }

    fn clear(&mut self) -> Result<()> {
        self.offset.clear()?;
        self.time.clear()?;
        self.max_timestamp = NO_TIMESTAMP;
        self.offset_of_max_timestamp = -1;
        self.bytes_since_last_entry = 0;
        Ok(())
    }
}

/// A segment of the log: `<base>.log` with batches exactly as appended (offsets
/// assigned), its derived `.index` and `.timeindex`, and its `.txnindex` of aborted
/// transactions (created with the first entry; format and recovery rule at `TxnIndex`
/// in `txn_index.rs`).
///
/// `.log` format: v2 record batches end to end (see `moldau_protocol::batch`), no file
/// header, the same bytes Kafka stores. Only the first `size` bytes are data; a write
/// that failed part way may leave bytes after them until recovery truncates the file.
///
/// Recovery rule (Kafka `LogSegment.recover`): validate batch by batch from position 0
/// (header, length, CRC-32C, base offsets never going backwards and fitting a 32-bit
/// relative offset), truncate the file at the first invalid byte, and rebuild both
/// indexes from the valid batches.
#[derive(Debug)]
pub(crate) struct Segment {
    pub(crate) base_offset: i64,
    pub(crate) log_path: PathBuf,
    pub(crate) log: Arc<File>,
    /// Bytes of valid data in `.log`.
    pub(crate) size: u64,
    /// Offset after the last batch (exclusive); `base_offset` when empty.
    pub(crate) next_offset: i64,
    pub(crate) ix: Indexes,
    /// Aborted transactions whose marker is in this segment.
    pub(crate) txn: TxnIndex,
    /// Wall-clock ms from which `segment.ms` is measured; `None` while empty.
    pub(crate) roll_base_ms: Option<i64>,
    /// Whether the directory entries of this segment's files are known durable.
    pub(crate) dir_synced: Arc<AtomicBool>,
}

/// Result of opening a segment from disk.
pub(crate) struct Opened {
    pub(crate) segment: Segment,
    /// Bytes cut from the `.log` by recovery (0 if none).
    pub(crate) truncated_bytes: u64,
    /// Whether the segment was scanned with full validation (and must be fsynced).
    pub(crate) recovered: bool,
}

fn open_log_file(path: &Path, create_empty: bool) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .append(true)
        .create(create_empty)
        .truncate(false)
        .open(path)
        .ctx(|| format!("open {}", path.display()))
}

impl Segment {
    /// Creates a new empty segment in `dir` at `base_offset` (replacing leftover files
    /// of that name). Its directory entries are not yet fsynced.
    pub(crate) fn create(dir: &Path, base_offset: i64) -> Result<Segment> {
        let log_path = dir.join(file_name(base_offset, "log"));
        let log = open_log_file(&log_path, true)?;
        log.set_len(0)
            .ctx(|| format!("truncate {}", log_path.display()))?;
        let ix = Indexes {
            offset: OffsetIndex::create(&dir.join(file_name(base_offset, "index")), base_offset)?,
            time: TimeIndex::create(&dir.join(file_name(base_offset, "timeindex")), base_offset)?,
            max_timestamp: NO_TIMESTAMP,
            offset_of_max_timestamp: -1,
            bytes_since_last_entry: 0,
        };
        let txn = TxnIndex::create(&dir.join(file_name(base_offset, "txnindex")))?;
        Ok(Segment {
            base_offset,
            log_path,
            log: Arc::new(log),
            size: 0,
            next_offset: base_offset,
            ix,
            txn,
            roll_base_ms: None,
            dir_synced: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Opens the segment at `base_offset` in `dir`. With `recover`, runs full recovery;
    /// otherwise trusts the `.log`, sanity-checks the indexes and scans only the batches
    /// after the last `.index` entry, falling back to recovery if anything is off.
    /// `on_recovered` sees the header of every batch a recovery validated, in order
    /// (the leader-epoch cache learns the epochs of recovered data from it, as in
    /// Kafka `LogSegment.recover`).
    pub(crate) fn open(
        dir: &Path,
        base_offset: i64,
        recover: bool,
        interval: u64,
        on_recovered: &mut dyn FnMut(&BatchHeader),
    ) -> Result<Opened> {
        let log_path = dir.join(file_name(base_offset, "log"));
        let log = open_log_file(&log_path, false)?;
        let size = log
            .metadata()
            .ctx(|| format!("stat {}", log_path.display()))?
            .len();
        let (offset, offset_sane) = OffsetIndex::open(
            &dir.join(file_name(base_offset, "index")),
            base_offset,
            size,
        )?;
        let (time, time_sane) = TimeIndex::open(
            &dir.join(file_name(base_offset, "timeindex")),
            base_offset,
            size,
        )?;
        let mut segment = Segment {
            base_offset,
            log_path,
            log: Arc::new(log),
            size,
            next_offset: base_offset,
            ix: Indexes {
                offset,
                time,
                max_timestamp: NO_TIMESTAMP,
                offset_of_max_timestamp: -1,
                bytes_since_last_entry: 0,
            },
            txn: TxnIndex::empty(&dir.join(file_name(base_offset, "txnindex"))),
            roll_base_ms: None,
            dir_synced: Arc::new(AtomicBool::new(true)),
        };
        let txn_path = segment.txn.path().to_path_buf();
        if !recover && offset_sane && time_sane && segment.load_tail()? {
            segment.txn = TxnIndex::load(&txn_path, base_offset, segment.next_offset)?;
            return Ok(Opened {
                segment,
                truncated_bytes: 0,
                recovered: false,
            });
        }
        if !recover {
            tracing::warn!(path = %segment.log_path.display(), "index failed sanity check; rebuilding");
        }
        let truncated_bytes = segment.recover(interval, on_recovered)?;
        segment.txn = TxnIndex::load(&txn_path, base_offset, segment.next_offset)?;
        Ok(Opened {
            segment,
            truncated_bytes,
            recovered: true,
        })
    }

    /// Derives `next_offset`, the maximum timestamp and the index-interval counter from
    /// the indexes plus a header scan of the batches after the last `.index` entry.
    /// Returns false if the indexes and the data disagree (caller rebuilds).
    fn load_tail(&mut self) -> Result<bool> {
        let last_entry = self.ix.offset.last();
        let start = last_entry.map_or(0, |(_, pos)| pos);
        let (mut max_ts, mut max_off) = self.ix.time.last().unwrap_or((NO_TIMESTAMP, -1));
        let mut next_offset = self.base_offset;
        let mut bytes = 0u64;
        let mut scanner = HeaderScanner::new(&self.log, &self.log_path, start, self.size);
        let mut first = true;
        loop {
            let item = match scanner.next_batch() {
                Ok(item) => item,
                Err(StorageError::CorruptSegment { reason, .. }) => {
                    tracing::warn!(path = %self.log_path.display(), %reason, "unexpected data after last index entry");
                    return Ok(false);
                }
                Err(e) => return Err(e),
            };
            let Some((_, header)) = item else { break };
            if first {
                if let Some((offset, _)) = last_entry {
                    if header.last_offset() != offset {
                        return Ok(false);
                    }
                }
                first = false;
            }
            if header.base_offset < next_offset {
                return Ok(false);
            }
            if header.max_timestamp > max_ts {
                max_ts = header.max_timestamp;
                max_off = header.last_offset();
            }
            bytes += header.size_in_bytes() as u64;
            next_offset = header.next_offset();
        }
        if last_entry.is_some_and(|(offset, _)| offset >= next_offset)
            || !self.ix.time.check_offsets(next_offset)
        {
            return Ok(false);
        }
        self.next_offset = next_offset;
        self.ix.max_timestamp = max_ts;
        self.ix.offset_of_max_timestamp = max_off;
        self.ix.bytes_since_last_entry = bytes;
        Ok(true)
    }

    /// Full recovery (see the type docs), calling `on_batch` for each valid batch.
    /// Returns the number of bytes cut from `.log`.
    pub(crate) fn recover(
        &mut self,
        interval: u64,
        on_batch: &mut dyn FnMut(&BatchHeader),
    ) -> Result<u64> {
        self.ix.clear()?;
        let file_len = self
            .log
            .metadata()
            .ctx(|| format!("stat {}", self.log_path.display()))?
            .len();
        let ix = &mut self.ix;
        let scan = records::scan_valid(
            &self.log,
            &self.log_path,
            file_len,
            self.base_offset,
            |pos, h| {
                ix.track(pos, h, interval);
                on_batch(h);
            },
        )?;
        let truncated = file_len - scan.valid_bytes;
        if let Some(reason) = &scan.stopped {
            tracing::warn!(
                path = %self.log_path.display(),
                position = scan.valid_bytes,
                truncated,
                %reason,
                "truncating segment at invalid batch"
            );
            self.log
                .set_len(scan.valid_bytes)
                .ctx(|| format!("truncate {}", self.log_path.display()))?;
        }
        self.size = scan.valid_bytes;
        self.next_offset = scan.next_offset;
        self.ix.seal()?;
        Ok(truncated)
    }

    /// The bytes `batches` (whole batches, offsets assigned) appended with one write.
    /// Index bookkeeping is the caller's ([`Indexes::track`]).
    pub(crate) fn write(&mut self, batches: &[u8]) -> Result<()> {
        (&*self.log)
            .write_all(batches)
            .ctx(|| format!("write {}", self.log_path.display()))?;
        self.size += batches.len() as u64;
        Ok(())
    }

    /// Position and header of the first batch whose last offset is `>= offset`, `None`
    /// if the segment has none. Starts from the `.index` entry at or below `offset`.
    pub(crate) fn find_batch(&self, offset: i64) -> Result<Option<(u64, BatchHeader)>> {
        let start = self.ix.offset.lookup(offset).map_or(0, |(_, pos)| pos);
        let mut scanner = HeaderScanner::new(&self.log, &self.log_path, start, self.size);
        while let Some((pos, header)) = scanner.next_batch()? {
            if header.last_offset() >= offset {
                return Ok(Some((pos, header)));
            }
        }
        Ok(None)
    }

    /// A header scanner over `[start, size)`.
    pub(crate) fn scanner(&self, start: u64) -> HeaderScanner<'_> {
        HeaderScanner::new(&self.log, &self.log_path, start, self.size)
    }

    /// Reads `buf.len()` bytes at `position`.
    pub(crate) fn read_at(&self, buf: &mut [u8], position: u64) -> Result<()> {
        self.log
            .read_exact_at(buf, position)
            .ctx(|| format!("read {}", self.log_path.display()))
    }

    /// `maxTimestamp` of the first batch (for `segment.ms` of a segment loaded from disk).
    pub(crate) fn first_batch_timestamp(&self) -> Result<Option<i64>> {
        Ok(self.scanner(0).next_batch()?.map(|(_, h)| h.max_timestamp))
    }

    /// Removes every batch whose last offset is `>= offset` (so a batch containing
    /// `offset` goes entirely, as in Kafka `LogSegment.truncateTo`), cutting `.log` and
    /// both indexes. Returns the bytes removed.
    pub(crate) fn truncate_to(&mut self, offset: i64) -> Result<u64> {
        let Some((pos, header)) = self.find_batch(offset)? else {
            return Ok(0);
        };
        let removed = self.size - pos;
        self.log
            .set_len(pos)
            .ctx(|| format!("truncate {}", self.log_path.display()))?;
        self.size = pos;
        self.ix.offset.truncate_to_position(pos)?;
        self.ix.time.truncate_to_offset(header.base_offset)?;
        if !self.load_tail()? {
            return Err(records::corrupt(
                &self.log_path,
                pos,
                "indexes inconsistent after truncation",
            ));
        }
        if self.size == 0 {
            self.roll_base_ms = None;
        }
        self.txn.truncate_to(self.next_offset)?;
        Ok(removed)
    }

    /// Handles of the files (`.log`, `.index`, `.timeindex`, and `.txnindex` if it
    /// exists), for fsync.
    pub(crate) fn files(&self) -> Vec<&Arc<File>> {
        let mut files = vec![
            &self.log,
            self.ix.offset.file().file(),
            self.ix.time.file().file(),
        ];
        files.extend(self.txn.file());
        files
    }

    /// Appends aborted transactions (markers in this segment) to the `.txnindex`; a
    /// newly created file marks the directory entries as not yet durable.
    pub(crate) fn append_aborted(&mut self, txns: &[crate::AbortedTxn]) -> Result<()> {
        if self.txn.append(txns)? {
            // A fresh flag rather than a store: a flush already under way may set the
            // old one after a directory fsync that missed this file.
            self.dir_synced = Arc::new(AtomicBool::new(false));
        }
        Ok(())
    }

    /// fdatasyncs the files.
    pub(crate) fn sync(&self) -> Result<()> {
        for f in self.files() {
            f.sync_data()
                .ctx(|| format!("fsync segment {}", self.log_path.display()))?;
        }
        Ok(())
    }

    /// Deletes the segment's files: renames each to `<name>.deleted` first (so a crash
    /// part way leaves only names that [`crate::Log::open`] removes), then unlinks them.
    pub(crate) fn delete_files(self) -> Result<()> {
        let paths = [
            self.log_path.clone(),
            self.ix.offset.file().path().to_path_buf(),
            self.ix.time.file().path().to_path_buf(),
            self.txn.path().to_path_buf(),
        ];
        drop(self);
        let mut renamed = Vec::with_capacity(paths.len());
        for path in paths {
            let mut deleted = path.clone().into_os_string();
            deleted.push(".deleted");
            let deleted = PathBuf::from(deleted);
            match fs::rename(&path, &deleted) {
                Ok(()) => renamed.push(deleted),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(StorageError::io(format!("rename {}", path.display()), e)),
            }
        }
        for path in renamed {
            fs::remove_file(&path).ctx(|| format!("remove {}", path.display()))?;
        }
        Ok(())
    }

    /// Marks the directory entries durable (after a directory fsync).
    pub(crate) fn is_dir_synced(&self) -> bool {
        self.dir_synced.load(Ordering::Acquire)
    }
}
