//! Runs N real `moldau serve` processes as one KRaft-style cluster and injects real
//! faults into them: SIGKILL, SIGTERM, SIGSTOP/SIGCONT, and (with [`ClusterSpec::netns`])
//! cut network links between nodes placed in their own network namespaces ([`super::netns`]).
//!
//! Node i has `node.id` i + 1 and a temporary directory of its own holding `data/`
//! (`log.dirs`) and `stderr.log` (its stdout and stderr, appended across restarts). When a
//! test panics while a [`Cluster`] is alive, the cluster prints the tail of every node's
//! log before it kills the nodes and removes the namespaces.
//!
//! Every `Cluster` holds a process-wide lock for its lifetime: the cluster tests of one
//! test binary run one after another, as the 2-core CI machine cannot run two 3-node
//! clusters at once. Its methods block (they poll and sleep); in a tokio test call them
//! outside the runtime or from a multi-threaded one.
//!
//! Cluster tests wait on conditions with [`wait_until`] and generous deadlines, never with
//! fixed sleeps.
#![allow(dead_code)]

use super::netns::{self, Network};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How long [`Cluster::start`] and [`Cluster::restart`] wait for nodes to report ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// How long [`Cluster::stop`] waits for a graceful exit before it kills the node.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(60);
/// A broker node is ready once its stderr has a line containing this.
pub const BROKER_READY: &str = "Moldau broker started";
/// A controller-only node is ready once its stderr has a line containing this.
pub const CONTROLLER_READY: &str = "Moldau controller started";
/// Lines of each node's log that [`Cluster::dump_logs`] prints.
pub const DUMP_LINES: usize = 60;

/// Lines dumped per node: `MOLDAU_TEST_DUMP_LINES`, else [`DUMP_LINES`].
fn dump_lines() -> usize {
    std::env::var("MOLDAU_TEST_DUMP_LINES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DUMP_LINES)
}

/// What [`Cluster::start`] runs.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    /// Number of nodes (at least 1).
    pub nodes: usize,
    /// `process.roles` per node (`"broker"`, `"controller"` or `"broker,controller"`);
    /// empty means `"broker,controller"` for every node, otherwise one entry per node.
    pub roles: Vec<String>,
    /// Properties passed to every node after the harness's own (so they may override).
    pub extra: Vec<(String, String)>,
    /// Places each node in a network namespace of its own (needs root and iproute2), so
    /// [`Cluster::cut`] and [`Cluster::isolate`] work. Nodes listen on their own
    /// `10.R.S.(i+1)` address, ports 9092 (PLAINTEXT) and 9093 (CONTROLLER).
    pub netns: bool,
    /// Passes the KRaft properties (`process.roles`, `node.id`,
    /// `controller.quorum.voters`, a CONTROLLER listener, `controller.listener.names`).
    /// When false, each node gets only `listeners=PLAINTEXT://…`, `log.dirs` and
    /// `http.listener`, and so runs as an independent one-node broker (every node must
    /// then have the broker role).
    pub kraft: bool,
    /// Puts node i's data directory at `data_root/node-<i+1>` (on a test filesystem,
    /// say) instead of under the cluster's temporary directory.
    pub data_root: Option<PathBuf>,
}

impl Default for ClusterSpec {
    /// Three `broker,controller` nodes with KRaft properties, without namespaces.
    fn default() -> Self {
        ClusterSpec {
            nodes: 3,
            roles: Vec::new(),
            extra: Vec::new(),
            netns: false,
            kraft: true,
            data_root: None,
        }
    }
}

impl ClusterSpec {
    /// `process.roles` of node i.
    fn roles_of(&self, i: usize) -> String {
        self.roles
            .get(i)
            .cloned()
            .unwrap_or_else(|| "broker,controller".to_owned())
    }
}

