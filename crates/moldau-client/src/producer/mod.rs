//! [`Producer`]: records batched per partition and sent by a background task, modelled on
//! Kafka's Java producer (`KafkaProducer`, `RecordAccumulator`, `Sender`) and named after
//! its settings.
//!
//! ```no_run
//! # async fn demo() -> moldau_client::Result<()> {
//! use moldau_client::{Client, ClientConfig, Producer, ProducerConfig, ProducerRecord};
//! use std::time::Duration;
//!
//! let client = Client::connect(ClientConfig::new("localhost:9092")).await?;
//! let config = ProducerConfig {
//!     linger: Duration::from_millis(10),
//!     ..Default::default()
//! };
//! let producer = Producer::new(client, config).await?;
//! // The first await queues the record (metadata lookup, buffer space); the second
//! // waits for the broker's acknowledgement.
//! let stored = producer
//!     .send(ProducerRecord::new("orders").with_key("customer-17").with_value("12.50"))
//!     .await?
//!     .await?;
//! println!("{}-{} offset {}", stored.topic, stored.partition, stored.offset);
//! // Fire and forget, then wait for everything queued so far.
//! let _pending = producer.send(ProducerRecord::new("orders").with_value("hi")).await?;
//! producer.flush().await?;
//! producer.close().await?;
//! # Ok(()) }
//! ```
//!
//! How it works:
//! - [`Producer::send`] picks the partition (explicit; else murmur2 of the key as Java
//!   does, see [`crate::partitioner`]; else the sticky partitioner of KIP-480) and
//!   appends the record to that partition's open batch. A batch is closed when the next
//!   record would take it past `batch.size` (uncompressed bytes; a record larger than
//!   that gets a batch of its own).
//! - A background task sends a partition's oldest batch when it is closed or full,
//!   `linger.ms` after its first record, or at once during [`Producer::flush`] and
//!   [`Producer::close`]. At most one batch per partition is in flight, so records stay
//!   in send order even across retries (partitions are sent in parallel).
//! - Retriable errors (NOT_LEADER_OR_FOLLOWER, broken connections, timeouts, …) are
//!   retried with `retry.backoff.ms` doubling to 1 s, after dropping the topic's cached
//!   metadata, until `delivery.timeout.ms` after the batch was opened (Java with
//!   `retries=MAX_INT`). A retry resends the same bytes.
//! - Idempotence (KIP-98, on by default with `acks=all`): InitProducerId gives a
//!   producer id and epoch; each batch carries the partition's next sequence number,
//!   which advances by the batch's record count on success, so a retried batch the broker
//!   already wrote is recognised as a duplicate (DUPLICATE_SEQUENCE_NUMBER counts as
//!   success). When a batch fails for good its outcome may be unknown, so the producer
//!   takes a new producer id before sending more, and sequences restart at 0 (what Java's
//!   idempotent producer does on an unresolved sequence).
//! - `buffer.memory` bounds the bytes of records queued or in flight; `send` waits up to
//!   `max.block.ms` for room.

use crate::client::Client;
use crate::error::{Error, Result};
use crate::partitioner::partition_for_key;
use crate::record::ProducerRecord;
use kafka_protocol::error::ResponseError;
use moldau_protocol::batch::{
    BatchBuilder, Compression, RecordHeader, NO_PRODUCER_ID, RECORD_BATCH_OVERHEAD,
};
use parking_lot::Mutex;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, watch, Notify, Semaphore};
use tokio::task::JoinHandle;

/// How many replicas must have a batch before the broker acknowledges it (`acks`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Acks {
    /// `acks=all` (-1): every in-sync replica. The default, as in Kafka 3+.
    #[default]
    All,
    /// `acks=1`: the leader only.
    Leader,
    /// `acks=0`: no acknowledgement at all; delivered offsets are -1.
    None,
}

impl Acks {
    /// The Produce request's `acks` value: -1, 1 or 0.
    pub fn wire(self) -> i16 {
        match self {
            Acks::All => -1,
            Acks::Leader => 1,
            Acks::None => 0,
        }
    }
}

