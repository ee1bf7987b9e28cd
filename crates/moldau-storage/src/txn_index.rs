//! The transaction index (`<base offset>.txnindex`): the aborted transactions whose
//! abort marker lies in a segment (KIP-98), read by `read_committed` fetches.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::cleaner::remove_if_exists;
use crate::error::{IoContext, Result};

/// One aborted transaction (Kafka `AbortedTxn`), as stored in a `.txnindex` and returned
/// to `read_committed` fetches (Fetch response `aborted_transactions`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    /// The producer whose transaction was aborted.
    pub producer_id: i64,
    /// Offset of the transaction's first batch (inclusive).
    pub first_offset: i64,
    /// Offset of the abort marker (inclusive; the transaction's last offset).
    pub last_offset: i64,
    /// The last stable offset right after the abort was written (exclusive bound): the
    /// first offset of the earliest other transaction still open then, else
    /// `last_offset + 1` (Kafka `ProducerStateManager.lastStableOffset(CompletedTxn)`).
    pub last_stable_offset: i64,
}

/// Bytes of one `.txnindex` entry.
pub(crate) const ENTRY_SIZE: usize = 34;
/// The only entry version Kafka writes.
const ENTRY_VERSION: i16 = 0;

impl AbortedTxn {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&ENTRY_VERSION.to_be_bytes());
        out.extend_from_slice(&self.producer_id.to_be_bytes());
        out.extend_from_slice(&self.first_offset.to_be_bytes());
        out.extend_from_slice(&self.last_offset.to_be_bytes());
        out.extend_from_slice(&self.last_stable_offset.to_be_bytes());
    }

    /// Decodes one entry; `None` for an unknown version.
    fn decode(b: &[u8; ENTRY_SIZE]) -> Option<AbortedTxn> {
        let i64_at = |at: usize| {
            let mut v = [0u8; 8];
            v.copy_from_slice(&b[at..at + 8]);
            i64::from_be_bytes(v)
        };
        if i16::from_be_bytes([b[0], b[1]]) != ENTRY_VERSION {
            return None;
        }
        Some(AbortedTxn {
            producer_id: i64_at(2),
            first_offset: i64_at(10),
            last_offset: i64_at(18),
            last_stable_offset: i64_at(26),
        })
    }
}

/// A segment's transaction index, byte-compatible with Kafka's `TransactionIndex`.
///
/// Format: no header; 34-byte big-endian entries end to end, one per aborted
/// transaction whose abort marker is in this segment, in marker-offset order:
/// `version: int16 (0)`, `producer_id: int64`, `first_offset: int64`, `last_offset:
/// int64` (the marker), `last_stable_offset: int64` (see [`AbortedTxn`]). The file is
/// created lazily with the first entry (a segment without aborted transactions has
/// none, as in Kafka), appended to with ordinary writes, and fsynced with the segment.
/// All entries are also kept in memory (a few per segment at most in practice).
///
/// Recovery rule: a segment that `Log::open` recovers (the unflushed tail) gets its
/// index rebuilt from the replay of its batches through the producer state (Kafka
/// `LogSegment.recover`); a trusted segment's file is loaded as it is, except that a
/// torn last entry (file length not a multiple of 34), an entry of an unknown version
/// and entries whose marker lies outside the segment's offsets are cut off, with
/// everything after them.
#[derive(Debug)]
pub(crate) struct TxnIndex {
    path: PathBuf,
    /// `None` until the first entry is written (or if there is no file).
    file: Option<Arc<File>>,
    entries: Vec<AbortedTxn>,
}

impl TxnIndex {
    /// A new, empty index for a new segment; removes a leftover file of that name.
    pub(crate) fn create(path: &Path) -> Result<TxnIndex> {
        remove_if_exists(path)?;
        Ok(TxnIndex {
            path: path.to_path_buf(),
            file: None,
            entries: Vec::new(),
        })
    }

    /// An empty index for `path` without touching the file (filled in by `load`).
    pub(crate) fn empty(path: &Path) -> TxnIndex {
        TxnIndex {
            path: path.to_path_buf(),
            file: None,
            entries: Vec::new(),
        }
    }

