//! [`Consumer`]: reads records from partitions it was assigned by hand
//! ([`Consumer::assign`]) or by its consumer group ([`Consumer::subscribe`]), keeps a
//! position per partition and commits positions to the group. Modelled on Kafka's Java
//! `KafkaConsumer`; settings carry its names (`group.id`, `auto.offset.reset`, …).
//!
//! ```no_run
//! # async fn demo() -> moldau_client::Result<()> {
//! use moldau_client::{AutoOffsetReset, Client, ClientConfig, Consumer, ConsumerConfig};
//! use std::time::Duration;
//!
//! let client = Client::connect(ClientConfig::new("localhost:9092")).await?;
//! let mut consumer = Consumer::new(
//!     client,
//!     ConsumerConfig {
//!         group_id: Some("billing".into()),
//!         auto_offset_reset: AutoOffsetReset::Earliest,
//!         enable_auto_commit: false,
//!         ..Default::default()
//!     },
//! )?;
//! consumer.subscribe(&["orders".to_string()])?;
//! for _ in 0..100 {
//!     let records = consumer.poll(Duration::from_secs(1)).await?;
//!     for r in &records {
//!         println!("{}-{}@{}: {:?}", r.topic, r.partition, r.offset, r.value);
//!     }
//!     if !records.is_empty() {
//!         consumer.commit().await?; // positions: one past each record returned
//!     }
//! }
//! consumer.close().await // commits if auto-commit is on, then leaves the group
//! # }
//! ```
//!
//! How a poll works: partitions are fetched concurrently, one Fetch per partition kept in
//! flight by a background task, so a fetch that is still waiting on the broker when a
//! poll returns is picked up by the next poll instead of being thrown away (as Kafka's
//! `Fetcher` keeps completed fetches). A fetch result is used only if the partition's
//! position is still the offset it fetched from, so a [`Consumer::seek`] or a rebalance
//! in between discards it. Records beyond `max_poll_records` wait in a buffer.

use crate::client::{Client, FetchOptions, FetchedPartition, OffsetSpec};
use crate::error::{Error, Result};
use crate::group::{self, CoordinatorLink, Membership, MembershipTimeouts};
use crate::record::{ConsumerRecord, IsolationLevel};
use kafka_protocol::error::ResponseError;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Notify};
use tokio::task::{AbortHandle, JoinHandle};
use tokio::time::Instant;

/// What to do when a partition has no committed offset, or its position is out of the
/// log's range (`auto.offset.reset`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AutoOffsetReset {
    /// Start at the log start offset.
    Earliest,
    /// Start at the log end offset: only records produced from now on.
    #[default]
    Latest,
    /// Fail the poll with OFFSET_OUT_OF_RANGE (Kafka's `NoOffsetForPartitionException`
    /// / `OffsetOutOfRangeException`).
    None,
}

/// A consumer's settings. Names and defaults follow Kafka's Java consumer.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// `group.id`: the group whose coordinator keeps committed offsets and, with
    /// [`Consumer::subscribe`], assigns partitions. `None`: no commits, no groups.
    pub group_id: Option<String>,
    /// `auto.offset.reset` (default [`AutoOffsetReset::Latest`]).
    pub auto_offset_reset: AutoOffsetReset,
    /// `enable.auto.commit` (default true): positions are committed every
    /// `auto_commit_interval` during [`Consumer::poll`], before a rebalance and on
    /// [`Consumer::close`]; only with a `group_id`.
    pub enable_auto_commit: bool,
    /// `auto.commit.interval.ms` (default 5 s).
    pub auto_commit_interval: Duration,
    /// `session.timeout.ms` (default 45 s): the coordinator removes a member it has not
    /// heard from for this long. Must lie within the broker's
    /// `group.min.session.timeout.ms`..`group.max.session.timeout.ms`.
    pub session_timeout: Duration,
    /// `max.poll.interval.ms` (default 300 s): sent as JoinGroup's rebalance timeout (how
    /// long a rebalance waits for members to rejoin); a member not polled for this long
    /// leaves the group.
    pub max_poll_interval: Duration,
    /// `heartbeat.interval.ms` (default 3 s); must be below `session_timeout`.
    pub heartbeat_interval: Duration,
    /// `isolation.level` (default read_uncommitted); overrides `fetch.isolation`.
    pub isolation: IsolationLevel,
    /// Per-partition fetch settings: `max.partition.fetch.bytes` (`max_bytes`),
    /// `fetch.max.wait.ms`, `fetch.min.bytes`.
    pub fetch: FetchOptions,
    /// `max.poll.records` (default 500): most records one [`Consumer::poll`] returns.
    pub max_poll_records: usize,
    /// `metadata.max.age.ms` (default 5 min): how often a subscribed member reads the
    /// partition counts of its topics again; a change (partitions added, a subscribed
    /// topic created or deleted) makes it rejoin, so the new partitions get assigned.
    pub metadata_max_age: Duration,
    /// `allow.auto.create.topics` (default true): looking up a subscribed or assigned
    /// topic that the cluster does not have asks the broker to create it, which it does
    /// when its `auto.create.topics.enable` is on (Kafka's consumer, KIP-361). With
    /// `false`, or when the broker does not create topics, such a topic is
    /// UNKNOWN_TOPIC_OR_PARTITION for an assignment and has no partitions for a
    /// subscription.
    pub allow_auto_create_topics: bool,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            group_id: None,
            auto_offset_reset: AutoOffsetReset::Latest,
            enable_auto_commit: true,
            auto_commit_interval: Duration::from_secs(5),
            session_timeout: Duration::from_secs(45),
            max_poll_interval: Duration::from_secs(300),
            heartbeat_interval: Duration::from_secs(3),
            isolation: IsolationLevel::ReadUncommitted,
            fetch: FetchOptions::default(),
            max_poll_records: 500,
            metadata_max_age: Duration::from_secs(300),
            allow_auto_create_topics: true,
        }
    }
}

