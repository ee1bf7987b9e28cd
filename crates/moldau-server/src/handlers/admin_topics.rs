//! CreateTopics (key 19, v2–7), DeleteTopics (key 20, v1–6), CreatePartitions (key 37,
//! v0–3).
//!
//! Each topic is one operation of the active controller, committed by the metadata
//! quorum before the answer, which waits until this broker's image shows it (so a topic
//! CreateTopics reports is known here). `validate_only` runs the same validation
//! against this broker's image and commits nothing.

use super::{msg, RequestContext};
use super::{AclOperation, ResourceType};
use crate::broker::{Broker, CONTROLLER_TIMEOUT};
use crate::config::BrokerConfig;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    DeleteTopicsRequest, DeleteTopicsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use moldau_metadata::controller::{ControllerResult, MetadataOp, NewTopic};
use moldau_metadata::MetadataImage;
use moldau_protocol::error::ResponseError;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use uuid::Uuid;

/// Runs an admin operation on the active controller and returns this broker's image
/// once it shows the change; with `validate_only`, only checks it against the local
/// image and commits nothing.
pub(crate) async fn submit(
    broker: &Broker,
    validate_only: bool,
    op: MetadataOp,
) -> ControllerResult<Arc<MetadataImage>> {
    if validate_only {
        let image = broker.image();
        return op.records(&image).map(|_| image);
    }
    broker
        .controller
        .submit(op, CONTROLLER_TIMEOUT)
        .await
        .map(|(_, image)| image)
}

fn effective_configs(
    config: &BrokerConfig,
    overrides: &BTreeMap<String, String>,
) -> Vec<CreatableTopicConfigs> {
    BrokerConfig::topic_config_names()
        .filter_map(|name| {
            let (value, source) = config.topic_value(overrides, name)?;
            Some(
                CreatableTopicConfigs::default()
                    .with_name(StrBytes::from_static_str(name))
                    .with_value(Some(StrBytes::from_string(value)))
                    .with_config_source(source),
            )
        })
        .collect()
}

/// Handles CreateTopics.
pub async fn create_topics(
    broker: Arc<Broker>,
    ctx: RequestContext,
    req: CreateTopicsRequest,
) -> CreateTopicsResponse {
    let mut seen = HashSet::new();
    let duplicates: HashSet<String> = req
        .topics
        .iter()
        .map(|t| t.name.0.to_string())
        .filter(|n| !seen.insert(n.clone()))
        .collect();
    let mut results = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name = t.name.0.to_string();
        let mut result = CreatableTopicResult::default()
            .with_name(t.name.clone())
            .with_num_partitions(-1)
            .with_replication_factor(-1);
        if duplicates.contains(&name) {
            results.push(
                result
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_error_message(msg(format!(
                        "Duplicate topic name {name} in the request."
                    ))),
            );
            continue;
        }
        // CREATE on the cluster or on the topic (Kafka's rule).
        if !ctx.visible(
            &broker,
            AclOperation::Create,
            ResourceType::Cluster,
            super::CLUSTER,
        ) && !ctx.allowed(&broker, AclOperation::Create, ResourceType::Topic, &name)
        {
            results.push(
                result
                    .with_error_code(ResponseError::TopicAuthorizationFailed.code())
                    .with_error_message(msg(format!("Not authorized to create topic {name}."))),
            );
            continue;
        }
        let assignments = (!t.assignments.is_empty()).then(|| {
            let mut a = t.assignments.clone();
            a.sort_by_key(|x| x.partition_index);
            a.into_iter()
                .map(|x| x.broker_ids.iter().map(|b| b.0).collect::<Vec<i32>>())
                .collect::<Vec<_>>()
        });
        if assignments.is_some() && (t.num_partitions != -1 || t.replication_factor != -1) {
            results.push(
                result
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_error_message(msg(
                        "Both numPartitions or replicationFactor and manual assignment were set.",
                    )),
            );
            continue;
        }
        let configs: BTreeMap<String, String> = t
            .configs
            .iter()
            .filter_map(|c| {
                c.value
                    .as_ref()
                    .map(|v| (c.name.to_string(), v.to_string()))
            })
            .collect();
        let new_topic = NewTopic {
            name: name.clone(),
            num_partitions: if t.num_partitions == -1 {
                broker.config.num_partitions
            } else {
                t.num_partitions
            },
            replication_factor: if t.replication_factor == -1 {
                broker.config.default_replication_factor
            } else {
                t.replication_factor
            },
            configs: configs.clone(),
            assignments,
        };
        match submit(
            &broker,
            req.validate_only,
            MetadataOp::CreateTopic(new_topic.clone()),
        )
        .await
        {
            Ok(image) => {
                let (partitions, rf, id) = match image.topics.get(&name) {
                    Some(created) => (
                        created.partitions.len() as i32,
                        created
                            .partitions
                            .values()
                            .next()
                            .map_or(0, |p| p.replicas.len() as i16),
                        created.topic_id,
                    ),
                    None => (
                        new_topic.num_partitions,
                        new_topic.replication_factor,
                        Uuid::nil(),
                    ),
                };
                result = result
                    .with_topic_id(id)
                    .with_num_partitions(partitions)
                    .with_replication_factor(rf);
                if ctx.version >= 5 {
                    // The configs are shown only to a principal that may DESCRIBE_CONFIGS
                    // the topic; otherwise TOPIC_AUTHORIZATION_FAILED in their place (Kafka).
                    if ctx.visible(
                        &broker,
                        AclOperation::DescribeConfigs,
                        ResourceType::Topic,
                        &name,
                    ) {
                        result.configs = Some(effective_configs(&broker.config, &configs));
                    } else {
                        result.topic_config_error_code =
                            ResponseError::TopicAuthorizationFailed.code();
                    }
                }
                results.push(result);
            }
            Err(e) => results.push(
                result
                    .with_error_code(e.error.code())
                    .with_error_message(msg(e.message)),
            ),
        }
    }
    CreateTopicsResponse::default().with_topics(results)
}

