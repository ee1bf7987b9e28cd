//! Membership of one consumer in a group: the coordinator link, join/sync, the
//! background heartbeat, leave, and the group's offset commits and fetches.

use super::assignor::{range_assign, MemberSubscription};
use super::protocol::{
    decode_assignment, decode_subscription, encode_assignment, encode_subscription, Subscription,
    TopicPartitions, PROTOCOL_TYPE, RANGE_PROTOCOL,
};
use crate::client::Client;
use crate::connection::Connection;
use crate::error::{Error, Result};
use crate::names::{group_id, str_bytes, topic_name};
use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    join_group_request, join_group_response::JoinGroupResponseMember, leave_group_request,
    offset_commit_request, offset_fetch_request, sync_group_request, ApiKey,
    FindCoordinatorRequest, HeartbeatRequest, JoinGroupRequest, LeaveGroupRequest,
    OffsetCommitRequest, OffsetFetchRequest, SyncGroupRequest,
};
use kafka_protocol::protocol::StrBytes;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// A consumer's own connection to its group's coordinator, for every group request
/// (JoinGroup, SyncGroup, Heartbeat, LeaveGroup, OffsetCommit, OffsetFetch). Kafka's
/// consumer also keeps the coordinator on a socket of its own: a broker answers a
/// connection's requests in order, so on the shared connection a commit or heartbeat
/// would wait behind long-poll fetches. Its timeout covers a JoinGroup parked for the
/// rebalance timeout (Kafka: `max(request.timeout.ms, rebalance.timeout.ms + 5 s)`).
/// Clones share the connection.
#[derive(Clone)]
pub(crate) struct CoordinatorLink {
    client: Client,
    group_id: String,
    /// Bounds JoinGroup and SyncGroup, which wait for the rebalance.
    timeout: Duration,
    /// Bounds every other request (`request.timeout.ms`): a heartbeat that waited a
    /// whole rebalance timeout would outlive the session.
    request_timeout: Duration,
    conn: Arc<parking_lot::Mutex<Option<Arc<Connection>>>>,
}

impl CoordinatorLink {
    /// A link to `group_id`'s coordinator, connected on first use; `rebalance_timeout`
    /// sizes its request timeout.
    pub fn new(client: Client, group_id: String, rebalance_timeout: Duration) -> Self {
        let timeout = client
            .config()
            .request_timeout
            .max(rebalance_timeout + Duration::from_secs(5));
        let request_timeout = client.config().request_timeout;
        CoordinatorLink {
            client,
            group_id,
            timeout,
            request_timeout,
            conn: Arc::default(),
        }
    }

    /// The group id.
    pub fn group_id(&self) -> &str {
        &self.group_id
    }

    /// The connection, opened when there is none or it broke: FindCoordinator (v1–v3,
    /// one key) on a connection of its own to any broker (the shared one may be busy
    /// with long-poll fetches), then a connection to the coordinator it names (the same
    /// one when that broker is the coordinator). A coordinator that moved is noticed by
    /// the errors of later requests ([`CoordinatorLink::check`]).
    async fn connection(&self) -> Result<Arc<Connection>> {
        if let Some(c) = self.conn.lock().as_ref().filter(|c| !c.is_closed()) {
            return Ok(c.clone());
        }
        let config = self.client.config();
        let client_id = &config.client_id;
        let any = self.client.any_connection().await?;
        let probe =
            Connection::connect(any.addr(), client_id, self.timeout, &config.security).await?;
        let response = probe
            .send(
                FindCoordinatorRequest::default()
                    .with_key(str_bytes(&self.group_id))
                    .with_key_type(0),
            )
            .await?;
        if let Some(e) = Error::from_code(
            response.error_code,
            response.error_message.map(|m| m.to_string()),
        ) {
            return Err(e);
        }
        let addr = format!("{}:{}", response.host, response.port);
        let conn = if addr == probe.addr() {
            probe
        } else {
            Connection::connect(&addr, client_id, self.timeout, &config.security).await?
        };
        tracing::debug!(group = %self.group_id, coordinator = %addr, "coordinator found");
        let conn = Arc::new(conn);
        *self.conn.lock() = Some(conn.clone());
        Ok(conn)
    }

    /// Forgets the coordinator and the connection (NOT_COORDINATOR,
    /// COORDINATOR_NOT_AVAILABLE, a broken connection, a timeout).
    fn lose(&self) {
        self.client.invalidate_coordinator(&self.group_id, 0);
        *self.conn.lock() = None;
    }

