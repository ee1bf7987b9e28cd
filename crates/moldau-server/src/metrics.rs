//! Prometheus metrics: counters the network layer bumps on the hot path, and gauges read
//! from the partitions and group coordinator when scraped.
//!
//! [`Broker::metrics_text`] renders everything in the Prometheus text exposition format
//! (version 0.0.4: `# HELP`, `# TYPE`, then `name{label="value"} number` lines, one
//! family's samples together); the HTTP layer serves it at `GET /metrics` with content
//! type `text/plain; version=0.0.4`.
//!
//! Recording a request costs about five relaxed atomic additions (count, bytes in and
//! out, histogram bucket, latency sum) on counters every connection shares, and two
//! reads of the monotonic clock; no lock is taken. Counters live in fixed arrays indexed by api
//! key, sized by [`moldau_protocol::apis::SUPPORTED`]. Histogram buckets are stored
//! per bucket (not cumulative) and summed when rendered, so `_count` always equals the
//! `+Inf` bucket even while requests complete during a scrape.
//!
//! Families (all prefixed `moldau_`):
//!
//! | name | type | labels |
//! |---|---|---|
//! | `requests_total` | counter | `api` |
//! | `request_errors_total` | counter | `api` |
//! | `request_duration_seconds` | histogram | `api` |
//! | `network_bytes_in_total`, `network_bytes_out_total` | counter | |
//! | `connections_active` | gauge | |
//! | `connections_total` | counter | |
//! | `failed_authentication_total` | counter | |
//! | `partition_log_start_offset`, `partition_log_end_offset`, `partition_high_watermark`, `partition_last_stable_offset` | gauge | `topic`, `partition` |
//! | `group_members` | gauge | `group` |
//! | `group_committed_offset`, `group_lag` | gauge | `group`, `topic`, `partition` |

use crate::broker::Broker;
use crate::partition::PartitionOffsets;
use kafka_protocol::messages::ApiKey;
use moldau_protocol::{apis, frame};
use std::fmt::Write as _;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// Buckets of `moldau_request_duration_seconds`: upper bound in nanoseconds and the same
/// bound as the `le` label (seconds). A `+Inf` bucket follows the last.
const BUCKETS: [(u64, &str); 14] = [
    (500_000, "0.0005"),
    (1_000_000, "0.001"),
    (2_500_000, "0.0025"),
    (5_000_000, "0.005"),
    (10_000_000, "0.01"),
    (25_000_000, "0.025"),
    (50_000_000, "0.05"),
    (100_000_000, "0.1"),
    (250_000_000, "0.25"),
    (500_000_000, "0.5"),
    (1_000_000_000, "1"),
    (2_500_000_000, "2.5"),
    (5_000_000_000, "5"),
    (10_000_000_000, "10"),
];

/// One more than the highest api key Moldau serves: the length of the per-API arrays.
const API_SLOTS: usize = {
    let mut max = 0;
    let mut i = 0;
    while i < apis::SUPPORTED.len() {
        let key = apis::SUPPORTED[i].key as i16 as usize;
        if key > max {
            max = key;
        }
        i += 1;
    }
    max + 1
};

/// The counters of one API.
struct ApiStats {
    requests: AtomicU64,
    errors: AtomicU64,
    /// Requests per duration bucket, not cumulative; the last is `+Inf` only.
    buckets: [AtomicU64; BUCKETS.len() + 1],
    /// Sum of the observed durations, ns.
    sum_nanos: AtomicU64,
}

impl ApiStats {
    const fn new() -> Self {
        ApiStats {
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            buckets: [const { AtomicU64::new(0) }; BUCKETS.len() + 1],
            sum_nanos: AtomicU64::new(0),
        }
    }

    fn observe(&self, elapsed: Duration) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        // `le` is inclusive: the first bucket whose bound is >= the value.
        let bucket = BUCKETS.partition_point(|&(bound, _)| bound < nanos);
        self.buckets[bucket].fetch_add(1, Relaxed);
        self.sum_nanos.fetch_add(nanos, Relaxed);
    }
}

