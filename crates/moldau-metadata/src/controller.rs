//! The controller state machine: validates a change against the current image and
//! returns the metadata records that carry it out (KRaft's `ReplicationControlManager`,
//! `ConfigurationControlManager`). It performs no I/O: the runtime appends the records
//! to the metadata log and applies them, so the same code runs under a one-voter quorum
//! today and a Raft quorum later.

use crate::configs;
use crate::image::MetadataImage;
use crate::records::{ConfigResource, MetadataRecord, ScramCredential, ScramMechanism};
use moldau_protocol::error::ResponseError;
use std::collections::BTreeMap;
use thiserror::Error;
use uuid::Uuid;

/// The metadata log's own topic name: it can be neither created nor deleted by clients
/// (its partition directory is the metadata log).
pub const METADATA_TOPIC: &str = "__cluster_metadata";

/// Kafka's internal topics (`Topic.isInternal`): flagged internal in Metadata, and only
/// their coordinators may append to them.
pub fn is_internal_topic(name: &str) -> bool {
    matches!(name, "__consumer_offsets" | "__transaction_state")
}

/// Most records one client operation may produce (KRaft's `MAX_RECORDS_PER_USER_OP`):
/// bounds the memory and metadata-log batch a single CreateTopics or CreatePartitions
/// can cause.
pub const MAX_RECORDS_PER_USER_OP: usize = 10_000;

fn reserved(name: &str) -> ControllerResult<()> {
    if name == METADATA_TOPIC {
        return Err(ControllerError::new(
            ResponseError::InvalidRequest,
            format!("Creation or deletion of internal topic {name} is prohibited."),
        ));
    }
    Ok(())
}

fn within_op_limit(partitions: i64) -> ControllerResult<()> {
    if partitions > MAX_RECORDS_PER_USER_OP as i64 / 2 {
        return Err(ControllerError::new(
            ResponseError::InvalidPartitions,
            format!(
                "{partitions} partitions exceed the {} partitions one request may create.",
                MAX_RECORDS_PER_USER_OP / 2
            ),
        ));
    }
    Ok(())
}

/// A rejected change, with the Kafka error it is answered with.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{error:?}: {message}")]
pub struct ControllerError {
    /// Kafka error code to answer with.
    pub error: ResponseError,
    /// Human-readable reason (goes into `error_message`).
    pub message: String,
}

impl ControllerError {
    fn new(error: ResponseError, message: impl Into<String>) -> Self {
        Self {
            error,
            message: message.into(),
        }
    }
}

/// Result of a controller operation.
pub type ControllerResult<T> = Result<T, ControllerError>;

/// A CreateTopics entry after defaults are resolved.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NewTopic {
    /// Topic name.
    pub name: String,
    /// Partition count (`num.partitions` when the request says -1).
    pub num_partitions: i32,
    /// Replication factor (`default.replication.factor` when -1).
    pub replication_factor: i16,
    /// Topic config overrides.
    pub configs: BTreeMap<String, String>,
    /// Manual replica assignment (CreateTopics `assignments`): replicas per partition,
    /// in partition order. `None` places replicas round-robin.
    pub assignments: Option<Vec<Vec<i32>>>,
}

