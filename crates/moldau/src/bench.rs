//! `moldau-bench`: drives a real `moldau` broker process with librdkafka (rdkafka crate)
//! and prints throughput, latency, CPU and memory figures. A program, not a test.
//!
//! ```sh
//! cargo build --release --features bench --bin moldau-bench --bin moldau
//! target/release/moldau-bench target/release/moldau
//! ```
//!
//! For 1 KiB and 100 B records on 1 and 6 partitions: produce throughput with acks=1 and
//! acks=-1 (MB/s, records/s), consume throughput, end-to-end latency p50/p99/p99.9 at a
//! fixed 10,000 records/s, broker CPU seconds per GB moved (and the broker's CPU use
//! during each phase, 100% = one core), broker RSS after the run, and cold start to
//! the first answered ApiVersions.
//!
//! `moldau-bench BINARY cluster` measures a 3-node cluster instead ([`bench_cluster`]);
//! `moldau-bench BINARY tls` compares produce and consume throughput over a PLAINTEXT
//! and an SSL listener of the same broker (1 KiB records, 1 partition, acks=1 and all).
//! `moldau-bench BINARY soak [MINUTES]` runs a steady mixed load and prints, each minute,
//! what would show a leak ([`bench_soak`]).

mod bench_cluster;
mod bench_soak;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

struct BrokerProcess {
    child: Child,
    addr: String,
    _dir: std::path::PathBuf,
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self._dir);
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// A minimal ApiVersions v0 request; true when a response frame arrives.
fn api_versions_answered(addr: &str) -> bool {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut req = vec![0, 18, 0, 0, 0, 0, 0, 1, 0xff, 0xff];
    let mut framed = (req.len() as i32).to_be_bytes().to_vec();
    framed.append(&mut req);
    if s.write_all(&framed).is_err() {
        return false;
    }
    let mut len = [0u8; 4];
    s.read_exact(&mut len).is_ok()
}

fn start_broker(binary: &str, extra: &[String]) -> (BrokerProcess, Duration) {
    let dir = std::env::temp_dir().join(format!("moldau-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let addr = format!("127.0.0.1:{}", free_port());
    let started = Instant::now();
    let mut listeners = format!("listeners=PLAINTEXT://{addr}");
    let mut props = Vec::new();
    for e in extra {
        match e.strip_prefix("listeners=") {
            Some(more) => listeners = format!("{listeners},{more}"),
            None => props.extend(["-o".to_owned(), e.clone()]),
        }
    }
    let child = Command::new(binary)
        .args(["serve", "-o", &listeners, "-o"])
        .arg(format!("log.dirs={}", dir.display()))
        .args(props)
        .env("MOLDAU_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn broker");
    loop {
        if api_versions_answered(&addr) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "broker did not start"
        );
        std::thread::sleep(Duration::from_micros(200));
    }
    let cold = started.elapsed();
    (
        BrokerProcess {
            child,
            addr,
            _dir: dir,
        },
        cold,
    )
}

fn proc_cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15; after the ')' split they are at 11 and 12.
    (ticks(11) + ticks(12)) / 100.0
}

fn proc_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn create_topic(addr: &str, name: &str, partitions: i32) {
    create_topic_rf(addr, name, partitions, 1, &[]);
}

/// Creates `name` with `partitions` partitions, replication factor `rf` and `configs`.
fn create_topic_rf(addr: &str, name: &str, partitions: i32, rf: i32, configs: &[(&str, &str)]) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .create()
        .expect("admin");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    let r = rt
        .block_on(admin.create_topics(
            &[configs.iter().fold(
                NewTopic::new(name, partitions, TopicReplication::Fixed(rf)),
                |t, (k, v)| t.set(k, v),
            )],
            &AdminOptions::new(),
        ))
        .expect("create");
    assert!(r.iter().all(|x| x.is_ok()), "{r:?}");
}

/// Writes back dirty pages left by the previous run, so each measurement starts from a
/// quiet disk instead of paying for its predecessor's writeback.
fn settle_disk() {
    let _ = Command::new("sync").status();
    std::thread::sleep(Duration::from_millis(500));
}

/// A client config for `addr` with extra settings (TLS).
fn client(addr: &str, extra: &[(&str, String)]) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", addr);
    for (k, v) in extra {
        c.set(*k, v);
    }
    c
}

fn produce(addr: &str, topic: &str, size: usize, count: usize, acks: &str) -> Duration {
    produce_with(addr, &[], topic, size, count, acks)
}

