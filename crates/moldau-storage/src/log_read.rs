//! The read side of [`Log`]: fetch, ListOffsets by timestamp, and KIP-734's max timestamp.

use bytes::Bytes;
use moldau_protocol::batch::{BatchHeader, TimestampType};

use crate::error::{Result, StorageError};
use crate::log::{FetchDataInfo, Log};
use crate::records;
use crate::segment::Segment;

impl Log {
    /// Fetch (Kafka `UnifiedLog.read`): whole batches starting with the batch that
    /// CONTAINS `start_offset` (so a fetch inside a compressed batch returns that batch),
    /// then following batches, across segment boundaries, while the total stays within
    /// `max_bytes` (bytes). With `min_one_batch`, a first batch larger than `max_bytes` is
    /// returned alone anyway (KIP-74). No batch whose last offset is `>= max_offset`
    /// (exclusive bound: the high watermark or LSO) is returned.
    ///
    /// `start_offset == log_end_offset` or `start_offset >= max_offset` gives empty
    /// records. Errors: [`StorageError::OffsetOutOfRange`] if `start_offset <
    /// log_start_offset` or `> log_end_offset`; [`StorageError::CorruptSegment`],
    /// [`StorageError::Io`]; [`StorageError::Poisoned`] once a write or fsync failed.
    ///
    /// Cost: one binary search of the `.index`, a header scan of at most about
    /// `index.interval.bytes` plus one batch (16 KiB reads), then one positional read of
    /// the returned range per segment touched. Allocates at most `max_bytes` (or the one
    /// oversized batch) for the result.
    pub fn read(
        &self,
        start_offset: i64,
        max_bytes: usize,
        max_offset: i64,
        min_one_batch: bool,
    ) -> Result<FetchDataInfo> {
        if self.is_poisoned() {
            return Err(StorageError::Poisoned);
        }
        let leo = self.log_end_offset();
        if start_offset < self.log_start_offset || start_offset > leo {
            return Err(StorageError::OffsetOutOfRange {
                offset: start_offset,
                log_start_offset: self.log_start_offset,
                log_end_offset: leo,
            });
        }
        let mut out: Vec<u8> = Vec::new();
        let mut first_batch_offset = None;
        let mut end_offset = None;
        if start_offset >= leo || start_offset >= max_offset {
            return Ok(FetchDataInfo {
                records: Bytes::new(),
                first_batch_offset,
                end_offset,
            });
        }
        let mut target = start_offset;
        for segment in &self.segments[self.segment_index_for(start_offset)..] {
            let budget = max_bytes.saturating_sub(out.len());
            let force_one = min_one_batch && out.is_empty();
            if budget == 0 && !force_one {
                break;
            }
            let Some((pos, header)) = segment.find_batch(target)? else {
                continue;
            };
            if header.last_offset() >= max_offset {
                break;
            }
            let size = header.size_in_bytes();
            if size > budget {
                if force_one {
                    out.resize(size, 0);
                    segment.read_at(&mut out, pos)?;
                    first_batch_offset = Some(header.base_offset);
                    end_offset = Some(header.next_offset());
                }
                break;
            }
            // The first `.index` entry at or above `max_offset` marks a batch that must
            // not be returned: read no further than its position.
            let limit = segment
                .ix
                .offset
                .first_at_or_after(max_offset)
                .map_or(segment.size, |(_, p)| p.min(segment.size));
            let want = limit.saturating_sub(pos).min(budget as u64) as usize;
            let old = out.len();
            out.resize(old + want, 0);
            segment.read_at(&mut out[old..], pos)?;
            let mut accepted = 0usize;
            let mut hit_bound = false;
            while accepted < want {
                let Ok(h) = BatchHeader::parse(&out[old + accepted..]) else {
                    break;
                };
                let batch_size = h.size_in_bytes();
                if batch_size > want - accepted {
                    break;
                }
                if h.last_offset() >= max_offset {
                    hit_bound = true;
                    break;
                }
                first_batch_offset.get_or_insert(h.base_offset);
                end_offset = Some(h.next_offset());
                accepted += batch_size;
            }
            out.truncate(old + accepted);
            if hit_bound || pos + accepted as u64 != segment.size {
                break;
            }
            target = segment.next_offset;
        }
        Ok(FetchDataInfo {
            records: Bytes::from(out),
            first_batch_offset,
            end_offset,
        })
    }

