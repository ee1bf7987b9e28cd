//! Per-log configuration, named after Kafka's topic configs.

use std::fmt;
use std::str::FromStr;

/// `cleanup.policy` (`log.cleanup.policy`): what happens to old data of a topic.
///
/// Kafka's value is a list; the accepted spellings are `"delete"`, `"compact"`,
/// `"compact,delete"` and `"delete,compact"` (spaces around the comma allowed).
/// Parse with [`str::parse`]; [`fmt::Display`] gives the canonical Kafka string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CleanupPolicy {
    /// `delete` (default): segments go by `retention.ms` / `retention.bytes`.
    #[default]
    Delete,
    /// `compact`: the log cleaner keeps the latest record per key; retention by time or
    /// size does not apply (only DeleteRecords moves the log start).
    Compact,
    /// `compact,delete`: both.
    CompactDelete,
}

impl CleanupPolicy {
    /// True for `delete` and `compact,delete`: retention by time and size applies.
    pub fn deletes(self) -> bool {
        matches!(self, CleanupPolicy::Delete | CleanupPolicy::CompactDelete)
    }

    /// True for `compact` and `compact,delete`: the log cleaner works on the log.
    pub fn compacts(self) -> bool {
        matches!(self, CleanupPolicy::Compact | CleanupPolicy::CompactDelete)
    }
}

/// A `cleanup.policy` string that is not one of Kafka's values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid cleanup.policy {0:?}: expected \"delete\", \"compact\" or \"compact,delete\"")]
pub struct InvalidCleanupPolicy(pub String);

impl FromStr for CleanupPolicy {
    type Err = InvalidCleanupPolicy;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (mut delete, mut compact) = (false, false);
        for part in s.split(',') {
            match part.trim() {
                "delete" => delete = true,
                "compact" => compact = true,
                _ => return Err(InvalidCleanupPolicy(s.to_owned())),
            }
        }
        Ok(match (delete, compact) {
            (true, true) => CleanupPolicy::CompactDelete,
            (false, true) => CleanupPolicy::Compact,
            _ => CleanupPolicy::Delete,
        })
    }
}

impl fmt::Display for CleanupPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CleanupPolicy::Delete => "delete",
            CleanupPolicy::Compact => "compact",
            CleanupPolicy::CompactDelete => "compact,delete",
        })
    }
}

/// Settings of one partition log. Field docs give the Kafka topic-config name (broker
/// default in parentheses where it differs in name) and the unit.
///
/// Changing a field with [`crate::Log::set_config`] takes effect at the next append,
/// roll check, flush check or retention pass; existing segments are not rewritten.
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    /// `segment.bytes` (`log.segment.bytes`): roll the active segment before an append
    /// would take it past this many bytes. Default 1073741824 (1 GiB). Values above
    /// `i32::MAX` are capped there because index positions are 32-bit (as in Kafka).
    pub segment_bytes: u64,
    /// `segment.ms` (`log.roll.ms`): roll a non-empty active segment once it is this many
    /// milliseconds old. Default 604800000 (7 days).
    pub segment_ms: i64,
    /// `segment.index.bytes` (`log.index.size.max.bytes`): roll when the `.index` (8-byte
    /// entries) or `.timeindex` (12-byte entries) of the active segment is full at this
    /// many bytes. Default 10485760 (10 MiB).
    pub segment_index_bytes: u64,
    /// `index.interval.bytes` (`log.index.interval.bytes`): add an `.index` entry after at
    /// least this many bytes of batches since the previous entry. Default 4096.
    pub index_interval_bytes: u64,
    /// `retention.ms` (`log.retention.ms`): delete segments whose newest record is older
    /// than this many milliseconds; `-1` = unlimited. Default 604800000 (7 days).
    pub retention_ms: i64,
    /// `retention.bytes` (`log.retention.bytes`): delete the oldest segments while the log
    /// would stay at or above this many bytes without them; `-1` = unlimited (default).
    pub retention_bytes: i64,
    /// `flush.messages` (`log.flush.interval.messages`): fsync synchronously inside an
    /// append once this many offsets are unflushed. Default `u64::MAX` (never; Kafka's
    /// default is `Long.MAX_VALUE`).
    pub flush_interval_messages: u64,
    /// `flush.ms` (`log.flush.interval.ms`): [`crate::Log::flush_due`] reports true once
    /// unflushed data is this many milliseconds old. Default `i64::MAX` (never).
    pub flush_interval_ms: i64,
    /// `cleanup.policy` (`log.cleanup.policy`): delete, compact or both. Default delete.
    pub cleanup_policy: CleanupPolicy,
    /// `delete.retention.ms` (`log.cleaner.delete.retention.ms`): how long a tombstone
    /// (null value) is kept after the segment holding it was last written, once the
    /// cleaner has seen it; milliseconds. Default 86400000 (1 day).
    pub delete_retention_ms: i64,
    /// `min.cleanable.dirty.ratio` (`log.cleaner.min.cleanable.ratio`): clean only when
    /// dirty bytes / cleanable bytes reaches this fraction (0.0–1.0). Default 0.5.
    pub min_cleanable_dirty_ratio: f64,
    /// `min.compaction.lag.ms` (`log.cleaner.min.compaction.lag.ms`, KIP-58): a segment
    /// whose newest record is younger than this many milliseconds is not cleaned.
    /// Default 0.
    pub min_compaction_lag_ms: i64,
    /// `max.compaction.lag.ms` (`log.cleaner.max.compaction.lag.ms`, KIP-354): once the
    /// oldest dirty record is this many milliseconds old the log is cleaned whatever its
    /// dirty ratio, and on compacted logs the active segment rolls at least this often.
    /// Default `i64::MAX` (Kafka's `Long.MAX_VALUE`: never).
    pub max_compaction_lag_ms: i64,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1_073_741_824,
            segment_ms: 604_800_000,
            segment_index_bytes: 10_485_760,
            index_interval_bytes: 4096,
            retention_ms: 604_800_000,
            retention_bytes: -1,
            flush_interval_messages: u64::MAX,
            flush_interval_ms: i64::MAX,
            cleanup_policy: CleanupPolicy::Delete,
            delete_retention_ms: 86_400_000,
            min_cleanable_dirty_ratio: 0.5,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
        }
    }
}

impl LogConfig {
    /// `segment_bytes` capped at `i32::MAX`, the largest position a 32-bit index entry
    /// can address (Kafka's `segment.bytes` is an `int` for the same reason).
    pub(crate) fn effective_segment_bytes(&self) -> u64 {
        self.segment_bytes.clamp(1, i32::MAX as u64)
    }

    /// `segment.ms`, lowered to `max.compaction.lag.ms` on compacted logs so dirty data
    /// cannot sit in the active segment past that lag (Kafka `LogConfig.maxSegmentMs`).
    pub(crate) fn effective_segment_ms(&self) -> i64 {
        if self.cleanup_policy.compacts() && self.max_compaction_lag_ms > 0 {
            self.segment_ms.min(self.max_compaction_lag_ms)
        } else {
            self.segment_ms
        }
    }

    /// Maximum entries of an index with `entry_size`-byte entries (at least 1).
    pub(crate) fn max_index_entries(&self, entry_size: u64) -> usize {
        usize::try_from((self.segment_index_bytes / entry_size).max(1)).unwrap_or(usize::MAX)
    }
}
