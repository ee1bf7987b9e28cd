//! The broker's side of liveness (Kafka's `BrokerLifecycleManager`, KIP-631): register
//! with the active controller once the metadata quorum has a cluster id, heartbeat
//! every `broker.heartbeat.interval.ms` with the metadata offset applied here, learn
//! when the controller unfences this broker, and, on shutdown, ask for a controlled
//! shutdown and wait until the controller has moved this broker's leaderships away.

use super::channel::ControllerChannel;
use super::controller::{ControllerReply, ControllerRequest};
use moldau_metadata::cluster::{Heartbeat, Registration};
use moldau_metadata::quorum::MetadataView;
use moldau_metadata::BrokerEndpoint;
use moldau_protocol::error::ResponseError;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use uuid::Uuid;

/// Where this broker stands with the controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BrokerState {
    /// Broker epoch of the current registration, -1 before one succeeded.
    pub epoch: i64,
    /// Fenced (not yet caught up, or fenced by the controller).
    pub fenced: bool,
    /// The controller said the controlled shutdown is complete.
    pub shut_down: bool,
}

/// The registration and heartbeat loop of one broker.
pub struct Lifecycle {
    /// This process's incarnation id (random per start).
    pub incarnation_id: Uuid,
    /// When the active controller last answered a heartbeat.
    last_contact: parking_lot::Mutex<std::time::Instant>,
    /// The controller fenced this broker while it served (it was cut off, or its
    /// connection closed for longer than the grace): other brokers lead its partitions
    /// now. Cleared when the controller unfences it again.
    fenced_while_serving: std::sync::atomic::AtomicBool,
    state: watch::Sender<BrokerState>,
    want_shut_down: watch::Sender<bool>,
}

/// Why the broker cannot go on.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct Fatal(pub String);

impl Default for Lifecycle {
    fn default() -> Self {
        Self::new()
    }
}

impl Lifecycle {
    /// A lifecycle that has not registered yet.
    pub fn new() -> Self {
        Self {
            incarnation_id: Uuid::new_v4(),
            last_contact: parking_lot::Mutex::new(std::time::Instant::now()),
            fenced_while_serving: std::sync::atomic::AtomicBool::new(false),
            state: watch::channel(BrokerState {
                epoch: -1,
                fenced: true,
                shut_down: false,
            })
            .0,
            want_shut_down: watch::channel(false).0,
        }
    }

    /// The current state.
    pub fn state(&self) -> BrokerState {
        *self.state.borrow()
    }

    /// A receiver of state changes.
    pub fn subscribe(&self) -> watch::Receiver<BrokerState> {
        self.state.subscribe()
    }

    /// Whether this broker, once registered, has gone longer than `session` without a
    /// heartbeat answered by the active controller, or was told by the controller that
    /// it fenced it while it served: either way other brokers lead its partitions, so
    /// it must not act as a leader.
    pub fn out_of_contact(&self, session: Duration) -> bool {
        self.state().epoch >= 0
            && (self
                .fenced_while_serving
                .load(std::sync::atomic::Ordering::Acquire)
                || self.last_contact.lock().elapsed() > session)
    }

    /// Asks the controller for a controlled shutdown (the loop sends it with the next
    /// heartbeat, which it sends at once).
    pub fn request_shutdown(&self) {
        self.want_shut_down.send_replace(true);
    }

