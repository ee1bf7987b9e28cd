//! A view of the Kafka v2 record-batch header (`magic = 2`), read and rewritten in place.
//!
//! The broker works on batches, never on individual records: it validates the header and
//! the CRC, assigns offsets by rewriting `baseOffset`, stamps the leader epoch, and for
//! `LogAppendTime` topics rewrites `maxTimestamp` (which the CRC covers, so the CRC is
//! recomputed). Records stay compressed and untouched.
//!
//! Layout (protocol guide, "Record Batch"; all integers big-endian):
//!
//! | offset | size | field                                                   |
//! |-------:|-----:|---------------------------------------------------------|
//! |      0 |    8 | baseOffset                                              |
//! |      8 |    4 | batchLength (bytes that follow this field)              |
//! |     12 |    4 | partitionLeaderEpoch                                    |
//! |     16 |    1 | magic (2)                                               |
//! |     17 |    4 | crc: CRC-32C of bytes `21..` (attributes to the end)    |
//! |     21 |    2 | attributes                                              |
//! |     23 |    4 | lastOffsetDelta                                         |
//! |     27 |    8 | baseTimestamp (ms)                                      |
//! |     35 |    8 | maxTimestamp (ms)                                       |
//! |     43 |    8 | producerId                                              |
//! |     51 |    2 | producerEpoch                                           |
//! |     53 |    4 | baseSequence                                            |
//! |     57 |    4 | recordsCount                                            |
//! |     61 |    … | records (compressed as a whole when attributes say so)  |
//!
//! Attributes: bits 0–2 compression (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd), bit 3
//! timestamp type (1 = LogAppendTime), bit 4 transactional, bit 5 control batch, bit 6
//! delete horizon set (KIP-534).

use thiserror::Error;

/// Bytes before `batchLength` counts: `baseOffset` (8) + `batchLength` (4).
pub const LOG_OVERHEAD: usize = 12;
/// Size of the fixed v2 batch header, records excluded.
pub const RECORD_BATCH_OVERHEAD: usize = 61;
/// The only record-batch format Moldau accepts (Kafka 4 removed v0/v1 message sets).
pub const MAGIC_V2: i8 = 2;
/// "No producer" value of `producerId`, `producerEpoch` and `baseSequence`.
pub const NO_PRODUCER_ID: i64 = -1;

const BASE_OFFSET: usize = 0;
const BATCH_LENGTH: usize = 8;
const PARTITION_LEADER_EPOCH: usize = 12;
const MAGIC: usize = 16;
const CRC: usize = 17;
const ATTRIBUTES: usize = 21;
const LAST_OFFSET_DELTA: usize = 23;
const BASE_TIMESTAMP: usize = 27;
const MAX_TIMESTAMP: usize = 35;
const PRODUCER_ID: usize = 43;
const PRODUCER_EPOCH: usize = 51;
const BASE_SEQUENCE: usize = 53;
const RECORDS_COUNT: usize = 57;

const COMPRESSION_MASK: i16 = 0x07;
const TIMESTAMP_TYPE_BIT: i16 = 0x08;
const TRANSACTIONAL_BIT: i16 = 0x10;
const CONTROL_BIT: i16 = 0x20;

/// Why bytes are not a valid v2 record batch.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BatchError {
    /// Fewer bytes than the header or the declared `batchLength` need (a torn write).
    #[error("record batch truncated: need {needed} bytes, have {available}")]
    Truncated {
        /// Bytes the header says the batch occupies (or the header size).
        needed: usize,
        /// Bytes actually present.
        available: usize,
    },
    /// `magic` is not 2.
    #[error("unsupported record batch magic {0} (only v2 is accepted)")]
    InvalidMagic(i8),
    /// `batchLength` is smaller than a header or not representable.
    #[error("invalid record batch length {0}")]
    InvalidLength(i32),
    /// Stored CRC-32C does not match the bytes.
    #[error("record batch CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CorruptCrc {
        /// CRC found in the batch header.
        stored: u32,
        /// CRC-32C computed over `attributes..end`.
        computed: u32,
    },
    /// `recordsCount` and `lastOffsetDelta` disagree, or a count is negative.
    #[error("invalid record count {count} with last offset delta {last_offset_delta}")]
    InvalidRecordCount {
        /// `recordsCount` field.
        count: i32,
        /// `lastOffsetDelta` field.
        last_offset_delta: i32,
    },
}

/// Compression codec of a batch (attributes bits 0–2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Codec 0.
    None,
    /// Codec 1.
    Gzip,
    /// Codec 2.
    Snappy,
    /// Codec 3.
    Lz4,
    /// Codec 4.
    Zstd,
    /// Codecs 5–7 are not defined by Kafka.
    Unknown(u8),
}

