//! The log cleaner's safety: stale plans, a crash before every file-system step of an
//! install, damaged swap files, and a model-based property test.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::Path;

use moldau_protocol::batch::{Compression, KeyValue};
use proptest::prelude::*;

use super::compaction::*;
use super::*;
use crate::cleaner::now_ms as wall_now;
use crate::{CleanOutcome, CleanupPolicy, Log, LogConfig};

#[test]
fn a_stale_plan_is_discarded_harmlessly() {
    type Change = fn(&mut Log);
    let changes: [(&str, Change); 5] = [
        ("delete records", |log| {
            let second = log.segments[1].base_offset;
            log.delete_records_before(second).unwrap();
        }),
        ("retention", |log| {
            let mut config = log.config().clone();
            config.cleanup_policy = CleanupPolicy::CompactDelete;
            config.retention_bytes = 2_000;
            log.set_config(config);
            assert!(log.apply_retention(0).unwrap() > 0);
        }),
        ("truncation", |log| {
            let second = log.segments[2].base_offset;
            log.truncate_to(second + 1).unwrap();
        }),
        ("another clean", |log| {
            clean(log, 0, wall_now(), 1 << 20).unwrap();
        }),
        ("reopen", |log| {
            let dir = log.dir().to_path_buf();
            let config = log.config().clone();
            *log = Log::open(&dir, config, 0, 0, true, 0).unwrap();
        }),
    ];
    for (name, change) in changes {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open(dir.path(), compact_config(), true);
        overwrite_log(&mut log, 50, 60);
        let plan = log.clean_plan(0, wall_now()).unwrap().unwrap();
        let cleaned = plan
            .build(wall_now(), 1 << 20, &test_decompress, &test_compress)
            .unwrap();
        assert!(!leftovers(dir.path()).is_empty());
        change(&mut log);
        let before = read_everything(&log);
        let outcome = log.install_clean(cleaned).unwrap();
        assert_eq!(outcome, CleanOutcome::Stale, "{name}");
        assert!(leftovers(dir.path()).is_empty(), "{name}");
        assert_eq!(read_everything(&log), before, "{name}");
        assert!(!log.is_poisoned());
        drop(log);
        let log = Log::open(dir.path(), compact_config(), 0, 0, false, 0).unwrap();
        assert_eq!(read_everything(&log), before, "{name}");
    }

    // A clean that is built but never installed leaves nothing behind once dropped.
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), compact_config(), true);
    overwrite_log(&mut log, 50, 60);
    let plan = log.clean_plan(0, wall_now()).unwrap().unwrap();
    let cleaned = plan
        .build(0, 1 << 20, &test_decompress, &test_compress)
        .unwrap();
    drop(cleaned);
    assert!(leftovers(dir.path()).is_empty());
    let plan = log.clean_plan(0, wall_now()).unwrap().unwrap();
    plan.build(0, 1 << 20, &test_decompress, &test_compress)
        .unwrap()
        .discard()
        .unwrap();
    assert!(leftovers(dir.path()).is_empty());
}

/// A log whose clean writes several output segments, built the same way every time.
fn crash_fixture(dir: &Path) -> (Log, Vec<Rec>) {
    let config = LogConfig {
        segment_bytes: 700,
        ..compact_config()
    };
    let mut log = open(dir, config, true);
    let appended = overwrite_log(&mut log, 12, 40);
    log.flush().unwrap();
    (log, appended)
}

