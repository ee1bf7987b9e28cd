//! Roles, the controller quorum, listeners and replication settings, with Kafka's KRaft
//! property names and its validation rules (Kafka `KafkaConfig.validateValues` for KRaft
//! mode, KIP-631).
//!
//! Two modes:
//! - **Implicit single node** (no `process.roles`): the node is broker and controller,
//!   `node.id` 1 unless set, the only voter of its own quorum, reached in-process (no
//!   controller listener). This is `moldau serve` with no configuration.
//! - **KRaft** (`process.roles` set): as Kafka requires, `node.id`,
//!   `controller.listener.names` and `controller.quorum.voters` (or, for broker-only
//!   nodes, `controller.quorum.bootstrap.servers`) must be given, and the listeners must
//!   agree with the roles.

use super::listeners::{self, Endpoint, ProtocolMap, Voter};
use super::{parse, ConfigError};
use std::collections::BTreeMap;

/// `process.roles`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    /// Serves clients and hosts partition replicas.
    pub broker: bool,
    /// Votes in the metadata quorum and may become the active controller.
    pub controller: bool,
}

/// The node's place in the cluster and the settings of replication and liveness.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// `process.roles` was given (KRaft mode); false for the implicit single node.
    pub explicit: bool,
    /// `node.id`.
    pub node_id: i32,
    /// `process.roles` (both for the implicit single node).
    pub roles: Roles,
    /// `controller.quorum.voters`: the static voter set. The implicit single node is
    /// its own only voter, with no address (it is reached in-process).
    pub voters: Vec<Voter>,
    /// `controller.quorum.bootstrap.servers` (`host:port` list): where a broker-only node
    /// looks for the controllers when `voters` is not given.
    pub bootstrap_servers: Vec<String>,
    /// `controller.listener.names` (upper case); empty for the implicit single node.
    pub controller_listener_names: Vec<String>,
    /// `inter.broker.listener.name`: the listener replica fetchers and coordinators use
    /// to reach other brokers (default `PLAINTEXT`, as Kafka derives it from
    /// `security.inter.broker.protocol`).
    pub inter_broker_listener_name: String,
    /// How this broker connects to the others' inter-broker listener: TLS with the
    /// listener's truststore (and keystore, when it asks for client certificates), SASL
    /// with `sasl.mechanism.inter.broker.protocol` and the `username`/`password` of the
    /// listener's JAAS config for that mechanism; PLAINTEXT by default.
    pub inter_broker_client: moldau_client::security::Security,
    /// The protocol of the controller listener (the first of
    /// `controller.listener.names`, from `listener.security.protocol.map`; PLAINTEXT by
    /// default).
    pub controller_protocol: listeners::SecurityProtocol,
    /// How this node connects to the controllers: TLS with the controller listener's
    /// truststore (and its keystore when one is set), SASL with
    /// `sasl.mechanism.controller.protocol` and the `username`/`password` of the
    /// controller listener's JAAS config for that mechanism; PLAINTEXT by default.
    pub controller_client: moldau_client::security::Security,
    /// `cluster.id`: the id the quorum adopts when it forms (Moldau extension; Kafka sets
    /// it with `kafka-storage.sh format`). `None`: the first active controller picks one.
    pub cluster_id: Option<String>,
    /// `broker.session.timeout.ms` (default 3000; Kafka's is 9000): a broker without a
    /// heartbeat for this long is fenced and its leaderships move. Moldau has no
    /// garbage-collection pauses to ride out, so it detects a silent broker three times
    /// sooner; a broker whose process died is detected sooner still, when its
    /// connection to the controller closes (twice the heartbeat interval).
    pub broker_session_timeout_ms: u64,
    /// `broker.heartbeat.interval.ms` (default 500; Kafka's is 2000).
    pub broker_heartbeat_interval_ms: u64,
    /// `controlled.shutdown.enable` (default true): on SIGTERM, move leadership away
    /// before exiting.
    pub controlled_shutdown_enable: bool,
    /// `controller.quorum.election.timeout.ms` (default 1000): a quorum follower that
    /// hears nothing from the leader for a random time in `[t, 2t)` starts an election.
    pub election_timeout_ms: u64,
    /// `metadata.log.max.record.bytes.between.snapshots` (default 20 MiB): metadata
    /// bytes applied since the last snapshot that trigger a new one.
    pub snapshot_max_bytes: u64,
    /// `metadata.log.max.snapshot.interval.ms` (default 3600000; 0 disables): the most
    /// time between snapshots while new metadata arrives.
    pub snapshot_interval_ms: u64,
    /// `replica.lag.time.max.ms` (default 30000): a follower that has not caught up with
    /// the leader's log end offset for this long leaves the ISR.
    pub replica_lag_time_max_ms: i64,
    /// `replica.fetch.max.bytes` (default 1048576): per-partition bytes a follower asks for.
    pub replica_fetch_max_bytes: i32,
    /// `replica.fetch.response.max.bytes` (default 10485760): per-request bytes.
    pub replica_fetch_response_max_bytes: i32,
    /// `replica.fetch.min.bytes` (default 1).
    pub replica_fetch_min_bytes: i32,
    /// `replica.fetch.wait.max.ms` (default 500): long-poll wait of follower fetches.
    pub replica_fetch_wait_max_ms: i32,
    /// `replica.fetch.backoff.ms` (default 1000): pause after a failed follower fetch.
    pub replica_fetch_backoff_ms: u64,
    /// `replica.socket.timeout.ms` (default 30000): follower fetch request timeout.
    pub replica_socket_timeout_ms: u64,
    /// `transaction.state.log.min.isr` (default 2 in KRaft mode as Kafka, 1 for the
    /// implicit single node): `min.insync.replicas` of `__transaction_state`.
    pub transaction_state_log_min_isr: i32,
}

