//! Moldau's own [`Producer`] against the real broker binary, checked with librdkafka:
//! every codec read back exactly once and in order, murmur2 key placement identical to
//! librdkafka's `murmur2_random` (the Java producer's), batching, acks, the errors
//! `send` reports, and retries across a broker restart and crash.

mod common;

use common::{create_topic, TestBroker};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{fetch_request, BrokerId, FetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use moldau_client::{
    parse_compression, partition_for_key, Acks, Client, ClientConfig, DeliveryFuture, Error,
    IsolationLevel, OffsetSpec, Producer, ProducerConfig, ProducerRecord, RecordMetadata,
};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Bound on anything a test waits for, so a hang fails instead of stalling the suite.
const PATIENCE: Duration = Duration::from_secs(120);
const BASE_TS: i64 = 1_700_000_000_000;

async fn connect(addr: &str) -> Client {
    Client::connect(ClientConfig::new(addr))
        .await
        .expect("client connects")
}

async fn producer(client: &Client, config: ProducerConfig) -> Producer {
    Producer::new(client.clone(), config)
        .await
        .expect("producer starts")
}

fn key_of(i: usize) -> String {
    format!("key-{}", i % 997)
}

fn value_of(i: usize) -> Vec<u8> {
    // Varied sizes and non-UTF-8 bytes.
    let len = 10 + (i * 7919) % 300;
    (0..len)
        .map(|j| (i.wrapping_mul(31).wrapping_add(j * 17) % 256) as u8)
        .collect()
}

/// Record `i`: keyed, valued (a tombstone every 1000th), three headers (one with a
/// null value), an explicit CreateTime.
fn record_of(topic: &str, codec: &str, i: usize) -> ProducerRecord {
    let mut r = ProducerRecord::new(topic)
        .with_key(key_of(i))
        .with_header("index", i.to_string())
        .with_header("codec", codec.to_owned())
        .with_timestamp(BASE_TS + i as i64);
    r.headers.push(moldau_client::Header {
        key: "nothing".into(),
        value: None,
    });
    if i % 1000 != 999 {
        r = r.with_value(value_of(i));
    }
    r
}

async fn await_all(futures: Vec<DeliveryFuture>) -> Vec<RecordMetadata> {
    tokio::time::timeout(PATIENCE, futures::future::join_all(futures))
        .await
        .expect("deliveries resolve")
        .into_iter()
        .enumerate()
        .map(|(i, r)| r.unwrap_or_else(|e| panic!("record {i} not delivered: {e}")))
        .collect()
}

fn rdkafka_consumer(addr: &str) -> BaseConsumer {
    rdkafka::ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("group.id", "verifier")
        .set("enable.auto.commit", "false")
        .set("check.crcs", "true")
        .create()
        .expect("consumer")
}

/// Reads all `partitions` of `topic` from the beginning with librdkafka and checks each
/// record against `placed` ((partition, offset) → index, from the delivery futures):
/// offsets contiguous from 0, indexes rising per partition (send order), key, value,
/// headers and timestamp intact, and nothing beyond what was acknowledged.
fn verify_with_rdkafka(
    addr: &str,
    topic: &str,
    codec: &str,
    partitions: i32,
    placed: &HashMap<(i32, i64), usize>,
) {
    let consumer = rdkafka_consumer(addr);
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("tpl");
    }
    consumer.assign(&tpl).expect("assign");
    let mut next_offset = vec![0i64; partitions as usize];
    let mut last_index: Vec<Option<usize>> = vec![None; partitions as usize];
    let mut seen = 0usize;
    let deadline = Instant::now() + PATIENCE;
    while seen < placed.len() {
        assert!(
            Instant::now() < deadline,
            "timed out after {seen} of {} records",
            placed.len()
        );
        let Some(msg) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let msg = msg.expect("consume error");
        let p = msg.partition();
        let slot = p as usize;
        assert_eq!(msg.offset(), next_offset[slot], "offsets contiguous in {p}");
        next_offset[slot] += 1;
        let i = *placed
            .get(&(p, msg.offset()))
            .unwrap_or_else(|| panic!("no delivery reported {p}@{}", msg.offset()));
        assert!(
            last_index[slot].is_none_or(|last| last < i),
            "partition {p} out of send order: {last_index:?} then {i}"
        );
        last_index[slot] = Some(i);
        assert_eq!(msg.key(), Some(key_of(i).as_bytes()));
        let value = (i % 1000 != 999).then(|| value_of(i));
        assert_eq!(msg.payload(), value.as_deref(), "value of {i}");
        assert_eq!(
            msg.timestamp(),
            rdkafka::Timestamp::CreateTime(BASE_TS + i as i64)
        );
        let headers = msg.headers().expect("headers");
        assert_eq!(headers.count(), 3);
        assert_eq!(
            (headers.get(0).key, headers.get(0).value),
            ("index", Some(i.to_string().as_bytes()))
        );
        assert_eq!(
            (headers.get(1).key, headers.get(1).value),
            ("codec", Some(codec.as_bytes()))
        );
        assert_eq!(
            (headers.get(2).key, headers.get(2).value),
            ("nothing", None)
        );
        seen += 1;
    }
    for p in 0..partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .expect("watermarks");
        assert_eq!(
            (low, high),
            (0, next_offset[p as usize]),
            "partition {p} holds exactly the acknowledged records"
        );
    }
}

