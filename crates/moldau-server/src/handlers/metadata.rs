//! Metadata (key 3), versions 0–12, and DescribeTopicPartitions (key 75), version 0
//! (KIP-966).
//!
//! Answers from this broker's metadata image: the live (unfenced) brokers with their
//! endpoints on the listener the request came in on (as Kafka), the cluster id, the
//! controller id clients send admin requests to (this broker, which forwards them to
//! the active controller; see [`Broker::metadata_controller_id`]),
//! topics with ids, leaders, leader epochs, replicas and ISR. A
//! partition without a leader is answered `LEADER_NOT_AVAILABLE`. A request naming an
//! unknown topic creates it when `auto.create.topics.enable` is true and the request
//! allows it (v4+ flag; always for v0–3). Auto-creation goes through the active
//! controller and waits until this broker's image shows the topic, so the same response
//! carries the new topic's partitions (Kafka answers that round with
//! `LEADER_NOT_AVAILABLE` and makes the client retry); unknown topics otherwise get
//! `UNKNOWN_TOPIC_OR_PARTITION`.

use super::RequestContext;
use crate::broker::{Broker, CONTROLLER_TIMEOUT};
use kafka_protocol::messages::describe_topic_partitions_response::{
    DescribeTopicPartitionsResponsePartition, DescribeTopicPartitionsResponseTopic,
};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    BrokerId, DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse, MetadataRequest,
    MetadataResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use moldau_metadata::controller::{self, MetadataOp, NewTopic};
use moldau_metadata::{MetadataImage, TopicImage};
use moldau_protocol::error::ResponseError;
use std::sync::Arc;
use uuid::Uuid;

/// Kafka's "authorized operations not requested" sentinel.
const OPS_NOT_REQUESTED: i32 = i32::MIN;

fn broker_ids(ids: &[i32]) -> Vec<BrokerId> {
    ids.iter().map(|&i| BrokerId(i)).collect()
}

/// A topic's entry. `stale_leader`: this broker is out of contact with the controller,
/// so partitions it believes it leads are answered without a leader
/// (`LEADER_NOT_AVAILABLE`), sending clients to ask another broker.
fn topic_entry(t: &TopicImage, stale_leader: Option<i32>) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(t.name.clone()))))
        .with_topic_id(t.topic_id)
        .with_is_internal(controller::is_internal_topic(&t.name))
        .with_topic_authorized_operations(OPS_NOT_REQUESTED)
        .with_partitions(
            t.partitions
                .iter()
                .map(|(&i, p)| {
                    let leader = if Some(p.leader) == stale_leader {
                        -1
                    } else {
                        p.leader
                    };
                    MetadataResponsePartition::default()
                        .with_partition_index(i)
                        .with_leader_id(BrokerId(leader))
                        .with_leader_epoch(p.leader_epoch)
                        .with_replica_nodes(broker_ids(&p.replicas))
                        .with_isr_nodes(broker_ids(&p.isr))
                        .with_error_code(if leader < 0 {
                            ResponseError::LeaderNotAvailable.code()
                        } else {
                            0
                        })
                })
                .collect(),
        )
}

/// Creates `names` with broker defaults (auto-creation). Returns the new image; topics
/// that raced with another creation or failed validation are left out.
pub(crate) async fn auto_create(broker: &Broker, names: &[String]) -> Arc<MetadataImage> {
    for name in names {
        let topic = NewTopic {
            name: name.clone(),
            num_partitions: broker.config.num_partitions,
            replication_factor: broker.config.default_replication_factor,
            configs: Default::default(),
            assignments: None,
        };
        match broker
            .controller
            .submit(MetadataOp::CreateTopic(topic), CONTROLLER_TIMEOUT)
            .await
        {
            Ok(_) => tracing::info!(topic = %name, "auto-created topic"),
            Err(e) => tracing::debug!(topic = %name, error = %e, "auto-creation refused"),
        }
    }
    broker.image()
}

