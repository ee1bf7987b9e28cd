//! Fetch (key 1), versions 4–16.
//!
//! Returns stored batches as they are, from the batch containing `fetch_offset` up to the
//! high watermark (`read_uncommitted`) or the last stable offset (`read_committed`, with
//! the aborted transactions among the returned batches listed, KIP-98), within `partition_max_bytes` per partition and `max_bytes` overall;
//! the first batch of the first non-empty partition is returned whole even when larger
//! (KIP-74). Long poll: when fewer than `min_bytes` are ready the request waits up to
//! `max_wait_ms`, woken by appends to any of its partitions (no polling).
//!
//! Errors per partition: `UNKNOWN_TOPIC_OR_PARTITION`, `UNKNOWN_TOPIC_ID` (v13+ topic
//! ids), `OFFSET_OUT_OF_RANGE` (offset below the log start or above the high watermark),
//! `KAFKA_STORAGE_ERROR`. Incremental fetch sessions (KIP-227) are declined cleanly:
//! every response has session id 0, which tells clients to keep sending full requests;
//! a request that tries to continue a session gets `FETCH_SESSION_ID_NOT_FOUND`.

use super::RequestContext;
use crate::broker::Broker;
use crate::partition::{Isolation, Partition};
use bytes::Bytes;
use futures::future::select_all;
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::{FetchRequest, FetchResponse, TopicName};
use moldau_protocol::error::ResponseError;
use moldau_storage::StorageError;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `isolation_level` 1: read_committed.
const READ_COMMITTED: i8 = 1;

struct Target {
    topic_index: usize,
    /// The hosted partition, or the error to answer for it.
    partition: Result<Arc<Partition>, ResponseError>,
    fetch_offset: i64,
    max_bytes: usize,
}

/// Handles Fetch.
pub async fn handle(broker: Arc<Broker>, ctx: RequestContext, req: FetchRequest) -> FetchResponse {
    if req.session_id != 0 || req.session_epoch > 0 {
        return FetchResponse::default()
            .with_error_code(ResponseError::FetchSessionIdNotFound.code());
    }
    let image = broker.image();
    let by_id = ctx.version >= 13;
    let mut topics = Vec::with_capacity(req.topics.len());
    let mut targets = Vec::new();
    for (ti, t) in req.topics.iter().enumerate() {
        let name = if by_id {
            image.topic_names.get(&t.topic_id).cloned()
        } else {
            Some(t.topic.0.to_string())
        };
        topics.push(
            FetchableTopicResponse::default()
                .with_topic(if by_id {
                    TopicName::default()
                } else {
                    t.topic.clone()
                })
                .with_topic_id(t.topic_id),
        );
        for p in &t.partitions {
            let partition = match name.as_deref() {
                None => Err(ResponseError::UnknownTopicId),
                Some(n) => broker
                    .replicas
                    .get(n, p.partition)
                    .ok_or(ResponseError::UnknownTopicOrPartition),
            };
            targets.push((
                p.partition,
                Target {
                    topic_index: ti,
                    partition,
                    fetch_offset: p.fetch_offset,
                    max_bytes: p.partition_max_bytes.max(0) as usize,
                },
            ));
        }
    }
    let isolation = if req.isolation_level == READ_COMMITTED {
        Isolation::ReadCommitted
    } else {
        Isolation::ReadUncommitted
    };
    let deadline = Instant::now() + Duration::from_millis(req.max_wait_ms.max(0) as u64);
    let min_bytes = req.min_bytes.max(0) as usize;
    let max_bytes = if req.max_bytes <= 0 {
        i32::MAX as usize
    } else {
        req.max_bytes as usize
    };
    loop {
        // Register for wake-ups before reading, so an append in between is not missed.
        let mut waits: Vec<_> = targets
            .iter()
            .filter_map(|(_, t)| t.partition.as_ref().ok())
            .map(|p| Box::pin(p.appended()))
            .collect();
        let (results, bytes, has_error) = read_all(&targets, max_bytes, isolation);
        let now = Instant::now();
        if bytes >= min_bytes || has_error || now >= deadline || waits.is_empty() {
            let mut response = FetchResponse::default().with_session_id(0);
            for ((index, target), data) in targets.iter().zip(results) {
                topics[target.topic_index]
                    .partitions
                    .push(data.with_partition_index(*index));
            }
            response.responses = topics;
            return response;
        }
        drop(results);
        let _ = tokio::time::timeout(deadline - now, select_all(waits.iter_mut())).await;
    }
}

fn read_all(
    targets: &[(i32, Target)],
    max_bytes: usize,
    isolation: Isolation,
) -> (Vec<PartitionData>, usize, bool) {
    let mut total = 0usize;
    let mut has_error = false;
    let mut out = Vec::with_capacity(targets.len());
    for (_, t) in targets {
        let p = match &t.partition {
            Ok(p) => p,
            Err(error) => {
                has_error = true;
                out.push(error_data(*error));
                continue;
            }
        };
        let budget = t.max_bytes.min(max_bytes.saturating_sub(total));
        let min_one_batch = total == 0;
        let (offsets, read, aborted) = if budget == 0 && !min_one_batch {
            (
                p.offsets(),
                Ok(moldau_storage::FetchDataInfo {
                    records: Bytes::new(),
                    first_batch_offset: None,
                    end_offset: None,
                }),
                Vec::new(),
            )
        } else {
            p.read(t.fetch_offset, budget, min_one_batch, isolation)
        };
        let aborted: Vec<AbortedTransaction> = aborted
            .iter()
            .map(|a| {
                AbortedTransaction::default()
                    .with_producer_id(a.producer_id.into())
                    .with_first_offset(a.first_offset)
            })
            .collect();
        let mut data = PartitionData::default()
            .with_high_watermark(offsets.high_watermark)
            .with_last_stable_offset(offsets.last_stable_offset)
            .with_log_start_offset(offsets.log_start_offset)
            .with_aborted_transactions((isolation == Isolation::ReadCommitted).then_some(aborted))
            .with_preferred_read_replica((-1).into());
        match read {
            Ok(info) => {
                total += info.records.len();
                data.records = Some(info.records);
            }
            Err(StorageError::OffsetOutOfRange { .. }) => {
                has_error = true;
                data.error_code = ResponseError::OffsetOutOfRange.code();
                data.records = Some(Bytes::new());
            }
            Err(e) => {
                has_error = true;
                tracing::error!(partition = %p.tp, error = %e, "fetch read failed");
                data.error_code = ResponseError::KafkaStorageError.code();
                data.records = Some(Bytes::new());
            }
        }
        out.push(data);
    }
    (out, total, has_error)
}

fn error_data(error: ResponseError) -> PartitionData {
    PartitionData::default()
        .with_error_code(error.code())
        .with_high_watermark(-1)
        .with_last_stable_offset(-1)
        .with_log_start_offset(-1)
        .with_records(Some(Bytes::new()))
}
