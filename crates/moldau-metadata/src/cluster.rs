//! The active controller's broker and partition logic (KRaft's `ClusterControlManager`,
//! `BrokerHeartbeatManager` and `ReplicationControlManager`, KIP-631/KIP-841):
//! registration, heartbeats, fencing, controlled shutdown, leader election and ISR
//! changes (AlterPartition).
//!
//! Everything here is I/O-free: each function takes the current [`MetadataImage`], the
//! controller's in-memory [`Liveness`] and the time `now` (ms), and returns the metadata
//! records that carry the change out plus the reply. The runtime commits the records
//! through the quorum. Tests drive it with an injected clock.
//!
//! Rules (Kafka's):
//! - A partition's leader is the first replica, in assignment order, that is in the ISR
//!   and active (unfenced, not in controlled shutdown). With no such replica the leader
//!   is -1 (offline) and the ISR keeps its last member, so the set of replicas that may
//!   hold every committed record is never lost (KIP-841). Only with
//!   `unclean.leader.election.enable` may an out-of-sync replica lead, and then the
//!   ISR restarts as just that replica.
//! - Every leader change bumps the leader epoch; every change of the partition record
//!   bumps the partition epoch.

use crate::controller::{ControllerError, ControllerResult};
use crate::image::{MetadataImage, PartitionImage};
use crate::records::{BrokerEndpoint, MetadataRecord};
use moldau_protocol::error::ResponseError;
use std::collections::HashMap;
use uuid::Uuid;

/// Controller settings this logic needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlConfig {
    /// `broker.session.timeout.ms`: a broker silent this long is fenced.
    pub session_timeout_ms: i64,
    /// Broker default of `unclean.leader.election.enable` (topics may override it).
    pub unclean_leader_election: bool,
    /// How long a broker whose connection to the controller closed may take to
    /// heartbeat again before it is fenced (ms). A process that dies closes its
    /// connections at once, so this detects crashes much sooner than the session
    /// timeout, which still covers brokers that hang or are cut off.
    pub disconnect_grace_ms: i64,
}

/// What the active controller knows only in memory: when it last heard from each broker
/// and where each controlled shutdown stands. A newly active controller gives every
/// registered broker a full session before fencing it (Kafka does the same), but only a
/// broker it has actually heard from holds a session that blocks a new registration of
/// its id.
#[derive(Debug, Clone, Default)]
pub struct Liveness {
    /// When this controller term started (ms).
    activated_ms: i64,
    last_heartbeat_ms: HashMap<i32, i64>,
    /// When a broker's connection closed with no heartbeat since (ms).
    disconnected_ms: HashMap<i32, i64>,
    /// Brokers whose process is known to be gone (nothing listens on any of their
    /// advertised endpoints) with no heartbeat since.
    gone: std::collections::HashSet<i32>,
    /// Metadata offset the broker must have applied before it may shut down.
    shutdown_ready_offset: HashMap<i32, i64>,
}

impl Liveness {
    /// Starts a controller term at `now`.
    pub fn activate(now: i64) -> Self {
        Self {
            activated_ms: now,
            ..Self::default()
        }
    }

    /// No heartbeat (or, before any, no term start) within the session timeout, or
    /// none since its connection closed longer than the disconnect grace ago, or its
    /// process is gone ([`Liveness::process_gone`]).
    fn expired(&self, broker: i32, config: &ControlConfig, now: i64) -> bool {
        if self.gone.contains(&broker) {
            return true;
        }
        let last = self
            .last_heartbeat_ms
            .get(&broker)
            .copied()
            .unwrap_or(self.activated_ms)
            .max(self.activated_ms);
        let disconnected = self
            .disconnected_ms
            .get(&broker)
            .is_some_and(|t| now.saturating_sub(*t) > config.disconnect_grace_ms);
        disconnected || now.saturating_sub(last) > config.session_timeout_ms
    }

    /// The connection a broker heartbeated on closed at `now`.
    pub fn connection_lost(&mut self, broker: i32, now: i64) {
        self.disconnected_ms.insert(broker, now);
    }

    /// Nothing listens any more on the broker's advertised endpoints (every connection
    /// attempt was refused): its process is gone, so it is fenced at the next pass
    /// without waiting for its session or the disconnect grace. A heartbeat undoes
    /// this.
    pub fn process_gone(&mut self, broker: i32) {
        self.gone.insert(broker);
    }

