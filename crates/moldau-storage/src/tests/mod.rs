//! Behaviour tests of [`crate::Log`] against real files in temporary directories:
//! shared helpers here, tests by theme in the submodules.
#![allow(clippy::unwrap_used)]

mod compaction;
mod compaction_recovery;
mod leader_epoch;
mod maintenance;
mod power_loss;
mod producer_state;
mod proptests;
mod read_write;
mod recovery;

use std::fs;
use std::path::{Path, PathBuf};

use moldau_protocol::batch::{self, BatchHeader, BatchIter};

use crate::{Log, LogConfig};

/// Small segments and a dense index so tests cross many segment boundaries.
pub(super) fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes: 1024,
        index_interval_bytes: 100,
        retention_ms: -1,
        ..LogConfig::default()
    }
}

pub(super) fn open(dir: &Path, config: LogConfig, clean: bool) -> Log {
    Log::open(dir, config, 0, 0, clean, 0).unwrap()
}

/// An uncompressed batch of `n` records with `payload` bytes each, all at `ts`.
pub(super) fn batch_of(n: usize, payload: usize, ts: i64) -> Vec<u8> {
    let value = vec![b'x'; payload];
    type Record<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);
    let records: Vec<Record<'_>> = (0..n).map(|_| (None, Some(&value[..]))).collect();
    batch::build_batch(0, ts, &records)
}

pub(super) fn zigzag(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8 & 0x7f) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

/// A batch whose records have the given timestamps; `attributes` may claim a codec (the
/// body stays plain: storage never decompresses).
pub(super) fn batch_with_timestamps(timestamps: &[i64], attributes: i16) -> Vec<u8> {
    let base_ts = timestamps[0];
    let max_ts = *timestamps.iter().max().unwrap();
    let mut body = Vec::new();
    for (i, ts) in timestamps.iter().enumerate() {
        let mut rec = vec![0u8];
        zigzag(&mut rec, ts - base_ts);
        zigzag(&mut rec, i as i64);
        zigzag(&mut rec, -1);
        zigzag(&mut rec, 1);
        rec.push(b'v');
        zigzag(&mut rec, 0);
        zigzag(&mut body, rec.len() as i64);
        body.extend_from_slice(&rec);
    }
    let mut b = Vec::new();
    b.extend_from_slice(&0i64.to_be_bytes());
    b.extend_from_slice(&((49 + body.len()) as i32).to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes());
    b.push(2);
    b.extend_from_slice(&[0; 4]);
    b.extend_from_slice(&attributes.to_be_bytes());
    b.extend_from_slice(&(timestamps.len() as i32 - 1).to_be_bytes());
    b.extend_from_slice(&base_ts.to_be_bytes());
    b.extend_from_slice(&max_ts.to_be_bytes());
    b.extend_from_slice(&(-1i64).to_be_bytes());
    b.extend_from_slice(&(-1i16).to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes());
    b.extend_from_slice(&(timestamps.len() as i32).to_be_bytes());
    b.extend_from_slice(&body);
    let crc = batch::compute_crc(&b);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    batch::validate(&b).unwrap();
    b
}

/// Appends `b` as leader and returns the stored bytes (offsets assigned).
pub(super) fn append(log: &mut Log, mut b: Vec<u8>, now: i64) -> Vec<u8> {
    log.append_as_leader(&mut b, 3, None, now).unwrap();
    b
}

/// Every batch from the log start to the log end, read in small fetches.
pub(super) fn read_everything(log: &Log) -> Vec<u8> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.log_end_offset() {
        let data = log.read(offset, 700, i64::MAX, true).unwrap();
        assert!(!data.records.is_empty(), "no progress at {offset}");
        // Headers only: some tests serve deliberately corrupted (trusted) data.
        let mut last = offset;
        let mut pos = 0;
        while pos < data.records.len() {
            let h = BatchHeader::parse(&data.records[pos..]).unwrap();
            last = h.next_offset();
            pos += h.size_in_bytes();
        }
        out.extend_from_slice(&data.records);
        offset = last;
    }
    out
}

pub(super) fn segment_logs(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    v.sort();
    v
}

pub(super) fn headers(bytes: &[u8]) -> Vec<BatchHeader> {
    BatchIter::new(bytes).map(|r| r.unwrap().1).collect()
}

/// Builds a log of several segments, "crashes" (drops without close) and returns the
/// stored bytes of each batch.
pub(super) fn crashed_log(dir: &Path, batches: usize) -> Vec<Vec<u8>> {
    let mut log = open(dir, small_config(), true);
    let stored: Vec<Vec<u8>> = (0..batches)
        .map(|i| append(&mut log, batch_of(2, 60 + i % 5, 7), 0))
        .collect();
    drop(log);
    stored
}

pub(super) fn concat(v: &[Vec<u8>]) -> Vec<u8> {
    v.iter().flatten().copied().collect()
}

/// Timestamp look-ups where "compressed" test batches hold their records uncompressed
/// (see `batch_with_timestamps`), so the codec is the identity.
pub(super) trait PlainLookups {
    fn offset_for_timestamp_plain(&self, ts: i64) -> crate::Result<Option<(i64, i64)>>;
    fn max_timestamp_offset_plain(&self) -> crate::Result<Option<(i64, i64)>>;
}

fn identity_codec(_: batch::Compression, records: &[u8]) -> Option<Vec<u8>> {
    Some(records.to_vec())
}

impl PlainLookups for Log {
    fn offset_for_timestamp_plain(&self, ts: i64) -> crate::Result<Option<(i64, i64)>> {
        self.offset_for_timestamp(ts, &identity_codec)
    }
    fn max_timestamp_offset_plain(&self) -> crate::Result<Option<(i64, i64)>> {
        self.max_timestamp_offset(&identity_codec)
    }
}
