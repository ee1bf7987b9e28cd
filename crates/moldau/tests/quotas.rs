//! Client quotas against the real binary: a `producer_byte_rate` and a
//! `consumer_byte_rate` set with AlterClientQuotas hold librdkafka clients (the rdkafka
//! crate) to their rates, measured within 20%, while a client without a quota is not
//! held back. Without the throttle (no mute, no `throttle_time_ms`) the quota-bound
//! producer runs at the unbounded client's rate and the test fails.

mod common;

use common::wire::Conn;
use common::TestBroker;
use kafka_protocol::messages::alter_client_quotas_request::{EntityData, EntryData, OpData};
use kafka_protocol::messages::describe_client_quotas_request::ComponentData;
use kafka_protocol::messages::{
    AlterClientQuotasRequest, AlterClientQuotasResponse, ApiKey, DescribeClientQuotasRequest,
    DescribeClientQuotasResponse,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const RATE: f64 = 1_000_000.0;
const RECORD: usize = 10_000;

/// Counts acknowledged payload bytes.
#[derive(Clone, Default)]
struct Acked(Arc<AtomicU64>);

impl ClientContext for Acked {}
impl ProducerContext for Acked {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Ok(m) = result {
            self.0
                .fetch_add(m.payload().map_or(0, |p| p.len()) as u64, Ordering::Relaxed);
        }
    }
}

fn set_quota(addr: &str, client_id: &str, key: &str, value: f64) {
    let mut conn = Conn::open(addr);
    let req = AlterClientQuotasRequest::default().with_entries(vec![EntryData::default()
        .with_entity(vec![EntityData::default()
            .with_entity_type(StrBytes::from_static_str("client-id"))
            .with_entity_name(Some(StrBytes::from_string(client_id.into())))])
        .with_ops(vec![OpData::default()
            .with_key(StrBytes::from_string(key.into()))
            .with_value(value)])]);
    let resp: AlterClientQuotasResponse = conn.call(ApiKey::AlterClientQuotas, 1, &req);
    assert_eq!(resp.entries[0].error_code, 0, "{resp:?}");
}

/// Produces as fast as librdkafka lets it for `seconds` or until `cap` bytes are sent;
/// returns the acknowledged rate (bytes/s) after the first `warmup` seconds (when the
/// broker's measuring windows have filled).
fn produce_rate(
    addr: &str,
    client_id: &str,
    topic: &str,
    seconds: u64,
    warmup: u64,
    cap: u64,
) -> f64 {
    let acked = Acked::default();
    let producer: ThreadedProducer<Acked> = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("client.id", client_id)
        .set("acks", "1")
        .set("linger.ms", "5")
        .set("queue.buffering.max.kbytes", "4096")
        .create_with_context(acked.clone())
        .expect("producer");
    let payload = vec![b'q'; RECORD];
    let started = Instant::now();
    let mut after_warmup = None;
    let mut sent = 0u64;
    while started.elapsed() < Duration::from_secs(seconds) && sent < cap {
        if after_warmup.is_none() && started.elapsed() >= Duration::from_secs(warmup) {
            after_warmup = Some((Instant::now(), acked.0.load(Ordering::Relaxed)));
        }
        if producer
            .send(BaseRecord::<(), [u8]>::to(topic).payload(&payload[..]))
            .is_err()
        {
            std::thread::sleep(Duration::from_millis(2));
        } else {
            sent += RECORD as u64;
        }
    }
    if warmup > 0 {
        let (t0, b0) = after_warmup.expect("ran past the warm-up");
        let rate = (acked.0.load(Ordering::Relaxed) - b0) as f64 / t0.elapsed().as_secs_f64();
        let _ = producer.flush(Duration::from_secs(30));
        return rate;
    }
    let _ = producer.flush(Duration::from_secs(60));
    acked.0.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

#[test]
fn byte_rate_quotas_throttle_producers_and_consumers() {
    // Kafka's default windows (11 of 1 s); rates are measured after the first 3 s.
    let broker = TestBroker::start();
    let addr = broker.addr.clone();
    set_quota(&addr, "slow", "producer_byte_rate", RATE);
    set_quota(&addr, "slow-reader", "consumer_byte_rate", RATE);
    // Refused: a quota Moldau does not enforce.
    let mut conn = Conn::open(&addr);
    let bad: AlterClientQuotasResponse = conn.call(
        ApiKey::AlterClientQuotas,
        1,
        &AlterClientQuotasRequest::default().with_entries(vec![EntryData::default()
            .with_entity(vec![EntityData::default()
                .with_entity_type(StrBytes::from_static_str("user"))
                .with_entity_name(None)])
            .with_ops(vec![OpData::default()
                .with_key(StrBytes::from_static_str("request_percentage"))
                .with_value(50.0)])]),
    );
    assert_eq!(bad.entries[0].error_code, 42);
    let described: DescribeClientQuotasResponse = conn.call(
        ApiKey::DescribeClientQuotas,
        1,
        &DescribeClientQuotasRequest::default().with_components(vec![ComponentData::default()
            .with_entity_type(StrBytes::from_static_str("client-id"))
            .with_match_type(0)
            .with_match(Some(StrBytes::from_static_str("slow")))]),
    );
    let entries = described.entries.expect("entries");
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0].values[0].key.as_str(), "producer_byte_rate");
    assert_eq!(entries[0].values[0].value, RATE);

    let fast = produce_rate(&addr, "fast", "unbounded", 4, 0, 40_000_000);
    let slow = produce_rate(&addr, "slow", "bounded", 13, 3, u64::MAX);
    println!("producer without a quota: {fast:.0} B/s; with a {RATE} B/s quota: {slow:.0} B/s");
    assert!(
        (slow - RATE).abs() <= RATE * 0.2,
        "the quota-bound producer ran at {slow:.0} B/s, not within 20% of {RATE}"
    );
    assert!(
        fast > RATE * 3.0,
        "the unbounded producer ran at only {fast:.0} B/s"
    );

    // The consumer: up to 40 MB are there; read for 13 s with a 1 MB/s quota.
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &addr)
        .set("client.id", "slow-reader")
        .set("group.id", "quota-readers")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    consumer.subscribe(&["unbounded"]).expect("subscribe");
    let started = Instant::now();
    let mut at_two = None;
    let mut bytes = 0u64;
    while started.elapsed() < Duration::from_secs(13) {
        if at_two.is_none() && started.elapsed() >= Duration::from_secs(3) {
            at_two = Some((Instant::now(), bytes));
        }
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(50)) {
            bytes += m.payload().map_or(0, |p| p.len()) as u64;
        }
    }
    let (t0, b0) = at_two.expect("ran two seconds");
    let read = (bytes - b0) as f64 / t0.elapsed().as_secs_f64();
    println!("consumer with a {RATE} B/s quota: {read:.0} B/s");
    assert!(
        (read - RATE).abs() <= RATE * 0.2,
        "the quota-bound consumer read {read:.0} B/s, not within 20% of {RATE}"
    );
}
