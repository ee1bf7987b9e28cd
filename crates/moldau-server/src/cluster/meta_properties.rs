//! `meta.properties` in the data directory (Kafka's format, version 1 for KRaft):
//! `version=1`, `cluster.id`, `node.id`, `directory.id`. It ties the data to one node of
//! one cluster: a node refuses to start on data written by another node id, and on data
//! of another cluster than the one its quorum agreed on.

use std::path::{Path, PathBuf};

/// File name.
pub const FILE: &str = "meta.properties";

/// The node identity stored with its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaProperties {
    /// `node.id`.
    pub node_id: i32,
    /// `cluster.id`, once the quorum has agreed on one.
    pub cluster_id: Option<String>,
    /// `directory.id`: a random id of this data directory (KIP-858), URL-safe base64.
    pub directory_id: String,
    path: PathBuf,
}

/// URL-safe base64 without padding: Kafka's `Uuid.toString()` form.
pub fn base64_uuid(id: uuid::Uuid) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id.as_bytes())
}

impl MetaProperties {
    /// Reads `dir/meta.properties`, or starts a new identity when there is none (written
    /// once a cluster id is known, [`MetaProperties::adopt_cluster_id`]). Errors: the
    /// file names another node id, or cannot be read.
    pub fn load(dir: &Path, node_id: i32) -> Result<Self, String> {
        let path = dir.join(FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let get = |k: &str| {
                    text.lines()
                        .filter(|l| !l.trim_start().starts_with('#'))
                        .filter_map(|l| l.split_once('='))
                        .find(|(key, _)| key.trim() == k)
                        .map(|(_, v)| v.trim().to_owned())
                };
                if let Some(stored) = get("node.id") {
                    if stored != node_id.to_string() {
                        return Err(format!(
                            "{} says node.id={stored}, but this node is node.id={node_id}: the data belongs to another node",
                            path.display()
                        ));
                    }
                }
                let props = Self {
                    node_id,
                    cluster_id: get("cluster.id"),
                    directory_id: get("directory.id")
                        .unwrap_or_else(|| base64_uuid(uuid::Uuid::new_v4())),
                    path,
                };
                if get("directory.id").is_none() || get("version").as_deref() != Some("1") {
                    props.write().map_err(|e| e.to_string())?;
                }
                Ok(props)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self {
                node_id,
                cluster_id: None,
                directory_id: base64_uuid(uuid::Uuid::new_v4()),
                path,
            }),
            Err(e) => Err(format!("reading {}: {e}", path.display())),
        }
    }

    /// Records the cluster id the quorum agreed on. Errors: the data already belongs
    /// to another cluster; the file cannot be written.
    pub fn adopt_cluster_id(&mut self, cluster_id: &str) -> Result<(), String> {
        match &self.cluster_id {
            Some(ours) if ours == cluster_id => Ok(()),
            Some(ours) => Err(format!(
                "{} says cluster.id={ours}, but the controller quorum's cluster is {cluster_id}: the data belongs to another cluster",
                self.path.display()
            )),
            None => {
                self.cluster_id = Some(cluster_id.to_owned());
                self.write().map_err(|e| e.to_string())
            }
        }
    }

    fn write(&self) -> std::io::Result<()> {
        let mut text = format!(
            "#Written by Moldau\nversion=1\nnode.id={}\ndirectory.id={}\n",
            self.node_id, self.directory_id
        );
        if let Some(c) = &self.cluster_id {
            text.push_str(&format!("cluster.id={c}\n"));
        }
        moldau_storage::write_file_durable(&self.path, text.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_checks() {
        let dir = tempfile::tempdir().expect("dir");
        let mut p = MetaProperties::load(dir.path(), 3).expect("new");
        assert!(p.cluster_id.is_none());
        p.adopt_cluster_id("abc").expect("adopt");
        let again = MetaProperties::load(dir.path(), 3).expect("reload");
        assert_eq!(again.cluster_id.as_deref(), Some("abc"));
        assert_eq!(again.directory_id, p.directory_id);
        assert!(MetaProperties::load(dir.path(), 4).is_err());
        let mut again = again;
        assert!(again.adopt_cluster_id("xyz").is_err());
        assert_eq!(base64_uuid(uuid::Uuid::nil()), "A".repeat(22));
    }
}
