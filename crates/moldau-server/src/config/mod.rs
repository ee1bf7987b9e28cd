//! Broker configuration under Kafka's own property names (Kafka docs, "Broker Configs").
//!
//! Built from a flat `name → value` map that the binary assembles from a
//! `server.properties` file, `MOLDAU_*` environment variables and flags. Every name must
//! be one Moldau knows ([`known`]); an unknown name, a value that does not parse, or a
//! combination that cannot work (see [`ClusterConfig`]) stops start-up with an error
//! naming the property.

mod cluster;
pub mod known;
pub mod listeners;
pub mod security;

pub use cluster::{ClusterConfig, Roles};
pub use listeners::{Endpoint, SecurityProtocol, Voter};

use moldau_metadata::configs::{self, TOPIC_CONFIGS};
use moldau_protocol::batch::TimestampType;
use moldau_storage::LogConfig;
use std::collections::BTreeMap;
use std::path::PathBuf;
use thiserror::Error;

/// A property with a value that does not parse.
#[derive(Debug, Error)]
#[error("invalid value '{value}' for broker property {name}: {reason}")]
pub struct ConfigError {
    /// Property name.
    pub name: String,
    /// Offending value.
    pub value: String,
    /// What was expected.
    pub reason: String,
}

impl ConfigError {
    /// An error about `name`'s `value`. The value of a setting that holds a secret
    /// (passwords, private keys, JAAS configs) is shown as `(hidden)`.
    pub fn new(name: &str, value: &str, reason: impl Into<String>) -> Self {
        Self {
            name: name.to_owned(),
            value: if is_secret(name) {
                "(hidden)".to_owned()
            } else {
                value.to_owned()
            },
            reason: reason.into(),
        }
    }
}

/// Every property as given. Reads as the map it holds; its `Debug` form hides the
/// values of secrets ([`is_secret`]), so printing a config never prints a password.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Properties(pub BTreeMap<String, String>);

impl std::ops::Deref for Properties {
    type Target = BTreeMap<String, String>;

    fn deref(&self) -> &BTreeMap<String, String> {
        &self.0
    }
}

impl std::fmt::Debug for Properties {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(k, v)| {
                let shown = if is_secret(k) { "(hidden)" } else { v.as_str() };
                (k, shown)
            }))
            .finish()
    }
}

/// Whether a setting's value is a secret, never to be echoed (errors, DescribeConfigs).
pub fn is_secret(name: &str) -> bool {
    ["password", "secret", "sasl.jaas.config", ".key"]
        .iter()
        .any(|m| name.contains(m))
}

