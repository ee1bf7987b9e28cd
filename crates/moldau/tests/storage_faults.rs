//! A full disk, against the real binary on a 4 MiB tmpfs (mounted here; needs root, as
//! CI has): `acks=all` records go in until the disk fills, then the partition's log goes
//! offline (KAFKA_STORAGE_ERROR on produce and on fetch, as Kafka takes a log directory
//! offline) while the broker keeps answering; after space is freed and the broker
//! restarts, every acknowledged record is there at its offset. `EIO` on a write or an
//! fsync of one partition (injected through `moldau-powerfs`) takes that log offline
//! the same way and no other.
//!
//! Checked against the behaviour it exists for: with reads still served from a poisoned
//! log (as before this test), the fetch after the failure answers error 0 with records
//! and the test fails there.

mod common;

use common::wire::Conn;
use common::TestBroker;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{
    ApiKey, FetchRequest, FetchResponse, MetadataRequest, MetadataResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// These tests mount and remount file systems and fill disks: one at a time, so that
/// none of them slows or disturbs another.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A tmpfs mounted on a temporary directory, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().expect("tempdir");
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("run mount")
            .success();
        assert!(
            ok,
            "mounting a tmpfs failed: this test needs root (CI runs as root)"
        );
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn resize(&self, size: &str) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(self.path())
            .status()
            .expect("run mount")
            .success();
        assert!(ok, "remounting the tmpfs failed");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.path()).status();
    }
}

fn fetch_error(addr: &str, topic: &str) -> i16 {
    let mut conn = Conn::open(addr);
    let req = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_max_bytes(1 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_string(topic.into())))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1 << 20)])]);
    let resp: FetchResponse = conn.call(ApiKey::Fetch, 12, &req);
    resp.responses[0].partitions[0].error_code
}

#[test]
fn a_full_disk_takes_the_log_offline_and_loses_nothing_acknowledged() {
    let _one_at_a_time = serial();
    let fs = Tmpfs::mount("4m");
    let data: PathBuf = fs.path().join("data");
    let data_dir = data.display().to_string();
    let mut broker = TestBroker::start_with(&[
        ("log.dirs", data_dir.as_str()),
        ("http.enable", "false"),
        ("log.segment.bytes", "1048576"),
    ]);
    let rt = common::runtime();
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &broker.addr)
        .set("acks", "all")
        .set("linger.ms", "0")
        .set("message.timeout.ms", "3000")
        .create()
        .expect("producer");
    // One record at a time, each awaited: the acknowledged ones are exactly known.
    let mut acked: Vec<(i64, String)> = Vec::new();
    let started = Instant::now();
    let failure = loop {
        let value = format!("{:06}-{}", acked.len(), "x".repeat(1000));
        let sent = rt.block_on(producer.send(
            FutureRecord::<(), _>::to("filling").payload(&value),
            Duration::from_secs(10),
        ));
        match sent {
            Ok(delivery) => acked.push((delivery.offset, value)),
            Err((e, _)) => break e,
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "4 MiB took {} records without filling",
            acked.len()
        );
    };
    println!(
        "disk full after {} acknowledged records: {failure}",
        acked.len()
    );
    assert!(
        acked.len() > 100,
        "the disk filled after {} records",
        acked.len()
    );

    // The log is offline: fetch says KAFKA_STORAGE_ERROR (56); the broker still serves.
    assert_eq!(fetch_error(&broker.addr, "filling"), 56);
    let mut conn = Conn::open(&broker.addr);
    let meta: MetadataResponse = conn.call(ApiKey::Metadata, 12, &MetadataRequest::default());
    assert_eq!(meta.brokers.len(), 1, "the broker still answers Metadata");
    assert!(broker
        .log_text()
        .contains("log poisoned; refusing writes until reopened"));

    // Space freed, broker restarted: everything acknowledged is there, in order.
    broker.kill9();
    fs.resize("64m");
    broker.restart();
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker.addr)
        .set("group.id", "after-the-full-disk")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    consumer.subscribe(&["filling"]).expect("subscribe");
    let mut read: Vec<(i64, String)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while read.len() < acked.len() && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            let value = String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
            read.push((m.offset(), value));
        }
    }
    assert!(
        read.len() >= acked.len(),
        "{} of {} acknowledged records readable after the restart",
        read.len(),
        acked.len()
    );
    assert_eq!(
        &read[..acked.len()],
        &acked[..],
        "acknowledged records changed"
    );
    for (i, (offset, _)) in read.iter().enumerate() {
        assert_eq!(*offset, i as i64, "offsets are contiguous from 0");
    }
}

/// A data directory on a file system mounted read-only: the broker does not start, and
/// says which file it could not open and why (Kafka also stops when its only log
/// directory is offline); remounted read-write, it starts on the same data.
#[test]
fn a_read_only_data_directory_stops_start_up_with_the_reason() {
    let _one_at_a_time = serial();
    let fs = Tmpfs::mount("64m");
    let data = fs.path().join("data");
    let data_dir = data.display().to_string();
    let mut broker =
        TestBroker::start_with(&[("log.dirs", data_dir.as_str()), ("http.enable", "false")]);
    assert!(broker.stop(), "clean shutdown");
    let ok = Command::new("mount")
        .args(["-o", "remount,ro"])
        .arg(fs.path())
        .status()
        .expect("run mount")
        .success();
    assert!(ok, "remounting read-only failed");
    let out = Command::new(env!("CARGO_BIN_EXE_moldau"))
        .args(["serve", "-o", "listeners=PLAINTEXT://127.0.0.1:0"])
        .args([
            "-o",
            &format!("log.dirs={data_dir}"),
            "-o",
            "http.enable=false",
        ])
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("run moldau");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started on a read-only directory");
    assert!(
        stderr.contains("Read-only file system") && stderr.contains(&data_dir),
        "the error does not name the directory and the reason: {stderr}"
    );
    let ok = Command::new("mount")
        .args(["-o", "remount,rw"])
        .arg(fs.path())
        .status()
        .expect("run mount")
        .success();
    assert!(ok, "remounting read-write failed");
    broker.restart();
}

