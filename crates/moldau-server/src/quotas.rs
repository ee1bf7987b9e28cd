//! Byte-rate quotas (`producer_byte_rate`, `consumer_byte_rate`; KIP-13, KIP-55), the
//! request quota (`request_percentage`; KIP-124) and the throttling Kafka applies for
//! them (KIP-219): the broker measures each quota entity's
//! rate over `quota.window.num` windows of `quota.window.size.seconds`, answers a request
//! that takes the rate over its quota at once with `throttle_time_ms`, and stops reading
//! from that connection for as long ("muting the channel").
//!
//! The rate is bytes over the time since the oldest kept window began, but never over
//! less than one window. Kafka's `Rate` pads a young sensor's span to
//! `quota.window.num - 1` windows instead, which lets a new client burst ten seconds'
//! worth at once and then throttles it in waves every time that burst leaves the window
//! (measured here: a 1 MB/s producer alternated between 0.5 and 1.4 MB/s over 10 s
//! spans); Moldau does not pad, so a client is held to its rate from its first second.
//! The throttle time is how long the entity must stay idle for its rate to come back to
//! the quota: `(rate - quota) / quota × span`.

use moldau_metadata::quota::{self, QuotaEntry};
use std::collections::{BTreeMap, HashMap, VecDeque};

/// One entity's rate: the amount recorded in each window (bytes, or percent-seconds of
/// thread time), oldest first.
#[derive(Debug, Default)]
struct Windows {
    samples: VecDeque<(u64, f64)>,
}

/// The sensor key of `max.connection.creation.rate` (a broker setting, not a client
/// quota; never in the active mask).
const BROKER_CONNECTION_RATE: &str = "max.connection.creation.rate";

/// Sensors kept before those idle for a whole measuring horizon are dropped.
const MAX_SENSORS: usize = 4096;

