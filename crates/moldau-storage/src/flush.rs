//! Group-commit support: a snapshot of what must be fsynced, synced outside the lock.

use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// What a flush must make durable, captured by [`crate::Log::flush_target`] so the
/// fsyncs can run without holding the log (group commit: every append made before the
/// snapshot becomes durable with one round of fsyncs).
///
/// Holds shared handles of the `.log`, `.index`, `.timeindex` and (if it exists)
/// `.txnindex` files of every segment
/// that may hold data at or above the recovery point, plus the partition directory if
/// segment files were created since its last fsync. Syncing a file that has since been
/// deleted by retention or truncation is harmless.
///
/// Protocol: `let t = log.flush_target();` (under the lock) → `t.sync()` (no lock) →
/// `log.mark_flushed(t.end_offset())` on success, or `log.poison()` on failure.
#[derive(Debug, Clone)]
pub struct FlushTarget {
    pub(crate) files: Vec<Arc<File>>,
    /// Partition directory and the "entries durable" flags of new segments.
    pub(crate) dir: Option<(PathBuf, Vec<Arc<AtomicBool>>)>,
    pub(crate) end_offset: i64,
}

impl FlushTarget {
    /// The log end offset (exclusive) at snapshot time: after a successful
    /// [`FlushTarget::sync`], every offset below it is durable.
    pub fn end_offset(&self) -> i64 {
        self.end_offset
    }

    /// True if there is nothing to sync.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty() && self.dir.is_none()
    }

    /// `fdatasync`s each file, then `fsync`s the partition directory if new segment files
    /// were created since it was last synced. Blocking; call it without holding the log.
    /// Errors: the first failing call's `io::Error`; after that the log must be poisoned,
    /// because a failed fsync may have dropped dirty pages (retrying can report success
    /// over lost data).
    ///
    /// Built with the test-only feature `test-skip-ack-fsync` it syncs nothing (and
    /// reports success), so that tests can show they catch the loss.
    pub fn sync(&self) -> std::io::Result<()> {
        if cfg!(feature = "test-skip-ack-fsync") {
            return Ok(());
        }
        for file in &self.files {
            file.sync_data()?;
        }
        if let Some((dir, flags)) = &self.dir {
            File::open(dir)?.sync_all()?;
            for flag in flags {
                flag.store(true, Ordering::Release);
            }
        }
        Ok(())
    }
}