/// A topic partition: `(topic, partition index)`.
type Tp = (String, i32);

/// How the consumer gets its partitions (Kafka: the two are mutually exclusive).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Mode {
    Idle,
    /// [`Consumer::assign`].
    Manual,
    /// [`Consumer::subscribe`], to these topics (sorted, deduplicated).
    Subscribed(Vec<String>),
}

/// A finished background fetch.
struct FetchDone {
    tp: Tp,
    /// Which fetch of the partition this was (a seek orphans older ones).
    id: u64,
    /// The offset it fetched from.
    offset: i64,
    result: Result<FetchedPartition>,
}

/// The consumer's side of its group membership.
struct GroupHandle {
    /// Locked by a join under way; free otherwise.
    membership: Arc<tokio::sync::Mutex<Membership>>,
    /// Woken when the heartbeat asks for a rejoin.
    wakeup: Arc<Notify>,
    /// When the application last polled (checked by the heartbeat).
    last_poll: Arc<parking_lot::Mutex<Instant>>,
    /// A join under way in the background: a poll's timeout does not cancel it, the
    /// next poll waits on it again (as Kafka's consumer keeps its JoinGroup in flight).
    joining: Option<JoinHandle<Result<Vec<Tp>>>>,
}

impl Drop for GroupHandle {
    fn drop(&mut self) {
        if let Some(join) = self.joining.take() {
            join.abort();
        }
    }
}

/// Fetched records not yet returned by a poll.
struct Buffered {
    tp: Tp,
    records: VecDeque<ConsumerRecord>,
    /// The position once every record here is returned.
    next_offset: i64,
}

/// Reads records from Kafka partitions, alone ([`Consumer::assign`]) or as a member of
/// a consumer group ([`Consumer::subscribe`]). See the [module docs](self) for an
/// example.
///
/// Positions are offsets of the next record to return, per assigned partition; a
/// commit stores them for the group (Kafka semantics: the committed offset is the next
/// one to read). A consumer is driven by one task (`&mut self`); group heartbeats run in
/// the background between polls.
pub struct Consumer {
    client: Client,
    config: ConsumerConfig,
    mode: Mode,
    /// Connection to `group.id`'s coordinator, when there is a group id.
    link: Option<CoordinatorLink>,
    group: Option<GroupHandle>,
    /// The subscription changed while a member: rejoin at the next poll.
    subscription_changed: bool,
    /// Partition counts of the subscribed topics when last looked at, and when.
    topic_partitions: Option<(BTreeMap<String, usize>, Instant)>,
    assignment: BTreeSet<Tp>,
    positions: HashMap<Tp, i64>,
    inflight: HashMap<Tp, (u64, AbortHandle)>,
    buffered: VecDeque<Buffered>,
    done_tx: mpsc::UnboundedSender<FetchDone>,
    done_rx: mpsc::UnboundedReceiver<FetchDone>,
    next_fetch_id: u64,
    last_commit: Instant,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("group_id", &self.config.group_id)
            .field("mode", &self.mode)
            .field("assignment", &self.assignment)
            .field("positions", &self.positions)
            .finish()
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        for (_, (_, fetch)) in self.inflight.drain() {
            fetch.abort();
        }
    }
}

