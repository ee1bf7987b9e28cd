//! The broker: configuration, the metadata log and image, the replica manager, and the
//! background tasks (flush scheduler, retention, checkpoints). Handlers get an
//! `Arc<Broker>`; they hold no state of their own.

use crate::config::BrokerConfig;
use crate::coordinator::GroupCoordinator;
use crate::metrics::Metrics;
use crate::replica_manager::{now_ms, ReplicaManager};
use crate::txn_coordinator::TxnCoordinator;
use moldau_metadata::{MetadataError, MetadataImage, MetadataLog, MetadataRecord};
use moldau_storage::StorageError;
use std::path::Path;
use std::sync::Arc;
use thiserror::Error;

/// Why the broker could not start.
#[derive(Debug, Error)]
pub enum StartError {
    /// The log dir or a file in it could not be used.
    #[error("log dir: {0}")]
    Storage(#[from] StorageError),
    /// The metadata log could not be read.
    #[error("metadata: {0}")]
    Metadata(#[from] MetadataError),
    /// Another I/O failure (binding the listener, meta.properties).
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// `meta.properties` belongs to another node.
    #[error("{0}")]
    Inconsistent(String),
}

/// Shared broker state.
pub struct Broker {
    /// Resolved configuration.
    pub config: BrokerConfig,
    /// Cluster id from `meta.properties` (22-character base64 of a UUID, like Kafka's).
    pub cluster_id: String,
    /// Host advertised to clients.
    pub advertised_host: String,
    /// Port advertised to clients.
    pub advertised_port: i32,
    /// The metadata log and image.
    pub metadata: MetadataLog,
    /// Hosted partitions.
    pub replicas: Arc<ReplicaManager>,
    /// The log cleaner's state (first dirty offsets).
    pub cleaner: crate::log_cleaner::LogCleaner,
    /// The group coordinator shards for the `__consumer_offsets` partitions led here.
    pub groups: Arc<GroupCoordinator>,
    /// The transaction coordinator shards for the `__transaction_state` partitions led
    /// here, and the producer id allocator.
    pub txns: Arc<TxnCoordinator>,
    /// Request, network and connection counters, recorded by the network layer.
    pub metrics: Metrics,
}

impl Broker {
    /// Opens the log dir (creating it), recovers the metadata image and every partition
    /// log, and registers this broker in the metadata log. `bound_port` is the port the
    /// listener actually bound (used when the advertised port is 0).
    pub fn open(config: BrokerConfig, bound_port: u16) -> Result<Arc<Self>, StartError> {
        let dir = config.log_dir.clone();
        std::fs::create_dir_all(&dir).map_err(|source| StartError::Io {
            context: format!("creating log dir {}", dir.display()),
            source,
        })?;
        let cluster_id = load_or_create_meta_properties(&dir, config.node_id)?;
        let (advertised_host, advertised_port) = advertised(&config, bound_port);
        let metadata = MetadataLog::open(&dir, now_ms())?;
        let registration = MetadataRecord::RegisterBroker {
            broker_id: config.node_id,
            host: advertised_host.clone(),
            port: advertised_port,
            rack: config.rack.clone(),
        };
        let node = config.node_id;
        metadata
            .submit(now_ms(), |image| {
                let current = image.brokers.get(&node);
                let same = current.is_some_and(|b| {
                    b.host == advertised_host && b.port == advertised_port && b.rack == config.rack
                });
                Ok(if same { Vec::new() } else { vec![registration] })
            })?
            .map_err(|e| StartError::Inconsistent(e.to_string()))?;
        let replicas = Arc::new(ReplicaManager::open(config.clone())?);
        replicas.reconcile(&metadata.image());
        let groups = Arc::new(GroupCoordinator::new(config.group.clone()));
        groups.sync(&metadata.image(), &replicas);
        let txns = Arc::new(TxnCoordinator::new(config.txn.clone(), config.node_id));
        txns.sync(&metadata.image(), &replicas);
        let (rm, gc, tc) = (replicas.clone(), groups.clone(), txns.clone());
        metadata.set_publisher(move |image| {
            rm.reconcile(image);
            gc.sync(image, &rm);
            tc.sync(image, &rm);
        });
        let (config_dir, config_dedupe) = (
            config.log_dir.clone(),
            config.log_cleaner_dedupe_buffer_size,
        );
        let broker = Arc::new(Self {
            config,
            cluster_id,
            advertised_host,
            advertised_port,
            metadata,
            replicas,
            cleaner: crate::log_cleaner::LogCleaner::open(config_dir, config_dedupe),
            groups,
            txns,
            metrics: Metrics::new(),
        });
        broker.txns.attach(&broker);
        Ok(broker)
    }

    /// The current metadata image.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.metadata.image()
    }

    /// Starts the flush scheduler, retention checker, log cleaner, producer-state
    /// expiry, checkpoint writer and the group and transaction coordinators' timers. They stop
    /// when `shutdown` flips to true; await the handles before the final flush so no
    /// job races it.
    pub fn spawn_background(
        self: &Arc<Self>,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let mut handles = Vec::new();
        let every = |ms: u64| std::time::Duration::from_millis(ms.max(10));
        type Job = fn(&Broker);
        let jobs: [(u64, Job); 5] = [
            (self.config.flush_scheduler_interval_ms, |b| {
                b.replicas.flush_due(now_ms())
            }),
            (self.config.retention_check_interval_ms, |b| {
                b.replicas.apply_retention(now_ms())
            }),
            (self.config.log_cleaner_backoff_ms, |b| {
                if b.config.log_cleaner_enable {
                    if let Err(e) = b.cleaner.clean(&b.replicas.all(), now_ms()) {
                        tracing::error!(error = %e, "writing the cleaner checkpoint failed");
                    }
                }
            }),
            (self.config.producer_id_expiration_check_interval_ms, |b| {
                b.replicas
                    .expire_producers(now_ms(), b.config.producer_id_expiration_ms)
            }),
            (self.config.checkpoint_interval_ms, |b| {
                if let Err(e) = b.replicas.checkpoint() {
                    tracing::error!(error = %e, "writing checkpoints failed");
                }
            }),
        ];
        for (interval, job) in jobs {
            let broker = self.clone();
            let mut stop = shutdown.clone();
            let period = every(interval);
            handles.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(period);
                tick.tick().await;
                loop {
                    tokio::select! {
                        _ = tick.tick() => {
                            let b = broker.clone();
                            let _ = tokio::task::spawn_blocking(move || job(&b)).await;
                        }
                        _ = stop.changed() => break,
                    }
                }
            }));
        }
        handles.push(tokio::spawn(
            self.groups.clone().run_timers(shutdown.clone()),
        ));
        handles.push(tokio::spawn(self.txns.clone().run_timers(shutdown.clone())));
        handles
    }

    /// Every metric in the Prometheus text exposition format (version 0.0.4), for
    /// `GET /metrics`: the request, network and connection counters, then offsets of
    /// every hosted partition and the committed offsets, lag and member count of every
    /// group this broker coordinates, read now. Takes each partition's log lock and each
    /// group shard's lock briefly, one at a time; the cost grows with the number of
    /// partitions and committed offsets. See [`crate::metrics`] for the names.
    pub fn metrics_text(&self) -> String {
        crate::metrics::render(self)
    }

    /// Clean shutdown of storage: flush, checkpoints, clean-shutdown marker.
    pub fn shutdown(&self) -> Result<(), StorageError> {
        self.replicas.shutdown()
    }
}

