//! DescribeAcls (key 29), CreateAcls (key 30) and DeleteAcls (key 31), versions 1–3.
//!
//! With `authorizer.class.name` set, ACLs live in the metadata log
//! ([`moldau_metadata::acl`]) and every broker enforces them. DescribeAcls needs
//! DESCRIBE on the cluster, CreateAcls and DeleteAcls ALTER (else
//! `CLUSTER_AUTHORIZATION_FAILED`), as in Kafka. A binding with an unknown or filter-only
//! value (ANY, MATCH, UNKNOWN), a malformed principal, a cluster resource not named
//! `kafka-cluster`, or a delegation-token resource (not supported) is refused with
//! `INVALID_REQUEST`, the others of the request go ahead.
//!
//! Without an authorizer these are answered as a Kafka broker without one answers them:
//! `SECURITY_DISABLED` (54), and nothing is stored that would not be enforced.

use super::admin_topics::submit;
use super::{msg, AclOperation, RequestContext, ResourceType, CLUSTER};
use crate::broker::Broker;
use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl,
};
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{
    CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse,
    DescribeAclsRequest, DescribeAclsResponse,
};
use kafka_protocol::protocol::StrBytes;
use moldau_metadata::acl::{AclBinding, AclFilter, AclPermission, PatternType};
use moldau_metadata::controller::MetadataOp;
use moldau_protocol::error::ResponseError;
use std::collections::BTreeMap;
use std::sync::Arc;

const NO_AUTHORIZER: &str = "No Authorizer is configured on the broker";

type Refusal = (ResponseError, String);

fn invalid(why: impl Into<String>) -> Refusal {
    (ResponseError::InvalidRequest, why.into())
}

/// The filter of a DescribeAcls request or a DeleteAcls filter.
#[allow(clippy::too_many_arguments)]
fn filter(
    resource_type: i8,
    name: Option<&StrBytes>,
    pattern_type: i8,
    principal: Option<&StrBytes>,
    host: Option<&StrBytes>,
    operation: i8,
    permission: i8,
) -> Result<AclFilter, Refusal> {
    Ok(AclFilter {
        resource_type: ResourceType::from_code(resource_type)
            .ok_or_else(|| invalid(format!("unknown resource type {resource_type}")))?,
        resource_name: name.map(|n| n.to_string()),
        pattern_type: PatternType::from_code(pattern_type)
            .ok_or_else(|| invalid(format!("unknown pattern type {pattern_type}")))?,
        principal: principal.map(|p| p.to_string()),
        host: host.map(|h| super::canonical_host(h)),
        operation: AclOperation::from_code(operation)
            .ok_or_else(|| invalid(format!("unknown operation {operation}")))?,
        permission: AclPermission::from_code(permission)
            .ok_or_else(|| invalid(format!("unknown permission type {permission}")))?,
    })
}

/// A binding to store, checked as Kafka checks CreateAcls creations.
fn binding(
    c: &kafka_protocol::messages::create_acls_request::AclCreation,
) -> Result<AclBinding, Refusal> {
    let f = filter(
        c.resource_type,
        Some(&c.resource_name),
        c.resource_pattern_type,
        Some(&c.principal),
        Some(&c.host),
        c.operation,
        c.permission_type,
    )?;
    if f.resource_type == ResourceType::Any {
        return Err(invalid("a binding needs a specific resource type"));
    }
    if f.resource_type == ResourceType::DelegationToken {
        return Err(invalid("delegation tokens are not supported"));
    }
    if !matches!(f.pattern_type, PatternType::Literal | PatternType::Prefixed) {
        return Err(invalid("a binding's pattern type is LITERAL or PREFIXED"));
    }
    if f.operation == AclOperation::Any || f.permission == AclPermission::Any {
        return Err(invalid("ANY is for filters, not bindings"));
    }
    let name = f.resource_name.unwrap_or_default();
    if name.is_empty() {
        return Err(invalid("the resource name is empty"));
    }
    if f.resource_type == ResourceType::Cluster
        && (name != CLUSTER || f.pattern_type != PatternType::Literal)
    {
        return Err(invalid("the cluster resource is the literal kafka-cluster"));
    }
    let principal = f.principal.unwrap_or_default();
    match principal.split_once(':') {
        Some((kind, who)) if !kind.is_empty() && !who.is_empty() => {}
        _ => {
            return Err(invalid(format!(
                "{principal:?} is not a principal (User:name)"
            )))
        }
    }
    let host = f.host.unwrap_or_default();
    if host != "*" && host.parse::<std::net::IpAddr>().is_err() {
        return Err(invalid(format!("host {host:?} is not * or an IP address")));
    }
    Ok(AclBinding {
        resource_type: f.resource_type,
        resource_name: name,
        pattern_type: f.pattern_type,
        principal,
        host,
        operation: f.operation,
        permission: f.permission,
    })
}

