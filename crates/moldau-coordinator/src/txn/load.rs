//! Loading a `__transaction_state` partition into a [`TxnShard`] (Kafka
//! `TransactionStateManager.loadTransactionsForTxnTopicPartition`).

use super::metadata::{TxnFields, TxnMetadata, TxnState};
use super::records::{decode_key, decode_value, TxnRecordError};
use super::shard::{Effects, TxnShard};

impl<R> TxnShard<R> {
    /// Applies one record of the partition, in offset order, before any request: a value
    /// replaces the id's metadata, a tombstone (`None`) removes it.
    ///
    /// Errors leave the shard unchanged. Kafka logs and skips keys of unknown versions
    /// ([`TxnRecordError::UnsupportedVersion`]); the runtime should do the same.
    pub fn replay(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), TxnRecordError> {
        let id = decode_key(key)?;
        let Some(value) = value else {
            self.remove_loaded(&id);
            return Ok(());
        };
        let value = decode_value(value)?;
        if matches!(value.state, TxnState::Dead | TxnState::PrepareEpochFence) {
            return Err(TxnRecordError::NotStored(value.state));
        }
        self.remove_loaded(&id);
        self.txns
            .insert(id.clone(), TxnMetadata::new(TxnFields::from_value(value)));
        self.reschedule(&id);
        Ok(())
    }

    fn remove_loaded(&mut self, id: &str) {
        self.unschedule(id);
        self.txns.remove(id);
    }

    /// Ends the load: transactions left in PrepareCommit/PrepareAbort are completed, as
    /// Kafka does after a coordinator change, by writing their markers again
    /// ([`TxnEffect::WriteMarkers`](super::TxnEffect::WriteMarkers), in transactional-id
    /// order; markers are idempotent at the partitions). Ongoing transactions keep their
    /// timeout and are aborted by [`TxnShard::tick`] when it passes.
    pub fn finish_load(&mut self, now: i64) -> Effects<R> {
        let mut ids: Vec<String> = self
            .txns
            .iter()
            .filter(|(_, m)| m.pending.is_none() && m.fields.state.is_prepare())
            .map(|(id, _)| id.clone())
            .collect();
        ids.sort();
        let mut fx = Vec::new();
        for id in ids {
            self.send_markers(now, &id, &mut fx);
        }
        fx
    }
}
