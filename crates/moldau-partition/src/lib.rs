//! The replica state of one partition on one broker (Kafka's `Partition`, KIP-101,
//! KIP-279, KIP-497, KIP-841): whether this broker leads it, follows a leader or is
//! offline; as leader, every follower's position and when it last caught up, the ISR
//! (committed, and the change in flight to the controller), and the high watermark.
//!
//! It is an I/O-free state machine: each event (a follower fetch, a local fsync, the
//! clock, an answer from the controller, a metadata change) returns [`Action`]s the
//! broker carries out (publish a new high watermark, send an ISR change). Time is
//! passed in (ms). The partition log is not here; the caller passes the offsets it
//! needs.
//!
//! # Rules
//! - **Positions count only what is durable.** The leader's own position is its
//!   durable log end offset; a follower's is the offset it fetches from, and a Moldau
//!   follower only fetches from what it has fsynced. (Kafka counts page-cache copies;
//!   the caller may pass the log end offset instead to get Kafka's rule.)
//! - **High watermark** = the lowest position among the *maximal* ISR: the committed
//!   ISR plus replicas an in-flight expansion adds (KIP-497), so the high watermark
//!   never counts on a replica the controller may still refuse, and a shrink counts the
//!   leaving replica until it is committed. It never moves back while leading.
//! - **ISR expansion**: a follower outside the ISR whose position reached the high
//!   watermark and the start of the current leader epoch.
//! - **ISR shrink**: a follower in the ISR that has not caught up with the leader's log
//!   end offset for `replica.lag.time.max.ms` (Kafka's `lastCaughtUpTimeMs` rule).
//! - One ISR change in flight at a time, as Kafka's `AlterPartitionManager`.

use std::collections::BTreeMap;

/// What the broker must do after an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// The high watermark advanced to this offset (exclusive): wake produce waiters
    /// and long-polling consumers.
    HighWatermark(i64),
    /// Propose this ISR to the controller (AlterPartition).
    AlterIsr(IsrProposal),
}

/// An ISR change for the controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsrProposal {
    /// The leader epoch the proposal is made in.
    pub leader_epoch: i32,
    /// The partition epoch it is based on.
    pub partition_epoch: i32,
    /// The proposed ISR (leader first, then the others in replica order).
    pub new_isr: Vec<i32>,
}

/// What the leader knows of one follower.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerState {
    /// The follower's durable log end offset, from its last fetch (-1 until it fetched
    /// in this leader epoch).
    pub position: i64,
    /// When it last caught up with the leader's log end offset (ms).
    pub last_caught_up_ms: i64,
    last_fetch_ms: i64,
    last_fetch_leader_leo: i64,
}

/// The leader's view of the partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderState {
    /// Leader epoch.
    pub leader_epoch: i32,
    /// Partition epoch of the committed state.
    pub partition_epoch: i32,
    /// The log end offset when this epoch began.
    pub epoch_start_offset: i64,
    /// Replicas in assignment order.
    pub replicas: Vec<i32>,
    /// The committed ISR.
    pub isr: Vec<i32>,
    /// The ISR change sent to the controller and not yet answered.
    pub pending: Option<IsrProposal>,
    /// No new ISR change is proposed before this time (ms): a refused change is not
    /// retried at once (Kafka backs off the same way).
    pub propose_after_ms: i64,
    /// Followers by broker id.
    pub followers: BTreeMap<i32, FollowerState>,
    /// This broker's own durable log end offset.
    pub local_position: i64,
}

/// The role this broker plays for the partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// This broker leads.
    Leader(LeaderState),
    /// Another broker leads (`leader` -1: no leader, the partition is offline).
    Follower {
        /// Leader broker id, -1 if none.
        leader: i32,
        /// Leader epoch.
        leader_epoch: i32,
    },
}

/// One partition's replica state on this broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaState {
    local: i32,
    role: Role,
    high_watermark: i64,
}

