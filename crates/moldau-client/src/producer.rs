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

use crate::client::{Client, ProduceAck, TopicInfo};
use crate::error::{Error, Result};
use crate::partitioner::{partition_for_key, random_partition};
use crate::record::ProducerRecord;
use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::InitProducerIdRequest;
use moldau_protocol::batch::{
    BatchBuilder, Compression, ProducerFields, RecordHeader, NO_PRODUCER_ID, RECORD_BATCH_OVERHEAD,
};
use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{oneshot, watch, Notify, OwnedSemaphorePermit, Semaphore};
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
    /// Errors (nothing is queued): UNKNOWN_TOPIC_OR_PARTITION for a topic the cluster
    /// does not have; [`Error::Invalid`] for an explicit partition outside
    /// `0..partitions`; MESSAGE_TOO_LARGE for a record whose batch would exceed
    /// `max.request.size` or `buffer.memory`; [`Error::Timeout`] when no buffer room
    /// came within `max.block.ms`; [`Error::Closed`] after [`Producer::close`].
    pub async fn send(&self, record: ProducerRecord) -> Result<DeliveryFuture> {
        let shared = &self.shared;
        let config = &shared.config;
        if shared.state.lock().closed {
            return Err(Error::Closed);
        }
        let topic = shared.client.topic(&record.topic).await?;
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

/// A queued record's reply channel and the buffer memory it holds.
struct Pending {
    reply: oneshot::Sender<Result<RecordMetadata>>,
    timestamp_ms: i64,
    /// Returned to `buffer.memory` when the record completes.
    _memory: OwnedSemaphorePermit,
}

/// A record on its way into a batch.
#[derive(Clone, Copy)]
struct Incoming<'a> {
    timestamp_ms: i64,
    key: Option<&'a [u8]>,
    value: Option<&'a [u8]>,
    headers: &'a [RecordHeader<'a>],
}

/// A batch being filled or waiting to be sent.
struct Batch {
    builder: BatchBuilder,
    records: Vec<Pending>,
    /// When its first record was appended: linger and delivery timeout count from here.
    created: Instant,
    /// No more records go in (the next one did not fit, or `batch.size` is reached).
    full: bool,
    /// Dropped when the batch is finished; [`Producer::flush`] waits on it.
    done: watch::Sender<()>,
}

impl Batch {
    fn new(now: Instant) -> Self {
        Batch {
            builder: BatchBuilder::default(),
            records: Vec::new(),
            created: now,
            full: false,
            done: watch::channel(()).0,
        }
    }

    /// Whether `record` still fits under `batch_size` bytes.
    fn has_room(&self, record: Incoming<'_>, batch_size: usize) -> bool {
        !self.full
            && self.builder.size_in_bytes()
                + self.builder.next_record_size(
                    record.timestamp_ms,
                    record.key,
                    record.value,
                    record.headers,
                )
                <= batch_size
    }
}

/// One partition's queue of batches, oldest first, and its idempotence state.
#[derive(Default)]
struct PartitionQueue {
    batches: VecDeque<Batch>,
    /// Completion signal of the batch in flight, if one is.
    in_flight: Option<watch::Receiver<()>>,
    /// Sequence number of the next batch's first record (KIP-98).
    next_sequence: i32,
}

#[derive(Default)]
struct TopicQueues {
    partitions: HashMap<i32, PartitionQueue>,
    /// KIP-480: where keyless records go until that partition needs a new batch.
    sticky: Option<i32>,
}

/// Everything the sender task and `send` share. Pure bookkeeping: no I/O and no clock
/// of its own, so the batching rules are tested without a broker.
struct State {
    topics: HashMap<String, TopicQueues>,
    producer_id: i64,
    producer_epoch: i16,
    /// A batch of the current producer id failed: its sequence may or may not have been
    /// written, so no batch is sent until a new producer id is installed.
    needs_new_producer_id: bool,
    flushing: usize,
    closed: bool,
}

impl Default for State {
    fn default() -> Self {
        State {
            topics: HashMap::new(),
            producer_id: NO_PRODUCER_ID,
            producer_epoch: -1,
            needs_new_producer_id: false,
            flushing: 0,
            closed: false,
        }
    }
}

