//! Topic-level configs Moldau knows, with their broker-level default property and Kafka
//! default (Kafka docs, "Topic-Level Configs"). A topic override wins over the broker
//! property, which wins over the default here.

/// Value type and constraint of a config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// 64-bit integer `>= min`.
    Long(i64),
    /// 32-bit integer `>= min`.
    Int(i32),
    /// `true`/`false`.
    Bool,
    /// Floating point in `0.0..=1.0`.
    Ratio,
    /// One of these (case-sensitive, as Kafka).
    Enum(&'static [&'static str]),
    /// Comma-separated subset of these.
    List(&'static [&'static str]),
}

/// One topic config.
#[derive(Debug, Clone, Copy)]
pub struct TopicConfigDef {
    /// Topic property name.
    pub name: &'static str,
    /// Type and constraint.
    pub kind: Kind,
    /// Broker property that supplies the default.
    pub broker_key: &'static str,
    /// Kafka's default value.
    pub default: &'static str,
}

const fn def(
    name: &'static str,
    kind: Kind,
    broker_key: &'static str,
    default: &'static str,
) -> TopicConfigDef {
    TopicConfigDef {
        name,
        kind,
        broker_key,
        default,
    }
}

/// Every topic config Moldau accepts, in name order.
pub const TOPIC_CONFIGS: &[TopicConfigDef] = &[
    def(
        "cleanup.policy",
        Kind::List(&["delete", "compact"]),
        "log.cleanup.policy",
        "delete",
    ),
    def(
        "compression.type",
        Kind::Enum(&["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"]),
        "compression.type",
        "producer",
    ),
    def(
        "delete.retention.ms",
        Kind::Long(0),
        "log.cleaner.delete.retention.ms",
        "86400000",
    ),
    def(
        "file.delete.delay.ms",
        Kind::Long(0),
        "log.segment.delete.delay.ms",
        "60000",
    ),
    def(
        "flush.messages",
        Kind::Long(1),
        "log.flush.interval.messages",
        "9223372036854775807",
    ),
    def(
        "flush.ms",
        Kind::Long(0),
        "log.flush.interval.ms",
        "9223372036854775807",
    ),
    def(
        "index.interval.bytes",
        Kind::Int(0),
        "log.index.interval.bytes",
        "4096",
    ),
    def(
        "max.compaction.lag.ms",
        Kind::Long(1),
        "log.cleaner.max.compaction.lag.ms",
        "9223372036854775807",
    ),
    def(
        "max.message.bytes",
        Kind::Int(0),
        "message.max.bytes",
        "1048588",
    ),
    def(
        "message.timestamp.after.max.ms",
        Kind::Long(0),
        "log.message.timestamp.after.max.ms",
        "3600000",
    ),
    def(
        "message.timestamp.before.max.ms",
        Kind::Long(0),
        "log.message.timestamp.before.max.ms",
        "9223372036854775807",
    ),
    def(
        "message.timestamp.type",
        Kind::Enum(&["CreateTime", "LogAppendTime"]),
        "log.message.timestamp.type",
        "CreateTime",
    ),
    def(
        "min.cleanable.dirty.ratio",
        Kind::Ratio,
        "log.cleaner.min.cleanable.ratio",
        "0.5",
    ),
    def(
        "min.compaction.lag.ms",
        Kind::Long(0),
        "log.cleaner.min.compaction.lag.ms",
        "0",
    ),
    def(
        "min.insync.replicas",
        Kind::Int(1),
        "min.insync.replicas",
        "1",
    ),
    def("preallocate", Kind::Bool, "log.preallocate", "false"),
    def(
        "retention.bytes",
        Kind::Long(-1),
        "log.retention.bytes",
        "-1",
    ),
    def(
        "retention.ms",
        Kind::Long(-1),
        "log.retention.ms",
        "604800000",
    ),
    def(
        "segment.bytes",
        Kind::Int(14),
        "log.segment.bytes",
        "1073741824",
    ),
    def(
        "segment.index.bytes",
        Kind::Int(4),
        "log.index.size.max.bytes",
        "10485760",
    ),
    def(
        "segment.jitter.ms",
        Kind::Long(0),
        "log.roll.jitter.ms",
        "0",
    ),
    def("segment.ms", Kind::Long(1), "log.roll.ms", "604800000"),
    def(
        "unclean.leader.election.enable",
        Kind::Bool,
        "unclean.leader.election.enable",
        "false",
    ),
];

/// The definition of topic config `name`.
pub fn topic_config(name: &str) -> Option<&'static TopicConfigDef> {
    TOPIC_CONFIGS.iter().find(|d| d.name == name)
}

/// Whether `name` is a list config (APPEND/SUBTRACT apply).
pub fn is_list(name: &str) -> bool {
    topic_config(name).is_some_and(|d| matches!(d.kind, Kind::List(_)))
}

/// Checks a topic override. `None` (delete the override) is always valid for a known
/// name. Errors carry Kafka-style messages for `INVALID_CONFIG`.
pub fn validate_topic_config(name: &str, value: Option<&str>) -> Result<(), String> {
    let d = topic_config(name).ok_or_else(|| format!("Unknown topic config name: {name}"))?;
    let Some(v) = value else { return Ok(()) };
    let bad = || format!("Invalid value {v} for configuration {name}");
    match d.kind {
        Kind::Long(min) => match v.trim().parse::<i64>() {
            Ok(n) if n >= min => Ok(()),
            _ => Err(bad()),
        },
        Kind::Int(min) => match v.trim().parse::<i32>() {
            Ok(n) if n >= min => Ok(()),
            _ => Err(bad()),
        },
        Kind::Bool => match v.trim() {
            "true" | "false" => Ok(()),
            _ => Err(bad()),
        },
        Kind::Ratio => match v.trim().parse::<f64>() {
            Ok(f) if (0.0..=1.0).contains(&f) => Ok(()),
            _ => Err(bad()),
        },
        Kind::Enum(allowed) => allowed.contains(&v.trim()).then_some(()).ok_or_else(bad),
        Kind::List(allowed) => v
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .all(|s| allowed.contains(&s))
            .then_some(())
            .ok_or_else(bad),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_follows_types() {
        assert!(validate_topic_config("retention.ms", Some("-1")).is_ok());
        assert!(validate_topic_config("retention.ms", Some("-2")).is_err());
        assert!(validate_topic_config("cleanup.policy", Some("compact,delete")).is_ok());
        assert!(validate_topic_config("cleanup.policy", Some("shred")).is_err());
        assert!(validate_topic_config("message.timestamp.type", Some("LogAppendTime")).is_ok());
        assert!(validate_topic_config("no.such.config", None).is_err());
        assert!(is_list("cleanup.policy") && !is_list("retention.ms"));
    }
}
