//! The leader-epoch cache (KIP-101, KIP-279; Kafka `LeaderEpochFileCache`): the cache on
//! its own, its `leader-epoch-checkpoint` file, and how [`Log`] keeps it.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::Path;

use moldau_protocol::batch;
use proptest::prelude::*;

use super::*;
use crate::leader_epoch::{EpochEntry, FileState, LeaderEpochCache, LEADER_EPOCH_CHECKPOINT_FILE};
use crate::{Log, StorageError};

// ---------------------------------------------------------------- helpers

fn entries(cache: &LeaderEpochCache) -> Vec<(i32, i64)> {
    cache
        .entries()
        .iter()
        .map(|e| (e.epoch, e.start_offset))
        .collect()
}

/// A cache in `dir` that loaded no file.
fn empty_cache(dir: &Path) -> LeaderEpochCache {
    let (cache, state) = LeaderEpochCache::load(dir).unwrap();
    assert_eq!(state, FileState::Missing);
    cache
}

/// A cache holding `list`, assigned in order.
fn cache_with(dir: &Path, list: &[(i32, i64)]) -> LeaderEpochCache {
    let mut cache = empty_cache(dir);
    for &(epoch, start) in list {
        cache.assign(epoch, start).unwrap();
    }
    assert_eq!(entries(&cache), list);
    cache
}

fn file_text(dir: &Path) -> String {
    fs::read_to_string(dir.join(LEADER_EPOCH_CHECKPOINT_FILE)).unwrap()
}

fn file_exists(dir: &Path) -> bool {
    dir.join(LEADER_EPOCH_CHECKPOINT_FILE).exists()
}

fn remove_file(dir: &Path) {
    fs::remove_file(dir.join(LEADER_EPOCH_CHECKPOINT_FILE)).unwrap();
}

/// Appends one batch of `records` records as leader in `epoch`; returns its first offset.
fn append_at(log: &mut Log, epoch: i32, records: usize) -> i64 {
    let mut b = batch_of(records, 200, 1);
    log.append_as_leader(&mut b, epoch, None, 0)
        .unwrap()
        .first_offset
}

/// A batch as a leader stored it: `records` records at `base_offset`, stamped `epoch`.
fn leader_batch(base_offset: i64, epoch: i32, records: usize) -> Vec<u8> {
    let mut b = batch_of(records, 40, 1);
    batch::set_base_offset(&mut b, base_offset);
    batch::set_partition_leader_epoch(&mut b, epoch);
    b
}

/// A log over several segments with leader appends in epochs 0, 0, 2, 2, 5 (two
/// records each: offsets 0, 2, 4, 6, 8; log end offset 10).
fn log_with_epochs(dir: &Path) -> Log {
    let mut log = open(dir, small_config(), true);
    for epoch in [0, 0, 2, 2, 5] {
        append_at(&mut log, epoch, 2);
    }
    assert!(log.num_segments() > 2);
    log
}

const EPOCHS_0_2_5: [(i32, i64); 3] = [(0, 0), (2, 4), (5, 8)];

// ---------------------------------------------------------------- the cache

#[test]
fn assign_adds_new_epochs_and_ignores_repeats_and_negative_epochs() {
    let dir = tempfile::tempdir().unwrap();
    let mut cache = empty_cache(dir.path());
    assert_eq!(cache.latest_epoch(), None);
    assert_eq!(cache.latest_entry(), None);
    assert_eq!(cache.earliest_entry(), None);
    cache.assign(-1, 0).unwrap();
    assert!(entries(&cache).is_empty());
    assert!(!file_exists(dir.path()), "nothing changed, nothing written");
    cache.assign(1, 10).unwrap();
    cache.assign(1, 15).unwrap(); // same epoch, later offset: no change
    cache.assign(3, 20).unwrap();
    cache.assign(-1, 25).unwrap();
    cache.assign(3, 30).unwrap();
    assert_eq!(entries(&cache), [(1, 10), (3, 20)]);
    assert_eq!(cache.latest_epoch(), Some(3));
    assert_eq!(
        cache.latest_entry(),
        Some(EpochEntry {
            epoch: 3,
            start_offset: 20
        })
    );
    assert_eq!(
        cache.earliest_entry(),
        Some(EpochEntry {
            epoch: 1,
            start_offset: 10
        })
    );
    assert_eq!(file_text(dir.path()), "0\n2\n1 10\n3 20\n");
}

