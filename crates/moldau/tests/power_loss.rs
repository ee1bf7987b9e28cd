//! Power loss under an `acks=all` producer, against the real binary with its data
//! directory on `moldau-powerfs` (a FUSE filesystem mounted here: needs `/dev/fuse` and
//! root, as CI has) that keeps every unsynced write apart and, at each simulated power
//! cut, drops them all, keeps a random prefix of each file's and directory's, or keeps
//! a prefix and tears the next write.
//!
//! Each cycle: an idempotent librdkafka producer (the rdkafka crate) writes keyed
//! records with `acks=all` to two partitions of a topic with 16 KiB segments (so
//! segments, indexes and producer snapshots roll all the time, and the metadata log
//! holds the topic); once a seeded number of them is acknowledged the broker is killed
//! with SIGKILL while the producer is still sending, the power is cut, and the broker
//! must start on what survived. Then every record ever acknowledged must be read back
//! at its partition and offset with its value, offsets must run contiguously from 0 to
//! the high watermark, every record must be one that was sent, and librdkafka's CRC
//! check must find no corrupt batch.
//!
//! `POWER_CUTS` sets the number of cycles (default 120; run 1000 for a long run)
//! and `POWER_SEED` the seed; a failure prints the seed and cycle to replay.
//!
//! Checked against the bug it exists for: built with the test-only feature that skips
//! the fsync before `acks=all` is answered
//! (`cargo test -p moldau --features test-skip-ack-fsync --test power_loss`), the first
//! cycle that drops unsynced writes loses acknowledged records and the test fails.

mod common;

use common::TestBroker;
use moldau_powerfs::{Cut, PowerFs, SplitMix};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{
    BaseRecord, DeliveryResult, Producer, ProducerContext, PurgeConfig, ThreadedProducer,
};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TOPIC: &str = "power";
const PARTITIONS: i32 = 2;

/// Acknowledged records: (partition, offset) → value.
type Acked = Arc<Mutex<BTreeMap<(i32, i64), Vec<u8>>>>;

#[derive(Clone, Default)]
struct Deliveries {
    acked: Acked,
    count: Arc<AtomicUsize>,
}

