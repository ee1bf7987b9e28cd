//! The controller listener: serves [`super::rpc`] requests (Raft messages and the
//! controller API) on each connection, many at a time, answers in completion order.

use super::controller::{ControllerRequest, QuorumController};
use super::leader_watch::LeaderWatch;
use super::rpc::{frame, read_frame, unframe, RpcRequest, RpcResponse};
use moldau_metadata::cluster::{Heartbeat, Registration};
use moldau_metadata::quorum::Quorum;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

/// Requests one connection may have in flight.
const MAX_IN_FLIGHT: usize = 256;

/// What the controller listener serves.
#[derive(Clone)]
pub struct ControllerService {
    /// This node's quorum member.
    pub quorum: Arc<Quorum>,
    /// This node's controller.
    pub controller: Arc<QuorumController>,
    /// Quick elections when the leader's process dies.
    pub leader_watch: Arc<LeaderWatch>,
}

impl ControllerService {
    async fn serve(&self, request: RpcRequest) -> RpcResponse {
        let raft = &self.quorum.raft;
        match request {
            RpcRequest::AppendEntries(r) => {
                self.leader_watch.heard_from_leader();
                RpcResponse::AppendEntries(raft.append_entries(r).await)
            }
            RpcRequest::Vote(r) => RpcResponse::Vote(raft.vote(r).await),
            RpcRequest::InstallSnapshot(r) => {
                RpcResponse::InstallSnapshot(raft.install_snapshot(r).await)
            }
            RpcRequest::Controller(r) => RpcResponse::Controller(self.controller.handle(r).await),
        }
    }

    /// Accepts connections on `listener` until `stop` flips.
    pub async fn run(self, listener: TcpListener, mut stop: watch::Receiver<bool>) {
        let mut connections = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let service = self.clone();
                        connections.spawn(async move {
                            if let Err(e) = service.connection(stream).await {
                                tracing::debug!(%peer, error = %e, "controller connection ended");
                            }
                        });
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "controller listener accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                _ = stop.changed() => break,
            }
        }
        connections.abort_all();
    }

    async fn connection(&self, stream: TcpStream) -> std::io::Result<()> {
        stream.set_nodelay(true)?;
        let peer = stream.peer_addr()?.ip();
        let (mut rd, mut wr) = stream.into_split();
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(MAX_IN_FLIGHT);
        let writer = tokio::spawn(async move {
            while let Some(bytes) = rx.recv().await {
                if wr.write_all(&bytes).await.is_err() {
                    break;
                }
            }
        });
        let permits = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
        // Brokers that registered or heartbeated on this connection.
        let mut brokers = std::collections::BTreeSet::new();
        // The Raft leader that replicated over this connection.
        let mut leader = None;
        let result = loop {
            let bytes = match read_frame(&mut rd).await {
                Ok(Some(b)) => b,
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            };
            let (id, request) = match unframe::<RpcRequest>(&bytes) {
                Ok(r) => r,
                Err(e) => break Err(e),
            };
            if let RpcRequest::Controller(
                ControllerRequest::Register(Registration { broker_id, .. })
                | ControllerRequest::Heartbeat(Heartbeat { broker_id, .. }),
            ) = &request
            {
                brokers.insert(*broker_id);
            }
            if let RpcRequest::AppendEntries(r) = &request {
                leader = r
                    .vote
                    .leader_id()
                    .voted_for()
                    .and_then(|id| i32::try_from(id).ok());
            }
            let Ok(permit) = permits.clone().acquire_owned().await else {
                break Ok(());
            };
            let service = self.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let response = service.serve(request).await;
                match frame(id, &response) {
                    Ok(bytes) => {
                        let _ = tx.send(bytes).await;
                    }
                    Err(e) => tracing::error!(error = %e, "cannot encode a controller response"),
                }
                drop(permit);
            });
        };
        drop(tx);
        let _ = writer.await;
        for broker in brokers {
            self.controller.connection_lost(broker, peer).await;
        }
        if let Some(leader) = leader {
            self.leader_watch
                .connection_lost(leader, self.quorum.clone());
        }
        result
    }
}
