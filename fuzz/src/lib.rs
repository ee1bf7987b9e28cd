//! The bodies of Moldau's fuzz targets (`fuzz_targets/*.rs` call them; see the README's
//! "Fuzzing" section). Each takes arbitrary bytes and drives the code that reads peer-
//! or disk-supplied bytes the way the broker does; a panic, an abort (a huge
//! allocation among them) or a hang is a finding.

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, RequestKind};
use moldau_protocol::batch::{self, Compression, RECORD_BATCH_OVERHEAD};
use moldau_protocol::{apis, compression, frame};
use std::path::{Path, PathBuf};

/// The largest frame the target accepts (bytes): the broker's default
/// `socket.request.max.bytes` (100 MiB).
const MAX_REQUEST_BYTES: usize = 100 * 1024 * 1024;

/// Decompressed output allowed per batch here (bytes): small, so that a fuzzer-made
/// "zip bomb" ends quickly; the bound itself is what is being checked.
const MAX_DECOMPRESSED: usize = 1 << 20;

/// A request as it comes off a socket: the 4-byte size prefix, the header (version
/// chosen by api key and version), then the body decoded for every api key and version
/// the broker serves; the record batches of a Produce request go through
/// [`record_batch`].
pub fn request(data: &[u8]) {
    let Some((prefix, rest)) = data.split_first_chunk::<4>() else {
        return;
    };
    let Ok(size) = frame::check_size(*prefix, MAX_REQUEST_BYTES) else {
        return;
    };
    let mut frame = Bytes::copy_from_slice(&rest[..size.min(rest.len())]);
    let Ok((key, header)) = frame::decode_header(&mut frame) else {
        return;
    };
    let version = header.request_api_version;
    if !apis::is_supported(key, version) {
        return;
    }
    let Ok(body) = RequestKind::decode(key, &mut frame, version) else {
        return;
    };
    let _ = frame::fully_consumed(&frame);
    if let (ApiKey::Produce, RequestKind::Produce(produce)) = (key, body) {
        for topic in &produce.topic_data {
            for partition in &topic.partition_data {
                if let Some(records) = &partition.records {
                    record_batch(records);
                }
            }
        }
    }
}

/// Record batches laid end to end, as a Produce request or a segment carries them. The
/// CRC of each is set right first (a wrong one is refused before anything else looks
/// at the batch, which would stop the fuzzer there), then the batch is validated, its
/// records walked, and a compressed one decompressed (bounded) and walked.
pub fn record_batch(data: &[u8]) {
    let mut rest = data.to_vec();
    let mut start = 0;
    while rest.len() - start >= RECORD_BATCH_OVERHEAD {
        let buf = &mut rest[start..];
        let Ok(header) = batch::BatchHeader::parse(buf) else {
            return;
        };
        let size = header.size_in_bytes();
        if size > buf.len() || size < RECORD_BATCH_OVERHEAD {
            return;
        }
        // The v2 layout keeps the CRC-32C at bytes 17..21 (Kafka's DefaultRecordBatch).
        let crc = batch::compute_crc(&buf[..size]);
        buf[17..21].copy_from_slice(&crc.to_be_bytes());
        let one = &buf[..size];
        let Ok(header) = batch::validate(one) else {
            return;
        };
        let _ = header.validate_record_count();
        let body = &one[RECORD_BATCH_OVERHEAD..];
        match header.compression() {
            Compression::None => {
                let _ = batch::records(one);
            }
            codec => {
                if let Some(raw) = compression::decompress_bounded(codec, body, MAX_DECOMPRESSED) {
                    let _ = batch::records_in(&raw, header.records_count);
                }
            }
        }
        start += size;
    }
}

