//! Writing transaction markers (KIP-98 control batches) to the partitions of a
//! transaction: what a partition leader does on WriteTxnMarkers
//! ([`write_local_markers`]), and how the transaction coordinator gets them written
//! ([`write_markers`]): locally for the partitions this broker leads, with
//! WriteTxnMarkers to the leader of every other partition (Kafka's
//! `TransactionMarkerChannelManager`).

use crate::broker::Broker;
use crate::inter_broker::KafkaConn;
use kafka_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use kafka_protocol::messages::{
    ApiKey, ProducerId, TopicName, WriteTxnMarkersRequest, WriteTxnMarkersResponse,
};
use kafka_protocol::protocol::StrBytes;
use moldau_coordinator::OFFSETS_TOPIC;
use moldau_protocol::batch::ControlRecordType;
use moldau_protocol::error::ResponseError;
use std::collections::BTreeMap;
use std::time::Duration;

/// How long a marker write may wait for replication or a remote leader.
const MARKER_TIMEOUT: Duration = Duration::from_secs(30);

/// One transaction's markers to write.
#[derive(Debug, Clone)]
pub struct Markers {
    /// The transaction's producer id.
    pub producer_id: i64,
    /// Its epoch (the coordinator's, possibly bumped when it aborted on its own).
    pub producer_epoch: i16,
    /// Commit or abort.
    pub commit: bool,
    /// Leader epoch of the coordinator's `__transaction_state` partition; a partition
    /// refuses markers from an older coordinator (TRANSACTION_COORDINATOR_FENCED).
    pub coordinator_epoch: i32,
}

/// As partition leader: appends the marker to every `(topic, partition)` led here,
/// waits until each is committed (replicated to the ISR, on disk), and tells the group
/// coordinator about markers on `__consumer_offsets` (its pending transactional offsets
/// become committed or are dropped). Returns each partition's outcome: `None` on
/// success, else the error (UNKNOWN_TOPIC_OR_PARTITION for a partition not hosted here,
/// NOT_LEADER_OR_FOLLOWER, the producer-state or storage error otherwise).
pub async fn write_local_markers(
    broker: &Broker,
    markers: &Markers,
    partitions: &[(String, i32)],
    now_ms: i64,
) -> Vec<Option<ResponseError>> {
    let kind = if markers.commit {
        ControlRecordType::Commit
    } else {
        ControlRecordType::Abort
    };
    let mut outcomes = vec![None; partitions.len()];
    let mut waits = Vec::new();
    for (i, (topic, index)) in partitions.iter().enumerate() {
        let Some(partition) = broker.replicas.get(topic, *index) else {
            outcomes[i] = Some(ResponseError::UnknownTopicOrPartition);
            continue;
        };
        match partition.write_marker(
            markers.producer_id,
            markers.producer_epoch,
            kind,
            markers.coordinator_epoch,
            now_ms,
        ) {
            Ok(end) => {
                if topic == OFFSETS_TOPIC {
                    broker
                        .groups
                        .complete_txn(*index, markers.producer_id, markers.commit);
                }
                waits.push((i, partition, end));
            }
            Err(e) => {
                tracing::warn!(partition = %partition.tp, producer_id = markers.producer_id, error = %e, "transaction marker refused");
                outcomes[i] = Some(e.response_error());
            }
        }
    }
    for (i, partition, end) in waits {
        if let Err(e) = partition.wait_committed(end, MARKER_TIMEOUT).await {
            outcomes[i] = Some(e.response_error());
        }
    }
    outcomes
}

