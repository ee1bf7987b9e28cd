//! The log cleaner: what a clean keeps (latest value per key, tombstones, codecs,
//! control and empty batches), the dedupe buffer, the policy and lag settings. Shared
//! helpers for `compaction_recovery.rs` are here too.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use moldau_protocol::batch::{self, BatchIter, Compression, KeyValue};

use super::*;
use crate::cleaner::now_ms as wall_now;
use crate::{CleanOutcome, CleanStats, CleanupPolicy, Log, LogConfig};

/// `(offset, key, value)` of one record.
pub(super) type Rec = (i64, Option<Vec<u8>>, Option<Vec<u8>>);

/// Test codecs: "gzip" and "snappy" store the records reversed; only "gzip" can be
/// written back, so rewritten "snappy" batches fall back to no compression.
pub(super) fn test_decompress(codec: Compression, bytes: &[u8]) -> Option<Vec<u8>> {
    match codec {
        Compression::Gzip | Compression::Snappy => Some(bytes.iter().rev().copied().collect()),
        _ => None,
    }
}

pub(super) fn test_compress(codec: Compression, bytes: &[u8]) -> Option<Vec<u8>> {
    (codec == Compression::Gzip).then(|| bytes.iter().rev().copied().collect())
}

pub(super) fn compact_config() -> LogConfig {
    LogConfig {
        cleanup_policy: CleanupPolicy::Compact,
        min_cleanable_dirty_ratio: 0.0,
        ..small_config()
    }
}

pub(super) fn key(i: usize) -> Vec<u8> {
    format!("key-{i:04}").into_bytes()
}

/// An uncompressed batch of `(key, value)` records.
pub(super) fn keyed(records: &[KeyValue<'_>]) -> Vec<u8> {
    batch::build_batch(0, wall_now(), records)
}

/// The same batch "compressed" with the reversing test codec.
pub(super) fn compressed(codec: Compression, records: &[KeyValue<'_>]) -> Vec<u8> {
    let plain = keyed(records);
    let body: Vec<u8> = plain[batch::RECORD_BATCH_OVERHEAD..]
        .iter()
        .rev()
        .copied()
        .collect();
    batch::with_records(&plain, codec, records.len() as i32, &body).unwrap()
}

/// Every record of the log, decoded with the test codecs.
pub(super) fn all_records(log: &Log) -> Vec<Rec> {
    let bytes = read_everything(log);
    let mut out = Vec::new();
    for item in BatchIter::new(&bytes) {
        let (at, h) = item.unwrap();
        let section = &bytes[at + batch::RECORD_BATCH_OVERHEAD..at + h.size_in_bytes()];
        let body = if h.compression() == Compression::None {
            section.to_vec()
        } else {
            match test_decompress(h.compression(), section) {
                Some(body) => body,
                None => continue, // opaque to the test codecs
            }
        };
        for r in batch::records_in(&body, h.records_count).unwrap() {
            out.push((
                h.base_offset + i64::from(r.offset_delta),
                r.key.map(<[u8]>::to_vec),
                r.value.map(<[u8]>::to_vec),
            ));
        }
    }
    out
}

/// What the log must hold after cleaning `[.., end)` of `appended`: below `end` the
/// latest record of each non-null key, from `end` on everything.
pub(super) fn model(appended: &[Rec], end: i64) -> Vec<Rec> {
    let mut latest: HashMap<&[u8], i64> = HashMap::new();
    for (offset, key, _) in appended.iter().filter(|r| r.0 < end) {
        if let Some(k) = key {
            latest.insert(k, *offset);
        }
    }
    appended
        .iter()
        .filter(|(offset, key, _)| {
            *offset >= end
                || key
                    .as_deref()
                    .is_some_and(|k| latest.get(k) == Some(offset))
        })
        .cloned()
        .collect()
}

/// Appends `b` and returns its records with their offsets.
pub(super) fn append_records(log: &mut Log, b: Vec<u8>) -> Vec<Rec> {
    let stored = append(log, b, 0);
    let h = batch::validate(&stored).unwrap();
    let section = &stored[batch::RECORD_BATCH_OVERHEAD..];
    let body = if h.compression() == Compression::None {
        section.to_vec()
    } else {
        test_decompress(h.compression(), section).unwrap()
    };
    batch::records_in(&body, h.records_count)
        .unwrap()
        .into_iter()
        .map(|r| {
            (
                h.base_offset + i64::from(r.offset_delta),
                r.key.map(<[u8]>::to_vec),
                r.value.map(<[u8]>::to_vec),
            )
        })
        .collect()
}

/// Plan, build and install one clean; `None` if nothing was due.
pub(super) fn clean(
    log: &mut Log,
    first_dirty: i64,
    now: i64,
    buffer: usize,
) -> Option<CleanStats> {
    let plan = log.clean_plan(first_dirty, now).unwrap()?;
    let cleaned = plan
        .build(now, buffer, &test_decompress, &test_compress)
        .unwrap();
    match log.install_clean(cleaned).unwrap() {
        CleanOutcome::Installed(stats) => Some(stats),
        CleanOutcome::Stale => panic!("unexpected stale plan"),
    }
}

pub(super) fn leftovers(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".cleaned") || n.ends_with(".swap") || n.ends_with(".deleted"))
        .collect()
}

