//! Per-partition producer state for idempotent and transactional producers (KIP-98,
//! epochs bumped by KIP-360): the last batches of each producer id, to detect retries
//! and gaps, and the open transactions, which bound the last stable offset.
//!
//! Follows Kafka's `ProducerStateManager`, `ProducerStateEntry` and `ProducerAppendInfo`:
//! an append is first checked against a copy of the affected entries
//! ([`ProducerStateManager::prepare`]), and the copy replaces them only after the
//! batches were written ([`ProducerStateManager::commit`]), so a rejected or failed
//! append leaves the state untouched.

use std::collections::{BTreeMap, VecDeque};

use moldau_protocol::batch::{self, BatchHeader, ControlRecordType};

use crate::error::{Result, StorageError};
use crate::txn_index::AbortedTxn;

/// Batches retained per producer for duplicate detection (Kafka
/// `ProducerStateEntry.NUM_BATCHES_TO_RETAIN`, matching the client's
/// `max.in.flight.requests.per.connection` limit of 5 with idempotence).
pub const NUM_BATCHES_TO_RETAIN: usize = 5;

/// "No epoch" (Kafka `RecordBatch.NO_PRODUCER_EPOCH`).
const NO_PRODUCER_EPOCH: i16 = -1;

/// Who is appending, which decides how much producer-state validation an append gets
/// (Kafka `AppendOrigin`; replication is [`crate::Log::append_as_follower`], which
/// validates nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendOrigin {
    /// A Produce request: full checks (epoch, sequence, transaction state,
    /// duplicates); control batches are refused.
    Client,
    /// The broker's own coordinators: transaction markers (WriteTxnMarkers) and the
    /// group coordinator's transactional offset commits. Epochs (and, for markers, the
    /// coordinator epoch) are checked, sequences are not.
    Coordinator,
}

/// How an append is checked, including replication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    Client,
    Coordinator,
    /// Follower appends and the replay on open: no checks.
    Replication,
}

impl From<AppendOrigin> for Origin {
    fn from(o: AppendOrigin) -> Origin {
        match o {
            AppendOrigin::Client => Origin::Client,
            AppendOrigin::Coordinator => Origin::Coordinator,
        }
    }
}

/// One retained batch of a producer (Kafka `BatchMetadata`). Sequences wrap from
/// `i32::MAX` to 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchMetadata {
    /// Sequence number of the batch's first record (`baseSequence`).
    pub first_seq: i32,
    /// Sequence number of its last record.
    pub last_seq: i32,
    /// Offset of its last record (inclusive).
    pub last_offset: i64,
    /// `last_offset` minus the offset of its first record (`lastOffsetDelta`).
    pub offset_delta: i32,
    /// The batch's `maxTimestamp` as stored (ms; the broker time under LogAppendTime).
    pub timestamp: i64,
}

impl BatchMetadata {
    /// Offset of the batch's first record.
    pub fn first_offset(&self) -> i64 {
        self.last_offset - i64::from(self.offset_delta)
    }
}

/// The state of one producer id on one partition (Kafka `ProducerStateEntry`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerStateEntry {
    /// The producer id.
    pub producer_id: i64,
    /// Current epoch, -1 if none seen yet.
    pub producer_epoch: i16,
    /// The last [`NUM_BATCHES_TO_RETAIN`] batches of the current epoch, oldest first.
    pub batches: VecDeque<BatchMetadata>,
    /// Epoch of the transaction coordinator that wrote the last marker, -1 if none.
    pub coordinator_epoch: i32,
    /// First offset of the producer's open transaction, if one is open.
    pub current_txn_first_offset: Option<i64>,
    /// Timestamp of the last batch or marker (ms; drives `producer.id.expiration.ms`).
    pub last_timestamp: i64,
}

impl ProducerStateEntry {
    fn new(producer_id: i64) -> ProducerStateEntry {
        ProducerStateEntry {
            producer_id,
            producer_epoch: NO_PRODUCER_EPOCH,
            batches: VecDeque::new(),
            coordinator_epoch: -1,
            current_txn_first_offset: None,
            last_timestamp: -1,
        }
    }