/// Producer settings; names and defaults follow Kafka 4's Java producer.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// `acks` (default [`Acks::All`]).
    pub acks: Acks,
    /// `linger.ms`: how long a batch waits for more records after its first one
    /// (default 5 ms).
    pub linger: Duration,
    /// `batch.size`: bytes of (uncompressed) records after which a batch is closed
    /// (default 16384). A single larger record gets a batch of its own; 0 sends every
    /// record alone.
    pub batch_size: usize,
    /// `compression.type` (default none); [`parse_compression`] reads the names.
    pub compression: Compression,
    /// `enable.idempotence` (default true). Only honoured with `acks=all`: with other
    /// acks it is turned off, as Kafka does when it was not set explicitly.
    pub enable_idempotence: bool,
    /// `delivery.timeout.ms`: bound on the time from a batch's first record to its
    /// acknowledgement, retries included (default 120 s). Records not acknowledged by
    /// then fail with [`Error::Timeout`] or the last error.
    pub delivery_timeout: Duration,
    /// `max.request.size`, bytes (default 1 MiB): a record whose batch alone would be
    /// larger fails in `send` with MESSAGE_TOO_LARGE. Batches are also kept below it.
    pub max_request_size: usize,
    /// `buffer.memory`, bytes (default 32 MiB): bound on the records queued or in
    /// flight; `send` waits for room.
    pub buffer_memory: usize,
    /// `max.block.ms` (default 60 s): how long `send` waits for buffer room before
    /// failing with [`Error::Timeout`].
    pub max_block: Duration,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            acks: Acks::All,
            linger: Duration::from_millis(5),
            batch_size: 16_384,
            compression: Compression::None,
            enable_idempotence: true,
            delivery_timeout: Duration::from_secs(120),
            max_request_size: 1 << 20,
            buffer_memory: 32 << 20,
            max_block: Duration::from_secs(60),
        }
    }
}

impl ProducerConfig {
    /// Whether batches carry a producer id and sequence numbers: `enable_idempotence`
    /// with `acks=all`.
    pub fn idempotent(&self) -> bool {
        self.enable_idempotence && self.acks == Acks::All
    }
}

/// Reads a `compression.type` name: `none`, `gzip`, `snappy`, `lz4` or `zstd` (any
/// case). Errors: [`Error::Invalid`] for anything else.
pub fn parse_compression(name: &str) -> Result<Compression> {
    match name.to_ascii_lowercase().as_str() {
        "none" => Ok(Compression::None),
        "gzip" => Ok(Compression::Gzip),
        "snappy" => Ok(Compression::Snappy),
        "lz4" => Ok(Compression::Lz4),
        "zstd" => Ok(Compression::Zstd),
        _ => Err(Error::Invalid(format!(
            "unknown compression.type '{name}' (expected none, gzip, snappy, lz4 or zstd)"
        ))),
    }
}

/// Where the broker stored a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMetadata {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
    /// The record's offset: the batch's base offset plus the record's index in it; -1
    /// with `acks=0`, and for a retried batch the broker reports as an old duplicate.
    pub offset: i64,
    /// The record's timestamp, ms since the epoch: its CreateTime, or the broker's
    /// append time on `LogAppendTime` topics.
    pub timestamp_ms: i64,
}

/// The outcome of one [`Producer::send`]: resolves once the record's batch is
/// acknowledged (or failed for good). Dropping it does not cancel the record.
#[derive(Debug)]
pub struct DeliveryFuture {
    rx: oneshot::Receiver<Result<RecordMetadata>>,
}

impl Future for DeliveryFuture {
    type Output = Result<RecordMetadata>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // A dropped sender means the producer's tasks were torn down (runtime shut down).
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(Error::Closed)))
    }
}

/// A Kafka producer: see the [module documentation](self). Cheap operations take
/// `&self`, so one producer can be shared (e.g. in an `Arc`) by many tasks.
pub struct Producer {
    shared: Arc<Shared>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("client", &self.shared.client)
            .field("config", &self.shared.config)
            .finish()
    }
}

struct Shared {
    client: Client,
    /// With `enable_idempotence` already resolved against `acks`.
    config: ProducerConfig,
    state: Mutex<State>,
    /// Wakes the sender task: a new batch (a new linger deadline), a full batch, a
    /// finished delivery, flush or close.
    wake: Notify,
    /// `buffer.memory`, one permit per byte of queued record.
    buffer: Arc<Semaphore>,
    batches_sent: AtomicU64,
}

