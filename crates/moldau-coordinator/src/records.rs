//! The records of `__consumer_offsets`, in Kafka's own binary formats, so tools that read
//! that topic (Burrow, `kafka-console-consumer --formatter ...OffsetsMessageFormatter`)
//! understand Moldau's copy of it.
//!
//! Every key and value starts with an `int16` schema version; strings are an `int16`
//! length and UTF-8, nullable strings use length -1, bytes are an `int32` length and
//! the bytes, arrays are an `int32` count (Kafka's non-flexible encodings). The layouts are Kafka's
//! `group-coordinator` message schemas:
//!
//! | record | key | value |
//! |---|---|---|
//! | committed offset | `OffsetCommitKey` v1: group, topic, partition `int32` | `OffsetCommitValue` v3: offset `int64`, leader epoch `int32`, metadata, commit timestamp `int64` (ms) |
//! | group | `GroupMetadataKey` v2: group | `GroupMetadataValue` v3: protocol type, generation `int32`, protocol (nullable), leader (nullable), state timestamp `int64` (ms), members |
//!
//! A null value (tombstone) deletes the key: an offset deleted or expired, a group
//! deleted. On read, offset values v0–v3 and group values v0–v3 are understood (v4 and
//! later are flexible versions Moldau never writes; they are reported as
//! [`RecordError::UnsupportedVersion`]).

use crate::wire::{put_bytes, put_nullable_str, put_str, Reader, WireError};
use bytes::{BufMut, Bytes, BytesMut};
use thiserror::Error;

/// A `__consumer_offsets` record that cannot be decoded.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum RecordError {
    /// The bytes do not decode as the schema's types (truncated, not UTF-8, an
    /// impossible length).
    #[error("{0}")]
    Wire(#[from] WireError),
    /// A key or value schema version Moldau does not read.
    #[error("unsupported {what} version {version}")]
    UnsupportedVersion {
        /// Which schema.
        what: &'static str,
        /// The version found.
        version: i16,
    },
}

/// A decoded key of `__consumer_offsets`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordKey {
    /// `OffsetCommitKey` (versions 0 and 1).
    Offset {
        /// Group id.
        group: String,
        /// Topic name.
        topic: String,
        /// Partition index.
        partition: i32,
    },
    /// `GroupMetadataKey` (version 2).
    Group {
        /// Group id.
        group: String,
    },
}

impl RecordKey {
    /// The group the record belongs to.
    pub fn group(&self) -> &str {
        match self {
            RecordKey::Offset { group, .. } | RecordKey::Group { group } => group,
        }
    }
}

/// A committed offset as stored (`OffsetCommitValue`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetValue {
    /// The next offset the group will consume (exclusive end of what it processed).
    pub offset: i64,
    /// Leader epoch of the record before `offset`, -1 if unknown (KIP-320).
    pub leader_epoch: i32,
    /// Client-supplied metadata string.
    pub metadata: String,
    /// When the commit was accepted, ms since the epoch.
    pub commit_timestamp: i64,
    /// Explicit expiry time (ms) from value v1 (OffsetCommit v2–v4 `retention_time_ms`);
    /// -1 when the broker's `offsets.retention.minutes` applies.
    pub expire_timestamp: i64,
}

/// A group's membership as stored (`GroupMetadataValue`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupValue {
    /// `consumer`, `connect`, … (empty for a group that only commits offsets).
    pub protocol_type: String,
    /// Generation id.
    pub generation: i32,
    /// Chosen protocol (assignor name), `None` if the group is empty.
    pub protocol: Option<String>,
    /// Leader member id, `None` if the group is empty.
    pub leader: Option<String>,
    /// When the group entered its current state, ms (-1 if unknown).
    pub state_timestamp: i64,
    /// Members and their assignments.
    pub members: Vec<MemberValue>,
}

/// One member inside [`GroupValue`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberValue {
    /// Member id.
    pub member_id: String,
    /// `group.instance.id` of a static member (KIP-345).
    pub group_instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client host (`/address` as Kafka prints it).
    pub client_host: String,
    /// `max.poll.interval.ms`-derived rebalance timeout, ms.
    pub rebalance_timeout_ms: i32,
    /// Session timeout, ms.
    pub session_timeout_ms: i32,
    /// The member's metadata for the chosen protocol.
    pub subscription: Bytes,
    /// The member's assignment.
    pub assignment: Bytes,
}

const OFFSET_KEY_VERSION: i16 = 1;
const GROUP_KEY_VERSION: i16 = 2;
const OFFSET_VALUE_VERSION: i16 = 3;
const GROUP_VALUE_VERSION: i16 = 3;

