//! Byte-rate quotas (`producer_byte_rate`, `consumer_byte_rate`; KIP-13, KIP-55) and the
//! throttling Kafka applies for them (KIP-219): the broker measures each quota entity's
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

/// One entity's rate: bytes per window, oldest first.
#[derive(Debug, Default)]
struct Windows {
    samples: VecDeque<(u64, u64)>,
}

/// The byte-rate sensors of every quota entity in use.
#[derive(Debug)]
pub struct QuotaManager {
    /// Whether any client quota is configured: without one, requests skip quota work
    /// (set from each applied metadata image).
    active: std::sync::atomic::AtomicBool,
    window_ms: u64,
    windows: usize,
    sensors: parking_lot::Mutex<HashMap<(&'static str, String), Windows>>,
}

impl QuotaManager {
    /// Sensors with `windows` samples (`quota.window.num`, ≥ 2) of `window_ms` each
    /// (`quota.window.size.seconds` × 1000).
    pub fn new(windows: usize, window_ms: u64) -> Self {
        Self {
            active: std::sync::atomic::AtomicBool::new(false),
            window_ms: window_ms.max(1),
            windows: windows.max(2),
            sensors: parking_lot::Mutex::new(HashMap::new()),
        }
    }

    /// Notes whether the applied metadata holds any client quota.
    pub fn set_active(&self, active: bool) {
        self.active
            .store(active, std::sync::atomic::Ordering::Release);
    }

    /// Whether any client quota is configured (false: nothing to record or throttle).
    pub fn is_active(&self) -> bool {
        self.active.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Records `bytes` for the client (`user` from its principal, `client_id`) against
    /// the quota `key` (`producer_byte_rate` or `consumer_byte_rate`) that applies to it
    /// in `quotas`. Returns the throttle time, ms (0 without a quota or under it).
    pub fn record(
        &self,
        quotas: &BTreeMap<String, QuotaEntry>,
        key: &'static str,
        user: &str,
        client_id: &str,
        bytes: usize,
        now_ms: u64,
    ) -> u64 {
        let Some((entry, limit)) = quota::lookup(quotas, user, client_id, key) else {
            return 0;
        };
        let limit = limit.max(1) as f64;
        let mut sensors = self.sensors.lock();
        let w = sensors
            .entry((key, quota::entity_key(&entry.entity)))
            .or_default();
        let start = now_ms - now_ms % self.window_ms;
        match w.samples.back_mut() {
            Some((s, b)) if *s == start => *b += bytes as u64,
            _ => w.samples.push_back((start, bytes as u64)),
        }
        let horizon = self.window_ms * self.windows as u64;
        while w
            .samples
            .front()
            .is_some_and(|(s, _)| *s + horizon <= now_ms)
        {
            w.samples.pop_front();
        }
        let total: u64 = w.samples.iter().map(|(_, b)| b).sum();
        let oldest = w.samples.front().map_or(start, |(s, _)| *s);
        let elapsed = (now_ms - oldest).max(self.window_ms) as f64;
        let rate = total as f64 * 1000.0 / elapsed;
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
        let Some((entry, _)) = quota::lookup(quotas, user, client_id, key) else {
            return;
        };
        if let Some(w) = self
            .sensors
            .lock()
            .get_mut(&(key, quota::entity_key(&entry.entity)))
        {
            if let Some((_, b)) = w.samples.back_mut() {
                *b = b.saturating_sub(bytes as u64);
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
        // Under the quota: 500 bytes over the minimum one-window span.
        assert_eq!(
            m.record(&quotas, PRODUCER_BYTE_RATE, "alice", "c", 500, 10_000),
            0
        );
        // 3000 bytes within a second: 3000 B/s against 1000 → idle 2 s.
        let t = m.record(&quotas, PRODUCER_BYTE_RATE, "alice", "c", 2500, 10_500);
        assert_eq!(t, 2000);
        // Another user has no quota.
        assert_eq!(
            m.record(&quotas, PRODUCER_BYTE_RATE, "bob", "c", 1 << 30, 10_500),
            0
        );
        // Later windows push the old bytes out.
        assert_eq!(
            m.record(&quotas, PRODUCER_BYTE_RATE, "alice", "c", 100, 20_000),
            0
        );
    }
}