    fn heard_from(&mut self, broker: i32, now: i64) {
        self.last_heartbeat_ms.insert(broker, now);
        self.disconnected_ms.remove(&broker);
        self.gone.remove(&broker);
    }

    /// A heartbeat from this broker arrived within the session timeout.
    fn has_session(&self, broker: i32, config: &ControlConfig, now: i64) -> bool {
        self.last_heartbeat_ms
            .get(&broker)
            .is_some_and(|t| now.saturating_sub(*t) <= config.session_timeout_ms)
    }
}

/// A BrokerRegistration request (Kafka `BrokerRegistrationRequest`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Registration {
    /// `node.id`.
    pub broker_id: i32,
    /// The id of this process (random per start).
    pub incarnation_id: Uuid,
    /// Advertised listeners.
    pub listeners: Vec<BrokerEndpoint>,
    /// `broker.rack`.
    pub rack: Option<String>,
    /// The cluster id in the broker's `meta.properties`, if it has one.
    pub cluster_id: Option<String>,
}

/// A BrokerHeartbeat request (Kafka `BrokerHeartbeatRequest`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Heartbeat {
    /// `node.id`.
    pub broker_id: i32,
    /// The epoch its registration returned.
    pub broker_epoch: i64,
    /// The highest metadata offset the broker has applied.
    pub current_metadata_offset: i64,
    /// The broker asks to stay fenced (it is not ready).
    pub want_fence: bool,
    /// The broker asks for a controlled shutdown.
    pub want_shut_down: bool,
    /// Partitions whose log on this broker went offline (a write or an fsync failed),
    /// as `(topic id, partition)`: the controller takes the broker out of their ISR and
    /// moves their leadership to another ISR member, as Kafka does for a failed log
    /// directory (KIP-858 reports whole directories in this field's place; Moldau takes
    /// single logs offline).
    #[serde(default)]
    pub offline_partitions: Vec<(Uuid, i32)>,
}

/// The answer to a heartbeat (Kafka `BrokerHeartbeatResponse`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct HeartbeatReply {
    /// The broker has applied the metadata up to its own registration.
    pub is_caught_up: bool,
    /// The broker is (still) fenced.
    pub is_fenced: bool,
    /// Controlled shutdown is complete: the broker may exit.
    pub should_shut_down: bool,
}

fn error(error: ResponseError, message: impl Into<String>) -> ControllerError {
    ControllerError {
        error,
        message: message.into(),
    }
}

fn unclean_allowed(image: &MetadataImage, topic_id: &Uuid, config: &ControlConfig) -> bool {
    image
        .topic_by_id(topic_id)
        .and_then(|t| t.configs.get("unclean.leader.election.enable"))
        .map_or(config.unclean_leader_election, |v| v.trim() == "true")
}

fn active(image: &MetadataImage, broker: i32, excluded: i32) -> bool {
    broker != excluded && image.brokers.get(&broker).is_some_and(|b| b.is_active())
}

/// The record for a changed partition: bumps the partition epoch, and the leader epoch
/// when the leader changes. `None` when nothing changes.
fn changed(
    topic_id: Uuid,
    partition: i32,
    old: &PartitionImage,
    leader: i32,
    isr: Vec<i32>,
) -> Option<MetadataRecord> {
    if leader == old.leader && isr == old.isr {
        return None;
    }
    Some(MetadataRecord::Partition {
        topic_id,
        partition,
        replicas: old.replicas.clone(),
        leader,
        leader_epoch: old.leader_epoch + i32::from(leader != old.leader),
        partition_epoch: old.partition_epoch + 1,
        isr,
    })
}

/// Records that take `broker` out of every ISR it is in and move its leaderships to
/// other active ISR members (Kafka `handleBrokerFenced` / controlled shutdown). A
/// partition whose only ISR member is `broker` keeps it in the ISR with leader -1.
fn move_away(image: &MetadataImage, broker: i32, config: &ControlConfig) -> Vec<MetadataRecord> {
    move_away_from(image, broker, config, |_, _| true)
}

