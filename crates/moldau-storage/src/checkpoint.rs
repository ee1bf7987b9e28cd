//! Kafka's offset checkpoint files (`recovery-point-offset-checkpoint`,
//! `log-start-offset-checkpoint`, `replication-offset-checkpoint` in each log dir), and
//! the text-file layout and atomic replacement they share with the partition's
//! `leader-epoch-checkpoint` (entries and rules at `LeaderEpochCache` in
//! `leader_epoch.rs`).
//!
//! Format (Kafka `CheckpointFile` with `OffsetCheckpointFile`'s formatter), UTF-8 text,
//! `\n` line ends:
//!
//! ```text
//! 0                      <- version
//! 2                      <- number of entries
//! orders 0 1234          <- "<topic> <partition> <offset>", single spaces
//! orders 1 99
//! ```
//!
//! Recovery rule: the file is replaced atomically (write `<file>.tmp`, fsync, rename over
//! the file, fsync the directory), so after a crash it holds either the old or the new
//! contents; a stray `<file>.tmp` is ignored and overwritten by the next write. A missing
//! file means "no entries"; a malformed one is an error, never a guess.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::Read;
use std::path::Path;

use crate::error::{IoContext, Result, StorageError};

/// The only checkpoint version Kafka writes.
const VERSION: u32 = 0;

/// Writes `entries` (`(topic, partition, offset)`) to `path` atomically (see the module
/// docs). Topic names must not contain whitespace (Kafka topic names cannot). Errors:
/// [`StorageError::Io`].
pub fn write(path: &Path, entries: &[(String, i32, i64)]) -> Result<()> {
    write_with(path, entries, |out, (topic, partition, offset)| {
        let _ = write!(out, "{topic} {partition} {offset}");
    })
}

/// Writes a checkpoint file in Kafka's `CheckpointFile` layout (version line, entry
/// count, one line per entry) atomically, as described in the module docs: `line`
/// appends the text of one entry (without the line end) to the buffer. Shared by the
/// offset checkpoints and the `leader-epoch-checkpoint` (`leader_epoch.rs`). Errors:
/// [`StorageError::Io`].
pub(crate) fn write_with<T>(
    path: &Path,
    entries: &[T],
    mut line: impl FnMut(&mut String, &T),
) -> Result<()> {
    let mut text = String::with_capacity(16 + entries.len() * 32);
    let _ = write!(text, "{VERSION}\n{}\n", entries.len());
    for entry in entries {
        line(&mut text, entry);
        text.push('\n');
    }
    crate::log::write_file_durable(path, text.as_bytes())
        .ctx(|| format!("write {} durably", path.display()))
}

/// Reads the checkpoint at `path` into `(topic, partition) -> offset`. A missing file
/// gives an empty map. Errors: [`StorageError::CorruptCheckpoint`] for a wrong version,
/// a bad count or entry line, or an entry count that does not match; [`StorageError::Io`].
pub fn read(path: &Path) -> Result<HashMap<(String, i32), i64>> {
    let entries = read_with(path, u64::MAX, |line| {
        let mut fields = line.split(' ');
        let (Some(topic), Some(partition), Some(offset), None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err(format!(
                "expected \"<topic> <partition> <offset>\", got {line:?}"
            ));
        };
        let partition: i32 = partition
            .parse()
            .map_err(|_| format!("bad partition {partition:?}"))?;
        let offset: i64 = offset
            .parse()
            .map_err(|_| format!("bad offset {offset:?}"))?;
        if topic.is_empty() {
            return Err("empty topic".into());
        }
        Ok(((topic.to_owned(), partition), offset))
    })?;
    Ok(entries.unwrap_or_default().into_iter().collect())
}

