//! Consumer groups with librdkafka (through the rdkafka crate) and kcat against the real
//! broker binary: partitions shared and handed over on join, leave and crash; commits
//! that survive a restart; static membership (KIP-345).

mod common;

use common::{create_topic, TestBroker};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientContext;
use std::collections::{BTreeSet, HashSet};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const PARTITIONS: i32 = 6;
/// Kafka's minimum session timeout; a crashed member is noticed after this long.
const SESSION_MS: &str = "6000";

fn broker() -> TestBroker {
    TestBroker::start_with(&[("group.initial.rebalance.delay.ms", "0")])
}

async fn produce(addr: &str, topic: &str, count: usize) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("enable.idempotence", "false")
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    let records: Vec<(String, String)> = (0..count)
        .map(|i| (format!("key-{i}"), format!("value-{i}")))
        .collect();
    let mut pending = Vec::with_capacity(count);
    for (key, value) in &records {
        pending.push(producer.send_result(FutureRecord::to(topic).key(key).payload(value)));
    }
    for p in pending {
        p.expect("queued").await.expect("delivered").expect("acked");
    }
}

/// Counts rebalance callbacks, so a test can tell "no rebalance happened".
#[derive(Default)]
struct Counting {
    rebalances: Arc<AtomicUsize>,
}

impl ClientContext for Counting {}

impl ConsumerContext for Counting {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if matches!(rebalance, Rebalance::Assign(_) | Rebalance::Revoke(_)) {
            self.rebalances.fetch_add(1, Ordering::SeqCst);
        }
    }
}

fn consumer_config(addr: &str, group: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", addr)
        .set("group.id", group)
        .set("session.timeout.ms", SESSION_MS)
        .set("heartbeat.interval.ms", "500")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("partition.assignment.strategy", "range");
    c
}