/// Validates a new topic and returns its records: `Topic`, one `Partition` per
/// partition (replicas placed by [`place_replicas`] over the active brokers, or as
/// assigned; ISR = the active replicas, leader = the first of them, leader epoch 0),
/// then one `Config` per override.
///
/// Errors: `TOPIC_ALREADY_EXISTS`, `INVALID_TOPIC_EXCEPTION`, `INVALID_PARTITIONS`,
/// `INVALID_REPLICATION_FACTOR`, `INVALID_CONFIG`.
pub fn create_topic(
    image: &MetadataImage,
    topic: &NewTopic,
) -> ControllerResult<Vec<MetadataRecord>> {
    moldau_types::validate_topic_name(&topic.name)
        .map_err(|m| ControllerError::new(ResponseError::InvalidTopicException, m))?;
    reserved(&topic.name)?;
    if image.topics.contains_key(&topic.name) {
        return Err(ControllerError::new(
            ResponseError::TopicAlreadyExists,
            format!("Topic '{}' already exists.", topic.name),
        ));
    }
    // Kafka forbids topics whose names collide once '.' and '_' are treated alike.
    let norm = |s: &str| s.replace('.', "_");
    if let Some(other) = image.topics.keys().find(|t| norm(t) == norm(&topic.name)) {
        return Err(ControllerError::new(
            ResponseError::InvalidTopicException,
            format!(
                "Topic '{}' collides with existing topic '{other}'.",
                topic.name
            ),
        ));
    }
    let topic_id = Uuid::new_v4();
    let assignments = match &topic.assignments {
        Some(assignments) => {
            within_op_limit(assignments.len() as i64)?;
            let rf = assignments.first().map_or(0, Vec::len);
            if rf == 0 {
                return Err(ControllerError::new(
                    ResponseError::InvalidReplicaAssignment,
                    "Empty replica assignment.",
                ));
            }
            validate_assignment(image, assignments, rf)?;
            assignments.clone()
        }
        None => {
            within_op_limit(i64::from(topic.num_partitions))?;
            if topic.num_partitions < 1 {
                return Err(ControllerError::new(
                    ResponseError::InvalidPartitions,
                    "Number of partitions must be larger than 0.",
                ));
            }
            place_replicas(
                image,
                topic_id,
                0,
                topic.num_partitions,
                topic.replication_factor,
            )?
        }
    };
    for (k, v) in &topic.configs {
        configs::validate_topic_config(k, Some(v))
            .map_err(|m| ControllerError::new(ResponseError::InvalidConfig, m))?;
    }
    let mut records = vec![MetadataRecord::Topic {
        name: topic.name.clone(),
        topic_id,
    }];
    records.extend(partition_records(image, topic_id, 0, assignments)?);
    records.extend(topic.configs.iter().map(|(k, v)| MetadataRecord::Config {
        resource: ConfigResource::Topic,
        resource_name: topic.name.clone(),
        name: k.clone(),
        value: Some(v.clone()),
    }));
    Ok(records)
}

/// Checks a manual replica assignment: every partition lists `rf` distinct, registered
/// brokers. Errors: `INVALID_REPLICA_ASSIGNMENT`.
fn validate_assignment(
    image: &MetadataImage,
    assignments: &[Vec<i32>],
    rf: usize,
) -> ControllerResult<()> {
    for replicas in assignments {
        let mut sorted = replicas.clone();
        sorted.sort_unstable();
        sorted.dedup();
        if replicas.is_empty() || replicas.len() != rf || sorted.len() != replicas.len() {
            return Err(ControllerError::new(
                ResponseError::InvalidReplicaAssignment,
                format!("Every partition needs {rf} distinct replicas."),
            ));
        }
        if let Some(b) = replicas.iter().find(|b| !image.brokers.contains_key(b)) {
            return Err(ControllerError::new(
                ResponseError::InvalidReplicaAssignment,
                format!("Broker {b} in the replica assignment is not registered."),
            ));
        }
    }
    Ok(())
}

/// Replicas for partitions `first..end`, placed over the active (unfenced, not shutting
/// down) brokers: brokers are ordered so that consecutive ones sit on different racks
/// where `broker.rack` is set (racks taken in turn), then partition `p` takes
/// `replication_factor` consecutive brokers starting at `start + p`, with `start`
/// derived from the topic id. Replicas of a partition therefore spread over racks, and
/// leaders (first replicas) rotate over every broker, so they balance across topics and
/// partitions (Kafka's `StripedReplicaPlacer` serves the same two goals).
///
/// Errors: `INVALID_REPLICATION_FACTOR` when there are fewer active brokers than the
/// replication factor (Kafka's rule; a fenced broker cannot take a new replica).
fn place_replicas(
    image: &MetadataImage,
    topic_id: Uuid,
    first: i32,
    end: i32,
    replication_factor: i16,
) -> ControllerResult<Vec<Vec<i32>>> {
    let brokers = rack_interleaved(image);
    if replication_factor < 1 || replication_factor as usize > brokers.len() {
        return Err(ControllerError::new(
            ResponseError::InvalidReplicationFactor,
            format!(
                "Unable to replicate the partition {replication_factor} time(s): The target replication factor of {replication_factor} cannot be reached because only {} broker(s) are registered and unfenced.",
                brokers.len()
            ),
        ));
    }
    let n = brokers.len();
    let start = (topic_id.as_u128() % n as u128) as usize;
    Ok((first..end)
        .map(|p| {
            (0..replication_factor as usize)
                .map(|r| brokers[(start + p as usize + r) % n])
                .collect()
        })
        .collect())
}

