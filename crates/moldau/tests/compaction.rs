//! Log compaction seen from a client: librdkafka writes overwrites and tombstones to a
//! compacted topic, the broker's cleaner runs, and a consumer reading from the start
//! still rebuilds exactly the latest value per key, from far fewer records; also across
//! kill -9 of the broker while it cleans.

mod common;

use common::TestBroker;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::time::{Duration, Instant};

const KEYS: usize = 50;
const ROUNDS: usize = 40;

fn broker() -> TestBroker {
    TestBroker::start_with(&[("log.cleaner.backoff.ms", "200")])
}

async fn create_compacted(addr: &str, topic: &str) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .create()
        .expect("admin");
    let t = NewTopic::new(topic, 1, TopicReplication::Fixed(1))
        .set("cleanup.policy", "compact")
        .set("segment.bytes", "2048")
        .set("min.cleanable.dirty.ratio", "0.01")
        .set("delete.retention.ms", "0");
    let r = admin
        .create_topics(&[t], &AdminOptions::new())
        .await
        .expect("create");
    assert!(r.iter().all(|r| r.is_ok()), "{r:?}");
}

fn producer(addr: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("enable.idempotence", "false")
        .set("linger.ms", "0")
        .create()
        .expect("producer")
}

/// Writes ROUNDS overwrites of KEYS keys in small batches, then tombstones for every
/// fifth key. Returns the latest value per key (`None` = deleted).
async fn write_history(addr: &str, topic: &str) -> HashMap<String, Option<String>> {
    let p = producer(addr);
    let mut latest = HashMap::new();
    for round in 0..ROUNDS {
        let mut pending = Vec::new();
        let records: Vec<(String, String)> = (0..KEYS)
            .map(|k| (format!("key-{k}"), format!("value-{k}-round-{round}")))
            .collect();
        for (k, v) in &records {
            pending.push(
                p.send_result(FutureRecord::to(topic).key(k).payload(v))
                    .expect("queue"),
            );
            latest.insert(k.clone(), Some(v.clone()));
        }
        for f in pending {
            f.await.expect("delivery").expect("acked");
        }
    }
    for k in (0..KEYS).step_by(5) {
        let key = format!("key-{k}");
        p.send(
            FutureRecord::<String, ()>::to(topic).key(&key),
            Duration::from_secs(10),
        )
        .await
        .expect("tombstone");
        latest.insert(key, None);
    }
    p.flush(Duration::from_secs(10)).expect("flush");
    latest
}

/// Reads the partition from the start to the end; returns (records read, the map a
/// compacted-topic reader builds: key → latest value, tombstones removing the key).
fn read_all(addr: &str, topic: &str) -> (usize, HashMap<String, Option<String>>) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("group.id", "compaction-reader")
        .set("enable.partition.eof", "true")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .expect("tpl");
    consumer.assign(&tpl).expect("assign");
    let mut count = 0;
    let mut view = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(Instant::now() < deadline, "never reached the end");
        match consumer.poll(Duration::from_millis(200)) {
            None => continue,
            Some(Err(KafkaError::PartitionEOF(_))) => break,
            Some(Err(e)) => panic!("consume: {e}"),
            Some(Ok(m)) => {
                count += 1;
                let key =
                    String::from_utf8_lossy(m.key().expect("every record has a key")).into_owned();
                let value = m.payload().map(|v| String::from_utf8_lossy(v).into_owned());
                view.insert(key, value);
            }
        }
    }
    view.retain(|_, v| v.is_some());
    (count, view)
}

fn expected(latest: &HashMap<String, Option<String>>) -> HashMap<String, Option<String>> {
    latest
        .iter()
        .filter(|(_, v)| v.is_some())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Waits until a reader sees at most `max_records` records and the right latest values.
fn wait_until_compacted(addr: &str, topic: &str, want: &HashMap<String, Option<String>>) -> usize {
    let written = KEYS * ROUNDS + KEYS / 5;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (count, view) = read_all(addr, topic);
        assert_eq!(
            &view, want,
            "the latest value per key must survive cleaning"
        );
        if count < written / 4 {
            return count;
        }
        assert!(
            Instant::now() < deadline,
            "still {count} of {written} records after a minute of cleaning"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn cleaning_keeps_the_latest_value_per_key() {
    let broker = broker();
    let topic = "compacted";
    create_compacted(&broker.addr, topic).await;
    let latest = write_history(&broker.addr, topic).await;
    let want = expected(&latest);
    let count = wait_until_compacted(&broker.addr, topic, &want);
    eprintln!(
        "compacted: {count} records left of {}",
        KEYS * ROUNDS + KEYS / 5
    );

    // Keyless records cannot go to a compacted topic.
    let p = producer(&broker.addr);
    let err = p
        .send(
            FutureRecord::<(), str>::to(topic).payload("no key"),
            Duration::from_secs(10),
        )
        .await
        .expect_err("a keyless record must be refused");
    assert_eq!(
        err.0,
        KafkaError::MessageProduction(RDKafkaErrorCode::InvalidRecord)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_while_cleaning_leaves_a_log_that_reads_correctly() {
    let mut broker = broker();
    let topic = "compacted-crash";
    create_compacted(&broker.addr, topic).await;
    let latest = write_history(&broker.addr, topic).await;
    let want = expected(&latest);
    // The cleaner runs every 200 ms over ~100 small segments: kill the broker at varied
    // points of that work, restart, and check what a reader sees each time.
    for delay_ms in [50u64, 130, 210, 290, 370] {
        std::thread::sleep(Duration::from_millis(delay_ms));
        broker.kill9();
        broker.restart();
        let (_, view) = read_all(&broker.addr, topic);
        assert_eq!(view, want, "after kill -9 at +{delay_ms} ms");
    }
    wait_until_compacted(&broker.addr, topic, &want);
}
