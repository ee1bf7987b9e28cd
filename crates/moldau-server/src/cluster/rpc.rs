//! The controller listener's protocol: what nodes say to the controllers.
//!
//! Frames are a 4-byte big-endian length followed by JSON: `{"id": u64, "body": …}`.
//! A connection carries many requests at once; each response carries its request's id
//! and may come back in any order. The messages are Raft's (AppendEntries, Vote,
//! InstallSnapshot, straight from openraft) and the controller API
//! ([`ControllerRequest`]): broker registration and heartbeats, AlterPartition, and the
//! admin operations brokers forward to the active controller.
//!
//! Kafka speaks its own request format on this listener (KRaft's Vote, Fetch,
//! BrokerRegistration, …). Moldau's nodes only ever talk to Moldau's controllers, and
//! JSON over one framed connection keeps the Raft messages exactly as openraft defines
//! them; client tools reach the quorum through the broker listener (DescribeQuorum,
//! DescribeCluster), never through this one.
//!
//! Connections are secured as the controller listener's protocol says: TLS first, then,
//! on a SASL listener, Kafka's own SaslHandshake/SaslAuthenticate exchange (the same
//! frames and mechanisms as on broker listeners, `sasl.mechanism.controller.protocol`),
//! and only then the frames above ([`super::listener`] checks the principal).

use super::controller::{ControllerOk, ControllerRequest, RemoteError};
use moldau_metadata::quorum::{NodeId, TypeConfig};
use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::oneshot;

/// Largest frame either side accepts, bytes (snapshot chunks are the largest messages).
pub const MAX_FRAME_BYTES: usize = 64 * 1024 * 1024;

/// A request to a controller.
#[derive(Debug, Serialize, Deserialize)]
#[allow(clippy::large_enum_variant)]
pub enum RpcRequest {
    /// Raft log replication and heartbeat.
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    /// Raft election.
    Vote(VoteRequest<NodeId>),
    /// One chunk of a Raft snapshot.
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    /// The controller API.
    Controller(ControllerRequest),
}

/// The answer to an [`RpcRequest`].
#[derive(Debug, Serialize, Deserialize)]
pub enum RpcResponse {
    /// To [`RpcRequest::AppendEntries`].
    AppendEntries(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    /// To [`RpcRequest::Vote`].
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    /// To [`RpcRequest::InstallSnapshot`].
    InstallSnapshot(
        Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>,
    ),
    /// To [`RpcRequest::Controller`].
    Controller(Result<ControllerOk, RemoteError>),
    /// The node cannot serve this kind of request (for example, it is no controller).
    Refused(String),
}

#[derive(Serialize, Deserialize)]
struct Envelope<T> {
    id: u64,
    body: T,
}

/// Why a call got no answer.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    /// Connecting, writing or reading failed.
    #[error("{addr}: {source}")]
    Io {
        /// The peer.
        addr: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// No answer within the timeout.
    #[error("{addr}: no answer within {timeout_ms} ms")]
    Timeout {
        /// The peer.
        addr: String,
        /// The timeout.
        timeout_ms: u64,
    },
}

/// Reads one frame (`None` at a clean end of stream). Errors: a frame above
/// [`MAX_FRAME_BYTES`] or a broken stream.
pub async fn read_frame<R: AsyncRead + Unpin>(rd: &mut R) -> std::io::Result<Option<Vec<u8>>> {
    read_frame_within(rd, MAX_FRAME_BYTES).await
}

/// [`read_frame`] with a cap of `max_bytes` (before authentication a SASL listener
/// takes frames up to `sasl.server.max.receive.size` only).
pub async fn read_frame_within<R: AsyncRead + Unpin>(
    rd: &mut R,
    max_bytes: usize,
) -> std::io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match rd.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > max_bytes {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("frame of {len} bytes exceeds {max_bytes}"),
        ));
    }
    // Grows with the bytes that arrive, never with the claimed size alone.
    let mut buf = Vec::with_capacity(len.min(64 * 1024));
    let read = (&mut *rd).take(len as u64).read_to_end(&mut buf).await?;
    if read != len {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "connection closed inside a frame",
        ));
    }
    Ok(Some(buf))
}

/// Encodes `{"id", "body"}` as one frame.
pub fn frame<T: Serialize>(id: u64, body: &T) -> std::io::Result<Vec<u8>> {
    let mut out = vec![0u8; 4];
    serde_json::to_writer(&mut out, &Envelope { id, body }).map_err(std::io::Error::other)?;
    let len = u32::try_from(out.len() - 4).map_err(std::io::Error::other)?;
    out[..4].copy_from_slice(&len.to_be_bytes());
    Ok(out)
}