impl Compression {
    /// The codec's number in attributes bits 0–2 (`Unknown(n)` gives `n & 7`).
    pub fn id(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
            Compression::Unknown(n) => n & COMPRESSION_MASK as u8,
        }
    }
}

/// Timestamp type of a batch (attributes bit 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    /// Timestamps are the producer's (`message.timestamp.type=CreateTime`).
    CreateTime,
    /// The broker's append time replaces `maxTimestamp` (`LogAppendTime`).
    LogAppendTime,
}

/// The decoded fixed header of one v2 record batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Offset of the first record.
    pub base_offset: i64,
    /// Bytes after the `batchLength` field; the whole batch is `LOG_OVERHEAD + batch_length`.
    pub batch_length: i32,
    /// Leader epoch of the leader that appended the batch (-1 from producers).
    pub partition_leader_epoch: i32,
    /// Always 2 for a parsed header.
    pub magic: i8,
    /// Stored CRC-32C.
    pub crc: u32,
    /// Raw attributes.
    pub attributes: i16,
    /// `last offset - base offset`.
    pub last_offset_delta: i32,
    /// Timestamp of the first record, ms since the epoch.
    pub base_timestamp: i64,
    /// Largest record timestamp (or the append time under LogAppendTime), ms.
    pub max_timestamp: i64,
    /// Idempotent producer id, or -1.
    pub producer_id: i64,
    /// Producer epoch, or -1.
    pub producer_epoch: i16,
    /// Sequence number of the first record, or -1.
    pub base_sequence: i32,
    /// Number of records in the batch.
    pub records_count: i32,
}

fn i16_at(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
fn i32_at(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn i64_at(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

impl BatchHeader {
    /// Parses the header at the start of `buf` without checking the CRC or that the whole
    /// batch is present. Errors: [`BatchError::Truncated`] if `buf` is shorter than the
    /// fixed header, [`BatchError::InvalidMagic`], [`BatchError::InvalidLength`].
    pub fn parse(buf: &[u8]) -> Result<BatchHeader, BatchError> {
        if buf.len() < RECORD_BATCH_OVERHEAD {
            // Report the magic first when it is present: a v0/v1 message set is shorter.
            if buf.len() > MAGIC && buf[MAGIC] as i8 != MAGIC_V2 {
                return Err(BatchError::InvalidMagic(buf[MAGIC] as i8));
            }
            return Err(BatchError::Truncated {
                needed: RECORD_BATCH_OVERHEAD,
                available: buf.len(),
            });
        }
        let magic = buf[MAGIC] as i8;
        if magic != MAGIC_V2 {
            return Err(BatchError::InvalidMagic(magic));
        }
        let batch_length = i32_at(buf, BATCH_LENGTH);
        if batch_length < (RECORD_BATCH_OVERHEAD - LOG_OVERHEAD) as i32 {
            return Err(BatchError::InvalidLength(batch_length));
        }
        Ok(BatchHeader {
            base_offset: i64_at(buf, BASE_OFFSET),
            batch_length,
            partition_leader_epoch: i32_at(buf, PARTITION_LEADER_EPOCH),
            magic,
            crc: i32_at(buf, CRC) as u32,
            attributes: i16_at(buf, ATTRIBUTES),
            last_offset_delta: i32_at(buf, LAST_OFFSET_DELTA),
            base_timestamp: i64_at(buf, BASE_TIMESTAMP),
            max_timestamp: i64_at(buf, MAX_TIMESTAMP),
            producer_id: i64_at(buf, PRODUCER_ID),
            producer_epoch: i16_at(buf, PRODUCER_EPOCH),
            base_sequence: i32_at(buf, BASE_SEQUENCE),
            records_count: i32_at(buf, RECORDS_COUNT),
        })
    }

    /// Total bytes of the batch on the wire and on disk.
    pub fn size_in_bytes(&self) -> usize {
        LOG_OVERHEAD + self.batch_length as usize
    }

    /// Offset of the last record (inclusive). Saturates rather than overflow on a
    /// header read off the network (`baseOffset` is not covered by the CRC).
    pub fn last_offset(&self) -> i64 {
        self.base_offset
            .saturating_add(i64::from(self.last_offset_delta))
    }

    /// Offset right after the batch (exclusive end), saturating as [`Self::last_offset`].
    pub fn next_offset(&self) -> i64 {
        self.last_offset().saturating_add(1)
    }

    /// Compression codec.
    pub fn compression(&self) -> Compression {
        match (self.attributes & COMPRESSION_MASK) as u8 {
            0 => Compression::None,
            1 => Compression::Gzip,
            2 => Compression::Snappy,
            3 => Compression::Lz4,
            4 => Compression::Zstd,
            n => Compression::Unknown(n),
        }
    }

    /// Timestamp type.
    pub fn timestamp_type(&self) -> TimestampType {
        if self.attributes & TIMESTAMP_TYPE_BIT != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }

    /// Part of a transaction.
    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_BIT != 0
    }

    /// A control batch (transaction marker).
    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_BIT != 0
    }

    /// Checks the producer-side invariants Kafka's `LogValidator` enforces before
    /// offsets are assigned: at least one record and `lastOffsetDelta == recordsCount - 1`.
    pub fn validate_record_count(&self) -> Result<(), BatchError> {
        if self.records_count < 1 || self.last_offset_delta != self.records_count - 1 {
            return Err(BatchError::InvalidRecordCount {
                count: self.records_count,
                last_offset_delta: self.last_offset_delta,
            });
        }
        Ok(())
    }
}

/// CRC-32C over `attributes..end` of a whole batch (`batch.len() >= RECORD_BATCH_OVERHEAD`).
pub fn compute_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c(&batch[ATTRIBUTES..])
}