    /// Forgets the coordinator if `e` says it moved or the connection failed.
    fn check(&self, e: &Error) {
        if e.needs_metadata_refresh() || matches!(e, Error::Timeout(_)) {
            self.lose();
        }
    }

    /// Runs `op` on the connection with the client's retries (`retries`,
    /// `retry.backoff.ms`), finding the coordinator again when it moved.
    async fn call<T, F, Fut>(&self, op: F) -> Result<T>
    where
        F: Fn(Arc<Connection>) -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        self.client
            .retry(None, || async {
                let r = match self.connection().await {
                    Ok(conn) => op(conn).await,
                    Err(e) => Err(e),
                };
                if let Err(e) = &r {
                    self.check(e);
                }
                r
            })
            .await
    }
}

/// Timeouts of a membership, as the consumer configures them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MembershipTimeouts {
    /// `session.timeout.ms`.
    pub session: Duration,
    /// `max.poll.interval.ms`, sent as JoinGroup's rebalance timeout.
    pub rebalance: Duration,
    /// `heartbeat.interval.ms`.
    pub heartbeat: Duration,
}

/// What the background heartbeat learned about one generation.
#[derive(Default)]
struct GenerationFlags {
    /// The coordinator wants this member to rejoin.
    rejoin: AtomicBool,
    /// The coordinator no longer knows the member id: rejoin as a new member.
    reset: AtomicBool,
}

/// A consumer's membership in its group: member id, generation, the join/sync
/// exchange, and the heartbeat task of the current generation.
pub(crate) struct Membership {
    link: CoordinatorLink,
    timeouts: MembershipTimeouts,
    member_id: String,
    /// -1 while not a member of a generation.
    generation: i32,
    flags: Arc<GenerationFlags>,
    /// Woken when the heartbeat asks for a rejoin, so a waiting poll reacts at once.
    wakeup: Arc<Notify>,
    /// Last time the application polled (for `max.poll.interval.ms`).
    last_poll: Arc<parking_lot::Mutex<Instant>>,
    heartbeat: Option<JoinHandle<()>>,
    /// `allow.auto.create.topics`: the leader's metadata lookup of the subscribed
    /// topics asks the broker to create missing ones.
    auto_create_topics: bool,
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.stop_heartbeat();
    }
}

fn millis(d: Duration) -> i32 {
    i32::try_from(d.as_millis()).unwrap_or(i32::MAX)
}

impl Membership {
    /// A membership of the group `link` leads to, not joined yet.
    pub fn new(link: CoordinatorLink, timeouts: MembershipTimeouts) -> Membership {
        Membership {
            link,
            timeouts,
            member_id: String::new(),
            generation: -1,
            flags: Arc::default(),
            wakeup: Arc::default(),
            last_poll: Arc::new(parking_lot::Mutex::new(Instant::now())),
            heartbeat: None,
            auto_create_topics: false,
        }
    }

    /// Whether the group leader's lookup of the subscribed topics asks the broker to
    /// create missing ones (the consumer's `allow.auto.create.topics`).
    pub fn with_auto_create_topics(mut self, allow: bool) -> Membership {
        self.auto_create_topics = allow;
        self
    }

    /// The member id ("" before the first join).
    pub fn member_id(&self) -> &str {
        &self.member_id
    }

    /// The current generation, `None` while not a member of one.
    pub fn generation(&self) -> Option<i32> {
        (self.generation >= 0 && !self.flags.reset.load(Ordering::Acquire))
            .then_some(self.generation)
    }

    /// Whether the next poll must (re)join.
    pub fn needs_join(&self) -> bool {
        self.generation < 0
            || self.flags.rejoin.load(Ordering::Acquire)
            || self.flags.reset.load(Ordering::Acquire)
    }

    /// Asks for a rejoin at the next poll (after a commit saw the generation end);
    /// `reset` drops the member id too (UNKNOWN_MEMBER_ID).
    pub fn request_rejoin(&self, reset: bool) {
        self.flags.rejoin.store(true, Ordering::Release);
        if reset {
            self.flags.reset.store(true, Ordering::Release);
        }
    }

    /// Notified when the heartbeat asks for a rejoin.
    pub fn wakeup(&self) -> Arc<Notify> {
        self.wakeup.clone()
    }

    /// The time of the application's last poll, which the consumer sets and the
    /// heartbeat checks against `max.poll.interval.ms`.
    pub fn poll_clock(&self) -> Arc<parking_lot::Mutex<Instant>> {
        self.last_poll.clone()
    }

