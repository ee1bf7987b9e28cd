//! Idempotent and transactional producers (KIP-98) with librdkafka (through the rdkafka
//! crate) against the real broker binary: exactly-once delivery across a broker crash,
//! committed and aborted transactions under both isolation levels, a
//! consume-transform-produce loop that crashes half way, zombie fencing, and the admin
//! APIs that show producers and transactions.

mod common;

use common::wire::Conn;
use common::{create_topic, TestBroker};
use kafka_protocol::messages::describe_producers_request::TopicRequest;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::producer::{BaseRecord, FutureProducer, FutureRecord, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(30);

fn broker() -> TestBroker {
    TestBroker::start_with(&[("group.initial.rebalance.delay.ms", "0")])
}

fn transactional_producer(addr: &str, id: &str) -> FutureProducer {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("transactional.id", id)
        .set("transaction.timeout.ms", "60000")
        .set("linger.ms", "5")
        .create()
        .expect("transactional producer");
    producer
        .init_transactions(TIMEOUT)
        .expect("init_transactions");
    producer
}

/// Reads `topics` from the beginning until `idle` passes without a message; returns
/// `(topic, partition, offset, value)` in the order each partition delivered them.
fn read_all(
    addr: &str,
    topics: &[&str],
    isolation: &str,
    idle: Duration,
) -> Vec<(String, i32, i64, String)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("group.id", fresh_group())
        .set("isolation.level", isolation)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    consumer.subscribe(topics).expect("subscribe");
    let mut seen = Vec::new();
    // `idle` counts from the moment the group gave this consumer its partitions: joining
    // alone takes group.initial.rebalance.delay.ms, longer on a loaded machine.
    let joined = Instant::now() + Duration::from_secs(60);
    while Instant::now() < joined && consumer.assignment().map_or(true, |a| a.count() == 0) {
        if let Some(msg) = consumer.poll(Duration::from_millis(100)) {
            let msg = msg.expect("message");
            seen.push((
                msg.topic().to_owned(),
                msg.partition(),
                msg.offset(),
                String::from_utf8_lossy(msg.payload().unwrap_or_default()).into_owned(),
            ));
        }
    }
    let mut last = Instant::now();
    while last.elapsed() < idle {
        if let Some(msg) = consumer.poll(Duration::from_millis(200)) {
            let msg = msg.expect("message");
            seen.push((
                msg.topic().to_owned(),
                msg.partition(),
                msg.offset(),
                String::from_utf8_lossy(msg.payload().unwrap_or_default()).into_owned(),
            ));
            last = Instant::now();
        }
    }
    seen
}

/// The delivery future of a queued record (the queue error carries the borrowed record,
/// so it is unwrapped at once).
fn queued<'a, K: rdkafka::message::ToBytes + ?Sized, P: rdkafka::message::ToBytes + ?Sized>(
    r: Result<rdkafka::producer::DeliveryFuture, (KafkaError, FutureRecord<'a, K, P>)>,
) -> rdkafka::producer::DeliveryFuture {
    r.map_err(|(e, _)| e).expect("queued")
}

