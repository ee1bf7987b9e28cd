//! The transactional producer's requests to its transaction coordinator (KIP-98):
//! AddPartitionsToTxn v0–5 (v4+ batches transactions, KIP-890), AddOffsetsToTxn v0–4
//! and EndTxn v0–5. Each maps the wire struct to a call on the coordinator shard of the
//! transactional id ([`moldau_coordinator::txn::TxnShard`]) and the reply back.

use super::init_producer_id::fenced_for;
use super::RequestContext;
use super::{AclOperation, ResourceType};
use crate::broker::Broker;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, AddPartitionsToTxnRequest,
    AddPartitionsToTxnResponse, EndTxnRequest, EndTxnResponse, TopicName,
};
use moldau_coordinator::txn::{TxnReply, TxnState};
use moldau_coordinator::OFFSETS_TOPIC;
use moldau_protocol::error::ResponseError;
use std::collections::HashMap;
use std::sync::Arc;

/// Adds `partitions` to the transaction; one outcome for all of them.
async fn add_partitions(
    broker: &Arc<Broker>,
    transactional_id: &str,
    producer_id: i64,
    producer_epoch: i16,
    partitions: Vec<(String, i32)>,
) -> Result<(), ResponseError> {
    let txns = &broker.txns;
    let shard = txns.shard_for(transactional_id)?;
    let id = transactional_id.to_owned();
    match txns
        .call(&shard, |sm, now, tx| {
            sm.add_partitions(now, &id, producer_id, producer_epoch, partitions, tx)
        })
        .await
    {
        Some(TxnReply::AddPartitions(r)) => r,
        _ => Err(ResponseError::NotCoordinator),
    }
}

/// One transaction of an AddPartitionsToTxn request: partitions of unknown topics get
/// UNKNOWN_TOPIC_OR_PARTITION and the rest OPERATION_NOT_ATTEMPTED (Kafka); otherwise
/// all get the coordinator's answer. `verify_only` (v4+, sent by brokers) only checks
/// that the partitions are already in the transaction.
#[allow(clippy::too_many_arguments)]
async fn one_transaction(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    version: i16,
    transactional_id: &str,
    producer_id: i64,
    producer_epoch: i16,
    verify_only: bool,
    topics: &[(TopicName, Vec<i32>)],
) -> Vec<AddPartitionsToTxnTopicResult> {
    let image = broker.image();
    let mut unknown = HashMap::new();
    let mut partitions = Vec::new();
    // With an authorizer: WRITE on the transactional id (else every partition is
    // TRANSACTIONAL_ID_AUTHORIZATION_FAILED) and on each topic (else its partitions are
    // TOPIC_AUTHORIZATION_FAILED and the others OPERATION_NOT_ATTEMPTED).
    let txn_denied = !ctx.allowed(
        broker,
        AclOperation::Write,
        ResourceType::TransactionalId,
        transactional_id,
    );
    for (name, parts) in topics {
        let topic = image.topics.get(name.as_str());
        let topic_denied =
            !txn_denied && !ctx.allowed(broker, AclOperation::Write, ResourceType::Topic, name);
        for &p in parts {
            if txn_denied {
                unknown.insert(
                    (name.to_string(), p),
                    ResponseError::TransactionalIdAuthorizationFailed,
                );
            } else if topic_denied {
                unknown.insert(
                    (name.to_string(), p),
                    ResponseError::TopicAuthorizationFailed,
                );
            } else if topic.is_some_and(|t| t.partitions.contains_key(&p)) {
                partitions.push((name.to_string(), p));
            } else {
                unknown.insert(
                    (name.to_string(), p),
                    ResponseError::UnknownTopicOrPartition,
                );
            }
        }
    }
    let outcome: Result<(), ResponseError> = if !unknown.is_empty() {
        Err(ResponseError::OperationNotAttempted)
    } else if verify_only {
        verify(
            broker,
            transactional_id,
            producer_id,
            producer_epoch,
            &partitions,
        )
    } else {
        add_partitions(
            broker,
            transactional_id,
            producer_id,
            producer_epoch,
            partitions,
        )
        .await
    };
    let outcome = outcome.map_err(|e| fenced_for(e, version, 2));
    topics
        .iter()
        .map(|(name, parts)| {
            let results = parts
                .iter()
                .map(|&p| {
                    let e = unknown
                        .get(&(name.to_string(), p))
                        .copied()
                        .or(outcome.err());
                    AddPartitionsToTxnPartitionResult::default()
                        .with_partition_index(p)
                        .with_partition_error_code(e.map_or(0, |e| e.code()))
                })
                .collect();
            AddPartitionsToTxnTopicResult::default()
                .with_name(name.clone())
                .with_results_by_partition(results)
        })
        .collect()
}

/// KIP-890 verification: the producer is current and every partition is already part
/// of its ongoing transaction (INVALID_TXN_STATE otherwise).
fn verify(
    broker: &Broker,
    transactional_id: &str,
    producer_id: i64,
    producer_epoch: i16,
    partitions: &[(String, i32)],
) -> Result<(), ResponseError> {
    let (_, described) = broker
        .txns
        .describe(&[transactional_id.to_owned()])
        .into_iter()
        .next()
        .ok_or(ResponseError::InvalidProducerIdMapping)?;
    let d = described.map_err(|_| ResponseError::InvalidProducerIdMapping)?;
    if d.producer_id != producer_id {
        return Err(ResponseError::InvalidProducerIdMapping);
    }
    if d.producer_epoch != producer_epoch {
        return Err(ResponseError::ProducerFenced);
    }
    let contains =
        |(topic, p): &(String, i32)| d.topics.iter().any(|(t, ps)| t == topic && ps.contains(p));
    if d.state != TxnState::Ongoing || !partitions.iter().all(contains) {
        return Err(ResponseError::InvalidTxnState);
    }
    Ok(())
}

