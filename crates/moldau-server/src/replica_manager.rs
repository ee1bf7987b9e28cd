//! The replica manager: every partition this broker hosts, kept in step with the
//! metadata image, plus the checkpoints that make restarts cheap.
//!
//! Files in the log dir (Kafka's names and formats):
//! - `recovery-point-offset-checkpoint`: per partition, the offset below which the log is
//!   known to be fsynced; recovery after an unclean stop scans from there.
//! - `log-start-offset-checkpoint`: per partition, the log start offset (advanced by
//!   retention and DeleteRecords within a segment).
//! - `replication-offset-checkpoint`: per partition, the high watermark, read back at
//!   start as each replica's initial high watermark.
//! - `.kafka_cleanshutdown`: written last on a clean shutdown, removed at start; when
//!   present at start, recovery trusts the logs and skips the scan.
//! - `<topic>-<partition>/partition.metadata`: `version: 0` and `topic_id: <uuid>`, so a
//!   directory left by a deleted topic is never mistaken for a new topic of the same name.

use crate::config::BrokerConfig;
use crate::partition::Partition;
use moldau_metadata::controller::METADATA_TOPIC;
use moldau_metadata::quorum::log_store::METADATA_LOG_DIR;
use moldau_metadata::MetadataImage;
use moldau_partition::{Action, PartitionAssignment};
use moldau_storage::{checkpoint, Log, StorageError, CLEAN_SHUTDOWN_FILE};
use moldau_types::TopicPartition;
use parking_lot::{Mutex, RwLock};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use uuid::Uuid;

const RECOVERY_POINT_FILE: &str = "recovery-point-offset-checkpoint";
const LOG_START_FILE: &str = "log-start-offset-checkpoint";
const HIGH_WATERMARK_FILE: &str = "replication-offset-checkpoint";
const PARTITION_METADATA_FILE: &str = "partition.metadata";

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// What [`ReplicaManager::reconcile`] leaves for the broker to do.
#[derive(Default)]
pub struct Reconciled {
    /// Partitions this broker follows: (partition, leader, leader epoch).
    pub follows: Vec<(Arc<Partition>, i32, i32)>,
    /// Partition actions to carry out (ISR changes to propose).
    pub actions: Vec<(Arc<Partition>, Action)>,
    /// Partitions just led whose local copy is not all fsynced yet.
    pub flush: Vec<Arc<Partition>>,
}

/// All hosted partitions.
pub struct ReplicaManager {
    config: BrokerConfig,
    partitions: RwLock<HashMap<TopicPartition, Arc<Partition>>>,
    /// Partitions whose log could not be opened: a clean-shutdown marker must not vouch
    /// for them.
    failed: Mutex<HashSet<TopicPartition>>,
    recovery_points: HashMap<(String, i32), i64>,
    log_starts: HashMap<(String, i32), i64>,
    high_watermarks: HashMap<(String, i32), i64>,
    clean_shutdown: bool,
}

impl ReplicaManager {
    /// Reads the checkpoints and consumes the clean-shutdown marker. Partitions are
    /// opened by [`ReplicaManager::reconcile`].
    pub fn open(config: BrokerConfig) -> Result<Self, StorageError> {
        let dir = config.log_dir.clone();
        let marker = dir.join(CLEAN_SHUTDOWN_FILE);
        let clean_shutdown = marker.exists();
        // A damaged checkpoint costs a longer recovery, never the broker: with no
        // recovery points every unclean log is scanned from its start.
        let read_checkpoint = |name: &str| {
            checkpoint::read(&dir.join(name)).unwrap_or_else(|e| {
                tracing::warn!(file = name, error = %e, "ignoring unreadable checkpoint");
                HashMap::new()
            })
        };
        let recovery_points = read_checkpoint(RECOVERY_POINT_FILE);
        let log_starts = read_checkpoint(LOG_START_FILE);
        let high_watermarks = read_checkpoint(HIGH_WATERMARK_FILE);
        if clean_shutdown {
            // Removed (durably) before any write, so a crash from here on is unclean.
            std::fs::remove_file(&marker)
                .and_then(|()| std::fs::File::open(&dir)?.sync_all())
                .map_err(|source| StorageError::Io {
                    context: format!("removing {}", marker.display()),
                    source,
                })?;
        }
        tracing::info!(clean_shutdown, dir = %dir.display(), "opening logs");
        Ok(Self {
            config,
            partitions: RwLock::new(HashMap::new()),
            failed: Mutex::new(HashSet::new()),
            recovery_points,
            log_starts,
            high_watermarks,
            clean_shutdown,
        })
    }

