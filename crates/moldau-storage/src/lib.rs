//! `moldau-storage`: the partition log. Synchronous file I/O, no network, no async.
//!
//! A partition is a directory (`<log.dirs>/<topic>-<partition>`) of segments, each three
//! files named by the segment's base offset zero-padded to 20 digits, byte-compatible with
//! Apache Kafka's so operators and tools recognise them:
//!
//! - `00000000000000000000.log`: v2 record batches exactly as appended (offsets
//!   assigned); format and recovery rule documented at `Segment` in `segment.rs`;
//! - `.index`: sparse relative-offset → file-position entries (format and recovery rule
//!   documented at `OffsetIndex` in `index.rs`);
//! - `.timeindex`: timestamp → relative-offset entries (at `TimeIndex` in
//!   `time_index.rs`).
//!
//! Layout of the crate:
//!
//! - [`Log`] (`log.rs`, opening in `log_load.rs`, reads in `log_read.rs`): append as
//!   leader or follower, fetch, ListOffsets by timestamp, roll, retention, DeleteRecords,
//!   truncation, flush (group commit through [`FlushTarget`]), poisoning;
//! - `segment.rs`: one segment and its recovery; `records.rs`: reading batches back
//!   (chunked header scan, validating scan, record walk);
//! - the log cleaner for `cleanup.policy=compact` (`clean_plan.rs`, `cleaner.rs`, key
//!   map in `offset_map.rs`, swap in `clean_install.rs`): [`Log::clean_plan`] →
//!   [`CleanPlan::build`] → [`Log::install_clean`]; cleaned segments are written as
//!   `<base>.log.cleaned` (+ `.index.cleaned`, `.timeindex.cleaned`), committed by
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
mod log;
mod log_load;
mod log_read;
mod offset_map;
mod records;
mod segment;
mod time_index;

#[cfg(test)]
mod tests;

pub use clean_plan::CleanPlan;
pub use cleaner::{CleanOutcome, CleanStats, CleanedLog, Compress};
pub use config::{CleanupPolicy, InvalidCleanupPolicy, LogConfig};
pub use error::{Result, StorageError};
pub use flush::FlushTarget;
pub use log::{FetchDataInfo, Log, LogAppendInfo};
pub use records::Decompress;

/// File name of the clean-shutdown marker Kafka writes in each log dir (`log.dirs`
/// entry, not the partition dir) after all logs closed cleanly; its presence at startup
/// means `clean_shutdown = true` for [`Log::open`]. Kafka `LogLoader.CleanShutdownFile`.
pub const CLEAN_SHUTDOWN_FILE: &str = ".kafka_cleanshutdown";
