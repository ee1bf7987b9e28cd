//! The replica state machine driven by hand and by random schedules, with an injected
//! clock.

use super::*;
use proptest::prelude::*;

const LAG: i64 = 30_000;

fn assignment(
    leader: i32,
    leader_epoch: i32,
    partition_epoch: i32,
    isr: &[i32],
) -> PartitionAssignment {
    PartitionAssignment {
        leader,
        leader_epoch,
        partition_epoch,
        replicas: vec![1, 2, 3],
        isr: isr.to_vec(),
    }
}

fn pending(r: &ReplicaState) -> IsrProposal {
    match r.role() {
        Role::Leader(l) => l.pending.clone().expect("a change in flight"),
        Role::Follower { .. } => panic!("not leading"),
    }
}

fn hw_of(actions: &[Action]) -> Option<i64> {
    actions.iter().find_map(|a| match a {
        Action::HighWatermark(h) => Some(*h),
        _ => None,
    })
}

fn proposal(actions: &[Action]) -> Option<Vec<i32>> {
    actions.iter().find_map(|a| match a {
        Action::AlterIsr(p) => Some(p.new_isr.clone()),
        _ => None,
    })
}

#[test]
fn high_watermark_waits_for_every_isr_member_on_disk() {
    let mut r = ReplicaState::new(1, 0);
    assert!(r
        .apply_metadata(&assignment(1, 1, 1, &[1, 2, 3]), 0, 0, 0)
        .is_empty());
    // The leader appended 10 records but has not fsynced them.
    assert!(r.follower_fetch(2, 10, 10, 1).is_empty());
    assert!(r.follower_fetch(3, 10, 10, 1).is_empty());
    assert_eq!(
        r.high_watermark(),
        0,
        "the leader's own copy is not durable yet"
    );
    assert_eq!(hw_of(&r.local_durable(10)), Some(10));
    // One follower behind holds the mark.
    assert!(r.local_durable(20).is_empty());
    assert!(r.follower_fetch(2, 20, 20, 2).is_empty());
    assert_eq!(hw_of(&r.follower_fetch(3, 15, 20, 2)), Some(15));
    assert_eq!(hw_of(&r.follower_fetch(3, 20, 20, 3)), Some(20));
}

#[test]
fn a_lagging_follower_is_dropped_then_the_mark_moves_on() {
    let mut r = ReplicaState::new(1, 0);
    r.apply_metadata(&assignment(1, 1, 1, &[1, 2, 3]), 0, 0, 0);
    r.local_durable(100);
    r.follower_fetch(2, 100, 100, 1_000);
    r.follower_fetch(3, 40, 100, 1_000);
    assert_eq!(r.high_watermark(), 40);
    assert!(
        r.tick(100, LAG, 29_000).is_empty(),
        "within replica.lag.time.max.ms"
    );
    let shrink = r.tick(100, LAG, 31_000);
    assert_eq!(proposal(&shrink), Some(vec![1, 2]));
    let sent = pending(&r);
    assert_eq!(
        r.high_watermark(),
        40,
        "the shrink counts only once committed"
    );
    assert!(
        r.tick(100, LAG, 32_000).is_empty(),
        "one change in flight at a time"
    );
    assert_eq!(
        hw_of(&r.isr_change_done(&sent, Some((vec![1, 2], 2)), 31_000, 1_000)),
        Some(100)
    );
    assert_eq!(r.isr(), [1, 2]);
}

#[test]
fn a_follower_rejoins_once_it_reached_the_mark_and_the_epoch() {
    let mut r = ReplicaState::new(1, 0);
    r.apply_metadata(&assignment(1, 2, 5, &[1, 2]), 50, 50, 0);
    r.local_durable(80);
    r.follower_fetch(2, 80, 80, 1);
    assert_eq!(r.high_watermark(), 80);
    assert!(
        proposal(&r.follower_fetch(3, 45, 80, 2)).is_none(),
        "below the epoch start"
    );
    assert!(
        proposal(&r.follower_fetch(3, 70, 80, 3)).is_none(),
        "below the mark"
    );
    let expand = r.follower_fetch(3, 80, 80, 4);
    assert_eq!(proposal(&expand), Some(vec![1, 2, 3]));
    let sent = pending(&r);
    assert_eq!(r.maximal_isr(), vec![1, 2, 3]);
    // Until committed, the joining replica already holds the mark back (KIP-497).
    r.local_durable(90);
    r.follower_fetch(2, 90, 90, 5);
    assert_eq!(r.high_watermark(), 80);
    // Refused: the metadata update brings the truth.
    // A late answer to an older proposal does not clear this one.
    let older = IsrProposal {
        partition_epoch: 4,
        ..sent.clone()
    };
    r.isr_change_done(&older, None, 5, 1_000);
    assert_eq!(r.maximal_isr(), vec![1, 2, 3]);
    r.isr_change_done(&sent, None, 5, 1_000);
    assert_eq!(r.maximal_isr(), vec![1, 2]);
    assert!(
        proposal(&r.follower_fetch(3, 80, 80, 500)).is_none(),
        "backing off after a refusal"
    );
    assert_eq!(hw_of(&r.local_durable(90)), None);
    r.follower_fetch(2, 90, 90, 6);
    assert_eq!(r.high_watermark(), 90);
}