/// Active broker ids, racks interleaved: the first broker of each rack (racks in name
/// order, brokers without a rack as one more rack), then the second of each, and so on.
fn rack_interleaved(image: &MetadataImage) -> Vec<i32> {
    let mut racks: BTreeMap<Option<&str>, Vec<i32>> = BTreeMap::new();
    for b in image.brokers.values().filter(|b| b.is_active()) {
        racks
            .entry(b.rack.as_deref())
            .or_default()
            .push(b.broker_id);
    }
    let deepest = racks.values().map(Vec::len).max().unwrap_or(0);
    let mut out = Vec::new();
    for i in 0..deepest {
        for ids in racks.values() {
            if let Some(id) = ids.get(i) {
                out.push(*id);
            }
        }
    }
    out
}

/// `Partition` records for new partitions numbered from `first`: ISR = the active
/// replicas, leader = the first of them, epochs 0. Errors:
/// `INVALID_REPLICA_ASSIGNMENT` when no replica of a partition is active.
fn partition_records(
    image: &MetadataImage,
    topic_id: Uuid,
    first: i32,
    assignments: Vec<Vec<i32>>,
) -> ControllerResult<Vec<MetadataRecord>> {
    assignments
        .into_iter()
        .zip(first..)
        .map(|(replicas, partition)| {
            let isr: Vec<i32> = replicas
                .iter()
                .copied()
                .filter(|r| image.brokers.get(r).is_some_and(|b| b.is_active()))
                .collect();
            let Some(&leader) = isr.first() else {
                return Err(ControllerError::new(
                    ResponseError::InvalidReplicaAssignment,
                    format!("All brokers in the assignment of partition {partition} are fenced or shutting down."),
                ));
            };
            Ok(MetadataRecord::Partition {
                topic_id,
                partition,
                leader,
                isr,
                replicas,
                leader_epoch: 0,
                partition_epoch: 0,
            })
        })
        .collect()
}

/// Producer ids per block handed to a broker (Kafka `ProducerIdsBlock.PRODUCER_ID_BLOCK_SIZE`).
pub const PRODUCER_ID_BLOCK_SIZE: i64 = 1000;

/// The record that hands `broker_id` the next block of producer ids (Kafka's
/// `AllocateProducerIds`, KIP-730): `[image.next_producer_id, + PRODUCER_ID_BLOCK_SIZE)`.
/// Errors: none in practice; the id space (`i64`) cannot run out.
pub fn allocate_producer_ids(
    image: &MetadataImage,
    broker_id: i32,
) -> ControllerResult<Vec<MetadataRecord>> {
    Ok(vec![MetadataRecord::ProducerIds {
        broker_id,
        next_producer_id: image.next_producer_id + PRODUCER_ID_BLOCK_SIZE,
    }])
}

/// Records that delete a topic. Errors: `UNKNOWN_TOPIC_OR_PARTITION`.
pub fn delete_topic(image: &MetadataImage, name: &str) -> ControllerResult<Vec<MetadataRecord>> {
    reserved(name)?;
    let topic = image.topics.get(name).ok_or_else(|| {
        ControllerError::new(
            ResponseError::UnknownTopicOrPartition,
            format!("Topic '{name}' does not exist."),
        )
    })?;
    Ok(vec![MetadataRecord::RemoveTopic {
        topic_id: topic.topic_id,
    }])
}

