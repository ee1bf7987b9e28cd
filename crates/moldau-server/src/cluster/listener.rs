//! The controller listener: serves [`super::rpc`] requests (Raft messages and the
//! controller API) on each connection, many at a time, answers in completion order.
//!
//! A connection is first secured as the listener's protocol says ([`ControllerAuth`]):
//! TLS, then on a SASL listener Kafka's SaslHandshake/SaslAuthenticate exchange, and
//! with an authorizer the principal must be a super user or hold CLUSTER_ACTION on the
//! cluster (what Kafka's controllers require of the brokers and controllers that talk
//! to them). A PLAINTEXT controller listener authenticates no one and is trusted, so it
//! belongs on a private network.

use super::controller::{ControllerRequest, QuorumController};
use super::leader_watch::LeaderWatch;
use super::rpc::{frame, read_frame, read_frame_within, unframe, RpcRequest, RpcResponse};
use crate::config::security::{AuthorizerSettings, SaslSettings};
use crate::handlers::Reply;
use crate::security::sasl::{Authenticator, Outcome};
use crate::security::tls::TlsAcceptor;
use moldau_metadata::cluster::{Heartbeat, Registration};
use moldau_metadata::quorum::Quorum;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

/// How long a connection may take to finish its TLS handshake and SASL exchange.
const AUTH_TIMEOUT: Duration = Duration::from_secs(30);

/// How the controller listener authenticates and authorizes its connections.
#[derive(Default)]
pub struct ControllerAuth {
    /// The listener's name, for the log.
    pub listener: Arc<str>,
    /// TLS (SSL and SASL_SSL).
    pub tls: Option<TlsAcceptor>,
    /// SASL (SASL_PLAINTEXT and SASL_SSL).
    pub sasl: Option<Arc<SaslSettings>>,
    /// The ACL authorizer, if on: an authenticated principal needs CLUSTER_ACTION.
    pub authorizer: Option<AuthorizerSettings>,
    /// `sasl.server.max.receive.size`: the largest frame before authentication, bytes.
    pub max_receive_bytes: usize,
    /// `connection.failed.authentication.delay.ms`.
    pub failed_delay_ms: u64,
}

type Reader = Box<dyn AsyncRead + Send + Unpin>;
type Writer = Box<dyn AsyncWrite + Send + Unpin>;

async fn write_reply(wr: &mut Writer, reply: &Reply) -> std::io::Result<()> {
    if let Reply::Send(chunks) = reply {
        for chunk in chunks {
            wr.write_all(chunk).await?;
        }
        wr.flush().await?;
    }
    Ok(())
}

impl ControllerAuth {
    /// Secures `stream` as the listener requires. `None`: refused (logged at INFO), the
    /// connection is to be closed.
    async fn establish(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        quorum: &Quorum,
    ) -> std::io::Result<Option<(Reader, Writer)>> {
        let listener = &self.listener;
        let (mut rd, mut wr, mut principal): (Reader, Writer, String) = match &self.tls {
            None => {
                let (r, w) = stream.into_split();
                (
                    Box::new(r),
                    Box::new(w),
                    crate::security::ANONYMOUS.to_owned(),
                )
            }
            Some(acceptor) => {
                match tokio::time::timeout(AUTH_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok((tls, cert))) => {
                        let (r, w) = tokio::io::split(tls);
                        let principal = cert.map_or_else(
                            || crate::security::ANONYMOUS.to_owned(),
                            |name| format!("User:{name}"),
                        );
                        (Box::new(r), Box::new(w), principal)
                    }
                    Ok(Err(e)) => {
                        tracing::info!(%peer, %listener, error = %e, "controller listener: TLS handshake failed; closing");
                        return Ok(None);
                    }
                    Err(_) => {
                        tracing::info!(%peer, %listener, "controller listener: TLS handshake not finished in time; closing");
                        return Ok(None);
                    }
                }
            }
        };
        if let Some(settings) = &self.sasl {
            let view = quorum.view.clone();
            let mut exchange = Authenticator::new(
                settings.clone(),
                Arc::new(move |user, mechanism| {
                    view.image()
                        .scram_credentials
                        .get(user)?
                        .get(mechanism.name())
                        .cloned()
                }),
                0,
            );
            let deadline = tokio::time::Instant::now() + AUTH_TIMEOUT;
            loop {
                let frame = match tokio::time::timeout_at(
                    deadline,
                    read_frame_within(&mut rd, self.max_receive_bytes),
                )
                .await
                {
                    Ok(Ok(Some(frame))) => frame,
                    Ok(Ok(None)) => return Ok(None),
                    Ok(Err(e)) => {
                        tracing::info!(%peer, %listener, error = %e, "controller listener: bad frame before authentication; closing");
                        return Ok(None);
                    }
                    Err(_) => {
                        tracing::info!(%peer, %listener, "controller listener: not authenticated in time; closing");
                        return Ok(None);
                    }
                };
                match exchange.on_frame(bytes::Bytes::from(frame)) {
                    Outcome::Continue(reply) => write_reply(&mut wr, &reply).await?,
                    Outcome::Authenticated { reply, user, .. } => {
                        write_reply(&mut wr, &reply).await?;
                        principal = format!("User:{user}");
                        break;
                    }
                    Outcome::Failed { reply, reason } => {
                        tracing::info!(%peer, %listener, %reason, "controller listener: SASL authentication failed; closing");
                        tokio::time::sleep(Duration::from_millis(self.failed_delay_ms)).await;
                        if let Some(reply) = reply {
                            write_reply(&mut wr, &reply).await?;
                        }
                        return Ok(None);
                    }
                    Outcome::Close(reason) => {
                        tracing::info!(%peer, %listener, %reason, "controller listener: closing during SASL authentication");
                        return Ok(None);
                    }
                }
            }
        }
        let secured = self.tls.is_some() || self.sasl.is_some();
        if let (true, Some(authorizer)) = (secured, &self.authorizer) {
            let allowed = authorizer.super_users.contains(&principal)
                || moldau_metadata::acl::authorize(
                    quorum.view.image().acls.covering(
                        moldau_metadata::acl::ResourceType::Cluster,
                        crate::handlers::CLUSTER,
                    ),
                    &principal,
                    &crate::handlers::canonical_host(&peer.ip().to_string()),
                    moldau_metadata::acl::AclOperation::ClusterAction,
                    moldau_metadata::acl::ResourceType::Cluster,
                    crate::handlers::CLUSTER,
                    authorizer.allow_if_no_acl,
                );
            if !allowed {
                tracing::info!(
                    target: "moldau::authorizer",
                    %principal,
                    operation = "CLUSTER_ACTION",
                    resource = "Cluster:kafka-cluster",
                    client = %peer.ip(),
                    "authorization denied: controller listener connection closed"
                );
                return Ok(None);
            }
        }
        Ok(Some((rd, wr)))
    }
}

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
    /// How connections authenticate.
    pub auth: Arc<ControllerAuth>,
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
        let addr = stream.peer_addr()?;
        let peer = addr.ip();
        let Some((mut rd, mut wr)) = self.auth.establish(stream, addr, &self.quorum).await? else {
            return Ok(());
        };
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
