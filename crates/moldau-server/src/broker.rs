//! The broker: configuration, the metadata quorum member and the image it applies,
//! the replica manager, the coordinators, and the background tasks (flush scheduler,
//! retention, checkpoints). Handlers get an `Arc<Broker>`; they hold no state of their
//! own.
//!
//! Start-up ([`Broker::start`]): on a controller, open the metadata log and join the
//! quorum (serving the controller listener at once, so the voters can elect a leader);
//! on a broker-only node, long-poll the active controller for its image instead. Then
//! wait until the metadata has a cluster id and check it against `meta.properties`,
//! open the partition logs the image assigns here, and register with the active
//! controller. The network layer serves clients once the controller has unfenced this
//! broker.

use crate::cluster::channel::ControllerChannel;
use crate::cluster::controller::{QuorumController, SnapshotSettings};
use crate::cluster::leader_watch::LeaderWatch;
use crate::cluster::lifecycle::{self, Lifecycle};
use crate::cluster::listener::ControllerService;
use crate::cluster::meta_properties::{base64_uuid, MetaProperties};
use crate::cluster::raft_net::RaftNet;
use crate::cluster::rpc::RpcPool;
use crate::config::{BrokerConfig, Endpoint};
use crate::coordinator::GroupCoordinator;
use crate::metrics::Metrics;
use crate::replica_fetcher::{FetcherConfig, ReplicaFetchers};
use crate::replica_manager::{now_ms, ReplicaManager};
use crate::txn_coordinator::TxnCoordinator;
use moldau_metadata::cluster::{ControlConfig, Registration};
use moldau_metadata::quorum::{self, MetadataFeed, MetadataView, Quorum, QuorumTiming};
use moldau_metadata::MetadataImage;
use moldau_storage::StorageError;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tokio::sync::watch;

