//! State-machine tests with a fake clock: every call gets `now`, replies are collected
//! by request number, and writes are "made durable" by the harness.

use crate::api::*;
use crate::shard::GroupShard;
use crate::{GroupConfig, GroupState};
use bytes::Bytes;
use moldau_protocol::error::ResponseError;
use std::collections::HashMap;

/// Drives a shard: request ids are `u32`, replies land in `replies`, writes in `log`.
struct Harness {
    shard: GroupShard<u32>,
    now: i64,
    next_id: u32,
    replies: HashMap<u32, Reply>,
    log: Vec<OffsetsRecord>,
}

const SESSION: i32 = 10_000;
const REBALANCE: i32 = 30_000;

fn config(initial_delay: i32) -> GroupConfig {
    GroupConfig {
        initial_rebalance_delay_ms: initial_delay,
        ..GroupConfig::default()
    }
}

impl Harness {
    fn new(initial_delay: i32) -> Self {
        Harness {
            shard: GroupShard::new(config(initial_delay), 0),
            now: 0,
            next_id: 0,
            replies: HashMap::new(),
            log: Vec::new(),
        }
    }

    fn apply(&mut self, fx: Vec<Effect<u32>>) {
        for e in fx {
            match e {
                Effect::Reply(id, r) => {
                    assert!(
                        self.replies.insert(id, r).is_none(),
                        "request {id} answered twice"
                    );
                }
                Effect::TxnWrite {
                    group_id,
                    producer_id,
                    records,
                    offsets,
                    replies,
                    ..
                } => {
                    self.shard
                        .stage_txn_offsets(&group_id, producer_id, offsets);
                    self.log.extend(records);
                    for (id, r) in replies {
                        assert!(
                            self.replies.insert(id, r).is_none(),
                            "request {id} answered twice"
                        );
                    }
                }
                Effect::Write {
                    records, replies, ..
                } => {
                    self.log.extend(records);
                    for (id, r) in replies {
                        assert!(
                            self.replies.insert(id, r).is_none(),
                            "request {id} answered twice"
                        );
                    }
                }
            }
        }
    }

    fn id(&mut self) -> u32 {
        self.next_id += 1;
        self.next_id
    }

    fn advance(&mut self, ms: i64) {
        self.now += ms;
        let fx = self.shard.tick(self.now);
        self.apply(fx);
    }

    fn join_req(member_id: &str, instance: Option<&str>, protocols: &[&str]) -> JoinGroup {
        JoinGroup {
            group_id: "g".into(),
            member_id: member_id.into(),
            group_instance_id: instance.map(Into::into),
            protocol_type: "consumer".into(),
            protocols: protocols
                .iter()
                .map(|p| (p.to_string(), Bytes::from(format!("meta-{p}"))))
                .collect(),
            session_timeout_ms: SESSION,
            rebalance_timeout_ms: REBALANCE,
            client_id: "client".into(),
            client_host: "/127.0.0.1".into(),
            require_known_member_id: true,
            supports_skip_assignment: true,
        }
    }

    /// Sends a JoinGroup; returns the request id (the reply may be parked).
    fn join(&mut self, req: JoinGroup) -> u32 {
        let id = self.id();
        let fx = self.shard.join(self.now, req, id);
        self.apply(fx);
        id
    }

    /// A new dynamic member's two-step join (KIP-394); returns (request id, member id).
    fn join_new(&mut self) -> (u32, String) {
        let first = self.join(Self::join_req("", None, &["range"]));
        let member_id = match self.take(first) {
            Reply::Join(j) => {
                assert_eq!(j.error, Some(ResponseError::MemberIdRequired));
                j.member_id
            }
            other => panic!("unexpected {other:?}"),
        };
        let id = self.join(Self::join_req(&member_id, None, &["range"]));
        (id, member_id)
    }

    fn take(&mut self, id: u32) -> Reply {
        self.replies
            .remove(&id)
            .unwrap_or_else(|| panic!("request {id} has no reply yet"))
    }