    /// Sequence number of the last retained batch's last record, -1 if none.
    pub fn last_seq(&self) -> i32 {
        self.batches.back().map_or(-1, |b| b.last_seq)
    }

    /// A new epoch drops the batches of the old one.
    fn maybe_bump(&mut self, epoch: i16) {
        if epoch != self.producer_epoch {
            self.batches.clear();
            self.producer_epoch = epoch;
        }
    }

    fn add_batch(&mut self, meta: BatchMetadata) {
        if self.batches.len() == NUM_BATCHES_TO_RETAIN {
            self.batches.pop_front();
        }
        self.batches.push_back(meta);
    }

    /// A retained batch of `epoch` with exactly this sequence range (Kafka
    /// `findDuplicateBatch`).
    fn find_duplicate(&self, epoch: i16, first_seq: i32, last_seq: i32) -> Option<BatchMetadata> {
        if epoch != self.producer_epoch {
            return None;
        }
        self.batches
            .iter()
            .find(|b| b.first_seq == first_seq && b.last_seq == last_seq)
            .copied()
    }
}

/// What [`crate::Log::producers`] reports per producer (DescribeProducers, KIP-664).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerSnapshotView {
    /// The producer id.
    pub producer_id: i64,
    /// Current epoch (-1 if none).
    pub producer_epoch: i16,
    /// Last sequence number appended, -1 if none.
    pub last_sequence: i32,
    /// Timestamp of the last batch or marker (ms), -1 if none.
    pub last_timestamp: i64,
    /// Epoch of the coordinator that wrote the last marker, -1 if none.
    pub coordinator_epoch: i32,
    /// First offset of the open transaction, -1 if none.
    pub current_txn_start_offset: i64,
}

/// `seq + inc` with Kafka's wrap-around past `i32::MAX` (`DefaultRecordBatch.incrementSequence`).
pub(crate) fn increment_seq(seq: i32, inc: i32) -> i32 {
    if seq > i32::MAX - inc {
        inc - (i32::MAX - seq) - 1
    } else {
        seq + inc
    }
}

/// `seq - dec`, wrapping below 0 (`DefaultRecordBatch.decrementSequence`).
pub(crate) fn decrement_seq(seq: i32, dec: i32) -> i32 {
    if seq < dec {
        i32::MAX - (dec - seq) + 1
    } else {
        seq - dec
    }
}

fn in_sequence(last_seq: i32, next_seq: i32) -> bool {
    i64::from(next_seq) == i64::from(last_seq) + 1 || (next_seq == 0 && last_seq == i32::MAX)
}

/// What a batch is, for the producer state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BatchKind {
    /// Records.
    Data,
    /// A transaction marker with its coordinator epoch.
    Marker(ControlRecordType, i32),
    /// A control batch without a readable marker (e.g. emptied by the cleaner): no
    /// effect on the state.
    OtherControl,
}

/// The fields of one batch the producer state needs, offsets as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchInfo {
    pub(crate) producer_id: i64,
    pub(crate) producer_epoch: i16,
    pub(crate) base_sequence: i32,
    pub(crate) first_offset: i64,
    pub(crate) last_offset_delta: i32,
    /// `maxTimestamp` as stored (ms).
    pub(crate) max_timestamp: i64,
    pub(crate) transactional: bool,
    pub(crate) kind: BatchKind,
}

impl BatchInfo {
    /// Describes the whole batch `bytes` (header `header`) stored at `first_offset` with
    /// `max_timestamp`. Control batches are decoded for their marker.
    pub(crate) fn of(
        bytes: &[u8],
        header: &BatchHeader,
        first_offset: i64,
        max_timestamp: i64,
    ) -> BatchInfo {
        let kind = if header.is_control() {
            marker_of(bytes).map_or(BatchKind::OtherControl, |(t, e)| BatchKind::Marker(t, e))
        } else {
            BatchKind::Data
        };
        BatchInfo {
            producer_id: header.producer_id,
            producer_epoch: header.producer_epoch,
            base_sequence: header.base_sequence,
            first_offset,
            last_offset_delta: header.last_offset_delta,
            max_timestamp,
            transactional: header.is_transactional(),
            kind,
        }
    }

