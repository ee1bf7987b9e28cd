//! `moldau-bench BINARY soak [MINUTES]` (default 30): a steady mixed load on one broker,
//! printing once a minute what would show a leak: the broker's RSS, open file
//! descriptors and threads, and the p99 of `acks=all` delivery latency in that minute.
//!
//! The load, all through librdkafka at a fixed pace:
//! - 2,000 records/s of 1 KiB with `acks=1`, cycling through every codec (none, gzip,
//!   snappy, lz4, zstd: one producer each), to a 6-partition topic;
//! - 200 records/s with `acks=all` and idempotence, timed from send to acknowledgement;
//! - a consumer group of two reading the first topic, one member of which leaves and a
//!   new one joins every 20 s (group churn: rebalances, offset commits);
//! - a transactional producer committing a 10-record transaction every 500 ms.
//!
//! Segments roll at 16 MiB and retention keeps 64 MiB per partition, so disk use is
//! bounded too and the log's own files come and go.

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{
    BaseRecord, DefaultProducerContext, DeliveryResult, Producer, ProducerContext, ThreadedProducer,
};
use rdkafka::ClientContext;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Latencies (µs) of acknowledged `acks=all` records since the last report.
#[derive(Clone, Default)]
struct Latencies(Arc<Mutex<Vec<u64>>>);

impl ClientContext for Latencies {}

impl ProducerContext for Latencies {
    type DeliveryOpaque = Box<Instant>;

    fn delivery(&self, result: &DeliveryResult<'_>, sent: Box<Instant>) {
        if result.is_ok() {
            let micros = sent.elapsed().as_micros() as u64;
            self.0.lock().expect("latencies").push(micros);
        }
    }
}

fn count_entries(path: &str) -> usize {
    std::fs::read_dir(path).map_or(0, |d| d.count())
}

