//! Tests of the cluster test harness itself (`common::cluster`, `common::netns`), on
//! what `moldau serve` does today: independent one-node brokers (`kraft: false`). Each
//! fault is checked for its effect (records survive a kill -9, a paused node does not
//! answer, a cut link refuses node-to-node connects while clients still get through,
//! nothing is left behind), not only for running without a panic.
//!
//! The namespace tests need root and iproute2; without them they fail saying so.

mod common;

use chrono::Utc;
use common::cluster::{process_state, wait_until, Cluster, ClusterSpec, BROKER_READY};
use common::netns::{self, Probe};
use common::runtime;
use rskafka::client::partition::{Compression, PartitionClient, UnknownTopicHandling};
use rskafka::client::ClientBuilder;
use rskafka::record::Record;
use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a request to a paused node is given before the test concludes it hangs.
const SHORT: Duration = Duration::from_secs(2);
/// How long a request that must succeed is given.
const LONG: Duration = Duration::from_secs(30);

/// `nodes` independent one-node brokers.
fn brokers(nodes: usize, netns: bool) -> ClusterSpec {
    ClusterSpec {
        nodes,
        netns,
        kraft: false,
        ..ClusterSpec::default()
    }
}

/// A client for partition 0 of `topic` (created first, one partition, if `create`).
async fn partition(bootstrap: &str, topic: &str, create: bool) -> PartitionClient {
    let client = ClientBuilder::new(bootstrap.split(',').map(str::to_owned).collect())
        .build()
        .await
        .expect("client");
    if create {
        client
            .controller_client()
            .expect("controller client")
            .create_topic(topic, 1, 1, 5_000)
            .await
            .expect("create topic");
    }
    client
        .partition_client(topic, 0, UnknownTopicHandling::Retry)
        .await
        .expect("partition client")
}

/// Produces `values` (rskafka produces with acks=all) and returns their offsets.
async fn produce(pc: &PartitionClient, values: &[&str]) -> Vec<i64> {
    let records = values
        .iter()
        .map(|v| Record {
            key: None,
            value: Some(v.as_bytes().to_vec()),
            headers: BTreeMap::new(),
            timestamp: Utc::now(),
        })
        .collect();
    pc.produce(records, Compression::NoCompression)
        .await
        .expect("produce")
}

/// Every value from offset 0 to the high watermark, checking offsets are contiguous.
async fn read_all(pc: &PartitionClient) -> Vec<String> {
    let mut next = 0;
    let mut values = Vec::new();
    loop {
        let (records, hw) = pc
            .fetch_records(next, 1..1_000_000, 100)
            .await
            .expect("fetch");
        for r in records {
            if r.offset < next {
                continue;
            }
            assert_eq!(r.offset, next, "contiguous offsets");
            next += 1;
            let value = r.record.value.expect("value");
            values.push(String::from_utf8(value).expect("utf-8 value"));
        }
        if next >= hw {
            return values;
        }
    }
}

/// Runs `fut` on `rt` for at most `limit`.
fn within<F: std::future::Future>(
    rt: &tokio::runtime::Runtime,
    limit: Duration,
    fut: F,
) -> Result<F::Output, tokio::time::error::Elapsed> {
    rt.block_on(async { tokio::time::timeout(limit, fut).await })
}

fn connects(addr: &str) -> bool {
    let addr: SocketAddr = addr.parse().expect("socket address");
    TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok()
}

/// Asserts that no namespace or root-namespace interface named `prefix…` is left.
fn assert_clean(prefix: &str) {
    let namespaces: Vec<String> = netns::namespaces()
        .into_iter()
        .filter(|n| n.starts_with(prefix))
        .collect();
    let links: Vec<String> = netns::links()
        .into_iter()
        .filter(|n| n.starts_with(prefix))
        .collect();
    assert!(
        namespaces.is_empty() && links.is_empty(),
        "left behind: namespaces {namespaces:?}, interfaces {links:?}"
    );
}

