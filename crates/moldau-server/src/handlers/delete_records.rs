//! DeleteRecords (key 21), versions 0–2 (KIP-107).
//!
//! Raises a partition's log start offset to the requested offset (`-1` means the high
//! watermark) and deletes the segments entirely below it. An offset above the high
//! watermark gets `OFFSET_OUT_OF_RANGE`; the response carries the new low watermark.

use super::RequestContext;
use super::{AclOperation, ResourceType};
use crate::broker::Broker;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};
use moldau_protocol::error::ResponseError;
use std::sync::Arc;

/// Handles DeleteRecords.
pub async fn handle(
    broker: Arc<Broker>,
    ctx: RequestContext,
    req: DeleteRecordsRequest,
) -> DeleteRecordsResponse {
    // DELETE on each topic, with an authorizer.
    let denied: std::collections::HashSet<String> = req
        .topics
        .iter()
        .filter(|t| {
            !ctx.allowed(
                &broker,
                AclOperation::Delete,
                ResourceType::Topic,
                &t.name.0,
            )
        })
        .map(|t| t.name.0.to_string())
        .collect();
    // Deleting segment files is blocking work; block_in_place keeps this worker's other
    // tasks running elsewhere meanwhile.
    let b = broker;
    let topics = moldau_metadata::blocking(move || {
        req.topics
            .iter()
            .map(|t| {
                let partitions = t
                    .partitions
                    .iter()
                    .map(|p| {
                        let result = DeleteRecordsPartitionResult::default()
                            .with_partition_index(p.partition_index)
                            .with_low_watermark(-1);
                        if denied.contains(t.name.0.as_str()) {
                            return result.with_error_code(ResponseError::TopicAuthorizationFailed.code());
                        }
                        let Some(partition) = b.replicas.get(&t.name.0, p.partition_index) else {
                            return result.with_error_code(ResponseError::UnknownTopicOrPartition.code());
                        };
                        // The leader moves the log start; followers follow it in their
                        // fetch responses.
                        if !partition.is_leader() {
                            return result.with_error_code(ResponseError::NotLeaderOrFollower.code());
                        }
                        let hw = partition.high_watermark();
                        let target = if p.offset == -1 { hw } else { p.offset };
                        if target < 0 || target > hw {
                            return result.with_error_code(ResponseError::OffsetOutOfRange.code());
                        }
                        match partition.with_log_mut(|log| log.delete_records_before(target)) {
                            Ok(low) => result.with_low_watermark(low),
                            Err(e) => {
                                tracing::error!(partition = %partition.tp, error = %e, "delete records failed");
                                result.with_error_code(ResponseError::KafkaStorageError.code())
                            }
                        }
                    })
                    .collect();
                DeleteRecordsTopicResult::default()
                    .with_name(t.name.clone())
                    .with_partitions(partitions)
            })
            .collect()
    });
    DeleteRecordsResponse::default().with_topics(topics)
}
