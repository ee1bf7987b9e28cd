//! The producer side of [`Log`] (KIP-98): the last stable offset, aborted transactions
//! for `read_committed` fetches, DescribeProducers, expiration, snapshots, and
//! rebuilding the producer state by replaying batches.

use crate::error::Result;
use crate::log::{sync_dir, Log};
use crate::producer_snapshot;
use crate::producer_state::{
    BatchInfo, ProducerSnapshotView, ProducerStateEntry, ProducerStateManager,
};
use crate::records;
use crate::txn_index::{collect_overlapping, AbortedTxn};

impl Log {
    /// First offset of the earliest open transaction on this partition, `None` if no
    /// transaction is open. The last stable offset (KIP-98) is `min(this, high
    /// watermark)`; `read_committed` fetches stop there and the cleaner never compacts
    /// at or above it.
    pub fn first_unstable_offset(&self) -> Option<i64> {
        self.producers.first_unstable_offset()
    }

    /// The aborted transactions overlapping the offsets `[start_offset,
    /// upper_bound_offset)` (Kafka `UnifiedLog.collectAbortedTransactions` /
    /// `TransactionIndex.collectAbortedTxns`): every `.txnindex` entry, from the segment
    /// holding `start_offset` on, with `last_offset >= start_offset && first_offset <
    /// upper_bound_offset`, ordered by marker offset. A Fetch at `read_committed` passes
    /// the first returned batch's base offset and the end of the returned data. Reads
    /// only memory; stops at the first entry whose last stable offset reaches
    /// `upper_bound_offset` (no later entry can overlap).
    pub fn collect_aborted_transactions(
        &self,
        start_offset: i64,
        upper_bound_offset: i64,
    ) -> Vec<AbortedTxn> {
        let mut out = Vec::new();
        for segment in &self.segments[self.segment_index_for(start_offset)..] {
            if collect_overlapping(
                segment.txn.entries(),
                start_offset,
                upper_bound_offset,
                &mut out,
            ) {
                break;
            }
        }
        out
    }

    /// Every producer known on this partition, by producer id (DescribeProducers,
    /// KIP-664).
    pub fn producers(&self) -> Vec<ProducerSnapshotView> {
        self.producers.views()
    }

    /// The full state of one producer, `None` if unknown here.
    pub fn producer_state(&self, producer_id: i64) -> Option<&ProducerStateEntry> {
        self.producers.entries.get(&producer_id)
    }

    /// Forgets producers without an open transaction whose last timestamp (of their
    /// last batch or marker, ms) is `expiration_ms` or more before `now_ms` (Kafka
    /// `producer.id.expiration.ms`, default 86400000, checked every
    /// `producer.id.expiration.check.interval.ms`; `isProducerExpired` uses `>=`).
    /// Returns how many were removed. A later batch of a forgotten producer is accepted
    /// at any sequence.
    pub fn remove_expired_producers(
        &mut self,
        now_ms: i64,
        producer_id_expiration_ms: i64,
    ) -> usize {
        let n = self
            .producers
            .remove_expired(now_ms, producer_id_expiration_ms);
        if n > 0 {
            self.snapshot_offset = None;
        }
        n
    }

    /// Writes a producer-state snapshot at the log end offset (`<LEO>.snapshot`; format
    /// and rules at `producer_snapshot.rs`), so a later open replays nothing below it.
    /// Does nothing if that snapshot already holds the current state. Errors:
    /// [`crate::StorageError::Poisoned`], [`crate::StorageError::Io`] (the log stays
    /// usable: a missing snapshot only lengthens the next replay).
    pub fn take_producer_snapshot(&mut self) -> Result<()> {
        self.check_writable()?;
        let leo = self.log_end_offset();
        if self.snapshot_offset == Some(leo) {
            return Ok(());
        }
        let bytes = producer_snapshot::encode(self.producers.entries.values());
        producer_snapshot::write(&self.dir, leo, &bytes)?;
        self.snapshot_offset = Some(leo);
        Ok(())
    }

