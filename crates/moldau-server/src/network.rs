//! The Kafka listener: one task per connection, requests pipelined, responses in order.
//!
//! Per connection a reader task splits the byte stream into frames (size prefix checked
//! against `socket.request.max.bytes` before anything is allocated, the body read in
//! chunks so a peer that claims a large frame and stalls costs little), and the
//! connection task dispatches each frame in arrival order. Dispatch does the ordered part
//! of a request at once (a produce appends to the log before the next request is looked
//! at) and returns a future for the rest (waiting for fsync, long-poll fetch); the
//! futures run concurrently and their responses are written strictly in request order.
//! A malformed frame or unknown api key closes only that connection.
//!
//! SSL and SASL_SSL connections run the TLS handshake first; SASL_PLAINTEXT and SASL_SSL
//! connections then authenticate ([`crate::security::sasl`]) before any other request is
//! served, with frames capped at `sasl.server.max.receive.size` until then.

use crate::broker::{Broker, StartError};
use crate::config::BrokerConfig;
use crate::handlers::{self, Dispatch, Reply, ResponseFuture};
use crate::metrics::Timed;
use crate::security::sasl::{Authenticator, CredentialLookup, Outcome};
use crate::security::{self, ListenerAuth};
use bytes::{Bytes, BytesMut};
use futures::stream::{FuturesOrdered, StreamExt};
use futures::FutureExt;
use moldau_protocol::frame;
use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

/// Requests in flight per connection before the broker stops reading from it. Clients
/// pipeline far deeper than Kafka's Java default of 5 (librdkafka allows a million):
/// with `acks=all` every request waits for an fsync, and a shallow cap stalls the
/// socket, which backs up the client's accumulator and shows as end-to-end latency
/// spikes of hundreds of ms (measured with a cap of 64).
const MAX_IN_FLIGHT: usize = 1024;
/// Frame bytes in flight per connection before the broker stops reading from it (at
/// least one frame of `socket.request.max.bytes` is always admitted).
const MAX_IN_FLIGHT_BYTES: usize = 64 * 1024 * 1024;
/// Frames read ahead of dispatch per connection. Dispatch is quick (it only starts a
/// request), so a short queue keeps the pipeline full while bounding the memory a peer
/// can make the broker hold to a few frames of `socket.request.max.bytes`.
const READ_AHEAD_FRAMES: usize = 2;
/// Chunk in which frame bodies are read, bytes.
const READ_CHUNK: usize = 64 * 1024;
/// How long a graceful shutdown waits for in-flight requests, ms.
const SHUTDOWN_GRACE_MS: u64 = 10_000;

/// The broker's connection quotas (`max.connections`, `max.connections.per.ip` and its
/// overrides), shared by every listener's acceptor.
struct ConnectionLimits {
    /// One permit per connection under `max.connections`.
    total: Arc<tokio::sync::Semaphore>,
    per_ip: parking_lot::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>,
    per_ip_max: usize,
    overrides: std::collections::BTreeMap<std::net::IpAddr, usize>,
}

/// A connection's place under [`ConnectionLimits`], given back when it is dropped.
struct ConnectionSlot {
    limits: Arc<ConnectionLimits>,
    ip: Option<std::net::IpAddr>,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        if let Some(ip) = self.ip {
            let mut per_ip = self.limits.per_ip.lock();
            if let Some(n) = per_ip.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    per_ip.remove(&ip);
                }
            }
        }
    }
}

impl ConnectionLimits {
    fn new(config: &BrokerConfig) -> Self {
        Self {
            total: Arc::new(tokio::sync::Semaphore::new(
                config
                    .max_connections
                    .min(tokio::sync::Semaphore::MAX_PERMITS),
            )),
            per_ip: parking_lot::Mutex::new(std::collections::HashMap::new()),
            per_ip_max: config.max_connections_per_ip,
            overrides: config.max_connections_per_ip_overrides.clone(),
        }
    }

    /// Counts a connection from `ip` against its address's limit, then waits for a
    /// place under `max.connections` (the connection, accepted, waits unserved).
    /// `Err(limit)` when the address already holds its limit (the connection is to be
    /// closed); `Ok(None)` if the limits are gone (shutting down).
    async fn admit(
        self: &Arc<Self>,
        ip: std::net::IpAddr,
    ) -> Result<Option<ConnectionSlot>, usize> {
        let mut slot = self.count_ip(ip)?;
        match self.total.clone().acquire_owned().await {
            Ok(permit) => {
                slot.permit = Some(permit);
                Ok(Some(slot))
            }
            Err(_) => Ok(None),
        }
    }

