//! The local metadata log: `__cluster_metadata-0` under the first `log.dirs` entry, a
//! normal Moldau partition [`Log`] whose record values are [`MetadataRecord`]s.
//!
//! One node is a one-voter quorum: a change is committed once its batch is fsynced
//! here. A later Raft layer replicates this same log; nothing else changes metadata.
//! Each controller operation is written as one batch, so it is applied all or nothing:
//! recovery truncates a torn batch, and replay applies whole batches only.

use crate::controller::ControllerResult;
use crate::image::MetadataImage;
use crate::records::MetadataRecord;
use moldau_protocol::batch;
use moldau_storage::{Log, LogConfig, StorageError};
use parking_lot::{Mutex, RwLock};
use std::path::Path;
use std::sync::Arc;
use thiserror::Error;

/// Directory name of the metadata log partition, as KRaft names it.
pub const METADATA_LOG_DIR: &str = "__cluster_metadata-0";

/// Failure of the metadata log itself (not a rejected change).
#[derive(Debug, Error)]
pub enum MetadataError {
    /// The underlying log failed.
    #[error("metadata log storage: {0}")]
    Storage(#[from] StorageError),
    /// A stored batch could not be decoded.
    #[error("corrupt metadata record at offset {offset}: {reason}")]
    Corrupt {
        /// Offset of the bad record.
        offset: i64,
        /// What was wrong.
        reason: String,
    },
}

type Publisher = Box<dyn Fn(&Arc<MetadataImage>) + Send + Sync>;

/// The metadata log and the image it has produced.
pub struct MetadataLog {
    log: Mutex<Log>,
    image: RwLock<Arc<MetadataImage>>,
    publisher: RwLock<Option<Publisher>>,
}

impl MetadataLog {
    /// Opens (or creates) the metadata log in `log_dir/__cluster_metadata-0` and rebuilds
    /// the image by replaying every record. The log is always recovered by a full scan:
    /// it is small, and the image must never be built from a torn batch.
    pub fn open(log_dir: &Path, now_ms: i64) -> Result<Self, MetadataError> {
        let config = LogConfig {
            retention_ms: -1,
            retention_bytes: -1,
            segment_bytes: 64 * 1024 * 1024,
            ..LogConfig::default()
        };
        let log = Log::open(&log_dir.join(METADATA_LOG_DIR), config, 0, 0, false, now_ms)?;
        let mut image = MetadataImage::empty();
        let end = log.log_end_offset();
        let mut next = log.log_start_offset();
        while next < end {
            let data = log.read(next, 1 << 20, end, true)?;
            if data.records.is_empty() {
                break;
            }
            for item in batch::BatchIter::new(&data.records) {
                let (at, header) = item.map_err(|e| MetadataError::Corrupt {
                    offset: next,
                    reason: e.to_string(),
                })?;
                let bytes = &data.records[at..at + header.size_in_bytes()];
                apply_batch(&mut image, header.base_offset, bytes)?;
                next = header.next_offset();
            }
        }
        Ok(Self {
            log: Mutex::new(log),
            image: RwLock::new(Arc::new(image)),
            publisher: RwLock::new(None),
        })
    }

    /// The current image (cheap: an `Arc` clone).
    pub fn image(&self) -> Arc<MetadataImage> {
        self.image.read().clone()
    }

    /// Installs the function told of every new image, in log order, right after it is
    /// applied (the broker uses it to create and delete partition logs).
    pub fn set_publisher(&self, f: impl Fn(&Arc<MetadataImage>) + Send + Sync + 'static) {
        *self.publisher.write() = Some(Box::new(f));
    }

    /// Runs a controller operation against the latest image and commits its records:
    /// one batch, fsynced, then applied and published. Operations are serialised, so
    /// validation always sees every earlier change. An empty record list commits nothing.
    ///
    /// The outer error is a storage failure; the inner one a rejected change.
    pub fn submit(
        &self,
        now_ms: i64,
        op: impl FnOnce(&MetadataImage) -> ControllerResult<Vec<MetadataRecord>>,
    ) -> Result<ControllerResult<Arc<MetadataImage>>, MetadataError> {
        let mut log = self.log.lock();
        let current = self.image();
        let records = match op(&current) {
            Ok(r) => r,
            Err(e) => return Ok(Err(e)),
        };
        if records.is_empty() {
            return Ok(Ok(current));
        }
        let values: Vec<Vec<u8>> = records.iter().map(MetadataRecord::encode).collect();
        let pairs: Vec<batch::KeyValue<'_>> =
            values.iter().map(|v| (None, Some(v.as_slice()))).collect();
        let mut bytes = batch::build_batch(0, now_ms, &pairs);
        let info = log.append_as_leader(&mut bytes, 0, None, now_ms)?;
        log.flush()?;
        let mut next = (*current).clone();
        for (i, r) in records.iter().enumerate() {
            next.apply(info.first_offset + i as i64, r);
        }
        let next = Arc::new(next);
        *self.image.write() = next.clone();
        if let Some(p) = self.publisher.read().as_ref() {
            p(&next);
        }
        drop(log);
        Ok(Ok(next))
    }

    /// Flushes and closes the log (clean shutdown).
    pub fn close(self) -> Result<(), MetadataError> {
        Ok(self.log.into_inner().close()?)
    }
}

fn apply_batch(
    image: &mut MetadataImage,
    base_offset: i64,
    bytes: &[u8],
) -> Result<(), MetadataError> {
    let corrupt = |reason: String| MetadataError::Corrupt {
        offset: base_offset,
        reason,
    };
    let records = batch::records(bytes).ok_or_else(|| corrupt("undecodable batch".into()))?;
    for r in records {
        let value = r.value.ok_or_else(|| corrupt("null value".into()))?;
        let record = MetadataRecord::decode(value).map_err(|e| corrupt(e.to_string()))?;
        image.apply(base_offset + i64::from(r.offset_delta), &record);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::{create_topic, NewTopic};
    use std::collections::BTreeMap;

    #[test]
    fn image_is_rebuilt_from_the_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let meta = MetadataLog::open(dir.path(), 1).expect("open");
        let register = MetadataRecord::RegisterBroker {
            broker_id: 1,
            host: "h".into(),
            port: 9092,
            rack: None,
        };
        meta.submit(1, |_| Ok(vec![register]))
            .expect("io")
            .expect("ok");
        let topic = NewTopic {
            name: "t".into(),
            num_partitions: 2,
            replication_factor: 1,
            configs: BTreeMap::new(),
            assignments: None,
        };
        let image = meta
            .submit(2, |i| create_topic(i, &topic))
            .expect("io")
            .expect("ok");
        let id = image.topics["t"].topic_id;
        let rejected = meta.submit(3, |i| create_topic(i, &topic)).expect("io");
        assert!(rejected.is_err());
        drop(meta);
        let meta = MetadataLog::open(dir.path(), 4).expect("reopen");
        let image = meta.image();
        assert_eq!(image.topics["t"].topic_id, id);
        assert_eq!(image.topics["t"].partitions.len(), 2);
        assert_eq!(image.brokers.len(), 1);
        assert_eq!(image.offset, 3);
    }
}
