//! One TCP connection to one broker: requests pipelined, responses matched by
//! correlation id, versions negotiated with ApiVersions on connect.

use crate::error::{Error, Result};
use crate::security::Security;
use crate::versions;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::{mpsc, oneshot};

/// Largest response frame accepted, bytes (a corrupt size prefix must not become an
/// allocation).
pub const MAX_RESPONSE_BYTES: usize = 256 << 20;

type Pending = oneshot::Sender<Result<Bytes>>;

struct Outgoing {
    correlation_id: i32,
    frame: Bytes,
    /// `None` for a request the broker does not answer (Produce with acks=0).
    reply: Option<Pending>,
}

/// A connection to one broker.
///
/// Requests may be sent concurrently from many tasks; they are written in order and each
/// response is routed to its caller by correlation id. When the socket fails, every
/// request in flight fails with [`Error::Connection`] and [`Connection::is_closed`] turns
/// true; callers open a new one.
pub struct Connection {
    addr: String,
    client_id: StrBytes,
    correlation: AtomicI32,
    tx: mpsc::Sender<Outgoing>,
    closed: Arc<AtomicBool>,
    /// Wakes the connection's task to close the socket (after a request timed out).
    kill: Arc<tokio::sync::Notify>,
    /// Negotiated version per api key.
    versions: HashMap<i16, i16>,
    timeout: Duration,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("addr", &self.addr)
            .finish()
    }
}

impl Connection {
    /// Connects to `addr` (`host:port`), over TLS and after SASL authentication as
    /// `security` says ([`crate::security`]), and negotiates versions (ApiVersions v0,
    /// which every broker serves). `timeout` bounds the connect, each step of the
    /// handshakes and every later request. Errors: [`Error::Connect`],
    /// [`Error::Authentication`], [`Error::Timeout`].
    pub async fn connect(
        addr: &str,
        client_id: &str,
        timeout: Duration,
        security: &Security,
    ) -> Result<Connection> {
        let (rd, wr) = crate::security::connect(addr, security, timeout).await?;
        let (tx, rx) = mpsc::channel(1024);
        let closed = Arc::new(AtomicBool::new(false));
        let kill = Arc::new(tokio::sync::Notify::new());
        tokio::spawn(run(
            addr.to_owned(),
            rd,
            wr,
            rx,
            closed.clone(),
            kill.clone(),
        ));
        let mut conn = Connection {
            addr: addr.to_owned(),
            client_id: StrBytes::from_string(client_id.to_owned()),
            correlation: AtomicI32::new(0),
            tx,
            closed,
            kill,
            versions: HashMap::new(),
            timeout,
        };
        // Version 0: every broker serves it, so there is no fallback to get wrong (a
        // broker answers an ApiVersions version it does not know with a v0 body, which
        // a v3 decoder cannot read; KIP-511).
        let response: ApiVersionsResponse = conn.send_at(ApiVersionsRequest::default(), 0).await?;
        Error::check(response.error_code)?;
        conn.versions = response
            .api_keys
            .iter()
            .filter_map(|k| {
                let api = ApiKey::try_from(k.api_key).ok()?;
                let v = versions::negotiate(api, k.min_version, k.max_version)?;
                Some((k.api_key, v))
            })
            .collect();
        Ok(conn)
    }

    /// `host:port` of the broker.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Whether the socket has failed (every later request fails at once).
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// The version negotiated for `api`, `None` if the two sides share none.
    pub fn version(&self, api: ApiKey) -> Option<i16> {
        self.versions.get(&(api as i16)).copied()
    }

    /// Sends `request` at the negotiated version; [`Error::UnsupportedApi`] if there is
    /// none. The response's own error codes are left to the caller.
    pub async fn send<R: Request>(&self, request: R) -> Result<R::Response> {
        let api = ApiKey::try_from(R::KEY).map_err(|_| Error::Invalid("unknown api key".into()))?;
        let version = self.version(api).ok_or(Error::UnsupportedApi { api })?;
        self.send_at(request, version).await
    }

    /// Sends `request` at an explicit `version`.
    pub async fn send_at<R: Request>(&self, request: R, version: i16) -> Result<R::Response> {
        self.send_at_within(request, version, self.timeout).await
    }

