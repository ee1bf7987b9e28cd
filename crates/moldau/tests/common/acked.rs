//! What a producer had acknowledged, for durability tests: each record's partition,
//! offset, key and value, from librdkafka's delivery reports.

use rdkafka::message::Message;
use rdkafka::producer::{DeliveryResult, ProducerContext};
use rdkafka::ClientContext;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

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
