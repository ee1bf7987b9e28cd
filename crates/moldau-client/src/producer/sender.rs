//! The sender: the background task that drains ready batches, sends them with retries
//! (one in flight per partition) and completes their delivery futures.

use super::accumulator::*;
use super::*;
use crate::client::{Client, ProduceAck};
use crate::error::{Error, Result};
use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::InitProducerIdRequest;
use moldau_protocol::batch::{BatchBuilder, Compression, ProducerFields};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Wall-clock time, ms since the epoch (a record's default CreateTime).
pub(super) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// InitProducerId with a null transactional id (an idempotent, non-transactional
/// producer), on any broker, retried by the client. Returns `(producer id, epoch)`.
pub(super) async fn init_producer_id(client: &Client) -> Result<(i64, i16)> {
    let request = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(60_000);
    client
        .retry(None, || async {
            let conn = client.any_connection().await?;
            let response = match conn.send(request.clone()).await {
                Ok(r) => r,
                Err(e) => {
                    client.drop_connection(&conn).await;
                    return Err(e);
                }
            };
            Error::check(response.error_code)?;
            Ok((response.producer_id.0, response.producer_epoch))
        })
        .await
}

/// The sender task: plans, fails expired batches, spawns a delivery per ready batch,
/// renews the producer id when needed, and sleeps until the next deadline or wake-up.
pub(super) async fn run(shared: Arc<Shared>) {
    let config = &shared.config;
    let mut pid_backoff = shared.client.config().retry_backoff;
    loop {
        let plan = shared.state.lock().plan(
            config.linger,
            config.delivery_timeout,
            config.enable_idempotence,
            Instant::now(),
        );
        for (topic, partition, batch) in plan.expired {
            tracing::debug!(%topic, partition, records = batch.records.len(), "batch expired");
            complete(
                &topic,
                partition,
                batch.records,
                Err(Error::Timeout(config.delivery_timeout)),
            );
        }
        for drained in plan.ready {
            shared.batches_sent.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(deliver(shared.clone(), drained));
        }
        if plan.new_producer_id {
            match init_producer_id(&shared.client).await {
                Ok((id, epoch)) => {
                    tracing::debug!(producer_id = id, epoch, "new producer id");
                    shared.state.lock().install_producer_id(id, epoch);
                    pid_backoff = shared.client.config().retry_backoff;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "InitProducerId failed; retrying");
                    tokio::time::sleep(pid_backoff).await;
                    pid_backoff = (pid_backoff * 2).min(Duration::from_secs(1));
                }
            }
            continue;
        }
        if plan.finished {
            return;
        }
        match plan.next_wake {
            Some(at) => {
                tokio::select! {
                    () = shared.wake.notified() => {}
                    () = tokio::time::sleep_until(at.into()) => {}
                }
            }
            None => shared.wake.notified().await,
        }
    }
}

/// Sends one batch with retries, then settles the partition's state and the records.
pub(super) async fn deliver(shared: Arc<Shared>, drained: Drained) {
    let Drained {
        topic,
        partition,
        batch,
        producer,
    } = drained;
    let Batch {
        builder,
        records,
        created,
        done,
        ..
    } = batch;
    let result = send_with_retries(&shared, &topic, partition, builder, producer, created).await;
    if let Err(e) = &result {
        tracing::debug!(%topic, partition, error = %e, "batch failed");
    }
    shared
        .state
        .lock()
        .finish(&topic, partition, producer, records.len(), outcome(&result));
    complete(&topic, partition, records, result);
    drop(done);
    shared.wake.notify_one();
}

