//! The metadata image: the cluster metadata as of one offset of the metadata log,
//! rebuilt by applying records in order (KRaft's `MetadataImage`). Handlers read it;
//! only [`crate::MetadataLog`] changes it.

use crate::records::{BrokerEndpoint, ConfigResource, MetadataRecord, ScramCredential};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use uuid::Uuid;

/// A registered broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerImage {
    /// `node.id`.
    pub broker_id: i32,
    /// Incarnation id of the registered process.
    pub incarnation_id: Uuid,
    /// Broker epoch: the metadata offset of its registration (KIP-631).
    pub epoch: i64,
    /// Advertised listeners.
    pub listeners: Vec<BrokerEndpoint>,
    /// `broker.rack`.
    pub rack: Option<String>,
    /// Fenced: not serving, not eligible as leader or ISR member, left out of Metadata.
    pub fenced: bool,
    /// Shutting down under control: leaderships are moving away.
    pub in_controlled_shutdown: bool,
    /// Metadata offset of the record that last fenced the broker (its registration's
    /// until one did). The controller unfences it only once it has applied this offset
    /// ([`crate::cluster::heartbeat`]): a broker cut off while others took over its
    /// leaderships must see that before it serves again, or it would lead, and answer
    /// Metadata, from the image it had before the cut.
    #[serde(default)]
    pub fenced_at: i64,
}

impl BrokerImage {
    /// The advertised endpoint of listener `name`.
    pub fn endpoint(&self, name: &str) -> Option<&BrokerEndpoint> {
        self.listeners.iter().find(|l| l.name == name)
    }

    /// Whether the broker may lead or join an ISR: unfenced and not shutting down.
    pub fn is_active(&self) -> bool {
        !self.fenced && !self.in_controlled_shutdown
    }
}

/// A partition's placement and leadership.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionImage {
    /// Replica broker ids.
    pub replicas: Vec<i32>,
    /// In-sync replicas.
    pub isr: Vec<i32>,
    /// Leader broker id, -1 if none.
    pub leader: i32,
    /// Leader epoch.
    pub leader_epoch: i32,
    /// Partition epoch.
    pub partition_epoch: i32,
}

/// A topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicImage {
    /// Name.
    pub name: String,
    /// Topic id (KIP-516).
    pub topic_id: Uuid,
    /// Partitions by index.
    pub partitions: BTreeMap<i32, PartitionImage>,
    /// Topic config overrides (Kafka property name → value).
    pub configs: BTreeMap<String, String>,
}

/// The whole cluster metadata at [`MetadataImage::offset`]; serialised as JSON in
/// metadata snapshots.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MetadataImage {
    /// Offset (Raft log index) of the last applied metadata log entry (-1 when empty).
    pub offset: i64,
    /// The cluster id the quorum agreed on ([`MetadataRecord::ClusterId`]).
    pub cluster_id: Option<String>,
    /// Registered brokers by id.
    pub brokers: BTreeMap<i32, BrokerImage>,
    /// Topics by name.
    pub topics: BTreeMap<String, TopicImage>,
    /// Topic name by id.
    pub topic_names: HashMap<Uuid, String>,
    /// Broker-level config overrides, keyed by broker id ("" = cluster default).
    pub broker_configs: BTreeMap<String, BTreeMap<String, String>>,
    /// First producer id not yet handed out in a block (KIP-730); 0 at the start.
    pub next_producer_id: i64,
    /// Client quotas by [`crate::quota::entity_key`].
    #[serde(default)]
    pub client_quotas: BTreeMap<String, crate::quota::QuotaEntry>,
    /// ACLs by id (KIP-801).
    #[serde(default)]
    pub acls: crate::acl::AclSet,
    /// SCRAM credentials by user name, then mechanism name (KIP-554).
    #[serde(default)]
    pub scram_credentials: BTreeMap<String, BTreeMap<String, ScramCredential>>,
}

impl MetadataImage {
    /// An image with nothing applied.
    pub fn empty() -> Self {
        Self {
            offset: -1,
            ..Self::default()
        }
    }

    /// The topic with this id.
    pub fn topic_by_id(&self, id: &Uuid) -> Option<&TopicImage> {
        self.topic_names.get(id).and_then(|n| self.topics.get(n))
    }