/// The broker's counters, recorded by the network layer (one per broker, in
/// [`Broker::metrics`]).
pub struct Metrics {
    apis: [ApiStats; API_SLOTS],
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    connections_active: AtomicI64,
    connections_total: AtomicU64,
    failed_authentication_total: AtomicU64,
    /// ISR changes this broker, as a leader, got committed (see `cluster_metrics`).
    pub(crate) isr_shrinks: AtomicU64,
    pub(crate) isr_expands: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("bytes_in", &self.bytes_in.load(Relaxed))
            .field("bytes_out", &self.bytes_out.load(Relaxed))
            .field("connections_active", &self.connections_active.load(Relaxed))
            .finish_non_exhaustive()
    }
}

/// A request whose clock is running: from [`Metrics::start_request`] until its response
/// is ready ([`RequestTimer::time`]).
#[derive(Debug, Clone, Copy)]
pub struct RequestTimer {
    /// Index into the per-API arrays; `None` for an api key beyond them.
    slot: Option<usize>,
    started: Instant,
}

/// A request whose response is ready, to hand to [`Metrics::finish_request`].
#[derive(Debug, Clone, Copy)]
pub struct RequestDone {
    slot: Option<usize>,
    elapsed: Duration,
}

impl RequestDone {
    /// Time from [`Metrics::start_request`] until the response was ready.
    pub fn elapsed(&self) -> Duration {
        self.elapsed
    }
}

impl RequestTimer {
    /// Wraps the future that builds the response, so its output comes with the time the
    /// request took, taken when the response is ready (not when the connection gets to
    /// write it behind earlier, slower responses).
    pub fn time<F: Future + Unpin>(self, response: F) -> Timed<F> {
        Timed {
            inner: response,
            timer: self,
        }
    }
}

/// A response future and its request's clock: yields `(response, RequestDone)`.
#[derive(Debug)]
pub struct Timed<F> {
    inner: F,
    timer: RequestTimer,
}

impl<F: Future + Unpin> Future for Timed<F> {
    type Output = (F::Output, RequestDone);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        Pin::new(&mut this.inner).poll(cx).map(|out| {
            let done = RequestDone {
                slot: this.timer.slot,
                elapsed: this.timer.started.elapsed(),
            };
            (out, done)
        })
    }
}

/// Counts a connection as active until dropped (see [`Metrics::connection_opened`]).
#[must_use = "the connection counts as active only while the guard lives"]
#[derive(Debug)]
pub struct ConnectionGuard<'a> {
    metrics: &'a Metrics,
}

impl Drop for ConnectionGuard<'_> {
    fn drop(&mut self) {
        self.metrics.connections_active.fetch_sub(1, Relaxed);
    }
}

impl Metrics {
    /// All counters at zero.
    pub const fn new() -> Self {
        Metrics {
            apis: [const { ApiStats::new() }; API_SLOTS],
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            connections_active: AtomicI64::new(0),
            connections_total: AtomicU64::new(0),
            failed_authentication_total: AtomicU64::new(0),
            isr_shrinks: AtomicU64::new(0),
            isr_expands: AtomicU64::new(0),
        }
    }

