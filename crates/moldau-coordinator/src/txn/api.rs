//! The requests the transaction coordinator takes and the replies and effects it
//! returns, independent of wire versions (handlers map them to and from
//! `kafka-protocol` structs).

use super::metadata::TxnState;
use bytes::Bytes;
use moldau_protocol::error::ResponseError;

/// Identifies one [`TxnEffect::Write`]; the runtime hands it back to
/// [`TxnShard::write_done`](super::TxnShard::write_done).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WriteToken(pub u64);

/// What the runtime must do after a call.
#[derive(Debug, PartialEq)]
pub enum TxnEffect<R> {
    /// Send this reply now.
    Reply(R, TxnReply),
    /// Append this record to the shard's `__transaction_state` partition (acks=all,
    /// uncompressed, as Kafka `TransactionLog` enforces); when it is durable, or has
    /// failed, call [`TxnShard::write_done`](super::TxnShard::write_done) with `token`.
    /// Replies that depend on the write stay inside the shard until then.
    Write {
        /// Encoded `TransactionLogKey`.
        key: Bytes,
        /// Encoded `TransactionLogValue`; `None` = tombstone (an expired id).
        value: Option<Bytes>,
        /// Hand back to `write_done`.
        token: WriteToken,
    },
    /// Write a commit or abort marker (control batch) for this transaction to each
    /// partition through its leader (WriteTxnMarkers, KIP-98), then call
    /// [`TxnShard::markers_written`](super::TxnShard::markers_written) with the same
    /// transactional id, producer id and epoch. On failure retry later: markers are
    /// idempotent at the partitions. A partition that no longer exists may be skipped.
    WriteMarkers {
        /// Transactional id.
        transactional_id: String,
        /// Producer id the markers carry.
        producer_id: i64,
        /// Producer epoch the markers carry (the fenced epoch after a timeout or fence).
        producer_epoch: i16,
        /// This coordinator's epoch (the `__transaction_state` leader epoch), which
        /// partitions use to reject markers from a stale coordinator.
        coordinator_epoch: i32,
        /// `true` = COMMIT markers, `false` = ABORT markers.
        commit: bool,
        /// `(topic, partition)` in order.
        partitions: Vec<(String, i32)>,
    },
}

/// A reply to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnReply {
    /// InitProducerId: `(producer id, producer epoch)`.
    InitProducerId(Result<(i64, i16), ResponseError>),
    /// AddPartitionsToTxn (and AddOffsetsToTxn): the outcome for every partition of the
    /// request (Kafka's coordinator answers one error for all of them).
    AddPartitions(Result<(), ResponseError>),
    /// EndTxn.
    EndTxn(Result<(), ResponseError>),
}

/// A transactional InitProducerId (KIP-98; v3+ carries the current producer id and
/// epoch, KIP-360). Non-transactional InitProducerId does not reach the coordinator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitProducerId {
    /// `transactional.id`.
    pub transactional_id: String,
    /// `transaction.timeout.ms` of the producer, ms; must be in
    /// `1..=transaction.max.timeout.ms`.
    pub transaction_timeout_ms: i32,
    /// v3+: the producer id and epoch the producer holds, to bump instead of fence
    /// (KIP-360); `None` when the request carries -1/-1.
    pub expected: Option<(i64, i16)>,
}

/// One transactional id as DescribeTransactions reports it (KIP-664).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnDescription {
    /// Transactional id.
    pub transactional_id: String,
    /// The transaction, or TRANSACTIONAL_ID_NOT_FOUND / INVALID_REQUEST.
    pub result: Result<DescribedTxn, ResponseError>,
}

/// A described transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribedTxn {
    /// State; report [`TxnState::name`].
    pub state: TxnState,
    /// Transaction timeout, ms.
    pub transaction_timeout_ms: i32,
    /// When the current (or last) transaction started, ms; -1 if none.
    pub transaction_start_time_ms: i64,
    /// Producer id.
    pub producer_id: i64,
    /// Producer epoch.
    pub producer_epoch: i16,
    /// Partitions in the transaction, grouped by topic, both in order.
    pub topics: Vec<(String, Vec<i32>)>,
}

/// One transaction as ListTransactions reports it (KIP-664).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnListing {
    /// Transactional id.
    pub transactional_id: String,
    /// Producer id.
    pub producer_id: i64,
    /// State; report [`TxnState::name`].
    pub state: TxnState,
}