/// Handles Metadata. With an authorizer, listing all topics leaves out those the
/// principal may not DESCRIBE; a named one it may not DESCRIBE is answered
/// `TOPIC_AUTHORIZATION_FAILED` whether it exists or not; auto-creation needs CREATE on
/// the cluster or the topic.
pub async fn handle(
    broker: Arc<Broker>,
    ctx: RequestContext,
    req: MetadataRequest,
) -> MetadataResponse {
    use super::{AclOperation, ResourceType};
    let mut image = broker.image();
    let mut topics = Vec::new();
    let stale = broker.out_of_contact().then_some(broker.config.node_id);
    let visible =
        |name: &str| ctx.visible(&broker, AclOperation::Describe, ResourceType::Topic, name);
    match &req.topics {
        // v0 has no null: an empty list means all topics there.
        None => topics.extend(
            image
                .topics
                .values()
                .filter(|t| visible(&t.name))
                .map(|t| topic_entry(t, stale)),
        ),
        Some(list) if list.is_empty() && ctx.version == 0 => topics.extend(
            image
                .topics
                .values()
                .filter(|t| visible(&t.name))
                .map(|t| topic_entry(t, stale)),
        ),
        Some(list) => {
            let allow_auto = ctx.version < 4 || req.allow_auto_topic_creation;
            let may_create = |n: &str| {
                ctx.visible(
                    &broker,
                    AclOperation::Create,
                    ResourceType::Cluster,
                    super::CLUSTER,
                ) || ctx.allowed(&broker, AclOperation::Create, ResourceType::Topic, n)
            };
            let auto = allow_auto && broker.config.auto_create_topics_enable;
            // A missing topic the principal may not create is answered
            // TOPIC_AUTHORIZATION_FAILED when auto-creation would otherwise have made it
            // (Kafka's rule).
            let mut create_denied = std::collections::HashSet::new();
            let missing: Vec<String> = list
                .iter()
                .filter_map(|t| t.name.as_ref().map(|n| n.0.to_string()))
                .filter(|n| !image.topics.contains_key(n))
                .filter(|n| {
                    let ok = visible(n) && may_create(n);
                    if !ok && auto {
                        create_denied.insert(n.clone());
                    }
                    ok
                })
                .collect();
            if auto && !missing.is_empty() {
                let valid: Vec<String> = missing
                    .iter()
                    .filter(|n| {
                        moldau_types::validate_topic_name(n).is_ok() && !n.starts_with("__")
                    })
                    .cloned()
                    .collect();
                image = auto_create(&broker, &valid).await;
            }
            for t in list {
                let by_name = t.name.as_ref().map(|n| n.0.to_string());
                let found = match &by_name {
                    Some(n) => image.topics.get(n),
                    None => image.topic_by_id(&t.topic_id),
                };
                let shown = found.map_or_else(|| by_name.clone(), |t| Some(t.name.clone()));
                let denied = shown.as_deref().is_some_and(|n| {
                    create_denied.contains(n)
                        || !ctx.allowed(&broker, AclOperation::Describe, ResourceType::Topic, n)
                });
                match (found, by_name) {
                    (Some(topic), _) if !denied => topics.push(topic_entry(topic, stale)),
                    (_, name) => {
                        let error = match &name {
                            _ if denied => ResponseError::TopicAuthorizationFailed,
                            Some(n) if moldau_types::validate_topic_name(n).is_err() => {
                                ResponseError::InvalidTopicException
                            }
                            Some(_) => ResponseError::UnknownTopicOrPartition,
                            None => ResponseError::UnknownTopicId,
                        };
                        topics.push(
                            MetadataResponseTopic::default()
                                .with_name(name.map(|n| TopicName(StrBytes::from_string(n))))
                                .with_topic_id(if ctx.version >= 10 {
                                    t.topic_id
                                } else {
                                    Uuid::nil()
                                })
                                .with_error_code(error.code())
                                .with_topic_authorized_operations(OPS_NOT_REQUESTED),
                        );
                    }
                }
            }
        }
    }
    MetadataResponse::default()
        .with_brokers(brokers(&image, &ctx.listener))
        .with_cluster_id(Some(StrBytes::from_string(broker.cluster_id.clone())))
        .with_controller_id(BrokerId(broker.metadata_controller_id()))
        .with_topics(topics)
        .with_cluster_authorized_operations(OPS_NOT_REQUESTED)
}

/// The unfenced brokers with their endpoint on `listener` (brokers without one are
/// left out, as Kafka does).
pub(crate) fn brokers(image: &MetadataImage, listener: &str) -> Vec<MetadataResponseBroker> {
    image
        .brokers
        .values()
        .filter(|b| !b.fenced)
        .filter_map(|b| {
            let e = b.endpoint(listener)?;
            Some(
                MetadataResponseBroker::default()
                    .with_node_id(BrokerId(b.broker_id))
                    .with_host(StrBytes::from_string(e.host.clone()))
                    .with_port(e.port)
                    .with_rack(b.rack.clone().map(StrBytes::from_string)),
            )
        })
        .collect()
}