    /// [`Connection::send`] with its own timeout instead of the connection's (a JoinGroup
    /// may wait a whole rebalance).
    pub async fn send_within<R: Request>(
        &self,
        request: R,
        timeout: Duration,
    ) -> Result<R::Response> {
        let api = ApiKey::try_from(R::KEY).map_err(|_| Error::Invalid("unknown api key".into()))?;
        let version = self.version(api).ok_or(Error::UnsupportedApi { api })?;
        self.send_at_within(request, version, timeout).await
    }

    /// Sends and waits up to `timeout`. A request that times out closes the connection,
    /// failing everything else in flight on it, as Kafka's clients do: a broker answers
    /// a connection's requests in order, so every later one would wait behind it.
    async fn send_at_within<R: Request>(
        &self,
        request: R,
        version: i16,
        timeout: Duration,
    ) -> Result<R::Response> {
        let (correlation_id, frame) = self.encode(&request, version)?;
        let (reply, rx) = oneshot::channel();
        let broken = || Error::Connection {
            addr: self.addr.clone(),
            reason: "connection closed".into(),
        };
        self.tx
            .send(Outgoing {
                correlation_id,
                frame,
                reply: Some(reply),
            })
            .await
            .map_err(|_| broken())?;
        let mut body = match tokio::time::timeout(timeout, rx).await {
            Ok(reply) => reply.map_err(|_| broken())??,
            Err(_) => {
                self.close();
                return Err(Error::Timeout(timeout));
            }
        };
        let header = ResponseHeader::decode(&mut body, R::Response::header_version(version))
            .map_err(|e| self.undecodable(R::KEY, version, e))?;
        debug_assert_eq!(header.correlation_id, correlation_id);
        R::Response::decode(&mut body, version).map_err(|e| self.undecodable(R::KEY, version, e))
    }

    /// Closes the connection: requests in flight fail, later ones fail at once, and
    /// [`Connection::is_closed`] is true.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.kill.notify_one();
    }

    /// Writes `request` at the negotiated version without waiting for an answer: for
    /// requests the broker never answers (Produce with `acks=0`). Returns once queued.
    pub async fn send_no_response<R: Request>(&self, request: R) -> Result<()> {
        let api = ApiKey::try_from(R::KEY).map_err(|_| Error::Invalid("unknown api key".into()))?;
        let version = self.version(api).ok_or(Error::UnsupportedApi { api })?;
        let (correlation_id, frame) = self.encode(&request, version)?;
        self.tx
            .send(Outgoing {
                correlation_id,
                frame,
                reply: None,
            })
            .await
            .map_err(|_| Error::Connection {
                addr: self.addr.clone(),
                reason: "connection closed".into(),
            })
    }

    fn encode<R: Request>(&self, request: &R, version: i16) -> Result<(i32, Bytes)> {
        let correlation_id = self.correlation.fetch_add(1, Ordering::Relaxed);
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(self.client_id.clone()));
        let mut buf = BytesMut::with_capacity(64);
        buf.put_i32(0); // size, filled below
        let bad = |e: &dyn std::fmt::Display| {
            Error::Invalid(format!("cannot encode api {} v{version}: {e}", R::KEY))
        };
        header
            .encode(&mut buf, R::header_version(version))
            .map_err(|e| bad(&e))?;
        request.encode(&mut buf, version).map_err(|e| bad(&e))?;
        let size = i32::try_from(buf.len() - 4)
            .map_err(|_| Error::Invalid("request larger than 2 GiB".into()))?;
        buf[..4].copy_from_slice(&size.to_be_bytes());
        Ok((correlation_id, buf.freeze()))
    }

    /// A response that does not decode: the stream can no longer be trusted, so the
    /// connection is closed.
    fn undecodable(&self, key: i16, version: i16, e: impl std::fmt::Display) -> Error {
        self.close();
        Error::Connection {
            addr: self.addr.clone(),
            reason: format!("response to api {key} v{version} does not decode: {e}"),
        }
    }
}

type PendingMap = Arc<parking_lot::Mutex<Option<HashMap<i32, Pending>>>>;

