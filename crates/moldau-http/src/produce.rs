//! The write path shared by `POST /produce` and `POST /api/topics/{topic}/records`:
//! validate everything first, then send through one idempotent producer.

use crate::error::{ApiError, ApiResult};
use crate::Session;
use bytes::Bytes;
use moldau_client::kafka_protocol::error::ResponseError;
use moldau_client::partitioner::partition_for_key;
use moldau_client::{Header, ProducerRecord, TopicInfo};

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

/// Writes `records` to `topic` through the API's idempotent producer (`acks=all`), so a
/// retry after a timeout or a broken connection never stores a record twice. Every
/// record is placed and checked (its partition exists) before any is sent. Returns
/// `(partition, offset)` per record, in input order.
///
/// Records on different partitions are not one atomic write: if the broker refuses
/// some (MESSAGE_TOO_LARGE, NOT_ENOUGH_REPLICAS, …) the others may be stored. The error
/// then says how many were.
pub async fn write(
    state: &Session,
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
    let total = records.len();
    // One request, one moment: every record of it carries the same CreateTime.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let producer = state.producer().await?;
    let mut deliveries = Vec::with_capacity(total);
    for (r, p) in records.into_iter().zip(&placed) {
        let mut record = ProducerRecord::new(topic.name.clone())
            .with_partition(*p)
            .with_timestamp(now);
        record.key = r.key;
        record.value = r.value;
        record.headers = r
            .headers
            .into_iter()
            .map(|(key, value)| Header { key, value })
            .collect();
        deliveries.push(producer.send(record).await);
    }
    let mut offsets = Vec::with_capacity(total);
    let mut first_error = None;
    for d in deliveries {
        let delivered = match d {
            Ok(future) => future.await,
            Err(e) => Err(e),
        };
        match delivered {
            Ok(m) => offsets.push((m.partition, m.offset)),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        None => Ok(offsets),
        Some(e) => {
            let mut err = ApiError::from(e);
            if !offsets.is_empty() {
                err.message = format!(
                    "{} ({} of {total} records were written)",
                    err.message,
                    offsets.len()
                );
            }
            Err(err)
        }
    }
}

/// Reads a JSON body within the cap: 413 MESSAGE_TOO_LARGE above it, 400
/// INVALID_REQUEST for malformed JSON or the wrong shape.
pub fn parse_body<T: serde::de::DeserializeOwned>(
    state: &Session,
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

fn too_large(state: &Session) -> ApiError {
    ApiError::kafka(
        ResponseError::MessageTooLarge,
        format!("the body is larger than {} bytes", state.max_body_bytes()),
    )
}
