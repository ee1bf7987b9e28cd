//! Rolling, retention, DeleteRecords, truncation, flushing and poisoning.
#![allow(clippy::unwrap_used)]

use std::fs;

use moldau_protocol::batch;

use super::*;
use crate::{Log, LogConfig, StorageError};

#[test]
fn retention_by_time_advances_log_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = small_config();
    cfg.retention_ms = 1_000;
    let mut log = open(dir.path(), cfg, true);
    // Timestamps 0..100 step 1 per batch; segments hold a few batches each.
    for i in 0..100 {
        append(&mut log, batch_of(1, 200, i * 100), 0);
    }
    let segments = log.num_segments();
    assert!(segments > 10);
    // now = 5_000: segments whose newest record is < 4_000 go.
    let deleted = log.apply_retention(5_000).unwrap();
    assert!(deleted > 0);
    assert_eq!(log.num_segments(), segments - deleted);
    assert_eq!(segment_logs(dir.path()).len(), log.num_segments());
    let start = log.log_start_offset();
    let first = log.read(start, 1 << 20, i64::MAX, true).unwrap();
    assert_eq!(first.first_batch_offset, Some(start));
    // The first kept batch is the one right after the last deleted segment, and the
    // deleted segment's newest batch was older than the cutoff.
    assert!(start <= 40, "start {start}");
    assert!(start > 30, "start {start}");
    assert!(matches!(
        log.read(start - 1, 10, i64::MAX, true),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    assert_eq!(log.apply_retention(5_000).unwrap(), 0);
    // Everything expired, including the active segment: it is rolled and deleted.
    log.apply_retention(1_000_000).unwrap();
    assert_eq!(log.num_segments(), 1);
    assert_eq!(log.log_start_offset(), 100);
    assert_eq!(log.log_end_offset(), 100);
    assert_eq!(log.size_in_bytes(), 0);
    let again = append(&mut log, batch_of(1, 1, 1), 0);
    assert_eq!(batch::validate(&again).unwrap().base_offset, 100);
}

#[test]
fn retention_by_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = small_config();
    cfg.retention_bytes = 3_000;
    let mut log = open(dir.path(), cfg, true);
    for i in 0..100 {
        append(&mut log, batch_of(1, 200, i), 0);
    }
    let before = log.size_in_bytes();
    let deleted = log.apply_retention(0).unwrap();
    assert!(deleted > 0);
    let after = log.size_in_bytes();
    assert!(after >= 3_000, "{after}");
    assert!(before > after);
    // Deleting one more segment would go below the limit.
    let first_size = fs::metadata(&segment_logs(dir.path())[0]).unwrap().len();
    assert!(after - first_size < 3_000);
    assert!(log.log_start_offset() > 0);
    assert_eq!(
        log.read(log.log_start_offset(), 10, i64::MAX, true)
            .unwrap()
            .first_batch_offset,
        Some(log.log_start_offset())
    );
}

#[test]
fn delete_records_before_kip107() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small_config(), true);
    for _ in 0..40 {
        append(&mut log, batch_of(2, 100, 1), 0);
    }
    let segments = log.num_segments();
    assert_eq!(log.delete_records_before(31).unwrap(), 31);
    assert_eq!(log.log_start_offset(), 31);
    assert!(log.num_segments() < segments);
    // The batch containing 31 (30..=31) is still served.
    assert_eq!(
        log.read(31, 10, i64::MAX, true).unwrap().first_batch_offset,
        Some(30)
    );
    // Going backwards is a no-op.
    assert_eq!(log.delete_records_before(5).unwrap(), 31);
    assert!(matches!(
        log.delete_records_before(81),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    assert_eq!(log.delete_records_before(80).unwrap(), 80);
    assert_eq!(log.num_segments(), 1);
    assert_eq!(log.size_in_bytes(), 0);
    assert!(log.read(80, 10, i64::MAX, true).unwrap().records.is_empty());
}

#[test]
fn truncate_to_kip101() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small_config(), true);
    let stored: Vec<Vec<u8>> = (0..40)
        .map(|_| append(&mut log, batch_of(2, 100, 1), 0))
        .collect();
    let segments = log.num_segments();
    log.truncate_to(31).unwrap(); // inside batch 30..=31: the whole batch goes
    assert_eq!(log.log_end_offset(), 30);
    assert!(log.num_segments() < segments);
    assert_eq!(segment_logs(dir.path()).len(), log.num_segments());
    assert_eq!(read_everything(&log), concat(&stored[..15]));
    log.truncate_to(20).unwrap();
    assert_eq!(log.log_end_offset(), 20);
    assert!(log.recovery_point() <= 20);
    let next = append(&mut log, batch_of(1, 3, 1), 0);
    assert_eq!(batch::validate(&next).unwrap().base_offset, 20);
    let mut expected = concat(&stored[..10]);
    expected.extend_from_slice(&next);
    log.close().unwrap();
    let log = open(dir.path(), small_config(), true);
    assert_eq!(log.log_end_offset(), 21);
    assert_eq!(read_everything(&log), expected);
    drop(log);
    let mut log = Log::open(dir.path(), small_config(), 0, 0, false, 0).unwrap();
    assert_eq!(read_everything(&log), expected);
    log.truncate_to(0).unwrap();
    assert_eq!(
        (
            log.log_start_offset(),
            log.log_end_offset(),
            log.num_segments()
        ),
        (0, 0, 1)
    );
}

