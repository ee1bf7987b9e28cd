//! Produce (key 0), versions 3–11; versions 0–2 are advertised and answered with
//! `UNSUPPORTED_VERSION`, as Kafka 4 does (see [`reject_legacy`]).
//!
//! Per partition: the `records` field must be exactly one magic-2 batch (Kafka's rule
//! since v3) whose length, record count and CRC-32C are valid (`CORRUPT_MESSAGE`,
//! `INVALID_RECORD`, `UNSUPPORTED_FOR_MESSAGE_FORMAT`), no larger than the topic's
//! `max.message.bytes` (`MESSAGE_TOO_LARGE`), with timestamps inside
//! `message.timestamp.before/after.max.ms` (`INVALID_TIMESTAMP`) and, in a compacted
//! topic, a key on every record (`INVALID_RECORD`); the records behind the last two are
//! listed in `record_errors` (KIP-467, v8+; see [`check_records`]). Offsets are
//! assigned by rewriting the batch header in place; records are never re-encoded, and
//! decompressed only for those checks.
//!
//! Idempotence (KIP-98): batches with a producer id are checked against the partition's
//! producer state; a retry of one of the producer's last five batches is answered with
//! the original offsets and writes nothing, a gap gets `OUT_OF_ORDER_SEQUENCE_NUMBER`, a
//! stale epoch `INVALID_PRODUCER_EPOCH`, a plain batch inside an open transaction
//! `INVALID_TXN_STATE`.
//!
//! Only the leader appends (`NOT_LEADER_OR_FOLLOWER` otherwise). The append happens when
//! the request is dispatched, so requests on one connection are appended in order.
//! `acks=1` answers once the batch is in the leader's page cache; `acks=-1` is refused
//! with `NOT_ENOUGH_REPLICAS` while the ISR is below `min.insync.replicas`, and answered
//! once the batch is committed: fsynced on the leader (group commit) and on every ISR
//! member ([`crate::partition::Partition::wait_committed`]), or `REQUEST_TIMED_OUT` after
//! the request's `timeout_ms`, `NOT_LEADER_OR_FOLLOWER` if leadership moved meanwhile,
//! `NOT_ENOUGH_REPLICAS_AFTER_APPEND` if the ISR shrank below the minimum. `acks=0`
//! gets no response, and any error closes the connection, as Kafka does.

use super::{encode_response, msg, Dispatch, Reply};
use crate::broker::Broker;
use crate::config::TopicSettings;
use crate::partition::{Partition, PartitionError};
use crate::replica_manager::now_ms;
use bytes::BytesMut;
use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse, RequestHeader};
use moldau_protocol::batch::{self, BatchError, TimestampType};
use moldau_protocol::error::ResponseError;
use moldau_storage::AppendOrigin;
use std::sync::Arc;
use std::time::Duration;

/// Why a partition's records were refused: the error code, its message, and (KIP-467)
/// the records that caused it by index in the batch, each with why.
struct Rejection {
    code: ResponseError,
    message: String,
    record_errors: Vec<(i32, String)>,
}

impl Rejection {
    fn new(code: ResponseError, message: impl Into<String>) -> Self {
        Rejection {
            code,
            message: message.into(),
            record_errors: Vec::new(),
        }
    }
}

fn batch_error(e: BatchError) -> Rejection {
    let code = match e {
        BatchError::InvalidMagic(_) => ResponseError::UnsupportedForMessageFormat,
        BatchError::InvalidRecordCount { .. } => ResponseError::InvalidRecord,
        BatchError::Truncated { .. }
        | BatchError::InvalidLength(_)
        | BatchError::CorruptCrc { .. } => ResponseError::CorruptMessage,
    };
    Rejection::new(code, e.to_string())
}

fn partition_error(e: &PartitionError) -> Rejection {
    Rejection::new(e.response_error(), e.to_string())
}