pub(super) fn assert_offsets_increase(records: &[Rec]) {
    assert!(
        records.windows(2).all(|w| w[0].0 < w[1].0),
        "offsets not increasing"
    );
}

/// A deterministic log of overwrites: `rounds` batches of 5 records over `keys` keys.
pub(super) fn overwrite_log(log: &mut Log, keys: usize, rounds: usize) -> Vec<Rec> {
    let mut appended = Vec::new();
    let mut x = 12345u64;
    for round in 0..rounds {
        let mut recs = Vec::new();
        for n in 0..5 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            recs.push((
                key((x >> 33) as usize % keys),
                format!("v{round}-{n}").into_bytes(),
            ));
        }
        let kv: Vec<KeyValue<'_>> = recs
            .iter()
            .map(|(k, v)| (Some(&k[..]), Some(&v[..])))
            .collect();
        appended.extend(append_records(
            log,
            batch::build_batch(0, 1_000 + round as i64, &kv),
        ));
    }
    appended
}

#[test]
fn cleaning_keeps_the_latest_value_per_key() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), compact_config(), true);
    let appended = overwrite_log(&mut log, 300, 1_200);
    let segments = log.num_segments();
    assert!(segments > 100, "{segments} segments");
    let (leo, size) = (log.log_end_offset(), log.size_in_bytes());
    let active = log.active().base_offset;
    let active_bytes = fs::read(&log.active().log_path).unwrap();
    let now = wall_now();

    let stats = clean(&mut log, 0, now, 1 << 20).unwrap();
    assert_eq!(stats.first_dirty_offset, active);
    assert_eq!(stats.segments_before, segments - 1);
    // Outputs are grouped by input sizes (Kafka `groupSegmentsBySize`): full inputs
    // cannot merge yet, the small cleaned ones merge at the next clean (below).
    assert_eq!(stats.segments_after, stats.segments_before);
    assert!(stats.bytes_after < stats.bytes_before);
    assert_eq!(
        stats.records_kept + stats.records_removed,
        appended.iter().filter(|r| r.0 < active).count() as u64
    );
    assert_eq!(log.log_end_offset(), leo);
    assert_eq!(log.log_start_offset(), 0);
    assert!(log.size_in_bytes() < size);
    assert_eq!(
        log.size_in_bytes(),
        size - stats.bytes_before + stats.bytes_after
    );
    assert_eq!(fs::read(&log.active().log_path).unwrap(), active_bytes);
    assert_eq!(log.active().base_offset, active);
    assert_eq!(segment_logs(dir.path()).len(), log.num_segments());
    assert!(leftovers(dir.path()).is_empty());
    for s in &log.segments {
        assert!(s.size <= 1024, "segment of {} bytes", s.size);
    }

    let expected = model(&appended, active);
    let got = all_records(&log);
    assert_offsets_increase(&got);
    assert_eq!(got, expected);
    // Below the active segment, exactly one record per key.
    let cleaned = got.iter().filter(|r| r.0 < active).count();
    assert!(cleaned <= 300, "{cleaned}");
    // Every offset still reads back the batch that holds it (or the next one).
    for (offset, _, _) in &got {
        let data = log.read(*offset, 1, i64::MAX, true).unwrap();
        let h = batch::BatchHeader::parse(&data.records).unwrap();
        assert!(h.base_offset <= *offset && *offset <= h.last_offset());
    }

    // Nothing is dirty until new segments are sealed.
    assert!(log.clean_plan(active, now).unwrap().is_none());
    // A fetch at an offset removed by the clean returns the next batch.
    let gap = (0..active)
        .find(|o| !got.iter().any(|r| r.0 == *o))
        .unwrap();
    let data = log.read(gap, 1 << 20, i64::MAX, true).unwrap();
    assert!(data.first_batch_offset.unwrap() > gap || data.first_batch_offset == Some(gap));

    // A second clean after more overwrites merges the small cleaned segments.
    let mut appended = appended;
    let more = overwrite_log(&mut log, 300, 100);
    appended.extend(more.iter().map(|(o, k, v)| (*o, k.clone(), v.clone())));
    log.roll_to(log.log_end_offset()).unwrap();
    let stats = clean(&mut log, active, now, 1 << 20).unwrap();
    assert!(
        stats.segments_after * 4 < stats.segments_before,
        "{stats:?}"
    );
    assert_eq!(stats.first_dirty_offset, log.log_end_offset());
    let got = all_records(&log);
    assert_eq!(got, model(&appended, log.log_end_offset()));
    assert_eq!(got.len(), 300);

    // Reopening, clean or not, serves the same records.
    let before = read_everything(&log);
    log.close().unwrap();
    let log = open(dir.path(), compact_config(), true);
    assert_eq!(read_everything(&log), before);
    drop(log);
    let log = Log::open(dir.path(), compact_config(), 0, 0, false, 0).unwrap();
    assert_eq!(read_everything(&log), before);
}

