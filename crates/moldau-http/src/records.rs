//! `GET` and `POST /api/topics/{topic}/records`: records by partition and offset,
//! timestamp or "latest N", with keys, values and headers; and the read loop that the
//! minimal `/fetch` shares.

use crate::encoding::Encoding;
use crate::error::{ApiError, ApiResult};
use crate::produce::{self, NewRecord};
use crate::Session;
use axum::extract::{Path, Query};
use axum::Json;
use bytes::Bytes;
use moldau_client::kafka_protocol::error::ResponseError;
use moldau_client::{ConsumerRecord, FetchOptions, IsolationLevel, OffsetSpec};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;

/// Most records one read returns.
pub const MAX_LIMIT: usize = 1000;

/// What a read returned.
#[derive(Debug, Default)]
pub struct Read {
    /// Records in offset order.
    pub records: Vec<ConsumerRecord>,
    /// The partition's high watermark.
    pub high_watermark: i64,
    /// Offset to read next.
    pub next_offset: i64,
}

/// Reads `topic`-`partition` from `start`: at most `limit` records and at most
/// `max_bytes` of values (but always the first record, so a reader can make progress),
/// stopping at the end of what `isolation` may see. Never waits for new records.
pub async fn read(
    state: &Session,
    topic: &str,
    partition: i32,
    start: i64,
    limit: usize,
    max_bytes: usize,
    isolation: IsolationLevel,
) -> ApiResult<Read> {
    if start < 0 {
        return Err(ApiError::invalid(format!("offset {start} is negative")));
    }
    let mut out = Read {
        next_offset: start,
        ..Default::default()
    };
    let mut bytes = 0usize;
    let options = FetchOptions {
        max_bytes: i32::try_from(max_bytes.clamp(1024, 4 << 20)).unwrap_or(4 << 20),
        max_wait_ms: 0,
        min_bytes: 0,
        isolation,
    };
    // A few rounds at most: each one moves past at least one batch, or stops.
    for _ in 0..16 {
        let fetched = state
            .client()
            .fetch(topic, partition, out.next_offset, options)
            .await?;
        out.high_watermark = fetched.high_watermark;
        let progressed = fetched.next_offset > out.next_offset;
        for r in fetched.records {
            let size = r.value.as_ref().map_or(0, |v| v.len());
            if out.records.len() >= limit || (!out.records.is_empty() && bytes + size > max_bytes) {
                return Ok(out);
            }
            bytes += size;
            out.next_offset = r.offset + 1;
            out.records.push(r);
        }
        if !progressed {
            break;
        }
        // Skipped control or aborted batches still move the position.
        out.next_offset = out.next_offset.max(fetched.next_offset);
        if out.records.len() >= limit {
            break;
        }
    }
    Ok(out)
}

/// Parses query parameter `name` as a `T`; 400 INVALID_REQUEST if it does not parse.
pub fn param<T: std::str::FromStr>(
    q: &HashMap<String, String>,
    name: &str,
) -> ApiResult<Option<T>> {
    match q.get(name) {
        None => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| ApiError::invalid(format!("query parameter {name}={v:?} is not valid"))),
    }
}

/// The `encoding` query parameter (`utf8`, the default, or `base64`).
pub fn encoding_param(q: &HashMap<String, String>) -> ApiResult<Encoding> {
    match q.get("encoding").map(String::as_str) {
        None | Some("utf8") | Some("utf-8") | Some("text") => Ok(Encoding::Utf8),
        Some("base64") => Ok(Encoding::Base64),
        Some(other) => Err(ApiError::invalid(format!(
            "encoding={other:?}: use utf8 or base64"
        ))),
    }
}

fn isolation_param(q: &HashMap<String, String>) -> ApiResult<IsolationLevel> {
    match q.get("isolation").map(String::as_str) {
        None | Some("read_uncommitted") => Ok(IsolationLevel::ReadUncommitted),
        Some("read_committed") => Ok(IsolationLevel::ReadCommitted),
        Some(other) => Err(ApiError::invalid(format!(
            "isolation={other:?}: use read_uncommitted or read_committed"
        ))),
    }
}

