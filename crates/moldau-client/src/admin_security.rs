//! Security administration on [`Admin`]: ACLs (CreateAcls, DescribeAcls, DeleteAcls),
//! SCRAM credentials (KIP-554) and client quotas (KIP-546), with Kafka's codes and names.

use crate::admin::Admin;
use crate::error::{Error, Result};
use crate::names::str_bytes;
use kafka_protocol::messages::{
    alter_client_quotas_request, alter_user_scram_credentials_request, create_acls_request,
    delete_acls_request, describe_client_quotas_request, AlterClientQuotasRequest,
    AlterUserScramCredentialsRequest, CreateAclsRequest, DeleteAclsRequest, DescribeAclsRequest,
    DescribeClientQuotasRequest, DescribeUserScramCredentialsRequest,
};
use moldau_protocol::scram::{self, ScramHash};

/// Kafka's ACL resource types by name (`TOPIC` 2 … `USER` 7).
pub const RESOURCE_TYPES: &[(&str, i8)] = &[
    ("ANY", 1),
    ("TOPIC", 2),
    ("GROUP", 3),
    ("CLUSTER", 4),
    ("TRANSACTIONAL_ID", 5),
    ("DELEGATION_TOKEN", 6),
    ("USER", 7),
];
/// Kafka's pattern types by name.
pub const PATTERN_TYPES: &[(&str, i8)] =
    &[("ANY", 1), ("MATCH", 2), ("LITERAL", 3), ("PREFIXED", 4)];
/// Kafka's ACL operations by name.
pub const OPERATIONS: &[(&str, i8)] = &[
    ("ANY", 1),
    ("ALL", 2),
    ("READ", 3),
    ("WRITE", 4),
    ("CREATE", 5),
    ("DELETE", 6),
    ("ALTER", 7),
    ("DESCRIBE", 8),
    ("CLUSTER_ACTION", 9),
    ("DESCRIBE_CONFIGS", 10),
    ("ALTER_CONFIGS", 11),
    ("IDEMPOTENT_WRITE", 12),
    ("CREATE_TOKENS", 13),
    ("DESCRIBE_TOKENS", 14),
];
/// Kafka's permission types by name.
pub const PERMISSIONS: &[(&str, i8)] = &[("ANY", 1), ("DENY", 2), ("ALLOW", 3)];

/// The code of `name` (case-insensitive, `-` as `_`) in `table`.
pub fn code_of(table: &[(&str, i8)], name: &str) -> Option<i8> {
    let n = name.to_ascii_uppercase().replace('-', "_");
    table.iter().find(|(t, _)| *t == n).map(|(_, c)| *c)
}

