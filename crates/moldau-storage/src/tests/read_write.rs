//! Appends and reads: round trips, fetch bounds, timestamps, follower appends.
#![allow(clippy::unwrap_used)]

use moldau_protocol::batch::{self, TimestampType};

use super::*;
use crate::{Log, LogConfig, StorageError};

#[test]
fn append_and_read_round_trip_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small_config(), true);
    let mut expected = Vec::new();
    let mut bases = Vec::new();
    for i in 0..120 {
        let n = 1 + i % 4;
        let before = log.log_end_offset();
        let mut b = batch_of(n, 10 + (i * 7) % 90, 1_000 + i as i64);
        let info = log.append_as_leader(&mut b, 3, None, 0).unwrap();
        assert_eq!(info.first_offset, before);
        assert_eq!(info.last_offset, before + n as i64 - 1);
        assert_eq!(info.record_count, n as u64);
        assert_eq!(info.bytes, b.len() as u64);
        assert_eq!(info.max_timestamp, 1_000 + i as i64);
        assert_eq!(info.log_append_time_ms, -1);
        let h = batch::validate(&b).unwrap();
        assert_eq!((h.base_offset, h.partition_leader_epoch), (before, 3));
        bases.push((before, info.last_offset, b.clone()));
        expected.extend_from_slice(&b);
    }
    assert!(log.num_segments() > 10, "{} segments", log.num_segments());
    assert_eq!(log.size_in_bytes(), expected.len() as u64);
    assert_eq!(segment_logs(dir.path()).len(), log.num_segments());
    assert_eq!(read_everything(&log), expected);
    // Every offset reads back the batch that contains it, first.
    for (base, last, bytes) in &bases {
        for offset in *base..=*last {
            let got = log.read(offset, bytes.len(), i64::MAX, false).unwrap();
            assert_eq!(got.first_batch_offset, Some(*base));
            assert_eq!(got.end_offset, Some(*last + 1));
            assert_eq!(&got.records[..], &bytes[..], "offset {offset}");
        }
    }
    // One big read crosses all segments.
    let all = log.read(0, usize::MAX, i64::MAX, false).unwrap();
    assert_eq!(&all.records[..], &expected[..]);
}

#[test]
fn read_inside_batch_returns_containing_batch() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), LogConfig::default(), true);
    let first = append(&mut log, batch_of(5, 10, 1), 0);
    let second = append(&mut log, batch_of(2, 10, 1), 0);
    let got = log.read(3, 1 << 20, i64::MAX, false).unwrap();
    assert_eq!(got.first_batch_offset, Some(0));
    assert_eq!(got.end_offset, Some(7), "past both batches");
    assert_eq!(got.records.len(), first.len() + second.len());
    let got = log.read(5, 1 << 20, i64::MAX, false).unwrap();
    assert_eq!(got.first_batch_offset, Some(5));
    assert_eq!(&got.records[..], &second[..]);
}

#[test]
fn min_one_batch_kip74_and_byte_budget() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), LogConfig::default(), true);
    let a = append(&mut log, batch_of(1, 500, 1), 0);
    let b = append(&mut log, batch_of(1, 500, 1), 0);
    let _c = append(&mut log, batch_of(1, 500, 1), 0);
    // Budget below the first batch.
    let got = log.read(0, 100, i64::MAX, true).unwrap();
    assert_eq!(&got.records[..], &a[..]);
    assert_eq!(got.end_offset, Some(1), "the one oversized batch");
    let got = log.read(0, 100, i64::MAX, false).unwrap();
    assert!(got.records.is_empty());
    assert_eq!(got.first_batch_offset, None);
    assert_eq!(got.end_offset, None);
    // Exactly two batches fit.
    let got = log.read(0, a.len() + b.len(), i64::MAX, false).unwrap();
    assert_eq!(headers(&got.records).len(), 2);
    let got = log.read(0, a.len() + b.len() - 1, i64::MAX, false).unwrap();
    assert_eq!(headers(&got.records).len(), 1);
    // Zero budget without min_one_batch.
    assert!(log.read(0, 0, i64::MAX, false).unwrap().records.is_empty());
}

