//! A three-node cluster of real `moldau` processes (every node broker and controller),
//! driven by librdkafka (the rdkafka crate) as the independent client, under real
//! faults: kill -9 of a partition leader and of the active controller, SIGSTOP of a
//! broker, and (in network namespaces) a leader cut off from the other nodes.
//!
//! What every fault test checks at the end, after all nodes are back:
//! - every record the producer saw acknowledged (`acks=all`, idempotent) is in the log
//!   at the offset the acknowledgement named, exactly once, in production order;
//! - every record a consumer read during the faults is still there at the same offset
//!   (no consumer read a record that was later truncated);
//! - the replicas are byte-identical below the high watermark.
//!
//! How these were checked to fail without the mechanism they guard (by hand, on
//! 2026-12-03, see each test): with the follower's truncation on a diverging epoch
//! disabled, the partition test fails (a follower that fetched past the new leader's
//! log can never fetch on, so acks=all stops); with acks=all answered once the leader
//! alone has the batch (the high watermark ignoring followers), the freeze test finds
//! acknowledged records missing.

mod common;

use common::cluster::{wait_until, Cluster, ClusterSpec};
use common::runtime;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Deadline for anything the cluster must get done (generous: 3 processes on 2 cores).
const LONG: Duration = Duration::from_secs(120);

fn three_nodes(netns: bool) -> Cluster {
    Cluster::start(ClusterSpec {
        nodes: 3,
        netns,
        extra: vec![
            ("group.initial.rebalance.delay.ms".into(), "0".into()),
            ("offsets.topic.num.partitions".into(), "4".into()),
            ("transaction.state.log.num.partitions".into(), "4".into()),
        ],
        ..ClusterSpec::default()
    })
}

fn admin(bootstrap: &str) -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin client")
}

async fn create_topic(
    bootstrap: &str,
    name: &str,
    partitions: i32,
    rf: i32,
    configs: &[(&str, &str)],
) {
    let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(rf));
    for (k, v) in configs {
        topic = topic.set(k, v);
    }
    let results = admin(bootstrap)
        .create_topics(&[topic], &AdminOptions::new().operation_timeout(Some(LONG)))
        .await
        .expect("create_topics");
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
}

/// Moldau's own admin client (rdkafka exposes no controller id, leader epochs or ISR).
async fn moldau_admin(bootstrap: &str) -> moldau_client::Admin {
    let client = moldau_client::Client::connect(moldau_client::ClientConfig::new(bootstrap))
        .await
        .expect("client");
    moldau_client::Admin::new(client)
}

/// The cluster's view: active controller and brokers, fenced ones marked.
async fn describe(bootstrap: &str) -> moldau_client::ClusterMetadata {
    moldau_admin(bootstrap)
        .await
        .describe_cluster()
        .await
        .expect("describe cluster")
}

/// Leader, replicas and ISR of each partition of `topic` (empty if it is not known).
async fn topic_state(bootstrap: &str, topic: &str) -> Vec<moldau_client::PartitionInfo> {
    moldau_admin(bootstrap)
        .await
        .describe_topic(topic)
        .await
        .map(|t| t.partitions)
        .unwrap_or_default()
}

