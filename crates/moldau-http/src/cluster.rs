//! `/api/cluster`: brokers and controller.

use crate::error::ApiResult;
use crate::AppState;
use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

/// `GET /api/cluster` → `{"cluster_id", "controller_id", "brokers": [{"node_id", "host",
/// "port", "rack"}]}`.
pub async fn describe(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let meta = state.admin().describe_cluster().await?;
    let brokers: Vec<Value> = meta
        .brokers
        .iter()
        .map(|b| json!({"node_id": b.node_id, "host": b.host, "port": b.port, "rack": b.rack}))
        .collect();
    Ok(Json(json!({
        "cluster_id": meta.cluster_id,
        "controller_id": meta.controller_id,
        "brokers": brokers,
    })))
}