/// Events a waiting poll reacts to.
enum Wake {
    Fetched(Option<FetchDone>),
    Rejoin,
    Deadline,
}

impl Consumer {
    /// A consumer over `client`, doing nothing until [`Consumer::assign`] or
    /// [`Consumer::subscribe`]. Errors: [`Error::Invalid`] for an empty `group_id`, a
    /// `heartbeat_interval` not below `session_timeout`, or `max_poll_records` 0.
    pub fn new(client: Client, config: ConsumerConfig) -> Result<Consumer> {
        if config.group_id.as_deref() == Some("") {
            return Err(Error::Invalid("group.id must not be empty".into()));
        }
        if config.heartbeat_interval >= config.session_timeout {
            return Err(Error::Invalid(
                "heartbeat.interval.ms must be lower than session.timeout.ms".into(),
            ));
        }
        if config.max_poll_records == 0 {
            return Err(Error::Invalid("max.poll.records must be at least 1".into()));
        }
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let link = config
            .group_id
            .clone()
            .map(|g| CoordinatorLink::new(client.clone(), g, config.max_poll_interval));
        Ok(Consumer {
            client,
            config,
            link,
            mode: Mode::Idle,
            group: None,
            subscription_changed: false,
            topic_partitions: None,
            assignment: BTreeSet::new(),
            positions: HashMap::new(),
            inflight: HashMap::new(),
            buffered: VecDeque::new(),
            done_tx,
            done_rx,
            next_fetch_id: 0,
            last_commit: Instant::now(),
        })
    }

    /// The client underneath.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The configuration.
    pub fn config(&self) -> &ConsumerConfig {
        &self.config
    }

    /// Assigns `partitions` (`(topic, partition)`) by hand, replacing any earlier
    /// assignment; an empty list unassigns everything. No group membership, though
    /// commits still go to `group.id`'s coordinator when one is set. Partitions kept
    /// keep their positions; new ones start (at the next poll) from the group's
    /// committed offset or else `auto.offset.reset`. Whether the partitions exist is
    /// checked by that poll (UNKNOWN_TOPIC_OR_PARTITION).
    ///
    /// Errors: [`Error::Invalid`] while subscribed (call [`Consumer::unsubscribe`]
    /// first), or for an empty topic name or negative partition.
    pub fn assign(&mut self, partitions: &[(String, i32)]) -> Result<()> {
        if matches!(self.mode, Mode::Subscribed(_)) {
            return Err(Error::Invalid(
                "assign while subscribed: unsubscribe first".into(),
            ));
        }
        if let Some((t, p)) = partitions.iter().find(|(t, p)| t.is_empty() || *p < 0) {
            return Err(Error::Invalid(format!("not a partition: '{t}'-{p}")));
        }
        let assignment: BTreeSet<Tp> = partitions.iter().cloned().collect();
        let dropped: Vec<Tp> = self.assignment.difference(&assignment).cloned().collect();
        for tp in &dropped {
            self.forget(tp);
            self.positions.remove(tp);
        }
        self.mode = if assignment.is_empty() {
            Mode::Idle
        } else {
            Mode::Manual
        };
        self.assignment = assignment;
        Ok(())
    }

    /// Subscribes to `topics` as a member of `group.id`; the group's coordinator assigns
    /// partitions with the `range` assignor. The consumer joins (or, when the topics
    /// changed, rejoins) at the next [`Consumer::poll`]. Topics that do not exist get no
    /// partitions.
    ///
    /// Errors: [`Error::Invalid`] without a `group_id`, with no topics, or while
    /// partitions are assigned by hand (assign an empty list first).
    pub fn subscribe(&mut self, topics: &[String]) -> Result<()> {
        let Some(link) = self.link.clone() else {
            return Err(Error::Invalid(
                "subscribe needs a group.id (use assign without one)".into(),
            ));
        };
        if self.mode == Mode::Manual {
            return Err(Error::Invalid(
                "subscribe while partitions are assigned by hand: assign(&[]) first".into(),
            ));
        }
        if topics.is_empty() || topics.iter().any(String::is_empty) {
            return Err(Error::Invalid(
                "subscribe needs topic names (unsubscribe to stop)".into(),
            ));
        }
        let mut topics = topics.to_vec();
        topics.sort();
        topics.dedup();
        if let Mode::Subscribed(old) = &self.mode {
            if *old == topics {
                return Ok(());
            }
            self.subscription_changed = true;
            self.topic_partitions = None;
        }
        self.mode = Mode::Subscribed(topics);
        if self.group.is_none() {
            let timeouts = MembershipTimeouts {
                session: self.config.session_timeout,
                rebalance: self.config.max_poll_interval,
                heartbeat: self.config.heartbeat_interval,
            };
            let membership = Membership::new(link, timeouts)
                .with_auto_create_topics(self.config.allow_auto_create_topics);
            self.group = Some(GroupHandle {
                wakeup: membership.wakeup(),
                last_poll: membership.poll_clock(),
                membership: Arc::new(tokio::sync::Mutex::new(membership)),
                joining: None,
            });
        }
        Ok(())
    }