fn advertised(config: &BrokerConfig, bound_port: u16) -> (String, i32) {
    let source = config.advertised.as_deref().unwrap_or(&config.listener);
    let (host, port) = source.rsplit_once(':').unwrap_or((source, "0"));
    let port: i32 = port.parse().unwrap_or(0);
    let port = if port == 0 {
        i32::from(bound_port)
    } else {
        port
    };
    let host = match host {
        "" | "0.0.0.0" | "::" | "[::]" => "localhost".to_owned(),
        h => h.to_owned(),
    };
    (host, port)
}

/// Reads `meta.properties` (`version=1`, `cluster.id`, `node.id`), or writes a new one
/// with a fresh cluster id. A file naming another node id is refused, as Kafka does.
fn load_or_create_meta_properties(dir: &Path, node_id: i32) -> Result<String, StartError> {
    let path = dir.join("meta.properties");
    let io = |context: String| move |source| StartError::Io { context, source };
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let get = |k: &str| {
                text.lines()
                    .filter_map(|l| l.split_once('='))
                    .find(|(key, _)| key.trim() == k)
                    .map(|(_, v)| v.trim().to_owned())
            };
            if let Some(stored) = get("node.id") {
                if stored != node_id.to_string() {
                    return Err(StartError::Inconsistent(format!(
                        "{} says node.id={stored}, but this broker is node.id={node_id}",
                        path.display()
                    )));
                }
            }
            get("cluster.id").ok_or_else(|| {
                StartError::Inconsistent(format!("{} has no cluster.id", path.display()))
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = base64_url(uuid::Uuid::new_v4().as_bytes());
            let text =
                format!("#Written by Moldau\nversion=1\ncluster.id={id}\nnode.id={node_id}\n");
            std::fs::write(&path, text).map_err(io(format!("writing {}", path.display())))?;
            Ok(id)
        }
        Err(e) => Err(io(format!("reading {}", path.display()))(e)),
    }
}

/// URL-safe base64 without padding: Kafka's `Uuid.toString()` form of a cluster id.
fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_id_looks_like_kafkas() {
        // Kafka prints Uuid(0, 0) as 22 'A's and uses '-'/'_' instead of '+'/'/'.
        assert_eq!(base64_url(&[0u8; 16]), "A".repeat(22));
        assert_eq!(base64_url(&[0xfb, 0xff]), "-_8");
    }
}
