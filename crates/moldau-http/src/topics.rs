//! `/api/topics`: list, create, describe (partitions, offsets, configs), delete, alter
//! configs.

use crate::error::{ApiError, ApiResult};
use crate::produce::parse_body;
use crate::Session;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::Json;
use bytes::Bytes;
use moldau_client::{ConfigResource, NewTopic};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;

type Body = Result<Bytes, axum::extract::rejection::BytesRejection>;

/// `GET /api/topics` → `{"topics": [{"name", "partitions", "internal"}]}`, sorted by name,
/// internal topics included.
pub async fn list(state: Session) -> ApiResult<Json<Value>> {
    let topics: Vec<Value> = state
        .admin()
        .list_topics(true)
        .await?
        .into_iter()
        .map(|t| json!({"name": t.name, "partitions": t.partitions.len(), "internal": t.internal}))
        .collect();
    Ok(Json(json!({ "topics": topics })))
}

/// Body of `POST /api/topics`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateIn {
    /// Topic name.
    pub name: String,
    /// Partitions (default: the broker's `num.partitions`).
    pub partitions: Option<i32>,
    /// Replication factor (default: the broker's `default.replication.factor`).
    pub replication_factor: Option<i16>,
    /// Topic configs.
    #[serde(default)]
    pub configs: BTreeMap<String, String>,
}

/// `POST /api/topics` [`CreateIn`] → 201 `{"name", "partitions"}`; 409
/// TOPIC_ALREADY_EXISTS, 400 INVALID_TOPIC_EXCEPTION / INVALID_PARTITIONS /
/// INVALID_CONFIG / INVALID_REPLICATION_FACTOR.
pub async fn create(state: Session, body: Body) -> ApiResult<(StatusCode, Json<Value>)> {
    let body: CreateIn = parse_body(&state, body)?;
    let topic = NewTopic {
        name: body.name.clone(),
        partitions: body.partitions.unwrap_or(-1),
        replication_factor: body.replication_factor.unwrap_or(-1),
        configs: body.configs.into_iter().collect(),
    };
    state.admin().create_topic(&topic).await?;
    let info = state.admin().describe_topic(&body.name).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"name": info.name, "partitions": info.partitions.len()})),
    ))
}

/// `GET /api/topics/{topic}` → `{"name", "internal", "topic_id", "partitions": [{"partition",
/// "leader", "leader_epoch", "replicas", "isr", "offline", "under_replicated",
/// "log_start_offset", "high_watermark", "last_stable_offset"}], "configs": {name:
/// value}}`; 404 for an unknown topic. `offline`: no leader; `under_replicated`: the ISR
/// is smaller than the replica set.
pub async fn describe(state: Session, Path(topic): Path<String>) -> ApiResult<Json<Value>> {
    let admin = state.admin();
    let info = admin.describe_topic(&topic).await?;
    let offsets = admin.partition_offsets(&info).await?;
    let configs = admin.topic_configs(&topic).await?;
    let partitions: Vec<Value> = info
        .partitions
        .iter()
        .map(|p| {
            let o = offsets.iter().find(|o| o.partition == p.partition);
            json!({
                "partition": p.partition,
                "leader": p.leader,
                "leader_epoch": p.leader_epoch,
                "replicas": p.replicas,
                "isr": p.isr,
                "offline": p.leader < 0,
                "under_replicated": p.isr.len() < p.replicas.len(),
                "log_start_offset": o.map(|o| o.log_start_offset),
                "high_watermark": o.map(|o| o.high_watermark),
                "last_stable_offset": o.map(|o| o.last_stable_offset),
            })
        })
        .collect();
    Ok(Json(json!({
        "name": info.name,
        "topic_id": info.topic_id.to_string(),
        "internal": info.internal,
        "partitions": partitions,
        "configs": configs,
    })))
}

/// `DELETE /api/topics/{topic}` → `{"deleted": name}`; 404 for an unknown topic.
pub async fn delete(state: Session, Path(topic): Path<String>) -> ApiResult<Json<Value>> {
    state.admin().delete_topic(&topic).await?;
    Ok(Json(json!({ "deleted": topic })))
}

/// `PATCH /api/topics/{topic}/configs` `{"retention.ms": "1000", "cleanup.policy": null}`
/// (null resets to the default) → the topic's configs after the change.
pub async fn alter_configs(
    state: Session,
    Path(topic): Path<String>,
    body: Body,
) -> ApiResult<Json<Value>> {
    let changes: BTreeMap<String, Option<String>> = parse_body(&state, body)?;
    if changes.is_empty() {
        return Err(ApiError::invalid("no config changes given"));
    }
    let admin = state.admin();
    admin.describe_topic(&topic).await?;
    let changes: Vec<(String, Option<String>)> = changes.into_iter().collect();
    admin
        .alter_configs(&ConfigResource::Topic(topic.clone()), &changes)
        .await?;
    Ok(Json(json!({"configs": admin.topic_configs(&topic).await?})))
}
