//! The sparse offset index (`<base offset>.index`) and the file plumbing shared with the
//! time index.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use moldau_protocol::batch::RECORD_BATCH_OVERHEAD;

use crate::error::{IoContext, Result};

/// An index file opened for appending, plus how many of its entries are on disk.
///
/// Unlike Kafka, index files are not preallocated to `segment.index.bytes` and are not
/// memory-mapped: entries are appended with ordinary writes and an in-memory `Vec` copy
/// is binary searched. So an index file is always exactly `entries × entry size` bytes
/// and there is nothing to trim when a segment is closed; memory use per segment equals
/// its index file sizes.
#[derive(Debug)]
pub(crate) struct IndexFile {
    path: PathBuf,
    file: Arc<File>,
    /// Entries already written to the file (the rest of the owner's `Vec` is pending).
    persisted: usize,
    entry_size: usize,
    pub(crate) scratch: Vec<u8>,
}

impl IndexFile {
    /// Opens (creating if missing) `path`. With `truncate`, empties it.
    pub(crate) fn open(path: &Path, entry_size: usize, truncate: bool) -> Result<IndexFile> {
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .ctx(|| format!("open {}", path.display()))?;
        if truncate {
            file.set_len(0)
                .ctx(|| format!("truncate {}", path.display()))?;
        }
        Ok(IndexFile {
            path: path.to_path_buf(),
            file: Arc::new(file),
            persisted: 0,
            entry_size,
            scratch: Vec::new(),
        })
    }

    /// Reads the whole file if its length is a multiple of the entry size and at most
    /// `max_len` bytes (checked before allocating). `Ok(None)` means "not plausible,
    /// rebuild it".
    pub(crate) fn read_all(&mut self, max_len: u64) -> Result<Option<Vec<u8>>> {
        let len = self
            .file
            .metadata()
            .ctx(|| format!("stat {}", self.path.display()))?
            .len();
        if len % self.entry_size as u64 != 0 || len > max_len {
            return Ok(None);
        }
        let mut buf = vec![0u8; len as usize];
        self.file
            .read_exact_at(&mut buf, 0)
            .ctx(|| format!("read {}", self.path.display()))?;
        self.persisted = buf.len() / self.entry_size;
        Ok(Some(buf))
    }

    /// Appends the encoded pending entries in `scratch` (`count` entries) with one write.
    pub(crate) fn write(&mut self, count: usize) -> Result<()> {
        if self.scratch.is_empty() {
            return Ok(());
        }
        let result = (&*self.file)
            .write_all(&self.scratch)
            .ctx(|| format!("write {}", self.path.display()));
        self.scratch.clear();
        result?;
        self.persisted += count;
        Ok(())
    }

    /// Cuts the file to `entries` entries if more than that are on disk.
    pub(crate) fn truncate(&mut self, entries: usize) -> Result<()> {
        if self.persisted > entries {
            self.file
                .set_len((entries * self.entry_size) as u64)
                .ctx(|| format!("truncate {}", self.path.display()))?;
            self.persisted = entries;
        }
        Ok(())
    }

    /// The shared file handle (for [`crate::FlushTarget`]).
    pub(crate) fn file(&self) -> &Arc<File> {
        &self.file
    }

    /// The file's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Empties the file whatever it held (used when its contents are rejected).
    pub(crate) fn reset(&mut self) -> Result<()> {
        self.file
            .set_len(0)
            .ctx(|| format!("truncate {}", self.path.display()))?;
        self.persisted = 0;
        Ok(())
    }

    pub(crate) fn persisted(&self) -> usize {
        self.persisted
    }
}

/// Size of one `.index` entry in bytes.
pub(crate) const OFFSET_INDEX_ENTRY: usize = 8;

/// Largest plausible index file for a `.log` of `log_size` bytes: one entry per batch.
pub(crate) fn max_plausible_index_len(log_size: u64, entry_size: usize) -> u64 {
    (log_size / RECORD_BATCH_OVERHEAD as u64 + 1) * entry_size as u64
}

