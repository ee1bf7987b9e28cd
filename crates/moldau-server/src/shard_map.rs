//! What the group and transaction coordinators share: the shards of one internal topic
//! hosted on this broker (one per partition, placed by
//! [`moldau_coordinator::partition_for`]), kept in step with the metadata image, and the
//! creation of that topic on first use.

use crate::broker::{Broker, CONTROLLER_TIMEOUT};
use crate::partition::Partition;
use crate::replica_manager::ReplicaManager;
use moldau_metadata::controller::{MetadataOp, NewTopic};
use moldau_metadata::MetadataImage;
use moldau_protocol::error::ResponseError;
use parking_lot::RwLock;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// A coordinator shard: the state of one partition of its internal topic.
pub trait ShardOf {
    /// The partition the shard's records live in.
    fn partition(&self) -> &Arc<Partition>;
}

/// The shards of internal topic `topic` on this broker, by partition.
pub struct ShardMap<S> {
    topic: &'static str,
    /// Shard and the leader epoch it was loaded in, by partition.
    shards: RwLock<HashMap<i32, (i32, Arc<S>)>>,
    /// Partition count of the topic (0 = it does not exist yet).
    partitions: RwLock<i32>,
}

impl<S: ShardOf> ShardMap<S> {
    /// No shards yet.
    pub fn new(topic: &'static str) -> Self {
        ShardMap {
            topic,
            shards: RwLock::new(HashMap::new()),
            partitions: RwLock::new(0),
        }
    }

    /// Follows `image`: drops the shards whose partition is no longer led here (or was
    /// recreated, or is led in a new leader epoch: the state is reloaded from the log,
    /// as Kafka's coordinators load on becoming leader and unload on losing it) and
    /// returns them, then loads a shard with `load` for every partition led here that
    /// has none. Loading runs without the map's lock held.
    pub fn sync(
        &self,
        image: &MetadataImage,
        replicas: &ReplicaManager,
        mut load: impl FnMut(Arc<Partition>) -> S,
    ) -> Vec<Arc<S>> {
        let count = image
            .topics
            .get(self.topic)
            .map_or(0, |t| t.partitions.len() as i32);
        let wanted: Vec<(i32, i32, Arc<Partition>)> = (0..count)
            .filter_map(|p| replicas.get(self.topic, p).map(|part| (p, part)))
            .filter(|(_, part)| part.is_leader())
            .map(|(p, part)| (p, part.leader_epoch(), part))
            .collect();
        let dropped: Vec<Arc<S>> = {
            let mut shards = self.shards.write();
            let gone: Vec<i32> = shards
                .iter()
                .filter(|(p, (epoch, s))| {
                    !wanted.iter().any(|(q, e, part)| {
                        q == *p && e == epoch && Arc::ptr_eq(part, s.partition())
                    })
                })
                .map(|(p, _)| *p)
                .collect();
            gone.iter()
                .filter_map(|p| shards.remove(p).map(|(_, s)| s))
                .collect()
        };
        for (p, epoch, partition) in wanted {
            if self.shards.read().contains_key(&p) {
                continue;
            }
            tracing::info!(
                topic = self.topic,
                partition = p,
                leader_epoch = epoch,
                "loading coordinator shard"
            );
            let shard = Arc::new(load(partition));
            // Another sync may have loaded it meanwhile: keep the first, so requests
            // never see two state machines for one partition.
            self.shards.write().entry(p).or_insert((epoch, shard));
        }
        *self.partitions.write() = count;
        dropped
    }

    /// The shard coordinating `key`. Errors: COORDINATOR_NOT_AVAILABLE before the topic
    /// exists, NOT_COORDINATOR if the key's partition is not led here.
    pub fn shard_for(&self, key: &str) -> Result<Arc<S>, ResponseError> {
        let count = *self.partitions.read();
        if count == 0 {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        let p = moldau_coordinator::partition_for(key, count);
        self.get(p).ok_or(ResponseError::NotCoordinator)
    }

    /// The shard of partition `partition`, if hosted here.
    pub fn get(&self, partition: i32) -> Option<Arc<S>> {
        self.shards.read().get(&partition).map(|(_, s)| s.clone())
    }

    /// Every shard, by partition.
    pub fn all(&self) -> Vec<Arc<S>> {
        let mut all: Vec<(i32, Arc<S>)> = self
            .shards
            .read()
            .iter()
            .map(|(p, (_, s))| (*p, s.clone()))
            .collect();
        all.sort_by_key(|(p, _)| *p);
        all.into_iter().map(|(_, s)| s).collect()
    }

    /// The topic's partition count, 0 before it exists.
    pub fn partition_count(&self) -> i32 {
        *self.partitions.read()
    }
}

/// Creates internal topic `name` (compacted, plus `extra` configs) through the active
/// controller unless it exists, as Kafka does on the first FindCoordinator that needs
/// it. Failures are logged: the caller's request then gets COORDINATOR_NOT_AVAILABLE
/// and the client retries (Kafka behaves the same while fewer brokers are alive than the
/// topic's replication factor).
pub async fn create_internal_topic(
    broker: &Broker,
    name: &str,
    num_partitions: i32,
    replication_factor: i16,
    segment_bytes: i64,
    compression: &str,
    extra: &[(&str, String)],
) {
    if broker.image().topics.contains_key(name) {
        return;
    }
    let mut configs = BTreeMap::from([
        ("cleanup.policy".to_owned(), "compact".to_owned()),
        ("compression.type".to_owned(), compression.to_owned()),
        ("segment.bytes".to_owned(), segment_bytes.to_string()),
    ]);
    configs.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
    let topic = NewTopic {
        name: name.to_owned(),
        num_partitions,
        replication_factor,
        configs,
        assignments: None,
    };
    match broker
        .controller
        .submit(MetadataOp::CreateTopic(topic), CONTROLLER_TIMEOUT)
        .await
    {
        Ok(_) => tracing::info!(topic = name, "created internal topic"),
        Err(e) => tracing::info!(topic = name, error = %e, "internal topic not created"),
    }
}