/// Parses and fully validates the batch at the start of `buf`: header, that all
/// `size_in_bytes()` are present, and the CRC. Returns the header; the batch is
/// `&buf[..header.size_in_bytes()]`.
pub fn validate(buf: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = BatchHeader::parse(buf)?;
    let size = header.size_in_bytes();
    if buf.len() < size {
        return Err(BatchError::Truncated {
            needed: size,
            available: buf.len(),
        });
    }
    let computed = compute_crc(&buf[..size]);
    if computed != header.crc {
        return Err(BatchError::CorruptCrc {
            stored: header.crc,
            computed,
        });
    }
    Ok(header)
}

/// Rewrites `baseOffset` (not covered by the CRC). `batch` must hold a whole header.
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) {
    batch[BASE_OFFSET..BASE_OFFSET + 8].copy_from_slice(&base_offset.to_be_bytes());
}

/// Rewrites `partitionLeaderEpoch` (not covered by the CRC).
pub fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) {
    batch[PARTITION_LEADER_EPOCH..PARTITION_LEADER_EPOCH + 4].copy_from_slice(&epoch.to_be_bytes());
}

/// Marks the batch `LogAppendTime` with `append_time_ms` as its `maxTimestamp`, and
/// recomputes the CRC (both fields are covered by it). `batch` must be one whole batch.
pub fn set_log_append_time(batch: &mut [u8], append_time_ms: i64) {
    let attributes = i16_at(batch, ATTRIBUTES) | TIMESTAMP_TYPE_BIT;
    batch[ATTRIBUTES..ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
    batch[MAX_TIMESTAMP..MAX_TIMESTAMP + 8].copy_from_slice(&append_time_ms.to_be_bytes());
    let crc = compute_crc(batch);
    batch[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Re-encodes a batch around a new records section (the log cleaner's rewrite, Kafka
/// `MemoryRecords.filterTo`): copies the 61-byte header of `batch` (base offset, leader
/// epoch, lastOffsetDelta, both timestamps, producer fields and the other attribute bits
/// stay as they are), sets the codec bits to `compression`, `recordsCount` to
/// `records_count`, `batchLength` to fit `records` (the records section, already
/// compressed with `compression` if it is not `None`), and recomputes the CRC. An empty
/// `records` with `records_count == 0` gives Kafka's "empty batch" that only keeps the
/// offset range. Errors: [`BatchError::Truncated`] if `batch` is shorter than a header,
/// [`BatchError::InvalidLength`] if the result would not fit `batchLength` (an `i32`).
pub fn with_records(
    batch: &[u8],
    compression: Compression,
    records_count: i32,
    records: &[u8],
) -> Result<Vec<u8>, BatchError> {
    let header = batch
        .get(..RECORD_BATCH_OVERHEAD)
        .ok_or(BatchError::Truncated {
            needed: RECORD_BATCH_OVERHEAD,
            available: batch.len(),
        })?;
    let length = i32::try_from(RECORD_BATCH_OVERHEAD - LOG_OVERHEAD + records.len())
        .map_err(|_| BatchError::InvalidLength(i32::MAX))?;
    let mut out = Vec::with_capacity(RECORD_BATCH_OVERHEAD + records.len());
    out.extend_from_slice(header);
    out.extend_from_slice(records);
    out[BATCH_LENGTH..BATCH_LENGTH + 4].copy_from_slice(&length.to_be_bytes());
    let attributes = (i16_at(&out, ATTRIBUTES) & !COMPRESSION_MASK) | i16::from(compression.id());
    out[ATTRIBUTES..ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
    out[RECORDS_COUNT..RECORDS_COUNT + 4].copy_from_slice(&records_count.to_be_bytes());
    let crc = compute_crc(&out);
    out[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
    Ok(out)
}

/// Iterates the batches laid end to end in `buf` (a produce request's `records` field or
/// a range of a segment file), validating each (header, length, CRC). Yields
/// `(position, header)`; stops after the first error, which it yields.
pub struct BatchIter<'a> {
    buf: &'a [u8],
    pos: usize,
    failed: bool,
}

impl<'a> BatchIter<'a> {
    /// Starts at the beginning of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self {
            buf,
            pos: 0,
            failed: false,
        }
    }

    /// Bytes consumed by the batches yielded so far.
    pub fn position(&self) -> usize {
        self.pos
    }
}

impl Iterator for BatchIter<'_> {
    type Item = Result<(usize, BatchHeader), BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.buf.len() {
            return None;
        }
        match validate(&self.buf[self.pos..]) {
            Ok(header) => {
                let at = self.pos;
                self.pos += header.size_in_bytes();
                Some(Ok((at, header)))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// One record inside an uncompressed v2 batch (protocol guide, "Record").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<'a> {
    /// The record's complete encoding, from its leading `length` varint to the end of
    /// its headers, so it can be copied verbatim into another batch with the same base
    /// offset and base timestamp (the log cleaner does this; the deltas stay valid).
    pub raw: &'a [u8],
    /// Offset relative to the batch's base offset.
    pub offset_delta: i32,
    /// Timestamp relative to the batch's base timestamp, ms.
    pub timestamp_delta: i64,
    /// Key bytes, `None` for a null key.
    pub key: Option<&'a [u8]>,
    /// Value bytes, `None` for a null value (a tombstone).
    pub value: Option<&'a [u8]>,
    /// The encoded headers section (a varint count, then each header); parse it with
    /// [`Record::headers`].
    pub headers_raw: &'a [u8],
}

/// One record header: a key (UTF-8 on the wire, but read here as bytes) and an optional
/// value (protocol guide, "Record Header").
pub type RecordHeader<'a> = (&'a [u8], Option<&'a [u8]>);

impl<'a> Record<'a> {
    /// The record's headers in order; `None` if the section is malformed.
    pub fn headers(&self) -> Option<Vec<RecordHeader<'a>>> {
        let buf = self.headers_raw;
        let mut pos = 0;
        let count = usize::try_from(read_varint(buf, &mut pos)?).ok()?;
        // Each header takes at least two bytes, so a count beyond that is a lie.
        let mut out = Vec::with_capacity(count.min(buf.len() / 2));
        for _ in 0..count {
            let key = read_nullable(buf, &mut pos)??;
            let value = read_nullable(buf, &mut pos)?;
            out.push((key, value));
        }
        Some(out)
    }
}

fn read_varint(buf: &[u8], pos: &mut usize) -> Option<i64> {
    let mut z: u64 = 0;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos)?;
        *pos += 1;
        z |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(((z >> 1) as i64) ^ -((z & 1) as i64));
        }
    }
    None
}