/// A batch taken off its queue to be sent.
struct Drained {
    topic: String,
    partition: i32,
    batch: Batch,
    producer: ProducerFields,
}

/// What the sender task is to do after one look at the queues.
#[derive(Default)]
struct Plan {
    /// Batches to send now.
    ready: Vec<Drained>,
    /// Batches whose delivery timeout passed while queued: fail them.
    expired: Vec<(String, i32, Batch)>,
    /// A batch is ready but a new producer id must come first.
    new_producer_id: bool,
    /// Closed and nothing left queued or in flight: the task can end.
    finished: bool,
    /// The next linger or delivery deadline.
    next_wake: Option<Instant>,
}

impl State {
    /// Appends `record` to `topic`'s partition `chosen` (or the sticky partition when
    /// `None`), opening a batch when the last one is full. Returns whether the sender
    /// task should look again (a batch was opened or filled).
    fn append(
        &mut self,
        topic: &TopicInfo,
        chosen: Option<i32>,
        record: Incoming<'_>,
        pending: Pending,
        batch_size: usize,
        now: Instant,
    ) -> bool {
        let tq = self.topics.entry(topic.name.clone()).or_default();
        let partition = match chosen {
            Some(p) => p,
            None => {
                let p = match tq.sticky {
                    // KIP-480 `onNewBatch`: the sticky partition would need a new
                    // batch, so move on to another partition.
                    Some(p)
                        if !tq
                            .partitions
                            .get(&p)
                            .and_then(|q| q.batches.back())
                            .is_some_and(|b| b.has_room(record, batch_size)) =>
                    {
                        random_partition(topic, Some(p))
                    }
                    Some(p) => p,
                    None => random_partition(topic, None),
                };
                tq.sticky = Some(p);
                p
            }
        };
        let pq = tq.partitions.entry(partition).or_default();
        let mut wake = false;
        let fits = match pq.batches.back_mut() {
            Some(b) if b.has_room(record, batch_size) => true,
            Some(b) => {
                b.full = true;
                false
            }
            None => false,
        };
        if !fits {
            pq.batches.push_back(Batch::new(now));
            wake = true;
        }
        if let Some(b) = pq.batches.back_mut() {
            b.builder.push(
                record.timestamp_ms,
                record.key,
                record.value,
                record.headers,
            );
            b.records.push(pending);
            if b.builder.size_in_bytes() >= batch_size {
                b.full = true;
                wake = true;
            }
        }
        wake
    }

    /// Looks at every partition at time `now`: expires batches past
    /// `delivery_timeout`, and takes the oldest batch of each partition with nothing in
    /// flight when it is ready (full, followed by another, lingered `linger`, or a flush
    /// or close is under way), stamping it with the producer id and the partition's next
    /// sequence when `idempotent`.
    fn plan(
        &mut self,
        linger: Duration,
        delivery_timeout: Duration,
        idempotent: bool,
        now: Instant,
    ) -> Plan {
        let all_ready = self.flushing > 0 || self.closed;
        let mut plan = Plan::default();
        let mut busy = false;
        let wake_at = |t: Instant, plan: &mut Plan| {
            plan.next_wake = Some(plan.next_wake.map_or(t, |w| w.min(t)));
        };
        for (name, tq) in &mut self.topics {
            for (&partition, pq) in &mut tq.partitions {
                while pq
                    .batches
                    .front()
                    .is_some_and(|b| now >= b.created + delivery_timeout)
                {
                    if let Some(b) = pq.batches.pop_front() {
                        plan.expired.push((name.clone(), partition, b));
                    }
                }
                busy |= pq.in_flight.is_some();
                let Some(front) = pq.batches.front() else {
                    continue;
                };
                busy = true;
                wake_at(front.created + delivery_timeout, &mut plan);
                if pq.in_flight.is_some() {
                    continue;
                }
                let linger_end = front.created + linger;
                if !(all_ready || front.full || pq.batches.len() > 1 || now >= linger_end) {
                    wake_at(linger_end, &mut plan);
                    continue;
                }
                if self.needs_new_producer_id {
                    plan.new_producer_id = true;
                    continue;
                }
                let Some(batch) = pq.batches.pop_front() else {
                    continue;
                };
                pq.in_flight = Some(batch.done.subscribe());
                let producer = if idempotent {
                    ProducerFields {
                        producer_id: self.producer_id,
                        producer_epoch: self.producer_epoch,
                        base_sequence: pq.next_sequence,
                        transactional: false,
                    }
                } else {
                    ProducerFields::NONE
                };
                plan.ready.push(Drained {
                    topic: name.clone(),
                    partition,
                    batch,
                    producer,
                });
            }
        }
        plan.finished = self.closed && !busy;
        plan
    }

