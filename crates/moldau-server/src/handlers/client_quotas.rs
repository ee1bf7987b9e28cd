//! DescribeClientQuotas (key 48) and AlterClientQuotas (key 49), v0–1 (KIP-546): the
//! byte-rate quotas of users and client ids, kept in the metadata log
//! ([`moldau_metadata::quota`]) and enforced by [`crate::quotas`].
//!
//! Entities are `user` and/or `client-id`, or `ip` alone, each with a name or null for
//! the default. Keys: `producer_byte_rate` and `consumer_byte_rate` (whole bytes/s),
//! `request_percentage` (whole percent of one thread's time; KIP-124) for users and
//! client ids; `connection_creation_rate` (connections/s; KIP-612) for addresses; each
//! a whole number > 0. `controller_mutation_rate` (KIP-599) is refused with
//! `INVALID_REQUEST` rather than stored and not enforced. Describe needs
//! DESCRIBE_CONFIGS on the cluster, Alter ALTER_CONFIGS (else
//! `CLUSTER_AUTHORIZATION_FAILED`), as in Kafka.

use super::admin_topics::submit;
use super::{msg, AclOperation, RequestContext};
use crate::broker::Broker;
use kafka_protocol::messages::{
    alter_client_quotas_response, describe_client_quotas_response, AlterClientQuotasRequest,
    AlterClientQuotasResponse, DescribeClientQuotasRequest, DescribeClientQuotasResponse,
};
use kafka_protocol::protocol::StrBytes;
use moldau_metadata::controller::MetadataOp;
use moldau_metadata::quota::{
    QuotaEntity, CLIENT_ID, CONNECTION_CREATION_RATE, CONSUMER_BYTE_RATE, IP, PRODUCER_BYTE_RATE,
    REQUEST_PERCENTAGE, USER,
};
use moldau_protocol::error::ResponseError;
use std::sync::Arc;

/// DescribeClientQuotas match types.
const MATCH_EXACT: i8 = 0;
const MATCH_DEFAULT: i8 = 1;
const MATCH_SPECIFIED: i8 = 2;

/// Handles DescribeClientQuotas: the entities matching every component (and, with
/// `strict`, having no other entity types), with their quotas.
pub async fn describe(
    broker: Arc<Broker>,
    ctx: RequestContext,
    req: DescribeClientQuotasRequest,
) -> DescribeClientQuotasResponse {
    let refuse = |e: ResponseError, m: String| {
        DescribeClientQuotasResponse::default()
            .with_error_code(e.code())
            .with_error_message(msg(m))
            .with_entries(None)
    };
    if !ctx.allowed_on_cluster(&broker, AclOperation::DescribeConfigs) {
        return refuse(
            ResponseError::ClusterAuthorizationFailed,
            "DESCRIBE_CONFIGS on the cluster is needed to describe quotas".into(),
        );
    }
    for c in &req.components {
        if ![USER, CLIENT_ID, IP].contains(&c.entity_type.as_str()) {
            return refuse(
                ResponseError::InvalidRequest,
                format!(
                    "unknown or unsupported entity type {}",
                    c.entity_type.as_str()
                ),
            );
        }
        if !(MATCH_EXACT..=MATCH_SPECIFIED).contains(&c.match_type) {
            return refuse(
                ResponseError::InvalidRequest,
                format!("unknown match type {}", c.match_type),
            );
        }
    }
    let image = broker.image();
    let entries = image
        .client_quotas
        .values()
        .filter(|e| {
            req.components.iter().all(|c| {
                match (e.entity.get(c.entity_type.as_str()), c.match_type) {
                    (None, _) => false,
                    (Some(name), MATCH_EXACT) => {
                        name.as_deref() == c._match.as_ref().map(|m| m.as_str())
                    }
                    (Some(name), MATCH_DEFAULT) => name.is_none(),
                    (Some(name), _) => name.is_some(),
                }
            }) && (!req.strict
                || e.entity
                    .keys()
                    .all(|t| req.components.iter().any(|c| c.entity_type.as_str() == t)))
        })
        .map(|e| {
            describe_client_quotas_response::EntryData::default()
                .with_entity(
                    e.entity
                        .iter()
                        .map(|(t, n)| {
                            describe_client_quotas_response::EntityData::default()
                                .with_entity_type(StrBytes::from_string(t.clone()))
                                .with_entity_name(n.clone().map(StrBytes::from_string))
                        })
                        .collect(),
                )
                .with_values(
                    e.values
                        .iter()
                        .map(|(k, v)| {
                            describe_client_quotas_response::ValueData::default()
                                .with_key(StrBytes::from_string(k.clone()))
                                .with_value(*v as f64)
                        })
                        .collect(),
                )
        })
        .collect();
    DescribeClientQuotasResponse::default().with_entries(Some(entries))
}