fn threads(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Queues `record`, waiting while librdkafka's queue is full.
fn send_retrying<C, K, P>(
    producer: &ThreadedProducer<C>,
    mut record: BaseRecord<'_, K, P, C::DeliveryOpaque>,
) where
    C: ProducerContext + 'static,
    K: rdkafka::message::ToBytes + ?Sized,
    P: rdkafka::message::ToBytes + ?Sized,
{
    loop {
        match producer.send(record) {
            Ok(()) => return,
            Err((_, r)) => {
                record = r;
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
}

/// Sends `rate` records/s of `payload` to `topic` until `stop`, pacing by the clock.
fn paced<C: ProducerContext<DeliveryOpaque = ()> + 'static>(
    producer: &ThreadedProducer<C>,
    topic: &str,
    rate: u64,
    payload: &[u8],
    stop: &AtomicBool,
    sent: &AtomicU64,
) {
    let started = Instant::now();
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let due = started + Duration::from_micros(i * 1_000_000 / rate);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let key = i.to_be_bytes();
        send_retrying(
            producer,
            BaseRecord::to(topic).payload(payload).key(&key[..]),
        );
        sent.fetch_add(1, Ordering::Relaxed);
        i += 1;
    }
}

/// Runs the soak for `minutes` against a broker started from `binary`.
pub fn run(binary: &str, minutes: u64) {
    let (broker, _) = super::start_broker(
        binary,
        &[
            "log.segment.bytes=16777216".to_owned(),
            "log.retention.bytes=67108864".to_owned(),
            "log.retention.check.interval.ms=10000".to_owned(),
            "http.enable=false".to_owned(),
        ],
    );
    let addr = broker.addr.clone();
    let pid = broker.child.id();
    super::create_topic(&addr, "soak-acks1", 6);
    super::create_topic(&addr, "soak-acksall", 1);
    super::create_topic(&addr, "soak-txn", 3);
    let stop = Arc::new(AtomicBool::new(false));
    let produced = Arc::new(AtomicU64::new(0));
    let consumed = Arc::new(AtomicU64::new(0));
    let committed_txns = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();

    // acks=1, one producer per codec, 2,000 records/s in all.
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let (addr, stop, produced) = (addr.clone(), stop.clone(), produced.clone());
        workers.push(std::thread::spawn(move || {
            let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
                .set("bootstrap.servers", &addr)
                .set("acks", "1")
                .set("linger.ms", "5")
                .set("compression.codec", codec)
                .create()
                .expect("producer");
            let payload: Vec<u8> = (0..1024u32).map(|i| (i % 61) as u8 + b'A').collect();
            paced(&producer, "soak-acks1", 400, &payload, &stop, &produced);
            let _ = producer.flush(Duration::from_secs(30));
        }));
    }

    // acks=all with idempotence, timed.
    let latencies = Latencies::default();
    {
        let (addr, stop, produced, latencies) = (
            addr.clone(),
            stop.clone(),
            produced.clone(),
            latencies.clone(),
        );
        workers.push(std::thread::spawn(move || {
            let producer: ThreadedProducer<Latencies> = ClientConfig::new()
                .set("bootstrap.servers", &addr)
                .set("acks", "all")
                .set("enable.idempotence", "true")
                .set("linger.ms", "0")
                .create_with_context(latencies)
                .expect("producer");
            let payload = vec![b'a'; 1024];
            let started = Instant::now();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let due = started + Duration::from_micros(i * 5_000);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                let record = BaseRecord::<str, [u8], _>::with_opaque_to(
                    "soak-acksall",
                    Box::new(Instant::now()),
                )
                .payload(&payload[..])
                .key("k");
                send_retrying(&producer, record);
                produced.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
            let _ = producer.flush(Duration::from_secs(30));
        }));
    }

    // A group of two with churn: member slot 1 is replaced every 20 s.
    for slot in 0..2u32 {
        let (addr, stop, consumed) = (addr.clone(), stop.clone(), consumed.clone());
        workers.push(std::thread::spawn(move || {
            let mut generation = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let consumer: BaseConsumer = ClientConfig::new()
                    .set("bootstrap.servers", &addr)
                    .set("group.id", "soak-group")
                    .set("client.id", format!("soak-{slot}-{generation}"))
                    .set("auto.offset.reset", "latest")
                    .set("enable.auto.commit", "true")
                    .set("auto.commit.interval.ms", "1000")
                    .create()
                    .expect("consumer");
                consumer.subscribe(&["soak-acks1"]).expect("subscribe");
                let lifetime = Instant::now();
                while !stop.load(Ordering::Relaxed)
                    && (slot == 0 || lifetime.elapsed() < Duration::from_secs(20))
                {
                    if let Some(Ok(_)) = consumer.poll(Duration::from_millis(100)) {
                        consumed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                consumer.unsubscribe();
                drop(consumer);
                generation += 1;
            }
        }));
    }

    // Transactions: 10 records, committed, every 500 ms.
    {
        let (addr, stop, committed) = (addr.clone(), stop.clone(), committed_txns.clone());
        workers.push(std::thread::spawn(move || {
            let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
                .set("bootstrap.servers", &addr)
                .set("transactional.id", "soak-txn")
                .set("linger.ms", "0")
                .create()
                .expect("producer");
            producer
                .init_transactions(Duration::from_secs(30))
                .expect("init transactions");
            while !stop.load(Ordering::Relaxed) {
                producer.begin_transaction().expect("begin");
                for i in 0..10u32 {
                    let key = i.to_be_bytes();
                    let record = BaseRecord::<[u8], str>::to("soak-txn")
                        .key(&key[..])
                        .payload("txn");
                    send_retrying(&producer, record);
                }
                producer
                    .commit_transaction(Duration::from_secs(30))
                    .expect("commit");
                committed.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(500));
            }
        }));
    }

    println!(
        "soak: {minutes} min; 2,000 rec/s acks=1 (5 codecs), 200 rec/s acks=all, a churning \
         group of 2, a transaction every 500 ms"
    );
    println!(
        "{:>6} {:>9} {:>7} {:>8} {:>12} {:>12} {:>10} {:>10} {:>8}",
        "minute",
        "rss MiB",
        "fds",
        "threads",
        "acks=all p50",
        "acks=all p99",
        "produced",
        "consumed",
        "txns"
    );
    let started = Instant::now();
    for minute in 1..=minutes {
        let due = started + Duration::from_secs(60 * minute);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let mut lat = std::mem::take(&mut *latencies.0.lock().expect("latencies"));
        lat.sort_unstable();
        println!(
            "{:>6} {:>9.1} {:>7} {:>8} {:>10.2}ms {:>10.2}ms {:>10} {:>10} {:>8}",
            minute,
            super::proc_rss_mib(pid),
            count_entries(&format!("/proc/{pid}/fd")),
            threads(pid),
            super::pct(&lat, 0.50),
            super::pct(&lat, 0.99),
            produced.load(Ordering::Relaxed),
            consumed.load(Ordering::Relaxed),
            committed_txns.load(Ordering::Relaxed),
        );
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.join();
    }
}
