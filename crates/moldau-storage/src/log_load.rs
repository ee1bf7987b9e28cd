//! Opening a [`Log`]: directory scan, clean-shutdown fast path, crash recovery.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use crate::cleaner::{remove_if_exists, segment_path, SEGMENT_EXTS, SWAP_SUFFIX};
use crate::config::LogConfig;
use crate::error::{IoContext, Result};
use crate::leader_epoch::{FileState, LeaderEpochCache};
use crate::log::{sync_dir, Log};
use crate::producer_snapshot::SNAPSHOT_TMP_SUFFIX;
use crate::producer_state::ProducerStateManager;
use crate::records;
use crate::segment::{self, Segment};

/// Suffixes of temporary files left by an interrupted deletion, compaction or producer
/// snapshot (Kafka `LogFileUtils`: `.deleted`, `.cleaned`); removed on open, after pending swaps were
/// completed (see [`PendingSwap`]), which leaves no `.swap` file either.
const TEMP_SUFFIXES: [&str; 4] = [".deleted", ".cleaned", ".swap", SNAPSHOT_TMP_SUFFIX];

/// A cleaned segment whose clean committed but was not completed: `<base>.log.swap`,
/// maybe with `<base>.index.swap`, `<base>.timeindex.swap` and `<base>.txnindex.swap` (Kafka
/// `LogLoader.completeSwapOperations`).
///
/// Recovery rule, applied by [`Log::open`] before anything else:
///
/// - A `.log.swap` means the clean of that output committed. Its covered range is
///   `[base, next offset)`, where the next offset comes from a scan of the swap file:
///   the cleaner writes each output so that it ends exactly where its last input
///   ended (the last batch is kept, as an empty batch if all its records went), and
///   begins at its first input's base, so the range is exactly that of the inputs
///   whatever records the clean removed. Every non-swap `.log`, `.index`,
///   `.timeindex` and `.txnindex` whose base offset lies in that range is deleted (the inputs, or
///   whatever of them remains; inputs of different outputs never overlap, so any
///   number of swaps and any subset of already-deleted inputs are handled), the
///   directory is fsynced, then the `.index.swap`, `.timeindex.swap`, `.txnindex.swap`
///   (if any) and finally
///   `.log.swap` are renamed to their final names and the directory fsynced again.
///   Indexes missing or failing the sanity check are rebuilt by the normal open. The
///   one exception is the output's own `<base>.txnindex` when no `.txnindex.swap` is
///   left: it is the output's, already renamed (an output holds every entry of its
///   inputs, so an input at `base` with entries implies an output `.txnindex.swap`),
///   and is kept, since a transaction index cannot be rebuilt from a trusted segment.
/// - An `.index.swap`, `.timeindex.swap` or `.txnindex.swap` without its `.log.swap` belongs to an
///   output that did not commit and is deleted, as are all `*.cleaned` files.
/// - A committed swap always validates completely (the cleaner fsyncs it before the
///   rename). One that does not was damaged afterwards: without any valid batch it is
///   deleted like an uncommitted one (whatever inputs remain stay); otherwise it is cut
///   after its last valid batch, its index swaps are dropped, and its range is what
///   remains.
///
/// Every retained offset is then in exactly one segment: outputs that committed
/// replace all of their inputs, the others leave their inputs in place. The steps are
/// idempotent, so a crash during recovery is recovered the same way.
struct PendingSwap {
    base_offset: i64,
}

