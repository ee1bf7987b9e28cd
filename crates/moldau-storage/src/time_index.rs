//! The time index (`<base offset>.timeindex`).

use std::path::Path;

use crate::error::Result;
use crate::index::{max_plausible_index_len, IndexFile};

/// Size of one `.timeindex` entry in bytes.
pub(crate) const TIME_INDEX_ENTRY: usize = 12;

/// The time index of one segment: `<base offset, 20 digits>.timeindex`.
///
/// Format (same as Kafka's `TimeIndex`): a flat array of 12-byte entries, no header.
///
/// | bytes  | field                                                          |
/// |-------:|----------------------------------------------------------------|
/// | 0..8   | timestamp, i64 BE (ms since the epoch): the largest batch `maxTimestamp` so far |
/// | 8..12  | relative offset, u32 BE: last offset of the first batch reaching that timestamp |
///
/// An entry `(t, o)` says: no record at or before offset `o` has a timestamp above `t`,
/// and the batch holding offset `o` has `maxTimestamp == t`. Timestamps are strictly
/// increasing, offsets non-decreasing. Like Kafka, an entry is considered whenever an
/// `.index` entry is added (every `index.interval.bytes`) and is written only if the
/// segment's maximum timestamp grew; when a segment stops being active (roll, clean
/// close, end of recovery) a final entry records its maximum. So the last entry plus a
/// scan of the batches after the last `.index` entry gives the segment's largest
/// timestamp, which retention uses.
///
/// Recovery rule: derived data, rebuilt with the offset index (see
/// [`crate::index::OffsetIndex`]); on open it must have a length that is a multiple of 12,
/// strictly increasing timestamps, non-decreasing offsets, and offsets below the
/// segment's next offset, or it is rebuilt.
#[derive(Debug)]
pub(crate) struct TimeIndex {
    base_offset: i64,
    /// `(timestamp ms, relative offset)`.
    entries: Vec<(i64, u32)>,
    file: IndexFile,
}

impl TimeIndex {
    /// Creates an empty time index at `path`, truncating any existing file.
    pub(crate) fn create(path: &Path, base_offset: i64) -> Result<TimeIndex> {
        Ok(TimeIndex {
            base_offset,
            entries: Vec::new(),
            file: IndexFile::open(path, TIME_INDEX_ENTRY, true)?,
        })
    }

    /// Opens the time index at `path` for a `.log` of `log_size` bytes. Returns the index
    /// and whether the file existed with a plausible length and ordered entries; the
    /// offsets are checked later by [`TimeIndex::check_offsets`] once the segment's next
    /// offset is known. If not sane, the index is empty and must be rebuilt.
    pub(crate) fn open(path: &Path, base_offset: i64, log_size: u64) -> Result<(TimeIndex, bool)> {
        let existed = path.exists();
        let mut file = IndexFile::open(path, TIME_INDEX_ENTRY, false)?;
        let raw = file.read_all(max_plausible_index_len(log_size, TIME_INDEX_ENTRY))?;
        let mut entries = Vec::new();
        if let Some(raw) = &raw {
            entries.reserve_exact(raw.len() / TIME_INDEX_ENTRY);
            for chunk in raw.chunks_exact(TIME_INDEX_ENTRY) {
                let mut ts = [0u8; 8];
                ts.copy_from_slice(&chunk[..8]);
                let rel = u32::from_be_bytes([chunk[8], chunk[9], chunk[10], chunk[11]]);
                entries.push((i64::from_be_bytes(ts), rel));
            }
        }
        let sane = (existed || log_size == 0)
            && raw.is_some()
            && entries
                .windows(2)
                .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1);
        if !sane {
            entries.clear();
            file.reset()?;
        }
        Ok((
            TimeIndex {
                base_offset,
                entries,
                file,
            },
            sane,
        ))
    }

    /// True if every entry's offset is below `next_offset` (the segment's exclusive end).
    pub(crate) fn check_offsets(&self, next_offset: i64) -> bool {
        self.entries
            .last()
            .is_none_or(|&(_, rel)| self.base_offset + i64::from(rel) < next_offset)
    }

    /// Number of entries.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Adds `(timestamp, offset)` if `timestamp` is larger than the last entry's (pending
    /// until [`TimeIndex::write_pending`]).
    pub(crate) fn maybe_append(&mut self, timestamp: i64, offset: i64) {
        let Ok(rel) = u32::try_from(offset - self.base_offset) else {
            return;
        };
        if self
            .entries
            .last()
            .is_none_or(|&(t, r)| timestamp > t && rel >= r)
        {
            self.entries.push((timestamp, rel));
        }
    }

    /// Writes entries added since the last call with one write.
    pub(crate) fn write_pending(&mut self) -> Result<()> {
        let start = self.file.persisted();
        let count = self.entries.len().saturating_sub(start);
        for &(ts, rel) in self.entries.iter().skip(start) {
            self.file.scratch.extend_from_slice(&ts.to_be_bytes());
            self.file.scratch.extend_from_slice(&rel.to_be_bytes());
        }
        self.file.write(count)
    }

    /// `(timestamp, offset)` of the last entry with timestamp strictly below `target`.
    /// Every record at or before that offset is older than `target`, so a search for the
    /// first record with timestamp `>= target` can start at the batch holding it.
    pub(crate) fn last_below(&self, target: i64) -> Option<(i64, i64)> {
        let idx = self.entries.partition_point(|&(t, _)| t < target);
        idx.checked_sub(1).map(|i| self.entry(i))
    }

    /// The last entry, if any.
    pub(crate) fn last(&self) -> Option<(i64, i64)> {
        self.entries.len().checked_sub(1).map(|i| self.entry(i))
    }

    fn entry(&self, i: usize) -> (i64, i64) {
        let (ts, rel) = self.entries[i];
        (ts, self.base_offset + i64::from(rel))
    }

    /// Drops entries whose offset is `>= next_offset` (the segment was truncated there).
    pub(crate) fn truncate_to_offset(&mut self, next_offset: i64) -> Result<()> {
        let keep = self
            .entries
            .partition_point(|&(_, rel)| self.base_offset + i64::from(rel) < next_offset);
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
    fn entries_only_grow_and_survive_reopen() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| crate::StorageError::io("tempdir", e))?;
        let path = dir.path().join("00000000000000000010.timeindex");
        let mut ti = TimeIndex::create(&path, 10)?;
        ti.maybe_append(1_000, 12);
        ti.maybe_append(900, 15); // older: ignored
        ti.maybe_append(1_000, 16); // equal: ignored
        ti.maybe_append(2_000, 20);
        ti.write_pending()?;
        assert_eq!(ti.len(), 2);
        assert_eq!(ti.last_below(1_000), None);
        assert_eq!(ti.last_below(1_001), Some((1_000, 12)));
        assert_eq!(ti.last_below(i64::MAX), Some((2_000, 20)));
        let (re, sane) = TimeIndex::open(&path, 10, 1 << 20)?;
        assert!(sane);
        assert!(re.check_offsets(21));
        assert!(!re.check_offsets(20));
        ti.truncate_to_offset(20)?;
        assert_eq!(ti.last(), Some((1_000, 12)));
        assert_eq!(std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0), 12);
        Ok(())
    }
}