/// Validates one partition's records and appends them. Returns the append info and the
/// log start offset after the append.
fn append(
    partition: &Arc<Partition>,
    records: Option<&bytes::Bytes>,
    acks: i16,
    now: i64,
) -> Result<(moldau_storage::LogAppendInfo, i64), Rejection> {
    if acks == -1 {
        partition.check_min_isr().map_err(|e| partition_error(&e))?;
    }
    let records =
        records.ok_or_else(|| Rejection::new(ResponseError::InvalidRecord, "null records"))?;
    let header = batch::validate(records).map_err(batch_error)?;
    if header.size_in_bytes() != records.len() {
        return Err(Rejection::new(
            ResponseError::InvalidRecord,
            "produce requests (v3+) must carry exactly one record batch per partition",
        ));
    }
    header.validate_record_count().map_err(batch_error)?;
    if header.is_control() {
        return Err(Rejection::new(
            ResponseError::InvalidRecord,
            "clients may not produce control batches",
        ));
    }
    let settings = partition.settings();
    if records.len() > settings.max_message_bytes {
        return Err(Rejection::new(
            ResponseError::MessageTooLarge,
            format!(
                "batch of {} bytes exceeds max.message.bytes ({})",
                records.len(),
                settings.max_message_bytes
            ),
        ));
    }
    check_records(records, &header, &settings, now)?;
    let log_append_time = match settings.timestamp_type {
        TimestampType::LogAppendTime => Some(now),
        TimestampType::CreateTime => None,
    };
    // The frame buffer is shared with the decoded request; the batch is copied once so
    // its header can be rewritten (the CRC pass over it costs as much again).
    let mut bytes = BytesMut::from(&records[..]);
    partition
        .append(&mut bytes, log_append_time, now, AppendOrigin::Client)
        .map_err(|e| partition_error(&e))
}

/// Most refused records listed in one partition's `record_errors`; the others are
/// counted in its message (a real batch has far fewer, a hostile one need not cost more).
const MAX_RECORD_ERRORS: usize = 10_000;

