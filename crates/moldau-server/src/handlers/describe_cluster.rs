//! DescribeCluster (key 60), versions 0–2 (KIP-700; v2 lists fenced brokers on request,
//! KIP-1073). The controller id is the real active controller (-1 while the quorum
//! elects one).

use super::AclOperation;
use super::RequestContext;
use crate::broker::Broker;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use kafka_protocol::protocol::StrBytes;
use moldau_protocol::error::ResponseError;
use std::sync::Arc;

/// Handles DescribeCluster: cluster id, the active controller, the live brokers.
pub async fn handle(
    broker: Arc<Broker>,
    ctx: RequestContext,
    req: DescribeClusterRequest,
) -> DescribeClusterResponse {
    if !ctx.allowed_on_cluster(&broker, AclOperation::Describe) {
        return DescribeClusterResponse::default()
            .with_error_code(ResponseError::ClusterAuthorizationFailed.code())
            .with_cluster_authorized_operations(i32::MIN);
    }
    let image = broker.image();
    let with_fenced = ctx.version >= 2 && req.include_fenced_brokers;
    let brokers = image
        .brokers
        .values()
        .filter(|b| with_fenced || !b.fenced)
        .filter_map(|b| {
            let e = b.endpoint(&ctx.listener)?;
            Some(
                DescribeClusterBroker::default()
                    .with_broker_id(BrokerId(b.broker_id))
                    .with_host(StrBytes::from_string(e.host.clone()))
                    .with_port(e.port)
                    .with_rack(b.rack.clone().map(StrBytes::from_string))
                    .with_is_fenced(b.fenced),
            )
        })
        .collect();
    DescribeClusterResponse::default()
        .with_endpoint_type(1)
        .with_cluster_id(StrBytes::from_string(broker.cluster_id.clone()))
        .with_controller_id(BrokerId(broker.active_controller()))
        .with_brokers(brokers)
        .with_cluster_authorized_operations(i32::MIN)
}