/// One node of a [`Cluster`].
#[derive(Debug)]
pub struct Node {
    /// `node.id`: the node's index + 1.
    pub id: i32,
    /// `process.roles`, e.g. `"broker,controller"`.
    pub roles: String,
    /// The address every listener of the node binds: `127.0.0.1`, or with namespaces the
    /// node's own `10.R.S.(i+1)`.
    pub host: String,
    /// `host:port` of the PLAINTEXT (client) listener; `None` for a controller-only node.
    pub kafka: Option<String>,
    /// `host:port` of the CONTROLLER listener; `None` unless a KRaft controller.
    pub controller: Option<String>,
    /// `host:port` of the HTTP API from the last ready line (`http.listener` asks for an
    /// ephemeral port, so it changes at each start); `None` if the line did not say.
    pub http: Option<String>,
    /// The node's network namespace, with [`ClusterSpec::netns`].
    pub namespace: Option<String>,
    dir: PathBuf,
    data: PathBuf,
    props: Vec<(String, String)>,
    child: Mutex<Option<Child>>,
    paused: bool,
}

impl Node {
    /// The PLAINTEXT listener; panics for a controller-only node.
    pub fn addr(&self) -> &str {
        self.kafka
            .as_deref()
            .unwrap_or_else(|| panic!("node {} has no broker role", self.id))
    }

    /// Whether `process.roles` includes `broker`.
    pub fn is_broker(&self) -> bool {
        self.roles.split(',').any(|r| r.trim() == "broker")
    }

    /// Whether `process.roles` includes `controller`.
    pub fn is_controller(&self) -> bool {
        self.roles.split(',').any(|r| r.trim() == "controller")
    }

    /// The `moldau` process id while one is spawned (with namespaces too: `ip netns exec`
    /// execs moldau in place, so the child's pid is moldau's).
    pub fn pid(&self) -> Option<u32> {
        self.lock().as_ref().map(Child::id)
    }

    /// The `name=value` properties the node is started with, in order.
    pub fn properties(&self) -> &[(String, String)] {
        &self.props
    }