    /// A client connection was accepted: counts it in `moldau_connections_total` and in
    /// `moldau_connections_active` until the guard is dropped.
    pub fn connection_opened(&self) -> ConnectionGuard<'_> {
        self.connections_total.fetch_add(1, Relaxed);
        self.connections_active.fetch_add(1, Relaxed);
        ConnectionGuard { metrics: self }
    }

    /// A SASL authentication failed (Kafka's `failed-authentication-total`).
    pub fn record_failed_authentication(&self) {
        self.failed_authentication_total.fetch_add(1, Relaxed);
    }

    /// A request frame was read (`frame` is the frame body, without its 4-byte size
    /// prefix): counts its bytes, prefix included, in `moldau_network_bytes_in_total`
    /// and the request in `moldau_requests_total` under its api key, and starts its clock.
    pub fn start_request(&self, frame: &[u8]) -> RequestTimer {
        self.bytes_in
            .fetch_add((frame::SIZE_PREFIX + frame.len()) as u64, Relaxed);
        let slot = frame::peek_header(frame)
            .ok()
            .and_then(|h| usize::try_from(h.api_key).ok())
            .filter(|&k| k < API_SLOTS);
        if let Some(slot) = slot {
            self.apis[slot].requests.fetch_add(1, Relaxed);
        }
        RequestTimer {
            slot,
            started: Instant::now(),
        }
    }

    /// The request was refused without a response (malformed, unsupported version):
    /// counts it in `moldau_request_errors_total`.
    pub fn reject_request(&self, timer: RequestTimer) {
        if let Some(slot) = timer.slot {
            self.apis[slot].errors.fetch_add(1, Relaxed);
        }
    }

    /// The request's response is ready: observes its duration in
    /// `moldau_request_duration_seconds`; `failed` (the response could not be built and
    /// the connection closes) also counts it in `moldau_request_errors_total`.
    pub fn finish_request(&self, done: RequestDone, failed: bool) {
        if let Some(slot) = done.slot {
            let stats = &self.apis[slot];
            stats.observe(done.elapsed);
            if failed {
                stats.errors.fetch_add(1, Relaxed);
            }
        }
    }

    /// Response bytes (size prefix included) handed to the socket, for
    /// `moldau_network_bytes_out_total`.
    pub fn record_bytes_out(&self, bytes: usize) {
        self.bytes_out.fetch_add(bytes as u64, Relaxed);
    }

    /// Appends the request, network and connection families.
    fn render(&self, out: &mut String) {
        let apis: Vec<(String, &ApiStats)> = (0..API_SLOTS)
            .filter_map(|slot| {
                let key = ApiKey::try_from(slot as i16).ok()?;
                let stats = &self.apis[slot];
                let shown = apis::range(key).is_some() || stats.requests.load(Relaxed) > 0;
                shown.then(|| (format!("{key:?}"), stats))
            })
            .collect();

        family(
            out,
            "moldau_requests_total",
            "counter",
            "Requests received, by Kafka API (counted when the frame is read).",
        );
        for (api, stats) in &apis {
            sample(
                out,
                "moldau_requests_total",
                &[("api", api)],
                stats.requests.load(Relaxed),
            );
        }

        family(
            out,
            "moldau_request_errors_total",
            "counter",
            "Requests that got no response and closed the connection (undecodable, unsupported \
             version, or a response that could not be encoded), by Kafka API. Error codes \
             inside responses are not counted.",
        );
        for (api, stats) in &apis {
            sample(
                out,
                "moldau_request_errors_total",
                &[("api", api)],
                stats.errors.load(Relaxed),
            );
        }

        family(
            out,
            "moldau_request_duration_seconds",
            "histogram",
            "Time from a request frame being read until its response is ready to write, seconds, by Kafka API.",
        );
        for (api, stats) in &apis {
            let mut cumulative = 0u64;
            for (i, count) in stats.buckets.iter().enumerate() {
                cumulative += count.load(Relaxed);
                let le = BUCKETS.get(i).map_or("+Inf", |&(_, le)| le);
                sample(
                    out,
                    "moldau_request_duration_seconds_bucket",
                    &[("api", api), ("le", le)],
                    cumulative,
                );
            }
            let sum = stats.sum_nanos.load(Relaxed) as f64 / 1e9;
            sample(
                out,
                "moldau_request_duration_seconds_sum",
                &[("api", api)],
                sum,
            );
            sample(
                out,
                "moldau_request_duration_seconds_count",
                &[("api", api)],
                cumulative,
            );
        }

        single(
            out,
            "moldau_network_bytes_in_total",
            "counter",
            "Request bytes read from Kafka clients, size prefixes included.",
            self.bytes_in.load(Relaxed),
        );
        single(
            out,
            "moldau_network_bytes_out_total",
            "counter",
            "Response bytes written to Kafka clients, size prefixes included.",
            self.bytes_out.load(Relaxed),
        );
        single(
            out,
            "moldau_connections_active",
            "gauge",
            "Open Kafka client connections.",
            self.connections_active.load(Relaxed),
        );
        single(
            out,
            "moldau_connections_total",
            "counter",
            "Kafka client connections accepted.",
            self.connections_total.load(Relaxed),
        );
        single(
            out,
            "moldau_failed_authentication_total",
            "counter",
            "SASL authentications that failed (wrong password, unknown user or mechanism).",
            self.failed_authentication_total.load(Relaxed),
        );
    }
}