/// Sends one record with `acks=all` and no retries; the offset, or the error code.
fn produce_one(
    rt: &tokio::runtime::Runtime,
    producer: &FutureProducer,
    topic: &str,
    value: &str,
) -> Result<i64, rdkafka::types::RDKafkaErrorCode> {
    rt.block_on(producer.send(
        FutureRecord::<(), _>::to(topic).payload(value),
        Duration::from_secs(10),
    ))
    .map(|delivery| delivery.offset)
    .map_err(|(e, _)| e.rdkafka_error_code().expect("a broker error code"))
}

/// `EIO` from the disk, injected by `moldau-powerfs` (the FUSE filesystem of the
/// power-loss test; needs `/dev/fuse` and root, as CI has) into one partition's files:
/// a failed fsync in `eio-fsync-0`, a failed write in `eio-write-0`. Each answers the
/// producer KAFKA_STORAGE_ERROR and goes offline (fetch answers it too, as Kafka takes
/// the log directory offline after a failed fsync: the page cache can no longer be
/// trusted), while `eio-healthy` on the same broker keeps taking and serving records.
/// After the faults are gone, a power cut that drops everything unsynced and a restart,
/// every record acknowledged in any of the three is there at its offset.
///
/// Checked against the behaviour it exists for: with the fsync error ignored (the log
/// not poisoned), the produce after the injected fault is acknowledged and the test
/// fails at its first assertion on `eio-fsync`.
#[test]
fn eio_on_write_or_fsync_takes_only_that_log_offline() {
    let _one_at_a_time = serial();
    use moldau_powerfs::{Cut, Fault, PowerFs};
    let dir = tempfile::tempdir().expect("tempdir");
    let mountpoint = dir.path().join("mnt");
    std::fs::create_dir(&mountpoint).expect("mkdir");
    let mut fs = PowerFs::mount(&mountpoint)
        .expect("mounting the FUSE filesystem failed: this test needs /dev/fuse and root");
    let data = mountpoint.join("data");
    let data_dir = data.display().to_string();
    let mut broker =
        TestBroker::start_with(&[("log.dirs", data_dir.as_str()), ("http.enable", "false")]);
    let rt = common::runtime();
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &broker.addr)
        .set("acks", "all")
        .set("linger.ms", "0")
        .set("retries", "0")
        .set("message.timeout.ms", "10000")
        .create()
        .expect("producer");
    let topics = ["eio-fsync", "eio-write", "eio-healthy"];
    let mut acked: Vec<(&str, i64, String)> = Vec::new();
    for round in 0..20 {
        for topic in topics {
            let value = format!("{topic}-{round}");
            let offset = produce_one(&rt, &producer, topic, &value).expect("healthy produce");
            acked.push((topic, offset, value));
        }
    }

    fs.inject(
        &data.join("eio-fsync-0"),
        Fault {
            fsync: true,
            ..Fault::default()
        },
    )
    .expect("inject");
    fs.inject(
        &data.join("eio-write-0"),
        Fault {
            write: true,
            ..Fault::default()
        },
    )
    .expect("inject");
    use rdkafka::types::RDKafkaErrorCode::KafkaStorageError;
    for topic in ["eio-fsync", "eio-write"] {
        assert_eq!(
            produce_one(&rt, &producer, topic, "refused"),
            Err(KafkaStorageError),
            "{topic}: the produce after the injected EIO"
        );
        assert_eq!(fetch_error(&broker.addr, topic), 56, "{topic}: fetch");
    }
    // The faults are gone, but a log that failed stays offline until reopened.
    fs.inject(&data.join("eio-fsync-0"), Fault::default())
        .expect("clear");
    fs.inject(&data.join("eio-write-0"), Fault::default())
        .expect("clear");
    assert_eq!(
        produce_one(&rt, &producer, "eio-fsync", "still refused"),
        Err(KafkaStorageError)
    );
    for round in 20..40 {
        let value = format!("eio-healthy-{round}");
        let offset =
            produce_one(&rt, &producer, "eio-healthy", &value).expect("the healthy log writes");
        acked.push(("eio-healthy", offset, value));
    }
    assert_eq!(fetch_error(&broker.addr, "eio-healthy"), 0);

    broker.kill9();
    fs.power_cut(Cut::DropUnsynced, 1).expect("power cut");
    broker.restart();
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker.addr)
        .set("group.id", "after-eio")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    consumer.subscribe(&topics).expect("subscribe");
    let mut read: Vec<(String, i64, String)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while read.len() < acked.len() && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            let value = String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
            read.push((m.topic().to_owned(), m.offset(), value));
        }
    }
    for (topic, offset, value) in &acked {
        assert!(
            read.iter()
                .any(|(t, o, v)| t == topic && o == offset && v == value),
            "acknowledged {topic}@{offset} ({value}) is not readable after the restart"
        );
    }
}
