//! [`Client`]: the connections to a cluster and a metadata cache that follows leaders;
//! the shared core under [`Producer`](crate::Producer), [`Consumer`](crate::Consumer)
//! and [`Admin`](crate::Admin).

use crate::connection::Connection;
use crate::error::{Error, Result};
use crate::names::topic_name;
use crate::record::{decode_records, AbortedTxn, ConsumerRecord, IsolationLevel};
use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    fetch_request, list_offsets_request, produce_request, BrokerId, FetchRequest,
    FindCoordinatorRequest, ListOffsetsRequest, MetadataRequest, MetadataResponse, ProduceRequest,
};
use kafka_protocol::protocol::StrBytes;
use parking_lot::RwLock;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// Settings shared by everything built on a [`Client`]. Names follow the Java client's
/// (`bootstrap.servers`, `client.id`, `request.timeout.ms`, `retries`,
/// `retry.backoff.ms`).
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `host:port` of brokers to bootstrap from, tried in order.
    pub bootstrap_servers: Vec<String>,
    /// `client.id` sent in every request header.
    pub client_id: String,
    /// Bound on connecting and on each request (`request.timeout.ms`, default 30 s).
    pub request_timeout: Duration,
    /// How many times a retriable failure is retried (`retries`; default 10).
    pub retries: u32,
    /// Pause before a retry (`retry.backoff.ms`, default 100 ms), doubled per attempt
    /// up to 1 s.
    pub retry_backoff: Duration,
    /// TLS and SASL (`security.protocol`, `ssl.*`, `sasl.*`; default PLAINTEXT).
    pub security: crate::security::Security,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            bootstrap_servers: vec!["localhost:9092".into()],
            client_id: "moldau-client".into(),
            request_timeout: Duration::from_secs(30),
            retries: 10,
            retry_backoff: Duration::from_millis(100),
            security: Default::default(),
        }
    }
}

impl ClientConfig {
    /// A config for `bootstrap` (comma-separated `host:port` list, as
    /// `bootstrap.servers`), other settings default.
    pub fn new(bootstrap: &str) -> Self {
        ClientConfig {
            bootstrap_servers: bootstrap
                .split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect(),
            ..Default::default()
        }
    }

    /// A config from Kafka client properties: `bootstrap.servers` (required),
    /// `client.id`, `request.timeout.ms`, `retries`, `retry.backoff.ms` and the
    /// security properties of [`crate::security::PROPERTIES`]. Any other name is an
    /// [`Error::Invalid`] naming it, so a misspelt setting is never ignored.
    pub fn from_properties(props: &std::collections::BTreeMap<String, String>) -> Result<Self> {
        const OWN: &[&str] = &[
            "bootstrap.servers",
            "client.id",
            "request.timeout.ms",
            "retries",
            "retry.backoff.ms",
        ];
        for name in props.keys() {
            if !OWN.contains(&name.as_str())
                && !crate::security::PROPERTIES.contains(&name.as_str())
            {
                return Err(Error::Invalid(format!(
                    "{name}: not a client property Moldau's client reads"
                )));
            }
        }
        let number = |name: &str| -> Result<Option<u64>> {
            props
                .get(name)
                .map(|v| {
                    v.trim()
                        .parse::<u64>()
                        .map_err(|_| Error::Invalid(format!("{name}: {v:?} is not a number")))
                })
                .transpose()
        };
        let mut config =
            ClientConfig::new(props.get("bootstrap.servers").map_or("", String::as_str));
        if config.bootstrap_servers.is_empty() {
            return Err(Error::Invalid("bootstrap.servers: no broker given".into()));
        }
        if let Some(id) = props.get("client.id") {
            config.client_id = id.clone();
        }
        if let Some(ms) = number("request.timeout.ms")? {
            config.request_timeout = Duration::from_millis(ms);
        }
        if let Some(n) = number("retries")? {
            config.retries = u32::try_from(n).unwrap_or(u32::MAX);
        }
        if let Some(ms) = number("retry.backoff.ms")? {
            config.retry_backoff = Duration::from_millis(ms);
        }
        config.security = crate::security::Security::from_properties(props)?;
        Ok(config)
    }
}

/// A broker as the cluster metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    /// `node.id`.
    pub node_id: i32,
    /// Advertised host.
    pub host: String,
    /// Advertised port.
    pub port: i32,
    /// `broker.rack`, if set.
    pub rack: Option<String>,
    /// Fenced by the controller (not serving); only DescribeCluster v2 reports these.
    pub fenced: bool,
}