    /// The hosted partition, if any.
    pub fn get(&self, topic: &str, partition: i32) -> Option<Arc<Partition>> {
        self.partitions
            .read()
            .get(&TopicPartition::new(topic, partition))
            .cloned()
    }

    /// The hosted partitions whose log is offline (poisoned by a failed write or
    /// fsync), as `(topic id, partition)`, for the controller (see
    /// `moldau_metadata::cluster::Heartbeat::offline_partitions`).
    pub fn offline_partitions(&self) -> Vec<(Uuid, i32)> {
        self.all()
            .iter()
            .filter(|p| p.with_log(|l| l.is_poisoned()))
            .map(|p| (p.topic_id, p.tp.partition))
            .collect()
    }

    /// Every hosted partition.
    pub fn all(&self) -> Vec<Arc<Partition>> {
        self.partitions.read().values().cloned().collect()
    }

    /// Brings hosted partitions in line with `image`: opens logs for partitions this node
    /// replicates, applies config changes and each partition's leadership and ISR
    /// ([`Partition::apply_metadata`]), and deletes the logs of removed topics;
    /// directories whose topic the image does not know are renamed `*-stray` and kept
    /// for an operator to look at, never deleted. Called at start and after every
    /// metadata change, in log order. File work (opening, recovering, deleting logs) runs
    /// without the partition-map lock, which request handlers take on every request; the
    /// map is only locked briefly to read the diff and to insert or remove entries.
    ///
    /// Returns what the broker must do next: the partitions to follow (with leader and
    /// leader epoch) for the replica fetchers, and the partitions' actions (ISR changes
    /// to propose).
    pub fn reconcile(&self, image: &MetadataImage) -> Reconciled {
        let node = self.config.node_id;
        let mut wanted: HashMap<
            TopicPartition,
            (Uuid, PartitionAssignment, &BTreeMap<String, String>),
        > = HashMap::new();
        for topic in image.topics.values() {
            if topic.name == METADATA_TOPIC {
                continue;
            }
            for (&p, part) in &topic.partitions {
                if part.replicas.contains(&node) {
                    let assignment = PartitionAssignment {
                        leader: part.leader,
                        leader_epoch: part.leader_epoch,
                        partition_epoch: part.partition_epoch,
                        replicas: part.replicas.clone(),
                        isr: part.isr.clone(),
                    };
                    wanted.insert(
                        TopicPartition::new(topic.name.as_str(), p),
                        (topic.topic_id, assignment, &topic.configs),
                    );
                }
            }
        }
        let (removed, to_open) = {
            let partitions = self.partitions.read();
            let removed: Vec<TopicPartition> = partitions
                .iter()
                .filter(|(tp, p)| wanted.get(*tp).is_none_or(|w| w.0 != p.topic_id))
                .map(|(tp, _)| tp.clone())
                .collect();
            let to_open: Vec<TopicPartition> = wanted
                .iter()
                .filter(|(tp, w)| partitions.get(*tp).is_none_or(|p| p.topic_id != w.0))
                .map(|(tp, _)| tp.clone())
                .collect();
            (removed, to_open)
        };
        if !removed.is_empty() {
            let taken: Vec<(TopicPartition, Arc<Partition>)> = {
                let mut partitions = self.partitions.write();
                removed
                    .into_iter()
                    .filter_map(|tp| partitions.remove(&tp).map(|p| (tp, p)))
                    .collect()
            };
            for (tp, p) in taken {
                tracing::info!(partition = %tp, "deleting log of removed partition");
                drop(p);
                remove_dir(&self.config.log_dir.join(tp.dir_name()));
            }
        }
        for tp in to_open {
            let Some((topic_id, _, overrides)) = wanted.get(&tp) else {
                continue;
            };
            let Some((log_config, settings)) = self.resolve(&tp, overrides) else {
                continue;
            };
            match self.open_log(&tp, *topic_id, log_config) {
                Ok(log) => {
                    self.failed.lock().remove(&tp);
                    let key = (tp.topic.to_string(), tp.partition);
                    let hw = self.high_watermarks.get(&key).copied().unwrap_or(0);
                    let partition = Arc::new(Partition::new(
                        tp.clone(),
                        *topic_id,
                        log,
                        settings,
                        node,
                        hw,
                    ));
                    self.partitions.write().insert(tp, partition);
                }
                Err(e) => {
                    tracing::error!(partition = %tp, error = %e, "cannot open log; partition offline");
                    self.failed.lock().insert(tp);
                }
            }
        }
        let now = now_ms();
        let mut out = Reconciled::default();
        for (tp, (_, assignment, overrides)) in &wanted {
            let Some(partition) = self.get(&tp.topic, tp.partition) else {
                continue;
            };
            if let Some((log_config, settings)) = self.resolve(tp, overrides) {
                partition.reconfigure(log_config, settings);
            }
            let (actions, _) = partition.apply_metadata(assignment, now);
            if assignment.leader != node {
                out.follows.push((
                    partition.clone(),
                    assignment.leader,
                    assignment.leader_epoch,
                ));
            } else if partition.durable_offset() < partition.with_log(|l| l.log_end_offset()) {
                // A new leader counts its own copy once fsynced.
                out.flush.push(partition.clone());
            }
            out.actions
                .extend(actions.into_iter().map(|a| (partition.clone(), a)));
        }
        self.rename_stray_dirs(image);
        out
    }

