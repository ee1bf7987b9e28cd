//! What a client can make the broker hold, against the real binary.
//!
//! A client that pipelines ten 50 MB fetches on one connection (the first a long poll)
//! and never reads the answers makes the broker hold one fetch response at a time, not
//! ten; another client is served meanwhile; and after `connections.max.idle.ms` without
//! reading, its connection is closed. Checked against the code it exists for:
//! with every pipelined fetch dispatched at once (as before), the nine behind the long
//! poll each read their 50 MB and waited, finished, in the connection's queue, and the
//! test failed at its RSS bound. Across connections, `fetch.response.pool.bytes` bounds
//! what unread fetch responses hold in all.

mod common;

use bytes::{BufMut, BytesMut};
use common::wire::Conn;
use common::TestBroker;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{ApiKey, FetchRequest, FetchResponse, RequestHeader, TopicName};
use kafka_protocol::protocol::{Encodable, StrBytes};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use std::io::Write;
use std::time::{Duration, Instant};

const MB: u64 = 1 << 20;

/// A fetch of partition 0 of `big` from offset 0, answered once `min_bytes` are there
/// or after `max_wait_ms`.
fn fetch(max_bytes: i32, min_bytes: i32, max_wait_ms: i32) -> FetchRequest {
    FetchRequest::default()
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(min_bytes)
        .with_max_bytes(max_bytes)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_static_str("big")))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(max_bytes)])])
}

