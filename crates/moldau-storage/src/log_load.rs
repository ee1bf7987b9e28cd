//! Opening a [`Log`]: directory scan, clean-shutdown fast path, crash recovery.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use crate::config::LogConfig;
use crate::error::{IoContext, Result};
use crate::log::{sync_dir, Log};
use crate::segment::{self, Segment};

/// Suffixes of temporary files left by an interrupted deletion, compaction or swap
/// (Kafka `LogFileUtils`: `.deleted`, `.cleaned`, `.swap`); removed on open.
const TEMP_SUFFIXES: [&str; 3] = [".deleted", ".cleaned", ".swap"];

/// Renames then removes the three files of a segment that was never opened.
fn delete_segment_files(dir: &Path, base_offset: i64) -> Result<()> {
    for ext in ["log", "index", "timeindex"] {
        let path = dir.join(segment::file_name(base_offset, ext));
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(crate::StorageError::io(
                    format!("remove {}", path.display()),
                    e,
                ))
            }
        }
    }
    Ok(())
}

impl Log {
    /// Opens or creates the log in `dir`, a partition directory such as
    /// `<log.dirs>/orders-0` (created, with its parent fsynced, if missing). Kafka:
    /// `LogLoader.load`.
    ///
    /// - Removes leftover `*.deleted`, `*.cleaned`, `*.swap` files and `.index` /
    ///   `.timeindex` files without a `.log`. Other files (e.g. `leader-epoch-checkpoint`)
    ///   are left alone.
    /// - If `!clean_shutdown`: every segment from the one containing `recovery_point` on
    ///   is recovered batch by batch (header, length, CRC-32C, monotonic base offsets); the
    ///   log is truncated at the first torn or corrupt batch, later segments are deleted,
    ///   the indexes of recovered segments are rebuilt, and the recovered segments are
    ///   fsynced. Earlier segments are trusted like after a clean shutdown.
    /// - Trusted segments keep their data; their indexes are sanity checked (see
    ///   `OffsetIndex`/`TimeIndex`) and a segment failing the check is recovered as above.
    /// - `log_start_offset` (from the server's `log-start-offset-checkpoint`, -1 or 0 if
    ///   none) is raised to the first segment's base offset; if it is above the recovered
    ///   log end offset, the data is gone and the log restarts empty at `log_start_offset`
    ///   (Kafka does the same).
    /// - The recovery point is the log end offset afterwards (everything is durable).
    /// - `now_ms` starts the `segment.ms` clock of the active segment if its first batch
    ///   carries no timestamp; otherwise that timestamp does (as Kafka).
    ///
    /// Errors: [`crate::StorageError::Io`].
    pub fn open(
        dir: &Path,
        config: LogConfig,
        log_start_offset: i64,
        recovery_point: i64,
        clean_shutdown: bool,
        now_ms: i64,
    ) -> Result<Log> {
        let mut dir_changed = false;
        if !dir.exists() {
            fs::create_dir_all(dir).ctx(|| format!("create {}", dir.display()))?;
            if let Some(parent) = dir.parent() {
                sync_dir(parent)?;
            }
        }
        let mut bases = BTreeSet::new();
        let mut index_files: Vec<(i64, PathBuf)> = Vec::new();
        for entry in fs::read_dir(dir).ctx(|| format!("list {}", dir.display()))? {
            let entry = entry.ctx(|| format!("list {}", dir.display()))?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if TEMP_SUFFIXES.iter().any(|s| name.ends_with(s)) {
                tracing::info!(file = %name, "removing leftover temporary file");
                fs::remove_file(entry.path())
                    .ctx(|| format!("remove {}", entry.path().display()))?;
                dir_changed = true;
            } else if let Some(base) = segment::parse_file_name(&name, "log") {
                bases.insert(base);
            } else if let Some(base) = segment::parse_file_name(&name, "index")
                .or_else(|| segment::parse_file_name(&name, "timeindex"))
            {
                index_files.push((base, entry.path()));
            }
        }
        for (base, path) in index_files {
            if !bases.contains(&base) {
                tracing::info!(file = %path.display(), "removing index without a .log");
                fs::remove_file(&path).ctx(|| format!("remove {}", path.display()))?;
                dir_changed = true;
            }
        }

        let bases: Vec<i64> = bases.into_iter().collect();
        let first_recovered = if clean_shutdown {
            bases.len()
        } else {
            bases
                .partition_point(|&b| b <= recovery_point)
                .saturating_sub(1)
        };
        let interval = config.index_interval_bytes;
        let mut segments: Vec<Segment> = Vec::with_capacity(bases.len().max(1));
        for (i, &base) in bases.iter().enumerate() {
            let overlaps = segments.last().is_some_and(|prev| base < prev.next_offset);
            let mut stop = overlaps;
            if !overlaps {
                let opened = Segment::open(dir, base, i >= first_recovered, interval)?;
                if opened.recovered {
                    opened.segment.sync()?;
                }
                stop = opened.truncated_bytes > 0;
                segments.push(opened.segment);
            } else {
                tracing::warn!(base, "segment overlaps the previous one");
            }
            if stop {
                let later = if overlaps {
                    &bases[i..]
                } else {
                    &bases[i + 1..]
                };
                for &b in later {
                    tracing::warn!(
                        base = b,
                        "deleting segment after the recovered end of the log"
                    );
                    delete_segment_files(dir, b)?;
                    dir_changed = true;
                }
                break;
            }
        }

        let mut log_start = log_start_offset.max(0);
        if let Some(first) = segments.first() {
            log_start = log_start.max(first.base_offset);
        }
        let leo = segments.last().map_or(log_start, |s| s.next_offset);
        if segments.is_empty() || log_start > leo {
            if !segments.is_empty() {
                tracing::warn!(
                    log_start,
                    leo,
                    "log start offset beyond the log end; starting empty"
                );
            }
            for segment in segments.drain(..) {
                segment.delete_files()?;
            }
            segments.push(Segment::create(dir, log_start)?);
            dir_changed = true;
        }
        if dir_changed || !clean_shutdown {
            sync_dir(dir)?;
            for segment in &segments {
                segment
                    .dir_synced
                    .store(true, std::sync::atomic::Ordering::Release);
            }
        }

        let mut log = Log {
            dir: dir.to_path_buf(),
            config,
            segments,
            log_start_offset: log_start,
            recovery_point: 0,
            poisoned: false,
            unflushed_since_ms: None,
            last_append_ms: now_ms,
        };
        log.recovery_point = log.log_end_offset();
        let first_ts = log.active().first_batch_timestamp()?;
        if let Some(active) = log.segments.last_mut() {
            active.roll_base_ms = first_ts.map(|t| if t >= 0 { t.min(now_ms) } else { now_ms });
        }
        tracing::debug!(
            dir = %log.dir.display(),
            segments = log.segments.len(),
            log_start_offset = log.log_start_offset,
            log_end_offset = log.log_end_offset(),
            clean_shutdown,
            "opened log"
        );
        Ok(log)
    }
}