/// The sensor a client's usage is recorded in: its quota entity with each default
/// (`<default>`) replaced by the client's own name, so that a default quota holds every
/// user, client id or address to it separately, as Kafka's does (KIP-55).
fn sensor_name(entry: &QuotaEntry, user: &str, client_id: &str) -> String {
    entry
        .entity
        .iter()
        .map(|(t, n)| {
            let own = if t == quota::USER { user } else { client_id };
            format!("{t}={}", n.as_deref().unwrap_or(own))
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The bit of quota `key` in [`QuotaManager`]'s active mask (0 for an unknown key).
fn key_bit(key: &str) -> u8 {
    match key {
        quota::PRODUCER_BYTE_RATE => 1,
        quota::CONSUMER_BYTE_RATE => 2,
        quota::REQUEST_PERCENTAGE => 4,
        quota::CONNECTION_CREATION_RATE => 8,
        _ => 0,
    }
}

/// The rate sensors of every quota entity in use.
#[derive(Debug)]
pub struct QuotaManager {
    /// Which quota keys any configured quota sets ([`key_bit`]), from each applied
    /// metadata image: a request skips the work of a quota no one has.
    active: std::sync::atomic::AtomicU8,
    window_ms: u64,
    windows: usize,
    /// (quota key, [`sensor_name`]) → its windows.
    sensors: parking_lot::Mutex<HashMap<(&'static str, String), Windows>>,
}

impl QuotaManager {
    /// Sensors with `windows` samples (`quota.window.num`, ≥ 2) of `window_ms` each
    /// (`quota.window.size.seconds` × 1000).
    pub fn new(windows: usize, window_ms: u64) -> Self {
        Self {
            active: std::sync::atomic::AtomicU8::new(0),
            window_ms: window_ms.max(1),
            windows: windows.max(2),
            sensors: parking_lot::Mutex::new(HashMap::new()),
        }
    }

    /// Notes which quota keys the applied metadata's client quotas set.
    pub fn set_active(&self, quotas: &BTreeMap<String, QuotaEntry>) {
        let mask = quotas
            .values()
            .flat_map(|e| e.values.keys())
            .fold(0u8, |m, k| m | key_bit(k));
        self.active
            .store(mask, std::sync::atomic::Ordering::Release);
    }

    /// Whether any client quota sets `key` (`producer_byte_rate`, `request_percentage`,
    /// …): false means requests skip that quota's work entirely.
    pub fn is_active(&self, key: &str) -> bool {
        let bit = key_bit(key);
        bit != 0 && self.active.load(std::sync::atomic::Ordering::Acquire) & bit != 0
    }

    /// The length of one quota window, ms (`quota.window.size.seconds` × 1000).
    pub fn window_ms(&self) -> u64 {
        self.window_ms
    }

    /// Records `amount` for the client (`user` from its principal, `client_id`) against
    /// the quota `key` that applies to it in `quotas`: bytes for `producer_byte_rate`
    /// and `consumer_byte_rate`, percent-seconds of thread time for
    /// `request_percentage` (1 ms of thread time is 0.1). Returns the throttle time, ms
    /// (0 without a quota or under it).
    pub fn record(
        &self,
        quotas: &BTreeMap<String, QuotaEntry>,
        key: &'static str,
        user: &str,
        client_id: &str,
        amount: f64,
        now_ms: u64,
    ) -> u64 {
        match quota::lookup(quotas, user, client_id, key) {
            Some((entry, limit)) => {
                let sensor = sensor_name(entry, user, client_id);
                self.record_for(key, sensor, limit, amount, now_ms)
            }
            None => 0,
        }
    }

    /// Records a new connection from `ip` (canonical form) against the
    /// `connection_creation_rate` that applies to it (KIP-612). Returns 0 to accept it,
    /// or how long to hold it before closing it, ms (at most one window, as Kafka bounds
    /// it); a refused connection is taken back out of the rate, as Kafka does.
    pub fn record_connection(
        &self,
        quotas: &BTreeMap<String, QuotaEntry>,
        ip: &str,
        now_ms: u64,
    ) -> u64 {
        let Some((entry, limit)) = quota::lookup_ip(quotas, ip) else {
            return 0;
        };
        let key = quota::CONNECTION_CREATION_RATE;
        let sensor = sensor_name(entry, ip, ip);
        let ms = self.record_for(key, sensor.clone(), limit, 1.0, now_ms);
        if ms > 0 {
            self.take_back(key, sensor, 1.0);
        }
        ms.min(self.window_ms)
    }

    /// Records a new connection against a `max.connection.creation.rate` limit
    /// (connections per second; KIP-612) kept in sensor `sensor` (`broker`, or
    /// `listener=<name>`). Returns the throttle time, ms: how long the acceptor waits
    /// before accepting another connection (0 under the limit; at most one window, as
    /// Kafka bounds it).
    pub fn record_connection_creation(&self, sensor: &str, limit: usize, now_ms: u64) -> u64 {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let sensor = sensor.to_owned();
        let ms = self.record_for(BROKER_CONNECTION_RATE, sensor, limit, 1.0, now_ms);
        ms.min(self.window_ms)
    }

    fn record_for(
        &self,
        key: &'static str,
        sensor: String,
        limit: i64,
        amount: f64,
        now_ms: u64,
    ) -> u64 {
        let limit = limit.max(1) as f64;
        let horizon = self.window_ms * self.windows as u64;
        let mut sensors = self.sensors.lock();
        if sensors.len() >= MAX_SENSORS && !sensors.contains_key(&(key, sensor.clone())) {
            // Sensors of clients gone quiet for a whole horizon hold nothing.
            sensors.retain(|_, w| w.samples.back().is_some_and(|(s, _)| *s + horizon > now_ms));
        }
        let w = sensors.entry((key, sensor)).or_default();
        let start = now_ms - now_ms % self.window_ms;
        match w.samples.back_mut() {
            Some((s, b)) if *s == start => *b += amount,
            _ => w.samples.push_back((start, amount)),
        }
        while w
            .samples
            .front()
            .is_some_and(|(s, _)| *s + horizon <= now_ms)
        {
            w.samples.pop_front();
        }
        let total: f64 = w.samples.iter().map(|(_, b)| b).sum();
        let oldest = w.samples.front().map_or(start, |(s, _)| *s);
        // A wall clock stepped back must not underflow (a panic in the acceptor).
        let elapsed = now_ms.saturating_sub(oldest).max(self.window_ms) as f64;
        let rate = total * 1000.0 / elapsed;
        if rate <= limit {
            return 0;
        }
        ((rate - limit) / limit * elapsed) as u64
    }

    /// Takes back `bytes` recorded for a response that was not sent (a throttled fetch
    /// is answered empty, as Kafka does).
    pub fn unrecord(
        &self,
        quotas: &BTreeMap<String, QuotaEntry>,
        key: &'static str,
        user: &str,
        client_id: &str,
        bytes: usize,
    ) {
        if let Some((entry, _)) = quota::lookup(quotas, user, client_id, key) {
            self.take_back(key, sensor_name(entry, user, client_id), bytes as f64);
        }
    }

    fn take_back(&self, key: &'static str, sensor: String, amount: f64) {
        if let Some(w) = self.sensors.lock().get_mut(&(key, sensor)) {
            if let Some((_, b)) = w.samples.back_mut() {
                *b = (*b - amount).max(0.0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use moldau_metadata::quota::{QuotaEntity, PRODUCER_BYTE_RATE, USER};

    #[test]
    fn throttles_to_the_quota() {
        let entity: QuotaEntity = [(USER.to_owned(), Some("alice".to_owned()))].into();
        let quotas = BTreeMap::from([(
            quota::entity_key(&entity),
            QuotaEntry {
                entity,
                values: BTreeMap::from([(PRODUCER_BYTE_RATE.to_owned(), 1000)]),
            },
        )]);
        let m = QuotaManager::new(2, 1000);
        // Only the keys some quota sets are worked on: a byte-rate quota does not make
        // every request measure its thread time.
        m.set_active(&quotas);
        assert!(m.is_active(PRODUCER_BYTE_RATE));
        assert!(!m.is_active(quota::REQUEST_PERCENTAGE));
        assert!(!m.is_active(quota::CONNECTION_CREATION_RATE));
        // Under the quota: 500 bytes over the minimum one-window span.
        assert_eq!(
            m.record(&quotas, PRODUCER_BYTE_RATE, "alice", "c", 500.0, 10_000),
            0
        );
        // 3000 bytes within a second: 3000 B/s against 1000 → idle 2 s.
        let t = m.record(&quotas, PRODUCER_BYTE_RATE, "alice", "c", 2500.0, 10_500);
        assert_eq!(t, 2000);
        // Another user has no quota.
        assert_eq!(
            m.record(&quotas, PRODUCER_BYTE_RATE, "bob", "c", 1e9, 10_500),
            0
        );
        // A default user quota holds each user to it on their own (KIP-55).
        let entity: QuotaEntity = [(USER.to_owned(), None)].into();
        let defaults = BTreeMap::from([(
            quota::entity_key(&entity),
            QuotaEntry {
                entity,
                values: BTreeMap::from([(PRODUCER_BYTE_RATE.to_owned(), 1000)]),
            },
        )]);
        assert_eq!(
            m.record(&defaults, PRODUCER_BYTE_RATE, "carol", "c", 900.0, 10_500),
            0
        );
        assert_eq!(
            m.record(&defaults, PRODUCER_BYTE_RATE, "dave", "c", 900.0, 10_500),
            0,
            "dave's bytes are not carol's"
        );
        assert!(m.record(&defaults, PRODUCER_BYTE_RATE, "dave", "c", 900.0, 10_600) > 0);
        // Later windows push the old bytes out.
        assert_eq!(
            m.record(&quotas, PRODUCER_BYTE_RATE, "alice", "c", 100.0, 20_000),
            0
        );
    }
}
