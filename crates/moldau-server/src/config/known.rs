//! Every property name Moldau accepts, and what it does with it. A name outside this
//! registry stops start-up: a setting the broker does not understand is never silently
//! ignored. Kafka tuning knobs that mean nothing to Moldau's design are accepted with a
//! start-up warning that says why they have no effect; settings for features Moldau
//! lacks (GSSAPI, ZooKeeper) stop start-up, since ignoring them would
//! leave a user believing a protection or mode is on when it is not.

use moldau_metadata::configs::TOPIC_CONFIGS;

/// What Moldau does with a property.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Known {
    /// Read and applied.
    Used,
    /// Accepted; has no effect in Moldau, for the reason given (logged at start).
    NoEffect(&'static str),
    /// Refused at start, for the reason given.
    Refused(&'static str),
}

/// Properties the broker reads (besides the broker-level defaults of topic configs).
const USED: &[&str] = &[
    "advertised.listeners",
    "allow.everyone.if.no.acl.found",
    "authorizer.class.name",
    "auto.create.topics.enable",
    "broker.heartbeat.interval.ms",
    "broker.rack",
    "broker.session.timeout.ms",
    "cluster.id",
    "connection.failed.authentication.delay.ms",
    "connections.max.idle.ms",
    "connections.max.reauth.ms",
    "controlled.shutdown.enable",
    "controller.listener.names",
    "controller.quorum.bootstrap.servers",
    "controller.quorum.election.timeout.ms",
    "controller.quorum.voters",
    "default.replication.factor",
    "fetch.max.bytes",
    "fetch.response.pool.bytes",
    "group.initial.rebalance.delay.ms",
    "group.max.session.timeout.ms",
    "group.max.size",
    "group.min.session.timeout.ms",
    "http.enable",
    "http.kafka.listener.name",
    "http.listener",
    "http.max.body.bytes",
    "inter.broker.listener.name",
    "listener.security.protocol.map",
    "listeners",
    "log.cleaner.backoff.ms",
    "log.cleaner.dedupe.buffer.size",
    "log.cleaner.enable",
    "log.dir",
    "log.dirs",
    "log.flush.offset.checkpoint.interval.ms",
    "log.flush.scheduler.interval.ms",
    "log.retention.check.interval.ms",
    "log.retention.hours",
    "log.retention.minutes",
    "log.roll.hours",
    "max.connection.creation.rate",
    "max.connections",
    "max.connections.per.ip",
    "max.connections.per.ip.overrides",
    "metadata.log.max.record.bytes.between.snapshots",
    "metadata.log.max.snapshot.interval.ms",
    "node.id",
    "num.partitions",
    "offset.metadata.max.bytes",
    "offsets.retention.check.interval.ms",
    "offsets.retention.minutes",
    "offsets.topic.num.partitions",
    "offsets.topic.replication.factor",
    "offsets.topic.segment.bytes",
    "process.roles",
    "producer.id.expiration.check.interval.ms",
    "producer.id.expiration.ms",
    "quota.window.num",
    "quota.window.size.seconds",
    "replica.fetch.backoff.ms",
    "replica.fetch.max.bytes",
    "replica.fetch.min.bytes",
    "replica.fetch.response.max.bytes",
    "replica.fetch.wait.max.ms",
    "replica.lag.time.max.ms",
    "replica.socket.timeout.ms",
    "sasl.enabled.mechanisms",
    "sasl.mechanism.controller.protocol",
    "sasl.mechanism.inter.broker.protocol",
    "sasl.oauthbearer.clock.skew.seconds",
    "sasl.oauthbearer.expected.audience",
    "sasl.oauthbearer.expected.issuer",
    "sasl.oauthbearer.jwks.endpoint.url",
    "sasl.oauthbearer.sub.claim.name",
    "sasl.server.max.receive.size",
    "security.inter.broker.protocol",
    "socket.request.max.bytes",
    "super.users",
    "transaction.abort.timed.out.transaction.cleanup.interval.ms",
    "transaction.max.timeout.ms",
    "transaction.remove.expired.transaction.cleanup.interval.ms",
    "transaction.state.log.min.isr",
    "transaction.state.log.num.partitions",
    "transaction.state.log.replication.factor",
    "transaction.state.log.segment.bytes",
    "transactional.id.expiration.ms",
];

const THREADS: &str =
    "Moldau runs one async runtime with a thread per core; Kafka's thread pools do not exist";

/// Kafka properties accepted without effect, and why.
const JWKS_FILE: &str = "the JWKS is read from a file, re-read whenever it changes";

const NO_EFFECT: &[(&str, &str)] = &[
    ("sasl.oauthbearer.jwks.endpoint.refresh.ms", JWKS_FILE),
    ("sasl.oauthbearer.jwks.endpoint.retry.backoff.ms", JWKS_FILE),
    (
        "sasl.oauthbearer.jwks.endpoint.retry.backoff.max.ms",
        JWKS_FILE,
    ),
    (
        "sasl.oauthbearer.scope.claim.name",
        "no scope is required of a token, as with Kafka's validator",
    ),
    ("background.threads", THREADS),
    ("num.io.threads", THREADS),
    ("num.network.threads", THREADS),
    ("num.recovery.threads.per.data.dir", THREADS),
    (
        "num.replica.fetchers",
        "Moldau runs one replica fetcher per source broker",
    ),
    (
        "socket.receive.buffer.bytes",
        "Moldau leaves socket buffers to the kernel's autotuning",
    ),
    (
        "socket.send.buffer.bytes",
        "Moldau leaves socket buffers to the kernel's autotuning",
    ),
    (
        "controller.quorum.fetch.timeout.ms",
        "followers of the metadata quorum time out after controller.quorum.election.timeout.ms",
    ),
    (
        "controller.quorum.election.backoff.max.ms",
        "Moldau's Raft library randomises election backoff itself",
    ),
    (
        "auto.leader.rebalance.enable",
        "preferred-leader rebalancing is not implemented; leaders move only on failure or shutdown",
    ),
    (
        "leader.imbalance.check.interval.seconds",
        "preferred-leader rebalancing is not implemented",
    ),
    (
        "leader.imbalance.per.broker.percentage",
        "preferred-leader rebalancing is not implemented",
    ),
    (
        "group.coordinator.rebalance.protocols",
        "Moldau serves the classic group protocol only",
    ),
];

/// TLS settings of a listener (bare or under `listener.name.<listener>.`), read by
/// [`super::security`].
const SSL_USED: &[&str] = &[
    "ssl.cipher.suites",
    "ssl.client.auth",
    "ssl.enabled.protocols",
    "ssl.endpoint.identification.algorithm",
    "ssl.keystore.certificate.chain",
    "ssl.keystore.key",
    "ssl.keystore.location",
    "ssl.keystore.type",
    "ssl.principal.mapping.rules",
    "ssl.protocol",
    "ssl.truststore.certificates",
    "ssl.truststore.location",
    "ssl.truststore.type",
];

const JAVA_TLS: &str = "a Java TLS implementation detail; Moldau's TLS is rustls";
/// Settings accepted under `listener.name.<listener>.`.
fn classify_listener_setting(rest: &str) -> Option<Known> {
    if SSL_USED.contains(&rest)
        || rest == "sasl.enabled.mechanisms"
        || rest == "plain.sasl.jaas.config"
        || rest == "scram-sha-256.sasl.jaas.config"
        || rest == "scram-sha-512.sasl.jaas.config"
        || rest == "max.connection.creation.rate"
        || rest == "oauthbearer.sasl.jaas.config"
        || rest == "oauthbearer.sasl.server.callback.handler.class"
    {
        return Some(Known::Used);
    }
    if rest.ends_with(".sasl.jaas.config") || rest.starts_with("sasl.") || rest.contains(".sasl.") {
        return Some(Known::Refused(
            "only the PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 and OAUTHBEARER (signed JWTs \
             checked against a JWKS file) mechanisms are implemented (no GSSAPI, no custom \
             callback handlers)",
        ));
    }
    classify(rest).filter(|k| *k != Known::Used || rest.starts_with("ssl."))
}

/// Whether Moldau knows `name`, and what it does with it; `None` for an unknown name.
pub fn classify(name: &str) -> Option<Known> {
    if USED.contains(&name)
        || SSL_USED.contains(&name)
        || TOPIC_CONFIGS.iter().any(|d| d.broker_key == name)
    {
        return Some(Known::Used);
    }
    if let Some((_, why)) = NO_EFFECT.iter().find(|(n, _)| *n == name) {
        return Some(Known::NoEffect(why));
    }
    if let Some(rest) = name.strip_prefix("listener.name.") {
        let (_listener, setting) = rest.split_once('.')?;
        return classify_listener_setting(setting);
    }
    if let Some(rest) = name.strip_prefix("http.") {
        if rest == "ssl.principal.mapping.rules" {
            return Some(Known::Refused(
                "HTTP requests act as their HTTP Basic user: client certificates are checked \
                 (http.ssl.client.auth) but name no principal",
            ));
        }
        if rest.starts_with("ssl.") {
            return classify(rest);
        }
    }
    match name {
        "ssl.keymanager.algorithm"
        | "ssl.trustmanager.algorithm"
        | "ssl.secure.random.implementation" => return Some(Known::NoEffect(JAVA_TLS)),
        "ssl.key.password" | "ssl.keystore.password" | "ssl.truststore.password" => {
            return Some(Known::Refused(
                "Moldau reads unencrypted PEM keys only (no password-protected keys or stores): \
                 decrypt the key (openssl pkey -in key.pem -out plain.pem) and protect the file instead",
            ))
        }
        "sasl.jaas.config" => {
            return Some(Known::Refused(
                "a broker takes JAAS configs per listener and mechanism: \
                 listener.name.<listener>.<mechanism>.sasl.jaas.config",
            ))
        }
        _ => {}
    }
    let refused = [
        (
            "ssl.",
            "this TLS setting is not implemented (PEM key and trust stores, client auth, \
             protocols, cipher suites and principal mapping rules are)",
        ),
        (
            "sasl.",
            "only the PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 and OAUTHBEARER (signed JWTs \
             checked against a JWKS file) mechanisms are implemented (no GSSAPI, no custom \
             callback handlers)",
        ),
        (
            "principal.builder.class",
            "principals are built as Kafka's DefaultKafkaPrincipalBuilder does; custom builders are Java classes",
        ),
        (
            "zookeeper.",
            "Moldau has no ZooKeeper mode: its metadata lives in a Raft quorum (process.roles, controller.quorum.voters)",
        ),
        (
            "metadata.log.dir",
            "the metadata log lives in log.dirs with the partitions",
        ),
    ];
    refused
        .iter()
        .find(|(prefix, _)| name.starts_with(prefix))
        .map(|(_, why)| Known::Refused(why))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        assert_eq!(classify("node.id"), Some(Known::Used));
        assert_eq!(classify("log.retention.ms"), Some(Known::Used));
        assert!(matches!(
            classify("num.io.threads"),
            Some(Known::NoEffect(_))
        ));
        assert_eq!(classify("ssl.keystore.location"), Some(Known::Used));
        assert_eq!(
            classify("listener.name.sasl_ssl.plain.sasl.jaas.config"),
            Some(Known::Used)
        );
        assert_eq!(
            classify("listener.name.x.ssl.client.auth"),
            Some(Known::Used)
        );
        assert!(matches!(
            classify("listener.name.x.gssapi.sasl.jaas.config"),
            Some(Known::Refused(_))
        ));
        assert!(matches!(
            classify("listener.name.x.node.id"),
            None | Some(Known::Refused(_))
        ));
        assert!(matches!(
            classify("ssl.key.password"),
            Some(Known::Refused(_))
        ));
        assert_eq!(classify("authorizer.class.name"), Some(Known::Used));
        assert_eq!(classify("log.retention.hourz"), None);
        let mut sorted = USED.to_vec();
        sorted.sort_unstable();
        assert_eq!(sorted, USED, "keep USED sorted");
    }
}