/// Records that grow a topic to `new_count` partitions (CreatePartitions, KIP-195).
/// `assignments`, when given, lists the replicas of each new partition in order;
/// otherwise they are placed round-robin. Errors: `UNKNOWN_TOPIC_OR_PARTITION`,
/// `INVALID_PARTITIONS` (not larger than today, or too many at once),
/// `INVALID_REPLICATION_FACTOR`, `INVALID_REPLICA_ASSIGNMENT`.
pub fn create_partitions(
    image: &MetadataImage,
    name: &str,
    new_count: i32,
    assignments: Option<&[Vec<i32>]>,
) -> ControllerResult<Vec<MetadataRecord>> {
    let topic = image.topics.get(name).ok_or_else(|| {
        ControllerError::new(
            ResponseError::UnknownTopicOrPartition,
            format!("Topic '{name}' does not exist."),
        )
    })?;
    let current = topic.partitions.len() as i32;
    if new_count <= current {
        return Err(ControllerError::new(
            ResponseError::InvalidPartitions,
            format!("Topic currently has {current} partitions, which is higher than or equal to the requested {new_count}."),
        ));
    }
    within_op_limit(i64::from(new_count) - i64::from(current))?;
    let rf = topic
        .partitions
        .values()
        .next()
        .map_or(1, |p| p.replicas.len());
    let replicas = match assignments {
        Some(assignments) => {
            if assignments.len() != (new_count - current) as usize {
                return Err(ControllerError::new(
                    ResponseError::InvalidReplicaAssignment,
                    format!(
                        "Increasing the number of partitions by {} but {} assignments provided.",
                        new_count - current,
                        assignments.len()
                    ),
                ));
            }
            validate_assignment(image, assignments, rf)?;
            assignments.to_vec()
        }
        None => place_replicas(image, topic.topic_id, current, new_count, rf as i16)?,
    };
    partition_records(image, topic.topic_id, current, replicas)
}

/// One IncrementalAlterConfigs operation (KIP-339).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum AlterOp {
    /// 0: set.
    Set,
    /// 1: delete (revert to default).
    Delete,
    /// 2: append to a list config.
    Append,
    /// 3: subtract from a list config.
    Subtract,
}

/// Records that apply config changes to one resource. For topics, every name must be a
/// known topic config with a valid value. Errors: `UNKNOWN_TOPIC_OR_PARTITION`,
/// `INVALID_CONFIG`, `INVALID_REQUEST` (list ops on a non-list config).
pub fn alter_configs(
    image: &MetadataImage,
    resource: ConfigResource,
    resource_name: &str,
    ops: &[(String, AlterOp, Option<String>)],
) -> ControllerResult<Vec<MetadataRecord>> {
    let current = dynamic_configs(image, resource, resource_name)?;
    let mut records = Vec::with_capacity(ops.len());
    for (name, op, value) in ops {
        let new_value = match op {
            AlterOp::Set => value.clone(),
            AlterOp::Delete => None,
            AlterOp::Append | AlterOp::Subtract => {
                if !configs::is_list(name) {
                    return Err(ControllerError::new(
                        ResponseError::InvalidRequest,
                        format!("Config '{name}' is not a list; APPEND/SUBTRACT do not apply."),
                    ));
                }
                let mut items: Vec<String> = current
                    .get(name)
                    .map(|v| {
                        v.split(',')
                            .filter(|s| !s.is_empty())
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default();
                let given: Vec<&str> = value
                    .as_deref()
                    .unwrap_or("")
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .collect();
                if *op == AlterOp::Append {
                    for g in given {
                        if !items.iter().any(|i| i == g) {
                            items.push(g.to_owned());
                        }
                    }
                } else {
                    items.retain(|i| !given.contains(&i.as_str()));
                }
                Some(items.join(","))
            }
        };
        if resource == ConfigResource::Topic {
            configs::validate_topic_config(name, new_value.as_deref())
                .map_err(|m| ControllerError::new(ResponseError::InvalidConfig, m))?;
        }
        records.push(MetadataRecord::Config {
            resource,
            resource_name: resource_name.to_owned(),
            name: name.clone(),
            value: new_value,
        });
    }
    Ok(records)
}

/// The dynamic configs (overrides) of a resource. Errors: `UNKNOWN_TOPIC_OR_PARTITION`.
fn dynamic_configs<'a>(
    image: &'a MetadataImage,
    resource: ConfigResource,
    resource_name: &str,
) -> ControllerResult<&'a BTreeMap<String, String>> {
    static EMPTY: BTreeMap<String, String> = BTreeMap::new();
    match resource {
        ConfigResource::Topic => image
            .topics
            .get(resource_name)
            .map(|t| &t.configs)
            .ok_or_else(|| {
                ControllerError::new(
                    ResponseError::UnknownTopicOrPartition,
                    format!("Topic '{resource_name}' does not exist."),
                )
            }),
        ConfigResource::Broker => Ok(image.broker_configs.get(resource_name).unwrap_or(&EMPTY)),
    }
}

