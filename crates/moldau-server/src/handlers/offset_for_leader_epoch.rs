//! OffsetForLeaderEpoch (key 23), versions 2–4 (KIP-101, KIP-279, KIP-320).
//!
//! Clients call it after a leader change to detect log truncation. With one node every
//! partition has had one leader epoch since creation (the one in the metadata image), so
//! the end offset of the requested epoch is the log end offset when the epoch is the
//! current one, and `-1`/`UNDEFINED_EPOCH` for a later epoch. A stale
//! `current_leader_epoch` gets `FENCED_LEADER_EPOCH`, a newer one `UNKNOWN_LEADER_EPOCH`.
//! The leader-epoch cache that replication needs for past epochs comes with replication.

use super::RequestContext;
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
    _ctx: RequestContext,
    req: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let topics = req
        .topics
        .iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let result = EpochEndOffset::default()
                        .with_partition(p.partition)
                        .with_leader_epoch(-1)
                        .with_end_offset(-1);
                    let Some(partition) = broker.replicas.get(&t.topic.0, p.partition) else {
                        return result
                            .with_error_code(ResponseError::UnknownTopicOrPartition.code());
                    };
                    let current = partition.leader_epoch();
                    if p.current_leader_epoch >= 0 && p.current_leader_epoch < current {
                        return result.with_error_code(ResponseError::FencedLeaderEpoch.code());
                    }
                    if p.current_leader_epoch > current {
                        return result.with_error_code(ResponseError::UnknownLeaderEpoch.code());
                    }
                    if p.leader_epoch > current {
                        return result;
                    }
                    result
                        .with_leader_epoch(current)
                        .with_end_offset(partition.offsets().log_end_offset)
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(t.topic.clone())
                .with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