    /// Registers and heartbeats until the controlled shutdown completes or `stop`
    /// flips. Errors: the cluster refuses this broker for good (`INCONSISTENT_CLUSTER_ID`).
    pub async fn run(
        self: Arc<Self>,
        channel: Arc<ControllerChannel>,
        view: MetadataView,
        registration: Registration,
        interval: Duration,
        offline: Arc<dyn Fn() -> Vec<(uuid::Uuid, i32)> + Send + Sync>,
        mut stop: watch::Receiver<bool>,
    ) -> Result<(), Fatal> {
        let timeout = Duration::from_secs(5).max(interval * 2);
        let mut want = self.want_shut_down.subscribe();
        'register: loop {
            let request = ControllerRequest::Register(Registration {
                cluster_id: view
                    .image()
                    .cluster_id
                    .clone()
                    .or(registration.cluster_id.clone()),
                ..registration.clone()
            });
            let epoch = match channel.call(request, timeout).await {
                Ok(ok) => match ok.reply {
                    ControllerReply::Registered { broker_epoch } => broker_epoch,
                    other => {
                        tracing::warn!(?other, "unexpected answer to a registration");
                        continue;
                    }
                },
                Err(e) if e.code == ResponseError::InconsistentClusterId.code() => {
                    return Err(Fatal(format!("the cluster refused this broker: {e}")));
                }
                Err(e) => {
                    tracing::info!(error = %e, "broker registration failed; retrying");
                    if sleep_or_stop(&mut stop, Duration::from_millis(500)).await {
                        return Ok(());
                    }
                    continue;
                }
            };
            tracing::info!(broker_epoch = epoch, "registered with the controller");
            *self.last_contact.lock() = std::time::Instant::now();
            self.state.send_modify(|s| {
                s.epoch = epoch;
                s.fenced = true;
            });
            // The controller unfences a broker that has applied its own registration:
            // wait for that before the first heartbeat rather than be told "not yet".
            channel.wait_for_offset(epoch, interval).await;
            loop {
                let state = self.state();
                let want_shut_down = *want.borrow_and_update();
                let hb = Heartbeat {
                    broker_id: registration.broker_id,
                    broker_epoch: epoch,
                    current_metadata_offset: channel.applied_offset(),
                    want_fence: false,
                    want_shut_down,
                    offline_partitions: offline(),
                };
                let sent = std::time::Instant::now();
                match channel
                    .call(ControllerRequest::Heartbeat(hb), timeout)
                    .await
                {
                    Ok(ok) => {
                        if let ControllerReply::Heartbeat(reply) = ok.reply {
                            if reply.is_fenced != state.fenced {
                                tracing::info!(
                                    fenced = reply.is_fenced,
                                    "the controller changed this broker's fencing"
                                );
                            }
                            self.state.send_modify(|s| {
                                s.fenced = reply.is_fenced;
                                s.shut_down = reply.should_shut_down;
                            });
                            // Contact counts from when the heartbeat left, and only
                            // while the controller keeps this broker unfenced.
                            if !reply.is_fenced {
                                *self.last_contact.lock() = sent;
                            }
                            let cut_off = reply.is_fenced
                                && !state.fenced
                                && !want_shut_down
                                && !reply.should_shut_down;
                            if cut_off || !reply.is_fenced {
                                self.fenced_while_serving
                                    .store(cut_off, std::sync::atomic::Ordering::Release);
                            }
                            if reply.should_shut_down {
                                tracing::info!("controlled shutdown complete");
                                return Ok(());
                            }
                        }
                    }
                    Err(e)
                        if e.code == ResponseError::StaleBrokerEpoch.code()
                            || e.code == ResponseError::BrokerIdNotRegistered.code() =>
                    {
                        tracing::warn!(error = %e, "registration lost; registering again");
                        continue 'register;
                    }
                    Err(e) => tracing::info!(error = %e, "heartbeat failed"),
                }
                // Fenced or shutting down: ask again soon (the answer gates serving).
                let state = self.state();
                let pause = if state.fenced || *want.borrow() {
                    interval.min(Duration::from_millis(100))
                } else {
                    interval
                };
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = want.changed() => {}
                    _ = stop.changed() => return Ok(()),
                }
            }
        }
    }
}

async fn sleep_or_stop(stop: &mut watch::Receiver<bool>, d: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = stop.changed() => true,
    }
}

/// Advertised endpoints as registration records carry them.
pub fn endpoints(listeners: &[crate::config::Endpoint]) -> Vec<BrokerEndpoint> {
    listeners
        .iter()
        .map(|l| BrokerEndpoint {
            name: l.name.clone(),
            host: l.host.clone(),
            port: i32::from(l.port),
            security_protocol: l.protocol.id(),
        })
        .collect()
}