    /// Applies one record at metadata offset `offset`. Records that refer to unknown
    /// topics are ignored (they can only come from a log written by a newer Moldau or a
    /// bug, and replaying must never fail half way).
    pub fn apply(&mut self, offset: i64, record: &MetadataRecord) {
        self.offset = offset;
        match record {
            MetadataRecord::ClusterId { cluster_id } => {
                if self.cluster_id.is_none() {
                    self.cluster_id = Some(cluster_id.clone());
                }
            }
            MetadataRecord::RegisterBroker {
                broker_id,
                incarnation_id,
                listeners,
                rack,
                fenced,
                host,
                port,
            } => {
                let mut listeners = listeners.clone();
                if let (true, Some(host), Some(port)) = (listeners.is_empty(), host, port) {
                    listeners.push(BrokerEndpoint {
                        name: "PLAINTEXT".into(),
                        host: host.clone(),
                        port: *port,
                        security_protocol: 0,
                    });
                }
                self.brokers.insert(
                    *broker_id,
                    BrokerImage {
                        broker_id: *broker_id,
                        incarnation_id: *incarnation_id,
                        epoch: offset,
                        listeners,
                        rack: rack.clone(),
                        fenced: *fenced,
                        in_controlled_shutdown: false,
                        fenced_at: offset,
                    },
                );
            }
            MetadataRecord::BrokerRegistrationChange {
                broker_id,
                broker_epoch,
                fenced,
                in_controlled_shutdown,
            } => {
                if let Some(b) = self.brokers.get_mut(broker_id) {
                    if b.epoch == *broker_epoch {
                        if let Some(f) = fenced {
                            b.fenced = *f;
                            if *f {
                                b.fenced_at = offset;
                            }
                        }
                        if let Some(s) = in_controlled_shutdown {
                            b.in_controlled_shutdown = *s;
                        }
                    }
                }
            }
            MetadataRecord::Topic { name, topic_id } => {
                self.topic_names.insert(*topic_id, name.clone());
                self.topics.insert(
                    name.clone(),
                    TopicImage {
                        name: name.clone(),
                        topic_id: *topic_id,
                        partitions: BTreeMap::new(),
                        configs: BTreeMap::new(),
                    },
                );
            }
            MetadataRecord::Partition {
                topic_id,
                partition,
                replicas,
                isr,
                leader,
                leader_epoch,
                partition_epoch,
            } => {
                if let Some(topic) = self
                    .topic_names
                    .get(topic_id)
                    .and_then(|n| self.topics.get_mut(n))
                {
                    topic.partitions.insert(
                        *partition,
                        PartitionImage {
                            replicas: replicas.clone(),
                            isr: isr.clone(),
                            leader: *leader,
                            leader_epoch: *leader_epoch,
                            partition_epoch: *partition_epoch,
                        },
                    );
                }
            }
            MetadataRecord::Config {
                resource,
                resource_name,
                name,
                value,
            } => {
                let map = match resource {
                    ConfigResource::Topic => match self.topics.get_mut(resource_name) {
                        Some(t) => &mut t.configs,
                        None => return,
                    },
                    ConfigResource::Broker => self
                        .broker_configs
                        .entry(resource_name.clone())
                        .or_default(),
                };
                match value {
                    Some(v) => map.insert(name.clone(), v.clone()),
                    None => map.remove(name),
                };
            }
            MetadataRecord::RemoveTopic { topic_id } => {
                if let Some(name) = self.topic_names.remove(topic_id) {
                    self.topics.remove(&name);
                }
            }
            MetadataRecord::ProducerIds {
                next_producer_id, ..
            } => {
                self.next_producer_id = self.next_producer_id.max(*next_producer_id);
            }
            MetadataRecord::ClientQuota { entity, key, value } => {
                let k = crate::quota::entity_key(entity);
                match value {
                    Some(v) => {
                        self.client_quotas
                            .entry(k)
                            .or_insert_with(|| crate::quota::QuotaEntry {
                                entity: entity.clone(),
                                values: BTreeMap::new(),
                            })
                            .values
                            .insert(key.clone(), *v);
                    }
                    None => {
                        if let Some(e) = self.client_quotas.get_mut(&k) {
                            e.values.remove(key);
                            if e.values.is_empty() {
                                self.client_quotas.remove(&k);
                            }
                        }
                    }
                }
            }
            MetadataRecord::AccessControlEntry { id, binding } => {
                self.acls.insert(*id, binding.clone());
            }
            MetadataRecord::RemoveAccessControlEntry { id } => {
                self.acls.remove(id);
            }
            MetadataRecord::UserScramCredential { name, credential } => {
                self.scram_credentials
                    .entry(name.clone())
                    .or_default()
                    .insert(credential.mechanism.name().to_owned(), credential.clone());
            }
            MetadataRecord::RemoveUserScramCredential { name, mechanism } => {
                if let Some(user) = self.scram_credentials.get_mut(name) {
                    user.remove(mechanism.name());
                    if user.is_empty() {
                        self.scram_credentials.remove(name);
                    }
                }
            }
        }
    }
}