/// Records that make a resource's dynamic configs exactly `configs` (the legacy
/// AlterConfigs API, key 33): every override not named returns to its default, every
/// named one is set. Validated as [`alter_configs`] does, with its errors.
pub fn replace_configs(
    image: &MetadataImage,
    resource: ConfigResource,
    resource_name: &str,
    configs: &[(String, String)],
) -> ControllerResult<Vec<MetadataRecord>> {
    let current = dynamic_configs(image, resource, resource_name)?;
    let ops: Vec<(String, AlterOp, Option<String>)> = current
        .keys()
        .filter(|k| !configs.iter().any(|(name, _)| name == *k))
        .map(|k| (k.clone(), AlterOp::Delete, None))
        .chain(
            configs
                .iter()
                .map(|(name, value)| (name.clone(), AlterOp::Set, Some(value.clone()))),
        )
        .collect();
    alter_configs(image, resource, resource_name, &ops)
}

/// Records that delete and set one user's SCRAM credentials (AlterUserScramCredentials,
/// KIP-554), deletions first. Errors: `RESOURCE_NOT_FOUND` when a deletion names a
/// credential the user does not have, `DUPLICATE_RESOURCE` when a mechanism is named
/// twice. Iteration bounds and key derivation are checked by the broker that took the
/// request.
pub fn alter_scram_credentials(
    image: &MetadataImage,
    user: &str,
    deletions: &[ScramMechanism],
    upsertions: &[ScramCredential],
) -> ControllerResult<Vec<MetadataRecord>> {
    let mut seen = std::collections::BTreeSet::new();
    for m in deletions
        .iter()
        .chain(upsertions.iter().map(|c| &c.mechanism))
    {
        if !seen.insert(*m) {
            return Err(ControllerError::new(
                ResponseError::DuplicateResource,
                format!(
                    "A user credential cannot be altered twice in the same request ({user}, {})",
                    m.name()
                ),
            ));
        }
    }
    let existing = image.scram_credentials.get(user);
    let mut records = Vec::new();
    for m in deletions {
        if !existing.is_some_and(|c| c.contains_key(m.name())) {
            return Err(ControllerError::new(
                ResponseError::ResourceNotFound,
                format!(
                    "Attempt to delete a user credential that does not exist ({user}, {})",
                    m.name()
                ),
            ));
        }
        records.push(MetadataRecord::RemoveUserScramCredential {
            name: user.to_owned(),
            mechanism: *m,
        });
    }
    records.extend(
        upsertions
            .iter()
            .map(|c| MetadataRecord::UserScramCredential {
                name: user.to_owned(),
                credential: c.clone(),
            }),
    );
    Ok(records)
}

