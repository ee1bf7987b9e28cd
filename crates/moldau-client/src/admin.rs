//! [`Admin`]: topics, configs, groups and offsets, as Kafka's `Admin` client offers them.
//!
//! ```no_run
//! # async fn demo() -> moldau_client::Result<()> {
//! use moldau_client::{Admin, Client, ClientConfig, NewTopic};
//! let admin = Admin::new(Client::connect(ClientConfig::new("localhost:9092")).await?);
//! admin.create_topic(&NewTopic::new("orders", 6)).await?;
//! for t in admin.list_topics(false).await? {
//!     println!("{} has {} partitions", t.name, t.partitions.len());
//! }
//! for lag in admin.group_lag("billing").await? {
//!     println!("{}-{}: lag {}", lag.topic, lag.partition, lag.lag);
//! }
//! # Ok(()) }
//! ```

use crate::client::{BrokerInfo, Client, ClusterMetadata, OffsetSpec, TopicInfo};
use crate::error::{Error, Result};
use crate::names::{group_id, str_bytes, topic_name, transactional_id as transactional_id_of};
use crate::record::IsolationLevel;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    create_topics_request, describe_configs_request, incremental_alter_configs_request,
    offset_fetch_request, CreateTopicsRequest, DeleteGroupsRequest, DeleteTopicsRequest,
    DescribeClusterRequest, DescribeConfigsRequest, DescribeGroupsRequest, DescribeQuorumRequest,
    IncrementalAlterConfigsRequest, ListGroupsRequest, OffsetFetchRequest,
};
use std::collections::BTreeMap;

/// A topic to create (CreateTopics API).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTopic {
    /// Topic name.
    pub name: String,
    /// Partition count; -1 for the broker's `num.partitions`.
    pub partitions: i32,
    /// Replication factor; -1 for the broker's `default.replication.factor`.
    pub replication_factor: i16,
    /// Topic configs (`cleanup.policy`, `retention.ms`, …).
    pub configs: Vec<(String, String)>,
}

impl NewTopic {
    /// `name` with `partitions` partitions, the broker's default replication factor and
    /// no configs.
    pub fn new(name: impl Into<String>, partitions: i32) -> Self {
        NewTopic {
            name: name.into(),
            partitions,
            replication_factor: -1,
            configs: Vec::new(),
        }
    }
}

/// Offsets of one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionOffsets {
    /// Partition index.
    pub partition: i32,
    /// Log start offset (first offset still stored).
    pub log_start_offset: i64,
    /// High watermark (exclusive end of what consumers may read).
    pub high_watermark: i64,
    /// Last stable offset (exclusive end of what read_committed consumers may read).
    pub last_stable_offset: i64,
}

/// A config resource (DescribeConfigs / IncrementalAlterConfigs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigResource {
    /// A topic's configs.
    Topic(String),
    /// A broker's configs, by node id.
    Broker(i32),
}

impl ConfigResource {
    fn wire(&self) -> (i8, String) {
        match self {
            ConfigResource::Topic(t) => (2, t.clone()),
            ConfigResource::Broker(b) => (4, b.to_string()),
        }
    }
}

/// One config entry as DescribeConfigs reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    /// Property name, e.g. `retention.ms`.
    pub name: String,
    /// Value; `None` for a sensitive or unset value.
    pub value: Option<String>,
    /// Whether it cannot be altered.
    pub read_only: bool,
    /// Whether the value is the default (config source 5, DEFAULT_CONFIG).
    pub is_default: bool,
    /// Whether the value is hidden.
    pub sensitive: bool,
}

/// A group as ListGroups reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    /// Group id.
    pub group_id: String,
    /// `Empty`, `Stable`, `PreparingRebalance`, `CompletingRebalance`, `Dead`.
    pub state: String,
    /// `consumer` for consumer groups, empty for groups that only commit offsets.
    pub protocol_type: String,
}

/// A member of a group as DescribeGroups reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDescription {
    /// Member id.
    pub member_id: String,
    /// `group.instance.id` of a static member.
    pub group_instance_id: Option<String>,
    /// `client.id`.
    pub client_id: String,
    /// Host, as the broker saw it (`/127.0.0.1`).
    pub client_host: String,
    /// Assigned partitions per topic (decoded from a `consumer` group's assignment;
    /// empty for other protocol types).
    pub assignment: Vec<(String, Vec<i32>)>,
}

