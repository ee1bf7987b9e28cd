//! `moldau acls`, `moldau users` and `moldau quotas`: ACLs, SCRAM credentials and client
//! quotas, as Kafka's `kafka-acls.sh` and `kafka-configs.sh --entity-type users|clients`
//! manage them.

use super::output::{self, Output};
use super::Context;
use moldau_client::admin_security::{
    code_of, name_of, Acl, OPERATIONS, PATTERN_TYPES, PERMISSIONS, RESOURCE_TYPES,
};
use serde_json::json;

/// The resource an ACL command is about (one at most; none lists or deletes across all).
#[derive(clap::Args, Clone, Default)]
pub struct ResourceArgs {
    /// A topic (or topic prefix with `--prefixed`).
    #[arg(long)]
    topic: Option<String>,
    /// A consumer group (or prefix).
    #[arg(long)]
    group: Option<String>,
    /// A transactional id (or prefix).
    #[arg(long)]
    transactional_id: Option<String>,
    /// The cluster.
    #[arg(long)]
    cluster: bool,
    /// The name is a prefix (PREFIXED pattern) instead of a literal.
    #[arg(long)]
    prefixed: bool,
}

impl ResourceArgs {
    /// `(resource type, name)`, or `None` when no resource was named.
    fn resource(&self) -> anyhow::Result<Option<(i8, String)>> {
        let named: Vec<(i8, String)> = [
            self.topic.clone().map(|t| (2, t)),
            self.group.clone().map(|g| (3, g)),
            self.transactional_id.clone().map(|t| (5, t)),
            self.cluster.then(|| (4, "kafka-cluster".to_owned())),
        ]
        .into_iter()
        .flatten()
        .collect();
        match named.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(one.clone())),
            _ => anyhow::bail!(
                "name one resource: --topic, --group, --transactional-id or --cluster"
            ),
        }
    }
}

/// ACL subcommands.
#[derive(clap::Subcommand)]
pub enum AclsCommand {
    /// Lists ACLs (all, or those on one resource or of one principal).
    List {
        #[command(flatten)]
        resource: ResourceArgs,
        /// Only this principal's (`User:alice`).
        #[arg(long)]
        principal: Option<String>,
    },
    /// Adds ACLs: each principal may (or, with `--deny`, may not) do each operation.
    Create {
        #[command(flatten)]
        resource: ResourceArgs,
        /// `User:alice` (repeatable; `User:*` for everyone).
        #[arg(long, required = true)]
        principal: Vec<String>,
        /// READ, WRITE, CREATE, DELETE, ALTER, DESCRIBE, ALL, … (repeatable).
        #[arg(long, required = true)]
        operation: Vec<String>,
        /// Client address the ACLs apply to (default `*`, any).
        #[arg(long, default_value = "*")]
        host: String,
        /// DENY instead of ALLOW.
        #[arg(long)]
        deny: bool,
    },
    /// Deletes the ACLs matching the options (all on the resource if none narrow it).
    Delete {
        #[command(flatten)]
        resource: ResourceArgs,
        /// Only this principal's.
        #[arg(long)]
        principal: Option<String>,
        /// Only this operation's.
        #[arg(long)]
        operation: Option<String>,
    },
}

fn print_acls(ctx: &Context, acls: &[Acl]) {
    match ctx.output {
        Output::Json => output::print_json(&json!(acls
            .iter()
            .map(|a| json!({
                "resource_type": name_of(RESOURCE_TYPES, a.resource_type),
                "resource_name": a.resource_name,
                "pattern_type": name_of(PATTERN_TYPES, a.pattern_type),
                "principal": a.principal,
                "host": a.host,
                "operation": name_of(OPERATIONS, a.operation),
                "permission": name_of(PERMISSIONS, a.permission),
            }))
            .collect::<Vec<_>>())),
        Output::Table => {
            let rows: Vec<Vec<String>> = acls
                .iter()
                .map(|a| {
                    vec![
                        name_of(RESOURCE_TYPES, a.resource_type).to_owned(),
                        a.resource_name.clone().unwrap_or_default(),
                        name_of(PATTERN_TYPES, a.pattern_type).to_owned(),
                        a.principal.clone().unwrap_or_default(),
                        a.host.clone().unwrap_or_default(),
                        name_of(OPERATIONS, a.operation).to_owned(),
                        name_of(PERMISSIONS, a.permission).to_owned(),
                    ]
                })
                .collect();
            print!(
                "{}",
                output::table(
                    &[
                        "RESOURCE",
                        "NAME",
                        "PATTERN",
                        "PRINCIPAL",
                        "HOST",
                        "OPERATION",
                        "PERMISSION"
                    ],
                    &rows
                )
            );
        }
    }
}