/// Every record batch of `topic`-`partition` as `(base offset, record count, codec id)`,
/// read with raw Fetch requests and parsed here from the v2 batch header (offsets 0,
/// 8, 21 and 57; protocol guide "Record Batch"), independently of the client's decoder.
async fn raw_batches(client: &Client, topic: &str, partition: i32) -> Vec<(i64, i32, i16)> {
    let end = client
        .list_offset(
            topic,
            partition,
            OffsetSpec::Latest,
            IsolationLevel::ReadUncommitted,
        )
        .await
        .expect("end offset");
    let mut batches = Vec::new();
    let mut offset = 0i64;
    while offset < end {
        let conn = client.leader(topic, partition).await.expect("leader");
        let request = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(100)
            .with_min_bytes(1)
            .with_max_bytes(1 << 20)
            .with_session_epoch(-1)
            .with_topics(vec![fetch_request::FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_string(topic.to_owned())))
                .with_partitions(vec![fetch_request::FetchPartition::default()
                    .with_partition(partition)
                    .with_fetch_offset(offset)
                    .with_partition_max_bytes(1 << 20)])]);
        let response = conn.send(request).await.expect("fetch");
        let p = &response.responses[0].partitions[0];
        assert_eq!(p.error_code, 0, "fetch error");
        let records = p.records.clone().unwrap_or_default();
        let be = |at: usize, n: usize| -> i64 {
            records[at..at + n]
                .iter()
                .fold(0i64, |acc, b| (acc << 8) | i64::from(*b))
        };
        let mut pos = 0usize;
        let before = offset;
        while pos + 61 <= records.len() {
            let size = 12 + be(pos + 8, 4) as usize;
            if pos + size > records.len() {
                break;
            }
            let base = be(pos, 8);
            let attributes = be(pos + 21, 2) as i16;
            let last_delta = be(pos + 23, 4);
            let count = be(pos + 57, 4) as i32;
            batches.push((base, count, attributes & 0x07));
            offset = base + last_delta + 1;
            pos += size;
        }
        assert!(offset > before, "fetch at {before} made no progress");
    }
    batches
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_records_in_every_codec_arrive_once_in_order() {
    const N: usize = 10_000;
    const PARTITIONS: i32 = 6;
    let broker = TestBroker::start();
    let client = connect(&broker.addr).await;
    for codec in ["gzip", "lz4", "snappy", "zstd"] {
        let topic = format!("produced-{codec}");
        create_topic(&broker.addr, &topic, PARTITIONS).await;
        let compression = parse_compression(codec).expect("codec name");
        let producer = producer(
            &client,
            ProducerConfig {
                compression,
                ..Default::default()
            },
        )
        .await;
        assert!(producer.producer_id().is_some(), "idempotent by default");
        let mut futures = Vec::with_capacity(N);
        for i in 0..N {
            let f = producer
                .send(record_of(&topic, codec, i))
                .await
                .unwrap_or_else(|e| panic!("send {i}: {e}"));
            futures.push(f);
        }
        let delivered = await_all(futures).await;
        let mut placed = HashMap::with_capacity(N);
        for (i, m) in delivered.iter().enumerate() {
            assert_eq!(m.topic, topic);
            assert_eq!(
                m.partition,
                partition_for_key(key_of(i).as_bytes(), PARTITIONS),
                "record {i} on its key's partition"
            );
            assert_eq!(m.timestamp_ms, BASE_TS + i as i64);
            assert!(
                placed.insert((m.partition, m.offset), i).is_none(),
                "offset {}@{} handed out twice",
                m.partition,
                m.offset
            );
        }
        let batches = producer.batches_sent();
        assert!(
            (PARTITIONS as u64..(N / 10) as u64).contains(&batches),
            "{batches} batches for {N} records"
        );
        producer.close().await.expect("close");

        // The batches on disk are the producer's own: its codec, record counts adding up.
        let mut on_disk = 0u64;
        let mut records = 0i64;
        for p in 0..PARTITIONS {
            for (_, count, codec_id) in raw_batches(&client, &topic, p).await {
                assert_eq!(codec_id, i16::from(compression.id()), "{codec} on disk");
                on_disk += 1;
                records += i64::from(count);
            }
        }
        assert_eq!((on_disk, records), (batches, N as i64));

        let addr = broker.addr.clone();
        tokio::task::spawn_blocking(move || {
            verify_with_rdkafka(&addr, &topic, codec, PARTITIONS, &placed)
        })
        .await
        .expect("verify");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_land_where_librdkafka_murmur2_puts_them() {
    const KEYS: usize = 2_000;
    const PARTITIONS: i32 = 7;
    let broker = TestBroker::start();
    create_topic(&broker.addr, "murmur", PARTITIONS).await;
    // Distinct keys of many lengths (every murmur2 tail length), some not UTF-8.
    let keys: Vec<Vec<u8>> = (0..KEYS)
        .map(|i| {
            let mut k = format!("user-{i}-{}", "x".repeat(i % 11)).into_bytes();
            if i % 3 == 0 {
                k.push(0xff);
            }
            k
        })
        .collect();

    let client = connect(&broker.addr).await;
    let ours = producer(&client, ProducerConfig::default()).await;
    let mut futures = Vec::with_capacity(KEYS);
    for k in &keys {
        futures.push(
            ours.send(
                ProducerRecord::new("murmur")
                    .with_key(k.clone())
                    .with_value("moldau"),
            )
            .await
            .expect("send"),
        );
    }
    let moldau_partitions: Vec<i32> = await_all(futures)
        .await
        .iter()
        .map(|m| m.partition)
        .collect();
    ours.close().await.expect("close");

    let theirs: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &broker.addr)
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "5")
        .create()
        .expect("rdkafka producer");
    let sends = keys.iter().map(|k| {
        theirs.send(
            FutureRecord::to("murmur").key(k).payload("librdkafka"),
            Duration::from_secs(60),
        )
    });
    let rdkafka_partitions: Vec<i32> = futures::future::join_all(sends)
        .await
        .into_iter()
        .map(|r| r.expect("rdkafka delivery").partition)
        .collect();

    let mut used = [0usize; PARTITIONS as usize];
    for (i, k) in keys.iter().enumerate() {
        let expected = partition_for_key(k, PARTITIONS);
        assert_eq!(
            (moldau_partitions[i], rdkafka_partitions[i]),
            (expected, expected),
            "key {:?}",
            String::from_utf8_lossy(k)
        );
        used[expected as usize] += 1;
    }
    assert!(used.iter().all(|n| *n > 150), "keys spread: {used:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_are_batched_and_every_acks_level_delivers() {
    const N: usize = 1_000;
    let broker = TestBroker::start();
    create_topic(&broker.addr, "batched", 3).await;
    let client = connect(&broker.addr).await;

    // Keyless records within one linger: the sticky partitioner fills few batches.
    let lingering = producer(
        &client,
        ProducerConfig {
            linger: Duration::from_millis(50),
            batch_size: 16_384,
            ..Default::default()
        },
    )
    .await;
    let mut futures = Vec::with_capacity(N);
    for i in 0..N {
        let f = lingering
            .send(ProducerRecord::new("batched").with_value(format!("small-{i}")))
            .await
            .expect("send");
        futures.push(f);
    }
    let delivered = await_all(futures).await;
    let sent = lingering.batches_sent();
    assert!(sent < 100, "{sent} batches for {N} records");
    lingering.close().await.expect("close");
    let mut offsets: Vec<(i32, i64)> = delivered.iter().map(|m| (m.partition, m.offset)).collect();
    offsets.sort_unstable();
    offsets.dedup();
    assert_eq!(offsets.len(), N, "distinct offsets");
    let mut on_disk = 0;
    let mut records = 0;
    for p in 0..3 {
        let batches = raw_batches(&client, "batched", p).await;
        on_disk += batches.len() as u64;
        records += batches.iter().map(|b| b.1 as usize).sum::<usize>();
    }
    assert_eq!((on_disk, records), (sent, N));

    // acks=1 and acks=0: idempotence is off; acks=0 reports no offsets.
    create_topic(&broker.addr, "acks", 1).await;
    for (acks, base) in [(Acks::Leader, 0i64), (Acks::None, 100)] {
        let p = producer(
            &client,
            ProducerConfig {
                acks,
                ..Default::default()
            },
        )
        .await;
        assert_eq!(p.producer_id(), None, "{acks:?} is not idempotent");
        assert!(!p.config().enable_idempotence);
        let mut futures = Vec::new();
        for i in 0..100 {
            futures.push(
                p.send(ProducerRecord::new("acks").with_value(format!("{acks:?}-{i}")))
                    .await
                    .expect("send"),
            );
        }
        let delivered = await_all(futures).await;
        for (i, m) in delivered.iter().enumerate() {
            let expected = if acks == Acks::None {
                -1
            } else {
                base + i as i64
            };
            assert_eq!((m.partition, m.offset), (0, expected));
        }
        p.close().await.expect("close");
    }
    // acks=0 has no answer to wait for: poll until the broker shows the records.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let end = client
            .list_offset(
                "acks",
                0,
                OffsetSpec::Latest,
                IsolationLevel::ReadUncommitted,
            )
            .await
            .expect("end offset");
        if end == 200 {
            break;
        }
        assert!(end < 200 && Instant::now() < deadline, "end offset {end}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let fetched = client
        .fetch("acks", 0, 100, Default::default())
        .await
        .expect("fetch");
    assert_eq!(fetched.records.len(), 100);
    assert_eq!(fetched.records[99].value.as_deref(), Some(&b"None-99"[..]));
}

/// Kafka's producer asks for auto-creation in its Metadata requests: a record for a
/// topic the broker does not have creates the topic (with `num.partitions`) and is
/// delivered. Fails if the producer looks the topic up without
/// `allow_auto_topic_creation` (UNKNOWN_TOPIC_OR_PARTITION, as before this was fixed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_for_a_missing_topic_creates_it_when_the_broker_allows() {
    let broker = TestBroker::start_with(&[("num.partitions", "2")]);
    let client = connect(&broker.addr).await;
    let p = producer(&client, ProducerConfig::default()).await;
    let delivery = within(p.send(ProducerRecord::new("born-on-send").with_value("v")))
        .await
        .expect("no hang")
        .expect("queued");
    let meta = within(delivery).await.expect("no hang").expect("delivered");
    assert_eq!(meta.offset, 0, "{meta:?}");
    let fresh = connect(&broker.addr).await;
    let info = fresh.topic("born-on-send").await.expect("the topic exists");
    assert_eq!(info.partitions.len(), 2);
}

/// `f`, failing the test if it takes more than 30 s.
fn within<F: std::future::Future>(f: F) -> tokio::time::Timeout<F> {
    tokio::time::timeout(Duration::from_secs(30), f)
}

async fn create_topic_with(addr: &str, name: &str, partitions: i32, configs: &[(&str, &str)]) {
    let admin: AdminClient<DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", addr)
        .create()
        .expect("admin client");
    let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    for (k, v) in configs {
        topic = topic.set(k, v);
    }
    let results = admin
        .create_topics(&[topic], &AdminOptions::new())
        .await
        .expect("create_topics");
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_reports_errors_and_nothing_hangs() {
    // Without auto-creation a missing topic is an error, not a new topic.
    let broker = TestBroker::start_with(&[("auto.create.topics.enable", "false")]);
    create_topic(&broker.addr, "three", 3).await;
    create_topic_with(&broker.addr, "tiny", 1, &[("max.message.bytes", "2000")]).await;
    let client = connect(&broker.addr).await;
    let p = producer(
        &client,
        ProducerConfig {
            max_request_size: 100_000,
            ..Default::default()
        },
    )
    .await;

    let unknown = within(p.send(ProducerRecord::new("no-such-topic").with_value("v")))
        .await
        .expect("no hang")
        .expect_err("unknown topic");
    assert_eq!(
        unknown.kafka_code(),
        Some(ResponseError::UnknownTopicOrPartition),
        "{unknown}"
    );

    for bad in [3, -1, 1_000] {
        let e = within(
            p.send(
                ProducerRecord::new("three")
                    .with_partition(bad)
                    .with_value("v"),
            ),
        )
        .await
        .expect("no hang")
        .expect_err("partition out of range");
        assert!(matches!(e, Error::Invalid(_)), "partition {bad}: {e}");
    }

    let huge = within(p.send(ProducerRecord::new("three").with_value(vec![0u8; 200_000])))
        .await
        .expect("no hang")
        .expect_err("above max.request.size");
    assert_eq!(
        huge.kafka_code(),
        Some(ResponseError::MessageTooLarge),
        "{huge}"
    );

    // Below max.request.size but above the topic's max.message.bytes: the broker
    // refuses the batch (not retriable) and the record's future says so; later
    // records are still delivered, under the same producer id (the refused batch's
    // sequence number is reused, which the broker accepts only if nothing was written).
    let first_id = p.producer_id().expect("idempotent");
    let refused = within(async {
        p.send(ProducerRecord::new("tiny").with_value(vec![1u8; 5_000]))
            .await
            .expect("queued")
            .await
    })
    .await
    .expect("no hang")
    .expect_err("broker refuses");
    assert_eq!(
        refused.kafka_code(),
        Some(ResponseError::MessageTooLarge),
        "{refused}"
    );
    let ok = within(async {
        p.send(ProducerRecord::new("tiny").with_value("small"))
            .await
            .expect("queued")
            .await
    })
    .await
    .expect("no hang")
    .expect("small record delivered");
    assert_eq!((ok.partition, ok.offset), (0, 0));
    assert_eq!(
        p.producer_id(),
        Some(first_id),
        "a batch the broker refused outright was not written: the id and sequence stay"
    );

    // An explicit partition in range works; flush with nothing queued returns.
    let m = within(async {
        p.send(
            ProducerRecord::new("three")
                .with_partition(2)
                .with_value("x"),
        )
        .await
        .expect("queued")
        .await
    })
    .await
    .expect("no hang")
    .expect("delivered");
    assert_eq!((m.partition, m.offset), (2, 0));
    within(p.flush()).await.expect("no hang").expect("flush");

    // Dropping a producer with records still lingering neither blocks nor loses them.
    let lingering = producer(
        &client,
        ProducerConfig {
            linger: Duration::from_millis(200),
            ..Default::default()
        },
    )
    .await;
    let pending = lingering
        .send(
            ProducerRecord::new("three")
                .with_partition(1)
                .with_value("late"),
        )
        .await
        .expect("queued");
    drop(lingering);
    let m = within(pending)
        .await
        .expect("no hang")
        .expect("delivered after drop");
    assert_eq!((m.partition, m.offset), (1, 0));

    // With the broker gone, records fail once delivery.timeout.ms has passed.
    let short = producer(
        &client,
        ProducerConfig {
            delivery_timeout: Duration::from_secs(3),
            ..Default::default()
        },
    )
    .await;
    let mut broker = broker;
    broker.kill9();
    let started = Instant::now();
    let doomed = short
        .send(
            ProducerRecord::new("three")
                .with_partition(0)
                .with_value("lost"),
        )
        .await
        .expect("queued from cached metadata");
    let e = within(doomed)
        .await
        .expect("no hang")
        .expect_err("no broker");
    assert!(
        e.is_retriable(),
        "the last retriable error or a timeout: {e}"
    );
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(2) && waited < Duration::from_secs(10),
        "failed after {waited:?}"
    );
    within(short.close())
        .await
        .expect("no hang")
        .expect("close");
}

/// Sends the records numbered `range` to partition 0 of `topic`, not awaiting them.
async fn send_numbered(
    p: &Producer,
    topic: &str,
    range: std::ops::Range<usize>,
) -> Vec<DeliveryFuture> {
    let mut futures = Vec::new();
    for i in range {
        futures.push(
            p.send(
                ProducerRecord::new(topic)
                    .with_partition(0)
                    .with_value(i.to_string()),
            )
            .await
            .expect("queued"),
        );
    }
    futures
}

/// Reads partition 0 of `topic` with the client and returns the values in log order.
async fn values_in_log(client: &Client, topic: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let fetched = client
            .fetch(topic, 0, offset, Default::default())
            .await
            .expect("fetch");
        for r in &fetched.records {
            out.push(String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned());
        }
        offset = fetched.next_offset;
        if offset >= fetched.high_watermark {
            return out;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_across_a_broker_restart_and_crash_keep_order_without_duplicates() {
    const TOTAL: usize = 6_000;
    let mut broker = TestBroker::start();
    create_topic(&broker.addr, "restart", 1).await;
    let client = connect(&broker.addr).await;
    let p = producer(
        &client,
        ProducerConfig {
            delivery_timeout: Duration::from_secs(90),
            ..Default::default()
        },
    )
    .await;
    let first = await_all(send_numbered(&p, "restart", 0..500).await).await;
    assert_eq!(first.last().map(|m| m.offset), Some(499));

    // Graceful stop: records queued meanwhile are retried until the broker is back.
    tokio::task::block_in_place(|| assert!(broker.stop(), "clean shutdown"));
    let queued = send_numbered(&p, "restart", 500..1_000).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    tokio::task::block_in_place(|| broker.restart());
    let second = await_all(queued).await;
    assert_eq!(
        second.iter().map(|m| m.offset).collect::<Vec<_>>(),
        (500..1_000).collect::<Vec<i64>>()
    );

    // Crash while records stream in: batches whose acknowledgement was lost are sent
    // again with the same sequence numbers and the broker keeps one copy; batches sent
    // while it is down are retried until it is back.
    let p = std::sync::Arc::new(p);
    let sender = {
        let p = p.clone();
        tokio::spawn(async move {
            let mut futures = Vec::new();
            for from in (1_000..TOTAL).step_by(50) {
                futures.extend(send_numbered(&p, "restart", from..from + 50).await);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            futures
        })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(
        !sender.is_finished(),
        "the crash comes while records stream in"
    );
    tokio::task::block_in_place(|| {
        broker.kill9();
        broker.restart();
    });
    let streaming = sender.await.expect("sender task");
    let third = await_all(streaming).await;
    let offsets: Vec<i64> = third.iter().map(|m| m.offset).filter(|o| *o >= 0).collect();
    assert!(
        offsets.windows(2).all(|w| w[0] < w[1]),
        "delivered in send order"
    );
    std::sync::Arc::into_inner(p)
        .expect("the only producer handle")
        .close()
        .await
        .expect("close");

    let log = values_in_log(&client, "restart").await;
    let expected: Vec<String> = (0..TOTAL).map(|i| i.to_string()).collect();
    assert_eq!(log.len(), expected.len(), "each record exactly once");
    assert_eq!(log, expected, "in send order");
    for (i, m) in third.iter().enumerate() {
        if m.offset >= 0 {
            assert_eq!(log[m.offset as usize], (1_000 + i).to_string());
        }
    }
}
