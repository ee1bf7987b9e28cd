//! Reading an internal topic's partition back from its log start, the way the
//! coordinators rebuild their state at load (Kafka `GroupMetadataManager.doLoadGroupsAndOffsets`,
//! `TransactionStateManager.loadTransactionMetadata`).

use crate::partition::{Isolation, Partition};
use moldau_protocol::batch::{self, BatchHeader, BatchIter, Compression, ControlRecordType};

/// One item met while replaying.
pub enum Replayed<'a> {
    /// A data record, with the header of its batch (producer id, transactional flag).
    Record {
        /// The batch header.
        header: &'a BatchHeader,
        /// Record key (records without one are skipped).
        key: &'a [u8],
        /// Record value, `None` for a tombstone.
        value: Option<&'a [u8]>,
    },
    /// A transaction marker of `producer_id`.
    Marker {
        /// The producer whose transaction ended.
        producer_id: i64,
        /// Commit or abort.
        kind: ControlRecordType,
    },
}

/// Feeds every record and marker of `partition`, in offset order up to the high
/// watermark, to `apply`. Items `apply` rejects are logged and skipped, as are batches
/// that cannot be decompressed. Returns `(applied, skipped)`.
pub fn replay_partition<E: std::fmt::Display>(
    partition: &Partition,
    mut apply: impl FnMut(Replayed<'_>) -> Result<(), E>,
) -> (u64, u64) {
    let mut offset = partition.offsets().log_start_offset;
    let (mut applied, mut skipped, mut undecodable) = (0u64, 0u64, 0u64);
    let mut count = |r: Result<(), E>| match r {
        Ok(()) => applied += 1,
        Err(e) => {
            skipped += 1;
            tracing::warn!(partition = %partition.tp, error = %e, "skipping record at load");
        }
    };
    loop {
        let (offsets, data, _) = partition.read(offset, 1 << 20, true, Isolation::ReadUncommitted);
        let data = match data {
            Ok(d) if !d.records.is_empty() => d,
            Ok(_) => break,
            Err(e) => {
                tracing::error!(partition = %partition.tp, offset, error = %e, "stopped loading");
                break;
            }
        };
        let mut next = offset;
        for item in BatchIter::new(&data.records) {
            let Ok((at, header)) = item else { break };
            next = header.next_offset();
            if header.last_offset() < offset {
                continue;
            }
            let whole = &data.records[at..at + header.size_in_bytes()];
            if header.is_control() {
                if let Some(kind) = ControlRecordType::of_batch(whole) {
                    count(apply(Replayed::Marker {
                        producer_id: header.producer_id,
                        kind,
                    }));
                }
                continue;
            }
            let body = &whole[batch::RECORD_BATCH_OVERHEAD..];
            let owned;
            let body = match header.compression() {
                Compression::None => body,
                codec => match moldau_protocol::compression::decompress(codec, body) {
                    Some(raw) => {
                        owned = raw;
                        &owned[..]
                    }
                    None => {
                        undecodable += 1;
                        tracing::warn!(partition = %partition.tp, offset = header.base_offset, "skipping a batch that does not decompress");
                        continue;
                    }
                },
            };
            for record in batch::records_in(body, header.records_count).unwrap_or_default() {
                let Some(key) = record.key else { continue };
                count(apply(Replayed::Record {
                    header: &header,
                    key,
                    value: record.value,
                }));
            }
        }
        if next <= offset || next >= offsets.high_watermark {
            break;
        }
        offset = next;
    }
    (applied, skipped + undecodable)
}