#[test]
fn a_crash_at_any_step_of_a_clean_recovers_to_a_consistent_log() {
    // The reference: the same clean, uninterrupted.
    let reference_dir = tempfile::tempdir().unwrap();
    let (mut reference, appended) = crash_fixture(reference_dir.path());
    let original = read_everything(&reference);
    let end = reference.active().base_offset;
    let stats = clean(&mut reference, 0, 0, 1 << 20).unwrap();
    let cleaned = read_everything(&reference);
    let outputs = stats.segments_after;
    assert!(outputs >= 3, "{stats:?}");
    let expected = model(&appended, end);
    let leo = reference.log_end_offset();

    let check = |dir: &Path, recovery_point: i64, what: &str| -> Vec<u8> {
        let mut log =
            Log::open(dir, reference.config().clone(), 0, recovery_point, false, 0).unwrap();
        assert!(leftovers(dir).is_empty(), "{what}: {:?}", leftovers(dir));
        assert_eq!(log.log_end_offset(), leo, "{what}");
        let got = all_records(&log);
        assert_offsets_increase(&got);
        // Nothing invented, every latest value kept, no more than the original.
        assert!(got.iter().all(|r| appended.contains(r)), "{what}");
        assert!(expected.iter().all(|r| got.contains(r)), "{what}");
        let bytes = read_everything(&log);
        // Finishing the job converges on the reference.
        if clean(&mut log, 0, 0, 1 << 20).is_some() {
            assert_eq!(all_records(&log), expected, "{what}");
        }
        bytes
    };

    // Crash while building: torn or complete `.cleaned` files are discarded.
    for torn in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = crash_fixture(dir.path());
        let plan = log.clean_plan(0, 0).unwrap().unwrap();
        let mut built = plan
            .build(0, 1 << 20, &test_decompress, &test_compress)
            .unwrap();
        built.armed = false; // as if the process died here
        drop(built);
        if torn {
            let file = dir.path().join("00000000000000000000.log.cleaned");
            let len = fs::metadata(&file).unwrap().len();
            fs::OpenOptions::new()
                .write(true)
                .open(&file)
                .unwrap()
                .set_len(len / 2)
                .unwrap();
        }
        drop(log);
        assert_eq!(check(dir.path(), 0, "build"), original);
    }

    // Crash before each file-system step of the install.
    let mut step = 0;
    loop {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = crash_fixture(dir.path());
        let plan = log.clean_plan(0, 0).unwrap().unwrap();
        let built = plan
            .build(0, 1 << 20, &test_decompress, &test_compress)
            .unwrap();
        let finished = log.install_clean_crashing(built, step).is_ok();
        if !finished {
            assert!(log.is_poisoned() || step == 0);
        }
        drop(log);
        // Alternate full recovery and the trusted (clean-looking) path.
        let recovery_point = if step % 2 == 0 { 0 } else { leo };
        let what = format!("crash before step {step}");
        let bytes = check(dir.path(), recovery_point, &what);
        if step < 3 {
            // No `.log.swap` yet: nothing committed.
            assert_eq!(bytes, original, "{what}");
        } else if step >= 3 * outputs {
            // Every output committed.
            assert_eq!(bytes, cleaned, "{what}");
        }
        if finished {
            break;
        }
        step += 1;
    }
    assert!(
        step > 3 * outputs + 3 * stats.segments_before,
        "{step} steps"
    );
}

#[test]
fn recovery_completes_swaps_whose_inputs_are_partly_gone() {
    // Hand-made leftovers: output swaps for [0, n1) and [n1, end) with some inputs
    // already deleted, an orphan index swap and a `.cleaned` file.
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = crash_fixture(dir.path());
    let plan = log.clean_plan(0, 0).unwrap().unwrap();
    let built = plan
        .build(0, 1 << 20, &test_decompress, &test_compress)
        .unwrap();
    let outputs: Vec<(i64, i64)> = built
        .outputs
        .iter()
        .map(|o| (o.base_offset, o.next_offset))
        .collect();
    let inputs: Vec<i64> = built.inputs.iter().map(|s| s.base_offset).collect();
    let expected_after = {
        let reference = tempfile::tempdir().unwrap();
        let (mut r, _) = crash_fixture(reference.path());
        clean(&mut r, 0, 0, 1 << 20).unwrap();
        read_everything(&r)
    };
    let mut built = built;
    built.armed = false;
    drop(built);
    drop(log);
    let p = |base: i64, ext: &str, suffix: &str| {
        crate::cleaner::segment_path(dir.path(), base, ext, suffix)
    };
    for &(base, _) in &outputs {
        for ext in ["index", "timeindex", "log"] {
            fs::rename(p(base, ext, ".cleaned"), p(base, ext, ".swap")).unwrap();
        }
    }
    // Inputs of the second output: delete some files.
    let (second, second_end) = outputs[1];
    for &b in inputs
        .iter()
        .filter(|&&b| b >= second && b < second_end)
        .take(2)
    {
        fs::remove_file(p(b, "log", "")).unwrap();
    }
    // The first output's index already in place, its swap gone.
    fs::rename(
        p(outputs[0].0, "index", ".swap"),
        p(outputs[0].0, "index", ""),
    )
    .unwrap();
    // An orphan index swap of an output that never committed.
    fs::write(p(999_999, "index", ".swap"), [0u8; 8]).unwrap();
    fs::write(p(999_999, "log", ".cleaned"), [1u8; 10]).unwrap();
    let log = Log::open(dir.path(), log_config_of_fixture(), 0, 0, false, 0).unwrap();
    assert!(leftovers(dir.path()).is_empty());
    assert!(!p(999_999, "index", "").exists());
    assert_eq!(read_everything(&log), expected_after);
}

