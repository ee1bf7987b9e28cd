//! The active controller (KRaft's `QuorumController`): on the voter that leads the
//! metadata quorum, it serialises every metadata change. Each request is checked by the
//! I/O-free logic in [`moldau_metadata::controller`] and [`moldau_metadata::cluster`]
//! against the current image, and its records are committed through Raft before the
//! answer. Its timers fence brokers whose session expired, write the cluster id when a
//! new quorum forms, and take metadata snapshots.
//!
//! Every controller node runs one; only the Raft leader's does anything. A node that is
//! not the leader answers `NOT_CONTROLLER` with the leader it knows of, and the caller
//! retries there ([`super::channel`]).

use crate::replica_manager::now_ms;
use moldau_metadata::cluster::{
    self, ControlConfig, Heartbeat, HeartbeatReply, IsrChange, Liveness, Registration,
};
use moldau_metadata::controller::{ControllerError, MetadataOp};
use moldau_metadata::quorum::{MetadataBatch, Quorum};
use moldau_metadata::{MetadataImage, MetadataRecord, PartitionImage};
use moldau_protocol::error::ResponseError;
use openraft::error::{ClientWriteError, RaftError};
use openraft::ServerState;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// A request to the active controller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControllerRequest {
    /// An admin operation forwarded by a broker.
    Op(MetadataOp),
    /// BrokerRegistration.
    Register(Registration),
    /// BrokerHeartbeat.
    Heartbeat(Heartbeat),
    /// DescribeQuorum: the quorum as the active controller sees it.
    DescribeQuorum,
    /// AlterPartition from a partition leader.
    AlterPartition {
        /// The leader's `node.id`.
        broker_id: i32,
        /// The leader's broker epoch.
        broker_epoch: i64,
        /// Proposed ISR changes.
        changes: Vec<IsrChange>,
    },
    /// A broker-only node's long poll for metadata (Kafka's brokers fetch the metadata
    /// log from the quorum; Moldau's take the active controller's image): answered with
    /// the image once its offset is above `after_offset`, or with none after
    /// `max_wait_ms`.
    FetchMetadata {
        /// The offset of the image the broker has (-1 for none).
        after_offset: i64,
        /// Longest wait for a newer image, ms.
        max_wait_ms: u64,
    },
}

/// What the controller answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ControllerReply {
    /// The operation is committed.
    Done,
    /// A producer id block `[next_producer_id - PRODUCER_ID_BLOCK_SIZE, next_producer_id)`.
    ProducerIds {
        /// End (exclusive) of the block.
        next_producer_id: i64,
    },
    /// The registration's broker epoch.
    Registered {
        /// Broker epoch (metadata offset of the registration).
        broker_epoch: i64,
    },
    /// The heartbeat's answer.
    Heartbeat(HeartbeatReply),
    /// Per ISR change: the new partition state or the error.
    AlterPartition(Vec<Result<PartitionImage, RemoteError>>),
    /// The quorum (DescribeQuorum).
    Quorum(QuorumState),
    /// The active controller's image, if newer than the one asked after
    /// (FetchMetadata).
    Metadata(Option<Box<MetadataImage>>),
}

/// The metadata quorum as its leader sees it (KIP-595 DescribeQuorum).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuorumState {
    /// The active controller (Raft leader).
    pub leader_id: i32,
    /// Its Raft term (KRaft's leader epoch).
    pub leader_epoch: i32,
    /// The committed metadata offset (exclusive: the next entry's index).
    pub high_watermark: i64,
    /// Every voter: node id and the log end offset the leader knows it has (-1 if
    /// unknown).
    pub voters: Vec<(i32, i64)>,
}

/// A successful answer and the metadata offset that holds its effect (the commit
/// offset of its records, or the image offset when nothing was written): the caller
/// waits for its own image to reach it before telling a client the change is done.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ControllerOk {
    /// The answer.
    pub reply: ControllerReply,
    /// Metadata offset the answer is true at.
    pub offset: i64,
}

/// A refusal, with the Kafka error code; `leader` hints at the active controller when
/// the code is `NOT_CONTROLLER`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{name}: {message}", name = self.error().map_or("UNKNOWN".to_owned(), |e| format!("{e:?}")))]
pub struct RemoteError {
    /// Kafka error code.
    pub code: i16,
    /// Why.
    pub message: String,
    /// The active controller's node id, if known.
    pub leader: Option<i32>,
}

