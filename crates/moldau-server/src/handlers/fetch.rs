//! Fetch (key 1), versions 4–16.
//!
//! Returns stored batches as they are, from the batch containing `fetch_offset` up to the
//! high watermark (`read_uncommitted`) or the last stable offset (`read_committed`, with
//! the aborted transactions among the returned batches listed, KIP-98), within
//! `partition_max_bytes` per partition and `max_bytes` overall (for consumers, no more
//! than the broker's `fetch.max.bytes`);
//! the first batch of the first non-empty partition is returned whole even when larger
//! (KIP-74). Long poll: when fewer than `min_bytes` are ready the request waits up to
//! `max_wait_ms`, woken by appends to any of its partitions (no polling).
//!
//! Only the leader serves fetches. A fetch from a follower (`replica_id >= 0`, or
//! `replica_state.replica_id` from v15) reads up to the log end offset, is checked for
//! divergence against the leader-epoch cache (`last_fetched_epoch`, answered with
//! `diverging_epoch` and no records), records the follower's position (which may
//! advance the high watermark or grow the ISR), and long-polls on appends; a consumer
//! fetch reads below the high watermark and long-polls on its advance.
//!
//! Errors per partition: `NOT_LEADER_OR_FOLLOWER`, `FENCED_LEADER_EPOCH` /
//! `UNKNOWN_LEADER_EPOCH` (a stale or future `current_leader_epoch`, KIP-320),
//! `UNKNOWN_TOPIC_OR_PARTITION`, `UNKNOWN_TOPIC_ID` (v13+ topic ids),
//! `OFFSET_OUT_OF_RANGE` (offset below the log start or above the log end offset),
//! `KAFKA_STORAGE_ERROR`. Incremental fetch sessions (KIP-227) are declined cleanly:
//! every response has session id 0, which tells clients to keep sending full requests;
//! a request that tries to continue a session gets `FETCH_SESSION_ID_NOT_FOUND`.

use super::RequestContext;
use crate::broker::Broker;
use crate::partition::{FollowerFetch, Isolation, Partition};
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
    last_fetched_epoch: i32,
}

