//! Quick elections after the active controller's process dies.
//!
//! A Raft follower notices a dead leader only when its election timer runs out, and
//! its first vote request is refused by the other voters while their leader lease
//! (openraft: `election_timeout_max` since they last heard the leader) runs, so an
//! election after a crash takes one to two timeouts longer than the lease. Here a
//! voter watches the connections the leader replicates over: when one closes and the
//! leader's controller listener then refuses a connection (its process is gone, not
//! merely slow or cut off), the lowest-id surviving voter asks for an election just
//! after the other voters' leases ran out, which they grant at once. Only one voter
//! does so, so the votes are not split; if it is gone too, the election timers still
//! work as before. A leader that is cut off or frozen never refuses a connection, so
//! this changes nothing there.

use crate::config::Voter;
use moldau_metadata::quorum::Quorum;
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Margin past the other voters' lease before asking for their votes.
const LEASE_MARGIN: Duration = Duration::from_millis(50);

/// One voter's watch over the leader it replicates from.
pub struct LeaderWatch {
    node_id: i32,
    voters: Vec<Voter>,
    /// The voters' leader lease: openraft's `election_timeout_max`.
    lease: Duration,
    /// When an AppendEntries from the leader last arrived here.
    last_append: Mutex<Option<Instant>>,
}

impl LeaderWatch {
    /// A watch for voter `node_id` of `voters`, whose quorum's leader lease is `lease`.
    pub fn new(node_id: i32, voters: Vec<Voter>, lease: Duration) -> Self {
        Self {
            node_id,
            voters,
            lease,
            last_append: Mutex::new(None),
        }
    }

    /// An AppendEntries (replication or heartbeat) arrived from the leader.
    pub fn heard_from_leader(&self) {
        *self.last_append.lock() = Some(Instant::now());
    }

    /// A connection over which `leader` replicated to this node closed: in the
    /// background, probe it and, if its process is gone and this node is the
    /// lowest-id other voter, start an election once the lease has run out.
    pub fn connection_lost(self: &Arc<Self>, leader: i32, quorum: Arc<Quorum>) {
        let Some(dead) = self.voters.iter().find(|v| v.id == leader) else {
            return;
        };
        let first_other = self
            .voters
            .iter()
            .map(|v| v.id)
            .filter(|id| *id != leader)
            .min();
        if first_other != Some(self.node_id) {
            return;
        }
        let addr = dead.addr();
        let this = self.clone();
        tokio::spawn(async move {
            let leads = |quorum: &Quorum| {
                let m = quorum.raft.metrics().borrow().clone();
                m.current_leader == Some(moldau_metadata::quorum::node_id(leader))
            };
            if !leads(&quorum) {
                return;
            }
            if !super::rpc::refuses_connections(&addr).await {
                return;
            }
            let since = (*this.last_append.lock()).unwrap_or_else(Instant::now);
            tokio::time::sleep_until(since + this.lease + LEASE_MARGIN).await;
            let m = quorum.raft.metrics().borrow().clone();
            let no_leader = m.current_leader.is_none()
                || m.current_leader == Some(moldau_metadata::quorum::node_id(leader));
            if no_leader && *this.last_append.lock() <= Some(since) {
                tracing::info!(
                    leader,
                    "the active controller's process is gone: asking for an election"
                );
                if let Err(e) = quorum.raft.trigger().elect().await {
                    tracing::warn!(error = %e, "cannot start an election");
                }
            }
        });
    }
}