/// Renames then removes the three files of a segment that was never opened.
fn delete_segment_files(dir: &Path, base_offset: i64) -> Result<()> {
    for ext in ["log", "index", "timeindex", "txnindex"] {
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

/// Applies the recovery rule of [`PendingSwap`] to `dir`. Returns whether it changed
/// anything.
fn complete_swaps(dir: &Path) -> Result<bool> {
    let mut swaps: Vec<PendingSwap> = Vec::new();
    let mut index_swaps: Vec<(i64, PathBuf)> = Vec::new();
    let mut bases = BTreeSet::new();
    for entry in fs::read_dir(dir).ctx(|| format!("list {}", dir.display()))? {
        let entry = entry.ctx(|| format!("list {}", dir.display()))?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if let Some(stem) = name.strip_suffix(SWAP_SUFFIX) {
            if let Some(base) = segment::parse_file_name(stem, "log") {
                swaps.push(PendingSwap { base_offset: base });
            } else if let Some(base) = segment::parse_file_name(stem, "index")
                .or_else(|| segment::parse_file_name(stem, "timeindex"))
                .or_else(|| segment::parse_file_name(stem, "txnindex"))
            {
                index_swaps.push((base, entry.path()));
            }
        } else if let Some(base) = segment::parse_file_name(&name, "log")
            .or_else(|| segment::parse_file_name(&name, "index"))
            .or_else(|| segment::parse_file_name(&name, "timeindex"))
        {
            bases.insert(base);
        }
    }
    if swaps.is_empty() && index_swaps.is_empty() {
        return Ok(false);
    }
    for (base, path) in index_swaps {
        if !swaps.iter().any(|s| s.base_offset == base) {
            tracing::info!(file = %path.display(), "removing index swap of an uncommitted clean");
            remove_if_exists(&path)?;
        }
    }
    swaps.sort_by_key(|s| s.base_offset);
    let mut valid = Vec::with_capacity(swaps.len());
    for swap in swaps {
        let base = swap.base_offset;
        let Some(next) = check_swap(dir, base)? else {
            continue;
        };
        valid.push(swap);
        let end = next.max(base + 1);
        for &replaced in bases.range(base..end) {
            tracing::info!(
                swap = base,
                replaced,
                "completing clean: removing replaced segment"
            );
            for ext in SEGMENT_EXTS {
                // The output's own `.txnindex` cannot be rebuilt from the trusted
                // data like its other indexes: without a `.txnindex.swap` left, a
                // `<base>.txnindex` is the output's, already renamed; keep it.
                if replaced == base
                    && ext == "txnindex"
                    && !segment_path(dir, base, ext, SWAP_SUFFIX).exists()
                {
                    continue;
                }
                remove_if_exists(&segment_path(dir, replaced, ext, ""))?;
            }
        }
    }
    sync_dir(dir)?;
    for swap in &valid {
        for ext in SEGMENT_EXTS {
            let from = segment_path(dir, swap.base_offset, ext, SWAP_SUFFIX);
            if ext == "log" || from.exists() {
                let to = segment_path(dir, swap.base_offset, ext, "");
                fs::rename(&from, &to)
                    .ctx(|| format!("rename {} to {}", from.display(), to.display()))?;
            }
        }
    }
    sync_dir(dir)?;
    Ok(true)
}

/// Validates the swap `<base>.log.swap` and returns its next offset, after cutting a
/// damaged tail; `None` (and the swap's files deleted) if it holds no valid batch.
fn check_swap(dir: &Path, base: i64) -> Result<Option<i64>> {
    let path = segment_path(dir, base, "log", SWAP_SUFFIX);
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .ctx(|| format!("open {}", path.display()))?;
    let len = file
        .metadata()
        .ctx(|| format!("stat {}", path.display()))?
        .len();
    let scan = records::scan_valid(&file, &path, len, base, |_, _| {})?;
    let Some(reason) = &scan.stopped else {
        return Ok(Some(scan.next_offset));
    };
    tracing::error!(path = %path.display(), position = scan.valid_bytes, %reason, "damaged swap file of a committed clean");
    if scan.valid_bytes == 0 {
        for ext in SEGMENT_EXTS {
            remove_if_exists(&segment_path(dir, base, ext, SWAP_SUFFIX))?;
        }
        return Ok(None);
    }
    file.set_len(scan.valid_bytes)
        .and_then(|()| file.sync_all())
        .ctx(|| format!("truncate {}", path.display()))?;
    for ext in ["index", "timeindex"] {
        remove_if_exists(&segment_path(dir, base, ext, SWAP_SUFFIX))?;
    }
    Ok(Some(scan.next_offset))
}

impl Log {
    /// Opens or creates the log in `dir`, a partition directory such as
    /// `<log.dirs>/orders-0` (created, with its parent fsynced, if missing). Kafka:
    /// `LogLoader.load`.
    ///
    /// - Completes a log clean that committed before a crash (`*.swap` files; rule at
    ///   `PendingSwap` in `log_load.rs`), then removes leftover `*.deleted`,
    ///   `*.cleaned` files (a clean that did not commit), `*.snapshot.tmp` files and
    ///   `.index` / `.timeindex` / `.txnindex` files without a `.log`. Other files are
    ///   left alone.
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
    /// - The producer state (KIP-98) is loaded from the newest valid producer snapshot
    ///   and the batches after it are replayed (rules at `producer_snapshot.rs`); the
    ///   `.txnindex` of each segment recovery scanned is rebuilt by that replay, the
    ///   others are loaded (rule at `TxnIndex` in `txn_index.rs`).
    /// - The leader-epoch cache (KIP-101, KIP-279) is loaded from
    ///   `leader-epoch-checkpoint` and learns the epoch of every batch recovery
    ///   re-validated; a missing file (with batches in the log) or a corrupt one is
    ///   rebuilt from the batch headers of all segments, with a warning for a corrupt
    ///   one. The cache is then cut at the log end offset and advanced to the log start
    ///   offset (cleared if the log restarted empty), and written if that changed it
    ///   (rules at `LeaderEpochCache` in `leader_epoch.rs`). After a clean shutdown with
    ///   a valid file nothing is scanned for it.
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
        crate::log::create_dir_durable(dir).ctx(|| format!("create {}", dir.display()))?;
        if complete_swaps(dir)? {
            dir_changed = true;
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
                .or_else(|| segment::parse_file_name(&name, "txnindex"))
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

        let (mut epochs, epoch_file) = LeaderEpochCache::load(dir)?;
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
                let opened = Segment::open(dir, base, i >= first_recovered, interval, &mut |h| {
                    epochs.assign_recovered(h.partition_leader_epoch, h.base_offset)
                })?;
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

        // Segments from here on were scanned by recovery: their `.txnindex` is rebuilt.
        let rebuild_from = bases.get(first_recovered).copied().unwrap_or(i64::MAX);
        let mut log_start = log_start_offset.max(0);
        if let Some(first) = segments.first() {
            log_start = log_start.max(first.base_offset);
        }
        match &epoch_file {
            FileState::Valid => {}
            FileState::Missing if segments.iter().all(|s| s.size == 0) => {}
            FileState::Missing => {
                tracing::info!(dir = %dir.display(), "no leader-epoch-checkpoint; rebuilding it from the segments");
                epochs.rebuild(&segments)?;
            }
            FileState::Corrupt(reason) => {
                tracing::warn!(dir = %dir.display(), %reason, "corrupt leader-epoch-checkpoint; rebuilding it from the segments");
                epochs.rebuild(&segments)?;
            }
        }
        let leo = segments.last().map_or(log_start, |s| s.next_offset);
        let restarted_empty = segments.is_empty() || log_start > leo;
        if restarted_empty {
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
            rewrite_epoch: 0,
            producers: ProducerStateManager::default(),
            snapshot_offset: None,
            epochs,
        };
        let leo = log.log_end_offset();
        log.epochs
            .finish_load(log.log_start_offset, leo, restarted_empty)?;
        log.load_producer_state(rebuild_from)?;
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
