//! Group administration: ListGroups v0–5 (KIP-518 state filter, KIP-848 type filter),
//! DescribeGroups v0–5, DeleteGroups v0–2.

use super::groups::{code, text};
use super::offsets::group_id;
use super::RequestContext;
use crate::broker::Broker;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{
    DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest, DescribeGroupsResponse,
    ListGroupsRequest, ListGroupsResponse,
};
use moldau_coordinator::{GroupState, Reply};
use moldau_protocol::error::ResponseError;
use std::sync::Arc;

/// ACL operations a group allows (Kafka `AclOperation` codes READ=3, DELETE=6,
/// DESCRIBE=8): Moldau has no ACLs, so every client may do all of them.
const GROUP_OPERATIONS: i32 = 1 << 3 | 1 << 6 | 1 << 8;

/// Handles ListGroups: every group of every shard on this broker.
pub async fn list_groups(
    broker: Arc<Broker>,
    ctx: RequestContext,
    req: ListGroupsRequest,
) -> ListGroupsResponse {
    let v = ctx.version;
    let states: Vec<GroupState> = if v >= 4 {
        req.states_filter
            .iter()
            .map(|s| GroupState::parse(s).unwrap_or(GroupState::Dead))
            .collect()
    } else {
        Vec::new()
    };
    // A filter naming only unknown states matches nothing (Dead groups are never listed).
    let unmatched_filter = !states.is_empty() && states.iter().all(|s| *s == GroupState::Dead);
    let types: Vec<String> = if v >= 5 {
        req.types_filter.iter().map(|t| t.to_string()).collect()
    } else {
        Vec::new()
    };
    let mut groups = Vec::new();
    // DESCRIBE on the cluster lists every group; otherwise only the groups the
    // principal may DESCRIBE (Kafka's rule).
    let all = ctx.visible(
        &broker,
        super::AclOperation::Describe,
        super::ResourceType::Cluster,
        super::CLUSTER,
    );
    if !unmatched_filter {
        for shard in broker.groups.shards() {
            let listed = broker
                .groups
                .with(&shard, |sm, _| sm.list_groups(&states, &types));
            groups.extend(
                listed
                    .into_iter()
                    .filter(|g| {
                        all || ctx.visible(
                            &broker,
                            super::AclOperation::Describe,
                            super::ResourceType::Group,
                            &g.group_id,
                        )
                    })
                    .map(|g| {
                        let mut listed = ListedGroup::default()
                            .with_group_id(group_id(&g.group_id))
                            .with_protocol_type(text(&g.protocol_type));
                        if v >= 4 {
                            listed = listed.with_group_state(text(g.state.name()));
                        }
                        if v >= 5 {
                            listed = listed.with_group_type(text("classic"));
                        }
                        listed
                    }),
            );
        }
    }
    ListGroupsResponse::default().with_groups(groups)
}

/// Handles DescribeGroups. An unknown group is reported `Dead` with no error, as Kafka
/// does before v6.
pub async fn describe_groups(
    broker: Arc<Broker>,
    ctx: RequestContext,
    req: DescribeGroupsRequest,
) -> DescribeGroupsResponse {
    let v = ctx.version;
    let groups = req
        .groups
        .iter()
        .map(|id| {
            let mut out = DescribedGroup::default().with_group_id(id.clone());
            if v >= 3 && req.include_authorized_operations {
                out = out.with_authorized_operations(GROUP_OPERATIONS);
            }
            let shard = match super::groups::authorized_shard(
                &broker,
                &ctx,
                super::AclOperation::Describe,
                id,
            ) {
                Ok(s) => s,
                Err(e) => {
                    return out
                        .with_error_code(e.code())
                        .with_group_state(text(""))
                        .with_protocol_type(text(""))
                        .with_protocol_data(text(""))
                }
            };
            let d = broker.groups.with(&shard, |sm, _| sm.describe_group(id));
            out.with_group_state(text(d.state.name()))
                .with_protocol_type(text(&d.protocol_type))
                .with_protocol_data(text(&d.protocol))
                .with_members(
                    d.members
                        .iter()
                        .map(|m| {
                            DescribedGroupMember::default()
                                .with_member_id(text(&m.member_id))
                                .with_group_instance_id(if v >= 4 {
                                    m.group_instance_id.as_deref().map(text)
                                } else {
                                    None
                                })
                                .with_client_id(text(&m.client_id))
                                .with_client_host(text(&m.client_host))
                                .with_member_metadata(m.metadata.clone())
                                .with_member_assignment(m.assignment.clone())
                        })
                        .collect(),
                )
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(groups)
}

/// Handles DeleteGroups: only Empty groups may be deleted (NON_EMPTY_GROUP otherwise).
pub async fn delete_groups(
    broker: Arc<Broker>,
    ctx: RequestContext,
    req: DeleteGroupsRequest,
) -> DeleteGroupsResponse {
    let mut results = Vec::with_capacity(req.groups_names.len());
    for id in &req.groups_names {
        let error =
            match super::groups::authorized_shard(&broker, &ctx, super::AclOperation::Delete, id) {
                Err(e) => Some(e),
                Ok(shard) => {
                    let name = id.to_string();
                    match broker
                        .groups
                        .call(&shard, |sm, _, tx| sm.delete_group(&name, tx))
                        .await
                    {
                        Some(Reply::DeleteGroup(e)) => e,
                        _ => Some(ResponseError::NotCoordinator),
                    }
                }
            };
        results.push(
            DeletableGroupResult::default()
                .with_group_id(id.clone())
                .with_error_code(code(error)),
        );
    }
    DeleteGroupsResponse::default().with_results(results)
}