    fn join_result(&mut self, id: u32) -> JoinResult {
        match self.take(id) {
            Reply::Join(j) => j,
            other => panic!("unexpected {other:?}"),
        }
    }

    fn sync_result(&mut self, id: u32) -> SyncResult {
        match self.take(id) {
            Reply::Sync(s) => s,
            other => panic!("unexpected {other:?}"),
        }
    }

    fn sync(&mut self, member_id: &str, generation: i32, assignments: &[(&str, &str)]) -> u32 {
        let id = self.id();
        let req = SyncGroup {
            group_id: "g".into(),
            generation_id: generation,
            member_id: member_id.into(),
            group_instance_id: None,
            protocol_type: Some("consumer".into()),
            protocol_name: Some("range".into()),
            assignments: assignments
                .iter()
                .map(|(m, a)| (m.to_string(), Bytes::from(a.to_string())))
                .collect(),
        };
        let fx = self.shard.sync(self.now, req, id);
        self.apply(fx);
        id
    }

    fn heartbeat(&mut self, member_id: &str, generation: i32) -> Option<ResponseError> {
        self.shard.heartbeat(
            self.now,
            &Heartbeat {
                group_id: "g".into(),
                generation_id: generation,
                member_id: member_id.into(),
                group_instance_id: None,
            },
        )
    }

    fn commit(&mut self, member_id: &str, generation: i32, offset: i64) -> Option<ResponseError> {
        let id = self.id();
        let req = OffsetCommit {
            group_id: "g".into(),
            generation_id: generation,
            member_id: member_id.into(),
            group_instance_id: None,
            retention_time_ms: -1,
            api_version: 8,
            partitions: vec![CommitPartition {
                topic: "t".into(),
                partition: 0,
                offset,
                leader_epoch: -1,
                metadata: None,
            }],
        };
        let fx = self.shard.commit(self.now, req, id);
        self.apply(fx);
        match self.take(id) {
            Reply::Commit(parts) => parts[0].2,
            other => panic!("unexpected {other:?}"),
        }
    }

    fn state(&self) -> GroupState {
        self.shard.describe_group("g").state
    }
}

/// Two members form generation 1: returns (leader id, follower id).
fn stable_pair(h: &mut Harness) -> (String, String) {
    let (j1, m1) = h.join_new();
    // With no initial delay the first member forms generation 1 alone.
    let r1 = h.join_result(j1);
    assert_eq!(
        (r1.error, r1.generation_id, r1.leader.as_str()),
        (None, 1, m1.as_str())
    );
    let s1 = h.sync(&m1, 1, &[(&m1, "a1")]);
    assert_eq!(h.sync_result(s1).assignment, Bytes::from("a1"));
    let (j2, m2) = h.join_new();
    assert_eq!(h.state(), GroupState::PreparingRebalance);
    assert_eq!(
        h.heartbeat(&m1, 1),
        Some(ResponseError::RebalanceInProgress)
    );
    let j1 = h.join(Harness::join_req(&m1, None, &["range"]));
    let (r1, r2) = (h.join_result(j1), h.join_result(j2));
    assert_eq!((r1.generation_id, r2.generation_id), (2, 2));
    assert_eq!(r1.leader, m1);
    assert_eq!(r1.members.len(), 2, "the leader sees every member");
    assert!(r2.members.is_empty(), "followers see none");
    let s2 = h.sync(&m2, 2, &[]);
    assert!(
        !h.replies.contains_key(&s2),
        "a follower waits for the leader"
    );
    let s1 = h.sync(&m1, 2, &[(&m1, "p0"), (&m2, "p1")]);
    assert_eq!(h.sync_result(s1).assignment, Bytes::from("p0"));
    assert_eq!(h.sync_result(s2).assignment, Bytes::from("p1"));
    assert_eq!(h.state(), GroupState::Stable);
    (m1, m2)
}