/// Records that add the ACLs not already present (an identical ACL is not added twice,
/// as Kafka does), each with a fresh id.
pub fn create_acls(
    image: &MetadataImage,
    bindings: &[crate::acl::AclBinding],
) -> Vec<MetadataRecord> {
    let mut seen: std::collections::BTreeSet<&crate::acl::AclBinding> =
        image.acls.values().collect();
    let mut records = Vec::new();
    for b in bindings {
        if seen.insert(b) {
            records.push(MetadataRecord::AccessControlEntry {
                id: Uuid::new_v4(),
                binding: b.clone(),
            });
        }
    }
    records
}

/// An operation a client or broker asks the active controller for, carried to it over
/// the network when this node is not the active controller (Kafka forwards the admin
/// request itself; Moldau forwards the operation it decoded).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum MetadataOp {
    /// CreateTopics, one topic.
    CreateTopic(NewTopic),
    /// DeleteTopics, one topic.
    DeleteTopic {
        /// Topic name.
        name: String,
    },
    /// CreatePartitions, one topic.
    CreatePartitions {
        /// Topic name.
        name: String,
        /// New partition count.
        count: i32,
        /// Replicas of each new partition, if assigned by hand.
        assignments: Option<Vec<Vec<i32>>>,
    },
    /// IncrementalAlterConfigs, one resource.
    AlterConfigs {
        /// Resource type.
        resource: ConfigResource,
        /// Resource name.
        name: String,
        /// `(config, operation, value)` in request order.
        ops: Vec<(String, AlterOp, Option<String>)>,
    },
    /// AlterConfigs (the legacy, non-incremental API), one resource: its dynamic
    /// configs become exactly `configs`.
    ReplaceConfigs {
        /// Resource type.
        resource: ConfigResource,
        /// Resource name.
        name: String,
        /// `(config, value)` in request order, names distinct.
        configs: Vec<(String, String)>,
    },
    /// AlterClientQuotas, one entity: `(key, Some(value))` sets, `(key, None)` removes
    /// (validated by the broker that took the request).
    AlterClientQuotas {
        /// The entity.
        entity: crate::quota::QuotaEntity,
        /// The changes.
        ops: Vec<(String, Option<i64>)>,
    },
    /// CreateAcls: add these ACLs (validated by the broker that took the request).
    CreateAcls(Vec<crate::acl::AclBinding>),
    /// DeleteAcls: remove the ACLs with these ids (those already gone are skipped).
    DeleteAcls(Vec<Uuid>),
    /// AlterUserScramCredentials, one user (KIP-554).
    AlterScramCredentials {
        /// User name.
        user: String,
        /// Mechanisms whose credentials are removed.
        deletions: Vec<ScramMechanism>,
        /// Credentials set (derived by the broker that took the request).
        upsertions: Vec<ScramCredential>,
    },
    /// AllocateProducerIds (KIP-730) for a broker.
    AllocateProducerIds {
        /// The broker that takes the block.
        broker_id: i32,
    },
    /// Writes the records of a metadata log from before the quorum (once, on an empty
    /// cluster; see `quorum::log_store`).
    Import(Vec<MetadataRecord>),
}

