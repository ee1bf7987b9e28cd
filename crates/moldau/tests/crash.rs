//! kill -9 during sustained acks=-1 production: after restart every acknowledged record
//! is readable with its exact value at its acknowledged offset, offsets are contiguous,
//! and librdkafka (with CRC checks on) sees no corrupt batch.

mod common;

use common::TestBroker;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PARTITIONS: i32 = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_records_survive_kill_9() {
    let mut broker = TestBroker::start();
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &broker.addr)
        .create()
        .expect("admin");
    let created = admin
        .create_topics(
            &[NewTopic::new(
                "crash",
                PARTITIONS,
                TopicReplication::Fixed(1),
            )],
            &AdminOptions::new(),
        )
        .await
        .expect("create");
    assert!(created[0].is_ok());

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &broker.addr)
        .set("acks", "all")
        .set("linger.ms", "1")
        .set("enable.idempotence", "false")
        .set("message.timeout.ms", "5000")
        .set("retries", "0")
        .create()
        .expect("producer");
    let acked: Arc<Mutex<BTreeMap<(i32, i64), String>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for w in 0..4 {
        let producer = producer.clone();
        let acked = acked.clone();
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let value = format!("w{w}-r{i}-{}", "p".repeat((i % 97) as usize));
                let r = producer
                    .send(
                        FutureRecord::to("crash")
                            .key(&format!("k{i}"))
                            .payload(&value),
                        Duration::from_secs(5),
                    )
                    .await;
                if let Ok(d) = r {
                    acked
                        .lock()
                        .expect("lock")
                        .insert((d.partition, d.offset), value);
                }
                i += 1;
            }
        }));
    }
    // Let acknowledged records pile up, then pull the plug mid-stream.
    let started = Instant::now();
    while acked.lock().expect("lock").len() < 3_000 && started.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    broker.kill9();
    let acked_at_kill = acked.lock().expect("lock").len();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    drop(producer);
    let acked = acked.lock().expect("lock").clone();
    assert!(
        acked_at_kill >= 1_000,
        "only {acked_at_kill} records acknowledged before the kill"
    );
    assert!(!broker.data_dir().join(".kafka_cleanshutdown").exists());

    broker.restart();
    let addr = broker.addr.clone();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &addr)
            .set("group.id", "crash-verifier")
            .set("enable.auto.commit", "false")
            .set("check.crcs", "true")
            .create()
            .expect("consumer");
        let mut ends = [0i64; PARTITIONS as usize];
        for p in 0..PARTITIONS {
            let (low, high) = consumer
                .fetch_watermarks("crash", p, Duration::from_secs(10))
                .expect("watermarks");
            assert_eq!(low, 0);
            ends[p as usize] = high;
        }
        for (p, offset) in acked.keys() {
            assert!(
                *offset < ends[*p as usize],
                "acknowledged offset {offset} of partition {p} lost"
            );
        }
        let mut tpl = TopicPartitionList::new();
        for p in 0..PARTITIONS {
            tpl.add_partition_offset("crash", p, Offset::Beginning)
                .expect("tpl");
        }
        consumer.assign(&tpl).expect("assign");
        let mut next = [0i64; PARTITIONS as usize];
        let total: i64 = ends.iter().sum();
        let mut seen = 0;
        let deadline = Instant::now() + Duration::from_secs(60);
        while seen < total {
            assert!(Instant::now() < deadline, "read {seen} of {total}");
            let Some(m) = consumer.poll(Duration::from_millis(500)) else {
                continue;
            };
            let m = m.expect("no consume error (CRC checked)");
            let p = m.partition() as usize;
            assert_eq!(m.offset(), next[p], "contiguous offsets");
            next[p] += 1;
            seen += 1;
            if let Some(v) = acked.get(&(m.partition(), m.offset())) {
                assert_eq!(m.payload(), Some(v.as_bytes()), "acknowledged value intact");
            }
        }
    })
    .await
    .expect("verify");
}