/// An idempotent `acks=all` producer writing sequence numbers round-robin over the
/// partitions, as fast as up to 200 unanswered records allow, recording every
/// acknowledgement (partition, offset, sequence).
struct Workload {
    acked: Arc<Mutex<Vec<(i32, i64, u64)>>>,
    failed: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Workload {
    fn start(rt: &tokio::runtime::Runtime, bootstrap: &str, topic: &str, partitions: i32) -> Self {
        Self::start_with(rt, bootstrap, topic, partitions, true)
    }

    /// `idempotent: false` gives a plain acks=all producer with retries, whose records
    /// may be duplicated but whose acknowledgements must still hold.
    fn start_with(
        rt: &tokio::runtime::Runtime,
        bootstrap: &str,
        topic: &str,
        partitions: i32,
        idempotent: bool,
    ) -> Self {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set(
                "enable.idempotence",
                if idempotent { "true" } else { "false" },
            )
            .set("acks", "all")
            .set("linger.ms", "2")
            .set("message.timeout.ms", "300000")
            .set("request.timeout.ms", "10000")
            .set("retry.backoff.ms", "100")
            .set("topic.metadata.refresh.interval.ms", "1000")
            .create()
            .expect("producer");
        let acked: Arc<Mutex<Vec<(i32, i64, u64)>>> = Arc::default();
        let failed: Arc<Mutex<Vec<String>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (a, f, s, topic) = (
            acked.clone(),
            failed.clone(),
            stop.clone(),
            topic.to_owned(),
        );
        let task = rt.spawn(async move {
            use futures::stream::{FuturesUnordered, StreamExt};
            let mut in_flight = FuturesUnordered::new();
            let mut seq = 0u64;
            loop {
                while in_flight.len() < 200 && !s.load(Ordering::Relaxed) {
                    let value = seq.to_string();
                    let partition = (seq % partitions as u64) as i32;
                    let producer = producer.clone();
                    let topic = topic.clone();
                    let this = seq;
                    in_flight.push(async move {
                        let record = FutureRecord::<(), String>::to(&topic)
                            .partition(partition)
                            .payload(&value);
                        (this, producer.send(record, Duration::from_secs(300)).await)
                    });
                    seq += 1;
                }
                match in_flight.next().await {
                    Some((seq, Ok(d))) => {
                        a.lock().expect("acked").push((d.partition, d.offset, seq))
                    }
                    Some((seq, Err((e, _)))) => {
                        f.lock().expect("failed").push(format!("{seq}: {e}"))
                    }
                    None => break,
                }
            }
        });
        Workload {
            acked,
            failed,
            stop,
            task: Some(task),
        }
    }

    fn acked(&self) -> usize {
        self.acked.lock().expect("acked").len()
    }

    /// Waits until `more` further records were acknowledged.
    fn progress(&self, more: usize, what: &str) {
        let target = self.acked() + more;
        wait_until(what, LONG, || (self.acked() >= target).then_some(()));
    }

    /// Stops sending and waits for every record in flight to be answered.
    fn finish(mut self, rt: &tokio::runtime::Runtime) -> (Vec<(i32, i64, u64)>, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(task) = self.task.take() {
            rt.block_on(async { tokio::time::timeout(LONG, task).await })
                .expect("in-flight records answered")
                .expect("producer task");
        }
        let acked = std::mem::take(&mut *self.acked.lock().expect("acked"));
        let failed = std::mem::take(&mut *self.failed.lock().expect("failed"));
        (acked, failed)
    }
}

/// A consumer reading every partition from the start while the faults happen,
/// recording what it read (partition → offset → value).
struct Reader {
    seen: Arc<Mutex<BTreeMap<(i32, i64), String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Reader {
    fn start(bootstrap: &str, topic: &str, partitions: i32) -> Self {
        let consumer = consumer(bootstrap, topic, partitions);
        let seen: Arc<Mutex<BTreeMap<(i32, i64), String>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (seen.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                    let value =
                        String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
                    s.lock()
                        .expect("seen")
                        .insert((m.partition(), m.offset()), value);
                }
            }
        });
        Reader {
            seen,
            stop,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> BTreeMap<(i32, i64), String> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().expect("reader thread");
        }
        std::mem::take(&mut *self.seen.lock().expect("seen"))
    }
}

fn consumer(bootstrap: &str, topic: &str, partitions: i32) -> BaseConsumer {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "cluster-test-reader")
        .set("enable.auto.commit", "false")
        .set("topic.metadata.refresh.interval.ms", "1000")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("assign");
    }
    consumer.assign(&tpl).expect("assign");
    consumer
}

/// Reads every partition from the start up to its high watermark.
fn read_all(bootstrap: &str, topic: &str, partitions: i32) -> BTreeMap<(i32, i64), String> {
    let consumer = consumer(bootstrap, topic, partitions);
    let ends: HashMap<i32, i64> = (0..partitions)
        .map(|p| {
            let (_, high) = consumer
                .fetch_watermarks(topic, p, LONG)
                .expect("watermarks");
            (p, high)
        })
        .collect();
    let mut out = BTreeMap::new();
    let mut next: HashMap<i32, i64> = (0..partitions).map(|p| (p, 0)).collect();
    let started = std::time::Instant::now();
    let mut reported = 0;
    wait_until(
        "reading every partition to its high watermark",
        LONG,
        || {
            // Drain what is there (wait_until pauses between calls).
            loop {
                match consumer.poll(Duration::from_millis(200)) {
                    Some(Ok(m)) => {
                        let value =
                            String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
                        out.insert((m.partition(), m.offset()), value);
                        next.insert(m.partition(), m.offset() + 1);
                    }
                    Some(Err(e)) => eprintln!("read_all: {e}"),
                    None => break,
                }
            }
            if started.elapsed().as_secs() / 10 > reported {
                reported = started.elapsed().as_secs() / 10;
                eprintln!("read_all: at {next:?}, reading to {ends:?}");
            }
            (0..partitions).all(|p| next[&p] >= ends[&p]).then_some(())
        },
    );
    out
}

