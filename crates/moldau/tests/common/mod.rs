//! Starts the real `moldau` binary on an ephemeral port with its own data directory,
//! so tests drive exactly what users run, can restart it, and can kill -9 it.
#![allow(dead_code)]

pub mod acked;
pub mod cluster;
pub mod netns;
pub mod pki;
pub mod wire;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A two-worker tokio runtime for tests that drive async clients from plain threads.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A running broker process.
pub struct TestBroker {
    child: Option<Child>,
    /// `127.0.0.1:<port>` of the Kafka listener.
    pub addr: String,
    /// `127.0.0.1:<port>` of the HTTP API.
    pub http: String,
    /// Every broker listener as `(NAME, host:port)`, from the start-up line.
    pub listeners: Vec<(String, String)>,
    /// The broker's log lines so far (stderr).
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    data: PathBuf,
    extra: Vec<(String, String)>,
    _dir: Option<tempfile::TempDir>,
}

impl TestBroker {
    /// Starts a broker in a fresh temporary data directory.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts a broker with extra `name=value` properties.
    pub fn start_with(extra: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let extra: Vec<(String, String)> = extra
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (child, addr, http, listeners) = spawn(&data, &extra, None, log.clone());
        Self {
            child: Some(child),
            addr,
            http,
            listeners,
            log,
            data,
            extra,
            _dir: Some(dir),
        }
    }

    /// `host:port` of the listener named `name` (upper case, as configured).
    pub fn listener(&self, name: &str) -> String {
        self.listeners
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| a.clone())
            .unwrap_or_else(|| panic!("no listener {name} in {:?}", self.listeners))
    }

    /// Everything the broker logged so far, one line per line.
    pub fn log_text(&self) -> String {
        self.log.lock().map(|l| l.join("\n")).unwrap_or_default()
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// The broker's resident set size, bytes (`VmRSS` of `/proc/<pid>/status`).
    pub fn rss_bytes(&self) -> u64 {
        let pid = self.child.as_ref().expect("running").id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .expect("VmRSS")
            * 1024
    }

    /// SIGTERM (graceful shutdown) and wait for exit; returns whether it exited 0.
    pub fn stop(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return true;
        };
        signal(&child, libc::SIGTERM);
        child.wait().expect("wait").success()
    }

    /// SIGKILL: no shutdown at all, as in a crash or power loss of the process.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(&child, libc::SIGKILL);
            let _ = child.wait();
        }
    }

    /// Starts the broker again on the same port and data directory.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop or kill the broker first");
        let port = self.addr.rsplit(':').next().map(str::to_owned);
        let (child, addr, http, listeners) =
            spawn(&self.data, &self.extra, port.as_deref(), self.log.clone());
        self.child = Some(child);
        self.addr = addr;
        self.http = http;
        self.listeners = listeners;
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn signal(child: &Child, sig: i32) {
    // SAFETY-free: libc::kill only sends a signal to our own child's pid.
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(child.id() as i32, sig);
    }
}

/// A started broker process: the child, its first Kafka listener, its HTTP API and every
/// broker listener by name.
type Spawned = (Child, String, String, Vec<(String, String)>);

/// Starts the broker binary; returns it with its Kafka and HTTP addresses. The HTTP API
/// listens on an ephemeral port unless `extra` sets `http.listener`.
fn spawn(
    data: &Path,
    extra: &[(String, String)],
    port: Option<&str>,
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) -> Spawned {
    let mut silent_starts = 0;
    for attempt in 0..50 {
        let listener = format!("127.0.0.1:{}", port.unwrap_or("0"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_moldau"));
        cmd.arg("serve")
            .arg("-o")
            .arg(format!("listeners=PLAINTEXT://{listener}"))
            .arg("-o")
            .arg(format!("log.dirs={}", data.display()))
            .arg("-o")
            .arg("http.listener=127.0.0.1:0")
            .env(
                "MOLDAU_LOG",
                std::env::var("MOLDAU_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in extra {
            cmd.arg("-o").arg(format!("{k}={v}"));
        }
        let mut child = cmd.spawn().expect("spawn moldau");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        let lines = log.clone();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if std::env::var_os("MOLDAU_TEST_VERBOSE").is_some() {
                    eprintln!("[broker] {line}");
                }
                if let Ok(mut l) = lines.lock() {
                    l.push(line.clone());
                }
                if !sent {
                    if let Some(rest) = line.split("listener=").nth(1) {
                        let field =
                            |text: &str| text.split_whitespace().next().unwrap_or("").to_owned();
                        let addr = field(rest);
                        let http = line.split(" http=").nth(1).map(field).unwrap_or_default();
                        let listeners: Vec<(String, String)> = line
                            .split(" advertised=")
                            .nth(1)
                            .map(field)
                            .unwrap_or_default()
                            .split(',')
                            .filter_map(|l| {
                                let (name, addr) = l.split_once("://")?;
                                Some((name.to_owned(), addr.to_owned()))
                            })
                            .collect();
                        let _ = tx.send(Ok((addr, http, listeners)));
                        sent = true;
                    } else if line.starts_with("Error") {
                        let _ = tx.send(Err(line.clone()));
                        sent = true;
                    }
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(Ok((addr, http, listeners))) => return (child, addr, http, listeners),
            Ok(Err(line)) if line.contains("Address already in use") && attempt < 49 => {
                let _ = child.wait();
                std::thread::sleep(Duration::from_millis(200));
            }
            // A start that printed neither its ready line nor an error for 60 s: seen
            // rarely under CI load, cause not yet found. Show what it did, then try
            // once more rather than fail the test it was not written for.
            Err(mpsc::RecvTimeoutError::Timeout) if silent_starts == 0 => {
                silent_starts += 1;
                let status = child.try_wait();
                let _ = child.kill();
                let _ = child.wait();
                let lines = log.lock().map(|l| l.clone()).unwrap_or_default();
                let tail = &lines[lines.len().saturating_sub(30)..];
                eprintln!(
                    "broker start printed no ready line in 60 s (exit status so far: \
                     {status:?}); its last lines:\n{}\nstarting it again",
                    tail.join("\n")
                );
            }
            other => {
                let _ = child.kill();
                let lines = log.lock().map(|l| l.clone()).unwrap_or_default();
                let tail = &lines[lines.len().saturating_sub(30)..];
                panic!(
                    "broker did not start: {other:?}; its last lines:\n{}",
                    tail.join("\n")
                );
            }
        }
    }
    unreachable!("retries exhausted")
}

/// Creates `name` with `partitions` partitions (replication 1) through librdkafka's
/// admin client, and asserts it worked.
pub async fn create_topic(addr: &str, name: &str, partitions: i32) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::config::ClientConfig;
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .create()
        .expect("admin client");
    let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    let results = admin
        .create_topics(&[topic], &AdminOptions::new())
        .await
        .expect("create_topics");
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
}