/// A group as DescribeGroups reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    /// Group id.
    pub group_id: String,
    /// Group state.
    pub state: String,
    /// Protocol type, `consumer` for consumer groups.
    pub protocol_type: String,
    /// The chosen assignor (`range`, …).
    pub protocol: String,
    /// Members.
    pub members: Vec<MemberDescription>,
}

/// A group's committed offset and lag on one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
    /// Committed offset (next offset to consume).
    pub committed_offset: i64,
    /// Partition's high watermark.
    pub high_watermark: i64,
    /// `high_watermark - committed_offset`, never negative.
    pub lag: i64,
}

/// A transaction as ListTransactions reports it (KIP-664).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionListing {
    /// `transactional.id`.
    pub transactional_id: String,
    /// Current producer id.
    pub producer_id: i64,
    /// `Empty`, `Ongoing`, `PrepareCommit`, `PrepareAbort`, `CompleteCommit`,
    /// `CompleteAbort`, `Dead`, `PrepareEpochFence`.
    pub state: String,
}

/// A transaction as DescribeTransactions reports it (KIP-664).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionDescription {
    /// `transactional.id`.
    pub transactional_id: String,
    /// State, as in [`TransactionListing::state`].
    pub state: String,
    /// Producer id.
    pub producer_id: i64,
    /// Producer epoch.
    pub producer_epoch: i16,
    /// `transaction.timeout.ms`.
    pub timeout_ms: i32,
    /// When the open transaction started, ms since the epoch; -1 when none is open.
    pub start_time_ms: i64,
    /// Partitions in the open transaction, per topic.
    pub partitions: Vec<(String, Vec<i32>)>,
}

/// The metadata quorum ([`Admin::describe_quorum`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumInfo {
    /// The active controller (the Raft leader).
    pub leader_id: i32,
    /// Its term.
    pub leader_epoch: i32,
    /// The committed metadata offset (exclusive).
    pub high_watermark: i64,
    /// Voters: node id and log end offset (-1 when the leader does not know it).
    pub voters: Vec<(i32, i64)>,
}

/// Administrative operations on a cluster.
#[derive(Debug, Clone)]
pub struct Admin {
    pub(crate) client: Client,
}

impl Admin {
    /// An admin over `client`.
    pub fn new(client: Client) -> Admin {
        Admin { client }
    }

    /// The underlying client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Cluster id, the active controller and every registered broker, fenced ones
    /// included and marked (DescribeCluster v2, KIP-1073; older brokers list live ones
    /// only). `topics` is empty.
    pub async fn describe_cluster(&self) -> Result<ClusterMetadata> {
        let request = DescribeClusterRequest::default().with_include_fenced_brokers(true);
        let response = self.client.send_any(request).await?;
        Error::check_message(response.error_code, response.error_message.as_ref())?;
        let mut brokers: Vec<BrokerInfo> = response
            .brokers
            .iter()
            .map(|b| BrokerInfo {
                node_id: b.broker_id.0,
                host: b.host.to_string(),
                port: b.port,
                rack: b.rack.as_ref().map(|r| r.to_string()),
                fenced: b.is_fenced,
            })
            .collect();
        brokers.sort_by_key(|b| b.node_id);
        Ok(ClusterMetadata {
            cluster_id: Some(response.cluster_id.to_string()),
            controller_id: response.controller_id.0,
            brokers,
            ..ClusterMetadata::default()
        })
    }

