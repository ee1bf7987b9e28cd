//! TxnOffsetCommit v0–5 (KIP-98; v3+ member fields, KIP-447): a transactional producer
//! commits a group's offsets as part of its transaction. The group's coordinator shard
//! writes them as a transactional batch of the producer to `__consumer_offsets`; they
//! become visible to OffsetFetch only when the transaction's commit marker lands there
//! (see `moldau_coordinator::GroupShard::txn_commit`).

use super::groups::{code, shard};
use super::RequestContext;
use super::{AclOperation, ResourceType};
use crate::broker::Broker;
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{TxnOffsetCommitRequest, TxnOffsetCommitResponse};
use moldau_coordinator::{self as gc, Reply};
use moldau_protocol::error::ResponseError;
use std::collections::HashMap;
use std::sync::Arc;

/// Handles TxnOffsetCommit. Partitions of unknown topics get
/// UNKNOWN_TOPIC_OR_PARTITION and are not stored.
pub async fn handle(
    broker: Arc<Broker>,
    ctx: RequestContext,
    req: TxnOffsetCommitRequest,
) -> TxnOffsetCommitResponse {
    let image = broker.image();
    let mut outcomes: HashMap<(String, i32), Option<ResponseError>> = HashMap::new();
    let mut partitions = Vec::new();
    // With an authorizer: WRITE on the transactional id, READ on the group, READ on
    // each topic (Kafka's rules), each failing with its own authorization error.
    let refused = if !ctx.allowed(
        &broker,
        AclOperation::Write,
        ResourceType::TransactionalId,
        &req.transactional_id,
    ) {
        Some(ResponseError::TransactionalIdAuthorizationFailed)
    } else if !ctx.allowed(
        &broker,
        AclOperation::Read,
        ResourceType::Group,
        &req.group_id,
    ) {
        Some(ResponseError::GroupAuthorizationFailed)
    } else {
        None
    };
    for t in &req.topics {
        let known = image.topics.get(t.name.as_str());
        let topic_denied = refused.is_none()
            && !ctx.allowed(&broker, AclOperation::Read, ResourceType::Topic, &t.name);
        for p in &t.partitions {
            if let Some(e) =
                refused.or(topic_denied.then_some(ResponseError::TopicAuthorizationFailed))
            {
                outcomes.insert((t.name.to_string(), p.partition_index), Some(e));
            } else if known.is_some_and(|k| k.partitions.contains_key(&p.partition_index)) {
                partitions.push(gc::CommitPartition {
                    topic: t.name.to_string(),
                    partition: p.partition_index,
                    offset: p.committed_offset,
                    leader_epoch: if ctx.version >= 2 {
                        p.committed_leader_epoch
                    } else {
                        -1
                    },
                    metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
                });
            } else {
                outcomes.insert(
                    (t.name.to_string(), p.partition_index),
                    Some(ResponseError::UnknownTopicOrPartition),
                );
            }
        }
    }
    let fail_all = |e: ResponseError, parts: &[gc::CommitPartition]| -> Vec<_> {
        parts
            .iter()
            .map(|p| (p.topic.clone(), p.partition, Some(e)))
            .collect()
    };
    let committed = match shard(&broker, &req.group_id) {
        Err(e) => fail_all(e, &partitions),
        Ok(_) if partitions.is_empty() => Vec::new(),
        Ok(shard) => {
            let commit = gc::TxnOffsetCommit {
                group_id: req.group_id.to_string(),
                producer_id: req.producer_id.0,
                producer_epoch: req.producer_epoch,
                generation_id: if ctx.version >= 3 {
                    req.generation_id
                } else {
                    -1
                },
                member_id: if ctx.version >= 3 {
                    req.member_id.to_string()
                } else {
                    String::new()
                },
                group_instance_id: req.group_instance_id.as_ref().map(|s| s.to_string()),
                partitions: partitions.clone(),
            };
            match broker
                .groups
                .call(&shard, |sm, now, tx| sm.txn_commit(now, commit, tx))
                .await
            {
                Some(Reply::Commit(parts)) => parts,
                _ => fail_all(ResponseError::NotCoordinator, &partitions),
            }
        }
    };
    for (t, p, e) in committed {
        outcomes.insert((t, p), e);
    }
    let topics = req
        .topics
        .iter()
        .map(|t| {
            TxnOffsetCommitResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            let e = outcomes
                                .get(&(t.name.to_string(), p.partition_index))
                                .copied()
                                .flatten();
                            TxnOffsetCommitResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(code(e))
                        })
                        .collect(),
                )
        })
        .collect();
    TxnOffsetCommitResponse::default().with_topics(topics)
}
