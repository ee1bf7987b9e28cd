//! DescribeConfigs (key 32, v1–4), AlterConfigs (key 33, v0–2) and IncrementalAlterConfigs
//! (key 44, v0–1, KIP-339).
//!
//! Topic configs are described with their effective value and Kafka's `config_source`
//! (1 dynamic topic override, 4 static broker property, 5 default) and, from v3, their
//! type. Topic overrides are changed through the metadata log. Broker configs are
//! described as given at start; dynamic broker configs are not supported yet, so altering
//! one is refused with `INVALID_REQUEST` rather than stored and ignored.

use super::{msg, RequestContext};
use super::{AclOperation, ResourceType};
use crate::broker::Broker;
use crate::config::BrokerConfig;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{
    alter_configs_response, AlterConfigsRequest, AlterConfigsResponse, DescribeConfigsRequest,
    DescribeConfigsResponse, IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};
use kafka_protocol::protocol::StrBytes;
use moldau_metadata::configs::{self, Kind};
use moldau_metadata::controller::{AlterOp, MetadataOp};
use moldau_metadata::ConfigResource;
use moldau_protocol::error::ResponseError;
use std::sync::Arc;

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
const SOURCE_DYNAMIC_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;

fn config_type(kind: Kind) -> i8 {
    match kind {
        Kind::Bool => 1,
        Kind::Enum(_) => 2,
        Kind::Int(_) => 3,
        Kind::Long(_) => 5,
        Kind::Ratio => 6,
        Kind::List(_) => 7,
    }
}

fn entry(
    name: &str,
    value: String,
    source: i8,
    kind: Option<Kind>,
    synonyms: bool,
    config: &BrokerConfig,
) -> DescribeConfigsResourceResult {
    let mut r = DescribeConfigsResourceResult::default()
        .with_name(StrBytes::from_string(name.to_owned()))
        .with_value(Some(StrBytes::from_string(value.clone())))
        .with_config_source(source)
        .with_config_type(kind.map_or(2, config_type));
    if synonyms {
        let mut list = vec![DescribeConfigsSynonym::default()
            .with_name(StrBytes::from_string(name.to_owned()))
            .with_value(Some(StrBytes::from_string(value)))
            .with_source(source)];
        if let Some(def) = configs::topic_config(name) {
            if source == SOURCE_DYNAMIC_TOPIC {
                if let Some(v) = config.properties.get(def.broker_key) {
                    list.push(
                        DescribeConfigsSynonym::default()
                            .with_name(StrBytes::from_static_str(def.broker_key))
                            .with_value(Some(StrBytes::from_string(v.clone())))
                            .with_source(SOURCE_STATIC_BROKER),
                    );
                }
            }
            list.push(
                DescribeConfigsSynonym::default()
                    .with_name(StrBytes::from_static_str(def.broker_key))
                    .with_value(Some(StrBytes::from_static_str(def.default)))
                    .with_source(SOURCE_DEFAULT),
            );
        }
        r.synonyms = list;
    }
    r
}

/// The authorization error for `op` on a config resource, if the principal lacks it:
/// topics need it on the topic, brokers on the cluster.
fn denied(
    broker: &Broker,
    ctx: &RequestContext,
    resource_type: i8,
    name: &str,
    op: AclOperation,
) -> Option<ResponseError> {
    match resource_type {
        RESOURCE_TOPIC => (!ctx.allowed(broker, op, ResourceType::Topic, name))
            .then_some(ResponseError::TopicAuthorizationFailed),
        RESOURCE_BROKER => (!ctx.allowed_on_cluster(broker, op))
            .then_some(ResponseError::ClusterAuthorizationFailed),
        _ => None,
    }
}

fn is_sensitive(name: &str) -> bool {
    crate::config::is_secret(name)
}