/// Handles Fetch. With an authorizer, a follower (a `replica_id`) needs CLUSTER_ACTION on
/// the cluster (else the whole answer is `CLUSTER_AUTHORIZATION_FAILED`), a consumer
/// READ on each topic (else its partitions are `TOPIC_AUTHORIZATION_FAILED`).
pub async fn handle(broker: Arc<Broker>, ctx: RequestContext, req: FetchRequest) -> FetchResponse {
    use super::{AclOperation, ResourceType};
    if req.session_id != 0 || req.session_epoch > 0 {
        return FetchResponse::default()
            .with_error_code(ResponseError::FetchSessionIdNotFound.code());
    }
    let replica = if ctx.version >= 15 {
        req.replica_state.replica_id.0
    } else {
        req.replica_id.0
    };
    if replica >= 0 && !ctx.allowed_on_cluster(&broker, AclOperation::ClusterAction) {
        return FetchResponse::default()
            .with_error_code(ResponseError::ClusterAuthorizationFailed.code());
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
        let denied = replica < 0
            && name
                .as_deref()
                .is_some_and(|n| !ctx.allowed(&broker, AclOperation::Read, ResourceType::Topic, n));
        for p in &t.partitions {
            let partition = match name.as_deref() {
                None => Err(ResponseError::UnknownTopicId),
                Some(_) if denied => Err(ResponseError::TopicAuthorizationFailed),
                Some(n) => broker
                    .replicas
                    .get(n, p.partition)
                    .ok_or(ResponseError::UnknownTopicOrPartition)
                    .and_then(|part| {
                        if !part.is_leader() {
                            return Err(ResponseError::NotLeaderOrFollower);
                        }
                        part.check_leader_epoch(p.current_leader_epoch)?;
                        Ok(part)
                    }),
            };
            targets.push((
                p.partition,
                Target {
                    topic_index: ti,
                    partition,
                    fetch_offset: p.fetch_offset,
                    max_bytes: p.partition_max_bytes.max(0) as usize,
                    last_fetched_epoch: p.last_fetched_epoch,
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
    let follower = (replica >= 0).then_some(replica);
    let asked = if req.max_bytes <= 0 {
        i32::MAX as usize
    } else {
        req.max_bytes as usize
    };
    // A consumer gets at most the broker's `fetch.max.bytes`, whatever it asks (the
    // first batch still comes whole, KIP-74); followers are sized by their own
    // `replica.fetch.*` settings.
    let max_bytes = if follower.is_some() {
        asked
    } else {
        asked.min(broker.config.fetch_max_bytes.max(1))
    };
    // A read of older segments may wait on the disk: block_in_place hands this worker's
    // other tasks (other connections) to another thread meanwhile. Reads of the active
    // segment come from the page cache and stay inline, where they cost nothing extra.
    // Decided once per fetch: the fetch offsets do not change across long-poll re-reads.
    let cold = targets.iter().any(|(_, t)| {
        t.partition
            .as_ref()
            .is_ok_and(|p| p.reads_old_segments(t.fetch_offset))
    });
    let mut first = true;
    loop {
        // Register for wake-ups before reading, so a change in between is not missed:
        // followers wait for appends, consumers for the high watermark.
        let mut waits: Vec<_> = targets
            .iter()
            .filter_map(|(_, t)| t.partition.as_ref().ok())
            .map(|p| {
                Box::pin(if follower.is_some() {
                    p.appended()
                } else {
                    p.committed()
                })
            })
            .collect();
        // This read's share of `fetch.response.pool.bytes`: at most what the pool has
        // left; with nothing left, one batch (a budget of 1 byte still returns the first
        // batch whole, KIP-74), so a stalled pool slows this fetch but never stops it.
        let mut permit = reserve(&broker.fetch_pool, max_bytes);
        let budget = permit.as_ref().map_or(0, |p| p.num_permits()).max(1);
        let read = || match follower {
            Some(replica) => read_for_follower(&broker, &targets, budget, replica, first),
            None => read_all(&targets, budget, isolation),
        };
        let (results, bytes, has_error) = if cold {
            moldau_metadata::blocking(read)
        } else {
            read()
        };
        first = false;
        let now = Instant::now();
        if bytes >= min_bytes || has_error || now >= deadline || waits.is_empty() {
            // Hold what was read until the network layer has written it; give back the
            // rest of the reservation now.
            if let Some(p) = permit.as_mut() {
                let held = p.num_permits();
                if held > bytes {
                    drop(p.split(held - bytes));
                }
            }
            *ctx.fetch_permit.lock() = permit;
            let mut response = FetchResponse::default().with_session_id(0);
            if follower.is_none() && bytes > 0 {
                // Over its consumer_byte_rate quota, a consumer gets an empty answer with
                // the throttle time and the bytes are not counted (Kafka's rule).
                let quota = moldau_metadata::quota::CONSUMER_BYTE_RATE;
                let throttle = ctx.throttle(&broker, quota, bytes);
                if throttle > 0 {
                    ctx.withhold_fetched(&broker, bytes);
                    return response
                        .with_throttle_time_ms(i32::try_from(throttle).unwrap_or(i32::MAX));
                }
            }
            for ((index, target), data) in targets.iter().zip(results) {
                topics[target.topic_index]
                    .partitions
                    .push(data.with_partition_index(*index));
            }
            response.responses = topics;
            return response;
        }
        drop(results);
        drop(permit);
        let _ = tokio::time::timeout(deadline - now, select_all(waits.iter_mut())).await;
    }
}

/// Up to `want` bytes of the fetch response pool, without waiting: `None` when the pool
/// is empty (or another fetch took what was left first).
fn reserve(
    pool: &Arc<tokio::sync::Semaphore>,
    want: usize,
) -> Option<tokio::sync::OwnedSemaphorePermit> {
    let n = want.min(pool.available_permits()).min(u32::MAX as usize);
    if n == 0 {
        return None;
    }
    pool.clone().try_acquire_many_owned(n as u32).ok()
}

/// A follower's fetch: divergence checks, reads up to the log end offset, and the
/// follower's position recorded (on the first pass only: a long-poll wake-up reads the
/// same fetch offset again). Partition actions (ISR expansion) are carried out.
fn read_for_follower(
    broker: &Arc<Broker>,
    targets: &[(i32, Target)],
    max_bytes: usize,
    replica: i32,
    record_position: bool,
) -> (Vec<PartitionData>, usize, bool) {
    let mut total = 0usize;
    let mut has_error = false;
    let mut out = Vec::with_capacity(targets.len());
    let now = crate::replica_manager::now_ms();
    for (_, t) in targets {
        let p = match &t.partition {
            Ok(p) => p,
            Err(error) => {
                has_error = true;
                out.push(error_data(*error));
                continue;
            }
        };
        if let Some((epoch, end)) = p.diverging_epoch(t.last_fetched_epoch, t.fetch_offset) {
            has_error = true;
            let offsets = p.offsets();
            if epoch < 0 {
                // This log knows no epoch up to the follower's: it cannot say where the
                // logs part. OFFSET_OUT_OF_RANGE with the high watermark makes the
                // follower fall back to what is committed here.
                out.push(
                    error_data(ResponseError::OffsetOutOfRange)
                        .with_high_watermark(offsets.high_watermark)
                        .with_log_start_offset(offsets.log_start_offset),
                );
                continue;
            }
            out.push(
                PartitionData::default()
                    .with_high_watermark(offsets.high_watermark)
                    .with_last_stable_offset(offsets.last_stable_offset)
                    .with_log_start_offset(offsets.log_start_offset)
                    .with_diverging_epoch(
                        kafka_protocol::messages::fetch_response::EpochEndOffset::default()
                            .with_epoch(epoch)
                            .with_end_offset(end),
                    )
                    .with_records(Some(Bytes::new())),
            );
            continue;
        }
        let budget = t.max_bytes.min(max_bytes.saturating_sub(total));
        let fetch = FollowerFetch {
            replica,
            fetch_offset: t.fetch_offset,
            last_fetched_epoch: t.last_fetched_epoch,
        };
        let read = p.read_for_follower(fetch, budget, total == 0, record_position.then_some(now));
        let (offsets, data) = match read {
            Ok((offsets, data, actions)) => {
                crate::isr_manager::act(
                    broker,
                    actions.into_iter().map(|a| (p.clone(), a)).collect(),
                );
                (offsets, data)
            }
            Err(e) => {
                has_error = true;
                out.push(error_data(e.response_error()));
                continue;
            }
        };
        let mut partition = PartitionData::default()
            .with_high_watermark(offsets.high_watermark)
            .with_last_stable_offset(offsets.last_stable_offset)
            .with_log_start_offset(offsets.log_start_offset)
            .with_preferred_read_replica((-1).into());
        match data {
            Ok(info) => {
                total += info.records.len();
                partition.records = Some(info.records);
            }
            Err(StorageError::OffsetOutOfRange { .. }) => {
                has_error = true;
                partition.error_code = ResponseError::OffsetOutOfRange.code();
                partition.records = Some(Bytes::new());
            }
            Err(e) => {
                has_error = true;
                tracing::error!(partition = %p.tp, error = %e, "follower fetch read failed");
                partition.error_code = ResponseError::KafkaStorageError.code();
                partition.records = Some(Bytes::new());
            }
        }
        out.push(partition);
    }
    (out, total, has_error)
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
