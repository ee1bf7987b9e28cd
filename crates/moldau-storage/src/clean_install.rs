//! Installing a clean: the swap of cleaned segments into the log (Kafka
//! `UnifiedLog.replaceSegments`), and the test hook that crashes it part way.

use std::fs;
use std::ops::Range;

use crate::cleaner::{
    remove_cleaned_files, remove_if_exists, segment_path, CleanOutcome, CleanedLog, CLEANED_SUFFIX,
    SEGMENT_EXTS, SWAP_SUFFIX,
};
use crate::error::{IoContext, Result, StorageError};
use crate::log::{sync_dir, Log};
use crate::segment::Segment;

/// Counts the file-system steps of an install and, in tests, stops after a given
/// number as if the process had been killed there.
struct Steps {
    left: Option<usize>,
}

impl Steps {
    fn step(&mut self) -> Result<()> {
        match &mut self.left {
            Some(0) => Err(StorageError::io(
                "simulated crash during install_clean",
                std::io::Error::other("crash point reached"),
            )),
            Some(n) => {
                *n -= 1;
                Ok(())
            }
            None => Ok(()),
        }
    }
}

impl Log {
    /// Installs a clean built by [`crate::CleanPlan::build`] (Kafka
    /// `UnifiedLog.replaceSegments`). Short; meant to run under the write lock.
    ///
    /// First checks that every input segment is still in the log, sealed, and the very
    /// segment planned (same file, size and offsets) and that nothing was deleted or
    /// truncated since the plan; otherwise the cleaned files are deleted and the
    /// outcome is [`CleanOutcome::Stale`], the log untouched.
    ///
    /// Then, with a file-system step each:
    /// 1. renames every output's `.index.cleaned`, `.timeindex.cleaned`,
    ///    `.txnindex.cleaned` (if any), then `.log.cleaned` to `*.swap` (the `.log.swap` name commits that output: from
    ///    here a crash is completed by `Log::open`), and fsyncs the directory;
    /// 2. removes the input segments' files, fsyncs the directory;
    /// 3. renames every `*.swap` to its final name, fsyncs the directory;
    /// 4. reopens the outputs in memory in place of the inputs.
    ///
    /// The log start and end offsets and the recovery point are unchanged. Errors:
    /// [`StorageError::Poisoned`]; [`StorageError::Io`] (if it happens once step 1
    /// began, the log is poisoned and must be reopened, which completes or discards the
    /// clean as described at `Log::open`).
    pub fn install_clean(&mut self, cleaned: CleanedLog) -> Result<CleanOutcome> {
        self.install_with_steps(cleaned, Steps { left: None })
    }

    /// [`Log::install_clean`] that returns an error right before its `crash_after`-th
    /// file-system step (0 = before the first), leaving the files as a crash there
    /// would. The log is poisoned afterwards; drop it and reopen.
    #[cfg(test)]
    pub(crate) fn install_clean_crashing(
        &mut self,
        cleaned: CleanedLog,
        crash_after: usize,
    ) -> Result<CleanOutcome> {
        self.install_with_steps(
            cleaned,
            Steps {
                left: Some(crash_after),
            },
        )
    }

    fn install_with_steps(
        &mut self,
        mut cleaned: CleanedLog,
        mut steps: Steps,
    ) -> Result<CleanOutcome> {
        self.check_writable()?;
        cleaned.armed = false;
        let Some(positions) = self.locate_inputs(&cleaned) else {
            tracing::info!(dir = %self.dir.display(), "log changed since the clean was planned; discarding it");
            remove_cleaned_files(&cleaned.dir, &cleaned.outputs)?;
            return Ok(CleanOutcome::Stale);
        };
        let mut committed = false;
        match self.swap_in(&cleaned, &positions, &mut steps, &mut committed) {
            Ok(()) => {
                self.rewrite_epoch += 1;
                tracing::info!(dir = %self.dir.display(), stats = ?cleaned.stats, "installed cleaned segments");
                Ok(CleanOutcome::Installed(cleaned.stats.clone()))
            }
            Err(e) => {
                if committed {
                    self.poison();
                } else if let Err(cleanup) = remove_cleaned_files(&cleaned.dir, &cleaned.outputs) {
                    tracing::warn!(error = %cleanup, "could not remove cleaned segment files");
                }
                Err(e)
            }
        }
    }