    fn count_ip(self: &Arc<Self>, ip: std::net::IpAddr) -> Result<ConnectionSlot, usize> {
        let limit = self.overrides.get(&ip).copied().unwrap_or(self.per_ip_max);
        let mut per_ip = self.per_ip.lock();
        let n = per_ip.entry(ip).or_insert(0);
        if *n >= limit {
            if *n == 0 {
                per_ip.remove(&ip);
            }
            return Err(limit);
        }
        *n += 1;
        Ok(ConnectionSlot {
            limits: self.clone(),
            ip: Some(ip),
            permit: None,
        })
    }

    /// A connection that no limit counts (the inter-broker listener's).
    fn exempt(self: &Arc<Self>) -> ConnectionSlot {
        ConnectionSlot {
            limits: self.clone(),
            ip: None,
            permit: None,
        }
    }
}

/// One bound broker listener.
struct BoundListener {
    name: Arc<str>,
    listener: TcpListener,
    addr: SocketAddr,
    auth: Arc<ListenerAuth>,
}

/// A bound, started broker ready to serve.
pub struct Server {
    broker: Arc<Broker>,
    listeners: Vec<BoundListener>,
}

impl Server {
    /// Binds every listener, starts the node ([`Broker::start`]: quorum, logs,
    /// registration) and, for a broker, waits until the controller has unfenced it, so
    /// clients are served only by a broker that has caught up with the cluster.
    pub async fn bind(config: BrokerConfig) -> Result<Self, StartError> {
        let mut listeners = Vec::new();
        let mut controller = None;
        for endpoint in &config.listeners {
            let addr = endpoint.bind_addr();
            let tcp = TcpListener::bind(&addr)
                .await
                .map_err(|source| StartError::Io {
                    context: format!("binding listener {} ({addr})", endpoint.name),
                    source,
                })?;
            let bound = tcp.local_addr().map_err(|source| StartError::Io {
                context: "reading bound address".into(),
                source,
            })?;
            if config.cluster.is_controller_listener(&endpoint.name) {
                if controller.is_none()
                    && config.cluster.controller_listener_names.first() == Some(&endpoint.name)
                {
                    controller = Some(tcp);
                }
            } else {
                let name: Arc<str> = endpoint.name.as_str().into();
                let security = config.security.get(&endpoint.name);
                let tls = match security.and_then(|s| s.tls.clone()) {
                    Some(settings) => Some(
                        security::tls::TlsAcceptor::new(name.clone(), settings).map_err(
                            |reason| StartError::Io {
                                context: format!("loading TLS material of listener {name}"),
                                source: std::io::Error::other(reason),
                            },
                        )?,
                    ),
                    None => None,
                };
                let sasl = security.and_then(|s| s.sasl.clone()).map(Arc::new);
                // Only a PLAINTEXT inter-broker listener is trusted as such; over TLS or
                // SASL brokers authenticate like anyone else.
                let inter_broker = config.authorizer.is_some()
                    && config.cluster.explicit
                    && endpoint.protocol == crate::config::SecurityProtocol::Plaintext
                    && endpoint.name == config.cluster.inter_broker_listener_name;
                listeners.push(BoundListener {
                    name,
                    listener: tcp,
                    addr: bound,
                    auth: Arc::new(ListenerAuth {
                        tls,
                        sasl,
                        inter_broker,
                    }),
                });
            }
        }
        let advertised = config
            .advertised_listeners
            .iter()
            .map(|a| {
                let mut a = a.clone();
                if a.port == 0 {
                    if let Some(l) = listeners.iter().find(|l| *l.name == *a.name) {
                        a.port = l.addr.port();
                    }
                }
                a
            })
            .collect();
        let broker = Broker::start(config, advertised, controller).await?;
        if broker.config.cluster.roles.broker {
            broker.wait_until_unfenced().await;
        }
        Ok(Self { broker, listeners })
    }