    fn stop_heartbeat(&mut self) {
        if let Some(h) = self.heartbeat.take() {
            h.abort();
        }
    }

    /// Joins the group subscribed to `topics` and returns the partitions assigned to this
    /// member; starts the generation's heartbeat. Runs JoinGroup and SyncGroup until both
    /// succeed, retrying what Kafka's consumer retries: MEMBER_ID_REQUIRED (KIP-394, with
    /// the given id), UNKNOWN_MEMBER_ID (as a new member), REBALANCE_IN_PROGRESS /
    /// ILLEGAL_GENERATION from SyncGroup, coordinator moves and broken connections (up to
    /// `retries` times). Other errors (INCONSISTENT_GROUP_PROTOCOL,
    /// INVALID_SESSION_TIMEOUT, GROUP_AUTHORIZATION_FAILED, …) are returned.
    pub async fn join(&mut self, topics: &[String]) -> Result<Vec<(String, i32)>> {
        self.stop_heartbeat();
        if self.flags.reset.load(Ordering::Acquire) {
            self.member_id.clear();
        }
        self.generation = -1;
        self.flags = Arc::default();
        let metadata = encode_subscription(&Subscription {
            topics: topics.to_vec(),
            ..Default::default()
        })?;
        let retries = self.link.client.config().retries;
        let mut backoff = self.link.client.config().retry_backoff;
        let mut failures = 0u32;
        // Protocol steps that are not failures (a member id handed out, a rebalance that
        // restarted) still get a bound, so a misbehaving coordinator cannot spin us.
        let mut steps = 0u32;
        loop {
            steps += 1;
            if steps > 100 {
                return Err(Error::kafka(
                    ResponseError::RebalanceInProgress,
                    format!(
                        "group {} did not settle after 100 join attempts",
                        self.link.group_id
                    ),
                ));
            }
            let outcome = self.join_once(&metadata).await;
            let err = match outcome {
                Ok(JoinOutcome::Joined(assignment)) => {
                    self.start_heartbeat();
                    let mut out: Vec<(String, i32)> = assignment
                        .into_iter()
                        .flat_map(|(t, ps)| ps.into_iter().map(move |p| (t.clone(), p)))
                        .collect();
                    out.sort();
                    out.dedup();
                    return Ok(out);
                }
                Ok(JoinOutcome::Again) => continue,
                Err(e) => e,
            };
            if !err.is_retriable() || failures >= retries {
                return Err(err);
            }
            failures += 1;
            tracing::debug!(group = %self.link.group_id, error = %err, "join failed, retrying");
            self.link.check(&err);
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
    }

    /// One JoinGroup and, when it succeeds, one SyncGroup.
    async fn join_once(&mut self, metadata: &Bytes) -> Result<JoinOutcome> {
        let conn = self.link.connection().await?;
        // Valid for JoinGroup v1–v7: no group_instance_id (v5+) or reason (v8+) is set.
        let request = JoinGroupRequest::default()
            .with_group_id(group_id(&self.link.group_id))
            .with_session_timeout_ms(millis(self.timeouts.session))
            .with_rebalance_timeout_ms(millis(self.timeouts.rebalance))
            .with_member_id(str_bytes(&self.member_id))
            .with_protocol_type(StrBytes::from_static_str(PROTOCOL_TYPE))
            .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default(
            )
            .with_name(StrBytes::from_static_str(RANGE_PROTOCOL))
            .with_metadata(metadata.clone())]);
        let response = conn.send(request).await?;
        match ResponseError::try_from_code(response.error_code) {
            None => {}
            Some(ResponseError::MemberIdRequired) => {
                // KIP-394: the coordinator handed out our id; join again with it.
                self.member_id = response.member_id.to_string();
                return Ok(JoinOutcome::Again);
            }
            Some(ResponseError::UnknownMemberId) => {
                self.member_id.clear();
                return Ok(JoinOutcome::Again);
            }
            Some(ResponseError::RebalanceInProgress) => {
                // Another join of ours is still parked (a static member's, say): retry.
                tokio::time::sleep(self.link.client.config().retry_backoff).await;
                return Ok(JoinOutcome::Again);
            }
            Some(code) => {
                return Err(Error::Kafka {
                    code,
                    message: None,
                })
            }
        }
        self.member_id = response.member_id.to_string();
        let generation = response.generation_id;
        let protocol = response.protocol_name.as_ref().map(|p| p.to_string());
        if protocol.as_deref().is_some_and(|p| p != RANGE_PROTOCOL) {
            return Err(Error::kafka(
                ResponseError::InconsistentGroupProtocol,
                format!("the group chose protocol {protocol:?}; this consumer speaks range"),
            ));
        }
        let assignments = if response.leader == response.member_id {
            self.lead(&response.members).await?
        } else {
            Vec::new()
        };
        tracing::debug!(
            group = %self.link.group_id, member = %self.member_id, generation,
            leader = %response.leader, "joined"
        );
        let version = conn.version(ApiKey::SyncGroup).unwrap_or(0);
        let mut request = SyncGroupRequest::default()
            .with_group_id(group_id(&self.link.group_id))
            .with_generation_id(generation)
            .with_member_id(str_bytes(&self.member_id))
            .with_assignments(assignments);
        if version >= 5 {
            request = request
                .with_protocol_type(Some(StrBytes::from_static_str(PROTOCOL_TYPE)))
                .with_protocol_name(Some(StrBytes::from_static_str(RANGE_PROTOCOL)));
        }
        let response = conn.send(request).await?;
        match ResponseError::try_from_code(response.error_code) {
            None => {}
            Some(ResponseError::RebalanceInProgress | ResponseError::IllegalGeneration) => {
                return Ok(JoinOutcome::Again)
            }
            Some(ResponseError::UnknownMemberId) => {
                self.member_id.clear();
                return Ok(JoinOutcome::Again);
            }
            Some(code) => {
                return Err(Error::Kafka {
                    code,
                    message: None,
                })
            }
        }
        let assignment = decode_assignment(&response.assignment)?;
        self.generation = generation;
        Ok(JoinOutcome::Joined(assignment))
    }

    /// The leader's part: decode every member's subscription, read the subscribed
    /// topics' partition counts and run the range assignor.
    async fn lead(
        &self,
        members: &[JoinGroupResponseMember],
    ) -> Result<Vec<sync_group_request::SyncGroupRequestAssignment>> {
        let mut subscriptions = Vec::with_capacity(members.len());
        for m in members {
            let s = decode_subscription(&m.metadata)?;
            subscriptions.push(MemberSubscription {
                member_id: m.member_id.to_string(),
                group_instance_id: m.group_instance_id.as_ref().map(|i| i.to_string()),
                topics: s.topics,
            });
        }
        let topics: BTreeSet<&str> = subscriptions
            .iter()
            .flat_map(|s| s.topics.iter().map(String::as_str))
            .collect();
        let topics: Vec<&str> = topics.into_iter().collect();
        let metadata = self
            .link
            .client
            .metadata(Some(&topics), self.auto_create_topics)
            .await?;
        let counts: BTreeMap<String, i32> = metadata
            .topics
            .iter()
            .map(|t| {
                let n = i32::try_from(t.partitions.len()).unwrap_or(i32::MAX);
                (t.name.clone(), n)
            })
            .collect();
        let plan = range_assign(&subscriptions, &counts);
        tracing::debug!(group = %self.link.group_id, ?plan, "range assignment");
        plan.into_iter()
            .map(|(member, partitions)| {
                Ok(sync_group_request::SyncGroupRequestAssignment::default()
                    .with_member_id(StrBytes::from_string(member))
                    .with_assignment(encode_assignment(&partitions)?))
            })
            .collect()
    }

    fn start_heartbeat(&mut self) {
        self.stop_heartbeat();
        *self.last_poll.lock() = Instant::now();
        let task = Heartbeat {
            link: self.link.clone(),
            member_id: self.member_id.clone(),
            generation: self.generation,
            timeouts: self.timeouts,
            flags: self.flags.clone(),
            wakeup: self.wakeup.clone(),
            last_poll: self.last_poll.clone(),
        };
        self.heartbeat = Some(tokio::spawn(task.run()));
    }

    /// Leaves the group (LeaveGroup v3+), stops the heartbeat and forgets the member id
    /// and generation. UNKNOWN_MEMBER_ID (already gone) is not an error.
    pub async fn leave(&mut self) -> Result<()> {
        self.stop_heartbeat();
        let member = std::mem::take(&mut self.member_id);
        self.generation = -1;
        if member.is_empty() {
            return Ok(());
        }
        leave_group(&self.link, &member, "the consumer is being closed").await
    }
}