    /// Stops consuming: when subscribed, commits positions (with auto-commit) and leaves
    /// the group; either way drops every partition. Errors: the commit's or
    /// LeaveGroup's; the consumer is unsubscribed regardless.
    pub async fn unsubscribe(&mut self) -> Result<()> {
        let result = self.commit_and_leave().await;
        self.group = None;
        self.revoke_all();
        self.mode = Mode::Idle;
        self.subscription_changed = false;
        result
    }

    /// The topics subscribed to (sorted), empty when not subscribed.
    pub fn subscription(&self) -> Vec<String> {
        match &self.mode {
            Mode::Subscribed(topics) => topics.clone(),
            _ => Vec::new(),
        }
    }

    /// The partitions assigned now (by hand or by the group), sorted.
    pub fn assignment(&self) -> Vec<(String, i32)> {
        self.assignment.iter().cloned().collect()
    }

    /// The group member id, when subscribed and given one (`None` while a join is
    /// under way).
    pub fn member_id(&self) -> Option<String> {
        let group = self.group.as_ref()?;
        let m = group.membership.try_lock().ok()?;
        Some(m.member_id().to_owned()).filter(|id| !id.is_empty())
    }

    /// The group generation this consumer is a member of, when subscribed and joined
    /// (`None` while a join is under way).
    pub fn generation(&self) -> Option<i32> {
        let group = self.group.as_ref()?;
        let m = group.membership.try_lock().ok()?;
        m.generation()
    }

    /// The offset of the next record a poll returns from `topic`-`partition`; `None` when
    /// the partition is not assigned or its starting position is not known yet (it is
    /// looked up by the first poll after the assignment).
    pub fn position(&self, topic: &str, partition: i32) -> Option<i64> {
        self.positions.get(&(topic.to_owned(), partition)).copied()
    }

    /// Makes the next poll read `topic`-`partition` from `offset`, discarding records
    /// already fetched from elsewhere. An offset outside the log is handled by
    /// `auto.offset.reset` when fetched. Errors: [`Error::Invalid`] when the partition is
    /// not assigned or `offset` is negative.
    pub fn seek(&mut self, topic: &str, partition: i32, offset: i64) -> Result<()> {
        let tp = (topic.to_owned(), partition);
        if !self.assignment.contains(&tp) {
            return Err(Error::Invalid(format!(
                "seek on {topic}-{partition}, which is not assigned"
            )));
        }
        if offset < 0 {
            return Err(Error::Invalid(format!("seek to negative offset {offset}")));
        }
        self.forget(&tp);
        self.positions.insert(tp, offset);
        Ok(())
    }

    /// [`Consumer::seek`] to the offset `spec` names (ListOffsets): the log start, the
    /// log end, or the first record at or after a timestamp (the log end when none is).
    /// Errors: [`Error::Invalid`] when not assigned; ListOffsets errors.
    pub async fn seek_to(&mut self, topic: &str, partition: i32, spec: OffsetSpec) -> Result<()> {
        if !self.assignment.contains(&(topic.to_owned(), partition)) {
            return Err(Error::Invalid(format!(
                "seek on {topic}-{partition}, which is not assigned"
            )));
        }
        let isolation = self.config.isolation;
        let mut offset = self
            .client
            .list_offset(topic, partition, spec, isolation)
            .await?;
        if offset < 0 {
            offset = self
                .client
                .list_offset(topic, partition, OffsetSpec::Latest, isolation)
                .await?;
        }
        self.seek(topic, partition, offset)
    }