/// `GET /api/topics/{topic}/records?partition=P&offset=O|timestamp=MS|latest=N&limit=L&max_bytes=B&encoding=E&isolation=I`
/// → `{"records": [{"partition","offset","timestamp","key","value","headers":[{"key","value"}]}], "high_watermark", "next_offset"}`.
/// Defaults: partition 0, offset 0, limit 50 (at most 1000), max_bytes 1 MiB.
pub async fn fetch(
    state: Session,
    Path(topic): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let partition = param::<i32>(&q, "partition")?.unwrap_or(0);
    let limit = param::<usize>(&q, "limit")?
        .unwrap_or(50)
        .clamp(1, MAX_LIMIT);
    let max_bytes = param::<usize>(&q, "max_bytes")?.unwrap_or(1 << 20).max(1);
    let encoding = encoding_param(&q)?;
    let isolation = isolation_param(&q)?;
    let client = state.client();
    let info = client.topic(&topic).await?;
    if !info.partitions.iter().any(|p| p.partition == partition) {
        return Err(ApiError::kafka(
            ResponseError::UnknownTopicOrPartition,
            format!("topic '{topic}' has no partition {partition}"),
        ));
    }
    let (start, limit) = if let Some(n) = param::<usize>(&q, "latest")? {
        let n = n.clamp(1, MAX_LIMIT);
        let first = client
            .list_offset(&topic, partition, OffsetSpec::Earliest, isolation)
            .await?;
        let end = client
            .list_offset(&topic, partition, OffsetSpec::Latest, isolation)
            .await?;
        ((end - n as i64).max(first), n)
    } else if let Some(ts) = param::<i64>(&q, "timestamp")? {
        let at = client
            .list_offset(&topic, partition, OffsetSpec::Timestamp(ts), isolation)
            .await?;
        let start = if at < 0 {
            client
                .list_offset(&topic, partition, OffsetSpec::Latest, isolation)
                .await?
        } else {
            at
        };
        (start, limit)
    } else {
        (param::<i64>(&q, "offset")?.unwrap_or(0), limit)
    };
    let read = read(
        &state, &topic, partition, start, limit, max_bytes, isolation,
    )
    .await?;
    let records = read
        .records
        .iter()
        .map(|r| record_json(r, encoding))
        .collect::<ApiResult<Vec<Value>>>()?;
    Ok(Json(json!({
        "records": records,
        "high_watermark": read.high_watermark,
        "next_offset": read.next_offset,
    })))
}

fn record_json(r: &ConsumerRecord, encoding: Encoding) -> ApiResult<Value> {
    let headers = r
        .headers
        .iter()
        .map(|h| {
            Ok(json!({"key": h.key, "value": encoding.encode_opt(h.value.as_ref(), r.offset)?}))
        })
        .collect::<ApiResult<Vec<Value>>>()?;
    Ok(json!({
        "partition": r.partition,
        "offset": r.offset,
        "timestamp": r.timestamp_ms,
        "key": encoding.encode_opt(r.key.as_ref(), r.offset)?,
        "value": encoding.encode_opt(r.value.as_ref(), r.offset)?,
        "headers": headers,
    }))
}

/// Headers as a JSON object (`{"k": "v"}`) or a list (`[{"key": "k", "value": "v"}]`,
/// which allows repeated keys and null values).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum HeadersIn {
    /// `{"k": "v"}`.
    Map(std::collections::BTreeMap<String, Option<String>>),
    /// `[{"key": "k", "value": "v"}]`.
    List(Vec<HeaderIn>),
}

/// One header in list form.
#[derive(Debug, Deserialize)]
pub struct HeaderIn {
    /// Key.
    pub key: String,
    /// Value, `null` allowed.
    pub value: Option<String>,
}

/// One record of a produce body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordIn {
    /// Partition; absent for murmur2 of the key (or round robin without a key).
    pub partition: Option<i32>,
    /// Key.
    pub key: Option<String>,
    /// Value.
    pub value: Option<String>,
    /// Headers.
    pub headers: Option<HeadersIn>,
}

/// A produce body: `{"records": [...], "encoding": "utf8" | "base64"}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProduceIn {
    /// Records to write.
    pub records: Vec<RecordIn>,
    /// Encoding of keys, values and header values.
    #[serde(default)]
    pub encoding: Encoding,
}

fn decode(encoding: Encoding, s: Option<&String>) -> ApiResult<Option<Bytes>> {
    s.map(|s| encoding.decode(s)).transpose()
}

/// `POST /api/topics/{topic}/records` with [`ProduceIn`] → `{"offsets": [{"partition","offset"}]}`
/// in input order. 404 for an unknown topic (no auto-creation here) or partition, 400
/// for a malformed record; nothing is written unless every record is valid (see
/// [`produce::write`] for records the broker refuses).
pub async fn produce(
    state: Session,
    Path(topic): Path<String>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult<Json<Value>> {
    let body: ProduceIn = produce::parse_body(&state, body)?;
    let encoding = body.encoding;
    let records = body
        .records
        .into_iter()
        .map(|r| {
            let headers = match r.headers {
                None => Vec::new(),
                Some(HeadersIn::Map(m)) => m
                    .into_iter()
                    .map(|(k, v)| Ok((k, decode(encoding, v.as_ref())?)))
                    .collect::<ApiResult<_>>()?,
                Some(HeadersIn::List(l)) => l
                    .into_iter()
                    .map(|h| Ok((h.key, decode(encoding, h.value.as_ref())?)))
                    .collect::<ApiResult<_>>()?,
            };
            Ok(NewRecord {
                partition: r.partition,
                key: decode(encoding, r.key.as_ref())?,
                value: decode(encoding, r.value.as_ref())?,
                headers,
            })
        })
        .collect::<ApiResult<Vec<_>>>()?;
    state.client().invalidate_topic(&topic);
    let info = state.client().topic(&topic).await?;
    let placed = produce::write(&state, &info, records).await?;
    let offsets: Vec<Value> = placed
        .into_iter()
        .map(|(partition, offset)| json!({"partition": partition, "offset": offset}))
        .collect();
    Ok(Json(json!({ "offsets": offsets })))
}