enum JoinOutcome {
    Joined(TopicPartitions),
    /// Join again at once (a protocol step, not a failure).
    Again,
}

/// Check a group response's top-level error code: coordinator errors are returned (and
/// retried by [`CoordinatorLink::call`]), others are left to the caller.
fn coordinator_error(code: i16) -> Result<()> {
    match Error::from_code(code, None) {
        Some(e) if e.needs_metadata_refresh() || e.is_retriable() => Err(e),
        _ => Ok(()),
    }
}

async fn leave_group(link: &CoordinatorLink, member: &str, reason: &str) -> Result<()> {
    let group = link.group_id();
    let response = link
        .call(|conn| async move {
            let version = conn.version(ApiKey::LeaveGroup).unwrap_or(3);
            let reason = (version >= 5).then(|| str_bytes(reason));
            let request = LeaveGroupRequest::default()
                .with_group_id(group_id(group))
                .with_members(vec![leave_group_request::MemberIdentity::default()
                    .with_member_id(str_bytes(member))
                    .with_reason(reason)]);
            let response = conn.send_within(request, link.request_timeout).await?;
            coordinator_error(response.error_code)?;
            Ok(response)
        })
        .await?;
    let codes =
        std::iter::once(response.error_code).chain(response.members.iter().map(|m| m.error_code));
    for code in codes {
        match Error::from_code(code, None) {
            None => {}
            Some(e) if e.kafka_code() == Some(ResponseError::UnknownMemberId) => {}
            Some(e) => return Err(e),
        }
    }
    tracing::debug!(%group, %member, "left the group");
    Ok(())
}

