//! What a producer had acknowledged, for durability tests: each record's partition,
//! offset, key and value, from librdkafka's delivery reports.

use rdkafka::message::Message;
use rdkafka::producer::{
    BaseRecord, DeliveryResult, Producer, ProducerContext, PurgeConfig, ThreadedProducer,
};
use rdkafka::ClientContext;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Records by (topic, partition, offset): (key, value).
pub type Records = BTreeMap<(String, i32, i64), (Vec<u8>, Vec<u8>)>;

/// The acknowledged records.
pub type Acked = Arc<Mutex<Records>>;

/// A producer context that records each acknowledged record in `acked`; with
/// `POWER_DEBUG` set it prints librdkafka's log.
#[derive(Clone, Default)]
pub struct Deliveries {
    /// Every acknowledged record.
    pub acked: Acked,
    /// How many were acknowledged through this context.
    pub count: Arc<AtomicUsize>,
}

impl ClientContext for Deliveries {
    fn log(&self, _level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        if std::env::var_os("POWER_DEBUG").is_some() {
            eprintln!("[librdkafka] {fac}: {message}");
        }
    }
}
impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Ok(m) = result {
            let key = m.key().unwrap_or_default().to_vec();
            let value = m.payload().unwrap_or_default().to_vec();
            if let Ok(mut acked) = self.acked.lock() {
                acked.insert(
                    (m.topic().to_owned(), m.partition(), m.offset()),
                    (key, value),
                );
            }
            self.count.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The environment variable `name` as a number, or `default`.
pub fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One record to send: topic, partition, key, value.
pub type Outgoing = (&'static str, i32, Option<String>, Vec<u8>);

/// Sends `record(i)` for i = 0, 1, … through `producer` on a thread of its own until
/// `stop`, keeping at most about 200 records in flight; then purges what is still
/// queued or in flight (the broker is gone by then) and returns the values it sent.
pub fn send_until_stopped<C>(
    producer: ThreadedProducer<C>,
    stop: Arc<AtomicBool>,
    mut record: impl FnMut(u64) -> Outgoing + Send + 'static,
) -> JoinHandle<Vec<Vec<u8>>>
where
    C: ProducerContext<DeliveryOpaque = ()> + 'static,
{
    std::thread::spawn(move || {
        let mut values = Vec::new();
        let mut i = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let (topic, partition, key, value) = record(i);
            let mut out = BaseRecord::<str, [u8]>::to(topic)
                .payload(&value[..])
                .partition(partition);
            if let Some(key) = &key {
                out = out.key(key.as_str());
            }
            if producer.send(out).is_ok() {
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
}

/// Waits until `deliveries` counts `target` acknowledged records; after `limit`, panics
/// with `context` and whatever `diagnose` returns.
pub fn wait_acked(
    deliveries: &Deliveries,
    target: usize,
    limit: Duration,
    context: &str,
    diagnose: impl FnOnce() -> String,
) {
    let deadline = Instant::now() + limit;
    while deliveries.count.load(Ordering::Relaxed) < target {
        if Instant::now() > deadline {
            panic!(
                "{context}: {} of {target} records acknowledged in {limit:?}\n{}",
                deliveries.count.load(Ordering::Relaxed),
                diagnose()
            );
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// True for the errors a consumer reports while its brokers are down or restarting
/// (all brokers down, a transport failure): expected around a kill or a power cut, as
/// opposed to a corrupt batch or any other error.
pub fn is_disconnect(e: &rdkafka::error::KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode;
    matches!(
        e.rdkafka_error_code(),
        Some(RDKafkaErrorCode::AllBrokersDown | RDKafkaErrorCode::BrokerTransportFailure)
    )
}