/// A partition as the cluster metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    /// Partition index.
    pub partition: i32,
    /// Leader's node id, -1 when there is none.
    pub leader: i32,
    /// Leader epoch.
    pub leader_epoch: i32,
    /// Replica node ids.
    pub replicas: Vec<i32>,
    /// In-sync replica node ids.
    pub isr: Vec<i32>,
}

/// A topic as the cluster metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    /// Topic name.
    pub name: String,
    /// Topic id (KIP-516).
    pub topic_id: uuid::Uuid,
    /// Internal topics: `__consumer_offsets`, `__transaction_state`.
    pub internal: bool,
    /// Partitions, by index.
    pub partitions: Vec<PartitionInfo>,
}

/// A snapshot of cluster metadata (Metadata API).
#[derive(Debug, Clone, Default)]
pub struct ClusterMetadata {
    /// Cluster id.
    pub cluster_id: Option<String>,
    /// Active controller's node id, -1 if unknown.
    pub controller_id: i32,
    /// Live brokers.
    pub brokers: Vec<BrokerInfo>,
    /// Topics asked for (all, when no list was given); topics with errors left out.
    pub topics: Vec<TopicInfo>,
    /// Topics the broker answered with an error code (INVALID_TOPIC_EXCEPTION,
    /// UNKNOWN_TOPIC_OR_PARTITION, LEADER_NOT_AVAILABLE while being created, …).
    pub topic_errors: Vec<(String, i16)>,
}

/// Which offset [`Client::list_offset`] looks up (ListOffsets API).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The log start offset.
    Earliest,
    /// The log end offset (high watermark; last stable offset under read_committed).
    Latest,
    /// The first offset whose timestamp is `>=` this, ms since the epoch.
    Timestamp(i64),
}

impl OffsetSpec {
    fn wire(self) -> i64 {
        match self {
            OffsetSpec::Earliest => -2,
            OffsetSpec::Latest => -1,
            OffsetSpec::Timestamp(ts) => ts,
        }
    }
}

/// What one partition's fetch returned.
#[derive(Debug, Clone, Default)]
pub struct FetchedPartition {
    /// Records at offsets `>=` the fetch offset, in order.
    pub records: Vec<ConsumerRecord>,
    /// Offset to fetch next: one past the last returned record (or past skipped control
    /// and aborted batches); the fetch offset when nothing came back.
    pub next_offset: i64,
    /// High watermark.
    pub high_watermark: i64,
    /// Last stable offset (-1 from brokers that do not report it).
    pub last_stable_offset: i64,
    /// Log start offset (-1 from brokers that do not report it).
    pub log_start_offset: i64,
}

/// Options of one fetch (Fetch API).
#[derive(Debug, Clone, Copy)]
pub struct FetchOptions {
    /// Most bytes of record batches to return, sent as both the partition's limit
    /// (`max.partition.fetch.bytes`) and the request's (`fetch.max.bytes`), since a
    /// fetch here asks for one partition; at least one whole batch comes back even if it
    /// is larger (KIP-74).
    pub max_bytes: i32,
    /// Longest the broker waits for `min_bytes` to accumulate, ms (`fetch.max.wait.ms`).
    pub max_wait_ms: i32,
    /// Bytes the broker waits for before answering (`fetch.min.bytes`).
    pub min_bytes: i32,
    /// Isolation level.
    pub isolation: IsolationLevel,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            max_bytes: 1 << 20,
            max_wait_ms: 500,
            min_bytes: 1,
            isolation: IsolationLevel::ReadUncommitted,
        }
    }
}

/// Broker's answer to one partition's produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProduceAck {
    /// Offset the broker gave the batch's first record (-1 with `acks=0`).
    pub base_offset: i64,
    /// LogAppendTime, ms, or -1 when the topic uses CreateTime.
    pub log_append_time_ms: i64,
}

struct Inner {
    config: ClientConfig,
    /// Connections by node id; bootstrap connections live under negative ids.
    connections: tokio::sync::Mutex<HashMap<i32, Arc<Connection>>>,
    /// Serialises connecting to one broker (the map's lock is not held meanwhile).
    connecting: parking_lot::Mutex<HashMap<i32, Arc<tokio::sync::Mutex<()>>>>,
    brokers: RwLock<HashMap<i32, BrokerInfo>>,
    topics: RwLock<HashMap<String, Arc<TopicInfo>>>,
    /// Coordinator node per `(key type, key)`.
    coordinators: RwLock<HashMap<(i8, String), i32>>,
}

