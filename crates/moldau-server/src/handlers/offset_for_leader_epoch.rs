//! OffsetForLeaderEpoch (key 23), versions 2–4 (KIP-101, KIP-279, KIP-320).
//!
//! Followers call it to find where their log diverges from the leader's, and consumers
//! after a leader change to detect log truncation. A stale `current_leader_epoch` gets
//! `FENCED_LEADER_EPOCH`, a newer one `UNKNOWN_LEADER_EPOCH` (KIP-320). Otherwise the
//! answer comes from the partition log's leader-epoch cache
//! (`moldau_storage::Log::end_offset_for_epoch`, Kafka `LeaderEpochFileCache.endOffsetFor`
//! via `Partition.lastOffsetForLeaderEpoch`): for the latest epoch the log end offset,
//! for an older one the largest known epoch at or below it and the start offset of the
//! next epoch (KIP-279), and `-1`/`UNDEFINED_EPOCH` with end offset `-1` for an epoch
//! above every known one or for `UNDEFINED_EPOCH` itself, without an error code.
//!
//! A new leader records its epoch at its log end offset when elected (Kafka
//! `Partition.makeLeader`), so the current epoch is known before its first append.
//! Only the leader answers (`NOT_LEADER_OR_FOLLOWER` elsewhere).

use super::RequestContext;
use super::{AclOperation, ResourceType};
use crate::broker::Broker;
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};
use moldau_protocol::error::ResponseError;
use std::sync::Arc;

/// Handles OffsetForLeaderEpoch.
pub async fn handle(
    broker: Arc<Broker>,
    ctx: RequestContext,
    req: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    // With an authorizer: followers need CLUSTER_ACTION, consumers DESCRIBE on the topic.
    let follower = req.replica_id.0 >= 0;
    let cluster_denied = follower && !ctx.allowed_on_cluster(&broker, AclOperation::ClusterAction);
    let topics = req
        .topics
        .iter()
        .map(|t| {
            let denied = if follower {
                cluster_denied.then_some(ResponseError::ClusterAuthorizationFailed)
            } else {
                (!ctx.allowed(
                    &broker,
                    AclOperation::Describe,
                    ResourceType::Topic,
                    &t.topic.0,
                ))
                .then_some(ResponseError::TopicAuthorizationFailed)
            };
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let result = EpochEndOffset::default()
                        .with_partition(p.partition)
                        .with_leader_epoch(-1)
                        .with_end_offset(-1);
                    if let Some(e) = denied {
                        return result.with_error_code(e.code());
                    }
                    let Some(partition) = broker.replicas.get(&t.topic.0, p.partition) else {
                        return result
                            .with_error_code(ResponseError::UnknownTopicOrPartition.code());
                    };
                    if !partition.is_leader() {
                        return result.with_error_code(ResponseError::NotLeaderOrFollower.code());
                    }
                    let current = partition.leader_epoch();
                    if p.current_leader_epoch >= 0 && p.current_leader_epoch < current {
                        return result.with_error_code(ResponseError::FencedLeaderEpoch.code());
                    }
                    if p.current_leader_epoch > current {
                        return result.with_error_code(ResponseError::UnknownLeaderEpoch.code());
                    }
                    let (epoch, end_offset) =
                        partition.with_log(|log| log.end_offset_for_epoch(p.leader_epoch));
                    result.with_leader_epoch(epoch).with_end_offset(end_offset)
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(t.topic.clone())
                .with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