    /// The metadata quorum (DescribeQuorum, KIP-595): the active controller, its term,
    /// the committed metadata offset and each voter's log end offset.
    pub async fn describe_quorum(&self) -> Result<QuorumInfo> {
        use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
        let request = DescribeQuorumRequest::default().with_topics(vec![TopicData::default()
            .with_topic_name(topic_name("__cluster_metadata"))
            .with_partitions(vec![PartitionData::default().with_partition_index(0)])]);
        let response = self.client.send_any(request).await?;
        Error::check_message(response.error_code, response.error_message.as_ref())?;
        let p = response
            .topics
            .first()
            .and_then(|t| t.partitions.first())
            .ok_or_else(|| Error::Invalid("DescribeQuorum answered no partition".into()))?;
        Error::check_message(p.error_code, p.error_message.as_ref())?;
        Ok(QuorumInfo {
            leader_id: p.leader_id.0,
            leader_epoch: p.leader_epoch,
            high_watermark: p.high_watermark,
            voters: p
                .current_voters
                .iter()
                .map(|v| (v.replica_id.0, v.log_end_offset))
                .collect(),
        })
    }

    /// Every topic, sorted by name; internal ones only with `include_internal`.
    pub async fn list_topics(&self, include_internal: bool) -> Result<Vec<TopicInfo>> {
        let mut topics = self.client.metadata(None, false).await?.topics;
        topics.retain(|t| include_internal || !t.internal);
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(topics)
    }

    /// Creates a topic (CreateTopics). Errors: TOPIC_ALREADY_EXISTS,
    /// INVALID_PARTITIONS, INVALID_REPLICATION_FACTOR, INVALID_TOPIC_EXCEPTION,
    /// INVALID_CONFIG, …
    pub async fn create_topic(&self, topic: &NewTopic) -> Result<()> {
        let request = CreateTopicsRequest::default()
            .with_timeout_ms(30_000)
            .with_topics(vec![create_topics_request::CreatableTopic::default()
                .with_name(topic_name(&topic.name))
                .with_num_partitions(topic.partitions)
                .with_replication_factor(topic.replication_factor)
                .with_configs(
                    topic
                        .configs
                        .iter()
                        .map(|(k, v)| {
                            create_topics_request::CreatableTopicConfig::default()
                                .with_name(str_bytes(k))
                                .with_value(Some(str_bytes(v)))
                        })
                        .collect(),
                )]);
        let response = self.controller_call(request).await?;
        for t in &response.topics {
            Error::check_message(t.error_code, t.error_message.as_ref())?;
        }
        self.client.invalidate_topic(&topic.name);
        Ok(())
    }

    /// Deletes a topic (DeleteTopics). Errors: UNKNOWN_TOPIC_OR_PARTITION, …
    pub async fn delete_topic(&self, topic: &str) -> Result<()> {
        let request = DeleteTopicsRequest::default()
            .with_timeout_ms(30_000)
            .with_topic_names(vec![topic_name(topic)]);
        let response = self.controller_call(request).await?;
        for t in &response.responses {
            Error::check_message(t.error_code, t.error_message.as_ref())?;
        }
        self.client.invalidate_topic(topic);
        Ok(())
    }

    pub(crate) async fn controller_call<R: kafka_protocol::protocol::Request + Clone>(
        &self,
        request: R,
    ) -> Result<R::Response> {
        self.client
            .retry(None, || async {
                let meta = self.client.metadata(Some(&[]), false).await?;
                let conn = if meta.controller_id >= 0 {
                    self.client.broker(meta.controller_id).await?
                } else {
                    self.client.any_connection().await?
                };
                conn.send(request.clone()).await
            })
            .await
    }

    /// A topic's metadata (UNKNOWN_TOPIC_OR_PARTITION if it does not exist), read fresh.
    pub async fn describe_topic(&self, topic: &str) -> Result<TopicInfo> {
        self.client.invalidate_topic(topic);
        Ok((*self.client.topic(topic).await?).clone())
    }