/// The connection's two tasks: a writer that sends requests as they come (every queued
/// request, then one flush) and a reader that routes each response frame to its waiter
/// by correlation id. The first socket or framing error on either side, or the last
/// [`Connection`] handle being dropped, ends both and fails every waiter.
async fn run(
    addr: String,
    rd: Box<dyn AsyncRead + Send + Unpin>,
    wr: Box<dyn AsyncWrite + Send + Unpin>,
    mut rx: mpsc::Receiver<Outgoing>,
    closed: Arc<AtomicBool>,
    kill: Arc<tokio::sync::Notify>,
) {
    let pending: PendingMap = Arc::new(parking_lot::Mutex::new(Some(HashMap::new())));
    let reader = tokio::spawn(read_responses(rd, pending.clone()));
    let reader_abort = reader.abort_handle();
    let writer = async {
        let mut writer = BufWriter::new(wr);
        while let Some(out) = rx.recv().await {
            let mut next = Some(out);
            // Write every request already queued before one flush.
            while let Some(out) = next.take() {
                match (pending.lock().as_mut(), out.reply) {
                    (Some(map), Some(reply)) => {
                        map.insert(out.correlation_id, reply);
                    }
                    (Some(_), None) => {}
                    (None, _) => return "connection closed".to_owned(),
                }
                if let Err(e) = writer.write_all(&out.frame).await {
                    return format!("write failed: {e}");
                }
                next = rx.try_recv().ok();
            }
            if let Err(e) = writer.flush().await {
                return format!("write failed: {e}");
            }
        }
        "client dropped the connection".to_owned()
    };
    let reason = tokio::select! {
        reason = writer => reason,
        _ = kill.notified() => "closed after a request timed out or did not decode".to_owned(),
        reason = reader => reason.unwrap_or_else(|e| format!("reader task failed: {e}")),
    };
    reader_abort.abort();
    closed.store(true, Ordering::Release);
    tracing::debug!(%addr, %reason, "connection closed");
    let failed = || Error::Connection {
        addr: addr.clone(),
        reason: reason.clone(),
    };
    for (_, reply) in pending.lock().take().unwrap_or_default() {
        let _ = reply.send(Err(failed()));
    }
    rx.close();
    while let Ok(out) = rx.try_recv() {
        if let Some(reply) = out.reply {
            let _ = reply.send(Err(failed()));
        }
    }
}

async fn read_responses(mut rd: Box<dyn AsyncRead + Send + Unpin>, pending: PendingMap) -> String {
    loop {
        let frame = match read_frame(&mut rd).await {
            Ok(frame) => frame,
            Err(e) => return e,
        };
        if frame.len() < 4 {
            return "response shorter than its header".to_owned();
        }
        let correlation_id = frame.clone().get_i32();
        let reply = pending
            .lock()
            .as_mut()
            .and_then(|m| m.remove(&correlation_id));
        match reply {
            Some(reply) => {
                let _ = reply.send(Ok(frame));
            }
            None => return format!("response with unknown correlation id {correlation_id}"),
        }
    }
}

/// Bytes read per step of a large frame: memory grows with what actually arrives, not
/// with what the size prefix claims.
const READ_CHUNK: usize = 64 * 1024;

async fn read_frame(rd: &mut (dyn AsyncRead + Send + Unpin)) -> Result<Bytes, String> {
    let size = rd
        .read_i32()
        .await
        .map_err(|e| format!("read failed: {e}"))?;
    let size = usize::try_from(size)
        .ok()
        .filter(|s| *s <= MAX_RESPONSE_BYTES)
        .ok_or_else(|| format!("response size {size} out of range"))?;
    let mut buf = BytesMut::with_capacity(size.min(READ_CHUNK));
    while buf.len() < size {
        if buf.capacity() == buf.len() {
            buf.reserve((size - buf.len()).min(buf.len().max(READ_CHUNK)));
        }
        let want = (size - buf.len()) as u64;
        let read = (&mut *rd)
            .take(want)
            .read_buf(&mut buf)
            .await
            .map_err(|e| format!("read failed inside a {size}-byte response: {e}"))?;
        if read == 0 {
            return Err(format!("connection closed inside a {size}-byte response"));
        }
    }
    Ok(buf.freeze())
}
