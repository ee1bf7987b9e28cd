//! The `consumer` embedded protocol: JoinGroup subscriptions and SyncGroup
//! assignments (Kafka `ConsumerProtocol`), read with a bounds-checked reader.

use crate::error::{Error, Result};
use crate::names::{str_bytes, topic_name};
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    consumer_protocol_assignment, consumer_protocol_subscription, ConsumerProtocolAssignment,
    ConsumerProtocolSubscription,
};
use kafka_protocol::protocol::Encodable;

/// `protocol_type` of consumer groups in JoinGroup.
pub const PROTOCOL_TYPE: &str = "consumer";
/// Name of the range assignor's protocol in JoinGroup (Kafka `RangeAssignor`).
pub const RANGE_PROTOCOL: &str = "range";
/// Version this client writes `ConsumerProtocolSubscription` at (v1: owned partitions,
/// KIP-429; always empty here since the protocol is eager).
pub const SUBSCRIPTION_VERSION: i16 = 1;
/// Version this client writes `ConsumerProtocolAssignment` at.
pub const ASSIGNMENT_VERSION: i16 = 1;

/// Partitions grouped by topic: `(topic, partition indexes)`.
pub type TopicPartitions = Vec<(String, Vec<i32>)>;

/// A member's subscription, as carried in its JoinGroup metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subscription {
    /// Topics the member subscribes to.
    pub topics: Vec<String>,
    /// Partitions the member owns while joining (v1+, cooperative rebalancing); empty
    /// for eager members such as this client's.
    pub owned_partitions: TopicPartitions,
    /// Assignor-specific data; `None` for the range assignor.
    pub user_data: Option<Bytes>,
}

/// Encodes `subscription` as JoinGroup metadata: `int16` version
/// ([`SUBSCRIPTION_VERSION`]) then `ConsumerProtocolSubscription`.
pub fn encode_subscription(subscription: &Subscription) -> Result<Bytes> {
    let message = ConsumerProtocolSubscription::default()
        .with_topics(subscription.topics.iter().map(|t| str_bytes(t)).collect())
        .with_user_data(subscription.user_data.clone())
        .with_owned_partitions(
            subscription
                .owned_partitions
                .iter()
                .map(|(t, ps)| {
                    consumer_protocol_subscription::TopicPartition::default()
                        .with_topic(topic_name(t))
                        .with_partitions(ps.clone())
                })
                .collect(),
        );
    encode_embedded(&message, SUBSCRIPTION_VERSION)
}

/// Decodes JoinGroup metadata written by any Kafka consumer (v0–v3, newer read as v3).
/// Every length is checked against the bytes left before anything is allocated.
/// Errors: [`Error::Invalid`] when the bytes are not a subscription.
pub fn decode_subscription(bytes: &[u8]) -> Result<Subscription> {
    let bad = |e: &str| Error::Invalid(format!("consumer subscription does not decode: {e}"));
    let mut r = Reader(bytes);
    let version = embedded_version(&mut r).map_err(bad)?;
    let topics = r.array(2, |r| r.string()).map_err(bad)?;
    let user_data = r.nullable_bytes().map_err(bad)?;
    let owned_partitions = if version >= 1 {
        r.array(6, Reader::topic_partitions).map_err(bad)?
    } else {
        Vec::new()
    };
    // v2 adds generation_id, v3 rack_id: not needed by the range assignor.
    Ok(Subscription {
        topics,
        owned_partitions,
        user_data,
    })
}

/// Encodes an assignment for SyncGroup: `int16` version ([`ASSIGNMENT_VERSION`]) then
/// `ConsumerProtocolAssignment`.
pub fn encode_assignment(partitions: &[(String, Vec<i32>)]) -> Result<Bytes> {
    let message = ConsumerProtocolAssignment::default().with_assigned_partitions(
        partitions
            .iter()
            .map(|(t, ps)| {
                consumer_protocol_assignment::TopicPartition::default()
                    .with_topic(topic_name(t))
                    .with_partitions(ps.clone())
            })
            .collect(),
    );
    encode_embedded(&message, ASSIGNMENT_VERSION)
}