/// Handles DeleteTopics (by name, or by topic id from v6); DELETE on each topic with an
/// authorizer (else `TOPIC_AUTHORIZATION_FAILED`).
pub async fn delete_topics(
    broker: Arc<Broker>,
    ctx: RequestContext,
    req: DeleteTopicsRequest,
) -> DeleteTopicsResponse {
    let mut wanted: Vec<(Option<String>, Uuid)> = req
        .topic_names
        .iter()
        .map(|n| (Some(n.0.to_string()), Uuid::nil()))
        .collect();
    wanted.extend(
        req.topics
            .iter()
            .map(|t| (t.name.as_ref().map(|n| n.0.to_string()), t.topic_id)),
    );
    let mut responses = Vec::with_capacity(wanted.len());
    for (name, id) in wanted {
        let image = broker.image();
        let resolved = match &name {
            Some(n) => Some(n.clone()),
            None => image.topic_names.get(&id).cloned(),
        };
        let mut result = DeletableTopicResult::default()
            .with_name(
                resolved
                    .clone()
                    .map(|n| TopicName(StrBytes::from_string(n))),
            )
            .with_topic_id(id);
        let Some(target) = resolved else {
            responses.push(result.with_error_code(ResponseError::UnknownTopicId.code()));
            continue;
        };
        if !ctx.allowed(&broker, AclOperation::Delete, ResourceType::Topic, &target) {
            // A topic asked for by id keeps its name to itself (Kafka answers null).
            let result = if name.is_none() {
                result.with_name(None)
            } else {
                result
            };
            responses.push(result.with_error_code(ResponseError::TopicAuthorizationFailed.code()));
            continue;
        }
        if let Some(t) = image.topics.get(&target) {
            result.topic_id = t.topic_id;
        }
        match submit(&broker, false, MetadataOp::DeleteTopic { name: target }).await {
            Ok(_) => responses.push(result),
            Err(e) => responses.push(
                result
                    .with_error_code(e.error.code())
                    .with_error_message(msg(e.message)),
            ),
        }
    }
    DeleteTopicsResponse::default().with_responses(responses)
}

/// Handles CreatePartitions (new partitions placed round-robin, or as the request's
/// `assignments` say); ALTER on each topic with an authorizer (else
/// `TOPIC_AUTHORIZATION_FAILED`).
pub async fn create_partitions(
    broker: Arc<Broker>,
    ctx: RequestContext,
    req: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let mut results = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let result = CreatePartitionsTopicResult::default().with_name(t.name.clone());
        let name = t.name.0.to_string();
        if !ctx.allowed(&broker, AclOperation::Alter, ResourceType::Topic, &name) {
            results.push(result.with_error_code(ResponseError::TopicAuthorizationFailed.code()));
            continue;
        }
        let count = t.count;
        let assignments: Option<Vec<Vec<i32>>> = t.assignments.map(|a| {
            a.iter()
                .map(|x| x.broker_ids.iter().map(|b| b.0).collect())
                .collect()
        });
        let op = MetadataOp::CreatePartitions {
            name,
            count,
            assignments,
        };
        match submit(&broker, req.validate_only, op).await {
            Ok(_) => results.push(result),
            Err(e) => results.push(
                result
                    .with_error_code(e.error.code())
                    .with_error_message(msg(e.message)),
            ),
        }
    }
    CreatePartitionsResponse::default().with_results(results)
}