impl ClusterConfig {
    /// The voter entry of this node, if it is a controller.
    pub fn own_voter(&self) -> Option<&Voter> {
        self.voters.iter().find(|v| v.id == self.node_id)
    }

    /// Whether `name` is a controller listener.
    pub fn is_controller_listener(&self, name: &str) -> bool {
        self.controller_listener_names.iter().any(|n| n == name)
    }
}

fn err(name: &str, props: &BTreeMap<String, String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::new(name, props.get(name).map_or("", String::as_str), reason)
}

fn parse_roles(value: &str) -> Result<Roles, ConfigError> {
    let mut roles = Roles {
        broker: false,
        controller: false,
    };
    for role in value.split(',').map(str::trim).filter(|r| !r.is_empty()) {
        let slot = match role {
            "broker" => &mut roles.broker,
            "controller" => &mut roles.controller,
            other => {
                return Err(ConfigError::new(
                    "process.roles",
                    value,
                    format!("'{other}' is not broker or controller"),
                ))
            }
        };
        if *slot {
            return Err(ConfigError::new(
                "process.roles",
                value,
                format!("{role} is listed twice"),
            ));
        }
        *slot = true;
    }
    if !roles.broker && !roles.controller {
        return Err(ConfigError::new(
            "process.roles",
            value,
            "give broker, controller or both",
        ));
    }
    Ok(roles)
}