    /// For each output, the range of `self.segments` it replaces; `None` if the plan is
    /// stale.
    fn locate_inputs(&self, cleaned: &CleanedLog) -> Option<Vec<Range<usize>>> {
        if cleaned.dir != self.dir || cleaned.rewrite_epoch != self.rewrite_epoch {
            return None;
        }
        let sealed = self.segments.len() - 1;
        let mut positions = Vec::with_capacity(cleaned.outputs.len());
        for out in &cleaned.outputs {
            let inputs = cleaned.inputs.get(out.inputs.clone())?;
            let first = self
                .segments
                .binary_search_by_key(&out.base_offset, |s| s.base_offset)
                .ok()?;
            let range = first..first + inputs.len();
            if range.end > sealed {
                return None;
            }
            let same = inputs
                .iter()
                .zip(&self.segments[range.clone()])
                .all(|(planned, segment)| planned.matches(segment));
            if !same {
                return None;
            }
            positions.push(range);
        }
        Some(positions)
    }

    fn swap_in(
        &mut self,
        cleaned: &CleanedLog,
        positions: &[Range<usize>],
        steps: &mut Steps,
        committed: &mut bool,
    ) -> Result<()> {
        let dir = self.dir.clone();
        let rename = |from: &std::path::Path, to: &std::path::Path| {
            fs::rename(from, to).ctx(|| format!("rename {} to {}", from.display(), to.display()))
        };
        // A cleaned segment has a `.txnindex` only if it holds aborted transactions.
        let has_txn_index =
            |base: i64| segment_path(&dir, base, "txnindex", CLEANED_SUFFIX).exists();
        let with_txn: Vec<bool> = cleaned
            .outputs
            .iter()
            .map(|o| has_txn_index(o.base_offset))
            .collect();
        let exts = |has_txn: bool| {
            SEGMENT_EXTS
                .into_iter()
                .filter(move |&ext| has_txn || ext != "txnindex")
        };
        for (out, &has_txn) in cleaned.outputs.iter().zip(&with_txn) {
            for ext in exts(has_txn) {
                steps.step()?;
                *committed = true;
                rename(
                    &segment_path(&dir, out.base_offset, ext, CLEANED_SUFFIX),
                    &segment_path(&dir, out.base_offset, ext, SWAP_SUFFIX),
                )?;
            }
        }
        steps.step()?;
        sync_dir(&dir)?;
        for input in &cleaned.inputs {
            for ext in SEGMENT_EXTS {
                steps.step()?;
                remove_if_exists(&segment_path(&dir, input.base_offset, ext, ""))?;
            }
        }
        steps.step()?;
        sync_dir(&dir)?;
        for (out, &has_txn) in cleaned.outputs.iter().zip(&with_txn) {
            for ext in exts(has_txn) {
                steps.step()?;
                rename(
                    &segment_path(&dir, out.base_offset, ext, SWAP_SUFFIX),
                    &segment_path(&dir, out.base_offset, ext, ""),
                )?;
            }
        }
        steps.step()?;
        sync_dir(&dir)?;
        // Replace from the back so earlier positions stay valid. The leader-epoch cache
        // is left alone, as Kafka's cleaner does: a clean keeps every retained batch's
        // offsets and `partitionLeaderEpoch` (whole batches are dropped or rewritten
        // around their header) and moves neither the log start nor the log end.
        for (out, range) in cleaned.outputs.iter().zip(positions).rev() {
            let opened =
                Segment::open(&dir, out.base_offset, false, cleaned.interval, &mut |_| {})?;
            if opened.truncated_bytes > 0 || opened.segment.next_offset != out.next_offset {
                return Err(crate::records::corrupt(
                    &opened.segment.log_path,
                    opened.segment.size,
                    "cleaned segment changed on disk before it was opened",
                ));
            }
            self.segments.splice(range.clone(), [opened.segment]);
        }
        Ok(())
    }
}