#[test]
fn assign_writes_the_file_only_when_entries_change() {
    let dir = tempfile::tempdir().unwrap();
    let mut cache = cache_with(dir.path(), &[(1, 10)]);
    remove_file(dir.path());
    for offset in 11..100 {
        assert!(!cache.is_update_needed(1, offset));
        cache.assign(1, offset).unwrap();
    }
    assert!(
        !file_exists(dir.path()),
        "an unchanged epoch rewrote the file"
    );
    cache.assign(2, 100).unwrap();
    assert_eq!(file_text(dir.path()), "0\n2\n1 10\n2 100\n");
}

#[test]
fn assign_of_an_older_epoch_truncates_later_entries() {
    let dir = tempfile::tempdir().unwrap();
    let mut cache = cache_with(dir.path(), &[(0, 0), (2, 10), (5, 20)]);
    // An epoch between known ones: later epochs go.
    cache.assign(3, 15).unwrap();
    assert_eq!(entries(&cache), [(0, 0), (2, 10), (3, 15)]);
    // An older epoch at a later offset: every epoch >= it goes.
    cache.assign(1, 30).unwrap();
    assert_eq!(entries(&cache), [(0, 0), (1, 30)]);
    // A newer epoch at an earlier offset: every entry starting at or after it goes.
    cache.assign(6, 5).unwrap();
    assert_eq!(entries(&cache), [(0, 0), (6, 5)]);
    // The latest epoch again, at an earlier offset: its start moves back.
    cache.assign(6, 3).unwrap();
    assert_eq!(entries(&cache), [(0, 0), (6, 3)]);
    // An older epoch at the same offset as the first: replaces everything.
    cache.assign(0, 0).unwrap();
    assert_eq!(entries(&cache), [(0, 0)]);
    assert_eq!(file_text(dir.path()), "0\n1\n0 0\n");
}