/// [`move_away`] for the partitions `only(topic id, partition)` selects.
fn move_away_from(
    image: &MetadataImage,
    broker: i32,
    config: &ControlConfig,
    only: impl Fn(&Uuid, i32) -> bool,
) -> Vec<MetadataRecord> {
    let mut records = Vec::new();
    for topic in image.topics.values() {
        for (&p, part) in &topic.partitions {
            if !part.isr.contains(&broker) && part.leader != broker || !only(&topic.topic_id, p) {
                continue;
            }
            let mut isr: Vec<i32> = part.isr.iter().copied().filter(|r| *r != broker).collect();
            if isr.is_empty() {
                isr = vec![broker];
            }
            let mut leader = part.leader;
            if leader == broker || leader < 0 {
                leader = part
                    .replicas
                    .iter()
                    .copied()
                    .find(|r| isr.contains(r) && active(image, *r, broker))
                    .unwrap_or(-1);
                if leader < 0 && unclean_allowed(image, &topic.topic_id, config) {
                    if let Some(r) = part
                        .replicas
                        .iter()
                        .copied()
                        .find(|r| active(image, *r, broker))
                    {
                        tracing::warn!(topic = %topic.name, partition = p, leader = r, "unclean leader election: an out-of-sync replica leads; records may be lost");
                        leader = r;
                        isr = vec![r];
                    }
                }
            }
            records.extend(changed(topic.topic_id, p, part, leader, isr));
        }
    }
    records
}

/// Records that give leaderless partitions a leader now that `broker` is active again:
/// it leads where it is in the ISR (or, with unclean election allowed, where no ISR
/// member is active), except for the partitions in `offline`, whose logs it reported
/// offline (`(topic id, partition)`).
fn elect_with(
    image: &MetadataImage,
    broker: i32,
    config: &ControlConfig,
    offline: &[(Uuid, i32)],
) -> Vec<MetadataRecord> {
    let mut records = Vec::new();
    for topic in image.topics.values() {
        for (&p, part) in &topic.partitions {
            if part.leader >= 0
                || !part.replicas.contains(&broker)
                || offline.contains(&(topic.topic_id, p))
            {
                continue;
            }
            if part.isr.contains(&broker) {
                records.extend(changed(topic.topic_id, p, part, broker, part.isr.clone()));
            } else if unclean_allowed(image, &topic.topic_id, config)
                && !part.isr.iter().any(|r| active(image, *r, -1))
            {
                tracing::warn!(topic = %topic.name, partition = p, leader = broker, "unclean leader election: an out-of-sync replica leads; records may be lost");
                records.extend(changed(topic.topic_id, p, part, broker, vec![broker]));
            }
        }
    }
    records
}

fn leads_any(image: &MetadataImage, broker: i32) -> bool {
    image
        .topics
        .values()
        .any(|t| t.partitions.values().any(|p| p.leader == broker))
}

/// Registers a broker (BrokerRegistration). The registration starts fenced; the broker
/// epoch is the offset the record commits at. A re-registration with the same
/// incarnation id changes nothing (a retried request). A new incarnation replaces the
/// old registration, and partitions led by the old one are handed over first, unless
/// the old incarnation is still alive (heard from within the session timeout).
///
/// Errors: `INCONSISTENT_CLUSTER_ID` (the broker's data belongs to another cluster),
/// `DUPLICATE_BROKER_REGISTRATION`.
pub fn register(
    image: &MetadataImage,
    liveness: &mut Liveness,
    config: &ControlConfig,
    reg: &Registration,
    now: i64,
) -> ControllerResult<Vec<MetadataRecord>> {
    if let (Some(ours), Some(theirs)) = (&image.cluster_id, &reg.cluster_id) {
        if ours != theirs {
            return Err(error(
                ResponseError::InconsistentClusterId,
                format!(
                    "broker {} belongs to cluster {theirs}, this is cluster {ours}",
                    reg.broker_id
                ),
            ));
        }
    }
    let mut records = Vec::new();
    if let Some(existing) = image.brokers.get(&reg.broker_id) {
        if existing.incarnation_id == reg.incarnation_id {
            liveness.heard_from(reg.broker_id, now);
            return Ok(records);
        }
        if !existing.fenced && liveness.has_session(reg.broker_id, config, now) {
            return Err(error(
                ResponseError::DuplicateBrokerRegistration,
                format!(
                    "another process registered as broker {} within the last {} ms",
                    reg.broker_id, config.session_timeout_ms
                ),
            ));
        }
        records.extend(move_away(image, reg.broker_id, config));
    }
    records.push(MetadataRecord::RegisterBroker {
        broker_id: reg.broker_id,
        incarnation_id: reg.incarnation_id,
        listeners: reg.listeners.clone(),
        rack: reg.rack.clone(),
        fenced: true,
        host: None,
        port: None,
    });
    liveness.heard_from(reg.broker_id, now);
    liveness.shutdown_ready_offset.remove(&reg.broker_id);
    Ok(records)
}

