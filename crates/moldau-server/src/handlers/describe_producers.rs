//! DescribeProducers v0 (KIP-664): the producer state a partition leader keeps — each
//! active producer's epoch, last sequence, last write and open transaction — so
//! operators can find the producer holding a hanging transaction.

use super::{msg, RequestContext};
use super::{AclOperation, ResourceType};
use crate::broker::Broker;
use kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use kafka_protocol::messages::{DescribeProducersRequest, DescribeProducersResponse};
use moldau_protocol::error::ResponseError;
use std::sync::Arc;

/// Handles DescribeProducers: partitions not hosted here get
/// NOT_LEADER_OR_FOLLOWER if the topic exists, else UNKNOWN_TOPIC_OR_PARTITION.
pub async fn handle(
    broker: Arc<Broker>,
    ctx: RequestContext,
    req: DescribeProducersRequest,
) -> DescribeProducersResponse {
    let image = broker.image();
    let topics = req
        .topics
        .iter()
        .map(|t| {
            // READ on the topic, with an authorizer (Kafka's rule).
            let denied = !ctx.allowed(&broker, AclOperation::Read, ResourceType::Topic, &t.name);
            let partitions =
                t.partition_indexes
                    .iter()
                    .map(|&index| {
                        let resp = PartitionResponse::default().with_partition_index(index);
                        if denied {
                            return resp
                                .with_error_code(ResponseError::TopicAuthorizationFailed.code());
                        }
                        let Some(partition) = broker.replicas.get(&t.name, index) else {
                            let exists = image
                                .topics
                                .get(t.name.as_str())
                                .is_some_and(|topic| topic.partitions.contains_key(&index));
                            let e = if exists {
                                ResponseError::NotLeaderOrFollower
                            } else {
                                ResponseError::UnknownTopicOrPartition
                            };
                            return resp.with_error_code(e.code()).with_error_message(msg(
                                format!("{}-{index} is not led here", &*t.name),
                            ));
                        };
                        let producers = partition.with_log(|log| log.producers());
                        resp.with_active_producers(
                            producers
                                .into_iter()
                                .map(|p| {
                                    ProducerState::default()
                                        .with_producer_id(p.producer_id.into())
                                        .with_producer_epoch(i32::from(p.producer_epoch))
                                        .with_last_sequence(p.last_sequence)
                                        .with_last_timestamp(p.last_timestamp)
                                        .with_coordinator_epoch(p.coordinator_epoch)
                                        .with_current_txn_start_offset(p.current_txn_start_offset)
                                })
                                .collect(),
                        )
                    })
                    .collect();
            TopicResponse::default()
                .with_name(t.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    DescribeProducersResponse::default().with_topics(topics)
}
