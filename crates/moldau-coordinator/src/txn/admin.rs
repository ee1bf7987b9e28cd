//! DescribeTransactions and ListTransactions (KIP-664) over a [`TxnShard`].

use super::api::{DescribedTxn, TxnDescription, TxnListing};
use super::metadata::{TxnMetadata, TxnState};
use super::shard::TxnShard;
use moldau_protocol::error::ResponseError;

impl<R> TxnShard<R> {
    /// The metadata of `id` as the admin APIs see it: ids being created (first write
    /// pending) or expired (`Dead`) do not exist.
    fn visible(&self, id: &str) -> Option<&TxnMetadata> {
        self.txns
            .get(id)
            .filter(|m| !m.unwritten && m.fields.state != TxnState::Dead)
    }

    /// DescribeTransactions v0 for the ids of this shard, in request order: state,
    /// timeout, start time, producer id and epoch, and partitions grouped by topic. An
    /// unknown id gets TRANSACTIONAL_ID_NOT_FOUND, an empty one INVALID_REQUEST. The
    /// durable state is reported; a transition in flight is not.
    pub fn describe(&self, transactional_ids: &[String]) -> Vec<TxnDescription> {
        transactional_ids
            .iter()
            .map(|id| TxnDescription {
                transactional_id: id.clone(),
                result: if id.is_empty() {
                    Err(ResponseError::InvalidRequest)
                } else {
                    self.visible(id)
                        .map(describe_one)
                        .ok_or(ResponseError::TransactionalIdNotFound)
                },
            })
            .collect()
    }

    /// ListTransactions (v0, and v1's duration filter): every transactional id of this
    /// shard, in id order, filtered as Kafka does. `state_filters` are Kafka state names
    /// (empty = all; names that match no state match nothing, and the handler reports
    /// them as `unknown_state_filters`, see [`TxnState::from_name`]);
    /// `producer_id_filters` (empty = all); `duration_filter_ms` (v1, -1 = none) keeps
    /// only transactions whose start is more than that many ms before `now` (Kafka
    /// compares with the start timestamp as stored, so ids with none, -1, pass).
    pub fn list(
        &self,
        state_filters: &[String],
        producer_id_filters: &[i64],
        duration_filter_ms: i64,
        now: i64,
    ) -> Vec<TxnListing> {
        let states: Vec<TxnState> = state_filters
            .iter()
            .filter_map(|n| TxnState::from_name(n))
            .collect();
        let mut out: Vec<TxnListing> = self
            .txns
            .iter()
            .filter(|(id, _)| self.visible(id).is_some())
            .map(|(id, m)| (id, &m.fields))
            .filter(|(_, f)| {
                producer_id_filters.is_empty() || producer_id_filters.contains(&f.producer_id)
            })
            .filter(|(_, f)| state_filters.is_empty() || states.contains(&f.state))
            .filter(|(_, f)| {
                duration_filter_ms < 0
                    || now.saturating_sub(f.txn_start_timestamp) > duration_filter_ms
            })
            .map(|(id, f)| TxnListing {
                transactional_id: id.clone(),
                producer_id: f.producer_id,
                state: f.state,
            })
            .collect();
        out.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
        out
    }
}

fn describe_one(m: &TxnMetadata) -> DescribedTxn {
    let f = &m.fields;
    let mut topics: Vec<(String, Vec<i32>)> = Vec::new();
    for (topic, partition) in &f.partitions {
        match topics.last_mut() {
            Some((t, ids)) if t == topic => ids.push(*partition),
            _ => topics.push((topic.clone(), vec![*partition])),
        }
    }
    DescribedTxn {
        state: f.state,
        transaction_timeout_ms: f.txn_timeout_ms,
        transaction_start_time_ms: f.txn_start_timestamp,
        producer_id: f.producer_id,
        producer_epoch: f.producer_epoch,
        topics,
    }
}
