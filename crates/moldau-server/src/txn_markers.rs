//! Writing transaction markers (KIP-98 control batches) to the partitions of a
//! transaction: what a partition leader does on WriteTxnMarkers, and what the
//! transaction coordinator asks of the leaders once a transaction is prepared. On one
//! node both are the same local call; across brokers the coordinator will send
//! WriteTxnMarkers to each leader instead.

use crate::broker::Broker;
use moldau_coordinator::OFFSETS_TOPIC;
use moldau_protocol::batch::ControlRecordType;
use moldau_protocol::error::ResponseError;

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

/// Appends the marker to every `(topic, partition)` hosted here, waits until each is
/// durable, and tells the group coordinator about markers on `__consumer_offsets` (its
/// pending transactional offsets become committed or are dropped). Returns each
/// partition's outcome: `None` on success, else the error (UNKNOWN_TOPIC_OR_PARTITION
/// for a partition not hosted here, the producer-state or storage error otherwise).
pub async fn write_markers(
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
        if let Err(e) = partition.wait_durable(end).await {
            outcomes[i] = Some(e.response_error());
        }
    }
    outcomes
}
