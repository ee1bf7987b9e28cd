//! A failed fsync under a partition leader in a three-node cluster: the leader's log
//! goes offline (it answers KAFKA_STORAGE_ERROR and serves nothing more from it), the
//! broker reports it with its next heartbeat, and the controller moves the leadership to
//! another ISR member and takes the broker out of the ISR, as Kafka does for a failed
//! log directory (KIP-858). The `acks=all` producer carries on against the new leader,
//! and every record it had acknowledged, before and after, is there.
//!
//! The node's data directories live on `moldau-powerfs` (a FUSE filesystem that can
//! fail one directory's fsyncs; needs `/dev/fuse` and root, as CI has).
//!
//! Checked against the code it exists for: with the offline partitions left out of the
//! heartbeat, the failed leader kept its leadership and refused every later write, the
//! first record after the fault was never acknowledged (librdkafka timed it out after
//! 60 s of retries), and the test failed there.

mod common;

use common::cluster::{wait_until, Cluster, ClusterSpec};
use common::wire::Conn;
use kafka_protocol::messages::{ApiKey, MetadataRequest, MetadataResponse};
use moldau_powerfs::{Fault, PowerFs};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use std::time::{Duration, Instant};

const TOPIC: &str = "faulty";

/// The leader and ISR of partition 0 of [`TOPIC`], as `addr` answers Metadata.
fn leader_and_isr(addr: &str) -> (i32, Vec<i32>) {
    let meta: MetadataResponse = Conn::open(addr).call(
        ApiKey::Metadata,
        12,
        &MetadataRequest::default().with_topics(None),
    );
    let topic = meta
        .topics
        .iter()
        .find(|t| t.name.as_ref().is_some_and(|n| n.as_str() == TOPIC))
        .expect("the topic");
    let p = &topic.partitions[0];
    (p.leader_id.0, p.isr_nodes.iter().map(|b| b.0).collect())
}

#[test]
fn a_leader_whose_log_fails_hands_its_leadership_over() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mountpoint = dir.path().join("mnt");
    std::fs::create_dir(&mountpoint).expect("mkdir");
    let fs = PowerFs::mount(&mountpoint)
        .expect("mounting the FUSE filesystem failed: this test needs /dev/fuse and root");
    let cluster = Cluster::start(ClusterSpec {
        nodes: 3,
        extra: [
            ("http.enable", "false"),
            ("offsets.topic.num.partitions", "1"),
            ("transaction.state.log.num.partitions", "1"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
        data_root: Some(mountpoint.clone()),
        ..ClusterSpec::default()
    });
    let bootstrap = cluster.bootstrap();
    let first = bootstrap.split(',').next().expect("a broker").to_owned();
    common::wire::create_topic(&first, TOPIC, 1, 3, &[("min.insync.replicas", "2")]);

    let rt = common::runtime();
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "0")
        .set("message.timeout.ms", "60000")
        .create()
        .expect("producer");
    let mut acked: Vec<(i64, String)> = Vec::new();
    let mut produce = |from: usize, to: usize| {
        for i in from..to {
            let value = format!("record-{i}");
            let delivery = rt
                .block_on(producer.send(
                    FutureRecord::<(), _>::to(TOPIC).payload(&value),
                    Duration::from_secs(60),
                ))
                .unwrap_or_else(|(e, _)| panic!("record {i} was not acknowledged: {e}"));
            acked.push((delivery.offset, value));
        }
    };
    produce(0, 50);

    let (leader, isr) = wait_until("a full ISR", Duration::from_secs(60), || {
        let (leader, isr) = leader_and_isr(&first);
        (leader > 0 && isr.len() == 3).then_some((leader, isr))
    });
    fs.inject(
        &mountpoint
            .join(format!("node-{leader}"))
            .join(format!("{TOPIC}-0")),
        Fault {
            fsync: true,
            ..Fault::default()
        },
    )
    .expect("inject");
    let failed_at = Instant::now();
    produce(50, 100);
    let recovered = failed_at.elapsed();
    let (new_leader, new_isr) = wait_until("the leadership moved", Duration::from_secs(60), || {
        let (l, isr) = leader_and_isr(&first);
        (l != leader && l > 0 && !isr.contains(&leader)).then_some((l, isr))
    });
    println!(
        "node {leader}'s fsync failed: leader {leader} -> {new_leader}, ISR {isr:?} -> \
         {new_isr:?}; the 50 records after it were acknowledged within {recovered:?}"
    );
    let log = std::fs::read_to_string(cluster.log_path(leader as usize - 1)).expect("log");
    assert!(
        log.contains("fsync failed; log poisoned"),
        "node {leader} did not fail"
    );

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "after-the-fault")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(TOPIC, 0, Offset::Beginning)
        .expect("assign");
    consumer.assign(&assignment).expect("assign");
    let mut read: Vec<(i64, String)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while read.len() < acked.len() && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            let value = String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
            read.push((m.offset(), value));
        }
    }
    for record in &acked {
        assert!(
            read.contains(record),
            "acknowledged {record:?} is not readable from the new leader"
        );
    }
}
