//! Records as users see them: what a producer sends and what a consumer receives, and
//! the decoding of fetched record batches into them.

use crate::error::{Error, Result};
use bytes::Bytes;
use moldau_protocol::batch::{self, BatchHeader, Compression, ControlRecordType};
use std::collections::HashSet;

/// A record header (KIP-82): a string key and an optional value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The header's key.
    pub key: String,
    /// The header's value; `None` for a null value.
    pub value: Option<Bytes>,
}

/// A record to produce.
///
/// ```
/// use moldau_client::ProducerRecord;
/// let r = ProducerRecord::new("orders")
///     .with_key("customer-17")
///     .with_value(r#"{"total": 12.5}"#)
///     .with_header("source", "web");
/// assert_eq!(r.partition, None); // chosen by the partitioner (murmur2 of the key)
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerRecord {
    /// Topic name.
    pub topic: String,
    /// Partition; `None` lets the producer's partitioner choose.
    pub partition: Option<i32>,
    /// Key; `None` for a null key.
    pub key: Option<Bytes>,
    /// Value; `None` for a null value (a tombstone on compacted topics).
    pub value: Option<Bytes>,
    /// Headers, in order.
    pub headers: Vec<Header>,
    /// CreateTime, ms since the epoch; `None` for the time of sending.
    pub timestamp_ms: Option<i64>,
}

impl ProducerRecord {
    /// A record for `topic` with no key, value, headers or partition.
    pub fn new(topic: impl Into<String>) -> Self {
        ProducerRecord {
            topic: topic.into(),
            ..Default::default()
        }
    }

    /// Sets the key.
    pub fn with_key(mut self, key: impl Into<Bytes>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Sets the value.
    pub fn with_value(mut self, value: impl Into<Bytes>) -> Self {
        self.value = Some(value.into());
        self
    }

    /// Appends a header.
    pub fn with_header(mut self, key: impl Into<String>, value: impl Into<Bytes>) -> Self {
        self.headers.push(Header {
            key: key.into(),
            value: Some(value.into()),
        });
        self
    }

    /// Sets the partition, bypassing the partitioner.
    pub fn with_partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }

    /// Sets the CreateTime timestamp, ms since the epoch.
    pub fn with_timestamp(mut self, timestamp_ms: i64) -> Self {
        self.timestamp_ms = Some(timestamp_ms);
        self
    }
}

/// A record read from a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRecord {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
    /// The record's offset.
    pub offset: i64,
    /// Timestamp, ms since the epoch (CreateTime, or LogAppendTime on topics so set).
    pub timestamp_ms: i64,
    /// Key; `None` for a null key.
    pub key: Option<Bytes>,
    /// Value; `None` for a null value.
    pub value: Option<Bytes>,
    /// Headers, in order.
    pub headers: Vec<Header>,
}

/// Consumer isolation level (KIP-98): what a fetch may return.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum IsolationLevel {
    /// Everything up to the high watermark, aborted transactions included.
    #[default]
    ReadUncommitted,
    /// Up to the last stable offset, without records of aborted transactions.
    ReadCommitted,
}

impl IsolationLevel {
    /// The wire value (0 or 1).
    pub fn code(self) -> i8 {
        match self {
            IsolationLevel::ReadUncommitted => 0,
            IsolationLevel::ReadCommitted => 1,
        }
    }
}

/// An aborted transaction in a Fetch response: `producer_id`'s records from
/// `first_offset` up to its abort marker were aborted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    /// The producer id.
    pub producer_id: i64,
    /// First offset of the aborted transaction in this partition.
    pub first_offset: i64,
}

/// What [`decode_records`] found in one fetched partition.
#[derive(Debug, Clone, Default)]
pub struct Decoded {
    /// Records at offsets `>= from_offset`, in order.
    pub records: Vec<ConsumerRecord>,
    /// One past the last whole batch (control and aborted batches included), or
    /// `from_offset` when there was none: where the next fetch starts.
    pub next_offset: i64,
}