/// Decodes a SyncGroup assignment written by any Kafka group leader (v0–v3, newer read
/// as v3; every version has the same layout). Empty bytes (a leader that left the member
/// out) are an empty assignment. Every length is checked against the bytes left before
/// anything is allocated. Errors: [`Error::Invalid`] when the bytes are not an
/// assignment.
pub fn decode_assignment(bytes: &[u8]) -> Result<TopicPartitions> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let bad = |e: &str| Error::Invalid(format!("consumer assignment does not decode: {e}"));
    let mut r = Reader(bytes);
    embedded_version(&mut r).map_err(bad)?;
    r.array(6, Reader::topic_partitions).map_err(bad)
}

fn encode_embedded<M: Encodable>(message: &M, version: i16) -> Result<Bytes> {
    let mut buf = BytesMut::with_capacity(64);
    buf.put_i16(version);
    message
        .encode(&mut buf, version)
        .map_err(|e| Error::Invalid(format!("cannot encode consumer protocol v{version}: {e}")))?;
    Ok(buf.freeze())
}

/// The embedded protocol's leading version, negative ones refused.
fn embedded_version(r: &mut Reader<'_>) -> Result<i16, &'static str> {
    let version = r.i16()?;
    if version < 0 {
        return Err("negative version");
    }
    Ok(version)
}

/// A bounds-checked reader of the embedded protocol's (non-flexible) encoding. Array
/// counts are checked against the bytes left (each element takes at least `min_size`
/// bytes), so a corrupt count costs nothing.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], &'static str> {
        if self.0.len() < n {
            return Err("truncated");
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn i16(&mut self) -> Result<i16, &'static str> {
        let b = self.take(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    fn i32(&mut self) -> Result<i32, &'static str> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn string(&mut self) -> Result<String, &'static str> {
        let len = usize::try_from(self.i16()?).map_err(|_| "null or negative string")?;
        let b = self.take(len)?;
        std::str::from_utf8(b)
            .map(str::to_owned)
            .map_err(|_| "string is not UTF-8")
    }

    fn nullable_bytes(&mut self) -> Result<Option<Bytes>, &'static str> {
        match self.i32()? {
            -1 => Ok(None),
            n => {
                let len = usize::try_from(n).map_err(|_| "negative bytes length")?;
                Ok(Some(Bytes::copy_from_slice(self.take(len)?)))
            }
        }
    }

    fn array<T>(
        &mut self,
        min_size: usize,
        mut item: impl FnMut(&mut Self) -> Result<T, &'static str>,
    ) -> Result<Vec<T>, &'static str> {
        let n = match self.i32()? {
            -1 => return Ok(Vec::new()),
            n => usize::try_from(n).map_err(|_| "negative array length")?,
        };
        if n.saturating_mul(min_size) > self.0.len() {
            return Err("array longer than the bytes left");
        }
        (0..n).map(|_| item(self)).collect()
    }

    fn topic_partitions(&mut self) -> Result<(String, Vec<i32>), &'static str> {
        Ok((self.string()?, self.array(4, Self::i32)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_protocol_round_trips_and_matches_kafkas_bytes() {
        let s = Subscription {
            topics: vec!["t".into()],
            ..Default::default()
        };
        let bytes = encode_subscription(&s).expect("encode");
        // v1: version, [topics], user_data (null), [owned partitions]
        assert_eq!(
            &bytes[..],
            b"\x00\x01\x00\x00\x00\x01\x00\x01t\xff\xff\xff\xff\x00\x00\x00\x00"
        );
        assert_eq!(decode_subscription(&bytes).expect("decode"), s);
        // A v0 subscription (topics, user data) as older clients write it.
        let v0 = b"\x00\x00\x00\x00\x00\x01\x00\x01t\xff\xff\xff\xff";
        assert_eq!(decode_subscription(v0).expect("v0").topics, vec!["t"]);
        // A future version decodes with the newest known layout.
        let mut v9 = encode_subscription(&s).expect("encode").to_vec();
        v9[1] = 9;
        v9.extend_from_slice(b"\xff\xff\xff\xff\xff\xff"); // generation -1, rack null
        assert_eq!(decode_subscription(&v9).expect("v9").topics, vec!["t"]);

        let a = vec![("t".to_string(), vec![0, 2]), ("u".to_string(), vec![1])];
        let bytes = encode_assignment(&a).expect("encode");
        assert_eq!(&bytes[..2], b"\x00\x01");
        assert_eq!(decode_assignment(&bytes).expect("decode"), a);
        assert_eq!(decode_assignment(b"").expect("empty"), Vec::new());
        assert!(decode_assignment(b"\x00").is_err());
        assert!(decode_assignment(b"\x00\x00\x7f\xff\xff\xff").is_err());
    }
}