fn description(b: &AclBinding) -> AclDescription {
    AclDescription::default()
        .with_principal(StrBytes::from_string(b.principal.clone()))
        .with_host(StrBytes::from_string(b.host.clone()))
        .with_operation(b.operation.code())
        .with_permission_type(b.permission.code())
}

/// Handles DescribeAcls: the matching ACLs, grouped by resource pattern.
pub async fn describe_acls(
    broker: Arc<Broker>,
    ctx: RequestContext,
    req: DescribeAclsRequest,
) -> DescribeAclsResponse {
    let refuse = |e: ResponseError, m: String| {
        DescribeAclsResponse::default()
            .with_error_code(e.code())
            .with_error_message(msg(m))
    };
    if broker.config.authorizer.is_none() {
        return refuse(ResponseError::SecurityDisabled, NO_AUTHORIZER.into());
    }
    if !ctx.allowed_on_cluster(&broker, AclOperation::Describe) {
        return refuse(
            ResponseError::ClusterAuthorizationFailed,
            "DESCRIBE on the cluster is needed to list ACLs".into(),
        );
    }
    let f = match filter(
        req.resource_type_filter,
        req.resource_name_filter.as_ref(),
        req.pattern_type_filter,
        req.principal_filter.as_ref(),
        req.host_filter.as_ref(),
        req.operation,
        req.permission_type,
    ) {
        Ok(f) => f,
        Err((e, m)) => return refuse(e, m),
    };
    let image = broker.image();
    let mut resources: BTreeMap<(i8, String, i8), Vec<AclDescription>> = BTreeMap::new();
    for b in image.acls.values().filter(|b| f.matches(b)) {
        resources
            .entry((
                b.resource_type.code(),
                b.resource_name.clone(),
                b.pattern_type.code(),
            ))
            .or_default()
            .push(description(b));
    }
    let resources = resources
        .into_iter()
        .map(|((t, name, p), acls)| {
            DescribeAclsResource::default()
                .with_resource_type(t)
                .with_resource_name(StrBytes::from_string(name))
                .with_pattern_type(p)
                .with_acls(acls)
        })
        .collect();
    DescribeAclsResponse::default().with_resources(resources)
}

/// Handles CreateAcls: every valid creation is stored (one metadata operation); each
/// gets its own result.
pub async fn create_acls(
    broker: Arc<Broker>,
    ctx: RequestContext,
    req: CreateAclsRequest,
) -> CreateAclsResponse {
    let result = |e: Option<(ResponseError, String)>| match e {
        None => AclCreationResult::default(),
        Some((e, m)) => AclCreationResult::default()
            .with_error_code(e.code())
            .with_error_message(msg(m)),
    };
    let refuse_all = |e: ResponseError, m: &str| {
        CreateAclsResponse::default().with_results(
            req.creations
                .iter()
                .map(|_| result(Some((e, m.to_owned()))))
                .collect(),
        )
    };
    if broker.config.authorizer.is_none() {
        return refuse_all(ResponseError::SecurityDisabled, NO_AUTHORIZER);
    }
    if !ctx.allowed_on_cluster(&broker, AclOperation::Alter) {
        return refuse_all(
            ResponseError::ClusterAuthorizationFailed,
            "ALTER on the cluster is needed to create ACLs",
        );
    }
    let checked: Vec<Result<AclBinding, Refusal>> = req.creations.iter().map(binding).collect();
    let valid: Vec<AclBinding> = checked
        .iter()
        .filter_map(|c| c.as_ref().ok().cloned())
        .collect();
    let stored = if valid.is_empty() {
        Ok(())
    } else {
        submit(&broker, false, MetadataOp::CreateAcls(valid))
            .await
            .map(|_| ())
            .map_err(|e| (e.error, e.message))
    };
    let results = checked
        .into_iter()
        .map(|c| match c {
            Err(e) => result(Some(e)),
            Ok(_) => result(stored.clone().err()),
        })
        .collect();
    CreateAclsResponse::default().with_results(results)
}