/// Encodes (and compresses) the batch once, then produces those bytes until they are
/// acknowledged, fail for good, or the delivery timeout passes.
pub(super) async fn send_with_retries(
    shared: &Shared,
    topic: &str,
    partition: i32,
    builder: BatchBuilder,
    producer: ProducerFields,
    created: Instant,
) -> Result<ProduceAck> {
    let config = &shared.config;
    let client = &shared.client;
    let compression = config.compression;
    let encode = move || builder.finish(0, producer, compression);
    let bytes = if compression == Compression::None {
        encode()
    } else {
        // Compression is CPU work: keep it off the async workers.
        tokio::task::spawn_blocking(encode)
            .await
            .map_err(|e| Error::Invalid(format!("compression task failed: {e}")))?
    }
    .map(Bytes::from)
    .ok_or_else(|| Error::Invalid(format!("cannot encode a batch with {compression:?}")))?;
    let deadline = created + config.delivery_timeout;
    let mut backoff = client.config().retry_backoff;
    loop {
        // An attempt includes the client's metadata lookups and their own retries: bound
        // it by what is left of the delivery timeout.
        let left = deadline.saturating_duration_since(Instant::now());
        let attempt = tokio::time::timeout(
            left,
            client.produce_batch(
                topic,
                partition,
                bytes.clone(),
                config.acks.wire(),
                client.config().request_timeout,
                None,
            ),
        )
        .await
        .unwrap_or(Err(Error::Timeout(config.delivery_timeout)));
        match attempt {
            Ok(ack) => return Ok(ack),
            // The broker wrote this batch before and no longer remembers its offset.
            Err(e) if e.kafka_code() == Some(ResponseError::DuplicateSequenceNumber) => {
                return Ok(ProduceAck {
                    base_offset: -1,
                    log_append_time_ms: -1,
                });
            }
            Err(e) if e.is_retriable() && Instant::now() + backoff < deadline => {
                tracing::debug!(%topic, partition, error = %e, "retrying batch");
                if e.needs_metadata_refresh() {
                    client.invalidate_topic(topic);
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Resolves every record of a batch: offsets `base + index` on success (-1 when the
/// broker gave none), the error otherwise.
pub(super) fn complete(
    topic: &str,
    partition: i32,
    records: Vec<Pending>,
    result: Result<ProduceAck>,
) {
    match result {
        Ok(ack) => {
            for (i, p) in records.into_iter().enumerate() {
                let offset = if ack.base_offset < 0 {
                    -1
                } else {
                    ack.base_offset + i as i64
                };
                let timestamp_ms = if ack.log_append_time_ms >= 0 {
                    ack.log_append_time_ms
                } else {
                    p.timestamp_ms
                };
                let _ = p.reply.send(Ok(RecordMetadata {
                    topic: topic.to_owned(),
                    partition,
                    offset,
                    timestamp_ms,
                }));
            }
        }
        Err(e) => {
            for p in records {
                let _ = p.reply.send(Err(duplicate(&e)));
            }
        }
    }
}

/// A copy of `e` for each record of a failed batch ([`Error`] is not `Clone`: an
/// `io::Error` keeps only its kind and message).
pub(super) fn duplicate(e: &Error) -> Error {
    match e {
        Error::Connect { addr, source } => Error::Connect {
            addr: addr.clone(),
            source: std::io::Error::new(source.kind(), source.to_string()),
        },
        Error::Connection { addr, reason } => Error::Connection {
            addr: addr.clone(),
            reason: reason.clone(),
        },
        Error::UnsupportedApi { api } => Error::UnsupportedApi { api: *api },
        Error::Kafka { code, message } => Error::Kafka {
            code: *code,
            message: message.clone(),
        },
        Error::Timeout(d) => Error::Timeout(*d),
        Error::Invalid(s) => Error::Invalid(s.clone()),
        Error::Authentication(s) => Error::Authentication(s.clone()),
        Error::Closed => Error::Closed,
    }
}

/// What a send's result says about whether the batch was written.
fn outcome(result: &Result<ProduceAck>) -> Outcome {
    let Err(e) = result else {
        return Outcome::Written;
    };
    match e {
        Error::Kafka { code, .. } => match code {
            // Written but not replicated in time, or the broker lost track of this
            // producer's sequence: no telling what is stored.
            ResponseError::RequestTimedOut
            | ResponseError::NotEnoughReplicasAfterAppend
            | ResponseError::OutOfOrderSequenceNumber
            | ResponseError::UnknownProducerId
            | ResponseError::InvalidProducerEpoch => Outcome::Unknown,
            _ => Outcome::Refused,
        },
        Error::Invalid(_) | Error::UnsupportedApi { .. } | Error::Authentication(_) => {
            Outcome::Refused
        }
        Error::Connect { .. } | Error::Connection { .. } | Error::Timeout(_) | Error::Closed => {
            Outcome::Unknown
        }
    }
}
