//! The metadata quorum with real openraft members in one process, connected by an
//! in-memory network that can cut links: election, replication, failover, catch-up
//! from a snapshot, and restart from disk.

use super::*;
use crate::controller::{create_topic, NewTopic};
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, Unreachable};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{RaftNetwork, RaftNetworkFactory};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

/// Routes Raft messages between members of one process; a cut link drops them.
#[derive(Clone, Default)]
struct Router {
    members: Arc<parking_lot::Mutex<HashMap<NodeId, Raft>>>,
    cut: Arc<parking_lot::Mutex<BTreeSet<(NodeId, NodeId)>>>,
}

impl Router {
    fn target(&self, from: NodeId, to: NodeId) -> Result<Raft, Unreachable> {
        let cut = self.cut.lock().contains(&(from.min(to), from.max(to)));
        match self.members.lock().get(&to) {
            Some(raft) if !cut => Ok(raft.clone()),
            _ => Err(Unreachable::new(&std::io::Error::other("link cut"))),
        }
    }

    fn isolate(&self, node: NodeId, on: bool) {
        let mut cut = self.cut.lock();
        for other in 1..=3 {
            if other != node {
                let pair = (node.min(other), node.max(other));
                if on {
                    cut.insert(pair);
                } else {
                    cut.remove(&pair);
                }
            }
        }
    }
}

struct Link {
    router: Router,
    from: NodeId,
    to: NodeId,
}

impl RaftNetworkFactory<TypeConfig> for (Router, NodeId) {
    type Network = Link;
    async fn new_client(&mut self, target: NodeId, _node: &Node) -> Link {
        Link {
            router: self.0.clone(),
            from: self.1,
            to: target,
        }
    }
}

fn remote<E: std::error::Error>(
    e: RaftError<NodeId, E>,
) -> RPCError<NodeId, Node, RaftError<NodeId, E>> {
    RPCError::Network(NetworkError::new(&std::io::Error::other(e.to_string())))
}

impl RaftNetwork<TypeConfig> for Link {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        let raft = self
            .router
            .target(self.from, self.to)
            .map_err(RPCError::Unreachable)?;
        raft.append_entries(rpc).await.map_err(remote)
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, Node, RaftError<NodeId, InstallSnapshotError>>,
    > {
        let raft = self
            .router
            .target(self.from, self.to)
            .map_err(RPCError::Unreachable)?;
        raft.install_snapshot(rpc).await.map_err(remote)
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        let raft = self
            .router
            .target(self.from, self.to)
            .map_err(RPCError::Unreachable)?;
        raft.vote(rpc).await.map_err(remote)
    }
}

const TIMING: QuorumTiming = QuorumTiming {
    election_timeout_ms: 150,
    logs_to_keep: 0,
};

fn voters() -> BTreeMap<NodeId, Node> {
    (1..=3)
        .map(|id| {
            (
                id,
                Node {
                    addr: format!("n{id}"),
                },
            )
        })
        .collect()
}

async fn start(router: &Router, dirs: &[tempfile::TempDir], id: NodeId) -> Quorum {
    let quorum = Quorum::start(
        id,
        voters(),
        dirs[(id - 1) as usize].path(),
        TIMING,
        false,
        (router.clone(), id),
    )
    .await
    .expect("start");
    router.members.lock().insert(id, quorum.raft.clone());
    quorum
}

async fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    for _ in 0..400 {
        if let Some(v) = f() {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {what}");
}

fn leader_of(quorums: &[Option<Quorum>], excluding: Option<NodeId>) -> Option<NodeId> {
    quorums.iter().flatten().find_map(|q| {
        let m = q.raft.metrics().borrow().clone();
        (m.current_leader == Some(m.id) && Some(m.id) != excluding).then_some(m.id)
    })
}

async fn write_topic(quorum: &Quorum, name: &str) {
    let image = quorum.view.image();
    let topic = NewTopic {
        name: name.into(),
        num_partitions: 1,
        replication_factor: 1,
        configs: BTreeMap::new(),
        assignments: None,
    };
    let mut records = Vec::new();
    if image.brokers.is_empty() {
        let mut scratch = MetadataImage::empty();
        crate::testing::register(&mut scratch, 1, None);
        records.push(MetadataRecord::RegisterBroker {
            broker_id: 1,
            incarnation_id: uuid::Uuid::nil(),
            listeners: Vec::new(),
            rack: None,
            fenced: false,
            host: None,
            port: None,
        });
        records.extend(create_topic(&scratch, &topic).expect("create"));
    } else {
        records.extend(create_topic(&image, &topic).expect("create"));
    }
    quorum
        .raft
        .client_write(MetadataBatch { records })
        .await
        .expect("write");
}

fn topics(q: &Quorum) -> Vec<String> {
    q.view.image().topics.keys().cloned().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_voters_elect_replicate_fail_over_and_catch_up_from_a_snapshot() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().expect("dir")).collect();
    let router = Router::default();
    let mut quorums = Vec::new();
    for id in 1..=3 {
        quorums.push(Some(start(&router, &dirs, id).await));
    }
    let first = wait_for("a leader", || leader_of(&quorums, None)).await;
    write_topic(quorums[first as usize - 1].as_ref().expect("q"), "a").await;
    for q in quorums.iter().flatten() {
        wait_for("replication of topic a", || {
            (topics(q) == ["a"]).then_some(())
        })
        .await;
    }

    // Cut the leader off: the other two elect a new one and keep committing.
    router.isolate(first, true);
    let second = wait_for("a new leader", || leader_of(&quorums, Some(first))).await;
    assert_ne!(first, second);
    write_topic(quorums[second as usize - 1].as_ref().expect("q"), "b").await;
    let isolated = quorums[first as usize - 1].as_ref().expect("q");
    assert_eq!(
        topics(isolated),
        ["a"],
        "the cut-off node must not see b yet"
    );

    // Snapshot on the new leader and purge its log: the returning node can only catch
    // up by installing the snapshot.
    let leader = quorums[second as usize - 1].as_ref().expect("q");
    leader.raft.trigger().snapshot().await.expect("snapshot");
    wait_for("a snapshot", || {
        leader.raft.metrics().borrow().snapshot.map(|s| s.index)
    })
    .await;
    wait_for("the purge", || {
        (leader.store.log_start_offset() > 1).then_some(())
    })
    .await;
    router.isolate(first, false);
    let returning = quorums[first as usize - 1].as_ref().expect("q");
    wait_for("the returning node to catch up", || {
        (topics(returning) == ["a", "b"]).then_some(())
    })
    .await;
    let snapshot_files = snapshot_files(
        &dirs[first as usize - 1]
            .path()
            .join(log_store::METADATA_LOG_DIR),
    );
    assert!(
        !snapshot_files.is_empty(),
        "the returning node installed a snapshot"
    );

    // Restart one node from its directory: it rebuilds the same image.
    let restart = if first == 3 { 2 } else { 3 };
    let q = quorums[restart as usize - 1].take().expect("q");
    q.raft.shutdown().await.expect("shutdown");
    router.members.lock().remove(&restart);
    drop(q);
    quorums[restart as usize - 1] = Some(start(&router, &dirs, restart).await);
    let again = quorums[restart as usize - 1].as_ref().expect("q");
    wait_for("the restarted node's image", || {
        (topics(again) == ["a", "b"]).then_some(())
    })
    .await;
    for q in quorums.iter().flatten() {
        q.raft.shutdown().await.expect("shutdown");
    }
}

fn snapshot_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .expect("dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".checkpoint"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_voter_leads_at_once_and_after_restart() {
    let dir = tempfile::tempdir().expect("dir");
    let voters: BTreeMap<NodeId, Node> = [(
        1,
        Node {
            addr: String::new(),
        },
    )]
    .into();
    let started = std::time::Instant::now();
    let q = Quorum::start(
        1,
        voters.clone(),
        dir.path(),
        TIMING,
        false,
        (Router::default(), 1),
    )
    .await
    .expect("start");
    wait_for("leadership", || {
        let m = q.raft.metrics().borrow().clone();
        (m.current_leader == Some(1)).then_some(())
    })
    .await;
    write_topic(&q, "a").await;
    let first_start = started.elapsed();
    q.raft.shutdown().await.expect("shutdown");
    drop(q);
    // A voter whose Raft state is gone while its data says it was a member must not
    // start (it could vote without the log it promised to keep).
    let empty = tempfile::tempdir().expect("dir");
    let refused = Quorum::start(
        1,
        voters.clone(),
        empty.path(),
        TIMING,
        true,
        (Router::default(), 1),
    )
    .await;
    assert!(
        matches!(refused, Err(QuorumError::Raft(_))),
        "a wiped voter must be refused"
    );
    let q = Quorum::start(1, voters, dir.path(), TIMING, true, (Router::default(), 1))
        .await
        .expect("restart");
    wait_for("the image after restart", || {
        (topics(&q) == ["a"]).then_some(())
    })
    .await;
    write_topic(&q, "b").await;
    assert_eq!(topics(&q), ["a", "b"]);
    eprintln!("single voter: first start to first commit {first_start:?}");
    q.raft.shutdown().await.expect("shutdown");
}

/// A broker-only node's feed publishes only images newer than the last one.
#[test]
fn a_metadata_feed_only_moves_forward() {
    let (feed, view) = super::MetadataFeed::new();
    assert_eq!(view.image().offset, -1);
    let mut rx = view.subscribe();
    let image = |offset| crate::MetadataImage {
        offset,
        ..crate::MetadataImage::empty()
    };
    assert!(feed.publish(image(5)));
    assert!(rx.has_changed().expect("feed alive"));
    assert_eq!(rx.borrow_and_update().offset, 5);
    assert!(!feed.publish(image(3)), "older");
    assert!(!feed.publish(image(5)), "same");
    assert!(!rx.has_changed().expect("feed alive"));
    assert_eq!(view.image().offset, 5);
    assert!(feed.publish(image(9)));
    assert_eq!((feed.offset(), view.image().offset), (9, 9));
}