#[test]
fn end_offset_for_follows_kafka() {
    let dir = tempfile::tempdir().unwrap();
    let cache = cache_with(dir.path(), &[(1, 10), (3, 20), (5, 30)]);
    let leo = 40;
    for (requested, expected) in [
        (-1, (-1, -1)), // UNDEFINED_EPOCH
        (0, (0, 10)),   // below the first epoch: the first epoch's start
        (1, (1, 20)),
        (2, (1, 20)), // between epochs: the floor epoch and the next start
        (3, (3, 30)),
        (4, (3, 30)),
        (5, (5, 40)),   // the latest epoch: the log end offset
        (6, (-1, -1)),  // above the latest
        (99, (-1, -1)), // far above
    ] {
        assert_eq!(
            cache.end_offset_for(requested, leo),
            expected,
            "epoch {requested}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let empty = empty_cache(dir.path());
    for requested in [-1, 0, 7] {
        assert_eq!(empty.end_offset_for(requested, leo), (-1, -1));
    }
}

#[test]
fn epoch_for_offset_finds_the_covering_entry() {
    let dir = tempfile::tempdir().unwrap();
    let cache = cache_with(dir.path(), &[(1, 10), (3, 20), (5, 30)]);
    for (offset, expected) in [
        (-1, None),
        (9, None),
        (10, Some(1)),
        (19, Some(1)),
        (20, Some(3)),
        (29, Some(3)),
        (30, Some(5)),
        (1_000, Some(5)),
    ] {
        assert_eq!(cache.epoch_for_offset(offset), expected, "offset {offset}");
    }
    assert_eq!(
        empty_cache(tempfile::tempdir().unwrap().path()).epoch_for_offset(5),
        None
    );
}

#[test]
fn truncate_from_end_removes_epochs_at_or_after_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let mut cache = cache_with(dir.path(), &[(1, 10), (3, 20), (5, 30)]);
    remove_file(dir.path());
    for no_op in [-1, 31, 100] {
        cache.truncate_from_end(no_op).unwrap();
    }
    assert_eq!(entries(&cache), [(1, 10), (3, 20), (5, 30)]);
    assert!(!file_exists(dir.path()), "an unchanged cache was written");
    cache.truncate_from_end(30).unwrap();
    assert_eq!(entries(&cache), [(1, 10), (3, 20)]);
    assert_eq!(file_text(dir.path()), "0\n2\n1 10\n3 20\n");
    cache.truncate_from_end(11).unwrap();
    assert_eq!(entries(&cache), [(1, 10)]);
    cache.truncate_from_end(0).unwrap();
    assert!(entries(&cache).is_empty());
    assert_eq!(file_text(dir.path()), "0\n0\n");
}

#[test]
fn truncate_from_start_moves_the_covering_entry() {
    let dir = tempfile::tempdir().unwrap();
    let list = [(1, 10), (3, 20), (5, 30)];
    let mut cache = cache_with(dir.path(), &list);
    remove_file(dir.path());
    for no_op in [-1, 5, 10] {
        cache.truncate_from_start(no_op).unwrap();
    }
    assert_eq!(entries(&cache), list);
    assert!(!file_exists(dir.path()), "an unchanged cache was written");
    for (start, expected) in [
        (15, vec![(1, 15), (3, 20), (5, 30)]),
        (20, vec![(3, 20), (5, 30)]),
        (25, vec![(3, 25), (5, 30)]),
        (100, vec![(5, 100)]),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut cache = cache_with(dir.path(), &list);
        cache.truncate_from_start(start).unwrap();
        assert_eq!(entries(&cache), expected, "start {start}");
        let (reloaded, state) = LeaderEpochCache::load(dir.path()).unwrap();
        assert_eq!(state, FileState::Valid);
        assert_eq!(entries(&reloaded), expected, "file after start {start}");
    }
}

#[test]
fn clear_writes_an_empty_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut cache = cache_with(dir.path(), &[(1, 10), (3, 20)]);
    cache.clear().unwrap();
    assert!(entries(&cache).is_empty());
    assert_eq!(file_text(dir.path()), "0\n0\n");
}

#[test]
fn file_round_trip_in_kafka_format() {
    let dir = tempfile::tempdir().unwrap();
    let mut cache = cache_with(dir.path(), &[(0, 0), (7, 1_234), (i32::MAX, i64::MAX)]);
    assert_eq!(
        file_text(dir.path()),
        "0\n3\n0 0\n7 1234\n2147483647 9223372036854775807\n"
    );
    assert_eq!(cache.path(), dir.path().join("leader-epoch-checkpoint"));
    assert!(!dir.path().join("leader-epoch-checkpoint.tmp").exists());
    let (loaded, state) = LeaderEpochCache::load(dir.path()).unwrap();
    assert_eq!(state, FileState::Valid);
    assert_eq!(entries(&loaded), entries(&cache));
    // A file written by Kafka (whitespace as its reader accepts) loads the same.
    fs::write(
        dir.path().join(LEADER_EPOCH_CHECKPOINT_FILE),
        "0\n2\n4 100\n9  250\n",
    )
    .unwrap();
    let (loaded, state) = LeaderEpochCache::load(dir.path()).unwrap();
    assert_eq!(state, FileState::Valid);
    assert_eq!(entries(&loaded), [(4, 100), (9, 250)]);
    cache.clear().unwrap();
    let (loaded, state) = LeaderEpochCache::load(dir.path()).unwrap();
    assert_eq!((entries(&loaded), state), (vec![], FileState::Valid));
}