#[test]
fn two_members_join_sync_and_heartbeat() {
    let mut h = Harness::new(0);
    let (m1, m2) = stable_pair(&mut h);
    assert_eq!(h.heartbeat(&m1, 2), None);
    assert_eq!(h.heartbeat(&m2, 2), None);
    assert_eq!(h.heartbeat(&m2, 1), Some(ResponseError::IllegalGeneration));
    assert_eq!(
        h.heartbeat("nobody", 2),
        Some(ResponseError::UnknownMemberId)
    );
    let written = h.log.iter().filter(|(_, v)| v.is_some()).count();
    assert!(written >= 2, "each generation's assignment is written");
}

#[test]
fn initial_delay_collects_members_into_one_generation() {
    let mut h = Harness::new(3_000);
    let (j1, _) = h.join_new();
    h.advance(1_000);
    let (j2, _) = h.join_new();
    assert!(
        !h.replies.contains_key(&j1),
        "the first join waits out the delay"
    );
    h.advance(2_000);
    // A member arrived during the delay, so it is extended once more.
    assert!(!h.replies.contains_key(&j1));
    h.advance(3_000);
    let (r1, r2) = (h.join_result(j1), h.join_result(j2));
    assert_eq!((r1.generation_id, r2.generation_id), (1, 1));
    assert_eq!(r1.members.len() + r2.members.len(), 2);
}

#[test]
fn late_joiner_during_completing_rebalance_voids_the_generation() {
    let mut h = Harness::new(0);
    let (m1, m2) = stable_pair(&mut h);
    // m2 rejoins with a new subscription: generation 3 forms, then m2 syncs first.
    let j2 = h.join(Harness::join_req(&m2, None, &["range", "roundrobin"]));
    let j1 = h.join(Harness::join_req(&m1, None, &["range"]));
    assert_eq!(h.join_result(j1).generation_id, 3);
    assert_eq!(h.join_result(j2).generation_id, 3);
    assert_eq!(h.state(), GroupState::CompletingRebalance);
    let s2 = h.sync(&m2, 3, &[]);
    // A third member arrives before the leader syncs.
    let (j3, m3) = h.join_new();
    assert_eq!(
        h.sync_result(s2).error,
        Some(ResponseError::RebalanceInProgress),
        "the parked sync learns the generation is void"
    );
    assert_eq!(h.state(), GroupState::PreparingRebalance);
    // The leader's late sync for generation 3 is refused.
    let s1 = h.sync(&m1, 3, &[(&m1, "x")]);
    assert_eq!(
        h.sync_result(s1).error,
        Some(ResponseError::RebalanceInProgress)
    );
    let j1 = h.join(Harness::join_req(&m1, None, &["range"]));
    let j2 = h.join(Harness::join_req(&m2, None, &["range"]));
    for j in [j1, j2, j3] {
        assert_eq!(h.join_result(j).generation_id, 4);
    }
    assert!(h
        .shard
        .describe_group("g")
        .members
        .iter()
        .any(|m| m.member_id == m3));
}

#[test]
fn session_expiry_removes_a_member_and_a_late_heartbeat_is_refused() {
    let mut h = Harness::new(0);
    let (m1, m2) = stable_pair(&mut h);
    for _ in 0..3 {
        h.advance(3_000);
        assert_eq!(h.heartbeat(&m1, 2), None);
    }
    h.advance(3_000);
    // m2 went silent for 12 s > 10 s session: it is gone and m1 must rejoin.
    assert_eq!(h.heartbeat(&m2, 2), Some(ResponseError::UnknownMemberId));
    assert_eq!(
        h.heartbeat(&m1, 2),
        Some(ResponseError::RebalanceInProgress)
    );
    let j1 = h.join(Harness::join_req(&m1, None, &["range"]));
    let r1 = h.join_result(j1);
    assert_eq!((r1.generation_id, r1.members.len()), (3, 1));
}