/// The files one partition directory holds, cut from `data` as sections of
/// `[kind: u8][length: u16, big-endian][bytes]` (see [`FILES`]), written to a fresh
/// directory and opened as the broker opens a log at start (after a crash or a clean
/// shutdown, from the first byte), then read from the log start to the log end. The
/// offset checkpoints (recovery point, log start) are parsed too.
pub fn log_files(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let Ok(dir) = tempfile::tempdir() else {
        return;
    };
    let partition = dir.path().join("fuzz-0");
    if std::fs::create_dir(&partition).is_err() {
        return;
    }
    let placed = unpack(rest, &FILES, |name| {
        if name.ends_with("offset-checkpoint") {
            dir.path().join(name)
        } else {
            partition.join(name)
        }
    });
    if !placed {
        return;
    }
    for name in FILES.iter().filter(|n| n.ends_with("offset-checkpoint")) {
        let _ = moldau_storage::checkpoint::read(&dir.path().join(name));
    }
    open_and_read(&partition, flags);
}

/// The files [`log_files`] may write, by `kind` modulo their count.
pub const FILES: [&str; 12] = [
    "00000000000000000000.log",
    "00000000000000000000.index",
    "00000000000000000000.timeindex",
    "00000000000000000000.txnindex",
    "00000000000000000000.snapshot",
    "leader-epoch-checkpoint",
    "00000000000000000100.log",
    "00000000000000000100.index",
    "00000000000000000100.timeindex",
    "00000000000000000100.snapshot",
    "recovery-point-offset-checkpoint",
    "log-start-offset-checkpoint",
];

/// Writes the sections of `data` (`[kind: u8][length: u16, big-endian][bytes]`, the
/// file `names[kind % names.len()]`) where `place` puts each name. False if a write
/// failed.
fn unpack(mut data: &[u8], names: &[&str], place: impl Fn(&str) -> PathBuf) -> bool {
    while let [kind, hi, lo, tail @ ..] = data {
        let len = usize::from(u16::from_be_bytes([*hi, *lo])).min(tail.len());
        let name = names[usize::from(*kind) % names.len()];
        if std::fs::write(place(name), &tail[..len]).is_err() {
            return false;
        }
        data = &tail[len..];
    }
    true
}

/// The metadata log as a node opens it at start: the files of
/// `__cluster_metadata-0` cut from `data` as in [`log_files`] (see
/// [`METADATA_FILES`]). Without a `quorum-state` file every stored batch is decoded
/// (as Raft entries or records from before the quorum); with one, the vote is parsed.
pub fn metadata_log(data: &[u8]) {
    let Ok(dir) = tempfile::tempdir() else {
        return;
    };
    let log = dir.path().join("__cluster_metadata-0");
    if std::fs::create_dir(&log).is_err() || !unpack(data, &METADATA_FILES, |n| log.join(n)) {
        return;
    }
    let _ = moldau_metadata::quorum::MetadataLogStore::open(dir.path());
}

/// The files [`metadata_log`] may write, by `kind` modulo their count.
pub const METADATA_FILES: [&str; 5] = [
    "00000000000000000000.log",
    "00000000000000000000.index",
    "00000000000000000000.timeindex",
    "leader-epoch-checkpoint",
    "quorum-state",
];

fn open_and_read(partition: &Path, flags: u8) {
    let clean_shutdown = flags & 1 != 0;
    let recovery_point = if flags & 2 != 0 { 0 } else { i64::MAX };
    let Ok(log) = moldau_storage::Log::open(
        partition,
        moldau_storage::LogConfig::default(),
        0,
        recovery_point,
        clean_shutdown,
        0,
    ) else {
        return;
    };
    let end = log.log_end_offset();
    let mut offset = log.log_start_offset();
    for _ in 0..10_000 {
        if offset >= end {
            break;
        }
        match log.read(offset, 1 << 20, end, true) {
            Ok(info) => {
                record_batch(&info.records);
                match info.end_offset {
                    Some(next) if next > offset => offset = next,
                    _ => break,
                }
            }
            Err(_) => break,
        }
    }
}