#[test]
fn malformed_files_are_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [&[u8]; 13] = [
        b"",
        b"1\n0\n",                  // unknown version
        b"0\n",                     // no count
        b"0\nx\n",                  // bad count
        b"0\n2\n1 10\n",            // count mismatch
        b"0\n0\n1 10\n",            // count mismatch
        b"0\n1\nx 10\n",            // bad epoch
        b"0\n1\n1\n",               // missing offset
        b"0\n1\n1 10 7\n",          // extra field
        b"0\n1\n-1 10\n",           // negative epoch
        b"0\n2\n3 10\n2 20\n",      // epochs not ascending
        b"0\n2\n1 10\n2 10\n",      // start offsets not ascending
        &[b'0', b'\n', 0xff, 0xfe], // not UTF-8
    ];
    for text in cases {
        fs::write(dir.path().join(LEADER_EPOCH_CHECKPOINT_FILE), text).unwrap();
        let (mut cache, state) = LeaderEpochCache::load(dir.path()).unwrap();
        assert!(
            matches!(state, FileState::Corrupt(_)),
            "{:?}: {state:?}",
            String::from_utf8_lossy(text)
        );
        assert!(entries(&cache).is_empty());
        // A corrupt file is replaced at the next write even if nothing is assigned.
        cache.flush().unwrap();
        assert_eq!(file_text(dir.path()), "0\n0\n");
    }
}

// ---------------------------------------------------------------- the log

#[test]
fn leader_appends_record_epoch_starts_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_with_epochs(dir.path());
    assert_eq!(log.leader_epoch_entries(), EPOCHS_0_2_5);
    assert_eq!(log.latest_epoch(), Some(5));
    assert_eq!(file_text(dir.path()), "0\n3\n0 0\n2 4\n5 8\n");
    assert_eq!(log.end_offset_for_epoch(0), (0, 4));
    assert_eq!(log.end_offset_for_epoch(1), (0, 4));
    assert_eq!(log.end_offset_for_epoch(2), (2, 8));
    assert_eq!(log.end_offset_for_epoch(5), (5, 10));
    assert_eq!(log.end_offset_for_epoch(6), (-1, -1));
    assert_eq!(log.epoch_for_offset(5), Some(2));
    assert_eq!(log.leader_epoch_cache().latest_epoch(), Some(5));
    log.close().unwrap();

    let log = open(dir.path(), small_config(), true);
    assert_eq!(log.leader_epoch_entries(), EPOCHS_0_2_5);
    drop(log);
    // Unclean, recovering everything from offset 0: same entries.
    let log = open(dir.path(), small_config(), false);
    assert_eq!(log.leader_epoch_entries(), EPOCHS_0_2_5);
    assert_eq!(log.end_offset_for_epoch(5), (5, 10));
    assert_eq!(file_text(dir.path()), "0\n3\n0 0\n2 4\n5 8\n");
}

#[test]
fn clean_open_trusts_a_valid_file_and_crash_recovery_extends_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_with_epochs(dir.path());
    log.close().unwrap();
    // A valid file that lacks the later epochs (as after a crash right after their
    // batches were flushed but before the cache was written).
    fs::write(dir.path().join(LEADER_EPOCH_CHECKPOINT_FILE), "0\n1\n0 0\n").unwrap();
    // Clean shutdown with a valid file: no scan, the file is trusted.
    let log = open(dir.path(), small_config(), true);
    assert_eq!(log.leader_epoch_entries(), [(0, 0)]);
    drop(log);
    // Unclean: the batches recovery re-validates add their epochs.
    let log = open(dir.path(), small_config(), false);
    assert_eq!(log.leader_epoch_entries(), EPOCHS_0_2_5);
    assert_eq!(file_text(dir.path()), "0\n3\n0 0\n2 4\n5 8\n");
}

#[test]
fn recovery_drops_epochs_of_a_torn_tail_and_entries_beyond_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = log_with_epochs(dir.path());
    append_at(&mut log, 7, 2); // offsets 10..12
    assert_eq!(log.latest_epoch(), Some(7));
    drop(log);
    // The epoch-7 batch is torn.
    let last_log = segment_logs(dir.path()).pop().unwrap();
    let len = fs::metadata(&last_log).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&last_log)
        .unwrap()
        .set_len(len - 5)
        .unwrap();
    let log = Log::open(dir.path(), small_config(), 0, 8, false, 0).unwrap();
    assert_eq!(log.log_end_offset(), 10);
    assert_eq!(log.leader_epoch_entries(), EPOCHS_0_2_5);
    assert_eq!(file_text(dir.path()), "0\n3\n0 0\n2 4\n5 8\n");
    drop(log);
    // A file that runs past the data (written before the data reached the disk).
    fs::write(
        dir.path().join(LEADER_EPOCH_CHECKPOINT_FILE),
        "0\n5\n0 0\n2 4\n5 8\n9 10\n11 500\n",
    )
    .unwrap();
    let log = open(dir.path(), small_config(), true);
    assert_eq!(log.leader_epoch_entries(), EPOCHS_0_2_5);
    assert_eq!(file_text(dir.path()), "0\n3\n0 0\n2 4\n5 8\n");
}