#[test]
fn single_node_kill9_restart_pause_resume_stop() {
    let mut cluster = Cluster::start(brokers(1, false));
    let rt = runtime();
    let addr = cluster.node(0).addr().to_owned();
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");
    assert_eq!(cluster.bootstrap(), addr);
    assert_eq!(cluster.node(0).id, 1);

    let values: Vec<String> = (0..10).map(|i| format!("value-{i}")).collect();
    let refs: Vec<&str> = values.iter().map(String::as_str).collect();
    let offsets = rt.block_on(async {
        let pc = partition(&cluster.bootstrap(), "harness", true).await;
        produce(&pc, &refs).await
    });
    assert_eq!(offsets, (0..10).collect::<Vec<i64>>());

    // kill -9: the process is gone and reaped, its port closed.
    let pid = cluster.node(0).pid().expect("pid");
    cluster.kill9(0);
    assert!(!cluster.is_running(0));
    assert_eq!(cluster.node(0).pid(), None);
    assert_eq!(process_state(pid), None, "pid {pid} reaped");
    assert_eq!(cluster.bootstrap(), "", "a dead node is not in bootstrap");
    assert!(!connects(&addr), "nothing listens on {addr} after kill -9");

    // Restart: same port, same data, a new process; every acknowledged record is back.
    cluster.restart(0);
    assert!(cluster.is_running(0));
    assert_eq!(cluster.bootstrap(), addr, "same port after restart");
    let pid = cluster.node(0).pid().expect("pid");
    let log = std::fs::read_to_string(cluster.log_path(0)).expect("node log");
    assert_eq!(
        log.matches(BROKER_READY).count(),
        2,
        "one ready line per start"
    );
    let data = std::fs::read_dir(cluster.data_dir(0)).expect("data dir");
    assert!(data.count() > 0, "the broker wrote into data_dir");
    let pc = rt.block_on(partition(&addr, "harness", false));
    assert_eq!(
        rt.block_on(read_all(&pc)),
        values,
        "acks=all records survive kill -9"
    );

    // Pause: the process stops; the kernel still accepts connections but nothing answers.
    cluster.pause(0);
    assert!(cluster.is_running(0), "a paused node still runs");
    assert!(cluster.node(0).is_paused());
    assert_eq!(process_state(pid), Some('T'));
    assert_eq!(cluster.bootstrap(), "", "a paused node is not in bootstrap");
    let fetch = within(&rt, SHORT, pc.fetch_records(0, 1..1_000_000, 100));
    assert!(fetch.is_err(), "a paused broker answered: {fetch:?}");
    let fresh = within(&rt, SHORT, ClientBuilder::new(vec![addr.clone()]).build());
    assert!(fresh.is_err(), "a paused broker answered a new client");

    // Resume: the same connection works again.
    cluster.resume(0);
    assert_ne!(process_state(pid), Some('T'));
    let offsets =
        within(&rt, LONG, produce(&pc, &["after-resume"])).expect("the resumed broker answers");
    assert_eq!(offsets, vec![10]);
    let mut expected = values.clone();
    expected.push("after-resume".to_owned());
    assert_eq!(rt.block_on(read_all(&pc)), expected);

    // Graceful stop exits 0.
    assert!(cluster.stop(0), "SIGTERM: clean exit");
    assert!(!cluster.is_running(0));
    assert!(!connects(&addr));
}

#[test]
fn wait_until_returns_the_value_and_names_what_timed_out() {
    let mut polls = 0;
    let v = wait_until("the third poll", Duration::from_secs(5), || {
        polls += 1;
        (polls == 3).then_some(polls * 10)
    });
    assert_eq!(v, 30);
    let err = std::panic::catch_unwind(|| {
        wait_until("pigs fly", Duration::from_millis(50), || None::<()>);
    })
    .expect_err("times out");
    let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("pigs fly"), "{msg}");
}

#[test]
fn netns_single_node_in_its_own_namespace() {
    let mut cluster = Cluster::start(brokers(1, true));
    let rt = runtime();
    let net = cluster.network().expect("network");
    let prefix = net.prefix().to_owned();
    let (ns, ip) = (net.namespace(0), net.ip(0));
    assert!(ip.starts_with("10."), "{ip}");
    let addr = cluster.node(0).addr().to_owned();
    assert_eq!(addr, format!("{ip}:{}", netns::KAFKA_PORT));
    assert_eq!(cluster.bootstrap(), addr);
    assert_eq!(cluster.node(0).namespace.as_deref(), Some(ns.as_str()));

    // The child pid is moldau itself (ip netns exec execs it), in another net namespace.
    let pid = cluster.node(0).pid().expect("pid");
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).expect("exe");
    assert_eq!(
        exe.file_name().and_then(|n| n.to_str()),
        Some("moldau"),
        "{exe:?}"
    );
    let own = std::fs::read_link("/proc/self/ns/net").expect("own netns");
    let its = std::fs::read_link(format!("/proc/{pid}/ns/net")).expect("node netns");
    assert_ne!(own, its, "the node runs in its own network namespace");

    // A client in the root namespace produces through the bridge.
    let pc = rt.block_on(partition(&addr, "ns", true));
    assert_eq!(rt.block_on(produce(&pc, &["one"])), vec![0]);

    // Pause and kill hit moldau, not a wrapper: it stops, and it dies.
    cluster.pause(0);
    assert_eq!(process_state(pid), Some('T'));
    let fetch = within(&rt, SHORT, pc.fetch_records(0, 1..1_000_000, 100));
    assert!(fetch.is_err(), "a paused broker answered: {fetch:?}");
    cluster.resume(0);
    assert_eq!(rt.block_on(produce(&pc, &["two"])), vec![1]);
    cluster.kill9(0);
    assert_eq!(process_state(pid), None, "moldau (pid {pid}) is gone");
    cluster.restart(0);
    assert_eq!(cluster.node(0).addr(), addr);
    let pc = rt.block_on(partition(&addr, "ns", false));
    assert_eq!(rt.block_on(read_all(&pc)), ["one", "two"]);

    drop(pc);
    drop(rt);
    drop(cluster);
    assert_clean(&prefix);
}

