//! Kafka's transaction coordinator (KIP-98) as a state machine that performs no I/O.
//!
//! # Model
//! A transactional id lives on the `__transaction_state` partition its id hashes to
//! ([`crate::partition_for`]); the broker leading that partition runs one [`TxnShard`]
//! for it. The shard holds each id's metadata (Kafka `TransactionMetadata`): producer id
//! and epoch, timeout, state ([`TxnState`]), the partitions of the running transaction,
//! and start / last-update times.
//!
//! ```text
//!  InitProducerId      AddPartitionsToTxn       EndTxn              markers written
//! ─────────────▶ Empty ─────────────────▶ Ongoing ──────▶ PrepareCommit ──────────▶ CompleteCommit
//!                  ▲                         │    └─────▶ PrepareAbort  ──────────▶ CompleteAbort
//!                  └── InitProducerId ───────┼─ (from Empty / Complete*: epoch bump)
//!                                            └─ timeout or fencing InitProducerId: epoch bump + PrepareAbort
//! ```
//!
//! Every transition is *prepared*, written to the partition ([`TxnEffect::Write`]) and
//! applied only when the runtime reports the write durable ([`TxnShard::write_done`]),
//! which is also when the waiting request is answered (Kafka's `pendingState` and
//! `completeTransitionTo`). While a transition is pending, other requests for that id
//! get CONCURRENT_TRANSACTIONS. Once PrepareCommit/PrepareAbort is durable the shard asks
//! for markers ([`TxnEffect::WriteMarkers`]); when the runtime has written them to every
//! partition it calls [`TxnShard::markers_written`] and the transaction completes.
//!
//! The runtime: replays the partition into a new shard ([`TxnShard::replay`],
//! [`TxnShard::finish_load`], which re-issues markers for transactions left half
//! finished), feeds it requests with `now` in ms, carries out the effects, and calls
//! [`TxnShard::tick`] at [`TxnShard::next_deadline`] to abort timed-out transactions and
//! expire idle transactional ids.
//!
//! Sources: KIP-98 (transactions), KIP-360 (InitProducerId with the current producer id
//! and epoch, to bump instead of being fenced), KIP-664 (DescribeTransactions,
//! ListTransactions), KIP-994 (ListTransactions duration filter). Not implemented:
//! `transaction.version` 2 (KIP-890: an epoch bump on every EndTxn, and verification of
//! partitions on produce), which Kafka enables only by feature flag.
//!
//! # Layout
//! - [`records`]: the keys and values of `__transaction_state`, in Kafka's formats.
//! - [`metadata`]: [`TxnState`] and one id's metadata.
//! - [`api`]: replies, effects and request types.
//! - [`shard`]: [`TxnShard`] and the protocol; `load.rs` adds loading, `admin.rs`
//!   DescribeTransactions and ListTransactions.

mod admin;
pub mod api;
mod load;
pub mod metadata;
pub mod records;
pub mod shard;

pub use api::{
    DescribedTxn, InitProducerId, TxnDescription, TxnEffect, TxnListing, TxnReply, WriteToken,
};
pub use metadata::TxnState;
pub use records::TxnRecordError;
pub use shard::TxnShard;

/// Name of the internal topic that holds transaction state.
pub const TRANSACTION_STATE_TOPIC: &str = "__transaction_state";

/// Transaction coordinator settings, under Kafka's broker property names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnConfig {
    /// `transaction.max.timeout.ms` (900000, 15 minutes): the longest
    /// `transaction.timeout.ms` a producer may ask for.
    pub transaction_max_timeout_ms: i32,
    /// `transactional.id.expiration.ms` (604800000, 7 days): how long an idle
    /// transactional id (no transaction running) lives without an update.
    pub transactional_id_expiration_ms: i64,
    /// `transaction.abort.timed.out.transaction.cleanup.interval.ms` (10000): how often
    /// timed-out transactions are looked for and aborted, ms.
    pub abort_timed_out_transaction_cleanup_interval_ms: i64,
    /// `transaction.remove.expired.transaction.cleanup.interval.ms` (3600000, 1 hour):
    /// how often expired transactional ids are looked for and removed, ms.
    pub remove_expired_transactional_ids_interval_ms: i64,
}

impl Default for TxnConfig {
    fn default() -> Self {
        TxnConfig {
            transaction_max_timeout_ms: 900_000,
            transactional_id_expiration_ms: 7 * 24 * 60 * 60 * 1000,
            abort_timed_out_transaction_cleanup_interval_ms: 10_000,
            remove_expired_transactional_ids_interval_ms: 3_600_000,
        }
    }
}

#[cfg(test)]
mod tests;
