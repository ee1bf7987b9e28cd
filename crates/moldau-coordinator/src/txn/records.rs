//! The records of `__transaction_state`, in Kafka's own binary formats (Kafka's
//! `transaction-coordinator` message schemas `TransactionLogKey.json` and
//! `TransactionLogValue.json`), so Kafka tools that dump that topic read Moldau's copy.
//!
//! Every key and value starts with an `int16` schema version.
//!
//! | record | layout |
//! |---|---|
//! | key v0 | transactional id: `string` (`int16` length, UTF-8) |
//! | value v0 | producer id `int64`, producer epoch `int16`, transaction timeout `int32` (ms), status `int8` ([`TxnState::code`]), partitions: nullable array (`int32` count, -1 = null) of { topic `string`, partition ids: array (`int32` count) of `int32` }, last update `int64` (ms), start `int64` (ms, -1 if none) |
//! | value v1 | the same fields in Kafka's flexible encoding: compact strings and arrays (unsigned varint length + 1, 0 = null), a tagged-field section after each partition entry and at the end of the value, where tag 0 = previous producer id `int64` (default -1), tag 1 = next producer id `int64` (default -1), tag 2 = client transaction version `int16` (default 0) |
//!
//! A null value (tombstone) deletes the transactional id (expiration). Moldau writes key
//! v0 and value v0, as Kafka does until `transaction.version` 2 (KIP-890) is enabled, and
//! reads values v0 and v1. As Kafka, the partitions are written as null for `Empty` and
//! as an empty array for the `Complete*` states (whose partition set is cleared).

use super::metadata::TxnState;
use crate::wire::{put_compact_str, put_str, put_uvarint, Reader, WireError};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use std::collections::BTreeSet;
use thiserror::Error;

/// A `__transaction_state` record that cannot be decoded.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum TxnRecordError {
    /// The bytes do not decode as the schema's types (truncated, not UTF-8, an
    /// impossible length).
    #[error("transaction log record: {0}")]
    Wire(#[from] WireError),
    /// A key or value schema version Moldau does not read. Kafka skips keys of unknown
    /// versions when loading ("a left over from an aborted upgrade").
    #[error("unsupported transaction log {what} version {version}")]
    UnsupportedVersion {
        /// `key` or `value`.
        what: &'static str,
        /// The version found.
        version: i16,
    },
    /// A transaction status code outside 0–7.
    #[error("unknown transaction status {0}")]
    UnknownState(i8),
    /// A status Kafka never writes (`Dead`, `PrepareEpochFence`): found on replay.
    #[error("transaction status {0:?} is never stored")]
    NotStored(TxnState),
}

/// A transaction's metadata as stored (`TransactionLogValue`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnLogValue {
    /// Producer id in use by the transactional id.
    pub producer_id: i64,
    /// v1 tag 0: producer id of the last committed transaction, -1 if none (not
    /// carried by v0).
    pub previous_producer_id: i64,
    /// v1 tag 1: the producer id handed out on an epoch overflow (KIP-890), -1 if none.
    pub next_producer_id: i64,
    /// Epoch of `producer_id`.
    pub producer_epoch: i16,
    /// Transaction timeout, ms.
    pub transaction_timeout_ms: i32,
    /// Transaction status.
    pub state: TxnState,
    /// Partitions of the transaction, `(topic, partition)`.
    pub partitions: BTreeSet<(String, i32)>,
    /// Last update of the metadata, ms since the epoch.
    pub last_update_timestamp_ms: i64,
    /// When the transaction started (first partition added), ms since the epoch; -1 if none.
    pub start_timestamp_ms: i64,
    /// v1 tag 2: the client's `transaction.version` (KIP-890), 0 if unknown.
    pub client_transaction_version: i16,
}

/// Version of the key Moldau writes and reads.
pub const KEY_VERSION: i16 = 0;
/// Version of the value Moldau writes (0 = non-flexible, as Kafka before KIP-890).
pub const VALUE_VERSION: i16 = 0;

/// Encodes a `TransactionLogKey` v0.
pub fn encode_key(transactional_id: &str) -> Bytes {
    let mut out = BytesMut::with_capacity(4 + transactional_id.len());
    out.put_i16(KEY_VERSION);
    put_str(&mut out, transactional_id);
    out.freeze()
}

/// The partitions grouped by topic, in topic order, as the value stores them.
fn by_topic(partitions: &BTreeSet<(String, i32)>) -> Vec<(&str, Vec<i32>)> {
    let mut out: Vec<(&str, Vec<i32>)> = Vec::new();
    for (topic, partition) in partitions {
        match out.last_mut() {
            Some((t, ids)) if *t == topic.as_str() => ids.push(*partition),
            _ => out.push((topic.as_str(), vec![*partition])),
        }
    }
    out
}