#[test]
fn max_offset_bounds_reads() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = small_config();
    cfg.index_interval_bytes = 0; // an index entry per batch, so the index bound is used
    let mut log = open(dir.path(), cfg, true);
    for _ in 0..30 {
        append(&mut log, batch_of(3, 50, 1), 0);
    }
    assert_eq!(log.log_end_offset(), 90);
    for hw in [1, 3, 4, 10, 44, 45, 89, 90] {
        let got = log.read(0, usize::MAX, hw, true).unwrap();
        let hs = headers(&got.records);
        let last = hs.last().map_or(-1, |h| h.last_offset());
        assert!(last < hw, "hw {hw}: returned up to {last}");
        assert_eq!(last, (hw / 3) * 3 - 1, "hw {hw}");
    }
    assert!(log.read(30, 1000, 30, true).unwrap().records.is_empty());
    assert!(log.read(31, 1000, 30, true).unwrap().records.is_empty());
    // A batch containing the bound is withheld even if it starts below it.
    assert!(log.read(30, 1000, 31, true).unwrap().records.is_empty());
}

#[test]
fn offset_out_of_range() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small_config(), true);
    for _ in 0..20 {
        append(&mut log, batch_of(2, 100, 1), 0);
    }
    let leo = log.log_end_offset();
    assert!(log
        .read(leo, 1000, i64::MAX, true)
        .unwrap()
        .records
        .is_empty());
    match log.read(leo + 1, 1000, i64::MAX, true) {
        Err(StorageError::OffsetOutOfRange {
            offset,
            log_start_offset,
            log_end_offset,
        }) => assert_eq!(
            (offset, log_start_offset, log_end_offset),
            (leo + 1, 0, leo)
        ),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        log.read(-1, 1000, i64::MAX, true),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    log.delete_records_before(10).unwrap();
    assert!(matches!(
        log.read(9, 1000, i64::MAX, true),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    assert!(log.read(10, 1000, i64::MAX, true).is_ok());
}

#[test]
fn offset_for_timestamp_kip79() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 300,
        ..small_config()
    };
    let small_config = || config.clone();
    let mut log = open(dir.path(), small_config(), true);
    // Offsets 0..=2 at 100, 300, 200 (uncompressed, walked per record).
    append(&mut log, batch_with_timestamps(&[100, 300, 200], 0), 0);
    // Offsets 3..=5, "gzip": walked after the (identity) codec.
    append(&mut log, batch_with_timestamps(&[400, 500, 450], 1), 0);
    for i in 0..30 {
        append(
            &mut log,
            batch_with_timestamps(&[1_000 + i * 10, 1_005 + i * 10], 0),
            0,
        );
    }
    // LogAppendTime batch: every record counts as 9_000.
    let mut lat = batch_with_timestamps(&[1, 2, 3], 0);
    let info = log.append_as_leader(&mut lat, 1, Some(9_000), 0).unwrap();
    assert_eq!(info.log_append_time_ms, 9_000);
    assert_eq!(info.max_timestamp, 9_000);
    let h = batch::validate(&lat).unwrap();
    assert_eq!(h.timestamp_type(), TimestampType::LogAppendTime);
    assert!(log.num_segments() > 3);
    let check = |log: &Log| {
        assert_eq!(log.offset_for_timestamp_plain(0).unwrap(), Some((0, 100)));
        assert_eq!(log.offset_for_timestamp_plain(150).unwrap(), Some((1, 300)));
        assert_eq!(log.offset_for_timestamp_plain(300).unwrap(), Some((1, 300)));
        assert_eq!(log.offset_for_timestamp_plain(301).unwrap(), Some((3, 400)));
        assert_eq!(
            log.offset_for_timestamp_plain(501).unwrap(),
            Some((6, 1_000))
        );
        assert_eq!(
            log.offset_for_timestamp_plain(1_001).unwrap(),
            Some((7, 1_005))
        );
        assert_eq!(
            log.offset_for_timestamp_plain(1_150).unwrap(),
            Some((36, 1_150))
        );
        assert_eq!(
            log.offset_for_timestamp_plain(1_296).unwrap(),
            Some((66, 9_000))
        );
        assert_eq!(
            log.offset_for_timestamp_plain(9_000).unwrap(),
            Some((66, 9_000))
        );
        assert_eq!(log.offset_for_timestamp_plain(9_001).unwrap(), None);
        assert_eq!(log.max_timestamp_offset_plain().unwrap(), Some((66, 9_000)));
    };
    check(&log);
    log.close().unwrap();
    let log = open(dir.path(), small_config(), true);
    check(&log);
    drop(log);
    let mut log = Log::open(dir.path(), small_config(), 0, 0, false, 0).unwrap();
    check(&log);
    // Log start inside a batch: records below it are skipped.
    log.delete_records_before(2).unwrap();
    assert_eq!(log.offset_for_timestamp_plain(0).unwrap(), Some((2, 200)));
}