#[test]
fn leadership_changes() {
    let mut r = ReplicaState::new(2, 0);
    r.apply_metadata(&assignment(1, 1, 1, &[1, 2, 3]), 0, 0, 0);
    assert!(!r.is_leader());
    r.follower_high_watermark(70, 60);
    assert_eq!(r.high_watermark(), 60, "capped by the local log");
    r.truncated(50);
    assert_eq!(r.high_watermark(), 50);
    // Becoming leader: followers start unknown and hold the mark.
    r.apply_metadata(&assignment(2, 2, 2, &[2, 3]), 60, 60, 100);
    assert!(r.is_leader());
    assert_eq!(r.high_watermark(), 50);
    assert!(
        r.tick(60, LAG, 100 + LAG).is_empty(),
        "followers get a full lag period"
    );
    assert_eq!(hw_of(&r.follower_fetch(3, 60, 60, 200)), Some(60));
    // The same epoch with a newer partition epoch only changes the ISR.
    r.apply_metadata(&assignment(2, 2, 3, &[2, 3, 1]), 60, 60, 300);
    assert_eq!(r.isr(), [2, 3, 1]);
    assert_eq!(r.high_watermark(), 60);
    // Losing leadership.
    r.apply_metadata(&assignment(3, 3, 4, &[3, 2]), 60, 60, 400);
    assert_eq!(r.leader(), 3);
    assert!(r.follower_fetch(1, 100, 100, 500).is_empty());
}

#[derive(Debug, Clone)]
enum Event {
    /// The leader appends this many records.
    Append(i64),
    /// The leader's group commit covers its log end.
    Sync,
    /// Follower (2 or 3) replicates this many records, fsyncs them, and its next fetch
    /// arrives (or is lost when `lost`).
    Fetch {
        replica: i32,
        records: i64,
        lost: bool,
    },
    /// Time passes (ms).
    Tick(i64),
    /// The controller answers the change in flight.
    Answer { accept: bool },
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        (1i64..20).prop_map(Event::Append),
        Just(Event::Sync),
        (2i32..=3, 0i64..30, proptest::bool::weighted(0.2)).prop_map(|(replica, records, lost)| {
            Event::Fetch {
                replica,
                records,
                lost,
            }
        }),
        (1i64..20_000).prop_map(Event::Tick),
        proptest::bool::ANY.prop_map(|accept| Event::Answer { accept }),
    ]
}

proptest! {
    /// A leader and two followers under random appends, fsyncs, lost and delayed
    /// fetches, time and controller answers. The high watermark never goes back, never
    /// passes the leader's durable offset or the position of any replica in the
    /// committed ISR, and the ISR always keeps the leader.
    #[test]
    fn the_mark_never_passes_an_isr_member(events in proptest::collection::vec(event(), 1..200)) {
        let mut r = ReplicaState::new(1, 0);
        r.apply_metadata(&assignment(1, 1, 1, &[1, 2, 3]), 0, 0, 0);
        let (mut leo, mut durable, mut now) = (0i64, 0i64, 0i64);
        let mut follower_leo = [0i64; 4];
        let mut partition_epoch = 1;
        for e in events {
            let before = r.high_watermark();
            match e {
                Event::Append(n) => leo += n,
                Event::Sync => {
                    durable = leo;
                    r.local_durable(durable);
                }
                Event::Fetch { replica, records, lost } => {
                    let f = &mut follower_leo[replica as usize];
                    *f = (*f + records).min(leo);
                    if !lost {
                        r.follower_fetch(replica, *f, leo, now);
                    }
                }
                Event::Tick(ms) => {
                    now += ms;
                    r.tick(leo, LAG, now);
                }
                Event::Answer { accept } => {
                    let pending = match r.role() {
                        Role::Leader(l) => l.pending.clone(),
                        Role::Follower { .. } => None,
                    };
                    if let Some(p) = pending {
                        if accept {
                            partition_epoch += 1;
                            r.isr_change_done(&p, Some((p.new_isr.clone(), partition_epoch)), now, 1_000);
                        } else {
                            r.isr_change_done(&p, None, now, 1_000);
                        }
                    }
                }
            }
            let hw = r.high_watermark();
            prop_assert!(hw >= before, "the mark went back from {before} to {hw}");
            prop_assert!(hw <= durable, "mark {hw} above the leader's durable {durable}");
            for member in r.isr().iter().filter(|m| **m != 1) {
                prop_assert!(hw <= follower_leo[*member as usize], "mark {hw} above ISR member {member}");
            }
            prop_assert!(r.isr().contains(&1));
        }
    }
}