/// The broker's resolved configuration.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// `node.id` (default 1 for the implicit single node; required with `process.roles`).
    pub node_id: i32,
    /// `listeners`: every listener this node binds, in the order given (default
    /// `PLAINTEXT://localhost:9092`). Controller listeners are among them.
    pub listeners: Vec<Endpoint>,
    /// `advertised.listeners` resolved against `listeners`: one entry per broker
    /// (non-controller) listener, in `listeners` order; an empty or wildcard bind host
    /// is advertised as `localhost`, and port 0 is replaced by the bound port at start.
    pub advertised_listeners: Vec<Endpoint>,
    /// Roles, quorum and replication settings ([`ClusterConfig`]).
    pub cluster: ClusterConfig,
    /// `log.dirs` (or `log.dir`): the one data directory (default `./moldau-data`).
    pub log_dir: PathBuf,
    /// `num.partitions` for auto-created topics and CreateTopics with -1 (default 1).
    pub num_partitions: i32,
    /// `default.replication.factor` (default 1).
    pub default_replication_factor: i16,
    /// `auto.create.topics.enable` (default true).
    pub auto_create_topics_enable: bool,
    /// `socket.request.max.bytes` (default 104857600).
    pub socket_request_max_bytes: usize,
    /// `fetch.max.bytes`: most record bytes one Fetch response carries, whatever the
    /// request asks (default 57671680, 55 MiB, as Kafka).
    pub fetch_max_bytes: usize,
    /// `fetch.response.pool.bytes` (Moldau's; default 268435456, 256 MiB): record bytes
    /// that Fetch responses, of consumers and followers together, may hold in memory
    /// from the read until the response is written to its socket. A fetch reads no more
    /// than the pool has left; with the pool empty it still gets one batch (KIP-74's
    /// first-batch rule), so no client is stalled by others that stopped reading, and
    /// what the broker holds is at most this plus one batch per connection.
    pub fetch_response_pool_bytes: usize,
    /// `max.connections` (default unlimited): client connections held at once across
    /// the broker's listeners; at the limit the broker accepts no more until one closes
    /// (they wait in the kernel's backlog), as Kafka does (KIP-402). Connections on the
    /// inter-broker listener are not counted, so replication goes on.
    pub max_connections: usize,
    /// `max.connections.per.ip` (default unlimited) and
    /// `max.connections.per.ip.overrides` (`ip:count,…`): connections held from one IP
    /// address; one more is closed as soon as it is accepted. Inter-broker connections
    /// are not counted.
    pub max_connections_per_ip: usize,
    /// Per-address exceptions to [`BrokerConfig::max_connections_per_ip`].
    pub max_connections_per_ip_overrides: BTreeMap<std::net::IpAddr, usize>,
    /// `max.connection.creation.rate` (default unlimited; connections per second,
    /// KIP-612): new connections across the broker's listeners, the inter-broker one
    /// excepted when it is a listener of its own. Over it, a listener accepts its next
    /// connection only after the throttle time (at most one quota window; the connection
    /// just accepted is served), so clients wait in the kernel's backlog, as Kafka's
    /// acceptor does.
    pub max_connection_creation_rate: usize,
    /// `listener.name.<listener>.max.connection.creation.rate`: the same limit for one
    /// listener (the inter-broker one too), by upper-case listener name.
    pub listener_connection_creation_rate: BTreeMap<String, usize>,
    /// `connections.max.idle.ms` (default 600000, 10 min): a connection that sent no
    /// request for this long and has none in flight is closed.
    pub connections_max_idle_ms: u64,
    /// `log.retention.check.interval.ms` (default 300000).
    pub retention_check_interval_ms: u64,
    /// `log.flush.scheduler.interval.ms` (default 1000 here; Kafka's is Long.MAX).
    pub flush_scheduler_interval_ms: u64,
    /// `log.flush.offset.checkpoint.interval.ms` (default 60000).
    pub checkpoint_interval_ms: u64,
    /// `broker.rack`.
    pub rack: Option<String>,
    /// Properties that were accepted but have no effect, each with the reason
    /// ([`known::Known::NoEffect`]); the binary logs them at start.
    pub no_effect: Vec<String>,
    /// `offsets.topic.num.partitions`: partitions of `__consumer_offsets` when it is
    /// created. Default 16 here (Kafka's is 50): a small node pays for every partition
    /// with a directory, open files and a coordinator shard, and 16 still spreads
    /// groups over enough shards to use every core.
    pub offsets_topic_num_partitions: i32,
    /// `offsets.topic.replication.factor` (default 1 here; Kafka's is 3, which a single
    /// node cannot satisfy).
    pub offsets_topic_replication_factor: i16,
    /// `offsets.topic.segment.bytes` (default 104857600).
    pub offsets_topic_segment_bytes: i64,
    /// `log.cleaner.enable` (default true): run the log cleaner for compacted topics.
    pub log_cleaner_enable: bool,
    /// `log.cleaner.backoff.ms` (default 15000): pause between cleaner passes.
    pub log_cleaner_backoff_ms: u64,
    /// `log.cleaner.dedupe.buffer.size` (default 134217728): most bytes the key map of
    /// one clean may use; it grows only as keys arrive.
    pub log_cleaner_dedupe_buffer_size: usize,
    /// Group coordinator settings (`group.*`, `offsets.retention.*`,
    /// `offset.metadata.max.bytes`).
    pub group: moldau_coordinator::GroupConfig,
    /// `transaction.state.log.num.partitions`: partitions of `__transaction_state` when
    /// it is created. Default 16 here (Kafka's is 50), for the reason given at
    /// `offsets_topic_num_partitions`.
    pub transaction_state_log_num_partitions: i32,
    /// `transaction.state.log.replication.factor` (default 1 here; Kafka's is 3).
    pub transaction_state_log_replication_factor: i16,
    /// `transaction.state.log.segment.bytes` (default 104857600).
    pub transaction_state_log_segment_bytes: i64,
    /// `producer.id.expiration.ms` (default 86400000, one day): how long a partition
    /// keeps an idle producer's state (sequence numbers) after its last write (KIP-854).
    pub producer_id_expiration_ms: i64,
    /// `producer.id.expiration.check.interval.ms` (default 600000): how often idle
    /// producer state is expired.
    pub producer_id_expiration_check_interval_ms: u64,
    /// Transaction coordinator settings (`transaction.*`, `transactional.id.*`).
    pub txn: moldau_coordinator::txn::TxnConfig,
    /// TLS and SASL of each listener, by listener name ([`security`]).
    pub security: BTreeMap<String, security::ListenerSecurity>,
    /// Broker-wide authentication settings (`sasl.server.max.receive.size`,
    /// `connection.failed.authentication.delay.ms`, `connections.max.reauth.ms`).
    pub auth: security::AuthSettings,
    /// `quota.window.num` (default 11): windows a quota's rate is measured over.
    pub quota_window_num: usize,
    /// `quota.window.size.seconds` (default 1): length of one quota window.
    pub quota_window_size_seconds: u64,
    /// The ACL authorizer (`authorizer.class.name`), `None` when off.
    pub authorizer: Option<security::AuthorizerSettings>,
    /// The listener the HTTP API reaches this broker through
    /// ([`security::LocalAccess`]; `http.kafka.listener.name`, else chosen); `None` when
    /// no listener fits or the node is not a broker.
    pub local_access: Option<security::LocalAccess>,
    /// Every property as given, for DescribeConfigs.
    pub properties: Properties,
}