#[test]
fn damaged_swaps_are_cut_or_discarded() {
    for valid_prefix in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let (log, appended) = crash_fixture(dir.path());
        let original = all_records(&log);
        let end = log.active().base_offset;
        let plan = log.clean_plan(0, 0).unwrap().unwrap();
        let mut built = plan
            .build(0, 1 << 20, &test_decompress, &test_compress)
            .unwrap();
        built.armed = false;
        let (base, next) = (built.outputs[0].base_offset, built.outputs[0].next_offset);
        drop(built);
        drop(log);
        let p =
            |ext: &str, suffix: &str| crate::cleaner::segment_path(dir.path(), base, ext, suffix);
        for ext in ["index", "timeindex", "log"] {
            fs::rename(p(ext, ".cleaned"), p(ext, ".swap")).unwrap();
        }
        let mut swap = if valid_prefix {
            fs::read(p("log", ".swap")).unwrap()
        } else {
            Vec::new()
        };
        swap.extend_from_slice(&[0xAB; 100]);
        fs::write(p("log", ".swap"), &swap).unwrap();
        let log = Log::open(dir.path(), log_config_of_fixture(), 0, 0, false, 0).unwrap();
        assert!(leftovers(dir.path()).is_empty());
        let got = all_records(&log);
        assert_offsets_increase(&got);
        if valid_prefix {
            // The first output's range is cleaned (by the map of the whole dirty
            // range), the rest untouched.
            let cleaned_part = model(&appended, end);
            let want: Vec<Rec> = cleaned_part
                .iter()
                .filter(|r| r.0 < next)
                .chain(original.iter().filter(|r| r.0 >= next))
                .cloned()
                .collect();
            assert_eq!(got, want);
        } else {
            assert_eq!(got, original);
        }
    }
}

fn log_config_of_fixture() -> LogConfig {
    LogConfig {
        segment_bytes: 700,
        ..compact_config()
    }
}

#[derive(Debug, Clone)]
enum Op {
    Append(Vec<(u8, Option<u8>)>),
    Roll,
    Clean { buffer: usize },
    Reopen { clean_shutdown: bool },
}

fn op() -> impl Strategy<Value = Op> {
    let record = (0u8..24, proptest::option::weighted(0.85, any::<u8>()));
    prop_oneof![
        10 => proptest::collection::vec(record, 1..6).prop_map(Op::Append),
        1 => Just(Op::Roll),
        3 => prop_oneof![Just(200usize), Just(1_000), Just(1 << 20)].prop_map(|buffer| Op::Clean { buffer }),
        1 => any::<bool>().prop_map(|clean_shutdown| Op::Reopen { clean_shutdown }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Random keyed appends (with tombstones), rolls, cleans with small and large
    /// dedupe buffers, and reopens always leave exactly the model: below the first
    /// dirty offset the latest record per key, above it everything appended.
    #[test]
    fn cleaning_matches_the_model(
        ops in proptest::collection::vec(op(), 1..80),
        segment_bytes in 300u64..1_500,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            segment_bytes,
            delete_retention_ms: i64::MAX / 4, // tombstones never expire here
            ..compact_config()
        };
        let mut log = open(dir.path(), config.clone(), true);
        let mut appended: Vec<Rec> = Vec::new();
        let mut first_dirty = 0;
        for op in ops {
            match op {
                Op::Append(records) => {
                    let kv: Vec<(Vec<u8>, Option<Vec<u8>>)> = records
                        .iter()
                        .map(|(k, v)| (key(usize::from(*k)), v.map(|v| vec![v; usize::from(v % 40)])))
                        .collect();
                    let refs: Vec<KeyValue<'_>> =
                        kv.iter().map(|(k, v)| (Some(&k[..]), v.as_deref())).collect();
                    let b = if records.len() % 2 == 0 { compressed(Compression::Gzip, &refs) } else { keyed(&refs) };
                    appended.extend(append_records(&mut log, b));
                }
                Op::Roll => {
                    let leo = log.log_end_offset();
                    log.roll_to(leo).unwrap();
                }
                Op::Clean { buffer } => {
                    let leo = log.log_end_offset();
                    if let Some(stats) = clean(&mut log, first_dirty, 0, buffer) {
                        prop_assert!(stats.first_dirty_offset > first_dirty);
                        first_dirty = stats.first_dirty_offset;
                    }
                    prop_assert_eq!(log.log_end_offset(), leo);
                }
                Op::Reopen { clean_shutdown } => {
                    let rp = log.recovery_point();
                    if clean_shutdown {
                        log.close().unwrap();
                    } else {
                        drop(log);
                    }
                    log = Log::open(dir.path(), config.clone(), 0, rp, clean_shutdown, 0).unwrap();
                }
            }
            let got = all_records(&log);
            prop_assert_eq!(got, model(&appended, first_dirty));
        }
        prop_assert!(leftovers(dir.path()).is_empty());
    }
}
