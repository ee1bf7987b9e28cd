//! The controller's broker and partition logic, driven with an injected clock.

use super::*;
use crate::controller::{create_topic, NewTopic};
use crate::testing::{apply_all, register as register_in};
use proptest::prelude::*;
use std::collections::BTreeMap;

const CONFIG: ControlConfig = ControlConfig {
    session_timeout_ms: 9_000,
    unclean_leader_election: false,
    disconnect_grace_ms: 1_000,
};

/// Three active brokers and topic `t` with `partitions` partitions at RF 3.
fn cluster(partitions: i32) -> MetadataImage {
    let mut image = MetadataImage::empty();
    for b in 1..=3 {
        register_in(&mut image, b, None);
    }
    let topic = NewTopic {
        name: "t".into(),
        num_partitions: partitions,
        replication_factor: 3,
        configs: BTreeMap::new(),
        assignments: None,
    };
    let records = create_topic(&image, &topic).expect("create");
    apply_all(&mut image, &records);
    image
}

fn part(image: &MetadataImage, p: i32) -> PartitionImage {
    image.topics["t"].partitions[&p].clone()
}

fn hb(image: &MetadataImage, broker: i32) -> Heartbeat {
    Heartbeat {
        broker_id: broker,
        broker_epoch: image.brokers[&broker].epoch,
        current_metadata_offset: image.offset,
        want_fence: false,
        want_shut_down: false,
        offline_partitions: Vec::new(),
    }
}

#[test]
fn placement_spreads_replicas_and_leaders() {
    let image = cluster(6);
    let mut leaders = BTreeMap::new();
    for p in 0..6 {
        let part = part(&image, p);
        let mut r = part.replicas.clone();
        r.sort_unstable();
        assert_eq!(r, vec![1, 2, 3]);
        assert_eq!(part.isr, part.replicas);
        *leaders.entry(part.leader).or_insert(0) += 1;
    }
    assert_eq!(leaders.values().copied().collect::<Vec<_>>(), vec![2, 2, 2]);
}

#[test]
fn placement_is_rack_aware() {
    let mut image = MetadataImage::empty();
    for (b, rack) in [(1, "a"), (2, "a"), (3, "b"), (4, "b")] {
        register_in(&mut image, b, Some(rack));
    }
    let topic = NewTopic {
        name: "t".into(),
        num_partitions: 8,
        replication_factor: 2,
        configs: BTreeMap::new(),
        assignments: None,
    };
    let records = create_topic(&image, &topic).expect("create");
    apply_all(&mut image, &records);
    for p in image.topics["t"].partitions.values() {
        let racks: Vec<_> = p
            .replicas
            .iter()
            .map(|r| image.brokers[r].rack.clone())
            .collect();
        assert_ne!(racks[0], racks[1], "replicas {:?} share a rack", p.replicas);
    }
}

#[test]
fn replication_factor_above_active_brokers_is_refused() {
    let mut image = cluster(1);
    let (records, _) = fence_expired(&image, &Liveness::default(), &CONFIG, 10_000);
    apply_all(&mut image, &records);
    assert!(image.brokers.values().all(|b| b.fenced));
    let topic = NewTopic {
        name: "u".into(),
        num_partitions: 1,
        replication_factor: 1,
        configs: BTreeMap::new(),
        assignments: None,
    };
    let err = create_topic(&image, &topic).expect_err("no live broker");
    assert_eq!(err.error, ResponseError::InvalidReplicationFactor);
}