/// Offsets of one hosted partition at scrape time.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PartitionSample {
    topic: String,
    partition: i32,
    offsets: PartitionOffsets,
}

/// One group known to this broker's group coordinator, at scrape time.
#[derive(Debug, Clone, PartialEq, Eq)]
struct GroupSample {
    group: String,
    /// Joined members (pending joiners excluded).
    members: usize,
    /// Committed offsets, by topic and partition.
    offsets: Vec<CommittedSample>,
}

/// One committed offset and the high watermark of its partition (if hosted here).
#[derive(Debug, Clone, PartialEq, Eq)]
struct CommittedSample {
    topic: String,
    partition: i32,
    committed: i64,
    high_watermark: Option<i64>,
}

/// Every hosted partition's offsets, by topic and partition (internal topics included).
fn partition_samples(broker: &Broker) -> Vec<PartitionSample> {
    let mut samples: Vec<PartitionSample> = broker
        .replicas
        .all()
        .into_iter()
        .map(|p| PartitionSample {
            topic: p.tp.topic.to_string(),
            partition: p.tp.partition,
            offsets: p.offsets(),
        })
        .collect();
    samples.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    samples
}

/// Every group of every local group coordinator shard, by group id. Each shard's lock is
/// held only while its groups are copied; high watermarks are read after it is released
/// (the coordinator appends under its shard lock, so partition locks come second).
fn group_samples(broker: &Broker) -> Vec<GroupSample> {
    let mut groups = Vec::new();
    for shard in broker.groups.shards() {
        broker.groups.with(&shard, |state, _now| {
            for listing in state.list_groups(&[], &[]) {
                let members = state.member_count(&listing.group_id);
                let offsets = state.fetch_offsets(&listing.group_id, None);
                groups.push((listing.group_id, members, offsets));
            }
        });
    }
    let mut samples: Vec<GroupSample> = groups
        .into_iter()
        .map(|(group, members, offsets)| GroupSample {
            group,
            members,
            offsets: offsets
                .into_iter()
                .map(|o| CommittedSample {
                    high_watermark: broker
                        .replicas
                        .get(&o.topic, o.partition)
                        .map(|p| p.high_watermark()),
                    topic: o.topic,
                    partition: o.partition,
                    committed: o.offset,
                })
                .collect(),
        })
        .collect();
    samples.sort_by(|a, b| a.group.cmp(&b.group));
    samples
}

/// Appends the per-partition offset families.
fn render_partitions(out: &mut String, partitions: &[PartitionSample]) {
    type Pick = fn(&PartitionOffsets) -> i64;
    let families: [(&str, &str, Pick); 4] = [
        (
            "moldau_partition_log_start_offset",
            "First offset still in the partition's log (inclusive).",
            |o| o.log_start_offset,
        ),
        (
            "moldau_partition_log_end_offset",
            "Offset the partition's next record will get (exclusive end of the log).",
            |o| o.log_end_offset,
        ),
        (
            "moldau_partition_high_watermark",
            "End of what consumers may read in the partition (exclusive offset).",
            |o| o.high_watermark,
        ),
        (
            "moldau_partition_last_stable_offset",
            "End of what read_committed consumers may read in the partition (exclusive offset).",
            |o| o.last_stable_offset,
        ),
    ];
    for (name, help, pick) in families {
        family(out, name, "gauge", help);
        for p in partitions {
            let partition = p.partition.to_string();
            sample(
                out,
                name,
                &[("topic", &p.topic), ("partition", &partition)],
                pick(&p.offsets),
            );
        }
    }
}