#[test]
fn tombstones_survive_a_clean_and_delete_retention_ms() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        delete_retention_ms: 60_000,
        ..compact_config()
    };
    let mut log = open(dir.path(), config.clone(), true);
    let mut appended = Vec::new();
    for i in 0..10 {
        let k = key(i);
        appended.extend(append_records(
            &mut log,
            keyed(&[(Some(&k), Some(b"value"))]),
        ));
    }
    for i in 0..5 {
        let k = key(i);
        appended.extend(append_records(&mut log, keyed(&[(Some(&k), None)])));
    }
    log.roll_to(log.log_end_offset()).unwrap();
    let tombstones = |log: &Log| all_records(log).iter().filter(|r| r.2.is_none()).count();
    let now = wall_now();

    // First clean: the tombstones are dirty, so they stay even long after.
    let stats = clean(&mut log, 0, now + 10 * 60_000, 1 << 20).unwrap();
    assert_eq!(
        all_records(&log),
        model(&appended, stats.first_dirty_offset)
    );
    assert_eq!(tombstones(&log), 5);
    assert_eq!(all_records(&log).len(), 10);

    // Later cleans (new dirty data each time): kept while delete.retention.ms has not
    // passed since the segment was written, dropped after.
    let mut first_dirty = stats.first_dirty_offset;
    let k = key(99);
    append_records(&mut log, keyed(&[(Some(&k), Some(b"x"))]));
    log.roll_to(log.log_end_offset()).unwrap();
    first_dirty = clean(&mut log, first_dirty, now + 30_000, 1 << 20)
        .unwrap()
        .first_dirty_offset;
    assert_eq!(tombstones(&log), 5);
    append_records(&mut log, keyed(&[(Some(&k), Some(b"y"))]));
    log.roll_to(log.log_end_offset()).unwrap();
    let stats = clean(&mut log, first_dirty, now + 120_000, 1 << 20).unwrap();
    assert_eq!(tombstones(&log), 0);
    assert_eq!(stats.records_removed, 5 + 1);
    let got = all_records(&log);
    assert_eq!(got.len(), 6);
    assert!(got[..5].iter().all(|r| r.2.as_deref() == Some(b"value")));
    assert_eq!(got[5].2.as_deref(), Some(&b"y"[..]));
    assert_eq!(log.log_end_offset(), 17);
    // The last batch of the range was cleaned empty but kept: reopen keeps the LEO.
    drop(log);
    let log = Log::open(dir.path(), config, 0, 0, false, 0).unwrap();
    assert_eq!(log.log_end_offset(), 17);
    assert_eq!(all_records(&log), got);
}

