//! Committed offsets: OffsetCommit v2–9, OffsetFetch v1–9 (v8+ several groups,
//! KIP-709) and OffsetDelete v0 (KIP-496).

use super::groups::{code, shard, text};
use super::RequestContext;
use super::{AclOperation, ResourceType};
use crate::broker::Broker;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    GroupId, OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse,
    OffsetFetchRequest, OffsetFetchResponse, TopicName,
};
use moldau_coordinator::{self as gc, FetchedOffset, Reply};
use moldau_metadata::MetadataImage;
use moldau_protocol::error::ResponseError;
use std::collections::HashMap;
use std::collections::HashSet;
use std::sync::Arc;

fn partition_exists(image: &MetadataImage, topic: &str, partition: i32) -> bool {
    image
        .topics
        .get(topic)
        .is_some_and(|t| t.partitions.contains_key(&partition))
}

/// Handles OffsetCommit. Partitions of unknown topics get UNKNOWN_TOPIC_OR_PARTITION
/// and are not stored; the rest go to the group's coordinator shard.
pub async fn offset_commit(
    broker: Arc<Broker>,
    ctx: RequestContext,
    req: OffsetCommitRequest,
) -> OffsetCommitResponse {
    let v = ctx.version;
    let image = broker.image();
    let mut errors: Vec<(String, i32, Option<ResponseError>)> = Vec::new();
    let mut partitions = Vec::new();
    let group_ok = ctx.allowed(
        &broker,
        AclOperation::Read,
        ResourceType::Group,
        &req.group_id,
    );
    for t in &req.topics {
        let topic_ok =
            !group_ok || ctx.allowed(&broker, AclOperation::Read, ResourceType::Topic, &t.name);
        for p in &t.partitions {
            if !topic_ok {
                errors.push((
                    t.name.to_string(),
                    p.partition_index,
                    Some(ResponseError::TopicAuthorizationFailed),
                ));
            } else if partition_exists(&image, &t.name, p.partition_index) {
                partitions.push(gc::CommitPartition {
                    topic: t.name.to_string(),
                    partition: p.partition_index,
                    offset: p.committed_offset,
                    leader_epoch: if v >= 6 { p.committed_leader_epoch } else { -1 },
                    metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
                });
            } else {
                errors.push((
                    t.name.to_string(),
                    p.partition_index,
                    Some(ResponseError::UnknownTopicOrPartition),
                ));
            }
        }
    }
    let shard = if group_ok {
        shard(&broker, &req.group_id)
    } else {
        Err(ResponseError::GroupAuthorizationFailed)
    };
    let committed = match shard {
        Err(e) => partitions
            .iter()
            .map(|p| (p.topic.clone(), p.partition, Some(e)))
            .collect(),
        Ok(shard) if !partitions.is_empty() => {
            let commit = gc::OffsetCommit {
                group_id: req.group_id.to_string(),
                generation_id: req.generation_id_or_member_epoch,
                member_id: req.member_id.to_string(),
                group_instance_id: req.group_instance_id.as_ref().map(|s| s.to_string()),
                retention_time_ms: if (2..=4).contains(&v) {
                    req.retention_time_ms
                } else {
                    -1
                },
                partitions: partitions.clone(),
                api_version: v,
            };
            match broker
                .groups
                .call(&shard, |sm, now, tx| sm.commit(now, commit, tx))
                .await
            {
                Some(Reply::Commit(parts)) => parts,
                _ => partitions
                    .iter()
                    .map(|p| {
                        (
                            p.topic.clone(),
                            p.partition,
                            Some(ResponseError::NotCoordinator),
                        )
                    })
                    .collect(),
            }
        }
        Ok(_) => Vec::new(),
    };
    errors.extend(committed);
    let asked = req.topics.iter().map(|t| {
        let parts = t.partitions.iter().map(|p| p.partition_index);
        (&t.name, parts.collect::<Vec<_>>())
    });
    let topics = in_request_order(asked, errors)
        .into_iter()
        .map(|(name, parts)| {
            OffsetCommitResponseTopic::default()
                .with_name(name)
                .with_partitions(
                    parts
                        .into_iter()
                        .map(|(p, e)| {
                            OffsetCommitResponsePartition::default()
                                .with_partition_index(p)
                                .with_error_code(e)
                        })
                        .collect(),
                )
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}

/// Per-partition outcomes `(topic, partition, error)` laid out as the request asked:
/// one entry per requested topic, partitions in request order, with error codes.
fn in_request_order<'a>(
    asked: impl Iterator<Item = (&'a TopicName, Vec<i32>)>,
    outcomes: Vec<(String, i32, Option<ResponseError>)>,
) -> Vec<(TopicName, Vec<(i32, i16)>)> {
    let outcomes: HashMap<(String, i32), Option<ResponseError>> =
        outcomes.into_iter().map(|(t, p, e)| ((t, p), e)).collect();
    asked
        .map(|(name, parts)| {
            let codes = parts
                .into_iter()
                .map(|p| {
                    let e = outcomes.get(&(name.to_string(), p)).copied().flatten();
                    (p, code(e))
                })
                .collect();
            (name.clone(), codes)
        })
        .collect()
}

/// One group's answer: a group-level error, or its offsets and the named topics the
/// principal may not DESCRIBE (their partitions are answered -1 with
/// `TOPIC_AUTHORIZATION_FAILED`).
type GroupOffsets = Result<(Vec<FetchedOffset>, HashSet<String>), ResponseError>;

/// A group's offsets; with `require_stable` (v7+, KIP-447) a partition whose offset
/// waits on an open transaction reads -1 with UNSTABLE_OFFSET_COMMIT, which the
/// consumer retries.
///
/// With an authorizer: DESCRIBE on the group (else `GROUP_AUTHORIZATION_FAILED`); a
/// named topic the principal may not DESCRIBE has its partitions answered
/// `TOPIC_AUTHORIZATION_FAILED`, and such topics are left out of an all-topics answer.
fn fetch_group(
    broker: &Broker,
    ctx: &RequestContext,
    group_id: &str,
    wanted: Option<Vec<(String, Vec<i32>)>>,
    require_stable: bool,
) -> GroupOffsets {
    let shard = super::groups::authorized_shard(broker, ctx, AclOperation::Describe, group_id)?;
    let mut denied = HashSet::new();
    let mut refused = Vec::new();
    let wanted = wanted.map(|topics| {
        topics
            .into_iter()
            .filter(|(t, parts)| {
                let ok = ctx.allowed(broker, AclOperation::Describe, ResourceType::Topic, t);
                if !ok {
                    denied.insert(t.clone());
                    refused.extend(parts.iter().map(|p| (t.clone(), *p)));
                }
                ok
            })
            .collect::<Vec<_>>()
    });
    let mut offsets = broker.groups.with(&shard, |sm, _| {
        sm.fetch_offsets(group_id, wanted.as_deref())
    });
    offsets.retain(|o| {
        ctx.visible(
            broker,
            AclOperation::Describe,
            ResourceType::Topic,
            &o.topic,
        )
    });
    if !require_stable {
        offsets.iter_mut().for_each(|o| o.unstable = false);
    }
    offsets.extend(refused.into_iter().map(|(topic, partition)| FetchedOffset {
        topic,
        partition,
        offset: -1,
        leader_epoch: -1,
        metadata: String::new(),
        unstable: false,
    }));
    Ok((offsets, denied))
}

/// `(offset, error code)` to answer for one partition.
fn answer(o: &FetchedOffset, denied: &HashSet<String>) -> (i64, i16) {
    if denied.contains(&o.topic) {
        (-1, ResponseError::TopicAuthorizationFailed.code())
    } else if o.unstable {
        (-1, ResponseError::UnstableOffsetCommit.code())
    } else {
        (o.offset, 0)
    }
}

/// Groups fetched offsets by topic, keeping first-seen topic order.
fn by_topic(offsets: Vec<FetchedOffset>) -> Vec<(String, Vec<FetchedOffset>)> {
    let mut out: Vec<(String, Vec<FetchedOffset>)> = Vec::new();
    for o in offsets {
        match out.iter_mut().find(|(t, _)| *t == o.topic) {
            Some((_, v)) => v.push(o),
            None => out.push((o.topic.clone(), vec![o])),
        }
    }
    out
}

/// Handles OffsetFetch. A partition with no commit reads offset -1; `topics = null`
/// (v2+) asks for every committed partition of the group.
pub async fn offset_fetch(
    broker: Arc<Broker>,
    ctx: RequestContext,
    req: OffsetFetchRequest,
) -> OffsetFetchResponse {
    let v = ctx.version;
    if v >= 8 {
        let groups = req
            .groups
            .iter()
            .map(|g| {
                let wanted = g.topics.as_ref().map(|ts| {
                    ts.iter()
                        .map(|t| (t.name.to_string(), t.partition_indexes.clone()))
                        .collect()
                });
                let result = fetch_group(&broker, &ctx, &g.group_id, wanted, req.require_stable);
                let group = OffsetFetchResponseGroup::default().with_group_id(g.group_id.clone());
                match result {
                    Err(e) => group.with_error_code(e.code()),
                    Ok((offsets, denied)) => group.with_topics(
                        by_topic(offsets)
                            .into_iter()
                            .map(|(topic, parts)| {
                                OffsetFetchResponseTopics::default()
                                    .with_name(TopicName(text(&topic)))
                                    .with_partitions(
                                        parts
                                            .into_iter()
                                            .map(|o| {
                                                let (offset, error) = answer(&o, &denied);
                                                OffsetFetchResponsePartitions::default()
                                                    .with_partition_index(o.partition)
                                                    .with_committed_offset(offset)
                                                    .with_error_code(error)
                                                    .with_committed_leader_epoch(o.leader_epoch)
                                                    .with_metadata(Some(text(&o.metadata)))
                                            })
                                            .collect(),
                                    )
                            })
                            .collect(),
                    ),
                }
            })
            .collect();
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let wanted = req.topics.as_ref().map(|ts| {
        ts.iter()
            .map(|t| (t.name.to_string(), t.partition_indexes.clone()))
            .collect::<Vec<_>>()
    });
    let require_stable = v >= 7 && req.require_stable;
    match fetch_group(&broker, &ctx, &req.group_id, wanted.clone(), require_stable) {
        Ok((offsets, denied)) => OffsetFetchResponse::default().with_topics(
            by_topic(offsets)
                .into_iter()
                .map(|(topic, parts)| {
                    OffsetFetchResponseTopic::default()
                        .with_name(TopicName(text(&topic)))
                        .with_partitions(
                            parts
                                .into_iter()
                                .map(|o| {
                                    let (offset, error) = answer(&o, &denied);
                                    OffsetFetchResponsePartition::default()
                                        .with_partition_index(o.partition)
                                        .with_committed_offset(offset)
                                        .with_error_code(error)
                                        .with_committed_leader_epoch(if v >= 5 {
                                            o.leader_epoch
                                        } else {
                                            -1
                                        })
                                        .with_metadata(Some(text(&o.metadata)))
                                })
                                .collect(),
                        )
                })
                .collect(),
        ),
        Err(e) if v >= 2 => OffsetFetchResponse::default().with_error_code(e.code()),
        Err(e) => {
            // v1 has no top-level error: every asked partition carries it.
            let topics = wanted
                .unwrap_or_default()
                .into_iter()
                .map(|(topic, parts)| {
                    OffsetFetchResponseTopic::default()
                        .with_name(TopicName(text(&topic)))
                        .with_partitions(
                            parts
                                .into_iter()
                                .map(|p| {
                                    OffsetFetchResponsePartition::default()
                                        .with_partition_index(p)
                                        .with_committed_offset(-1)
                                        .with_metadata(Some(text("")))
                                        .with_error_code(e.code())
                                })
                                .collect(),
                        )
                })
                .collect();
            OffsetFetchResponse::default().with_topics(topics)
        }
    }
}

/// Handles OffsetDelete.
///
/// With an authorizer: DELETE on the group, READ on each topic (Kafka's rule).
pub async fn offset_delete(
    broker: Arc<Broker>,
    ctx: RequestContext,
    req: OffsetDeleteRequest,
) -> OffsetDeleteResponse {
    let image = broker.image();
    let mut unknown = Vec::new();
    let mut denied = Vec::new();
    let mut partitions = Vec::new();
    for t in &req.topics {
        let topic_ok = ctx.allowed(&broker, AclOperation::Read, ResourceType::Topic, &t.name);
        for p in &t.partitions {
            if !topic_ok {
                denied.push((t.name.to_string(), p.partition_index));
            } else if partition_exists(&image, &t.name, p.partition_index) {
                partitions.push((t.name.to_string(), p.partition_index));
            } else {
                unknown.push((t.name.to_string(), p.partition_index));
            }
        }
    }
    let (group_error, mut results) =
        match super::groups::authorized_shard(&broker, &ctx, AclOperation::Delete, &req.group_id) {
            Err(e) => (Some(e), Vec::new()),
            Ok(shard) => {
                let group_id = req.group_id.to_string();
                match broker
                    .groups
                    .call(&shard, |sm, _, tx| {
                        sm.delete_offsets(&group_id, partitions, tx)
                    })
                    .await
                {
                    Some(Reply::DeleteOffsets(e, parts)) => (e, parts),
                    _ => (Some(ResponseError::NotCoordinator), Vec::new()),
                }
            }
        };
    if group_error.is_some() {
        return OffsetDeleteResponse::default().with_error_code(code(group_error));
    }
    results.extend(
        unknown
            .into_iter()
            .map(|(t, p)| (t, p, Some(ResponseError::UnknownTopicOrPartition))),
    );
    results.extend(
        denied
            .into_iter()
            .map(|(t, p)| (t, p, Some(ResponseError::TopicAuthorizationFailed))),
    );
    let asked = req.topics.iter().map(|t| {
        let parts = t.partitions.iter().map(|p| p.partition_index);
        (&t.name, parts.collect::<Vec<_>>())
    });
    let topics = in_request_order(asked, results)
        .into_iter()
        .map(|(name, parts)| {
            OffsetDeleteResponseTopic::default()
                .with_name(name)
                .with_partitions(
                    parts
                        .into_iter()
                        .map(|(p, e)| {
                            OffsetDeleteResponsePartition::default()
                                .with_partition_index(p)
                                .with_error_code(e)
                        })
                        .collect(),
                )
        })
        .collect();
    OffsetDeleteResponse::default().with_topics(topics)
}

/// `GroupId` from text.
pub(crate) fn group_id(s: &str) -> GroupId {
    GroupId(text(s))
}