/// The checks Kafka's `LogValidator` makes record by record, each refused record listed
/// by its index in the batch (KIP-467, Produce v8+ `record_errors`), so a client fails
/// exactly those records (librdkafka: the others with `INVALID_DIFFERENT_RECORD`):
///
/// - a record without a key in a compacted topic (which keeps the latest record per
///   key): `INVALID_RECORD`;
/// - under `CreateTime`, a record timestamp more than `message.timestamp.before.max.ms`
///   before or `message.timestamp.after.max.ms` after the broker's clock:
///   `INVALID_TIMESTAMP`, which wins when both kinds occur, as in Kafka.
///
/// The records are walked (a compressed batch decompressed, bounded) only for a
/// compacted topic or when the batch header's timestamps (the first record's and the
/// largest) fall outside the window, so the common path never looks inside a batch. A
/// later record older than the window while the first is inside it is therefore let
/// through; Kafka, which decompresses every batch, would refuse it.
fn check_records(
    records: &[u8],
    header: &batch::BatchHeader,
    settings: &TopicSettings,
    now: i64,
) -> Result<(), Rejection> {
    let window = match settings.timestamp_type {
        TimestampType::LogAppendTime => None,
        TimestampType::CreateTime => Some((
            now.saturating_sub(settings.timestamp_before_max_ms),
            now.saturating_add(settings.timestamp_after_max_ms),
        )),
    };
    let outside = |ts: i64| window.is_some_and(|(lo, hi)| ts != -1 && (ts < lo || ts > hi));
    let check_timestamps = outside(header.base_timestamp) || outside(header.max_timestamp);
    if !settings.compacted && !check_timestamps {
        return Ok(());
    }
    let body = &records[batch::RECORD_BATCH_OVERHEAD..header.size_in_bytes()];
    let owned;
    let body = match header.compression() {
        batch::Compression::None => body,
        codec => {
            owned = moldau_protocol::compression::decompress(codec, body).ok_or_else(|| {
                Rejection::new(ResponseError::CorruptMessage, "cannot decompress the batch")
            })?;
            &owned[..]
        }
    };
    // Walked without collecting (the record count is the peer's); the refused records
    // listed are bounded too, the rest only counted.
    let mut record_errors = Vec::new();
    let mut refused = 0usize;
    let mut timestamp_errors = 0;
    let mut walked = 0usize;
    batch::for_each_record(body, header.records_count, |index, r| {
        walked += 1;
        let index = i32::try_from(index).unwrap_or(i32::MAX);
        let mut refuse = |why: String| {
            refused += 1;
            if record_errors.len() < MAX_RECORD_ERRORS {
                record_errors.push((index, why));
            }
        };
        if settings.compacted && r.key.is_none() {
            refuse("Compacted topic cannot accept message without key".to_owned());
        }
        let ts = header.base_timestamp.saturating_add(r.timestamp_delta);
        if check_timestamps && outside(ts) {
            let (lo, hi) = window.unwrap_or_default();
            timestamp_errors += 1;
            refuse(format!("Timestamp {ts} of record {index} is outside [{lo}, {hi}] (message.timestamp.before/after.max.ms around {now})"));
        }
    })
    .ok_or_else(|| Rejection::new(ResponseError::CorruptMessage, "malformed records"))?;
    if record_errors.is_empty() {
        if outside(header.max_timestamp) {
            // The header's largest timestamp matches no record: refuse the batch whole
            // rather than index a timestamp no record has.
            return Err(Rejection::new(
                ResponseError::InvalidTimestamp,
                format!("the batch's max timestamp {} is outside message.timestamp.before/after.max.ms around {now}", header.max_timestamp),
            ));
        }
        return Ok(());
    }
    let code = if timestamp_errors > 0 {
        ResponseError::InvalidTimestamp
    } else {
        ResponseError::InvalidRecord
    };
    let shown: Vec<String> = record_errors
        .iter()
        .take(3)
        .map(|(i, m)| format!("record {i}: {m}"))
        .collect();
    Err(Rejection {
        code,
        message: format!(
            "{} of {} records refused (first {}: {})",
            refused,
            walked,
            shown.len(),
            shown.join("; ")
        ),
        record_errors,
    })
}

