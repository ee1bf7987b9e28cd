//! Opening a log: crash recovery, the clean-shutdown fast path, index rebuilds.
#![allow(clippy::unwrap_used)]

use std::fs;

use moldau_protocol::batch;

use super::*;
use crate::Log;

#[test]
fn index_files_are_rebuilt_identically_after_deletion() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small_config(), true);
    for i in 0..80 {
        append(
            &mut log,
            batch_of(1 + i % 3, 40, 100 + (i as i64 % 7) * 10),
            0,
        );
    }
    let expected = read_everything(&log);
    log.close().unwrap();
    let index_files: Vec<PathBuf> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.extension()
                .is_some_and(|e| e == "index" || e == "timeindex")
        })
        .collect();
    let before: Vec<Vec<u8>> = index_files.iter().map(|p| fs::read(p).unwrap()).collect();
    assert!(before.iter().any(|b| !b.is_empty()));
    for p in &index_files {
        fs::remove_file(p).unwrap();
    }
    // Also leave one index with garbage (not a multiple of 8).
    fs::write(&index_files[0], [1u8; 13]).unwrap();
    let log = open(dir.path(), small_config(), true);
    let after: Vec<Vec<u8>> = index_files.iter().map(|p| fs::read(p).unwrap()).collect();
    assert_eq!(before, after);
    assert_eq!(read_everything(&log), expected);
}

#[test]
fn recovery_truncates_torn_last_batch() {
    let dir = tempfile::tempdir().unwrap();
    let stored = crashed_log(dir.path(), 40);
    let last_log = segment_logs(dir.path()).pop().unwrap();
    let len = fs::metadata(&last_log).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&last_log)
        .unwrap()
        .set_len(len - 5)
        .unwrap();
    let log = open(dir.path(), small_config(), false);
    assert_eq!(log.log_end_offset(), 78);
    assert_eq!(log.recovery_point(), 78);
    assert_eq!(read_everything(&log), concat(&stored[..39]));
    assert_eq!(
        fs::metadata(&last_log).unwrap().len(),
        len - stored[39].len() as u64
    );
}

#[test]
fn recovery_truncates_at_crc_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let stored = crashed_log(dir.path(), 40);
    let last_log = segment_logs(dir.path()).pop().unwrap();
    let mut bytes = fs::read(&last_log).unwrap();
    let n = bytes.len();
    bytes[n - 3] ^= 0x55;
    fs::write(&last_log, &bytes).unwrap();
    let mut log = open(dir.path(), small_config(), false);
    assert_eq!(log.log_end_offset(), 78);
    assert_eq!(read_everything(&log), concat(&stored[..39]));
    // The log keeps working after recovery.
    let again = append(&mut log, batch_of(1, 5, 7), 0);
    assert_eq!(batch::validate(&again).unwrap().base_offset, 78);
}

#[test]
fn recovery_drops_garbage_after_valid_data() {
    let dir = tempfile::tempdir().unwrap();
    let stored = crashed_log(dir.path(), 40);
    let last_log = segment_logs(dir.path()).pop().unwrap();
    let len = fs::metadata(&last_log).unwrap().len();
    let mut f = fs::OpenOptions::new().append(true).open(&last_log).unwrap();
    std::io::Write::write_all(&mut f, &[0xAB; 300]).unwrap();
    drop(f);
    let log = open(dir.path(), small_config(), false);
    assert_eq!(log.log_end_offset(), 80);
    assert_eq!(read_everything(&log), concat(&stored));
    assert_eq!(fs::metadata(&last_log).unwrap().len(), len);
}

#[test]
fn corruption_in_middle_segment_truncates_and_drops_later_segments() {
    let dir = tempfile::tempdir().unwrap();
    let stored = crashed_log(dir.path(), 60);
    let logs = segment_logs(dir.path());
    assert!(logs.len() >= 5);
    let victim = &logs[2];
    let victim_base: i64 = victim
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    // Corrupt the second batch of the victim segment.
    let mut bytes = fs::read(victim).unwrap();
    let first = BatchHeader::parse(&bytes).unwrap().size_in_bytes();
    bytes[first + 70] ^= 0xff;
    fs::write(victim, &bytes).unwrap();
    let log = Log::open(dir.path(), small_config(), 0, 0, false, 0).unwrap();
    assert_eq!(log.num_segments(), 3);
    assert_eq!(segment_logs(dir.path()).len(), 3);
    assert_eq!(log.log_end_offset(), victim_base + 2);
    let kept = (victim_base / 2 + 1) as usize;
    assert_eq!(read_everything(&log), concat(&stored[..kept]));
}