/// Handles AddPartitionsToTxn.
pub async fn add_partitions_to_txn(
    broker: Arc<Broker>,
    ctx: RequestContext,
    req: AddPartitionsToTxnRequest,
) -> AddPartitionsToTxnResponse {
    let v = ctx.version;
    if v <= 3 {
        let topics: Vec<(TopicName, Vec<i32>)> = req
            .v3_and_below_topics
            .iter()
            .map(|t| (t.name.clone(), t.partitions.clone()))
            .collect();
        let results = one_transaction(
            &broker,
            &ctx,
            v,
            &req.v3_and_below_transactional_id,
            req.v3_and_below_producer_id.0,
            req.v3_and_below_producer_epoch,
            false,
            &topics,
        )
        .await;
        return AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(results);
    }
    // v4+ batches come from brokers verifying produce requests (KIP-890).
    if !ctx.allowed_on_cluster(&broker, AclOperation::ClusterAction) {
        return AddPartitionsToTxnResponse::default()
            .with_error_code(ResponseError::ClusterAuthorizationFailed.code());
    }
    let mut out = Vec::with_capacity(req.transactions.len());
    for t in &req.transactions {
        let topics: Vec<(TopicName, Vec<i32>)> = t
            .topics
            .iter()
            .map(|t| (t.name.clone(), t.partitions.clone()))
            .collect();
        let results = one_transaction(
            &broker,
            &ctx,
            v,
            &t.transactional_id,
            t.producer_id.0,
            t.producer_epoch,
            t.verify_only,
            &topics,
        )
        .await;
        out.push(
            AddPartitionsToTxnResult::default()
                .with_transactional_id(t.transactional_id.clone())
                .with_topic_results(results),
        );
    }
    AddPartitionsToTxnResponse::default().with_results_by_transaction(out)
}

/// Handles AddOffsetsToTxn: adds the group's `__consumer_offsets` partition to the
/// transaction, so the commit or abort marker reaches the offsets the producer will
/// commit there with TxnOffsetCommit.
pub async fn add_offsets_to_txn(
    broker: Arc<Broker>,
    ctx: RequestContext,
    req: AddOffsetsToTxnRequest,
) -> AddOffsetsToTxnResponse {
    if broker.groups.partition_count() == 0 {
        broker.groups.ensure_topic(&broker).await;
    }
    let count = broker.groups.partition_count();
    let result = if !ctx.allowed(
        &broker,
        AclOperation::Write,
        ResourceType::TransactionalId,
        &req.transactional_id,
    ) {
        Err(ResponseError::TransactionalIdAuthorizationFailed)
    } else if !ctx.allowed(
        &broker,
        AclOperation::Read,
        ResourceType::Group,
        &req.group_id,
    ) {
        Err(ResponseError::GroupAuthorizationFailed)
    } else if count == 0 {
        Err(ResponseError::CoordinatorNotAvailable)
    } else {
        let partition = moldau_coordinator::partition_for(&req.group_id, count);
        add_partitions(
            &broker,
            &req.transactional_id,
            req.producer_id.0,
            req.producer_epoch,
            vec![(OFFSETS_TOPIC.to_owned(), partition)],
        )
        .await
    };
    let code = result
        .err()
        .map_or(0, |e| fenced_for(e, ctx.version, 2).code());
    AddOffsetsToTxnResponse::default().with_error_code(code)
}

/// Handles EndTxn: commit or abort. The answer comes once the coordinator has durably
/// prepared the outcome; markers follow in the background (Kafka does the same), and a
/// new transaction of the producer waits (CONCURRENT_TRANSACTIONS) until they are done.
pub async fn end_txn(
    broker: Arc<Broker>,
    ctx: RequestContext,
    req: EndTxnRequest,
) -> EndTxnResponse {
    let txns = &broker.txns;
    let denied = !ctx.allowed(
        &broker,
        AclOperation::Write,
        ResourceType::TransactionalId,
        &req.transactional_id,
    );
    let result = match txns.shard_for(&req.transactional_id) {
        _ if denied => Err(ResponseError::TransactionalIdAuthorizationFailed),
        Err(e) => Err(e),
        Ok(shard) => {
            let id = req.transactional_id.to_string();
            let (pid, epoch, commit) = (req.producer_id.0, req.producer_epoch, req.committed);
            match txns
                .call(&shard, |sm, now, tx| {
                    sm.end_txn(now, &id, pid, epoch, commit, tx)
                })
                .await
            {
                Some(TxnReply::EndTxn(r)) => r,
                _ => Err(ResponseError::NotCoordinator),
            }
        }
    };
    let code = result
        .err()
        .map_or(0, |e| fenced_for(e, ctx.version, 2).code());
    EndTxnResponse::default().with_error_code(code)
}