/// The metadata's view of the partition, as the controller committed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionAssignment {
    /// Leader broker id, -1 if none.
    pub leader: i32,
    /// Leader epoch.
    pub leader_epoch: i32,
    /// Partition epoch.
    pub partition_epoch: i32,
    /// Replicas in assignment order.
    pub replicas: Vec<i32>,
    /// ISR.
    pub isr: Vec<i32>,
}

impl ReplicaState {
    /// A replica on broker `local` with no leader known yet, starting from the high
    /// watermark in its checkpoint (clamped by the caller to the log end offset).
    pub fn new(local: i32, high_watermark: i64) -> Self {
        Self {
            local,
            role: Role::Follower {
                leader: -1,
                leader_epoch: -1,
            },
            high_watermark: high_watermark.max(0),
        }
    }

    /// The broker this replica lives on.
    pub fn local(&self) -> i32 {
        self.local
    }

    /// The role.
    pub fn role(&self) -> &Role {
        &self.role
    }

    /// The high watermark (exclusive).
    pub fn high_watermark(&self) -> i64 {
        self.high_watermark
    }

    /// While leading: the log end offset when this leader epoch began (KIP-207 answers
    /// from it). `None` as a follower.
    pub fn epoch_start_offset(&self) -> Option<i64> {
        match &self.role {
            Role::Leader(l) => Some(l.epoch_start_offset),
            Role::Follower { .. } => None,
        }
    }

    /// The current leader epoch (-1 if none known).
    pub fn leader_epoch(&self) -> i32 {
        match &self.role {
            Role::Leader(l) => l.leader_epoch,
            Role::Follower { leader_epoch, .. } => *leader_epoch,
        }
    }

    /// The leader broker id (-1 if none).
    pub fn leader(&self) -> i32 {
        match &self.role {
            Role::Leader(_) => self.local,
            Role::Follower { leader, .. } => *leader,
        }
    }

    /// Whether this broker leads.
    pub fn is_leader(&self) -> bool {
        matches!(self.role, Role::Leader(_))
    }

    /// The committed ISR if leading, else empty.
    pub fn isr(&self) -> &[i32] {
        match &self.role {
            Role::Leader(l) => &l.isr,
            Role::Follower { .. } => &[],
        }
    }

    /// Applies the committed metadata of the partition. `log_end_offset` and
    /// `durable_offset` are the local log's (durable: fsynced). Becoming leader (or a
    /// new leader epoch) resets every follower (position unknown, caught up "now", as
    /// Kafka does so no ISR member is dropped at once); the same leader epoch with a
    /// newer partition epoch only updates the ISR. Returns actions (the high watermark
    /// may advance when the ISR shrank).
    pub fn apply_metadata(
        &mut self,
        assignment: &PartitionAssignment,
        log_end_offset: i64,
        durable_offset: i64,
        now_ms: i64,
    ) -> Vec<Action> {
        // Metadata from before a leadership change this replica already saw (an image
        // applied late) must not take the role back.
        if assignment.leader_epoch < self.leader_epoch() {
            return Vec::new();
        }
        if assignment.leader != self.local {
            self.role = Role::Follower {
                leader: assignment.leader,
                leader_epoch: assignment.leader_epoch,
            };
            self.high_watermark = self.high_watermark.min(log_end_offset);
            return Vec::new();
        }
        match &mut self.role {
            Role::Leader(l) if l.leader_epoch == assignment.leader_epoch => {
                if assignment.partition_epoch > l.partition_epoch {
                    l.partition_epoch = assignment.partition_epoch;
                    l.isr = assignment.isr.clone();
                    l.replicas = assignment.replicas.clone();
                    l.pending = None;
                }
            }
            _ => {
                let followers = assignment
                    .replicas
                    .iter()
                    .filter(|r| **r != self.local)
                    .map(|r| {
                        (
                            *r,
                            FollowerState {
                                position: -1,
                                last_caught_up_ms: now_ms,
                                last_fetch_ms: now_ms,
                                last_fetch_leader_leo: log_end_offset,
                            },
                        )
                    })
                    .collect();
                self.high_watermark = self.high_watermark.min(log_end_offset);
                self.role = Role::Leader(LeaderState {
                    leader_epoch: assignment.leader_epoch,
                    partition_epoch: assignment.partition_epoch,
                    epoch_start_offset: log_end_offset,
                    replicas: assignment.replicas.clone(),
                    isr: assignment.isr.clone(),
                    pending: None,
                    propose_after_ms: 0,
                    followers,
                    local_position: durable_offset,
                });
            }
        }
        self.advance_high_watermark()
    }