/// Resolves the cluster settings and the listeners; returns them with the advertised
/// broker listeners.
pub(super) fn resolve(
    p: &BTreeMap<String, String>,
) -> Result<(ClusterConfig, Vec<Endpoint>, Vec<Endpoint>), ConfigError> {
    let explicit = p.contains_key("process.roles");
    let roles = match p.get("process.roles") {
        Some(v) => parse_roles(v)?,
        None => Roles {
            broker: true,
            controller: true,
        },
    };
    if p.contains_key("controller.quorum.bootstrap.servers") {
        return Err(err(
            "controller.quorum.bootstrap.servers",
            p,
            "dynamic quorums (KIP-853) are not implemented: list the voters in controller.quorum.voters",
        ));
    }
    if !explicit {
        for name in [
            "controller.quorum.voters",
            "controller.quorum.bootstrap.servers",
            "controller.listener.names",
        ] {
            if p.contains_key(name) {
                return Err(err(
                    name,
                    p,
                    "set process.roles too: without it Moldau runs as one self-contained node",
                ));
            }
        }
    }
    let node_id: i32 = match (explicit, p.get("node.id")) {
        (true, None) => {
            return Err(err(
                "node.id",
                p,
                "node.id is required when process.roles is set",
            ))
        }
        _ => parse(p, "node.id", 1)?,
    };
    if node_id < 0 {
        return Err(err("node.id", p, "must be 0 or more"));
    }
    let controller_listener_names: Vec<String> = p
        .get("controller.listener.names")
        .map(|v| {
            v.split(',')
                .map(|n| n.trim().to_ascii_uppercase())
                .filter(|n| !n.is_empty())
                .collect()
        })
        .unwrap_or_default();
    if explicit && controller_listener_names.is_empty() {
        return Err(err(
            "controller.listener.names",
            p,
            "required when process.roles is set: name the listener controllers are reached on (e.g. CONTROLLER)",
        ));
    }
    let map = ProtocolMap::parse(p.get("listener.security.protocol.map").map(String::as_str))?;
    let listeners = listeners::parse_listeners(
        "listeners",
        p.get("listeners")
            .map_or("PLAINTEXT://localhost:9092", String::as_str),
        &map,
        &controller_listener_names,
    )?;
    let is_controller = |name: &str| controller_listener_names.iter().any(|n| n == name);
    let broker_listeners: Vec<&Endpoint> = listeners
        .iter()
        .filter(|l| !is_controller(&l.name))
        .collect();
    let controller_listeners: Vec<&Endpoint> = listeners
        .iter()
        .filter(|l| is_controller(&l.name))
        .collect();
    if roles.broker && broker_listeners.is_empty() {
        return Err(err(
            "listeners",
            p,
            "a broker needs a listener that is not in controller.listener.names",
        ));
    }
    if !roles.broker && !broker_listeners.is_empty() {
        return Err(err(
            "listeners",
            p,
            format!(
                "a controller-only node (process.roles=controller) listens only on controller listeners; {} is not in controller.listener.names",
                broker_listeners[0].name
            ),
        ));
    }
    if roles.controller && explicit {
        let first = &controller_listener_names[0];
        if !controller_listeners.iter().any(|l| &l.name == first) {
            return Err(err(
                "listeners",
                p,
                format!(
                    "a controller must listen on {first}, the first of controller.listener.names"
                ),
            ));
        }
    }
    if !roles.controller && !controller_listeners.is_empty() {
        return Err(err(
            "listeners",
            p,
            format!(
                "{} is a controller listener, but this node is not a controller (process.roles)",
                controller_listeners[0].name
            ),
        ));
    }
    let security = p.get("security.inter.broker.protocol");
    if let Some(v) = security {
        if p.contains_key("inter.broker.listener.name") {
            return Err(err(
                "security.inter.broker.protocol",
                p,
                "set only one of inter.broker.listener.name and security.inter.broker.protocol",
            ));
        }
        if listeners::SecurityProtocol::parse(v) != Some(listeners::SecurityProtocol::Plaintext) {
            return Err(err(
                "security.inter.broker.protocol",
                p,
                "name the inter-broker listener with inter.broker.listener.name instead",
            ));
        }
    }
    // The implicit single node has no inter-broker traffic: with no PLAINTEXT
    // listener, its first listener stands in.
    let inter_broker_listener_name = match p.get("inter.broker.listener.name") {
        Some(v) => v.trim().to_ascii_uppercase(),
        None if !explicit && !broker_listeners.iter().any(|l| l.name == "PLAINTEXT") => {
            broker_listeners
                .first()
                .map_or_else(|| "PLAINTEXT".to_owned(), |l| l.name.clone())
        }
        None => "PLAINTEXT".to_owned(),
    };
    let controller_protocol = controller_listener_names
        .first()
        .and_then(|name| map.protocol(name, true))
        .unwrap_or(listeners::SecurityProtocol::Plaintext);
    if roles.broker
        && !broker_listeners
            .iter()
            .any(|l| l.name == inter_broker_listener_name)
    {
        let names: Vec<&str> = broker_listeners.iter().map(|l| l.name.as_str()).collect();
        return Err(err(
            "inter.broker.listener.name",
            p,
            format!(
                "{inter_broker_listener_name} is not one of this broker's listeners ({}); set inter.broker.listener.name",
                names.join(", ")
            ),
        ));
    }
    let advertised_listeners = advertised(p, &map, &controller_listener_names, &broker_listeners)?;
    let voters = match p.get("controller.quorum.voters") {
        Some(v) => listeners::parse_voters(v)?,
        None if explicit => Vec::new(),
        None => vec![Voter {
            id: node_id,
            host: String::new(),
            port: 0,
        }],
    };
    let bootstrap_servers: Vec<String> = match p.get("controller.quorum.bootstrap.servers") {
        Some(v) => {
            let servers: Vec<String> = v
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
            for s in &servers {
                listeners::split_host_port("controller.quorum.bootstrap.servers", s)?;
            }
            servers
        }
        None => Vec::new(),
    };
    if explicit && voters.is_empty() {
        if bootstrap_servers.is_empty() {
            return Err(err(
                "controller.quorum.voters",
                p,
                "required when process.roles is set (or, for a broker-only node, controller.quorum.bootstrap.servers)",
            ));
        }
        if roles.controller {
            return Err(err(
                "controller.quorum.bootstrap.servers",
                p,
                "a controller needs the static voter set in controller.quorum.voters (dynamic quorums, KIP-853, are not implemented)",
            ));
        }
    }
    if roles.controller {
        match voters.iter().find(|v| v.id == node_id) {
            None => {
                return Err(err(
                    "controller.quorum.voters",
                    p,
                    format!(
                        "node.id {node_id} has the controller role but is not among the voters"
                    ),
                ))
            }
            Some(own) if explicit => {
                let first = &controller_listener_names[0];
                let bound = controller_listeners.iter().find(|l| &l.name == first);
                if let Some(l) = bound {
                    if l.port != 0 && l.port != own.port {
                        return Err(err(
                            "controller.quorum.voters",
                            p,
                            format!(
                                "voter {node_id} is at port {}, but this node's {first} listener binds port {}",
                                own.port, l.port
                            ),
                        ));
                    }
                }
            }
            Some(_) => {}
        }
    }
    let session: u64 = parse(p, "broker.session.timeout.ms", 3_000)?;
    let heartbeat: u64 = parse(p, "broker.heartbeat.interval.ms", 500)?;
    if heartbeat == 0 || heartbeat >= session {
        return Err(err(
            "broker.heartbeat.interval.ms",
            p,
            format!("must be above 0 and below broker.session.timeout.ms ({session})"),
        ));
    }
    let lag: i64 = parse(p, "replica.lag.time.max.ms", 30_000)?;
    let fetch_wait: i32 = parse(p, "replica.fetch.wait.max.ms", 500)?;
    if lag < 1 || i64::from(fetch_wait) >= lag || fetch_wait < 0 {
        return Err(err(
            "replica.fetch.wait.max.ms",
            p,
            format!("must be 0 or more and below replica.lag.time.max.ms ({lag}), or followers would drop out of the ISR while they wait"),
        ));
    }
    let socket_timeout: u64 = parse(p, "replica.socket.timeout.ms", 30_000)?;
    if socket_timeout < fetch_wait as u64 {
        return Err(err(
            "replica.socket.timeout.ms",
            p,
            format!("must be at least replica.fetch.wait.max.ms ({fetch_wait}), or every long-polling follower fetch would time out"),
        ));
    }
    let election: u64 = parse(p, "controller.quorum.election.timeout.ms", 1_000)?;
    if election < 10 {
        return Err(err(
            "controller.quorum.election.timeout.ms",
            p,
            "must be at least 10",
        ));
    }
    if explicit && !roles.controller && voters.iter().any(|v| v.id == node_id) {
        return Err(err(
            "controller.quorum.voters",
            p,
            format!(
                "node.id {node_id} is a voter, but this node is not a controller (process.roles); give broker-only nodes ids outside the voter set"
            ),
        ));
    }
    let cluster_id = p.get("cluster.id").map(|v| v.trim().to_owned());
    if let Some(id) = &cluster_id {
        if id.is_empty()
            || id.len() > 64
            || !id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(err(
                "cluster.id",
                p,
                "use 1 to 64 characters of [A-Za-z0-9_-] (as kafka-storage.sh random-uuid prints)",
            ));
        }
    }
    let cluster = ClusterConfig {
        explicit,
        node_id,
        roles,
        voters,
        bootstrap_servers,
        controller_listener_names,
        inter_broker_listener_name,
        inter_broker_client: Default::default(),
        controller_protocol,
        controller_client: Default::default(),
        cluster_id,
        broker_session_timeout_ms: session,
        broker_heartbeat_interval_ms: heartbeat,
        controlled_shutdown_enable: parse(p, "controlled.shutdown.enable", true)?,
        election_timeout_ms: election,
        snapshot_max_bytes: parse(
            p,
            "metadata.log.max.record.bytes.between.snapshots",
            20 * 1024 * 1024,
        )?,
        snapshot_interval_ms: parse(p, "metadata.log.max.snapshot.interval.ms", 3_600_000)?,
        replica_lag_time_max_ms: lag,
        replica_fetch_max_bytes: parse(p, "replica.fetch.max.bytes", 1_048_576)?,
        replica_fetch_response_max_bytes: parse(p, "replica.fetch.response.max.bytes", 10_485_760)?,
        replica_fetch_min_bytes: parse(p, "replica.fetch.min.bytes", 1)?,
        replica_fetch_wait_max_ms: fetch_wait,
        replica_fetch_backoff_ms: parse(p, "replica.fetch.backoff.ms", 1_000)?,
        replica_socket_timeout_ms: socket_timeout,
        transaction_state_log_min_isr: parse(
            p,
            "transaction.state.log.min.isr",
            if explicit { 2 } else { 1 },
        )?,
    };
    Ok((cluster, listeners, advertised_listeners))
}

