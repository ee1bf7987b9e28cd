//! The HTTP API against the real broker binary: the minimal API (`POST /produce`,
//! `GET /fetch`), the REST API under `/api` (topics, records, groups, cluster), the
//! operations endpoints and the console, every error path included (status, Kafka error
//! name and code), cross-checked with librdkafka where records cross the two protocols.

mod common;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use common::TestBroker;
use moldau_client::partition_for_key;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{Headers, Message, OwnedMessage};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{json, Value};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

// Kafka error codes (protocol guide, "Error Codes").
const OFFSET_OUT_OF_RANGE: i64 = 1;
const UNKNOWN_TOPIC_OR_PARTITION: i64 = 3;
const MESSAGE_TOO_LARGE: i64 = 10;
const INVALID_TOPIC_EXCEPTION: i64 = 17;
const TOPIC_ALREADY_EXISTS: i64 = 36;
const INVALID_PARTITIONS: i64 = 37;
const INVALID_REPLICATION_FACTOR: i64 = 38;
const INVALID_CONFIG: i64 = 40;
const INVALID_REQUEST: i64 = 42;
const GROUP_ID_NOT_FOUND: i64 = 69;

/// The body cap the broker uses by default (1 MiB); tests send 1.5 MiB to cross it.
const CAP: usize = 1 << 20;

/// A synchronous HTTP client for one broker's API.
struct Http {
    addr: String,
    base: String,
    agent: ureq::Agent,
}

impl Http {
    fn new(broker: &TestBroker) -> Http {
        assert!(
            !broker.http.is_empty(),
            "the broker reported no HTTP address"
        );
        Http {
            addr: broker.http.clone(),
            base: format!("http://{}", broker.http),
            // No connection reuse: the server may close a connection after an error
            // without saying so, and a reused dead connection fails a POST.
            agent: ureq::AgentBuilder::new()
                .timeout(Duration::from_secs(60))
                .max_idle_connections(0)
                .build(),
        }
    }

    /// `method path` with an optional JSON body; returns the status and the JSON body,
    /// for success and error statuses alike (panics if the body is not JSON).
    fn call(&self, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        let (status, _, text) = self.raw(method, path, body);
        let value = serde_json::from_str(&text).unwrap_or_else(|e| {
            panic!("{method} {path} -> {status}: the body is not JSON ({e}): {text:?}")
        });
        (status, value)
    }

    /// Status, content type and body text.
    fn raw(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String, String) {
        let url = format!("{}{path}", self.base);
        let request = self.agent.request(method, &url);
        let result = match body {
            Some(b) => request
                .set("Content-Type", "application/json")
                .send_string(b),
            None => request.call(),
        };
        let response = match result {
            Ok(r) | Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{method} {path}: {e}"),
        };
        let status = response.status();
        let content_type = response.header("content-type").unwrap_or("").to_owned();
        let text = response.into_string().expect("response body");
        (status, content_type, text)
    }

    fn get(&self, path: &str) -> (u16, Value) {
        self.call("GET", path, None)
    }

    fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.call("POST", path, Some(&body.to_string()))
    }

    fn post_raw(&self, path: &str, body: &str) -> (u16, Value) {
        self.call("POST", path, Some(body))
    }

    /// POSTs a body over the cap on a fresh connection, reading the answer while the
    /// body is still being written: the server answers 413 from `Content-Length` without
    /// reading the body, and a client that only reads after writing everything may find
    /// the connection closed.
    fn post_oversized(&self, path: &str, body: &str) -> (u16, Value) {
        use std::io::{Read, Write};
        assert!(body.len() > CAP);
        let mut stream = std::net::TcpStream::connect(&self.addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .expect("read timeout");
        let mut writer = stream.try_clone().expect("clone");
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.addr,
            body.len()
        );
        // The server may stop reading once it has answered: write errors are expected.
        let sender = std::thread::spawn(move || writer.write_all(request.as_bytes()).is_ok());
        let mut response = Vec::new();
        let mut chunk = [0u8; 16 * 1024];
        let (status, text) = loop {
            if let Some(parsed) = parse_response(&response) {
                break parsed;
            }
            match stream.read(&mut chunk) {
                Ok(0) => panic!(
                    "POST {path}: connection closed after {:?}",
                    String::from_utf8_lossy(&response)
                ),
                Ok(n) => response.extend_from_slice(&chunk[..n]),
                Err(e) => panic!(
                    "POST {path}: {e} after {:?}",
                    String::from_utf8_lossy(&response)
                ),
            }
        };
        let _ = stream.shutdown(std::net::Shutdown::Both);
        let _ = sender.join().expect("sender thread");
        let value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("POST {path} -> {status}: not JSON ({e}): {text:?}"));
        (status, value)
    }

    fn patch(&self, path: &str, body: &Value) -> (u16, Value) {
        self.call("PATCH", path, Some(&body.to_string()))
    }

    fn delete(&self, path: &str) -> (u16, Value) {
        self.call("DELETE", path, None)
    }

    /// The high watermark of every partition of `topic`, from the describe endpoint.
    fn high_watermarks(&self, topic: &str) -> Vec<i64> {
        let d = ok(self.get(&format!("/api/topics/{topic}")));
        d["partitions"]
            .as_array()
            .expect("partitions")
            .iter()
            .map(|p| p["high_watermark"].as_i64().expect("high_watermark"))
            .collect()
    }

    /// `GET /metrics` as text.
    fn metrics(&self) -> String {
        let (status, content_type, text) = self.raw("GET", "/metrics", None);
        assert_eq!(status, 200, "{text}");
        assert!(
            content_type.starts_with("text/plain; version=0.0.4"),
            "{content_type}"
        );
        text
    }
}

/// A complete HTTP/1.1 response with a `Content-Length` body in `raw`, as (status,
/// body text); `None` while incomplete.
fn parse_response(raw: &[u8]) -> Option<(u16, String)> {
    let text = std::str::from_utf8(raw).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let mut lines = head.lines();
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let length: usize = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .expect("a Content-Length header");
    (body.len() >= length).then(|| (status, body[..length].to_owned()))
}

/// Asserts a 200 and returns the body.
#[track_caller]
fn ok(got: (u16, Value)) -> Value {
    assert_eq!(got.0, 200, "{}", got.1);
    got.1
}

/// Asserts an error response: HTTP status, Kafka error name and code, and a message.
#[track_caller]
fn assert_error(got: &(u16, Value), status: u16, name: &str, code: i64) {
    let (s, body) = got;
    assert_eq!(
        (
            *s,
            body["error"]["name"].as_str(),
            body["error"]["code"].as_i64()
        ),
        (status, Some(name), Some(code)),
        "{body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "no message: {body}"
    );
    assert_eq!(body.as_object().map(|o| o.len()), Some(1), "{body}");
}

/// Asserts a 400 INVALID_REQUEST.
#[track_caller]
fn assert_invalid(got: &(u16, Value)) {
    assert_error(got, 400, "INVALID_REQUEST", INVALID_REQUEST);
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}

/// The value of the Prometheus sample `series` (name with labels), if present.
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        line.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

fn rdkafka_producer(addr: &str) -> BaseProducer {
    ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("enable.idempotence", "false")
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "0")
        .create()
        .expect("producer")
}

