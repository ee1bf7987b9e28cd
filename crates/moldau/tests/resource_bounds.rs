//! What a client can make the broker hold, against the real binary.
//!
//! A client that pipelines ten 50 MB fetches on one connection (the first a long poll)
//! and never reads the answers makes the broker hold one fetch response at a time, not
//! ten; another client is served meanwhile; and after `connections.max.idle.ms` without
//! reading, its connection is closed. Checked against the code it exists for:
//! with every pipelined fetch dispatched at once (as before), the nine behind the long
//! poll each read their 50 MB and waited, finished, in the connection's queue, and the
//! test failed at its RSS bound.

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

#[test]
fn pipelined_fetches_never_read_hold_one_response() {
    let broker = TestBroker::start_with(&[
        ("http.enable", "false"),
        ("connections.max.idle.ms", "3000"),
    ]);
    // 120 MB in one partition.
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &broker.addr)
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

    let before = broker.rss_bytes();
    // Ten pipelined 50 MB fetches, written in one go, never read.
    let mut hostile = std::net::TcpStream::connect(&broker.addr).expect("connect");
    let mut frames = BytesMut::new();
    for correlation in 0..10 {
        let mut body = BytesMut::new();
        RequestHeader::default()
            .with_request_api_key(ApiKey::Fetch as i16)
            .with_request_api_version(12)
            .with_correlation_id(correlation)
            .encode(&mut body, ApiKey::Fetch.request_header_version(12))
            .expect("header");
        // The first waits its full second (it asks for more than there is); the others
        // are answered at once, so unless the broker takes fetches one at a time their
        // data sits finished behind the first.
        let (min_bytes, max_wait_ms) = if correlation == 0 {
            (i32::MAX, 1_000)
        } else {
            (1, 0)
        };
        fetch(50 * MB as i32, min_bytes, max_wait_ms)
            .encode(&mut body, 12)
            .expect("body");
        frames.put_i32(body.len() as i32);
        frames.extend_from_slice(&body);
    }
    hostile.write_all(&frames).expect("write");
    // The broker's RSS over the next 5 s, at its highest.
    let mut peak = before;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(5) {
        peak = peak.max(broker.rss_bytes());
        std::thread::sleep(Duration::from_millis(100));
    }
    // Another client meanwhile: answered, with data.
    let mut other = Conn::open(&broker.addr);
    let asked = Instant::now();
    let resp: FetchResponse = other.call(ApiKey::Fetch, 12, &fetch(MB as i32, 1, 0));
    let answered = asked.elapsed();
    let partition = &resp.responses[0].partitions[0];
    assert_eq!(partition.error_code, 0);
    assert!(partition.records.as_ref().is_some_and(|r| !r.is_empty()));
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