impl MetadataOp {
    /// The records that carry the operation out against `image`, or why it is refused.
    pub fn records(&self, image: &MetadataImage) -> ControllerResult<Vec<MetadataRecord>> {
        match self {
            MetadataOp::CreateTopic(t) => create_topic(image, t),
            MetadataOp::DeleteTopic { name } => delete_topic(image, name),
            MetadataOp::CreatePartitions {
                name,
                count,
                assignments,
            } => create_partitions(image, name, *count, assignments.as_deref()),
            MetadataOp::AlterConfigs {
                resource,
                name,
                ops,
            } => alter_configs(image, *resource, name, ops),
            MetadataOp::ReplaceConfigs {
                resource,
                name,
                configs,
            } => replace_configs(image, *resource, name, configs),
            MetadataOp::AlterClientQuotas { entity, ops } => Ok(ops
                .iter()
                .map(|(key, value)| MetadataRecord::ClientQuota {
                    entity: entity.clone(),
                    key: key.clone(),
                    value: *value,
                })
                .collect()),
            MetadataOp::CreateAcls(bindings) => Ok(create_acls(image, bindings)),
            MetadataOp::DeleteAcls(ids) => Ok(ids
                .iter()
                .filter(|id| image.acls.contains_key(id))
                .map(|id| MetadataRecord::RemoveAccessControlEntry { id: *id })
                .collect()),
            MetadataOp::AlterScramCredentials {
                user,
                deletions,
                upsertions,
            } => alter_scram_credentials(image, user, deletions, upsertions),
            MetadataOp::AllocateProducerIds { broker_id } => {
                allocate_producer_ids(image, *broker_id)
            }
            MetadataOp::Import(records) => Ok(if image.topics.is_empty() {
                records
                    .iter()
                    .filter(|r| {
                        !matches!(
                            r,
                            MetadataRecord::RegisterBroker { .. }
                                | MetadataRecord::BrokerRegistrationChange { .. }
                                | MetadataRecord::ClusterId { .. }
                        )
                    })
                    .cloned()
                    .collect()
            } else {
                Vec::new()
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image_with_broker() -> MetadataImage {
        let mut image = MetadataImage::empty();
        crate::testing::register(&mut image, 1, None);
        image
    }

    fn new_topic(name: &str, partitions: i32) -> NewTopic {
        NewTopic {
            name: name.into(),
            num_partitions: partitions,
            replication_factor: 1,
            configs: BTreeMap::from([("retention.ms".to_owned(), "1000".to_owned())]),
            assignments: None,
        }
    }

    #[test]
    fn create_then_apply_then_reject_duplicate() {
        let mut image = image_with_broker();
        let records = create_topic(&image, &new_topic("orders", 3)).expect("create");
        assert_eq!(records.len(), 1 + 3 + 1);
        for (i, r) in records.iter().enumerate() {
            image.apply(i as i64 + 1, r);
        }
        let t = &image.topics["orders"];
        assert_eq!(t.partitions.len(), 3);
        assert_eq!(t.partitions[&2].leader, 1);
        assert_eq!(t.configs["retention.ms"], "1000");
        let err = create_topic(&image, &new_topic("orders", 1)).expect_err("duplicate");
        assert_eq!(err.error, ResponseError::TopicAlreadyExists);
        let err = create_topic(&image, &new_topic("orders", 0)).expect_err("zero partitions");
        assert_eq!(err.error, ResponseError::TopicAlreadyExists);
        let err = create_topic(&image, &new_topic("other", 0)).expect_err("zero partitions");
        assert_eq!(err.error, ResponseError::InvalidPartitions);
        let mut rf = new_topic("rf", 1);
        rf.replication_factor = 3;
        assert_eq!(
            create_topic(&image, &rf).expect_err("rf").error,
            ResponseError::InvalidReplicationFactor
        );
        let err = create_topic(&image, &new_topic(METADATA_TOPIC, 1)).expect_err("reserved");
        assert_eq!(err.error, ResponseError::InvalidRequest);
        let err = create_topic(&image, &new_topic("huge", i32::MAX)).expect_err("too many");
        assert_eq!(err.error, ResponseError::InvalidPartitions);
        let mut bad = new_topic("bad", 1);
        bad.configs.insert("retention.ms".into(), "soon".into());
        assert_eq!(
            create_topic(&image, &bad).expect_err("config").error,
            ResponseError::InvalidConfig
        );
    }

    #[test]
    fn scram_credentials_set_replace_and_delete() {
        let mut image = image_with_broker();
        let cred = |m: ScramMechanism, iterations: i32| ScramCredential {
            mechanism: m,
            salt: vec![1, 2],
            stored_key: vec![3],
            server_key: vec![4],
            iterations,
        };
        let mut off = 1;
        let mut apply = |image: &mut MetadataImage, records: Vec<MetadataRecord>| {
            for r in &records {
                image.apply(off, r);
                off += 1;
            }
        };
        let records = alter_scram_credentials(
            &image,
            "alice",
            &[],
            &[
                cred(ScramMechanism::Sha256, 4096),
                cred(ScramMechanism::Sha512, 8192),
            ],
        )
        .expect("set");
        apply(&mut image, records);
        assert_eq!(image.scram_credentials["alice"].len(), 2);
        assert_eq!(
            alter_scram_credentials(&image, "bob", &[ScramMechanism::Sha256], &[])
                .expect_err("nothing to delete")
                .error,
            ResponseError::ResourceNotFound
        );
        assert_eq!(
            alter_scram_credentials(
                &image,
                "alice",
                &[ScramMechanism::Sha256],
                &[cred(ScramMechanism::Sha256, 4096)],
            )
            .expect_err("twice")
            .error,
            ResponseError::DuplicateResource
        );
        let records = alter_scram_credentials(
            &image,
            "alice",
            &[ScramMechanism::Sha256],
            &[cred(ScramMechanism::Sha512, 16384)],
        )
        .expect("replace");
        apply(&mut image, records);
        let alice = &image.scram_credentials["alice"];
        assert_eq!(alice.len(), 1);
        assert_eq!(alice["SCRAM-SHA-512"].iterations, 16384);
        // A snapshot carries the credentials.
        let json = serde_json::to_vec(&image).expect("snapshot");
        let restored: MetadataImage = serde_json::from_slice(&json).expect("restore");
        assert_eq!(restored.scram_credentials, image.scram_credentials);
        let records =
            alter_scram_credentials(&image, "alice", &[ScramMechanism::Sha512], &[]).expect("rm");
        apply(&mut image, records);
        assert!(image.scram_credentials.is_empty());
    }

    #[test]
    fn grow_alter_and_delete() {
        let mut image = image_with_broker();
        let mut off = 1;
        let mut apply = |image: &mut MetadataImage, records: Vec<MetadataRecord>| {
            for r in &records {
                image.apply(off, r);
                off += 1;
            }
        };
        {
            let records = create_topic(&image, &new_topic("t", 1)).expect("create");
            apply(&mut image, records);
        }
        {
            let records = create_partitions(&image, "t", 4, None).expect("grow");
            apply(&mut image, records);
        }
        assert_eq!(image.topics["t"].partitions.len(), 4);
        assert_eq!(
            create_partitions(&image, "t", 4, None)
                .expect_err("same")
                .error,
            ResponseError::InvalidPartitions
        );
        let err = create_partitions(&image, "t", 6, Some(&[vec![1]])).expect_err("one of two");
        assert_eq!(err.error, ResponseError::InvalidReplicaAssignment);
        let err = create_partitions(&image, "t", 5, Some(&[vec![7]])).expect_err("unknown broker");
        assert_eq!(err.error, ResponseError::InvalidReplicaAssignment);
        {
            let records = create_partitions(&image, "t", 5, Some(&[vec![1]])).expect("assigned");
            apply(&mut image, records);
        }
        assert_eq!(image.topics["t"].partitions[&4].replicas, vec![1]);
        let ops = [
            (
                "cleanup.policy".to_owned(),
                AlterOp::Append,
                Some("compact".to_owned()),
            ),
            ("retention.ms".to_owned(), AlterOp::Delete, None),
        ];
        {
            let records = alter_configs(&image, ConfigResource::Topic, "t", &ops).expect("alter");
            apply(&mut image, records);
        }
        assert_eq!(
            image.topics["t"]
                .configs
                .get("cleanup.policy")
                .map(String::as_str),
            Some("compact")
        );
        assert!(!image.topics["t"].configs.contains_key("retention.ms"));
        let id = image.topics["t"].topic_id;
        {
            let records = delete_topic(&image, "t").expect("delete");
            apply(&mut image, records);
        }
        assert!(image.topics.is_empty() && image.topic_by_id(&id).is_none());
        assert_eq!(
            delete_topic(&image, "t").expect_err("gone").error,
            ResponseError::UnknownTopicOrPartition
        );
    }
}
