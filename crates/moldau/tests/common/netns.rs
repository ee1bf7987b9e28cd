//! Network namespaces for cluster tests: every node in a namespace of its own, all joined
//! by one bridge in the root namespace, so a link between two nodes can be cut while the
//! test process (a client in the root namespace) still reaches every node.
//!
//! Needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN) and iproute2's `ip`; [`Network::create`]
//! panics saying which is missing. Uses `bash` and `timeout` for [`tcp_probe`].
//!
//! Layout of a network whose name prefix is `P` and subnet `10.R.S.0/24`:
//!
//! ```text
//! root namespace: bridge Pb 10.R.S.254/24
//!                   ├── Pv0 ══ veth ══ Pe0 10.R.S.1/24   in namespace Pn0 (lo up too)
//!                   ├── Pv1 ══ veth ══ Pe1 10.R.S.2/24   in namespace Pn1
//!                   └── …
//! ```
//!
//! `P` is [`PREFIX`], the owning process id in base 36, `-`, and a per-process counter as
//! two base-36 digits (`mld<pid>-<nn>`): concurrent test binaries never collide, no
//! prefix is the start of another (the `-` ends the pid, the counter has a fixed width),
//! and the longest interface name (`mld` + 5 + `-` + 2 + `v` + 3 = 15 bytes, pid_max
//! 2²² and 200 nodes) fits Linux's 15-byte limit. [`cleanup_stale`] reads the process id
//! back to remove what a crashed run left behind.
//!
//! A cut is a pair of `blackhole` routes, one in each node's namespace. Packets between
//! the two nodes are dropped without any reply, as in a real partition: an established
//! TCP connection stalls (no RST, no error; it resumes after the heal). One difference
//! from a partition in the wild: a *new* `connect()` from one node to the other fails at
//! once with `EINVAL` (the route lookup fails locally) instead of timing out after the
//! SYN retries.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// First characters of every namespace and interface name the harness creates.
pub const PREFIX: &str = "mld";

/// Kafka (PLAINTEXT) port of every node inside its namespace.
pub const KAFKA_PORT: u16 = 9092;
/// CONTROLLER port of every node inside its namespace.
pub const CONTROLLER_PORT: u16 = 9093;

/// `/proc` file of the root namespace's bridge netfilter switch (exists only while the
/// kernel's `br_netfilter` is loaded). When it reads 1, IPv4 frames crossing a bridge
/// traverse iptables' FORWARD chain, where a DROP policy (Docker sets one) would silently
/// drop node-to-node traffic.
pub const BRIDGE_NF_CALL_IPTABLES: &str = "/proc/sys/net/bridge/bridge-nf-call-iptables";

static NEXT: AtomicU32 = AtomicU32::new(0);

/// One bridge, one namespace and one veth pair per node. Dropping it removes everything
/// it created (after killing any process still inside a namespace), also while unwinding
/// from a panic.
pub struct Network {
    prefix: String,
    /// `R` and `S` of the subnet `10.R.S.0/24`.
    subnet: (u8, u8),
    nodes: usize,
    /// Blackhole routes in place: `(i, j)` is a route in node i's namespace to node j.
    cuts: BTreeSet<(usize, usize)>,
    /// Arguments of the iptables rule added by [`Network::create`], for its removal.
    iptables_rule: Option<Vec<String>>,
}

