//! openraft's log storage over Moldau's own partition log.
//!
//! Files in `<log.dirs>/__cluster_metadata-0/`:
//! - the segments (`<base offset>.log`, `.index`, `.timeindex`): one record batch per
//!   Raft entry, base offset = Raft index, partition leader epoch = Raft term, one record
//!   whose value is the JSON of the entry. An append is fsynced before openraft is told
//!   it is durable; recovery truncates a torn tail like any partition log's.
//! - `quorum-state`: JSON `{"vote", "committed", "last_purged"}`, replaced atomically
//!   (temporary file, fsync, rename, directory fsync) on every change. Raft's safety
//!   depends on a vote never being forgotten.
//!
//! A metadata log written by Moldau before the quorum existed (records stored directly
//! as batch values) is recognised at open: its records are returned from
//! [`MetadataLogStore::open`] so the first active controller can write them into the
//! quorum, and the old directory is kept, renamed `__cluster_metadata-0.pre-quorum`.

use super::{Entry, LogId, NodeId, StorageError, TypeConfig};
use crate::records::MetadataRecord;
use moldau_protocol::batch;
use moldau_storage::{Log, LogConfig};
use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{LogState, RaftLogId, RaftLogReader, StorageIOError, Vote};
use serde::{Deserialize, Serialize};
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Directory name of the metadata log, as KRaft names it.
pub const METADATA_LOG_DIR: &str = "__cluster_metadata-0";
/// The vote, commit index and purge point (KRaft keeps its vote in a file of this name).
pub const QUORUM_STATE_FILE: &str = "quorum-state";
/// Most bytes read from the segments per read call.
const READ_CHUNK: usize = 1 << 20;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct QuorumState {
    vote: Option<Vote<NodeId>>,
    committed: Option<LogId>,
    last_purged: Option<LogId>,
}

struct Inner {
    log: Log,
    dir: PathBuf,
    state: QuorumState,
}

/// The metadata log for openraft (`RaftLogStorage` and `RaftLogReader`). Cheap to
/// clone: clones share the log.
#[derive(Clone)]
pub struct MetadataLogStore {
    inner: Arc<parking_lot::Mutex<Inner>>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn io_err(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

/// Encodes an entry as one record batch at its index, stamped with its term.
fn encode(entry: &Entry) -> Result<Vec<u8>, serde_json::Error> {
    let value = serde_json::to_vec(entry)?;
    let mut bytes = batch::build_batch(0, now_ms(), &[(None, Some(&value))]);
    batch::set_base_offset(&mut bytes, entry.log_id.index as i64);
    batch::set_partition_leader_epoch(
        &mut bytes,
        i32::try_from(entry.log_id.leader_id.term).unwrap_or(i32::MAX),
    );
    Ok(bytes)
}

/// What one stored batch holds: a Raft entry, or (in a log written before the quorum)
/// plain metadata records.
enum Stored {
    Entry(Entry),
    Legacy(Vec<MetadataRecord>),
}

fn decode(bytes: &[u8], base_offset: i64) -> Result<Stored, String> {
    let records = batch::records(bytes).ok_or("undecodable metadata batch")?;
    let mut legacy = Vec::new();
    for r in records {
        let value = r.value.ok_or("metadata record without a value")?;
        if let Ok(entry) = serde_json::from_slice::<Entry>(value) {
            if entry.log_id.index as i64 != base_offset {
                return Err(format!(
                    "entry {} stored at offset {base_offset}",
                    entry.log_id.index
                ));
            }
            return Ok(Stored::Entry(entry));
        }
        legacy.push(MetadataRecord::decode(value).map_err(|e| e.to_string())?);
    }
    Ok(Stored::Legacy(legacy))
}

/// Reads the stored batches in `[from, to)`, calling `f` for each.
fn scan(
    log: &Log,
    from: i64,
    to: i64,
    mut f: impl FnMut(i64, Stored) -> Result<(), String>,
) -> Result<(), String> {
    let mut next = from.max(log.log_start_offset());
    let end = to.min(log.log_end_offset());
    while next < end {
        let data = log
            .read(next, READ_CHUNK, end, true)
            .map_err(|e| e.to_string())?;
        if data.records.is_empty() {
            break;
        }
        for item in batch::BatchIter::new(&data.records) {
            let (at, header) = item.map_err(|e| e.to_string())?;
            let bytes = &data.records[at..at + header.size_in_bytes()];
            if header.base_offset >= next && header.base_offset < end {
                f(header.base_offset, decode(bytes, header.base_offset)?)?;
            }
            next = header.next_offset();
        }
    }
    Ok(())
}

fn write_state(dir: &Path, state: &QuorumState) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(state).map_err(io_err)?;
    moldau_storage::write_file_durable(&dir.join(QUORUM_STATE_FILE), &bytes)
}

fn read_state(dir: &Path) -> std::io::Result<QuorumState> {
    match std::fs::read(dir.join(QUORUM_STATE_FILE)) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{QUORUM_STATE_FILE} is corrupt: {e}"),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(QuorumState::default()),
        Err(e) => Err(e),
    }
}

