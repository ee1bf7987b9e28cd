//! The classic group membership APIs: JoinGroup v0–9, SyncGroup v0–5, Heartbeat v0–4,
//! LeaveGroup v0–5. Each maps the wire struct to the coordinator's request, lets the
//! shard decide ([`moldau_coordinator::GroupShard`]), and maps the reply back for the
//! request's version.

use super::RequestContext;
use crate::broker::Broker;
use crate::coordinator::Shard;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    LeaveGroupResponse, SyncGroupRequest, SyncGroupResponse,
};
use kafka_protocol::protocol::StrBytes;
use moldau_coordinator::{self as gc, Reply};
use moldau_protocol::error::ResponseError;
use std::sync::Arc;

pub(crate) fn text(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_owned())
}

pub(crate) fn code(e: Option<ResponseError>) -> i16 {
    e.map_or(0, |e| e.code())
}

/// The shard for `group_id`, or the error to answer with.
pub(crate) fn shard(broker: &Broker, group_id: &str) -> Result<Arc<Shard>, ResponseError> {
    broker.groups.shard_for(group_id)
}

/// The shard for `group_id` if the principal may do `op` on the group (else
/// `GROUP_AUTHORIZATION_FAILED`, checked first, as Kafka does).
pub(crate) fn authorized_shard(
    broker: &Broker,
    ctx: &RequestContext,
    op: super::AclOperation,
    group_id: &str,
) -> Result<Arc<Shard>, ResponseError> {
    if !ctx.allowed(broker, op, super::ResourceType::Group, group_id) {
        return Err(ResponseError::GroupAuthorizationFailed);
    }
    shard(broker, group_id)
}

/// Handles JoinGroup.
pub async fn join_group(
    broker: Arc<Broker>,
    ctx: RequestContext,
    req: JoinGroupRequest,
) -> JoinGroupResponse {
    let v = ctx.version;
    let result = match authorized_shard(&broker, &ctx, super::AclOperation::Read, &req.group_id) {
        Err(e) => gc::JoinResult::failed(e, req.member_id.to_string()),
        Ok(shard) => {
            let join = gc::JoinGroup {
                group_id: req.group_id.to_string(),
                member_id: req.member_id.to_string(),
                group_instance_id: req.group_instance_id.as_ref().map(|s| s.to_string()),
                protocol_type: req.protocol_type.to_string(),
                protocols: req
                    .protocols
                    .iter()
                    .map(|p| (p.name.to_string(), p.metadata.clone()))
                    .collect(),
                session_timeout_ms: req.session_timeout_ms,
                // v0 has no rebalance timeout: the session timeout stands in (Kafka).
                rebalance_timeout_ms: if v >= 1 {
                    req.rebalance_timeout_ms
                } else {
                    req.session_timeout_ms
                },
                client_id: ctx.client_id.as_deref().unwrap_or("").to_owned(),
                client_host: ctx.client_host.to_string(),
                require_known_member_id: v >= 4,
                supports_skip_assignment: v >= 9,
            };
            match broker
                .groups
                .call(&shard, |sm, now, tx| sm.join(now, join, tx))
                .await
            {
                Some(Reply::Join(j)) => j,
                _ => {
                    gc::JoinResult::failed(ResponseError::NotCoordinator, req.member_id.to_string())
                }
            }
        }
    };
    let members = result
        .members
        .iter()
        .map(|m| {
            JoinGroupResponseMember::default()
                .with_member_id(text(&m.member_id))
                .with_group_instance_id(if v >= 5 {
                    m.group_instance_id.as_deref().map(text)
                } else {
                    None
                })
                .with_metadata(m.metadata.clone())
        })
        .collect();
    // Before v7 the protocol name is not nullable.
    let protocol_name = match (&result.protocol_name, v >= 7) {
        (Some(p), _) => Some(text(p)),
        (None, true) => None,
        (None, false) => Some(text("")),
    };
    JoinGroupResponse::default()
        .with_error_code(code(result.error))
        .with_generation_id(result.generation_id)
        .with_protocol_type(if v >= 7 {
            result.protocol_type.as_deref().map(text)
        } else {
            None
        })
        .with_protocol_name(protocol_name)
        .with_leader(text(&result.leader))
        .with_skip_assignment(v >= 9 && result.skip_assignment)
        .with_member_id(text(&result.member_id))
        .with_members(members)
}