/// The sparse offset index of one segment: `<base offset, 20 digits>.index`.
///
/// Format (same as Kafka's `OffsetIndex`): a flat array of 8-byte entries, no header.
///
/// | bytes | field                                                   |
/// |------:|---------------------------------------------------------|
/// | 0..4  | relative offset, u32 BE (`offset - segment base offset`) |
/// | 4..8  | position of a batch in the `.log` file, u32 BE (bytes)   |
///
/// An entry `(o, p)` says: the batch starting at byte `p` has last offset `o`. Entries are
/// strictly increasing in both fields and are added every `index.interval.bytes` of
/// appended data (so the index is sparse); looking up offset `t` finds the largest entry
/// with `o <= t` and the batch containing `t` is at or after `p`.
///
/// Recovery rule: the index is derived data. After an unclean shutdown it is rebuilt from
/// the `.log` for every segment at or after the recovery point; otherwise it is sanity
/// checked on open (length a multiple of 8, entries strictly increasing, positions inside
/// the `.log`, the last entry's position holding a batch with that last offset) and
/// rebuilt if any check fails or the file is missing.
#[derive(Debug)]
pub(crate) struct OffsetIndex {
    base_offset: i64,
    /// `(relative offset, position)`.
    entries: Vec<(u32, u32)>,
    file: IndexFile,
}

impl OffsetIndex {
    /// Creates an empty index at `path`, truncating any existing file.
    pub(crate) fn create(path: &Path, base_offset: i64) -> Result<OffsetIndex> {
        Ok(OffsetIndex {
            base_offset,
            entries: Vec::new(),
            file: IndexFile::open(path, OFFSET_INDEX_ENTRY, true)?,
        })
    }