    fn resolve(
        &self,
        tp: &TopicPartition,
        overrides: &BTreeMap<String, String>,
    ) -> Option<(moldau_storage::LogConfig, crate::config::TopicSettings)> {
        match self.config.resolve_topic(overrides) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::error!(partition = %tp, error = %e, "bad topic config; using broker defaults");
                self.config.resolve_topic(&BTreeMap::new()).ok()
            }
        }
    }

    fn open_log(
        &self,
        tp: &TopicPartition,
        topic_id: Uuid,
        config: moldau_storage::LogConfig,
    ) -> Result<Log, StorageError> {
        let dir = self.config.log_dir.join(tp.dir_name());
        let meta_path = dir.join(PARTITION_METADATA_FILE);
        let io = |context: String| move |source| StorageError::Io { context, source };
        let mut meta_ok = false;
        if let Ok(text) = std::fs::read_to_string(&meta_path) {
            let stored = text
                .lines()
                .find_map(|l| l.strip_prefix("topic_id: "))
                .and_then(|s| Uuid::parse_str(s.trim()).ok());
            match stored {
                Some(id) if id == topic_id => meta_ok = true,
                Some(_) => {
                    tracing::warn!(partition = %tp, "log directory belongs to an older topic of the same name; removing it");
                    remove_dir(&dir);
                }
                // Written by a version that did not sync it, or not yet there when the
                // power went: it names no topic, so the data stays and it is rewritten.
                None => {
                    tracing::warn!(partition = %tp, path = %meta_path.display(), "partition.metadata names no topic id; rewriting it")
                }
            }
        }
        let key = (tp.topic.to_string(), tp.partition);
        let recovery_point = self.recovery_points.get(&key).copied().unwrap_or(0);
        let log_start = self.log_starts.get(&key).copied().unwrap_or(0);
        let log = Log::open(
            &dir,
            config,
            log_start,
            recovery_point,
            self.clean_shutdown,
            now_ms(),
        )?;
        if !meta_ok {
            let text = format!("version: 0\ntopic_id: {topic_id}\n");
            moldau_storage::write_file_durable(&meta_path, text.as_bytes())
                .map_err(io(format!("writing {}", meta_path.display())))?;
        }
        Ok(log)
    }

    /// Renames partition directories of topics the image does not know to
    /// `<dir>.<random>-stray` (as Kafka does with stray logs) so nothing is lost when the
    /// image is unexpectedly behind the data, e.g. after a crash between a topic deletion
    /// being committed and its directory being removed.
    fn rename_stray_dirs(&self, image: &MetadataImage) {
        let Ok(entries) = std::fs::read_dir(&self.config.log_dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if !path.is_dir() {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some((topic, part)) = name.rsplit_once('-') else {
                continue;
            };
            if part.parse::<i32>().is_err()
                || name == METADATA_LOG_DIR
                || image.topics.contains_key(topic)
            {
                continue;
            }
            let target = path.with_file_name(format!("{name}.{}-stray", Uuid::new_v4().simple()));
            tracing::warn!(dir = %path.display(), to = %target.display(), "log directory of an unknown topic; renaming it stray");
            if let Err(e) = std::fs::rename(&path, &target) {
                tracing::error!(dir = %path.display(), error = %e, "cannot rename stray log directory");
            }
        }
    }

    /// Writes the recovery-point, log-start-offset and high-watermark checkpoints.
    pub fn checkpoint(&self) -> Result<(), StorageError> {
        let mut recovery = Vec::new();
        let mut starts = Vec::new();
        let mut high_watermarks = Vec::new();
        for p in self.all() {
            let topic = p.tp.topic.to_string();
            let hw = p.high_watermark();
            p.with_log(|log| {
                recovery.push((topic.clone(), p.tp.partition, log.recovery_point()));
                starts.push((topic.clone(), p.tp.partition, log.log_start_offset()));
                high_watermarks.push((topic, p.tp.partition, hw));
            });
        }
        checkpoint::write(&self.config.log_dir.join(RECOVERY_POINT_FILE), &recovery)?;
        checkpoint::write(&self.config.log_dir.join(LOG_START_FILE), &starts)?;
        checkpoint::write(
            &self.config.log_dir.join(HIGH_WATERMARK_FILE),
            &high_watermarks,
        )
    }

    /// Flushes logs whose `flush.ms` says so (the flush scheduler), through the same
    /// group commit as `acks=-1`, so the fsync runs without the log lock.
    pub fn flush_due(&self, now: i64) {
        for p in self.all() {
            if p.with_log(|log| log.flush_due(now)) {
                p.flush_blocking();
            }
        }
    }

    /// Applies retention to every log (the retention checker).
    pub fn apply_retention(&self, now: i64) {
        for p in self.all() {
            match p.with_log_mut(|log| log.apply_retention(now)) {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(partition = %p.tp, segments = n, "retention deleted segments")
                }
                Err(e) => tracing::error!(partition = %p.tp, error = %e, "retention failed"),
            }
        }
    }

    /// Drops the producer state of producers idle longer than `expiration_ms`
    /// (`producer.id.expiration.ms`) from every log.
    pub fn expire_producers(&self, now: i64, expiration_ms: i64) {
        for p in self.all() {
            let n = p.with_log_mut(|log| log.remove_expired_producers(now, expiration_ms));
            if n > 0 {
                tracing::debug!(partition = %p.tp, producers = n, "expired idle producer state");
            }
        }
    }

    /// Clean shutdown: flush and close every log, write the checkpoints, then the
    /// clean-shutdown marker (last, so a crash anywhere before leaves none).
    pub fn shutdown(&self) -> Result<(), StorageError> {
        let mut ok = true;
        for p in self.all() {
            // A producer-state snapshot at the log end spares the next start a replay.
            if let Err(e) = p.with_log_mut(|log| log.take_producer_snapshot()) {
                tracing::warn!(partition = %p.tp, error = %e, "producer snapshot at shutdown failed");
            }
            if let Err(e) = p.with_log_mut(|log| log.flush()) {
                ok = false;
                tracing::error!(partition = %p.tp, error = %e, "flush at shutdown failed");
            }
        }
        self.checkpoint()?;
        let partitions: Vec<Arc<Partition>> =
            self.partitions.write().drain().map(|(_, p)| p).collect();
        drop(partitions);
        let failed = self.failed.lock().len();
        if failed > 0 {
            tracing::warn!(
                partitions = failed,
                "not marking the shutdown clean: some logs never opened"
            );
        }
        if ok && failed == 0 {
            write_marker(&self.config.log_dir)?;
        }
        Ok(())
    }
}

fn write_marker(dir: &Path) -> Result<(), StorageError> {
    let path = dir.join(CLEAN_SHUTDOWN_FILE);
    let f = std::fs::File::create(&path).and_then(|f| f.sync_all());
    let d = std::fs::File::open(dir).and_then(|d| d.sync_all());
    f.and(d).map_err(|source| StorageError::Io {
        context: format!("writing {}", path.display()),
        source,
    })
}

fn remove_dir(path: &PathBuf) {
    if path.file_name().is_some_and(|n| n == METADATA_LOG_DIR) {
        tracing::error!(dir = %path.display(), "refusing to delete the metadata log");
        return;
    }
    if let Err(e) = std::fs::remove_dir_all(path) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::error!(dir = %path.display(), error = %e, "cannot remove log directory");
        }
    }
}