fn read_nullable<'a>(buf: &'a [u8], pos: &mut usize) -> Option<Option<&'a [u8]>> {
    let len = read_varint(buf, pos)?;
    if len < 0 {
        return Some(None);
    }
    let end = pos.checked_add(usize::try_from(len).ok()?)?;
    let bytes = buf.get(*pos..end)?;
    *pos = end;
    Some(Some(bytes))
}

/// Walks the records of one whole, validated, *uncompressed* batch. Headers are left
/// encoded ([`Record::headers`] parses them).
/// Returns `None` if the batch is compressed or a record is malformed (never panics on
/// bad bytes).
pub fn records(batch: &[u8]) -> Option<Vec<Record<'_>>> {
    let header = BatchHeader::parse(batch).ok()?;
    if header.compression() != Compression::None || batch.len() < header.size_in_bytes() {
        return None;
    }
    records_in(
        &batch[RECORD_BATCH_OVERHEAD..header.size_in_bytes()],
        header.records_count,
    )
}

/// Walks `count` records laid end to end in `body`: the records section of an
/// uncompressed batch, or the decompressed records of a compressed one. Returns `None`
/// if a record is malformed or `body` ends early.
pub fn records_in(body: &[u8], count: i32) -> Option<Vec<Record<'_>>> {
    // `count` comes from the peer: reserve no more than `body` can hold.
    let fit = body.len() / MIN_RECORD_BYTES;
    let mut out = Vec::with_capacity(usize::try_from(count).ok()?.min(fit));
    for_each_record(body, count, |_, r| out.push(r))?;
    Some(out)
}

/// The smallest encoded record: length, attributes, timestamp delta, offset delta, key
/// length, value length and header count, one byte each.
const MIN_RECORD_BYTES: usize = 7;

