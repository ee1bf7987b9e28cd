//! Power cuts under the storage layer. A compacted log with 1 KiB segments lives on
//! `moldau-powerfs`, a FUSE filesystem that keeps unsynced writes and directory entries
//! apart (needs `/dev/fuse` and root, as CI has). Each seeded cycle appends keyed
//! batches, flushes now and then (the fsync an `acks=all` answer waits for), runs the
//! cleaner (its `.cleaned` → `.swap` install), rolls segments and writes their indexes,
//! then the power is cut: every unsynced operation is dropped, or a random prefix of
//! each file's and directory's is kept, or that and the next write torn. Reopened as
//! after a crash, the log must hold every flushed record at its offset, unless a later
//! record with the same key is there too (the cleaner may have removed it then), with
//! offsets increasing and every batch readable.
//!
//! Checked against the bug it exists for: built with the test-only feature that makes
//! the flush's fsync a no-op (`cargo test -p moldau-storage --features
//! test-skip-ack-fsync power_cuts`), the first cut that drops unsynced writes loses
//! flushed records and the test fails.
#![allow(clippy::unwrap_used)]

use moldau_powerfs::{Cut, PowerFs, SplitMix};
use moldau_protocol::batch::{self, KeyValue};

use super::compaction::*;
use crate::cleaner::now_ms as wall_now;
use crate::Log;

#[test]
fn flushed_records_survive_power_cuts_through_appends_rolls_and_cleans() {
    let cycles = 150u64;
    let tmp = tempfile::tempdir().unwrap();
    let mountpoint = tmp.path().join("mnt");
    std::fs::create_dir(&mountpoint).unwrap();
    let mut fs = PowerFs::mount(&mountpoint)
        .expect("mounting the FUSE filesystem failed: this test needs /dev/fuse and root");
    let dir = mountpoint.join("data").join("topic-0");
    let mut flushed: Vec<Rec> = Vec::new();
    let (mut lost, mut cleans) = (0usize, 0usize);
    let mut last_cut = None;
    for cycle in 0..cycles {
        let mut rng = SplitMix::new(0x5107_a6e0 ^ cycle.wrapping_mul(0x9e37_79b9));
        let cut = [Cut::DropUnsynced, Cut::KeepPrefix, Cut::TearLast][cycle as usize % 3];
        let mut log = Log::open(&dir, compact_config(), 0, 0, false, 0).unwrap();
        let records = all_records(&log);
        assert_offsets_increase(&records);
        for (offset, key, value) in &flushed {
            let here = records.iter().find(|r| r.0 == *offset);
            let superseded = records.iter().any(|r| r.0 > *offset && r.1 == *key);
            assert!(
                here.is_some_and(|r| &r.1 == key && &r.2 == value) || superseded,
                "cycle {cycle}, after a {last_cut:?} cut: flushed record at {offset} is gone \
                 (log end {})",
                log.log_end_offset()
            );
        }
        let mut pending: Vec<Rec> = Vec::new();
        for op in 0..10 + rng.below(40) {
            match rng.below(10) {
                0..=5 => {
                    let values: Vec<(Vec<u8>, Vec<u8>)> = (0..1 + rng.below(5))
                        .map(|n| {
                            let k = key(rng.below(8) as usize);
                            (k, format!("c{cycle}-{op}-{n}").into_bytes())
                        })
                        .collect();
                    let kv: Vec<KeyValue<'_>> = values
                        .iter()
                        .map(|(k, v)| (Some(&k[..]), Some(&v[..])))
                        .collect();
                    pending.extend(append_records(
                        &mut log,
                        batch::build_batch(0, wall_now(), &kv),
                    ));
                }
                6..=8 => {
                    log.flush().unwrap();
                    flushed.append(&mut pending);
                }
                _ => {
                    if clean(&mut log, 0, wall_now(), 1 << 20).is_some() {
                        cleans += 1;
                    }
                }
            }
        }
        drop(log); // a crash: no close, no clean-shutdown marker
        lost += fs.power_cut(cut, rng.next_u64()).unwrap().ops_lost;
        last_cut = Some(cut);
    }
    println!(
        "{cycles} power cuts: {} flushed records checked after each, {cleans} cleans, \
         {lost} unsynced operations lost",
        flushed.len()
    );
    assert!(
        cleans > 10 && lost > cycles as usize,
        "the cuts tested little"
    );
}