fn log_config() -> LogConfig {
    LogConfig {
        retention_ms: -1,
        retention_bytes: -1,
        segment_bytes: 64 * 1024 * 1024,
        ..LogConfig::default()
    }
}

impl MetadataLogStore {
    /// Opens (or creates) the metadata log in `log_dir/__cluster_metadata-0`. Returns the
    /// store and, when the directory held a metadata log from before the quorum, its
    /// records (the old directory is renamed aside, never deleted).
    ///
    /// Errors: the log or `quorum-state` cannot be read or written. A corrupt
    /// `quorum-state` stops start-up: guessing a vote could elect two leaders.
    pub fn open(log_dir: &Path) -> std::io::Result<(Self, Option<Vec<MetadataRecord>>)> {
        let dir = log_dir.join(METADATA_LOG_DIR);
        let mut legacy = None;
        if dir.exists() && !dir.join(QUORUM_STATE_FILE).exists() {
            let log = Log::open(&dir, log_config(), 0, 0, false, now_ms()).map_err(io_err)?;
            let mut records = Vec::new();
            let mut has_entries = false;
            scan(&log, 0, log.log_end_offset(), |_, stored| {
                match stored {
                    Stored::Legacy(r) => records.extend(r),
                    Stored::Entry(_) => has_entries = true,
                }
                Ok(())
            })
            .map_err(io_err)?;
            drop(log);
            if !records.is_empty() && !has_entries {
                let aside = log_dir.join(format!("{METADATA_LOG_DIR}.pre-quorum"));
                tracing::warn!(from = %dir.display(), to = %aside.display(), records = records.len(), "metadata log from before the quorum: importing its records, keeping the old log aside");
                std::fs::rename(&dir, &aside)?;
                std::fs::File::open(log_dir)?.sync_all()?;
                legacy = Some(records);
            }
        }
        moldau_storage::create_dir_durable(&dir)?;
        let state = read_state(&dir)?;
        let start = state.last_purged.map_or(0, |l| l.index as i64 + 1);
        let mut log = Log::open(&dir, log_config(), start, 0, false, now_ms()).map_err(io_err)?;
        if log.log_start_offset() < start {
            log.delete_records_before(start.min(log.log_end_offset()))
                .map_err(io_err)?;
        }
        if !dir.join(QUORUM_STATE_FILE).exists() {
            write_state(&dir, &state)?;
        }
        Ok((
            Self {
                inner: Arc::new(parking_lot::Mutex::new(Inner { log, dir, state })),
            },
            legacy,
        ))
    }

    /// The offset (Raft index) just past the last stored entry.
    pub fn log_end_offset(&self) -> i64 {
        self.inner.lock().log.log_end_offset()
    }

    /// The first stored entry's index (entries below were purged into a snapshot).
    pub fn log_start_offset(&self) -> i64 {
        self.inner.lock().log.log_start_offset()
    }

