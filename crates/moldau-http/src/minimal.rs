//! The original minimal broker's API, exactly: `POST /produce` and `GET /fetch`, both on
//! partition 0 of a topic.

use crate::encoding::Encoding;
use crate::error::{ApiError, ApiResult};
use crate::produce::{self, NewRecord};
use crate::records::{self, encoding_param, param};
use crate::Session;
use axum::extract::Query;
use axum::Json;
use bytes::Bytes;
use moldau_client::IsolationLevel;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;

/// `max_bytes` when `/fetch` does not say, bytes of payload.
pub const DEFAULT_FETCH_MAX_BYTES: usize = 4096;

/// Body of `POST /produce`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProduceIn {
    /// Topic; created with the broker's `num.partitions` when it does not exist and the
    /// broker allows auto-creation (`auto.create.topics.enable`).
    pub topic: String,
    /// The record's value.
    pub payload: String,
    /// `utf8` (default) or `base64`.
    #[serde(default)]
    pub encoding: Encoding,
}

/// `POST /produce` `{"topic": "...", "payload": "..."}` → `{"offset": N}`: writes one
/// record (no key) to partition 0 with `acks=all`.
pub async fn produce(
    state: Session,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult<Json<Value>> {
    let body: ProduceIn = produce::parse_body(&state, body)?;
    if body.topic.is_empty() {
        return Err(ApiError::invalid("topic must not be empty"));
    }
    let value = body.encoding.decode(&body.payload)?;
    let info = state.client().topic_with(&body.topic, true).await?;
    let placed = produce::write(
        &state,
        &info,
        vec![NewRecord {
            partition: Some(0),
            value: Some(value),
            ..Default::default()
        }],
    )
    .await?;
    let offset = placed.first().map_or(-1, |(_, o)| *o);
    Ok(Json(json!({ "offset": offset })))
}

/// `GET /fetch?topic=T&offset=O&max_bytes=B[&encoding=base64]` →
/// `{"records": [{"offset": N, "payload": "..."}]}`: records of partition 0 from offset
/// `O` (default 0) whose payloads add up to at most `B` bytes (default 4096; the first
/// record always comes back, so a reader can make progress). An offset at the end gives
/// no records; beyond it or below the log start, 416 OFFSET_OUT_OF_RANGE.
pub async fn fetch(
    state: Session,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let topic = q
        .get("topic")
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::invalid("query parameter topic is required"))?;
    let offset = param::<i64>(&q, "offset")?.unwrap_or(0);
    let max_bytes = param::<usize>(&q, "max_bytes")?.unwrap_or(DEFAULT_FETCH_MAX_BYTES);
    if max_bytes == 0 {
        return Err(ApiError::invalid("max_bytes must be positive"));
    }
    let encoding = encoding_param(&q)?;
    state.client().topic(topic).await?;
    let read = records::read(
        &state,
        topic,
        0,
        offset,
        records::MAX_LIMIT,
        max_bytes,
        IsolationLevel::ReadUncommitted,
    )
    .await?;
    let records = read
        .records
        .iter()
        .map(|r| {
            let payload = match &r.value {
                Some(v) => Value::String(encoding.encode(v, r.offset)?),
                None => Value::Null,
            };
            Ok(json!({"offset": r.offset, "payload": payload}))
        })
        .collect::<ApiResult<Vec<Value>>>()?;
    Ok(Json(json!({ "records": records })))
}