#[test]
fn missing_or_corrupt_file_is_rebuilt_from_the_segments() {
    for clean in [true, false] {
        for damage in [None, Some(&b"0\n3\n0 0\n5 4\n2 8\n"[..]), Some(b"garbage")] {
            let dir = tempfile::tempdir().unwrap();
            let log = log_with_epochs(dir.path());
            log.close().unwrap();
            match damage {
                None => remove_file(dir.path()), // a data dir from before the cache
                Some(bytes) => {
                    fs::write(dir.path().join(LEADER_EPOCH_CHECKPOINT_FILE), bytes).unwrap()
                }
            }
            let log = open(dir.path(), small_config(), clean);
            assert_eq!(
                log.leader_epoch_entries(),
                EPOCHS_0_2_5,
                "clean {clean}, damage {damage:?}"
            );
            assert_eq!(file_text(dir.path()), "0\n3\n0 0\n2 4\n5 8\n");
            assert_eq!(log.end_offset_for_epoch(2), (2, 8));
        }
    }
}

#[test]
fn rebuild_starts_at_the_log_start_offset() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_with_epochs(dir.path());
    log.close().unwrap();
    remove_file(dir.path());
    // The server's log-start-offset checkpoint says 5 (DeleteRecords before).
    let log = Log::open(dir.path(), small_config(), 5, 10, true, 0).unwrap();
    assert_eq!(log.leader_epoch_entries(), [(2, 5), (5, 8)]);
    assert_eq!(file_text(dir.path()), "0\n2\n2 5\n5 8\n");
}

#[test]
fn empty_logs_write_no_file_until_an_epoch_is_known() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config(), true);
    assert!(log.leader_epoch_entries().is_empty());
    log.close().unwrap();
    let mut log = open(dir.path(), small_config(), false);
    assert!(!file_exists(dir.path()));
    append_at(&mut log, 4, 1);
    assert_eq!(file_text(dir.path()), "0\n1\n4 0\n");
    // A file with entries but no data left: cleared.
    log.close().unwrap();
    let log = Log::open(dir.path(), small_config(), 50, 1, true, 0).unwrap();
    assert_eq!(log.log_end_offset(), 50);
    assert!(log.leader_epoch_entries().is_empty());
    assert_eq!(file_text(dir.path()), "0\n0\n");
}

#[test]
fn follower_appends_carry_the_batches_epochs() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small_config(), true);
    let mut fetched = leader_batch(0, 1, 2);
    fetched.extend(leader_batch(2, 1, 2));
    fetched.extend(leader_batch(4, 4, 2));
    log.append_as_follower(&fetched, 0).unwrap();
    assert_eq!(log.leader_epoch_entries(), [(1, 0), (4, 4)]);
    // A batch without an epoch is ignored.
    log.append_as_follower(&leader_batch(6, -1, 1), 0).unwrap();
    assert_eq!(log.leader_epoch_entries(), [(1, 0), (4, 4)]);
    remove_file(dir.path());
    log.append_as_follower(&leader_batch(7, 4, 1), 0).unwrap();
    assert!(!file_exists(dir.path()), "same epoch rewrote the file");
    // A gap (left by compaction on the leader) and two new epochs in one fetch.
    let mut fetched = leader_batch(10, 6, 1);
    fetched.extend(leader_batch(11, 9, 1));
    log.append_as_follower(&fetched, 0).unwrap();
    assert_eq!(
        log.leader_epoch_entries(),
        [(1, 0), (4, 4), (6, 10), (9, 11)]
    );
    assert_eq!(file_text(dir.path()), "0\n4\n1 0\n4 4\n6 10\n9 11\n");
    assert_eq!(log.end_offset_for_epoch(5), (4, 10));
    // A rejected append changes nothing.
    assert!(log.append_as_follower(&leader_batch(3, 12, 1), 0).is_err());
    assert_eq!(log.latest_epoch(), Some(9));
}