/// Encodes a `TransactionLogValue` in `version` 0 or 1 (any other version is written as
/// 1). Partitions are null for [`TxnState::Empty`], as Kafka writes them.
pub fn encode_value(v: &TxnLogValue, version: i16) -> Bytes {
    let topics = by_topic(&v.partitions);
    let null_partitions = v.state == TxnState::Empty;
    let mut out = BytesMut::with_capacity(64 + topics.len() * 32);
    if version == 0 {
        out.put_i16(0);
        out.put_i64(v.producer_id);
        out.put_i16(v.producer_epoch);
        out.put_i32(v.transaction_timeout_ms);
        out.put_i8(v.state.code());
        if null_partitions {
            out.put_i32(-1);
        } else {
            out.put_i32(topics.len() as i32);
            for (topic, ids) in &topics {
                put_str(&mut out, topic);
                out.put_i32(ids.len() as i32);
                ids.iter().for_each(|p| out.put_i32(*p));
            }
        }
        out.put_i64(v.last_update_timestamp_ms);
        out.put_i64(v.start_timestamp_ms);
        return out.freeze();
    }
    out.put_i16(1);
    out.put_i64(v.producer_id);
    out.put_i16(v.producer_epoch);
    out.put_i32(v.transaction_timeout_ms);
    out.put_i8(v.state.code());
    if null_partitions {
        put_uvarint(&mut out, 0);
    } else {
        put_uvarint(&mut out, topics.len() as u64 + 1);
        for (topic, ids) in &topics {
            put_compact_str(&mut out, topic);
            put_uvarint(&mut out, ids.len() as u64 + 1);
            ids.iter().for_each(|p| out.put_i32(*p));
            put_uvarint(&mut out, 0); // no tagged fields
        }
    }
    out.put_i64(v.last_update_timestamp_ms);
    out.put_i64(v.start_timestamp_ms);
    // Tagged fields, in tag order, only those that differ from their defaults.
    let tags = [
        (0u64, v.previous_producer_id != -1),
        (1, v.next_producer_id != -1),
        (2, v.client_transaction_version != 0),
    ];
    put_uvarint(&mut out, tags.iter().filter(|t| t.1).count() as u64);
    for (tag, present) in tags {
        if !present {
            continue;
        }
        put_uvarint(&mut out, tag);
        match tag {
            0 => {
                put_uvarint(&mut out, 8);
                out.put_i64(v.previous_producer_id);
            }
            1 => {
                put_uvarint(&mut out, 8);
                out.put_i64(v.next_producer_id);
            }
            _ => {
                put_uvarint(&mut out, 2);
                out.put_i16(v.client_transaction_version);
            }
        }
    }
    out.freeze()
}

/// Decodes a `TransactionLogKey`, returning the transactional id.
///
/// Errors: [`TxnRecordError`] for short input, bad UTF-8, or a version other than 0.
pub fn decode_key(key: &[u8]) -> Result<String, TxnRecordError> {
    let mut r = Reader(key);
    match r.i16()? {
        KEY_VERSION => Ok(r.str(true)?),
        version => Err(TxnRecordError::UnsupportedVersion {
            what: "key",
            version,
        }),
    }
}