/// Handles a heartbeat: records the broker as alive; unfences a fenced broker that has
/// caught up with its own registration and gives it the leaderless partitions it can
/// lead; runs a requested controlled shutdown (leaderships move away first, then the
/// broker is fenced and told to shut down once it has applied that).
///
/// Errors: `BROKER_ID_NOT_REGISTERED`, `STALE_BROKER_EPOCH`.
pub fn heartbeat(
    image: &MetadataImage,
    liveness: &mut Liveness,
    config: &ControlConfig,
    hb: &Heartbeat,
    now: i64,
) -> ControllerResult<(Vec<MetadataRecord>, HeartbeatReply)> {
    let broker = image.brokers.get(&hb.broker_id).ok_or_else(|| {
        error(
            ResponseError::BrokerIdNotRegistered,
            format!("broker {} is not registered", hb.broker_id),
        )
    })?;
    if broker.epoch != hb.broker_epoch {
        return Err(error(
            ResponseError::StaleBrokerEpoch,
            format!(
                "broker {} has epoch {}, the heartbeat carries {}",
                hb.broker_id, broker.epoch, hb.broker_epoch
            ),
        ));
    }
    liveness.heard_from(hb.broker_id, now);
    // Caught up: it has applied its registration and the record that last fenced it
    // (with the leadership moves written in the same entry), so unfenced it takes its
    // roles from an image that knows it was replaced (Kafka checks the registration
    // offset only).
    let caught_up = hb.current_metadata_offset >= broker.epoch.max(broker.fenced_at);
    let change = |fenced: Option<bool>, in_controlled_shutdown: Option<bool>| {
        MetadataRecord::BrokerRegistrationChange {
            broker_id: hb.broker_id,
            broker_epoch: broker.epoch,
            fenced,
            in_controlled_shutdown,
        }
    };
    let mut records = Vec::new();
    let mut reply = HeartbeatReply {
        is_caught_up: caught_up,
        is_fenced: broker.fenced,
        should_shut_down: false,
    };
    if hb.want_shut_down {
        if broker.fenced {
            // A fenced broker leads nothing and is in no ISR it could leave.
            reply.should_shut_down = true;
        } else if !broker.in_controlled_shutdown {
            records.push(change(None, Some(true)));
            records.extend(move_away(image, hb.broker_id, config));
        } else if !leads_any(image, hb.broker_id) {
            let ready = *liveness
                .shutdown_ready_offset
                .entry(hb.broker_id)
                .or_insert(image.offset);
            if hb.current_metadata_offset >= ready {
                records.push(change(Some(true), None));
                reply.is_fenced = true;
                reply.should_shut_down = true;
            }
        }
    } else if broker.fenced && !hb.want_fence && caught_up && !broker.in_controlled_shutdown {
        records.push(change(Some(false), None));
        let mut unfenced = image.clone();
        unfenced.apply(image.offset, &change(Some(false), None));
        records.extend(elect_with(
            &unfenced,
            hb.broker_id,
            config,
            &hb.offline_partitions,
        ));
        reply.is_fenced = false;
    } else if !broker.fenced && hb.want_fence {
        records.push(change(Some(true), None));
        records.extend(move_away(image, hb.broker_id, config));
        reply.is_fenced = true;
    } else if !broker.fenced && !hb.offline_partitions.is_empty() {
        records.extend(move_away_from(image, hb.broker_id, config, |id, p| {
            hb.offline_partitions.contains(&(*id, p))
        }));
    }
    Ok((records, reply))
}

/// Fences every unfenced broker not heard from within `broker.session.timeout.ms` and
/// moves its leaderships. Returns the records and the fenced broker ids.
pub fn fence_expired(
    image: &MetadataImage,
    liveness: &Liveness,
    config: &ControlConfig,
    now: i64,
) -> (Vec<MetadataRecord>, Vec<i32>) {
    let mut records = Vec::new();
    let mut fenced = Vec::new();
    let mut current = image.clone();
    for b in image.brokers.values() {
        if b.fenced || !liveness.expired(b.broker_id, config, now) {
            continue;
        }
        let change = MetadataRecord::BrokerRegistrationChange {
            broker_id: b.broker_id,
            broker_epoch: b.epoch,
            fenced: Some(true),
            in_controlled_shutdown: None,
        };
        let moved = move_away(&current, b.broker_id, config);
        for r in std::iter::once(&change).chain(&moved) {
            current.apply(current.offset, r);
        }
        records.push(change);
        records.extend(moved);
        fenced.push(b.broker_id);
    }
    (records, fenced)
}

