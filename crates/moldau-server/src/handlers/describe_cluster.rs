//! DescribeCluster (key 60), versions 0–1 (KIP-700).

use super::RequestContext;
use crate::broker::Broker;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use kafka_protocol::protocol::StrBytes;
use std::sync::Arc;

/// Handles DescribeCluster: cluster id, this node as controller, registered brokers.
pub async fn handle(
    broker: Arc<Broker>,
    _ctx: RequestContext,
    _req: DescribeClusterRequest,
) -> DescribeClusterResponse {
    let image = broker.image();
    let brokers = image
        .brokers
        .values()
        .map(|b| {
            DescribeClusterBroker::default()
                .with_broker_id(BrokerId(b.broker_id))
                .with_host(StrBytes::from_string(b.host.clone()))
                .with_port(b.port)
                .with_rack(b.rack.clone().map(StrBytes::from_string))
        })
        .collect();
    DescribeClusterResponse::default()
        .with_endpoint_type(1)
        .with_cluster_id(StrBytes::from_string(broker.cluster_id.clone()))
        .with_controller_id(BrokerId(broker.config.node_id))
        .with_brokers(brokers)
        .with_cluster_authorized_operations(i32::MIN)
}