/// Handles Produce (see the module docs). Appends now; the returned future waits for
/// durability under `acks=-1` and encodes the response.
///
/// With an authorizer: WRITE on the transactional id for a transactional produce (else,
/// or for transactional batches without an id, every partition is
/// `TRANSACTIONAL_ID_AUTHORIZATION_FAILED`), WRITE on each topic (else
/// its partitions are `TOPIC_AUTHORIZATION_FAILED`).
pub fn handle(
    broker: &Arc<Broker>,
    ctx: &super::RequestContext,
    header: RequestHeader,
    req: ProduceRequest,
) -> Dispatch {
    use super::{AclOperation, ResourceType};
    let version = header.request_api_version;
    // Transactional batches without a transactional id would open a transaction no
    // coordinator ends; with an authorizer they are refused as Kafka refuses them.
    let anonymous_txn = broker.config.authorizer.is_some()
        && req.transactional_id.is_none()
        && req
            .topic_data
            .iter()
            .flat_map(|t| &t.partition_data)
            .filter_map(|p| p.records.as_ref())
            .any(|r| {
                moldau_protocol::batch::BatchHeader::parse(r).is_ok_and(|h| h.is_transactional())
            });
    let txn_denied = anonymous_txn
        || req.transactional_id.as_ref().is_some_and(|id| {
            !ctx.allowed(
                broker,
                AclOperation::Write,
                ResourceType::TransactionalId,
                id,
            )
        });
    // The producer's byte-rate quota counts what it sends (Kafka counts the request);
    // without such a quota configured nothing is summed.
    let started = broker
        .quotas
        .is_active(moldau_metadata::quota::REQUEST_PERCENTAGE)
        .then(std::time::Instant::now);
    let throttle_ms = if broker
        .quotas
        .is_active(moldau_metadata::quota::PRODUCER_BYTE_RATE)
    {
        let sent: usize = req
            .topic_data
            .iter()
            .flat_map(|t| &t.partition_data)
            .map(|p| p.records.as_ref().map_or(0, |r| r.len()))
            .sum();
        ctx.throttle(broker, moldau_metadata::quota::PRODUCER_BYTE_RATE, sent)
    } else {
        0
    };
    let correlation_id = header.correlation_id;
    let acks = req.acks;
    let now = now_ms();
    let mut any_error = false;
    let mut waits = Vec::new();
    let mut responses = Vec::with_capacity(req.topic_data.len());
    // Appends run inline, in dispatch order. (Handing them to block_in_place was
    // measured: it raised the acks=all end-to-end p99 from ~1 ms to ~2 ms.)
    for (ti, topic) in req.topic_data.iter().enumerate() {
        let name = topic.name.0.as_str();
        let topic_denied =
            !txn_denied && !ctx.allowed(broker, AclOperation::Write, ResourceType::Topic, name);
        let mut partitions = Vec::with_capacity(topic.partition_data.len());
        for (pi, p) in topic.partition_data.iter().enumerate() {
            let mut resp = PartitionProduceResponse::default().with_index(p.index);
            let result = if txn_denied {
                Err(Rejection::new(
                    ResponseError::TransactionalIdAuthorizationFailed,
                    "not authorized to write with this transactional id",
                ))
            } else if topic_denied {
                Err(Rejection::new(
                    ResponseError::TopicAuthorizationFailed,
                    format!("not authorized to write to {name}"),
                ))
            } else if !(-1..=1).contains(&acks) {
                Err(Rejection::new(
                    ResponseError::InvalidRequiredAcks,
                    format!("acks={acks} is not -1, 0 or 1"),
                ))
            } else if moldau_metadata::controller::is_internal_topic(name) {
                // Only the coordinators write their topics (Kafka: "Cannot append to
                // internal topic").
                Err(Rejection::new(
                    ResponseError::InvalidTopicException,
                    format!("Cannot append to internal topic {name}"),
                ))
            } else {
                match broker.replicas.get(name, p.index) {
                    None => Err(Rejection::new(
                        ResponseError::UnknownTopicOrPartition,
                        format!("{name}-{} is not hosted here", p.index),
                    )),
                    Some(partition) => match append(&partition, p.records.as_ref(), acks, now) {
                        Ok((info, log_start_offset)) => {
                            resp.base_offset = info.first_offset;
                            resp.log_append_time_ms = info.log_append_time_ms;
                            resp.log_start_offset = log_start_offset;
                            if acks == -1 {
                                waits.push((ti, pi, partition, info.last_offset + 1));
                            }
                            Ok(())
                        }
                        Err(e) => Err(e),
                    },
                }
            };
            if let Err(Rejection {
                code,
                message,
                record_errors,
            }) = result
            {
                any_error = true;
                if version >= 8 {
                    resp.record_errors = record_errors
                        .into_iter()
                        .map(|(batch_index, m)| {
                            BatchIndexAndErrorMessage::default()
                                .with_batch_index(batch_index)
                                .with_batch_index_error_message(msg(m))
                        })
                        .collect();
                }
                tracing::debug!(topic = name, partition = p.index, ?code, %message, "produce rejected");
                resp.error_code = code.code();
                resp.error_message = msg(message);
                resp.base_offset = -1;
                resp.log_append_time_ms = -1;
                resp.log_start_offset = -1;
            }
            partitions.push(resp);
        }
        responses.push(
            TopicProduceResponse::default()
                .with_name(topic.name.clone())
                .with_partition_responses(partitions),
        );
    }
    // The request quota counts the appends' thread time (KIP-124); the wait for the
    // followers is not thread time.
    let throttle_ms = match started {
        Some(started) => throttle_ms.max(ctx.throttle_request(broker, started.elapsed())),
        None => throttle_ms,
    };
    if acks == 0 {
        return if any_error {
            Dispatch::Close("acks=0 produce failed; closing the connection tells the client".into())
        } else {
            Dispatch::Respond(Box::pin(std::future::ready(Reply::Nothing)))
        };
    }
    let timeout = Duration::from_millis(req.timeout_ms.max(0) as u64);
    Dispatch::Respond(Box::pin(async move {
        // All partitions wait at once: a request spanning six partitions waits for the
        // slowest, not the sum of six.
        let results =
            futures::future::join_all(waits.iter().map(|(_, _, partition, end)| async move {
                partition.wait_committed(*end, timeout).await?;
                let min = partition.settings().min_insync_replicas;
                let isr = partition.isr().len();
                if isr < min {
                    return Err(PartitionError::NotEnoughReplicasAfterAppend { isr, min });
                }
                Ok(())
            }))
            .await;
        for ((ti, pi, _, _), result) in waits.iter().zip(results) {
            let (ti, pi) = (*ti, *pi);
            if let Err(e) = result {
                let Rejection { code, message, .. } = partition_error(&e);
                let resp = &mut responses[ti].partition_responses[pi];
                resp.error_code = code.code();
                resp.error_message = msg(message);
                resp.base_offset = -1;
            }
        }
        let body = ProduceResponse::default()
            .with_responses(responses)
            .with_throttle_time_ms(i32::try_from(throttle_ms).unwrap_or(i32::MAX));
        encode_response(ApiKey::Produce, version, correlation_id, &body)
    }))
}