/// As transaction coordinator: gets the marker written on every partition, each by its
/// leader. Returns each partition's outcome as [`write_local_markers`] does;
/// NOT_LEADER_OR_FOLLOWER / NETWORK_EXCEPTION when the leader is unknown or
/// unreachable (the coordinator retries).
pub async fn write_markers(
    broker: &Broker,
    markers: &Markers,
    partitions: &[(String, i32)],
    now_ms: i64,
) -> Vec<Option<ResponseError>> {
    let image = broker.image();
    let mut by_leader: BTreeMap<i32, Vec<usize>> = BTreeMap::new();
    for (i, (topic, p)) in partitions.iter().enumerate() {
        let leader = image
            .topics
            .get(topic)
            .and_then(|t| t.partitions.get(p))
            .map_or(-1, |p| p.leader);
        by_leader.entry(leader).or_default().push(i);
    }
    let mut outcomes = vec![None; partitions.len()];
    let sends = by_leader.into_iter().map(|(leader, indexes)| {
        let list: Vec<(String, i32)> = indexes.iter().map(|i| partitions[*i].clone()).collect();
        let image = image.clone();
        async move {
            let results = if leader == broker.config.node_id {
                write_local_markers(broker, markers, &list, now_ms).await
            } else if leader < 0 {
                vec![Some(ResponseError::NotLeaderOrFollower); list.len()]
            } else {
                let addr = image
                    .brokers
                    .get(&leader)
                    .and_then(|b| b.endpoint(&broker.config.cluster.inter_broker_listener_name))
                    .map(|e| crate::config::listeners::join_host_port(&e.host, e.port as u16));
                match addr {
                    Some(addr) => send_remote(broker, &addr, markers, &list).await,
                    None => vec![Some(ResponseError::NotLeaderOrFollower); list.len()],
                }
            };
            (indexes, results)
        }
    });
    for (indexes, results) in futures::future::join_all(sends).await {
        for (i, r) in indexes.into_iter().zip(results) {
            outcomes[i] = r;
        }
    }
    outcomes
}

/// WriteTxnMarkers v1 to the leader at `addr`.
async fn send_remote(
    broker: &Broker,
    addr: &str,
    markers: &Markers,
    partitions: &[(String, i32)],
) -> Vec<Option<ResponseError>> {
    let local = broker.config.node_id;
    let mut topics: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (t, p) in partitions {
        topics.entry(t.as_str()).or_default().push(*p);
    }
    let request =
        WriteTxnMarkersRequest::default().with_markers(vec![WritableTxnMarker::default()
            .with_producer_id(ProducerId(markers.producer_id))
            .with_producer_epoch(markers.producer_epoch)
            .with_transaction_result(markers.commit)
            .with_coordinator_epoch(markers.coordinator_epoch)
            .with_topics(
                topics
                    .iter()
                    .map(|(t, ps)| {
                        WritableTxnMarkerTopic::default()
                            .with_name(TopicName(StrBytes::from_string(t.to_string())))
                            .with_partition_indexes(ps.clone())
                    })
                    .collect(),
            )]);
    let failed = |e: ResponseError| vec![Some(e); partitions.len()];
    let mut conn = match KafkaConn::connect(
        addr,
        &format!("moldau-txn-markers-{local}"),
        Duration::from_secs(5),
        &broker.config.cluster.inter_broker_client,
    )
    .await
    {
        Ok(c) => c,
        Err(e) => {
            tracing::info!(%addr, error = %e, "cannot reach a partition leader for transaction markers");
            return failed(ResponseError::NetworkException);
        }
    };
    let response: WriteTxnMarkersResponse = match conn
        .send(ApiKey::WriteTxnMarkers, 1, &request, MARKER_TIMEOUT)
        .await
    {
        Ok(r) => r,
        Err(e) => {
            tracing::info!(%addr, error = %e, "WriteTxnMarkers failed");
            return failed(ResponseError::NetworkException);
        }
    };
    partitions
        .iter()
        .map(|(t, p)| {
            let code = response
                .markers
                .iter()
                .flat_map(|m| &m.topics)
                .filter(|rt| rt.name.0.as_str() == t.as_str())
                .flat_map(|rt| &rt.partitions)
                .find(|rp| rp.partition_index == *p)
                .map_or(ResponseError::UnknownServerError.code(), |rp| rp.error_code);
            ResponseError::try_from_code(code)
        })
        .collect()
}
