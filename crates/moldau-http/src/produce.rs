//! The write path shared by `POST /produce` and `POST /api/topics/{topic}/records`:
//! validate everything first, then one batch per partition.

use crate::error::{ApiError, ApiResult};
use crate::AppState;
use bytes::Bytes;
use moldau_client::kafka_protocol::error::ResponseError;
use moldau_client::partitioner::partition_for_key;
use moldau_client::TopicInfo;
use moldau_protocol::batch::{BatchBuilder, Compression, ProducerFields, RecordHeader};
use std::time::Duration;

/// One record to write, decoded from JSON.
#[derive(Debug, Clone, Default)]
pub struct NewRecord {
    /// Explicit partition, else murmur2 of the key (as Kafka's Java client), else round
    /// robin.
    pub partition: Option<i32>,
    /// Key.
    pub key: Option<Bytes>,
    /// Value.
    pub value: Option<Bytes>,
    /// Headers in order.
    pub headers: Vec<(String, Option<Bytes>)>,
}

/// Writes `records` to `topic` with `acks=all`, one batch per partition (a partition's
/// records of one request are all written or none). Every record is checked (partition
/// exists) before anything is sent. Returns `(partition, offset)` per record, in input
/// order.
pub async fn write(
    state: &AppState,
    topic: &TopicInfo,
    records: Vec<NewRecord>,
) -> ApiResult<Vec<(i32, i64)>> {
    if records.is_empty() {
        return Err(ApiError::invalid("no records given"));
    }
    let count = i32::try_from(topic.partitions.len()).unwrap_or(i32::MAX);
    if count == 0 {
        return Err(ApiError::kafka(
            ResponseError::LeaderNotAvailable,
            format!("topic '{}' has no partitions yet", topic.name),
        ));
    }
    let mut placed: Vec<i32> = Vec::with_capacity(records.len());
    for r in &records {
        let p = match (r.partition, &r.key) {
            (Some(p), _) => p,
            (None, Some(k)) => partition_for_key(k, count),
            (None, None) => (state.next_round_robin() % count as u32) as i32,
        };
        if !(0..count).contains(&p) {
            return Err(ApiError::kafka(
                ResponseError::UnknownTopicOrPartition,
                format!(
                    "topic '{}' has no partition {p} (it has {count})",
                    topic.name
                ),
            ));
        }
        placed.push(p);
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let mut partitions: Vec<i32> = placed.clone();
    partitions.sort_unstable();
    partitions.dedup();
    let mut base_offsets = Vec::with_capacity(partitions.len());
    for &p in &partitions {
        let mut builder = BatchBuilder::default();
        for (r, _) in records.iter().zip(&placed).filter(|(_, q)| **q == p) {
            let headers: Vec<RecordHeader<'_>> = r
                .headers
                .iter()
                .map(|(k, v)| (k.as_bytes(), v.as_deref()))
                .collect();
            builder.push(now, r.key.as_deref(), r.value.as_deref(), &headers);
        }
        let batch = builder
            .finish(0, ProducerFields::NONE, Compression::None)
            .ok_or_else(|| ApiError::invalid("empty batch"))?;
        let batch = Bytes::from(batch);
        let client = state.client();
        let ack = client
            .retry(Some(&topic.name), || {
                client.produce_batch(
                    &topic.name,
                    p,
                    batch.clone(),
                    -1,
                    Duration::from_secs(30),
                    None,
                )
            })
            .await?;
        base_offsets.push((p, ack.base_offset));
    }
    let mut next_in: Vec<(i32, i64)> = base_offsets;
    Ok(placed
        .iter()
        .map(|p| {
            let slot = next_in.iter_mut().find(|(q, _)| q == p);
            match slot {
                Some((_, offset)) => {
                    let o = *offset;
                    *offset += 1;
                    (*p, o)
                }
                None => (*p, -1),
            }
        })
        .collect())
}

/// Reads a JSON body within the cap: 413 MESSAGE_TOO_LARGE above it, 400
/// INVALID_REQUEST for malformed JSON or the wrong shape.
pub fn parse_body<T: serde::de::DeserializeOwned>(
    state: &AppState,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult<T> {
    let body = body.map_err(|e| {
        if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            too_large(state)
        } else {
            ApiError::invalid(format!("cannot read the body: {e}"))
        }
    })?;
    if body.len() > state.max_body_bytes() {
        return Err(too_large(state));
    }
    serde_json::from_slice(&body)
        .map_err(|e| ApiError::invalid(format!("malformed JSON body: {e}")))
}

fn too_large(state: &AppState) -> ApiError {
    ApiError::kafka(
        ResponseError::MessageTooLarge,
        format!("the body is larger than {} bytes", state.max_body_bytes()),
    )
}
