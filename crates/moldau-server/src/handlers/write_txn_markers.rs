//! WriteTxnMarkers v1 (KIP-98): the transaction coordinator asks this broker, as leader
//! of the listed partitions, to append commit or abort markers (see
//! [`crate::txn_markers`]); partitions not led here answer NOT_LEADER_OR_FOLLOWER.

use super::RequestContext;
use crate::broker::Broker;
use crate::replica_manager::now_ms;
use crate::txn_markers::{write_local_markers, Markers};
use kafka_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use kafka_protocol::messages::{WriteTxnMarkersRequest, WriteTxnMarkersResponse};
use moldau_protocol::error::ResponseError;
use std::sync::Arc;

/// Handles WriteTxnMarkers: per marker and partition, the outcome of the append.
pub async fn handle(
    broker: Arc<Broker>,
    ctx: RequestContext,
    req: WriteTxnMarkersRequest,
) -> WriteTxnMarkersResponse {
    let mut results = Vec::with_capacity(req.markers.len());
    // Only brokers write markers: CLUSTER_ACTION on the cluster, with an authorizer.
    let denied = !ctx.allowed_on_cluster(&broker, super::AclOperation::ClusterAction);
    for m in &req.markers {
        if denied {
            let topics = m
                .topics
                .iter()
                .map(|t| {
                    WritableTxnMarkerTopicResult::default()
                        .with_name(t.name.clone())
                        .with_partitions(
                            t.partition_indexes
                                .iter()
                                .map(|p| {
                                    WritableTxnMarkerPartitionResult::default()
                                        .with_partition_index(*p)
                                        .with_error_code(
                                            ResponseError::ClusterAuthorizationFailed.code(),
                                        )
                                })
                                .collect(),
                        )
                })
                .collect();
            results.push(
                WritableTxnMarkerResult::default()
                    .with_producer_id(m.producer_id)
                    .with_topics(topics),
            );
            continue;
        }
        let partitions: Vec<(String, i32)> = m
            .topics
            .iter()
            .flat_map(|t| {
                t.partition_indexes
                    .iter()
                    .map(move |p| (t.name.to_string(), *p))
            })
            .collect();
        let markers = Markers {
            producer_id: m.producer_id.0,
            producer_epoch: m.producer_epoch,
            commit: m.transaction_result,
            coordinator_epoch: m.coordinator_epoch,
        };
        let mut outcomes = write_local_markers(&broker, &markers, &partitions, now_ms())
            .await
            .into_iter();
        let topics = m
            .topics
            .iter()
            .map(|t| {
                let partitions = t
                    .partition_indexes
                    .iter()
                    .map(|p| {
                        let e = outcomes.next().flatten();
                        WritableTxnMarkerPartitionResult::default()
                            .with_partition_index(*p)
                            .with_error_code(e.map_or(0, |e| e.code()))
                    })
                    .collect();
                WritableTxnMarkerTopicResult::default()
                    .with_name(t.name.clone())
                    .with_partitions(partitions)
            })
            .collect();
        results.push(
            WritableTxnMarkerResult::default()
                .with_producer_id(m.producer_id)
                .with_topics(topics),
        );
    }
    WriteTxnMarkersResponse::default().with_markers(results)
}