    fn last_offset(&self) -> i64 {
        self.first_offset + i64::from(self.last_offset_delta)
    }

    fn last_seq(&self) -> i32 {
        increment_seq(self.base_sequence, self.last_offset_delta)
    }
}

/// The marker type and coordinator epoch of a control batch: the first record's key is
/// `version int16, type int16`, its value `version int16, coordinator_epoch int32`
/// (Kafka `EndTransactionMarker`). `None` if it is not a readable marker.
pub(crate) fn marker_of(bytes: &[u8]) -> Option<(ControlRecordType, i32)> {
    let kind = ControlRecordType::of_batch(bytes)?;
    let record = batch::records(bytes)?.into_iter().next()?;
    let value = record.value?;
    let epoch = value.get(2..6)?;
    Some((
        kind,
        i32::from_be_bytes([epoch[0], epoch[1], epoch[2], epoch[3]]),
    ))
}

/// A transaction ended by a marker in an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CompletedTxn {
    producer_id: i64,
    first_offset: i64,
    /// The marker's offset.
    last_offset: i64,
    aborted: bool,
}

/// The effect of an append on the producer state, checked but not yet applied (Kafka's
/// `ProducerAppendInfo`s of one append).
#[derive(Debug, Default)]
pub(crate) struct ProducerUpdate {
    /// Updated copies of the affected entries.
    entries: BTreeMap<i64, ProducerStateEntry>,
    /// Transactions begun: (first offset, producer id).
    started: Vec<(i64, i64)>,
    completed: Vec<CompletedTxn>,
}

impl ProducerUpdate {
    /// True if the append touches no producer.
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// All producers of one partition plus its open transactions (Kafka
/// `ProducerStateManager`); owned by the [`crate::Log`], persisted as snapshots (format
/// and rules at `producer_snapshot.rs`).
#[derive(Debug, Default)]
pub(crate) struct ProducerStateManager {
    pub(crate) entries: BTreeMap<i64, ProducerStateEntry>,
    /// Open transactions: first offset → producer id, ascending.
    pub(crate) ongoing: BTreeMap<i64, i64>,
}

impl ProducerStateManager {
    /// Builds the state from snapshot entries (open transactions from their
    /// `current_txn_first_offset`).
    pub(crate) fn from_entries(entries: Vec<ProducerStateEntry>) -> ProducerStateManager {
        let mut state = ProducerStateManager::default();
        for entry in entries {
            if let Some(first) = entry.current_txn_first_offset {
                state.ongoing.insert(first, entry.producer_id);
            }
            state.entries.insert(entry.producer_id, entry);
        }
        state
    }

    /// The first offset of the earliest open transaction.
    pub(crate) fn first_unstable_offset(&self) -> Option<i64> {
        self.ongoing.keys().next().copied()
    }

    /// For a client append: the first batch that repeats a retained batch of its
    /// producer (same epoch, same sequence range; Kafka
    /// `UnifiedLog.analyzeAndValidateProducerState`).
    pub(crate) fn find_duplicate(&self, batches: &[BatchInfo]) -> Option<BatchMetadata> {
        batches.iter().find_map(|b| {
            if b.producer_id < 0 || b.kind != BatchKind::Data {
                return None;
            }
            self.entries.get(&b.producer_id)?.find_duplicate(
                b.producer_epoch,
                b.base_sequence,
                b.last_seq(),
            )
        })
    }