/// Reads a checkpoint file in Kafka's `CheckpointFile` layout: checks the version line
/// and the entry count, and parses each non-blank entry line with `parse` (which
/// returns the reason on failure). `None` if the file does not exist. Reads at most
/// `max_bytes` bytes: a longer file is corrupt (nothing is allocated for what a corrupt
/// file claims). Errors: [`StorageError::CorruptCheckpoint`] (a wrong version, a bad
/// count, an entry `parse` rejects, a count that does not match, a file over
/// `max_bytes` or not UTF-8); [`StorageError::Io`].
pub(crate) fn read_with<T>(
    path: &Path,
    max_bytes: u64,
    mut parse: impl FnMut(&str) -> std::result::Result<T, String>,
) -> Result<Option<Vec<T>>> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StorageError::io(format!("open {}", path.display()), e)),
    };
    let bad = |line: usize, reason: String| StorageError::CorruptCheckpoint {
        path: path.to_path_buf(),
        line,
        reason,
    };
    let mut text = Vec::new();
    file.take(max_bytes.saturating_add(1))
        .read_to_end(&mut text)
        .ctx(|| format!("read {}", path.display()))?;
    if text.len() as u64 > max_bytes {
        return Err(bad(0, format!("larger than {max_bytes} bytes")));
    }
    let text = std::str::from_utf8(&text).map_err(|e| bad(0, format!("not UTF-8: {e}")))?;
    let mut lines = text.lines();
    let version = lines
        .next()
        .ok_or_else(|| bad(1, "missing version".into()))?;
    if version.trim().parse::<u32>() != Ok(VERSION) {
        return Err(bad(1, format!("unsupported version {version:?}")));
    }
    let count_line = lines
        .next()
        .ok_or_else(|| bad(2, "missing entry count".into()))?;
    let count: usize = count_line
        .trim()
        .parse()
        .map_err(|_| bad(2, format!("bad entry count {count_line:?}")))?;
    // Do not trust `count` for allocation: a corrupt file could claim 2^60 entries.
    let mut entries = Vec::new();
    for (i, line) in lines.enumerate() {
        let line_no = i + 3;
        if line.trim().is_empty() {
            continue;
        }
        entries.push(parse(line).map_err(|reason| bad(line_no, reason))?);
    }
    if entries.len() != count {
        return Err(bad(
            2,
            format!("header says {count} entries, found {}", entries.len()),
        ));
    }
    Ok(Some(entries))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn tmp() -> Result<tempfile::TempDir> {
        tempfile::tempdir().map_err(|e| StorageError::io("tempdir", e))
    }

    #[test]
    fn round_trip_and_missing_file() -> Result<()> {
        let dir = tmp()?;
        let path = dir.path().join("recovery-point-offset-checkpoint");
        assert!(read(&path)?.is_empty());
        let entries = vec![
            ("orders".to_string(), 0, 1234),
            ("orders".to_string(), 1, 0),
            ("__consumer_offsets".to_string(), 49, i64::MAX),
        ];
        write(&path, &entries)?;
        let text = fs::read_to_string(&path).map_err(|e| StorageError::io("read", e))?;
        assert_eq!(
            text,
            "0\n3\norders 0 1234\norders 1 0\n__consumer_offsets 49 9223372036854775807\n"
        );
        let map = read(&path)?;
        assert_eq!(map.len(), 3);
        assert_eq!(map.get(&("orders".to_string(), 0)), Some(&1234));
        assert_eq!(
            map.get(&("__consumer_offsets".to_string(), 49)),
            Some(&i64::MAX)
        );
        assert!(!path.with_extension("tmp").exists());
        write(&path, &[])?;
        assert!(read(&path)?.is_empty());
        Ok(())
    }

    #[test]
    fn malformed_files_are_errors() -> Result<()> {
        let dir = tmp()?;
        let path = dir.path().join("cp");
        for (text, line) in [
            ("", 1),
            ("1\n0\n", 1),
            ("0\n", 2),
            ("0\nx\n", 2),
            ("0\n1\norders 0\n", 3),
            ("0\n1\norders zero 5\n", 3),
            ("0\n1\norders 0 5 extra\n", 3),
            ("0\n2\norders 0 5\n", 2),
            ("0\n18446744073709551615\n", 2),
        ] {
            fs::write(&path, text).map_err(|e| StorageError::io("write", e))?;
            match read(&path) {
                Err(StorageError::CorruptCheckpoint { line: l, .. }) => {
                    assert_eq!(l, line, "{text:?}")
                }
                other => panic!("{text:?}: expected CorruptCheckpoint, got {other:?}"),
            }
        }
        fs::write(&path, [0xff, 0xfe]).map_err(|e| StorageError::io("write", e))?;
        assert!(matches!(
            read(&path),
            Err(StorageError::CorruptCheckpoint { .. })
        ));
        Ok(())
    }
}