/// The name of `code` in `table` (`UNKNOWN` if absent).
pub fn name_of(table: &[(&'static str, i8)], code: i8) -> &'static str {
    table
        .iter()
        .find(|(_, c)| *c == code)
        .map_or("UNKNOWN", |(n, _)| n)
}

/// One ACL (a binding), or a filter when fields hold ANY codes or `None`s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acl {
    /// Resource type code ([`RESOURCE_TYPES`]).
    pub resource_type: i8,
    /// Resource name (`None` in a filter: any).
    pub resource_name: Option<String>,
    /// Pattern type code ([`PATTERN_TYPES`]).
    pub pattern_type: i8,
    /// `User:alice` (`None` in a filter: any).
    pub principal: Option<String>,
    /// Host (`*` for any; `None` in a filter: any).
    pub host: Option<String>,
    /// Operation code ([`OPERATIONS`]).
    pub operation: i8,
    /// Permission code ([`PERMISSIONS`]).
    pub permission: i8,
}

fn opt(s: &Option<String>) -> Option<kafka_protocol::protocol::StrBytes> {
    s.as_deref().map(str_bytes)
}

impl Admin {
    /// The ACLs matching `filter` (DescribeAcls v2). Errors: SECURITY_DISABLED (no
    /// authorizer), CLUSTER_AUTHORIZATION_FAILED.
    pub async fn describe_acls(&self, filter: &Acl) -> Result<Vec<Acl>> {
        let request = DescribeAclsRequest::default()
            .with_resource_type_filter(filter.resource_type)
            .with_resource_name_filter(opt(&filter.resource_name))
            .with_pattern_type_filter(filter.pattern_type)
            .with_principal_filter(opt(&filter.principal))
            .with_host_filter(opt(&filter.host))
            .with_operation(filter.operation)
            .with_permission_type(filter.permission);
        let response = self.controller_call(request).await?;
        Error::check_message(response.error_code, response.error_message.as_ref())?;
        Ok(response
            .resources
            .iter()
            .flat_map(|r| {
                r.acls.iter().map(|a| Acl {
                    resource_type: r.resource_type,
                    resource_name: Some(r.resource_name.to_string()),
                    pattern_type: r.pattern_type,
                    principal: Some(a.principal.to_string()),
                    host: Some(a.host.to_string()),
                    operation: a.operation,
                    permission: a.permission_type,
                })
            })
            .collect())
    }

    /// Creates `acls` (CreateAcls v2); the first refused one is the error.
    pub async fn create_acls(&self, acls: &[Acl]) -> Result<()> {
        let creations = acls
            .iter()
            .map(|a| {
                create_acls_request::AclCreation::default()
                    .with_resource_type(a.resource_type)
                    .with_resource_name(str_bytes(a.resource_name.as_deref().unwrap_or("")))
                    .with_resource_pattern_type(a.pattern_type)
                    .with_principal(str_bytes(a.principal.as_deref().unwrap_or("")))
                    .with_host(str_bytes(a.host.as_deref().unwrap_or("*")))
                    .with_operation(a.operation)
                    .with_permission_type(a.permission)
            })
            .collect();
        let response = self
            .controller_call(CreateAclsRequest::default().with_creations(creations))
            .await?;
        for r in &response.results {
            Error::check_message(r.error_code, r.error_message.as_ref())?;
        }
        Ok(())
    }

    /// Deletes every ACL matching `filter` (DeleteAcls v2); returns those deleted.
    pub async fn delete_acls(&self, filter: &Acl) -> Result<Vec<Acl>> {
        let f = delete_acls_request::DeleteAclsFilter::default()
            .with_resource_type_filter(filter.resource_type)
            .with_resource_name_filter(opt(&filter.resource_name))
            .with_pattern_type_filter(filter.pattern_type)
            .with_principal_filter(opt(&filter.principal))
            .with_host_filter(opt(&filter.host))
            .with_operation(filter.operation)
            .with_permission_type(filter.permission);
        let response = self
            .controller_call(DeleteAclsRequest::default().with_filters(vec![f]))
            .await?;
        let mut out = Vec::new();
        for r in &response.filter_results {
            Error::check_message(r.error_code, r.error_message.as_ref())?;
            out.extend(r.matching_acls.iter().map(|a| Acl {
                resource_type: a.resource_type,
                resource_name: Some(a.resource_name.to_string()),
                pattern_type: a.pattern_type,
                principal: Some(a.principal.to_string()),
                host: Some(a.host.to_string()),
                operation: a.operation,
                permission: a.permission_type,
            }));
        }
        Ok(out)
    }

    /// Sets `user`'s SCRAM credential for `mechanism` (`SCRAM-SHA-256` or `-512`): a
    /// random 32-byte salt, `Hi(password)` computed here, so the password never leaves
    /// the client (AlterUserScramCredentials, KIP-554). Errors: UNACCEPTABLE_CREDENTIAL
    /// (iterations outside 4096..=16384), UNSUPPORTED_SASL_MECHANISM.
    pub async fn set_scram_credential(
        &self,
        user: &str,
        mechanism: &str,
        password: &str,
        iterations: i32,
    ) -> Result<()> {
        let (h, code) = scram_mechanism(mechanism)?;
        let salt: Vec<u8> = {
            use rand::RngCore;
            let mut s = vec![0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut s);
            s
        };
        let salted = scram::salted_password(
            h,
            password.as_bytes(),
            &salt,
            u32::try_from(iterations).unwrap_or(0),
        );
        let request = AlterUserScramCredentialsRequest::default().with_upsertions(vec![
            alter_user_scram_credentials_request::ScramCredentialUpsertion::default()
                .with_name(str_bytes(user))
                .with_mechanism(code)
                .with_iterations(iterations)
                .with_salt(salt.into())
                .with_salted_password(salted.into()),
        ]);
        let response = self.controller_call(request).await?;
        for r in &response.results {
            Error::check_message(r.error_code, r.error_message.as_ref())?;
        }
        Ok(())
    }

    /// Removes `user`'s SCRAM credential for `mechanism`. Errors: RESOURCE_NOT_FOUND.
    pub async fn delete_scram_credential(&self, user: &str, mechanism: &str) -> Result<()> {
        let (_, code) = scram_mechanism(mechanism)?;
        let request = AlterUserScramCredentialsRequest::default().with_deletions(vec![
            alter_user_scram_credentials_request::ScramCredentialDeletion::default()
                .with_name(str_bytes(user))
                .with_mechanism(code),
        ]);
        let response = self.controller_call(request).await?;
        for r in &response.results {
            Error::check_message(r.error_code, r.error_message.as_ref())?;
        }
        Ok(())
    }

    /// Every user with SCRAM credentials: `(user, [(mechanism, iterations)])`.
    pub async fn describe_scram_credentials(&self) -> Result<Vec<(String, Vec<(String, i32)>)>> {
        let response = self
            .controller_call(DescribeUserScramCredentialsRequest::default().with_users(None))
            .await?;
        Error::check_message(response.error_code, response.error_message.as_ref())?;
        Ok(response
            .results
            .iter()
            .map(|r| {
                let creds = r
                    .credential_infos
                    .iter()
                    .map(|c| {
                        let m = if c.mechanism == 2 {
                            "SCRAM-SHA-512"
                        } else {
                            "SCRAM-SHA-256"
                        };
                        (m.to_owned(), c.iterations)
                    })
                    .collect();
                (r.user.to_string(), creds)
            })
            .collect())
    }

    /// Sets (`Some`) or removes (`None`) quota `key` of `entity` (`(type, name)` pairs,
    /// `None` name for the default), AlterClientQuotas v1.
    pub async fn alter_client_quota(
        &self,
        entity: &[(String, Option<String>)],
        key: &str,
        value: Option<f64>,
    ) -> Result<()> {
        let request = AlterClientQuotasRequest::default().with_entries(vec![
            alter_client_quotas_request::EntryData::default()
                .with_entity(
                    entity
                        .iter()
                        .map(|(t, n)| {
                            alter_client_quotas_request::EntityData::default()
                                .with_entity_type(str_bytes(t))
                                .with_entity_name(n.as_deref().map(str_bytes))
                        })
                        .collect(),
                )
                .with_ops(vec![alter_client_quotas_request::OpData::default()
                    .with_key(str_bytes(key))
                    .with_value(value.unwrap_or(0.0))
                    .with_remove(value.is_none())]),
        ]);
        let response = self.controller_call(request).await?;
        for r in &response.entries {
            Error::check_message(r.error_code, r.error_message.as_ref())?;
        }
        Ok(())
    }

    /// Every client quota: `(entity, [(key, value)])` (DescribeClientQuotas v1, no
    /// filter).
    #[allow(clippy::type_complexity)]
    pub async fn describe_client_quotas(
        &self,
    ) -> Result<Vec<(Vec<(String, Option<String>)>, Vec<(String, f64)>)>> {
        let request = DescribeClientQuotasRequest::default()
            .with_components(Vec::<describe_client_quotas_request::ComponentData>::new());
        let response = self.controller_call(request).await?;
        Error::check_message(response.error_code, response.error_message.as_ref())?;
        Ok(response
            .entries
            .unwrap_or_default()
            .iter()
            .map(|e| {
                (
                    e.entity
                        .iter()
                        .map(|x| {
                            (
                                x.entity_type.to_string(),
                                x.entity_name.as_ref().map(|n| n.to_string()),
                            )
                        })
                        .collect(),
                    e.values
                        .iter()
                        .map(|v| (v.key.to_string(), v.value))
                        .collect(),
                )
            })
            .collect())
    }
}

fn scram_mechanism(name: &str) -> Result<(ScramHash, i8)> {
    match name {
        "SCRAM-SHA-256" => Ok((ScramHash::Sha256, 1)),
        "SCRAM-SHA-512" => Ok((ScramHash::Sha512, 2)),
        other => Err(Error::Invalid(format!(
            "{other} is not SCRAM-SHA-256 or SCRAM-SHA-512"
        ))),
    }
}
