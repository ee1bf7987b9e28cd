//! Transaction administration (KIP-664): DescribeTransactions v0 and ListTransactions
//! v0–1 (v1 adds the duration filter, KIP-994), answered from the transaction
//! coordinator shards on this broker.

use super::RequestContext;
use crate::broker::Broker;
use kafka_protocol::messages::describe_transactions_response::{TopicData, TransactionState};
use kafka_protocol::messages::list_transactions_response::TransactionState as ListedState;
use kafka_protocol::messages::{
    DescribeTransactionsRequest, DescribeTransactionsResponse, ListTransactionsRequest,
    ListTransactionsResponse, ProducerId, TopicName, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;
use moldau_coordinator::txn::TxnState;
use std::sync::Arc;

/// Handles DescribeTransactions: unknown ids get TRANSACTIONAL_ID_NOT_FOUND, ids
/// coordinated elsewhere NOT_COORDINATOR.
pub async fn describe_transactions(
    broker: Arc<Broker>,
    ctx: RequestContext,
    req: DescribeTransactionsRequest,
) -> DescribeTransactionsResponse {
    use super::{AclOperation, ResourceType};
    let ids: Vec<String> = req
        .transactional_ids
        .iter()
        .map(|i| i.to_string())
        .collect();
    let states = broker
        .txns
        .describe(&ids)
        .into_iter()
        .map(|(id, found)| {
            // DESCRIBE on the transactional id, with an authorizer.
            let found = if ctx.allowed(
                &broker,
                AclOperation::Describe,
                ResourceType::TransactionalId,
                &id,
            ) {
                found
            } else {
                Err(moldau_protocol::error::ResponseError::TransactionalIdAuthorizationFailed)
            };
            let state = TransactionState::default()
                .with_transactional_id(TransactionalId(StrBytes::from_string(id)));
            match found {
                Err(e) => state
                    .with_error_code(e.code())
                    .with_transaction_state(StrBytes::from_static_str(""))
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1)
                    .with_transaction_start_time_ms(-1),
                Ok(d) => state
                    .with_transaction_state(StrBytes::from_static_str(d.state.name()))
                    .with_transaction_timeout_ms(d.transaction_timeout_ms)
                    .with_transaction_start_time_ms(d.transaction_start_time_ms)
                    .with_producer_id(ProducerId(d.producer_id))
                    .with_producer_epoch(d.producer_epoch)
                    .with_topics(
                        d.topics
                            .into_iter()
                            // Only the topics the principal may DESCRIBE (Kafka's rule).
                            .filter(|(t, _)| {
                                ctx.visible(&broker, AclOperation::Describe, ResourceType::Topic, t)
                            })
                            .map(|(t, ps)| {
                                TopicData::default()
                                    .with_topic(TopicName(StrBytes::from_string(t)))
                                    .with_partitions(ps)
                            })
                            .collect(),
                    ),
            }
        })
        .collect();
    DescribeTransactionsResponse::default().with_transaction_states(states)
}

/// Handles ListTransactions: state names Kafka does not know come back in
/// `unknown_state_filters` and match nothing.
pub async fn list_transactions(
    broker: Arc<Broker>,
    ctx: RequestContext,
    req: ListTransactionsRequest,
) -> ListTransactionsResponse {
    let (known, unknown): (Vec<&StrBytes>, Vec<&StrBytes>) = req
        .state_filters
        .iter()
        .partition(|s| TxnState::from_name(s.as_str()).is_some());
    let resp = ListTransactionsResponse::default()
        .with_unknown_state_filters(unknown.iter().map(|s| (*s).clone()).collect());
    if !unknown.is_empty() && known.is_empty() {
        return resp;
    }
    let states: Vec<String> = known.iter().map(|s| s.to_string()).collect();
    let producers: Vec<i64> = req.producer_id_filters.iter().map(|p| p.0).collect();
    let duration = if ctx.version >= 1 {
        req.duration_filter
    } else {
        -1
    };
    // Only the transactional ids the principal may DESCRIBE are listed.
    let listed = broker
        .txns
        .list(&states, &producers, duration)
        .into_iter()
        .filter(|l| {
            ctx.visible(
                &broker,
                super::AclOperation::Describe,
                super::ResourceType::TransactionalId,
                &l.transactional_id,
            )
        })
        .map(|l| {
            ListedState::default()
                .with_transactional_id(TransactionalId(StrBytes::from_string(l.transactional_id)))
                .with_producer_id(ProducerId(l.producer_id))
                .with_transaction_state(StrBytes::from_static_str(l.state.name()))
        })
        .collect();
    resp.with_transaction_states(listed)
}
