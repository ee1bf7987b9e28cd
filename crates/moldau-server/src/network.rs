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

use crate::broker::{Broker, StartError};
use crate::config::BrokerConfig;
use crate::handlers::{self, Dispatch, Reply, ResponseFuture};
use crate::metrics::Timed;
use bytes::{Bytes, BytesMut};
use futures::stream::{FuturesOrdered, StreamExt};
use futures::FutureExt;
use moldau_protocol::frame;
use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::tcp::OwnedReadHalf;
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
                listeners.push(BoundListener {
                    name: endpoint.name.as_str().into(),
                    listener: tcp,
                    addr: bound,
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
        let (accepted_tx, mut accepted) =
            mpsc::channel::<(TcpStream, SocketAddr, Arc<str>, ConnectionSlot)>(64);
        let mut acceptors = tokio::task::JoinSet::new();
        let limits = Arc::new(ConnectionLimits::new(&self.broker.config));
        // With a listener of its own, inter-broker traffic is not limited (Kafka's
        // rule), so clients cannot starve replication; on a shared listener every
        // connection counts.
        let inter_broker = &self.broker.config.cluster.inter_broker_listener_name;
        let separate = self.listeners.len() > 1;
        for l in self.listeners {
            let tx = accepted_tx.clone();
            let limits = limits.clone();
            let exempt = separate && *l.name == **inter_broker;
            acceptors.spawn(async move {
                loop {
                    match l.listener.accept().await {
                        Ok((stream, peer)) => {
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
                            if tx.send((stream, peer, l.name.clone(), slot)).await.is_err() {
                                return;
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
                Some((stream, peer, listener, slot)) = accepted.recv() => {
                    let broker = self.broker.clone();
                    let stop = stop_rx.clone();
                    connections.spawn(async move {
                        let _slot = slot;
                        if let Err(e) = serve_connection(broker, stream, stop, listener).await {
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

/// What the reader task hands over: a frame, or the reason the stream is unusable.
type FrameResult = Result<Bytes, String>;

async fn read_frames(
    mut rd: OwnedReadHalf,
    max_request_bytes: usize,
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
        let size = match frame::check_size(prefix, max_request_bytes) {
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

async fn serve_connection(
    broker: Arc<Broker>,
    stream: TcpStream,
    mut stop: watch::Receiver<bool>,
    listener: Arc<str>,
) -> std::io::Result<()> {
    let _connection = broker.metrics.connection_opened();
    stream.set_nodelay(true)?;
    let peer = stream.peer_addr()?;
    // Kafka reports a member's host as `/ip` (Java's InetAddress.toString()).
    let conn = handlers::ConnInfo {
        client_host: format!("/{}", peer.ip()).into(),
        listener,
    };
    let (rd, wr) = stream.into_split();
    let (tx, mut frames) = mpsc::channel(READ_AHEAD_FRAMES);
    let reader = tokio::spawn(read_frames(rd, broker.config.socket_request_max_bytes, tx));
    let mut writer = BufWriter::with_capacity(256 * 1024, wr);
    // Each response future carries its request's clock (see `metrics`).
    let mut in_flight: FuturesOrdered<Timed<ResponseFuture>> = FuturesOrdered::new();
    // Frame size of each in-flight request, in the same order, and their sum.
    let mut sizes: VecDeque<usize> = VecDeque::new();
    let mut in_flight_bytes = 0usize;
    let mut closing = *stop.borrow();
    let idle = Duration::from_millis(broker.config.connections_max_idle_ms);
    let mut last_active = tokio::time::Instant::now();
    loop {
        if closing && in_flight.is_empty() {
            break;
        }
        tokio::select! {
            biased;
            Some(reply) = in_flight.next(), if !in_flight.is_empty() => {
                // Write this reply and every later one that is already complete, then
                // flush: a finished response never waits behind a slower request.
                let mut next = Some(reply);
                while let Some((reply, done)) = next.take() {
                    in_flight_bytes -= sizes.pop_front().unwrap_or(0);
                    broker.metrics.finish_request(done, matches!(reply, Reply::Close(_)));
                    match reply {
                        Reply::Send(chunks) => {
                            let mut bytes = 0;
                            for chunk in &chunks {
                                writer.write_all(chunk).await?;
                                bytes += chunk.len();
                            }
                            broker.metrics.record_bytes_out(bytes);
                        }
                        Reply::Nothing => {}
                        Reply::Close(reason) => {
                            tracing::warn!(%peer, %reason, "closing connection");
                            closing = true;
                            in_flight.clear();
                            sizes.clear();
                            in_flight_bytes = 0;
                            break;
                        }
                    }
                    next = in_flight.next().now_or_never().flatten();
                }
                writer.flush().await?;
                last_active = tokio::time::Instant::now();
            }
            frame = frames.recv(),
                if !closing
                    && in_flight.len() < MAX_IN_FLIGHT
                    && (in_flight.is_empty() || in_flight_bytes < MAX_IN_FLIGHT_BYTES) => match frame {
                Some(Ok(frame)) => {
                    last_active = tokio::time::Instant::now();
                    let size = frame.len();
                    let timer = broker.metrics.start_request(&frame);
                    match handlers::dispatch(&broker, &conn, frame) {
                    Dispatch::Respond(fut) => {
                        in_flight.push_back(timer.time(fut));
                        sizes.push_back(size);
                        in_flight_bytes += size;
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
