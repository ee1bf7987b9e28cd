//! Raw-socket abuse: the broker answers with the protocol's error or drops only the
//! offending connection, and keeps serving everyone else.

mod common;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use common::TestBroker;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

fn connect(addr: &str) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s
}

fn api_versions_frame(version: i16, correlation_id: i32) -> Vec<u8> {
    let header = RequestHeader::default()
        .with_request_api_key(ApiKey::ApiVersions as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("raw-test")));
    let body = ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str("raw"))
        .with_client_software_version(StrBytes::from_static_str("1"));
    let hv = ApiKey::ApiVersions.request_header_version(version);
    let mut buf = BytesMut::new();
    header.encode(&mut buf, hv).expect("header");
    body.encode(&mut buf, version.min(4)).expect("body");
    let mut framed = (buf.len() as i32).to_be_bytes().to_vec();
    framed.extend_from_slice(&buf);
    framed
}

/// Reads one response frame; `None` if the broker closed the connection.
fn read_frame(s: &mut TcpStream) -> Option<Bytes> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).ok()?;
    let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).ok()?;
    Some(Bytes::from(body))
}

/// True when the broker closed the connection: EOF or a reset. A read that merely
/// times out (the broker ignored the bytes and kept the connection) is not a close.
fn closed_by_broker(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

/// A fresh connection still gets a valid ApiVersions v3 answer.
fn assert_healthy(addr: &str) {
    let mut s = connect(addr);
    s.write_all(&api_versions_frame(3, 77)).expect("write");
    let mut frame = read_frame(&mut s).expect("response");
    assert_eq!(frame.get_i32(), 77, "correlation id");
    let resp = ApiVersionsResponse::decode(&mut frame, 3).expect("decode");
    assert_eq!(resp.error_code, 0);
    assert!(resp
        .api_keys
        .iter()
        .any(|k| k.api_key == ApiKey::Produce as i16));
}

#[test]
fn hostile_input_costs_one_connection_only() {
    let broker = TestBroker::start();
    let addr = broker.addr.clone();
    assert_healthy(&addr);

    // Garbage bytes.
    let mut s = connect(&addr);
    s.write_all(&[
        0x00, 0x00, 0x00, 0x10, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
    ])
    .expect("write");
    assert!(closed_by_broker(&mut s), "garbage closes the connection");
    assert_healthy(&addr);

    // A 2 GiB length prefix: refused before any allocation.
    let mut s = connect(&addr);
    s.write_all(&0x7fff_ffffu32.to_be_bytes()).expect("write");
    assert!(closed_by_broker(&mut s));
    assert_healthy(&addr);

    // A negative length prefix.
    let mut s = connect(&addr);
    s.write_all(&(-5i32).to_be_bytes()).expect("write");
    assert!(closed_by_broker(&mut s));

    // A truncated frame, then the client hangs up.
    let mut s = connect(&addr);
    s.write_all(&100i32.to_be_bytes()).expect("write");
    s.write_all(&[0, 18, 0, 3]).expect("write");
    s.shutdown(std::net::Shutdown::Write).expect("shutdown");
    assert!(closed_by_broker(&mut s));
    assert_healthy(&addr);

    // An unknown api key: Kafka closes the connection.
    let mut s = connect(&addr);
    let mut frame = api_versions_frame(3, 5);
    frame[4..6].copy_from_slice(&9_999i16.to_be_bytes());
    s.write_all(&frame).expect("write");
    assert!(closed_by_broker(&mut s));
    assert_healthy(&addr);

    // A huge array count inside a valid frame (Metadata v1, topics = 2^31-1).
    let mut s = connect(&addr);
    let mut body = BytesMut::new();
    body.put_i16(ApiKey::Metadata as i16);
    body.put_i16(1);
    body.put_i32(9);
    body.put_i16(-1); // null client id
    body.put_i32(i32::MAX);
    let mut framed = (body.len() as i32).to_be_bytes().to_vec();
    framed.extend_from_slice(&body);
    s.write_all(&framed).expect("write");
    assert!(closed_by_broker(&mut s));
    assert_healthy(&addr);

    // An ApiVersions version from the future: v0 body with UNSUPPORTED_VERSION (35).
    let mut s = connect(&addr);
    let mut frame = api_versions_frame(3, 42);
    frame[6..8].copy_from_slice(&99i16.to_be_bytes());
    s.write_all(&frame).expect("write");
    let mut resp = read_frame(&mut s).expect("answered, not dropped");
    assert_eq!(resp.get_i32(), 42, "correlation id echoed, header v0");
    let body = ApiVersionsResponse::decode(&mut resp, 0).expect("v0 body");
    assert_eq!(body.error_code, 35);
    let av = body
        .api_keys
        .iter()
        .find(|k| k.api_key == ApiKey::ApiVersions as i16)
        .expect("listed");
    assert_eq!((av.min_version, av.max_version), (0, 4));

    // Produce v2 (message format v1 era): advertised, answered UNSUPPORTED_VERSION per
    // partition, like Kafka 4.
    let mut s = connect(&addr);
    let mut req = BytesMut::new();
    req.put_i16(ApiKey::Produce as i16);
    req.put_i16(2);
    req.put_i32(31);
    req.put_i16(-1); // null client id
    req.put_i16(1); // acks
    req.put_i32(1_000); // timeout
    req.put_i32(1); // one topic
    req.put_i16(3);
    req.put_slice(b"old");
    req.put_i32(1); // one partition
    req.put_i32(0);
    req.put_i32(4);
    req.put_slice(&[0, 0, 0, 0]); // records (never looked at)
    let mut framed = (req.len() as i32).to_be_bytes().to_vec();
    framed.extend_from_slice(&req);
    s.write_all(&framed).expect("write");
    let mut resp = read_frame(&mut s).expect("answered");
    assert_eq!(resp.get_i32(), 31);
    assert_eq!(resp.get_i32(), 1, "one topic");
    let name_len = resp.get_i16() as usize;
    assert_eq!(&resp.split_to(name_len)[..], b"old");
    assert_eq!(resp.get_i32(), 1, "one partition");
    assert_eq!(resp.get_i32(), 0, "partition index");
    assert_eq!(resp.get_i16(), 35, "UNSUPPORTED_VERSION");
    assert_eq!(resp.get_i64(), -1, "base offset");
    assert_eq!(resp.get_i64(), -1, "log append time (v2)");
    assert_eq!(resp.get_i32(), 0, "throttle time");
    assert!(!resp.has_remaining());

    // Pipelined requests on one connection are answered in order.
    let mut s = connect(&addr);
    let mut many = Vec::new();
    for c in 0..20 {
        many.extend(api_versions_frame((c % 4) as i16, 1_000 + c));
    }
    s.write_all(&many).expect("write");
    for c in 0..20 {
        let mut f = read_frame(&mut s).expect("response");
        assert_eq!(f.get_i32(), 1_000 + c);
    }
    assert_healthy(&addr);
}

/// Produces `batch` to partition 0 of `topic` at Produce v`version`; returns the
/// partition's answer.
fn produce_raw(
    conn: &mut common::wire::Conn,
    version: i16,
    topic: &str,
    batch: Vec<u8>,
) -> kafka_protocol::messages::produce_response::PartitionProduceResponse {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{ProduceRequest, ProduceResponse, TopicName};
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(Bytes::from(batch)))])]);
    let resp: ProduceResponse = conn.call(ApiKey::Produce, version, &req);
    resp.responses[0].partition_responses[0].clone()
}