impl RemoteError {
    /// A refusal with `error`.
    pub fn new(error: ResponseError, message: impl Into<String>) -> Self {
        Self {
            code: error.code(),
            message: message.into(),
            leader: None,
        }
    }

    /// `NOT_CONTROLLER`, pointing at `leader`.
    pub fn not_controller(leader: Option<i32>) -> Self {
        Self {
            code: ResponseError::NotController.code(),
            message: "this node is not the active controller".into(),
            leader,
        }
    }

    /// The Kafka error, if the code is one.
    pub fn error(&self) -> Option<ResponseError> {
        ResponseError::try_from_code(self.code)
    }

    /// As the controller logic's error type.
    pub fn into_controller_error(self) -> ControllerError {
        ControllerError {
            error: self.error().unwrap_or(ResponseError::UnknownServerError),
            message: self.message,
        }
    }
}

impl From<ControllerError> for RemoteError {
    fn from(e: ControllerError) -> Self {
        RemoteError::new(e.error, e.message)
    }
}

/// State of one controller term.
struct Term {
    term: u64,
    liveness: Liveness,
    /// When a quorum last confirmed this node's leadership.
    confirmed: Instant,
}

/// How long a confirmation of leadership by a quorum is trusted. A leader cut off from
/// the other voters keeps believing it leads until it hears of a newer term; without
/// this check it would go on answering heartbeats of the brokers on its side, so they
/// would never notice they are cut off from the cluster.
const LEADERSHIP_LEASE: Duration = Duration::from_millis(500);

/// Longest a FetchMetadata long poll is held, whatever it asks, ms.
const MAX_METADATA_WAIT_MS: u64 = 30_000;

/// One controller node's active-controller logic.
pub struct QuorumController {
    quorum: Arc<Quorum>,
    config: ControlConfig,
    /// The cluster id to propose when a new quorum has none: `cluster.id`, or the one
    /// in this node's `meta.properties`, or a fresh one.
    proposed_cluster_id: String,
    /// Serialises operations: each sees every earlier one applied.
    term: tokio::sync::Mutex<Option<Term>>,
    snapshot: SnapshotSettings,
    /// The quorum's voters, whose controller listeners [`QuorumController::probe`]
    /// tries for a broker that is also a voter.
    voters: Vec<crate::config::Voter>,
}

/// When to snapshot the metadata image (Kafka's `metadata.log.max.*` settings).
#[derive(Debug, Clone, Copy)]
pub struct SnapshotSettings {
    /// Metadata bytes applied since the last snapshot that trigger one.
    pub max_bytes: u64,
    /// Most time between snapshots while metadata changes (0: never by time).
    pub interval_ms: u64,
}

impl QuorumController {
    /// A controller over `quorum`.
    pub fn new(
        quorum: Arc<Quorum>,
        config: ControlConfig,
        proposed_cluster_id: String,
        snapshot: SnapshotSettings,
        voters: Vec<crate::config::Voter>,
    ) -> Self {
        Self {
            quorum,
            config,
            proposed_cluster_id,
            term: tokio::sync::Mutex::new(None),
            snapshot,
            voters,
        }
    }

    /// The node this one believes leads the quorum (the active controller), if any.
    pub fn leader(&self) -> Option<i32> {
        let m = self.quorum.raft.metrics().borrow().clone();
        m.current_leader.and_then(|l| i32::try_from(l).ok())
    }

    /// Whether this node is the active controller.
    pub fn is_active(&self) -> bool {
        let m = self.quorum.raft.metrics().borrow().clone();
        m.state == ServerState::Leader && m.current_leader == Some(m.id)
    }

    async fn write(&self, records: Vec<MetadataRecord>) -> Result<i64, RemoteError> {
        match self
            .quorum
            .raft
            .client_write(MetadataBatch { records })
            .await
        {
            Ok(resp) => Ok(resp.log_id.index as i64),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => Err(
                RemoteError::not_controller(f.leader_id.and_then(|l| i32::try_from(l).ok())),
            ),
            Err(e) => Err(RemoteError::new(
                ResponseError::UnknownServerError,
                format!("metadata quorum: {e}"),
            )),
        }
    }

