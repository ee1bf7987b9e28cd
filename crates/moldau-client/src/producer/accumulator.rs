//! The accumulator: records queued per partition in open batches, which batch to send
//! next and when, sequence numbers, expiry. No I/O, so it is unit-tested without a broker.

use super::*;
use crate::client::TopicInfo;
use crate::error::Result;
use crate::partitioner::random_partition;
use moldau_protocol::batch::{BatchBuilder, ProducerFields, RecordHeader, NO_PRODUCER_ID};
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, watch, OwnedSemaphorePermit};

/// How a batch's send ended, for its partition's sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    /// Acknowledged (or a duplicate of an acknowledged batch).
    Written,
    /// Refused by the broker: not written.
    Refused,
    /// Failed in a way that may or may not have written it.
    Unknown,
}

/// A queued record's reply channel and the buffer memory it holds.
pub(super) struct Pending {
    pub(super) reply: oneshot::Sender<Result<RecordMetadata>>,
    pub(super) timestamp_ms: i64,
    /// Returned to `buffer.memory` when the record completes.
    pub(super) _memory: OwnedSemaphorePermit,
}

/// A record on its way into a batch.
#[derive(Clone, Copy)]
pub(super) struct Incoming<'a> {
    pub(super) timestamp_ms: i64,
    pub(super) key: Option<&'a [u8]>,
    pub(super) value: Option<&'a [u8]>,
    pub(super) headers: &'a [RecordHeader<'a>],
}

/// A batch being filled or waiting to be sent.
pub(super) struct Batch {
    pub(super) builder: BatchBuilder,
    pub(super) records: Vec<Pending>,
    /// When its first record was appended: linger and delivery timeout count from here.
    pub(super) created: Instant,
    /// No more records go in (the next one did not fit, or `batch.size` is reached).
    pub(super) full: bool,
    /// Dropped when the batch is finished; [`Producer::flush`] waits on it.
    pub(super) done: watch::Sender<()>,
}

impl Batch {
    pub(super) fn new(now: Instant) -> Self {
        Batch {
            builder: BatchBuilder::default(),
            records: Vec::new(),
            created: now,
            full: false,
            done: watch::channel(()).0,
        }
    }

    /// Whether `record` still fits under `batch_size` bytes.
    pub(super) fn has_room(&self, record: Incoming<'_>, batch_size: usize) -> bool {
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
pub(super) struct PartitionQueue {
    pub(super) batches: VecDeque<Batch>,
    /// Completion signal of the batch in flight, if one is.
    pub(super) in_flight: Option<watch::Receiver<()>>,
    /// Sequence number of the next batch's first record (KIP-98).
    pub(super) next_sequence: i32,
}

#[derive(Default)]
pub(super) struct TopicQueues {
    pub(super) partitions: HashMap<i32, PartitionQueue>,
    /// KIP-480: where keyless records go until that partition needs a new batch.
    pub(super) sticky: Option<i32>,
}

/// Everything the sender task and `send` share. Pure bookkeeping: no I/O and no clock
/// of its own, so the batching rules are tested without a broker.
pub(super) struct State {
    pub(super) topics: HashMap<String, TopicQueues>,
    pub(super) producer_id: i64,
    pub(super) producer_epoch: i16,
    /// A batch of the current producer id failed: its sequence may or may not have been
    /// written, so no batch is sent until a new producer id is installed.
    pub(super) needs_new_producer_id: bool,
    pub(super) flushing: usize,
    pub(super) closed: bool,
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
pub(super) struct Drained {
    pub(super) topic: String,
    pub(super) partition: i32,
    pub(super) batch: Batch,
    pub(super) producer: ProducerFields,
}

/// What the sender task is to do after one look at the queues.
#[derive(Default)]
pub(super) struct Plan {
    /// Batches to send now.
    pub(super) ready: Vec<Drained>,
    /// Batches whose delivery timeout passed while queued: fail them.
    pub(super) expired: Vec<(String, i32, Batch)>,
    /// A batch is ready but a new producer id must come first.
    pub(super) new_producer_id: bool,
    /// Closed and nothing left queued or in flight: the task can end.
    pub(super) finished: bool,
    /// The next linger or delivery deadline.
    pub(super) next_wake: Option<Instant>,
}

impl State {
    /// Appends `record` to `topic`'s partition `chosen` (or the sticky partition when
    /// `None`), opening a batch when the last one is full. Returns whether the sender
    /// task should look again (a batch was opened or filled).
    pub(super) fn append(
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
    pub(super) fn plan(
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
    /// `producer`: on success its sequence advances by `records`. On a failure whose
    /// outcome is unknown (it may have been written: a timeout, a broken connection, a
    /// sequence the broker no longer follows) a new producer id is needed, when the batch
    /// used the current one; a batch the broker refused outright (MESSAGE_TOO_LARGE, …)
    /// leaves the sequence where it was, for the next batch to reuse.
    pub(super) fn finish(
        &mut self,
        topic: &str,
        partition: i32,
        producer: ProducerFields,
        records: usize,
        outcome: Outcome,
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
        match outcome {
            Outcome::Written => {
                let records = i32::try_from(records).unwrap_or(i32::MAX);
                pq.next_sequence = increment_sequence(pq.next_sequence, records);
            }
            Outcome::Refused => {}
            Outcome::Unknown => self.needs_new_producer_id = true,
        }
    }

    /// Installs a new producer id; every partition's sequence restarts at 0.
    pub(super) fn install_producer_id(&mut self, producer_id: i64, producer_epoch: i16) {
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
pub(super) fn increment_sequence(sequence: i32, increment: i32) -> i32 {
    if sequence > i32::MAX - increment {
        increment - (i32::MAX - sequence) - 1
    } else {
        sequence + increment
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
        st.finish("t", 1, plan.ready[0].producer, 8, Outcome::Written);
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
        st.finish("t", 1, p1, 1, Outcome::Unknown);
        let (p, _rx) = pending(&memory);
        st.append(&t, Some(1), record(b"again"), p, 16_384, t0 + TIMEOUT);
        let plan = st.plan(LINGER, TIMEOUT, true, t0 + TIMEOUT);
        assert!(plan.ready.is_empty() && plan.new_producer_id);
        st.install_producer_id(6, 0);
        let plan = st.plan(LINGER, TIMEOUT, true, t0 + TIMEOUT);
        let renewed = sent(&plan, 1);
        assert_eq!((renewed.producer_id, renewed.base_sequence), (6, 0));
        // Partition 0's late success under the old id does not move the new sequence.
        st.finish("t", 0, p0, 1, Outcome::Written);
        assert_eq!(st.topics["t"].partitions[&0].next_sequence, 0);
        st.finish("t", 1, renewed, 1, Outcome::Written);
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