/// Decodes a frame's `{"id", "body"}`.
pub fn unframe<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> std::io::Result<(u64, T)> {
    let e: Envelope<T> = serde_json::from_slice(bytes)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?;
    Ok((e.id, e.body))
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<RpcResponse>>>>;

struct Conn {
    writer: tokio::sync::Mutex<Box<dyn AsyncWrite + Send + Unpin>>,
    pending: Pending,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// One peer's connection, opened on first use and replaced after any failure or
/// timeout (a stuck connection must not hold later requests behind it).
pub struct RpcClient {
    addr: String,
    security: moldau_client::security::Security,
    conn: tokio::sync::Mutex<Option<Arc<Conn>>>,
    next_id: AtomicU64,
}

impl RpcClient {
    /// A client for `addr` (`host:port`), connecting lazily with `security` (TLS and
    /// SASL as the controller listener requires;
    /// [`crate::config::ClusterConfig::controller_client`]).
    pub fn new(addr: String, security: moldau_client::security::Security) -> Self {
        Self {
            addr,
            security,
            conn: tokio::sync::Mutex::new(None),
            next_id: AtomicU64::new(1),
        }
    }

    /// The peer's address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    async fn connection(&self, timeout: Duration) -> Result<Arc<Conn>, RpcError> {
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref() {
            if !c.reader.is_finished() {
                return Ok(c.clone());
            }
        }
        let (mut rd, wr) = moldau_client::security::connect(&self.addr, &self.security, timeout)
            .await
            .map_err(|e| match e {
                moldau_client::Error::Timeout(_) => RpcError::Timeout {
                    addr: self.addr.clone(),
                    timeout_ms: timeout.as_millis() as u64,
                },
                moldau_client::Error::Connect { source, .. } => RpcError::Io {
                    addr: self.addr.clone(),
                    source,
                },
                other => RpcError::Io {
                    addr: self.addr.clone(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::PermissionDenied,
                        other.to_string(),
                    ),
                },
            })?;
        let pending: Pending = Arc::default();
        let waiting = pending.clone();
        let reader = tokio::spawn(async move {
            while let Ok(Some(bytes)) = read_frame(&mut rd).await {
                match unframe::<RpcResponse>(&bytes) {
                    Ok((id, body)) => {
                        if let Some(tx) = waiting.lock().remove(&id) {
                            let _ = tx.send(body);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "undecodable controller RPC response; closing");
                        break;
                    }
                }
            }
            // Dropping the senders fails every call still waiting.
            waiting.lock().clear();
        });
        let conn = Arc::new(Conn {
            writer: tokio::sync::Mutex::new(wr),
            pending,
            reader,
        });
        *slot = Some(conn.clone());
        Ok(conn)
    }

    async fn drop_connection(&self, conn: &Arc<Conn>) {
        let mut slot = self.conn.lock().await;
        if slot.as_ref().is_some_and(|c| Arc::ptr_eq(c, conn)) {
            *slot = None;
        }
    }

    /// Sends `request` and waits up to `timeout` for its answer (connecting counts).
    pub async fn call(
        &self,
        request: &RpcRequest,
        timeout: Duration,
    ) -> Result<RpcResponse, RpcError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let conn = self.connection(timeout).await?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let bytes = frame(id, request).map_err(|source| RpcError::Io {
            addr: self.addr.clone(),
            source,
        })?;
        let (tx, rx) = oneshot::channel();
        conn.pending.lock().insert(id, tx);
        // Removes the entry however this call ends, also when the caller drops it.
        let _guard = PendingGuard {
            pending: conn.pending.clone(),
            id,
        };
        let exchange = async {
            {
                let mut w = conn.writer.lock().await;
                w.write_all(&bytes).await?;
                w.flush().await?;
            }
            rx.await.map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::ConnectionAborted, "connection closed")
            })
        };
        let result = match tokio::time::timeout_at(deadline, exchange).await {
            Ok(Ok(resp)) => return Ok(resp),
            Ok(Err(source)) => Err(RpcError::Io {
                addr: self.addr.clone(),
                source,
            }),
            Err(_) => Err(RpcError::Timeout {
                addr: self.addr.clone(),
                timeout_ms: timeout.as_millis() as u64,
            }),
        };
        self.drop_connection(&conn).await;
        result
    }
}

struct PendingGuard {
    pending: Pending,
    id: u64,
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        self.pending.lock().remove(&self.id);
    }
}

/// Clients by peer address, shared by the Raft network and the controller channel.
#[derive(Default)]
pub struct RpcPool {
    security: moldau_client::security::Security,
    clients: Mutex<HashMap<String, Arc<RpcClient>>>,
}

impl RpcPool {
    /// A pool whose clients connect with `security`.
    pub fn new(security: moldau_client::security::Security) -> Self {
        Self {
            security,
            clients: Mutex::default(),
        }
    }

    /// The client for `addr`, created on first use.
    pub fn get(&self, addr: &str) -> Arc<RpcClient> {
        self.clients
            .lock()
            .entry(addr.to_owned())
            .or_insert_with(|| Arc::new(RpcClient::new(addr.to_owned(), self.security.clone())))
            .clone()
    }
}

/// How long [`refuses_connections`] waits for the connection attempt.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// Whether a TCP connection to `addr` is refused: nothing listens there, so the process
/// that did is gone (killed, crashed; its host is up). A timeout (a partition, a frozen
/// host) or an accepted connection is `false`: only a refusal proves anything.
pub async fn refuses_connections(addr: &str) -> bool {
    matches!(
        tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(addr)).await,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused
    )
}
