//! `/api/groups`: consumer groups, their members and lag.

use crate::error::ApiResult;
use crate::Session;
use axum::extract::Path;
use axum::Json;
use serde_json::{json, Value};

/// `GET /api/groups` → `{"groups": [{"group_id", "state", "protocol_type"}]}`.
pub async fn list(state: Session) -> ApiResult<Json<Value>> {
    let groups: Vec<Value> = state
        .admin()
        .list_groups()
        .await?
        .into_iter()
        .map(
            |g| json!({"group_id": g.group_id, "state": g.state, "protocol_type": g.protocol_type}),
        )
        .collect();
    Ok(Json(json!({ "groups": groups })))
}

/// `GET /api/groups/{group}` → `{"group_id", "state", "protocol_type", "protocol",
/// "members": [{"member_id", "group_instance_id", "client_id", "client_host",
/// "assignments": [{"topic", "partitions"}]}], "offsets": [{"topic", "partition",
/// "committed_offset", "high_watermark", "lag"}], "total_lag"}`; 404 GROUP_ID_NOT_FOUND
/// for a group with no members and no committed offsets.
pub async fn describe(state: Session, Path(group): Path<String>) -> ApiResult<Json<Value>> {
    let (g, lag) = state.admin().describe_group_lag(&group).await?;
    let members: Vec<Value> = g
        .members
        .iter()
        .map(|m| {
            let assignments: Vec<Value> = m
                .assignment
                .iter()
                .map(|(t, ps)| json!({"topic": t, "partitions": ps}))
                .collect();
            json!({
                "member_id": m.member_id,
                "group_instance_id": m.group_instance_id,
                "client_id": m.client_id,
                "client_host": m.client_host,
                "assignments": assignments,
            })
        })
        .collect();
    let total: i64 = lag.iter().map(|l| l.lag).sum();
    let offsets: Vec<Value> = lag
        .iter()
        .map(|l| {
            json!({
                "topic": l.topic,
                "partition": l.partition,
                "committed_offset": l.committed_offset,
                "high_watermark": l.high_watermark,
                "lag": l.lag,
            })
        })
        .collect();
    Ok(Json(json!({
        "group_id": g.group_id,
        "state": g.state,
        "protocol_type": g.protocol_type,
        "protocol": g.protocol,
        "members": members,
        "offsets": offsets,
        "total_lag": total,
    })))
}