#[test]
fn commit_checks_generation_and_membership() {
    let mut h = Harness::new(0);
    let (m1, m2) = stable_pair(&mut h);
    assert_eq!(h.commit(&m1, 2, 10), None);
    assert_eq!(h.commit(&m2, 1, 11), Some(ResponseError::IllegalGeneration));
    assert_eq!(
        h.commit("stranger", 2, 12),
        Some(ResponseError::UnknownMemberId)
    );
    assert_eq!(
        h.commit("", -1, 13),
        Some(ResponseError::UnknownMemberId),
        "simple commits need an empty group"
    );
    let fetched = h.shard.fetch_offsets("g", None);
    assert_eq!(fetched.len(), 1);
    assert_eq!(fetched[0].offset, 10);
    // During CompletingRebalance commits wait for the new generation.
    let j1 = h.join(Harness::join_req(&m1, None, &["range", "roundrobin"]));
    let j2 = h.join(Harness::join_req(&m2, None, &["range"]));
    let _ = (h.take(j1), h.take(j2));
    assert_eq!(
        h.commit(&m1, 3, 14),
        Some(ResponseError::RebalanceInProgress)
    );
}

#[test]
fn simple_commits_create_a_group_and_survive_replay() {
    let mut h = Harness::new(0);
    assert_eq!(h.commit("", -1, 42), None);
    // A generation without a member id is refused; for a group that does not exist
    // yet, that is ILLEGAL_GENERATION.
    assert_eq!(h.commit("", 5, 43), Some(ResponseError::UnknownMemberId));
    let id = h.id();
    let fx = h.shard.commit(
        h.now,
        OffsetCommit {
            group_id: "other".into(),
            generation_id: 5,
            partitions: vec![CommitPartition {
                topic: "t".into(),
                partition: 0,
                offset: 1,
                leader_epoch: -1,
                metadata: None,
            }],
            ..OffsetCommit::default()
        },
        id,
    );
    h.apply(fx);
    assert_eq!(
        h.take(id),
        Reply::Commit(vec![(
            "t".into(),
            0,
            Some(ResponseError::IllegalGeneration)
        )])
    );
    let mut replayed: GroupShard<u32> = GroupShard::new(config(0), 0);
    for (k, v) in &h.log {
        replayed.replay(k, v.as_deref(), 0).expect("replay");
    }
    replayed.finish_load(0);
    assert_eq!(replayed.fetch_offsets("g", None)[0].offset, 42);
    assert_eq!(
        replayed.fetch_offsets("g", Some(&[("t".into(), vec![0, 1])]))[1].offset,
        -1,
        "an uncommitted partition reads -1"
    );
}

#[test]
fn replay_restores_a_stable_group_whose_members_heartbeat_back() {
    let mut h = Harness::new(0);
    let (m1, m2) = stable_pair(&mut h);
    assert_eq!(h.commit(&m2, 2, 7), None);
    let mut replayed: GroupShard<u32> = GroupShard::new(config(0), 0);
    for (k, v) in &h.log {
        replayed.replay(k, v.as_deref(), 50_000).expect("replay");
    }
    replayed.finish_load(50_000);
    let d = replayed.describe_group("g");
    assert_eq!(
        (d.state, d.generation, d.members.len()),
        (GroupState::Stable, 2, 2)
    );
    let hb = |member: &str| Heartbeat {
        group_id: "g".into(),
        generation_id: 2,
        member_id: member.into(),
        group_instance_id: None,
    };
    assert_eq!(replayed.heartbeat(55_000, &hb(&m1)), None);
    assert_eq!(replayed.heartbeat(55_000, &hb(&m2)), None);
    assert_eq!(replayed.fetch_offsets("g", None)[0].offset, 7);
}

