//! The Moldau broker (DESIGN.md, "Layers and the way data flows").
//!
//! - [`network`]: the Kafka listener, framing, per-connection ordering.
//! - [`handlers`]: one module per Kafka API.
//! - [`broker`]: shared state and background jobs.
//! - [`replica_manager`], [`partition`]: hosted partitions over the storage [`moldau_storage::Log`].
//! - [`config`]: broker configuration under Kafka's property names.
//! - [`metrics`]: Prometheus counters and the `/metrics` text ([`Broker::metrics_text`]).

pub mod broker;
pub mod cluster;
pub mod cluster_metrics;
pub mod config;
pub mod coordinator;
pub mod handlers;
pub mod inter_broker;
pub mod isr_manager;
pub mod log_cleaner;
pub mod metrics;
pub mod network;
pub mod partition;
pub mod producer_ids;
pub mod quotas;
pub mod replay;
pub mod replica_fetcher;
pub mod replica_manager;
pub mod security;
pub mod shard_map;
pub mod txn_coordinator;
pub mod txn_markers;

pub use broker::{Broker, StartError};
pub use config::BrokerConfig;
pub use metrics::Metrics;
pub use network::Server;
