//! The cluster runtime around the metadata quorum (DESIGN.md "Cluster").
//!
//! - [`rpc`]: the controller listener's framed JSON protocol and its client.
//! - [`raft_net`]: openraft's network over it.
//! - [`listener`]: the controller listener's server side.
//! - [`controller`]: the active controller, serialising every metadata change.
//! - [`leader_watch`]: quick elections when the active controller's process dies.
//! - [`channel`]: how any node reaches the active controller.
//! - [`lifecycle`]: broker registration, heartbeats and controlled shutdown.
//! - [`meta_properties`]: the node's identity on disk.

pub mod channel;
pub mod controller;
pub mod leader_watch;
pub mod lifecycle;
pub mod listener;
pub mod meta_properties;
pub mod raft_net;
pub mod rpc;