    /// Returns the next records of the assigned partitions, waiting up to `timeout` for
    /// some (an empty list when none came). First, when subscribed, (re)joins the group
    /// if it is not a member or a rebalance is under way (committing positions first
    /// with auto-commit). A join runs in the background: when it outlasts `timeout` the
    /// poll returns nothing and the next poll waits on it again, so several consumers
    /// can be polled in turn while their group rebalances. Starting positions of new
    /// partitions come from the group's committed offsets or `auto.offset.reset`.
    /// Positions advance past the records returned; with auto-commit, positions are
    /// committed when `auto_commit_interval` has passed.
    ///
    /// Errors: [`Error::Invalid`] when neither subscribed nor assigned;
    /// UNKNOWN_TOPIC_OR_PARTITION for an assigned partition the cluster does not have;
    /// OFFSET_OUT_OF_RANGE with `auto.offset.reset` none; group errors that retrying
    /// does not cure (INVALID_SESSION_TIMEOUT, GROUP_AUTHORIZATION_FAILED, …); fetch
    /// errors left after the client's retries. Records fetched before an error stay
    /// buffered for the next poll.
    pub async fn poll(&mut self, timeout: Duration) -> Result<Vec<ConsumerRecord>> {
        let deadline = Instant::now() + timeout;
        if self.mode == Mode::Idle {
            return Err(Error::Invalid(
                "poll without a subscription or assigned partitions".into(),
            ));
        }
        if let Some(group) = &self.group {
            *group.last_poll.lock() = Instant::now();
        }
        self.maybe_auto_commit().await;
        loop {
            if !self.ensure_membership(deadline).await? {
                return Ok(Vec::new()); // the join goes on
            }
            self.ensure_positions().await?;
            let records = self.drain();
            // Fetch ahead: partitions with nothing buffered fetch while the caller works.
            self.start_fetches();
            if !records.is_empty() || Instant::now() >= deadline {
                return Ok(records);
            }
            let wakeup = self.group.as_ref().map(|g| g.wakeup.clone());
            let rejoin = async {
                match &wakeup {
                    Some(n) => n.notified().await,
                    None => std::future::pending().await,
                }
            };
            let wake = tokio::select! {
                done = self.done_rx.recv() => Wake::Fetched(done),
                () = rejoin => Wake::Rejoin,
                () = tokio::time::sleep_until(deadline) => Wake::Deadline,
            };
            match wake {
                Wake::Fetched(Some(done)) => {
                    self.absorb(done).await?;
                    while let Ok(done) = self.done_rx.try_recv() {
                        self.absorb(done).await?;
                    }
                }
                // Unreachable (the consumer holds a sender); nothing to absorb.
                Wake::Fetched(None) | Wake::Rejoin | Wake::Deadline => {}
            }
        }
    }

    /// Commits the current positions of every assigned partition (OffsetCommit), as
    /// the group member of the current generation when subscribed, or with generation
    /// -1 and member id "" when assigned by hand.
    ///
    /// Errors: [`Error::Invalid`] without a `group_id`; REBALANCE_IN_PROGRESS when
    /// subscribed but not (yet) a member of a generation; REBALANCE_IN_PROGRESS,
    /// ILLEGAL_GENERATION or UNKNOWN_MEMBER_ID when the group rebalanced (the next poll
    /// rejoins; positions are not committed), and other commit errors.
    pub async fn commit(&mut self) -> Result<()> {
        let offsets = self.current_offsets();
        self.last_commit = Instant::now();
        self.commit_offsets(&offsets).await
    }

    /// Commits `offsets` (`(topic, partition, offset of the next record to read)`)
    /// for the group, without touching positions. Errors as [`Consumer::commit`].
    pub async fn commit_offsets(&mut self, offsets: &[(String, i32, i64)]) -> Result<()> {
        let Some(link) = &self.link else {
            return Err(Error::Invalid("commit needs a group.id".into()));
        };
        let group_id = link.group_id();
        let (generation, member_id) = match &self.mode {
            Mode::Subscribed(_) => match (self.generation(), self.member_id()) {
                (Some(g), Some(m)) => (g, m),
                _ => {
                    return Err(Error::kafka(
                        ResponseError::RebalanceInProgress,
                        format!("not a member of a generation of group {group_id}; poll first"),
                    ))
                }
            },
            _ => (-1, String::new()),
        };
        let result = group::commit_offsets(link, generation, &member_id, offsets).await;
        let membership = self.group.as_ref().map(|g| g.membership.try_lock());
        if let (Err(e), Some(Ok(m))) = (&result, membership) {
            match e.kafka_code() {
                Some(ResponseError::RebalanceInProgress | ResponseError::IllegalGeneration) => {
                    m.request_rejoin(false)
                }
                Some(ResponseError::UnknownMemberId | ResponseError::FencedInstanceId) => {
                    m.request_rejoin(true)
                }
                _ => {}
            }
        }
        result
    }