#[test]
fn compressed_batches_are_filtered_and_recompressed() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), compact_config(), true);
    let (a, b, c, f) = (&b"a"[..], &b"b"[..], &b"c"[..], &b"f"[..]);
    // 0-1 "gzip": a1 superseded, f1 kept -> rewritten, still "gzip".
    append(
        &mut log,
        compressed(
            Compression::Gzip,
            &[(Some(a), Some(b"a1")), (Some(f), Some(b"f1"))],
        ),
        0,
    );
    // 2-4 "snappy": c1 kept, a2 superseded, null key dropped -> rewritten uncompressed
    // (the test has no snappy encoder).
    append(
        &mut log,
        compressed(
            Compression::Snappy,
            &[
                (Some(c), Some(b"c1")),
                (Some(a), Some(b"a2")),
                (None, Some(b"x")),
            ],
        ),
        0,
    );
    // 5-6 all kept: copied byte for byte.
    let whole = append(
        &mut log,
        compressed(
            Compression::Gzip,
            &[(Some(b"d"), Some(b"d1")), (Some(b"e"), Some(b"e1"))],
        ),
        0,
    );
    // 7 "lz4", which the test codec cannot decompress: copied unchanged.
    let opaque = batch::with_records(
        &keyed(&[(Some(b), Some(b"zz"))]),
        Compression::Lz4,
        1,
        b"??",
    )
    .unwrap();
    let opaque = append(&mut log, opaque, 0);
    // 8-9 plain, the latest a and b.
    append(
        &mut log,
        keyed(&[(Some(b), Some(b"b2")), (Some(a), Some(b"a3"))]),
        0,
    );
    log.roll_to(log.log_end_offset()).unwrap();

    let stats = clean(&mut log, 0, wall_now(), 1 << 20).unwrap();
    assert_eq!((stats.records_removed, stats.records_kept), (3, 7));
    let bytes = read_everything(&log);
    let headers: Vec<_> = BatchIter::new(&bytes).map(|r| r.unwrap()).collect();
    let summary: Vec<_> = headers
        .iter()
        .map(|(_, h)| {
            (
                h.base_offset,
                h.last_offset_delta,
                h.records_count,
                h.compression(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (0, 1, 1, Compression::Gzip),
            (2, 2, 1, Compression::None),
            (5, 1, 2, Compression::Gzip),
            (7, 0, 1, Compression::Lz4),
            (8, 1, 2, Compression::None),
        ]
    );
    assert_eq!(&bytes[headers[2].0..headers[2].0 + whole.len()], &whole[..]);
    assert_eq!(
        &bytes[headers[3].0..headers[3].0 + opaque.len()],
        &opaque[..]
    );
    let got: Vec<(i64, Vec<u8>)> = all_records(&log)
        .into_iter()
        .map(|(o, _, v)| (o, v.unwrap()))
        .collect();
    let want: Vec<(i64, Vec<u8>)> = [
        (1, "f1"),
        (2, "c1"),
        (5, "d1"),
        (6, "e1"),
        (8, "b2"),
        (9, "a3"),
    ]
    .iter()
    .map(|(o, v)| (*o, v.as_bytes().to_vec()))
    .collect();
    assert_eq!(got, want);
    // Rewritten batches keep their timestamps and validate.
    for (at, h) in &headers {
        batch::validate(&bytes[*at..]).unwrap();
        assert!(h.max_timestamp > 0);
    }
}

#[test]
fn a_small_dedupe_buffer_splits_the_clean_into_converging_passes() {
    let big = tempfile::tempdir().unwrap();
    let small = tempfile::tempdir().unwrap();
    let mut one = open(big.path(), compact_config(), true);
    let mut many = open(small.path(), compact_config(), true);
    let appended = overwrite_log(&mut one, 300, 400);
    assert_eq!(overwrite_log(&mut many, 300, 400), appended);
    let end = one.active().base_offset;
    let now = wall_now();
    assert_eq!(
        clean(&mut one, 0, now, 1 << 20).unwrap().first_dirty_offset,
        end
    );

    // 1000 bytes hold 28 keys: each pass maps a few batches.
    let (mut first_dirty, mut passes) = (0, 0);
    while let Some(stats) = clean(&mut many, first_dirty, now, 1_000) {
        assert!(
            stats.first_dirty_offset > first_dirty,
            "no progress: {stats:?}"
        );
        first_dirty = stats.first_dirty_offset;
        passes += 1;
        let got = all_records(&many);
        assert_offsets_increase(&got);
        assert_eq!(got, model(&appended, first_dirty), "after pass {passes}");
    }
    assert!(passes > 10, "{passes} passes");
    assert_eq!(first_dirty, end);
    assert_eq!(all_records(&many), all_records(&one));
    assert_eq!(many.log_end_offset(), one.log_end_offset());
}

#[test]
fn cleanup_policy_parses_and_gates_retention_and_cleaning() {
    for (s, p) in [
        ("delete", CleanupPolicy::Delete),
        ("compact", CleanupPolicy::Compact),
        ("compact,delete", CleanupPolicy::CompactDelete),
        ("delete, compact", CleanupPolicy::CompactDelete),
    ] {
        assert_eq!(s.parse::<CleanupPolicy>().unwrap(), p);
    }
    assert!("compacted".parse::<CleanupPolicy>().is_err());
    assert!("".parse::<CleanupPolicy>().is_err());
    assert_eq!(CleanupPolicy::CompactDelete.to_string(), "compact,delete");
    let d = LogConfig::default();
    assert_eq!(
        (
            d.cleanup_policy,
            d.delete_retention_ms,
            d.min_cleanable_dirty_ratio,
            d.min_compaction_lag_ms,
            d.max_compaction_lag_ms
        ),
        (CleanupPolicy::Delete, 86_400_000, 0.5, 0, i64::MAX)
    );

    // Compact-only: retention by time and size does not apply; DeleteRecords does.
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        retention_ms: 1,
        retention_bytes: 1,
        ..compact_config()
    };
    let mut log = open(dir.path(), config.clone(), true);
    overwrite_log(&mut log, 10, 30);
    let segments = log.num_segments();
    assert_eq!(log.apply_retention(i64::MAX / 2).unwrap(), 0);
    assert_eq!(log.num_segments(), segments);
    let second = log.segments[1].base_offset;
    log.delete_records_before(second).unwrap();
    assert_eq!(log.apply_retention(i64::MAX / 2).unwrap(), 0);
    assert_eq!(log.num_segments(), segments - 1);
    // compact,delete: both.
    log.set_config(LogConfig {
        cleanup_policy: CleanupPolicy::CompactDelete,
        ..config.clone()
    });
    assert!(log.apply_retention(i64::MAX / 2).unwrap() > 0);
    // delete: never cleaned.
    overwrite_log(&mut log, 10, 30);
    log.set_config(LogConfig {
        cleanup_policy: CleanupPolicy::Delete,
        ..config
    });
    assert!(log.clean_plan(0, 0).unwrap().is_none());
}

