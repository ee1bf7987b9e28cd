//! DescribeCluster (key 60), versions 0–1 (KIP-700).

use super::RequestContext;
use crate::broker::Broker;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use kafka_protocol::protocol::StrBytes;
use std::sync::Arc;

/// Handles DescribeCluster: cluster id, the active controller, the live brokers.
pub async fn handle(
    broker: Arc<Broker>,
    ctx: RequestContext,
    _req: DescribeClusterRequest,
) -> DescribeClusterResponse {
    let image = broker.image();
    let brokers = super::metadata::brokers(&image, &ctx.listener)
        .into_iter()
        .map(|b| {
            DescribeClusterBroker::default()
                .with_broker_id(b.node_id)
                .with_host(b.host)
                .with_port(b.port)
                .with_rack(b.rack)
        })
        .collect();
    DescribeClusterResponse::default()
        .with_endpoint_type(1)
        .with_cluster_id(StrBytes::from_string(broker.cluster_id.clone()))
        .with_controller_id(BrokerId(broker.active_controller()))
        .with_brokers(brokers)
        .with_cluster_authorized_operations(i32::MIN)
}