    /// The address the first broker listener bound (`None` on a controller-only node).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listeners.first().map(|l| l.addr)
    }

    /// The address broker listener `name` bound (`None`: no such broker listener).
    pub fn listener_addr(&self, name: &str) -> Option<SocketAddr> {
        self.listeners
            .iter()
            .find(|l| &*l.name == name)
            .map(|l| l.addr)
    }

    /// The broker state.
    pub fn broker(&self) -> &Arc<Broker> {
        &self.broker
    }

    /// Serves until `shutdown` completes, then shuts down gracefully: stop accepting,
    /// finish in-flight requests (up to 10 s), flush every log, write checkpoints and the
    /// clean-shutdown marker.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), moldau_storage::StorageError> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let background = self.broker.spawn_background(stop_rx.clone());
        let mut connections = tokio::task::JoinSet::new();
        type Accepted = (
            TcpStream,
            SocketAddr,
            Arc<str>,
            Arc<ListenerAuth>,
            ConnectionSlot,
        );
        let (accepted_tx, mut accepted) = mpsc::channel::<Accepted>(64);
        let mut acceptors = tokio::task::JoinSet::new();
        let limits = Arc::new(ConnectionLimits::new(&self.broker.config));
        // With a listener of its own, inter-broker traffic is not limited (Kafka's
        // rule), so clients cannot starve replication; on a shared listener every
        // connection counts.
        let inter_broker = &self.broker.config.cluster.inter_broker_listener_name;
        let separate = self.listeners.len() > 1;
        let held = Arc::new(AtomicUsize::new(0));
        for l in self.listeners {
            let tx = accepted_tx.clone();
            let limits = limits.clone();
            let exempt = separate && *l.name == **inter_broker;
            let broker = self.broker.clone();
            let held = held.clone();
            acceptors.spawn(async move {
                loop {
                    match l.listener.accept().await {
                        Ok((stream, peer)) => {
                            let stream = match exempt {
                                true => stream,
                                false => match throttle_connection(&broker, stream, peer, &held) {
                                    Some(stream) => stream,
                                    None => continue,
                                },
                            };
                            // At `max.connections` this listener accepts no more until
                            // one closes.
                            let slot = if exempt {
                                limits.exempt()
                            } else {
                                match limits.admit(peer.ip()).await {
                                    Ok(Some(slot)) => slot,
                                    Ok(None) => return,
                                    Err(limit) => {
                                        tracing::info!(%peer, limit, "closing connection: its address already holds max.connections.per.ip connections");
                                        continue;
                                    }
                                }
                            };
                            if tx
                                .send((stream, peer, l.name.clone(), l.auth.clone(), slot))
                                .await
                                .is_err()
                            {
                                return;
                            }
                            let wait = creation_rate_throttle(&broker, &l.name, exempt);
                            if wait > 0 {
                                tracing::debug!(listener = %l.name, throttle_ms = wait, "over max.connection.creation.rate: accepting the next connection after the throttle time");
                                tokio::time::sleep(Duration::from_millis(wait)).await;
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
            });
        }
        drop(accepted_tx);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                Some((stream, peer, listener, auth, slot)) = accepted.recv() => {
                    let broker = self.broker.clone();
                    let stop = stop_rx.clone();
                    connections.spawn(async move {
                        let _slot = slot;
                        if let Err(e) = serve_connection(broker, stream, stop, listener, auth).await {
                            tracing::debug!(%peer, error = %e, "connection ended with an error");
                        }
                    });
                }
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                _ = &mut shutdown => break,
            }
        }
        // Leaderships move while this broker still serves, so clients follow them
        // without errors; then it stops accepting.
        self.broker
            .controlled_shutdown(Duration::from_millis(
                self.broker.config.cluster.broker_session_timeout_ms * 3,
            ))
            .await;
        tracing::info!("shutting down: no new connections, finishing in-flight requests");
        acceptors.abort_all();
        drop(accepted);
        let _ = stop_tx.send(true);
        let drain = async { while connections.join_next().await.is_some() {} };
        if tokio::time::timeout(Duration::from_millis(SHUTDOWN_GRACE_MS), drain)
            .await
            .is_err()
        {
            tracing::warn!("in-flight requests did not finish in time; closing their connections");
            connections.abort_all();
            while connections.join_next().await.is_some() {}
        }
        for job in background {
            let _ = job.await;
        }
        self.broker.stop_cluster().await;
        let broker = self.broker.clone();
        tokio::task::spawn_blocking(move || broker.shutdown())
            .await
            .unwrap_or_else(|e| {
                Err(moldau_storage::StorageError::Io {
                    context: "shutdown task".into(),
                    source: std::io::Error::other(e.to_string()),
                })
            })?;
        tracing::info!("shut down cleanly");
        Ok(())
    }
}

/// Most connections held open at once because their address exceeded its
/// `connection_creation_rate`; beyond it such connections are closed at once.
const MAX_HELD_CONNECTIONS: usize = 1024;

