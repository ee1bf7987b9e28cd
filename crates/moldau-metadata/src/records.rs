//! Metadata records: the only way cluster metadata changes.
//!
//! Modelled on KRaft's records (`TopicRecord`, `PartitionRecord`, `ConfigRecord`,
//! `RemoveTopicRecord`, `RegisterBrokerRecord`, KIP-631). Each record is stored as the
//! value of one Kafka record in the `__cluster_metadata-0` log, encoded as JSON with a
//! `type` tag. JSON instead of KRaft's binary schemas is a deliberate Moldau choice: the
//! log is only read by Moldau, and a human can inspect it with any Kafka tool; the
//! records' meaning follows KIP-631.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Kafka's config resource types (DescribeConfigs `resource_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ConfigResource {
    /// Resource type 2.
    Topic,
    /// Resource type 4.
    Broker,
}

/// One advertised listener of a broker (KRaft `RegisterBrokerRecord.endPoints`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BrokerEndpoint {
    /// Listener name (`PLAINTEXT`, `INTERNAL`, …), upper case.
    pub name: String,
    /// Advertised host.
    pub host: String,
    /// Advertised port.
    pub port: i32,
    /// Kafka's security protocol id (0 PLAINTEXT, 1 SSL, 2 SASL_PLAINTEXT, 3 SASL_SSL).
    pub security_protocol: i16,
}

/// One metadata change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum MetadataRecord {
    /// The cluster's id, written once by the first active controller of a new quorum
    /// (Kafka writes it with `kafka-storage.sh format`; Moldau's quorum agrees on it).
    ClusterId {
        /// 22-character URL-safe base64 of a UUID, or the configured `cluster.id`.
        cluster_id: String,
    },
    /// A broker registered (KRaft `RegisterBrokerRecord`, KIP-631). The broker epoch is
    /// the metadata offset of this record. A new registration starts fenced.
    RegisterBroker {
        /// `node.id`.
        broker_id: i32,
        /// Random id of the registering process; a new one on every start.
        #[serde(default)]
        incarnation_id: Uuid,
        /// Advertised listeners.
        #[serde(default)]
        listeners: Vec<BrokerEndpoint>,
        /// `broker.rack`, if set.
        rack: Option<String>,
        /// Whether the broker starts fenced (always true for a live registration).
        #[serde(default)]
        fenced: bool,
        /// Advertised host of a single-listener registration written before listeners
        /// were named (read only).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        host: Option<String>,
        /// Advertised port, with `host` (read only).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        port: Option<i32>,
    },
    /// A broker was fenced or unfenced, or entered controlled shutdown (KRaft
    /// `BrokerRegistrationChangeRecord`). `None` fields are unchanged.
    BrokerRegistrationChange {
        /// `node.id`.
        broker_id: i32,
        /// The registration this change applies to (ignored if it is not the current one).
        broker_epoch: i64,
        /// New fenced state.
        fenced: Option<bool>,
        /// New controlled-shutdown state.
        in_controlled_shutdown: Option<bool>,
    },
    /// A topic was created. Partitions follow as [`MetadataRecord::Partition`] records.
    Topic {
        /// Topic name.
        name: String,
        /// Topic id (KIP-516), never reused.
        topic_id: Uuid,
    },
    /// A partition's placement and leadership (creation or change).
    Partition {
        /// Owning topic.
        topic_id: Uuid,
        /// Partition index.
        partition: i32,
        /// Replica broker ids, preferred leader first.
        replicas: Vec<i32>,
        /// In-sync replicas.
        isr: Vec<i32>,
        /// Leader broker id, -1 if none.
        leader: i32,
        /// Leader epoch, bumped on every leader change.
        leader_epoch: i32,
        /// Bumped on every change of this partition's record.
        partition_epoch: i32,
    },
    /// A config override was set (`value: Some`) or removed (`None`).
    Config {
        /// Resource type.
        resource: ConfigResource,
        /// Topic name, or broker id as a string ("" for the cluster default).
        resource_name: String,
        /// Kafka property name, e.g. `retention.ms`.
        name: String,
        /// New value; `None` deletes the override.
        value: Option<String>,
    },
    /// A topic and all its partitions were deleted.
    RemoveTopic {
        /// The deleted topic.
        topic_id: Uuid,
    },
    /// A block of producer ids was handed to a broker (KRaft `ProducerIdsRecord`,
    /// KIP-730): the block is `[next_producer_id - block size, next_producer_id)`, and
    /// no id below `next_producer_id` is ever handed out again, across restarts.
    ProducerIds {
        /// The broker that owns the block.
        broker_id: i32,
        /// First id of the next block (exclusive end of this one).
        next_producer_id: i64,
    },
    /// A client quota was set (`value: Some`) or removed (KRaft `ClientQuotaRecord`).
    ClientQuota {
        /// The entity (`user` and/or `client-id`, `None` names the default).
        entity: crate::quota::QuotaEntity,
        /// Quota key (`producer_byte_rate`, `consumer_byte_rate`).
        key: String,
        /// The new value (bytes/s), or `None` to remove it.
        value: Option<i64>,
    },
    /// An ACL was added (KRaft `AccessControlEntryRecord`, KIP-801).
    AccessControlEntry {
        /// The ACL's id, never reused.
        id: Uuid,
        /// The ACL.
        binding: crate::acl::AclBinding,
    },
    /// An ACL was removed (KRaft `RemoveAccessControlEntryRecord`).
    RemoveAccessControlEntry {
        /// The removed ACL's id.
        id: Uuid,
    },
    /// A user's SCRAM credential for one mechanism was set (KRaft
    /// `UserScramCredentialRecord`, KIP-554). Only the derived keys are stored, never the
    /// password or the salted password.
    UserScramCredential {
        /// User name (the principal is `User:<name>`).
        name: String,
        /// The credential.
        credential: ScramCredential,
    },
    /// A user's SCRAM credential for one mechanism was removed (KRaft
    /// `RemoveUserScramCredentialRecord`).
    RemoveUserScramCredential {
        /// User name.
        name: String,
        /// The mechanism whose credential goes.
        mechanism: ScramMechanism,
    },
}

