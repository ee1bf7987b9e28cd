//! DescribeAcls (key 29), CreateAcls (key 30) and DeleteAcls (key 31), versions 1–3.
//!
//! Moldau has no authorizer yet (`authorizer.class.name` and the other security settings
//! stop start-up), so these are answered as a Kafka broker without an authorizer answers
//! them: `SECURITY_DISABLED` (54), for the request (DescribeAcls), each creation
//! (CreateAcls) or each filter (DeleteAcls). Kafka's tools then say that security is
//! disabled (`kafka-acls.sh --list`: "No Authorizer is configured on the broker")
//! instead of "the broker does not support DESCRIBE_ACLS", and nothing is stored that
//! would not be enforced.

use super::{msg, RequestContext};
use crate::broker::Broker;
use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::delete_acls_response::DeleteAclsFilterResult;
use kafka_protocol::messages::{
    CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse,
    DescribeAclsRequest, DescribeAclsResponse,
};
use moldau_protocol::error::ResponseError;
use std::sync::Arc;

const NO_AUTHORIZER: &str = "No Authorizer is configured on the broker";

/// Handles DescribeAcls: `SECURITY_DISABLED`.
pub async fn describe_acls(
    _broker: Arc<Broker>,
    _ctx: RequestContext,
    _req: DescribeAclsRequest,
) -> DescribeAclsResponse {
    DescribeAclsResponse::default()
        .with_error_code(ResponseError::SecurityDisabled.code())
        .with_error_message(msg(NO_AUTHORIZER))
}

/// Handles CreateAcls: `SECURITY_DISABLED` for every creation; nothing is stored.
pub async fn create_acls(
    _broker: Arc<Broker>,
    _ctx: RequestContext,
    req: CreateAclsRequest,
) -> CreateAclsResponse {
    let results = req
        .creations
        .iter()
        .map(|_| {
            AclCreationResult::default()
                .with_error_code(ResponseError::SecurityDisabled.code())
                .with_error_message(msg(NO_AUTHORIZER))
        })
        .collect();
    CreateAclsResponse::default().with_results(results)
}

/// Handles DeleteAcls: `SECURITY_DISABLED` for every filter.
pub async fn delete_acls(
    _broker: Arc<Broker>,
    _ctx: RequestContext,
    req: DeleteAclsRequest,
) -> DeleteAclsResponse {
    let results = req
        .filters
        .iter()
        .map(|_| {
            DeleteAclsFilterResult::default()
                .with_error_code(ResponseError::SecurityDisabled.code())
                .with_error_message(msg(NO_AUTHORIZER))
        })
        .collect();
    DeleteAclsResponse::default().with_filter_results(results)
}