/// Creates `name` (one partition) with `configs` through CreateTopics v5.
fn create_raw(conn: &mut common::wire::Conn, name: &str, configs: &[(&str, &str)]) {
    use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
    use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse, TopicName};
    let configs = configs
        .iter()
        .map(|(k, v)| {
            CreatableTopicConfig::default()
                .with_name(StrBytes::from_string((*k).to_owned()))
                .with_value(Some(StrBytes::from_string((*v).to_owned())))
        })
        .collect();
    let topics = vec![CreatableTopic::default()
        .with_name(TopicName(StrBytes::from_string(name.to_owned())))
        .with_num_partitions(1)
        .with_replication_factor(1)
        .with_configs(configs)];
    let created: CreateTopicsResponse = conn.call(
        ApiKey::CreateTopics,
        5,
        &CreateTopicsRequest::default()
            .with_topics(topics)
            .with_timeout_ms(10_000),
    );
    assert_eq!(created.topics[0].error_code, 0, "{created:?}");
}

/// KIP-467 on the wire: a refused batch names its offending records by index in
/// `record_errors` (Produce v8+) with a message, under the partition's error code:
/// `INVALID_RECORD` for keyless records in a compacted topic, `INVALID_TIMESTAMP` for
/// timestamps outside `message.timestamp.after.max.ms` (which wins when a batch has
/// both), in compressed batches too; v7, which has no such field, gets the code alone.
/// Nothing of a refused batch is written. librdkafka's side is in `rdkafka_client.rs`.
#[test]
fn refused_records_are_listed_by_index() {
    use moldau_protocol::batch::{BatchBuilder, Compression, ProducerFields};
    let broker = TestBroker::start();
    let mut conn = common::wire::Conn::open(&broker.addr);
    create_raw(
        &mut conn,
        "compacted",
        &[
            ("cleanup.policy", "compact"),
            ("message.timestamp.after.max.ms", "60000"),
        ],
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    // Records 2 and 5 have no key; record 4 is an hour ahead when `late`.
    let batch = |late: bool, compression: Compression| {
        let mut b = BatchBuilder::default();
        for i in 0..8 {
            let key = format!("k{i}");
            let key = (i != 2 && i != 5).then_some(key.as_bytes());
            let ts = if late && i == 4 { now + 3_600_000 } else { now };
            b.push(ts, key, Some(b"v"), &[]);
        }
        b.finish(0, ProducerFields::NONE, compression)
            .expect("batch")
    };
    for compression in [Compression::None, Compression::Lz4] {
        let keyless = produce_raw(&mut conn, 9, "compacted", batch(false, compression));
        assert_eq!(keyless.error_code, 87, "INVALID_RECORD: {keyless:?}");
        let listed: Vec<i32> = keyless
            .record_errors
            .iter()
            .map(|e| e.batch_index)
            .collect();
        assert_eq!(listed, vec![2, 5], "{keyless:?}");
        assert!(keyless.record_errors.iter().all(|e| e
            .batch_index_error_message
            .as_ref()
            .is_some_and(|m| m.contains("without key"))));
        assert!(keyless.error_message.is_some());

        let both = produce_raw(&mut conn, 9, "compacted", batch(true, compression));
        assert_eq!(both.error_code, 32, "INVALID_TIMESTAMP wins: {both:?}");
        let listed: Vec<i32> = both.record_errors.iter().map(|e| e.batch_index).collect();
        assert_eq!(listed, vec![2, 4, 5], "{both:?}");

        let old = produce_raw(&mut conn, 7, "compacted", batch(false, compression));
        assert_eq!(old.error_code, 87, "{old:?}");
    }
    // Nothing was written: the first good batch lands at offset 0.
    let mut good = BatchBuilder::default();
    good.push(now, Some(b"k"), Some(b"v"), &[]);
    let ok = produce_raw(
        &mut conn,
        9,
        "compacted",
        good.finish(0, ProducerFields::NONE, Compression::None)
            .expect("batch"),
    );
    assert_eq!((ok.error_code, ok.base_offset), (0, 0), "{ok:?}");
}

/// The broker's `fetch.max.bytes` caps a consumer's Fetch response whatever the request
/// asks (Kafka: the smaller of the two), so a client cannot make one response, and the
/// memory behind it, as large as it likes; the first batch still comes whole (KIP-74).
/// Without the cap this response carries all ~100 KB.
#[test]
fn fetch_max_bytes_caps_a_fetch_response() {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::{FetchRequest, FetchResponse, TopicName};
    use moldau_protocol::batch::{BatchBuilder, Compression, ProducerFields};
    let broker = TestBroker::start_with(&[("fetch.max.bytes", "12000")]);
    let mut conn = common::wire::Conn::open(&broker.addr);
    create_raw(&mut conn, "capped", &[]);
    let value = vec![7u8; 1000];
    for _ in 0..20 {
        let mut b = BatchBuilder::default();
        for _ in 0..5 {
            b.push(0, Some(b"k"), Some(&value), &[]);
        }
        let batch = b
            .finish(0, ProducerFields::NONE, Compression::None)
            .expect("batch");
        let resp = produce_raw(&mut conn, 9, "capped", batch);
        assert_eq!(resp.error_code, 0, "{resp:?}");
    }
    let fetch = |max_bytes: i32| {
        let req = FetchRequest::default()
            .with_max_wait_ms(0)
            .with_max_bytes(max_bytes)
            .with_topics(vec![FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_static_str("capped")))
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(0)
                    .with_fetch_offset(0)
                    .with_partition_max_bytes(50_000_000)])]);
        let resp: FetchResponse =
            common::wire::Conn::open(&broker.addr).call(ApiKey::Fetch, 12, &req);
        let p = &resp.responses[0].partitions[0];
        assert_eq!(p.error_code, 0, "{p:?}");
        p.records.as_ref().map_or(0, |r| r.len())
    };
    let got = fetch(50_000_000);
    assert!(
        got > 0 && got <= 12_000,
        "{got} bytes for a 12000-byte fetch.max.bytes"
    );
    let smaller = fetch(6_000);
    assert!(
        smaller > 0 && smaller <= 6_000,
        "a smaller request is honoured: {smaller}"
    );
}