/// 120 MB in partition 0 of `big`, in batches of about 1 MB.
fn fill(addr: &str) {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("acks", "1")
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("message.max.bytes", "2000000")
        .create()
        .expect("producer");
    let value = vec![b'v'; 100_000];
    for _ in 0..1_200 {
        loop {
            match producer.send(BaseRecord::<(), _>::to("big").payload(&value)) {
                Ok(()) => break,
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }
    producer.flush(Duration::from_secs(120)).expect("flush");
}

/// Writes one Fetch frame per `(correlation id, request)` in one go.
fn send_fetches(stream: &mut std::net::TcpStream, fetches: &[(i32, FetchRequest)]) {
    let mut frames = BytesMut::new();
    for (correlation, request) in fetches {
        let mut body = BytesMut::new();
        RequestHeader::default()
            .with_request_api_key(ApiKey::Fetch as i16)
            .with_request_api_version(12)
            .with_correlation_id(*correlation)
            .encode(&mut body, ApiKey::Fetch.request_header_version(12))
            .expect("header");
        request.encode(&mut body, 12).expect("body");
        frames.put_i32(body.len() as i32);
        frames.extend_from_slice(&body);
    }
    stream.write_all(&frames).expect("write");
}

/// The broker's highest RSS over `seconds`, sampled every 100 ms.
fn peak_rss(broker: &TestBroker, seconds: u64) -> u64 {
    let mut peak = broker.rss_bytes();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(seconds) {
        peak = peak.max(broker.rss_bytes());
        std::thread::sleep(Duration::from_millis(100));
    }
    peak
}

/// Another client's fetch of 1 MB: answered with data; returns how long it took.
fn other_client_fetch(addr: &str) -> Duration {
    let mut other = Conn::open(addr);
    let asked = Instant::now();
    let resp: FetchResponse = other.call(ApiKey::Fetch, 12, &fetch(MB as i32, 1, 0));
    let answered = asked.elapsed();
    let partition = &resp.responses[0].partitions[0];
    assert_eq!(partition.error_code, 0);
    assert!(partition.records.as_ref().is_some_and(|r| !r.is_empty()));
    answered
}

#[test]
fn pipelined_fetches_never_read_hold_one_response() {
    let broker = TestBroker::start_with(&[
        ("http.enable", "false"),
        ("connections.max.idle.ms", "3000"),
    ]);
    fill(&broker.addr);

    let before = broker.rss_bytes();
    // Ten pipelined 50 MB fetches, written in one go, never read. The first waits its
    // full second (it asks for more than there is); the others are answered at once, so
    // unless the broker takes fetches one at a time their data sits finished behind it.
    let mut hostile = std::net::TcpStream::connect(&broker.addr).expect("connect");
    let fetches: Vec<(i32, FetchRequest)> = (0..10)
        .map(|correlation| {
            let (min_bytes, max_wait_ms) = if correlation == 0 {
                (i32::MAX, 1_000)
            } else {
                (1, 0)
            };
            (correlation, fetch(50 * MB as i32, min_bytes, max_wait_ms))
        })
        .collect();
    send_fetches(&mut hostile, &fetches);
    let peak = peak_rss(&broker, 5).max(before);
    // Another client meanwhile: answered, with data.
    let answered = other_client_fetch(&broker.addr);
    let grown = peak.saturating_sub(before);
    println!(
        "ten pipelined 50 MB fetches never read: RSS {} MB -> peak {} MB (+{} MB); \
         another client's fetch answered in {answered:?}",
        before / MB,
        peak / MB,
        grown / MB
    );
    assert!(
        grown < 200 * MB,
        "the broker's RSS grew by {} MB for one connection's unread fetches",
        grown / MB
    );
    assert!(
        answered < Duration::from_secs(5),
        "another client waited {answered:?}"
    );
    // A client that reads nothing is idle: its connection closes after
    // connections.max.idle.ms (3 s here) and the response it held is freed.
    hostile
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut sink = Vec::new();
    let ended = std::io::Read::read_to_end(&mut hostile, &mut sink);
    assert!(
        ended.is_ok()
            || ended
                .as_ref()
                .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
        "the connection that read nothing was not closed: {ended:?}"
    );
    assert!(broker
        .log_text()
        .contains("the client read no response for connections.max.idle.ms"));
}

/// The broker-wide bound: 24 connections each ask for 50 MB and never read the answer,
/// with `fetch.response.pool.bytes` at 64 MiB. The broker's RSS grows by about the pool
/// plus one batch per connection (here batches are about 1 MB), not by 24 × 50 MB; once
/// the pool is taken, another client's fetch is still answered (one batch) at once.
///
/// Checked against the code it exists for: with every fetch reading its full
/// `max_bytes` (the pool ignored), the RSS grew by over a gigabyte and the test failed at
/// its bound.
#[test]
fn unread_fetches_on_many_connections_stay_within_the_pool() {
    let broker = TestBroker::start_with(&[
        ("http.enable", "false"),
        ("fetch.response.pool.bytes", "67108864"),
    ]);
    fill(&broker.addr);
    let before = broker.rss_bytes();
    let hostile: Vec<std::net::TcpStream> = (0..24)
        .map(|_| {
            let mut stream = std::net::TcpStream::connect(&broker.addr).expect("connect");
            send_fetches(&mut stream, &[(0, fetch(50 * MB as i32, 1, 0))]);
            stream
        })
        .collect();
    let peak = peak_rss(&broker, 5).max(before);
    let answered = other_client_fetch(&broker.addr);
    let grown = peak.saturating_sub(before);
    println!(
        "24 connections with an unread 50 MB fetch each, 64 MiB pool: RSS {} MB -> peak {} MB \
         (+{} MB); another client's fetch answered in {answered:?}",
        before / MB,
        peak / MB,
        grown / MB
    );
    assert!(
        grown < 160 * MB,
        "the broker's RSS grew by {} MB for 24 connections' unread fetches",
        grown / MB
    );
    assert!(
        answered < Duration::from_secs(5),
        "another client waited {answered:?}"
    );
    drop(hostile);
}

/// A slow disk under one partition (each read of its files takes 500 ms, injected by
/// `moldau-powerfs`, the FUSE filesystem of the power-loss test; needs `/dev/fuse` and
/// root, as CI has): sixteen consumers read its oldest segments at once, more than the
/// broker has runtime threads, while another client sends Metadata requests back to
/// back. Those are answered in milliseconds all along, because a read of segments
/// below the active one runs under `block_in_place`, which hands the runtime thread's
/// other work to another thread while the read waits.
///
/// Checked against the code it exists for: with those reads inline (as before), the
/// waiting reads held every runtime thread for seconds; the broker missed its own
/// controller heartbeats, stepped down from leadership, closed the clients' connections
/// ("out of contact with the controller"), and the test failed there.
#[test]
fn a_slow_disk_read_does_not_stall_other_connections() {
    use kafka_protocol::messages::{MetadataRequest, MetadataResponse};
    use moldau_powerfs::{Fault, PowerFs};
    let dir = tempfile::tempdir().expect("tempdir");
    let mountpoint = dir.path().join("mnt");
    std::fs::create_dir(&mountpoint).expect("mkdir");
    let fs = PowerFs::mount(&mountpoint)
        .expect("mounting the FUSE filesystem failed: this test needs /dev/fuse and root");
    let data = mountpoint.join("data");
    let broker = TestBroker::start_with(&[
        ("log.dirs", data.display().to_string().as_str()),
        ("http.enable", "false"),
        ("log.segment.bytes", "65536"),
    ]);
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &broker.addr)
        .set("acks", "1")
        .set("batch.size", "16000")
        .create()
        .expect("producer");
    let value = vec![b's'; 10_000];
    for _ in 0..100 {
        while producer
            .send(BaseRecord::<(), _>::to("slow").payload(&value))
            .is_err()
        {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    producer.flush(Duration::from_secs(60)).expect("flush");
    fs.inject(
        &data.join("slow-0"),
        Fault {
            read_delay_ms: 500,
            ..Fault::default()
        },
    )
    .expect("inject");

    let readers: Vec<_> = (0..16)
        .map(|_| {
            let addr = broker.addr.clone();
            std::thread::spawn(move || {
                let mut conn = Conn::open(&addr);
                let mut request = fetch(100_000, 1, 0);
                request.topics[0].topic = TopicName(StrBytes::from_static_str("slow"));
                let started = Instant::now();
                let resp: FetchResponse = conn.call(ApiKey::Fetch, 12, &request);
                let partition = &resp.responses[0].partitions[0];
                let data = partition.error_code == 0
                    && partition.records.as_ref().is_some_and(|r| !r.is_empty());
                (data, started.elapsed())
            })
        })
        .collect();
    let mut other = Conn::open(&broker.addr);
    let mut slowest = Duration::ZERO;
    let mut answered = 0;
    while readers.iter().any(|r| !r.is_finished()) {
        let asked = Instant::now();
        let _: MetadataResponse = other.call(ApiKey::Metadata, 12, &MetadataRequest::default());
        slowest = slowest.max(asked.elapsed());
        answered += 1;
    }
    for reader in readers {
        let (data, took) = reader.join().expect("reader");
        assert!(data, "a slow read came back without data");
        // The fault was hit: otherwise this test would prove nothing.
        assert!(
            took >= Duration::from_millis(500),
            "a read of the slowed partition took only {took:?}"
        );
    }
    assert!(answered > 0, "no Metadata request ran while the reads did");
    println!(
        "16 reads of a slow disk (500 ms a read): {answered} Metadata requests meanwhile, \
         the slowest answered in {slowest:?}"
    );
    assert!(
        slowest < Duration::from_millis(400),
        "a Metadata request waited {slowest:?} behind reads of a slow disk"
    );
}