    /// The leader's own durable log end offset moved to `offset` (after a group
    /// commit). Returns actions.
    pub fn local_durable(&mut self, offset: i64) -> Vec<Action> {
        if let Role::Leader(l) = &mut self.role {
            l.local_position = l.local_position.max(offset);
        }
        self.advance_high_watermark()
    }

    /// A follower fetched from `position` (its durable log end offset), which the caller
    /// has checked against the leader-epoch cache, while the leader's log end offset was
    /// `leader_leo`. Updates the follower (Kafka `updateFollowerFetchState`), and may
    /// advance the high watermark or propose an ISR expansion. Ignored when not
    /// leading or for a broker that is not a replica.
    pub fn follower_fetch(
        &mut self,
        replica: i32,
        position: i64,
        leader_leo: i64,
        now_ms: i64,
    ) -> Vec<Action> {
        let Role::Leader(l) = &mut self.role else {
            return Vec::new();
        };
        let Some(f) = l.followers.get_mut(&replica) else {
            return Vec::new();
        };
        if position >= leader_leo {
            f.last_caught_up_ms = f.last_caught_up_ms.max(now_ms);
        } else if position >= f.last_fetch_leader_leo {
            f.last_caught_up_ms = f.last_caught_up_ms.max(f.last_fetch_ms);
        }
        f.position = position;
        f.last_fetch_ms = now_ms;
        f.last_fetch_leader_leo = leader_leo;
        let mut actions = self.advance_high_watermark();
        actions.extend(self.maybe_expand(replica, now_ms));
        actions
    }

    /// The periodic ISR check: proposes to drop followers that have not caught up
    /// within `lag_max_ms` (`replica.lag.time.max.ms`) while the leader's log end offset
    /// is `leader_leo`.
    pub fn tick(&mut self, leader_leo: i64, lag_max_ms: i64, now_ms: i64) -> Vec<Action> {
        let Role::Leader(l) = &self.role else {
            return Vec::new();
        };
        if l.pending.is_some() || now_ms < l.propose_after_ms {
            return Vec::new();
        }
        let out_of_sync: Vec<i32> = l
            .isr
            .iter()
            .copied()
            .filter(|r| *r != self.local)
            .filter(|r| {
                l.followers.get(r).is_some_and(|f| {
                    f.position != leader_leo && now_ms - f.last_caught_up_ms > lag_max_ms
                })
            })
            .collect();
        if out_of_sync.is_empty() {
            return Vec::new();
        }
        let new_isr: Vec<i32> = l
            .isr
            .iter()
            .copied()
            .filter(|r| !out_of_sync.contains(r))
            .collect();
        self.propose(new_isr)
    }

    /// The controller answered ISR change `proposal`: `Some((isr, partition_epoch))` if it
    /// was committed, `None` if it was refused or not sent (the metadata will carry the
    /// truth; no change is proposed for `retry_backoff_ms` after `now_ms`). An answer to
    /// an older proposal than the one in flight leaves the one in flight alone: its
    /// replicas still count for the high watermark until it is answered.
    pub fn isr_change_done(
        &mut self,
        proposal: &IsrProposal,
        committed: Option<(Vec<i32>, i32)>,
        now_ms: i64,
        retry_backoff_ms: i64,
    ) -> Vec<Action> {
        let Role::Leader(l) = &mut self.role else {
            return Vec::new();
        };
        if l.pending.as_ref() == Some(proposal) {
            l.pending = None;
            if committed.is_none() {
                l.propose_after_ms = now_ms + retry_backoff_ms;
            }
        }
        if let Some((isr, partition_epoch)) = committed {
            if partition_epoch > l.partition_epoch {
                l.isr = isr;
                l.partition_epoch = partition_epoch;
            }
        }
        self.advance_high_watermark()
    }