/// Every acknowledged record is in the log at its offset (duplicates allowed).
fn verify_acknowledged(acked: &[(i32, i64, u64)], log: &BTreeMap<(i32, i64), String>) {
    for (p, off, seq) in acked {
        assert_eq!(
            log.get(&(*p, *off)),
            Some(&seq.to_string()),
            "acknowledged record {seq} at {p}/{off} is not there"
        );
    }
}

/// The checks every fault test ends with (see the module docs).
fn verify(
    acked: &[(i32, i64, u64)],
    failed: &[String],
    seen_during: &BTreeMap<(i32, i64), String>,
    log: &BTreeMap<(i32, i64), String>,
) {
    assert!(
        failed.is_empty(),
        "records failed: {:?}",
        &failed[..failed.len().min(10)]
    );
    verify_acknowledged(acked, log);
    let mut seqs: HashMap<&str, (i32, i64)> = HashMap::new();
    for ((p, off), value) in log {
        if let Some(other) = seqs.insert(value.as_str(), (*p, *off)) {
            panic!(
                "record {value} is in the log twice: {other:?} and {:?}",
                (p, off)
            );
        }
    }
    let mut last: HashMap<i32, u64> = HashMap::new();
    for ((p, _), value) in log {
        let seq: u64 = value.parse().expect("sequence number");
        if let Some(prev) = last.insert(*p, seq) {
            assert!(
                seq > prev,
                "partition {p} has {seq} after {prev}: out of order"
            );
        }
    }
    for (key, value) in seen_during {
        assert_eq!(
            log.get(key),
            Some(value),
            "a consumer read {value} at {key:?}, which is no longer there: it read a record that was later truncated"
        );
    }
    eprintln!(
        "verified: {} acknowledged, {} in the log, {} read during the faults",
        acked.len(),
        log.len(),
        seen_during.len()
    );
}

/// Ends a fault test: stops the producer (and the reader), waits until every replica is
/// back in the ISR, reads every partition of `topic` to its high watermark and checks it
/// ([`verify`]), then waits until the replicas on `nodes` (indexes) hold the same bytes
/// below the high watermark (followers may still be fetching the tail).
fn finish_and_verify(
    rt: &tokio::runtime::Runtime,
    cluster: &Cluster,
    work: Workload,
    reader: Option<Reader>,
    topic: &str,
    partitions: i32,
    nodes: &[usize],
) {
    let bootstrap = cluster.bootstrap();
    let (acked, failed) = work.finish(rt);
    let seen = reader.map(Reader::finish).unwrap_or_default();
    wait_for_full_isr(rt, &bootstrap, topic);
    let hws = high_watermarks(&bootstrap, topic, partitions);
    let log = read_all(&bootstrap, topic, partitions);
    verify(&acked, &failed, &seen, &log);
    wait_until("replicas identical below the high watermark", LONG, || {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            assert_replicas_identical(cluster, nodes, topic, partitions, &hws)
        }))
        .ok()
    });
}

/// Asserts that the replicas on `nodes` (indexes) of every partition of `topic` hold the
/// same bytes below the high watermark: the batches of each replica's segments, in
/// offset order, are compared up to the high watermark.
fn assert_replicas_identical(
    cluster: &Cluster,
    nodes: &[usize],
    topic: &str,
    partitions: i32,
    high_watermarks: &HashMap<i32, i64>,
) {
    for p in 0..partitions {
        let hw = high_watermarks[&p];
        let copies: Vec<Vec<u8>> = nodes
            .iter()
            .map(|n| committed_bytes(&cluster.data_dir(*n).join(format!("{topic}-{p}")), hw))
            .collect();
        for (i, c) in copies.iter().enumerate().skip(1) {
            assert!(
                c == &copies[0],
                "{topic}-{p}: node {} and node {} differ below the high watermark {hw} ({} vs {} bytes)",
                nodes[i] + 1,
                nodes[0] + 1,
                c.len(),
                copies[0].len()
            );
        }
        assert!(
            hw == 0 || !copies[0].is_empty(),
            "{topic}-{p}: no bytes below {hw}"
        );
    }
}