    /// Opens the index at `path` for a `.log` of `log_size` bytes. Returns the index and
    /// whether its contents passed the sanity checks; if not (including a missing file for
    /// a non-empty `.log`), the index is empty and the caller must rebuild it.
    pub(crate) fn open(
        path: &Path,
        base_offset: i64,
        log_size: u64,
    ) -> Result<(OffsetIndex, bool)> {
        let existed = path.exists();
        let mut file = IndexFile::open(path, OFFSET_INDEX_ENTRY, false)?;
        let raw = file.read_all(max_plausible_index_len(log_size, OFFSET_INDEX_ENTRY))?;
        let mut entries = Vec::new();
        if let Some(raw) = &raw {
            entries.reserve_exact(raw.len() / OFFSET_INDEX_ENTRY);
            for chunk in raw.chunks_exact(OFFSET_INDEX_ENTRY) {
                let rel = u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
                let pos = u32::from_be_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]);
                entries.push((rel, pos));
            }
        }
        let sane = (existed || log_size == 0)
            && raw.is_some()
            && entries
                .windows(2)
                .all(|w| w[0].0 < w[1].0 && w[0].1 < w[1].1)
            && entries
                .iter()
                .all(|&(rel, pos)| u64::from(pos) < log_size && rel <= i32::MAX as u32);
        if !sane {
            entries.clear();
            file.reset()?;
        }
        Ok((
            OffsetIndex {
                base_offset,
                entries,
                file,
            },
            sane,
        ))
    }

    /// Number of entries (on disk or pending).
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Adds an entry for the batch at `position` whose last offset is `last_offset`.
    /// Pending until [`OffsetIndex::write_pending`]. Entries that would not be strictly
    /// increasing are ignored.
    pub(crate) fn append(&mut self, last_offset: i64, position: u64) {
        let (Ok(rel), Ok(pos)) = (
            u32::try_from(last_offset - self.base_offset),
            u32::try_from(position),
        ) else {
            return;
        };
        if self.entries.last().is_none_or(|&(r, p)| rel > r && pos > p) {
            self.entries.push((rel, pos));
        }
    }

    /// Writes entries added since the last call with one write.
    pub(crate) fn write_pending(&mut self) -> Result<()> {
        let start = self.file.persisted();
        let count = self.entries.len().saturating_sub(start);
        for &(rel, pos) in self.entries.iter().skip(start) {
            self.file.scratch.extend_from_slice(&rel.to_be_bytes());
            self.file.scratch.extend_from_slice(&pos.to_be_bytes());
        }
        self.file.write(count)
    }

    /// `(offset, position)` of the largest entry with offset `<= target`, if any.
    pub(crate) fn lookup(&self, target: i64) -> Option<(i64, u64)> {
        let idx = self
            .entries
            .partition_point(|&(rel, _)| self.base_offset + i64::from(rel) <= target);
        idx.checked_sub(1).map(|i| self.entry(i))
    }

    /// `(offset, position)` of the first entry with offset `>= target`, if any.
    pub(crate) fn first_at_or_after(&self, target: i64) -> Option<(i64, u64)> {
        let idx = self
            .entries
            .partition_point(|&(rel, _)| self.base_offset + i64::from(rel) < target);
        (idx < self.entries.len()).then(|| self.entry(idx))
    }

    /// The last entry, if any.
    pub(crate) fn last(&self) -> Option<(i64, u64)> {
        self.entries.len().checked_sub(1).map(|i| self.entry(i))
    }

    fn entry(&self, i: usize) -> (i64, u64) {
        let (rel, pos) = self.entries[i];
        (self.base_offset + i64::from(rel), u64::from(pos))
    }

    /// Drops entries whose position is `>= size` (the `.log` was cut to `size` bytes).
    pub(crate) fn truncate_to_position(&mut self, size: u64) -> Result<()> {
        let keep = self
            .entries
            .partition_point(|&(_, pos)| u64::from(pos) < size);
        self.entries.truncate(keep);
        self.file.truncate(keep)
    }

    /// Drops all entries.
    pub(crate) fn clear(&mut self) -> Result<()> {
        self.entries.clear();
        self.file.reset()
    }

    /// The index file.
    pub(crate) fn file(&self) -> &IndexFile {
        &self.file
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_append_truncate_and_reopen() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| crate::StorageError::io("tempdir", e))?;
        let path = dir.path().join("00000000000000000100.index");
        let mut idx = OffsetIndex::create(&path, 100)?;
        assert_eq!(idx.lookup(150), None);
        idx.append(109, 0);
        idx.append(119, 4096);
        idx.append(119, 8192); // not strictly increasing: ignored
        idx.append(129, 8192);
        idx.write_pending()?;
        assert_eq!(idx.len(), 3);
        assert_eq!(idx.lookup(99), None);
        assert_eq!(idx.lookup(109), Some((109, 0)));
        assert_eq!(idx.lookup(125), Some((119, 4096)));
        assert_eq!(idx.lookup(1000), Some((129, 8192)));
        assert_eq!(idx.first_at_or_after(110), Some((119, 4096)));
        assert_eq!(idx.first_at_or_after(130), None);
        assert_eq!(std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0), 24);

        let (reopened, sane) = OffsetIndex::open(&path, 100, 10_000)?;
        assert!(sane);
        assert_eq!(reopened.last(), Some((129, 8192)));
        // A position beyond the .log fails the sanity check.
        let (_, sane) = OffsetIndex::open(&path, 100, 8192)?;
        assert!(!sane);

        idx.truncate_to_position(4097)?;
        assert_eq!(idx.last(), Some((119, 4096)));
        assert_eq!(std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0), 16);
        Ok(())
    }

    #[test]
    fn torn_entry_fails_sanity_check() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| crate::StorageError::io("tempdir", e))?;
        let path = dir.path().join("00000000000000000000.index");
        std::fs::write(&path, [0u8; 12]).map_err(|e| crate::StorageError::io("write", e))?;
        let (idx, sane) = OffsetIndex::open(&path, 0, 1 << 20)?;
        assert!(!sane);
        assert_eq!(idx.len(), 0);
        Ok(())
    }
}