    /// Whether it is paused by [`Cluster::pause`].
    pub fn is_paused(&self) -> bool {
        self.paused
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("stderr.log")
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Child>> {
        self.child.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn is_running(&self) -> bool {
        match self.lock().as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    fn kill9(&mut self) {
        if let Some(mut child) = self.lock().take() {
            signal(&child, libc::SIGKILL);
            let _ = child.wait();
        }
        self.paused = false;
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// N running `moldau serve` processes. Dropping it kills them (SIGKILL), removes the
/// network namespaces and the temporary directories, and, while a panic unwinds, first
/// prints the tail of every node's log.
pub struct Cluster {
    // Drop order matters: processes, then namespaces, then directories, then the lock.
    nodes: Vec<Node>,
    net: Option<Network>,
    _dir: tempfile::TempDir,
    _exclusive: Exclusive,
}

impl Cluster {
    /// Spawns every node at once (they need each other to form a quorum), then waits up
    /// to [`READY_TIMEOUT`] for each to report ready. Without namespaces all nodes listen
    /// on 127.0.0.1 ports picked free just before; if a port was taken in between, it
    /// starts over on new ports. Panics with the node's log tail if a node exits or stays
    /// silent.
    pub fn start(spec: ClusterSpec) -> Cluster {
        assert!(spec.nodes >= 1, "a cluster needs a node");
        assert!(
            spec.roles.is_empty() || spec.roles.len() == spec.nodes,
            "roles: one entry per node, or none"
        );
        let exclusive = Exclusive::acquire();
        let net = spec.netns.then(|| Network::create(spec.nodes));
        let dir = tempfile::Builder::new()
            .prefix("moldau-cluster-")
            .tempdir()
            .expect("tempdir");
        for attempt in 0.. {
            let mut nodes = plan(&spec, net.as_ref(), dir.path());
            for node in &nodes {
                std::fs::create_dir_all(&node.dir).expect("node dir");
            }
            let mut offsets = Vec::new();
            for (i, node) in nodes.iter().enumerate() {
                let (child, offset) = spawn(node, net.as_ref(), i);
                *node.lock() = Some(child);
                offsets.push((i, offset));
            }
            match wait_ready(&mut nodes, &offsets) {
                Ok(()) => {
                    return Cluster {
                        nodes,
                        net,
                        _dir: dir,
                        _exclusive: exclusive,
                    }
                }
                Err(f) if f.addr_in_use && net.is_none() && attempt < 10 => {
                    // Another process took a port between our probe and the bind: start
                    // over, on fresh ports and empty data directories.
                    for node in &mut nodes {
                        node.kill9();
                        let _ = std::fs::remove_dir_all(&node.data);
                    }
                }
                Err(f) => panic!("{}", f.message),
            }
        }
        unreachable!("the loop returns or panics")
    }

    /// `host:port,host:port,…` of the PLAINTEXT listeners of the broker nodes that are
    /// running and not paused (a client must not bootstrap from a frozen node); empty if
    /// there is none.
    pub fn bootstrap(&self) -> String {
        self.nodes
            .iter()
            .filter(|n| n.kafka.is_some() && !n.paused && n.is_running())
            .map(Node::addr)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Node i (`node.id` i + 1).
    pub fn node(&self, i: usize) -> &Node {
        &self.nodes[i]
    }

    /// Number of nodes.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// SIGKILL, as in a crash or power loss of the process, and reap it. No-op if the node
    /// is not running.
    pub fn kill9(&mut self, i: usize) {
        self.nodes[i].kill9();
    }

    /// SIGTERM (graceful shutdown; a paused node is resumed so it can act on it) and wait
    /// up to [`STOP_TIMEOUT`]; returns whether it exited with status 0. If it does not
    /// exit in time it is killed and this returns false. A node already gone returns its
    /// exit status if not yet reaped, else true.
    pub fn stop(&mut self, i: usize) -> bool {
        let node = &mut self.nodes[i];
        let paused = std::mem::replace(&mut node.paused, false);
        let Some(mut child) = node.lock().take() else {
            return true;
        };
        if let Ok(Some(status)) = child.try_wait() {
            return status.success();
        }
        signal(&child, libc::SIGTERM);
        if paused {
            signal(&child, libc::SIGCONT);
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return status.success(),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    eprintln!(
                        "node {} ignored SIGTERM for {STOP_TIMEOUT:?}: killed",
                        node.id
                    );
                    signal(&child, libc::SIGKILL);
                    let _ = child.wait();
                    return false;
                }
            }
        }
    }

    /// Starts node i again with the same ports, data directory and properties (it must
    /// have been killed or stopped), and waits for it to report ready. Retries for a while
    /// if its old port is still taken.
    pub fn restart(&mut self, i: usize) {
        assert!(
            !self.is_running(i),
            "kill9 or stop node {i} before restarting it"
        );
        *self.nodes[i].lock() = None;
        for attempt in 0..50 {
            let (child, offset) = spawn(&self.nodes[i], self.net.as_ref(), i);
            *self.nodes[i].lock() = Some(child);
            match wait_ready(&mut self.nodes, &[(i, offset)]) {
                Ok(()) => return,
                Err(f) if f.addr_in_use && attempt < 49 => {
                    self.nodes[i].kill9();
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(f) => panic!("{}", f.message),
            }
        }
    }

    /// Starts every node that is not running, all at once (a quorum that lost all its
    /// members needs them together), and waits for each to report ready.
    pub fn restart_all(&mut self) {
        let mut offsets = Vec::new();
        for i in 0..self.nodes.len() {
            if self.is_running(i) {
                continue;
            }
            *self.nodes[i].lock() = None;
            let (child, offset) = spawn(&self.nodes[i], self.net.as_ref(), i);
            *self.nodes[i].lock() = Some(child);
            offsets.push((i, offset));
        }
        if let Err(f) = wait_ready(&mut self.nodes, &offsets) {
            panic!("{}", f.message);
        }
    }

    /// SIGSTOP: the process freezes with its sockets open, as in a long GC pause or a VM
    /// stall; the kernel still accepts TCP connections for it. Returns once the process
    /// is in the stopped state.
    pub fn pause(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let pid = node
            .pid()
            .unwrap_or_else(|| panic!("node {i} is not running"));
        {
            let guard = node.lock();
            signal(guard.as_ref().expect("child"), libc::SIGSTOP);
        }
        node.paused = true;
        wait_until(
            &format!("node {i} (pid {pid}) is stopped"),
            Duration::from_secs(10),
            || (process_state(pid) == Some('T')).then_some(()),
        );
    }

    /// SIGCONT: undoes [`Cluster::pause`]. Returns once the process is no longer stopped.
    pub fn resume(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let pid = node
            .pid()
            .unwrap_or_else(|| panic!("node {i} is not running"));
        {
            let guard = node.lock();
            signal(guard.as_ref().expect("child"), libc::SIGCONT);
        }
        node.paused = false;
        wait_until(
            &format!("node {i} (pid {pid}) runs again"),
            Duration::from_secs(10),
            || (process_state(pid) != Some('T')).then_some(()),
        );
    }

    /// Whether node i's process exists and has not exited (a paused node is running).
    pub fn is_running(&self, i: usize) -> bool {
        self.nodes[i].is_running()
    }

    /// Cuts node i from every other node, both ways; clients in the root namespace still
    /// reach it. Namespaces only.
    pub fn isolate(&mut self, i: usize) {
        let n = self.nodes.len();
        let net = self.net_mut("isolate");
        for j in (0..n).filter(|&j| j != i) {
            net.cut(i, j);
        }
    }

    /// Undoes [`Cluster::isolate`]: heals every link of node i.
    pub fn heal(&mut self, i: usize) {
        let n = self.nodes.len();
        let net = self.net_mut("heal");
        for j in (0..n).filter(|&j| j != i) {
            net.heal_link(i, j);
        }
    }

    /// Cuts the link between nodes i and j, both directions: packets are dropped without
    /// a reply (see [`super::netns`] for what TCP then sees). Namespaces only.
    pub fn cut(&mut self, i: usize, j: usize) {
        self.net_mut("cut").cut(i, j);
    }

    /// Undoes [`Cluster::cut`].
    pub fn heal_link(&mut self, i: usize, j: usize) {
        self.net_mut("heal_link").heal_link(i, j);
    }

    /// The namespaces, bridge and addresses, with [`ClusterSpec::netns`].
    pub fn network(&self) -> Option<&Network> {
        self.net.as_ref()
    }

    /// Node i's `log.dirs`.
    pub fn data_dir(&self, i: usize) -> &Path {
        &self.nodes[i].data
    }

    /// The file that receives node i's stdout and stderr, appended across restarts.
    pub fn log_path(&self, i: usize) -> PathBuf {
        self.nodes[i].log_path()
    }

    /// Prints the last [`DUMP_LINES`] lines of every node's log to stderr.
    pub fn dump_logs(&self) {
        for (i, node) in self.nodes.iter().enumerate() {
            let state = if !node.is_running() {
                "not running"
            } else if node.paused {
                "paused"
            } else {
                "running"
            };
            eprintln!(
                "──── node {} ({}, {state}), last {} lines of {} ────\n{}",
                node.id,
                node.roles,
                dump_lines(),
                self.log_path(i).display(),
                tail(&node.log_path(), dump_lines())
            );
        }
    }

    fn net_mut(&mut self, what: &str) -> &mut Network {
        self.net
            .as_mut()
            .unwrap_or_else(|| panic!("{what} needs ClusterSpec {{ netns: true, .. }}"))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump_logs();
        }
        // Fields drop next, in order: nodes (SIGKILL), namespaces, directories, lock.
    }
}

/// Polls `f` with a short backoff (5 ms doubling up to 250 ms) until it returns `Some`,
/// and returns that; panics naming `what` if `deadline` passes first. Blocks the thread.
pub fn wait_until<T>(what: &str, deadline: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    let mut backoff = Duration::from_millis(5);
    loop {
        if let Some(v) = f() {
            return v;
        }
        let elapsed = start.elapsed();
        assert!(
            elapsed < deadline,
            "timed out after {deadline:?} waiting until {what}"
        );
        std::thread::sleep(backoff.min(deadline - elapsed));
        backoff = (backoff * 2).min(Duration::from_millis(250));
    }
}

/// The process-wide cluster lock. A flag under a mutex rather than a `MutexGuard` kept
/// in `Cluster`, so that `Cluster` stays `Send` (a tokio test may move it into a task)
/// and a test that panicked does not poison the lock for the tests after it.
struct Exclusive;

static BUSY: Mutex<bool> = Mutex::new(false);
static FREED: Condvar = Condvar::new();

impl Exclusive {
    fn acquire() -> Exclusive {
        let mut busy = BUSY.lock().unwrap_or_else(PoisonError::into_inner);
        while *busy {
            busy = FREED.wait(busy).unwrap_or_else(PoisonError::into_inner);
        }
        *busy = true;
        Exclusive
    }
}

impl Drop for Exclusive {
    fn drop(&mut self) {
        *BUSY.lock().unwrap_or_else(PoisonError::into_inner) = false;
        FREED.notify_one();
    }
}

/// The nodes of `spec`, with addresses and properties but no process yet.
fn plan(spec: &ClusterSpec, net: Option<&Network>, dir: &Path) -> Vec<Node> {
    let n = spec.nodes;
    let roles: Vec<String> = (0..n).map(|i| spec.roles_of(i)).collect();
    let has = |i: usize, role: &str| roles[i].split(',').any(|r| r.trim() == role);
    if !spec.kraft {
        assert!(
            (0..n).all(|i| has(i, "broker")),
            "without kraft every node is a plain broker: roles {roles:?}"
        );
    }
    let controllers: Vec<bool> = (0..n).map(|i| spec.kraft && has(i, "controller")).collect();
    let brokers: Vec<bool> = (0..n).map(|i| has(i, "broker")).collect();
    let (hosts, kafka_ports, controller_ports): (Vec<String>, Vec<u16>, Vec<u16>) = match net {
        Some(net) => (
            (0..n).map(|i| net.ip(i)).collect(),
            vec![netns::KAFKA_PORT; n],
            vec![netns::CONTROLLER_PORT; n],
        ),
        None => {
            let ports = free_ports(2 * n);
            (
                vec!["127.0.0.1".to_owned(); n],
                ports[..n].to_vec(),
                ports[n..].to_vec(),
            )
        }
    };
    let kafka: Vec<Option<String>> = (0..n)
        .map(|i| brokers[i].then(|| format!("{}:{}", hosts[i], kafka_ports[i])))
        .collect();
    let controller: Vec<Option<String>> = (0..n)
        .map(|i| controllers[i].then(|| format!("{}:{}", hosts[i], controller_ports[i])))
        .collect();
    let voters = (0..n)
        .filter_map(|i| controller[i].as_ref().map(|a| format!("{}@{a}", i + 1)))
        .collect::<Vec<_>>()
        .join(",");
    (0..n)
        .map(|i| {
            let node_dir = dir.join(format!("node-{}", i + 1));
            let data = match &spec.data_root {
                Some(root) => root.join(format!("node-{}", i + 1)),
                None => node_dir.join("data"),
            };
            let mut props = Vec::new();
            let mut set = |k: &str, v: String| props.push((k.to_owned(), v));
            if spec.kraft {
                set("process.roles", roles[i].clone());
                set("node.id", (i + 1).to_string());
                set("controller.quorum.voters", voters.clone());
            }
            let listeners = [
                kafka[i].as_ref().map(|a| format!("PLAINTEXT://{a}")),
                controller[i].as_ref().map(|a| format!("CONTROLLER://{a}")),
            ];
            set(
                "listeners",
                listeners
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(","),
            );
            if spec.kraft {
                set("controller.listener.names", "CONTROLLER".to_owned());
            }
            set("log.dirs", data.display().to_string());
            set("http.listener", format!("{}:0", hosts[i]));
            props.extend(spec.extra.iter().cloned());
            Node {
                id: (i + 1) as i32,
                roles: roles[i].clone(),
                host: hosts[i].clone(),
                kafka: kafka[i].clone(),
                controller: controller[i].clone(),
                http: None,
                namespace: net.map(|net| net.namespace(i)),
                dir: node_dir,
                data,
                props,
                child: Mutex::new(None),
                paused: false,
            }
        })
        .collect()
}

/// `n` distinct ports that were free on 127.0.0.1 a moment ago (all bound at once, then
/// released).
fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local_addr").port())
        .collect()
}

/// Spawns node i (`ip netns exec` into its namespace when there is one), its stdout and
/// stderr appended to its log; returns the child and the log length before the spawn,
/// from where [`wait_ready`] reads.
fn spawn(node: &Node, net: Option<&Network>, i: usize) -> (Child, u64) {
    let path = node.log_path();
    let mut log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let offset = log.metadata().expect("log metadata").len();
    let _ = writeln!(log, "──── harness: starting node {} ────", node.id);
    let bin = env!("CARGO_BIN_EXE_moldau");
    let mut cmd = match net {
        Some(net) => net.command(i, bin),
        None => Command::new(bin),
    };
    cmd.arg("serve");
    for (k, v) in &node.props {
        cmd.arg("-o").arg(format!("{k}={v}"));
    }
    cmd.env(
        "MOLDAU_LOG",
        std::env::var("MOLDAU_LOG").unwrap_or_else(|_| "info,openraft=warn".to_owned()),
    )
    .stdin(Stdio::null())
    .stdout(log.try_clone().expect("clone log handle"))
    .stderr(log);
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawn node {}: {e}", node.id));
    (child, offset)
}

/// Why nodes did not become ready.
struct NotReady {
    /// The node exited complaining that an address was in use.
    addr_in_use: bool,
    message: String,
}

/// Waits until each `(node index, log offset)` has printed its ready line past the
/// offset; records the HTTP address it reports. Fails as soon as one exits, or after
/// [`READY_TIMEOUT`] with the log tails of the nodes still silent.
fn wait_ready(nodes: &mut [Node], pending: &[(usize, u64)]) -> Result<(), NotReady> {
    let mut pending: Vec<(usize, u64)> = pending.to_vec();
    let deadline = Instant::now() + READY_TIMEOUT;
    while !pending.is_empty() {
        let mut still = Vec::new();
        for (i, mut offset) in pending {
            let node = &mut nodes[i];
            let marker = if node.is_broker() {
                BROKER_READY
            } else {
                CONTROLLER_READY
            };
            let ready = read_lines(&node.log_path(), &mut offset)
                .into_iter()
                .find(|line| line.contains(marker));
            if let Some(line) = ready {
                node.http = field(&line, "http=");
                continue;
            }
            let status = node
                .lock()
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = status {
                let log = tail(&node.log_path(), DUMP_LINES);
                return Err(NotReady {
                    addr_in_use: log.contains("Address already in use"),
                    message: format!(
                        "node {} exited ({status}) before reporting ready; last lines of {}:\n{log}",
                        node.id,
                        node.log_path().display()
                    ),
                });
            }
            still.push((i, offset));
        }
        pending = still;
        if !pending.is_empty() && Instant::now() > deadline {
            let logs: Vec<String> = pending
                .iter()
                .map(|&(i, _)| {
                    let node = &nodes[i];
                    format!(
                        "──── node {} ────\n{}",
                        node.id,
                        tail(&node.log_path(), DUMP_LINES)
                    )
                })
                .collect();
            return Err(NotReady {
                addr_in_use: false,
                message: format!(
                    "nodes {:?} not ready after {READY_TIMEOUT:?}:\n{}",
                    pending.iter().map(|&(i, _)| i + 1).collect::<Vec<_>>(),
                    logs.join("\n")
                ),
            });
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    Ok(())
}

/// The complete lines of `path` after `offset`; advances `offset` past them.
fn read_lines(path: &Path, offset: &mut u64) -> Vec<String> {
    let mut buf = Vec::new();
    if let Ok(mut f) = File::open(path) {
        if f.seek(SeekFrom::Start(*offset)).is_ok() {
            let _ = f.read_to_end(&mut buf);
        }
    }
    let Some(end) = buf.iter().rposition(|&b| b == b'\n') else {
        return Vec::new();
    };
    *offset += end as u64 + 1;
    String::from_utf8_lossy(&buf[..end])
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The value after ` name` in a tracing line (`… listener=127.0.0.1:9092 http=…`).
fn field(line: &str, name: &str) -> Option<String> {
    let rest = line.split(&format!(" {name}")).nth(1)?;
    rest.split_whitespace().next().map(str::to_owned)
}

/// The last `n` lines of `path`.
fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_else(|e| format!("(cannot read {}: {e})", path.display()));
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The state letter of `/proc/<pid>/stat` (`R`, `S`, `T` stopped, `Z` zombie, …).
pub fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

fn signal(child: &Child, sig: i32) {
    // libc::kill only sends a signal to our own child's pid.
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(child.id() as i32, sig);
    }
}
