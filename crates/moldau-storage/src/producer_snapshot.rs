//! Producer-state snapshot files (`<offset>.snapshot`), byte-compatible with Kafka's
//! `ProducerStateManager.writeSnapshot` / `readSnapshot` (schema version 1).
//!
//! Format, big-endian:
//!
//! ```text
//! version: int16 (1)
//! crc: uint32            CRC-32C of every byte after this field
//! count: int32           then `count` entries of 46 bytes:
//!   producer_id: int64, epoch: int16, last_sequence: int32 (-1 if none),
//!   last_offset: int64 (-1 if none), offset_delta: int32, timestamp: int64,
//!   coordinator_epoch: int32, current_txn_first_offset: int64 (-1 if none)
//! ```
//!
//! A snapshot named `<offset>` (20 digits) holds the state of every producer as of the
//! log end offset `offset`, i.e. after all batches below it. Only each producer's last
//! batch is kept, so after a reload it has one [`BatchMetadata`] (`first_seq =
//! last_sequence - offset_delta`): a retry of an older in-flight batch is then no
//! longer recognised as a duplicate (as in Kafka).
//!
//! Written at every segment roll (named after the new segment's base offset), on
//! [`crate::Log::close`] and by [`crate::Log::take_producer_snapshot`] (at the log end
//! offset): to `<name>.tmp`, fsynced, then renamed (a crash leaves the old state or the
//! new file, never a partial one; `*.snapshot.tmp` leftovers are deleted on open; the
//! directory is not fsynced, since a lost snapshot only means a longer replay).
//!
//! Recovery rule (`Log::open`): snapshots above the recovered log end offset are
//! deleted; the newest readable one at or below the replay limit (the log end offset,
//! or after a crash the base offset of the first recovered segment) is loaded, and the
//! batches from its offset to the log end are replayed. A snapshot with a bad version,
//! length or CRC is deleted and the next older one tried; no snapshot means a replay
//! from the start of the log. A snapshot never makes `open` fail.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{IoContext, Result};
use crate::producer_state::{decrement_seq, BatchMetadata, ProducerStateEntry};
use crate::segment;

/// File extension of snapshots.
pub(crate) const SNAPSHOT_EXT: &str = "snapshot";
/// Suffix of a snapshot being written.
pub(crate) const SNAPSHOT_TMP_SUFFIX: &str = ".snapshot.tmp";
const VERSION: i16 = 1;
/// version + crc + count.
const HEADER_SIZE: usize = 10;
/// Bytes before the CRC-covered part (Kafka `PRODUCER_ENTRIES_OFFSET`).
const CRC_END: usize = 6;
const ENTRY_SIZE: usize = 46;

/// `<dir>/<offset, 20 digits>.snapshot`.
pub(crate) fn snapshot_path(dir: &Path, offset: i64) -> PathBuf {
    dir.join(segment::file_name(offset, SNAPSHOT_EXT))
}

/// Encodes the entries (see the module docs).
pub(crate) fn encode<'a>(
    entries: impl ExactSizeIterator<Item = &'a ProducerStateEntry>,
) -> Vec<u8> {
    let count = entries.len();
    let mut b = Vec::with_capacity(HEADER_SIZE + count * ENTRY_SIZE);
    b.extend_from_slice(&VERSION.to_be_bytes());
    b.extend_from_slice(&[0; 4]);
    b.extend_from_slice(&(count as i32).to_be_bytes());
    for e in entries {
        let last = e.batches.back();
        b.extend_from_slice(&e.producer_id.to_be_bytes());
        b.extend_from_slice(&e.producer_epoch.to_be_bytes());
        b.extend_from_slice(&last.map_or(-1, |m| m.last_seq).to_be_bytes());
        b.extend_from_slice(&last.map_or(-1, |m| m.last_offset).to_be_bytes());
        b.extend_from_slice(&last.map_or(0, |m| m.offset_delta).to_be_bytes());
        b.extend_from_slice(&e.last_timestamp.to_be_bytes());
        b.extend_from_slice(&e.coordinator_epoch.to_be_bytes());
        b.extend_from_slice(&e.current_txn_first_offset.unwrap_or(-1).to_be_bytes());
    }
    let crc = crc32c::crc32c(&b[CRC_END..]);
    b[2..6].copy_from_slice(&crc.to_be_bytes());
    b
}