/// A group member polling on its own thread; its assignment is visible to the test.
struct Member {
    assignment: Arc<Mutex<BTreeSet<i32>>>,
    rebalances: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Member {
    fn start(config: ClientConfig, topic: &str) -> Member {
        let rebalances = Arc::new(AtomicUsize::new(0));
        let context = Counting {
            rebalances: rebalances.clone(),
        };
        let consumer: BaseConsumer<Counting> =
            config.create_with_context(context).expect("consumer");
        consumer.subscribe(&[topic]).expect("subscribe");
        let assignment = Arc::new(Mutex::new(BTreeSet::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (a, s) = (assignment.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                let _ = consumer.poll(Duration::from_millis(100));
                let now: BTreeSet<i32> = consumer
                    .assignment()
                    .map(|tpl| tpl.elements().iter().map(|e| e.partition()).collect())
                    .unwrap_or_default();
                *a.lock().expect("lock") = now;
            }
            // Dropping the consumer closes it: a dynamic member sends LeaveGroup.
        });
        Member {
            assignment,
            rebalances,
            stop,
            thread: Some(thread),
        }
    }

    fn assigned(&self) -> BTreeSet<i32> {
        self.assignment.lock().expect("lock").clone()
    }

    fn close(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().expect("member thread");
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Waits until the members' assignments are disjoint and each holds
/// `PARTITIONS / group_size` partitions (the range assignor's even split). With
/// `group_size == members.len()` that means together they own every partition.
fn wait_for_split(members: &[&Member], group_size: usize) -> Vec<BTreeSet<i32>> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let sets: Vec<BTreeSet<i32>> = members.iter().map(|m| m.assigned()).collect();
        let union: BTreeSet<i32> = sets.iter().flatten().copied().collect();
        let total: usize = sets.iter().map(BTreeSet::len).sum();
        let even = sets
            .iter()
            .all(|s| s.len() == PARTITIONS as usize / group_size);
        if even && union.len() == total {
            return sets;
        }
        assert!(Instant::now() < deadline, "group never balanced: {sets:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn wait_for_balanced(members: &[&Member]) -> Vec<BTreeSet<i32>> {
    let sets = wait_for_split(members, members.len());
    let union: BTreeSet<i32> = sets.iter().flatten().copied().collect();
    assert_eq!(union, (0..PARTITIONS).collect(), "every partition owned");
    sets
}

#[tokio::test(flavor = "multi_thread")]
async fn members_share_partitions_and_hand_them_over() {
    let broker = broker();
    let topic = "shared";
    create_topic(&broker.addr, topic, PARTITIONS).await;
    let group = "g-share";

    let m1 = Member::start(consumer_config(&broker.addr, group), topic);
    let m2 = Member::start(consumer_config(&broker.addr, group), topic);
    let two = wait_for_balanced(&[&m1, &m2]);
    assert_eq!(two.iter().map(BTreeSet::len).collect::<Vec<_>>(), [3, 3]);

    let m3 = Member::start(consumer_config(&broker.addr, group), topic);
    let three = wait_for_balanced(&[&m1, &m2, &m3]);
    assert!(three.iter().all(|s| s.len() == 2), "{three:?}");

    // A member leaves cleanly: the other two take its partitions.
    m3.close();
    wait_for_balanced(&[&m1, &m2]);

    // A member crashes (kcat killed with SIGKILL sends no LeaveGroup): once its session
    // times out, the survivors own everything again.
    let mut kcat = kcat_member(&broker.addr, group, topic);
    wait_for_split(&[&m1, &m2], 3);
    kcat.kill().expect("kill kcat");
    let _ = kcat.wait();
    let started = Instant::now();
    wait_for_balanced(&[&m1, &m2]);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(3_000),
        "the crashed member's partitions moved after {took:?}, before its session could expire"
    );
    m1.close();
    m2.close();
}

/// A kcat balanced consumer as a separate process, so it can be killed like a crash.
/// Its partitions are not visible to the test, which instead waits until the Rust
/// members hold two each.
fn kcat_member(addr: &str, group: &str, topic: &str) -> Child {
    Command::new("kcat")
        .args([
            "-b",
            addr,
            "-G",
            group,
            "-X",
            &format!("session.timeout.ms={SESSION_MS}"),
            "-X",
            "partition.assignment.strategy=range",
            "-q",
            topic,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("kcat (installed by scripts/test)")
}

/// Consumes until `want` messages arrived or `idle` passes without one; returns the
/// values seen.
fn consume(consumer: &BaseConsumer, want: usize, idle: Duration) -> Vec<String> {
    let mut seen = Vec::new();
    let mut last = Instant::now();
    while seen.len() < want && last.elapsed() < idle {
        if let Some(msg) = consumer.poll(Duration::from_millis(200)) {
            let msg = msg.expect("message");
            let value = String::from_utf8_lossy(msg.payload().unwrap_or_default()).into_owned();
            seen.push(value);
            last = Instant::now();
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread")]
async fn commits_survive_a_restart_and_a_new_member_resumes_exactly() {
    let mut broker = broker();
    let topic = "resume";
    create_topic(&broker.addr, topic, PARTITIONS).await;
    const TOTAL: usize = 3_000;
    produce(&broker.addr, topic, TOTAL).await;
    let group = "g-resume";

    // The first member reads part of the topic, commits exactly what it read, and goes.
    let first: BaseConsumer = consumer_config(&broker.addr, group)
        .create()
        .expect("consumer");
    first.subscribe(&[topic]).expect("subscribe");
    let read_first = consume(&first, 1_200, Duration::from_secs(30));
    assert_eq!(read_first.len(), 1_200);
    first
        .commit_consumer_state(CommitMode::Sync)
        .expect("commit");
    drop(first);

    // The broker restarts (graceful stop, then start on the same data).
    assert!(broker.stop(), "clean shutdown");
    broker.restart();

    // A new member of the same group resumes after the commits: together the two saw
    // every record exactly once.
    let second: BaseConsumer = consumer_config(&broker.addr, group)
        .create()
        .expect("consumer");
    second.subscribe(&[topic]).expect("subscribe");
    let read_second = consume(&second, TOTAL, Duration::from_secs(10));
    let first_set: HashSet<&String> = read_first.iter().collect();
    let repeated = read_second.iter().filter(|v| first_set.contains(v)).count();
    assert_eq!(repeated, 0, "records read again after their commit");
    assert_eq!(
        read_second.len(),
        TOTAL - read_first.len(),
        "records lost or repeated"
    );
    let all: HashSet<&String> = read_first.iter().chain(&read_second).collect();
    assert_eq!(all.len(), TOTAL);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_static_member_restarting_in_time_gets_its_partitions_back_without_a_rebalance() {
    let broker = broker();
    let topic = "static";
    create_topic(&broker.addr, topic, PARTITIONS).await;
    let group = "g-static";
    let config = |instance: &str| {
        let mut c = consumer_config(&broker.addr, group);
        c.set("group.instance.id", instance)
            .set("session.timeout.ms", "20000");
        c
    };
    let s1 = Member::start(config("instance-1"), topic);
    let s2 = Member::start(config("instance-2"), topic);
    let before = wait_for_balanced(&[&s1, &s2]);
    // Let the group settle, then count s2's rebalances from here on.
    std::thread::sleep(Duration::from_secs(2));
    let s2_rebalances = s2.rebalances.load(Ordering::SeqCst);

    // s1's process ends (a static member sends no LeaveGroup) and a new one starts with
    // the same instance id well within the 20 s session.
    s1.close();
    std::thread::sleep(Duration::from_secs(2));
    let s1_again = Member::start(config("instance-1"), topic);
    let after = wait_for_balanced(&[&s1_again, &s2]);
    assert_eq!(after[0], before[0], "instance-1 gets its partitions back");
    assert_eq!(after[1], before[1]);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        s2.rebalances.load(Ordering::SeqCst),
        s2_rebalances,
        "the other member saw a rebalance"
    );
    s1_again.close();
    s2.close();
}