    /// The offsets the group committed for `partitions` (OffsetFetch); `None` where it
    /// committed none. Errors: [`Error::Invalid`] without a `group_id`; OffsetFetch
    /// errors.
    pub async fn committed(
        &self,
        partitions: &[(String, i32)],
    ) -> Result<Vec<((String, i32), Option<i64>)>> {
        let Some(link) = &self.link else {
            return Err(Error::Invalid("committed needs a group.id".into()));
        };
        group::fetch_committed(link, partitions).await
    }

    /// Closes the consumer: commits positions (with auto-commit), leaves the group when
    /// subscribed, and stops heartbeats and fetches. Errors: the commit's or
    /// LeaveGroup's (both are attempted).
    pub async fn close(mut self) -> Result<()> {
        self.commit_and_leave().await
    }

    async fn commit_and_leave(&mut self) -> Result<()> {
        for (_, (_, fetch)) in self.inflight.drain() {
            fetch.abort();
        }
        let mut result = Ok(());
        let member = match &self.mode {
            Mode::Subscribed(_) => self.generation().is_some(),
            Mode::Manual => true,
            Mode::Idle => false,
        };
        if self.config.enable_auto_commit && self.config.group_id.is_some() && member {
            result = self.commit().await;
        }
        if let Some(group) = self.group.as_mut() {
            if let Some(join) = group.joining.take() {
                join.abort();
                let _ = join.await; // the membership is free once the task is gone
            }
            let left = group.membership.lock().await.leave().await;
            if result.is_ok() {
                result = left;
            }
        }
        result
    }

    /// `(topic, partition, position)` of every assigned partition with a position.
    fn current_offsets(&self) -> Vec<(String, i32, i64)> {
        self.assignment
            .iter()
            .filter_map(|tp| self.positions.get(tp).map(|o| (tp.0.clone(), tp.1, *o)))
            .collect()
    }

    async fn maybe_auto_commit(&mut self) {
        if !self.config.enable_auto_commit
            || self.config.group_id.is_none()
            || self.last_commit.elapsed() < self.config.auto_commit_interval
            || self.positions.is_empty()
        {
            return;
        }
        if let Mode::Subscribed(_) = self.mode {
            if self.generation().is_none() {
                return;
            }
        }
        if let Err(e) = self.commit().await {
            tracing::warn!(error = %e, "auto-commit failed");
        }
    }

    /// Joins the group when subscribed and not a member, or when a rebalance asks for
    /// it; the eager protocol revokes every partition first (after committing their
    /// positions with auto-commit, as Kafka's `onJoinPrepare` does). The join runs as a
    /// task; this waits for it until `deadline`. Returns whether the consumer is ready
    /// to fetch (`false`: the join is still under way).
    async fn ensure_membership(&mut self, deadline: Instant) -> Result<bool> {
        let Mode::Subscribed(topics) = &self.mode else {
            return Ok(true);
        };
        let topics = topics.clone();
        let Some(group) = self.group.as_ref() else {
            return Ok(true);
        };
        if group.joining.is_none() {
            let needs_join = match group.membership.try_lock() {
                Ok(m) => m.needs_join(),
                Err(_) => false, // only a join holds it, and none is under way
            };
            if !self.subscription_changed && !needs_join && !self.metadata_changed(&topics).await {
                return Ok(true);
            }
            if self.config.enable_auto_commit
                && self.generation().is_some()
                && !self.current_offsets().is_empty()
            {
                if let Err(e) = self.commit().await {
                    tracing::warn!(error = %e, "auto-commit before rejoining failed");
                }
            }
            self.revoke_all();
            self.subscription_changed = false;
            let Some(group) = self.group.as_mut() else {
                return Ok(true);
            };
            let membership = group.membership.clone();
            group.joining = Some(tokio::spawn(async move {
                membership.lock().await.join(&topics).await
            }));
        }
        let Some(group) = self.group.as_mut() else {
            return Ok(true);
        };
        let Some(join) = group.joining.as_mut() else {
            return Ok(true);
        };
        let joined = tokio::select! {
            joined = join => joined,
            () = tokio::time::sleep_until(deadline) => return Ok(false),
        };
        group.joining = None;
        let assigned =
            joined.map_err(|e| Error::Invalid(format!("the join task failed: {e}")))??;
        tracing::info!(
            group = self.config.group_id.as_deref().unwrap_or_default(),
            member = self.member_id().unwrap_or_default(),
            generation = ?self.generation(),
            ?assigned,
            "assigned"
        );
        self.assignment = assigned.into_iter().collect();
        Ok(true)
    }