/// The background heartbeat of one generation (KIP-62): a Heartbeat every
/// `heartbeat.interval.ms`; REBALANCE_IN_PROGRESS asks for a rejoin (and keeps
/// heartbeating, which keeps the member alive until it rejoins); ILLEGAL_GENERATION and
/// UNKNOWN_MEMBER_ID / FENCED_INSTANCE_ID end the generation; coordinator moves and
/// broken connections are retried after `retry.backoff.ms`. When the application has
/// not polled for `max.poll.interval.ms` the member leaves the group, as Kafka's
/// consumer does.
struct Heartbeat {
    link: CoordinatorLink,
    member_id: String,
    generation: i32,
    timeouts: MembershipTimeouts,
    flags: Arc<GenerationFlags>,
    wakeup: Arc<Notify>,
    last_poll: Arc<parking_lot::Mutex<Instant>>,
}

impl Heartbeat {
    async fn run(self) {
        let backoff = self.link.client.config().retry_backoff;
        let group = self.link.group_id();
        let mut next = Instant::now() + self.timeouts.heartbeat;
        loop {
            tokio::time::sleep_until(next).await;
            let idle = self.last_poll.lock().elapsed();
            if idle > self.timeouts.rebalance {
                tracing::warn!(
                    %group, member = %self.member_id, ?idle,
                    "no poll within max.poll.interval; leaving the group"
                );
                self.flags.reset.store(true, Ordering::Release);
                self.flags.rejoin.store(true, Ordering::Release);
                self.wakeup.notify_one();
                let reason = "the consumer was not polled within max.poll.interval";
                if let Err(e) = leave_group(&self.link, &self.member_id, reason).await {
                    tracing::debug!(error = %e, "leave after max.poll.interval failed");
                }
                return;
            }
            let sent = Instant::now();
            let outcome = self.beat().await;
            if let Err(e) = &outcome {
                tracing::debug!(%group, error = %e, "heartbeat failed");
                self.link.check(e);
            }
            match outcome {
                Ok(()) => next = sent + self.timeouts.heartbeat,
                Err(e) => match e.kafka_code() {
                    Some(ResponseError::RebalanceInProgress) => {
                        self.flags.rejoin.store(true, Ordering::Release);
                        self.wakeup.notify_one();
                        next = sent + self.timeouts.heartbeat;
                    }
                    Some(ResponseError::IllegalGeneration) => {
                        self.flags.rejoin.store(true, Ordering::Release);
                        self.wakeup.notify_one();
                        return;
                    }
                    Some(ResponseError::UnknownMemberId | ResponseError::FencedInstanceId) => {
                        self.flags.reset.store(true, Ordering::Release);
                        self.flags.rejoin.store(true, Ordering::Release);
                        self.wakeup.notify_one();
                        return;
                    }
                    _ if e.is_retriable() => next = Instant::now() + backoff,
                    _ => next = sent + self.timeouts.heartbeat,
                },
            }
        }
    }