#[test]
fn fencing_moves_leadership_within_the_isr() {
    let mut image = cluster(3);
    let mut live = Liveness::activate(0);
    // Brokers 2 and 3 heartbeat; broker 1 goes silent.
    for t in (0..=12_000).step_by(2_000) {
        for b in [2, 3] {
            let (records, _) =
                heartbeat(&image, &mut live, &CONFIG, &hb(&image, b), t).expect("hb");
            apply_all(&mut image, &records);
        }
        let (records, fenced) = fence_expired(&image, &live, &CONFIG, t);
        apply_all(&mut image, &records);
        if t <= 9_000 {
            assert!(
                fenced.is_empty(),
                "fenced at {t} ms, before the session expired"
            );
        }
    }
    assert!(image.brokers[&1].fenced);
    for p in 0..3 {
        let part = part(&image, p);
        assert!(!part.isr.contains(&1), "{part:?}");
        assert_ne!(part.leader, 1);
        assert!(part.isr.contains(&part.leader));
        let expected = part
            .replicas
            .iter()
            .copied()
            .find(|r| *r != 1)
            .expect("other");
        assert_eq!(part.leader, expected, "preferred order among the ISR");
    }
    // Broker 1 comes back from a network partition with the image it had before it
    // was fenced: it stays fenced (it would lead from that image) until it has applied
    // the fencing and the leadership moves.
    let stale = Heartbeat {
        current_metadata_offset: image.brokers[&1].fenced_at - 1,
        ..hb(&image, 1)
    };
    let (records, reply) = heartbeat(&image, &mut live, &CONFIG, &stale, 12_500).expect("hb");
    assert!(records.is_empty() && reply.is_fenced && !reply.is_caught_up);
    // Caught up: unfenced, but no leadership (its partitions have leaders) and no ISR
    // membership (the leader adds it back when it catches up).
    let (records, reply) =
        heartbeat(&image, &mut live, &CONFIG, &hb(&image, 1), 13_000).expect("hb");
    apply_all(&mut image, &records);
    assert!(!reply.is_fenced && !image.brokers[&1].fenced);
    assert!((0..3).all(|p| !part(&image, p).isr.contains(&1)));
}

#[test]
fn a_closed_connection_fences_after_the_grace_unless_the_broker_heartbeats_again() {
    let mut image = cluster(1);
    let mut live = Liveness::activate(0);
    for b in 1..=3 {
        let (records, _) = heartbeat(&image, &mut live, &CONFIG, &hb(&image, b), 100).expect("hb");
        apply_all(&mut image, &records);
    }
    // Broker 2 reconnects and heartbeats within the grace: nothing happens.
    live.connection_lost(2, 200);
    let (records, _) = heartbeat(&image, &mut live, &CONFIG, &hb(&image, 2), 900).expect("hb");
    assert!(records.is_empty());
    assert!(fence_expired(&image, &live, &CONFIG, 1_500).1.is_empty());
    // Broker 3 dies: its connection closes, and it is fenced after the grace, long
    // before the session timeout.
    live.connection_lost(3, 1_000);
    assert!(fence_expired(&image, &live, &CONFIG, 1_900).1.is_empty());
    assert_eq!(fence_expired(&image, &live, &CONFIG, 2_100).1, vec![3]);
}

#[test]
fn a_broker_whose_process_is_gone_is_fenced_at_once_unless_it_heartbeats_again() {
    let mut image = cluster(3);
    // A controller that just became active gives everyone a full session...
    let mut live = Liveness::activate(0);
    for b in 1..=3 {
        let (records, _) = heartbeat(&image, &mut live, &CONFIG, &hb(&image, b), 100).expect("hb");
        apply_all(&mut image, &records);
    }
    // ...but a broker found gone (its listeners refuse connections) is fenced on the
    // next pass, its leaderships moved.
    live.process_gone(1);
    let (records, fenced) = fence_expired(&image, &live, &CONFIG, 200);
    assert_eq!(fenced, vec![1]);
    apply_all(&mut image, &records);
    assert!(image.brokers[&1].fenced);
    assert!((0..3).all(|p| part(&image, p).leader != 1 && !part(&image, p).isr.contains(&1)));
    // A probe that raced a restart: the broker heartbeats, and is no longer gone.
    live.process_gone(2);
    let (records, _) = heartbeat(&image, &mut live, &CONFIG, &hb(&image, 2), 300).expect("hb");
    apply_all(&mut image, &records);
    assert!(fence_expired(&image, &live, &CONFIG, 400).1.is_empty());
}