/// Every complete batch in a partition directory's segments, in offset order, as
/// `(base offset, last offset, the batch's bytes)`; a torn tail ends the walk.
fn batches(dir: &Path) -> Vec<(i64, i64, Vec<u8>)> {
    let mut segments: Vec<_> = std::fs::read_dir(dir)
        .expect("partition dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    segments.sort();
    let mut out = Vec::new();
    for seg in segments {
        let bytes = std::fs::read(&seg).expect("segment");
        let mut pos = 0usize;
        // base offset (8), length (4), leader epoch (4), magic (1), crc (4),
        // attributes (2), last offset delta (4).
        while pos + 27 <= bytes.len() {
            let base = i64::from_be_bytes(bytes[pos..pos + 8].try_into().expect("8 bytes"));
            let len =
                i32::from_be_bytes(bytes[pos + 8..pos + 12].try_into().expect("4 bytes")) as usize;
            if len < 15 || pos + 12 + len > bytes.len() {
                return out;
            }
            let delta = i32::from_be_bytes(bytes[pos + 23..pos + 27].try_into().expect("4 bytes"));
            out.push((
                base,
                base + i64::from(delta),
                bytes[pos..pos + 12 + len].to_vec(),
            ));
            pos += 12 + len;
        }
    }
    out
}

/// The bytes of the batches below `hw` in a partition directory (segments in order).
fn committed_bytes(dir: &Path, hw: i64) -> Vec<u8> {
    batches(dir)
        .into_iter()
        .take_while(|(base, _, _)| *base < hw)
        .flat_map(|(_, _, bytes)| bytes)
        .collect()
}

fn high_watermarks(bootstrap: &str, topic: &str, partitions: i32) -> HashMap<i32, i64> {
    let consumer = consumer(bootstrap, topic, partitions);
    (0..partitions)
        .map(|p| {
            (
                p,
                consumer
                    .fetch_watermarks(topic, p, LONG)
                    .expect("watermarks")
                    .1,
            )
        })
        .collect()
}

/// Waits until every partition of `topic` has all three replicas in its ISR again.
fn wait_for_full_isr(rt: &tokio::runtime::Runtime, bootstrap: &str, topic: &str) {
    wait_until("every replica back in the ISR", LONG, || {
        let parts = rt.block_on(topic_state(bootstrap, topic));
        (!parts.is_empty() && parts.iter().all(|p| p.isr.len() == 3 && p.leader >= 0)).then_some(())
    });
}

fn leader_of(rt: &tokio::runtime::Runtime, bootstrap: &str, topic: &str, partition: i32) -> i32 {
    wait_until("a leader", LONG, || {
        rt.block_on(topic_state(bootstrap, topic))
            .into_iter()
            .find(|p| p.partition == partition && p.leader >= 0)
            .map(|p| p.leader)
    })
}

fn controller_of(rt: &tokio::runtime::Runtime, bootstrap: &str) -> i32 {
    wait_until("an active controller", LONG, || {
        let id = rt.block_on(describe(bootstrap)).controller_id;
        (id >= 0).then_some(id)
    })
}

/// kill -9 of a partition leader, then of the active controller, then SIGSTOP of a
/// broker, all while an idempotent acks=all producer writes to an RF=3,
/// min.insync.replicas=2 topic and a consumer reads it. (Replication here is fast
/// enough that answering on the leader's copy alone still passes this test; the freeze
/// test below is the one that catches that.)
#[test]
fn acknowledged_records_survive_leader_and_controller_crashes_and_a_paused_broker() {
    let rt = runtime();
    let mut cluster = three_nodes(false);
    let bootstrap = cluster.bootstrap();
    rt.block_on(create_topic(
        &bootstrap,
        "events",
        3,
        3,
        &[("min.insync.replicas", "2")],
    ));
    let reader = Reader::start(&bootstrap, "events", 3);
    let work = Workload::start(&rt, &bootstrap, "events", 3);
    work.progress(2_000, "records before any fault");

    // 1. The leader of partition 0 dies.
    let leader = leader_of(&rt, &bootstrap, "events", 0);
    cluster.kill9((leader - 1) as usize);
    work.progress(2_000, "records after the leader of partition 0 died");
    let survivors = cluster.bootstrap();
    let new_leader = leader_of(&rt, &survivors, "events", 0);
    assert_ne!(new_leader, leader, "partition 0 moved to another broker");
    cluster.restart((leader - 1) as usize);
    wait_for_full_isr(&rt, &bootstrap, "events");

    // 2. The active controller dies.
    let controller = controller_of(&rt, &bootstrap);
    cluster.kill9((controller - 1) as usize);
    work.progress(2_000, "records after the controller died");
    let survivors = cluster.bootstrap();
    let next = controller_of(&rt, &survivors);
    assert_ne!(
        next, controller,
        "another node became the active controller"
    );
    // Two brokers are left: a topic of RF 2 can still be created (through the new
    // active controller).
    rt.block_on(create_topic(
        &survivors,
        "created-after-controller-death",
        1,
        2,
        &[],
    ));
    cluster.restart((controller - 1) as usize);
    wait_for_full_isr(&rt, &bootstrap, "events");

    // 3. A broker freezes (SIGSTOP) long enough to be fenced, then thaws.
    let frozen = leader_of(&rt, &bootstrap, "events", 1);
    cluster.pause((frozen - 1) as usize);
    work.progress(2_000, "records while a broker is frozen");
    cluster.resume((frozen - 1) as usize);
    wait_for_full_isr(&rt, &bootstrap, "events");
    work.progress(1_000, "records after every fault");

    finish_and_verify(&rt, &cluster, work, Some(reader), "events", 3, &[0, 1, 2]);
}

/// Both followers of a partition freeze (SIGSTOP) while an acks=all producer writes to
/// it; the leader dies (kill -9); the followers thaw and one of them takes over; the
/// old leader comes back as a follower. A record the leader had acknowledged on its
/// own copy alone would be gone now. Checked by hand: with the high watermark taken
/// from the leader's own durable offset alone, this test finds acknowledged records
/// missing. It prints how many records were acknowledged during the freeze (0 as
/// built) without asserting it: replies already under way when the followers stopped
/// may land in the window. Replicas end byte-identical below the high watermark (the
/// producer is not idempotent, so duplicates are allowed and not checked).
#[test]
fn acks_all_is_answered_only_once_every_isr_member_has_the_batch() {
    let rt = runtime();
    let mut cluster = three_nodes(false);
    let bootstrap = cluster.bootstrap();
    rt.block_on(create_topic(
        &bootstrap,
        "frozen",
        1,
        3,
        &[("min.insync.replicas", "2")],
    ));
    // Not idempotent: a record lost under an idempotent producer shows as a sequence
    // gap that stalls it, where a plain producer just goes on and the loss shows.
    let work = Workload::start_with(&rt, &bootstrap, "frozen", 1, false);
    work.progress(2_000, "records before the freeze");
    let leader = (leader_of(&rt, &bootstrap, "frozen", 0) - 1) as usize;
    let followers: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    for f in &followers {
        cluster.pause(*f);
    }
    let before = work.acked();
    std::thread::sleep(Duration::from_millis(1_500));
    let during = work.acked() - before;
    cluster.kill9(leader);
    for f in &followers {
        cluster.resume(*f);
    }
    work.progress(2_000, "records acknowledged by the new leader");
    cluster.restart(leader);
    wait_for_full_isr(&rt, &bootstrap, "frozen");
    let (acked, failed) = work.finish(&rt);
    assert!(
        failed.is_empty(),
        "records failed: {:?}",
        &failed[..failed.len().min(10)]
    );
    let log = read_all(&bootstrap, "frozen", 1);
    verify_acknowledged(&acked, &log);
    let hws = high_watermarks(&bootstrap, "frozen", 1);
    wait_until("replicas identical below the high watermark", LONG, || {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            assert_replicas_identical(&cluster, &[0, 1, 2], "frozen", 1, &hws)
        }))
        .ok()
    });
    eprintln!(
        "acknowledged while both followers were frozen: {during} (of {})",
        acked.len()
    );
}