/// Applies the `connection_creation_rate` quota of `peer`'s address (KIP-612): a
/// connection over it is held unserved for the throttle time, then closed, so that the
/// client's reconnect waits that long, as Kafka does. Returns the stream to serve, or
/// `None` when it is being held.
fn throttle_connection(
    broker: &Broker,
    stream: TcpStream,
    peer: SocketAddr,
    held: &Arc<AtomicUsize>,
) -> Option<TcpStream> {
    if !broker
        .quotas
        .is_active(moldau_metadata::quota::CONNECTION_CREATION_RATE)
    {
        return Some(stream);
    }
    let image = broker.image();
    let now = u64::try_from(crate::replica_manager::now_ms()).unwrap_or(0);
    let ip = peer.ip().to_canonical().to_string();
    let ms = broker
        .quotas
        .record_connection(&image.client_quotas, &ip, now);
    if ms == 0 {
        return Some(stream);
    }
    tracing::info!(%peer, throttle_ms = ms, "connection over its address's connection_creation_rate: closing it after the throttle time");
    if held.fetch_add(1, Ordering::AcqRel) >= MAX_HELD_CONNECTIONS {
        held.fetch_sub(1, Ordering::AcqRel);
        return None;
    }
    let held = held.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        drop(stream);
        held.fetch_sub(1, Ordering::AcqRel);
    });
    None
}

/// Records a connection just accepted on `listener` against its
/// `listener.name.<listener>.max.connection.creation.rate` and, unless the listener is
/// the inter-broker one (`exempt`), the broker's `max.connection.creation.rate`
/// (KIP-612). Returns how long the listener waits before accepting another, ms: the
/// larger throttle of the two (0 when neither is set or both are under their limit).
fn creation_rate_throttle(broker: &Broker, listener: &str, exempt: bool) -> u64 {
    let config = &broker.config;
    let now = u64::try_from(crate::replica_manager::now_ms()).unwrap_or(0);
    let unlimited = i32::MAX as usize;
    let mut ms = 0;
    if let Some(&limit) = config.listener_connection_creation_rate.get(listener) {
        let sensor = format!("listener={listener}");
        ms = broker
            .quotas
            .record_connection_creation(&sensor, limit, now);
    }
    if !exempt && config.max_connection_creation_rate < unlimited {
        let limit = config.max_connection_creation_rate;
        ms = ms.max(
            broker
                .quotas
                .record_connection_creation("broker", limit, now),
        );
    }
    ms
}

/// What the reader task hands over: a frame, or the reason the stream is unusable.
type FrameResult = Result<Bytes, String>;

/// Splits the stream into frames. `max_frame_bytes` is read before each frame, so the
/// connection can raise it once the client has authenticated.
async fn read_frames<R: AsyncRead + Unpin>(
    mut rd: R,
    max_frame_bytes: Arc<AtomicUsize>,
    tx: mpsc::Sender<FrameResult>,
) {
    loop {
        let mut prefix = [0u8; frame::SIZE_PREFIX];
        match rd.read_exact(&mut prefix).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return,
            Err(e) => {
                let _ = tx.send(Err(e.to_string())).await;
                return;
            }
        }
        let size = match frame::check_size(prefix, max_frame_bytes.load(Ordering::Acquire)) {
            Ok(size) => size,
            Err(e) => {
                let _ = tx.send(Err(e.to_string())).await;
                return;
            }
        };
        let mut buf = BytesMut::with_capacity(size.min(READ_CHUNK));
        while buf.len() < size {
            if buf.capacity() == buf.len() {
                buf.reserve((size - buf.len()).min(READ_CHUNK.max(buf.len())));
            }
            let want = size - buf.len();
            let mut limited = (&mut rd).take(want as u64);
            match limited.read_buf(&mut buf).await {
                Ok(0) => {
                    let _ = tx
                        .send(Err(format!("connection closed inside a {size}-byte frame")))
                        .await;
                    return;
                }
                Ok(_) => {}
                Err(e) => {
                    let _ = tx.send(Err(e.to_string())).await;
                    return;
                }
            }
        }
        if tx.send(Ok(buf.freeze())).await.is_err() {
            return;
        }
    }
}

/// The longest a TLS handshake may take, ms (the idle timeout, if shorter).
const TLS_HANDSHAKE_MS: u64 = 30_000;