    /// Locks the controller for one operation, starting a new term's state (every
    /// broker given a full session, the image brought up to every committed entry)
    /// when this node has just become leader. Errors: `NOT_CONTROLLER`.
    async fn activate(&self) -> Result<tokio::sync::MutexGuard<'_, Option<Term>>, RemoteError> {
        let mut guard = self.term.lock().await;
        let m = self.quorum.raft.metrics().borrow().clone();
        if m.state != ServerState::Leader || m.current_leader != Some(m.id) {
            *guard = None;
            return Err(RemoteError::not_controller(self.leader()));
        }
        if guard.as_ref().map(|t| t.term) != Some(m.current_term) {
            // The image must hold every entry committed before this term.
            if let Err(e) = self.quorum.raft.ensure_linearizable().await {
                tracing::debug!(error = %e, "not (yet) the active controller");
                return Err(RemoteError::not_controller(self.leader()));
            }
            let image = self.quorum.view.image();
            tracing::info!(
                term = m.current_term,
                offset = image.offset,
                "this node is the active controller"
            );
            *guard = Some(Term {
                term: m.current_term,
                liveness: Liveness::activate(now_ms()),
                confirmed: Instant::now(),
            });
            if image.cluster_id.is_none() {
                let mut records = vec![MetadataRecord::ClusterId {
                    cluster_id: self.proposed_cluster_id.clone(),
                }];
                let legacy = self.quorum.legacy.lock().clone();
                if let Some(legacy) = &legacy {
                    match MetadataOp::Import(legacy.clone()).records(&image) {
                        Ok(imported) => records.extend(imported),
                        Err(e) => {
                            tracing::error!(error = %e, "cannot import the metadata log from before the quorum")
                        }
                    }
                }
                self.write(records).await?;
                // Only once committed: a failed write imports again on the next try.
                self.quorum.legacy.lock().take();
                tracing::info!(cluster_id = %self.proposed_cluster_id, "new cluster formed");
            }
        }
        if let Some(term) = guard.as_mut() {
            if term.confirmed.elapsed() > LEADERSHIP_LEASE {
                let confirmed = tokio::time::timeout(
                    Duration::from_secs(1),
                    self.quorum.raft.ensure_linearizable(),
                )
                .await;
                if !matches!(confirmed, Ok(Ok(_))) {
                    tracing::debug!(?confirmed, "leadership not confirmed by a quorum");
                    return Err(RemoteError::not_controller(None));
                }
                term.confirmed = Instant::now();
            }
        }
        Ok(guard)
    }

    /// The quorum from this (leading) node's Raft metrics.
    fn quorum_state(&self) -> QuorumState {
        let m = self.quorum.raft.metrics().borrow().clone();
        let end = |index: Option<u64>| index.map_or(0, |i| i as i64 + 1);
        let matched = m.replication.clone().unwrap_or_default();
        let voters = m
            .membership_config
            .membership()
            .voter_ids()
            .map(|id| {
                let leo = if id == m.id {
                    end(m.last_log_index)
                } else {
                    matched
                        .get(&id)
                        .copied()
                        .flatten()
                        .map_or(-1, |l| l.index as i64 + 1)
                };
                (i32::try_from(id).unwrap_or(-1), leo)
            })
            .collect();
        QuorumState {
            leader_id: i32::try_from(m.id).unwrap_or(-1),
            leader_epoch: i32::try_from(m.current_term).unwrap_or(i32::MAX),
            high_watermark: end(m.last_applied.map(|l| l.index)),
            voters,
        }
    }

    /// A connection on which broker `broker` registered or heartbeated closed: unless
    /// it heartbeats again within the disconnect grace, it is fenced (a crashed
    /// process is noticed long before its session expires). It is also probed
    /// ([`QuorumController::probe`]): a process found gone is fenced at once.
    pub async fn connection_lost(self: &Arc<Self>, broker: i32, peer: std::net::IpAddr) {
        if let Some(term) = self.term.lock().await.as_mut() {
            term.liveness.connection_lost(broker, now_ms());
        }
        self.probe(broker, Some(peer));
    }

    /// Tries to connect to `broker` where it must be listening (in the background; see
    /// [`super::rpc::refuses_connections`]). If every attempt is refused, its process is
    /// gone (killed, crashed), and the broker is fenced and its leaderships moved now
    /// rather than after the disconnect grace or, for a new active controller, a whole
    /// session. Only a refusal counts: a timeout (a partition, a frozen host) or an
    /// accepted connection leaves the session rules in charge. A broker that restarted
    /// meanwhile heartbeats, which undoes it.
    ///
    /// Where it is tried matters: an advertised address may not be reachable from here
    /// (`localhost`, a NAT mapping), and a refusal there would fence a live broker. So a
    /// broker that is also a voter is tried on its controller listener (which every
    /// voter reaches by definition), and any other broker only on the advertised
    /// endpoints that resolve to `peer`, the address its closed controller connection
    /// came from; with no such endpoint, or no `peer`, it is not probed.
    pub fn probe(self: &Arc<Self>, broker: i32, peer: Option<std::net::IpAddr>) {
        let image = self.quorum.view.image();
        let Some(registered) = image.brokers.get(&broker) else {
            return;
        };
        if registered.fenced {
            return;
        }
        let voter = self
            .voters
            .iter()
            .find(|v| v.id == broker)
            .map(|v| v.addr());
        let advertised: Vec<String> = registered
            .listeners
            .iter()
            .map(|l| format!("{}:{}", l.host, l.port))
            .collect();
        let this = self.clone();
        tokio::spawn(async move {
            let endpoints = match (voter, peer) {
                (Some(addr), _) => vec![addr],
                (None, Some(ip)) => {
                    let mut same_host = Vec::new();
                    for addr in advertised {
                        let resolved = tokio::net::lookup_host(addr.as_str()).await;
                        if resolved.is_ok_and(|mut a| a.any(|a| a.ip() == ip)) {
                            same_host.push(addr);
                        }
                    }
                    same_host
                }
                (None, None) => Vec::new(),
            };
            if endpoints.is_empty() {
                return;
            }
            for addr in &endpoints {
                if !super::rpc::refuses_connections(addr).await {
                    return;
                }
            }
            tracing::info!(broker, endpoints = ?endpoints, "broker process gone: its listeners refuse connections");
            if let Some(term) = this.term.lock().await.as_mut() {
                term.liveness.process_gone(broker);
            }
            if let Err(e) = this.fence_expired().await {
                tracing::debug!(error = %e, "fencing pass failed");
            }
        });
    }

    /// Serves one controller request (see the module docs).
    pub async fn handle(&self, request: ControllerRequest) -> Result<ControllerOk, RemoteError> {
        if let ControllerRequest::FetchMetadata {
            after_offset,
            max_wait_ms,
        } = request
        {
            return self.fetch_metadata(after_offset, max_wait_ms).await;
        }
        let mut guard = self.activate().await?;
        let Some(term) = guard.as_mut() else {
            return Err(RemoteError::not_controller(self.leader()));
        };
        let image = self.quorum.view.image();
        let now = now_ms();
        let (records, reply) = match request {
            ControllerRequest::Op(op) => {
                let records = op.records(&image)?;
                let reply = match records.last() {
                    Some(MetadataRecord::ProducerIds {
                        next_producer_id, ..
                    }) => ControllerReply::ProducerIds {
                        next_producer_id: *next_producer_id,
                    },
                    _ => ControllerReply::Done,
                };
                (records, reply)
            }
            ControllerRequest::Register(reg) => {
                let records =
                    cluster::register(&image, &mut term.liveness, &self.config, &reg, now)?;
                let epoch = image.brokers.get(&reg.broker_id).map_or(-1, |b| b.epoch);
                (
                    records,
                    ControllerReply::Registered {
                        broker_epoch: epoch,
                    },
                )
            }
            ControllerRequest::Heartbeat(hb) => {
                let (records, reply) =
                    cluster::heartbeat(&image, &mut term.liveness, &self.config, &hb, now)?;
                (records, ControllerReply::Heartbeat(reply))
            }
            ControllerRequest::DescribeQuorum => {
                (Vec::new(), ControllerReply::Quorum(self.quorum_state()))
            }
            ControllerRequest::FetchMetadata { .. } => unreachable!("answered above"),
            ControllerRequest::AlterPartition {
                broker_id,
                broker_epoch,
                changes,
            } => {
                let (results, records) =
                    cluster::alter_partition(&image, broker_id, broker_epoch, &changes)?;
                let results = results
                    .into_iter()
                    .map(|r| r.map_err(RemoteError::from))
                    .collect();
                (records, ControllerReply::AlterPartition(results))
            }
        };
        let offset = if records.is_empty() {
            image.offset
        } else {
            self.write(records).await?
        };
        let reply = match reply {
            // The broker epoch is the offset the registration committed at.
            ControllerReply::Registered { broker_epoch }
                if broker_epoch < 0 || offset > image.offset =>
            {
                ControllerReply::Registered {
                    broker_epoch: offset,
                }
            }
            other => other,
        };
        Ok(ControllerOk { reply, offset })
    }

    /// Answers a broker-only node's FetchMetadata. Only the active controller answers,
    /// once a quorum has confirmed its leadership ([`QuorumController::activate`]), so
    /// its image holds every committed entry: a broker never gets an image older than
    /// one it applied before (it would otherwise delete the logs of a topic it had
    /// opened). The wait happens outside the operation lock. Errors: `NOT_CONTROLLER`.
    async fn fetch_metadata(
        &self,
        after_offset: i64,
        max_wait_ms: u64,
    ) -> Result<ControllerOk, RemoteError> {
        drop(self.activate().await?);
        let mut images = self.quorum.view.subscribe();
        let wait = images.wait_for(|image| image.offset > after_offset);
        // The wait is the peer's to choose, within reason.
        let max_wait = Duration::from_millis(max_wait_ms.min(MAX_METADATA_WAIT_MS));
        let _ = tokio::time::timeout(max_wait, wait).await;
        let image = self.quorum.view.image();
        let offset = image.offset;
        let reply = (image.offset > after_offset).then(|| Box::new((*image).clone()));
        Ok(ControllerOk {
            reply: ControllerReply::Metadata(reply),
            offset,
        })
    }

    /// Fences brokers whose session expired (on the active controller), writes the
    /// cluster id of a new quorum, and takes snapshots (on every controller), until
    /// `stop` flips.
    pub async fn run_timers(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let period =
            Duration::from_millis((self.config.session_timeout_ms as u64 / 8).clamp(50, 500));
        let mut tick = tokio::time::interval(period);
        let mut last_snapshot = Instant::now();
        let mut last_trigger: Option<Instant> = None;
        // Leadership changes wake the loop at once, so a new active controller writes
        // the cluster id and starts its term without waiting for a tick.
        let mut metrics = self.quorum.raft.metrics();
        let mut probed_term = None;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                changed = metrics.changed() => if changed.is_err() { return },
                _ = stop.changed() => return,
            }
            if self.is_active() {
                if let Err(e) = self.fence_expired().await {
                    tracing::debug!(error = %e, "fencing pass failed");
                }
                // A new active controller knows nothing of the brokers' liveness and
                // gives each a full session; a broker that died with the old
                // controller (often the same node) is found by a probe instead.
                let term = self.term.lock().await.as_ref().map(|t| t.term);
                if term.is_some() && term != probed_term {
                    probed_term = term;
                    let image = self.quorum.view.image();
                    for broker in image.brokers.values().filter(|b| !b.fenced) {
                        self.probe(broker.broker_id, None);
                    }
                }
            }
            let bytes = self.quorum.view.bytes_since_snapshot();
            let due = bytes >= self.snapshot.max_bytes
                || (bytes > 0
                    && self.snapshot.interval_ms > 0
                    && last_snapshot.elapsed() >= Duration::from_millis(self.snapshot.interval_ms));
            if due && last_trigger.is_none_or(|t| t.elapsed() > Duration::from_secs(1)) {
                last_trigger = Some(Instant::now());
                last_snapshot = Instant::now();
                if let Err(e) = self.quorum.raft.trigger().snapshot().await {
                    tracing::warn!(error = %e, "cannot trigger a metadata snapshot");
                }
            }
        }
    }

    async fn fence_expired(&self) -> Result<(), RemoteError> {
        let mut guard = self.activate().await?;
        let Some(term) = guard.as_mut() else {
            return Ok(());
        };
        let image = self.quorum.view.image();
        let (records, fenced) =
            cluster::fence_expired(&image, &term.liveness, &self.config, now_ms());
        if !records.is_empty() {
            tracing::warn!(brokers = ?fenced, "fencing brokers whose session expired");
            self.write(records).await?;
        }
        Ok(())
    }
}