#[test]
fn netns_cut_and_isolate_spare_clients() {
    let mut cluster = Cluster::start(brokers(2, true));
    let rt = runtime();
    let net = cluster.network().expect("network");
    let prefix = net.prefix().to_owned();
    let ns = [net.namespace(0), net.namespace(1)];
    let addrs = [
        cluster.node(0).addr().to_owned(),
        cluster.node(1).addr().to_owned(),
    ];
    assert_ne!(addrs[0], addrs[1]);
    assert_eq!(cluster.bootstrap(), addrs.join(","));
    let probe = |from: usize| netns::tcp_probe(&ns[from], &addrs[1 - from], Duration::from_secs(2));
    let pcs = rt.block_on(async {
        [
            partition(&addrs[0], "cut", true).await,
            partition(&addrs[1], "cut", true).await,
        ]
    });
    let produce_each = |round: i64| {
        for pc in &pcs {
            let value = format!("round-{round}");
            let offsets = within(&rt, LONG, produce(pc, &[value.as_str()]))
                .expect("a client in the root namespace gets through");
            assert_eq!(offsets, vec![round]);
        }
    };
    produce_each(0);
    assert_eq!(probe(0), Probe::Connected, "node 0 reaches node 1");
    assert_eq!(probe(1), Probe::Connected, "node 1 reaches node 0");

    // isolate(0): node to node fails both ways; the root namespace still reaches both.
    cluster.isolate(0);
    assert!(matches!(probe(0), Probe::Failed(_)), "{:?}", probe(0));
    assert!(matches!(probe(1), Probe::Failed(_)), "{:?}", probe(1));
    assert!(connects(&addrs[0]) && connects(&addrs[1]));
    produce_each(1);
    cluster.heal(0);
    assert_eq!(probe(0), Probe::Connected, "healed");
    assert_eq!(probe(1), Probe::Connected, "healed");

    // cut(0, 1) and heal_link: the same, for one link.
    cluster.cut(0, 1);
    assert!(matches!(probe(0), Probe::Failed(_)), "{:?}", probe(0));
    assert!(matches!(probe(1), Probe::Failed(_)), "{:?}", probe(1));
    produce_each(2);
    cluster.heal_link(0, 1);
    assert_eq!(probe(0), Probe::Connected, "healed");
    assert_eq!(probe(1), Probe::Connected, "healed");

    // A cut stays in place across a restart of the node (it belongs to the namespace).
    cluster.cut(0, 1);
    cluster.kill9(1);
    cluster.restart(1);
    assert!(matches!(probe(0), Probe::Failed(_)), "{:?}", probe(0));
    cluster.heal_link(0, 1);
    assert_eq!(probe(0), Probe::Connected);

    // Leave a cut in place: drop must remove it with everything else.
    cluster.isolate(1);
    drop(pcs);
    drop(rt);
    drop(cluster);
    assert_clean(&prefix);
}

#[test]
fn netns_cleanup_after_a_panic() {
    let prefix: Arc<Mutex<Option<String>>> = Arc::default();
    let seen = prefix.clone();
    let result = std::panic::catch_unwind(move || {
        let mut cluster = Cluster::start(brokers(2, true));
        let net = cluster.network().expect("network");
        let p = net.prefix().to_owned();
        assert!(netns::namespaces().iter().any(|n| n.starts_with(&p)));
        *seen.lock().expect("lock") = Some(p);
        cluster.cut(0, 1);
        cluster.pause(1);
        panic!("deliberate panic with a live, partitioned, paused cluster");
    });
    assert!(result.is_err());
    let prefix = prefix
        .lock()
        .expect("lock")
        .clone()
        .expect("cluster started");
    assert_clean(&prefix);
}

#[test]
fn cleanup_stale_removes_only_what_dead_processes_left() {
    netns::require();
    let pid_max: u32 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .expect("pid_max")
        .trim()
        .parse()
        .expect("pid_max number");
    let dead = (1..pid_max)
        .rev()
        .find(|p| process_state(*p).is_none())
        .expect("an unused pid");
    let stale = netns::owner_prefix(dead, 7);
    let live = netns::owner_prefix(std::process::id(), 1295);
    let ip = |args: &[&str]| {
        let status = Command::new("ip").args(args).status().expect("ip");
        assert!(status.success(), "ip {args:?}");
    };
    ip(&["netns", "add", &format!("{stale}n0")]);
    ip(&["link", "add", &format!("{stale}b"), "type", "bridge"]);
    ip(&[
        "link",
        "add",
        &format!("{stale}v0"),
        "type",
        "veth",
        "peer",
        "name",
        &format!("{stale}e0"),
    ]);
    ip(&["netns", "add", &format!("{live}n0")]);

    netns::cleanup_stale(netns::PREFIX);

    let remaining: Vec<String> = netns::namespaces()
        .into_iter()
        .chain(netns::links())
        .filter(|n| n.starts_with(&stale) || n.starts_with(&live))
        .collect();
    ip(&["netns", "del", &format!("{live}n0")]);
    assert_eq!(
        remaining,
        vec![format!("{live}n0")],
        "only the live owner's namespace stays"
    );
}