/// [`records_in`] without collecting: calls `f(index, record)` for each of the `count`
/// records in `body`, allocating nothing. `None` if a record is malformed or `body`
/// ends early (records before it were passed to `f`).
pub fn for_each_record<'a>(
    body: &'a [u8],
    count: i32,
    mut f: impl FnMut(usize, Record<'a>),
) -> Option<()> {
    let mut pos = 0;
    for index in 0..usize::try_from(count).ok()? {
        let start = pos;
        let len = usize::try_from(read_varint(body, &mut pos)?).ok()?;
        let end = pos.checked_add(len)?;
        let rec = body.get(pos..end)?;
        let raw = body.get(start..end)?;
        pos = end;
        let mut p = 1; // attributes byte, unused
        let timestamp_delta = read_varint(rec, &mut p)?;
        let offset_delta = i32::try_from(read_varint(rec, &mut p)?).ok()?;
        let key = read_nullable(rec, &mut p)?;
        let value = read_nullable(rec, &mut p)?;
        f(
            index,
            Record {
                raw,
                offset_delta,
                timestamp_delta,
                key,
                value,
                headers_raw: rec.get(p..)?,
            },
        );
    }
    Some(())
}

/// A record's optional key and optional value, as [`build_batch`] takes them.
pub type KeyValue<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);

/// The producer fields of a v2 batch header (KIP-98): who wrote it and where it sits in
/// that producer's sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerFields {
    /// `producerId`, [`NO_PRODUCER_ID`] for none.
    pub producer_id: i64,
    /// `producerEpoch`, -1 for none.
    pub producer_epoch: i16,
    /// `baseSequence`: sequence number of the first record, -1 for none.
    pub base_sequence: i32,
    /// Sets the `isTransactional` attribute bit.
    pub transactional: bool,
}

impl ProducerFields {
    /// No producer: what non-idempotent clients write.
    pub const NONE: ProducerFields = ProducerFields {
        producer_id: NO_PRODUCER_ID,
        producer_epoch: -1,
        base_sequence: -1,
        transactional: false,
    };
}

/// The two control record types of a transaction marker (Kafka `ControlRecordType`):
/// the control record's key is `version: int16 (0)` then `type: int16`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlRecordType {
    /// Type 0: the producer's transaction was aborted.
    Abort,
    /// Type 1: the producer's transaction was committed.
    Commit,
}

impl ControlRecordType {
    /// Wire value of the `type` field.
    pub fn id(self) -> i16 {
        match self {
            ControlRecordType::Abort => 0,
            ControlRecordType::Commit => 1,
        }
    }

    /// Reads the type from a control batch (the key of its first record); `None` if the
    /// batch is not a control batch or its key is not a known marker.
    pub fn of_batch(batch: &[u8]) -> Option<ControlRecordType> {
        let header = BatchHeader::parse(batch).ok()?;
        if !header.is_control() {
            return None;
        }
        let record = records(batch)?.into_iter().next()?;
        let key = record.key?;
        if key.len() < 4 {
            return None;
        }
        match i16::from_be_bytes([key[2], key[3]]) {
            0 => Some(ControlRecordType::Abort),
            1 => Some(ControlRecordType::Commit),
            _ => None,
        }
    }
}