#[test]
fn the_last_isr_member_stays_and_leads_again_when_back() {
    let mut image = cluster(1);
    let mut live = Liveness::activate(0);
    let before = part(&image, 0);
    let leader = before.leader;
    // The other brokers go silent first, then the leader.
    let (records, _) =
        heartbeat(&image, &mut live, &CONFIG, &hb(&image, leader), 8_000).expect("hb");
    apply_all(&mut image, &records);
    let (records, fenced) = fence_expired(&image, &live, &CONFIG, 10_000);
    assert_eq!(fenced.len(), 2);
    apply_all(&mut image, &records);
    assert_eq!(part(&image, 0).isr, vec![leader]);
    let (records, fenced) = fence_expired(&image, &live, &CONFIG, 20_000);
    assert_eq!(fenced, vec![leader]);
    apply_all(&mut image, &records);
    let now = part(&image, 0);
    assert_eq!(now.leader, -1, "offline: no eligible replica");
    assert_eq!(
        now.isr,
        vec![leader],
        "KIP-841: the ISR keeps its last member"
    );
    assert!(now.leader_epoch > before.leader_epoch);
    // A replica that was not in the ISR comes back: it must not lead (unclean is off).
    let other = before
        .replicas
        .iter()
        .copied()
        .find(|r| *r != leader)
        .expect("other");
    let mut reg_hb = hb(&image, other);
    reg_hb.current_metadata_offset = image.offset;
    let (records, _) = heartbeat(&image, &mut live, &CONFIG, &reg_hb, 21_000).expect("hb");
    apply_all(&mut image, &records);
    assert!(!image.brokers[&other].fenced);
    assert_eq!(
        part(&image, 0).leader,
        -1,
        "an out-of-sync replica never leads"
    );
    // The last ISR member returns and leads again with a new epoch.
    let (records, _) =
        heartbeat(&image, &mut live, &CONFIG, &hb(&image, leader), 22_000).expect("hb");
    apply_all(&mut image, &records);
    let back = part(&image, 0);
    assert_eq!(back.leader, leader);
    assert!(back.leader_epoch > now.leader_epoch);
}

#[test]
fn unclean_election_only_when_enabled() {
    let mut image = cluster(1);
    let topic_id = image.topics["t"].topic_id;
    let leader = part(&image, 0).leader;
    // Shrink the ISR to the leader alone, then lose the leader.
    let p = part(&image, 0);
    let (_, records) = alter_partition(
        &image,
        leader,
        image.brokers[&leader].epoch,
        &[IsrChange {
            topic_id,
            partition: 0,
            leader_epoch: p.leader_epoch,
            new_isr: vec![leader],
            partition_epoch: p.partition_epoch,
        }],
    )
    .expect("alter");
    apply_all(&mut image, &records);
    let mut live = Liveness::activate(0);
    for b in (1..=3).filter(|b| *b != leader) {
        let (records, _) =
            heartbeat(&image, &mut live, &CONFIG, &hb(&image, b), 9_500).expect("hb");
        apply_all(&mut image, &records);
    }
    let (records, _) = fence_expired(&image, &live, &CONFIG, 10_000);
    let mut clean = image.clone();
    apply_all(&mut clean, &records);
    assert_eq!(part(&clean, 0).leader, -1);
    let unclean = ControlConfig {
        unclean_leader_election: true,
        ..CONFIG
    };
    let (records, _) = fence_expired(&image, &live, &unclean, 10_000);
    apply_all(&mut image, &records);
    let after = part(&image, 0);
    assert!(after.leader >= 0 && after.leader != leader);
    assert_eq!(after.isr, vec![after.leader]);
}