/// One partition of an AlterPartition request (KIP-497, KIP-841).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IsrChange {
    /// Topic id.
    pub topic_id: Uuid,
    /// Partition index.
    pub partition: i32,
    /// The leader epoch the leader holds.
    pub leader_epoch: i32,
    /// The ISR the leader proposes.
    pub new_isr: Vec<i32>,
    /// The partition epoch the proposal is based on.
    pub partition_epoch: i32,
}

/// Checks ISR changes proposed by partition leader `broker` (AlterPartition) and returns
/// one result per change, in order (the new partition state, or the error), plus the
/// records of the accepted ones.
///
/// Errors of the whole request: `STALE_BROKER_EPOCH`. Per partition:
/// `UNKNOWN_TOPIC_OR_PARTITION`, `NOT_LEADER_OR_FOLLOWER` (not the leader),
/// `FENCED_LEADER_EPOCH` (another leader epoch), `INVALID_UPDATE_VERSION` (a stale
/// partition epoch), `INVALID_REQUEST` (the ISR is empty, lacks the leader or names
/// non-replicas), `INELIGIBLE_REPLICA` (adds a fenced or shutting-down broker).
#[allow(clippy::type_complexity)]
pub fn alter_partition(
    image: &MetadataImage,
    broker: i32,
    broker_epoch: i64,
    changes: &[IsrChange],
) -> ControllerResult<(
    Vec<Result<PartitionImage, ControllerError>>,
    Vec<MetadataRecord>,
)> {
    let registered = image.brokers.get(&broker).map(|b| b.epoch);
    if registered != Some(broker_epoch) {
        return Err(error(
            ResponseError::StaleBrokerEpoch,
            format!("broker {broker} epoch {broker_epoch} is not current ({registered:?})"),
        ));
    }
    let mut records = Vec::new();
    let results = changes
        .iter()
        .map(|c| {
            let part = image
                .topic_by_id(&c.topic_id)
                .and_then(|t| t.partitions.get(&c.partition))
                .ok_or_else(|| {
                    error(
                        ResponseError::UnknownTopicOrPartition,
                        format!(
                            "partition {} of topic {} does not exist",
                            c.partition, c.topic_id
                        ),
                    )
                })?;
            if part.leader != broker {
                return Err(error(
                    ResponseError::NotLeaderOrFollower,
                    format!("broker {broker} does not lead partition {}", c.partition),
                ));
            }
            if c.leader_epoch != part.leader_epoch {
                return Err(error(
                    ResponseError::FencedLeaderEpoch,
                    format!(
                        "leader epoch {} is not the current {}",
                        c.leader_epoch, part.leader_epoch
                    ),
                ));
            }
            if c.partition_epoch != part.partition_epoch {
                return Err(error(
                    ResponseError::InvalidUpdateVersion,
                    format!(
                        "partition epoch {} is not the current {}",
                        c.partition_epoch, part.partition_epoch
                    ),
                ));
            }
            let mut sorted = c.new_isr.clone();
            sorted.sort_unstable();
            sorted.dedup();
            if c.new_isr.is_empty()
                || sorted.len() != c.new_isr.len()
                || !c.new_isr.contains(&broker)
                || c.new_isr.iter().any(|r| !part.replicas.contains(r))
            {
                return Err(error(
                    ResponseError::InvalidRequest,
                    format!(
                        "ISR {:?} must hold the leader and only replicas of {:?}",
                        c.new_isr, part.replicas
                    ),
                ));
            }
            if let Some(r) = c
                .new_isr
                .iter()
                .find(|r| !part.isr.contains(r) && !active(image, **r, -1))
            {
                return Err(error(
                    ResponseError::IneligibleReplica,
                    format!("replica {r} is fenced or shutting down and cannot join the ISR"),
                ));
            }
            let next = PartitionImage {
                isr: c.new_isr.clone(),
                partition_epoch: part.partition_epoch + 1,
                ..part.clone()
            };
            records.push(MetadataRecord::Partition {
                topic_id: c.topic_id,
                partition: c.partition,
                replicas: next.replicas.clone(),
                isr: next.isr.clone(),
                leader: next.leader,
                leader_epoch: next.leader_epoch,
                partition_epoch: next.partition_epoch,
            });
            Ok(next)
        })
        .collect();
    Ok((results, records))
}

#[cfg(test)]
mod tests;