    /// Checks `batches` (in append order, offsets assigned) as `origin` requires and
    /// returns their effect without applying it. Batches without a producer id are
    /// ignored. Errors (never for [`Origin::Replication`]):
    /// [`StorageError::InvalidProducerEpoch`], [`StorageError::OutOfOrderSequence`],
    /// [`StorageError::InvalidTxnState`], [`StorageError::TransactionCoordinatorFenced`].
    pub(crate) fn prepare(&self, batches: &[BatchInfo], origin: Origin) -> Result<ProducerUpdate> {
        let mut update = ProducerUpdate::default();
        for b in batches {
            if b.producer_id < 0 {
                continue;
            }
            let entry = update.entries.entry(b.producer_id).or_insert_with(|| {
                self.entries
                    .get(&b.producer_id)
                    .cloned()
                    .unwrap_or_else(|| ProducerStateEntry::new(b.producer_id))
            });
            apply(entry, b, origin, &mut update.started, &mut update.completed)?;
        }
        Ok(update)
    }

    /// Applies a prepared update; returns the aborted transactions to add to the
    /// transaction index of the segment holding their markers, in marker order.
    pub(crate) fn commit(&mut self, update: ProducerUpdate) -> Vec<AbortedTxn> {
        self.entries.extend(update.entries);
        self.ongoing.extend(update.started);
        self.complete(update.completed)
    }

    /// Applies one stored batch without checks (replay on open and after truncation;
    /// cheaper than `prepare` + `commit`). Returns the aborted transaction its marker
    /// ends, if any.
    pub(crate) fn replay(&mut self, b: &BatchInfo) -> Vec<AbortedTxn> {
        if b.producer_id < 0 {
            return Vec::new();
        }
        let entry = self
            .entries
            .entry(b.producer_id)
            .or_insert_with(|| ProducerStateEntry::new(b.producer_id));
        let mut started = Vec::new();
        let mut completed = Vec::new();
        // Replication origin: `apply` checks nothing and cannot fail.
        if apply(entry, b, Origin::Replication, &mut started, &mut completed).is_err() {
            return Vec::new();
        }
        self.ongoing.extend(started);
        self.complete(completed)
    }

    /// Closes completed transactions, computing each abort's last stable offset.
    fn complete(&mut self, completed: Vec<CompletedTxn>) -> Vec<AbortedTxn> {
        let mut aborted = Vec::new();
        for txn in completed {
            // Kafka `lastStableOffset(completedTxn)`: the earliest other open one.
            let last_stable_offset = self
                .ongoing
                .iter()
                .find(|&(_, &pid)| pid != txn.producer_id)
                .map_or(txn.last_offset + 1, |(&first, _)| first);
            self.ongoing.remove(&txn.first_offset);
            if txn.aborted {
                aborted.push(AbortedTxn {
                    producer_id: txn.producer_id,
                    first_offset: txn.first_offset,
                    last_offset: txn.last_offset,
                    last_stable_offset,
                });
            }
        }
        aborted
    }

    /// The producers, by id.
    pub(crate) fn views(&self) -> Vec<ProducerSnapshotView> {
        self.entries
            .values()
            .map(|e| ProducerSnapshotView {
                producer_id: e.producer_id,
                producer_epoch: e.producer_epoch,
                last_sequence: e.last_seq(),
                last_timestamp: e.last_timestamp,
                coordinator_epoch: e.coordinator_epoch,
                current_txn_start_offset: e.current_txn_first_offset.unwrap_or(-1),
            })
            .collect()
    }