/// Why the broker could not start.
#[derive(Debug, Error)]
pub enum StartError {
    /// The log dir or a file in it could not be used.
    #[error("log dir: {0}")]
    Storage(#[from] StorageError),
    /// The metadata quorum could not start.
    #[error("{0}")]
    Quorum(#[from] quorum::QuorumError),
    /// Another I/O failure (binding a listener).
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The data belongs to another node or cluster, or the node cannot run as
    /// configured.
    #[error("{0}")]
    Inconsistent(String),
}

/// Shared broker state.
pub struct Broker {
    /// Resolved configuration.
    pub config: BrokerConfig,
    /// The cluster id the quorum agreed on (22-character base64 of a UUID, like Kafka's).
    pub cluster_id: String,
    /// This node's member of the metadata quorum (`None` on a broker-only node).
    pub quorum: Option<Arc<Quorum>>,
    /// The applied metadata.
    pub metadata: MetadataView,
    /// The way to the active controller.
    pub controller: Arc<ControllerChannel>,
    /// Registration and heartbeats (brokers only).
    pub lifecycle: Arc<Lifecycle>,
    /// This broker's advertised listeners, ports resolved.
    pub advertised: Vec<Endpoint>,
    /// Hosted partitions.
    pub replicas: Arc<ReplicaManager>,
    /// The fetchers of the partitions this broker follows.
    pub fetchers: ReplicaFetchers,
    /// The log cleaner's state (first dirty offsets).
    pub cleaner: crate::log_cleaner::LogCleaner,
    /// The group coordinator shards for the `__consumer_offsets` partitions led here.
    pub groups: Arc<GroupCoordinator>,
    /// The transaction coordinator shards for the `__transaction_state` partitions led
    /// here, and the producer id allocator.
    pub txns: Arc<TxnCoordinator>,
    /// Request, network and connection counters, recorded by the network layer.
    pub metrics: Metrics,
    /// Byte-rate quota sensors ([`crate::quotas`]).
    pub quotas: crate::quotas::QuotaManager,
    /// The bytes Fetch responses may hold until written (`fetch.response.pool.bytes`),
    /// one permit per byte.
    pub fetch_pool: Arc<tokio::sync::Semaphore>,
    /// Flipped once at shutdown: stops the cluster tasks.
    stop: watch::Sender<bool>,
    /// The metadata offset last applied by [`Broker::apply_image`], which it serialises.
    applied: parking_lot::Mutex<i64>,
}

/// Most time an admin operation waits for the active controller.
pub const CONTROLLER_TIMEOUT: Duration = Duration::from_secs(30);

impl Broker {
    /// Starts the node (see the module docs). `advertised` are the broker listeners
    /// with their bound ports; `controller_listener` is the bound controller listener
    /// (absent for the implicit single node, whose quorum has no network).
    pub async fn start(
        config: BrokerConfig,
        advertised: Vec<Endpoint>,
        controller_listener: Option<tokio::net::TcpListener>,
    ) -> Result<Arc<Self>, StartError> {
        let dir = config.log_dir.clone();
        moldau_storage::create_dir_durable(&dir).map_err(|source| StartError::Io {
            context: format!("creating log dir {}", dir.display()),
            source,
        })?;
        let mut meta =
            MetaProperties::load(&dir, config.node_id).map_err(StartError::Inconsistent)?;
        let cluster = &config.cluster;
        let pool = Arc::new(RpcPool::new(config.cluster.controller_client.clone()));
        let (stop, stop_rx) = watch::channel(false);
        let (quorum, local, view, feed) = if cluster.roles.controller {
            let (quorum, local) =
                start_controller(&config, &meta, &pool, controller_listener, &stop_rx).await?;
            let view = quorum.view.clone();
            (Some(quorum), Some(local), view, None)
        } else {
            let (feed, view) = MetadataFeed::new();
            (None, None, view, Some(feed))
        };
        let channel = Arc::new(ControllerChannel::new(
            config.node_id,
            local,
            cluster.voters.clone(),
            pool,
            view.clone(),
        ));
        if let Some(feed) = feed {
            tokio::spawn(channel.clone().follow_controller(feed, stop_rx.clone()));
        }
        let cluster_id = wait_for_cluster_id(&view).await;
        meta.adopt_cluster_id(&cluster_id)
            .map_err(StartError::Inconsistent)?;
        let blocking_config = config.clone();
        let opened = tokio::task::spawn_blocking(move || ReplicaManager::open(blocking_config))
            .await
            .map_err(|e| StartError::Inconsistent(format!("opening logs panicked: {e}")))??;
        let replicas = Arc::new(opened);
        let groups = Arc::new(GroupCoordinator::new(config.group.clone()));
        let txns = Arc::new(TxnCoordinator::new(config.txn.clone(), config.node_id));
        let (config_dir, config_dedupe) = (
            config.log_dir.clone(),
            config.log_cleaner_dedupe_buffer_size,
        );
        let fetchers = ReplicaFetchers::new(
            FetcherConfig::new(config.node_id, &config.cluster),
            view.clone(),
        );
        let config_fetch_pool = config.fetch_response_pool_bytes;
        let quotas = crate::quotas::QuotaManager::new(
            config.quota_window_num,
            config.quota_window_size_seconds.saturating_mul(1000),
        );
        let broker = Arc::new(Self {
            config,
            cluster_id,
            quorum,
            metadata: view.clone(),
            controller: channel,
            lifecycle: Arc::new(Lifecycle::new()),
            advertised,
            fetchers,
            replicas,
            cleaner: crate::log_cleaner::LogCleaner::open(config_dir, config_dedupe),
            groups,
            txns,
            metrics: Metrics::new(),
            quotas,
            fetch_pool: Arc::new(tokio::sync::Semaphore::new(config_fetch_pool)),
            stop,
            applied: parking_lot::Mutex::new(-1),
        });
        broker.txns.attach(&broker);
        let first = broker.image();
        let b = broker.clone();
        tokio::task::spawn_blocking(move || b.apply_image(&first))
            .await
            .map_err(|e| StartError::Inconsistent(format!("applying metadata panicked: {e}")))?;
        broker.controller.mark_applied(broker.image().offset);
        tokio::spawn(broker.clone().follow_metadata(stop_rx.clone()));
        tokio::spawn(crate::isr_manager::run_checks(
            broker.clone(),
            stop_rx.clone(),
        ));
        if broker.config.cluster.roles.broker {
            tokio::spawn(broker.clone().watch_contact(stop_rx.clone()));
        }
        if broker.config.cluster.roles.broker {
            let registration = Registration {
                broker_id: broker.config.node_id,
                incarnation_id: broker.lifecycle.incarnation_id,
                listeners: lifecycle::endpoints(&broker.advertised),
                rack: broker.config.rack.clone(),
                cluster_id: Some(broker.cluster_id.clone()),
            };
            // Logs that went offline here are reported with each heartbeat, so the
            // controller moves their leadership elsewhere.
            let weak = Arc::downgrade(&broker);
            let offline = Arc::new(move || {
                weak.upgrade()
                    .map(|b| b.replicas.offline_partitions())
                    .unwrap_or_default()
            });
            let run = broker.lifecycle.clone().run(
                broker.controller.clone(),
                broker.metadata.clone(),
                registration,
                Duration::from_millis(broker.config.cluster.broker_heartbeat_interval_ms),
                offline,
                stop_rx,
            );
            tokio::spawn(async move {
                if let Err(e) = run.await {
                    tracing::error!(error = %e, "this broker cannot stay in the cluster; stopping");
                    std::process::exit(1);
                }
            });
        }
        Ok(broker)
    }

    /// Brings partitions, fetchers and coordinators in line with `image` (blocking:
    /// opens logs).
    ///
    /// One application at a time, never an image older than the last one applied (a
    /// late task must not roll partitions back to an earlier leadership).
    fn apply_image(self: &Arc<Self>, image: &MetadataImage) {
        let mut applied = self.applied_lock();
        if image.offset < *applied {
            return;
        }
        *applied = image.offset;
        self.quotas.set_active(&image.client_quotas);
        let reconciled = self.replicas.reconcile(image);
        // Out of contact with the controller, this broker leads nothing, whatever an
        // image it is still catching up on says (`watch_contact` applies the image again
        // once contact returns).
        let actions = if self.out_of_contact() {
            for p in self.replicas.all() {
                p.step_down();
            }
            Vec::new()
        } else {
            reconciled.actions
        };
        self.fetchers.update(reconciled.follows);
        for p in reconciled.flush {
            tokio::spawn(async move {
                let end = p.with_log(|l| l.log_end_offset());
                let _ = p.wait_durable(end).await;
            });
        }
        crate::isr_manager::act(self, actions);
        self.groups.sync(image, &self.replicas);
        self.txns.sync(image, &self.replicas);
    }

    /// Applies every new image, in order, until `stop` flips.
    async fn follow_metadata(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut images = self.metadata.subscribe();
        loop {
            tokio::select! {
                changed = images.changed() => if changed.is_err() { return },
                _ = stop.changed() => return,
            }
            let image = images.borrow_and_update().clone();
            let offset = image.offset;
            let b = self.clone();
            let _ = tokio::task::spawn_blocking(move || b.apply_image(&image)).await;
            self.controller.mark_applied(offset);
        }
    }

    /// Whether this broker has lost contact with the controller for longer than its
    /// session, or heard from it that it was fenced ([`Lifecycle::out_of_contact`]).
    ///
    /// The bound is the session timeout plus the longest election of a new controller
    /// (twice `controller.quorum.election.timeout.ms`), so a controller failover (which
    /// interrupts heartbeats for up to an election) does not make every broker step
    /// down. The controller may therefore have fenced this broker and elected other
    /// leaders up to that extra time before it steps down; during that overlap this
    /// broker cannot commit an `acks=all` batch (its followers fetch from the new
    /// leaders, so its high watermark does not move), and `acks=1` writes it takes are
    /// lost, as in Kafka.
    pub fn out_of_contact(&self) -> bool {
        let c = &self.config.cluster;
        self.lifecycle.out_of_contact(Duration::from_millis(
            c.broker_session_timeout_ms + 2 * c.election_timeout_ms,
        ))
    }

    /// Steps down from every leadership while out of contact with the controller, and
    /// takes the metadata's roles back once contact returns.
    async fn watch_contact(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        let mut stepped_down = false;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => return,
            }
            let out = self.out_of_contact();
            if out && !stepped_down {
                tracing::warn!("out of contact with the controller (no heartbeat answered within the session, or it fenced this broker): stepping down from every leadership");
                for p in self.replicas.all() {
                    p.step_down();
                }
                stepped_down = true;
            } else if !out && stepped_down {
                tracing::info!(
                    "back in contact with the controller: taking the metadata's roles again"
                );
                stepped_down = false;
                let image = self.image();
                let b = self.clone();
                let _ = tokio::task::spawn_blocking(move || b.apply_image(&image)).await;
            }
        }
    }

