//! Producer id allocation (KIP-98, KIP-730): ids come in blocks of
//! [`PRODUCER_ID_BLOCK_SIZE`] that the active controller records in the metadata log
//! ([`MetadataRecord::ProducerIds`](moldau_metadata::MetadataRecord::ProducerIds)), so an
//! id is never handed out twice, across restarts and across brokers: a restart abandons
//! the rest of its block and takes a fresh one.

use crate::broker::CONTROLLER_TIMEOUT;
use crate::cluster::channel::ControllerChannel;
use crate::cluster::controller::{ControllerReply, ControllerRequest};
use moldau_metadata::controller::{MetadataOp, PRODUCER_ID_BLOCK_SIZE};
use moldau_protocol::error::ResponseError;
use parking_lot::Mutex;

/// Hands out producer ids from this broker's current block.
pub struct ProducerIdManager {
    broker_id: i32,
    /// `[next, end)` of the current block; empty until the first request.
    block: Mutex<(i64, i64)>,
    /// Serialises block requests, so two callers never take two blocks for one need.
    refill: tokio::sync::Mutex<()>,
}

impl ProducerIdManager {
    /// A manager with no block yet (the first id asks the controller for one).
    pub fn new(broker_id: i32) -> Self {
        ProducerIdManager {
            broker_id,
            block: Mutex::new((0, 0)),
            refill: tokio::sync::Mutex::new(()),
        }
    }

    /// An id from the current block, without asking the controller (`None` when the
    /// block is used up: call [`ProducerIdManager::prefetch`] first). For callers that
    /// hold a lock and must not wait.
    pub fn take(&self) -> Option<i64> {
        let mut block = self.block.lock();
        (block.0 < block.1).then(|| {
            block.0 += 1;
            block.0 - 1
        })
    }

    /// Makes sure the current block has an id left, asking the active controller for a
    /// new block if not (AllocateProducerIds). Errors: COORDINATOR_LOAD_IN_PROGRESS
    /// (retriable) when no controller grants a block.
    pub async fn prefetch(&self, controller: &ControllerChannel) -> Result<(), ResponseError> {
        let _one = self.refill.lock().await;
        {
            let block = self.block.lock();
            if block.0 < block.1 {
                return Ok(());
            }
        }
        let op = MetadataOp::AllocateProducerIds {
            broker_id: self.broker_id,
        };
        match controller
            .call(ControllerRequest::Op(op), CONTROLLER_TIMEOUT)
            .await
        {
            Ok(ok) => match ok.reply {
                ControllerReply::ProducerIds { next_producer_id } => {
                    *self.block.lock() =
                        (next_producer_id - PRODUCER_ID_BLOCK_SIZE, next_producer_id);
                    tracing::debug!(end = next_producer_id, "new producer id block");
                    Ok(())
                }
                other => {
                    tracing::error!(?other, "unexpected answer to AllocateProducerIds");
                    Err(ResponseError::CoordinatorLoadInProgress)
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, "cannot allocate a producer id block");
                Err(ResponseError::CoordinatorLoadInProgress)
            }
        }
    }

    /// The next unused producer id, taking a new block when this one is used up.
    /// Errors: as [`ProducerIdManager::prefetch`].
    pub async fn next_id(&self, controller: &ControllerChannel) -> Result<i64, ResponseError> {
        loop {
            if let Some(id) = self.take() {
                return Ok(id);
            }
            self.prefetch(controller).await?;
        }
    }
}