impl Network {
    /// Creates the bridge and `nodes` namespaces, each with its veth up and addressed, and
    /// checks that node 0 reaches every other node through the bridge.
    ///
    /// Panics (after removing whatever it created) if root or `ip` is missing, a command
    /// fails, or bridged traffic does not get through.
    pub fn create(nodes: usize) -> Network {
        assert!((1..=200).contains(&nodes), "1..=200 nodes, not {nodes}");
        require();
        static STALE: std::sync::Once = std::sync::Once::new();
        STALE.call_once(|| cleanup_stale(PREFIX));

        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let prefix = owner_prefix(std::process::id(), n);
        let subnet = free_subnet(std::process::id(), n);
        let mut net = Network {
            prefix,
            subnet,
            nodes,
            cuts: BTreeSet::new(),
            iptables_rule: None,
        };
        // From here on, a panic drops `net`, which removes what was already made.
        let bridge = net.bridge();
        ip(&["link", "add", &bridge, "type", "bridge"]);
        ip(&[
            "addr",
            "add",
            &format!("{}/24", net.bridge_ip()),
            "dev",
            &bridge,
        ]);
        ip(&["link", "set", &bridge, "up"]);
        for i in 0..nodes {
            let (ns, outer, inner) = (net.namespace(i), net.outer(i), net.inner(i));
            ip(&["netns", "add", &ns]);
            ip(&[
                "link", "add", &outer, "type", "veth", "peer", "name", &inner,
            ]);
            ip(&["link", "set", &inner, "netns", &ns]);
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/24", net.ip(i)),
                "dev",
                &inner,
            ]);
            ip(&["-n", &ns, "link", "set", &inner, "up"]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
            ip(&["link", "set", &outer, "master", &bridge]);
            ip(&["link", "set", &outer, "up"]);
        }
        net.allow_bridged_forwarding();
        for j in 1..nodes {
            // Port 9 (discard) is closed: "refused" proves the SYN crossed the bridge and
            // the RST came back. The bridge ports forward within moments of coming up.
            let target = format!("{}:9", net.ip(j));
            let ns = net.namespace(0);
            let deadline = Instant::now() + Duration::from_secs(10);
            let last = loop {
                let probe = tcp_probe(&ns, &target, Duration::from_secs(1));
                if probe == Probe::Refused || Instant::now() > deadline {
                    break probe;
                }
                std::thread::sleep(Duration::from_millis(100));
            };
            assert_eq!(
                last,
                Probe::Refused,
                "node 0 cannot reach node {j} ({target}) through bridge {bridge}. \
                 {BRIDGE_NF_CALL_IPTABLES} = {:?}: if 1, iptables/nftables FORWARD rules \
                 see bridged frames and may drop them",
                std::fs::read_to_string(BRIDGE_NF_CALL_IPTABLES).map(|s| s.trim().to_owned())
            );
        }
        net
    }

    /// The name prefix shared by this network's bridge, veths and namespaces.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Node i's namespace.
    pub fn namespace(&self, i: usize) -> String {
        format!("{}n{i}", self.prefix)
    }

    /// Node i's IPv4 address, `10.R.S.(i+1)`.
    pub fn ip(&self, i: usize) -> String {
        format!("10.{}.{}.{}", self.subnet.0, self.subnet.1, i + 1)
    }

    /// The bridge's address in the root namespace, `10.R.S.254`.
    pub fn bridge_ip(&self) -> String {
        format!("10.{}.{}.254", self.subnet.0, self.subnet.1)
    }

    /// The bridge's interface name.
    pub fn bridge(&self) -> String {
        format!("{}b", self.prefix)
    }

    /// Root-namespace end of node i's veth pair (attached to the bridge).
    fn outer(&self, i: usize) -> String {
        format!("{}v{i}", self.prefix)
    }

    /// Node i's end of its veth pair (inside its namespace).
    fn inner(&self, i: usize) -> String {
        format!("{}e{i}", self.prefix)
    }

    /// A command that runs `program` inside node i's namespace. `ip netns exec` execs the
    /// program, so the spawned child's pid is the program's own pid.
    pub fn command(&self, i: usize, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.arg("netns")
            .arg("exec")
            .arg(self.namespace(i))
            .arg(program);
        cmd
    }

    /// Drops every packet between nodes i and j, both ways (idempotent).
    pub fn cut(&mut self, i: usize, j: usize) {
        assert!(i != j && i < self.nodes && j < self.nodes, "cut({i}, {j})");
        for (a, b) in [(i, j), (j, i)] {
            if self.cuts.insert((a, b)) {
                let route = format!("{}/32", self.ip(b));
                ip(&[
                    "-n",
                    &self.namespace(a),
                    "route",
                    "add",
                    "blackhole",
                    &route,
                ]);
            }
        }
    }

    /// Undoes [`Network::cut`] (idempotent).
    pub fn heal_link(&mut self, i: usize, j: usize) {
        assert!(
            i != j && i < self.nodes && j < self.nodes,
            "heal_link({i}, {j})"
        );
        for (a, b) in [(i, j), (j, i)] {
            if self.cuts.remove(&(a, b)) {
                let route = format!("{}/32", self.ip(b));
                ip(&[
                    "-n",
                    &self.namespace(a),
                    "route",
                    "del",
                    "blackhole",
                    &route,
                ]);
            }
        }
    }

    /// Whether the link between nodes i and j is cut.
    pub fn is_cut(&self, i: usize, j: usize) -> bool {
        self.cuts.contains(&(i, j))
    }

    /// With `bridge-nf-call-iptables` = 1 and `iptables` installed, accepts in FORWARD
    /// whatever enters and leaves this bridge, so a DROP policy cannot partition the nodes
    /// behind the test's back. The rule carries the prefix as a comment (for
    /// [`cleanup_stale`]) and is removed on drop. Without `iptables` no legacy rule can
    /// exist; nftables rules are not inspected, but the reachability check in
    /// [`Network::create`] would catch any that drop our traffic.
    fn allow_bridged_forwarding(&mut self) {
        let on = std::fs::read_to_string(BRIDGE_NF_CALL_IPTABLES)
            .map(|v| v.trim() == "1")
            .unwrap_or(false);
        if !on || !have("iptables") {
            return;
        }
        let bridge = self.bridge();
        let spec: Vec<String> = [
            "FORWARD",
            "-i",
            &bridge,
            "-o",
            &bridge,
            "-m",
            "comment",
            "--comment",
            &self.prefix,
            "-j",
            "ACCEPT",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let out = run(
            "iptables",
            ["-w", "-I"]
                .iter()
                .map(|s| s.to_string())
                .chain(spec.clone()),
        );
        assert!(
            out.status.success(),
            "iptables -I {spec:?}: {}",
            stderr(&out)
        );
        self.iptables_rule = Some(spec);
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        let mut failures = Vec::new();
        if let Some(spec) = self.iptables_rule.take() {
            let out = run(
                "iptables",
                ["-w", "-D"].iter().map(|s| s.to_string()).chain(spec),
            );
            if !out.status.success() {
                failures.push(format!("iptables -D: {}", stderr(&out)));
            }
        }
        for i in 0..self.nodes {
            // Deleting the root end deletes the pair, even if a process pins the namespace.
            remove(&["link", "del", &self.outer(i)], &mut failures);
            remove_namespace(&self.namespace(i), &mut failures);
        }
        remove(&["link", "del", &self.bridge()], &mut failures);
        if !failures.is_empty() {
            eprintln!("netns teardown of {}: {failures:#?}", self.prefix);
        }
    }
}

