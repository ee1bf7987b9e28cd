//! openraft's network over the controller listener ([`super::rpc`]): each voter reaches
//! the others at the address `controller.quorum.voters` gives.

use super::rpc::{RpcClient, RpcError, RpcPool, RpcRequest, RpcResponse};
use moldau_metadata::quorum::{Node, NodeId, TypeConfig};
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{RaftNetwork, RaftNetworkFactory};
use std::sync::Arc;
use std::time::Duration;

/// Creates a [`RaftLink`] per target voter.
pub struct RaftNet {
    /// Shared connections.
    pub pool: Arc<RpcPool>,
}

/// The Raft messages to one voter.
pub struct RaftLink {
    target: NodeId,
    client: Arc<RpcClient>,
}

impl RaftNetworkFactory<TypeConfig> for RaftNet {
    type Network = RaftLink;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> RaftLink {
        RaftLink {
            target,
            client: self.pool.get(&node.addr),
        }
    }
}

type Rpc<E> = RPCError<NodeId, Node, RaftError<NodeId, E>>;

fn unreachable<E: std::error::Error>(e: RpcError) -> Rpc<E> {
    match e {
        RpcError::Io { .. } => RPCError::Unreachable(Unreachable::new(&e)),
        RpcError::Timeout { .. } => RPCError::Network(NetworkError::new(&e)),
    }
}

fn unexpected<E: std::error::Error>(what: &str, resp: RpcResponse) -> Rpc<E> {
    let text = match resp {
        RpcResponse::Refused(why) => why,
        other => format!("unexpected answer to {what}: {other:?}"),
    };
    RPCError::Network(NetworkError::new(&std::io::Error::other(text)))
}

impl RaftLink {
    /// The RPC's own deadline: openraft cancels the call at `hard_ttl`, so answer by
    /// the soft deadline and release the connection cleanly.
    fn timeout(option: &RPCOption) -> Duration {
        option.soft_ttl().max(Duration::from_millis(100))
    }

    fn remote<E: std::error::Error>(&self, e: RaftError<NodeId, E>) -> Rpc<E> {
        RPCError::RemoteError(RemoteError::new(self.target, e))
    }
}

impl RaftNetwork<TypeConfig> for RaftLink {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, Rpc<openraft::error::Infallible>> {
        let req = RpcRequest::AppendEntries(rpc);
        match self
            .client
            .call(&req, Self::timeout(&option))
            .await
            .map_err(unreachable)?
        {
            RpcResponse::AppendEntries(r) => r.map_err(|e| self.remote(e)),
            other => Err(unexpected("AppendEntries", other)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, Rpc<InstallSnapshotError>> {
        let req = RpcRequest::InstallSnapshot(rpc);
        match self
            .client
            .call(&req, Self::timeout(&option))
            .await
            .map_err(unreachable)?
        {
            RpcResponse::InstallSnapshot(r) => r.map_err(|e| self.remote(e)),
            other => Err(unexpected("InstallSnapshot", other)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, Rpc<openraft::error::Infallible>> {
        let req = RpcRequest::Vote(rpc);
        match self
            .client
            .call(&req, Self::timeout(&option))
            .await
            .map_err(unreachable)?
        {
            RpcResponse::Vote(r) => r.map_err(|e| self.remote(e)),
            other => Err(unexpected("Vote", other)),
        }
    }
}
