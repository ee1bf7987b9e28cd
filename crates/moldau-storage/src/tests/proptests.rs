//! Property test: random appends, clean reopens and crashes preserve every byte.
#![allow(clippy::unwrap_used)]

use proptest::prelude::*;

use super::*;
use crate::{Log, LogConfig};

#[derive(Debug, Clone)]
enum Op {
    Append {
        records: usize,
        payload: usize,
        ts: i64,
    },
    ReopenClean,
    Crash {
        recovery_fraction: u8,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (1usize..5, 0usize..300, 0i64..10_000).prop_map(|(records, payload, ts)| Op::Append { records, payload, ts }),
        1 => Just(Op::ReopenClean),
        1 => (0u8..=255).prop_map(|recovery_fraction| Op::Crash { recovery_fraction }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Random appends interleaved with clean reopens and crashes (drop without close,
    /// reopen unclean from a random recovery point) preserve every byte.
    #[test]
    fn appends_survive_reopen(
        ops in proptest::collection::vec(op(), 1..60),
        segment_bytes in 1_400u64..4_000,
        interval in 0u64..600,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig { segment_bytes, index_interval_bytes: interval, ..small_config() };
        let mut log = open(dir.path(), config.clone(), true);
        let mut expected = Vec::new();
        for op in ops {
            match op {
                Op::Append { records, payload, ts } => {
                    expected.extend(append(&mut log, batch_of(records, payload, ts), 0));
                }
                Op::ReopenClean => {
                    log.close().unwrap();
                    log = open(dir.path(), config.clone(), true);
                }
                Op::Crash { recovery_fraction } => {
                    let rp = log.log_end_offset() * i64::from(recovery_fraction) / 255;
                    drop(log);
                    log = Log::open(dir.path(), config.clone(), 0, rp, false, 0).unwrap();
                }
            }
            prop_assert_eq!(read_everything(&log).len(), expected.len());
        }
        prop_assert_eq!(read_everything(&log), expected.clone());
        let all = log.read(0, usize::MAX, i64::MAX, false).unwrap();
        prop_assert_eq!(&all.records[..], &expected[..]);
        log.close().unwrap();
        let log = Log::open(dir.path(), config, 0, 0, false, 0).unwrap();
        prop_assert_eq!(read_everything(&log), expected);
    }
}