/// Reads `count` records of `topic`-`partition` from the beginning with librdkafka.
fn rdkafka_read(addr: &str, topic: &str, partition: i32, count: usize) -> Vec<OwnedMessage> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("group.id", "http-test-verifier")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Beginning)
        .expect("tpl");
    consumer.assign(&tpl).expect("assign");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut out = Vec::new();
    while out.len() < count {
        assert!(
            Instant::now() < deadline,
            "librdkafka read {} of {count} records of {topic}-{partition}",
            out.len()
        );
        if let Some(msg) = consumer.poll(Duration::from_millis(200)) {
            out.push(msg.expect("consume").detach());
        }
    }
    // Nothing beyond what was expected.
    assert!(
        consumer.poll(Duration::from_millis(500)).is_none(),
        "more records than expected in {topic}-{partition}"
    );
    out
}

/// A librdkafka message's headers as (key, value) pairs.
fn rdkafka_headers(msg: &OwnedMessage) -> Vec<(String, Option<Vec<u8>>)> {
    msg.headers()
        .map(|h| {
            h.iter()
                .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                .collect()
        })
        .unwrap_or_default()
}

/// A JSON record's headers as (key, value) pairs (UTF-8 encoding).
fn json_headers(record: &Value) -> Vec<(String, Option<Vec<u8>>)> {
    record["headers"]
        .as_array()
        .expect("headers")
        .iter()
        .map(|h| {
            (
                h["key"].as_str().expect("header key").to_owned(),
                h["value"].as_str().map(|v| v.as_bytes().to_vec()),
            )
        })
        .collect()
}

fn json_bytes(v: &Value) -> Option<&[u8]> {
    v.as_str().map(str::as_bytes)
}

#[test]
fn minimal_api_produce_fetch_and_every_error() {
    let broker = TestBroker::start();
    let http = Http::new(&broker);

    // Produce auto-creates the topic (one partition, the broker's num.partitions) and
    // hands out offsets 0, 1, 2.
    assert_error(
        &http.get("/api/topics/mini"),
        404,
        "UNKNOWN_TOPIC_OR_PARTITION",
        UNKNOWN_TOPIC_OR_PARTITION,
    );
    for (i, text) in ["zero", "one", "two ✓"].iter().enumerate() {
        let got = http.post("/produce", &json!({"topic": "mini", "payload": text}));
        assert_eq!(got, (200, json!({ "offset": i })));
    }
    assert_eq!(http.high_watermarks("mini"), vec![3]);
    let all = json!({"records": [
        {"offset": 0, "payload": "zero"},
        {"offset": 1, "payload": "one"},
        {"offset": 2, "payload": "two ✓"},
    ]});
    assert_eq!(
        ok(http.get("/fetch?topic=mini&offset=0&max_bytes=4096")),
        all
    );
    assert_eq!(
        ok(http.get("/fetch?topic=mini")),
        all,
        "offset defaults to 0"
    );
    assert_eq!(
        ok(http.get("/fetch?topic=mini&offset=2")),
        json!({"records": [{"offset": 2, "payload": "two ✓"}]})
    );
    assert_eq!(
        ok(http.get("/fetch?topic=mini&offset=3")),
        json!({"records": []}),
        "an offset at the end gives no records"
    );
    for offset in [4, 1000] {
        assert_error(
            &http.get(&format!("/fetch?topic=mini&offset={offset}")),
            416,
            "OFFSET_OUT_OF_RANGE",
            OFFSET_OUT_OF_RANGE,
        );
    }
    assert_error(
        &http.get("/fetch?topic=nope&offset=0"),
        404,
        "UNKNOWN_TOPIC_OR_PARTITION",
        UNKNOWN_TOPIC_OR_PARTITION,
    );
    assert_error(
        &http.get("/api/topics/nope"),
        404,
        "UNKNOWN_TOPIC_OR_PARTITION",
        UNKNOWN_TOPIC_OR_PARTITION,
    );
    for bad in [
        "/fetch",
        "/fetch?offset=0",
        "/fetch?topic=&offset=0",
        "/fetch?topic=mini&offset=abc",
        "/fetch?topic=mini&offset=1.5",
        "/fetch?topic=mini&offset=-1",
        "/fetch?topic=mini&max_bytes=0",
        "/fetch?topic=mini&max_bytes=-3",
        "/fetch?topic=mini&max_bytes=lots",
        "/fetch?topic=mini&encoding=rot13",
    ] {
        let got = http.get(bad);
        assert_eq!(got.0, 400, "{bad}: {}", got.1);
        assert_invalid(&got);
    }

    // max_bytes: the payloads add up to at most max_bytes (default 4096), but the first
    // record always comes back.
    let big: Vec<String> = ["a", "b", "c"].iter().map(|c| c.repeat(3000)).collect();
    for (i, payload) in big.iter().enumerate() {
        let got = http.post("/produce", &json!({"topic": "big", "payload": payload}));
        assert_eq!(got, (200, json!({ "offset": i })));
    }
    let offsets = |v: &Value| -> Vec<i64> {
        v["records"]
            .as_array()
            .expect("records")
            .iter()
            .map(|r| r["offset"].as_i64().expect("offset"))
            .collect()
    };
    let first = ok(http.get("/fetch?topic=big&offset=0"));
    assert_eq!(
        first,
        json!({"records": [{"offset": 0, "payload": big[0]}]})
    );
    assert_eq!(offsets(&ok(http.get("/fetch?topic=big&offset=1"))), [1]);
    assert_eq!(
        ok(http.get("/fetch?topic=big&offset=0&max_bytes=10")),
        first,
        "one record even when it is larger than max_bytes"
    );
    assert_eq!(
        offsets(&ok(http.get("/fetch?topic=big&offset=0&max_bytes=6000"))),
        [0, 1]
    );
    assert_eq!(
        offsets(&ok(http.get("/fetch?topic=big&offset=0&max_bytes=5999"))),
        [0]
    );
    let three = ok(http.get("/fetch?topic=big&offset=0&max_bytes=9000"));
    assert_eq!(offsets(&three), [0, 1, 2]);
    assert_eq!(three["records"][2]["payload"], big[2].as_str());

    // Binary payloads travel as base64; asked for as text they are refused, not mangled.
    let binary: Vec<u8> = vec![0x00, 0xff, 0xfe, 0x80, 0x01, 0x7f, 0xc3, 0x28, 0x00];
    let encoded = B64.encode(&binary);
    let got = http.post(
        "/produce",
        &json!({"topic": "bin", "payload": encoded, "encoding": "base64"}),
    );
    assert_eq!(got, (200, json!({"offset": 0})));
    let got = http.post("/produce", &json!({"topic": "bin", "payload": "plain"}));
    assert_eq!(got, (200, json!({"offset": 1})));
    assert_eq!(
        ok(http.get("/fetch?topic=bin&offset=0&encoding=base64")),
        json!({"records": [
            {"offset": 0, "payload": encoded},
            {"offset": 1, "payload": B64.encode("plain")},
        ]})
    );
    assert_error(
        &http.get("/fetch?topic=bin&offset=0"),
        422,
        "INVALID_REQUEST",
        INVALID_REQUEST,
    );
    assert_eq!(
        ok(http.get("/fetch?topic=bin&offset=1&encoding=utf8")),
        json!({"records": [{"offset": 1, "payload": "plain"}]})
    );
    let read = rdkafka_read(&broker.addr, "bin", 0, 2);
    assert_eq!(read[0].payload(), Some(binary.as_slice()));
    assert_eq!(read[0].key(), None);
    assert_eq!(read[1].payload(), Some(&b"plain"[..]));

    // Malformed bodies: 400 INVALID_REQUEST, and nothing is written.
    for bad in [
        "",
        "{\"topic\": ",
        "not json",
        "[1, 2]",
        "{\"topic\": \"mini\"}",
        "{\"payload\": \"x\"}",
        "{\"topic\": \"mini\", \"payload\": \"x\", \"partition\": 1}",
        "{\"topic\": \"mini\", \"payload\": 5}",
        "{\"topic\": 5, \"payload\": \"x\"}",
        "{\"topic\": \"mini\", \"payload\": null}",
        "{\"topic\": \"\", \"payload\": \"x\"}",
        "{\"topic\": \"mini\", \"payload\": \"x\", \"encoding\": \"hex\"}",
        "{\"topic\": \"mini\", \"payload\": \"***\", \"encoding\": \"base64\"}",
    ] {
        let got = http.post_raw("/produce", bad);
        assert_eq!(got.0, 400, "{bad:?}: {}", got.1);
        assert_invalid(&got);
    }
    // A topic name Kafka refuses: INVALID_TOPIC_EXCEPTION, and no topic.
    let got = http.post("/produce", &json!({"topic": "bad name!", "payload": "x"}));
    assert_error(
        &got,
        400,
        "INVALID_TOPIC_EXCEPTION",
        INVALID_TOPIC_EXCEPTION,
    );
    assert_error(
        &http.get("/api/topics/bad%20name!"),
        400,
        "INVALID_TOPIC_EXCEPTION",
        INVALID_TOPIC_EXCEPTION,
    );

    // A body over the cap: 413 MESSAGE_TOO_LARGE, nothing written, no topic created.
    let huge = "x".repeat(CAP + CAP / 2);
    for topic in ["mini", "huge"] {
        assert_error(
            &http.post_oversized(
                "/produce",
                &json!({"topic": topic, "payload": huge}).to_string(),
            ),
            413,
            "MESSAGE_TOO_LARGE",
            MESSAGE_TOO_LARGE,
        );
    }
    assert_error(
        &http.get("/api/topics/huge"),
        404,
        "UNKNOWN_TOPIC_OR_PARTITION",
        UNKNOWN_TOPIC_OR_PARTITION,
    );
    assert_eq!(http.high_watermarks("mini"), vec![3]);
    assert_eq!(ok(http.get("/fetch?topic=mini")), all);

    // The next write continues right after: the failures left no gap.
    let got = http.post("/produce", &json!({"topic": "mini", "payload": "three"}));
    assert_eq!(got, (200, json!({"offset": 3})));

    // Records librdkafka produces show up in /fetch at the offsets after.
    let producer = rdkafka_producer(&broker.addr);
    for i in 0..3 {
        let payload = format!("from-rdkafka-{i}");
        producer
            .send(
                BaseRecord::<(), _>::to("mini")
                    .partition(0)
                    .payload(&payload),
            )
            .map_err(|(e, _)| e)
            .expect("send");
        producer.flush(Duration::from_secs(30)).expect("flush");
    }
    assert_eq!(
        ok(http.get("/fetch?topic=mini&offset=3")),
        json!({"records": [
            {"offset": 3, "payload": "three"},
            {"offset": 4, "payload": "from-rdkafka-0"},
            {"offset": 5, "payload": "from-rdkafka-1"},
            {"offset": 6, "payload": "from-rdkafka-2"},
        ]})
    );
    // And librdkafka reads the minimal API's records with the same offsets.
    let read = rdkafka_read(&broker.addr, "mini", 0, 7);
    let seen: Vec<(i64, Option<&[u8]>)> = read.iter().map(|m| (m.offset(), m.payload())).collect();
    let want: Vec<(i64, Option<&[u8]>)> = vec![
        (0, Some(b"zero")),
        (1, Some(b"one")),
        (2, Some("two ✓".as_bytes())),
        (3, Some(b"three")),
        (4, Some(b"from-rdkafka-0")),
        (5, Some(b"from-rdkafka-1")),
        (6, Some(b"from-rdkafka-2")),
    ];
    assert_eq!(seen, want);
}

