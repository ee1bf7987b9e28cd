//! The replica manager: every partition this broker hosts, kept in step with the
//! metadata image, plus the checkpoints that make restarts cheap.
//!
//! Files in the log dir (Kafka's names and formats):
//! - `recovery-point-offset-checkpoint`: per partition, the offset below which the log is
//!   known to be fsynced; recovery after an unclean stop scans from there.
//! - `log-start-offset-checkpoint`: per partition, the log start offset (advanced by
//!   retention and DeleteRecords within a segment).
//! - `.kafka_cleanshutdown`: written last on a clean shutdown, removed at start; when
//!   present at start, recovery trusts the logs and skips the scan.
//! - `<topic>-<partition>/partition.metadata`: `version: 0` and `topic_id: <uuid>`, so a
//!   directory left by a deleted topic is never mistaken for a new topic of the same name.

use crate::config::BrokerConfig;
use crate::partition::Partition;
use moldau_metadata::MetadataImage;
use moldau_storage::{checkpoint, Log, StorageError, CLEAN_SHUTDOWN_FILE};
use moldau_types::TopicPartition;
use parking_lot::RwLock;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use uuid::Uuid;

const RECOVERY_POINT_FILE: &str = "recovery-point-offset-checkpoint";
const LOG_START_FILE: &str = "log-start-offset-checkpoint";
const PARTITION_METADATA_FILE: &str = "partition.metadata";

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// All hosted partitions.
pub struct ReplicaManager {
    config: BrokerConfig,
    partitions: RwLock<HashMap<TopicPartition, Arc<Partition>>>,
    recovery_points: HashMap<(String, i32), i64>,
    log_starts: HashMap<(String, i32), i64>,
    clean_shutdown: bool,
}

