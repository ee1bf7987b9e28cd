//! The metadata state machine: committed entries applied in order to the
//! [`MetadataImage`] (KRaft's `MetadataLoader`/`MetadataPublisher`), and snapshots of the
//! image so the log can be trimmed and a lagging or new node can catch up from one.
//!
//! Snapshot files: `<offset>-<term>.checkpoint` in the metadata log directory, where
//! `offset` is the index of the last entry the snapshot covers, holding the JSON of
//! [`SnapshotFile`]; written to a temporary name, fsynced, renamed, directory fsynced;
//! only the newest is kept. At open the newest readable snapshot is loaded, and openraft
//! re-applies the committed entries after it.
//!
//! Every applied batch of entries publishes the new image on a watch channel
//! ([`MetadataView`]): the broker reconciles its partitions and coordinators from it.

use super::{Entry, LogId, Node, NodeId, StorageError, TypeConfig};
use crate::image::MetadataImage;
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{EntryPayload, RaftSnapshotBuilder, SnapshotMeta, StorageIOError, StoredMembership};
use serde::{Deserialize, Serialize};
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::watch;

/// Suffix of snapshot files.
const SNAPSHOT_SUFFIX: &str = ".checkpoint";

/// The content of a snapshot file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotFile {
    /// The last entry the snapshot covers.
    pub last_log_id: Option<LogId>,
    /// The voter set as of that entry.
    pub membership: StoredMembership<NodeId, Node>,
    /// The image after that entry.
    pub image: MetadataImage,
}

struct Applied {
    last_log_id: Option<LogId>,
    membership: StoredMembership<NodeId, Node>,
    image: Arc<MetadataImage>,
}

struct Shared {
    dir: PathBuf,
    applied: parking_lot::Mutex<Applied>,
    publish: watch::Sender<Arc<MetadataImage>>,
    /// Bytes of metadata applied since the last snapshot (record JSON sizes).
    bytes_since_snapshot: AtomicU64,
}

/// The state machine handed to openraft. Cheap to clone.
#[derive(Clone)]
pub struct MetadataStateMachine {
    shared: Arc<Shared>,
}

/// A read-only view of the applied metadata, for the rest of the broker.
#[derive(Clone)]
pub struct MetadataView {
    shared: Arc<Shared>,
}

impl MetadataView {
    /// The current image (an `Arc` clone).
    pub fn image(&self) -> Arc<MetadataImage> {
        self.shared.publish.borrow().clone()
    }

    /// A receiver that sees every newly applied image (intermediate ones may be skipped).
    pub fn subscribe(&self) -> watch::Receiver<Arc<MetadataImage>> {
        self.shared.publish.subscribe()
    }

    /// Metadata bytes applied since the last snapshot.
    pub fn bytes_since_snapshot(&self) -> u64 {
        self.shared.bytes_since_snapshot.load(Ordering::Relaxed)
    }

    /// The last applied log id.
    pub fn last_applied(&self) -> Option<LogId> {
        self.shared.applied.lock().last_log_id
    }
}

/// The writing end of a [`MetadataView`] that no quorum member feeds: a broker-only
/// node (`process.roles=broker`) publishes into it the images it fetches from the
/// active controller. Images only move forward: an older one is dropped.
pub struct MetadataFeed {
    shared: Arc<Shared>,
}

impl MetadataFeed {
    /// A view holding the empty image (offset -1), and its feed.
    pub fn new() -> (Self, MetadataView) {
        let image = Arc::new(MetadataImage::empty());
        let (publish, _) = watch::channel(image.clone());
        let shared = Arc::new(Shared {
            dir: PathBuf::new(),
            applied: parking_lot::Mutex::new(Applied {
                last_log_id: None,
                membership: StoredMembership::default(),
                image,
            }),
            publish,
            bytes_since_snapshot: AtomicU64::new(0),
        });
        (
            MetadataFeed {
                shared: shared.clone(),
            },
            MetadataView { shared },
        )
    }

    /// The offset of the image published last (-1 before the first).
    pub fn offset(&self) -> i64 {
        self.shared.applied.lock().image.offset
    }

    /// Publishes `image` if its offset is above the published one's; returns whether
    /// it did.
    pub fn publish(&self, image: MetadataImage) -> bool {
        let mut applied = self.shared.applied.lock();
        if image.offset <= applied.image.offset {
            return false;
        }
        let image = Arc::new(image);
        applied.image = image.clone();
        self.shared.publish.send_replace(image);
        true
    }
}

fn snapshot_name(log_id: &Option<LogId>) -> String {
    match log_id {
        Some(l) => format!("{:020}-{:010}{SNAPSHOT_SUFFIX}", l.index, l.leader_id.term),
        None => format!("{:020}-{:010}{SNAPSHOT_SUFFIX}", 0, 0),
    }
}

fn snapshot_id(log_id: &Option<LogId>) -> String {
    snapshot_name(log_id)
        .trim_end_matches(SNAPSHOT_SUFFIX)
        .to_owned()
}

/// Snapshot files in `dir`, oldest first.
fn snapshot_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.ends_with(SNAPSHOT_SUFFIX))
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