/// Per-topic settings the produce path needs besides the [`LogConfig`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicSettings {
    /// `max.message.bytes`: largest batch accepted, bytes.
    pub max_message_bytes: usize,
    /// `message.timestamp.type`.
    pub timestamp_type: TimestampType,
    /// `message.timestamp.before.max.ms`: how far a CreateTime may lie in the past, ms.
    pub timestamp_before_max_ms: i64,
    /// `message.timestamp.after.max.ms`: how far a CreateTime may lie in the future, ms.
    pub timestamp_after_max_ms: i64,
    /// `cleanup.policy` includes `compact`: every record needs a key.
    pub compacted: bool,
    /// `min.insync.replicas`: the smallest ISR an `acks=-1` produce is accepted with.
    pub min_insync_replicas: usize,
}

fn parse<T: std::str::FromStr>(
    props: &BTreeMap<String, String>,
    name: &str,
    default: T,
) -> Result<T, ConfigError> {
    match props.get(name) {
        None => Ok(default),
        Some(v) => v.trim().parse().map_err(|_| ConfigError {
            name: name.into(),
            value: v.clone(),
            reason: format!("expected a {}", std::any::type_name::<T>()),
        }),
    }
}

/// A connection limit: a positive count, unlimited (`i32::MAX`, Kafka's default) when
/// not given.
/// `fetch.response.pool.bytes`: 1 byte to 2^31 - 1 (a semaphore's permits).
fn fetch_pool(props: &BTreeMap<String, String>) -> Result<usize, ConfigError> {
    let name = "fetch.response.pool.bytes";
    let n: usize = parse(props, name, 268_435_456)?;
    if n == 0 || n > i32::MAX as usize {
        return Err(ConfigError::new(
            name,
            &n.to_string(),
            "must be between 1 and 2147483647 bytes",
        ));
    }
    Ok(n)
}

fn positive(props: &BTreeMap<String, String>, name: &str) -> Result<usize, ConfigError> {
    let n: usize = parse(props, name, i32::MAX as usize)?;
    if n == 0 {
        return Err(ConfigError::new(
            name,
            "0",
            "a limit of 0 would refuse every connection",
        ));
    }
    Ok(n)
}

