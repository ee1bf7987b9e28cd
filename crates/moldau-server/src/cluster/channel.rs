//! How a node reaches the active controller (Kafka's `NodeToControllerChannelManager`):
//! in process when this node is it, else over the controller listener of the node the
//! quorum names, following `NOT_CONTROLLER` hints and trying the voters in turn while
//! the quorum elects a leader.

use super::controller::{
    ControllerOk, ControllerReply, ControllerRequest, QuorumController, RemoteError,
};
use super::rpc::{RpcPool, RpcRequest, RpcResponse};
use crate::config::Voter;
use moldau_metadata::controller::{ControllerResult, MetadataOp};
use moldau_metadata::quorum::{MetadataFeed, MetadataView};
use moldau_metadata::MetadataImage;
use moldau_protocol::error::ResponseError;
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::Duration;

/// Pause before retrying when no active controller is known, ms.
const RETRY_BACKOFF_MS: u64 = 100;

/// Longest wait of a broker-only node's metadata long poll, ms.
const METADATA_POLL_MS: u64 = 5_000;

/// The way to the active controller.
pub struct ControllerChannel {
    node_id: i32,
    local: Option<Arc<QuorumController>>,
    voters: Vec<Voter>,
    pool: Arc<RpcPool>,
    hint: Mutex<Option<i32>>,
    view: MetadataView,
    /// The metadata offset this node has fully applied (partitions opened, roles
    /// changed), -1 before the first image.
    applied: tokio::sync::watch::Sender<i64>,
}

impl ControllerChannel {
    /// A channel for node `node_id`; `local` is this node's controller if it is a voter.
    pub fn new(
        node_id: i32,
        local: Option<Arc<QuorumController>>,
        voters: Vec<Voter>,
        pool: Arc<RpcPool>,
        view: MetadataView,
    ) -> Self {
        Self {
            node_id,
            local,
            voters,
            pool,
            hint: Mutex::new(None),
            view,
            applied: tokio::sync::watch::channel(-1).0,
        }
    }

    /// Records that this node has fully applied the metadata up to `offset`.
    pub fn mark_applied(&self, offset: i64) {
        self.applied.send_if_modified(|a| {
            let newer = offset > *a;
            if newer {
                *a = offset;
            }
            newer
        });
    }

    /// The metadata offset this node has fully applied.
    pub fn applied_offset(&self) -> i64 {
        *self.applied.borrow()
    }

    /// The active controller as far as this node knows.
    pub fn active_controller(&self) -> Option<i32> {
        match &self.local {
            Some(c) => c.leader(),
            None => *self.hint.lock(),
        }
    }

    fn addr_of(&self, id: i32) -> Option<String> {
        self.voters.iter().find(|v| v.id == id).map(Voter::addr)
    }

    async fn call_once(
        &self,
        target: i32,
        request: &ControllerRequest,
        timeout: Duration,
    ) -> Result<ControllerOk, RemoteError> {
        if target == self.node_id {
            if let Some(local) = &self.local {
                return local.handle(request.clone()).await;
            }
        }
        let Some(addr) = self.addr_of(target) else {
            return Err(RemoteError::not_controller(None));
        };
        let rpc = RpcRequest::Controller(request.clone());
        match self.pool.get(&addr).call(&rpc, timeout).await {
            Ok(RpcResponse::Controller(result)) => result,
            Ok(other) => Err(RemoteError::new(
                ResponseError::UnknownServerError,
                format!("controller {target} answered {other:?}"),
            )),
            Err(e) => Err(RemoteError {
                leader: None,
                ..RemoteError::new(ResponseError::NetworkException, e.to_string())
            }),
        }
    }

