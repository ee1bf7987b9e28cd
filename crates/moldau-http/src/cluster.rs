//! `/api/cluster`: brokers (live or fenced), the active controller and the quorum.

use crate::error::ApiResult;
use crate::Session;
use axum::Json;
use serde_json::{json, Value};

/// `GET /api/cluster` → `{"cluster_id", "controller_id", "brokers": [{"node_id", "host",
/// "port", "rack", "status": "live"|"fenced"}], "quorum": {"leader_id", "leader_epoch",
/// "high_watermark", "voters": [{"node_id", "log_end_offset"}]} | null}` (`quorum` is null
/// while no active controller answers).
pub async fn describe(state: Session) -> ApiResult<Json<Value>> {
    let admin = state.admin();
    let meta = admin.describe_cluster().await?;
    let quorum = admin.describe_quorum().await.ok();
    let brokers: Vec<Value> = meta
        .brokers
        .iter()
        .map(|b| {
            json!({
                "node_id": b.node_id, "host": b.host, "port": b.port, "rack": b.rack,
                "status": if b.fenced { "fenced" } else { "live" },
            })
        })
        .collect();
    Ok(Json(json!({
        "cluster_id": meta.cluster_id,
        "controller_id": meta.controller_id,
        "brokers": brokers,
        "quorum": quorum.map(|q| json!({
            "leader_id": q.leader_id,
            "leader_epoch": q.leader_epoch,
            "high_watermark": q.high_watermark,
            "voters": q.voters.iter().map(|(id, leo)| json!({"node_id": id, "log_end_offset": leo})).collect::<Vec<_>>(),
        })),
    })))
}