/// Every `listener.name.<listener>.max.connection.creation.rate`, by upper-case listener
/// name; a name that is not one of `listeners`, or names a controller listener (whose
/// connections come from the quorum's voters and brokers only), stops start-up.
fn listener_connection_rates(
    props: &BTreeMap<String, String>,
    listeners: &[Endpoint],
    is_controller: impl Fn(&str) -> bool,
) -> Result<BTreeMap<String, usize>, ConfigError> {
    let mut rates = BTreeMap::new();
    for key in props.keys() {
        let Some(listener) = key
            .strip_prefix("listener.name.")
            .and_then(|rest| rest.strip_suffix(".max.connection.creation.rate"))
        else {
            continue;
        };
        let name = listener.to_ascii_uppercase();
        if !listeners.iter().any(|l| l.name == name) {
            return Err(ConfigError::new(key, listener, "no listener has this name"));
        }
        if is_controller(&name) {
            return Err(ConfigError::new(
                key,
                listener,
                "a controller listener is not limited (only brokers and voters connect to it)",
            ));
        }
        rates.insert(name, positive(props, key)?);
    }
    Ok(rates)
}

/// `max.connections.per.ip.overrides`: `ip:count` pairs, comma-separated (IPv6 as
/// `[addr]:count`). Kafka also takes host names; Moldau takes addresses only, and says so.
fn per_ip_overrides(
    props: &BTreeMap<String, String>,
) -> Result<BTreeMap<std::net::IpAddr, usize>, ConfigError> {
    const NAME: &str = "max.connections.per.ip.overrides";
    let Some(v) = props.get(NAME) else {
        return Ok(BTreeMap::new());
    };
    let mut out = BTreeMap::new();
    for entry in v.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let bad = |why: &str| ConfigError::new(NAME, v, format!("{entry}: {why}"));
        let (host, count) = entry
            .rsplit_once(':')
            .ok_or_else(|| bad("expected ip:count"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let ip: std::net::IpAddr = host
            .parse()
            .map_err(|_| bad("give an IP address (host names are not resolved here)"))?;
        let count: usize = count
            .trim()
            .parse()
            .map_err(|_| bad("the count is not a number"))?;
        out.insert(ip, count);
    }
    Ok(out)
}

impl BrokerConfig {
    /// Resolves the configuration from properties. Errors name the bad property:
    /// unknown names, values that do not parse, contradictory combinations.
    pub fn from_properties(properties: BTreeMap<String, String>) -> Result<Self, ConfigError> {
        let p = &properties;
        let mut no_effect = Vec::new();
        for name in p.keys() {
            match known::classify(name) {
                Some(known::Known::Used) => {}
                Some(known::Known::NoEffect(why)) => no_effect.push(format!("{name}: {why}")),
                Some(known::Known::Refused(why)) => {
                    return Err(ConfigError::new(name, &p[name], why));
                }
                None => {
                    return Err(ConfigError::new(
                        name,
                        &p[name],
                        "unknown property: Moldau stops rather than ignore a setting it \
                         does not understand (check the spelling; Moldau uses Kafka's names)",
                    ));
                }
            }
        }
        let log_dir =
            match p.get("log.dirs").or_else(|| p.get("log.dir")) {
                None => PathBuf::from("./moldau-data"),
                Some(v) => {
                    let dirs: Vec<&str> = v
                        .split(',')
                        .map(str::trim)
                        .filter(|d| !d.is_empty())
                        .collect();
                    match dirs.as_slice() {
                        [one] => PathBuf::from(one),
                        _ => return Err(ConfigError::new(
                            "log.dirs",
                            v,
                            "give exactly one directory: Moldau keeps one data directory per node",
                        )),
                    }
                }
            };
        let (mut cluster, listeners, advertised_listeners) = cluster::resolve(p)?;
        let controller = cluster
            .controller_listener_names
            .first()
            .map(|name| (name.as_str(), cluster.controller_protocol));
        let (security, auth, unused) = security::resolve(p, &listeners, controller)?;
        if cluster.explicit && cluster.roles.broker {
            cluster.inter_broker_client =
                security::inter_broker_client(p, &cluster.inter_broker_listener_name, &security)?;
        }
        if let Some(name) = cluster.controller_listener_names.first() {
            cluster.controller_client =
                security::controller_client(p, name, cluster.controller_protocol)?;
        }
        no_effect.extend(unused);
        let authorizer = security::authorizer(p, &mut no_effect)?;
        let plaintext_inter_broker = security
            .get(&cluster.inter_broker_listener_name)
            .is_none_or(|s| s.protocol == SecurityProtocol::Plaintext);
        if authorizer.is_some() && cluster.explicit && plaintext_inter_broker {
            // Brokers reach each other over the PLAINTEXT inter-broker listener without
            // authenticating (no TLS or SASL between brokers yet): connections there are
            // trusted as brokers, so clients must have listeners of their own.
            let ib = &cluster.inter_broker_listener_name;
            let client_listeners = listeners
                .iter()
                .filter(|l| &l.name != ib && !cluster.is_controller_listener(&l.name))
                .count();
            if cluster.roles.broker && client_listeners == 0 {
                return Err(ConfigError::new(
                    "inter.broker.listener.name",
                    ib,
                    "with an authorizer in a cluster, give inter-broker traffic a listener of \
                     its own: connections on it are trusted as brokers (Moldau has no TLS or \
                     SASL between brokers yet), so clients need another listener and the \
                     inter-broker one must stay on a private network",
                ));
            }
        }
        let local_access = if cluster.roles.broker {
            let trusted_inter_broker =
                authorizer.is_some() && cluster.explicit && plaintext_inter_broker;
            security::local_access(p, &listeners, &security, |name| {
                cluster.is_controller_listener(name)
                    || (trusted_inter_broker && name == cluster.inter_broker_listener_name)
            })?
        } else {
            None
        };
        let internal_rf = if cluster.explicit { 3 } else { 1 };
        let creation_rates =
            listener_connection_rates(p, &listeners, |name| cluster.is_controller_listener(name))?;
        let config = Self {
            node_id: cluster.node_id,
            listeners,
            advertised_listeners,
            log_dir,
            num_partitions: parse(p, "num.partitions", 1)?,
            default_replication_factor: parse(p, "default.replication.factor", 1)?,
            auto_create_topics_enable: parse(p, "auto.create.topics.enable", true)?,
            socket_request_max_bytes: parse(p, "socket.request.max.bytes", 104_857_600)?,
            fetch_max_bytes: parse(p, "fetch.max.bytes", 57_671_680)?,
            fetch_response_pool_bytes: fetch_pool(p)?,
            max_connections: positive(p, "max.connections")?,
            max_connections_per_ip: positive(p, "max.connections.per.ip")?,
            max_connections_per_ip_overrides: per_ip_overrides(p)?,
            max_connection_creation_rate: positive(p, "max.connection.creation.rate")?,
            listener_connection_creation_rate: creation_rates,
            connections_max_idle_ms: parse(p, "connections.max.idle.ms", 600_000)?,
            retention_check_interval_ms: parse(p, "log.retention.check.interval.ms", 300_000)?,
            flush_scheduler_interval_ms: parse(p, "log.flush.scheduler.interval.ms", 1_000)?,
            checkpoint_interval_ms: parse(p, "log.flush.offset.checkpoint.interval.ms", 60_000)?,
            rack: p.get("broker.rack").cloned(),
            no_effect,
            security,
            auth,
            authorizer,
            local_access,
            quota_window_num: parse::<usize>(p, "quota.window.num", 11)?.max(2),
            quota_window_size_seconds: parse::<u64>(p, "quota.window.size.seconds", 1)?.max(1),
            offsets_topic_num_partitions: parse(p, "offsets.topic.num.partitions", 16)?.max(1),
            offsets_topic_replication_factor: parse(
                p,
                "offsets.topic.replication.factor",
                internal_rf,
            )?,
            offsets_topic_segment_bytes: parse(p, "offsets.topic.segment.bytes", 104_857_600)?,
            log_cleaner_enable: parse(p, "log.cleaner.enable", true)?,
            log_cleaner_backoff_ms: parse(p, "log.cleaner.backoff.ms", 15_000)?,
            log_cleaner_dedupe_buffer_size: parse(
                p,
                "log.cleaner.dedupe.buffer.size",
                134_217_728,
            )?,
            group: moldau_coordinator::GroupConfig {
                min_session_timeout_ms: parse(p, "group.min.session.timeout.ms", 6_000)?,
                max_session_timeout_ms: parse(p, "group.max.session.timeout.ms", 1_800_000)?,
                initial_rebalance_delay_ms: parse(p, "group.initial.rebalance.delay.ms", 3_000)?,
                max_size: parse(p, "group.max.size", i32::MAX as usize)?,
                offsets_retention_ms: parse::<i64>(p, "offsets.retention.minutes", 10_080)?
                    .saturating_mul(60_000),
                offsets_retention_check_interval_ms: parse(
                    p,
                    "offsets.retention.check.interval.ms",
                    600_000,
                )?,
                offset_metadata_max_bytes: parse(p, "offset.metadata.max.bytes", 4096)?,
            },
            transaction_state_log_num_partitions: parse(
                p,
                "transaction.state.log.num.partitions",
                16,
            )?
            .max(1),
            transaction_state_log_replication_factor: parse(
                p,
                "transaction.state.log.replication.factor",
                internal_rf,
            )?,
            transaction_state_log_segment_bytes: parse(
                p,
                "transaction.state.log.segment.bytes",
                104_857_600,
            )?,
            producer_id_expiration_ms: parse(p, "producer.id.expiration.ms", 86_400_000)?,
            producer_id_expiration_check_interval_ms: parse(
                p,
                "producer.id.expiration.check.interval.ms",
                600_000,
            )?,
            txn: moldau_coordinator::txn::TxnConfig {
                transaction_max_timeout_ms: parse(p, "transaction.max.timeout.ms", 900_000)?,
                transactional_id_expiration_ms: parse(
                    p,
                    "transactional.id.expiration.ms",
                    604_800_000,
                )?,
                abort_timed_out_transaction_cleanup_interval_ms: parse(
                    p,
                    "transaction.abort.timed.out.transaction.cleanup.interval.ms",
                    10_000,
                )?,
                remove_expired_transactional_ids_interval_ms: parse(
                    p,
                    "transaction.remove.expired.transaction.cleanup.interval.ms",
                    3_600_000,
                )?,
            },
            properties: Properties::default(),
            cluster,
        };
        let mut config = config;
        config.properties = Properties(properties);
        // Fail at start, not at the first topic, on a bad log default.
        config.resolve_topic(&BTreeMap::new())?;
        Ok(config)
    }

    /// The effective value of topic config `name` for a topic with `overrides`: the
    /// override, else the broker property (with Kafka's hours/minutes fallbacks for
    /// retention and roll), else Kafka's default. Returns the value and Kafka's
    /// `config_source` (1 topic, 5 static broker, 5… default 5 is reported as 5).
    pub fn topic_value(
        &self,
        overrides: &BTreeMap<String, String>,
        name: &str,
    ) -> Option<(String, i8)> {
        let def = configs::topic_config(name)?;
        if let Some(v) = overrides.get(name) {
            return Some((v.clone(), 1));
        }
        if let Some(v) = self.properties.get(def.broker_key) {
            return Some((v.clone(), 4));
        }
        let scaled = |key: &str, factor: i64| {
            self.properties
                .get(key)
                .and_then(|v| v.trim().parse::<i64>().ok())
                .map(|n| if n < 0 { -1 } else { n.saturating_mul(factor) }.to_string())
        };
        let fallback = match name {
            "retention.ms" => scaled("log.retention.minutes", 60_000)
                .or_else(|| scaled("log.retention.hours", 3_600_000)),
            "segment.ms" => scaled("log.roll.hours", 3_600_000),
            _ => None,
        };
        if let Some(v) = fallback {
            return Some((v, 4));
        }
        Some((def.default.to_owned(), 5))
    }

    /// Resolves the [`LogConfig`] and [`TopicSettings`] of a topic with `overrides`.
    pub fn resolve_topic(
        &self,
        overrides: &BTreeMap<String, String>,
    ) -> Result<(LogConfig, TopicSettings), ConfigError> {
        let get = |name: &str| -> Result<i64, ConfigError> {
            let (v, _) = self.topic_value(overrides, name).unwrap_or_default();
            v.trim().parse::<i64>().map_err(|_| ConfigError {
                name: name.into(),
                value: v,
                reason: "expected an integer".into(),
            })
        };
        let text = |name: &str| {
            self.topic_value(overrides, name)
                .map(|v| v.0)
                .unwrap_or_default()
        };
        let non_negative = |n: i64| n.max(0) as u64;
        let log = LogConfig {
            segment_bytes: non_negative(get("segment.bytes")?),
            segment_ms: get("segment.ms")?,
            segment_index_bytes: non_negative(get("segment.index.bytes")?),
            index_interval_bytes: non_negative(get("index.interval.bytes")?),
            retention_ms: get("retention.ms")?,
            retention_bytes: get("retention.bytes")?,
            flush_interval_messages: non_negative(get("flush.messages")?),
            flush_interval_ms: get("flush.ms")?,
            cleanup_policy: text("cleanup.policy").parse().map_err(
                |e: moldau_storage::InvalidCleanupPolicy| ConfigError {
                    name: "cleanup.policy".into(),
                    value: e.0.clone(),
                    reason: e.to_string(),
                },
            )?,
            delete_retention_ms: get("delete.retention.ms")?,
            min_cleanable_dirty_ratio: text("min.cleanable.dirty.ratio")
                .trim()
                .parse::<f64>()
                .map_err(|_| ConfigError {
                    name: "min.cleanable.dirty.ratio".into(),
                    value: text("min.cleanable.dirty.ratio"),
                    reason: "expected a number".into(),
                })?,
            min_compaction_lag_ms: get("min.compaction.lag.ms")?,
            max_compaction_lag_ms: get("max.compaction.lag.ms")?,
        };
        let timestamp_type = match self
            .topic_value(overrides, "message.timestamp.type")
            .map(|v| v.0)
            .as_deref()
        {
            Some("LogAppendTime") => TimestampType::LogAppendTime,
            _ => TimestampType::CreateTime,
        };
        let settings = TopicSettings {
            max_message_bytes: non_negative(get("max.message.bytes")?) as usize,
            timestamp_type,
            timestamp_before_max_ms: get("message.timestamp.before.max.ms")?,
            timestamp_after_max_ms: get("message.timestamp.after.max.ms")?,
            compacted: log.cleanup_policy.compacts(),
            min_insync_replicas: get("min.insync.replicas")?.max(1) as usize,
        };
        Ok((log, settings))
    }

    /// Names of every topic config (for DescribeConfigs on a topic).
    pub fn topic_config_names() -> impl Iterator<Item = &'static str> {
        TOPIC_CONFIGS.iter().map(|d| d.name)
    }
}