#[test]
fn recovery_starts_at_recovery_point_segment() {
    let dir = tempfile::tempdir().unwrap();
    let stored = crashed_log(dir.path(), 60);
    let logs = segment_logs(dir.path());
    // Corrupt the first segment, but claim a recovery point beyond it: it is trusted
    // (not rescanned), exactly as Kafka does.
    let mut bytes = fs::read(&logs[0]).unwrap();
    bytes[70] ^= 0xff;
    fs::write(&logs[0], &bytes).unwrap();
    let second_base: i64 = logs[1]
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let log = Log::open(dir.path(), small_config(), 0, second_base, false, 0).unwrap();
    assert_eq!(log.log_end_offset(), 120);
    // The damaged first segment is served as stored, and the rest is intact.
    let first = log.read(0, bytes.len(), i64::MAX, false).unwrap();
    assert_eq!(&first.records[..], &bytes[..]);
    let rest = log.read(second_base, usize::MAX, i64::MAX, false).unwrap();
    assert_eq!(
        &rest.records[..],
        &concat(&stored[(second_base / 2) as usize..])[..]
    );
}

#[test]
fn clean_shutdown_trusts_data_and_checks_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small_config(), true);
    let stored: Vec<Vec<u8>> = (0..50)
        .map(|_| append(&mut log, batch_of(3, 30, 9), 0))
        .collect();
    log.close().unwrap();
    // Flip a payload byte in the first segment: a clean open does not scan CRCs.
    let logs = segment_logs(dir.path());
    let mut bytes = fs::read(&logs[0]).unwrap();
    bytes[80] ^= 0x01;
    fs::write(&logs[0], &bytes).unwrap();
    let log = open(dir.path(), small_config(), true);
    assert_eq!(log.log_end_offset(), 150);
    assert_eq!(log.recovery_point(), 150);
    assert_eq!(log.num_segments(), logs.len());
    let all = read_everything(&log);
    assert_eq!(all.len(), concat(&stored).len());
    drop(log);
    // The same damage is found and cut by an unclean open that scans from offset 0.
    let log = Log::open(dir.path(), small_config(), 0, 0, false, 0).unwrap();
    assert_eq!(log.log_end_offset(), 0);
    assert_eq!(log.num_segments(), 1);
}

#[test]
fn leftover_temp_files_and_orphan_indexes_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small_config(), true);
    append(&mut log, batch_of(1, 10, 1), 0);
    log.close().unwrap();
    for name in [
        "00000000000000000007.log.deleted",
        "00000000000000000007.index.cleaned",
        "00000000000000000009.log.swap",
        "00000000000000000042.index",
        "00000000000000000042.timeindex",
        "00000000000000000042.txnindex",
        "00000000000000000001.snapshot.tmp",
    ] {
        fs::write(dir.path().join(name), b"junk").unwrap();
    }
    fs::write(dir.path().join("leader-epoch-checkpoint"), b"0\n0\n").unwrap();
    let log = open(dir.path(), small_config(), true);
    let mut names: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "00000000000000000000.index",
            "00000000000000000000.log",
            "00000000000000000000.timeindex",
            // The producer snapshot written by close.
            "00000000000000000001.snapshot",
            "leader-epoch-checkpoint"
        ]
    );
    assert_eq!(log.log_end_offset(), 1);
}

#[test]
fn log_start_offset_from_checkpoint_is_clamped() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small_config(), true);
    for _ in 0..10 {
        append(&mut log, batch_of(1, 10, 1), 0);
    }
    log.close().unwrap();
    let log = Log::open(dir.path(), small_config(), 4, 10, true, 0).unwrap();
    assert_eq!(log.log_start_offset(), 4);
    drop(log);
    let log = Log::open(dir.path(), small_config(), -1, 10, true, 0).unwrap();
    assert_eq!(log.log_start_offset(), 0);
    drop(log);
    // Beyond the log end: data is gone, restart empty there (Kafka LogLoader).
    let log = Log::open(dir.path(), small_config(), 50, 10, true, 0).unwrap();
    assert_eq!(
        (
            log.log_start_offset(),
            log.log_end_offset(),
            log.num_segments()
        ),
        (50, 50, 1)
    );
    assert_eq!(segment_logs(dir.path()).len(), 1);
    log.delete().unwrap();
    assert!(!dir.path().exists());
}