/// The leader of a partition is cut off from the other two nodes (network namespaces,
/// links dropped) while a producer in the root namespace keeps writing: the isolated
/// leader cannot get acks=all batches committed, so it acknowledges nothing; the
/// majority side fences it and elects a new leader; after the links heal, the old
/// leader truncates what it appended alone and catches up. Checked by hand to fail with
/// the follower's truncation on a diverging epoch disabled (the replica that diverged
/// never fetches on and acks=all stops).
#[test]
fn an_isolated_leader_acknowledges_nothing_and_truncates_its_tail_on_return() {
    let rt = runtime();
    let mut cluster = three_nodes(true);
    let bootstrap = cluster.bootstrap();
    rt.block_on(create_topic(
        &bootstrap,
        "cut",
        1,
        3,
        &[("min.insync.replicas", "2")],
    ));
    let reader = Reader::start(&bootstrap, "cut", 1);
    let work = Workload::start(&rt, &bootstrap, "cut", 1);
    work.progress(2_000, "records before the partition");
    let leader = leader_of(&rt, &bootstrap, "cut", 0);
    let isolated = (leader - 1) as usize;
    cluster.isolate(isolated);
    // The majority fences the cut-off leader and elects another; writes go on there.
    let others: String = (0..3)
        .filter(|i| *i != isolated)
        .map(|i| cluster.node(i).addr().to_owned())
        .collect::<Vec<_>>()
        .join(",");
    wait_until("a new leader on the majority side", LONG, || {
        let l = rt
            .block_on(topic_state(&others, "cut"))
            .first()
            .map_or(-1, |p| p.leader);
        (l >= 0 && l != leader).then_some(())
    });
    work.progress(2_000, "records acknowledged by the new leader");
    cluster.heal(isolated);
    wait_for_full_isr(&rt, &bootstrap, "cut");
    work.progress(1_000, "records after the heal");
    finish_and_verify(&rt, &cluster, work, Some(reader), "cut", 1, &[0, 1, 2]);
}