/// Encodes an `OffsetCommitKey` v1.
pub fn offset_key(group: &str, topic: &str, partition: i32) -> Bytes {
    let mut out = BytesMut::with_capacity(10 + group.len() + topic.len());
    out.put_i16(OFFSET_KEY_VERSION);
    put_str(&mut out, group);
    put_str(&mut out, topic);
    out.put_i32(partition);
    out.freeze()
}

/// Encodes a `GroupMetadataKey` v2.
pub fn group_key(group: &str) -> Bytes {
    let mut out = BytesMut::with_capacity(4 + group.len());
    out.put_i16(GROUP_KEY_VERSION);
    put_str(&mut out, group);
    out.freeze()
}

/// Encodes an `OffsetCommitValue`: v3 normally, v1 when `expire_timestamp` is set (the
/// only version that carries it).
pub fn offset_value(v: &OffsetValue) -> Bytes {
    let mut out = BytesMut::with_capacity(32 + v.metadata.len());
    if v.expire_timestamp >= 0 {
        out.put_i16(1);
        out.put_i64(v.offset);
        put_str(&mut out, &v.metadata);
        out.put_i64(v.commit_timestamp);
        out.put_i64(v.expire_timestamp);
    } else {
        out.put_i16(OFFSET_VALUE_VERSION);
        out.put_i64(v.offset);
        out.put_i32(v.leader_epoch);
        put_str(&mut out, &v.metadata);
        out.put_i64(v.commit_timestamp);
    }
    out.freeze()
}

/// Encodes a `GroupMetadataValue` v3.
pub fn group_value(v: &GroupValue) -> Bytes {
    let mut out = BytesMut::with_capacity(64);
    out.put_i16(GROUP_VALUE_VERSION);
    put_str(&mut out, &v.protocol_type);
    out.put_i32(v.generation);
    put_nullable_str(&mut out, v.protocol.as_deref());
    put_nullable_str(&mut out, v.leader.as_deref());
    out.put_i64(v.state_timestamp);
    out.put_i32(v.members.len() as i32);
    for m in &v.members {
        put_str(&mut out, &m.member_id);
        put_nullable_str(&mut out, m.group_instance_id.as_deref());
        put_str(&mut out, &m.client_id);
        put_str(&mut out, &m.client_host);
        out.put_i32(m.rebalance_timeout_ms);
        out.put_i32(m.session_timeout_ms);
        put_bytes(&mut out, &m.subscription);
        put_bytes(&mut out, &m.assignment);
    }
    out.freeze()
}

/// Decodes a key of `__consumer_offsets`.
///
/// Errors: [`RecordError`] for short input, bad UTF-8, or a key version other than 0–2
/// (Kafka's transaction-era and share-group key versions are not read here).
pub fn decode_key(key: &[u8]) -> Result<RecordKey, RecordError> {
    let mut r = Reader(key);
    match r.i16()? {
        0 | 1 => Ok(RecordKey::Offset {
            group: r.str(false)?,
            topic: r.str(false)?,
            partition: r.i32()?,
        }),
        2 => Ok(RecordKey::Group {
            group: r.str(false)?,
        }),
        version => Err(RecordError::UnsupportedVersion {
            what: "key",
            version,
        }),
    }
}

/// Decodes an `OffsetCommitValue` v0–v3.
pub fn decode_offset_value(value: &[u8]) -> Result<OffsetValue, RecordError> {
    let mut r = Reader(value);
    let version = r.i16()?;
    let offset = r.i64()?;
    let (leader_epoch, metadata, commit_timestamp, expire_timestamp) = match version {
        0 => (-1, r.str(false)?, r.i64()?, -1),
        1 => (-1, r.str(false)?, r.i64()?, r.i64()?),
        2 => (-1, r.str(false)?, r.i64()?, -1),
        3 => (r.i32()?, r.str(false)?, r.i64()?, -1),
        version => {
            return Err(RecordError::UnsupportedVersion {
                what: "offset value",
                version,
            })
        }
    };
    Ok(OffsetValue {
        offset,
        leader_epoch,
        metadata,
        commit_timestamp,
        expire_timestamp,
    })
}