/// Sends ApiVersions on `s` and says whether an answer came back within the socket's
/// read timeout.
fn answers(s: &mut TcpStream) -> bool {
    s.write_all(&api_versions_frame(3, 5)).is_ok() && read_frame(s).is_some()
}

/// `max.connections.per.ip`: a third connection from 127.0.0.1 is closed at once while
/// two are held, and accepted again once one of them closed; other clients are served
/// meanwhile. Without the limit the third connection is answered. (The HTTP API is off:
/// its client's connections to the broker would count too.)
#[test]
fn connections_per_ip_are_limited() {
    let broker =
        TestBroker::start_with(&[("max.connections.per.ip", "2"), ("http.enable", "false")]);
    let mut first = connect(&broker.addr);
    let mut second = connect(&broker.addr);
    assert!(answers(&mut first) && answers(&mut second));
    let mut third = connect(&broker.addr);
    assert!(
        closed_by_broker(&mut third),
        "a third connection from the address is closed"
    );
    drop(first);
    common::cluster::wait_until(
        "a connection slot frees up",
        Duration::from_secs(30),
        || answers(&mut connect(&broker.addr)).then_some(()),
    );
    assert!(answers(&mut second), "held connections keep being served");
}

/// `max.connections`: at the limit the broker accepts no more connections (the next
/// one waits unanswered in the kernel's backlog) until one closes; then it is served.
#[test]
fn at_max_connections_new_ones_wait_until_one_closes() {
    let broker = TestBroker::start_with(&[("max.connections", "2"), ("http.enable", "false")]);
    let mut first = connect(&broker.addr);
    let mut second = connect(&broker.addr);
    assert!(answers(&mut first) && answers(&mut second));
    let mut third = connect(&broker.addr);
    third
        .set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    assert!(
        !answers(&mut third),
        "not served while two connections are held"
    );
    drop(first);
    third
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    assert!(
        read_frame(&mut third).is_some(),
        "served once a connection closed"
    );
    assert!(answers(&mut second));
}