/// SIGTERM of a partition's leader (controlled shutdown, KIP-631): before the process
/// exits, the controller moves its leaderships to other ISR members and takes it out of
/// every ISR, so producers go on with no failed record. The heartbeat interval (70 s,
/// so a lost connection is only noticed after a 140 s grace) and the session timeout
/// (300 s) are set far beyond this test's deadlines. A process that exits without
/// handing over is still found at once by the controller's probe (its listeners refuse
/// connections), so the test also checks that no controller had to: every node's log is
/// free of "broker process gone" for the stopped broker, which the probe writes only
/// for a broker that was still unfenced when it went. Checked by hand: with
/// `MOLDAU_CONTROLLED_SHUTDOWN_ENABLE=false` in the environment (the nodes then exit
/// without asking the controller) this test fails on that check.
#[test]
fn a_leader_stopped_with_sigterm_hands_over_its_leadership_before_it_exits() {
    let rt = runtime();
    let mut cluster = Cluster::start(ClusterSpec {
        nodes: 3,
        extra: vec![
            ("group.initial.rebalance.delay.ms".into(), "0".into()),
            ("offsets.topic.num.partitions".into(), "4".into()),
            ("transaction.state.log.num.partitions".into(), "4".into()),
            ("broker.heartbeat.interval.ms".into(), "70000".into()),
            ("broker.session.timeout.ms".into(), "300000".into()),
        ],
        ..ClusterSpec::default()
    });
    let bootstrap = cluster.bootstrap();
    rt.block_on(create_topic(
        &bootstrap,
        "handover",
        3,
        3,
        &[("min.insync.replicas", "2")],
    ));
    let work = Workload::start(&rt, &bootstrap, "handover", 3);
    work.progress(2_000, "records before the shutdown");
    let leader = leader_of(&rt, &bootstrap, "handover", 0);
    assert!(
        cluster.stop((leader - 1) as usize),
        "node {leader} exits 0 on SIGTERM"
    );
    let survivors = cluster.bootstrap();
    wait_until(
        "leadership and ISRs without the stopped broker",
        LONG,
        || {
            let parts = rt.block_on(topic_state(&survivors, "handover"));
            (parts.len() == 3
                && parts
                    .iter()
                    .all(|p| p.leader >= 0 && p.leader != leader && !p.isr.contains(&leader)))
            .then_some(())
        },
    );
    work.progress(2_000, "records after the shutdown");
    cluster.restart((leader - 1) as usize);
    wait_for_full_isr(&rt, &bootstrap, "handover");
    work.progress(1_000, "records after the restart");
    finish_and_verify(&rt, &cluster, work, None, "handover", 3, &[0, 1, 2]);
    // By now (seconds later) a probe would have logged its finding.
    let probed = format!(" broker={leader} ");
    for i in 0..cluster.node_count() {
        let log = std::fs::read_to_string(cluster.log_path(i)).unwrap_or_default();
        assert!(
            !log.lines()
                .any(|l| l.contains("broker process gone") && l.contains(&probed)),
            "node {} found broker {leader} gone: it exited without handing over",
            i + 1
        );
    }
}

