//! Producer id allocation (KIP-98, KIP-730): ids come in blocks of
//! [`PRODUCER_ID_BLOCK_SIZE`] that the controller records in the metadata log
//! ([`MetadataRecord::ProducerIds`](moldau_metadata::MetadataRecord::ProducerIds)), so an
//! id is never handed out twice, also across restarts and (later) across brokers: a
//! restart abandons the rest of its block and takes a fresh one.

use moldau_metadata::controller::{self, PRODUCER_ID_BLOCK_SIZE};
use moldau_metadata::MetadataLog;
use moldau_protocol::error::ResponseError;
use parking_lot::Mutex;

/// Hands out producer ids from this broker's current block.
pub struct ProducerIdManager {
    broker_id: i32,
    /// `[next, end)` of the current block; empty until the first request.
    block: Mutex<(i64, i64)>,
}

impl ProducerIdManager {
    /// A manager with no block yet (the first id asks the controller for one).
    pub fn new(broker_id: i32) -> Self {
        ProducerIdManager {
            broker_id,
            block: Mutex::new((0, 0)),
        }
    }

    /// Makes sure the current block has an id left, taking a new block if not, so the
    /// next [`ProducerIdManager::next_id`] does not write the metadata log (callers that
    /// take ids under another lock call this first, off that lock). Errors: as
    /// `next_id`.
    pub fn prefetch(&self, metadata: &MetadataLog, now_ms: i64) -> Result<(), ResponseError> {
        self.refill(&mut self.block.lock(), metadata, now_ms)
    }

    /// The next unused producer id. When the block is used up this commits a new block
    /// to the metadata log (one fsync per [`PRODUCER_ID_BLOCK_SIZE`] ids), under the
    /// block lock so two callers never take the same block. Errors:
    /// COORDINATOR_LOAD_IN_PROGRESS (retriable) if the metadata log cannot be written.
    pub fn next_id(&self, metadata: &MetadataLog, now_ms: i64) -> Result<i64, ResponseError> {
        let mut block = self.block.lock();
        self.refill(&mut block, metadata, now_ms)?;
        let id = block.0;
        block.0 += 1;
        Ok(id)
    }

    /// Takes a new block into `block` if it is used up.
    fn refill(
        &self,
        block: &mut (i64, i64),
        metadata: &MetadataLog,
        now_ms: i64,
    ) -> Result<(), ResponseError> {
        if block.0 < block.1 {
            return Ok(());
        }
        let image = metadata
            .submit(now_ms, |image| {
                controller::allocate_producer_ids(image, self.broker_id)
            })
            .map_err(|e| {
                tracing::error!(error = %e, "cannot allocate a producer id block");
                ResponseError::CoordinatorLoadInProgress
            })?
            .map_err(|e| {
                tracing::error!(error = %e, "producer id block refused");
                ResponseError::CoordinatorLoadInProgress
            })?;
        let end = image.next_producer_id;
        *block = (end - PRODUCER_ID_BLOCK_SIZE, end);
        tracing::debug!(first = block.0, end, "new producer id block");
        Ok(())
    }
}