#[test]
fn topics_rest_api_and_every_error() {
    let broker = TestBroker::start();
    let http = Http::new(&broker);

    let created = |name: &str, body: Value, partitions: i64| {
        assert_eq!(
            http.post("/api/topics", &body),
            (201, json!({"name": name, "partitions": partitions}))
        );
    };
    created("orders", json!({"name": "orders", "partitions": 3}), 3);
    created("defaults", json!({"name": "defaults"}), 1);
    created(
        "compacted",
        json!({"name": "compacted", "partitions": 2, "replication_factor": 1,
               "configs": {"cleanup.policy": "compact", "retention.ms": "3600000"}}),
        2,
    );

    let list = |http: &Http| -> Vec<Value> {
        ok(http.get("/api/topics"))["topics"]
            .as_array()
            .expect("topics")
            .iter()
            .filter(|t| !t["name"].as_str().unwrap_or("").starts_with("__"))
            .cloned()
            .collect()
    };
    let expected = vec![
        json!({"name": "compacted", "partitions": 2, "internal": false}),
        json!({"name": "defaults", "partitions": 1, "internal": false}),
        json!({"name": "orders", "partitions": 3, "internal": false}),
    ];
    assert_eq!(list(&http), expected, "sorted by name");

    // Creation errors; none of them leaves a topic behind or changes one.
    assert_error(
        &http.post("/api/topics", &json!({"name": "orders", "partitions": 5})),
        409,
        "TOPIC_ALREADY_EXISTS",
        TOPIC_ALREADY_EXISTS,
    );
    let long = "x".repeat(250);
    for name in ["bad name!", "", ".", "..", "a/b", "ä", long.as_str()] {
        assert_error(
            &http.post("/api/topics", &json!({"name": name, "partitions": 1})),
            400,
            "INVALID_TOPIC_EXCEPTION",
            INVALID_TOPIC_EXCEPTION,
        );
    }
    for partitions in [0, -5] {
        assert_error(
            &http.post(
                "/api/topics",
                &json!({"name": "parts", "partitions": partitions}),
            ),
            400,
            "INVALID_PARTITIONS",
            INVALID_PARTITIONS,
        );
    }
    for rf in [0, 3] {
        assert_error(
            &http.post(
                "/api/topics",
                &json!({"name": "replicas", "replication_factor": rf}),
            ),
            400,
            "INVALID_REPLICATION_FACTOR",
            INVALID_REPLICATION_FACTOR,
        );
    }
    for configs in [
        json!({"retention.ms": "soon"}),
        json!({"cleanup.policy": "sometimes"}),
        json!({"no.such.config": "1"}),
    ] {
        assert_error(
            &http.post(
                "/api/topics",
                &json!({"name": "configured", "configs": configs}),
            ),
            400,
            "INVALID_CONFIG",
            INVALID_CONFIG,
        );
    }
    for bad in [
        "",
        "{\"name\": ",
        "[]",
        "{}",
        "{\"partitions\": 1}",
        "{\"name\": \"x1\", \"partition\": 1}",
        "{\"name\": \"x2\", \"partitions\": \"1\"}",
        "{\"name\": \"x3\", \"configs\": {\"retention.ms\": 5}}",
        "{\"name\": 7}",
    ] {
        let got = http.post_raw("/api/topics", bad);
        assert_eq!(got.0, 400, "{bad:?}: {}", got.1);
        assert_invalid(&got);
    }
    let huge = format!("{{\"name\": \"{}\"}}", "y".repeat(CAP + CAP / 2));
    assert_error(
        &http.post_oversized("/api/topics", &huge),
        413,
        "MESSAGE_TOO_LARGE",
        MESSAGE_TOO_LARGE,
    );
    assert_eq!(list(&http), expected, "failed creations changed the topics");

    // Describe: partitions with leader, replicas, offsets; configs with values.
    let cluster = ok(http.get("/api/cluster"));
    let node = cluster["brokers"][0]["node_id"].as_i64().expect("node id");
    let produced = http.post(
        "/api/topics/orders/records",
        &json!({"records": [{"partition": 1, "value": "a"}, {"partition": 1, "value": "b"}]}),
    );
    assert_eq!(
        ok(produced)["offsets"][1],
        json!({"partition": 1, "offset": 1})
    );
    let d = ok(http.get("/api/topics/orders"));
    assert_eq!(d["name"], "orders");
    assert_eq!(d["internal"], false);
    let id = d["topic_id"].as_str().expect("topic_id");
    assert!(
        !id.is_empty() && id.chars().any(|c| c.is_ascii_alphanumeric() && c != '0'),
        "{id}"
    );
    let partitions = d["partitions"].as_array().expect("partitions");
    assert_eq!(partitions.len(), 3);
    for (i, p) in partitions.iter().enumerate() {
        let hw = if i == 1 { 2 } else { 0 };
        assert_eq!(p["partition"], i, "{d}");
        assert_eq!(p["leader"], node, "{d}");
        assert_eq!(p["replicas"], json!([node]), "{d}");
        assert_eq!(p["isr"], json!([node]), "{d}");
        assert!(p["leader_epoch"].as_i64().is_some_and(|e| e >= 0), "{d}");
        assert_eq!(p["log_start_offset"], 0, "{d}");
        assert_eq!(p["high_watermark"], hw, "{d}");
        assert_eq!(p["last_stable_offset"], hw, "{d}");
    }
    let configs = d["configs"].as_object().expect("configs");
    assert_eq!(configs.get("cleanup.policy"), Some(&json!("delete")), "{d}");
    let default_retention = configs
        .get("retention.ms")
        .and_then(Value::as_str)
        .expect("retention.ms")
        .to_owned();
    assert_eq!(default_retention, "604800000");
    let c = ok(http.get("/api/topics/compacted"));
    assert_eq!(c["configs"]["cleanup.policy"], "compact", "{c}");
    assert_eq!(c["configs"]["retention.ms"], "3600000", "{c}");
    assert_eq!(c["partitions"].as_array().map(Vec::len), Some(2));
    assert_ne!(c["topic_id"], d["topic_id"]);
    for unknown in ["/api/topics/ghost", "/api/topics/ghost/configs"] {
        let got = if unknown.ends_with("configs") {
            http.patch(unknown, &json!({"retention.ms": "1000"}))
        } else {
            http.get(unknown)
        };
        assert_error(
            &got,
            404,
            "UNKNOWN_TOPIC_OR_PARTITION",
            UNKNOWN_TOPIC_OR_PARTITION,
        );
    }

    // Alter configs: set, shown by describe; null resets to the default.
    let altered = ok(http.patch(
        "/api/topics/orders/configs",
        &json!({"retention.ms": "12345"}),
    ));
    assert_eq!(altered["configs"]["retention.ms"], "12345", "{altered}");
    assert_eq!(altered["configs"]["cleanup.policy"], "delete", "{altered}");
    let retention =
        |http: &Http| ok(http.get("/api/topics/orders"))["configs"]["retention.ms"].clone();
    assert_eq!(retention(&http), "12345");
    // Errors leave it as it was (also when only one of two changes is bad).
    for bad in [
        json!({}),
        json!({"retention.ms": 5}),
        json!(["retention.ms", "1"]),
    ] {
        assert_invalid(&http.patch("/api/topics/orders/configs", &bad));
    }
    for bad in [
        json!({"retention.ms": "soon"}),
        json!({"no.such.config": "1"}),
        json!({"retention.ms": "777", "cleanup.policy": "sometimes"}),
    ] {
        assert_error(
            &http.patch("/api/topics/orders/configs", &bad),
            400,
            "INVALID_CONFIG",
            INVALID_CONFIG,
        );
    }
    assert_invalid(&http.call(
        "PATCH",
        "/api/topics/orders/configs",
        Some("{\"retention.ms\""),
    ));
    assert_eq!(retention(&http), "12345");
    let reset = ok(http.patch("/api/topics/orders/configs", &json!({"retention.ms": null})));
    assert_eq!(reset["configs"]["retention.ms"], default_retention.as_str());
    assert_eq!(retention(&http), default_retention.as_str());

    // Delete: gone from describe and the list; deleting again is 404.
    assert_eq!(
        http.delete("/api/topics/defaults"),
        (200, json!({"deleted": "defaults"}))
    );
    for gone in [
        http.get("/api/topics/defaults"),
        http.delete("/api/topics/defaults"),
        http.get("/api/topics/defaults/records"),
        http.delete("/api/topics/ghost"),
    ] {
        assert_error(
            &gone,
            404,
            "UNKNOWN_TOPIC_OR_PARTITION",
            UNKNOWN_TOPIC_OR_PARTITION,
        );
    }
    assert_eq!(list(&http), vec![expected[0].clone(), expected[2].clone()]);
    // The name is free again.
    created("defaults", json!({"name": "defaults", "partitions": 2}), 2);
    assert_eq!(http.high_watermarks("defaults"), vec![0, 0]);
}