impl Default for BrokerConfig {
    fn default() -> Self {
        // The empty map always resolves.
        Self::from_properties(BTreeMap::new()).unwrap_or_else(|e| unreachable!("{e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_names_and_fallbacks() {
        let props = BTreeMap::from([
            (
                "listeners".to_owned(),
                "PLAINTEXT://0.0.0.0:19092".to_owned(),
            ),
            ("log.retention.hours".to_owned(), "2".to_owned()),
            ("message.max.bytes".to_owned(), "2000".to_owned()),
        ]);
        let c = BrokerConfig::from_properties(props).expect("valid");
        assert_eq!(c.listeners[0].bind_addr(), "0.0.0.0:19092");
        assert_eq!(c.advertised_listeners[0].host, "localhost");
        let (log, settings) = c.resolve_topic(&BTreeMap::new()).expect("resolve");
        assert_eq!(log.retention_ms, 7_200_000);
        assert_eq!(settings.max_message_bytes, 2000);
        let overrides = BTreeMap::from([("retention.ms".to_owned(), "5".to_owned())]);
        assert_eq!(
            c.resolve_topic(&overrides).expect("resolve").0.retention_ms,
            5
        );
        let bad = BTreeMap::from([("num.partitions".to_owned(), "many".to_owned())]);
        assert!(BrokerConfig::from_properties(bad).is_err());
    }
}