impl Producer {
    /// Starts a producer on `client`: with idempotence, asks any broker for a producer id
    /// (InitProducerId with a null transactional id), then spawns the sender task (so it
    /// must be called inside a tokio runtime).
    ///
    /// Errors: [`Error::Invalid`] for `max_request_size` or `buffer_memory` of 0; the
    /// InitProducerId failure after the client's retries.
    pub async fn new(client: Client, mut config: ProducerConfig) -> Result<Producer> {
        if config.max_request_size == 0 || config.buffer_memory == 0 {
            return Err(Error::Invalid(
                "max.request.size and buffer.memory must be positive".into(),
            ));
        }
        config.enable_idempotence = config.idempotent();
        let (producer_id, producer_epoch) = if config.enable_idempotence {
            init_producer_id(&client).await?
        } else {
            (NO_PRODUCER_ID, -1)
        };
        let shared = Arc::new(Shared {
            buffer: Arc::new(Semaphore::new(config.buffer_memory)),
            client,
            config,
            state: Mutex::new(State {
                producer_id,
                producer_epoch,
                ..State::default()
            }),
            wake: Notify::new(),
            batches_sent: AtomicU64::new(0),
        });
        let task = tokio::spawn(run(shared.clone()));
        Ok(Producer {
            shared,
            task: Some(task),
        })
    }

    /// The effective configuration (`enable_idempotence` false unless `acks=all`).
    pub fn config(&self) -> &ProducerConfig {
        &self.shared.config
    }

    /// The current producer id and epoch; `None` without idempotence.
    pub fn producer_id(&self) -> Option<(i64, i16)> {
        let st = self.shared.state.lock();
        (st.producer_id != NO_PRODUCER_ID).then_some((st.producer_id, st.producer_epoch))
    }

    /// Batches handed to the network so far (each counted once, however often retried).
    pub fn batches_sent(&self) -> u64 {
        self.shared.batches_sent.load(Ordering::Relaxed)
    }

    /// Queues `record` and returns a future of its delivery.
    ///
    /// Resolves the topic through the client's metadata cache, chooses the partition
    /// (explicit, else `toPositive(murmur2(key)) % partitions`, else sticky), waits up
    /// to `max.block.ms` for `buffer.memory`, and appends the record to the partition's
    /// open batch. A record without a timestamp gets the current time.
    ///
    /// A topic the cluster does not have is asked for with auto-creation, as Kafka's
    /// producer does: the broker creates it when its `auto.create.topics.enable` is on.
    ///
    /// Errors (nothing is queued): UNKNOWN_TOPIC_OR_PARTITION for a topic the cluster
    /// does not have and did not create; [`Error::Invalid`] for an explicit partition outside
    /// `0..partitions`; MESSAGE_TOO_LARGE for a record whose batch would exceed
    /// `max.request.size` or `buffer.memory`; [`Error::Timeout`] when no buffer room
    /// came within `max.block.ms`; [`Error::Closed`] after [`Producer::close`].
    pub async fn send(&self, record: ProducerRecord) -> Result<DeliveryFuture> {
        let shared = &self.shared;
        let config = &shared.config;
        if shared.state.lock().closed {
            return Err(Error::Closed);
        }
        let topic = shared.client.topic_with(&record.topic, true).await?;
        let partitions = i32::try_from(topic.partitions.len()).unwrap_or(i32::MAX);
        if partitions == 0 {
            return Err(Error::Kafka {
                code: ResponseError::UnknownTopicOrPartition,
                message: Some(format!("topic '{}' has no partitions", record.topic)),
            });
        }
        let chosen = match (record.partition, record.key.as_deref()) {
            (Some(p), _) if !(0..partitions).contains(&p) => {
                return Err(Error::Invalid(format!(
                    "partition {p} of topic '{}' is not in the range [0...{}]",
                    record.topic,
                    partitions - 1
                )));
            }
            (Some(p), _) => Some(p),
            (None, Some(key)) => Some(partition_for_key(key, partitions)),
            (None, None) => None,
        };
        let timestamp_ms = record.timestamp_ms.unwrap_or_else(now_ms);
        let key = record.key.as_deref();
        let value = record.value.as_deref();
        let headers: Vec<RecordHeader<'_>> = record
            .headers
            .iter()
            .map(|h| (h.key.as_bytes(), h.value.as_deref()))
            .collect();
        let size = RECORD_BATCH_OVERHEAD
            + BatchBuilder::default().next_record_size(timestamp_ms, key, value, &headers);
        for (limit, setting) in [
            (config.max_request_size, "max.request.size"),
            (config.buffer_memory, "buffer.memory"),
        ] {
            if size > limit {
                return Err(Error::Kafka {
                    code: ResponseError::MessageTooLarge,
                    message: Some(format!(
                        "the record is {size} bytes when serialized, more than {setting} \
                         ({limit} bytes)"
                    )),
                });
            }
        }
        let permits = u32::try_from(size)
            .map_err(|_| Error::Invalid(format!("record of {size} bytes is too large")))?;
        let memory = tokio::time::timeout(
            config.max_block,
            shared.buffer.clone().acquire_many_owned(permits),
        )
        .await
        .map_err(|_| Error::Timeout(config.max_block))?
        .map_err(|_| Error::Closed)?;
        let (reply, rx) = oneshot::channel();
        let wake = {
            let mut st = shared.state.lock();
            if st.closed {
                return Err(Error::Closed);
            }
            st.append(
                &topic,
                chosen,
                Incoming {
                    timestamp_ms,
                    key,
                    value,
                    headers: &headers,
                },
                Pending {
                    reply,
                    timestamp_ms,
                    _memory: memory,
                },
                config.batch_size.min(config.max_request_size),
                Instant::now(),
            )
        };
        if wake {
            shared.wake.notify_one();
        }
        Ok(DeliveryFuture { rx })
    }

