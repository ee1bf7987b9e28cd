//! Per-log configuration, named after Kafka's topic configs.

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
        }
    }
}

impl LogConfig {
    /// `segment_bytes` capped at `i32::MAX`, the largest position a 32-bit index entry
    /// can address (Kafka's `segment.bytes` is an `int` for the same reason).
    pub(crate) fn effective_segment_bytes(&self) -> u64 {
        self.segment_bytes.clamp(1, i32::MAX as u64)
    }

    /// Maximum entries of an index with `entry_size`-byte entries (at least 1).
    pub(crate) fn max_index_entries(&self, entry_size: u64) -> usize {
        usize::try_from((self.segment_index_bytes / entry_size).max(1)).unwrap_or(usize::MAX)
    }
}
