//! ListOffsets (key 2), versions 1–8.
//!
//! Timestamps: `-2` earliest (log start offset), `-1` latest (high watermark; the last
//! stable offset under read_committed, KIP-98), `-3` the
//! record with the largest timestamp (KIP-734, v7+), `-4` earliest local (KIP-405, v8+;
//! equal to earliest without tiered storage), otherwise the first offset whose timestamp
//! is at least the one given (KIP-79), or offset -1 when there is none.
//!
//! A new leader whose high watermark has not yet reached the start of its leader epoch
//! (its followers have not fetched what it had when it took over) answers latest
//! lookups from clients that give an isolation level (v2+) with the retriable
//! `OFFSET_NOT_AVAILABLE` (KIP-207, as Kafka), rather than a high watermark older than
//! the one consumers may have seen from the old leader.

use super::RequestContext;
use crate::broker::Broker;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use moldau_protocol::compression as codec;
use moldau_protocol::error::ResponseError;
use std::sync::Arc;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
/// `isolation_level` 1 (v2+): read_committed.
const READ_COMMITTED: i8 = 1;

/// Handles ListOffsets. With an authorizer, a topic the principal may not DESCRIBE has
/// its partitions answered `TOPIC_AUTHORIZATION_FAILED`.
pub async fn handle(
    broker: Arc<Broker>,
    ctx: RequestContext,
    req: ListOffsetsRequest,
) -> ListOffsetsResponse {
    use super::{AclOperation, ResourceType};
    let topics = req
        .topics
        .iter()
        .map(|t| {
            let denied =
                !ctx.allowed(&broker, AclOperation::Describe, ResourceType::Topic, &t.name.0);
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let resp = ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index)
                        .with_timestamp(-1)
                        .with_offset(-1);
                    if denied {
                        return resp.with_error_code(ResponseError::TopicAuthorizationFailed.code());
                    }
                    let Some(partition) = broker.replicas.get(&t.name.0, p.partition_index) else {
                        return resp.with_error_code(ResponseError::UnknownTopicOrPartition.code());
                    };
                    // Only the leader answers (KIP-320 epoch checks from v4).
                    if !partition.is_leader() {
                        return resp.with_error_code(ResponseError::NotLeaderOrFollower.code());
                    }
                    if let Err(e) = partition.check_leader_epoch(if ctx.version >= 4 { p.current_leader_epoch } else { -1 }) {
                        return resp.with_error_code(e.code());
                    }
                    // The leader epoch field exists from v4 (KIP-320).
                    let resp = if ctx.version >= 4 { resp.with_leader_epoch(partition.leader_epoch()) } else { resp };
                    let offsets = partition.offsets();
                    // Kafka `Partition.fetchOffsetForTimestamp`: answers never point past
                    // what the isolation level may read.
                    let bound = if req.isolation_level == READ_COMMITTED {
                        offsets.last_stable_offset
                    } else {
                        offsets.high_watermark
                    };
                    if p.timestamp == LATEST && ctx.version >= 2 && partition.high_watermark_behind_epoch_start() {
                        return resp.with_error_code(ResponseError::OffsetNotAvailable.code());
                    }
                    let found = match p.timestamp {
                        LATEST => Ok(Some((bound, -1))),
                        EARLIEST | EARLIEST_LOCAL => Ok(Some((offsets.log_start_offset, -1))),
                        MAX_TIMESTAMP => partition.with_log(|log| log.max_timestamp_offset(&codec::decompress)).map(|f| f.filter(|(o, _)| *o < bound)),
                        ts if ts >= 0 => partition.with_log(|log| log.offset_for_timestamp(ts, &codec::decompress)).map(|f| f.filter(|(o, _)| *o < bound)),
                        _ => return resp.with_error_code(ResponseError::InvalidRequest.code()),
                    };
                    match found {
                        Ok(Some((offset, timestamp))) => resp.with_offset(offset).with_timestamp(timestamp),
                        Ok(None) => resp,
                        Err(e) => {
                            tracing::error!(partition = %partition.tp, error = %e, "list offsets failed");
                            resp.with_error_code(ResponseError::KafkaStorageError.code())
                        }
                    }
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(t.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}