/// Builds a transaction marker (KIP-98 control batch): one record whose key is
/// `version 0, type` and whose value is `version 0, coordinator_epoch: int32`; the batch
/// is transactional and control, with `producer_id`/`producer_epoch` of the transaction
/// and `baseSequence` -1. Written by the partition leader on `WriteTxnMarkers`.
pub fn build_control_batch(
    base_offset: i64,
    timestamp_ms: i64,
    producer_id: i64,
    producer_epoch: i16,
    kind: ControlRecordType,
    coordinator_epoch: i32,
) -> Vec<u8> {
    let mut key = Vec::with_capacity(4);
    key.extend_from_slice(&0i16.to_be_bytes());
    key.extend_from_slice(&kind.id().to_be_bytes());
    let mut value = Vec::with_capacity(6);
    value.extend_from_slice(&0i16.to_be_bytes());
    value.extend_from_slice(&coordinator_epoch.to_be_bytes());
    let producer = ProducerFields {
        producer_id,
        producer_epoch,
        base_sequence: -1,
        transactional: true,
    };
    let mut b = build_batch_with(
        base_offset,
        timestamp_ms,
        &[(Some(&key), Some(&value))],
        producer,
    );
    let attributes = TRANSACTIONAL_BIT | CONTROL_BIT;
    b[ATTRIBUTES..ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
    let crc = compute_crc(&b);
    b[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
    b
}

/// Builds one uncompressed v2 batch from `(key, value)` pairs: how the group
/// coordinator writes `__consumer_offsets`, and a helper for tests and tools. Records
/// carry no headers; timestamps are all `timestamp_ms`; no producer id. `records` must
/// not be empty (the batch would claim `lastOffsetDelta` -1).
pub fn build_batch(base_offset: i64, timestamp_ms: i64, records: &[KeyValue<'_>]) -> Vec<u8> {
    build_batch_with(base_offset, timestamp_ms, records, ProducerFields::NONE)
}

/// [`build_batch`] with producer fields: how transactional offset commits are written
/// (and how tests write idempotent or transactional batches).
pub fn build_batch_with(
    base_offset: i64,
    timestamp_ms: i64,
    records: &[KeyValue<'_>],
    producer: ProducerFields,
) -> Vec<u8> {
    let mut builder = BatchBuilder::default();
    for (key, value) in records {
        builder.push(timestamp_ms, *key, *value, &[]);
    }
    builder.finish_uncompressed(base_offset, producer)
}

fn put_varint(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    loop {
        if z < 0x80 {
            out.push(z as u8);
            return;
        }
        out.push((z as u8 & 0x7f) | 0x80);
        z >>= 7;
    }
}

fn varint_len(v: i64) -> usize {
    let z = ((v << 1) ^ (v >> 63)) as u64;
    (64 - z.leading_zeros() as usize).max(1).div_ceil(7)
}

fn put_nullable(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        Some(b) => {
            put_varint(out, b.len() as i64);
            out.extend_from_slice(b);
        }
        None => put_varint(out, -1),
    }
}

fn nullable_len(bytes: Option<&[u8]>) -> usize {
    bytes.map_or(1, |b| varint_len(b.len() as i64) + b.len())
}

/// Builds one v2 batch record by record, as a producer fills a batch up to `batch.size`
/// (protocol guide, "Record Batch" and "Record").
///
/// Record `i` gets offset delta `i`; the first record's timestamp is the batch's base
/// timestamp and later ones are stored as deltas from it; `maxTimestamp` is the largest.
/// [`BatchBuilder::finish`] compresses the records section as a whole and fills the CRC.
#[derive(Debug, Default, Clone)]
pub struct BatchBuilder {
    body: Vec<u8>,
    count: i32,
    base_timestamp: i64,
    max_timestamp: i64,
}

impl BatchBuilder {
    /// Exact bytes [`BatchBuilder::push`] with these arguments would add to the records
    /// section (uncompressed), for a producer deciding whether a record still fits in
    /// `batch.size`.
    pub fn next_record_size(
        &self,
        timestamp_ms: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[RecordHeader<'_>],
    ) -> usize {
        let timestamp_delta = if self.count == 0 {
            0
        } else {
            timestamp_ms.wrapping_sub(self.base_timestamp)
        };
        let inner = 1
            + varint_len(timestamp_delta)
            + varint_len(i64::from(self.count))
            + nullable_len(key)
            + nullable_len(value)
            + varint_len(headers.len() as i64)
            + headers
                .iter()
                .map(|(k, v)| nullable_len(Some(k)) + nullable_len(*v))
                .sum::<usize>();
        varint_len(inner as i64) + inner
    }

    /// Appends one record (`timestamp_ms`: CreateTime, ms since the epoch).
    pub fn push(
        &mut self,
        timestamp_ms: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[RecordHeader<'_>],
    ) {
        if self.count == 0 {
            self.base_timestamp = timestamp_ms;
            self.max_timestamp = timestamp_ms;
        }
        self.max_timestamp = self.max_timestamp.max(timestamp_ms);
        let mut rec = Vec::with_capacity(self.next_record_size(timestamp_ms, key, value, headers));
        rec.push(0); // attributes, unused
        put_varint(&mut rec, timestamp_ms.wrapping_sub(self.base_timestamp));
        put_varint(&mut rec, i64::from(self.count));
        put_nullable(&mut rec, key);
        put_nullable(&mut rec, value);
        put_varint(&mut rec, headers.len() as i64);
        for (k, v) in headers {
            put_nullable(&mut rec, Some(k));
            put_nullable(&mut rec, *v);
        }
        put_varint(&mut self.body, rec.len() as i64);
        self.body.extend_from_slice(&rec);
        self.count += 1;
    }

    /// Records pushed so far.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// Whether no record was pushed.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Size of the batch if finished uncompressed, bytes (header included).
    pub fn size_in_bytes(&self) -> usize {
        RECORD_BATCH_OVERHEAD + self.body.len()
    }

    /// The finished batch with its records section compressed by `compression`, CRC
    /// filled. `None` if no record was pushed or the codec failed or is unknown.
    pub fn finish(
        &self,
        base_offset: i64,
        producer: ProducerFields,
        compression: Compression,
    ) -> Option<Vec<u8>> {
        if self.count == 0 {
            return None;
        }
        if compression == Compression::None {
            return Some(self.finish_uncompressed(base_offset, producer));
        }
        let packed = crate::compression::compress(compression, &self.body)?;
        Some(self.encode(base_offset, producer, compression, &packed))
    }

    fn finish_uncompressed(&self, base_offset: i64, producer: ProducerFields) -> Vec<u8> {
        self.encode(base_offset, producer, Compression::None, &self.body)
    }

    fn encode(
        &self,
        base_offset: i64,
        producer: ProducerFields,
        compression: Compression,
        records: &[u8],
    ) -> Vec<u8> {
        let mut b = Vec::with_capacity(RECORD_BATCH_OVERHEAD + records.len());
        b.extend_from_slice(&base_offset.to_be_bytes());
        b.extend_from_slice(
            &((RECORD_BATCH_OVERHEAD - LOG_OVERHEAD + records.len()) as i32).to_be_bytes(),
        );
        b.extend_from_slice(&(-1i32).to_be_bytes());
        b.push(MAGIC_V2 as u8);
        b.extend_from_slice(&[0; 4]); // crc, filled below
        let mut attributes = i16::from(compression.id());
        if producer.transactional {
            attributes |= TRANSACTIONAL_BIT;
        }
        b.extend_from_slice(&attributes.to_be_bytes());
        b.extend_from_slice(&(self.count - 1).to_be_bytes());
        b.extend_from_slice(&self.base_timestamp.to_be_bytes());
        b.extend_from_slice(&self.max_timestamp.to_be_bytes());
        b.extend_from_slice(&producer.producer_id.to_be_bytes());
        b.extend_from_slice(&producer.producer_epoch.to_be_bytes());
        b.extend_from_slice(&producer.base_sequence.to_be_bytes());
        b.extend_from_slice(&self.count.to_be_bytes());
        b.extend_from_slice(records);
        let crc = compute_crc(&b);
        b[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_round_trips_headers_timestamps_and_every_codec() {
        for codec in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let mut b = BatchBuilder::default();
            let headers: [RecordHeader<'_>; 2] = [(b"h1", Some(b"v1")), (b"h2", None)];
            let mut expected_size = RECORD_BATCH_OVERHEAD;
            for i in 0..200i64 {
                let value = format!("value-{i}");
                let hs: &[RecordHeader<'_>] = if i % 2 == 0 { &headers } else { &[] };
                expected_size +=
                    b.next_record_size(1_000 + i * 3, Some(b"k"), Some(value.as_bytes()), hs);
                b.push(1_000 + i * 3, Some(b"k"), Some(value.as_bytes()), hs);
            }
            assert_eq!(b.len(), 200);
            assert_eq!(
                b.size_in_bytes(),
                expected_size,
                "{codec:?} sizes are exact"
            );
            let producer = ProducerFields {
                producer_id: 9,
                producer_epoch: 1,
                base_sequence: 40,
                transactional: false,
            };
            let batch = b.finish(100, producer, codec).expect("finish");
            let h = validate(&batch).expect("valid batch");
            assert_eq!(h.compression(), codec);
            assert_eq!(
                (h.base_offset, h.last_offset_delta, h.records_count),
                (100, 199, 200)
            );
            assert_eq!(
                (h.base_timestamp, h.max_timestamp),
                (1_000, 1_000 + 199 * 3)
            );
            assert_eq!(
                (h.producer_id, h.producer_epoch, h.base_sequence),
                (9, 1, 40)
            );
            let body = crate::compression::decompress(codec, &batch[RECORD_BATCH_OVERHEAD..])
                .expect("decompress");
            let recs = records_in(&body, h.records_count).expect("records");
            assert_eq!(recs[7].value, Some(&b"value-7"[..]));
            assert_eq!(recs[7].timestamp_delta, 21);
            assert_eq!(recs[7].headers(), Some(vec![]));
            assert_eq!(recs[8].headers(), Some(headers.to_vec()));
        }
        assert_eq!(
            BatchBuilder::default().finish(0, ProducerFields::NONE, Compression::None),
            None
        );
    }

    #[test]
    fn control_batch_round_trips_its_marker() {
        let b = build_control_batch(7, 1000, 42, 3, ControlRecordType::Commit, 5);
        let h = validate(&b).expect("a valid control batch");
        assert!(h.is_control() && h.is_transactional());
        assert_eq!(
            (h.producer_id, h.producer_epoch, h.base_sequence),
            (42, 3, -1)
        );
        assert_eq!(
            ControlRecordType::of_batch(&b),
            Some(ControlRecordType::Commit)
        );
        let abort = build_control_batch(0, 0, 1, 0, ControlRecordType::Abort, 0);
        assert_eq!(
            ControlRecordType::of_batch(&abort),
            Some(ControlRecordType::Abort)
        );
        let plain = build_batch(0, 0, &[(Some(b"k"), Some(b"v"))]);
        assert_eq!(ControlRecordType::of_batch(&plain), None);
    }

    #[test]
    fn built_batch_validates_and_rewrites_in_place() {
        let mut b = build_batch(0, 1_000, &[(Some(b"k"), Some(b"v1")), (None, Some(b"v2"))]);
        let h = validate(&b).expect("valid");
        assert_eq!(h.records_count, 2);
        assert_eq!(h.last_offset_delta, 1);
        h.validate_record_count().expect("count");
        set_base_offset(&mut b, 42);
        set_partition_leader_epoch(&mut b, 7);
        let h = validate(&b).expect("offset and epoch are outside the CRC");
        assert_eq!(
            (h.base_offset, h.last_offset(), h.partition_leader_epoch),
            (42, 43, 7)
        );
        let recs = records(&b).expect("uncompressed");
        assert_eq!(recs.len(), 2);
        assert_eq!(
            (recs[0].key, recs[0].value),
            (Some(&b"k"[..]), Some(&b"v1"[..]))
        );
        assert_eq!((recs[1].offset_delta, recs[1].key), (1, None));
        set_log_append_time(&mut b, 5_000);
        let h = validate(&b).expect("CRC recomputed");
        assert_eq!(h.timestamp_type(), TimestampType::LogAppendTime);
        assert_eq!(h.max_timestamp, 5_000);
    }

    #[test]
    fn raw_records_rebuild_an_equal_batch() {
        let b = build_batch(
            7,
            1_000,
            &[
                (Some(b"a"), Some(b"1")),
                (Some(b"b"), None),
                (None, Some(b"3")),
            ],
        );
        let recs = records(&b).expect("uncompressed");
        let all: Vec<u8> = recs.iter().flat_map(|r| r.raw.iter().copied()).collect();
        assert_eq!(&all[..], &b[RECORD_BATCH_OVERHEAD..]);
        let same = with_records(&b, Compression::None, 3, &all).expect("rebuild");
        assert_eq!(same, b);
        // Keep only the second record: header fields stay, count/length/CRC change.
        let one = with_records(&b, Compression::None, 1, recs[1].raw).expect("rebuild");
        let h = validate(&one).expect("valid");
        assert_eq!((h.base_offset, h.last_offset(), h.records_count), (7, 9, 1));
        let kept = records(&one).expect("uncompressed");
        assert_eq!(
            (kept[0].offset_delta, kept[0].key, kept[0].value),
            (1, Some(&b"b"[..]), None)
        );
        let empty = with_records(&b, Compression::Gzip, 0, &[]).expect("rebuild");
        let h = validate(&empty).expect("valid");
        assert_eq!(
            (h.records_count, h.size_in_bytes(), h.compression()),
            (0, RECORD_BATCH_OVERHEAD, Compression::Gzip)
        );
        assert!(matches!(
            with_records(&b[..20], Compression::None, 0, &[]),
            Err(BatchError::Truncated { .. })
        ));
        assert_eq!(Compression::Unknown(6).id(), 6);
    }

    #[test]
    fn corruption_and_truncation_are_detected() {
        let b = build_batch(0, 1, &[(None, Some(b"hello"))]);
        let mut bad = b.clone();
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        assert!(matches!(validate(&bad), Err(BatchError::CorruptCrc { .. })));
        assert!(matches!(
            validate(&b[..b.len() - 1]),
            Err(BatchError::Truncated { .. })
        ));
        assert!(matches!(
            validate(&b[..10]),
            Err(BatchError::Truncated { .. })
        ));
        let mut v1 = b.clone();
        v1[MAGIC] = 1;
        assert_eq!(validate(&v1), Err(BatchError::InvalidMagic(1)));
    }

    #[test]
    fn iterator_stops_at_first_bad_batch() {
        let mut buf = build_batch(0, 1, &[(None, Some(b"a"))]);
        buf.extend(build_batch(1, 1, &[(None, Some(b"b"))]));
        let good = buf.len();
        buf.extend_from_slice(&[0u8; 20]);
        let items: Vec<_> = BatchIter::new(&buf).collect();
        assert_eq!(items.len(), 3);
        assert!(items[0].is_ok() && items[1].is_ok() && items[2].is_err());
        let mut it = BatchIter::new(&buf[..good]);
        while it.next().is_some() {}
        assert_eq!(it.position(), good);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            for item in BatchIter::new(&data) {
                let _ = item;
            }
        }
    }
}
