//! DescribeQuorum (key 55), versions 0–2 (KIP-595, KIP-853): the metadata quorum, for
//! `kafka-metadata-quorum.sh --bootstrap-server … describe --status/--replication`.
//!
//! Answered by the active controller, where this broker forwards it: the leader (active
//! controller), its Raft term as the leader epoch, the committed offset as the high
//! watermark, and each voter's log end offset as the leader knows it. Moldau's brokers
//! that are controllers are voters; there are no observers. Errors: `NOT_CONTROLLER`
//! (no active controller answered within 5 s), `UNKNOWN_TOPIC_OR_PARTITION` for any
//! partition but `__cluster_metadata-0`.

use super::{msg, RequestContext};
use crate::broker::Broker;
use crate::cluster::controller::{ControllerReply, ControllerRequest};
use kafka_protocol::messages::describe_quorum_response::{
    Listener, Node, PartitionData, ReplicaState, TopicData,
};
use kafka_protocol::messages::{BrokerId, DescribeQuorumRequest, DescribeQuorumResponse};
use kafka_protocol::protocol::StrBytes;
use moldau_metadata::controller::METADATA_TOPIC;
use moldau_protocol::error::ResponseError;
use std::sync::Arc;
use std::time::Duration;

/// Handles DescribeQuorum.
pub async fn handle(
    broker: Arc<Broker>,
    ctx: RequestContext,
    req: DescribeQuorumRequest,
) -> DescribeQuorumResponse {
    if !ctx.allowed_on_cluster(&broker, super::AclOperation::Describe) {
        return DescribeQuorumResponse::default()
            .with_error_code(ResponseError::ClusterAuthorizationFailed.code());
    }
    let state = broker
        .controller
        .call(ControllerRequest::DescribeQuorum, Duration::from_secs(5))
        .await;
    let state = match state {
        Ok(ok) => match ok.reply {
            ControllerReply::Quorum(q) => Ok(q),
            _ => Err(ResponseError::UnknownServerError),
        },
        Err(e) => Err(e.error().unwrap_or(ResponseError::NotController)),
    };
    let state = match state {
        Ok(s) => s,
        Err(e) => {
            return DescribeQuorumResponse::default()
                .with_error_code(e.code())
                .with_error_message(msg("no active controller answered"))
        }
    };
    let topics = req
        .topics
        .iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    if t.topic_name.0.as_str() != METADATA_TOPIC || p.partition_index != 0 {
                        return PartitionData::default()
                            .with_partition_index(p.partition_index)
                            .with_error_code(ResponseError::UnknownTopicOrPartition.code());
                    }
                    let voters = state
                        .voters
                        .iter()
                        .map(|(id, leo)| {
                            ReplicaState::default()
                                .with_replica_id(BrokerId(*id))
                                .with_log_end_offset(*leo)
                                .with_last_fetch_timestamp(-1)
                                .with_last_caught_up_timestamp(-1)
                        })
                        .collect();
                    PartitionData::default()
                        .with_partition_index(0)
                        .with_leader_id(BrokerId(state.leader_id))
                        .with_leader_epoch(state.leader_epoch)
                        .with_high_watermark(state.high_watermark)
                        .with_current_voters(voters)
                })
                .collect();
            TopicData::default()
                .with_topic_name(t.topic_name.clone())
                .with_partitions(partitions)
        })
        .collect();
    let mut response = DescribeQuorumResponse::default().with_topics(topics);
    if ctx.version >= 2 {
        response.nodes = broker
            .config
            .cluster
            .voters
            .iter()
            .map(|v| {
                Node::default()
                    .with_node_id(BrokerId(v.id))
                    .with_listeners(vec![Listener::default()
                        .with_name(StrBytes::from_string(
                            broker
                                .config
                                .cluster
                                .controller_listener_names
                                .first()
                                .cloned()
                                .unwrap_or_else(|| "CONTROLLER".into()),
                        ))
                        .with_host(StrBytes::from_string(v.host.clone()))
                        .with_port(v.port)])
            })
            .collect();
    }
    response
}