async fn serve_connection(
    broker: Arc<Broker>,
    stream: TcpStream,
    stop: watch::Receiver<bool>,
    listener: Arc<str>,
    auth: Arc<ListenerAuth>,
) -> std::io::Result<()> {
    let metrics = broker.clone();
    let _connection = metrics.metrics.connection_opened();
    stream.set_nodelay(true)?;
    let peer = stream.peer_addr()?;
    let Some(acceptor) = &auth.tls else {
        let (rd, wr) = stream.into_split();
        let principal: Arc<str> = if auth.inter_broker {
            security::INTER_BROKER.into()
        } else {
            security::ANONYMOUS.into()
        };
        return serve_stream(broker, rd, wr, peer, stop, listener, auth, principal).await;
    };
    let limit = Duration::from_millis(TLS_HANDSHAKE_MS.min(broker.config.connections_max_idle_ms));
    let (tls, cert_principal) = match tokio::time::timeout(limit, acceptor.accept(stream)).await {
        Ok(Ok(done)) => done,
        Ok(Err(e)) => {
            tracing::info!(%peer, %listener, error = %e, "TLS handshake failed; closing connection");
            return Ok(());
        }
        Err(_) => {
            tracing::info!(%peer, %listener, "TLS handshake not finished in time; closing connection");
            return Ok(());
        }
    };
    let principal: Arc<str> = match cert_principal {
        Some(name) => format!("User:{name}").into(),
        None => security::ANONYMOUS.into(),
    };
    tracing::debug!(%peer, %listener, %principal, "TLS connection established");
    let (rd, wr) = tokio::io::split(tls);
    serve_stream(broker, rd, wr, peer, stop, listener, auth, principal).await
}

/// Writes one reply (nothing for [`Reply::Nothing`] and [`Reply::Close`]); returns the
/// bytes written.
async fn write_reply<W: AsyncWrite + Unpin>(
    writer: &mut BufWriter<W>,
    reply: &Reply,
) -> std::io::Result<usize> {
    let mut bytes = 0;
    if let Reply::Send(chunks) = reply {
        for chunk in chunks {
            writer.write_all(chunk).await?;
            bytes += chunk.len();
        }
    }
    Ok(bytes)
}

/// A connection's SASL session: the exchange state (kept for re-authentication) and
/// when the session expires (KIP-368).
struct SaslSession {
    authenticator: Authenticator,
    user: String,
    mechanism: crate::config::security::SaslMechanism,
    expires: Option<tokio::time::Instant>,
    /// A re-authentication failed: the next request closes the connection.
    failed: bool,
}

impl SaslSession {
    fn lifetime(broker: &Broker) -> Option<Duration> {
        let ms = broker.config.auth.connections_max_reauth_ms;
        (ms > 0).then(|| Duration::from_millis(ms))
    }
}

/// When a session of `lifetime_ms` (0: none) that starts now expires.
fn session_expiry(lifetime_ms: i64) -> Option<tokio::time::Instant> {
    let ms = u64::try_from(lifetime_ms).ok().filter(|ms| *ms > 0)?;
    tokio::time::Instant::now().checked_add(Duration::from_millis(ms))
}

fn credential_lookup(broker: &Arc<Broker>) -> CredentialLookup {
    let broker = Arc::downgrade(broker);
    Arc::new(move |user, mechanism| {
        let image = broker.upgrade()?.image();
        image
            .scram_credentials
            .get(user)?
            .get(mechanism.name())
            .cloned()
    })
}

/// What the authentication phase ended with.
enum AuthEnd {
    /// Authenticated: serve requests as this session.
    Session(SaslSession),
    /// The connection is done (failed, closed, or shutting down).
    Closed,
}