#[test]
fn max_timestamp_offset_kip734() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small_config(), true);
    assert_eq!(log.max_timestamp_offset_plain().unwrap(), None);
    append(&mut log, batch_with_timestamps(&[10, 50, 20], 0), 0);
    assert_eq!(log.max_timestamp_offset_plain().unwrap(), Some((1, 50)));
    append(&mut log, batch_with_timestamps(&[60, 70, 65], 4), 0); // "zstd": exact record
    assert_eq!(log.max_timestamp_offset_plain().unwrap(), Some((4, 70)));
    for _ in 0..20 {
        append(&mut log, batch_with_timestamps(&[30, 40], 0), 0);
    }
    append(&mut log, batch_with_timestamps(&[70, 70], 0), 0); // a tie: the earlier wins
    assert_eq!(log.max_timestamp_offset_plain().unwrap(), Some((4, 70)));
    append(&mut log, batch_with_timestamps(&[80, 90, 90], 0), 0);
    assert_eq!(log.max_timestamp_offset_plain().unwrap(), Some((49, 90)));
}

#[test]
fn follower_append_keeps_offsets_and_rejects_going_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small_config(), true);
    let mut b = batch_of(3, 10, 1);
    batch::set_base_offset(&mut b, 0);
    batch::set_partition_leader_epoch(&mut b, 7);
    let info = log.append_as_follower(&b, 0).unwrap();
    assert_eq!((info.first_offset, info.last_offset), (0, 2));
    // A gap (compacted leader) is accepted.
    let mut c = batch_of(1, 10, 1);
    batch::set_base_offset(&mut c, 10);
    log.append_as_follower(&c, 0).unwrap();
    assert_eq!(log.log_end_offset(), 11);
    let mut d = batch_of(1, 10, 1);
    batch::set_base_offset(&mut d, 5);
    assert!(matches!(
        log.append_as_follower(&d, 0),
        Err(StorageError::UnexpectedAppendOffset {
            first_offset: 5,
            log_end_offset: 11
        })
    ));
    let got = log.read(0, 1 << 20, i64::MAX, false).unwrap();
    let hs = headers(&got.records);
    assert_eq!(
        hs.iter()
            .map(|h| (h.base_offset, h.partition_leader_epoch))
            .collect::<Vec<_>>(),
        [(0, 7), (10, -1)]
    );
    assert_eq!(
        log.read(5, 100, i64::MAX, true).unwrap().first_batch_offset,
        Some(10)
    );
}

#[test]
fn malformed_appends_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small_config(), true);
    let mut b = batch_of(1, 10, 1);
    let mut cut = b[..b.len() - 1].to_vec();
    assert!(matches!(
        log.append_as_leader(&mut cut, 0, None, 0),
        Err(StorageError::InvalidBatch(_))
    ));
    let mut big = batch_of(1, 2_000, 1);
    assert!(matches!(
        log.append_as_leader(&mut big, 0, None, 0),
        Err(StorageError::RecordSetTooLarge { .. })
    ));
    assert_eq!(log.log_end_offset(), 0);
    let info = log.append_as_leader(&mut [], 0, None, 0).unwrap();
    assert_eq!((info.record_count, info.bytes), (0, 0));
    log.append_as_leader(&mut b, 0, None, 0).unwrap();
    assert_eq!(log.log_end_offset(), 1);
}

#[test]
fn log_can_be_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Log>();
    assert_send_sync::<crate::FlushTarget>();
}

#[test]
fn new_directory_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let part = dir.path().join("orders-3");
    let mut log = open(&part, LogConfig::default(), false);
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (0, 0));
    assert!(part.join("00000000000000000000.log").exists());
    assert!(log.read(0, 100, i64::MAX, true).unwrap().records.is_empty());
    append(&mut log, batch_of(1, 1, 1), 0);
    assert_eq!(log.dir(), part.as_path());
    assert_eq!(log.config(), &LogConfig::default());
}