    /// One Heartbeat (valid v0–v4: no group_instance_id).
    async fn beat(&self) -> Result<()> {
        let conn = self.link.connection().await?;
        let request = HeartbeatRequest::default()
            .with_group_id(group_id(self.link.group_id()))
            .with_generation_id(self.generation)
            .with_member_id(str_bytes(&self.member_id));
        Error::check(
            conn.send_within(request, self.link.request_timeout)
                .await?
                .error_code,
        )
    }
}

/// Commits `offsets` (`(topic, partition, next offset to read)`) for the link's group
/// (OffsetCommit v2–v8), as member `member_id` of `generation`, or with `-1`/`""` for a
/// consumer outside group management. Retries coordinator moves; returns the first
/// partition error (REBALANCE_IN_PROGRESS, ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID, …).
pub(crate) async fn commit_offsets(
    link: &CoordinatorLink,
    generation: i32,
    member_id: &str,
    offsets: &[(String, i32, i64)],
) -> Result<()> {
    if offsets.is_empty() {
        return Ok(());
    }
    let group = link.group_id();
    let mut by_topic: BTreeMap<&str, Vec<(i32, i64)>> = BTreeMap::new();
    for (t, p, o) in offsets {
        by_topic.entry(t).or_default().push((*p, *o));
    }
    // Valid for v2–v8: retention_time_ms (v2–v4) stays -1 (the broker's retention),
    // committed_leader_epoch (v6+) -1, group_instance_id (v7+) unset.
    let request = OffsetCommitRequest::default()
        .with_group_id(group_id(group))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(str_bytes(member_id))
        .with_topics(
            by_topic
                .into_iter()
                .map(|(t, ps)| {
                    offset_commit_request::OffsetCommitRequestTopic::default()
                        .with_name(topic_name(t))
                        .with_partitions(
                            ps.into_iter()
                                .map(|(p, o)| {
                                    offset_commit_request::OffsetCommitRequestPartition::default()
                                        .with_partition_index(p)
                                        .with_committed_offset(o)
                                        .with_committed_metadata(Some(StrBytes::default()))
                                })
                                .collect(),
                        )
                })
                .collect(),
        );
    let request = &request;
    link.call(|conn| async move {
        let response = conn
            .send_within(request.clone(), link.request_timeout)
            .await?;
        let first = response
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(move |p| (t, p)))
            .find(|(_, p)| p.error_code != 0);
        match first {
            None => Ok(()),
            Some((t, p)) => Err(Error::from_code(
                p.error_code,
                Some(format!(
                    "committing {}-{} for group {group}",
                    t.name.0, p.partition_index
                )),
            )
            .unwrap_or(Error::Closed)),
        }
    })
    .await
}

/// The offsets the link's group committed for `partitions` (OffsetFetch v1–v7, one
/// group); `None` where nothing is committed. Retries coordinator moves and
/// COORDINATOR_LOAD_IN_PROGRESS.
pub(crate) async fn fetch_committed(
    link: &CoordinatorLink,
    partitions: &[(String, i32)],
) -> Result<Vec<((String, i32), Option<i64>)>> {
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (t, p) in partitions {
        by_topic.entry(t).or_default().push(*p);
    }
    let request = OffsetFetchRequest::default()
        .with_group_id(group_id(link.group_id()))
        .with_topics(Some(
            by_topic
                .into_iter()
                .map(|(t, ps)| {
                    offset_fetch_request::OffsetFetchRequestTopic::default()
                        .with_name(topic_name(t))
                        .with_partition_indexes(ps)
                })
                .collect(),
        ));
    let request = &request;
    let response = link
        .call(|conn| async move {
            let response = conn
                .send_within(request.clone(), link.request_timeout)
                .await?;
            Error::check(response.error_code)?;
            Ok(response)
        })
        .await?;
    let mut found: BTreeMap<(String, i32), Option<i64>> = BTreeMap::new();
    for t in &response.topics {
        for p in &t.partitions {
            let key = (t.name.0.to_string(), p.partition_index);
            match Error::from_code(p.error_code, None) {
                None => {
                    found.insert(key, (p.committed_offset >= 0).then_some(p.committed_offset));
                }
                // Kafka answers a partition of an unknown topic with -1 or this error.
                Some(e) if e.kafka_code() == Some(ResponseError::UnknownTopicOrPartition) => {
                    found.insert(key, None);
                }
                Some(e) => return Err(e),
            }
        }
    }
    Ok(partitions
        .iter()
        .map(|tp| (tp.clone(), found.get(tp).copied().flatten()))
        .collect())
}