/// Decodes the record batches of one fetched partition into records at offsets
/// `>= from_offset` (a fetch may start inside a batch), in one pass that also finds the
/// next fetch offset.
///
/// Control batches are skipped. With `aborted` (read_committed), records of aborted
/// transactions are dropped as Kafka's consumer does: a producer's transactional
/// batches are skipped from the aborted transaction's first offset to its abort marker.
/// A truncated last batch (fetch responses may end mid-batch) is ignored. A batch with
/// a bad CRC or undecodable records is an error (`CORRUPT_MESSAGE`).
pub fn decode_records(
    topic: &str,
    partition: i32,
    records: &Bytes,
    from_offset: i64,
    aborted: Option<&[AbortedTxn]>,
) -> Result<Decoded> {
    let mut out = Vec::new();
    let mut next_offset = from_offset;
    let mut aborted: Vec<AbortedTxn> = aborted.map(<[_]>::to_vec).unwrap_or_default();
    aborted.sort_by_key(|a| std::cmp::Reverse(a.first_offset));
    let mut aborting: HashSet<i64> = HashSet::new();
    let mut pos = 0usize;
    let corrupt = |what: String| Error::Kafka {
        code: kafka_protocol::error::ResponseError::CorruptMessage,
        message: Some(format!("{topic}-{partition}: {what}")),
    };
    while pos < records.len() {
        let rest = &records[pos..];
        let Ok(header) = BatchHeader::parse(rest) else {
            break; // a partial header at the end of the response
        };
        let size = header.size_in_bytes();
        if rest.len() < size {
            break; // a partial batch at the end of the response
        }
        let bytes = &rest[..size];
        pos += size;
        batch::validate(bytes)
            .map_err(|e| corrupt(format!("batch at {}: {e}", header.base_offset)))?;
        next_offset = next_offset.max(header.next_offset());
        while aborted
            .last()
            .is_some_and(|a| a.first_offset <= header.last_offset())
        {
            if let Some(a) = aborted.pop() {
                aborting.insert(a.producer_id);
            }
        }
        if header.is_control() {
            if ControlRecordType::of_batch(bytes) == Some(ControlRecordType::Abort) {
                aborting.remove(&header.producer_id);
            }
            continue;
        }
        if header.is_transactional() && aborting.contains(&header.producer_id) {
            continue;
        }
        if header.last_offset() < from_offset {
            continue;
        }
        let body = &bytes[batch::RECORD_BATCH_OVERHEAD..];
        let owned;
        let body = match header.compression() {
            Compression::None => body,
            codec => {
                owned = moldau_protocol::compression::decompress(codec, body).ok_or_else(|| {
                    corrupt(format!(
                        "batch at {} does not decompress",
                        header.base_offset
                    ))
                })?;
                &owned[..]
            }
        };
        let recs = batch::records_in(body, header.records_count).ok_or_else(|| {
            corrupt(format!(
                "records of batch at {} do not decode",
                header.base_offset
            ))
        })?;
        let log_append = header.timestamp_type() == batch::TimestampType::LogAppendTime;
        for r in recs {
            let offset = header
                .base_offset
                .checked_add(i64::from(r.offset_delta))
                .ok_or_else(|| corrupt(format!("offset delta {} overflows", r.offset_delta)))?;
            if offset < from_offset {
                continue;
            }
            let headers = r
                .headers()
                .ok_or_else(|| corrupt(format!("headers of record {offset} do not decode")))?
                .into_iter()
                .map(|(k, v)| Header {
                    key: String::from_utf8_lossy(k).into_owned(),
                    value: v.map(Bytes::copy_from_slice),
                })
                .collect();
            out.push(ConsumerRecord {
                topic: topic.to_owned(),
                partition,
                offset,
                timestamp_ms: if log_append {
                    header.max_timestamp
                } else {
                    header.base_timestamp.saturating_add(r.timestamp_delta)
                },
                key: r.key.map(Bytes::copy_from_slice),
                value: r.value.map(Bytes::copy_from_slice),
                headers,
            });
        }
    }
    Ok(Decoded {
        records: out,
        next_offset,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use moldau_protocol::batch::{BatchBuilder, ProducerFields};

    fn batch(base: i64, values: &[&str], producer: ProducerFields, codec: Compression) -> Vec<u8> {
        let mut b = BatchBuilder::default();
        for (i, v) in values.iter().enumerate() {
            b.push(
                1_000 + i as i64,
                Some(b"k"),
                Some(v.as_bytes()),
                &[(b"h", Some(b"x"))],
            );
        }
        b.finish(base, producer, codec).expect("batch")
    }

    #[test]
    fn decodes_from_an_offset_skips_aborted_and_control_and_ignores_a_torn_tail() {
        let txn = ProducerFields {
            producer_id: 7,
            producer_epoch: 0,
            base_sequence: 0,
            transactional: true,
        };
        let mut bytes = batch(0, &["a", "b", "c"], ProducerFields::NONE, Compression::Lz4);
        bytes.extend(batch(3, &["aborted"], txn, Compression::None));
        bytes.extend(batch::build_control_batch(
            4,
            0,
            7,
            0,
            ControlRecordType::Abort,
            0,
        ));
        bytes.extend(batch(5, &["d"], ProducerFields::NONE, Compression::Zstd));
        let torn = batch(6, &["e"], ProducerFields::NONE, Compression::None);
        bytes.extend(&torn[..torn.len() - 3]);
        let bytes = Bytes::from(bytes);
        let aborted = [AbortedTxn {
            producer_id: 7,
            first_offset: 3,
        }];
        let decoded = decode_records("t", 0, &bytes, 1, Some(&aborted)).expect("decode");
        assert_eq!(
            decoded.next_offset, 6,
            "past the last whole batch, not the torn one"
        );
        let got = decoded.records;
        let offsets: Vec<(i64, &[u8])> = got
            .iter()
            .map(|r| (r.offset, r.value.as_deref().unwrap_or_default()))
            .collect();
        assert_eq!(offsets, vec![(1, &b"b"[..]), (2, b"c"), (5, b"d")]);
        assert_eq!(got[0].timestamp_ms, 1_001);
        assert_eq!(got[0].headers[0].key, "h");
        let uncommitted = decode_records("t", 0, &bytes, 0, None)
            .expect("decode")
            .records;
        assert_eq!(uncommitted.len(), 5);
        let mut bad = bytes.to_vec();
        bad[70] ^= 0xff;
        assert!(decode_records("t", 0, &Bytes::from(bad), 0, None).is_err());
    }
}
