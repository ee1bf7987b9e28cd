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
    if req.key_type == GROUP && broker.groups.partition_count() == 0 {
        let b = broker.clone();
        let _ = tokio::task::spawn_blocking(move || b.groups.ensure_topic(&b)).await;
    }
    if req.key_type == TRANSACTION && broker.txns.partition_count() == 0 {
        let b = broker.clone();
        let _ = tokio::task::spawn_blocking(move || b.txns.ensure_topic(&b)).await;
    }
    let coordinators: Vec<Coordinator> = keys
        .into_iter()
        .map(|key| locate(&broker, req.key_type, key))
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

fn locate(broker: &Broker, key_type: i8, key: StrBytes) -> Coordinator {
    let fail = |key: StrBytes, e: ResponseError, message: String| {
        Coordinator::default()
            .with_key(key)
            .with_node_id(BrokerId(-1))
            .with_host(StrBytes::from_static_str(""))
            .with_port(-1)
            .with_error_code(e.code())
            .with_error_message(msg(message))
    };
    let found = match key_type {
        GROUP => broker.groups.shard_for(&key).map(drop),
        TRANSACTION => broker.txns.shard_for(&key).map(drop),
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
    match found {
        Ok(()) => Coordinator::default()
            .with_key(key)
            .with_node_id(BrokerId(broker.config.node_id))
            .with_host(StrBytes::from_string(broker.advertised_host.clone()))
            .with_port(broker.advertised_port),
        Err(e) => fail(key, e, "no coordinator for this key here yet".into()),
    }
}
