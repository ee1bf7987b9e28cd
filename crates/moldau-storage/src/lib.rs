//! `moldau-storage`: the partition log. Synchronous file I/O, no network, no async.
//!
//! A partition is a directory (`<log.dirs>/<topic>-<partition>`) of segments, each three
//! or four files named by the segment's base offset zero-padded to 20 digits, plus
//! producer snapshots and the leader-epoch cache, all byte-compatible with Apache
//! Kafka's so operators and tools recognise them:
//!
//! - `00000000000000000000.log`: v2 record batches exactly as appended (offsets
//!   assigned); format and recovery rule documented at `Segment` in `segment.rs`;
//! - `.index`: sparse relative-offset → file-position entries (format and recovery rule
//!   documented at `OffsetIndex` in `index.rs`);
//! - `.timeindex`: timestamp → relative-offset entries (at `TimeIndex` in
//!   `time_index.rs`);
//! - `.txnindex`: the aborted transactions whose abort marker is in the segment, only
//!   once there is one (at `TxnIndex` in `txn_index.rs`);
//! - `<offset>.snapshot`: the producer state as of that offset, written at each roll and
//!   on close (format and recovery rule in `producer_snapshot.rs`);
//! - `leader-epoch-checkpoint`: the start offset of each leader epoch (KIP-101,
//!   KIP-279; format and recovery rule at [`LeaderEpochCache`] in `leader_epoch.rs`).
//!
//! Layout of the crate:
//!
//! - [`Log`] (`log.rs`, opening in `log_load.rs`, reads in `log_read.rs`): append as
//!   leader or follower, fetch, ListOffsets by timestamp, roll, retention, DeleteRecords,
//!   truncation, flush (group commit through [`FlushTarget`]), poisoning;
//! - idempotent and transactional producers (KIP-98): the per-partition producer state
//!   in `producer_state.rs` ([`AppendOrigin`], [`ProducerStateEntry`]), its snapshots in
//!   `producer_snapshot.rs`, the aborted-transaction index in `txn_index.rs`
//!   ([`AbortedTxn`]), and the `Log` side (LSO, aborted transactions, DescribeProducers,
//!   expiration, replay) in `log_producers.rs`;
//! - the leader-epoch cache ([`LeaderEpochCache`], `leader_epoch.rs`): kept by the
//!   appends, truncation, retention and DeleteRecords of [`Log`], read by
//!   OffsetForLeaderEpoch through [`Log::end_offset_for_epoch`];
//! - `segment.rs`: one segment and its recovery; `records.rs`: reading batches back
//!   (chunked header scan, validating scan, record walk);
//! - the log cleaner for `cleanup.policy=compact` (`clean_plan.rs`, `cleaner.rs`, key
//!   map in `offset_map.rs`, swap in `clean_install.rs`): [`Log::clean_plan`] →
//!   [`CleanPlan::build`] → [`Log::install_clean`]; only below the first open
//!   transaction, dropping aborted transactions' records; cleaned segments are written as
//!   `<base>.log.cleaned` (+ `.index.cleaned`, `.timeindex.cleaned`, `.txnindex.cleaned`), committed by
//!   renaming them to `*.swap`, and put in place under the final names; `Log::open`
//!   completes committed swaps after a crash and deletes uncommitted `*.cleaned` files
//!   (rule at `PendingSwap` in `log_load.rs`);
//! - [`checkpoint`]: Kafka's offset checkpoint text files;
//! - [`LogConfig`] (with [`CleanupPolicy`]), [`StorageError`].
//!
//! The crate knows nothing of Kafka requests: callers validate produced batches
//! (`moldau_protocol::batch::validate`) before appending, and map [`StorageError`] to
//! Kafka error codes with [`StorageError::response_error`].

#![warn(missing_docs)]

pub mod checkpoint;
mod clean_install;
mod clean_plan;
mod cleaner;
mod config;
mod error;
mod flush;
mod index;
mod leader_epoch;
mod log;
mod log_load;
mod log_producers;
mod log_read;
mod offset_map;
mod producer_snapshot;
mod producer_state;
mod records;
mod segment;
mod time_index;
mod txn_index;

#[cfg(test)]
mod tests;

pub use clean_plan::CleanPlan;
pub use cleaner::{CleanOutcome, CleanStats, CleanedLog, Compress};
pub use config::{CleanupPolicy, InvalidCleanupPolicy, LogConfig};
pub use error::{Result, StorageError};
pub use flush::FlushTarget;
pub use leader_epoch::{EpochEntry, LeaderEpochCache};
pub use log::{create_dir_durable, write_file_durable, FetchDataInfo, Log, LogAppendInfo};
pub use producer_state::{
    AppendOrigin, BatchMetadata, ProducerSnapshotView, ProducerStateEntry, NUM_BATCHES_TO_RETAIN,
};
pub use records::Decompress;
pub use txn_index::AbortedTxn;

/// File name of the clean-shutdown marker Kafka writes in each log dir (`log.dirs`
/// entry, not the partition dir) after all logs closed cleanly; its presence at startup
/// means `clean_shutdown = true` for [`Log::open`]. Kafka `LogLoader.CleanShutdownFile`.
pub const CLEAN_SHUTDOWN_FILE: &str = ".kafka_cleanshutdown";
