//! ApiVersions (key 18), versions 0–4 (KIP-35, KIP-511).
//!
//! Lists [`moldau_protocol::apis::SUPPORTED`]. A request at an unsupported version gets a
//! v0 response with `UNSUPPORTED_VERSION` (35) and the list, so the client can retry with
//! a version both sides know; the ApiVersions response header never has tagged fields.

use super::RequestContext;
use crate::broker::Broker;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};
use moldau_protocol::apis;
use moldau_protocol::error::ResponseError;
use std::sync::Arc;

fn api_keys() -> Vec<ApiVersion> {
    apis::SUPPORTED
        .iter()
        .map(|r| {
            ApiVersion::default()
                .with_api_key(r.key as i16)
                .with_min_version(r.min)
                .with_max_version(r.max)
        })
        .collect()
}

/// The v0 body sent for an unsupported ApiVersions version.
pub fn unsupported_version() -> ApiVersionsResponse {
    ApiVersionsResponse::default()
        .with_error_code(ResponseError::UnsupportedVersion.code())
        .with_api_keys(api_keys())
}

/// Handles ApiVersions.
pub async fn handle(
    _broker: Arc<Broker>,
    _ctx: RequestContext,
    _req: ApiVersionsRequest,
) -> ApiVersionsResponse {
    ApiVersionsResponse::default().with_api_keys(api_keys())
}