#[test]
fn registration_rules() {
    let mut image = cluster(1);
    let mut live = Liveness::activate(0);
    let reg = |incarnation: u128, cluster_id: Option<&str>| Registration {
        broker_id: 2,
        incarnation_id: Uuid::from_u128(incarnation),
        listeners: Vec::new(),
        rack: None,
        cluster_id: cluster_id.map(str::to_owned),
    };
    // The same incarnation again: nothing to write.
    let same = reg(2, None);
    assert!(register(&image, &mut live, &CONFIG, &same, 1)
        .expect("same")
        .is_empty());
    // A new process while the old one is alive.
    let err = register(&image, &mut live, &CONFIG, &reg(99, None), 1_000).expect_err("dup");
    assert_eq!(err.error, ResponseError::DuplicateBrokerRegistration);
    // After the session expired it replaces the old registration, fenced, and the
    // old one's leaderships move.
    let records = register(&image, &mut live, &CONFIG, &reg(99, None), 20_000).expect("replace");
    apply_all(&mut image, &records);
    assert!(image.brokers[&2].fenced);
    assert_eq!(image.brokers[&2].epoch, image.offset);
    assert_ne!(part(&image, 0).leader, 2);
    image.cluster_id = Some("abc".into());
    let err =
        register(&image, &mut live, &CONFIG, &reg(100, Some("xyz")), 40_000).expect_err("cluster");
    assert_eq!(err.error, ResponseError::InconsistentClusterId);
    let mut stale = hb(&image, 2);
    stale.broker_epoch -= 1;
    let err = heartbeat(&image, &mut live, &CONFIG, &stale, 40_000).expect_err("stale");
    assert_eq!(err.error, ResponseError::StaleBrokerEpoch);
    // Unfenced only once it has applied its own registration.
    let mut behind = hb(&image, 2);
    behind.current_metadata_offset = image.brokers[&2].epoch - 1;
    let (records, reply) = heartbeat(&image, &mut live, &CONFIG, &behind, 40_000).expect("hb");
    assert!(records.is_empty() && reply.is_fenced && !reply.is_caught_up);
}

#[test]
fn controlled_shutdown_moves_leaders_before_saying_yes() {
    let mut image = cluster(3);
    let mut live = Liveness::activate(0);
    let mut shut = hb(&image, 1);
    shut.want_shut_down = true;
    let (records, reply) = heartbeat(&image, &mut live, &CONFIG, &shut, 1).expect("hb");
    assert!(!reply.should_shut_down && !records.is_empty());
    apply_all(&mut image, &records);
    assert!(image.brokers[&1].in_controlled_shutdown);
    assert!((0..3).all(|p| part(&image, p).leader != 1 && !part(&image, p).isr.contains(&1)));
    // The broker has not applied the moves yet: not yet.
    let (records, reply) = heartbeat(&image, &mut live, &CONFIG, &shut, 2).expect("hb");
    assert!(!reply.should_shut_down && records.is_empty());
    shut.current_metadata_offset = image.offset;
    let (records, reply) = heartbeat(&image, &mut live, &CONFIG, &shut, 3).expect("hb");
    assert!(reply.should_shut_down && reply.is_fenced);
    apply_all(&mut image, &records);
    assert!(image.brokers[&1].fenced);
}

#[test]
fn an_offline_log_loses_its_leadership_and_isr_place_and_nothing_else() {
    let mut image = cluster(3);
    let mut live = Liveness::activate(0);
    let topic_id = image.topics["t"].topic_id;
    let (p, led) = (0..3)
        .map(|p| (p, part(&image, p)))
        .find(|(_, part)| part.leader == 1)
        .expect("broker 1 leads a partition");
    let others: Vec<PartitionImage> = (0..3)
        .filter(|q| *q != p)
        .map(|q| part(&image, q))
        .collect();
    let mut report = hb(&image, 1);
    report.offline_partitions = vec![(topic_id, p)];
    let (records, reply) = heartbeat(&image, &mut live, &CONFIG, &report, 1).expect("hb");
    assert!(!reply.is_fenced && records.len() == 1, "{records:?}");
    apply_all(&mut image, &records);
    let moved = part(&image, p);
    assert!(moved.leader != 1 && moved.leader >= 0 && !moved.isr.contains(&1));
    assert_eq!(moved.leader_epoch, led.leader_epoch + 1);
    let unchanged: Vec<PartitionImage> = (0..3)
        .filter(|q| *q != p)
        .map(|q| part(&image, q))
        .collect();
    assert_eq!(unchanged, others, "other partitions are untouched");
    // Reported again with each heartbeat: nothing more changes.
    let (records, _) = heartbeat(&image, &mut live, &CONFIG, &report, 2).expect("hb");
    assert!(records.is_empty(), "{records:?}");
}