impl ClientContext for Deliveries {}
impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Ok(m) = result {
            let value = m.payload().unwrap_or_default().to_vec();
            if let Ok(mut acked) = self.acked.lock() {
                acked.insert((m.partition(), m.offset()), value);
            }
            self.count.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn acknowledged_records_survive_hundreds_of_power_cuts() {
    let cuts = env_u64("POWER_CUTS", 120);
    let seed = env_u64("POWER_SEED", 0x6d6f_6c64_6175);
    let dir = tempfile::tempdir().expect("tempdir");
    let mountpoint = dir.path().join("mnt");
    std::fs::create_dir(&mountpoint).expect("mkdir");
    let mut fs = PowerFs::mount(&mountpoint)
        .expect("mounting the FUSE filesystem failed: this test needs /dev/fuse and root");
    let data = mountpoint.join("data").display().to_string();
    let mut broker = TestBroker::start_with(&[
        ("log.dirs", data.as_str()),
        ("http.enable", "false"),
        ("num.partitions", "2"),
        ("log.segment.bytes", "16384"),
        ("log.index.interval.bytes", "512"),
    ]);

    let acked: Acked = Acked::default();
    let mut sent: HashSet<Vec<u8>> = HashSet::new();
    let (mut lost_ops, mut kept_ops, mut lossy_cuts) = (0, 0, 0);
    let started = Instant::now();
    for cycle in 0..cuts {
        let mut rng = SplitMix::new(seed ^ cycle.wrapping_mul(0x9e37_79b9));
        let cut = [Cut::DropUnsynced, Cut::KeepPrefix, Cut::TearLast][cycle as usize % 3];
        let context = format!("seed {seed} cycle {cycle} ({cut:?})");

        // Produce until a seeded number of records is acknowledged, then kill the broker
        // while the producer keeps sending.
        let target = 1 + rng.below(60) as usize;
        let deliveries = Deliveries {
            acked: acked.clone(),
            count: Arc::default(),
        };
        let producer: ThreadedProducer<Deliveries> = ClientConfig::new()
            .set("bootstrap.servers", &broker.addr)
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("linger.ms", (rng.below(5)).to_string())
            .set("message.timeout.ms", "20000")
            .create_with_context(deliveries.clone())
            .expect("producer");
        let stop = Arc::new(AtomicBool::new(false));
        let sender = {
            let stop = stop.clone();
            let payload_len = 20 + rng.below(400) as usize;
            std::thread::spawn(move || {
                let mut values = Vec::new();
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let mut value = format!("c{cycle}-{i}-").into_bytes();
                    value.resize(payload_len, b'a' + (i % 26) as u8);
                    let key = format!("k{}", i % 7);
                    let record = BaseRecord::<str, [u8]>::to(TOPIC)
                        .key(&key)
                        .payload(&value[..])
                        .partition((i % PARTITIONS as u64) as i32);
                    if producer.send(record).is_ok() {
                        values.push(value);
                        i += 1;
                    }
                    if producer.in_flight_count() > 200 {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
                producer.purge(PurgeConfig::default().queue().inflight());
                values
            })
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while deliveries.count.load(Ordering::Relaxed) < target {
            assert!(
                Instant::now() < deadline,
                "{context}: {} of {target} records acknowledged in 60 s",
                deliveries.count.load(Ordering::Relaxed)
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        broker.kill9();
        stop.store(true, Ordering::Relaxed);
        sent.extend(sender.join().expect("sender"));

        let report = fs.power_cut(cut, rng.next_u64()).expect("power cut");
        lost_ops += report.ops_lost;
        lossy_cuts += u64::from(report.ops_lost > 0);
        kept_ops += report.ops_kept;
        if std::env::var_os("POWER_DEBUG").is_some() {
            let _ = std::process::Command::new("find")
                .arg(&mountpoint)
                .args(["-type", "f", "-printf", "%s %p\n"])
                .status();
        }
        broker.restart();
        check(&broker.addr, &acked, &sent, &context);
    }
    let (fsyncs, dir_fsyncs) = fs.fsyncs();
    let records = acked.lock().map(|a| a.len()).unwrap_or(0);
    println!(
        "{cuts} power cuts in {:.0?}: {records} acknowledged records all intact; \
         {lost_ops} unsynced operations lost ({lossy_cuts} cuts lost some) and {kept_ops} kept; \
         {fsyncs} file and {dir_fsyncs} directory fsyncs",
        started.elapsed()
    );
    assert!(
        lossy_cuts * 4 >= cuts,
        "only {lossy_cuts} of {cuts} cuts lost unsynced operations: they tested little"
    );
}

/// Reads both partitions from offset 0 to the high watermark and checks them against
/// what was acknowledged and sent.
fn check(addr: &str, acked: &Acked, sent: &HashSet<Vec<u8>>, context: &str) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("group.id", "power-check")
        .set("enable.auto.commit", "false")
        .set("check.crcs", "true")
        .create()
        .expect("consumer");
    let timeout = Duration::from_secs(30);
    let mut assignment = TopicPartitionList::new();
    let mut high = BTreeMap::new();
    for p in 0..PARTITIONS {
        // Right after the start the partitions may still be taking leadership.
        let deadline = Instant::now() + timeout;
        let hw = loop {
            match consumer.fetch_watermarks(TOPIC, p, timeout) {
                Ok((_, hw)) => break hw,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("{context}: watermarks of partition {p}: {e}"),
            }
        };
        high.insert(p, hw);
        assignment
            .add_partition_offset(TOPIC, p, Offset::Beginning)
            .expect("assign");
    }
    consumer.assign(&assignment).expect("assign");
    let mut next: BTreeMap<i32, i64> = (0..PARTITIONS).map(|p| (p, 0)).collect();
    let mut read: BTreeMap<(i32, i64), Vec<u8>> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while next.iter().any(|(p, n)| *n < high[p]) {
        assert!(
            Instant::now() < deadline,
            "{context}: read up to {next:?} of {high:?} in 60 s"
        );
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                let p = m.partition();
                assert_eq!(
                    m.offset(),
                    next[&p],
                    "{context}: partition {p}: offsets are not contiguous"
                );
                next.insert(p, m.offset() + 1);
                read.insert((p, m.offset()), m.payload().unwrap_or_default().to_vec());
            }
            Some(Err(e)) => panic!("{context}: consuming after the cut: {e}"),
            None => {}
        }
    }
    for ((p, offset), value) in &read {
        assert!(
            sent.contains(value),
            "{context}: partition {p} offset {offset} holds a record never sent"
        );
    }
    let acked = acked.lock().expect("acked");
    for ((p, offset), value) in acked.iter() {
        match read.get(&(*p, *offset)) {
            Some(v) if v == value => {}
            Some(_) => panic!("{context}: acknowledged record {p}/{offset} changed"),
            None => panic!(
                "{context}: acknowledged record {p}/{offset} is gone (high watermarks {high:?})"
            ),
        }
    }
}
