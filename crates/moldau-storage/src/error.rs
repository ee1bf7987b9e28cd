//! The storage layer's error type and its mapping to Kafka error codes.

use std::io;
use std::path::PathBuf;

use moldau_protocol::batch::BatchError;
use moldau_protocol::error::ResponseError;
use thiserror::Error;

/// Everything that can go wrong in `moldau-storage`.
///
/// Fatal errors ([`StorageError::is_fatal`]) mean the log can no longer be trusted for
/// writes: an I/O failure on the write path poisons the [`crate::Log`], which then
/// answers [`StorageError::Poisoned`] until it is reopened (and recovered). The others
/// describe a bad request or bad bytes and leave the log usable.
#[derive(Debug, Error)]
pub enum StorageError {
    /// A file-system call failed. `context` names the operation and the path.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, e.g. `"write /data/orders-0/00000000000000000000.log"`.
        context: String,
        /// The operating-system error.
        #[source]
        source: io::Error,
    },
    /// A fetch, `DeleteRecords` or truncation named an offset outside
    /// `[log_start_offset, log_end_offset]` (both inclusive here: fetching at the log end
    /// offset is legal and returns nothing). Kafka: `OFFSET_OUT_OF_RANGE` (1).
    #[error("offset {offset} is out of range [{log_start_offset}, {log_end_offset}]")]
    OffsetOutOfRange {
        /// The requested offset.
        offset: i64,
        /// First offset still readable (inclusive).
        log_start_offset: i64,
        /// Next offset to be assigned (exclusive end of the data).
        log_end_offset: i64,
    },
    /// Appended bytes are not a well-formed sequence of v2 record batches.
    /// Kafka: `CORRUPT_MESSAGE` (2).
    #[error("invalid record batch: {0}")]
    InvalidBatch(#[from] BatchError),
    /// One append is larger than `segment.bytes` and could never fit in a segment.
    /// Kafka: `RECORD_LIST_TOO_LARGE` (18), `RecordBatchTooLargeException` in `UnifiedLog.append`.
    #[error("record set of {size} bytes is larger than segment.bytes {segment_bytes}")]
    RecordSetTooLarge {
        /// Bytes of the rejected append.
        size: u64,
        /// The configured `segment.bytes`.
        segment_bytes: u64,
    },
    /// A follower append whose first offset is below the log end offset, or whose
    /// batches go backwards (Kafka `UnexpectedAppendOffsetException`; the replica fetcher
    /// truncates and retries).
    #[error("append at offset {first_offset} but the log end offset is {log_end_offset}")]
    UnexpectedAppendOffset {
        /// Base offset of the offending batch.
        first_offset: i64,
        /// The offset the log expected at least.
        log_end_offset: i64,
    },
    /// A previous write or fsync failed; the log refuses further writes and flushes
    /// because the page cache may no longer match the disk (fjall `Error::Poisoned`, after
    /// Rebello et al., "Can Applications Recover from fsync Failures?", ATC '20). Reopen
    /// the log (which runs recovery) to clear it. Kafka: `KAFKA_STORAGE_ERROR` (56).
    #[error("log is poisoned by an earlier write or fsync failure; reopen it to recover")]
    Poisoned,
    /// A segment file holds bytes that are not valid batches where valid data was
    /// expected (outside recovery, which truncates instead). Kafka: `CORRUPT_MESSAGE` (2).
    #[error("corrupt segment {path} at byte {position}: {reason}")]
    CorruptSegment {
        /// The `.log` file.
        path: PathBuf,
        /// Byte position in the file.
        position: u64,
        /// What was wrong.
        reason: String,
    },
    /// A producer's batch or marker carries an epoch below the producer's current epoch
    /// on this partition: a zombie producer instance (KIP-98; epochs bumped by KIP-360).
    /// Kafka: `INVALID_PRODUCER_EPOCH` (47), `ProducerAppendInfo.checkProducerEpoch`.
    #[error(
        "producer {producer_id} epoch {epoch} is older than the current epoch {current_epoch}"
    )]
    InvalidProducerEpoch {
        /// The producer id of the batch.
        producer_id: i64,
        /// The batch's epoch.
        epoch: i16,
        /// The epoch the partition knows.
        current_epoch: i16,
    },
    /// An idempotent batch's `baseSequence` does not continue the producer's last
    /// sequence (a gap, or a retry of a batch older than the last five), or a new epoch
    /// does not start at 0. Kafka: `OUT_OF_ORDER_SEQUENCE_NUMBER` (45),
    /// `ProducerAppendInfo.checkSequence`.
    #[error("producer {producer_id} epoch {epoch}: sequence {sequence} out of order, expected {expected}")]
    OutOfOrderSequence {
        /// The producer id of the batch.
        producer_id: i64,
        /// The batch's epoch.
        epoch: i16,
        /// The batch's `baseSequence`.
        sequence: i32,
        /// The sequence the partition expected.
        expected: i32,
    },
    /// A non-transactional batch from a producer whose transaction is open on this
    /// partition. Kafka: `INVALID_TXN_STATE` (48), `ProducerAppendInfo.appendDataBatch`.
    #[error("producer {producer_id} wrote a non-transactional batch at offset {offset} inside an open transaction")]
    InvalidTxnState {
        /// The producer id of the batch.
        producer_id: i64,
        /// The offset the batch would have had.
        offset: i64,
    },
    /// A transaction marker from a transaction coordinator older than the one that
    /// wrote the producer's last marker. Kafka: `TRANSACTION_COORDINATOR_FENCED` (52),
    /// `ProducerAppendInfo.checkCoordinatorEpoch`.
    #[error("marker for producer {producer_id} has coordinator epoch {coordinator_epoch}, below {current_coordinator_epoch}")]
    TransactionCoordinatorFenced {
        /// The producer id of the marker.
        producer_id: i64,
        /// The marker's coordinator epoch.
        coordinator_epoch: i32,
        /// The coordinator epoch of the producer's last marker.
        current_coordinator_epoch: i32,
    },
    /// A client (origin [`crate::AppendOrigin::Client`]) tried to append a control
    /// batch; only the broker writes transaction markers. Kafka: `INVALID_RECORD` (87),
    /// `LogValidator` ("Clients are not allowed to write control records").
    #[error("control batch at offset {offset} not allowed from a client")]
    ControlBatchFromClient {
        /// The offset the batch would have had.
        offset: i64,
    },
    /// An offset checkpoint file is malformed (see [`crate::checkpoint`]).
    #[error("corrupt checkpoint {path} line {line}: {reason}")]
    CorruptCheckpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// 1-based line number of the problem.
        line: usize,
        /// What was wrong.
        reason: String,
    },
}