/// Handles DescribeConfigs. With an authorizer: DESCRIBE_CONFIGS on the topic (else
/// `TOPIC_AUTHORIZATION_FAILED`) or the cluster for a broker resource (else
/// `CLUSTER_AUTHORIZATION_FAILED`).
pub async fn describe_configs(
    broker: Arc<Broker>,
    ctx: RequestContext,
    req: DescribeConfigsRequest,
) -> DescribeConfigsResponse {
    let image = broker.image();
    let config = &broker.config;
    let results = req
        .resources
        .iter()
        .map(|res| {
            let name = res.resource_name.to_string();
            let wanted = |k: &str| {
                res.configuration_keys
                    .as_ref()
                    .is_none_or(|keys| keys.iter().any(|x| x.as_str() == k))
            };
            let result = DescribeConfigsResult::default()
                .with_resource_type(res.resource_type)
                .with_resource_name(res.resource_name.clone());
            if let Some(denied) = denied(
                &broker,
                &ctx,
                res.resource_type,
                &name,
                AclOperation::DescribeConfigs,
            ) {
                return result.with_error_code(denied.code());
            }
            match res.resource_type {
                RESOURCE_TOPIC => {
                    let Some(topic) = image.topics.get(&name) else {
                        return result
                            .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                            .with_error_message(msg(format!("Topic '{name}' does not exist.")));
                    };
                    let entries = configs::TOPIC_CONFIGS
                        .iter()
                        .filter(|d| wanted(d.name))
                        .filter_map(|d| {
                            let (value, source) = config.topic_value(&topic.configs, d.name)?;
                            Some(entry(
                                d.name,
                                value,
                                source,
                                Some(d.kind),
                                req.include_synonyms,
                                config,
                            ))
                        })
                        .collect();
                    result.with_configs(entries)
                }
                RESOURCE_BROKER if name.is_empty() || name == config.node_id.to_string() => {
                    let mut entries: Vec<_> = config
                        .properties
                        .iter()
                        .filter(|(k, _)| wanted(k))
                        .map(|(k, v)| {
                            let mut e = entry(
                                k,
                                v.clone(),
                                SOURCE_STATIC_BROKER,
                                None,
                                req.include_synonyms,
                                config,
                            );
                            if is_sensitive(k) {
                                // As Kafka: passwords and keys are never sent back.
                                e.value = None;
                                e.is_sensitive = true;
                                e.synonyms.clear();
                            }
                            e
                        })
                        .collect();
                    for d in configs::TOPIC_CONFIGS {
                        if !config.properties.contains_key(d.broker_key) && wanted(d.broker_key) {
                            entries.push(entry(
                                d.broker_key,
                                d.default.to_owned(),
                                SOURCE_DEFAULT,
                                Some(d.kind),
                                false,
                                config,
                            ));
                        }
                    }
                    result.with_configs(entries)
                }
                RESOURCE_BROKER => result
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_error_message(msg(format!("Broker {name} is not this broker."))),
                other => result
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_error_message(msg(format!("Unsupported resource type {other}."))),
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

/// Why a resource's alteration was refused before it reached the controller.
fn refused(code: ResponseError, message: impl Into<String>) -> (i16, Option<StrBytes>) {
    (code.code(), msg(message.into()))
}

/// Submits one resource's alteration: `(error code, message)` for its response.
/// Only topics can be altered: dynamic broker configs are refused with INVALID_REQUEST
/// rather than stored and ignored.
async fn alter_one(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    (resource_type, name): (i8, &str),
    validate_only: bool,
    op: Result<MetadataOp, (i16, Option<StrBytes>)>,
) -> (i16, Option<StrBytes>) {
    if let Some(e) = denied(broker, ctx, resource_type, name, AclOperation::AlterConfigs) {
        return (e.code(), None);
    }
    if resource_type != RESOURCE_TOPIC {
        return refused(
            ResponseError::InvalidRequest,
            "Only topic configs can be altered (dynamic broker configs are not supported yet).",
        );
    }
    let op = match op {
        Ok(op) => op,
        Err(e) => return e,
    };
    match super::admin_topics::submit(broker, validate_only, op).await {
        Ok(_) => (0, None),
        Err(e) => (e.error.code(), msg(e.message)),
    }
}

/// Handles IncrementalAlterConfigs: each config is set, deleted (back to its default),
/// appended to or subtracted from (list configs); the others stay as they are.
pub async fn incremental_alter_configs(
    broker: Arc<Broker>,
    ctx: RequestContext,
    req: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let mut responses = Vec::with_capacity(req.resources.len());
    for res in req.resources {
        let mut ops = Vec::with_capacity(res.configs.len());
        let mut bad_op = None;
        for c in &res.configs {
            let op = match c.config_operation {
                0 => AlterOp::Set,
                1 => AlterOp::Delete,
                2 => AlterOp::Append,
                3 => AlterOp::Subtract,
                other => {
                    bad_op = Some(other);
                    break;
                }
            };
            ops.push((
                c.name.to_string(),
                op,
                c.value.as_ref().map(|v| v.to_string()),
            ));
        }
        let op = match bad_op {
            Some(op) => Err(refused(
                ResponseError::InvalidRequest,
                format!("Unknown config operation {op}."),
            )),
            None => Ok(MetadataOp::AlterConfigs {
                resource: ConfigResource::Topic,
                name: res.resource_name.to_string(),
                ops,
            }),
        };
        let (code, message) = alter_one(
            &broker,
            &ctx,
            (res.resource_type, &res.resource_name),
            req.validate_only,
            op,
        )
        .await;
        responses.push(
            AlterConfigsResourceResponse::default()
                .with_resource_type(res.resource_type)
                .with_resource_name(res.resource_name)
                .with_error_code(code)
                .with_error_message(message),
        );
    }
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

/// Handles AlterConfigs (key 33, v0–2), the API before KIP-339 that librdkafka's
/// `AlterConfigs`, confluent-kafka's `alter_configs` and kafkajs's `alterConfigs` use:
/// the resource's dynamic configs become exactly the ones named, so every override not
/// named returns to its default. A null value or a name given twice is INVALID_REQUEST
/// (as in Kafka); otherwise the errors are IncrementalAlterConfigs' (unknown topic,
/// INVALID_CONFIG, broker resources refused). `validate_only` checks without writing.
pub async fn alter_configs(
    broker: Arc<Broker>,
    ctx: RequestContext,
    req: AlterConfigsRequest,
) -> AlterConfigsResponse {
    let mut responses = Vec::with_capacity(req.resources.len());
    for res in req.resources {
        let mut configs: Vec<(String, String)> = Vec::with_capacity(res.configs.len());
        let mut seen = std::collections::HashSet::with_capacity(res.configs.len());
        let mut problem = None;
        for c in &res.configs {
            let name = c.name.to_string();
            if !seen.insert(c.name.as_str()) {
                problem = Some(format!("Config '{name}' is given more than once."));
                break;
            }
            match &c.value {
                Some(v) => configs.push((name, v.to_string())),
                None => {
                    problem = Some(format!("Null value not supported for config '{name}'."));
                    break;
                }
            }
        }
        let op = match problem {
            Some(p) => Err(refused(ResponseError::InvalidRequest, p)),
            None => Ok(MetadataOp::ReplaceConfigs {
                resource: ConfigResource::Topic,
                name: res.resource_name.to_string(),
                configs,
            }),
        };
        let (code, message) = alter_one(
            &broker,
            &ctx,
            (res.resource_type, &res.resource_name),
            req.validate_only,
            op,
        )
        .await;
        responses.push(
            alter_configs_response::AlterConfigsResourceResponse::default()
                .with_resource_type(res.resource_type)
                .with_resource_name(res.resource_name)
                .with_error_code(code)
                .with_error_message(message),
        );
    }
    AlterConfigsResponse::default().with_responses(responses)
}