    /// Removes producers without an open transaction whose last timestamp is at least
    /// `expiration_ms` before `now_ms` (Kafka `isProducerExpired`). Returns how many.
    pub(crate) fn remove_expired(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        let before = self.entries.len();
        self.entries.retain(|_, e| {
            e.current_txn_first_offset.is_some()
                || now_ms.saturating_sub(e.last_timestamp) < expiration_ms
        });
        before - self.entries.len()
    }
}

/// The effect of batch `b` on its producer's `entry` (Kafka `ProducerAppendInfo.append`),
/// with the checks `origin` requires; transactions begun or ended are pushed to
/// `started` (first offset, producer id) and `completed`.
fn apply(
    entry: &mut ProducerStateEntry,
    b: &BatchInfo,
    origin: Origin,
    started: &mut Vec<(i64, i64)>,
    completed: &mut Vec<CompletedTxn>,
) -> Result<()> {
    let validate = origin != Origin::Replication;
    if validate && b.kind != BatchKind::OtherControl && b.producer_epoch < entry.producer_epoch {
        return Err(StorageError::InvalidProducerEpoch {
            producer_id: b.producer_id,
            epoch: b.producer_epoch,
            current_epoch: entry.producer_epoch,
        });
    }
    match b.kind {
        BatchKind::Data => {
            if origin == Origin::Client {
                check_sequence(entry, b)?;
            }
            entry.maybe_bump(b.producer_epoch);
            if b.base_sequence >= 0 {
                entry.add_batch(BatchMetadata {
                    first_seq: b.base_sequence,
                    last_seq: b.last_seq(),
                    last_offset: b.last_offset(),
                    offset_delta: b.last_offset_delta,
                    timestamp: b.max_timestamp,
                });
            }
            entry.last_timestamp = b.max_timestamp;
            match (entry.current_txn_first_offset, b.transactional) {
                (Some(_), false) if validate => {
                    return Err(StorageError::InvalidTxnState {
                        producer_id: b.producer_id,
                        offset: b.first_offset,
                    });
                }
                (None, true) => {
                    entry.current_txn_first_offset = Some(b.first_offset);
                    started.push((b.first_offset, b.producer_id));
                }
                _ => {}
            }
        }
        BatchKind::Marker(kind, coordinator_epoch) => {
            if validate && coordinator_epoch < entry.coordinator_epoch {
                return Err(StorageError::TransactionCoordinatorFenced {
                    producer_id: b.producer_id,
                    coordinator_epoch,
                    current_coordinator_epoch: entry.coordinator_epoch,
                });
            }
            if let Some(first_offset) = entry.current_txn_first_offset {
                completed.push(CompletedTxn {
                    producer_id: b.producer_id,
                    first_offset,
                    last_offset: b.first_offset,
                    aborted: kind == ControlRecordType::Abort,
                });
            }
            entry.maybe_bump(b.producer_epoch);
            entry.current_txn_first_offset = None;
            entry.coordinator_epoch = coordinator_epoch;
            entry.last_timestamp = b.max_timestamp;
        }
        BatchKind::OtherControl => {}
    }
    Ok(())
}

/// Kafka `ProducerAppendInfo.checkSequence` for a data batch at the epoch check's
/// survivor `entry` (the producer's state including earlier batches of the append).
fn check_sequence(entry: &ProducerStateEntry, b: &BatchInfo) -> Result<()> {
    let out_of_order = |expected: i32| StorageError::OutOfOrderSequence {
        producer_id: b.producer_id,
        epoch: b.producer_epoch,
        sequence: b.base_sequence,
        expected,
    };
    if b.producer_epoch != entry.producer_epoch {
        // A new epoch starts at 0, unless the producer is unknown here (its state was
        // lost to retention, DeleteRecords or expiration): then any sequence goes.
        if b.base_sequence != 0 && entry.producer_epoch != NO_PRODUCER_EPOCH {
            return Err(out_of_order(0));
        }
    } else {
        let last = entry.last_seq();
        if !(entry.producer_epoch == NO_PRODUCER_EPOCH || in_sequence(last, b.base_sequence)) {
            return Err(out_of_order(increment_seq(last, 1)));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_wrap_like_kafka() {
        assert_eq!(increment_seq(5, 3), 8);
        assert_eq!(increment_seq(i32::MAX, 1), 0);
        assert_eq!(increment_seq(i32::MAX - 1, 3), 1);
        assert_eq!(decrement_seq(8, 3), 5);
        assert_eq!(decrement_seq(1, 3), i32::MAX - 1);
        assert!(in_sequence(i32::MAX, 0));
        assert!(in_sequence(-1, 0));
        assert!(!in_sequence(4, 6));
    }
}
