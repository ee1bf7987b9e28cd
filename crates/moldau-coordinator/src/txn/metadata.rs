//! One transactional id's state (Kafka `TransactionMetadata`) and the transitions
//! prepared on it (Kafka `TxnTransitMetadata`).

use super::records::TxnLogValue;
use std::collections::BTreeSet;

/// "No producer id" (Kafka `RecordBatch.NO_PRODUCER_ID`).
pub const NO_PRODUCER_ID: i64 = -1;
/// "No producer epoch" (Kafka `RecordBatch.NO_PRODUCER_EPOCH`).
pub const NO_PRODUCER_EPOCH: i16 = -1;

/// The state of a transactional id, with the status code Kafka stores in
/// `__transaction_state` and the name DescribeTransactions/ListTransactions report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TxnState {
    /// No transaction running (after InitProducerId). Code 0.
    Empty,
    /// Partitions have been added; the transaction runs. Code 1.
    Ongoing,
    /// EndTxn(commit) is durable; commit markers are being written. Code 2.
    PrepareCommit,
    /// EndTxn(abort), a timeout or a fencing InitProducerId is durable; abort markers
    /// are being written. Code 3.
    PrepareAbort,
    /// Commit markers written. Code 4.
    CompleteCommit,
    /// Abort markers written. Code 5.
    CompleteAbort,
    /// Being expired (its tombstone is being written). Code 6; never written.
    Dead,
    /// An epoch fence is being prepared before an abort. Code 7; in memory only.
    PrepareEpochFence,
}

impl TxnState {
    /// Every state, in code order.
    pub const ALL: [TxnState; 8] = [
        TxnState::Empty,
        TxnState::Ongoing,
        TxnState::PrepareCommit,
        TxnState::PrepareAbort,
        TxnState::CompleteCommit,
        TxnState::CompleteAbort,
        TxnState::Dead,
        TxnState::PrepareEpochFence,
    ];

    /// The `transaction_status` code of `TransactionLogValue`.
    pub fn code(self) -> i8 {
        match self {
            TxnState::Empty => 0,
            TxnState::Ongoing => 1,
            TxnState::PrepareCommit => 2,
            TxnState::PrepareAbort => 3,
            TxnState::CompleteCommit => 4,
            TxnState::CompleteAbort => 5,
            TxnState::Dead => 6,
            TxnState::PrepareEpochFence => 7,
        }
    }

    /// The state of a status code, `None` if unknown.
    pub fn from_code(code: i8) -> Option<TxnState> {
        TxnState::ALL.into_iter().find(|s| s.code() == code)
    }

    /// The name Kafka reports (DescribeTransactions, ListTransactions, KIP-664).
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
            TxnState::Dead => "Dead",
            TxnState::PrepareEpochFence => "PrepareEpochFence",
        }
    }

    /// The state with Kafka's `name`, `None` if unknown (ListTransactions reports such
    /// filters back as `unknown_state_filters`).
    pub fn from_name(name: &str) -> Option<TxnState> {
        TxnState::ALL.into_iter().find(|s| s.name() == name)
    }

    /// `Empty`, `CompleteCommit` and `CompleteAbort`: no transaction in flight, so the id
    /// may expire (Kafka `isExpirationAllowed`) and InitProducerId may bump its epoch.
    pub fn is_idle(self) -> bool {
        matches!(
            self,
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
        )
    }

    /// `PrepareCommit` or `PrepareAbort`: markers are due.
    pub fn is_prepare(self) -> bool {
        matches!(self, TxnState::PrepareCommit | TxnState::PrepareAbort)
    }
}

/// Whether `epoch` leaves no room for another bump: the coordinator keeps
/// `i16::MAX` free so it can always fence (Kafka `isEpochExhausted`).
pub fn is_epoch_exhausted(epoch: i16) -> bool {
    epoch >= i16::MAX - 1
}

/// The persistent part of a transactional id's metadata: what a transition targets and
/// what one `__transaction_state` value stores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TxnFields {
    pub producer_id: i64,
    /// Producer id before the last InitProducerId (KIP-360 retries after a rotation).
    pub previous_producer_id: i64,
    pub producer_epoch: i16,
    /// Epoch before the last InitProducerId bump, so a retried InitProducerId with the
    /// old epoch gets the same answer (KIP-360). Not stored in value v0, so -1 after a load.
    pub last_producer_epoch: i16,
    pub txn_timeout_ms: i32,
    pub state: TxnState,
    pub partitions: BTreeSet<(String, i32)>,
    /// ms, -1 if no transaction has started.
    pub txn_start_timestamp: i64,
    /// ms.
    pub txn_last_update_timestamp: i64,
}

impl TxnFields {
    /// The value to write for these fields.
    pub fn to_value(&self) -> TxnLogValue {
        TxnLogValue {
            producer_id: self.producer_id,
            previous_producer_id: self.previous_producer_id,
            next_producer_id: NO_PRODUCER_ID,
            producer_epoch: self.producer_epoch,
            transaction_timeout_ms: self.txn_timeout_ms,
            state: self.state,
            partitions: if self.state == TxnState::Empty {
                BTreeSet::new()
            } else {
                self.partitions.clone()
            },
            last_update_timestamp_ms: self.txn_last_update_timestamp,
            start_timestamp_ms: self.txn_start_timestamp,
            client_transaction_version: 0,
        }
    }

    /// The fields a loaded value stands for (Kafka `readTxnRecordValue`: the last epoch
    /// is unknown after a load; partitions of an `Empty` value are ignored).
    pub fn from_value(v: TxnLogValue) -> Self {
        TxnFields {
            producer_id: v.producer_id,
            previous_producer_id: v.previous_producer_id,
            producer_epoch: v.producer_epoch,
            last_producer_epoch: NO_PRODUCER_EPOCH,
            txn_timeout_ms: v.transaction_timeout_ms,
            state: v.state,
            partitions: if v.state == TxnState::Empty {
                BTreeSet::new()
            } else {
                v.partitions
            },
            txn_start_timestamp: v.start_timestamp_ms,
            txn_last_update_timestamp: v.last_update_timestamp_ms,
        }
    }
}

/// Which timer a transactional id is registered under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimerKind {
    /// Ongoing: abort when the transaction times out.
    Timeout,
    /// Idle: remove when `transactional.id.expiration.ms` has passed.
    Expiry,
    /// Prepare*: a failed completion write is retried.
    CompleteRetry,
}

/// One transactional id's metadata in memory.
#[derive(Debug, Clone)]
pub(crate) struct TxnMetadata {
    /// What is durable (or, for an epoch fence in flight, that plus the bumped epoch).
    pub fields: TxnFields,
    /// The transition being written: its target state and write token. While set, other
    /// requests for this id get CONCURRENT_TRANSACTIONS (Kafka `pendingState`).
    pub pending: Option<(TxnState, u64)>,
    /// A previous epoch fence was bumped in memory but its write failed: fence again
    /// without another bump (Kafka `hasFailedEpochFence`).
    pub has_failed_epoch_fence: bool,
    /// The timer the id is registered under: kind and due time (ms).
    pub timer: Option<(TimerKind, i64)>,
    /// The id has never been written (a fresh InitProducerId in flight).
    pub unwritten: bool,
}

impl TxnMetadata {
    pub fn new(fields: TxnFields) -> Self {
        TxnMetadata {
            fields,
            pending: None,
            has_failed_epoch_fence: false,
            timer: None,
            unwritten: false,
        }
    }
}