    /// Sends every queued record now and waits until each record queued before the call
    /// is acknowledged or has failed (records queued meanwhile are sent at once too).
    /// Per-record outcomes come through their [`DeliveryFuture`]s; this returns `Ok`.
    pub async fn flush(&self) -> Result<()> {
        let (_flushing, waits) = Flushing::start(&self.shared);
        self.shared.wake.notify_one();
        for mut done in waits {
            // Completes when the batch's sender is dropped, i.e. the batch is finished.
            let _ = done.changed().await;
        }
        Ok(())
    }

    /// Flushes, then stops the sender task; later sends fail with [`Error::Closed`].
    pub async fn close(mut self) -> Result<()> {
        self.flush().await?;
        self.shared.state.lock().closed = true;
        self.shared.wake.notify_one();
        if let Some(task) = self.task.take() {
            task.await
                .map_err(|e| Error::Invalid(format!("producer task failed: {e}")))?;
        }
        Ok(())
    }
}

impl Drop for Producer {
    /// Does not block: further sends are refused and the sender task delivers what is
    /// queued (within `delivery.timeout.ms`) in the background, then ends.
    fn drop(&mut self) {
        self.shared.state.lock().closed = true;
        self.shared.wake.notify_one();
    }
}

/// Counts one flush in progress (every batch is ready while any is), until dropped.
struct Flushing<'a>(&'a Shared);

impl<'a> Flushing<'a> {
    /// Starts a flush; returns the completion signals of every unfinished batch.
    fn start(shared: &'a Shared) -> (Self, Vec<watch::Receiver<()>>) {
        let mut st = shared.state.lock();
        st.flushing += 1;
        let waits = st
            .topics
            .values()
            .flat_map(|t| t.partitions.values())
            .flat_map(|p| {
                p.in_flight
                    .iter()
                    .cloned()
                    .chain(p.batches.iter().map(|b| b.done.subscribe()))
            })
            .collect();
        (Flushing(shared), waits)
    }
}

impl Drop for Flushing<'_> {
    fn drop(&mut self) {
        let mut st = self.0.state.lock();
        st.flushing = st.flushing.saturating_sub(1);
    }
}

mod accumulator;
mod sender;

use accumulator::*;
use sender::*;