/// What a TCP connect from inside a namespace found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// The three-way handshake completed.
    Connected,
    /// RST: the host is reachable, nothing listens on the port.
    Refused,
    /// Timed out, or failed otherwise (a blackhole route fails with "Invalid argument");
    /// the text says which.
    Failed(String),
}

/// Opens a TCP connection to `addr` (`ip:port`) from inside namespace `ns`, with bash's
/// `/dev/tcp` under `timeout`, and closes it at once.
pub fn tcp_probe(ns: &str, addr: &str, timeout: Duration) -> Probe {
    let (host, port) = addr.rsplit_once(':').expect("ip:port");
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "timeout"])
        .arg(format!("{:.3}", timeout.as_secs_f64()))
        .args(["bash", "-c", "exec 3<>/dev/tcp/$0/$1", host, port])
        .stdin(Stdio::null())
        .output()
        .expect("run ip netns exec … bash");
    let err = stderr(&out);
    match out.status.code() {
        Some(0) => Probe::Connected,
        Some(124) => Probe::Failed(format!("timed out after {timeout:?}")),
        _ if err.contains("Connection refused") => Probe::Refused,
        _ => Probe::Failed(err),
    }
}

/// Panics with a clear message unless this process is root and iproute2's `ip` runs.
pub fn require() {
    let euid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("Uid:"))?.to_owned();
            line.split_whitespace().nth(2)?.parse::<u32>().ok()
        });
    assert!(
        euid == Some(0),
        "network-namespace cluster tests need root (CAP_SYS_ADMIN, CAP_NET_ADMIN); \
         effective uid is {euid:?}"
    );
    assert!(
        have("ip"),
        "network-namespace cluster tests need iproute2's `ip` on PATH \
         (apt-get install iproute2)"
    );
}