    /// Records the end of the in-flight batch of `topic`-`partition` that was sent with
    /// `producer`: on success its sequence advances by `records`; on failure a new
    /// producer id is needed (when the batch used the current one).
    fn finish(
        &mut self,
        topic: &str,
        partition: i32,
        producer: ProducerFields,
        records: usize,
        ok: bool,
    ) {
        let current = producer.producer_id != NO_PRODUCER_ID
            && producer.producer_id == self.producer_id
            && producer.producer_epoch == self.producer_epoch;
        let Some(pq) = self
            .topics
            .get_mut(topic)
            .and_then(|t| t.partitions.get_mut(&partition))
        else {
            return;
        };
        pq.in_flight = None;
        if !current {
            return;
        }
        if ok {
            let records = i32::try_from(records).unwrap_or(i32::MAX);
            pq.next_sequence = increment_sequence(pq.next_sequence, records);
        } else {
            self.needs_new_producer_id = true;
        }
    }

    /// Installs a new producer id; every partition's sequence restarts at 0.
    fn install_producer_id(&mut self, producer_id: i64, producer_epoch: i16) {
        self.producer_id = producer_id;
        self.producer_epoch = producer_epoch;
        self.needs_new_producer_id = false;
        for pq in self
            .topics
            .values_mut()
            .flat_map(|t| t.partitions.values_mut())
        {
            pq.next_sequence = 0;
        }
    }
}