/// A group id no other reader of this test process used (each test has its own broker).
fn fresh_group() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!("reader-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

fn values_by_partition(
    seen: &[(String, i32, i64, String)],
) -> BTreeMap<(String, i32), Vec<String>> {
    let mut out: BTreeMap<(String, i32), Vec<String>> = BTreeMap::new();
    for (t, p, _, v) in seen {
        out.entry((t.clone(), *p)).or_default().push(v.clone());
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn idempotent_producer_delivers_exactly_once_in_order_across_a_broker_crash() {
    let mut broker = broker();
    let topic = "idem";
    const PARTITIONS: i32 = 3;
    const PER_PARTITION: usize = 4_000;
    create_topic(&broker.addr, topic, PARTITIONS).await;
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &broker.addr)
        .set("enable.idempotence", "true")
        .set("linger.ms", "2")
        .set("batch.num.messages", "50")
        .set("message.timeout.ms", "120000")
        .set("retry.backoff.ms", "50")
        .create()
        .expect("idempotent producer");
    for i in 0..PER_PARTITION {
        for p in 0..PARTITIONS {
            let value = format!("{p}:{i}");
            let mut record = BaseRecord::<(), String>::to(topic)
                .payload(&value)
                .partition(p);
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(_), r)) => {
                        record = r;
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err((e, _)) => panic!("send: {e}"),
                }
            }
        }
        if i == PER_PARTITION / 2 {
            // Crash mid-stream: batches in flight are written but not acknowledged;
            // the producer retries them against the restarted broker, which must
            // recognise them from its recovered producer state.
            broker.kill9();
            broker.restart();
        }
    }
    assert_eq!(
        producer.flush(Duration::from_secs(120)),
        Ok(()),
        "everything acknowledged"
    );
    drop(producer);

    let seen = read_all(
        &broker.addr,
        &[topic],
        "read_uncommitted",
        Duration::from_secs(5),
    );
    let by_partition = values_by_partition(&seen);
    for p in 0..PARTITIONS {
        let values = by_partition
            .get(&(topic.to_owned(), p))
            .unwrap_or_else(|| panic!("partition {p} is empty"));
        let expected: Vec<String> = (0..PER_PARTITION).map(|i| format!("{p}:{i}")).collect();
        assert_eq!(
            values.len(),
            expected.len(),
            "partition {p}: duplicates or losses"
        );
        assert!(
            values == &expected,
            "partition {p}: out of order or changed"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn read_committed_sees_only_committed_transactions_and_read_uncommitted_sees_all() {
    let broker = broker();
    create_topic(&broker.addr, "txn-a", 3).await;
    create_topic(&broker.addr, "txn-b", 1).await;
    let producer = transactional_producer(&broker.addr, "interleaved");
    let mut committed = HashSet::new();
    let mut aborted = HashSet::new();
    for round in 0..8 {
        producer.begin_transaction().expect("begin");
        let mut pending = Vec::new();
        let mut values = Vec::new();
        for i in 0..12 {
            let value = format!("r{round}-{i}");
            let (topic, partition) = if i % 4 == 3 {
                ("txn-b", 0)
            } else {
                ("txn-a", i % 3)
            };
            pending.push(queued(
                producer.send_result(
                    FutureRecord::<(), String>::to(topic)
                        .payload(&value)
                        .partition(partition),
                ),
            ));
            values.push(value);
        }
        for p in pending {
            p.await.expect("delivered").expect("acked");
        }
        if round % 2 == 0 {
            producer.commit_transaction(TIMEOUT).expect("commit");
            committed.extend(values);
        } else {
            producer.abort_transaction(TIMEOUT).expect("abort");
            aborted.extend(values);
        }
    }
    // A last transaction left open: read_committed must stop before it.
    producer.begin_transaction().expect("begin");
    producer
        .send_result(
            FutureRecord::<(), str>::to("txn-a")
                .payload("open")
                .partition(0),
        )
        .expect("queued")
        .await
        .expect("delivered")
        .expect("acked");

    let committed_view = read_all(
        &broker.addr,
        &["txn-a", "txn-b"],
        "read_committed",
        Duration::from_secs(4),
    );
    let got: HashSet<String> = committed_view.iter().map(|r| r.3.clone()).collect();
    assert_eq!(
        got.len(),
        committed_view.len(),
        "a committed record was delivered twice"
    );
    assert_eq!(
        got, committed,
        "read_committed must see exactly the committed records"
    );
    // In order: within each partition, rounds and indexes only grow.
    for values in values_by_partition(&committed_view).values() {
        let keys: Vec<(u32, u32)> = values.iter().map(|v| parse_round(v)).collect();
        assert!(
            keys.windows(2).all(|w| w[0] < w[1]),
            "out of order: {values:?}"
        );
    }

    let everything = read_all(
        &broker.addr,
        &["txn-a", "txn-b"],
        "read_uncommitted",
        Duration::from_secs(4),
    );
    let all: HashSet<String> = everything.iter().map(|r| r.3.clone()).collect();
    assert!(
        committed.is_subset(&all) && aborted.is_subset(&all),
        "read_uncommitted sees both"
    );
    assert!(
        all.contains("open"),
        "read_uncommitted sees the open transaction"
    );
    assert_eq!(everything.len(), committed.len() + aborted.len() + 1);

    // ListOffsets `latest`: the last stable offset (the open transaction's first
    // offset) under read_committed, the high watermark under read_uncommitted.
    let mut conn = Conn::open(&broker.addr);
    let open_offset = everything
        .iter()
        .find(|r| r.3 == "open")
        .map(|r| r.2)
        .expect("the open record");
    let mut latest = |isolation_level: i8| {
        let resp: ListOffsetsResponse = conn.call(
            ApiKey::ListOffsets,
            4,
            &ListOffsetsRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_isolation_level(isolation_level)
                .with_topics(vec![ListOffsetsTopic::default()
                    .with_name(TopicName(StrBytes::from_static_str("txn-a")))
                    .with_partitions(vec![ListOffsetsPartition::default()
                        .with_partition_index(0)
                        .with_timestamp(-1)])]),
        );
        let p = &resp.topics[0].partitions[0];
        assert_eq!(p.error_code, 0);
        p.offset
    };
    assert_eq!(latest(1), open_offset, "read_committed latest is the LSO");
    assert_eq!(
        latest(0),
        open_offset + 1,
        "read_uncommitted latest is the HW"
    );

    // The admin APIs show the open transaction and its producer.
    let described: DescribeTransactionsResponse = conn.call(
        ApiKey::DescribeTransactions,
        0,
        &DescribeTransactionsRequest::default().with_transactional_ids(vec![TransactionalId(
            StrBytes::from_static_str("interleaved"),
        )]),
    );
    let state = &described.transaction_states[0];
    assert_eq!(state.error_code, 0);
    assert_eq!(state.transaction_state.as_str(), "Ongoing");
    assert!(state
        .topics
        .iter()
        .any(|t| t.topic.as_str() == "txn-a" && t.partitions.contains(&0)));
    let listed: ListTransactionsResponse = conn.call(
        ApiKey::ListTransactions,
        1,
        &ListTransactionsRequest::default()
            .with_state_filters(vec![StrBytes::from_static_str("Ongoing")])
            .with_duration_filter(-1),
    );
    assert!(listed.transaction_states.iter().any(
        |t| t.transactional_id.as_str() == "interleaved" && t.producer_id == state.producer_id
    ));
    let producers: DescribeProducersResponse = conn.call(
        ApiKey::DescribeProducers,
        0,
        &DescribeProducersRequest::default().with_topics(vec![TopicRequest::default()
            .with_name(TopicName(StrBytes::from_static_str("txn-a")))
            .with_partition_indexes(vec![0])]),
    );
    let active = &producers.topics[0].partitions[0].active_producers;
    let ours = active
        .iter()
        .find(|p| p.producer_id == state.producer_id)
        .expect("the transactional producer is active on txn-a-0");
    assert!(
        ours.current_txn_start_offset >= 0,
        "its open transaction shows a start offset"
    );
    producer
        .abort_transaction(TIMEOUT)
        .expect("abort the open one");
}

fn parse_round(v: &str) -> (u32, u32) {
    let (r, i) = v.trim_start_matches('r').split_once('-').expect("rN-I");
    (r.parse().expect("round"), i.parse().expect("index"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_producer_with_the_same_transactional_id_fences_the_first() {
    let broker = broker();
    create_topic(&broker.addr, "fence", 1).await;
    let zombie = transactional_producer(&broker.addr, "shared-id");
    zombie.begin_transaction().expect("begin");
    zombie
        .send_result(FutureRecord::<(), str>::to("fence").payload("zombie"))
        .expect("queued")
        .await
        .expect("delivered")
        .expect("acked");

    // The new instance takes over: its InitProducerId bumps the epoch and aborts the
    // zombie's open transaction.
    let fresh = transactional_producer(&broker.addr, "shared-id");
    fresh.begin_transaction().expect("begin");
    fresh
        .send_result(FutureRecord::<(), str>::to("fence").payload("fresh"))
        .expect("queued")
        .await
        .expect("delivered")
        .expect("acked");
    fresh.commit_transaction(TIMEOUT).expect("commit");

    let zombie_commit = zombie.commit_transaction(TIMEOUT);
    let err = zombie_commit.expect_err("the zombie must not commit");
    let text = err.to_string();
    assert!(
        text.contains("fenced") || text.contains("Fenced") || text.contains("epoch"),
        "fencing error expected, got {text}"
    );
    let seen = read_all(
        &broker.addr,
        &["fence"],
        "read_committed",
        Duration::from_secs(3),
    );
    let values: Vec<&str> = seen.iter().map(|r| r.3.as_str()).collect();
    assert_eq!(
        values,
        vec!["fresh"],
        "only the new instance's transaction is visible"
    );
}

/// One run of the processing client: reads `input` as group `group` (read_committed),
/// writes `out:<value>` for each record to `output` in a transaction with the consumed
/// offsets, `batch` records per transaction. With `crash_after = Some(n)` it stops
/// after n committed transactions, in the middle of the next one (outputs produced,
/// offsets sent, nothing committed), as a crashed process would.
async fn process(addr: &str, group: &str, crash_after: Option<usize>, want: usize) -> usize {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("group.id", group)
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .create()
        .expect("consumer");
    consumer.subscribe(&["ctp-in"]).expect("subscribe");
    let producer = transactional_producer(addr, "ctp-processor");
    let mut transactions = 0;
    let mut processed = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while processed < want && Instant::now() < deadline {
        let mut batch = Vec::new();
        while batch.len() < 25 {
            match consumer.poll(Duration::from_millis(300)) {
                Some(msg) => {
                    let msg = msg.expect("message");
                    batch.push((
                        msg.partition(),
                        msg.offset(),
                        String::from_utf8_lossy(msg.payload().unwrap_or_default()).into_owned(),
                    ));
                }
                None => break,
            }
        }
        if batch.is_empty() {
            continue;
        }
        producer.begin_transaction().expect("begin");
        let mut pending = Vec::new();
        for (_, _, value) in &batch {
            let out = format!("out:{value}");
            pending.push(queued(producer.send_result(
                FutureRecord::<(), String>::to("ctp-out").payload(&out),
            )));
        }
        for p in pending {
            p.await.expect("delivered").expect("acked");
        }
        let mut offsets = TopicPartitionList::new();
        let mut next: HashMap<i32, i64> = HashMap::new();
        for (p, o, _) in &batch {
            let e = next.entry(*p).or_insert(0);
            *e = (*e).max(o + 1);
        }
        for (p, o) in next {
            offsets
                .add_partition_offset("ctp-in", p, Offset::Offset(o))
                .expect("offset");
        }
        let metadata = consumer.group_metadata().expect("group metadata");
        producer
            .send_offsets_to_transaction(&offsets, &metadata, TIMEOUT)
            .expect("send offsets");
        if crash_after == Some(transactions) {
            // Crash: leave the transaction open and vanish without a word.
            std::mem::drop(consumer);
            std::mem::drop(producer);
            return processed;
        }
        producer.commit_transaction(TIMEOUT).expect("commit");
        transactions += 1;
        processed += batch.len();
    }
    processed
}

#[tokio::test(flavor = "multi_thread")]
async fn consume_transform_produce_has_each_input_exactly_once_after_a_crash() {
    let broker = broker();
    create_topic(&broker.addr, "ctp-in", 2).await;
    create_topic(&broker.addr, "ctp-out", 2).await;
    const INPUTS: usize = 400;
    let input: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &broker.addr)
        .set("enable.idempotence", "true")
        .create()
        .expect("producer");
    let mut pending = Vec::new();
    for i in 0..INPUTS {
        let value = format!("in-{i}");
        pending.push(queued(
            input.send_result(
                FutureRecord::<(), String>::to("ctp-in")
                    .payload(&value)
                    .partition((i % 2) as i32),
            ),
        ));
    }
    for p in pending {
        p.await.expect("delivered").expect("acked");
    }

    let before_crash = process(&broker.addr, "ctp-group", Some(3), INPUTS).await;
    assert!(
        before_crash > 0 && before_crash < INPUTS,
        "the crash happened mid-way ({before_crash})"
    );
    // The restarted processor fences the crashed one (aborting its open transaction)
    // and resumes from the offsets committed with the last committed transaction.
    let after = process(&broker.addr, "ctp-group", None, INPUTS - before_crash).await;
    assert_eq!(
        before_crash + after,
        INPUTS,
        "every input processed once after the restart"
    );

    let out = read_all(
        &broker.addr,
        &["ctp-out"],
        "read_committed",
        Duration::from_secs(4),
    );
    let mut counts: HashMap<String, usize> = HashMap::new();
    for (_, _, _, v) in &out {
        *counts.entry(v.clone()).or_default() += 1;
    }
    let dupes: Vec<_> = counts.iter().filter(|(_, c)| **c > 1).collect();
    assert!(dupes.is_empty(), "outputs committed twice: {dupes:?}");
    for i in 0..INPUTS {
        assert_eq!(
            counts.get(&format!("out:in-{i}")),
            Some(&1),
            "input {i} missing from the output"
        );
    }
    assert_eq!(out.len(), INPUTS);
}
