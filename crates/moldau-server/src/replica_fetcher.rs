//! Replica fetchers (Kafka's `ReplicaFetcherThread`): one task per leader broker this
//! broker follows partitions of. Each sends the normal Fetch API (`replica_id` set to
//! this broker) over the inter-broker listener for all its partitions at once, appends
//! the leader's batches as they are (same offsets, same bytes), fsyncs them, and only
//! then fetches on: the fetch offset a follower sends is its durable log end offset,
//! which is what the leader counts for the high watermark.
//!
//! Each fetch carries `current_leader_epoch` and `last_fetched_epoch` (KIP-320,
//! KIP-595 style); a `diverging_epoch` answer makes the follower truncate its divergent
//! tail (KIP-101/KIP-279) before it fetches on, and the next fetch is checked again.

use crate::config::ClusterConfig;
use crate::inter_broker::KafkaConn;
use crate::partition::Partition;
use crate::replica_manager::now_ms;
use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::{ApiKey, BrokerId, FetchRequest, FetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use moldau_metadata::quorum::MetadataView;
use moldau_protocol::error::ResponseError;
use moldau_types::TopicPartition;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// The Fetch version followers send (v12: diverging epochs, topic names).
const FETCH_VERSION: i16 = 12;
/// Backoff after the leader says it does not know the new leader epoch yet.
const EPOCH_BACKOFF: Duration = Duration::from_millis(50);

/// One followed partition.
struct FetchState {
    partition: Arc<Partition>,
    leader_epoch: i32,
    /// Not fetched before this instant (after an error).
    delayed_until: Option<Instant>,
}

struct Fetcher {
    partitions: Arc<Mutex<HashMap<TopicPartition, FetchState>>>,
    wake: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

/// Settings of the fetchers (`replica.fetch.*`, `replica.socket.timeout.ms`).
#[derive(Debug, Clone)]
pub struct FetcherConfig {
    local: i32,
    listener: String,
    max_wait_ms: i32,
    min_bytes: i32,
    max_bytes: i32,
    partition_max_bytes: i32,
    backoff: Duration,
    timeout: Duration,
    security: moldau_client::security::Security,
}

impl FetcherConfig {
    /// From the broker's cluster settings.
    pub fn new(local: i32, c: &ClusterConfig) -> Self {
        Self {
            local,
            listener: c.inter_broker_listener_name.clone(),
            security: c.inter_broker_client.clone(),
            max_wait_ms: c.replica_fetch_wait_max_ms,
            min_bytes: c.replica_fetch_min_bytes,
            max_bytes: c.replica_fetch_response_max_bytes,
            partition_max_bytes: c.replica_fetch_max_bytes,
            backoff: Duration::from_millis(c.replica_fetch_backoff_ms),
            timeout: Duration::from_millis(c.replica_socket_timeout_ms).max(Duration::from_millis(
                c.replica_fetch_wait_max_ms as u64 + 1_000,
            )),
        }
    }
}

/// Every fetcher of this broker.
pub struct ReplicaFetchers {
    config: FetcherConfig,
    view: MetadataView,
    fetchers: Mutex<HashMap<i32, Fetcher>>,
}

impl ReplicaFetchers {
    /// No fetchers yet.
    pub fn new(config: FetcherConfig, view: MetadataView) -> Self {
        Self {
            config,
            view,
            fetchers: Mutex::new(HashMap::new()),
        }
    }

    /// Makes the fetchers follow exactly `follows` (partition, leader, leader epoch):
    /// partitions move between fetchers when their leader changes, a new epoch clears a
    /// partition's error backoff, and a fetcher left with nothing stops.
    pub fn update(&self, follows: Vec<(Arc<Partition>, i32, i32)>) {
        let mut wanted: HashMap<i32, Vec<(Arc<Partition>, i32)>> = HashMap::new();
        for (p, leader, epoch) in follows {
            if leader >= 0 && leader != self.config.local {
                wanted.entry(leader).or_default().push((p, epoch));
            }
        }
        let mut fetchers = self.fetchers.lock();
        fetchers.retain(|leader, f| {
            let keep = wanted.contains_key(leader);
            if !keep {
                f.task.abort();
            }
            keep
        });
        for (leader, partitions) in wanted {
            let fetcher = fetchers.entry(leader).or_insert_with(|| {
                let partitions: Arc<Mutex<HashMap<TopicPartition, FetchState>>> = Arc::default();
                let wake = Arc::new(Notify::new());
                let task = tokio::spawn(run(
                    leader,
                    self.config.clone(),
                    self.view.clone(),
                    partitions.clone(),
                    wake.clone(),
                ));
                Fetcher {
                    partitions,
                    wake,
                    task,
                }
            });
            let mut map = fetcher.partitions.lock();
            map.retain(|tp, _| partitions.iter().any(|(p, _)| &p.tp == tp));
            for (p, epoch) in partitions {
                let entry = map.entry(p.tp.clone()).or_insert_with(|| FetchState {
                    partition: p.clone(),
                    leader_epoch: epoch,
                    delayed_until: None,
                });
                if entry.leader_epoch != epoch || !Arc::ptr_eq(&entry.partition, &p) {
                    entry.leader_epoch = epoch;
                    entry.partition = p;
                    entry.delayed_until = None;
                }
            }
            drop(map);
            fetcher.wake.notify_one();
        }
    }

    /// Stops every fetcher.
    pub fn shutdown(&self) {
        for (_, f) in self.fetchers.lock().drain() {
            f.task.abort();
        }
    }
}

/// The fetch loop for one leader.
async fn run(
    leader: i32,
    config: FetcherConfig,
    view: MetadataView,
    partitions: Arc<Mutex<HashMap<TopicPartition, FetchState>>>,
    wake: Arc<Notify>,
) {
    let mut conn: Option<KafkaConn> = None;
    loop {
        let now = Instant::now();
        let (batch, next_retry) = {
            let map = partitions.lock();
            let ready: Vec<(Arc<Partition>, i32)> = map
                .values()
                .filter(|s| s.delayed_until.is_none_or(|t| t <= now))
                .map(|s| (s.partition.clone(), s.leader_epoch))
                .collect();
            let next = map.values().filter_map(|s| s.delayed_until).min();
            (ready, next)
        };
        if batch.is_empty() {
            let pause =
                next_retry.map_or(Duration::from_secs(1), |t| t.saturating_duration_since(now));
            let _ =
                tokio::time::timeout(pause.max(Duration::from_millis(1)), wake.notified()).await;
            continue;
        }
        let addr = {
            let image = view.image();
            image
                .brokers
                .get(&leader)
                .and_then(|b| b.endpoint(&config.listener))
                .map(|e| crate::config::listeners::join_host_port(&e.host, e.port as u16))
        };
        let Some(addr) = addr else {
            tracing::debug!(leader, "no endpoint for the leader yet");
            let _ = tokio::time::timeout(config.backoff, wake.notified()).await;
            continue;
        };
        if conn.as_ref().is_none_or(|c| c.addr() != addr) {
            match KafkaConn::connect(
                &addr,
                &format!("moldau-replica-fetcher-{}", config.local),
                config.timeout,
                &config.security,
            )
            .await
            {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    tracing::debug!(leader, %addr, error = %e, "cannot connect to the leader");
                    let _ = tokio::time::timeout(config.backoff, wake.notified()).await;
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        // The fetch offset is the follower's position, which must be on disk: finish
        // any group commit first (after a restart or after leading, the local tail may
        // not be synced yet). A poisoned log stops fetching until the partition is
        // reopened.
        let mut fetchable = Vec::with_capacity(batch.len());
        for (p, epoch) in batch {
            let end = p.with_log(|l| l.log_end_offset());
            match p.wait_durable(end).await {
                Ok(()) => fetchable.push((p, epoch, end)),
                Err(e) => {
                    tracing::error!(partition = %p.tp, error = %e, "follower log unusable; not fetching it");
                    if let Some(s) = partitions.lock().get_mut(&p.tp) {
                        s.delayed_until = Some(Instant::now() + Duration::from_secs(3600));
                    }
                }
            }
        }
        let batch = fetchable;
        if batch.is_empty() {
            continue;
        }
        let request = fetch_request(&config, &batch);
        let response: FetchResponse = match c
            .send(ApiKey::Fetch, FETCH_VERSION, &request, config.timeout)
            .await
        {
            Ok(r) => r,
            Err(e) => {
                tracing::info!(leader, error = %e, "fetch from the leader failed");
                conn = None;
                let _ = tokio::time::timeout(config.backoff, wake.notified()).await;
                continue;
            }
        };
        let mut delays = Vec::new();
        let mut appended = Vec::new();
        // Appends and truncations are file work: keep them off this worker's other tasks.
        moldau_metadata::blocking(|| {
            for topic in response.responses {
                let name = topic.topic.0.to_string();
                for data in topic.partitions {
                    let Some((partition, epoch, offset)) = batch.iter().find(|(p, _, _)| {
                        *p.tp.topic == *name && p.tp.partition == data.partition_index
                    }) else {
                        continue;
                    };
                    let asked = Asked {
                        leader,
                        epoch: *epoch,
                        offset: *offset,
                    };
                    match handle_partition(partition, asked, &data) {
                        Ok(true) => appended.push(partition.clone()),
                        Ok(false) => {}
                        Err(delay) => delays.push((partition.tp.clone(), *epoch, delay)),
                    }
                }
            }
        });
        // Durable before the next fetch reports it (group commits run in parallel).
        let syncs = appended.iter().map(|p| {
            let end = p.with_log(|l| l.log_end_offset());
            async move {
                if let Err(e) = p.wait_durable(end).await {
                    tracing::error!(partition = %p.tp, error = %e, "follower fsync failed");
                }
            }
        });
        futures::future::join_all(syncs).await;
        if !delays.is_empty() {
            let mut map = partitions.lock();
            for (tp, epoch, delay) in delays {
                if let Some(s) = map.get_mut(&tp) {
                    if s.leader_epoch == epoch {
                        s.delayed_until = Some(Instant::now() + delay.unwrap_or(config.backoff));
                    }
                }
            }
        }
    }
}

fn fetch_request(config: &FetcherConfig, batch: &[(Arc<Partition>, i32, i64)]) -> FetchRequest {
    let mut topics: Vec<FetchTopic> = Vec::new();
    for (p, epoch, leo) in batch {
        let (start, last_epoch) =
            p.with_log(|l| (l.log_start_offset(), l.latest_epoch().unwrap_or(-1)));
        let part = FetchPartition::default()
            .with_partition(p.tp.partition)
            .with_current_leader_epoch(*epoch)
            .with_fetch_offset(*leo)
            .with_last_fetched_epoch(last_epoch)
            .with_log_start_offset(start)
            .with_partition_max_bytes(config.partition_max_bytes);
        match topics.iter_mut().find(|t| *t.topic.0 == *p.tp.topic) {
            Some(t) => t.partitions.push(part),
            None => topics.push(
                FetchTopic::default()
                    .with_topic(TopicName(StrBytes::from_string(p.tp.topic.to_string())))
                    .with_partitions(vec![part]),
            ),
        }
    }
    FetchRequest::default()
        .with_replica_id(BrokerId(config.local))
        .with_max_wait_ms(config.max_wait_ms)
        .with_min_bytes(config.min_bytes)
        .with_max_bytes(config.max_bytes)
        .with_isolation_level(0)
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(topics)
}

/// What one partition's fetch was sent with.
#[derive(Debug, Clone, Copy)]
struct Asked {
    leader: i32,
    epoch: i32,
    /// The fetch offset (the log end offset, durable, when the fetch was built).
    offset: i64,
}

/// Applies one partition's answer, if it is still current ([`Partition::apply_from_leader`]:
/// same leader and epoch, log still ending at the fetch offset; a stale answer is
/// dropped). `Ok(true)` when batches were appended (they need an fsync), `Ok(false)`
/// when nothing was, `Err(delay)` when the partition must wait before its next fetch
/// (`None`: the normal backoff).
fn handle_partition(
    p: &Arc<Partition>,
    asked: Asked,
    data: &PartitionData,
) -> Result<bool, Option<Duration>> {
    let apply =
        |hw: Option<i64>,
         change: &dyn Fn(&mut moldau_storage::Log) -> moldau_storage::Result<bool>| {
            p.apply_from_leader(asked.leader, asked.epoch, asked.offset, hw, change)
                .map(|r| r.unwrap_or(false))
        };
    let error = ResponseError::try_from_code(data.error_code);
    match error {
        None => {}
        Some(ResponseError::OffsetOutOfRange) => {
            let result = if asked.offset < data.log_start_offset {
                tracing::warn!(partition = %p.tp, leader_log_start = data.log_start_offset, "behind the leader's log start: starting over there");
                apply(None, &|l| {
                    l.truncate_fully_and_start_at(data.log_start_offset)
                        .map(|()| false)
                })
            } else if data.high_watermark >= 0 && data.high_watermark < asked.offset {
                // Everything below the leader's high watermark is committed and this
                // replica has it; what lies above it the leader does not vouch for.
                tracing::warn!(partition = %p.tp, to = data.high_watermark, "the leader does not know this log's tail: truncating to its high watermark");
                apply(None, &|l| {
                    l.truncate_to(data.high_watermark).map(|()| false)
                })
            } else {
                Ok(false)
            };
            if let Err(e) = result {
                tracing::error!(partition = %p.tp, error = %e, "truncation failed");
            }
            return Err(Some(EPOCH_BACKOFF));
        }
        Some(ResponseError::UnknownLeaderEpoch) => return Err(Some(EPOCH_BACKOFF)),
        Some(e) => {
            tracing::debug!(partition = %p.tp, error = ?e, "follower fetch refused");
            return Err(None);
        }
    }
    if data.diverging_epoch.epoch >= 0 {
        let leader_epoch = data.diverging_epoch.epoch;
        let leader_end = data.diverging_epoch.end_offset;
        let result = apply(None, &|l| {
            // KIP-279: keep what both logs hold for the last epoch they share.
            let (ours_epoch, ours_end) = l.end_offset_for_epoch(leader_epoch);
            let target = if ours_epoch < 0 {
                leader_end.min(l.log_end_offset())
            } else {
                leader_end.min(ours_end)
            };
            tracing::warn!(partition = %p.tp, leader_epoch, leader_end, ours_epoch, ours_end, to = target, "divergent log: truncating");
            l.truncate_to(target.max(0)).map(|()| false)
        });
        if let Err(e) = result {
            tracing::error!(partition = %p.tp, error = %e, "truncation failed");
            return Err(None);
        }
        return Ok(false);
    }
    let records: Option<&Bytes> = data.records.as_ref().filter(|r| !r.is_empty());
    let result = apply(Some(data.high_watermark), &|l| match records {
        Some(records) => l.append_as_follower(records, now_ms()).map(|_| true),
        None => Ok(false),
    });
    match result {
        Ok(appended) => {
            if appended && data.log_start_offset > p.with_log(|l| l.log_start_offset()) {
                let hw = p.high_watermark();
                let _ = p.with_log_mut(|l| l.delete_records_before(data.log_start_offset.min(hw)));
            }
            Ok(appended)
        }
        Err(e) => {
            tracing::error!(partition = %p.tp, error = %e, "follower append failed");
            Err(None)
        }
    }
}