#[test]
fn records_rest_api_and_every_error() {
    let broker = TestBroker::start();
    let http = Http::new(&broker);
    assert_eq!(
        http.post("/api/topics", &json!({"name": "rec", "partitions": 3})),
        (201, json!({"name": "rec", "partitions": 3}))
    );

    // Explicit partitions, keys, headers as an object and as a list (repeated keys, null
    // values), null key and value. Offsets come back in input order.
    let before = now_ms();
    let got = http.post(
        "/api/topics/rec/records",
        &json!({"records": [
            {"partition": 1, "key": "k-a", "value": "v-a", "headers": {"trace": "t1", "empty": null}},
            {"partition": 1, "value": "v-b", "headers": [
                {"key": "dup", "value": "1"}, {"key": "dup", "value": "2"}, {"key": "nil", "value": null}]},
            {"partition": 2, "key": null, "value": null},
            {"partition": 1, "key": "k-c", "value": "v-c ✓", "headers": []},
        ]}),
    );
    let after = now_ms();
    assert_eq!(
        got,
        (
            200,
            json!({"offsets": [
                {"partition": 1, "offset": 0},
                {"partition": 1, "offset": 1},
                {"partition": 2, "offset": 0},
                {"partition": 1, "offset": 2},
            ]})
        )
    );
    let p1 = ok(http.get("/api/topics/rec/records?partition=1"));
    assert_eq!(p1["high_watermark"], 3);
    assert_eq!(p1["next_offset"], 3);
    let records = p1["records"].as_array().expect("records").clone();
    assert_eq!(records.len(), 3, "{p1}");
    let ts = records[0]["timestamp"].as_i64().expect("timestamp");
    assert!(
        (before..=after).contains(&ts),
        "{before} <= {ts} <= {after}"
    );
    let expected = json!([
        {"partition": 1, "offset": 0, "timestamp": ts, "key": "k-a", "value": "v-a",
         "headers": [{"key": "empty", "value": null}, {"key": "trace", "value": "t1"}]},
        {"partition": 1, "offset": 1, "timestamp": ts, "key": null, "value": "v-b",
         "headers": [{"key": "dup", "value": "1"}, {"key": "dup", "value": "2"},
                     {"key": "nil", "value": null}]},
        {"partition": 1, "offset": 2, "timestamp": ts, "key": "k-c", "value": "v-c ✓",
         "headers": []},
    ]);
    assert_eq!(Value::Array(records.clone()), expected);
    let p2 = ok(http.get("/api/topics/rec/records?partition=2&offset=0"));
    assert_eq!(
        p2,
        json!({"records": [{"partition": 2, "offset": 0, "timestamp": ts, "key": null,
                            "value": null, "headers": []}],
               "high_watermark": 1, "next_offset": 1})
    );
    assert_eq!(
        ok(http.get("/api/topics/rec/records")),
        json!({"records": [], "high_watermark": 0, "next_offset": 0}),
        "partition 0 by default, empty"
    );

    // librdkafka reads the same offsets, keys, values, headers and timestamps.
    let read = rdkafka_read(&broker.addr, "rec", 1, 3);
    for (msg, record) in read.iter().zip(&records) {
        assert_eq!(msg.offset(), record["offset"].as_i64().expect("offset"));
        assert_eq!(msg.key(), json_bytes(&record["key"]));
        assert_eq!(msg.payload(), json_bytes(&record["value"]));
        assert_eq!(rdkafka_headers(msg), json_headers(record));
        assert_eq!(msg.timestamp().to_millis(), Some(ts));
    }
    let read = rdkafka_read(&broker.addr, "rec", 2, 1);
    assert_eq!(
        (read[0].offset(), read[0].key(), read[0].payload()),
        (0, None, None)
    );

    // Base64 output: keys, values and header values encoded, nulls stay null.
    let b = ok(http.get("/api/topics/rec/records?partition=1&encoding=base64&limit=2"));
    assert_eq!(
        b["records"],
        json!([
            {"partition": 1, "offset": 0, "timestamp": ts, "key": B64.encode("k-a"),
             "value": B64.encode("v-a"),
             "headers": [{"key": "empty", "value": null}, {"key": "trace", "value": B64.encode("t1")}]},
            {"partition": 1, "offset": 1, "timestamp": ts, "key": null, "value": B64.encode("v-b"),
             "headers": [{"key": "dup", "value": B64.encode("1")}, {"key": "dup", "value": B64.encode("2")},
                         {"key": "nil", "value": null}]},
        ])
    );
    assert_eq!(b["next_offset"], 2);

    // Binary in (base64), binary out only as base64.
    let bin_key: Vec<u8> = vec![0xff, 0x00, 0x10];
    let bin_value: Vec<u8> = vec![0x00, 0xfe, 0x80, 0xc3, 0x28];
    let bin_header: Vec<u8> = vec![0xc0, 0xaf];
    let got = http.post(
        "/api/topics/rec/records",
        &json!({"encoding": "base64", "records": [{"partition": 0, "key": B64.encode(&bin_key),
                "value": B64.encode(&bin_value), "headers": {"h": B64.encode(&bin_header)}}]}),
    );
    assert_eq!(
        got,
        (200, json!({"offsets": [{"partition": 0, "offset": 0}]}))
    );
    let b = ok(http.get("/api/topics/rec/records?partition=0&encoding=base64"));
    assert_eq!(b["records"][0]["key"], B64.encode(&bin_key));
    assert_eq!(b["records"][0]["value"], B64.encode(&bin_value));
    assert_eq!(
        b["records"][0]["headers"],
        json!([{"key": "h", "value": B64.encode(&bin_header)}])
    );
    assert_error(
        &http.get("/api/topics/rec/records?partition=0"),
        422,
        "INVALID_REQUEST",
        INVALID_REQUEST,
    );
    let read = rdkafka_read(&broker.addr, "rec", 0, 1);
    assert_eq!(read[0].key(), Some(bin_key.as_slice()));
    assert_eq!(read[0].payload(), Some(bin_value.as_slice()));
    assert_eq!(
        rdkafka_headers(&read[0]),
        vec![("h".to_owned(), Some(bin_header.clone()))]
    );

    // Keyed records land on murmur2(key) as Kafka's Java client places them; each
    // partition's offsets continue contiguously in input order.
    let hw_before = http.high_watermarks("rec");
    let keys: Vec<String> = (0..40).map(|i| format!("user-{i}")).collect();
    let body = json!({"records": keys.iter().map(|k| json!({"key": k, "value": format!("of {k}")})).collect::<Vec<_>>()});
    let got = ok(http.post("/api/topics/rec/records", &body));
    let placed = got["offsets"].as_array().expect("offsets");
    assert_eq!(placed.len(), keys.len());
    let mut next = hw_before.clone();
    for (key, at) in keys.iter().zip(placed) {
        let p = partition_for_key(key.as_bytes(), 3);
        assert_eq!(at["partition"], p, "{key}");
        assert_eq!(at["offset"], next[p as usize], "{key}");
        next[p as usize] += 1;
    }
    assert!(
        next.iter().zip(&hw_before).filter(|(n, b)| n > b).count() >= 2,
        "the keys should spread over partitions: {next:?}"
    );
    assert_eq!(http.high_watermarks("rec"), next);
    // librdkafka's murmur2 partitioner (Java-compatible) puts the same keys on the same
    // partitions as the REST API did.
    let producer = rdkafka_producer(&broker.addr);
    for key in &keys {
        producer
            .send(BaseRecord::to("rec").key(key).payload("again"))
            .map_err(|(e, _)| e)
            .expect("send");
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
    let mut again = 0;
    for p in 0..3 {
        // Partition 0 holds a binary record: read as base64.
        let r = ok(http.get(&format!(
            "/api/topics/rec/records?partition={p}&offset=0&limit=1000&encoding=base64"
        )));
        let decoded = |v: &Value| v.as_str().map(|t| B64.decode(t).expect("base64"));
        for record in r["records"].as_array().expect("records") {
            let Some(key) = decoded(&record["key"]) else {
                continue;
            };
            if key.starts_with(b"user-") {
                assert_eq!(partition_for_key(&key, 3), p, "{record}");
                again += usize::from(decoded(&record["value"]).as_deref() == Some(&b"again"[..]));
            }
        }
    }
    assert_eq!(again, keys.len(), "librdkafka's records not all found");

    // Keyless records without a partition go round robin.
    let hw_before = http.high_watermarks("rec");
    let got = ok(http.post(
        "/api/topics/rec/records",
        &json!({"records": (0..6).map(|i| json!({"value": format!("rr-{i}")})).collect::<Vec<_>>()}),
    ));
    let mut per_partition = [0i64; 3];
    for at in got["offsets"].as_array().expect("offsets") {
        per_partition[at["partition"].as_i64().expect("partition") as usize] += 1;
    }
    assert_eq!(per_partition, [2, 2, 2]);
    let hw_after: Vec<i64> = hw_before.iter().map(|h| h + 2).collect();
    assert_eq!(http.high_watermarks("rec"), hw_after);

    // Reads by offset, limit, latest N, timestamp and max_bytes on a one-partition topic:
    // request A writes a0..a2, request B (later) b0, b1.
    assert_eq!(
        http.post("/api/topics", &json!({"name": "hist", "partitions": 1}))
            .0,
        201
    );
    let write = |values: &[&str]| {
        let records: Vec<Value> = values.iter().map(|v| json!({"value": v})).collect();
        ok(http.post("/api/topics/hist/records", &json!({ "records": records })))
    };
    write(&["a0", "a1", "a2"]);
    std::thread::sleep(Duration::from_millis(50));
    write(&["b0", "b1"]);
    let read_offsets = |query: &str| -> (Vec<i64>, i64, i64) {
        let r = ok(http.get(&format!("/api/topics/hist/records?{query}")));
        let offsets = r["records"]
            .as_array()
            .expect("records")
            .iter()
            .map(|r| r["offset"].as_i64().expect("offset"))
            .collect();
        (
            offsets,
            r["next_offset"].as_i64().expect("next_offset"),
            r["high_watermark"].as_i64().expect("high_watermark"),
        )
    };
    let all = ok(http.get("/api/topics/hist/records"));
    let ts_a = all["records"][0]["timestamp"].as_i64().expect("ts");
    let ts_b = all["records"][3]["timestamp"].as_i64().expect("ts");
    assert!(ts_b > ts_a, "{all}");
    assert_eq!(all["records"][2]["timestamp"], ts_a);
    assert_eq!(all["records"][4]["timestamp"], ts_b);
    assert_eq!(read_offsets(""), (vec![0, 1, 2, 3, 4], 5, 5));
    assert_eq!(read_offsets("offset=1&limit=2"), (vec![1, 2], 3, 5));
    assert_eq!(read_offsets("limit=1"), (vec![0], 1, 5));
    assert_eq!(read_offsets("offset=4&limit=10"), (vec![4], 5, 5));
    assert_eq!(read_offsets("offset=5"), (vec![], 5, 5));
    assert_eq!(read_offsets("latest=2"), (vec![3, 4], 5, 5));
    assert_eq!(read_offsets("latest=1"), (vec![4], 5, 5));
    assert_eq!(read_offsets("latest=100"), (vec![0, 1, 2, 3, 4], 5, 5));
    assert_eq!(
        read_offsets(&format!("timestamp={ts_b}")),
        (vec![3, 4], 5, 5)
    );
    assert_eq!(
        read_offsets(&format!("timestamp={}", ts_a + 1)),
        (vec![3, 4], 5, 5)
    );
    assert_eq!(
        read_offsets(&format!("timestamp={ts_a}")),
        (vec![0, 1, 2, 3, 4], 5, 5)
    );
    assert_eq!(
        read_offsets(&format!("timestamp={ts_a}&limit=2")),
        (vec![0, 1], 2, 5)
    );
    assert_eq!(read_offsets("timestamp=0"), (vec![0, 1, 2, 3, 4], 5, 5));
    assert_eq!(
        read_offsets(&format!("timestamp={}", ts_b + 3_600_000)),
        (vec![], 5, 5),
        "a timestamp after every record reads from the end"
    );
    assert_eq!(
        read_offsets("max_bytes=1"),
        (vec![0], 1, 5),
        "the first record always"
    );
    assert_eq!(read_offsets("max_bytes=4"), (vec![0, 1], 2, 5));
    assert_eq!(read_offsets("max_bytes=5"), (vec![0, 1], 2, 5));
    assert_eq!(read_offsets("offset=3&max_bytes=4"), (vec![3, 4], 5, 5));
    assert_eq!(
        read_offsets("isolation=read_committed"),
        (vec![0, 1, 2, 3, 4], 5, 5)
    );

    // Read errors.
    for offset in [6, 100] {
        assert_error(
            &http.get(&format!("/api/topics/hist/records?offset={offset}")),
            416,
            "OFFSET_OUT_OF_RANGE",
            OFFSET_OUT_OF_RANGE,
        );
    }
    for partition in [1, 7, -1] {
        assert_error(
            &http.get(&format!("/api/topics/hist/records?partition={partition}")),
            404,
            "UNKNOWN_TOPIC_OR_PARTITION",
            UNKNOWN_TOPIC_OR_PARTITION,
        );
    }
    assert_error(
        &http.get("/api/topics/ghost/records"),
        404,
        "UNKNOWN_TOPIC_OR_PARTITION",
        UNKNOWN_TOPIC_OR_PARTITION,
    );
    for bad in [
        "offset=-1",
        "offset=x",
        "partition=x",
        "limit=x",
        "limit=-1",
        "latest=x",
        "latest=-2",
        "timestamp=yesterday",
        "max_bytes=x",
        "encoding=hex",
        "isolation=serializable",
    ] {
        let got = http.get(&format!("/api/topics/hist/records?{bad}"));
        assert_eq!(got.0, 400, "{bad}: {}", got.1);
        assert_invalid(&got);
    }

    // Write errors; none writes anything anywhere.
    let hw = http.high_watermarks("rec");
    for bad in [
        json!({"records": [{"partition": 0, "value": "ok"}, {"partition": 3, "value": "no"}]}),
        json!({"records": [{"partition": 2, "value": "ok"}, {"partition": -1, "value": "no"}]}),
        json!({"records": [{"key": "k", "value": "ok"}, {"partition": 99, "value": "no"}]}),
    ] {
        assert_error(
            &http.post("/api/topics/rec/records", &bad),
            404,
            "UNKNOWN_TOPIC_OR_PARTITION",
            UNKNOWN_TOPIC_OR_PARTITION,
        );
    }
    assert_eq!(http.high_watermarks("rec"), hw);
    for bad in [
        json!({"encoding": "base64", "records": [{"partition": 0, "value": "aGk="}, {"value": "***"}]}),
        json!({"encoding": "base64", "records": [{"key": "%%%", "value": "aGk="}]}),
        json!({"encoding": "base64", "records": [{"value": "aGk=", "headers": {"h": "a"}}]}),
        json!({"encoding": "base64", "records": [{"value": "aGk=", "headers": [{"key": "h", "value": "!"}]}]}),
        json!({"records": []}),
        json!({}),
        json!({"records": [{"partition": 0, "val": "typo"}]}),
        json!({"records": [{"value": "x"}], "extra": 1}),
        json!({"records": [{"partition": "0", "value": "x"}]}),
        json!({"records": [{"value": 12}]}),
        json!({"records": [{"value": "x", "headers": {"h": 1}}]}),
        json!({"records": [{"value": "x", "headers": "h"}]}),
        json!({"records": [{"value": "x"}], "encoding": "hex"}),
        json!({"records": {"value": "x"}}),
    ] {
        let got = http.post("/api/topics/rec/records", &bad);
        assert_eq!(got.0, 400, "{bad}: {}", got.1);
        assert_invalid(&got);
    }
    for bad in ["", "{\"records\": [", "records"] {
        assert_invalid(&http.post_raw("/api/topics/rec/records", bad));
    }
    let huge = json!({"records": [{"partition": 0, "value": "z".repeat(CAP + CAP / 2)}]});
    assert_error(
        &http.post_oversized("/api/topics/rec/records", &huge.to_string()),
        413,
        "MESSAGE_TOO_LARGE",
        MESSAGE_TOO_LARGE,
    );
    assert_eq!(
        http.high_watermarks("rec"),
        hw,
        "a failed write wrote something"
    );
    // No auto-creation on this path.
    assert_error(
        &http.post(
            "/api/topics/ghost/records",
            &json!({"records": [{"value": "x"}]}),
        ),
        404,
        "UNKNOWN_TOPIC_OR_PARTITION",
        UNKNOWN_TOPIC_OR_PARTITION,
    );
    assert_error(
        &http.get("/api/topics/ghost"),
        404,
        "UNKNOWN_TOPIC_OR_PARTITION",
        UNKNOWN_TOPIC_OR_PARTITION,
    );
}

/// The group's row for `topic`-`partition` in a describe, as
/// (committed_offset, high_watermark, lag).
fn group_row(d: &Value, topic: &str, partition: i64) -> (i64, i64, i64) {
    let row = d["offsets"]
        .as_array()
        .expect("offsets")
        .iter()
        .find(|o| o["topic"] == topic && o["partition"] == partition)
        .unwrap_or_else(|| panic!("no offsets for {topic}-{partition}: {d}"));
    let n = |k: &str| row[k].as_i64().expect("number");
    (n("committed_offset"), n("high_watermark"), n("lag"))
}

#[test]
fn groups_offsets_and_lag() {
    let broker = TestBroker::start_with(&[("group.initial.rebalance.delay.ms", "0")]);
    let http = Http::new(&broker);
    let group = "g-lag";
    assert_eq!(
        http.post("/api/topics", &json!({"name": "lagged", "partitions": 2}))
            .0,
        201
    );
    let write = |partition: i32, count: usize| {
        let records: Vec<Value> = (0..count)
            .map(|i| json!({"partition": partition, "value": format!("v{i}")}))
            .collect();
        ok(http.post("/api/topics/lagged/records", &json!({ "records": records })));
    };
    write(0, 5);
    write(1, 3);

    let unknown = |name: &str| {
        assert_error(
            &http.get(&format!("/api/groups/{name}")),
            404,
            "GROUP_ID_NOT_FOUND",
            GROUP_ID_NOT_FOUND,
        );
    };
    unknown(group);
    unknown("nobody");
    let listed = |http: &Http| -> Vec<Value> {
        ok(http.get("/api/groups"))["groups"]
            .as_array()
            .expect("groups")
            .iter()
            .filter(|g| g["group_id"] == group)
            .cloned()
            .collect()
    };
    assert_eq!(listed(&http), Vec::<Value>::new());

    // A librdkafka member joins, gets both partitions and commits 2 and 3.
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker.addr)
        .set("group.id", group)
        .set("client.id", "lag-checker")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("partition.assignment.strategy", "range")
        .create()
        .expect("consumer");
    consumer.subscribe(&["lagged"]).expect("subscribe");
    let deadline = Instant::now() + Duration::from_secs(30);
    while consumer.assignment().map(|a| a.count()).unwrap_or(0) < 2 {
        assert!(Instant::now() < deadline, "no assignment");
        let _ = consumer.poll(Duration::from_millis(100));
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("lagged", 0, Offset::Offset(2))
        .expect("tpl");
    tpl.add_partition_offset("lagged", 1, Offset::Offset(3))
        .expect("tpl");
    consumer.commit(&tpl, CommitMode::Sync).expect("commit");

    let d = ok(http.get(&format!("/api/groups/{group}")));
    assert_eq!(d["group_id"], group);
    assert_eq!(d["state"], "Stable", "{d}");
    assert_eq!(d["protocol_type"], "consumer", "{d}");
    assert_eq!(d["protocol"], "range", "{d}");
    let members = d["members"].as_array().expect("members");
    assert_eq!(members.len(), 1, "{d}");
    assert_eq!(members[0]["client_id"], "lag-checker", "{d}");
    assert!(
        members[0]["member_id"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{d}"
    );
    assert_eq!(
        members[0]["assignments"],
        json!([{"topic": "lagged", "partitions": [0, 1]}]),
        "{d}"
    );
    assert_eq!(d["offsets"].as_array().map(Vec::len), Some(2), "{d}");
    assert_eq!(group_row(&d, "lagged", 0), (2, 5, 3));
    assert_eq!(group_row(&d, "lagged", 1), (3, 3, 0));
    assert_eq!(d["total_lag"], 3, "{d}");
    assert_eq!(
        listed(&http),
        vec![json!({"group_id": group, "state": "Stable", "protocol_type": "consumer"})]
    );
    let m = http.metrics();
    let lag = |m: &str, p: i32| {
        metric(
            m,
            &format!("moldau_group_lag{{group=\"{group}\",topic=\"lagged\",partition=\"{p}\"}}"),
        )
    };
    assert_eq!((lag(&m, 0), lag(&m, 1)), (Some(3.0), Some(0.0)), "{m}");
    assert_eq!(
        metric(
            &m,
            &format!("moldau_group_committed_offset{{group=\"{group}\",topic=\"lagged\",partition=\"0\"}}")
        ),
        Some(2.0)
    );

    // The member leaves: the group is empty but keeps its offsets; new records raise
    // the lag exactly.
    drop(consumer);
    let deadline = Instant::now() + Duration::from_secs(30);
    let d = loop {
        let d = ok(http.get(&format!("/api/groups/{group}")));
        if d["state"] == "Empty" {
            break d;
        }
        assert!(
            Instant::now() < deadline,
            "the group did not become empty: {d}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(d["members"], json!([]), "{d}");
    assert_eq!(d["total_lag"], 3, "{d}");
    write(1, 4);
    let d = ok(http.get(&format!("/api/groups/{group}")));
    assert_eq!(group_row(&d, "lagged", 0), (2, 5, 3));
    assert_eq!(group_row(&d, "lagged", 1), (3, 7, 4));
    assert_eq!(d["total_lag"], 7, "{d}");
    assert_eq!(
        listed(&http),
        vec![json!({"group_id": group, "state": "Empty", "protocol_type": "consumer"})]
    );
    let m = http.metrics();
    assert_eq!((lag(&m, 0), lag(&m, 1)), (Some(3.0), Some(4.0)), "{m}");
    unknown("nobody");
}

#[test]
fn cluster_health_metrics_console_and_unknown_paths() {
    let broker = TestBroker::start();
    let http = Http::new(&broker);

    let cluster = ok(http.get("/api/cluster"));
    assert!(
        cluster["cluster_id"]
            .as_str()
            .is_some_and(|id| !id.is_empty()),
        "{cluster}"
    );
    let brokers = cluster["brokers"].as_array().expect("brokers");
    assert_eq!(brokers.len(), 1, "{cluster}");
    let port: i64 = broker
        .addr
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port");
    assert_eq!(brokers[0]["port"], port, "{cluster}");
    assert!(
        brokers[0]["host"].as_str().is_some_and(|h| !h.is_empty()),
        "{cluster}"
    );
    assert_eq!(cluster["controller_id"], brokers[0]["node_id"], "{cluster}");

    assert_eq!(http.get("/healthz"), (200, json!({"status": "ok"})));
    assert_eq!(http.get("/readyz"), (200, json!({"status": "ready"})));

    for path in [
        "/nope",
        "/api",
        "/api/nope",
        "/api/topics/x/y/z",
        "/produce/x",
    ] {
        let got = http.get(path);
        assert_error(&got, 404, "INVALID_REQUEST", INVALID_REQUEST);
        let message = got.1["error"]["message"].as_str().unwrap_or("");
        assert!(message.contains(path), "{message}");
    }

    // Metrics: requests by API, partition offsets, exact.
    let m = http.metrics();
    let produce_requests = |m: &str| metric(m, "moldau_requests_total{api=\"Produce\"}");
    assert_eq!(produce_requests(&m), Some(0.0), "nothing produced yet: {m}");
    assert_eq!(
        metric(
            &m,
            "moldau_partition_high_watermark{topic=\"m\",partition=\"0\"}"
        ),
        None
    );
    for i in 0..3 {
        let got = http.post(
            "/produce",
            &json!({"topic": "m", "payload": format!("p{i}")}),
        );
        assert_eq!(got, (200, json!({ "offset": i })));
    }
    let m = http.metrics();
    assert!(
        produce_requests(&m).is_some_and(|n| n >= 3.0),
        "{:?}",
        produce_requests(&m)
    );
    let hw = |m: &str| {
        metric(
            m,
            "moldau_partition_high_watermark{topic=\"m\",partition=\"0\"}",
        )
    };
    assert_eq!(hw(&m), Some(3.0));
    ok(http.post(
        "/api/topics/m/records",
        &json!({"records": [{"value": "x"}, {"value": "y"}]}),
    ));
    assert_eq!(hw(&http.metrics()), Some(5.0));

    // The console: the page, its script and stylesheet, compiled in.
    let (status, content_type, page) = http.raw("GET", "/", None);
    assert_eq!(status, 200);
    assert!(content_type.starts_with("text/html"), "{content_type}");
    assert!(page.contains("/console/app.js"), "{page}");
    let (status, content_type, script) = http.raw("GET", "/console/app.js", None);
    assert_eq!(status, 200);
    assert!(
        content_type.starts_with("text/javascript")
            || content_type.starts_with("application/javascript"),
        "{content_type}"
    );
    assert!(
        script.contains("/api/"),
        "the console should use the REST API"
    );
    let (status, content_type, _) = http.raw("GET", "/console/style.css", None);
    assert_eq!((status, content_type.starts_with("text/css")), (200, true));
    let (status, _, _) = http.raw("GET", "/console/missing.js", None);
    assert_eq!(status, 404);

    // A known path with a method it does not take.
    for (method, path) in [
        ("PUT", "/api/topics"),
        ("DELETE", "/produce"),
        ("POST", "/fetch"),
    ] {
        let (status, _, _) = http.raw(method, path, None);
        assert_eq!(status, 405, "{method} {path}");
    }
}

/// The broker answers Metadata for an invalid name with INVALID_TOPIC_EXCEPTION, and the
/// HTTP API passes it on (not 404 "does not exist" for a name that can never exist).
#[test]
fn produce_to_an_invalid_topic_name_is_invalid_topic_exception() {
    let broker = TestBroker::start();
    let http = Http::new(&broker);
    for name in ["bad name!", "a/b", ".."] {
        assert_error(
            &http.post("/produce", &json!({"topic": name, "payload": "x"})),
            400,
            "INVALID_TOPIC_EXCEPTION",
            INVALID_TOPIC_EXCEPTION,
        );
    }
}

/// Every error is JSON: a known path with the wrong method, axum's own rejections.
#[test]
fn wrong_method_is_a_json_error() {
    let broker = TestBroker::start();
    let http = Http::new(&broker);
    for (method, path) in [
        ("PUT", "/api/topics"),
        ("DELETE", "/produce"),
        ("POST", "/fetch"),
    ] {
        let (status, content_type, body) = http.raw(method, path, None);
        assert_eq!(status, 405, "{method} {path}");
        assert!(
            content_type.starts_with("application/json"),
            "{method} {path}: {content_type:?} {body:?}"
        );
        let body: Value = serde_json::from_str(&body).expect("JSON body");
        assert_error(&(status, body), 405, "INVALID_REQUEST", INVALID_REQUEST);
    }
    // axum's own rejections too: a path segment that is not UTF-8.
    let (status, content_type, body) = http.raw("GET", "/api/topics/%FF", None);
    assert!(
        content_type.starts_with("application/json"),
        "{content_type:?} {body:?}"
    );
    let body: Value = serde_json::from_str(&body).expect("JSON body");
    assert_error(&(status, body), 400, "INVALID_REQUEST", INVALID_REQUEST);
}

/// An open transaction is visible in the HTTP API and the CLI (state, producer id, open
/// partitions); its records are hidden from read_committed reads until it commits.
#[test]
fn transactions_are_visible_over_http_and_in_the_cli() {
    const TRANSACTIONAL_ID_NOT_FOUND: i64 = 105;
    let broker = TestBroker::start();
    let http = Http::new(&broker);
    let created = http.post("/api/topics", &json!({"name": "ledger", "partitions": 2}));
    assert_eq!(created.0, 201, "{created:?}");
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &broker.addr)
        .set("transactional.id", "ledger-writer")
        .create()
        .expect("transactional producer");
    producer
        .init_transactions(Duration::from_secs(30))
        .expect("init_transactions");
    producer.begin_transaction().expect("begin");
    for i in 0..3 {
        let value = format!("entry {i}");
        producer
            .send(
                BaseRecord::<(), _>::to("ledger")
                    .partition(1)
                    .payload(&value),
            )
            .expect("send");
    }
    producer.flush(Duration::from_secs(30)).expect("flush");

    let listed = ok(http.get("/api/transactions"));
    let row = listed["transactions"]
        .as_array()
        .expect("transactions")
        .iter()
        .find(|t| t["transactional_id"] == "ledger-writer")
        .cloned()
        .expect("listed");
    assert_eq!(row["state"], "Ongoing", "{listed}");
    let described = ok(http.get("/api/transactions/ledger-writer"));
    assert_eq!(described["state"], "Ongoing");
    assert_eq!(described["producer_id"], row["producer_id"]);
    assert_eq!(
        described["partitions"],
        json!([{"topic": "ledger", "partitions": [1]}])
    );
    assert!(described["start_time_ms"].as_i64().is_some_and(|t| t > 0));

    let cli = std::process::Command::new(env!("CARGO_BIN_EXE_moldau"))
        .args([
            "-b",
            &broker.addr,
            "transactions",
            "describe",
            "ledger-writer",
        ])
        .output()
        .expect("moldau transactions describe");
    assert!(
        cli.status.success(),
        "{}",
        String::from_utf8_lossy(&cli.stderr)
    );
    let table = String::from_utf8_lossy(&cli.stdout);
    let line = table.lines().nth(1).expect("a row");
    let cells: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(cells[..2], ["ledger-writer", "Ongoing"], "{table}");
    assert_eq!(cells.last(), Some(&"ledger-1"), "{table}");

    // Open: read_uncommitted sees the records, read_committed stops before them.
    let path = "/api/topics/ledger/records?partition=1&offset=0";
    assert_eq!(
        ok(http.get(path))["records"].as_array().map(Vec::len),
        Some(3)
    );
    let committed = ok(http.get(&format!("{path}&isolation=read_committed")));
    assert_eq!(committed["records"], json!([]), "{committed}");

    producer
        .commit_transaction(Duration::from_secs(30))
        .expect("commit");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let state = ok(http.get("/api/transactions/ledger-writer"))["state"].clone();
        if state == "CompleteCommit" {
            break;
        }
        assert!(Instant::now() < deadline, "still {state}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let committed = ok(http.get(&format!("{path}&isolation=read_committed")));
    let values: Vec<&str> = committed["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|r| r["value"].as_str().expect("value"))
        .collect();
    assert_eq!(values, ["entry 0", "entry 1", "entry 2"]);

    assert_error(
        &http.get("/api/transactions/nobody"),
        404,
        "TRANSACTIONAL_ID_NOT_FOUND",
        TRANSACTIONAL_ID_NOT_FOUND,
    );
}