/// Handles DeleteAcls: every ACL matching a filter is removed; each filter's result
/// lists the ACLs it matched.
pub async fn delete_acls(
    broker: Arc<Broker>,
    ctx: RequestContext,
    req: DeleteAclsRequest,
) -> DeleteAclsResponse {
    let refused = |e: ResponseError, m: String| {
        DeleteAclsFilterResult::default()
            .with_error_code(e.code())
            .with_error_message(msg(m))
    };
    let refuse_all = |e: ResponseError, m: &str| {
        DeleteAclsResponse::default().with_filter_results(
            req.filters
                .iter()
                .map(|_| refused(e, m.to_owned()))
                .collect(),
        )
    };
    if broker.config.authorizer.is_none() {
        return refuse_all(ResponseError::SecurityDisabled, NO_AUTHORIZER);
    }
    if !ctx.allowed_on_cluster(&broker, AclOperation::Alter) {
        return refuse_all(
            ResponseError::ClusterAuthorizationFailed,
            "ALTER on the cluster is needed to delete ACLs",
        );
    }
    let image = broker.image();
    let mut per_filter = Vec::with_capacity(req.filters.len());
    let mut ids = Vec::new();
    for f in &req.filters {
        match filter(
            f.resource_type_filter,
            f.resource_name_filter.as_ref(),
            f.pattern_type_filter,
            f.principal_filter.as_ref(),
            f.host_filter.as_ref(),
            f.operation,
            f.permission_type,
        ) {
            Err(e) => per_filter.push(Err(e)),
            Ok(f) => {
                let matched: Vec<(uuid::Uuid, AclBinding)> = image
                    .acls
                    .iter()
                    .filter(|(_, b)| f.matches(b))
                    .map(|(id, b)| (*id, b.clone()))
                    .collect();
                ids.extend(matched.iter().map(|(id, _)| *id));
                per_filter.push(Ok(matched));
            }
        }
    }
    ids.sort_unstable();
    ids.dedup();
    let removed = if ids.is_empty() {
        Ok(())
    } else {
        submit(&broker, false, MetadataOp::DeleteAcls(ids))
            .await
            .map(|_| ())
            .map_err(|e| (e.error, e.message))
    };
    let results = per_filter
        .into_iter()
        .map(|r| match (r, &removed) {
            (Err((e, m)), _) => refused(e, m),
            (Ok(_), Err((e, m))) => refused(*e, m.clone()),
            (Ok(matched), Ok(())) => DeleteAclsFilterResult::default().with_matching_acls(
                matched
                    .iter()
                    .map(|(_, b)| {
                        DeleteAclsMatchingAcl::default()
                            .with_resource_type(b.resource_type.code())
                            .with_resource_name(StrBytes::from_string(b.resource_name.clone()))
                            .with_pattern_type(b.pattern_type.code())
                            .with_principal(StrBytes::from_string(b.principal.clone()))
                            .with_host(StrBytes::from_string(b.host.clone()))
                            .with_operation(b.operation.code())
                            .with_permission_type(b.permission.code())
                    })
                    .collect(),
            ),
        })
        .collect();
    DeleteAclsResponse::default().with_filter_results(results)
}