/// A fenced broker that comes back while still reporting a partition's log offline is
/// not made leader of it, even as the only ISR member of a leaderless partition (with
/// `elect_with` ignoring the report, it was, and this test failed).
#[test]
fn an_unfenced_broker_does_not_lead_a_partition_it_reports_offline() {
    let mut image = cluster(1);
    let mut live = Liveness::activate(0);
    let topic_id = image.topics["t"].topic_id;
    {
        let p = image
            .topics
            .get_mut("t")
            .and_then(|t| t.partitions.get_mut(&0))
            .expect("partition 0");
        p.leader = -1;
        p.isr = vec![1];
    }
    image.brokers.get_mut(&1).expect("broker 1").fenced = true;
    let mut report = hb(&image, 1);
    report.offline_partitions = vec![(topic_id, 0)];
    let (records, reply) = heartbeat(&image, &mut live, &CONFIG, &report, 1).expect("hb");
    assert!(!reply.is_fenced, "the broker is unfenced");
    apply_all(&mut image, &records);
    assert_eq!(part(&image, 0).leader, -1, "{records:?}");
    // Without the report it leads again.
    image.brokers.get_mut(&1).expect("broker 1").fenced = true;
    let (records, _) = heartbeat(&image, &mut live, &CONFIG, &hb(&image, 1), 2).expect("hb");
    apply_all(&mut image, &records);
    assert_eq!(part(&image, 0).leader, 1, "{records:?}");
}

#[test]
fn alter_partition_checks_epochs_and_eligibility() {
    let mut image = cluster(1);
    let topic_id = image.topics["t"].topic_id;
    let p = part(&image, 0);
    let leader = p.leader;
    let follower = p
        .replicas
        .iter()
        .copied()
        .find(|r| *r != leader)
        .expect("f");
    let epoch = image.brokers[&leader].epoch;
    let change = |isr: Vec<i32>, partition_epoch: i32, leader_epoch: i32| IsrChange {
        topic_id,
        partition: 0,
        leader_epoch,
        new_isr: isr,
        partition_epoch,
    };
    let shrunk: Vec<i32> = p.isr.iter().copied().filter(|r| *r != follower).collect();
    let (results, records) = alter_partition(
        &image,
        leader,
        epoch,
        &[
            change(shrunk.clone(), p.partition_epoch, p.leader_epoch),
            change(shrunk.clone(), p.partition_epoch - 1, p.leader_epoch),
            change(shrunk.clone(), p.partition_epoch, p.leader_epoch + 1),
            change(vec![follower], p.partition_epoch, p.leader_epoch),
        ],
    )
    .expect("request");
    assert_eq!(results[0].as_ref().expect("ok").isr, shrunk);
    let code = |i: usize| results[i].as_ref().expect_err("err").error;
    assert_eq!(code(1), ResponseError::InvalidUpdateVersion);
    assert_eq!(code(2), ResponseError::FencedLeaderEpoch);
    assert_eq!(code(3), ResponseError::InvalidRequest);
    apply_all(&mut image, &records);
    assert_eq!(part(&image, 0).partition_epoch, p.partition_epoch + 1);
    assert_eq!(
        part(&image, 0).leader_epoch,
        p.leader_epoch,
        "ISR changes keep the leader epoch"
    );
    // A fenced follower may not rejoin.
    let mut live = Liveness::activate(0);
    for b in (1..=3).filter(|b| *b != follower) {
        let (records, _) =
            heartbeat(&image, &mut live, &CONFIG, &hb(&image, b), 9_500).expect("hb");
        apply_all(&mut image, &records);
    }
    let (records, _) = fence_expired(&image, &live, &CONFIG, 10_000);
    apply_all(&mut image, &records);
    let now = part(&image, 0);
    let (results, _) = alter_partition(
        &image,
        leader,
        image.brokers[&leader].epoch,
        &[change(p.isr.clone(), now.partition_epoch, now.leader_epoch)],
    )
    .expect("request");
    assert_eq!(
        results[0].as_ref().expect_err("fenced").error,
        ResponseError::IneligibleReplica
    );
    let err = alter_partition(&image, leader, epoch - 1, &[]).expect_err("stale broker epoch");
    assert_eq!(err.error, ResponseError::StaleBrokerEpoch);
    let (results, _) = alter_partition(
        &image,
        follower,
        image.brokers[&follower].epoch,
        &[change(
            vec![follower],
            now.partition_epoch,
            now.leader_epoch,
        )],
    )
    .expect("req");
    assert_eq!(
        results[0].as_ref().expect_err("not leader").error,
        ResponseError::NotLeaderOrFollower
    );
}