/// Appends the consumer-group families. Lag is left out where the partition is not
/// hosted here (its high watermark is unknown) or the committed offset is negative.
fn render_groups(out: &mut String, groups: &[GroupSample]) {
    family(
        out,
        "moldau_group_members",
        "gauge",
        "Joined members of each consumer group this broker coordinates.",
    );
    for g in groups {
        sample(
            out,
            "moldau_group_members",
            &[("group", &g.group)],
            g.members,
        );
    }
    family(
        out,
        "moldau_group_committed_offset",
        "gauge",
        "Committed offset (next offset to consume) of each group and partition.",
    );
    for g in groups {
        for o in &g.offsets {
            let partition = o.partition.to_string();
            let labels = [
                ("group", g.group.as_str()),
                ("topic", &o.topic),
                ("partition", &partition),
            ];
            sample(out, "moldau_group_committed_offset", &labels, o.committed);
        }
    }
    family(
        out,
        "moldau_group_lag",
        "gauge",
        "Offsets between a group's committed offset and the partition's high watermark (never negative).",
    );
    for g in groups {
        for o in &g.offsets {
            let Some(hw) = o.high_watermark.filter(|_| o.committed >= 0) else {
                continue;
            };
            let partition = o.partition.to_string();
            let labels = [
                ("group", g.group.as_str()),
                ("topic", &o.topic),
                ("partition", &partition),
            ];
            sample(
                out,
                "moldau_group_lag",
                &labels,
                hw.saturating_sub(o.committed).max(0),
            );
        }
    }
}

/// The whole exposition for `broker` (see [`Broker::metrics_text`]).
pub(crate) fn render(broker: &Broker) -> String {
    let partitions = partition_samples(broker);
    let groups = group_samples(broker);
    let mut out = String::with_capacity(16 * 1024 + 256 * partitions.len());
    broker.metrics.render(&mut out);
    render_partitions(&mut out, &partitions);
    render_groups(&mut out, &groups);
    crate::cluster_metrics::render(&mut out, broker);
    out
}

/// Writes a family's `# HELP` and `# TYPE` lines. `help` must hold no backslash or
/// newline (all callers pass constants).
pub(crate) fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Writes a family of one unlabelled sample.
pub(crate) fn single(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    value: impl std::fmt::Display,
) {
    family(out, name, kind, help);
    sample(out, name, &[], value);
}

/// Writes one sample line, escaping the label values.
pub(crate) fn sample(
    out: &mut String,
    name: &str,
    labels: &[(&str, &str)],
    value: impl std::fmt::Display,
) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (label, value)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(label);
            out.push_str("=\"");
            escape_label_value(out, value);
            out.push('"');
        }
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