/// Decodes a `TransactionLogValue` v0 or v1.
///
/// Errors: [`TxnRecordError`] for short input, bad UTF-8, impossible lengths, an unknown
/// status or another version. Never panics and never allocates more than the input
/// could describe.
pub fn decode_value(value: &[u8]) -> Result<TxnLogValue, TxnRecordError> {
    let mut r = Reader(value);
    let version = r.i16()?;
    if !(0..=1).contains(&version) {
        return Err(TxnRecordError::UnsupportedVersion {
            what: "value",
            version,
        });
    }
    let flexible = version >= 1;
    let producer_id = r.i64()?;
    let producer_epoch = r.i16()?;
    let transaction_timeout_ms = r.i32()?;
    let status = r.i8()?;
    let state = TxnState::from_code(status).ok_or(TxnRecordError::UnknownState(status))?;
    let topic_count = if flexible {
        r.compact_len()?
    } else {
        let n = r.i32()?;
        if n < -1 {
            return Err(TxnRecordError::Wire(WireError::InvalidLength));
        }
        usize::try_from(n).ok()
    };
    let mut partitions = BTreeSet::new();
    // A topic entry takes at least 3 bytes (flexible) or 6 (v0).
    r.check_count(topic_count.unwrap_or(0), if flexible { 3 } else { 6 })?;
    for _ in 0..topic_count.unwrap_or(0) {
        let topic = if flexible {
            r.compact_str()?
        } else {
            r.str(true)?
        };
        let ids = if flexible {
            r.compact_len()?
                .ok_or(TxnRecordError::Wire(WireError::InvalidLength))?
        } else {
            usize::try_from(r.i32()?).map_err(|_| TxnRecordError::Wire(WireError::InvalidLength))?
        };
        r.check_count(ids, 4)?;
        for _ in 0..ids {
            partitions.insert((topic.clone(), r.i32()?));
        }
        if flexible {
            r.tagged_fields()?;
        }
    }
    let last_update_timestamp_ms = r.i64()?;
    let start_timestamp_ms = r.i64()?;
    let mut v = TxnLogValue {
        producer_id,
        previous_producer_id: -1,
        next_producer_id: -1,
        producer_epoch,
        transaction_timeout_ms,
        state,
        partitions,
        last_update_timestamp_ms,
        start_timestamp_ms,
        client_transaction_version: 0,
    };
    if flexible {
        for (tag, mut data) in r.tagged_fields()? {
            // Unknown tags are skipped, as the flexible-version rules require.
            match (tag, data.len()) {
                (0, 8) => v.previous_producer_id = data.get_i64(),
                (1, 8) => v.next_producer_id = data.get_i64(),
                (2, 2) => v.client_transaction_version = data.get_i16(),
                (0..=2, _) => return Err(TxnRecordError::Wire(WireError::InvalidLength)),
                _ => {}
            }
        }
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(state: TxnState) -> TxnLogValue {
        let partitions = if matches!(state, TxnState::Empty | TxnState::CompleteCommit) {
            BTreeSet::new()
        } else {
            [
                ("a".to_string(), 0),
                ("a".to_string(), 3),
                ("b".to_string(), 1),
            ]
            .into_iter()
            .collect()
        };
        TxnLogValue {
            producer_id: 1000,
            previous_producer_id: -1,
            next_producer_id: -1,
            producer_epoch: 7,
            transaction_timeout_ms: 60_000,
            state,
            partitions,
            last_update_timestamp_ms: 123_456,
            start_timestamp_ms: 120_000,
            client_transaction_version: 0,
        }
    }

    #[test]
    fn key_matches_kafkas_bytes_and_round_trips() {
        let key = encode_key("tx");
        assert_eq!(&key[..], b"\x00\x00\x00\x02tx");
        assert_eq!(decode_key(&key), Ok("tx".to_string()));
        assert_eq!(
            decode_key(b"\x00\x01\x00\x02tx"),
            Err(TxnRecordError::UnsupportedVersion {
                what: "key",
                version: 1
            })
        );
    }

    #[test]
    fn values_round_trip_in_both_versions() {
        for state in [
            TxnState::Empty,
            TxnState::Ongoing,
            TxnState::PrepareCommit,
            TxnState::PrepareAbort,
            TxnState::CompleteCommit,
        ] {
            let v = sample(state);
            assert_eq!(
                decode_value(&encode_value(&v, 0)),
                Ok(v.clone()),
                "{state:?}"
            );
            assert_eq!(decode_value(&encode_value(&v, 1)), Ok(v), "{state:?}");
        }
        let tagged = TxnLogValue {
            previous_producer_id: 999,
            next_producer_id: 1001,
            client_transaction_version: 2,
            ..sample(TxnState::Ongoing)
        };
        assert_eq!(decode_value(&encode_value(&tagged, 1)), Ok(tagged));
    }

    #[test]
    fn value_v0_layout_is_kafkas() {
        let v = TxnLogValue {
            partitions: [("t".to_string(), 2)].into_iter().collect(),
            ..sample(TxnState::Ongoing)
        };
        let mut want = BytesMut::new();
        want.put_i16(0);
        want.put_i64(1000);
        want.put_i16(7);
        want.put_i32(60_000);
        want.put_i8(1);
        want.put_i32(1); // one topic
        want.put_slice(b"\x00\x01t");
        want.put_i32(1);
        want.put_i32(2);
        want.put_i64(123_456);
        want.put_i64(120_000);
        assert_eq!(encode_value(&v, 0), want.freeze());
        // Empty writes null partitions; CompleteCommit an empty array.
        let empty = encode_value(&sample(TxnState::Empty), 0);
        assert_eq!(&empty[17..21], &(-1i32).to_be_bytes());
        let complete = encode_value(&sample(TxnState::CompleteCommit), 0);
        assert_eq!(&complete[17..21], &0i32.to_be_bytes());
    }

    #[test]
    fn flexible_v1_value_from_hand_built_bytes() {
        let mut b = BytesMut::new();
        b.put_i16(1); // version
        b.put_i64(42); // producer id
        b.put_i16(3); // epoch
        b.put_i32(30_000); // timeout
        b.put_i8(2); // PrepareCommit
        b.put_u8(2); // compact array: 1 topic
        b.put_u8(4); // compact string "foo"
        b.put_slice(b"foo");
        b.put_u8(3); // 2 partition ids
        b.put_i32(0);
        b.put_i32(5);
        b.put_u8(1); // one tagged field in the partition entry (unknown, skipped)
        b.put_u8(9);
        b.put_u8(1);
        b.put_u8(0xff);
        b.put_i64(2_000); // last update
        b.put_i64(1_000); // start
        b.put_u8(4); // four tagged fields
        b.put_u8(0); // previous producer id
        b.put_u8(8);
        b.put_i64(41);
        b.put_u8(1); // next producer id
        b.put_u8(8);
        b.put_i64(43);
        b.put_u8(2); // client transaction version
        b.put_u8(2);
        b.put_i16(2);
        b.put_u8(0x80); // tag 128 as a two-byte varint, unknown, skipped
        b.put_u8(0x01);
        b.put_u8(0);
        let v = decode_value(&b).expect("decodes");
        assert_eq!(
            v,
            TxnLogValue {
                producer_id: 42,
                previous_producer_id: 41,
                next_producer_id: 43,
                producer_epoch: 3,
                transaction_timeout_ms: 30_000,
                state: TxnState::PrepareCommit,
                partitions: [("foo".to_string(), 0), ("foo".to_string(), 5)]
                    .into_iter()
                    .collect(),
                last_update_timestamp_ms: 2_000,
                start_timestamp_ms: 1_000,
                client_transaction_version: 2,
            }
        );
        // A null compact array reads as no partitions.
        let mut null = BytesMut::new();
        null.put_i16(1);
        null.put_i64(42);
        null.put_i16(0);
        null.put_i32(1);
        null.put_i8(0);
        null.put_u8(0);
        null.put_i64(0);
        null.put_i64(-1);
        null.put_u8(0);
        assert!(decode_value(&null).expect("decodes").partitions.is_empty());
    }

    #[test]
    fn bad_bytes_error_without_panicking() {
        for version in [0, 1] {
            let full = encode_value(&sample(TxnState::PrepareAbort), version);
            for len in 0..full.len() {
                assert_eq!(
                    decode_value(&full[..len]),
                    Err(TxnRecordError::Wire(WireError::Truncated)),
                    "v{version} cut at {len}"
                );
            }
        }
        let key = encode_key("abc");
        for len in 0..key.len() {
            assert_eq!(
                decode_key(&key[..len]),
                Err(TxnRecordError::Wire(WireError::Truncated))
            );
        }
        // A lying topic count, an unknown status, an unknown version, bad UTF-8.
        let mut lying = BytesMut::new();
        lying.put_i16(0);
        lying.put_i64(1);
        lying.put_i16(0);
        lying.put_i32(1);
        lying.put_i8(1);
        lying.put_i32(i32::MAX);
        assert_eq!(
            decode_value(&lying),
            Err(TxnRecordError::Wire(WireError::Truncated))
        );
        let mut flexible_lie = BytesMut::new();
        flexible_lie.put_i16(1);
        flexible_lie.put_i64(1);
        flexible_lie.put_i16(0);
        flexible_lie.put_i32(1);
        flexible_lie.put_i8(1);
        flexible_lie.put_slice(&[0xff, 0xff, 0xff, 0xff, 0x07]);
        assert_eq!(
            decode_value(&flexible_lie),
            Err(TxnRecordError::Wire(WireError::Truncated))
        );
        let mut status = encode_value(&sample(TxnState::Ongoing), 0).to_vec();
        status[16] = 9;
        assert_eq!(decode_value(&status), Err(TxnRecordError::UnknownState(9)));
        assert_eq!(
            decode_value(b"\x00\x05"),
            Err(TxnRecordError::UnsupportedVersion {
                what: "value",
                version: 5
            })
        );
        assert_eq!(
            decode_key(b"\x00\x00\x00\x01\xff"),
            Err(TxnRecordError::Wire(WireError::NotUtf8))
        );
        assert_eq!(
            decode_key(b"\x00\x00\xff\xff"),
            Err(TxnRecordError::Wire(WireError::InvalidLength))
        );
    }
}