/// A SCRAM mechanism (RFC 5802 with the hash of RFC 7677 / SHA-512), numbered as
/// Kafka's `ScramMechanism` type ids in AlterUserScramCredentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ScramMechanism {
    /// `SCRAM-SHA-256`, type 1.
    #[serde(rename = "SCRAM-SHA-256")]
    Sha256,
    /// `SCRAM-SHA-512`, type 2.
    #[serde(rename = "SCRAM-SHA-512")]
    Sha512,
}

impl ScramMechanism {
    /// Both mechanisms, in type order.
    pub const ALL: [ScramMechanism; 2] = [ScramMechanism::Sha256, ScramMechanism::Sha512];

    /// The SASL mechanism name (`SCRAM-SHA-256`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Sha256 => "SCRAM-SHA-256",
            Self::Sha512 => "SCRAM-SHA-512",
        }
    }

    /// Kafka's type id (1 or 2).
    pub fn type_id(self) -> i8 {
        match self {
            Self::Sha256 => 1,
            Self::Sha512 => 2,
        }
    }

    /// The mechanism with Kafka type id `id`.
    pub fn from_type_id(id: i8) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.type_id() == id)
    }

    /// The mechanism named `name` (exact, as SASL names are).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }
}

/// A stored SCRAM credential (RFC 5802 section 3): what the server needs to verify a
/// client proof and prove itself, never enough to log in as the user elsewhere.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramCredential {
    /// Hash the keys were made with.
    pub mechanism: ScramMechanism,
    /// Salt given to Hi() (raw bytes).
    pub salt: Vec<u8>,
    /// `H(HMAC(SaltedPassword, "Client Key"))`.
    pub stored_key: Vec<u8>,
    /// `HMAC(SaltedPassword, "Server Key")`.
    pub server_key: Vec<u8>,
    /// Hi() iteration count (4096..=16384, Kafka's bounds).
    pub iterations: i32,
}

impl MetadataRecord {
    /// JSON bytes stored as the record value.
    pub fn encode(&self) -> Vec<u8> {
        // Serialising a plain enum of strings and numbers cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses a stored record value.
    pub fn decode(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}
