//! Drives the storage log cleaner ([`moldau_storage::CleanPlan`]) over every compacted
//! partition (Kafka `LogCleanerManager`): picks the logs whose dirty ratio calls for a
//! clean, builds the cleaned segments without the partition lock, installs them under
//! it, and remembers each log's first dirty offset.
//!
//! File in the log dir: `cleaner-offset-checkpoint` (Kafka's name and format): per
//! partition, the offset where the not-yet-cleaned part of the log begins. Losing it
//! costs one extra clean, never data.

use crate::partition::Partition;
use moldau_protocol::compression as codec;
use moldau_storage::{checkpoint, CleanOutcome, StorageError};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

const CLEANER_CHECKPOINT_FILE: &str = "cleaner-offset-checkpoint";

/// First dirty offsets and cleaner settings.
pub struct LogCleaner {
    checkpoint_path: PathBuf,
    /// `log.cleaner.dedupe.buffer.size`: bytes the key → offset map of one clean may use.
    dedupe_buffer_bytes: usize,
    first_dirty: Mutex<HashMap<(String, i32), i64>>,
    /// What the checkpoint file holds now, so an idle pass writes nothing.
    written: Mutex<Vec<(String, i32, i64)>>,
}

impl LogCleaner {
    /// Reads `cleaner-offset-checkpoint` from `log_dir` (an unreadable one is ignored).
    pub fn open(log_dir: PathBuf, dedupe_buffer_bytes: usize) -> Self {
        let checkpoint_path = log_dir.join(CLEANER_CHECKPOINT_FILE);
        let first_dirty = checkpoint::read(&checkpoint_path).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "ignoring unreadable cleaner checkpoint");
            HashMap::new()
        });
        LogCleaner {
            checkpoint_path,
            dedupe_buffer_bytes,
            first_dirty: Mutex::new(first_dirty),
            written: Mutex::new(Vec::new()),
        }
    }

    /// Cleans every partition whose log asks for it, then writes the checkpoint for
    /// `partitions` if it changed (entries of partitions no longer hosted are
    /// dropped). Blocking.
    pub fn clean(&self, partitions: &[Arc<Partition>], now: i64) -> Result<(), StorageError> {
        for p in partitions {
            if let Err(e) = self.clean_one(p, now) {
                tracing::error!(partition = %p.tp, error = %e, "log cleaning failed");
            }
        }
        let mut entries: Vec<(String, i32, i64)> = {
            let dirty = self.first_dirty.lock();
            partitions
                .iter()
                .filter_map(|p| {
                    let key = (p.tp.topic.to_string(), p.tp.partition);
                    dirty.get(&key).map(|o| (key.0, key.1, *o))
                })
                .collect()
        };
        entries.sort();
        let mut written = self.written.lock();
        if *written == entries && self.checkpoint_path.exists() {
            return Ok(());
        }
        checkpoint::write(&self.checkpoint_path, &entries)?;
        *written = entries;
        Ok(())
    }

    /// One partition: plan under the read lock, build unlocked, install under the write
    /// lock. Never cleans at or past the high watermark.
    fn clean_one(&self, p: &Partition, now: i64) -> Result<(), StorageError> {
        let key = (p.tp.topic.to_string(), p.tp.partition);
        let stored = self.first_dirty.lock().get(&key).copied().unwrap_or(0);
        let plan = p.with_log(|log| {
            if !log.config().cleanup_policy.compacts() {
                return Ok(None);
            }
            // A checkpoint from a deleted topic of the same name may lie past this log.
            let first_dirty = if stored > log.log_end_offset() {
                0
            } else {
                stored
            };
            log.clean_plan_below(first_dirty, log.log_end_offset(), now)
        })?;
        let Some(plan) = plan else {
            return Ok(());
        };
        let cleaned = plan.build(
            now,
            self.dedupe_buffer_bytes,
            &codec::decompress,
            &codec::compress,
        )?;
        match p.with_log_mut(|log| log.install_clean(cleaned))? {
            CleanOutcome::Installed(stats) => {
                tracing::info!(
                    partition = %p.tp,
                    bytes_before = stats.bytes_before,
                    bytes_after = stats.bytes_after,
                    records_removed = stats.records_removed,
                    first_dirty_offset = stats.first_dirty_offset,
                    "cleaned log"
                );
                self.first_dirty
                    .lock()
                    .insert(key, stats.first_dirty_offset);
            }
            CleanOutcome::Stale => {
                tracing::debug!(partition = %p.tp, "log changed during cleaning; will retry");
            }
        }
        Ok(())
    }
}
