//! `moldau-bench BINARY cluster`: a 3-node cluster of the release binary on this
//! machine (every node broker and controller, loopback), driven by librdkafka:
//!
//! - produce throughput of 1 KiB records, `acks=all`, RF=3, `min.insync.replicas=2`,
//!   on 1 and on 6 partitions (MB/s);
//! - end-to-end latency at a fixed 10,000 records/s, RF=3 (p50, p99, p99.9);
//! - leader failover: from kill -9 of a partition's leader to the first `acks=all`
//!   produce acknowledged by its new leader;
//! - controller failover: from kill -9 of the active controller to the next successful
//!   CreateTopics.
//!
//! Defaults everywhere (`broker.session.timeout.ms` 3000, heartbeat 500 ms, election
//! timeout 1000 ms).

use super::{api_versions_answered, create_topic_rf, free_port, latency, pct, produce};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Node {
    child: Option<Child>,
    kafka: String,
    args: Vec<String>,
}

struct Cluster {
    binary: String,
    nodes: Vec<Node>,
    dir: std::path::PathBuf,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(mut c) = n.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Cluster {
    fn start(binary: &str) -> Cluster {
        let dir = std::env::temp_dir().join(format!("moldau-bench-cluster-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
        let voters: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, (_, c))| format!("{}@127.0.0.1:{c}", i + 1))
            .collect();
        let nodes = ports
            .iter()
            .enumerate()
            .map(|(i, (k, c))| {
                let kafka = format!("127.0.0.1:{k}");
                let args = vec![
                    "serve".to_owned(),
                    "-o".into(),
                    "process.roles=broker,controller".into(),
                    "-o".into(),
                    format!("node.id={}", i + 1),
                    "-o".into(),
                    format!("controller.quorum.voters={}", voters.join(",")),
                    "-o".into(),
                    format!("listeners=PLAINTEXT://{kafka},CONTROLLER://127.0.0.1:{c}"),
                    "-o".into(),
                    "controller.listener.names=CONTROLLER".into(),
                    "-o".into(),
                    format!("log.dirs={}/node-{}", dir.display(), i + 1),
                    "-o".into(),
                    "http.enable=false".into(),
                ];
                Node {
                    child: None,
                    kafka,
                    args,
                }
            })
            .collect();
        let mut cluster = Cluster {
            binary: binary.to_owned(),
            nodes,
            dir,
        };
        for i in 0..3 {
            cluster.spawn(i);
        }
        for i in 0..3 {
            cluster.wait_serving(i);
        }
        cluster
    }

    fn spawn(&mut self, i: usize) {
        let child = Command::new(&self.binary)
            .args(&self.nodes[i].args)
            .env("MOLDAU_LOG", "warn,openraft=error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn node");
        self.nodes[i].child = Some(child);
    }

    fn wait_serving(&self, i: usize) {
        let started = Instant::now();
        while !api_versions_answered(&self.nodes[i].kafka) {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "node {} did not start",
                i + 1
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn bootstrap(&self) -> String {
        self.nodes
            .iter()
            .filter(|n| n.child.is_some())
            .map(|n| n.kafka.clone())
            .collect::<Vec<_>>()
            .join(",")
    }

    fn kill9(&mut self, id: i32) {
        if let Some(mut c) = self.nodes[(id - 1) as usize].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn restart(&mut self, id: i32) {
        let i = (id - 1) as usize;
        self.spawn(i);
        self.wait_serving(i);
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn leader_of(bootstrap: &str, topic: &str, partition: i32) -> i32 {
    let started = Instant::now();
    loop {
        let consumer: rdkafka::consumer::BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .create()
            .expect("consumer");
        if let Ok(md) = rdkafka::consumer::Consumer::fetch_metadata(
            &consumer,
            Some(topic),
            Duration::from_secs(5),
        ) {
            let leader = md
                .topics()
                .first()
                .and_then(|t| t.partitions().iter().find(|p| p.id() == partition))
                .map_or(-1, |p| p.leader());
            if leader >= 0 {
                return leader;
            }
        }
        assert!(started.elapsed() < Duration::from_secs(60), "no leader");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn controller_of(rt: &tokio::runtime::Runtime, bootstrap: &str) -> i32 {
    rt.block_on(async {
        let client = moldau_client::Client::connect(moldau_client::ClientConfig::new(bootstrap))
            .await
            .expect("client");
        moldau_client::Admin::new(client)
            .describe_cluster()
            .await
            .expect("describe cluster")
            .controller_id
    })
}

/// Kill -9 of the partition leader → first acks=all record acknowledged afterwards.
fn leader_failover(cluster: &mut Cluster, rt: &tokio::runtime::Runtime, topic: &str) -> Duration {
    let bootstrap = cluster.bootstrap();
    create_topic_rf(&bootstrap, topic, 1, 3, &[("min.insync.replicas", "2")]);
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("acks", "all")
        .set("linger.ms", "0")
        .set("message.timeout.ms", "60000")
        .set("retry.backoff.ms", "20")
        .set("retry.backoff.max.ms", "100")
        .create()
        .expect("producer");
    let send = |i: u32| {
        let producer = producer.clone();
        async move {
            let value = i.to_string();
            producer
                .send(
                    FutureRecord::<(), String>::to(topic)
                        .partition(0)
                        .payload(&value),
                    Duration::from_secs(60),
                )
                .await
                .map(|_| ())
                .map_err(|(e, _)| e)
        }
    };
    rt.block_on(async {
        for i in 0..100 {
            send(i).await.expect("warm-up record");
        }
    });
    let leader = leader_of(&bootstrap, topic, 0);
    cluster.kill9(leader);
    let killed = Instant::now();
    rt.block_on(send(100)).expect("record after the kill");
    let elapsed = killed.elapsed();
    drop(producer);
    cluster.restart(leader);
    elapsed
}

/// Kill -9 of the active controller → next successful CreateTopics.
fn controller_failover(cluster: &mut Cluster, rt: &tokio::runtime::Runtime) -> Duration {
    let controller = controller_of(rt, &cluster.bootstrap());
    cluster.kill9(controller);
    let killed = Instant::now();
    let bootstrap = cluster.bootstrap();
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .expect("admin");
    let mut attempt = 0;
    loop {
        attempt += 1;
        let name = format!("after-controller-{attempt}");
        let topic = NewTopic::new(&name, 1, TopicReplication::Fixed(2));
        let options = AdminOptions::new()
            .operation_timeout(Some(Duration::from_secs(10)))
            .request_timeout(Some(Duration::from_secs(10)));
        let created = rt
            .block_on(admin.create_topics(&[topic], &options))
            .map(|r| r.iter().all(|x| x.is_ok()))
            .unwrap_or(false);
        if created {
            break;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(120),
            "CreateTopics never worked again"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let elapsed = killed.elapsed();
    cluster.restart(controller);
    elapsed
}

/// Runs the cluster benchmark (see the module docs) and prints its figures.
pub fn run(binary: &str) {
    let rt = rt();
    let mut cluster = Cluster::start(binary);
    let bootstrap = cluster.bootstrap();
    println!(
        "3-node cluster on this machine, RF=3, min.insync.replicas=2, acks=all, 1 KiB records"
    );
    for partitions in [1, 6] {
        let topic = format!("rf3-{partitions}");
        create_topic_rf(
            &bootstrap,
            &topic,
            partitions,
            3,
            &[("min.insync.replicas", "2")],
        );
        let count = 300_000;
        let took = produce(&bootstrap, &topic, 1024, count, "all");
        println!(
            "produce, {partitions} partition(s): {:.1} MB/s ({:.0} records/s)",
            (1024 * count) as f64 / 1e6 / took.as_secs_f64(),
            count as f64 / took.as_secs_f64()
        );
    }
    create_topic_rf(
        &bootstrap,
        "rf3-latency",
        1,
        3,
        &[("min.insync.replicas", "2")],
    );
    let lat = latency(&bootstrap, "rf3-latency", 1024, 10_000, 10, "all");
    println!(
        "end-to-end latency at 10,000 records/s ({} samples): p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms",
        lat.len(),
        pct(&lat, 0.50),
        pct(&lat, 0.99),
        pct(&lat, 0.999)
    );
    for round in 1..=3 {
        let leader = leader_failover(&mut cluster, &rt, &format!("failover-{round}"));
        println!("leader failover (round {round}): kill -9 of the partition leader to the next acknowledged produce: {:.2} s", leader.as_secs_f64());
        // Let the restarted node rejoin before the next fault.
        std::thread::sleep(Duration::from_secs(2));
        let controller = controller_failover(&mut cluster, &rt);
        println!("controller failover (round {round}): kill -9 of the active controller to the next successful CreateTopics: {:.2} s", controller.as_secs_f64());
        std::thread::sleep(Duration::from_secs(2));
    }
}