/// Kafka's production layout: three controller-only nodes (the metadata quorum) and
/// three broker-only nodes, which get their metadata by long-polling the active
/// controller. An idempotent acks=all producer writes to an RF=3 topic while the
/// active controller dies (kill -9; the brokers must find the new one, for metadata and
/// heartbeats, or they are fenced and stop serving) and then a partition leader dies
/// (kill -9; its leadership must move, which every broker learns only through the new
/// controller). CreateTopics after the controller's death proves the brokers reach the
/// new one. Checked by hand: with each broker's metadata poll pinned to the controller
/// it first reached, the brokers' images stop at that controller's death (their
/// heartbeats still find the new one), the moved leadership never reaches them, and
/// the producer stalls after the leader's death.
#[test]
fn broker_only_nodes_follow_the_controller_quorum_through_controller_and_leader_crashes() {
    let rt = runtime();
    let mut cluster = Cluster::start(ClusterSpec {
        nodes: 6,
        roles: [
            "controller",
            "controller",
            "controller",
            "broker",
            "broker",
            "broker",
        ]
        .map(String::from)
        .to_vec(),
        extra: vec![
            ("group.initial.rebalance.delay.ms".into(), "0".into()),
            ("offsets.topic.num.partitions".into(), "4".into()),
            ("transaction.state.log.num.partitions".into(), "4".into()),
        ],
        ..ClusterSpec::default()
    });
    let bootstrap = cluster.bootstrap();
    rt.block_on(create_topic(
        &bootstrap,
        "split",
        3,
        3,
        &[("min.insync.replicas", "2")],
    ));
    let parts = rt.block_on(topic_state(&bootstrap, "split"));
    for p in &parts {
        assert!(
            p.replicas.iter().all(|r| (4..=6).contains(r)),
            "replicas only on broker nodes: {:?}",
            p.replicas
        );
    }
    let work = Workload::start(&rt, &bootstrap, "split", 3);
    work.progress(2_000, "records before any fault");

    let controller = controller_of(&rt, &bootstrap);
    assert!((1..=3).contains(&controller), "a controller node leads");
    cluster.kill9((controller - 1) as usize);
    work.progress(2_000, "records after the active controller died");
    // A broker names the controller it last reached: wait until it has found another.
    wait_until("another active controller", LONG, || {
        let id = rt.block_on(describe(&bootstrap)).controller_id;
        (id >= 0 && id != controller).then_some(())
    });
    rt.block_on(create_topic(
        &bootstrap,
        "created-after-controller-death",
        1,
        3,
        &[],
    ));

    let leader = leader_of(&rt, &bootstrap, "split", 0);
    cluster.kill9((leader - 1) as usize);
    work.progress(2_000, "records after a partition leader died");
    let survivors = cluster.bootstrap();
    assert_ne!(leader_of(&rt, &survivors, "split", 0), leader);
    cluster.restart((leader - 1) as usize);
    cluster.restart((controller - 1) as usize);
    wait_for_full_isr(&rt, &bootstrap, "split");
    work.progress(1_000, "records after both nodes returned");

    finish_and_verify(&rt, &cluster, work, None, "split", 3, &[3, 4, 5]);
}

/// The log end offset of a partition directory: one past the last batch in its segments.
fn log_end_offset(dir: &Path) -> i64 {
    batches(dir).last().map_or(0, |(_, last, _)| last + 1)
}