    /// Waits until the controller has unfenced this broker (it has registered and
    /// caught up with the metadata), logging while it waits.
    pub async fn wait_until_unfenced(&self) {
        let mut state = self.lifecycle.subscribe();
        let mut waited = 0u64;
        loop {
            let s = *state.borrow_and_update();
            if s.epoch >= 0 && !s.fenced {
                return;
            }
            if tokio::time::timeout(Duration::from_secs(5), state.changed())
                .await
                .is_err()
            {
                waited += 5;
                tracing::info!(
                    waited_s = waited,
                    broker_epoch = s.epoch,
                    "waiting for the controller to unfence this broker"
                );
            }
        }
    }

    /// Controlled shutdown (`controlled.shutdown.enable`): asks the controller to move
    /// this broker's leaderships away and waits until it says they have, at most
    /// `timeout`. Skipped when no other broker is active (no one could take over).
    pub async fn controlled_shutdown(&self, timeout: Duration) {
        if !self.config.cluster.roles.broker || !self.config.cluster.controlled_shutdown_enable {
            return;
        }
        let image = self.image();
        let others = image
            .brokers
            .values()
            .any(|b| b.broker_id != self.config.node_id && b.is_active());
        if !others {
            return;
        }
        tracing::info!("controlled shutdown: moving leadership to other brokers");
        self.lifecycle.request_shutdown();
        let mut state = self.lifecycle.subscribe();
        if tokio::time::timeout(timeout, state.wait_for(|s| s.shut_down))
            .await
            .is_err()
        {
            tracing::warn!("controlled shutdown did not complete in time; shutting down anyway");
        }
    }