fn produce_with(
    addr: &str,
    extra: &[(&str, String)],
    topic: &str,
    size: usize,
    count: usize,
    acks: &str,
) -> Duration {
    settle_disk();
    let producer: ThreadedProducer<DefaultProducerContext> = client(addr, extra)
        .set("acks", acks)
        .set("linger.ms", "5")
        .set("batch.size", "1000000")
        .set("enable.idempotence", "false")
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .create()
        .expect("producer");
    let payload = vec![b'x'; size];
    let started = Instant::now();
    for i in 0..count {
        let key = (i as u64).to_be_bytes();
        let mut record = BaseRecord::to(topic).payload(&payload[..]).key(&key[..]);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, r)) => {
                    record = r;
                    producer.poll(Duration::from_millis(1));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(300)).expect("flush");
    started.elapsed()
}

fn consume(
    addr: &str,
    extra: &[(&str, String)],
    topic: &str,
    partitions: i32,
    count: usize,
) -> Duration {
    let consumer: BaseConsumer = client(addr, extra)
        .set("group.id", "moldau-bench")
        .set("enable.auto.commit", "false")
        .set("fetch.message.max.bytes", "1048576")
        .set("queued.min.messages", "1000000")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("tpl");
    }
    consumer.assign(&tpl).expect("assign");
    let started = Instant::now();
    let mut seen = 0;
    while seen < count {
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            m.expect("consume");
            seen += 1;
        }
    }
    started.elapsed()
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// End-to-end latency at `rate` records/s for `seconds`, 1 partition.
fn latency(addr: &str, topic: &str, size: usize, rate: u64, seconds: u64, acks: &str) -> Vec<u64> {
    settle_disk();
    let total = (rate * seconds) as usize;
    let consumer_addr = addr.to_owned();
    let consumer_topic = topic.to_owned();
    let reader = std::thread::spawn(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &consumer_addr)
            .set("group.id", "moldau-bench")
            .set("enable.auto.commit", "false")
            .set("fetch.wait.max.ms", "500")
            .create()
            .expect("consumer");
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&consumer_topic, 0, Offset::End)
            .expect("tpl");
        consumer.assign(&tpl).expect("assign");
        let mut lat = Vec::with_capacity(total);
        let deadline = Instant::now() + Duration::from_secs(seconds + 30);
        while lat.len() < total && Instant::now() < deadline {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                if let Some(p) = m.payload() {
                    let sent = u64::from_be_bytes(p[..8].try_into().unwrap_or([0; 8]));
                    lat.push(now_micros().saturating_sub(sent));
                }
            }
        }
        lat
    });
    std::thread::sleep(Duration::from_secs(2));
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("acks", acks)
        .set("linger.ms", "0")
        .set("enable.idempotence", "false")
        .create()
        .expect("producer");
    let started = Instant::now();
    let mut payload = vec![b'x'; size.max(8)];
    for i in 0..total {
        let due = started + Duration::from_micros(i as u64 * 1_000_000 / rate);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        payload[..8].copy_from_slice(&now_micros().to_be_bytes());
        let mut record = BaseRecord::<(), [u8]>::to(topic).payload(&payload[..]);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, r)) => record = r,
            }
        }
    }
    producer.flush(Duration::from_secs(60)).expect("flush");
    let mut lat = reader.join().expect("reader");
    lat.sort_unstable();
    lat
}