    /// The snapshot taken at a roll: failures are logged, not returned (the roll goes
    /// on; the next open replays from an older snapshot).
    pub(crate) fn write_producer_snapshot_at(&mut self, offset: i64) {
        let bytes = producer_snapshot::encode(self.producers.entries.values());
        match producer_snapshot::write(&self.dir, offset, &bytes) {
            Ok(()) => self.snapshot_offset = Some(offset),
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), offset, error = %e, "producer snapshot failed")
            }
        }
    }

    /// Loads the producer state on open (Kafka `LogLoader` / `rebuildProducerState`).
    /// `rebuild_from`: base offset of the first segment recovery scanned (`i64::MAX`
    /// after a clean shutdown). Deletes snapshots above the log end offset, empties the
    /// `.txnindex` of every segment from `rebuild_from` on, loads the newest valid
    /// snapshot at or below `min(log end offset, rebuild_from)`, replays the batches
    /// after it and writes the abort entries of markers at or above `rebuild_from`
    /// (fsynced). Trusted segments keep their `.txnindex` files.
    pub(crate) fn load_producer_state(&mut self, rebuild_from: i64) -> Result<()> {
        let leo = self.log_end_offset();
        producer_snapshot::delete_where(&self.dir, |o| o > leo)?;
        for segment in self.segments.iter_mut() {
            if segment.base_offset >= rebuild_from {
                segment.txn.reset()?;
            }
        }
        let created = self.rebuild_producer_state(leo.min(rebuild_from), rebuild_from)?;
        if rebuild_from < i64::MAX {
            for segment in &self.segments {
                if segment.base_offset >= rebuild_from {
                    if let Some(file) = segment.txn.file() {
                        file.sync_data().map_err(|e| {
                            crate::StorageError::io(
                                format!("fsync {}", segment.txn.path().display()),
                                e,
                            )
                        })?;
                    }
                }
            }
            if created {
                sync_dir(&self.dir)?;
            }
        }
        Ok(())
    }

    /// Replaces the producer state with the newest valid snapshot at or below `limit`
    /// (or an empty state) plus a replay of the batches after it up to the log end.
    /// Abort markers at offsets `>= index_from` get `.txnindex` entries. Returns whether
    /// a `.txnindex` file was created.
    pub(crate) fn rebuild_producer_state(&mut self, limit: i64, index_from: i64) -> Result<bool> {
        let first_base = self.segments[0].base_offset;
        let (from, state) = match producer_snapshot::load_latest(&self.dir, limit)? {
            Some((offset, entries)) => (offset, ProducerStateManager::from_entries(entries)),
            None => (first_base, ProducerStateManager::default()),
        };
        self.producers = state;
        self.snapshot_offset = None;
        let leo = self.log_end_offset();
        let created = self.replay_producers(from.max(first_base), index_from)?;
        if from == leo {
            self.snapshot_offset = Some(leo);
        }
        Ok(created)
    }

    /// Feeds every stored batch with a producer id from `from` to the log end through
    /// the producer state, without checks; headers only, plus the body of control
    /// batches (one small record) for the marker type.
    fn replay_producers(&mut self, from: i64, index_from: i64) -> Result<bool> {
        let mut created = false;
        let mut buf = Vec::new();
        for i in self.segment_index_for(from)..self.segments.len() {
            let mut aborted_here = Vec::new();
            let segment = &self.segments[i];
            if segment.next_offset <= from {
                continue;
            }
            let start = segment.ix.offset.lookup(from).map_or(0, |(_, pos)| pos);
            let mut scanner = segment.scanner(start);
            while let Some((pos, header)) = scanner.next_batch()? {
                if header.last_offset() < from || header.producer_id < 0 {
                    continue;
                }
                let info = if header.is_control() {
                    records::read_batch(&segment.log, &segment.log_path, pos, &header, &mut buf)?;
                    BatchInfo::of(&buf, &header, header.base_offset, header.max_timestamp)
                } else {
                    BatchInfo::of(&[], &header, header.base_offset, header.max_timestamp)
                };
                let aborted = self.producers.replay(&info);
                if header.base_offset >= index_from {
                    aborted_here.extend(aborted);
                }
            }
            if !aborted_here.is_empty() {
                created |= self.segments[i].txn.append(&aborted_here)?;
            }
        }
        Ok(created)
    }
}
