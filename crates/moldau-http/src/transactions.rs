//! `/api/transactions`: transactional ids, their state and open partitions (KIP-664's
//! ListTransactions and DescribeTransactions).

use crate::error::ApiResult;
use crate::Session;
use axum::extract::Path;
use axum::Json;
use serde_json::{json, Value};

/// `GET /api/transactions` → `{"transactions": [{"transactional_id", "producer_id", "state"}]}`.
pub async fn list(state: Session) -> ApiResult<Json<Value>> {
    let txns: Vec<Value> = state
        .admin()
        .list_transactions()
        .await?
        .into_iter()
        .map(|t| json!({"transactional_id": t.transactional_id, "producer_id": t.producer_id, "state": t.state}))
        .collect();
    Ok(Json(json!({ "transactions": txns })))
}

/// `GET /api/transactions/{id}` → `{"transactional_id", "state", "producer_id",
/// "producer_epoch", "timeout_ms", "start_time_ms", "partitions": [{"topic",
/// "partitions"}]}`; 404 TRANSACTIONAL_ID_NOT_FOUND.
pub async fn describe(state: Session, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let t = state.admin().describe_transaction(&id).await?;
    let partitions: Vec<Value> = t
        .partitions
        .iter()
        .map(|(topic, ps)| json!({"topic": topic, "partitions": ps}))
        .collect();
    Ok(Json(json!({
        "transactional_id": t.transactional_id,
        "state": t.state,
        "producer_id": t.producer_id,
        "producer_epoch": t.producer_epoch,
        "timeout_ms": t.timeout_ms,
        "start_time_ms": t.start_time_ms,
        "partitions": partitions,
    })))
}