/// A handle on a Kafka cluster: connections to its brokers and a metadata cache.
/// Cheap to clone; clones share connections and cache.
///
/// ```no_run
/// # async fn demo() -> moldau_client::Result<()> {
/// use moldau_client::{Client, ClientConfig, OffsetSpec};
/// let client = Client::connect(ClientConfig::new("localhost:9092")).await?;
/// let end = client.list_offset("orders", 0, OffsetSpec::Latest, Default::default()).await?;
/// println!("orders-0 ends at offset {end}");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("bootstrap", &self.inner.config.bootstrap_servers)
            .finish()
    }
}

impl Client {
    /// Connects to the first reachable bootstrap server and reads the cluster's brokers.
    /// Errors: [`Error::Invalid`] for an empty bootstrap list, else the last server's
    /// connect error.
    pub async fn connect(config: ClientConfig) -> Result<Client> {
        if config.bootstrap_servers.is_empty() {
            return Err(Error::Invalid("no bootstrap servers given".into()));
        }
        let client = Client {
            inner: Arc::new(Inner {
                config,
                connections: Default::default(),
                connecting: Default::default(),
                brokers: Default::default(),
                topics: Default::default(),
                coordinators: Default::default(),
            }),
        };
        client.metadata(Some(&[]), false).await?;
        Ok(client)
    }

    /// The configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// Sends `request` to any broker, retried as [`Client::retry`] does; a connection
    /// that failed is dropped, so the retry opens another (possibly to another broker).
    /// For requests any broker answers (Metadata, DescribeCluster, DescribeQuorum).
    pub async fn send_any<R>(&self, request: R) -> Result<R::Response>
    where
        R: kafka_protocol::protocol::Request + Clone,
    {
        self.retry(None, || async {
            let conn = self.any_connection().await?;
            let r = conn.send(request.clone()).await;
            if r.is_err() {
                self.drop_connection(&conn).await;
            }
            r
        })
        .await
    }