    /// Log start, high watermark and last stable offset of every partition of `topic`
    /// (ListOffsets earliest, latest, and latest under read_committed).
    ///
    /// Partitions without a leader, or whose leader does not answer, are left out (a
    /// cluster with a broker down still describes the rest).
    pub async fn partition_offsets(&self, topic: &TopicInfo) -> Result<Vec<PartitionOffsets>> {
        let lookups = topic
            .partitions
            .iter()
            .filter(|p| p.leader >= 0)
            .map(|p| async move {
                let c = &self.client;
                let uncommitted = IsolationLevel::ReadUncommitted;
                let (start, end, stable) = futures::try_join!(
                    c.list_offset(&topic.name, p.partition, OffsetSpec::Earliest, uncommitted),
                    c.list_offset(&topic.name, p.partition, OffsetSpec::Latest, uncommitted),
                    c.list_offset(
                        &topic.name,
                        p.partition,
                        OffsetSpec::Latest,
                        IsolationLevel::ReadCommitted
                    ),
                )?;
                Ok::<_, Error>(PartitionOffsets {
                    partition: p.partition,
                    log_start_offset: start,
                    high_watermark: end,
                    last_stable_offset: stable,
                })
            });
        let results = futures::future::join_all(lookups).await;
        let mut offsets = Vec::with_capacity(results.len());
        let mut first_error = None;
        for r in results {
            match r {
                Ok(o) => offsets.push(o),
                Err(e) => first_error = first_error.or(Some(e)),
            }
        }
        match first_error {
            Some(e) if offsets.is_empty() => Err(e),
            _ => Ok(offsets),
        }
    }