/// `connections.max.idle.ms`: a connection that sends nothing for that long is closed;
/// one that keeps sending is not.
#[test]
fn idle_connections_are_closed() {
    let broker = TestBroker::start_with(&[("connections.max.idle.ms", "1000")]);
    let mut idle = connect(&broker.addr);
    let started = std::time::Instant::now();
    assert!(answers(&mut idle));
    let mut busy = connect(&broker.addr);
    idle.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let mut closed = false;
    while started.elapsed() < Duration::from_secs(30) && !closed {
        assert!(answers(&mut busy), "a busy connection stays open");
        closed = closed_by_broker(&mut idle);
    }
    assert!(closed, "the idle connection was closed");
    assert!(started.elapsed() >= Duration::from_millis(900));
}

/// `socket.request.max.bytes` set to 1 MiB: a frame that declares 1 MiB + 1 closes its
/// connection as soon as the size prefix is read (nothing is allocated for it, and the
/// reason is logged), a frame of exactly 1 MiB is read and answered, and the broker
/// serves everyone else throughout.
#[test]
fn socket_request_max_bytes_bounds_a_frame() {
    let broker = TestBroker::start_with(&[("socket.request.max.bytes", "1048576")]);
    let addr = broker.addr.clone();
    let mut s = connect(&addr);
    s.write_all(&(1_048_577i32).to_be_bytes()).expect("write");
    assert!(
        closed_by_broker(&mut s),
        "an oversized frame closes its connection"
    );
    assert_healthy(&addr);
    // The broker's log reaches the test through a pipe: wait for the line.
    let logged = std::time::Instant::now();
    while !broker
        .log_text()
        .contains("frame of 1048577 bytes exceeds socket.request.max.bytes (1048576)")
    {
        assert!(
            logged.elapsed() < Duration::from_secs(30),
            "the oversized frame's reason was not logged"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // ApiVersions padded to exactly 1 MiB: read and answered (ApiVersions v0 ignores
    // what follows its empty body), not refused for its size.
    let mut s = connect(&addr);
    let mut frame = api_versions_frame(0, 7);
    frame.resize(4 + 1_048_576, 0);
    frame[..4].copy_from_slice(&(1_048_576i32).to_be_bytes());
    s.write_all(&frame).expect("write");
    assert!(
        read_frame(&mut s).is_some(),
        "a frame of exactly socket.request.max.bytes was not answered"
    );
    assert_healthy(&addr);
}