    /// Loads `path` if it exists, keeping the entries up to the first torn or invalid
    /// one whose marker offset lies in `[base_offset, next_offset)` (the rest is cut
    /// from the file). Reads the whole file.
    pub(crate) fn load(path: &Path, base_offset: i64, next_offset: i64) -> Result<TxnIndex> {
        let mut index = TxnIndex::empty(path);
        let file = match OpenOptions::new().read(true).append(true).open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(index),
            Err(e) => {
                return Err(crate::StorageError::io(
                    format!("open {}", path.display()),
                    e,
                ))
            }
        };
        let len = file
            .metadata()
            .ctx(|| format!("stat {}", path.display()))?
            .len();
        let mut buf = vec![0u8; usize::try_from(len).unwrap_or(0)];
        file.read_exact_at(&mut buf, 0)
            .ctx(|| format!("read {}", path.display()))?;
        for chunk in buf.chunks_exact(ENTRY_SIZE) {
            let Ok(entry) = <&[u8; ENTRY_SIZE]>::try_from(chunk) else {
                break;
            };
            match AbortedTxn::decode(entry) {
                Some(txn) if txn.last_offset >= base_offset && txn.last_offset < next_offset => {
                    index.entries.push(txn)
                }
                _ => break,
            }
        }
        let valid = (index.entries.len() * ENTRY_SIZE) as u64;
        if valid != len {
            tracing::warn!(path = %path.display(), len, valid, "cutting torn or invalid transaction index entries");
            file.set_len(valid)
                .ctx(|| format!("truncate {}", path.display()))?;
        }
        index.file = Some(Arc::new(file));
        Ok(index)
    }

    /// The entries, in marker-offset order.
    pub(crate) fn entries(&self) -> &[AbortedTxn] {
        &self.entries
    }

    /// The index file's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The file handle, if the file exists (for fsync).
    pub(crate) fn file(&self) -> Option<&Arc<File>> {
        self.file.as_ref()
    }

    /// Appends `txns` (one write). Returns true if this created the file, whose
    /// directory entry then still needs a directory fsync.
    pub(crate) fn append(&mut self, txns: &[AbortedTxn]) -> Result<bool> {
        if txns.is_empty() {
            return Ok(false);
        }
        let mut created = false;
        if self.file.is_none() {
            let file = OpenOptions::new()
                .read(true)
                .append(true)
                .create(true)
                .truncate(false)
                .open(&self.path)
                .ctx(|| format!("create {}", self.path.display()))?;
            file.set_len(0)
                .ctx(|| format!("truncate {}", self.path.display()))?;
            self.file = Some(Arc::new(file));
            created = true;
        }
        let mut buf = Vec::with_capacity(txns.len() * ENTRY_SIZE);
        for txn in txns {
            txn.encode(&mut buf);
        }
        if let Some(file) = &self.file {
            (&**file)
                .write_all(&buf)
                .ctx(|| format!("write {}", self.path.display()))?;
        }
        self.entries.extend_from_slice(txns);
        Ok(created)
    }

    /// Drops every entry whose marker offset is `>= offset`, and everything after the
    /// first such entry (Kafka `TransactionIndex.truncateTo`).
    pub(crate) fn truncate_to(&mut self, offset: i64) -> Result<()> {
        let keep = self
            .entries
            .iter()
            .position(|t| t.last_offset >= offset)
            .unwrap_or(self.entries.len());
        if keep == self.entries.len() {
            return Ok(());
        }
        self.entries.truncate(keep);
        if let Some(file) = &self.file {
            file.set_len((keep * ENTRY_SIZE) as u64)
                .ctx(|| format!("truncate {}", self.path.display()))?;
        }
        Ok(())
    }

    /// Empties the index (before it is rebuilt by a replay).
    pub(crate) fn reset(&mut self) -> Result<()> {
        self.truncate_to(i64::MIN)
    }
}

/// Appends to `out` the entries of `entries` that overlap `[start_offset,
/// upper_bound_offset)`: `last_offset >= start_offset && first_offset <
/// upper_bound_offset`. Returns true once an entry with `last_stable_offset >=
/// upper_bound_offset` was seen: no later entry can overlap then, since every
/// transaction still open at that abort started at or after its last stable offset and
/// every later one after it (Kafka `TransactionIndex.collectAbortedTxns` "isComplete").
pub(crate) fn collect_overlapping(
    entries: &[AbortedTxn],
    start_offset: i64,
    upper_bound_offset: i64,
    out: &mut Vec<AbortedTxn>,
) -> bool {
    for txn in entries {
        if txn.last_offset >= start_offset && txn.first_offset < upper_bound_offset {
            out.push(*txn);
        }
        if txn.last_stable_offset >= upper_bound_offset {
            return true;
        }
    }
    false
}