    /// This broker lost contact with the controller for longer than its session: it
    /// stops leading (it has surely been fenced and replaced) until the metadata says
    /// otherwise again.
    pub fn step_down(&mut self) {
        if self.is_leader() {
            self.role = Role::Follower {
                leader: -1,
                leader_epoch: self.leader_epoch(),
            };
        }
    }

    /// A follower's view: the leader reported `leader_high_watermark`; the local
    /// high watermark is that, capped by the local log end offset.
    pub fn follower_high_watermark(&mut self, leader_high_watermark: i64, log_end_offset: i64) {
        if !self.is_leader() {
            self.high_watermark = leader_high_watermark.min(log_end_offset).max(0);
        }
    }

    /// The local log was truncated to `log_end_offset` (a follower removing a
    /// divergent tail): the high watermark cannot exceed it.
    pub fn truncated(&mut self, log_end_offset: i64) {
        self.high_watermark = self.high_watermark.min(log_end_offset);
    }

    /// Replicas whose positions count for the high watermark: the committed ISR plus
    /// those an in-flight expansion adds.
    pub fn maximal_isr(&self) -> Vec<i32> {
        match &self.role {
            Role::Leader(l) => {
                let mut isr = l.isr.clone();
                if let Some(p) = &l.pending {
                    for r in &p.new_isr {
                        if !isr.contains(r) {
                            isr.push(*r);
                        }
                    }
                }
                isr
            }
            Role::Follower { .. } => Vec::new(),
        }
    }

    fn advance_high_watermark(&mut self) -> Vec<Action> {
        let isr = self.maximal_isr();
        let Role::Leader(l) = &self.role else {
            return Vec::new();
        };
        let mut low = l.local_position;
        for r in isr.iter().filter(|r| **r != self.local) {
            // A replica that has not fetched in this epoch holds the mark where it is.
            low = low.min(l.followers.get(r).map_or(-1, |f| f.position));
        }
        if low > self.high_watermark {
            self.high_watermark = low;
            return vec![Action::HighWatermark(low)];
        }
        Vec::new()
    }

    fn maybe_expand(&mut self, replica: i32, now_ms: i64) -> Vec<Action> {
        let Role::Leader(l) = &self.role else {
            return Vec::new();
        };
        if l.pending.is_some() || l.isr.contains(&replica) || now_ms < l.propose_after_ms {
            return Vec::new();
        }
        let Some(f) = l.followers.get(&replica) else {
            return Vec::new();
        };
        if f.position < self.high_watermark || f.position < l.epoch_start_offset {
            return Vec::new();
        }
        let new_isr: Vec<i32> = l
            .replicas
            .iter()
            .copied()
            .filter(|r| l.isr.contains(r) || *r == replica)
            .collect();
        self.propose(new_isr)
    }

    fn propose(&mut self, mut new_isr: Vec<i32>) -> Vec<Action> {
        let local = self.local;
        let Role::Leader(l) = &mut self.role else {
            return Vec::new();
        };
        // Leader first, as the controller expects it in the ISR.
        new_isr.retain(|r| *r != local);
        new_isr.insert(0, local);
        let proposal = IsrProposal {
            leader_epoch: l.leader_epoch,
            partition_epoch: l.partition_epoch,
            new_isr,
        };
        l.pending = Some(proposal.clone());
        vec![Action::AlterIsr(proposal)]
    }
}

#[cfg(test)]
mod tests;
