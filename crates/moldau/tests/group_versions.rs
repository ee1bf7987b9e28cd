//! Every version of every group API, spoken on a raw socket with the `kafka-protocol`
//! structs: a whole membership round (find coordinator, join, sync, heartbeat, commit,
//! fetch, describe, list, leave, delete) at each JoinGroup version, so an old client
//! (kafka-python, older librdkafka) and a new one (the Java client) both get answers
//! that decode at the version they asked for.

mod common;

use bytes::Bytes;
use common::wire::Conn;
use common::TestBroker;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_owned())
}

/// One member's full round at JoinGroup version `jv` (other APIs at a version chosen
/// from `jv` so each of their versions is used somewhere).
fn round(conn: &mut Conn, jv: i16, topic: &str) {
    let group = format!("versions-{jv}");
    let pick = |max: i16| jv.min(max);

    // FindCoordinator, v0..=6 spread over the rounds.
    let fv = pick(6);
    let mut find = FindCoordinatorRequest::default();
    if fv >= 4 {
        find = find.with_coordinator_keys(vec![s(&group)]);
    } else {
        find = find.with_key(s(&group));
    }
    let found: FindCoordinatorResponse = conn.call(ApiKey::FindCoordinator, fv, &find);
    if fv >= 4 {
        assert_eq!(
            found.coordinators[0].error_code, 0,
            "{:?}",
            found.coordinators
        );
    } else {
        assert_eq!(found.error_code, 0);
        assert_eq!(found.node_id.0, 1);
    }

    let protocol = JoinGroupRequestProtocol::default()
        .with_name(s("range"))
        .with_metadata(Bytes::from_static(
            b"\x00\x00\x00\x00\x00\x01\x00\x01tX\x00\x00\x00\x00",
        ));
    let mut join = JoinGroupRequest::default()
        .with_group_id(GroupId(s(&group)))
        .with_session_timeout_ms(10_000)
        .with_member_id(s(""))
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![protocol]);
    if jv >= 1 {
        join = join.with_rebalance_timeout_ms(10_000);
    }
    let mut joined: JoinGroupResponse = conn.call(ApiKey::JoinGroup, jv, &join);
    if jv >= 4 {
        // KIP-394: first a member id, then the real join.
        assert_eq!(joined.error_code, 79, "MEMBER_ID_REQUIRED at v{jv}");
        join = join.with_member_id(joined.member_id.clone());
        joined = conn.call(ApiKey::JoinGroup, jv, &join);
    }
    assert_eq!(joined.error_code, 0, "join v{jv}");
    assert_eq!(joined.generation_id, 1);
    assert_eq!(joined.leader, joined.member_id, "the only member leads");
    assert_eq!(joined.members.len(), 1);
    let member = joined.member_id.clone();

    let sv = pick(5);
    let mut sync = SyncGroupRequest::default()
        .with_group_id(GroupId(s(&group)))
        .with_generation_id(1)
        .with_member_id(member.clone())
        .with_assignments(vec![SyncGroupRequestAssignment::default()
            .with_member_id(member.clone())
            .with_assignment(Bytes::from_static(b"assignment"))]);
    if sv >= 5 {
        sync = sync
            .with_protocol_type(Some(s("consumer")))
            .with_protocol_name(Some(s("range")));
    }
    let synced: SyncGroupResponse = conn.call(ApiKey::SyncGroup, sv, &sync);
    assert_eq!(synced.error_code, 0);
    assert_eq!(&synced.assignment[..], b"assignment");

    let hb = HeartbeatRequest::default()
        .with_group_id(GroupId(s(&group)))
        .with_generation_id(1)
        .with_member_id(member.clone());
    let beat: HeartbeatResponse = conn.call(ApiKey::Heartbeat, pick(4), &hb);
    assert_eq!(beat.error_code, 0);

    let cv = (jv + 2).min(9);
    let mut partition = OffsetCommitRequestPartition::default()
        .with_partition_index(0)
        .with_committed_offset(42 + i64::from(jv))
        .with_committed_metadata(Some(s("meta")));
    if cv >= 6 {
        partition = partition.with_committed_leader_epoch(0);
    }
    let commit = OffsetCommitRequest::default()
        .with_group_id(GroupId(s(&group)))
        .with_generation_id_or_member_epoch(1)
        .with_member_id(member.clone())
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(TopicName(s(topic)))
            .with_partitions(vec![partition])]);
    let committed: OffsetCommitResponse = conn.call(ApiKey::OffsetCommit, cv, &commit);
    assert_eq!(
        committed.topics[0].partitions[0].error_code, 0,
        "commit v{cv}"
    );

    let ov = (jv + 1).min(9);
    let fetched: OffsetFetchResponse = if ov >= 8 {
        let req =
            OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
                .with_group_id(GroupId(s(&group)))
                .with_topics(Some(vec![OffsetFetchRequestTopics::default()
                    .with_name(TopicName(s(topic)))
                    .with_partition_indexes(vec![0, 1])]))]);
        conn.call(ApiKey::OffsetFetch, ov, &req)
    } else {
        let req = OffsetFetchRequest::default()
            .with_group_id(GroupId(s(&group)))
            .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                .with_name(TopicName(s(topic)))
                .with_partition_indexes(vec![0, 1])]));
        conn.call(ApiKey::OffsetFetch, ov, &req)
    };
    let offsets: Vec<(i32, i64)> = if ov >= 8 {
        fetched.groups[0].topics[0]
            .partitions
            .iter()
            .map(|p| (p.partition_index, p.committed_offset))
            .collect()
    } else {
        fetched.topics[0]
            .partitions
            .iter()
            .map(|p| (p.partition_index, p.committed_offset))
            .collect()
    };
    assert_eq!(offsets, [(0, 42 + i64::from(jv)), (1, -1)], "fetch v{ov}");

    let dv = pick(5);
    let described: DescribeGroupsResponse = conn.call(
        ApiKey::DescribeGroups,
        dv,
        &DescribeGroupsRequest::default().with_groups(vec![GroupId(s(&group))]),
    );
    let g = &described.groups[0];
    assert_eq!((g.error_code, g.group_state.as_str()), (0, "Stable"));
    assert_eq!(g.members.len(), 1);
    assert_eq!(&g.members[0].member_assignment[..], b"assignment");

    let listed: ListGroupsResponse =
        conn.call(ApiKey::ListGroups, pick(5), &ListGroupsRequest::default());
    assert!(listed.groups.iter().any(|l| l.group_id.as_str() == group));

    let lv = pick(5);
    let mut leave = LeaveGroupRequest::default().with_group_id(GroupId(s(&group)));
    if lv >= 3 {
        leave = leave.with_members(vec![
            MemberIdentity::default().with_member_id(member.clone())
        ]);
    } else {
        leave = leave.with_member_id(member.clone());
    }
    let left: LeaveGroupResponse = conn.call(ApiKey::LeaveGroup, lv, &leave);
    assert_eq!(left.error_code, 0);

    let deleted: DeleteGroupsResponse = conn.call(
        ApiKey::DeleteGroups,
        pick(2),
        &DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s(&group))]),
    );
    assert_eq!(
        deleted.results[0].error_code, 0,
        "an empty group can be deleted"
    );
}