/// Decodes a `GroupMetadataValue` v0–v3.
pub fn decode_group_value(value: &[u8]) -> Result<GroupValue, RecordError> {
    let mut r = Reader(value);
    let version = r.i16()?;
    if !(0..=3).contains(&version) {
        return Err(RecordError::UnsupportedVersion {
            what: "group value",
            version,
        });
    }
    let protocol_type = r.str(false)?;
    let generation = r.i32()?;
    let protocol = r.nullable_str()?;
    let leader = r.nullable_str()?;
    let state_timestamp = if version >= 2 { r.i64()? } else { -1 };
    let count = r.i32()?.max(0) as usize;
    // Each member takes at least 24 bytes; a count beyond that is a lie, not a reason to
    // allocate.
    let mut members = Vec::with_capacity(count.min(r.remaining() / 24));
    for _ in 0..count {
        let member_id = r.str(false)?;
        let group_instance_id = if version >= 3 {
            r.nullable_str()?
        } else {
            None
        };
        let client_id = r.str(false)?;
        let client_host = r.str(false)?;
        let session_first = version == 0;
        let (rebalance_timeout_ms, session_timeout_ms) = if session_first {
            let s = r.i32()?;
            (s, s)
        } else {
            let rebalance = r.i32()?;
            (rebalance, r.i32()?)
        };
        members.push(MemberValue {
            member_id,
            group_instance_id,
            client_id,
            client_host,
            rebalance_timeout_ms,
            session_timeout_ms,
            subscription: Bytes::copy_from_slice(r.bytes()?),
            assignment: Bytes::copy_from_slice(r.bytes()?),
        });
    }
    Ok(GroupValue {
        protocol_type,
        generation,
        protocol,
        leader,
        state_timestamp,
        members,
    })
}

/// Topics named in a consumer-protocol subscription (`ConsumerProtocolSubscription`
/// v0–v3: `int16` version, then an array of topic strings, then fields Moldau does not
/// need). `None` if the bytes are not such a subscription.
pub fn subscribed_topics(subscription: &[u8]) -> Option<Vec<String>> {
    let mut r = Reader(subscription);
    let version = r.i16().ok()?;
    if !(0..=3).contains(&version) {
        return None;
    }
    let count = r.i32().ok()?;
    let mut topics = Vec::new();
    for _ in 0..count.max(0) {
        topics.push(r.str(false).ok()?);
    }
    Some(topics)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_match_kafkas_bytes() {
        let key = offset_key("g", "t", 7);
        // version 1, "g", "t", partition 7
        assert_eq!(&key[..], b"\x00\x01\x00\x01g\x00\x01t\x00\x00\x00\x07");
        assert_eq!(
            decode_key(&key),
            Ok(RecordKey::Offset {
                group: "g".into(),
                topic: "t".into(),
                partition: 7
            })
        );
        assert_eq!(
            decode_key(&group_key("grp")),
            Ok(RecordKey::Group {
                group: "grp".into()
            })
        );
        assert_eq!(
            decode_key(b"\x00\x01\x00\x05ab"),
            Err(RecordError::Wire(WireError::Truncated))
        );
    }

    #[test]
    fn values_round_trip() {
        let v = OffsetValue {
            offset: 42,
            leader_epoch: 3,
            metadata: "m".into(),
            commit_timestamp: 1000,
            expire_timestamp: -1,
        };
        assert_eq!(decode_offset_value(&offset_value(&v)), Ok(v.clone()));
        let with_expiry = OffsetValue {
            leader_epoch: -1,
            expire_timestamp: 5000,
            ..v
        };
        assert_eq!(
            decode_offset_value(&offset_value(&with_expiry)),
            Ok(with_expiry)
        );
        let g = GroupValue {
            protocol_type: "consumer".into(),
            generation: 5,
            protocol: Some("range".into()),
            leader: Some("m1".into()),
            state_timestamp: 99,
            members: vec![MemberValue {
                member_id: "m1".into(),
                group_instance_id: Some("i1".into()),
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                rebalance_timeout_ms: 300_000,
                session_timeout_ms: 10_000,
                subscription: Bytes::from_static(b"sub"),
                assignment: Bytes::from_static(b"asg"),
            }],
        };
        assert_eq!(decode_group_value(&group_value(&g)), Ok(g));
    }

    #[test]
    fn a_lying_member_count_costs_nothing() {
        let mut v = BytesMut::new();
        v.put_i16(3);
        put_str(&mut v, "consumer");
        v.put_i32(1);
        v.put_i16(-1);
        v.put_i16(-1);
        v.put_i64(0);
        v.put_i32(i32::MAX);
        assert_eq!(
            decode_group_value(&v),
            Err(RecordError::Wire(WireError::Truncated))
        );
    }

    #[test]
    fn subscription_topics_are_read() {
        let mut s = BytesMut::new();
        s.put_i16(1);
        s.put_i32(2);
        put_str(&mut s, "a");
        put_str(&mut s, "b");
        s.put_i32(-1); // user data
        assert_eq!(subscribed_topics(&s), Some(vec!["a".into(), "b".into()]));
        assert_eq!(subscribed_topics(b"\x00"), None);
    }
}