/// Handles SyncGroup.
pub async fn sync_group(
    broker: Arc<Broker>,
    ctx: RequestContext,
    req: SyncGroupRequest,
) -> SyncGroupResponse {
    let v = ctx.version;
    let result = match authorized_shard(&broker, &ctx, super::AclOperation::Read, &req.group_id) {
        Err(e) => gc::SyncResult::failed(e),
        Ok(shard) => {
            let sync = gc::SyncGroup {
                group_id: req.group_id.to_string(),
                generation_id: req.generation_id,
                member_id: req.member_id.to_string(),
                group_instance_id: req.group_instance_id.as_ref().map(|s| s.to_string()),
                protocol_type: req.protocol_type.as_ref().map(|s| s.to_string()),
                protocol_name: req.protocol_name.as_ref().map(|s| s.to_string()),
                assignments: req
                    .assignments
                    .iter()
                    .map(|a| (a.member_id.to_string(), a.assignment.clone()))
                    .collect(),
            };
            match broker
                .groups
                .call(&shard, |sm, now, tx| sm.sync(now, sync, tx))
                .await
            {
                Some(Reply::Sync(s)) => s,
                _ => gc::SyncResult::failed(ResponseError::NotCoordinator),
            }
        }
    };
    let mut resp = SyncGroupResponse::default()
        .with_error_code(code(result.error))
        .with_assignment(result.assignment);
    if v >= 5 {
        resp = resp
            .with_protocol_type(result.protocol_type.as_deref().map(text))
            .with_protocol_name(result.protocol_name.as_deref().map(text));
    }
    resp
}

/// Handles Heartbeat.
pub async fn heartbeat(
    broker: Arc<Broker>,
    ctx: RequestContext,
    req: HeartbeatRequest,
) -> HeartbeatResponse {
    let error = match authorized_shard(&broker, &ctx, super::AclOperation::Read, &req.group_id) {
        Err(e) => Some(e),
        Ok(shard) => {
            let hb = gc::Heartbeat {
                group_id: req.group_id.to_string(),
                generation_id: req.generation_id,
                member_id: req.member_id.to_string(),
                group_instance_id: req.group_instance_id.as_ref().map(|s| s.to_string()),
            };
            broker.groups.with(&shard, |sm, now| sm.heartbeat(now, &hb))
        }
    };
    HeartbeatResponse::default().with_error_code(code(error))
}

/// Handles LeaveGroup (v3+ names several members, KIP-345).
pub async fn leave_group(
    broker: Arc<Broker>,
    ctx: RequestContext,
    req: LeaveGroupRequest,
) -> LeaveGroupResponse {
    let v = ctx.version;
    let members: Vec<(String, Option<String>)> = if v >= 3 {
        req.members
            .iter()
            .map(|m| {
                (
                    m.member_id.to_string(),
                    m.group_instance_id.as_ref().map(|s| s.to_string()),
                )
            })
            .collect()
    } else {
        vec![(req.member_id.to_string(), None)]
    };
    let result = match authorized_shard(&broker, &ctx, super::AclOperation::Read, &req.group_id) {
        Err(e) => gc::LeaveResult {
            error: Some(e),
            members: Vec::new(),
        },
        Ok(shard) => {
            let group_id = req.group_id.to_string();
            match broker
                .groups
                .call(&shard, |sm, now, tx| sm.leave(now, &group_id, members, tx))
                .await
            {
                Some(Reply::Leave(l)) => l,
                _ => gc::LeaveResult {
                    error: Some(ResponseError::NotCoordinator),
                    members: Vec::new(),
                },
            }
        }
    };
    let mut resp = LeaveGroupResponse::default();
    if v >= 3 {
        resp = resp.with_error_code(code(result.error)).with_members(
            result
                .members
                .iter()
                .map(|(m, i, e)| {
                    MemberResponse::default()
                        .with_member_id(text(m))
                        .with_group_instance_id(i.as_deref().map(text))
                        .with_error_code(code(*e))
                })
                .collect(),
        );
    } else {
        let first = result.members.first().and_then(|m| m.2);
        resp = resp.with_error_code(code(result.error.or(first)));
    }
    resp
}