/// The advertised endpoint of every broker listener: `advertised.listeners` where it
/// names the listener, else the listener itself; an empty or wildcard host becomes
/// `localhost` when derived, and is refused when given explicitly (Kafka: "cannot use
/// the nonroutable meta-address 0.0.0.0").
fn advertised(
    p: &BTreeMap<String, String>,
    map: &ProtocolMap,
    controller_names: &[String],
    broker_listeners: &[&Endpoint],
) -> Result<Vec<Endpoint>, ConfigError> {
    const NAME: &str = "advertised.listeners";
    let given = match p.get(NAME) {
        Some(v) => listeners::parse_listeners(NAME, v, map, controller_names)?,
        None => Vec::new(),
    };
    let wildcard = |h: &str| matches!(h, "" | "0.0.0.0" | "::" | "[::]");
    for g in &given {
        if controller_names.contains(&g.name) {
            continue;
        }
        if !broker_listeners.iter().any(|l| l.name == g.name) {
            return Err(err(
                NAME,
                p,
                format!("{} is not a broker listener in listeners", g.name),
            ));
        }
        if wildcard(&g.host) {
            return Err(err(
                NAME,
                p,
                format!(
                    "{} advertises the non-routable address '{}'",
                    g.name, g.host
                ),
            ));
        }
    }
    Ok(broker_listeners
        .iter()
        .map(|l| match given.iter().find(|g| g.name == l.name) {
            Some(g) => g.clone(),
            None => Endpoint {
                host: if wildcard(&l.host) {
                    "localhost".to_owned()
                } else {
                    l.host.clone()
                },
                ..(*l).clone()
            },
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::super::BrokerConfig;
    use std::collections::BTreeMap;

    fn props(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn kraft(extra: &[(&str, &str)]) -> BTreeMap<String, String> {
        let mut p = props(&[
            ("process.roles", "broker,controller"),
            ("node.id", "2"),
            ("controller.quorum.voters", "1@h1:9093,2@h2:9093,3@h3:9093"),
            ("listeners", "PLAINTEXT://:9092,CONTROLLER://:9093"),
            ("advertised.listeners", "PLAINTEXT://h2:9092"),
            ("controller.listener.names", "CONTROLLER"),
        ]);
        for (k, v) in extra {
            if v.is_empty() {
                p.remove(*k);
            } else {
                p.insert(k.to_string(), v.to_string());
            }
        }
        p
    }

    fn error_names(p: BTreeMap<String, String>) -> String {
        match BrokerConfig::from_properties(p) {
            Ok(_) => "ok".into(),
            Err(e) => e.name,
        }
    }

    #[test]
    fn implicit_single_node_is_its_own_voter() {
        let c = BrokerConfig::from_properties(BTreeMap::new()).expect("default");
        assert!(!c.cluster.explicit);
        assert!(c.cluster.roles.broker && c.cluster.roles.controller);
        assert_eq!(c.cluster.voters.len(), 1);
        assert_eq!(c.cluster.voters[0].id, 1);
        assert_eq!(c.listeners[0].bind_addr(), "localhost:9092");
        assert_eq!(c.offsets_topic_replication_factor, 1);
        assert_eq!(c.cluster.transaction_state_log_min_isr, 1);
    }

    #[test]
    fn kraft_node() {
        let c = BrokerConfig::from_properties(kraft(&[])).expect("valid");
        assert_eq!(c.node_id, 2);
        assert_eq!(c.cluster.voters.len(), 3);
        assert_eq!(c.advertised_listeners.len(), 1);
        assert_eq!(c.advertised_listeners[0].host, "h2");
        assert_eq!(c.offsets_topic_replication_factor, 3);
        assert_eq!(c.cluster.transaction_state_log_min_isr, 2);
    }

    #[test]
    fn contradictions_name_the_property() {
        assert_eq!(error_names(kraft(&[("node.id", "")])), "node.id");
        assert_eq!(
            error_names(kraft(&[("node.id", "4")])),
            "controller.quorum.voters"
        );
        assert_eq!(
            error_names(kraft(&[("controller.listener.names", "")])),
            "controller.listener.names"
        );
        assert_eq!(
            error_names(kraft(&[("controller.quorum.voters", "")])),
            "controller.quorum.voters"
        );
        assert_eq!(
            error_names(kraft(&[("process.roles", "brokr")])),
            "process.roles"
        );
        assert_eq!(
            error_names(kraft(&[("process.roles", "broker")])),
            "listeners",
            "a broker-only node must not bind the controller listener"
        );
        assert_eq!(
            error_names(kraft(&[("process.roles", "controller")])),
            "listeners",
            "a controller-only node has only controller listeners"
        );
        assert_eq!(
            error_names(kraft(&[(
                "listeners",
                "PLAINTEXT://:9092,CONTROLLER://:9094"
            )])),
            "controller.quorum.voters",
            "own voter port differs from the controller listener"
        );
        assert_eq!(
            error_names(kraft(&[("inter.broker.listener.name", "INTERNAL")])),
            "inter.broker.listener.name"
        );
        assert_eq!(
            error_names(kraft(&[(
                "advertised.listeners",
                "PLAINTEXT://0.0.0.0:9092"
            )])),
            "advertised.listeners"
        );
        assert_eq!(
            error_names(kraft(&[("broker.heartbeat.interval.ms", "3000")])),
            "broker.heartbeat.interval.ms"
        );
        assert_eq!(
            error_names(kraft(&[("replica.fetch.wait.max.ms", "40000")])),
            "replica.fetch.wait.max.ms"
        );
        assert_eq!(
            error_names(kraft(&[("listeners", "SSL://:9092,CONTROLLER://:9093")])),
            "inter.broker.listener.name",
            "no PLAINTEXT listener for inter-broker traffic"
        );
        assert_eq!(
            error_names(kraft(&[
                ("listeners", "SSL://:9092,CONTROLLER://:9093"),
                ("advertised.listeners", "SSL://h2:9092"),
                ("inter.broker.listener.name", "SSL"),
            ])),
            "ssl.keystore.location",
            "an SSL inter-broker listener needs key material"
        );
        assert_eq!(
            error_names(kraft(&[
                ("listeners", "SASL_PLAINTEXT://:9092,CONTROLLER://:9093"),
                ("advertised.listeners", "SASL_PLAINTEXT://h2:9092"),
                ("inter.broker.listener.name", "SASL_PLAINTEXT"),
                ("sasl.enabled.mechanisms", "SCRAM-SHA-256"),
            ])),
            "sasl.mechanism.inter.broker.protocol",
            "Kafka's default GSSAPI is not implemented"
        );
        assert_eq!(
            error_names(kraft(&[
                ("listeners", "PLAINTEXT://:9092,CONTROLLER://:9093"),
                (
                    "listener.security.protocol.map",
                    "PLAINTEXT:PLAINTEXT,CONTROLLER:SSL"
                ),
            ])),
            "ssl.keystore.location",
            "an SSL controller listener needs key material"
        );
        assert_eq!(
            error_names(kraft(&[
                (
                    "listener.security.protocol.map",
                    "PLAINTEXT:PLAINTEXT,CONTROLLER:SASL_PLAINTEXT"
                ),
                ("sasl.enabled.mechanisms", "PLAIN"),
                (
                    "listener.name.controller.plain.sasl.jaas.config",
                    "x required user_a=\"b\";"
                ),
            ])),
            "sasl.mechanism.controller.protocol",
            "nodes must be told how to log in to a SASL controller listener"
        );
        assert_eq!(
            error_names(kraft(&[
                ("process.roles", "broker"),
                ("node.id", "4"),
                ("listeners", "PLAINTEXT://:9092"),
                (
                    "listener.security.protocol.map",
                    "PLAINTEXT:PLAINTEXT,CONTROLLER:SASL_PLAINTEXT"
                ),
                ("sasl.mechanism.controller.protocol", "PLAIN"),
                (
                    "listener.name.controller.plain.sasl.jaas.config",
                    "x required username=\"b\" password=\"c\";"
                ),
            ])),
            "ok",
            "a broker-only node logs in to SASL controllers with the listener's JAAS options"
        );
        assert_eq!(
            error_names(kraft(&[(
                "listeners",
                "PLAINTEXT://:9092,SSL://:9095,CONTROLLER://:9093"
            )])),
            "ssl.keystore.location",
            "an SSL listener needs a certificate"
        );
        assert_eq!(
            error_names(kraft(&[(
                "listeners",
                "PLAINTEXT://:9092,SASL_PLAINTEXT://:9095,CONTROLLER://:9093"
            )])),
            "sasl.enabled.mechanisms",
            "Kafka's default GSSAPI is not implemented"
        );
        assert_eq!(
            error_names(kraft(&[(
                "listener.name.other.ssl.client.auth",
                "required"
            )])),
            "listener.name.other.ssl.client.auth",
            "no such listener"
        );
        assert_eq!(
            error_names(kraft(&[(
                "authorizer.class.name",
                "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
            )])),
            "inter.broker.listener.name",
            "an authorizer in a cluster needs a dedicated (trusted) inter-broker listener"
        );
        // A TLS setting no listener uses is a warning, not an error.
        assert_eq!(error_names(kraft(&[("ssl.keystore.location", "/k")])), "ok");
        assert_eq!(
            error_names(kraft(&[("log.retention.hourz", "1")])),
            "log.retention.hourz"
        );
        assert_eq!(error_names(kraft(&[("log.dirs", "/a,/b")])), "log.dirs");
        assert_eq!(
            error_names(props(&[("controller.quorum.voters", "1@h:1")])),
            "controller.quorum.voters",
            "voters without process.roles"
        );
        assert_eq!(error_names(kraft(&[("num.io.threads", "8")])), "ok");
    }

    #[test]
    fn broker_only_and_controller_only() {
        let broker = kraft(&[
            ("process.roles", "broker"),
            ("node.id", "4"),
            ("listeners", "PLAINTEXT://:9092"),
        ]);
        let c = BrokerConfig::from_properties(broker).expect("broker-only");
        assert!(c.cluster.roles.broker && !c.cluster.roles.controller);
        assert_eq!(
            error_names(kraft(&[
                ("process.roles", "broker"),
                ("listeners", "PLAINTEXT://:9092"),
            ])),
            "controller.quorum.voters",
            "a broker-only node whose id is a voter"
        );
        assert_eq!(
            error_names(kraft(&[("controller.quorum.bootstrap.servers", "h1:9093")])),
            "controller.quorum.bootstrap.servers"
        );
        assert_eq!(
            error_names(kraft(&[("replica.socket.timeout.ms", "100")])),
            "replica.socket.timeout.ms"
        );
        let controller = kraft(&[
            ("process.roles", "controller"),
            ("listeners", "CONTROLLER://:9093"),
            ("advertised.listeners", ""),
        ]);
        let c = BrokerConfig::from_properties(controller).expect("controller-only");
        assert!(c.advertised_listeners.is_empty());
    }
}