/// Answers Produce v0–2 with `UNSUPPORTED_VERSION` for every partition (Kafka 4,
/// KIP-896). The v0–2 request is the v3 layout without `transactional_id`, so it is
/// decoded as v3 behind a null transactional id; the response is written by hand
/// because the message crate starts at v3 (v2 = v3; v1 lacks `log_append_time_ms`;
/// v0 also lacks `throttle_time_ms`). With `acks=0` the connection is closed instead.
pub fn reject_legacy(header: &RequestHeader, body: bytes::Bytes) -> Dispatch {
    use bytes::BufMut;
    use kafka_protocol::protocol::Decodable;
    let version = header.request_api_version;
    let mut v3 = BytesMut::with_capacity(body.len() + 2);
    v3.put_i16(-1);
    v3.extend_from_slice(&body);
    let mut v3 = v3.freeze();
    let req = match ProduceRequest::decode(&mut v3, 3) {
        Ok(r) => r,
        Err(e) => return Dispatch::Close(format!("malformed Produce v{version}: {e}")),
    };
    if req.acks == 0 {
        return Dispatch::Close(format!(
            "Produce v{version} is not supported (acks=0: closing)"
        ));
    }
    let mut out = BytesMut::new();
    out.put_i32(0); // size, patched below
    out.put_i32(header.correlation_id);
    out.put_i32(req.topic_data.len() as i32);
    for t in &req.topic_data {
        let name = t.name.0.as_bytes();
        out.put_i16(name.len() as i16);
        out.put_slice(name);
        out.put_i32(t.partition_data.len() as i32);
        for p in &t.partition_data {
            out.put_i32(p.index);
            out.put_i16(ResponseError::UnsupportedVersion.code());
            out.put_i64(-1); // base_offset
            if version >= 2 {
                out.put_i64(-1); // log_append_time_ms
            }
        }
    }
    if version >= 1 {
        out.put_i32(0); // throttle_time_ms
    }
    let size = (out.len() - 4) as i32;
    out[..4].copy_from_slice(&size.to_be_bytes());
    Dispatch::Respond(Box::pin(std::future::ready(Reply::Send(
        vec![out.freeze()],
    ))))
}