/// Appends `value` escaped as the text format requires inside a label value's quotes:
/// `\` → `\\`, `"` → `\"`, newline → `\n`.
fn escape_label_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BrokerConfig;
    use crate::replica_manager::now_ms;
    use moldau_coordinator::{CommitPartition, OffsetCommit};
    use moldau_metadata::controller::{MetadataOp, NewTopic};
    use moldau_protocol::batch;
    use moldau_storage::AppendOrigin;
    use std::collections::{BTreeMap, HashSet};

    /// Checks the text is well-formed exposition: each family has HELP then TYPE before
    /// its samples, appears once, and its samples are contiguous and carry its name (or
    /// a histogram suffix of it). Returns the sample lines.
    fn check_exposition(text: &str) -> Vec<&str> {
        let mut seen = HashSet::new();
        let mut current: Option<(&str, &str)> = None;
        let mut samples = Vec::new();
        let mut lines = text.lines().peekable();
        while let Some(line) = lines.next() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().expect("name");
                assert!(seen.insert(name), "family {name} appears twice");
                let kind_line = lines.next().expect("TYPE after HELP");
                let kind = kind_line
                    .strip_prefix(&format!("# TYPE {name} "))
                    .expect("TYPE of the same family");
                current = Some((name, kind));
                continue;
            }
            let (name, kind) = current.expect("a sample before any family");
            let metric = line.split(['{', ' ']).next().expect("metric");
            let ok = metric == name
                || (kind == "histogram"
                    && ["_bucket", "_sum", "_count"]
                        .iter()
                        .any(|s| metric == format!("{name}{s}")));
            assert!(ok, "{metric} inside family {name}");
            let value = line.rsplit(' ').next().expect("value");
            assert!(value.parse::<f64>().is_ok(), "bad value in {line}");
            samples.push(line);
        }
        samples
    }

    #[test]
    fn label_values_are_escaped() {
        let mut out = String::new();
        sample(&mut out, "m", &[("a", "x\\y\"z\nw"), ("b", "plain")], 7);
        assert_eq!(out, "m{a=\"x\\\\y\\\"z\\nw\",b=\"plain\"} 7\n");
        let mut out = String::new();
        sample(&mut out, "m", &[], 1.5);
        assert_eq!(out, "m 1.5\n");
    }

    #[test]
    fn histogram_buckets_are_cumulative_with_sum_and_count() {
        let m = Metrics::new();
        let produce = ApiKey::Produce as usize;
        for (slot, elapsed) in [
            (produce, Duration::from_micros(200)), // <= 0.0005
            (produce, Duration::from_micros(500)), // exactly 0.0005: le is inclusive
            (produce, Duration::from_millis(3)),   // <= 0.005
            (produce, Duration::from_secs(60)),    // +Inf only
            (ApiKey::Fetch as usize, Duration::from_millis(1)),
        ] {
            m.finish_request(
                RequestDone {
                    slot: Some(slot),
                    elapsed,
                },
                false,
            );
        }
        let mut out = String::new();
        m.render(&mut out);
        let samples = check_exposition(&out);
        let has = |line: &str| samples.contains(&line);
        let b = |le: &str, n: u64| {
            format!("moldau_request_duration_seconds_bucket{{api=\"Produce\",le=\"{le}\"}} {n}")
        };
        assert!(has(&b("0.0005", 2)), "{out}");
        assert!(has(&b("0.001", 2)));
        assert!(has(&b("0.0025", 2)));
        assert!(has(&b("0.005", 3)));
        assert!(has(&b("10", 3)));
        assert!(has(&b("+Inf", 4)));
        assert!(has(
            "moldau_request_duration_seconds_count{api=\"Produce\"} 4"
        ));
        assert!(has(
            "moldau_request_duration_seconds_sum{api=\"Produce\"} 60.0037"
        ));
        assert!(has(
            "moldau_request_duration_seconds_bucket{api=\"Fetch\",le=\"0.0005\"} 0"
        ));
        assert!(has(
            "moldau_request_duration_seconds_bucket{api=\"Fetch\",le=\"0.001\"} 1"
        ));
        // Every served API is listed, even before its first request.
        assert!(has(
            "moldau_requests_total{api=\"DescribeTopicPartitions\"} 0"
        ));
        assert_eq!(
            samples
                .iter()
                .filter(
                    |l| l.starts_with("moldau_request_duration_seconds_bucket{api=\"Heartbeat\"")
                )
                .count(),
            BUCKETS.len() + 1
        );
    }

    #[test]
    fn requests_bytes_connections_and_errors_are_counted() {
        let m = Metrics::new();
        // A Metadata (key 3) v12 header prefix, correlation id 1, and 4 more bytes.
        let frame = [0u8, 3, 0, 12, 0, 0, 0, 1, 0, 0, 0, 0];
        let timer = m.start_request(&frame);
        let fut = timer.time(std::future::ready(()));
        let ((), done) = futures::executor::block_on(fut);
        m.finish_request(done, false);
        m.reject_request(m.start_request(&frame));
        // An api key past every served one counts bytes only.
        let _ = m.start_request(&[0x7f, 0, 0, 0, 0, 0, 0, 0]);
        m.record_bytes_out(100);
        let guard = m.connection_opened();
        let _second = m.connection_opened();
        drop(guard);
        let mut out = String::new();
        m.render(&mut out);
        let samples = check_exposition(&out);
        for line in [
            "moldau_requests_total{api=\"Metadata\"} 2",
            "moldau_request_errors_total{api=\"Metadata\"} 1",
            "moldau_request_duration_seconds_count{api=\"Metadata\"} 1",
            "moldau_network_bytes_in_total 44",
            "moldau_network_bytes_out_total 100",
            "moldau_connections_active 1",
            "moldau_connections_total 2",
        ] {
            assert!(samples.contains(&line), "missing {line} in\n{out}");
        }
    }

    #[test]
    fn group_rendering_on_plain_data() {
        let groups = [GroupSample {
            group: "g\"1".into(),
            members: 2,
            offsets: vec![
                CommittedSample {
                    topic: "t".into(),
                    partition: 0,
                    committed: 5,
                    high_watermark: Some(12),
                },
                // Committed past the high watermark (e.g. after truncation): lag 0.
                CommittedSample {
                    topic: "t".into(),
                    partition: 1,
                    committed: 9,
                    high_watermark: Some(4),
                },
                // Partition not hosted here: no lag.
                CommittedSample {
                    topic: "u".into(),
                    partition: 0,
                    committed: 3,
                    high_watermark: None,
                },
            ],
        }];
        let mut out = String::new();
        render_groups(&mut out, &groups);
        let samples = check_exposition(&out);
        assert_eq!(
            samples,
            [
                "moldau_group_members{group=\"g\\\"1\"} 2",
                "moldau_group_committed_offset{group=\"g\\\"1\",topic=\"t\",partition=\"0\"} 5",
                "moldau_group_committed_offset{group=\"g\\\"1\",topic=\"t\",partition=\"1\"} 9",
                "moldau_group_committed_offset{group=\"g\\\"1\",topic=\"u\",partition=\"0\"} 3",
                "moldau_group_lag{group=\"g\\\"1\",topic=\"t\",partition=\"0\"} 7",
                "moldau_group_lag{group=\"g\\\"1\",topic=\"t\",partition=\"1\"} 0",
            ]
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn broker_renders_partition_offsets_and_group_lag() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = BrokerConfig::from_properties(BTreeMap::from([
            (
                "log.dirs".to_owned(),
                dir.path().join("data").display().to_string(),
            ),
            ("listeners".to_owned(), "PLAINTEXT://127.0.0.1:0".to_owned()),
            ("offsets.topic.num.partitions".to_owned(), "1".to_owned()),
        ]))
        .expect("config");
        let server = crate::Server::bind(config).await.expect("start");
        let broker = server.broker().clone();
        let topic = NewTopic {
            name: "events".into(),
            num_partitions: 2,
            replication_factor: 1,
            configs: BTreeMap::new(),
            assignments: None,
        };
        broker
            .controller
            .submit(MetadataOp::CreateTopic(topic), Duration::from_secs(10))
            .await
            .expect("topic created");
        let partition = broker.replicas.get("events", 0).expect("partition hosted");
        let records: [batch::KeyValue<'_>; 3] =
            [(None, Some(b"a")), (None, Some(b"b")), (None, Some(b"c"))];
        let mut bytes = batch::build_batch(0, now_ms(), &records);
        partition
            .append(&mut bytes, None, now_ms(), AppendOrigin::Client)
            .expect("append");

        broker.groups.ensure_topic(&broker).await;
        let shard = broker.groups.shard_for("readers").expect("shard");
        let commit = OffsetCommit {
            group_id: "readers".into(),
            generation_id: -1,
            retention_time_ms: -1,
            api_version: 8,
            partitions: vec![CommitPartition {
                topic: "events".into(),
                partition: 0,
                offset: 1,
                leader_epoch: -1,
                metadata: None,
            }],
            ..OffsetCommit::default()
        };
        broker
            .groups
            .call(&shard, |state, now, reply| state.commit(now, commit, reply))
            .await
            .expect("commit answered");

        let text = broker.metrics_text();
        let samples = check_exposition(&text);
        for line in [
            "moldau_partition_log_start_offset{topic=\"events\",partition=\"0\"} 0",
            "moldau_partition_log_end_offset{topic=\"events\",partition=\"0\"} 3",
            "moldau_partition_high_watermark{topic=\"events\",partition=\"0\"} 3",
            "moldau_partition_last_stable_offset{topic=\"events\",partition=\"0\"} 3",
            "moldau_partition_log_end_offset{topic=\"events\",partition=\"1\"} 0",
            "moldau_partition_log_end_offset{topic=\"__consumer_offsets\",partition=\"0\"} 1",
            "moldau_group_members{group=\"readers\"} 0",
            "moldau_group_committed_offset{group=\"readers\",topic=\"events\",partition=\"0\"} 1",
            "moldau_group_lag{group=\"readers\",topic=\"events\",partition=\"0\"} 2",
            "moldau_connections_active 0",
        ] {
            assert!(samples.contains(&line), "missing {line} in\n{text}");
        }
        broker.shutdown().expect("shutdown");
    }

    /// The network layer's hooks, through a real socket: one ApiVersions v0 request.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn network_layer_counts_requests_bytes_and_connections() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let dir = tempfile::tempdir().expect("tempdir");
        let config = BrokerConfig::from_properties(BTreeMap::from([
            (
                "log.dirs".to_owned(),
                dir.path().join("data").display().to_string(),
            ),
            ("listeners".to_owned(), "PLAINTEXT://127.0.0.1:0".to_owned()),
        ]))
        .expect("config");
        let server = crate::Server::bind(config).await.expect("bind");
        let addr = server.local_addr().expect("broker listener");
        let broker = server.broker().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn(server.run(async {
            let _ = stopped.await;
        }));

        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        // ApiVersions (18) v0, correlation id 7, null client id; the v0 body is empty.
        let request = [0u8, 0, 0, 10, 0, 18, 0, 0, 0, 0, 0, 7, 0xff, 0xff];
        stream.write_all(&request).await.expect("send");
        let size = stream.read_i32().await.expect("response size");
        let mut body = vec![0u8; usize::try_from(size).expect("size")];
        stream.read_exact(&mut body).await.expect("response");
        assert_eq!(body[..4], 7i32.to_be_bytes());

        let text = broker.metrics_text();
        let samples = check_exposition(&text);
        for line in [
            "moldau_requests_total{api=\"ApiVersions\"} 1".to_owned(),
            "moldau_request_errors_total{api=\"ApiVersions\"} 0".to_owned(),
            "moldau_request_duration_seconds_count{api=\"ApiVersions\"} 1".to_owned(),
            "moldau_request_duration_seconds_bucket{api=\"ApiVersions\",le=\"+Inf\"} 1".to_owned(),
            "moldau_network_bytes_in_total 14".to_owned(),
            format!("moldau_network_bytes_out_total {}", 4 + size),
            "moldau_connections_active 1".to_owned(),
            "moldau_connections_total 1".to_owned(),
        ] {
            assert!(
                samples.contains(&line.as_str()),
                "missing {line} in\n{text}"
            );
        }

        drop(stream);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !broker
            .metrics_text()
            .contains("\nmoldau_connections_active 0\n")
        {
            assert!(
                Instant::now() < deadline,
                "connection never counted as closed"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let _ = stop.send(());
        running.await.expect("server task").expect("clean shutdown");
    }
}