#[test]
fn truncate_to_drops_later_epochs() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = log_with_epochs(dir.path());
    log.truncate_to(9).unwrap(); // inside epoch 5's only batch (8..10): removed whole
    assert_eq!(log.log_end_offset(), 8);
    assert_eq!(log.leader_epoch_entries(), [(0, 0), (2, 4)]);
    assert_eq!(log.end_offset_for_epoch(2), (2, 8));
    assert_eq!(log.end_offset_for_epoch(5), (-1, -1));
    log.truncate_to(6).unwrap();
    assert_eq!(log.leader_epoch_entries(), [(0, 0), (2, 4)]);
    log.truncate_to(4).unwrap();
    assert_eq!(log.leader_epoch_entries(), [(0, 0)]);
    assert_eq!(file_text(dir.path()), "0\n1\n0 0\n");
    // The follower then appends the leader's data in a new epoch.
    log.append_as_follower(&leader_batch(4, 3, 2), 0).unwrap();
    assert_eq!(log.leader_epoch_entries(), [(0, 0), (3, 4)]);
    log.close().unwrap();
    let mut log = open(dir.path(), small_config(), false);
    assert_eq!(log.leader_epoch_entries(), [(0, 0), (3, 4)]);
    // Below the log start: the log restarts empty and the cache is cleared.
    log.delete_records_before(2).unwrap();
    log.truncate_to(1).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (1, 1));
    assert!(log.leader_epoch_entries().is_empty());
    assert_eq!(file_text(dir.path()), "0\n0\n");
}

#[test]
fn delete_records_and_retention_move_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = log_with_epochs(dir.path());
    log.delete_records_before(1).unwrap();
    assert_eq!(log.leader_epoch_entries(), [(0, 1), (2, 4), (5, 8)]);
    log.delete_records_before(6).unwrap();
    assert_eq!(log.leader_epoch_entries(), [(2, 6), (5, 8)]);
    assert_eq!(file_text(dir.path()), "0\n2\n2 6\n5 8\n");
    assert_eq!(log.end_offset_for_epoch(0), (0, 6));
    log.close().unwrap();
    let log = open(dir.path(), small_config(), true);
    assert_eq!(log.leader_epoch_entries(), [(2, 6), (5, 8)]);
    drop(log);

    // Retention by size deletes whole segments: the start is the new first base.
    let dir = tempfile::tempdir().unwrap();
    let mut log = log_with_epochs(dir.path());
    let mut config = small_config();
    config.retention_bytes = 1;
    log.set_config(config);
    assert!(log.apply_retention(0).unwrap() > 0);
    let start = log.log_start_offset();
    assert!(start > 0);
    let expected: Vec<(i32, i64)> = match start {
        s if s < 4 => vec![(0, s), (2, 4), (5, 8)],
        s if s < 8 => vec![(2, s), (5, 8)],
        s => vec![(5, s)],
    };
    assert_eq!(log.leader_epoch_entries(), expected);
    let (on_disk, _) = LeaderEpochCache::load(dir.path()).unwrap();
    assert_eq!(entries(&on_disk), expected);
}

#[test]
fn failed_cache_write_is_an_io_error_and_poisons() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small_config(), true);
    append_at(&mut log, 1, 1);
    // The temporary file cannot be created (a directory is in the way).
    fs::create_dir(dir.path().join("leader-epoch-checkpoint.tmp")).unwrap();
    // Same epoch: the cache is not written, so nothing fails.
    append_at(&mut log, 1, 1);
    let mut b = batch_of(1, 10, 1);
    let err = log.append_as_leader(&mut b, 2, None, 0).unwrap_err();
    assert!(matches!(err, StorageError::Io { .. }), "{err:?}");
    assert!(log.is_poisoned());
    drop(log);
    fs::remove_dir(dir.path().join("leader-epoch-checkpoint.tmp")).unwrap();
    // Reopening recovers the epoch from the data.
    let log = open(dir.path(), small_config(), false);
    assert_eq!(log.leader_epoch_entries(), [(1, 0), (2, 2)]);
}