fn write_snapshot(dir: &Path, file: &SnapshotFile) -> std::io::Result<Vec<u8>> {
    let bytes = serde_json::to_vec(file).map_err(std::io::Error::other)?;
    let name = snapshot_name(&file.last_log_id);
    moldau_storage::write_file_durable(&dir.join(&name), &bytes)?;
    for old in snapshot_files(dir) {
        if old.file_name().and_then(|n| n.to_str()) != Some(name.as_str()) {
            let _ = std::fs::remove_file(old);
        }
    }
    Ok(bytes)
}

impl MetadataStateMachine {
    /// Opens the state machine over the snapshot in `dir` (the metadata log directory).
    /// Errors: the snapshot cannot be read or decoded. That stops start-up: the log
    /// below a snapshot is purged, so nothing could rebuild what it held.
    pub fn open(dir: &Path) -> std::io::Result<(Self, MetadataView)> {
        let mut applied = Applied {
            last_log_id: None,
            membership: StoredMembership::default(),
            image: Arc::new(MetadataImage::empty()),
        };
        if let Some(path) = snapshot_files(dir).pop() {
            let file = std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice::<SnapshotFile>(&b).map_err(|e| e.to_string()))
                .map_err(|e| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("metadata snapshot {} is unreadable: {e}", path.display()),
                    )
                })?;
            applied = Applied {
                last_log_id: file.last_log_id,
                membership: file.membership,
                image: Arc::new(file.image),
            };
        }
        let (publish, _) = watch::channel(applied.image.clone());
        let shared = Arc::new(Shared {
            dir: dir.to_owned(),
            applied: parking_lot::Mutex::new(applied),
            publish,
            bytes_since_snapshot: AtomicU64::new(0),
        });
        Ok((
            Self {
                shared: shared.clone(),
            },
            MetadataView { shared },
        ))
    }

    fn snapshot_of(&self, file: &SnapshotFile, bytes: Vec<u8>) -> Snapshot<TypeConfig> {
        Snapshot {
            meta: SnapshotMeta {
                last_log_id: file.last_log_id,
                last_membership: file.membership.clone(),
                snapshot_id: snapshot_id(&file.last_log_id),
            },
            snapshot: Box::new(Cursor::new(bytes)),
        }
    }
}

impl RaftSnapshotBuilder<TypeConfig> for MetadataStateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let file = {
            let applied = self.shared.applied.lock();
            SnapshotFile {
                last_log_id: applied.last_log_id,
                membership: applied.membership.clone(),
                image: (*applied.image).clone(),
            }
        };
        let bytes = write_snapshot(&self.shared.dir, &file)
            .map_err(|e| StorageIOError::write_snapshot(None, &e))?;
        self.shared.bytes_since_snapshot.store(0, Ordering::Relaxed);
        tracing::info!(offset = ?file.last_log_id.map(|l| l.index), bytes = bytes.len(), "wrote metadata snapshot");
        Ok(self.snapshot_of(&file, bytes))
    }
}

impl RaftStateMachine<TypeConfig> for MetadataStateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId>, StoredMembership<NodeId, Node>), StorageError> {
        let applied = self.shared.applied.lock();
        Ok((applied.last_log_id, applied.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<()>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut out = Vec::new();
        let image = {
            let mut applied = self.shared.applied.lock();
            let mut image = (*applied.image).clone();
            let mut bytes = 0u64;
            for entry in entries {
                let index = entry.log_id.index as i64;
                match &entry.payload {
                    EntryPayload::Blank => {}
                    EntryPayload::Normal(batch) => {
                        for record in &batch.records {
                            bytes += record.encode().len() as u64;
                            image.apply(index, record);
                        }
                    }
                    EntryPayload::Membership(m) => {
                        applied.membership = StoredMembership::new(Some(entry.log_id), m.clone());
                    }
                }
                image.offset = index;
                applied.last_log_id = Some(entry.log_id);
                out.push(());
            }
            self.shared
                .bytes_since_snapshot
                .fetch_add(bytes, Ordering::Relaxed);
            let image = Arc::new(image);
            applied.image = image.clone();
            image
        };
        self.shared.publish.send_replace(image);
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, Node>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let bytes = snapshot.into_inner();
        let file: SnapshotFile = serde_json::from_slice(&bytes)
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
        write_snapshot(&self.shared.dir, &file)
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        let image = Arc::new(file.image);
        {
            let mut applied = self.shared.applied.lock();
            applied.last_log_id = meta.last_log_id;
            applied.membership = meta.last_membership.clone();
            applied.image = image.clone();
        }
        self.shared.bytes_since_snapshot.store(0, Ordering::Relaxed);
        tracing::info!(offset = ?meta.last_log_id.map(|l| l.index), "installed metadata snapshot from the leader");
        self.shared.publish.send_replace(image);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let Some(path) = snapshot_files(&self.shared.dir).pop() else {
            return Ok(None);
        };
        let bytes = std::fs::read(&path).map_err(|e| StorageIOError::read_snapshot(None, &e))?;
        let file: SnapshotFile =
            serde_json::from_slice(&bytes).map_err(|e| StorageIOError::read_snapshot(None, &e))?;
        Ok(Some(self.snapshot_of(&file, bytes)))
    }
}
