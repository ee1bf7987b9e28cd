//! DescribeUserScramCredentials (key 50) and AlterUserScramCredentials (key 51), v0
//! (KIP-554): the SCRAM credentials that SASL/SCRAM checks, kept in the metadata log.
//!
//! The client sends the salted password (`Hi(password, salt, iterations)`); the broker
//! that takes the request derives the stored and server keys and hands only those to the
//! controller, so the metadata log never holds anything a client could log in with.
//! Errors as Kafka's: `UNSUPPORTED_SASL_MECHANISM` for an unknown mechanism,
//! `UNACCEPTABLE_CREDENTIAL` for an empty user name or salted password or iterations
//! outside 4096..=16384, `DUPLICATE_RESOURCE` for a user named twice in Describe or a
//! mechanism altered twice for one user, `RESOURCE_NOT_FOUND` for a deletion of a
//! credential that does not exist and a Describe of a user without credentials.

use super::admin_topics::submit;
use super::{msg, RequestContext};
use crate::broker::Broker;
use crate::security::scram;
use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse,
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
};
use kafka_protocol::protocol::StrBytes;
use moldau_metadata::controller::MetadataOp;
use moldau_metadata::{ScramCredential, ScramMechanism};
use moldau_protocol::error::ResponseError;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Handles DescribeUserScramCredentials: every user with credentials (users null or
/// empty, as Kafka reads it), or the users named, each with its mechanisms and iteration counts (never keys).
pub async fn describe(
    broker: Arc<Broker>,
    ctx: RequestContext,
    req: DescribeUserScramCredentialsRequest,
) -> DescribeUserScramCredentialsResponse {
    // DESCRIBE on the cluster, with an authorizer (Kafka's rule).
    if !ctx.allowed_on_cluster(&broker, super::AclOperation::Describe) {
        return DescribeUserScramCredentialsResponse::default()
            .with_error_code(ResponseError::ClusterAuthorizationFailed.code());
    }
    let image = broker.image();
    let infos = |creds: &BTreeMap<String, ScramCredential>| -> Vec<CredentialInfo> {
        creds
            .values()
            .map(|c| {
                CredentialInfo::default()
                    .with_mechanism(c.mechanism.type_id())
                    .with_iterations(c.iterations)
            })
            .collect()
    };
    let results = match req.users.filter(|u| !u.is_empty()) {
        None => image
            .scram_credentials
            .iter()
            .map(|(user, creds)| {
                DescribeUserScramCredentialsResult::default()
                    .with_user(StrBytes::from_string(user.clone()))
                    .with_credential_infos(infos(creds))
            })
            .collect(),
        Some(users) => {
            let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
            for u in &users {
                *counts.entry(u.name.as_str()).or_default() += 1;
            }
            let mut reported = BTreeSet::new();
            let mut results = Vec::new();
            for u in &users {
                let name = u.name.as_str();
                if !reported.insert(name) {
                    continue;
                }
                let result =
                    DescribeUserScramCredentialsResult::default().with_user(u.name.clone());
                results.push(if counts[name] > 1 {
                    result
                        .with_error_code(ResponseError::DuplicateResource.code())
                        .with_error_message(msg(format!(
                            "Cannot describe SCRAM credentials for the same user twice in a single request: {name}"
                        )))
                } else {
                    match image.scram_credentials.get(name) {
                        Some(creds) => result.with_credential_infos(infos(creds)),
                        None => result
                            .with_error_code(ResponseError::ResourceNotFound.code())
                            .with_error_message(msg(format!(
                                "Attempt to describe a user credential that does not exist: {name}"
                            ))),
                    }
                });
            }
            results
        }
    };
    DescribeUserScramCredentialsResponse::default().with_results(results)
}

/// Handles AlterUserScramCredentials: per user, its deletions and upsertions are one
/// controller operation, applied together or refused together.
pub async fn alter(
    broker: Arc<Broker>,
    ctx: RequestContext,
    req: AlterUserScramCredentialsRequest,
) -> AlterUserScramCredentialsResponse {
    // ALTER on the cluster, with an authorizer (Kafka's rule).
    let denied = !ctx.allowed_on_cluster(&broker, super::AclOperation::Alter);
    type Change = (Vec<ScramMechanism>, Vec<ScramCredential>);
    let mut users: BTreeMap<String, Result<Change, (ResponseError, String)>> = BTreeMap::new();
    for d in &req.deletions {
        let entry = users
            .entry(d.name.to_string())
            .or_insert_with(|| Ok(Default::default()));
        let checked = check_name(&d.name).and_then(|()| mechanism(d.mechanism));
        match (entry.as_mut(), checked) {
            (Ok(change), Ok(m)) => change.0.push(m),
            (Ok(_), Err(e)) => *entry = Err(e),
            (Err(_), _) => {}
        }
    }
    for u in &req.upsertions {
        let entry = users
            .entry(u.name.to_string())
            .or_insert_with(|| Ok(Default::default()));
        let checked = check_name(&u.name)
            .and_then(|()| mechanism(u.mechanism))
            .and_then(|m| {
                if u.iterations < scram::MIN_ITERATIONS {
                    return Err((
                        ResponseError::UnacceptableCredential,
                        format!(
                            "Too few iterations: {} < {}",
                            u.iterations,
                            scram::MIN_ITERATIONS
                        ),
                    ));
                }
                if u.iterations > scram::MAX_ITERATIONS {
                    return Err((
                        ResponseError::UnacceptableCredential,
                        format!(
                            "Too many iterations: {} > {}",
                            u.iterations,
                            scram::MAX_ITERATIONS
                        ),
                    ));
                }
                if u.salt.is_empty() || u.salted_password.is_empty() {
                    return Err((
                        ResponseError::UnacceptableCredential,
                        "Salt and salted password must not be empty".into(),
                    ));
                }
                Ok(scram::credential_from_salted(
                    m,
                    &u.salt,
                    &u.salted_password,
                    u.iterations,
                ))
            });
        match (entry.as_mut(), checked) {
            (Ok(change), Ok(c)) => change.1.push(c),
            (Ok(_), Err(e)) => *entry = Err(e),
            (Err(_), _) => {}
        }
    }
    let mut results = Vec::with_capacity(users.len());
    for (user, change) in users {
        let change = if denied {
            Err((
                ResponseError::ClusterAuthorizationFailed,
                "ALTER on the cluster is needed to change credentials".into(),
            ))
        } else {
            change
        };
        let (code, message) = match change {
            Err((e, m)) => (e.code(), msg(m)),
            Ok((deletions, upsertions)) => {
                let op = MetadataOp::AlterScramCredentials {
                    user: user.clone(),
                    deletions,
                    upsertions,
                };
                match submit(&broker, false, op).await {
                    Ok(_) => (0, None),
                    Err(e) => (e.error.code(), msg(e.message)),
                }
            }
        };
        results.push(
            AlterUserScramCredentialsResult::default()
                .with_user(StrBytes::from_string(user))
                .with_error_code(code)
                .with_error_message(message),
        );
    }
    AlterUserScramCredentialsResponse::default().with_results(results)
}

fn check_name(name: &StrBytes) -> Result<(), (ResponseError, String)> {
    if name.is_empty() {
        return Err((
            ResponseError::UnacceptableCredential,
            "Username must not be empty".into(),
        ));
    }
    Ok(())
}

fn mechanism(id: i8) -> Result<ScramMechanism, (ResponseError, String)> {
    ScramMechanism::from_type_id(id).ok_or_else(|| {
        (
            ResponseError::UnsupportedSaslMechanism,
            format!("Unknown SCRAM mechanism type {id}"),
        )
    })
}