/// `Result` with [`StorageError`].
pub type Result<T> = std::result::Result<T, StorageError>;

impl StorageError {
    /// Builds [`StorageError::Io`] with a context string.
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        StorageError::Io {
            context: context.into(),
            source,
        }
    }

    /// True for failures of the disk or of the log as a whole (I/O, poisoning, corrupt
    /// stored data): the partition should be taken offline, as Kafka does with a log dir
    /// after a `KafkaStorageException`. False for errors caused by the request.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            StorageError::Io { .. }
                | StorageError::Poisoned
                | StorageError::CorruptSegment { .. }
                | StorageError::CorruptCheckpoint { .. }
        )
    }

    /// The Kafka error code a handler should answer with (protocol guide, "Error Codes").
    pub fn response_error(&self) -> ResponseError {
        match self {
            StorageError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
            StorageError::InvalidBatch(_) | StorageError::CorruptSegment { .. } => {
                ResponseError::CorruptMessage
            }
            StorageError::RecordSetTooLarge { .. } => ResponseError::RecordListTooLarge,
            StorageError::UnexpectedAppendOffset { .. } => ResponseError::UnknownServerError,
            StorageError::InvalidProducerEpoch { .. } => ResponseError::InvalidProducerEpoch,
            StorageError::OutOfOrderSequence { .. } => ResponseError::OutOfOrderSequenceNumber,
            StorageError::InvalidTxnState { .. } => ResponseError::InvalidTxnState,
            StorageError::TransactionCoordinatorFenced { .. } => {
                ResponseError::TransactionCoordinatorFenced
            }
            StorageError::ControlBatchFromClient { .. } => ResponseError::InvalidRecord,
            StorageError::Io { .. }
            | StorageError::Poisoned
            | StorageError::CorruptCheckpoint { .. } => ResponseError::KafkaStorageError,
        }
    }
}

/// Adds a context string to an `io::Result`.
pub(crate) trait IoContext<T> {
    /// Maps the error to [`StorageError::Io`] with the context produced by `f`.
    fn ctx<F: FnOnce() -> String>(self, f: F) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx<F: FnOnce() -> String>(self, f: F) -> Result<T> {
        self.map_err(|e| StorageError::io(f(), e))
    }
}