fn pct(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

fn main() {
    let binary = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "target/release/moldau".into());
    let mode = std::env::args().nth(2).unwrap_or_default();
    if mode == "cluster" {
        bench_cluster::run(&binary);
        return;
    }
    if mode == "tls" {
        tls(&binary);
        return;
    }
    if mode == "soak" {
        let minutes = std::env::args()
            .nth(3)
            .and_then(|m| m.parse().ok())
            .unwrap_or(30);
        bench_soak::run(&binary, minutes);
        return;
    }
    let only_latency = mode == "latency";
    let quick = mode == "quick" || mode == "quick6";
    let (broker, cold) = start_broker(&binary, &[]);
    println!(
        "cold start to first ApiVersions answer: {:.1} ms",
        cold.as_secs_f64() * 1000.0
    );
    let pid = broker.child.id();
    let cpu_start = proc_cpu_seconds(pid);
    let mut bytes_moved = 0f64;
    println!(
        "{:<10} {:>5} {:>5} {:>12} {:>12} {:>10} {:>12} {:>12} {:>10}",
        "record",
        "parts",
        "acks",
        "prod MB/s",
        "prod rec/s",
        "prod cpu",
        "cons MB/s",
        "cons rec/s",
        "cons cpu"
    );
    let sizes: &[(usize, usize)] = if only_latency {
        &[]
    } else if quick {
        &[(1024, 500_000)]
    } else {
        &[(1024, 500_000), (100, 2_000_000)]
    };
    let partition_counts: &[i32] = match mode.as_str() {
        "quick" => &[1],
        "quick6" => &[6],
        _ => &[1, 6],
    };
    for &(size, count) in sizes {
        for &partitions in partition_counts {
            for acks in ["1", "all"] {
                let topic = format!("bench-{size}-{partitions}-{acks}");
                create_topic(&broker.addr, &topic, partitions);
                let cpu0 = proc_cpu_seconds(pid);
                let p = produce(&broker.addr, &topic, size, count, acks);
                let cpu1 = proc_cpu_seconds(pid);
                let c = consume(&broker.addr, &[], &topic, partitions, count);
                let cpu2 = proc_cpu_seconds(pid);
                let mb = (size * count) as f64 / 1e6;
                bytes_moved += 2.0 * (size * count) as f64;
                println!(
                    "{:<10} {:>5} {:>5} {:>12.1} {:>12.0} {:>9.0}% {:>12.1} {:>12.0} {:>9.0}%",
                    format!("{size} B"),
                    partitions,
                    acks,
                    mb / p.as_secs_f64(),
                    count as f64 / p.as_secs_f64(),
                    100.0 * (cpu1 - cpu0) / p.as_secs_f64(),
                    mb / c.as_secs_f64(),
                    count as f64 / c.as_secs_f64(),
                    100.0 * (cpu2 - cpu1) / c.as_secs_f64()
                );
            }
        }
    }
    let latency_runs: &[(usize, &str)] = if only_latency {
        &[(1024, "1"), (1024, "all"), (100, "all")]
    } else {
        &[(1024, "all"), (100, "all")]
    };
    for &(size, acks) in latency_runs.iter().filter(|_| !quick) {
        let topic = format!("latency-{size}-{acks}");
        create_topic(&broker.addr, &topic, 1);
        let lat = latency(&broker.addr, &topic, size, 10_000, 10, acks);
        bytes_moved += 2.0 * (size * lat.len()) as f64;
        println!(
            "end-to-end latency, {size} B at 10,000 rec/s, acks={acks} ({} samples): p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms",
            lat.len(),
            pct(&lat, 0.50),
            pct(&lat, 0.99),
            pct(&lat, 0.999)
        );
    }
    let cpu = proc_cpu_seconds(pid) - cpu_start;
    println!(
        "broker CPU: {:.1} s for {:.2} GB moved (produced + consumed) = {:.2} CPU s/GB",
        cpu,
        bytes_moved / 1e9,
        cpu / (bytes_moved / 1e9)
    );
    println!("broker RSS after the run: {:.1} MiB", proc_rss_mib(pid));
}

/// `tls` mode: the same broker, 1 KiB records on 1 partition, over PLAINTEXT and over SSL
/// (a throwaway certificate made here; TLS 1.3, the client's default suite).
fn tls(binary: &str) {
    let dir = std::env::temp_dir().join(format!("moldau-bench-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("pki dir");
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .and_then(|p| p.self_signed(&key))
        .expect("certificate");
    let keystore = dir.join("keystore.pem");
    let ca = dir.join("ca.pem");
    std::fs::write(&keystore, format!("{}{}", key.serialize_pem(), cert.pem())).expect("write");
    std::fs::write(&ca, cert.pem()).expect("write");
    let ssl_addr = format!("127.0.0.1:{}", free_port());
    let (broker, _) = start_broker(
        binary,
        &[
            format!("listeners=SSL://{ssl_addr}"),
            format!("ssl.keystore.location={}", keystore.display()),
        ],
    );
    let tls_settings = [
        ("security.protocol", "SSL".to_owned()),
        ("ssl.ca.location", ca.display().to_string()),
    ];
    let pid = broker.child.id();
    let (size, count) = (1024, 500_000);
    println!(
        "{:<10} {:>5} {:>12} {:>10} {:>12} {:>10}",
        "listener", "acks", "prod MB/s", "prod cpu", "cons MB/s", "cons cpu"
    );
    for (name, addr, extra) in [
        ("PLAINTEXT", broker.addr.as_str(), &[][..]),
        ("SSL", ssl_addr.as_str(), &tls_settings[..]),
    ] {
        for acks in ["1", "all"] {
            let topic = format!("tls-{name}-{acks}");
            create_topic(&broker.addr, &topic, 1);
            let cpu0 = proc_cpu_seconds(pid);
            let p = produce_with(addr, extra, &topic, size, count, acks);
            let cpu1 = proc_cpu_seconds(pid);
            let c = consume(addr, extra, &topic, 1, count);
            let cpu2 = proc_cpu_seconds(pid);
            let mb = (size * count) as f64 / 1e6;
            println!(
                "{:<10} {:>5} {:>12.1} {:>9.0}% {:>12.1} {:>9.0}%",
                name,
                acks,
                mb / p.as_secs_f64(),
                100.0 * (cpu1 - cpu0) / p.as_secs_f64(),
                mb / c.as_secs_f64(),
                100.0 * (cpu2 - cpu1) / c.as_secs_f64()
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