/// ListOffsets (latest) for partition 0 of `topic`, asked of the broker at `addr`:
/// `(error code, offset)`.
fn list_latest(addr: &str, topic: &str) -> (i16, i64) {
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    use kafka_protocol::messages::{
        ApiKey, BrokerId, ListOffsetsRequest, ListOffsetsResponse, TopicName,
    };
    use kafka_protocol::protocol::StrBytes;
    let req = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(0)
                .with_timestamp(-1)])]);
    let resp: ListOffsetsResponse =
        common::wire::Conn::open(addr).call(ApiKey::ListOffsets, 7, &req);
    let p = &resp.topics[0].partitions[0];
    (p.error_code, p.offset)
}

/// KIP-207: a new leader whose high watermark is still below the start of its leader
/// epoch answers ListOffsets(latest) with OFFSET_NOT_AVAILABLE (retriable) until its
/// followers have fetched what it had when it took over, instead of an old high
/// watermark. Set up with broker-only nodes (so the quorum survives): the replica that
/// is next in line fetched ten records that the third replica (paused, kept in the ISR
/// by long session and lag timeouts) did not, so the old leader's high watermark stayed
/// below them; the old leader is killed and fenced at once (its listeners refuse), the
/// next one leads, and answers OFFSET_NOT_AVAILABLE until the paused replica resumes.
/// Fails without the check in ListOffsets (checked: the answer then carries no error).
#[test]
fn a_new_leader_lists_no_latest_offset_until_its_high_watermark_reaches_its_epoch() {
    let rt = runtime();
    let mut cluster = Cluster::start(ClusterSpec {
        nodes: 6,
        roles: [
            "controller",
            "controller",
            "controller",
            "broker",
            "broker",
            "broker",
        ]
        .map(String::from)
        .to_vec(),
        extra: vec![
            ("broker.heartbeat.interval.ms".into(), "70000".into()),
            ("broker.session.timeout.ms".into(), "300000".into()),
            ("replica.lag.time.max.ms".into(), "300000".into()),
        ],
        ..ClusterSpec::default()
    });
    let bootstrap = cluster.bootstrap();
    rt.block_on(create_topic(&bootstrap, "kip207", 1, 3, &[]));
    let send = |acks: &str, from: usize, n: usize| {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("acks", acks)
            .set("enable.idempotence", "false")
            .create()
            .expect("producer");
        rt.block_on(async {
            for i in from..from + n {
                let value = i.to_string();
                producer
                    .send(
                        FutureRecord::<(), str>::to("kip207")
                            .partition(0)
                            .payload(&value),
                        Duration::from_secs(30),
                    )
                    .await
                    .expect("delivered");
            }
        });
    };
    send("all", 0, 100);
    let state = rt.block_on(topic_state(&bootstrap, "kip207"));
    let replicas = state[0].replicas.clone();
    let leader = state[0].leader;
    let rest: Vec<i32> = replicas.iter().copied().filter(|r| *r != leader).collect();
    // Elections take the first live ISR member in replica order: `next`.
    let (next, paused) = ((rest[0] - 1) as usize, (rest[1] - 1) as usize);
    cluster.pause(paused);
    send("1", 100, 10);
    let next_dir = cluster.data_dir(next).join("kip207-0");
    wait_until(
        "the next leader fetched the ten records",
        Duration::from_secs(60),
        || (log_end_offset(&next_dir) >= 110).then_some(()),
    );
    cluster.kill9((leader - 1) as usize);
    let next_addr = cluster.node(next).addr().to_owned();
    wait_until("the next replica leads", Duration::from_secs(60), || {
        let l = rt
            .block_on(topic_state(&next_addr, "kip207"))
            .first()
            .map_or(-1, |p| p.leader);
        (l == next as i32 + 1).then_some(())
    });
    assert_eq!(
        list_latest(&next_addr, "kip207").0,
        78,
        "OFFSET_NOT_AVAILABLE while the high watermark is behind the epoch start"
    );
    cluster.resume(paused);
    wait_until(
        "the latest offset once the follower caught up",
        Duration::from_secs(60),
        || (list_latest(&next_addr, "kip207") == (0, 110)).then_some(()),
    );
}