    /// Configs of `resource` (DescribeConfigs), sorted by name.
    pub async fn describe_configs(&self, resource: &ConfigResource) -> Result<Vec<ConfigEntry>> {
        let (kind, name) = resource.wire();
        let request = DescribeConfigsRequest::default().with_resources(vec![
            describe_configs_request::DescribeConfigsResource::default()
                .with_resource_type(kind)
                .with_resource_name(str_bytes(&name))
                .with_configuration_keys(None),
        ]);
        let response = self
            .client
            .retry(None, || async {
                let conn = match resource {
                    ConfigResource::Broker(id) => self.client.broker(*id).await?,
                    ConfigResource::Topic(_) => self.client.any_connection().await?,
                };
                conn.send(request.clone()).await
            })
            .await?;
        let mut out = Vec::new();
        for r in response.results {
            Error::check_message(r.error_code, r.error_message.as_ref())?;
            out.extend(r.configs.into_iter().map(|c| ConfigEntry {
                name: c.name.to_string(),
                value: c.value.map(|v| v.to_string()),
                read_only: c.read_only,
                is_default: c.config_source == 5,
                sensitive: c.is_sensitive,
            }));
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Sets (`Some(value)`) or resets to default (`None`) configs of `resource`
    /// (IncrementalAlterConfigs, operations SET and DELETE). Errors: INVALID_CONFIG, …
    pub async fn alter_configs(
        &self,
        resource: &ConfigResource,
        changes: &[(String, Option<String>)],
    ) -> Result<()> {
        let (kind, name) = resource.wire();
        let request = IncrementalAlterConfigsRequest::default().with_resources(vec![
            incremental_alter_configs_request::AlterConfigsResource::default()
                .with_resource_type(kind)
                .with_resource_name(str_bytes(&name))
                .with_configs(
                    changes
                        .iter()
                        .map(|(k, v)| {
                            incremental_alter_configs_request::AlterableConfig::default()
                                .with_name(str_bytes(k))
                                .with_config_operation(if v.is_some() { 0 } else { 1 })
                                .with_value(v.as_deref().map(str_bytes))
                        })
                        .collect(),
                ),
        ]);
        let response = self.controller_call(request).await?;
        for r in &response.responses {
            Error::check_message(r.error_code, r.error_message.as_ref())?;
        }
        Ok(())
    }

    /// Every group on every broker (ListGroups), sorted by id.
    pub async fn list_groups(&self) -> Result<Vec<GroupListing>> {
        // Live brokers, as Metadata lists them (and the client can reach).
        let meta = self.client.metadata(Some(&[]), false).await?;
        let mut out = Vec::new();
        for b in meta.brokers {
            let conn = self.client.broker(b.node_id).await?;
            let response = conn.send(ListGroupsRequest::default()).await?;
            Error::check_message(response.error_code, None)?;
            out.extend(response.groups.into_iter().map(|g| GroupListing {
                group_id: g.group_id.0.to_string(),
                state: g.group_state.to_string(),
                protocol_type: g.protocol_type.to_string(),
            }));
        }
        out.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        out.dedup_by(|a, b| a.group_id == b.group_id);
        Ok(out)
    }

    /// One group's state and members (DescribeGroups at its coordinator). A group that
    /// does not exist comes back in state `Dead` with no members, as Kafka reports it.
    pub async fn describe_group(&self, group: &str) -> Result<GroupDescription> {
        let request = DescribeGroupsRequest::default().with_groups(vec![group_id(group)]);
        let response = self
            .group_call(
                group,
                || request.clone(),
                |r: &kafka_protocol::messages::DescribeGroupsResponse| {
                    r.groups.first().map_or(0, |g| g.error_code)
                },
            )
            .await?;
        let g = response.groups.into_iter().next().ok_or(Error::Kafka {
            code: ResponseError::GroupIdNotFound,
            message: None,
        })?;
        Error::check_message(g.error_code, g.error_message.as_ref())?;
        let consumer = g.protocol_type.as_str() == "consumer";
        Ok(GroupDescription {
            group_id: g.group_id.0.to_string(),
            state: g.group_state.to_string(),
            protocol_type: g.protocol_type.to_string(),
            protocol: g.protocol_data.to_string(),
            members: g
                .members
                .into_iter()
                .map(|m| MemberDescription {
                    assignment: if consumer {
                        crate::group::decode_assignment(&m.member_assignment).unwrap_or_default()
                    } else {
                        Vec::new()
                    },
                    member_id: m.member_id.to_string(),
                    group_instance_id: m.group_instance_id.map(|i| i.to_string()),
                    client_id: m.client_id.to_string(),
                    client_host: m.client_host.to_string(),
                })
                .collect(),
        })
    }

    /// Sends a request to `group`'s coordinator, retrying (with a new FindCoordinator)
    /// while `error_of` reports a retriable error such as NOT_COORDINATOR or
    /// COORDINATOR_LOAD_IN_PROGRESS.
    async fn group_call<R, F, E>(&self, group: &str, request: F, error_of: E) -> Result<R::Response>
    where
        R: kafka_protocol::protocol::Request,
        F: Fn() -> R,
        E: Fn(&R::Response) -> i16,
    {
        self.client
            .retry(None, || async {
                let conn = self.client.coordinator(group, 0).await?;
                let response = conn.send(request()).await?;
                match Error::from_code(error_of(&response), None) {
                    Some(e) if e.is_retriable() => {
                        self.client.invalidate_coordinator(group, 0);
                        Err(e)
                    }
                    _ => Ok(response),
                }
            })
            .await
    }

    /// A group's committed offsets (OffsetFetch for all partitions), sorted by topic
    /// and partition; `(topic, partition, offset)`.
    pub async fn list_group_offsets(&self, group: &str) -> Result<Vec<(String, i32, i64)>> {
        let response = self
            .group_call(
                group,
                || {
                    OffsetFetchRequest::default()
                        .with_group_id(group_id(group))
                        .with_topics(None::<Vec<offset_fetch_request::OffsetFetchRequestTopic>>)
                },
                |r: &kafka_protocol::messages::OffsetFetchResponse| r.error_code,
            )
            .await?;
        Error::check_message(response.error_code, None)?;
        let mut out = Vec::new();
        for t in response.topics {
            for p in t.partitions {
                if p.error_code == 0 && p.committed_offset >= 0 {
                    out.push((t.name.0.to_string(), p.partition_index, p.committed_offset));
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// A group's lag per partition it has committed: high watermark minus committed
    /// offset (never negative), sorted by topic and partition.
    pub async fn group_lag(&self, group: &str) -> Result<Vec<PartitionLag>> {
        let offsets = self.list_group_offsets(group).await?;
        let lookups = offsets
            .into_iter()
            .map(|(topic, partition, committed)| async move {
                let end = self
                    .client
                    .list_offset(
                        &topic,
                        partition,
                        OffsetSpec::Latest,
                        IsolationLevel::ReadUncommitted,
                    )
                    .await?;
                Ok::<_, Error>(PartitionLag {
                    topic,
                    partition,
                    committed_offset: committed,
                    high_watermark: end,
                    lag: (end - committed).max(0),
                })
            });
        futures::future::try_join_all(lookups).await
    }

    /// A group's description and lag together. Errors: GROUP_ID_NOT_FOUND for a group
    /// with no members and no committed offsets (DescribeGroups answers such a group
    /// with state `Dead` rather than an error).
    pub async fn describe_group_lag(
        &self,
        group: &str,
    ) -> Result<(GroupDescription, Vec<PartitionLag>)> {
        let description = self.describe_group(group).await?;
        let lag = self.group_lag(group).await?;
        if description.state == "Dead" && description.members.is_empty() && lag.is_empty() {
            return Err(Error::Kafka {
                code: ResponseError::GroupIdNotFound,
                message: Some(format!("group '{group}' does not exist")),
            });
        }
        Ok((description, lag))
    }

    /// Deletes an empty group (DeleteGroups). Errors: NON_EMPTY_GROUP, GROUP_ID_NOT_FOUND.
    pub async fn delete_group(&self, group: &str) -> Result<()> {
        let response = self
            .group_call(
                group,
                || DeleteGroupsRequest::default().with_groups_names(vec![group_id(group)]),
                |r: &kafka_protocol::messages::DeleteGroupsResponse| {
                    r.results.first().map_or(0, |g| g.error_code)
                },
            )
            .await?;
        for r in &response.results {
            Error::check_message(r.error_code, None)?;
        }
        Ok(())
    }

    /// Every transactional id on every broker (ListTransactions), sorted.
    pub async fn list_transactions(&self) -> Result<Vec<TransactionListing>> {
        // Live brokers, as Metadata lists them (and the client can reach).
        let meta = self.client.metadata(Some(&[]), false).await?;
        let mut out = Vec::new();
        for b in meta.brokers {
            let conn = self.client.broker(b.node_id).await?;
            let response = conn
                .send(kafka_protocol::messages::ListTransactionsRequest::default())
                .await?;
            Error::check_message(response.error_code, None)?;
            out.extend(
                response
                    .transaction_states
                    .into_iter()
                    .map(|t| TransactionListing {
                        transactional_id: t.transactional_id.0.to_string(),
                        producer_id: t.producer_id.0,
                        state: t.transaction_state.to_string(),
                    }),
            );
        }
        out.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
        out.dedup_by(|a, b| a.transactional_id == b.transactional_id);
        Ok(out)
    }

    /// One transactional id's state and open partitions (DescribeTransactions at its
    /// coordinator). Errors: TRANSACTIONAL_ID_NOT_FOUND.
    pub async fn describe_transaction(
        &self,
        transactional_id: &str,
    ) -> Result<TransactionDescription> {
        let id = transactional_id_of(transactional_id);
        let response = self
            .client
            .retry(None, || async {
                let conn = self.client.coordinator(transactional_id, 1).await?;
                let response = conn
                    .send(
                        kafka_protocol::messages::DescribeTransactionsRequest::default()
                            .with_transactional_ids(vec![id.clone()]),
                    )
                    .await?;
                let code = response
                    .transaction_states
                    .first()
                    .map_or(0, |t| t.error_code);
                match Error::from_code(code, None) {
                    Some(e) if e.is_retriable() => {
                        self.client.invalidate_coordinator(transactional_id, 1);
                        Err(e)
                    }
                    _ => Ok(response),
                }
            })
            .await?;
        let t = response
            .transaction_states
            .into_iter()
            .next()
            .ok_or(Error::Kafka {
                code: ResponseError::TransactionalIdNotFound,
                message: None,
            })?;
        Error::check_message(t.error_code, None)?;
        Ok(TransactionDescription {
            transactional_id: t.transactional_id.0.to_string(),
            state: t.transaction_state.to_string(),
            producer_id: t.producer_id.0,
            producer_epoch: t.producer_epoch,
            timeout_ms: t.transaction_timeout_ms,
            start_time_ms: t.transaction_start_time_ms,
            partitions: t
                .topics
                .into_iter()
                .map(|d| (d.topic.0.to_string(), d.partitions))
                .collect(),
        })
    }

    /// Configs of a topic as a map (DescribeConfigs), for display.
    pub async fn topic_configs(&self, topic: &str) -> Result<BTreeMap<String, String>> {
        Ok(self
            .describe_configs(&ConfigResource::Topic(topic.to_owned()))
            .await?
            .into_iter()
            .filter_map(|c| Some((c.name, c.value?)))
            .collect())
    }
}