fn operation(name: &str) -> anyhow::Result<i8> {
    code_of(OPERATIONS, name).ok_or_else(|| anyhow::anyhow!("unknown operation {name}"))
}

/// A filter for the resource (any when none is named).
fn filter(resource: &ResourceArgs, principal: Option<String>, op: i8) -> anyhow::Result<Acl> {
    let r = resource.resource()?;
    Ok(Acl {
        resource_type: r.as_ref().map_or(1, |(t, _)| *t),
        resource_name: r.map(|(_, n)| n),
        pattern_type: if resource.prefixed { 4 } else { 1 },
        principal,
        host: None,
        operation: op,
        permission: 1,
    })
}

/// Runs an ACL subcommand.
pub async fn acls(ctx: &Context, command: AclsCommand) -> anyhow::Result<()> {
    let admin = ctx.admin().await?;
    match command {
        AclsCommand::List {
            resource,
            principal,
        } => {
            let acls = admin
                .describe_acls(&filter(&resource, principal, 1)?)
                .await?;
            print_acls(ctx, &acls);
        }
        AclsCommand::Create {
            resource,
            principal,
            operation: ops,
            host,
            deny,
        } => {
            let Some((resource_type, name)) = resource.resource()? else {
                anyhow::bail!(
                    "name the resource: --topic, --group, --transactional-id or --cluster"
                );
            };
            let mut acls = Vec::new();
            for p in &principal {
                for o in &ops {
                    acls.push(Acl {
                        resource_type,
                        resource_name: Some(name.clone()),
                        pattern_type: if resource.prefixed { 4 } else { 3 },
                        principal: Some(p.clone()),
                        host: Some(host.clone()),
                        operation: operation(o)?,
                        permission: if deny { 2 } else { 3 },
                    });
                }
            }
            admin.create_acls(&acls).await?;
            print_acls(ctx, &acls);
        }
        AclsCommand::Delete {
            resource,
            principal,
            operation: op,
        } => {
            let op = op.as_deref().map(operation).transpose()?.unwrap_or(1);
            let deleted = admin
                .delete_acls(&filter(&resource, principal, op)?)
                .await?;
            print_acls(ctx, &deleted);
        }
    }
    Ok(())
}

/// SCRAM user subcommands.
#[derive(clap::Subcommand)]
pub enum UsersCommand {
    /// Users with SCRAM credentials, with mechanisms and iterations.
    List,
    /// Sets a user's SCRAM credential (the password is salted and hashed here).
    Set {
        /// The user name.
        user: String,
        /// The password.
        #[arg(long)]
        password: String,
        /// SCRAM-SHA-256 or SCRAM-SHA-512.
        #[arg(long, default_value = "SCRAM-SHA-256")]
        mechanism: String,
        /// Hi() iterations (4096..=16384).
        #[arg(long, default_value_t = 8192)]
        iterations: i32,
    },
    /// Removes a user's credential for one mechanism.
    Delete {
        /// The user name.
        user: String,
        /// SCRAM-SHA-256 or SCRAM-SHA-512.
        #[arg(long, default_value = "SCRAM-SHA-256")]
        mechanism: String,
    },
}

/// Runs a users subcommand.
pub async fn users(ctx: &Context, command: UsersCommand) -> anyhow::Result<()> {
    let admin = ctx.admin().await?;
    match command {
        UsersCommand::List => {
            let users = admin.describe_scram_credentials().await?;
            match ctx.output {
                Output::Json => output::print_json(&json!(users
                    .iter()
                    .map(|(u, c)| json!({"user": u, "credentials": c.iter().map(|(m, i)| json!({"mechanism": m, "iterations": i})).collect::<Vec<_>>()}))
                    .collect::<Vec<_>>())),
                Output::Table => {
                    let rows: Vec<Vec<String>> = users
                        .iter()
                        .flat_map(|(u, c)| c.iter().map(move |(m, i)| vec![u.clone(), m.clone(), i.to_string()]))
                        .collect();
                    print!("{}", output::table(&["USER", "MECHANISM", "ITERATIONS"], &rows));
                }
            }
        }
        UsersCommand::Set {
            user,
            password,
            mechanism,
            iterations,
        } => {
            admin
                .set_scram_credential(&user, &mechanism, &password, iterations)
                .await?;
            println!("{user}: {mechanism} credential set");
        }
        UsersCommand::Delete { user, mechanism } => {
            admin.delete_scram_credential(&user, &mechanism).await?;
            println!("{user}: {mechanism} credential removed");
        }
    }
    Ok(())
}