// ---------------------------------------------------------------- property

#[derive(Debug, Clone)]
enum Op {
    Append { bump: bool, records: usize },
    Truncate { fraction: u8 },
    DeleteRecords { fraction: u8 },
    ReopenClean,
    Crash { recovery_fraction: u8 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (proptest::bool::weighted(0.3), 1usize..4).prop_map(|(bump, records)| Op::Append { bump, records }),
        1 => any::<u8>().prop_map(|fraction| Op::Truncate { fraction }),
        1 => any::<u8>().prop_map(|fraction| Op::DeleteRecords { fraction }),
        1 => Just(Op::ReopenClean),
        1 => any::<u8>().prop_map(|recovery_fraction| Op::Crash { recovery_fraction }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Leader appends in non-decreasing epochs, truncations, DeleteRecords, clean
    /// reopens and crashes: every offset of the log maps to the epoch of the batch that
    /// holds it, every epoch in the log ends where the next one starts (the latest at
    /// the log end), and the file always holds what the log answers from.
    #[test]
    fn cache_answers_match_the_data(ops in proptest::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open(dir.path(), small_config(), true);
        let mut epoch = 0;
        // `(epoch, base offset, next offset)` of every batch in the log.
        let mut batches: Vec<(i32, i64, i64)> = Vec::new();
        for op in ops {
            match op {
                Op::Append { bump, records } => {
                    epoch += i32::from(bump);
                    let base = append_at(&mut log, epoch, records);
                    batches.push((epoch, base, log.log_end_offset()));
                }
                Op::Truncate { fraction } => {
                    // At a batch boundary, as follower truncation is (an epoch's end
                    // offset or a high watermark). Inside a batch, `truncate_to` may
                    // leave the log end below the log start, a separate matter.
                    let start = log.log_start_offset();
                    let i = usize::from(fraction) * (batches.len() + 1) / 256;
                    let to = batches.get(i).map_or(log.log_end_offset(), |b| b.1);
                    log.truncate_to(to).unwrap();
                    if to < start {
                        batches.clear();
                    }
                    let leo = log.log_end_offset();
                    batches.retain(|b| b.2 <= leo);
                }
                Op::DeleteRecords { fraction } => {
                    let (start, leo) = (log.log_start_offset(), log.log_end_offset());
                    log.delete_records_before(start + (leo - start) * i64::from(fraction) / 255)
                        .unwrap();
                }
                Op::ReopenClean => {
                    let start = log.log_start_offset();
                    log.close().unwrap();
                    log = Log::open(dir.path(), small_config(), start, 0, true, 0).unwrap();
                }
                Op::Crash { recovery_fraction } => {
                    let start = log.log_start_offset();
                    let rp = log.log_end_offset() * i64::from(recovery_fraction) / 255;
                    drop(log);
                    log = Log::open(dir.path(), small_config(), start, rp, false, 0).unwrap();
                }
            }
            let (start, leo) = (log.log_start_offset(), log.log_end_offset());
            let live: Vec<&(i32, i64, i64)> = batches.iter().filter(|b| b.2 > start).collect();
            for &&(e, base, next) in &live {
                for offset in base.max(start)..next {
                    prop_assert_eq!(log.epoch_for_offset(offset), Some(e), "offset {}", offset);
                }
                let end = batches.iter().find(|b| b.0 > e).map_or(leo, |b| b.1);
                prop_assert_eq!(log.end_offset_for_epoch(e), (e, end), "epoch {}", e);
            }
            if let Some(&&(latest, ..)) = live.last() {
                prop_assert_eq!(log.latest_epoch(), Some(latest));
                prop_assert_eq!(log.end_offset_for_epoch(latest + 1), (-1, -1));
            }
            let cached = log.leader_epoch_entries();
            prop_assert!(cached.iter().all(|&(_, s)| s >= start && s <= leo), "{:?}", cached);
            let (on_disk, _) = LeaderEpochCache::load(dir.path()).unwrap();
            prop_assert_eq!(entries(&on_disk), cached);
        }
    }
}