    /// Sends `request` to the active controller and returns its answer, retrying on
    /// `NOT_CONTROLLER` and unreachable controllers until `timeout` has passed. Errors:
    /// the controller's refusal, or `REQUEST_TIMED_OUT`.
    pub async fn call(
        &self,
        request: ControllerRequest,
        timeout: Duration,
    ) -> Result<ControllerOk, RemoteError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut rotate = 0usize;
        loop {
            let target = self
                .active_controller()
                .or_else(|| {
                    rotate += 1;
                    self.voters
                        .get(rotate % self.voters.len().max(1))
                        .map(|v| v.id)
                })
                .unwrap_or(self.node_id);
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Err(RemoteError::new(
                    ResponseError::RequestTimedOut,
                    format!(
                        "no active controller answered within {} ms",
                        timeout.as_millis()
                    ),
                ));
            }
            match self.call_once(target, &request, left).await {
                Ok(ok) => {
                    *self.hint.lock() = Some(target);
                    return Ok(ok);
                }
                Err(e)
                    if e.code == ResponseError::NotController.code()
                        || e.code == ResponseError::NetworkException.code() =>
                {
                    let hint = e.leader.filter(|l| *l != target);
                    *self.hint.lock() = hint;
                    if hint.is_none() {
                        tokio::time::sleep(Duration::from_millis(RETRY_BACKOFF_MS).min(left)).await;
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Waits until this node has fully applied metadata offset `offset` (at most
    /// `timeout`), so a client told that a change is done finds it here: a created
    /// topic's partitions are open. Returns the image.
    pub async fn wait_for_offset(&self, offset: i64, timeout: Duration) -> Arc<MetadataImage> {
        let mut rx = self.applied.subscribe();
        let _ = tokio::time::timeout(timeout, rx.wait_for(|applied| *applied >= offset)).await;
        self.view.image()
    }

    /// Runs an admin operation on the active controller and waits until this node's
    /// image shows it. Errors: the controller's refusal (as Kafka errors), or
    /// `REQUEST_TIMED_OUT` when no controller answers within `timeout`.
    pub async fn submit(
        &self,
        op: MetadataOp,
        timeout: Duration,
    ) -> ControllerResult<(ControllerReply, Arc<MetadataImage>)> {
        let ok = self
            .call(ControllerRequest::Op(op), timeout)
            .await
            .map_err(RemoteError::into_controller_error)?;
        let image = self.wait_for_offset(ok.offset, timeout).await;
        Ok((ok.reply, image))
    }

    /// A broker-only node's metadata: long-polls the active controller for newer images
    /// ([`ControllerRequest::FetchMetadata`]) and publishes them into `feed`, until
    /// `stop` flips. A new image reaches the broker as soon as the controller applies
    /// it; while no controller answers, the broker keeps its last image (and, out of
    /// contact, steps down: see `Broker::out_of_contact`).
    pub async fn follow_controller(
        self: Arc<Self>,
        feed: MetadataFeed,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut failures = 0u32;
        loop {
            let request = ControllerRequest::FetchMetadata {
                after_offset: feed.offset(),
                max_wait_ms: METADATA_POLL_MS,
            };
            let answer = tokio::select! {
                answer = self.call(request, Duration::from_millis(METADATA_POLL_MS + 10_000)) => answer,
                _ = stop.changed() => return,
            };
            match answer {
                Ok(ControllerOk {
                    reply: ControllerReply::Metadata(image),
                    ..
                }) => {
                    failures = 0;
                    if let Some(image) = image {
                        feed.publish(*image);
                    }
                }
                Ok(other) => {
                    tracing::warn!(reply = ?other.reply, "unexpected answer to a metadata fetch");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(RETRY_BACKOFF_MS)) => {}
                        _ = stop.changed() => return,
                    }
                }
                Err(e) => {
                    failures += 1;
                    if failures == 1 || failures.is_multiple_of(20) {
                        tracing::info!(error = %e, "no metadata from the controllers; retrying");
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(RETRY_BACKOFF_MS)) => {}
                        _ = stop.changed() => return,
                    }
                }
            }
        }
    }

    /// [`ControllerChannel::submit`] from a blocking thread (never from async code).
    pub fn submit_blocking(
        &self,
        op: MetadataOp,
        timeout: Duration,
    ) -> ControllerResult<(ControllerReply, Arc<MetadataImage>)> {
        tokio::runtime::Handle::current().block_on(self.submit(op, timeout))
    }
}