/// Runs the SASL exchange before any other request (see [`crate::security::sasl`]).
#[allow(clippy::too_many_arguments)]
async fn authenticate<W: AsyncWrite + Unpin>(
    broker: &Arc<Broker>,
    conn: &handlers::ConnInfo,
    settings: Arc<crate::config::security::SaslSettings>,
    frames: &mut mpsc::Receiver<FrameResult>,
    writer: &mut BufWriter<W>,
    stop: &mut watch::Receiver<bool>,
    peer: SocketAddr,
    max_frame: &AtomicUsize,
) -> std::io::Result<AuthEnd> {
    let lifetime = SaslSession::lifetime(broker);
    let mut authenticator = Authenticator::new(
        settings,
        credential_lookup(broker),
        lifetime.map_or(0, |d| d.as_millis() as i64),
    );
    // One deadline for the whole exchange: ApiVersions requests do not extend it.
    let idle = Duration::from_millis(broker.config.connections_max_idle_ms);
    let deadline = tokio::time::Instant::now()
        .checked_add(idle)
        .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(86_400));
    loop {
        let frame = tokio::select! {
            frame = frames.recv() => frame,
            () = tokio::time::sleep_until(deadline) => {
                tracing::info!(%peer, "closing connection: not authenticated within connections.max.idle.ms");
                return Ok(AuthEnd::Closed);
            }
            _ = stop.changed() => return Ok(AuthEnd::Closed),
        };
        let frame = match frame {
            Some(Ok(frame)) => frame,
            Some(Err(reason)) => {
                tracing::info!(%peer, %reason, "closing connection before authentication");
                return Ok(AuthEnd::Closed);
            }
            None => return Ok(AuthEnd::Closed),
        };
        let is_api_versions = !authenticator.expects_raw_token()
            && frame::peek_header(&frame)
                .is_ok_and(|h| h.api_key == kafka_protocol::messages::ApiKey::ApiVersions as i16);
        if is_api_versions {
            let Dispatch::Respond(fut) = handlers::dispatch(broker, conn, frame) else {
                return Ok(AuthEnd::Closed);
            };
            write_reply(writer, &fut.await).await?;
            writer.flush().await?;
            continue;
        }
        match authenticator.on_frame(frame) {
            Outcome::Continue(reply) => {
                write_reply(writer, &reply).await?;
                writer.flush().await?;
            }
            Outcome::Authenticated {
                reply,
                user,
                mechanism,
                session_lifetime_ms,
            } => {
                // Requests may follow at once: the frame cap rises before the answer goes.
                max_frame.store(broker.config.socket_request_max_bytes, Ordering::Release);
                write_reply(writer, &reply).await?;
                writer.flush().await?;
                tracing::debug!(%peer, %user, mechanism = mechanism.name(), "authenticated");
                return Ok(AuthEnd::Session(SaslSession {
                    authenticator,
                    user,
                    mechanism,
                    expires: session_expiry(session_lifetime_ms),
                    failed: false,
                }));
            }
            Outcome::Failed { reply, reason } => {
                tracing::info!(%peer, listener = %conn.listener, %reason, "SASL authentication failed; closing connection");
                broker.metrics.record_failed_authentication();
                tokio::time::sleep(Duration::from_millis(
                    broker.config.auth.failed_authentication_delay_ms,
                ))
                .await;
                if let Some(reply) = reply {
                    write_reply(writer, &reply).await?;
                    writer.flush().await?;
                }
                return Ok(AuthEnd::Closed);
            }
            Outcome::Close(reason) => {
                tracing::info!(%peer, listener = %conn.listener, %reason, "closing connection during SASL authentication");
                return Ok(AuthEnd::Closed);
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn serve_stream<R, W>(
    broker: Arc<Broker>,
    rd: R,
    wr: W,
    peer: SocketAddr,
    mut stop: watch::Receiver<bool>,
    listener: Arc<str>,
    auth: Arc<ListenerAuth>,
    principal: Arc<str>,
) -> std::io::Result<()>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin,
{
    // Kafka reports a member's host as `/ip` (Java's InetAddress.toString()).
    let mut conn = handlers::ConnInfo {
        client_host: format!("/{}", peer.ip()).into(),
        listener,
        principal,
        muted_until_ms: Arc::new(std::sync::atomic::AtomicU64::new(0)),
        fetch_permit: Arc::default(),
    };
    let max_request = broker.config.socket_request_max_bytes;
    let max_frame = Arc::new(AtomicUsize::new(match auth.sasl {
        Some(_) => broker.config.auth.sasl_max_receive_size.min(max_request),
        None => max_request,
    }));
    let (tx, mut frames) = mpsc::channel(READ_AHEAD_FRAMES);
    let reader = tokio::spawn(read_frames(rd, max_frame.clone(), tx));
    let mut writer = BufWriter::with_capacity(256 * 1024, wr);
    let mut session = match &auth.sasl {
        None => None,
        Some(settings) => {
            let end = authenticate(
                &broker,
                &conn,
                settings.clone(),
                &mut frames,
                &mut writer,
                &mut stop,
                peer,
                &max_frame,
            )
            .await;
            match end {
                Ok(AuthEnd::Session(s)) => {
                    conn.principal = format!("User:{}", s.user).into();
                    max_frame.store(max_request, Ordering::Release);
                    Some(s)
                }
                Ok(AuthEnd::Closed) | Err(_) => {
                    reader.abort();
                    let _ = writer.flush().await;
                    return writer.shutdown().await;
                }
            }
        }
    };
    // Each response future carries its request's clock (see `metrics`).
    let mut in_flight: FuturesOrdered<Timed<ResponseFuture>> = FuturesOrdered::new();
    // Frame size of each in-flight request and whether it is a Fetch, in the same order;
    // the sum of the sizes and the number of Fetches.
    let mut sizes: VecDeque<(usize, bool)> = VecDeque::new();
    let mut in_flight_bytes = 0usize;
    let mut fetches_in_flight = 0usize;
    // A Fetch read while another was in flight waits here, and no later frame is read,
    // until that one's response is written: one fetch response at a time per connection
    // bounds what a client that pipelines fetches and never reads can make the broker
    // hold (Kafka serves a connection one request at a time). Clients keep one fetch in
    // flight per broker anyway (librdkafka, the Java consumer, followers).
    let mut parked: Option<Bytes> = None;
    let mut closing = *stop.borrow();
    let idle = Duration::from_millis(broker.config.connections_max_idle_ms);
    let mut last_active = tokio::time::Instant::now();
    loop {
        if closing && in_flight.is_empty() {
            break;
        }
        // A quota throttle mutes the connection: no request is read until it ends.
        let mute_ms = conn
            .muted_until_ms
            .load(Ordering::Acquire)
            .saturating_sub(u64::try_from(crate::replica_manager::now_ms()).unwrap_or(0));
        let muted = mute_ms > 0;
        tokio::select! {
            biased;
            Some(reply) = in_flight.next(), if !in_flight.is_empty() => {
                // Write this reply and every later one that is already complete, then
                // flush: a finished response never waits behind a slower request.
                let mut next = Some(reply);
                while let Some((reply, done)) = next.take() {
                    let (size, was_fetch) = sizes.pop_front().unwrap_or((0, false));
                    in_flight_bytes -= size;
                    fetches_in_flight -= usize::from(was_fetch);
                    broker.metrics.finish_request(done, matches!(reply, Reply::Close(_)));
                    if let Reply::Close(reason) = &reply {
                        tracing::warn!(%peer, %reason, "closing connection");
                        closing = true;
                        in_flight.clear();
                        sizes.clear();
                        in_flight_bytes = 0;
                        fetches_in_flight = 0;
                        break;
                    }
                    // A client that stops reading is idle too: after
                    // `connections.max.idle.ms` without progress its connection closes
                    // and what it holds is freed.
                    let Ok(written) = tokio::time::timeout(idle, write_reply(&mut writer, &reply)).await else {
                        tracing::info!(%peer, idle_ms = idle.as_millis() as u64, "closing connection: the client read no response for connections.max.idle.ms");
                        reader.abort();
                        return Ok(());
                    };
                    broker.metrics.record_bytes_out(written?);
                    if was_fetch {
                        // Written: its records no longer count against the pool.
                        conn.fetch_permit.lock().take();
                    }
                    next = in_flight.next().now_or_never().flatten();
                }
                let Ok(flushed) = tokio::time::timeout(idle, writer.flush()).await else {
                    tracing::info!(%peer, idle_ms = idle.as_millis() as u64, "closing connection: the client read no response for connections.max.idle.ms");
                    reader.abort();
                    return Ok(());
                };
                flushed?;
                last_active = tokio::time::Instant::now();
            }
            () = tokio::time::sleep(Duration::from_millis(mute_ms)), if muted && !closing => {}
            frame = async {
                    match parked.take() {
                        Some(frame) => Some(Ok(frame)),
                        None => frames.recv().await,
                    }
                },
                if !closing
                    && !muted
                    && (parked.is_none() || fetches_in_flight == 0)
                    && in_flight.len() < MAX_IN_FLIGHT
                    && (in_flight.is_empty() || in_flight_bytes < MAX_IN_FLIGHT_BYTES) => match frame {
                Some(Ok(frame)) => {
                    last_active = tokio::time::Instant::now();
                    let is_fetch = frame::peek_header(&frame)
                        .is_ok_and(|h| h.api_key == kafka_protocol::messages::ApiKey::Fetch as i16);
                    if is_fetch && fetches_in_flight > 0 {
                        parked = Some(frame);
                        continue;
                    }
                    let size = frame.len();
                    let timer = broker.metrics.start_request(&frame);
                    let dispatched = match session.as_mut() {
                        Some(s) => sasl_session_frame(&broker, &conn, s, frame, peer),
                        None => handlers::dispatch(&broker, &conn, frame),
                    };
                    match dispatched {
                    Dispatch::Respond(fut) => {
                        in_flight.push_back(timer.time(fut));
                        sizes.push_back((size, is_fetch));
                        in_flight_bytes += size;
                        fetches_in_flight += usize::from(is_fetch);
                    }
                    Dispatch::Close(reason) => {
                        broker.metrics.reject_request(timer);
                        tracing::info!(%peer, %reason, "closing connection");
                        closing = true;
                    }
                    }
                }
                Some(Err(reason)) => {
                    tracing::info!(%peer, %reason, "closing connection");
                    closing = true;
                }
                None => closing = true,
            },
            // A deadline past what the clock can hold (a huge `connections.max.idle.ms`)
            // means never.
            () = tokio::time::sleep_until(last_active.checked_add(idle).unwrap_or(last_active)),
                if !closing && in_flight.is_empty() && last_active.checked_add(idle).is_some() => {
                tracing::info!(%peer, idle_ms = idle.as_millis() as u64, "closing connection: idle for connections.max.idle.ms");
                closing = true;
            }
            changed = stop.changed(), if !closing => {
                if changed.is_err() || *stop.borrow() {
                    closing = true;
                }
            }
        }
    }
    reader.abort();
    writer.flush().await?;
    writer.shutdown().await
}

/// A request on an authenticated SASL connection: a re-authentication (KIP-368) when
/// the session has an end (`connections.max.reauth.ms`, or an OAUTHBEARER token's
/// expiry), otherwise an ordinary request, refused once the session has expired.
fn sasl_session_frame(
    broker: &Arc<Broker>,
    conn: &handlers::ConnInfo,
    session: &mut SaslSession,
    frame: Bytes,
    peer: SocketAddr,
) -> Dispatch {
    use kafka_protocol::messages::ApiKey;
    if session.failed {
        return Dispatch::Close("re-authentication failed".into());
    }
    // Sessions without an end (no `connections.max.reauth.ms`, no token lifetime) are
    // never re-authenticated.
    if session.expires.is_none() {
        return handlers::dispatch(broker, conn, frame);
    }
    let api_key = frame::peek_header(&frame).map(|h| h.api_key).unwrap_or(-1);
    let reauth =
        api_key == ApiKey::SaslHandshake as i16 || api_key == ApiKey::SaslAuthenticate as i16;
    if !reauth {
        if session
            .expires
            .is_some_and(|at| tokio::time::Instant::now() >= at)
        {
            return Dispatch::Close(
                "the SASL session expired (connections.max.reauth.ms or the token's expiry) \
                 without re-authentication"
                    .into(),
            );
        }
        return handlers::dispatch(broker, conn, frame);
    }
    if api_key == ApiKey::SaslHandshake as i16 {
        if frame::peek_header(&frame).is_ok_and(|h| h.api_version == 0) {
            return Dispatch::Close(
                "re-authentication needs SaslHandshake v1 and SaslAuthenticate (KIP-368)".into(),
            );
        }
        session.authenticator.restart();
    }
    let ready =
        |reply: Reply| -> Dispatch { Dispatch::Respond(Box::pin(std::future::ready(reply))) };
    match session.authenticator.on_frame(frame) {
        Outcome::Continue(reply) => ready(reply),
        Outcome::Authenticated {
            reply,
            user,
            mechanism,
            session_lifetime_ms,
        } => {
            if mechanism != session.mechanism {
                return Dispatch::Close(format!(
                    "re-authentication with {} on a connection authenticated with {}",
                    mechanism.name(),
                    session.mechanism.name()
                ));
            }
            if user != session.user {
                return Dispatch::Close(format!(
                    "re-authentication as {user} on a connection of {}: a connection keeps its principal",
                    session.user
                ));
            }
            session.expires = session_expiry(session_lifetime_ms);
            tracing::debug!(%peer, %user, "re-authenticated");
            ready(reply)
        }
        Outcome::Failed { reply, reason } => {
            tracing::info!(%peer, %reason, "SASL re-authentication failed; closing connection");
            broker.metrics.record_failed_authentication();
            // The answer goes out; the connection closes at its next request (a
            // client closes it itself on the error).
            session.failed = true;
            match reply {
                Some(reply) => ready(reply),
                None => Dispatch::Close(reason),
            }
        }
        Outcome::Close(reason) => Dispatch::Close(reason),
    }
}