    /// Whether the subscribed topics' partition counts differ from the last look, which
    /// happens at most every `metadata.max.age.ms` (the first look only records them).
    /// Errors reading metadata count as no change; the next look tries again.
    async fn metadata_changed(&mut self, topics: &[String]) -> bool {
        if let Some((_, at)) = &self.topic_partitions {
            if at.elapsed() < self.config.metadata_max_age {
                return false;
            }
        }
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        let auto_create = self.config.allow_auto_create_topics;
        let Ok(meta) = self.client.metadata(Some(&names), auto_create).await else {
            return false;
        };
        let counts: BTreeMap<String, usize> = meta
            .topics
            .into_iter()
            .map(|t| (t.name, t.partitions.len()))
            .collect();
        let before = self
            .topic_partitions
            .replace((counts.clone(), Instant::now()));
        match before {
            Some((old, _)) if old != counts => {
                tracing::info!(before = ?old, now = ?counts, "subscribed topics changed; rejoining");
                true
            }
            _ => false,
        }
    }

    /// Looks up starting positions of assigned partitions that have none: the group's
    /// committed offset, else `auto.offset.reset`. First checks that the cluster has the
    /// partitions, so an unknown topic fails at once instead of after fetch retries.
    async fn ensure_positions(&mut self) -> Result<()> {
        let missing: Vec<Tp> = self
            .assignment
            .iter()
            .filter(|tp| !self.positions.contains_key(*tp))
            .cloned()
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let topics: BTreeSet<&str> = missing.iter().map(|(t, _)| t.as_str()).collect();
        for topic in topics {
            let info = self
                .client
                .topic_with(topic, self.config.allow_auto_create_topics)
                .await?;
            if let Some((t, p)) = missing
                .iter()
                .filter(|(t, _)| t == topic)
                .find(|(_, p)| !info.partitions.iter().any(|i| i.partition == *p))
            {
                return Err(Error::kafka(
                    ResponseError::UnknownTopicOrPartition,
                    format!("{t} has no partition {p}"),
                ));
            }
        }
        let committed = match &self.link {
            Some(link) => group::fetch_committed(link, &missing).await?,
            None => missing.into_iter().map(|tp| (tp, None)).collect(),
        };
        for (tp, offset) in committed {
            let offset = match offset {
                Some(o) => o,
                None => self.reset_offset(&tp, "has no committed offset").await?,
            };
            tracing::debug!(topic = %tp.0, partition = tp.1, offset, "starting position");
            self.positions.insert(tp, offset);
        }
        Ok(())
    }

    /// The offset `auto.offset.reset` picks for `tp`; with `None`, an
    /// OFFSET_OUT_OF_RANGE error saying `why` there is no valid position.
    async fn reset_offset(&self, tp: &Tp, why: &str) -> Result<i64> {
        let spec = match self.config.auto_offset_reset {
            AutoOffsetReset::Earliest => OffsetSpec::Earliest,
            AutoOffsetReset::Latest => OffsetSpec::Latest,
            AutoOffsetReset::None => {
                return Err(Error::kafka(
                    ResponseError::OffsetOutOfRange,
                    format!("{}-{} {why} and auto.offset.reset is none", tp.0, tp.1),
                ))
            }
        };
        self.client
            .list_offset(&tp.0, tp.1, spec, self.config.isolation)
            .await
    }

    /// Starts a background fetch for every assigned partition with a position, no
    /// fetch in flight and nothing buffered.
    fn start_fetches(&mut self) {
        let options = FetchOptions {
            isolation: self.config.isolation,
            ..self.config.fetch
        };
        for tp in &self.assignment {
            let Some(&offset) = self.positions.get(tp) else {
                continue;
            };
            if self.inflight.contains_key(tp) || self.buffered.iter().any(|b| &b.tp == tp) {
                continue;
            }
            self.next_fetch_id += 1;
            let id = self.next_fetch_id;
            let (client, done, tp_) = (self.client.clone(), self.done_tx.clone(), tp.clone());
            let task = tokio::spawn(async move {
                let result = client.fetch(&tp_.0, tp_.1, offset, options).await;
                let _ = done.send(FetchDone {
                    tp: tp_,
                    id,
                    offset,
                    result,
                });
            });
            self.inflight.insert(tp.clone(), (id, task.abort_handle()));
        }
    }