    /// Serialises [`Broker::apply_image`] and remembers the last applied offset.
    fn applied_lock(&self) -> parking_lot::MutexGuard<'_, i64> {
        self.applied.lock()
    }

    /// Stops the cluster tasks and this node's quorum member.
    pub async fn stop_cluster(&self) {
        self.stop.send_replace(true);
        self.fetchers.shutdown();
        if let Some(quorum) = &self.quorum {
            if let Err(e) = quorum.raft.shutdown().await {
                tracing::warn!(error = %e, "stopping the metadata quorum member failed");
            }
            quorum.store.close();
        }
    }

    /// The current metadata image.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.metadata.image()
    }

    /// The node this broker believes is the active controller (-1 if none).
    pub fn active_controller(&self) -> i32 {
        self.controller.active_controller().unwrap_or(-1)
    }

    /// The controller id Metadata answers with: this broker itself. Admin clients send
    /// CreateTopics and the like to that id, and every broker forwards them to the
    /// active controller. Naming the active controller there would leave clients that
    /// learned it just before it died waiting on a dead node until their next metadata
    /// refresh (librdkafka: five minutes; measured here). Kafka's KRaft brokers also name
    /// a live broker rather than the controller. DescribeCluster and DescribeQuorum name
    /// the real active controller.
    pub fn metadata_controller_id(&self) -> i32 {
        self.config.node_id
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

/// Waits until the quorum has agreed on a cluster id, logging while it waits.
/// Starts this node's controller: its quorum member (the metadata log in `log.dirs`),
/// the active-controller logic and its timers, and the controller listener.
async fn start_controller(
    config: &BrokerConfig,
    meta: &MetaProperties,
    pool: &Arc<RpcPool>,
    controller_listener: Option<tokio::net::TcpListener>,
    stop: &watch::Receiver<bool>,
) -> Result<(Arc<Quorum>, Arc<QuorumController>), StartError> {
    let cluster = &config.cluster;
    let voters: BTreeMap<quorum::NodeId, quorum::Node> = cluster
        .voters
        .iter()
        .map(|v| (quorum::node_id(v.id), quorum::Node { addr: v.addr() }))
        .collect();
    let timing = QuorumTiming {
        election_timeout_ms: cluster.election_timeout_ms,
        logs_to_keep: 1_000,
    };
    let quorum = Arc::new(
        Quorum::start(
            quorum::node_id(config.node_id),
            voters,
            &config.log_dir,
            timing,
            meta.cluster_id.is_some(),
            RaftNet { pool: pool.clone() },
        )
        .await?,
    );
    let control = ControlConfig {
        session_timeout_ms: cluster.broker_session_timeout_ms as i64,
        disconnect_grace_ms: 2 * cluster.broker_heartbeat_interval_ms as i64,
        unclean_leader_election: config
            .properties
            .get("unclean.leader.election.enable")
            .is_some_and(|v| v.trim() == "true"),
    };
    let proposed = cluster
        .cluster_id
        .clone()
        .or_else(|| meta.cluster_id.clone())
        .unwrap_or_else(|| base64_uuid(uuid::Uuid::new_v4()));
    let local = Arc::new(QuorumController::new(
        quorum.clone(),
        control,
        proposed,
        SnapshotSettings {
            max_bytes: cluster.snapshot_max_bytes,
            interval_ms: cluster.snapshot_interval_ms,
        },
        cluster.voters.clone(),
    ));
    if let Some(listener) = controller_listener {
        let lease = Duration::from_millis(quorum.raft.config().election_timeout_max);
        let name = cluster
            .controller_listener_names
            .first()
            .cloned()
            .unwrap_or_default();
        let security = config.security.get(&name);
        let tls = match security.and_then(|s| s.tls.clone()) {
            Some(settings) => Some(
                crate::security::tls::TlsAcceptor::new(name.as_str().into(), settings).map_err(
                    |reason| StartError::Io {
                        context: format!("loading TLS material of listener {name}"),
                        source: std::io::Error::other(reason),
                    },
                )?,
            ),
            None => None,
        };
        let auth = crate::cluster::listener::ControllerAuth {
            listener: name.as_str().into(),
            tls,
            sasl: security.and_then(|s| s.sasl.clone()).map(Arc::new),
            authorizer: config.authorizer.clone(),
            max_receive_bytes: config.auth.sasl_max_receive_size,
            failed_delay_ms: config.auth.failed_authentication_delay_ms,
        };
        let service = ControllerService {
            auth: Arc::new(auth),
            quorum: quorum.clone(),
            controller: local.clone(),
            leader_watch: Arc::new(LeaderWatch::new(
                config.node_id,
                cluster.voters.clone(),
                lease,
            )),
        };
        tokio::spawn(service.run(listener, stop.clone()));
    }
    tokio::spawn(local.clone().run_timers(stop.clone()));
    Ok((quorum, local))
}

async fn wait_for_cluster_id(view: &MetadataView) -> String {
    let mut rx = view.subscribe();
    let mut waited = 0u64;
    loop {
        if let Some(id) = rx.borrow_and_update().cluster_id.clone() {
            return id;
        }
        if tokio::time::timeout(Duration::from_secs(5), rx.changed())
            .await
            .is_err()
        {
            waited += 5;
            tracing::info!(waited_s = waited, "waiting for the controller quorum to form (a majority of controller.quorum.voters must be up)");
        }
    }
}