#[test]
fn leave_rebalances_the_rest() {
    let mut h = Harness::new(0);
    let (m1, m2) = stable_pair(&mut h);
    let id = h.id();
    let fx = h.shard.leave(h.now, "g", vec![(m2.clone(), None)], id);
    h.apply(fx);
    match h.take(id) {
        Reply::Leave(l) => assert_eq!(l.error, None),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(
        h.heartbeat(&m1, 2),
        Some(ResponseError::RebalanceInProgress)
    );
    let j1 = h.join(Harness::join_req(&m1, None, &["range"]));
    assert_eq!(h.join_result(j1).generation_id, 3);
    // Everybody leaves: the group is Empty and keeps its offsets.
    assert_eq!(
        h.commit(&m1, 3, 5),
        Some(ResponseError::RebalanceInProgress)
    );
    let s = h.sync(&m1, 3, &[(&m1, "all")]);
    let _ = h.take(s);
    assert_eq!(h.commit(&m1, 3, 5), None);
    let id = h.id();
    let fx = h.shard.leave(h.now, "g", vec![(m1, None)], id);
    h.apply(fx);
    assert_eq!(h.state(), GroupState::Empty);
    assert_eq!(h.shard.fetch_offsets("g", None)[0].offset, 5);
}

#[test]
fn static_member_rejoins_without_rebalance_and_fences_the_old_id() {
    let mut h = Harness::new(0);
    let j1 = h.join(Harness::join_req("", Some("instance-1"), &["range"]));
    let r1 = h.join_result(j1);
    assert_eq!(r1.error, None, "static members skip MEMBER_ID_REQUIRED");
    let old = r1.member_id;
    let s = h.sync(&old, 1, &[(&old, "mine")]);
    let _ = h.take(s);
    // The process restarts and rejoins with no member id, same instance id.
    h.advance(2_000);
    let j = h.join(Harness::join_req("", Some("instance-1"), &["range"]));
    let r = h.join_result(j);
    assert_eq!(
        (r.error, r.generation_id),
        (None, 1),
        "same generation: no rebalance"
    );
    assert_ne!(r.member_id, old);
    assert_eq!(h.state(), GroupState::Stable);
    let s = h.sync(&r.member_id, 1, &[]);
    assert_eq!(h.sync_result(s).assignment, Bytes::from("mine"));
    // The old incarnation is fenced.
    let hb = h.shard.heartbeat(
        h.now,
        &Heartbeat {
            group_id: "g".into(),
            generation_id: 1,
            member_id: old,
            group_instance_id: Some("instance-1".into()),
        },
    );
    assert_eq!(hb, Some(ResponseError::FencedInstanceId));
}

#[test]
fn static_member_survives_a_rebalance_it_misses_until_its_session_ends() {
    let mut h = Harness::new(0);
    let j1 = h.join(Harness::join_req("", Some("i1"), &["range"]));
    let m1 = h.join_result(j1).member_id;
    let s = h.sync(&m1, 1, &[(&m1, "x")]);
    let _ = h.take(s);
    let (j2, _) = h.join_new();
    // The static member keeps heartbeating but does not rejoin; the join phase ends at
    // the rebalance timeout and keeps it (Kafka removes only dynamic stragglers).
    for _ in 0..10 {
        assert_eq!(
            h.heartbeat(&m1, 1),
            Some(ResponseError::RebalanceInProgress)
        );
        h.advance(i64::from(REBALANCE) / 10);
    }
    let r2 = h.join_result(j2);
    assert_eq!(r2.generation_id, 2);
    assert!(h
        .shard
        .describe_group("g")
        .members
        .iter()
        .any(|m| m.member_id == m1));
}

#[test]
fn pending_member_expires_and_unknown_ids_are_refused() {
    let mut h = Harness::new(0);
    let first = h.join(Harness::join_req("", None, &["range"]));
    let member_id = h.join_result(first).member_id;
    h.advance(i64::from(SESSION) + 1);
    let j = h.join(Harness::join_req(&member_id, None, &["range"]));
    assert_eq!(h.join_result(j).error, Some(ResponseError::UnknownMemberId));
}

#[test]
fn inconsistent_protocols_and_bad_session_timeouts_are_refused() {
    let mut h = Harness::new(0);
    let _ = stable_pair(&mut h);
    let j = h.join(Harness::join_req("", None, &["sticky"]));
    assert_eq!(
        h.join_result(j).error,
        Some(ResponseError::InconsistentGroupProtocol)
    );
    let mut req = Harness::join_req("", None, &["range"]);
    req.session_timeout_ms = 1;
    let j = h.join(req);
    assert_eq!(
        h.join_result(j).error,
        Some(ResponseError::InvalidSessionTimeout)
    );
}

#[test]
fn sync_timeout_removes_members_that_never_sync() {
    let mut h = Harness::new(0);
    let (m1, m2) = stable_pair(&mut h);
    let j1 = h.join(Harness::join_req(&m1, None, &["range", "x"]));
    let j2 = h.join(Harness::join_req(&m2, None, &["range"]));
    let _ = (h.take(j1), h.take(j2));
    let s2 = h.sync(&m2, 3, &[]);
    // The leader never syncs: after the rebalance timeout it is removed and m2 is told
    // to rejoin.
    for _ in 0..10 {
        h.advance(3_000);
        let _ = h.heartbeat(&m2, 3);
    }
    h.advance(1_000);
    assert_eq!(
        h.sync_result(s2).error,
        Some(ResponseError::RebalanceInProgress)
    );
    assert!(h
        .shard
        .describe_group("g")
        .members
        .iter()
        .all(|m| m.member_id != m1));
}

#[test]
fn empty_group_offsets_expire_and_the_group_goes() {
    let mut h = Harness::new(0);
    let (m1, m2) = stable_pair(&mut h);
    assert_eq!(h.commit(&m1, 2, 9), None);
    let id = h.id();
    let fx = h.shard.leave(h.now, "g", vec![(m1, None), (m2, None)], id);
    h.apply(fx);
    assert_eq!(h.state(), GroupState::Empty);
    let week = GroupConfig::default().offsets_retention_ms;
    h.advance(week / 2);
    assert_eq!(h.shard.fetch_offsets("g", None).len(), 1);
    h.advance(week);
    assert!(h.shard.fetch_offsets("g", None).is_empty());
    assert_eq!(
        h.state(),
        GroupState::Dead,
        "an unknown group describes as Dead"
    );
    assert!(
        h.log.iter().any(|(_, v)| v.is_none()),
        "expiry writes tombstones"
    );
}

#[test]
fn delete_group_only_when_empty() {
    let mut h = Harness::new(0);
    let (m1, m2) = stable_pair(&mut h);
    let id = h.id();
    let fx = h.shard.delete_group("g", id);
    h.apply(fx);
    assert_eq!(
        h.take(id),
        Reply::DeleteGroup(Some(ResponseError::NonEmptyGroup))
    );
    let id = h.id();
    let fx = h.shard.leave(h.now, "g", vec![(m1, None), (m2, None)], id);
    h.apply(fx);
    let id = h.id();
    let fx = h.shard.delete_group("g", id);
    h.apply(fx);
    assert_eq!(h.take(id), Reply::DeleteGroup(None));
    assert_eq!(h.shard.group_count(), 0);
}

#[test]
fn group_max_size_counts_members_not_pending_joins() {
    let mut h = Harness::new(0);
    h.shard = GroupShard::new(
        GroupConfig {
            max_size: 1,
            initial_rebalance_delay_ms: 0,
            ..GroupConfig::default()
        },
        0,
    );
    let (j1, m1) = h.join_new();
    assert_eq!(h.join_result(j1).error, None, "the first member fits");
    let s = h.sync(&m1, 1, &[(&m1, "x")]);
    let _ = h.take(s);
    let j2 = h.join(Harness::join_req("", None, &["range"]));
    assert_eq!(
        h.join_result(j2).error,
        Some(ResponseError::GroupMaxSizeReached)
    );
}

#[test]
fn a_static_leader_on_an_old_client_rejoins_as_a_follower() {
    let mut h = Harness::new(0);
    let j = h.join(Harness::join_req("", Some("boss"), &["range"]));
    let old = h.join_result(j).member_id;
    let s = h.sync(&old, 1, &[(&old, "a")]);
    let _ = h.take(s);
    let mut req = Harness::join_req("", Some("boss"), &["range"]);
    req.supports_skip_assignment = false;
    let j = h.join(req);
    let r = h.join_result(j);
    assert_eq!(r.generation_id, 1, "no rebalance");
    assert!(
        r.members.is_empty(),
        "an old client must not run the assignor"
    );
    assert_eq!(r.leader, old, "the leader id it knew, not its own");
    assert!(!r.skip_assignment);
    // A v9 client is told it leads and must skip the assignment.
    let j = h.join(Harness::join_req("", Some("boss"), &["range"]));
    let r = h.join_result(j);
    assert!(r.skip_assignment && r.leader == r.member_id && r.members.len() == 1);
}

#[test]
fn no_generation_forms_when_no_static_member_rejoins() {
    let mut h = Harness::new(0);
    let j = h.join(Harness::join_req("", Some("s1"), &["range"]));
    let m1 = h.join_result(j).member_id;
    let s = h.sync(&m1, 1, &[(&m1, "a")]);
    let _ = h.take(s);
    // A dynamic member joins and leaves again before the static one rejoins.
    let (j2, m2) = h.join_new();
    let id = h.id();
    let fx = h.shard.leave(h.now, "g", vec![(m2, None)], id);
    h.apply(fx);
    let _ = h.take(id);
    assert_eq!(
        h.join_result(j2).error,
        Some(ResponseError::UnknownMemberId)
    );
    // The join phase times out with nobody rejoined: no generation, keep waiting.
    for _ in 0..12 {
        assert_eq!(
            h.heartbeat(&m1, 1),
            Some(ResponseError::RebalanceInProgress)
        );
        h.advance(i64::from(REBALANCE) / 10);
    }
    let d = h.shard.describe_group("g");
    assert_eq!((d.state, d.generation), (GroupState::PreparingRebalance, 1));
    let j = h.join(Harness::join_req(&m1, Some("s1"), &["range"]));
    let r = h.join_result(j);
    assert_eq!((r.generation_id, r.leader.as_str()), (2, m1.as_str()));
}

#[test]
fn requests_for_unknown_groups_do_not_create_them() {
    let mut h = Harness::new(0);
    let j = h.join(Harness::join_req("stale-member", None, &["range"]));
    assert_eq!(h.join_result(j).error, Some(ResponseError::UnknownMemberId));
    assert_eq!(h.shard.group_count(), 0);
    let id = h.id();
    let fx = h.shard.commit(
        h.now,
        OffsetCommit {
            group_id: "nope".into(),
            generation_id: 3,
            member_id: "m".into(),
            api_version: 9,
            ..OffsetCommit::default()
        },
        id,
    );
    h.apply(fx);
    assert_eq!(h.take(id), Reply::Commit(Vec::new()));
    assert_eq!(h.shard.group_count(), 0);
}

#[test]
fn a_commit_from_a_pending_member_is_told_to_wait() {
    let mut h = Harness::new(0);
    let _ = stable_pair(&mut h);
    let first = h.join(Harness::join_req("", None, &["range"]));
    let pending = h.join_result(first).member_id;
    assert_eq!(
        h.commit(&pending, 2, 1),
        Some(ResponseError::RebalanceInProgress)
    );
}

#[test]
fn a_failed_write_is_taken_back() {
    let mut h = Harness::new(0);
    let (m1, _m2) = stable_pair(&mut h);
    assert_eq!(h.commit(&m1, 2, 10), None);
    // The next commit's write fails: the runtime hands back its undo.
    let id = h.id();
    let fx = h.shard.commit(
        h.now,
        OffsetCommit {
            group_id: "g".into(),
            generation_id: 2,
            member_id: m1.clone(),
            retention_time_ms: -1,
            api_version: 8,
            partitions: vec![
                CommitPartition {
                    topic: "t".into(),
                    partition: 0,
                    offset: 11,
                    leader_epoch: -1,
                    metadata: None,
                },
                CommitPartition {
                    topic: "t".into(),
                    partition: 1,
                    offset: 5,
                    leader_epoch: -1,
                    metadata: None,
                },
            ],
            ..OffsetCommit::default()
        },
        id,
    );
    let undo = fx
        .into_iter()
        .find_map(|e| match e {
            Effect::Write { undo, .. } => undo,
            Effect::Reply(..) | Effect::TxnWrite { .. } => None,
        })
        .expect("a commit comes with its undo");
    let fx = h.shard.undo(h.now, undo);
    h.apply(fx);
    let offsets: Vec<(i32, i64)> = h
        .shard
        .fetch_offsets("g", None)
        .iter()
        .map(|o| (o.partition, o.offset))
        .collect();
    assert_eq!(offsets, [(0, 10)], "the failed commit is not visible");

    // A lost assignment write sends the group back to rebalance.
    let fx = h.shard.undo(
        h.now,
        Undo::Rebalance {
            group_id: "g".into(),
            generation: 2,
        },
    );
    h.apply(fx);
    assert_eq!(h.state(), GroupState::PreparingRebalance);
}

#[test]
fn transactional_offsets_show_only_after_the_commit_marker() {
    let mut h = Harness::new(0);
    let commit = |pid: i64, offset: i64| TxnOffsetCommit {
        group_id: "g".into(),
        producer_id: pid,
        producer_epoch: 0,
        generation_id: -1,
        member_id: String::new(),
        group_instance_id: None,
        partitions: vec![CommitPartition {
            topic: "t".into(),
            partition: 0,
            offset,
            leader_epoch: -1,
            metadata: None,
        }],
    };
    let id = h.id();
    let fx = h.shard.txn_commit(0, commit(7, 10), id);
    assert!(matches!(fx[0], Effect::TxnWrite { producer_id: 7, .. }));
    h.apply(fx);
    assert_eq!(h.replies[&id], Reply::Commit(vec![("t".into(), 0, None)]));
    let fetched =
        |h: &Harness| h.shard.fetch_offsets("g", Some(&[("t".into(), vec![0])]))[0].offset;
    assert_eq!(fetched(&h), -1, "invisible before the marker");
    assert!(h.shard.has_pending_txn_offset("g", "t", 0));
    assert_eq!(h.shard.complete_txn(7, true), 1);
    assert_eq!(fetched(&h), 10);
    assert!(!h.shard.has_pending_txn_offset("g", "t", 0));

    // An aborted transaction leaves the committed offset alone.
    let id = h.id();
    let fx = h.shard.txn_commit(0, commit(8, 20), id);
    h.apply(fx);
    assert_eq!(h.shard.complete_txn(8, false), 1);
    assert_eq!(fetched(&h), 10);
    assert_eq!(
        h.shard.complete_txn(8, true),
        0,
        "a second marker finds nothing"
    );

    // A commit whose batch the log refused (a fenced zombie's stale epoch) is never
    // staged: the producer's later commit marker does not apply it.
    let id = h.id();
    let refused = h.shard.txn_commit(0, commit(8, 99), id);
    assert!(matches!(refused[0], Effect::TxnWrite { .. }));
    assert!(!h.shard.has_pending_txn_offset("g", "t", 0));
    assert_eq!(h.shard.complete_txn(8, true), 0);
    assert_eq!(fetched(&h), 10);

    // Replay: a pending commit read back waits for its marker too.
    let mut fresh: GroupShard<u32> = GroupShard::new(config(0), 0);
    let (key, value) = h.log.last().expect("a txn commit record").clone();
    fresh
        .replay_txn(9, &key, value.as_deref(), 0)
        .expect("replays");
    assert_eq!(
        fresh.fetch_offsets("g", Some(&[("t".into(), vec![0])]))[0].offset,
        -1
    );
    fresh.complete_txn(9, true);
    assert_eq!(
        fresh.fetch_offsets("g", Some(&[("t".into(), vec![0])]))[0].offset,
        20
    );
}
