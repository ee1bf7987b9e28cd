//! Moldau's own consumer (`moldau_client::Consumer`) against the real broker binary:
//! assignment and seeks, group membership with the range assignor, commits (manual and
//! automatic), interoperation with librdkafka's commits and group membership, and
//! errors that must come back promptly. Test data is produced with librdkafka.

mod common;

use common::{create_topic, TestBroker};
use moldau_client::{
    AutoOffsetReset, Client, ClientConfig, Consumer, ConsumerConfig, ConsumerRecord, Error,
    FetchOptions, OffsetSpec,
};
use rdkafka::config::ClientConfig as RdConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer as _};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// Bound on every wait for records or a rebalance.
const WAIT: Duration = Duration::from_secs(60);

fn broker() -> TestBroker {
    TestBroker::start_with(&[("group.initial.rebalance.delay.ms", "0")])
}

/// Produces `count` records `key-i` / `value-i` with a header `index: i` through
/// librdkafka; returns `(partition, offset) → i`.
async fn produce(addr: &str, topic: &str, count: usize) -> HashMap<(i32, i64), usize> {
    let producer: FutureProducer = RdConfig::new()
        .set("bootstrap.servers", addr)
        .set("enable.idempotence", "false")
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    let sends = (0..count).map(|i| {
        let producer = producer.clone();
        async move {
            let (key, value) = (format!("key-{i}"), format!("value-{i}"));
            let headers = OwnedHeaders::new().insert(Header {
                key: "index",
                value: Some(i.to_string().as_bytes()),
            });
            let record = FutureRecord::to(topic)
                .key(&key)
                .payload(&value)
                .headers(headers);
            let delivery = producer
                .send(record, Duration::from_secs(30))
                .await
                .unwrap_or_else(|(e, _)| panic!("record {i} not delivered: {e}"));
            ((delivery.partition, delivery.offset), i)
        }
    });
    let placed: HashMap<(i32, i64), usize> =
        futures::future::join_all(sends).await.into_iter().collect();
    assert_eq!(placed.len(), count, "offsets handed out twice");
    placed
}

/// Records produced per partition, as the partition end offsets.
fn ends(placed: &HashMap<(i32, i64), usize>, partitions: i32) -> BTreeMap<i32, i64> {
    (0..partitions)
        .map(|p| (p, placed.keys().filter(|(q, _)| *q == p).count() as i64))
        .collect()
}

async fn client(addr: &str) -> Client {
    Client::connect(ClientConfig::new(addr))
        .await
        .expect("connect")
}

/// A group consumer with test-sized timeouts, reading from the earliest offset,
/// committing by hand.
fn group_config(group: &str) -> ConsumerConfig {
    ConsumerConfig {
        group_id: Some(group.into()),
        auto_offset_reset: AutoOffsetReset::Earliest,
        enable_auto_commit: false,
        session_timeout: Duration::from_secs(6),
        max_poll_interval: Duration::from_secs(20),
        heartbeat_interval: Duration::from_millis(300),
        fetch: FetchOptions {
            max_wait_ms: 200,
            ..Default::default()
        },
        ..Default::default()
    }
}

/// Index of a record produced by [`produce`], after checking its key, value and header.
fn check(r: &ConsumerRecord, placed: &HashMap<(i32, i64), usize>) -> usize {
    let i = *placed
        .get(&(r.partition, r.offset))
        .unwrap_or_else(|| panic!("no record was produced at {}-{}", r.partition, r.offset));
    assert_eq!(r.key.as_deref(), Some(format!("key-{i}").as_bytes()));
    assert_eq!(r.value.as_deref(), Some(format!("value-{i}").as_bytes()));
    assert_eq!(r.headers.len(), 1);
    assert_eq!(r.headers[0].key, "index");
    assert_eq!(
        r.headers[0].value.as_deref(),
        Some(i.to_string().as_bytes())
    );
    i
}

/// Polls until `count` records came (failing after [`WAIT`]).
async fn poll_until(consumer: &mut Consumer, count: usize) -> Vec<ConsumerRecord> {
    let deadline = Instant::now() + WAIT;
    let mut out = Vec::new();
    while out.len() < count {
        assert!(
            Instant::now() < deadline,
            "only {} of {count} records within {WAIT:?}",
            out.len()
        );
        let records = tokio::time::timeout(WAIT, consumer.poll(Duration::from_millis(200)))
            .await
            .expect("poll returned in time")
            .expect("poll");
        out.extend(records);
    }
    out
}

