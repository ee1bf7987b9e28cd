//! FindCoordinator v0–6: which broker coordinates a group (key type 0) or a
//! transactional id (key type 1). v4+ batches keys (KIP-699).
//!
//! A group maps onto a `__consumer_offsets` partition, a transactional id onto a
//! `__transaction_state` partition, both by [`moldau_coordinator::partition_for`]; the
//! partition's leader is the coordinator. Each topic is created on the first request
//! that needs it, as Kafka does.

use super::{msg, RequestContext};
use crate::broker::Broker;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;
use moldau_coordinator::txn::TRANSACTION_STATE_TOPIC;
use moldau_coordinator::OFFSETS_TOPIC;
use moldau_metadata::MetadataImage;
use moldau_protocol::error::ResponseError;
use std::sync::Arc;

const GROUP: i8 = 0;
const TRANSACTION: i8 = 1;

/// Handles FindCoordinator.
pub async fn handle(
    broker: Arc<Broker>,
    ctx: RequestContext,
    req: FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    let keys: Vec<StrBytes> = if ctx.version >= 4 {
        req.coordinator_keys.clone()
    } else {
        vec![req.key.clone()]
    };
    let topic = match req.key_type {
        GROUP => OFFSETS_TOPIC,
        _ => TRANSACTION_STATE_TOPIC,
    };
    if matches!(req.key_type, GROUP | TRANSACTION) && !broker.image().topics.contains_key(topic) {
        if req.key_type == GROUP {
            broker.groups.ensure_topic(&broker).await;
        } else {
            broker.txns.ensure_topic(&broker).await;
        }
    }
    let image = broker.image();
    // With an authorizer: DESCRIBE on the group or transactional id (Kafka's rule).
    let denied = |key: &str| match req.key_type {
        GROUP => (!ctx.allowed(
            &broker,
            super::AclOperation::Describe,
            super::ResourceType::Group,
            key,
        ))
        .then_some(ResponseError::GroupAuthorizationFailed),
        TRANSACTION => (!ctx.allowed(
            &broker,
            super::AclOperation::Describe,
            super::ResourceType::TransactionalId,
            key,
        ))
        .then_some(ResponseError::TransactionalIdAuthorizationFailed),
        _ => None,
    };
    let coordinators: Vec<Coordinator> = keys
        .into_iter()
        .map(|key| match denied(&key) {
            Some(e) => Coordinator::default()
                .with_key(key)
                .with_node_id(BrokerId(-1))
                .with_host(StrBytes::from_static_str(""))
                .with_port(-1)
                .with_error_code(e.code()),
            None => locate(&image, &ctx.listener, req.key_type, key),
        })
        .collect();
    if ctx.version >= 4 {
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let c = coordinators.into_iter().next().unwrap_or_default();
    let mut resp = FindCoordinatorResponse::default()
        .with_error_code(c.error_code)
        .with_node_id(c.node_id)
        .with_host(c.host)
        .with_port(c.port);
    if ctx.version >= 1 {
        resp = resp.with_error_message(c.error_message);
    }
    resp
}

/// The coordinator of `key`: the leader of its partition of the internal topic, with
/// its endpoint on `listener`. COORDINATOR_NOT_AVAILABLE while the topic does not
/// exist or the partition has no leader.
fn locate(image: &MetadataImage, listener: &str, key_type: i8, key: StrBytes) -> Coordinator {
    let fail = |key: StrBytes, e: ResponseError, message: String| {
        Coordinator::default()
            .with_key(key)
            .with_node_id(BrokerId(-1))
            .with_host(StrBytes::from_static_str(""))
            .with_port(-1)
            .with_error_code(e.code())
            .with_error_message(msg(message))
    };
    let topic = match key_type {
        GROUP => OFFSETS_TOPIC,
        TRANSACTION => TRANSACTION_STATE_TOPIC,
        other => {
            return fail(
                key,
                ResponseError::InvalidRequest,
                format!("unknown coordinator key type {other}"),
            )
        }
    };
    if key.is_empty() {
        return fail(key, ResponseError::InvalidRequest, "empty key".into());
    }
    let Some(t) = image.topics.get(topic) else {
        return fail(
            key,
            ResponseError::CoordinatorNotAvailable,
            format!("{topic} does not exist yet"),
        );
    };
    let p = moldau_coordinator::partition_for(&key, t.partitions.len() as i32);
    let leader = t.partitions.get(&p).map_or(-1, |p| p.leader);
    let endpoint = image
        .brokers
        .get(&leader)
        .filter(|b| !b.fenced)
        .and_then(|b| b.endpoint(listener));
    match endpoint {
        Some(e) => Coordinator::default()
            .with_key(key)
            .with_node_id(BrokerId(leader))
            .with_host(StrBytes::from_string(e.host.clone()))
            .with_port(e.port),
        None => fail(
            key,
            ResponseError::CoordinatorNotAvailable,
            format!("partition {p} of {topic} has no leader"),
        ),
    }
}
