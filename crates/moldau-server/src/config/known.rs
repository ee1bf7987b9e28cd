//! Every property name Moldau accepts, and what it does with it. A name outside this
//! registry stops start-up: a setting the broker does not understand is never silently
//! ignored. Kafka tuning knobs that mean nothing to Moldau's design are accepted with a
//! start-up warning that says why they have no effect; settings for features Moldau
//! lacks (TLS, SASL, ACLs, ZooKeeper) stop start-up, since ignoring them would leave a
//! user believing a protection or mode is on when it is not.

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
    "auto.create.topics.enable",
    "broker.heartbeat.interval.ms",
    "broker.rack",
    "broker.session.timeout.ms",
    "cluster.id",
    "connections.max.idle.ms",
    "controlled.shutdown.enable",
    "controller.listener.names",
    "controller.quorum.bootstrap.servers",
    "controller.quorum.election.timeout.ms",
    "controller.quorum.voters",
    "default.replication.factor",
    "fetch.max.bytes",
    "group.initial.rebalance.delay.ms",
    "group.max.session.timeout.ms",
    "group.max.size",
    "group.min.session.timeout.ms",
    "http.enable",
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
    "replica.fetch.backoff.ms",
    "replica.fetch.max.bytes",
    "replica.fetch.min.bytes",
    "replica.fetch.response.max.bytes",
    "replica.fetch.wait.max.ms",
    "replica.lag.time.max.ms",
    "replica.socket.timeout.ms",
    "security.inter.broker.protocol",
    "socket.request.max.bytes",
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
const NO_EFFECT: &[(&str, &str)] = &[
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

/// Whether Moldau knows `name`, and what it does with it; `None` for an unknown name.
pub fn classify(name: &str) -> Option<Known> {
    if USED.contains(&name) || TOPIC_CONFIGS.iter().any(|d| d.broker_key == name) {
        return Some(Known::Used);
    }
    if let Some((_, why)) = NO_EFFECT.iter().find(|(n, _)| *n == name) {
        return Some(Known::NoEffect(why));
    }
    const SECURITY: &str =
        "TLS, SASL and ACLs are not implemented yet: Moldau refuses to start rather than \
         serve unprotected while configured for protection";
    let refused = [
        ("ssl.", SECURITY),
        ("sasl.", SECURITY),
        ("listener.name.", SECURITY),
        ("authorizer.", SECURITY),
        ("super.users", SECURITY),
        ("allow.everyone.if.no.acl.found", SECURITY),
        ("principal.builder.class", SECURITY),
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
        assert!(matches!(
            classify("ssl.keystore.location"),
            Some(Known::Refused(_))
        ));
        assert_eq!(classify("log.retention.hourz"), None);
        let mut sorted = USED.to_vec();
        sorted.sort_unstable();
        assert_eq!(sorted, USED, "keep USED sorted");
    }
}