/// Polls once, bounded.
async fn poll_once(consumer: &mut Consumer) -> Vec<ConsumerRecord> {
    tokio::time::timeout(WAIT, consumer.poll(Duration::from_millis(200)))
        .await
        .expect("poll returned in time")
        .expect("poll")
}

fn partitions_of(topic: &str, n: i32) -> Vec<(String, i32)> {
    (0..n).map(|p| (topic.to_string(), p)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assigned_partitions_read_from_earliest_and_seek_rereads_exactly() {
    let broker = broker();
    let topic = "assigned";
    create_topic(&broker.addr, topic, 3).await;
    let placed = produce(&broker.addr, topic, 100).await;
    let ends = ends(&placed, 3);

    let mut consumer =
        Consumer::new(client(&broker.addr).await, ConsumerConfig::default()).expect("consumer");
    let all = partitions_of(topic, 3);
    consumer.assign(&all).expect("assign");
    assert_eq!(consumer.assignment(), all);
    for p in 0..3 {
        consumer
            .seek_to(topic, p, OffsetSpec::Earliest)
            .await
            .expect("seek_to earliest");
        assert_eq!(consumer.position(topic, p), Some(0));
    }

    let records = poll_until(&mut consumer, 100).await;
    assert_eq!(records.len(), 100, "no record twice");
    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for r in &records {
        assert_eq!(r.topic, topic);
        let expected = next.entry(r.partition).or_insert(0);
        assert_eq!(r.offset, *expected, "offsets contiguous in {}", r.partition);
        *expected += 1;
        assert!(seen.insert(check(r, &placed)));
    }
    assert_eq!(next, ends, "every partition read to its end");
    for (p, end) in &ends {
        assert_eq!(consumer.position(topic, *p), Some(*end));
    }
    assert!(
        poll_once(&mut consumer).await.is_empty(),
        "nothing past the end"
    );

    // Back to offset 10 of partition 0: exactly its records from 10 come again.
    consumer.seek(topic, 0, 10).expect("seek");
    assert_eq!(consumer.position(topic, 0), Some(10));
    let again = poll_until(&mut consumer, (ends[&0] - 10) as usize).await;
    let offsets: Vec<(i32, i64)> = again.iter().map(|r| (r.partition, r.offset)).collect();
    let expected: Vec<(i32, i64)> = (10..ends[&0]).map(|o| (0, o)).collect();
    assert_eq!(offsets, expected);
    for r in &again {
        check(r, &placed);
    }
    assert!(poll_once(&mut consumer).await.is_empty());

    // seek_to the end and to a timestamp before every record.
    consumer
        .seek_to(topic, 1, OffsetSpec::Latest)
        .await
        .expect("seek_to latest");
    assert_eq!(consumer.position(topic, 1), Some(ends[&1]));
    consumer
        .seek_to(topic, 1, OffsetSpec::Timestamp(0))
        .await
        .expect("seek_to timestamp");
    assert_eq!(consumer.position(topic, 1), Some(0));
    consumer.close().await.expect("close");
}

/// Polls both consumers together until each holds half of `partitions` partitions,
/// disjoint, in the same generation.
async fn until_split(a: &mut Consumer, b: &mut Consumer, partitions: i32) {
    let deadline = Instant::now() + WAIT;
    loop {
        let (ra, rb) = tokio::time::timeout(
            WAIT,
            futures::future::join(
                a.poll(Duration::from_millis(200)),
                b.poll(Duration::from_millis(200)),
            ),
        )
        .await
        .expect("polls returned in time");
        ra.expect("poll a");
        rb.expect("poll b");
        let (sa, sb): (BTreeSet<_>, BTreeSet<_>) = (
            a.assignment().into_iter().collect(),
            b.assignment().into_iter().collect(),
        );
        let half = (partitions / 2) as usize;
        if sa.len() == half
            && sb.len() == half
            && sa.is_disjoint(&sb)
            && a.generation().is_some()
            && a.generation() == b.generation()
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "never split: {sa:?} / {sb:?}, generations {:?} / {:?}",
            a.generation(),
            b.generation()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_members_split_partitions_consume_once_commit_and_hand_over() {
    let broker = broker();
    let topic = "shared";
    let group = "g-shared";
    create_topic(&broker.addr, topic, 4).await;

    let mut a = Consumer::new(client(&broker.addr).await, group_config(group)).expect("a");
    let mut b = Consumer::new(client(&broker.addr).await, group_config(group)).expect("b");
    a.subscribe(&[topic.to_string()]).expect("subscribe a");
    let deadline = Instant::now() + WAIT;
    while a.assignment().len() != 4 {
        assert!(
            Instant::now() < deadline,
            "a alone never got every partition"
        );
        poll_once(&mut a).await;
    }
    // b's join waits for a to rejoin, which a does only when polled: b's poll still
    // returns after its timeout, the join going on in the background.
    b.subscribe(&[topic.to_string()]).expect("subscribe b");
    let started = Instant::now();
    assert!(poll_once(&mut b).await.is_empty());
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "poll blocked on the join for {:?}",
        started.elapsed()
    );
    assert_eq!(b.generation(), None, "b is still joining");
    until_split(&mut a, &mut b, 4).await;
    let generation = a.generation();
    assert_ne!(a.member_id(), b.member_id());
    let union: BTreeSet<(String, i32)> = a.assignment().into_iter().chain(b.assignment()).collect();
    assert_eq!(union, partitions_of(topic, 4).into_iter().collect());
    // The range assignor: the member with the smaller id takes partitions 0 and 1.
    let (first, _) = if a.member_id() < b.member_id() {
        (&a, &b)
    } else {
        (&b, &a)
    };
    assert_eq!(first.assignment(), partitions_of(topic, 2));

    let placed = produce(&broker.addr, topic, 400).await;
    let ends = ends(&placed, 4);
    let deadline = Instant::now() + WAIT;
    let (mut got_a, mut got_b) = (Vec::new(), Vec::new());
    while got_a.len() + got_b.len() < 400 {
        assert!(
            Instant::now() < deadline,
            "only {} records",
            got_a.len() + got_b.len()
        );
        let (ra, rb) = tokio::time::timeout(
            WAIT,
            futures::future::join(
                a.poll(Duration::from_millis(200)),
                b.poll(Duration::from_millis(200)),
            ),
        )
        .await
        .expect("polls returned in time");
        got_a.extend(ra.expect("poll a"));
        got_b.extend(rb.expect("poll b"));
    }
    assert_eq!(a.generation(), generation, "no rebalance while consuming");
    let mut seen = BTreeSet::new();
    for (consumer, records) in [(&a, &got_a), (&b, &got_b)] {
        let mine: BTreeSet<i32> = consumer.assignment().iter().map(|(_, p)| *p).collect();
        for r in records {
            assert!(
                mine.contains(&r.partition),
                "record from a partition not owned"
            );
            assert!(seen.insert(check(r, &placed)), "record consumed twice");
        }
    }
    assert_eq!(seen.len(), 400, "every record consumed exactly once");

    a.commit().await.expect("commit a");
    b.commit().await.expect("commit b");
    // A fresh consumer of the group (not a member) sees the partition ends committed.
    let observer = Consumer::new(client(&broker.addr).await, group_config(group)).expect("c");
    let committed = observer
        .committed(&partitions_of(topic, 4))
        .await
        .expect("committed");
    for ((t, p), offset) in committed {
        assert_eq!(t, topic);
        assert_eq!(offset, Some(ends[&p]), "committed offset of partition {p}");
    }

    // One member leaves: the other takes over all four partitions, from the commits.
    a.close().await.expect("close a");
    let deadline = Instant::now() + WAIT;
    let mut after = Vec::new();
    while b.assignment().len() != 4 {
        assert!(
            Instant::now() < deadline,
            "never took over: {:?}",
            b.assignment()
        );
        after.extend(poll_once(&mut b).await);
    }
    assert!(b.generation() > generation, "a new generation");
    after.extend(poll_once(&mut b).await);
    assert!(
        after.is_empty(),
        "records read again after their commit: {after:?}"
    );
    for (p, end) in &ends {
        assert_eq!(b.position(topic, *p), Some(*end));
    }
    b.close().await.expect("close b");
}

fn auto_commit_config(group: &str) -> ConsumerConfig {
    ConsumerConfig {
        enable_auto_commit: true,
        auto_commit_interval: Duration::from_millis(200),
        max_poll_records: 10,
        ..group_config(group)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_commit_lets_a_new_member_continue_after_close_and_after_a_crash() {
    let broker = broker();
    let topic = "auto";
    create_topic(&broker.addr, topic, 2).await;
    let placed = produce(&broker.addr, topic, 300).await;
    let group = "g-auto";
    let partitions = partitions_of(topic, 2);

    // First member: reads about a third in polls of at most 10 records, then closes
    // (close commits its positions).
    let mut first =
        Consumer::new(client(&broker.addr).await, auto_commit_config(group)).expect("first");
    first.subscribe(&[topic.to_string()]).expect("subscribe");
    let mut read_first = Vec::new();
    while read_first.len() < 100 {
        let records = poll_until(&mut first, 1).await;
        assert!(records.len() <= 10, "max.poll.records");
        read_first.extend(records);
    }
    first.close().await.expect("close");

    // Second member: continues exactly after what the first one returned.
    let mut second =
        Consumer::new(client(&broker.addr).await, auto_commit_config(group)).expect("second");
    second.subscribe(&[topic.to_string()]).expect("subscribe");
    let mut read_second = Vec::new();
    while read_second.len() < 100 {
        read_second.extend(poll_until(&mut second, 1).await);
    }
    // Let the interval pass; this poll's auto-commit covers everything returned so far.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let consumed_before_last_poll = read_first.len() + read_second.len();
    let last_poll = poll_until(&mut second, 1).await;
    let observer = Consumer::new(client(&broker.addr).await, group_config(group)).expect("obs");
    let committed: i64 = observer
        .committed(&partitions)
        .await
        .expect("committed")
        .iter()
        .map(|(_, o)| o.expect("an offset is committed"))
        .sum();
    assert_eq!(
        committed as usize, consumed_before_last_poll,
        "the auto-commit at the start of the last poll covers every record returned before it"
    );
    // The second member crashes: no close, no commit, no LeaveGroup.
    drop(second);

    // A third member (after the crashed one's session expires) re-reads only what the
    // last, uncommitted poll returned, and then the rest.
    let mut third =
        Consumer::new(client(&broker.addr).await, auto_commit_config(group)).expect("third");
    third.subscribe(&[topic.to_string()]).expect("subscribe");
    let remaining = 300 - consumed_before_last_poll;
    let read_third = poll_until(&mut third, remaining).await;
    assert_eq!(read_third.len(), remaining);
    let mut times_read: HashMap<usize, usize> = HashMap::new();
    for r in read_first
        .iter()
        .chain(&read_second)
        .chain(&last_poll)
        .chain(&read_third)
    {
        *times_read.entry(check(r, &placed)).or_default() += 1;
    }
    assert_eq!(times_read.len(), 300, "no record missed");
    let again: BTreeSet<usize> = times_read
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(i, _)| *i)
        .collect();
    let last: BTreeSet<usize> = last_poll.iter().map(|r| check(r, &placed)).collect();
    assert_eq!(again, last, "only the last uncommitted poll is read again");
    assert!(times_read.values().all(|n| *n <= 2));
    third.close().await.expect("close");
}

fn rd_consumer(addr: &str, group: &str) -> BaseConsumer {
    RdConfig::new()
        .set("bootstrap.servers", addr)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "300")
        .set("partition.assignment.strategy", "range")
        .create()
        .expect("rdkafka consumer")
}

/// What librdkafka says `group` committed for `topic`'s partitions (`None`: nothing).
fn rd_committed(addr: &str, group: &str, topic: &str, n: i32) -> BTreeMap<i32, Option<i64>> {
    let consumer = rd_consumer(addr, group);
    let mut tpl = TopicPartitionList::new();
    for p in 0..n {
        tpl.add_partition(topic, p);
    }
    let committed = consumer
        .committed_offsets(tpl, Duration::from_secs(20))
        .expect("committed_offsets");
    committed
        .elements()
        .iter()
        .map(|e| {
            let offset = match e.offset() {
                Offset::Offset(o) => Some(o),
                Offset::Invalid => None,
                other => panic!("unexpected committed offset {other:?}"),
            };
            (e.partition(), offset)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_are_shared_with_librdkafka_both_ways() {
    let broker = broker();
    let addr = broker.addr.clone();
    let topic = "interop";
    create_topic(&addr, topic, 2).await;
    let placed = produce(&addr, topic, 60).await;
    let ends = ends(&placed, 2);

    // Moldau commits as a group member; librdkafka reads the commits.
    let mut consumer =
        Consumer::new(client(&addr).await, group_config("g-moldau")).expect("consumer");
    consumer.subscribe(&[topic.to_string()]).expect("subscribe");
    assert_eq!(poll_until(&mut consumer, 60).await.len(), 60);
    consumer.commit().await.expect("commit");
    let (a, g, t) = (addr.clone(), "g-moldau", topic);
    let seen = tokio::task::spawn_blocking(move || rd_committed(&a, g, t, 2))
        .await
        .expect("rdkafka");
    let expected: BTreeMap<i32, Option<i64>> = ends.iter().map(|(p, e)| (*p, Some(*e))).collect();
    assert_eq!(seen, expected);
    // Explicit offsets too.
    consumer
        .commit_offsets(&[(topic.to_string(), 0, 3)])
        .await
        .expect("commit_offsets");
    consumer.close().await.expect("close");
    let (a, g, t) = (addr.clone(), "g-moldau", topic);
    let seen = tokio::task::spawn_blocking(move || rd_committed(&a, g, t, 2))
        .await
        .expect("rdkafka");
    assert_eq!(seen[&0], Some(3));
    assert_eq!(seen[&1], Some(ends[&1]));

    // librdkafka commits as a group member; Moldau reads the commits.
    let a = addr.clone();
    let rd_positions = tokio::task::spawn_blocking(move || {
        let consumer = rd_consumer(&a, "g-rdkafka");
        consumer.subscribe(&[topic]).expect("subscribe");
        let deadline = std::time::Instant::now() + WAIT;
        let mut read = 0;
        while read < 45 {
            assert!(std::time::Instant::now() < deadline, "rdkafka read {read}");
            if let Some(m) = consumer.poll(Duration::from_millis(200)) {
                m.expect("message");
                read += 1;
            }
        }
        consumer
            .commit_consumer_state(CommitMode::Sync)
            .expect("commit");
        let positions = consumer.position().expect("position");
        positions
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(o) => Some((e.partition(), o)),
                _ => None,
            })
            .collect::<BTreeMap<i32, i64>>()
    })
    .await
    .expect("rdkafka consumer");
    assert_eq!(rd_positions.values().sum::<i64>(), 45);
    let observer = Consumer::new(client(&addr).await, group_config("g-rdkafka")).expect("observer");
    let committed = observer
        .committed(&partitions_of(topic, 2))
        .await
        .expect("committed");
    for ((_, p), offset) in committed {
        assert_eq!(offset, rd_positions.get(&p).copied(), "partition {p}");
    }
}

/// A librdkafka group member polling on its own thread; its assignment is visible.
struct RdMember {
    assignment: Arc<Mutex<BTreeSet<i32>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RdMember {
    fn start(addr: &str, group: &str, topic: &str) -> RdMember {
        let consumer = rd_consumer(addr, group);
        consumer.subscribe(&[topic]).expect("subscribe");
        let assignment = Arc::new(Mutex::new(BTreeSet::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (a, s) = (assignment.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                let _ = consumer.poll(Duration::from_millis(100));
                let now: BTreeSet<i32> = consumer
                    .assignment()
                    .map(|tpl| tpl.elements().iter().map(|e| e.partition()).collect())
                    .unwrap_or_default();
                *a.lock().expect("lock") = now;
            }
        });
        RdMember {
            assignment,
            stop,
            thread: Some(thread),
        }
    }

    fn assigned(&self) -> BTreeSet<i32> {
        self.assignment.lock().expect("lock").clone()
    }
}

impl Drop for RdMember {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_of_moldau_and_librdkafka_members_splits_partitions() {
    let broker = broker();
    let topic = "mixed";
    let group = "g-mixed";
    create_topic(&broker.addr, topic, 4).await;
    let rd = RdMember::start(&broker.addr, group, topic);
    let mut consumer =
        Consumer::new(client(&broker.addr).await, group_config(group)).expect("consumer");
    consumer.subscribe(&[topic.to_string()]).expect("subscribe");
    let deadline = Instant::now() + WAIT;
    loop {
        poll_once(&mut consumer).await;
        let mine: BTreeSet<i32> = consumer.assignment().iter().map(|(_, p)| *p).collect();
        let theirs = rd.assigned();
        if mine.len() == 2 && theirs.len() == 2 && mine.is_disjoint(&theirs) {
            // Whichever member led, the range assignor's contiguous halves.
            assert!(
                mine == BTreeSet::from([0, 1]) || mine == BTreeSet::from([2, 3]),
                "{mine:?}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never split: moldau {mine:?}, librdkafka {theirs:?}"
        );
    }
    drop(rd);
    // librdkafka leaves: Moldau's member takes everything.
    let deadline = Instant::now() + WAIT;
    while consumer.assignment().len() != 4 {
        assert!(Instant::now() < deadline, "{:?}", consumer.assignment());
        poll_once(&mut consumer).await;
    }
    consumer.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misuse_and_missing_partitions_fail_promptly() {
    let broker = broker();
    let topic = "present";
    create_topic(&broker.addr, topic, 1).await;
    produce(&broker.addr, topic, 5).await;
    let bounded = Duration::from_secs(10);

    // allow.auto.create.topics=false: an unknown topic stays unknown.
    let mut plain = Consumer::new(
        client(&broker.addr).await,
        ConsumerConfig {
            allow_auto_create_topics: false,
            ..Default::default()
        },
    )
    .expect("consumer");
    assert!(matches!(
        plain.subscribe(&[topic.to_string()]),
        Err(Error::Invalid(_))
    ));
    assert!(matches!(
        plain.poll(Duration::ZERO).await,
        Err(Error::Invalid(_))
    ));
    assert!(matches!(plain.commit().await, Err(Error::Invalid(_))));
    assert!(matches!(
        plain.committed(&partitions_of(topic, 1)).await,
        Err(Error::Invalid(_))
    ));
    assert!(matches!(plain.seek(topic, 0, 1), Err(Error::Invalid(_))));
    for bad in [
        ConsumerConfig {
            group_id: Some(String::new()),
            ..Default::default()
        },
        ConsumerConfig {
            heartbeat_interval: Duration::from_secs(10),
            session_timeout: Duration::from_secs(10),
            ..Default::default()
        },
    ] {
        assert!(matches!(
            Consumer::new(client(&broker.addr).await, bad),
            Err(Error::Invalid(_))
        ));
    }

    // An unknown topic, and an unknown partition of a known one.
    for assigned in [("no-such-topic", 0), (topic, 7)] {
        plain
            .assign(&[(assigned.0.to_string(), assigned.1)])
            .expect("assign");
        let err = tokio::time::timeout(bounded, plain.poll(Duration::from_secs(1)))
            .await
            .expect("the error comes back promptly")
            .expect_err("unknown partition");
        assert_eq!(
            err.kafka_code(),
            Some(kafka_protocol::error::ResponseError::UnknownTopicOrPartition),
            "{err}"
        );
    }
    // Kafka's default (allow.auto.create.topics=true): the broker creates the topic,
    // and the consumer reads it (empty) without an error.
    let mut creating =
        Consumer::new(client(&broker.addr).await, ConsumerConfig::default()).expect("consumer");
    creating
        .assign(&[("made-by-a-consumer".to_string(), 0)])
        .expect("assign");
    let records = tokio::time::timeout(bounded, creating.poll(Duration::from_secs(1)))
        .await
        .expect("prompt")
        .expect("the topic was created");
    assert!(records.is_empty());
    client(&broker.addr)
        .await
        .topic("made-by-a-consumer")
        .await
        .expect("the topic exists");

    // auto.offset.reset=none: no committed offset, and a position past the end.
    let mut strict = Consumer::new(
        client(&broker.addr).await,
        ConsumerConfig {
            auto_offset_reset: AutoOffsetReset::None,
            ..group_config("g-strict")
        },
    )
    .expect("consumer");
    strict.assign(&partitions_of(topic, 1)).expect("assign");
    let err = tokio::time::timeout(bounded, strict.poll(Duration::from_secs(1)))
        .await
        .expect("prompt")
        .expect_err("no committed offset");
    assert_eq!(
        err.kafka_code(),
        Some(kafka_protocol::error::ResponseError::OffsetOutOfRange),
        "{err}"
    );
    strict.seek(topic, 0, 1_000).expect("seek");
    let err = tokio::time::timeout(bounded, strict.poll(Duration::from_secs(1)))
        .await
        .expect("prompt")
        .expect_err("out of range");
    assert_eq!(
        err.kafka_code(),
        Some(kafka_protocol::error::ResponseError::OffsetOutOfRange),
        "{err}"
    );
    // With a reset policy the same position recovers to the earliest offset.
    // (Fetches park on the broker for up to 5 s when there is nothing to read.)
    let mut long_polls = group_config("g-lenient");
    long_polls.fetch.max_wait_ms = 5_000;
    let mut lenient = Consumer::new(client(&broker.addr).await, long_polls).expect("consumer");
    lenient.assign(&partitions_of(topic, 1)).expect("assign");
    lenient.seek(topic, 0, 1_000).expect("seek");
    let records = poll_until(&mut lenient, 5).await;
    assert_eq!(records.first().map(|r| r.offset), Some(0));
    // A manual consumer's commit (generation -1) is stored for the group; it does not
    // wait behind the fetch parked on the broker (the coordinator has its own
    // connection).
    let started = Instant::now();
    lenient.commit().await.expect("commit");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "commit took {:?}",
        started.elapsed()
    );
    assert_eq!(
        lenient
            .committed(&partitions_of(topic, 1))
            .await
            .expect("committed"),
        vec![((topic.to_string(), 0), Some(5))]
    );
    // Mixing assignment and subscription is refused.
    assert!(matches!(
        lenient.subscribe(&[topic.to_string()]),
        Err(Error::Invalid(_))
    ));
    lenient.close().await.expect("close");
}

/// Partitions added to a subscribed topic are noticed within `metadata.max.age.ms`: the
/// member rejoins, gets them, and reads what is written there.
#[tokio::test]
async fn partitions_added_to_a_subscribed_topic_get_assigned() {
    use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions};
    use rdkafka::client::DefaultClientContext;
    let broker = broker();
    create_topic(&broker.addr, "growing", 2).await;
    let mut consumer = Consumer::new(
        client(&broker.addr).await,
        ConsumerConfig {
            metadata_max_age: Duration::from_millis(500),
            ..group_config("growers")
        },
    )
    .expect("consumer");
    consumer.subscribe(&["growing".into()]).expect("subscribe");
    let deadline = Instant::now() + WAIT;
    while consumer.assignment().len() < 2 {
        assert!(Instant::now() < deadline, "never assigned");
        consumer
            .poll(Duration::from_millis(200))
            .await
            .expect("poll");
    }

    let admin: AdminClient<DefaultClientContext> = RdConfig::new()
        .set("bootstrap.servers", &broker.addr)
        .create()
        .expect("admin");
    let grown = admin
        .create_partitions(&[NewPartitions::new("growing", 4)], &AdminOptions::new())
        .await
        .expect("create_partitions");
    assert!(grown.iter().all(|r| r.is_ok()), "{grown:?}");
    let producer: FutureProducer = RdConfig::new()
        .set("bootstrap.servers", &broker.addr)
        .set("topic.metadata.refresh.interval.ms", "200")
        .create()
        .expect("producer");
    producer
        .send(
            FutureRecord::<(), _>::to("growing")
                .partition(3)
                .payload("on a new partition"),
            Duration::from_secs(30),
        )
        .await
        .expect("produced to partition 3");

    let deadline = Instant::now() + WAIT;
    loop {
        assert!(
            Instant::now() < deadline,
            "partition 3 never read; assignment {:?}",
            consumer.assignment()
        );
        let records = consumer
            .poll(Duration::from_millis(200))
            .await
            .expect("poll");
        if let Some(r) = records.iter().find(|r| r.partition == 3) {
            assert_eq!(r.value.as_deref(), Some(&b"on a new partition"[..]));
            break;
        }
    }
    let assigned: BTreeSet<i32> = consumer.assignment().into_iter().map(|(_, p)| p).collect();
    assert_eq!(assigned, (0..4).collect());
    consumer.close().await.expect("close");
}
