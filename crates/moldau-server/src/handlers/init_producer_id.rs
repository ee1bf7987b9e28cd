//! InitProducerId v0–5 (KIP-98; KIP-360 epoch bumps from v3; KIP-588 PRODUCER_FENCED
//! from v4). Without a transactional id the producer is idempotent only: it gets a
//! fresh producer id with epoch 0 from this broker's block (KIP-730), as Kafka does
//! even when it asks to bump an old one. With one, the transaction coordinator of that
//! id decides (fencing older instances by bumping the epoch).

use super::RequestContext;
use super::{AclOperation, ResourceType};
use crate::broker::Broker;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use moldau_coordinator::txn::InitProducerId;
use moldau_protocol::error::ResponseError;
use std::sync::Arc;

/// Handles InitProducerId.
/// Whether the principal may produce idempotently: IDEMPOTENT_WRITE on the cluster, or
/// WRITE on some topic (Kafka's rule since KIP-679).
fn idempotent_allowed(broker: &Broker, ctx: &RequestContext) -> bool {
    if ctx.visible(
        broker,
        AclOperation::IdempotentWrite,
        ResourceType::Cluster,
        super::CLUSTER,
    ) {
        return true;
    }
    let Some(a) = &broker.config.authorizer else {
        return true;
    };
    let image = broker.image();
    let allowed = moldau_metadata::acl::authorize_any(
        image.acls.values(),
        &ctx.principal,
        &ctx.client_ip(),
        AclOperation::Write,
        ResourceType::Topic,
    ) || (a.allow_if_no_acl
        && !image
            .acls
            .values()
            .any(|b| b.resource_type == ResourceType::Topic));
    if !allowed {
        ctx.allowed_on_cluster(broker, AclOperation::IdempotentWrite);
    }
    allowed
}

pub async fn handle(
    broker: Arc<Broker>,
    ctx: RequestContext,
    req: InitProducerIdRequest,
) -> InitProducerIdResponse {
    // Kafka: an empty transactional id, or only one of producer id and epoch set (v3+),
    // is a malformed request.
    let half_set = ctx.version >= 3 && ((req.producer_id.0 == -1) != (req.producer_epoch == -1));
    let empty_id = req
        .transactional_id
        .as_ref()
        .is_some_and(|id| id.is_empty());
    let result = match req.transactional_id.as_ref() {
        _ if half_set || empty_id => Err(ResponseError::InvalidRequest),
        // With an authorizer: WRITE on the transactional id; an idempotent producer needs
        // IDEMPOTENT_WRITE on the cluster or WRITE on some topic (KIP-679).
        Some(id)
            if !ctx.allowed(
                &broker,
                AclOperation::Write,
                ResourceType::TransactionalId,
                id,
            ) =>
        {
            Err(ResponseError::TransactionalIdAuthorizationFailed)
        }
        None if !idempotent_allowed(&broker, &ctx) => {
            Err(ResponseError::ClusterAuthorizationFailed)
        }
        None => broker
            .txns
            .producer_ids
            .next_id(&broker.controller)
            .await
            .map(|id| (id, 0)),
        Some(id) => {
            // A new id block is a round trip to the controller: take it here, not
            // under the coordinator shard's lock.
            let _ = broker.txns.producer_ids.prefetch(&broker.controller).await;
            let expected = (ctx.version >= 3 && req.producer_id.0 >= 0)
                .then_some((req.producer_id.0, req.producer_epoch));
            let init = InitProducerId {
                transactional_id: id.to_string(),
                transaction_timeout_ms: req.transaction_timeout_ms,
                expected,
            };
            broker.txns.init_producer_id(&broker, init).await
        }
    };
    match result {
        Ok((producer_id, epoch)) => InitProducerIdResponse::default()
            .with_producer_id(ProducerId(producer_id))
            .with_producer_epoch(epoch),
        Err(e) => InitProducerIdResponse::default()
            .with_error_code(fenced_for(e, ctx.version, 4).code())
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1),
    }
}

/// PRODUCER_FENCED came with KIP-588 (InitProducerId v4, EndTxn, AddPartitionsToTxn and
/// AddOffsetsToTxn v2): requests older than `since` get INVALID_PRODUCER_EPOCH for the
/// same condition, as Kafka answers them.
pub(crate) fn fenced_for(e: ResponseError, version: i16, since: i16) -> ResponseError {
    if e == ResponseError::ProducerFenced && version < since {
        ResponseError::InvalidProducerEpoch
    } else {
        e
    }
}