    /// Entries with indexes in `range` that are still stored.
    pub fn entries(&self, range: impl RangeBounds<u64>) -> Result<Vec<Entry>, StorageError> {
        let from = match range.start_bound() {
            Bound::Included(i) => *i as i64,
            Bound::Excluded(i) => *i as i64 + 1,
            Bound::Unbounded => 0,
        };
        let to = match range.end_bound() {
            Bound::Included(i) => (*i as i64).saturating_add(1),
            Bound::Excluded(i) => *i as i64,
            Bound::Unbounded => i64::MAX,
        };
        let inner = self.inner.lock();
        let mut out = Vec::new();
        scan(&inner.log, from, to, |_, stored| match stored {
            Stored::Entry(e) => {
                out.push(e);
                Ok(())
            }
            Stored::Legacy(_) => Err("a plain metadata record inside the Raft log".into()),
        })
        .map_err(|e| StorageIOError::read_logs(&io_err(e)))?;
        Ok(out)
    }

    /// Flushes and closes the log (clean shutdown).
    pub fn close(&self) {
        if let Err(e) = self.inner.lock().log.flush() {
            tracing::warn!(error = %e, "flushing the metadata log at shutdown failed");
        }
    }

    fn update_state(&self, f: impl FnOnce(&mut QuorumState)) -> std::io::Result<()> {
        let mut inner = self.inner.lock();
        let mut next = inner.state.clone();
        f(&mut next);
        if next != inner.state {
            crate::blocking(|| write_state(&inner.dir, &next))?;
            inner.state = next;
        }
        Ok(())
    }
}

impl RaftLogReader<TypeConfig> for MetadataLogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        self.entries(range)
    }
}

impl RaftLogStorage<TypeConfig> for MetadataLogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let (end, purged) = {
            let inner = self.inner.lock();
            (inner.log.log_end_offset(), inner.state.last_purged)
        };
        let last = if end > 0 {
            self.entries((end - 1) as u64..end as u64)?
                .pop()
                .map(|e| *e.get_log_id())
        } else {
            None
        };
        Ok(LogState {
            last_purged_log_id: purged,
            last_log_id: last.or(purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        self.update_state(|s| s.vote = Some(*vote))
            .map_err(|e| StorageIOError::write_vote(&e).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        Ok(self.inner.lock().state.vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Not fsynced on every commit for speed would be allowed (a lower committed
        // index is always safe); it is cheap here because commits batch.
        self.update_state(|s| s.committed = committed)
            .map_err(|e| StorageIOError::write(&e).into())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.inner.lock().state.committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut bytes = Vec::new();
        for entry in entries {
            let one = encode(&entry).map_err(|e| StorageIOError::write_logs(&e))?;
            bytes.extend_from_slice(&one);
        }
        let result = crate::blocking(|| {
            let mut inner = self.inner.lock();
            inner
                .log
                .append_as_follower(&bytes, now_ms())
                .and_then(|_| inner.log.flush())
                .map_err(io_err)
        });
        match result {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                let storage = StorageIOError::write_logs(&e).into();
                callback.log_io_completed(Err(e));
                Err(storage)
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        crate::blocking(|| {
            let mut inner = self.inner.lock();
            inner
                .log
                .truncate_to(log_id.index as i64)
                .map_err(|e| StorageIOError::write_logs(&io_err(e)).into())
        })
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        // The purge point is recorded first: a crash in between leaves entries that are
        // never read again, never a hole.
        self.update_state(|s| s.last_purged = Some(log_id))
            .map_err(|e| StorageIOError::write_logs(&e))?;
        crate::blocking(|| {
            let mut inner = self.inner.lock();
            let start = log_id.index as i64 + 1;
            let result = if start > inner.log.log_end_offset() {
                inner.log.truncate_fully_and_start_at(start)
            } else {
                inner.log.delete_records_before(start).map(|_| ())
            };
            result.map_err(|e| StorageIOError::write_logs(&io_err(e)).into())
        })
    }
}