    /// Takes a finished fetch: buffers its records if the partition is still at the
    /// offset fetched from; resets an out-of-range position per `auto.offset.reset`.
    async fn absorb(&mut self, done: FetchDone) -> Result<()> {
        match self.inflight.get(&done.tp) {
            Some((id, _)) if *id == done.id => {
                self.inflight.remove(&done.tp);
            }
            _ => return Ok(()), // orphaned by a seek or a rebalance
        }
        if self.positions.get(&done.tp) != Some(&done.offset) {
            return Ok(());
        }
        match done.result {
            Ok(p) if p.records.is_empty() => {
                // Nothing new, or only control / aborted batches to step over.
                if p.next_offset > done.offset {
                    self.positions.insert(done.tp, p.next_offset);
                }
            }
            Ok(p) => {
                let last = p.records.last().map_or(done.offset, |r| r.offset + 1);
                self.buffered.push_back(Buffered {
                    tp: done.tp,
                    records: p.records.into(),
                    next_offset: p.next_offset.max(last),
                });
            }
            Err(e) if e.kafka_code() == Some(ResponseError::OffsetOutOfRange) => {
                let why = format!("position {} is out of range", done.offset);
                let offset = self.reset_offset(&done.tp, &why).await?;
                tracing::info!(
                    topic = %done.tp.0, partition = done.tp.1, from = done.offset, to = offset,
                    "offset out of range; position reset"
                );
                self.positions.insert(done.tp, offset);
            }
            Err(e) => return Err(e),
        }
        Ok(())
    }

    /// Up to `max_poll_records` buffered records, advancing positions past them.
    fn drain(&mut self) -> Vec<ConsumerRecord> {
        let max = self.config.max_poll_records;
        let mut out: Vec<ConsumerRecord> = Vec::new();
        while out.len() < max {
            let Some(front) = self.buffered.front_mut() else {
                break;
            };
            let take = (max - out.len()).min(front.records.len());
            let before = out.len();
            out.extend(front.records.drain(..take));
            if front.records.is_empty() {
                let next = front.next_offset;
                let tp = front.tp.clone();
                self.buffered.pop_front();
                self.positions.insert(tp, next);
            } else if let Some(last) = out[before..].last() {
                self.positions
                    .insert(front.tp.clone(), last.offset.saturating_add(1));
            }
        }
        out
    }

    /// Drops the fetch in flight and the buffered records of `tp`.
    fn forget(&mut self, tp: &Tp) {
        if let Some((_, fetch)) = self.inflight.remove(tp) {
            fetch.abort();
        }
        self.buffered.retain(|b| &b.tp != tp);
    }

    /// Drops every partition with its position, fetch and buffered records.
    fn revoke_all(&mut self) {
        for (_, (_, fetch)) in self.inflight.drain() {
            fetch.abort();
        }
        self.buffered.clear();
        self.positions.clear();
        self.assignment.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A consumer and its futures can move between tasks (`tokio::spawn`).
    #[allow(dead_code)]
    fn consumer_and_its_futures_are_send(consumer: &mut Consumer) {
        fn send<T: Send>(_: &T) {}
        send(consumer);
        send(&consumer.poll(Duration::ZERO));
        send(&consumer.commit());
        send(&consumer.committed(&[]));
        send(&consumer.seek_to("t", 0, OffsetSpec::Earliest));
    }

    #[test]
    fn defaults_follow_kafka() {
        let c = ConsumerConfig::default();
        assert_eq!(c.auto_offset_reset, AutoOffsetReset::Latest);
        assert!(c.enable_auto_commit);
        assert_eq!(c.auto_commit_interval, Duration::from_secs(5));
        assert_eq!(c.session_timeout, Duration::from_secs(45));
        assert_eq!(c.max_poll_interval, Duration::from_secs(300));
        assert_eq!(c.heartbeat_interval, Duration::from_secs(3));
        assert_eq!(c.isolation, IsolationLevel::ReadUncommitted);
        assert_eq!(c.max_poll_records, 500);
    }
}