    /// ListOffsets by timestamp (protocol guide "ListOffsets", KIP-79; Kafka
    /// `UnifiedLog.fetchOffsetByTimestamp`): `(offset, timestamp ms)` of the first record
    /// at or above the log start offset whose timestamp is `>= timestamp_ms`, `None` if
    /// no record has a timestamp that large.
    ///
    /// Skips segments whose largest timestamp is below the target, starts inside the
    /// segment from the time index, then scans batch headers to the first batch whose
    /// `maxTimestamp >= timestamp_ms`. Within that batch: under `LogAppendTime` every
    /// record has the batch's `maxTimestamp`, so its first offset is returned; an
    /// other batch is walked record by record for the exact record, a compressed one
    /// after `decompress` (storage has no codecs; the broker passes them in). If a batch
    /// cannot be decompressed, the scan goes on with the next batch.
    /// Errors: [`StorageError::CorruptSegment`], [`StorageError::Io`].
    pub fn offset_for_timestamp(
        &self,
        timestamp_ms: i64,
        decompress: &records::Decompress,
    ) -> Result<Option<(i64, i64)>> {
        let start_offset = self.log_start_offset;
        let mut buf = Vec::new();
        for segment in &self.segments {
            if segment.next_offset <= start_offset || segment.ix.max_timestamp < timestamp_ms {
                continue;
            }
            let from_time = segment
                .ix
                .time
                .last_below(timestamp_ms)
                .and_then(|(_, offset)| segment.ix.offset.lookup(offset))
                .map_or(0, |(_, pos)| pos);
            let from_start = segment
                .ix
                .offset
                .lookup(start_offset)
                .map_or(0, |(_, pos)| pos);
            let mut scanner = segment.scanner(from_time.max(from_start));
            while let Some((pos, header)) = scanner.next_batch()? {
                if header.last_offset() < start_offset || header.max_timestamp < timestamp_ms {
                    continue;
                }
                if header.timestamp_type() == TimestampType::LogAppendTime {
                    return Ok(Some((
                        header.base_offset.max(start_offset),
                        header.max_timestamp,
                    )));
                }
                records::read_batch(&segment.log, &segment.log_path, pos, &header, &mut buf)?;
                let found = records::find_record(&buf, &header, decompress, |offset, ts| {
                    offset >= start_offset && ts >= timestamp_ms
                });
                if found.is_some() {
                    return Ok(found);
                }
            }
        }
        Ok(None)
    }

    /// ListOffsets `MAX_TIMESTAMP` (-3, KIP-734): `(offset, timestamp ms)` of the record
    /// with the largest timestamp in the log (the earliest such record on ties), `None` if
    /// the log holds no timestamped batch.
    ///
    /// Finds the segment with the largest maximum timestamp, then the first batch with
    /// that `maxTimestamp`; the offset is that batch's offset of max timestamp: its base
    /// offset under `LogAppendTime` (all records share the time), the exact record for an
    /// uncompressed batch, and for a compressed one after `decompress` (the batch's last
    /// offset if that fails). Errors: [`StorageError::CorruptSegment`],
    /// [`StorageError::Io`].
    pub fn max_timestamp_offset(
        &self,
        decompress: &records::Decompress,
    ) -> Result<Option<(i64, i64)>> {
        let mut best: Option<&Segment> = None;
        for segment in &self.segments {
            if segment.ix.offset_of_max_timestamp < 0
                || segment.next_offset <= self.log_start_offset
            {
                continue;
            }
            if best.is_none_or(|b| segment.ix.max_timestamp > b.ix.max_timestamp) {
                best = Some(segment);
            }
        }
        let Some(segment) = best else {
            return Ok(None);
        };
        let max_ts = segment.ix.max_timestamp;
        let from = segment
            .ix
            .offset
            .lookup(segment.ix.offset_of_max_timestamp)
            .map_or(0, |(_, pos)| pos);
        let mut scanner = segment.scanner(from);
        while let Some((pos, header)) = scanner.next_batch()? {
            if header.max_timestamp != max_ts {
                continue;
            }
            if header.timestamp_type() == TimestampType::LogAppendTime {
                return Ok(Some((header.base_offset, max_ts)));
            }
            let mut buf = Vec::new();
            records::read_batch(&segment.log, &segment.log_path, pos, &header, &mut buf)?;
            let offset = records::find_record(&buf, &header, decompress, |_, ts| ts == max_ts)
                .map_or(header.last_offset(), |(offset, _)| offset);
            return Ok(Some((offset, max_ts)));
        }
        Ok(Some((segment.ix.offset_of_max_timestamp, max_ts)))
    }
}