/// Decodes a snapshot; `Err(reason)` if it is not a valid version-1 snapshot. The entry
/// count is checked against the length before anything is allocated for it.
pub(crate) fn decode(b: &[u8]) -> std::result::Result<Vec<ProducerStateEntry>, String> {
    if b.len() < HEADER_SIZE {
        return Err(format!("{} bytes is too short", b.len()));
    }
    let version = i16::from_be_bytes([b[0], b[1]]);
    if version != VERSION {
        return Err(format!("unknown version {version}"));
    }
    let stored = u32::from_be_bytes([b[2], b[3], b[4], b[5]]);
    let computed = crc32c::crc32c(&b[CRC_END..]);
    if stored != computed {
        return Err(format!("crc {stored:#x} does not match {computed:#x}"));
    }
    let count = i32::from_be_bytes([b[6], b[7], b[8], b[9]]);
    let body = &b[HEADER_SIZE..];
    if count < 0 || body.len() != count as usize * ENTRY_SIZE {
        return Err(format!("{count} entries do not fill {} bytes", body.len()));
    }
    let mut entries = Vec::with_capacity(count as usize);
    for e in body.chunks_exact(ENTRY_SIZE) {
        let mut r = Reader(e);
        let producer_id = r.i64();
        let producer_epoch = r.i16();
        let last_seq = r.i32();
        let last_offset = r.i64();
        let offset_delta = r.i32();
        let timestamp = r.i64();
        let coordinator_epoch = r.i32();
        let txn_first = r.i64();
        let mut entry = ProducerStateEntry {
            producer_id,
            producer_epoch,
            batches: Default::default(),
            coordinator_epoch,
            current_txn_first_offset: (txn_first >= 0).then_some(txn_first),
            last_timestamp: timestamp,
        };
        if last_offset >= 0 && last_seq >= 0 && offset_delta >= 0 {
            entry.batches.push_back(BatchMetadata {
                first_seq: decrement_seq(last_seq, offset_delta),
                last_seq,
                last_offset,
                offset_delta,
                timestamp,
            });
        }
        entries.push(entry);
    }
    Ok(entries)
}

/// Big-endian reads from a slice whose length the caller checked.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        let n = N.min(self.0.len());
        out[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        out
    }
    fn i16(&mut self) -> i16 {
        i16::from_be_bytes(self.take())
    }
    fn i32(&mut self) -> i32 {
        i32::from_be_bytes(self.take())
    }
    fn i64(&mut self) -> i64 {
        i64::from_be_bytes(self.take())
    }
}

/// Writes `bytes` as the snapshot at `offset`: temp file, fsync, rename.
pub(crate) fn write(dir: &Path, offset: i64, bytes: &[u8]) -> Result<()> {
    let path = snapshot_path(dir, offset);
    let tmp = dir.join(format!("{offset:020}{SNAPSHOT_TMP_SUFFIX}"));
    let mut file: File = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .ctx(|| format!("create {}", tmp.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .ctx(|| format!("write {}", tmp.display()))?;
    drop(file);
    fs::rename(&tmp, &path).ctx(|| format!("rename {} to {}", tmp.display(), path.display()))
}

/// The snapshots in `dir`, ascending by offset.
pub(crate) fn list(dir: &Path) -> Result<Vec<(i64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).ctx(|| format!("list {}", dir.display()))? {
        let entry = entry.ctx(|| format!("list {}", dir.display()))?;
        let name = entry.file_name();
        if let Some(offset) = name
            .to_str()
            .and_then(|n| segment::parse_file_name(n, SNAPSHOT_EXT))
        {
            out.push((offset, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// Deletes the snapshots whose offset satisfies `pred`.
pub(crate) fn delete_where(dir: &Path, pred: impl Fn(i64) -> bool) -> Result<()> {
    for (offset, path) in list(dir)? {
        if pred(offset) {
            crate::cleaner::remove_if_exists(&path)?;
        }
    }
    Ok(())
}

/// Reads the newest valid snapshot with offset `<= limit`, deleting invalid ones met on
/// the way (and reporting them). Read errors other than "not found" count as invalid.
pub(crate) fn load_latest(
    dir: &Path,
    limit: i64,
) -> Result<Option<(i64, Vec<ProducerStateEntry>)>> {
    for (offset, path) in list(dir)?.into_iter().rev() {
        if offset > limit {
            continue;
        }
        let reason = match fs::read(&path) {
            Ok(bytes) => match decode(&bytes) {
                Ok(entries) => return Ok(Some((offset, entries))),
                Err(reason) => reason,
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => e.to_string(),
        };
        tracing::warn!(path = %path.display(), %reason, "deleting unreadable producer snapshot");
        crate::cleaner::remove_if_exists(&path)?;
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_last_batch_and_txn() {
        let mut e = ProducerStateEntry {
            producer_id: 7,
            producer_epoch: 3,
            batches: Default::default(),
            coordinator_epoch: 2,
            current_txn_first_offset: Some(40),
            last_timestamp: 1234,
        };
        for i in 0..3 {
            e.batches.push_back(BatchMetadata {
                first_seq: i * 10,
                last_seq: i * 10 + 9,
                last_offset: 100 + i64::from(i) * 10,
                offset_delta: 9,
                timestamp: 1234,
            });
        }
        let empty = ProducerStateEntry {
            producer_id: 9,
            producer_epoch: 0,
            batches: Default::default(),
            coordinator_epoch: -1,
            current_txn_first_offset: None,
            last_timestamp: 5,
        };
        let bytes = encode([&e, &empty].into_iter());
        assert_eq!(bytes.len(), HEADER_SIZE + 2 * ENTRY_SIZE);
        let back = decode(&bytes).unwrap_or_default();
        assert_eq!(back.len(), 2);
        assert_eq!(back[0].batches.len(), 1);
        assert_eq!(back[0].batches[0], e.batches[2]);
        assert_eq!(back[0].current_txn_first_offset, Some(40));
        assert_eq!(back[1], empty);
        let mut bad = bytes.clone();
        bad[20] ^= 1;
        assert!(decode(&bad).is_err());
        assert!(decode(&bytes[..bytes.len() - 1]).is_err());
    }
}