#[test]
fn dirty_ratio_and_compaction_lags_decide_what_is_cleanable() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), compact_config(), true);
    // Batches timestamped 1_000 apart: segment i holds timestamps around i * 5_000.
    let mut ts = 0;
    for round in 0..60 {
        ts += 1_000;
        let k = key(round % 7);
        let mut b = batch::build_batch(0, ts, &[(Some(&k), Some(&[b'v'; 100][..]))]);
        log.append_as_leader(&mut b, 0, None, 0).unwrap();
    }
    let segments = log.num_segments();
    let active = log.active().base_offset;
    let plan = log.clean_plan(0, ts).unwrap().unwrap();
    assert_eq!(
        (plan.first_dirty_offset(), plan.first_uncleanable_offset()),
        (0, active)
    );
    assert_eq!(plan.num_segments(), segments - 1);
    assert_eq!(plan.dirty_ratio(), 1.0);
    // A first dirty offset past the log end counts as the log start.
    assert_eq!(
        log.clean_plan(10_000, ts)
            .unwrap()
            .unwrap()
            .first_dirty_offset(),
        0
    );
    // An upper bound (e.g. the high watermark) stops before the segment holding it.
    let bounded = log.clean_plan_below(0, 20, ts).unwrap().unwrap();
    assert!(bounded.first_uncleanable_offset() <= 20);
    assert!(bounded.num_segments() < plan.num_segments());

    // min.compaction.lag.ms (KIP-58): segments with records newer than now - lag wait.
    let lagged = LogConfig {
        min_compaction_lag_ms: 20_000,
        ..compact_config()
    };
    log.set_config(lagged);
    let plan = log.clean_plan(0, ts).unwrap().unwrap();
    let uncleanable = plan.first_uncleanable_offset();
    assert!(uncleanable < active);
    let newest_cleanable = log
        .segments
        .iter()
        .filter(|s| s.next_offset <= uncleanable)
        .map(|s| s.ix.max_timestamp)
        .max()
        .unwrap();
    assert!(newest_cleanable <= ts - 20_000);
    assert!(log.clean_plan(0, 0).unwrap().is_none());
    let stats = clean(&mut log, 0, ts, 1 << 20).unwrap();
    assert_eq!(stats.first_dirty_offset, uncleanable);

    // min.cleanable.dirty.ratio: one more sealed segment is too little dirt for 0.9...
    let mut config = LogConfig {
        min_cleanable_dirty_ratio: 0.9,
        ..compact_config()
    };
    log.set_config(config.clone());
    let plan = log.clean_plan(uncleanable, ts).unwrap();
    assert!(plan.is_none());
    // ...unless max.compaction.lag.ms (KIP-354) says the oldest dirty record waited
    // too long.
    config.max_compaction_lag_ms = 10_000;
    log.set_config(config.clone());
    assert!(log.clean_plan(uncleanable, ts).unwrap().is_some());
    assert!(log.clean_plan(uncleanable, 0).unwrap().is_none());
    // It also caps segment.ms of compacted logs.
    config.segment_ms = i64::MAX;
    log.set_config(config);
    let before = log.num_segments();
    // The active segment was started at time 0: the first append rolls it.
    append(&mut log, keyed(&[(Some(b"k"), Some(b"v"))]), 100_000);
    assert_eq!(log.num_segments(), before + 1);
    append(
        &mut log,
        keyed(&[(Some(b"k"), Some(b"v"))]),
        100_000 + 10_000,
    );
    assert_eq!(log.num_segments(), before + 1);
    append(
        &mut log,
        keyed(&[(Some(b"k"), Some(b"v"))]),
        100_000 + 10_001,
    );
    assert_eq!(log.num_segments(), before + 2);
}