type Refusal = (ResponseError, String);

/// One entry's entity and its `(key, value or removal)` changes.
type Change = (QuotaEntity, Vec<(String, Option<i64>)>);

/// The entity and changes of one AlterClientQuotas entry, checked as Kafka checks them.
fn entry(
    e: &kafka_protocol::messages::alter_client_quotas_request::EntryData,
) -> Result<Change, Refusal> {
    let invalid = |m: String| (ResponseError::InvalidRequest, m);
    let mut entity = QuotaEntity::new();
    for part in &e.entity {
        let t = part.entity_type.as_str();
        if ![USER, CLIENT_ID, IP].contains(&t) {
            return Err(invalid(format!("unknown entity type {t}")));
        }
        let mut name = part.entity_name.as_ref().map(|n| n.to_string());
        if t == IP {
            // Stored in canonical form, as connections are matched.
            if let Some(n) = &name {
                let ip: std::net::IpAddr = n
                    .parse()
                    .map_err(|_| invalid(format!("ip {n:?} is not an IP address")))?;
                name = Some(ip.to_canonical().to_string());
            }
        }
        if name.as_deref() == Some("") {
            return Err(invalid(format!(
                "an empty {t} name (use null for the default)"
            )));
        }
        if entity.insert(t.to_owned(), name).is_some() {
            return Err(invalid(format!("entity type {t} given twice")));
        }
    }
    if entity.is_empty() {
        return Err(invalid("no entity given".into()));
    }
    let is_ip = entity.contains_key(IP);
    if is_ip && entity.len() > 1 {
        return Err(invalid(
            "an ip entity cannot be combined with user or client-id".into(),
        ));
    }
    let keys: &[&str] = if is_ip {
        &[CONNECTION_CREATION_RATE]
    } else {
        &[PRODUCER_BYTE_RATE, CONSUMER_BYTE_RATE, REQUEST_PERCENTAGE]
    };
    let mut ops = Vec::with_capacity(e.ops.len());
    for op in &e.ops {
        let key = op.key.as_str();
        if !keys.contains(&key) {
            return Err(invalid(format!(
                "{key} is not a quota Moldau enforces for this entity ({} are)",
                keys.join(", ")
            )));
        }
        if ops.iter().any(|(k, _): &(String, Option<i64>)| k == key) {
            return Err(invalid(format!("{key} given twice")));
        }
        let value = if op.remove {
            None
        } else {
            if !(op.value.is_finite()
                && op.value.fract() == 0.0
                && op.value > 0.0
                && op.value < 9.2e18)
            {
                return Err(invalid(format!(
                    "{key} must be a positive whole number, not {}",
                    op.value
                )));
            }
            Some(op.value as i64)
        };
        ops.push((key.to_owned(), value));
    }
    Ok((entity, ops))
}

/// Handles AlterClientQuotas: each entry is checked and applied on its own.
pub async fn alter(
    broker: Arc<Broker>,
    ctx: RequestContext,
    req: AlterClientQuotasRequest,
) -> AlterClientQuotasResponse {
    let denied = !ctx.allowed_on_cluster(&broker, AclOperation::AlterConfigs);
    let mut results = Vec::with_capacity(req.entries.len());
    for e in &req.entries {
        let outcome = if denied {
            Err((
                ResponseError::ClusterAuthorizationFailed,
                "ALTER_CONFIGS on the cluster is needed to alter quotas".to_owned(),
            ))
        } else {
            match entry(e) {
                Err(r) => Err(r),
                Ok((entity, ops)) => submit(
                    &broker,
                    req.validate_only,
                    MetadataOp::AlterClientQuotas { entity, ops },
                )
                .await
                .map(|_| ())
                .map_err(|e| (e.error, e.message)),
            }
        };
        let (code, message) = match outcome {
            Ok(()) => (0, None),
            Err((e, m)) => (e.code(), msg(m)),
        };
        results.push(
            alter_client_quotas_response::EntryData::default()
                .with_error_code(code)
                .with_error_message(message)
                .with_entity(
                    e.entity
                        .iter()
                        .map(|x| {
                            alter_client_quotas_response::EntityData::default()
                                .with_entity_type(x.entity_type.clone())
                                .with_entity_name(x.entity_name.clone())
                        })
                        .collect(),
                ),
        );
    }
    AlterClientQuotasResponse::default().with_entries(results)
}