/// Client quota subcommands. `--user` and `--client-id`, or `--ip`, name the entity;
/// `<default>` names the default one, as Kafka writes it.
#[derive(clap::Subcommand)]
pub enum QuotasCommand {
    /// Every client quota.
    List,
    /// Sets quotas of a user and/or client id, or of an address.
    Set {
        #[command(flatten)]
        entity: EntityArgs,
        /// Bytes/s the client may produce.
        #[arg(long)]
        producer_byte_rate: Option<u64>,
        /// Bytes/s the client may fetch.
        #[arg(long)]
        consumer_byte_rate: Option<u64>,
        /// Percent of one request thread's time the client may use (KIP-124).
        #[arg(long)]
        request_percentage: Option<u64>,
        /// Connections/s the address may open (KIP-612; with --ip).
        #[arg(long)]
        connection_creation_rate: Option<u64>,
    },
    /// Removes a quota of a user and/or client id, or of an address.
    Delete {
        #[command(flatten)]
        entity: EntityArgs,
        /// producer_byte_rate, consumer_byte_rate, request_percentage or
        /// connection_creation_rate.
        #[arg(long)]
        key: String,
    },
}

/// A quota entity.
#[derive(clap::Args, Clone)]
pub struct EntityArgs {
    /// User name (`<default>` for the default user).
    #[arg(long)]
    user: Option<String>,
    /// Client id (`<default>` for the default client id).
    #[arg(long)]
    client_id: Option<String>,
    /// Client address (`<default>` for the default address).
    #[arg(long)]
    ip: Option<String>,
}

impl EntityArgs {
    fn entity(&self) -> anyhow::Result<Vec<(String, Option<String>)>> {
        let name = |n: &String| (n != "<default>").then(|| n.clone());
        let mut e = Vec::new();
        if let Some(u) = &self.user {
            e.push(("user".to_owned(), name(u)));
        }
        if let Some(c) = &self.client_id {
            e.push(("client-id".to_owned(), name(c)));
        }
        if let Some(ip) = &self.ip {
            e.push(("ip".to_owned(), name(ip)));
        }
        if e.is_empty() {
            anyhow::bail!("name the entity: --user and/or --client-id, or --ip");
        }
        Ok(e)
    }
}

fn entity_text(entity: &[(String, Option<String>)]) -> String {
    entity
        .iter()
        .map(|(t, n)| format!("{t}={}", n.as_deref().unwrap_or("<default>")))
        .collect::<Vec<_>>()
        .join(",")
}

/// Runs a quotas subcommand.
pub async fn quotas(ctx: &Context, command: QuotasCommand) -> anyhow::Result<()> {
    let admin = ctx.admin().await?;
    match command {
        QuotasCommand::List => {
            let quotas = admin.describe_client_quotas().await?;
            match ctx.output {
                Output::Json => output::print_json(&json!(quotas
                    .iter()
                    .map(|(e, v)| json!({"entity": entity_text(e), "quotas": v.iter().map(|(k, x)| json!({"key": k, "value": x})).collect::<Vec<_>>()}))
                    .collect::<Vec<_>>())),
                Output::Table => {
                    let rows: Vec<Vec<String>> = quotas
                        .iter()
                        .flat_map(|(e, v)| v.iter().map(move |(k, x)| vec![entity_text(e), k.clone(), x.to_string()]))
                        .collect();
                    print!("{}", output::table(&["ENTITY", "QUOTA", "VALUE"], &rows));
                }
            }
        }
        QuotasCommand::Set {
            entity,
            producer_byte_rate,
            consumer_byte_rate,
            request_percentage,
            connection_creation_rate,
        } => {
            let e = entity.entity()?;
            let values = [
                ("producer_byte_rate", producer_byte_rate),
                ("consumer_byte_rate", consumer_byte_rate),
                ("request_percentage", request_percentage),
                ("connection_creation_rate", connection_creation_rate),
            ];
            if values.iter().all(|(_, v)| v.is_none()) {
                anyhow::bail!(
                    "give --producer-byte-rate, --consumer-byte-rate, --request-percentage \
                     or --connection-creation-rate"
                );
            }
            for (key, value) in values {
                if let Some(v) = value {
                    admin.alter_client_quota(&e, key, Some(v as f64)).await?;
                    println!("{}: {key}={v}", entity_text(&e));
                }
            }
        }
        QuotasCommand::Delete { entity, key } => {
            let e = entity.entity()?;
            admin.alter_client_quota(&e, &key, None).await?;
            println!("{}: {key} removed", entity_text(&e));
        }
    }
    Ok(())
}