impl ReplicaManager {
    /// Reads the checkpoints and consumes the clean-shutdown marker. Partitions are
    /// opened by [`ReplicaManager::reconcile`].
    pub fn open(config: BrokerConfig) -> Result<Self, StorageError> {
        let dir = config.log_dir.clone();
        let marker = dir.join(CLEAN_SHUTDOWN_FILE);
        let clean_shutdown = marker.exists();
        let recovery_points = checkpoint::read(&dir.join(RECOVERY_POINT_FILE))?;
        let log_starts = checkpoint::read(&dir.join(LOG_START_FILE))?;
        if clean_shutdown {
            std::fs::remove_file(&marker).map_err(|source| StorageError::Io {
                context: format!("removing {}", marker.display()),
                source,
            })?;
        }
        tracing::info!(clean_shutdown, dir = %dir.display(), "opening logs");
        Ok(Self {
            config,
            partitions: RwLock::new(HashMap::new()),
            recovery_points,
            log_starts,
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

    /// Every hosted partition.
    pub fn all(&self) -> Vec<Arc<Partition>> {
        self.partitions.read().values().cloned().collect()
    }

    /// Brings hosted partitions in line with `image`: opens logs for partitions this node
    /// replicates, applies config changes, and deletes the logs of removed topics (and
    /// stray directories whose topic no longer exists). Called at start and after every
    /// metadata change, in log order.
    pub fn reconcile(&self, image: &MetadataImage) {
        let node = self.config.node_id;
        let mut wanted: HashMap<
            TopicPartition,
            (Uuid, i32, &std::collections::BTreeMap<String, String>),
        > = HashMap::new();
        for topic in image.topics.values() {
            for (&p, part) in &topic.partitions {
                if part.replicas.contains(&node) {
                    wanted.insert(
                        TopicPartition::new(topic.name.as_str(), p),
                        (topic.topic_id, part.leader_epoch, &topic.configs),
                    );
                }
            }
        }
        let mut partitions = self.partitions.write();
        let removed: Vec<TopicPartition> = partitions
            .iter()
            .filter(|(tp, p)| wanted.get(*tp).is_none_or(|w| w.0 != p.topic_id))
            .map(|(tp, _)| tp.clone())
            .collect();
        for tp in removed {
            if let Some(p) = partitions.remove(&tp) {
                tracing::info!(partition = %tp, "deleting log of removed partition");
                drop(p);
                remove_dir(&self.config.log_dir.join(tp.dir_name()));
            }
        }
        for (tp, (topic_id, epoch, overrides)) in wanted {
            let (log_config, settings) = match self.config.resolve_topic(overrides) {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(partition = %tp, error = %e, "bad topic config; using broker defaults");
                    match self.config.resolve_topic(&Default::default()) {
                        Ok(c) => c,
                        Err(_) => continue,
                    }
                }
            };
            if let Some(p) = partitions.get(&tp) {
                p.reconfigure(log_config, settings, epoch);
                continue;
            }
            match self.open_log(&tp, topic_id, log_config) {
                Ok(log) => {
                    partitions.insert(
                        tp.clone(),
                        Arc::new(Partition::new(tp, topic_id, log, settings, epoch)),
                    );
                }
                Err(e) => {
                    tracing::error!(partition = %tp, error = %e, "cannot open log; partition offline")
                }
            }
        }
        drop(partitions);
        self.remove_stray_dirs(image);
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
        if let Ok(text) = std::fs::read_to_string(&meta_path) {
            let stored = text
                .lines()
                .find_map(|l| l.strip_prefix("topic_id: "))
                .and_then(|s| Uuid::parse_str(s.trim()).ok());
            if stored != Some(topic_id) {
                tracing::warn!(partition = %tp, "log directory belongs to an older topic of the same name; removing it");
                remove_dir(&dir);
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
        if !meta_path.exists() {
            std::fs::write(&meta_path, format!("version: 0\ntopic_id: {topic_id}\n"))
                .map_err(io(format!("writing {}", meta_path.display())))?;
        }
        Ok(log)
    }

    fn remove_stray_dirs(&self, image: &MetadataImage) {
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
            if part.parse::<i32>().is_err() || topic.starts_with("__cluster_metadata") {
                continue;
            }
            if !image.topics.contains_key(topic) {
                tracing::info!(dir = %path.display(), "removing log directory of a deleted topic");
                remove_dir(&path);
            }
        }
    }

    /// Writes the recovery-point and log-start-offset checkpoints.
    pub fn checkpoint(&self) -> Result<(), StorageError> {
        let mut recovery = Vec::new();
        let mut starts = Vec::new();
        for p in self.all() {
            p.with_log(|log| {
                recovery.push((p.tp.topic.to_string(), p.tp.partition, log.recovery_point()));
                starts.push((
                    p.tp.topic.to_string(),
                    p.tp.partition,
                    log.log_start_offset(),
                ));
            });
        }
        checkpoint::write(&self.config.log_dir.join(RECOVERY_POINT_FILE), &recovery)?;
        checkpoint::write(&self.config.log_dir.join(LOG_START_FILE), &starts)
    }

    /// Flushes logs whose `flush.messages`/`flush.ms` say so (the flush scheduler).
    pub fn flush_due(&self, now: i64) {
        for p in self.all() {
            p.with_log_mut(|log| {
                if log.flush_due(now) {
                    if let Err(e) = log.flush() {
                        tracing::error!(partition = %p.tp, error = %e, "scheduled flush failed");
                    }
                }
            });
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

    /// Clean shutdown: flush and close every log, write the checkpoints, then the
    /// clean-shutdown marker (last, so a crash anywhere before leaves none).
    pub fn shutdown(&self) -> Result<(), StorageError> {
        let mut ok = true;
        for p in self.all() {
            if let Err(e) = p.with_log_mut(|log| log.flush()) {
                ok = false;
                tracing::error!(partition = %p.tp, error = %e, "flush at shutdown failed");
            }
        }
        self.checkpoint()?;
        let partitions: Vec<Arc<Partition>> =
            self.partitions.write().drain().map(|(_, p)| p).collect();
        drop(partitions);
        if ok {
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
    if let Err(e) = std::fs::remove_dir_all(path) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::error!(dir = %path.display(), error = %e, "cannot remove log directory");
        }
    }
}