/// Kafka's `DefaultRecordBatch.incrementSequence`: sequences wrap from `i32::MAX` to 0.
fn increment_sequence(sequence: i32, increment: i32) -> i32 {
    if sequence > i32::MAX - increment {
        increment - (i32::MAX - sequence) - 1
    } else {
        sequence + increment
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// InitProducerId with a null transactional id (an idempotent, non-transactional
/// producer), on any broker, retried by the client. Returns `(producer id, epoch)`.
async fn init_producer_id(client: &Client) -> Result<(i64, i16)> {
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
async fn run(shared: Arc<Shared>) {
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
async fn deliver(shared: Arc<Shared>, drained: Drained) {
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
        .finish(&topic, partition, producer, records.len(), result.is_ok());
    complete(&topic, partition, records, result);
    drop(done);
    shared.wake.notify_one();
}

/// Encodes (and compresses) the batch once, then produces those bytes until they are
/// acknowledged, fail for good, or the delivery timeout passes.
async fn send_with_retries(
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
fn complete(topic: &str, partition: i32, records: Vec<Pending>, result: Result<ProduceAck>) {
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
fn duplicate(e: &Error) -> Error {
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
        Error::Closed => Error::Closed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::PartitionInfo;

    fn topic(name: &str, partitions: i32) -> TopicInfo {
        TopicInfo {
            name: name.into(),
            topic_id: uuid::Uuid::nil(),
            internal: false,
            partitions: (0..partitions)
                .map(|partition| PartitionInfo {
                    partition,
                    leader: 1,
                    leader_epoch: 0,
                    replicas: vec![1],
                    isr: vec![1],
                })
                .collect(),
        }
    }

    fn pending(memory: &Arc<Semaphore>) -> (Pending, oneshot::Receiver<Result<RecordMetadata>>) {
        let (reply, rx) = oneshot::channel();
        let p = Pending {
            reply,
            timestamp_ms: 1_000,
            _memory: memory.clone().try_acquire_owned().expect("permit"),
        };
        (p, rx)
    }

    fn record(value: &[u8]) -> Incoming<'_> {
        Incoming {
            timestamp_ms: 1_000,
            key: None,
            value: Some(value),
            headers: &[],
        }
    }

    const LINGER: Duration = Duration::from_millis(5);
    const TIMEOUT: Duration = Duration::from_secs(120);

    #[test]
    fn batches_close_at_batch_size_and_linger_decides_the_rest() {
        let memory = Arc::new(Semaphore::new(10_000));
        let t = topic("t", 3);
        let mut st = State::default();
        st.install_producer_id(3, 0);
        let t0 = Instant::now();
        let value = [7u8; 100];
        // A first record opens a batch (wake); later ones that fit do not wake.
        let (p, _rx) = pending(&memory);
        assert!(st.append(&t, Some(1), record(&value), p, 1_000, t0));
        for _ in 0..7 {
            let (p, _rx) = pending(&memory);
            assert!(!st.append(&t, Some(1), record(&value), p, 1_000, t0));
        }
        // Each record takes 109 bytes: 61 + 8 * 109 = 933; a ninth would pass 1000.
        let (p, _rx) = pending(&memory);
        assert!(st.append(&t, Some(1), record(&value), p, 1_000, t0));
        let q = &st.topics["t"].partitions[&1];
        assert_eq!(q.batches.len(), 2);
        assert!(q.batches[0].full && !q.batches[1].full);
        assert_eq!(q.batches[0].records.len(), 8);

        // The closed batch goes at once; the open one waits for its linger.
        let plan = st.plan(LINGER, TIMEOUT, true, t0);
        assert_eq!(plan.ready.len(), 1);
        assert_eq!(plan.ready[0].batch.records.len(), 8);
        assert_eq!(plan.ready[0].producer.base_sequence, 0);
        // One in flight per partition: nothing more, even after the linger.
        let plan2 = st.plan(LINGER, TIMEOUT, true, t0 + LINGER);
        assert!(plan2.ready.is_empty() && !plan2.finished);
        st.finish("t", 1, plan.ready[0].producer, 8, true);
        let plan3 = st.plan(LINGER, TIMEOUT, true, t0 + Duration::from_millis(1));
        assert!(plan3.ready.is_empty());
        assert_eq!(plan3.next_wake, Some(t0 + LINGER));
        let plan4 = st.plan(LINGER, TIMEOUT, true, t0 + LINGER);
        assert_eq!(plan4.ready.len(), 1);
        assert_eq!(
            plan4.ready[0].producer.base_sequence, 8,
            "sequence advanced"
        );
    }

    #[test]
    fn a_record_larger_than_batch_size_is_sent_alone() {
        let memory = Arc::new(Semaphore::new(10));
        let t = topic("t", 1);
        let mut st = State::default();
        let now = Instant::now();
        let big = [1u8; 300];
        let (p, _rx) = pending(&memory);
        assert!(st.append(&t, Some(0), record(&big), p, 100, now));
        let (p, _rx) = pending(&memory);
        assert!(st.append(&t, Some(0), record(b"x"), p, 100, now));
        let q = &st.topics["t"].partitions[&0];
        assert_eq!(
            q.batches
                .iter()
                .map(|b| b.records.len())
                .collect::<Vec<_>>(),
            vec![1, 1]
        );
        assert!(q.batches[0].full);
    }

    #[test]
    fn keyless_records_stick_to_a_partition_until_its_batch_is_sent() {
        let memory = Arc::new(Semaphore::new(100));
        let t = topic("t", 4);
        let mut st = State::default();
        let now = Instant::now();
        for _ in 0..10 {
            let (p, _rx) = pending(&memory);
            st.append(&t, None, record(b"v"), p, 16_384, now);
        }
        let sticky = st.topics["t"].sticky.expect("sticky partition");
        assert_eq!(st.topics["t"].partitions.len(), 1, "all on one partition");
        assert_eq!(
            st.topics["t"].partitions[&sticky].batches[0].records.len(),
            10
        );
        let plan = st.plan(LINGER, TIMEOUT, false, now + LINGER);
        assert_eq!(plan.ready.len(), 1);
        assert_eq!(plan.ready[0].producer, ProducerFields::NONE);
        let (p, _rx) = pending(&memory);
        st.append(&t, None, record(b"v"), p, 16_384, now + LINGER);
        let next = st.topics["t"].sticky.expect("sticky partition");
        assert_ne!(next, sticky, "a new batch moves the sticky partition");
    }

    #[test]
    fn expiry_flush_close_and_producer_id_renewal() {
        let memory = Arc::new(Semaphore::new(100));
        let t = topic("t", 2);
        let mut st = State::default();
        st.install_producer_id(5, 0);
        let t0 = Instant::now();
        let (p, mut rx) = pending(&memory);
        st.append(&t, Some(0), record(b"old"), p, 16_384, t0);
        let (p, _rx) = pending(&memory);
        st.append(&t, Some(1), record(b"new"), p, 16_384, t0 + TIMEOUT);
        let plan = st.plan(LINGER, TIMEOUT, true, t0 + TIMEOUT);
        assert_eq!(plan.expired.len(), 1);
        assert_eq!((plan.expired[0].0.as_str(), plan.expired[0].1), ("t", 0));
        for (topic, partition, batch) in plan.expired {
            complete(
                &topic,
                partition,
                batch.records,
                Err(Error::Timeout(TIMEOUT)),
            );
        }
        assert!(matches!(rx.try_recv(), Ok(Err(Error::Timeout(_)))));
        assert!(plan.ready.is_empty(), "partition 1 still lingers");

        // A flush makes both partitions ready at once.
        let (p, _rx) = pending(&memory);
        st.append(&t, Some(0), record(b"a"), p, 16_384, t0 + TIMEOUT);
        st.flushing = 1;
        let plan = st.plan(LINGER, TIMEOUT, true, t0 + TIMEOUT);
        assert_eq!(plan.ready.len(), 2);
        let sent = |plan: &Plan, partition| {
            plan.ready
                .iter()
                .find(|d| d.partition == partition)
                .map(|d| d.producer)
                .expect("partition drained")
        };
        let (p0, p1) = (sent(&plan, 0), sent(&plan, 1));
        assert_eq!((p1.producer_id, p1.base_sequence), (5, 0));
        // Partition 1's batch fails: nothing is sent before a new producer id.
        st.finish("t", 1, p1, 1, false);
        let (p, _rx) = pending(&memory);
        st.append(&t, Some(1), record(b"again"), p, 16_384, t0 + TIMEOUT);
        let plan = st.plan(LINGER, TIMEOUT, true, t0 + TIMEOUT);
        assert!(plan.ready.is_empty() && plan.new_producer_id);
        st.install_producer_id(6, 0);
        let plan = st.plan(LINGER, TIMEOUT, true, t0 + TIMEOUT);
        let renewed = sent(&plan, 1);
        assert_eq!((renewed.producer_id, renewed.base_sequence), (6, 0));
        // Partition 0's late success under the old id does not move the new sequence.
        st.finish("t", 0, p0, 1, true);
        assert_eq!(st.topics["t"].partitions[&0].next_sequence, 0);
        st.finish("t", 1, renewed, 1, true);
        assert_eq!(st.topics["t"].partitions[&1].next_sequence, 1);

        st.flushing = 0;
        st.closed = true;
        let plan = st.plan(LINGER, TIMEOUT, true, t0 + TIMEOUT);
        assert!(plan.finished, "closed with nothing left");
    }

    #[test]
    fn config_helpers() {
        assert_eq!(parse_compression("ZSTD").expect("zstd"), Compression::Zstd);
        assert_eq!(parse_compression("none").expect("none"), Compression::None);
        assert!(matches!(
            parse_compression("brotli"),
            Err(Error::Invalid(_))
        ));
        let c = ProducerConfig::default();
        assert!(c.idempotent());
        assert_eq!(
            (c.acks.wire(), c.batch_size, c.linger),
            (-1, 16_384, LINGER)
        );
        let leader = ProducerConfig {
            acks: Acks::Leader,
            ..c
        };
        assert!(!leader.idempotent());
        assert_eq!(Acks::None.wire(), 0);
        assert_eq!(increment_sequence(5, 3), 8);
        assert_eq!(increment_sequence(i32::MAX - 1, 3), 1);
        let e = duplicate(&Error::Kafka {
            code: ResponseError::MessageTooLarge,
            message: Some("big".into()),
        });
        assert_eq!(e.kafka_code(), Some(ResponseError::MessageTooLarge));
    }
}