#[test]
fn roll_by_segment_ms() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        segment_ms: 1_000,
        ..LogConfig::default()
    };
    let mut log = open(dir.path(), cfg, true);
    append(&mut log, batch_of(1, 10, 1), 10_000);
    append(&mut log, batch_of(1, 10, 1), 10_900);
    assert_eq!(log.num_segments(), 1);
    append(&mut log, batch_of(1, 10, 1), 11_001);
    assert_eq!(log.num_segments(), 2);
    assert_eq!(
        segment_logs(dir.path())
            .last()
            .unwrap()
            .file_name()
            .unwrap(),
        "00000000000000000002.log"
    );
}

#[test]
fn roll_when_index_full() {
    let dir = tempfile::tempdir().unwrap();
    // 3 offset entries, 2 time entries per segment.
    let cfg = LogConfig {
        index_interval_bytes: 0,
        segment_index_bytes: 24,
        ..LogConfig::default()
    };
    let mut log = open(dir.path(), cfg, true);
    for i in 0..10 {
        append(&mut log, batch_of(1, 10, i), 0);
    }
    assert!(log.num_segments() >= 4, "{}", log.num_segments());
    for p in fs::read_dir(dir.path()).unwrap() {
        let p = p.unwrap().path();
        if p.extension().is_some_and(|e| e == "index") {
            assert!(fs::metadata(&p).unwrap().len() <= 24);
        }
    }
}

#[test]
fn flush_group_commit_and_poison() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = small_config();
    cfg.flush_interval_ms = 500;
    let mut log = open(dir.path(), cfg.clone(), true);
    assert!(!log.flush_due(1_000_000));
    assert!(log.flush_target().is_empty());
    append(&mut log, batch_of(2, 10, 1), 100);
    assert_eq!(log.recovery_point(), 0);
    assert!(!log.flush_due(599));
    assert!(log.flush_due(600));
    let target = log.flush_target();
    assert_eq!(target.end_offset(), 2);
    assert!(!target.is_empty());
    append(&mut log, batch_of(1, 10, 1), 700); // lands after the snapshot
    target.sync().unwrap();
    log.mark_flushed(target.end_offset());
    assert_eq!(log.recovery_point(), 2);
    log.mark_flushed(1); // never goes back
    assert_eq!(log.recovery_point(), 2);
    log.flush().unwrap();
    assert_eq!(log.recovery_point(), 3);
    assert!(!log.flush_due(i64::MAX));

    // flush.messages: synchronous flush inside the append.
    cfg.flush_interval_messages = 2;
    log.set_config(cfg);
    append(&mut log, batch_of(1, 10, 1), 0);
    assert_eq!(log.recovery_point(), 3);
    append(&mut log, batch_of(1, 10, 1), 0);
    assert_eq!(log.recovery_point(), 5);

    log.poison();
    assert!(log.is_poisoned());
    let mut b = batch_of(1, 10, 1);
    assert!(matches!(
        log.append_as_leader(&mut b, 0, None, 0),
        Err(StorageError::Poisoned)
    ));
    assert!(matches!(log.flush(), Err(StorageError::Poisoned)));
    assert!(matches!(log.truncate_to(0), Err(StorageError::Poisoned)));
    assert!(StorageError::Poisoned.is_fatal());
    // Offline, as Kafka takes a log directory offline: not even reads are served from
    // state that may not match the disk.
    assert!(matches!(
        log.read(0, 1 << 20, i64::MAX, true),
        Err(StorageError::Poisoned)
    ));
    assert!(matches!(log.close(), Err(StorageError::Poisoned)));
    // Reopening recovers and clears the poison.
    let log = Log::open(dir.path(), small_config(), 0, 3, false, 0).unwrap();
    assert!(!log.is_poisoned());
    assert_eq!(log.log_end_offset(), 5);
}

#[test]
fn flush_target_syncs_directory_only_after_new_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small_config(), true);
    append(&mut log, batch_of(1, 10, 1), 0);
    // `open` synced the directory: only file data is pending.
    let target = log.flush_target();
    assert!(target.dir.is_none());
    assert_eq!(target.files.len(), 3);
    target.sync().unwrap();
    log.mark_flushed(target.end_offset());
    while log.num_segments() < 3 {
        append(&mut log, batch_of(1, 300, 1), 0);
    }
    let target = log.flush_target();
    assert_eq!(target.dir.as_ref().map(|(_, flags)| flags.len()), Some(2));
    target.sync().unwrap();
    log.mark_flushed(target.end_offset());
    assert_eq!(log.recovery_point(), log.log_end_offset());
    assert!(log.flush_target().is_empty());
}

#[test]
fn errors_map_to_kafka_codes() {
    use moldau_protocol::error::ResponseError;
    let oor = StorageError::OffsetOutOfRange {
        offset: 5,
        log_start_offset: 0,
        log_end_offset: 3,
    };
    assert_eq!(oor.response_error(), ResponseError::OffsetOutOfRange);
    assert!(!oor.is_fatal());
    assert_eq!(
        StorageError::Poisoned.response_error(),
        ResponseError::KafkaStorageError
    );
    let bad = StorageError::InvalidBatch(batch::BatchError::InvalidMagic(1));
    assert_eq!(bad.response_error(), ResponseError::CorruptMessage);
    let io = StorageError::Io {
        context: "write x".into(),
        source: std::io::Error::other("disk on fire"),
    };
    assert!(io.is_fatal());
    assert_eq!(io.to_string(), "write x: disk on fire");
}