    /// Runs `op` until it succeeds, fails for good, or retries run out; before each retry
    /// it waits `retry.backoff.ms` (doubling, at most 1 s) and, when the error says the
    /// metadata is stale, drops the cached topic `topic` and coordinators.
    pub async fn retry<T, F, Fut>(&self, topic: Option<&str>, mut op: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut backoff = self.inner.config.retry_backoff;
        let mut attempt = 0;
        loop {
            match op().await {
                Ok(v) => return Ok(v),
                Err(e) if e.is_retriable() && attempt < self.inner.config.retries => {
                    attempt += 1;
                    tracing::debug!(error = %e, attempt, "retrying");
                    if e.needs_metadata_refresh() {
                        if let Some(t) = topic {
                            self.inner.topics.write().remove(t);
                        }
                        self.inner.coordinators.write().clear();
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Metadata for `topics` (`None`: every topic; `Some(&[])`: brokers only), creating
    /// missing topics when `auto_create` and the broker allows it. Refreshes the cache.
    pub async fn metadata(
        &self,
        topics: Option<&[&str]>,
        auto_create: bool,
    ) -> Result<ClusterMetadata> {
        let request = MetadataRequest::default()
            .with_topics(topics.map(|ts| {
                ts.iter()
                    .map(|t| {
                        kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
                            .with_name(Some(topic_name(t)))
                    })
                    .collect()
            }))
            .with_allow_auto_topic_creation(auto_create);
        let response = self.send_any(request).await?;
        Ok(self.absorb(response))
    }

    fn absorb(&self, response: MetadataResponse) -> ClusterMetadata {
        let brokers: Vec<BrokerInfo> = response
            .brokers
            .iter()
            .map(|b| BrokerInfo {
                node_id: b.node_id.0,
                host: b.host.to_string(),
                port: b.port,
                rack: b.rack.as_ref().map(|r| r.to_string()),
                fenced: false,
            })
            .collect();
        {
            let mut known = self.inner.brokers.write();
            for b in &brokers {
                known.insert(b.node_id, b.clone());
            }
        }
        let mut topics = Vec::new();
        let mut topic_errors = Vec::new();
        let mut cache = self.inner.topics.write();
        for t in response.topics {
            let Some(topic_name) = t.name.as_ref().map(|n| n.0.to_string()) else {
                continue;
            };
            if t.error_code != 0 {
                cache.remove(&topic_name);
                topic_errors.push((topic_name, t.error_code));
                continue;
            }
            let mut partitions: Vec<PartitionInfo> = t
                .partitions
                .iter()
                .map(|p| PartitionInfo {
                    partition: p.partition_index,
                    leader: p.leader_id.0,
                    leader_epoch: p.leader_epoch,
                    replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
                    isr: p.isr_nodes.iter().map(|b| b.0).collect(),
                })
                .collect();
            partitions.sort_by_key(|p| p.partition);
            let info = Arc::new(TopicInfo {
                name: topic_name.clone(),
                topic_id: t.topic_id,
                internal: t.is_internal,
                partitions,
            });
            cache.insert(topic_name, info.clone());
            topics.push((*info).clone());
        }
        ClusterMetadata {
            cluster_id: response.cluster_id.map(|c| c.to_string()),
            controller_id: response.controller_id.0,
            brokers,
            topics,
            topic_errors,
        }
    }

    /// The topic's metadata, from the cache or (on a miss) the cluster. Errors:
    /// UNKNOWN_TOPIC_OR_PARTITION when the cluster does not have it.
    pub async fn topic(&self, topic: &str) -> Result<Arc<TopicInfo>> {
        self.topic_with(topic, false).await
    }

    /// [`Client::topic`], creating the topic on a miss if the broker allows
    /// auto-creation (`auto.create.topics.enable`). The broker's per-topic error comes
    /// back as is (INVALID_TOPIC_EXCEPTION for a bad name); LEADER_NOT_AVAILABLE, which
    /// a topic being created answers for a moment, is retried.
    pub async fn topic_with(&self, topic: &str, auto_create: bool) -> Result<Arc<TopicInfo>> {
        if let Some(t) = self.inner.topics.read().get(topic) {
            return Ok(t.clone());
        }
        let mut backoff = self.inner.config.retry_backoff;
        let mut attempt = 0;
        loop {
            let meta = self.metadata(Some(&[topic]), auto_create).await?;
            if let Some(t) = meta.topics.into_iter().find(|t| t.name == topic) {
                return Ok(Arc::new(t));
            }
            let code = meta
                .topic_errors
                .iter()
                .find(|(name, _)| name == topic)
                .map_or(ResponseError::UnknownTopicOrPartition.code(), |(_, c)| *c);
            let creating = code == ResponseError::LeaderNotAvailable.code();
            if !creating || attempt >= self.inner.config.retries {
                let message = if code == ResponseError::UnknownTopicOrPartition.code() {
                    format!("topic '{topic}' does not exist")
                } else {
                    format!("topic '{topic}'")
                };
                return Err(
                    Error::from_code(code, Some(message)).unwrap_or(Error::Kafka {
                        code: ResponseError::UnknownTopicOrPartition,
                        message: None,
                    }),
                );
            }
            attempt += 1;
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
    }

    /// Forgets the cached metadata of `topic` (the next use reads it again).
    pub fn invalidate_topic(&self, topic: &str) {
        self.inner.topics.write().remove(topic);
    }

    /// A connection to any broker: an open one if there is, else the known brokers and
    /// then the bootstrap servers, in order.
    pub async fn any_connection(&self) -> Result<Arc<Connection>> {
        {
            let conns = self.inner.connections.lock().await;
            if let Some(c) = conns.values().find(|c| !c.is_closed()) {
                return Ok(c.clone());
            }
        }
        let known: Vec<i32> = self.inner.brokers.read().keys().copied().collect();
        let mut last = None;
        for id in known {
            match self.broker(id).await {
                Ok(c) => return Ok(c),
                Err(e) => last = Some(e),
            }
        }
        for (i, addr) in self.inner.config.bootstrap_servers.iter().enumerate() {
            match self.open(addr).await {
                Ok(c) => {
                    let c = Arc::new(c);
                    self.inner
                        .connections
                        .lock()
                        .await
                        .insert(-1 - i as i32, c.clone());
                    return Ok(c);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| Error::Invalid("no brokers known".into())))
    }

    async fn open(&self, addr: &str) -> Result<Connection> {
        let c = &self.inner.config;
        Connection::connect(addr, &c.client_id, c.request_timeout, &c.security).await
    }

    /// A connection to broker `node_id`, opened (or reopened) as needed.
    pub async fn broker(&self, node_id: i32) -> Result<Arc<Connection>> {
        let alive = |conns: &HashMap<i32, Arc<Connection>>| {
            conns.get(&node_id).filter(|c| !c.is_closed()).cloned()
        };
        if let Some(c) = alive(&*self.inner.connections.lock().await) {
            return Ok(c);
        }
        // One connect per broker at a time, and none under the map's lock: a broker that
        // does not answer delays only the requests meant for it.
        let gate = self
            .inner
            .connecting
            .lock()
            .entry(node_id)
            .or_default()
            .clone();
        let _connecting = gate.lock().await;
        if let Some(c) = alive(&*self.inner.connections.lock().await) {
            return Ok(c);
        }
        let info = self
            .inner
            .brokers
            .read()
            .get(&node_id)
            .cloned()
            .ok_or(Error::Kafka {
                code: ResponseError::BrokerNotAvailable,
                message: Some(format!("broker {node_id} is not in the metadata")),
            })?;
        let c = Arc::new(self.open(&format!("{}:{}", info.host, info.port)).await?);
        self.inner
            .connections
            .lock()
            .await
            .insert(node_id, c.clone());
        Ok(c)
    }

    /// Forgets `conn` so the next use reconnects.
    pub async fn drop_connection(&self, conn: &Arc<Connection>) {
        self.inner
            .connections
            .lock()
            .await
            .retain(|_, c| !Arc::ptr_eq(c, conn));
    }

    /// The connection to the leader of `topic`-`partition`. Errors:
    /// UNKNOWN_TOPIC_OR_PARTITION, LEADER_NOT_AVAILABLE (both retriable).
    pub async fn leader(&self, topic: &str, partition: i32) -> Result<Arc<Connection>> {
        let info = self.topic(topic).await?;
        let p = info
            .partitions
            .iter()
            .find(|p| p.partition == partition)
            .ok_or_else(|| Error::Kafka {
                code: ResponseError::UnknownTopicOrPartition,
                message: Some(format!("{topic} has no partition {partition}")),
            })?;
        if p.leader < 0 {
            return Err(Error::Kafka {
                code: ResponseError::LeaderNotAvailable,
                message: None,
            });
        }
        self.broker(p.leader).await
    }

    /// The connection to the coordinator of `key`: a group (`key_type` 0) or a
    /// transactional id (1), found with FindCoordinator and cached until an error says
    /// it moved.
    pub async fn coordinator(&self, key: &str, key_type: i8) -> Result<Arc<Connection>> {
        let cached = self
            .inner
            .coordinators
            .read()
            .get(&(key_type, key.to_owned()))
            .copied();
        if let Some(node) = cached {
            return self.broker(node).await;
        }
        let conn = self.any_connection().await?;
        let response = conn
            .send(
                FindCoordinatorRequest::default()
                    .with_key(StrBytes::from_string(key.to_owned()))
                    .with_key_type(key_type),
            )
            .await?;
        if let Some(e) = Error::from_code(
            response.error_code,
            response.error_message.map(|m| m.to_string()),
        ) {
            return Err(e);
        }
        self.inner
            .brokers
            .write()
            .entry(response.node_id.0)
            .or_insert(BrokerInfo {
                node_id: response.node_id.0,
                host: response.host.to_string(),
                port: response.port,
                rack: None,
                fenced: false,
            });
        self.inner
            .coordinators
            .write()
            .insert((key_type, key.to_owned()), response.node_id.0);
        self.broker(response.node_id.0).await
    }

    /// Forgets the cached coordinator of `key`.
    pub fn invalidate_coordinator(&self, key: &str, key_type: i8) {
        self.inner
            .coordinators
            .write()
            .remove(&(key_type, key.to_owned()));
    }

    /// Looks up one offset of `topic`-`partition` (ListOffsets), retrying on leader
    /// moves. Returns the offset (-1 when a timestamp is past every record).
    pub async fn list_offset(
        &self,
        topic: &str,
        partition: i32,
        spec: OffsetSpec,
        isolation: IsolationLevel,
    ) -> Result<i64> {
        self.retry(Some(topic), || async {
            let conn = self.leader(topic, partition).await?;
            let request = ListOffsetsRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_isolation_level(isolation.code())
                .with_topics(vec![list_offsets_request::ListOffsetsTopic::default()
                    .with_name(topic_name(topic))
                    .with_partitions(vec![
                        list_offsets_request::ListOffsetsPartition::default()
                            .with_partition_index(partition)
                            .with_timestamp(spec.wire()),
                    ])]);
            let response = conn.send(request).await?;
            let p = response
                .topics
                .first()
                .and_then(|t| t.partitions.first())
                .ok_or_else(|| Error::Connection {
                    addr: conn.addr().to_owned(),
                    reason: "ListOffsets response without the partition".into(),
                })?;
            Error::check(p.error_code)?;
            Ok(p.offset)
        })
        .await
    }

    /// Fetches `topic`-`partition` from `offset` (Fetch), retrying on leader moves.
    /// Errors: OFFSET_OUT_OF_RANGE (not retried) when `offset` is outside the log.
    pub async fn fetch(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        options: FetchOptions,
    ) -> Result<FetchedPartition> {
        self.retry(Some(topic), || async {
            let conn = self.leader(topic, partition).await?;
            let request = FetchRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_max_wait_ms(options.max_wait_ms)
                .with_min_bytes(options.min_bytes)
                .with_max_bytes(options.max_bytes.max(1))
                .with_isolation_level(options.isolation.code())
                .with_session_epoch(-1)
                .with_topics(vec![fetch_request::FetchTopic::default()
                    .with_topic(topic_name(topic))
                    .with_partitions(vec![fetch_request::FetchPartition::default()
                        .with_partition(partition)
                        .with_fetch_offset(offset)
                        .with_partition_max_bytes(options.max_bytes.max(1))])]);
            let response = conn.send(request).await?;
            Error::check(response.error_code)?;
            let p = response
                .responses
                .into_iter()
                .next()
                .and_then(|t| t.partitions.into_iter().next())
                .ok_or_else(|| Error::Connection {
                    addr: conn.addr().to_owned(),
                    reason: "Fetch response without the partition".into(),
                })?;
            Error::check(p.error_code)?;
            let records_bytes = p.records.unwrap_or_default();
            let aborted: Option<Vec<AbortedTxn>> =
                (options.isolation == IsolationLevel::ReadCommitted).then(|| {
                    p.aborted_transactions
                        .unwrap_or_default()
                        .iter()
                        .map(|a| AbortedTxn {
                            producer_id: a.producer_id.0,
                            first_offset: a.first_offset,
                        })
                        .collect()
                });
            let decoded =
                decode_records(topic, partition, &records_bytes, offset, aborted.as_deref())?;
            Ok(FetchedPartition {
                next_offset: decoded.next_offset,
                records: decoded.records,
                high_watermark: p.high_watermark,
                last_stable_offset: p.last_stable_offset,
                log_start_offset: p.log_start_offset,
            })
        })
        .await
    }

    /// Sends one record batch to `topic`-`partition`'s leader (Produce) and returns the
    /// broker's answer. No retry here: a producer that keeps order retries itself.
    /// `acks`: 0, 1 or -1 (all). `transactional_id` for a transaction's batches.
    pub async fn produce_batch(
        &self,
        topic: &str,
        partition: i32,
        batch: Bytes,
        acks: i16,
        timeout: Duration,
        transactional_id: Option<&str>,
    ) -> Result<ProduceAck> {
        let conn = self.leader(topic, partition).await?;
        let request = ProduceRequest::default()
            .with_transactional_id(
                transactional_id.map(|t| StrBytes::from_string(t.to_owned()).into()),
            )
            .with_acks(acks)
            .with_timeout_ms(i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX))
            .with_topic_data(vec![produce_request::TopicProduceData::default()
                .with_name(topic_name(topic))
                .with_partition_data(vec![
                    produce_request::PartitionProduceData::default()
                        .with_index(partition)
                        .with_records(Some(batch)),
                ])]);
        if acks == 0 {
            // The broker sends no response to acks=0; the request is written and done.
            conn.send_no_response(request).await?;
            return Ok(ProduceAck {
                base_offset: -1,
                log_append_time_ms: -1,
            });
        }
        let response = match conn.send(request).await {
            Ok(r) => r,
            Err(e) => {
                self.drop_connection(&conn).await;
                return Err(e);
            }
        };
        let p = response
            .responses
            .first()
            .and_then(|t| t.partition_responses.first())
            .ok_or_else(|| Error::Connection {
                addr: conn.addr().to_owned(),
                reason: "Produce response without the partition".into(),
            })?;
        if let Some(e) = Error::from_code(
            p.error_code,
            p.error_message.as_ref().map(|m| m.to_string()),
        ) {
            if e.needs_metadata_refresh() {
                self.invalidate_topic(topic);
            }
            return Err(e);
        }
        Ok(ProduceAck {
            base_offset: p.base_offset,
            log_append_time_ms: p.log_append_time_ms,
        })
    }
}