/// Removes the namespaces, interfaces and iptables rules whose names start with `prefix`
/// and encode the id of a process that no longer exists (see the module docs), killing
/// any process still inside such a namespace first. What belongs to a live process is
/// left alone, so concurrent test binaries do not disturb each other.
pub fn cleanup_stale(prefix: &str) {
    let stale = |name: &str| {
        let Some(pid) = name
            .strip_prefix(prefix)
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(pid, _)| u32::from_str_radix(pid, 36).ok())
        else {
            return false;
        };
        !Path::new(&format!("/proc/{pid}")).exists()
    };
    let mut failures = Vec::new();
    if have("iptables") {
        let out = run("iptables", ["-w", "-S", "FORWARD"].map(String::from));
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            let owner = words
                .windows(2)
                .find(|w| w[0] == "--comment")
                .map(|w| w[1].trim_matches('"'));
            if words.first() == Some(&"-A") && owner.is_some_and(stale) {
                let args = ["-w", "-D"].into_iter().chain(words[1..].iter().copied());
                let out = run("iptables", args.map(String::from));
                if !out.status.success() {
                    failures.push(format!("iptables -D {line}: {}", stderr(&out)));
                }
            }
        }
    }
    for name in links() {
        if stale(&name) {
            remove(&["link", "del", &name], &mut failures);
        }
    }
    for ns in namespaces() {
        if stale(&ns) {
            remove_namespace(&ns, &mut failures);
        }
    }
    if !failures.is_empty() {
        eprintln!("cleanup_stale({prefix}): {failures:#?}");
    }
}

/// The name prefix of network number `n` (counted modulo 36²) of process `pid`:
/// `mld<pid>-<nn>`, both base 36, the counter padded to two digits.
pub fn owner_prefix(pid: u32, n: u32) -> String {
    format!("{PREFIX}{}-{:0>2}", base36(pid), base36(n % 1296))
}

/// Names listed by `ip netns list`.
pub fn namespaces() -> Vec<String> {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

/// Interface names in the root namespace, from `ip -o link show` (without `@peer`).
pub fn links() -> Vec<String> {
    let out = Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .expect("ip link");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|name| name.split('@').next().unwrap_or(name).to_owned())
        .collect()
}

/// Kills every process in namespace `ns`, then deletes it.
fn remove_namespace(ns: &str, failures: &mut Vec<String>) {
    if !namespaces().iter().any(|n| n == ns) {
        return;
    }
    let out = Command::new("ip").args(["netns", "pids", ns]).output();
    if let Ok(out) = out {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = Command::new("kill").args(["-KILL", pid]).status();
        }
    }
    remove(&["netns", "del", ns], failures);
}

/// Runs `ip args`, recording a failure unless the object was already gone.
fn remove(args: &[&str], failures: &mut Vec<String>) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    let err = stderr(&out);
    let gone = err.contains("Cannot find device") || err.contains("No such file");
    if !out.status.success() && !gone {
        failures.push(format!("ip {}: {err}", args.join(" ")));
    }
}

/// Runs `ip args` and panics with its stderr if it fails.
fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        stderr(&out)
    );
}

fn run(program: &str, args: impl IntoIterator<Item = String>) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"))
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).trim().to_owned()
}

/// Whether `program` is on PATH and runs.
fn have(program: &str) -> bool {
    Command::new(program)
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// A `10.R.S.0/24` (R in 100..=227) no address or route of the root namespace uses yet,
/// starting from a hash of (pid, n) so that concurrent harnesses start far apart.
fn free_subnet(pid: u32, n: u32) -> (u8, u8) {
    let out = |args: &[&str]| {
        let out = Command::new("ip").args(args).output().expect("run ip");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let used = out(&["-4", "-o", "addr", "show"]) + &out(&["-4", "route", "show", "table", "all"]);
    let start = (u64::from(pid) * 1_000_003 + u64::from(n) * 7_919) % (128 * 256);
    (0..128 * 256)
        .map(|k| (start + k) % (128 * 256))
        .map(|h| ((100 + h / 256) as u8, (h % 256) as u8))
        .find(|(r, s)| !used.contains(&format!("10.{r}.{s}.")))
        .expect("a free 10.x.y.0/24")
}

fn base36(mut n: u32) -> String {
    let mut digits = Vec::new();
    loop {
        digits.push(char::from_digit(n % 36, 36).expect("digit"));
        n /= 36;
        if n == 0 {
            break;
        }
    }
    digits.iter().rev().collect()
}