#[test]
fn control_batches_null_keys_and_the_last_batch_of_each_output() {
    let dir = tempfile::tempdir().unwrap();
    // One index entry per segment: every batch gets its own segment, and every input
    // becomes its own output.
    let one_per_segment = LogConfig {
        segment_index_bytes: 8,
        index_interval_bytes: 0,
        ..compact_config()
    };
    let mut log = open(dir.path(), one_per_segment, true);
    append(&mut log, keyed(&[(Some(b"a"), Some(b"1"))]), 0);
    append(
        &mut log,
        keyed(&[(Some(b"b"), Some(b"1")), (None, Some(b"no key"))]),
        0,
    );
    let mut marker = keyed(&[(Some(b"\0\0\0\0"), Some(b"\0\0\0\0\0\0"))]);
    let attributes = i16::from_be_bytes([marker[21], marker[22]]) | 0x20;
    marker[21..23].copy_from_slice(&attributes.to_be_bytes());
    let crc = batch::compute_crc(&marker);
    marker[17..21].copy_from_slice(&crc.to_be_bytes());
    // Only the broker writes control batches.
    log.append_with_origin(&mut marker, 3, None, 0, crate::AppendOrigin::Coordinator)
        .unwrap();
    append(&mut log, keyed(&[(Some(b"a"), Some(b"2"))]), 0);
    append(&mut log, keyed(&[(Some(b"b"), Some(b"2"))]), 0);
    append(&mut log, keyed(&[(None, Some(b"only null keys"))]), 0);
    log.roll_to(log.log_end_offset()).unwrap();
    let leo = log.log_end_offset();
    let summary = |log: &Log| -> Vec<(i64, i64, i32, bool)> {
        headers(&read_everything(log))
            .iter()
            .map(|h| {
                (
                    h.base_offset,
                    h.last_offset(),
                    h.records_count,
                    h.is_control(),
                )
            })
            .collect()
    };

    let stats = clean(&mut log, 0, wall_now(), 1 << 20).unwrap();
    assert_eq!((stats.segments_before, stats.segments_after), (6, 6));
    // Each output's only batch is its last: emptied batches stay, header only.
    assert_eq!(
        summary(&log),
        [
            (0, 0, 0, false),
            (1, 2, 0, false),
            (3, 3, 1, true),
            (4, 4, 1, false),
            (5, 5, 1, false),
            (6, 6, 0, false)
        ]
    );
    let bytes = read_everything(&log);
    let at = BatchIter::new(&bytes).nth(2).unwrap().unwrap().0;
    assert_eq!(&bytes[at..at + marker.len()], &marker[..]);
    assert_eq!(
        bytes[..batch::RECORD_BATCH_OVERHEAD].len(),
        headers(&bytes)[0].size_in_bytes()
    );
    assert_eq!(log.log_end_offset(), leo);

    // Merged into one output, empty batches that are not its last are dropped.
    log.set_config(compact_config());
    append(&mut log, keyed(&[(Some(b"c"), Some(b"1"))]), 0);
    log.roll_to(log.log_end_offset()).unwrap();
    let stats = clean(&mut log, stats.first_dirty_offset, wall_now(), 1 << 20).unwrap();
    assert_eq!((stats.segments_before, stats.segments_after), (7, 1));
    assert_eq!(
        summary(&log),
        [
            (3, 3, 1, true),
            (4, 4, 1, false),
            (5, 5, 1, false),
            (7, 7, 1, false)
        ]
    );
    let bytes = read_everything(&log);
    drop(log);
    let log = Log::open(dir.path(), compact_config(), 0, 0, false, 0).unwrap();
    assert_eq!(log.log_end_offset(), leo + 1);
    assert_eq!(log.segments[0].base_offset, 0);
    assert_eq!(read_everything(&log), bytes);
}