/// Handles DescribeTopicPartitions (KIP-966): topics in name order, paged by
/// `response_partition_limit` with a cursor. With an authorizer, topics the principal
/// may not DESCRIBE are left out of a full listing and answered
/// `TOPIC_AUTHORIZATION_FAILED` when named.
pub async fn describe_topic_partitions(
    broker: Arc<Broker>,
    ctx: RequestContext,
    req: DescribeTopicPartitionsRequest,
) -> DescribeTopicPartitionsResponse {
    use super::{AclOperation, ResourceType};
    use kafka_protocol::messages::describe_topic_partitions_response::Cursor;
    let image = broker.image();
    let limit = req.response_partition_limit.max(1) as usize;
    let wanted: Vec<String> = if req.topics.is_empty() {
        image
            .topics
            .keys()
            .filter(|n| ctx.visible(&broker, AclOperation::Describe, ResourceType::Topic, n))
            .cloned()
            .collect()
    } else {
        let mut v: Vec<String> = req.topics.iter().map(|t| t.name.0.to_string()).collect();
        v.sort();
        v
    };
    let (start_topic, start_partition) = match &req.cursor {
        Some(c) => (Some(c.topic_name.0.to_string()), c.partition_index),
        None => (None, 0),
    };
    let mut out = Vec::new();
    let mut budget = limit;
    let mut next_cursor = None;
    for name in wanted {
        if let Some(s) = &start_topic {
            if &name < s {
                continue;
            }
        }
        if budget == 0 {
            // The page is full: the next page starts at this topic.
            let first = if start_topic.as_deref() == Some(name.as_str()) {
                start_partition
            } else {
                0
            };
            next_cursor = Some(
                Cursor::default()
                    .with_topic_name(TopicName(StrBytes::from_string(name)))
                    .with_partition_index(first),
            );
            break;
        }
        let denied = !req.topics.is_empty()
            && !ctx.allowed(&broker, AclOperation::Describe, ResourceType::Topic, &name);
        let Some(topic) = image.topics.get(&name).filter(|_| !denied) else {
            let error = if denied {
                ResponseError::TopicAuthorizationFailed
            } else {
                ResponseError::UnknownTopicOrPartition
            };
            out.push(
                DescribeTopicPartitionsResponseTopic::default()
                    .with_name(Some(TopicName(StrBytes::from_string(name))))
                    .with_error_code(error.code())
                    .with_topic_authorized_operations(OPS_NOT_REQUESTED),
            );
            continue;
        };
        let first = if start_topic.as_deref() == Some(name.as_str()) {
            start_partition
        } else {
            0
        };
        let mut partitions = Vec::new();
        for (&i, p) in topic.partitions.range(first..) {
            if budget == 0 {
                next_cursor = Some(
                    Cursor::default()
                        .with_topic_name(TopicName(StrBytes::from_string(name.clone())))
                        .with_partition_index(i),
                );
                break;
            }
            budget -= 1;
            partitions.push(
                DescribeTopicPartitionsResponsePartition::default()
                    .with_partition_index(i)
                    .with_leader_id(BrokerId(p.leader))
                    .with_leader_epoch(p.leader_epoch)
                    .with_replica_nodes(broker_ids(&p.replicas))
                    .with_isr_nodes(broker_ids(&p.isr))
                    // Non-null: the Java admin client streams these lists (KIP-966 ELR).
                    .with_eligible_leader_replicas(Some(Vec::new()))
                    .with_last_known_elr(Some(Vec::new())),
            );
        }
        out.push(
            DescribeTopicPartitionsResponseTopic::default()
                .with_name(Some(TopicName(StrBytes::from_string(name))))
                .with_topic_id(topic.topic_id)
                .with_is_internal(controller::is_internal_topic(&topic.name))
                .with_partitions(partitions)
                .with_topic_authorized_operations(OPS_NOT_REQUESTED),
        );
        if next_cursor.is_some() {
            break;
        }
    }
    DescribeTopicPartitionsResponse::default()
        .with_topics(out)
        .with_next_cursor(next_cursor)
}