#[test]
fn every_group_api_version_answers_in_kind() {
    let broker = TestBroker::start_with(&[("group.initial.rebalance.delay.ms", "0")]);
    let mut conn = Conn::open(&broker.addr);
    let topic = "versions-topic";
    let created: CreateTopicsResponse = conn.call(
        ApiKey::CreateTopics,
        5,
        &CreateTopicsRequest::default()
            .with_topics(vec![CreatableTopic::default()
                .with_name(TopicName(s(topic)))
                .with_num_partitions(2)
                .with_replication_factor(1)])
            .with_timeout_ms(10_000),
    );
    assert_eq!(created.topics[0].error_code, 0);
    for jv in 0..=9 {
        round(&mut conn, jv, topic);
    }

    // OffsetDelete: a commit outside group management, then its removal.
    let commit = OffsetCommitRequest::default()
        .with_group_id(GroupId(s("simple")))
        .with_generation_id_or_member_epoch(-1)
        .with_member_id(s(""))
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(TopicName(s(topic)))
            .with_partitions(vec![OffsetCommitRequestPartition::default()
                .with_partition_index(1)
                .with_committed_offset(7)])]);
    let committed: OffsetCommitResponse = conn.call(ApiKey::OffsetCommit, 8, &commit);
    assert_eq!(committed.topics[0].partitions[0].error_code, 0);
    let deleted: OffsetDeleteResponse = conn.call(
        ApiKey::OffsetDelete,
        0,
        &OffsetDeleteRequest::default()
            .with_group_id(GroupId(s("simple")))
            .with_topics(vec![OffsetDeleteRequestTopic::default()
                .with_name(TopicName(s(topic)))
                .with_partitions(vec![
                    OffsetDeleteRequestPartition::default().with_partition_index(1)
                ])]),
    );
    assert_eq!(deleted.error_code, 0);
    assert_eq!(deleted.topics[0].partitions[0].error_code, 0);

    // Unknown topics in a commit are refused per partition; unknown groups describe
    // as Dead; FindCoordinator for transactions is not served yet.
    let bad = commit.with_topics(vec![OffsetCommitRequestTopic::default()
        .with_name(TopicName(s("no-such-topic")))
        .with_partitions(vec![
            OffsetCommitRequestPartition::default().with_committed_offset(1)
        ])]);
    let refused: OffsetCommitResponse = conn.call(ApiKey::OffsetCommit, 8, &bad);
    assert_eq!(
        refused.topics[0].partitions[0].error_code, 3,
        "UNKNOWN_TOPIC_OR_PARTITION"
    );
    let described: DescribeGroupsResponse = conn.call(
        ApiKey::DescribeGroups,
        5,
        &DescribeGroupsRequest::default().with_groups(vec![GroupId(s("nobody"))]),
    );
    assert_eq!(described.groups[0].group_state.as_str(), "Dead");
    let txn: FindCoordinatorResponse = conn.call(
        ApiKey::FindCoordinator,
        4,
        &FindCoordinatorRequest::default()
            .with_key_type(1)
            .with_coordinator_keys(vec![s("txn")]),
    );
    // Transactional ids have a coordinator too (the first lookup creates
    // `__transaction_state`).
    assert_eq!(txn.coordinators[0].error_code, 0);
    assert!(txn.coordinators[0].port > 0);
}