/// One step of the simulation below.
#[derive(Debug, Clone)]
enum Step {
    /// Time passes (ms).
    Tick(i64),
    /// A broker's heartbeat reaches the controller (lost heartbeats are simply absent).
    Heartbeat(i32),
    /// A broker asks for a controlled shutdown.
    Shutdown(i32),
    /// A leader proposes to drop a follower from the ISR (a lagging follower).
    Shrink(i32),
    /// A leader proposes to add back every active replica (they caught up).
    Expand(i32),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (1i64..6_000).prop_map(Step::Tick),
        (1i32..=3).prop_map(Step::Heartbeat),
        (1i32..=3).prop_map(Step::Heartbeat),
        (1i32..=3).prop_map(Step::Shutdown),
        (0i32..4).prop_map(Step::Shrink),
        (0i32..4).prop_map(Step::Expand),
    ]
}

proptest! {
    /// Random interleavings of time, lost and delivered heartbeats, shutdowns and ISR
    /// proposals. After every step: the ISR is a non-empty subset of the replicas, the
    /// leader is -1 or an active ISR member, epochs never go back, and every new leader
    /// was in the ISR before the change (no committed record can be lost without
    /// unclean election).
    #[test]
    fn elections_never_leave_the_isr(steps in proptest::collection::vec(step(), 1..120)) {
        let mut image = cluster(4);
        let mut live = Liveness::activate(0);
        let mut now = 0;
        for s in steps {
            let before = image.clone();
            let records = match s {
                Step::Tick(ms) => {
                    now += ms;
                    fence_expired(&image, &live, &CONFIG, now).0
                }
                Step::Heartbeat(b) | Step::Shutdown(b) => {
                    let mut h = hb(&image, b);
                    h.want_shut_down = matches!(s, Step::Shutdown(_));
                    heartbeat(&image, &mut live, &CONFIG, &h, now).map(|r| r.0).unwrap_or_default()
                }
                Step::Shrink(p) | Step::Expand(p) => {
                    let part = part(&image, p);
                    if part.leader < 0 {
                        Vec::new()
                    } else {
                        let new_isr = match s {
                            Step::Shrink(_) => {
                                let mut isr = part.isr.clone();
                                if isr.len() > 1 {
                                    let victim = isr.iter().position(|r| *r != part.leader).unwrap_or(0);
                                    isr.remove(victim);
                                }
                                isr
                            }
                            _ => part.replicas.iter().copied().filter(|r| part.isr.contains(r) || image.brokers[r].is_active()).collect(),
                        };
                        let change = IsrChange {
                            topic_id: image.topics["t"].topic_id,
                            partition: p,
                            leader_epoch: part.leader_epoch,
                            new_isr,
                            partition_epoch: part.partition_epoch,
                        };
                        let epoch = image.brokers[&part.leader].epoch;
                        alter_partition(&image, part.leader, epoch, &[change]).map(|r| r.1).unwrap_or_default()
                    }
                }
            };
            apply_all(&mut image, &records);
            for p in 0..4 {
                let (old, new) = (part(&before, p), part(&image, p));
                prop_assert!(!new.isr.is_empty());
                prop_assert!(new.isr.iter().all(|r| new.replicas.contains(r)));
                prop_assert!(new.leader_epoch >= old.leader_epoch && new.partition_epoch >= old.partition_epoch);
                if new.leader >= 0 {
                    prop_assert!(new.isr.contains(&new.leader));
                    prop_assert!(image.brokers[&new.leader].is_active(), "{new:?} led by an inactive broker");
                }
                if new.leader != old.leader {
                    prop_assert!(new.leader_epoch > old.leader_epoch);
                    if new.leader >= 0 {
                        prop_assert!(old.isr.contains(&new.leader), "new leader {} was not in the ISR {:?}", new.leader, old.isr);
                    }
                }
            }
        }
    }
}
