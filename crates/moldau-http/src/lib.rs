//! Moldau's HTTP API (axum), served by the broker on `localhost:8080` by default.
//!
//! It talks to the broker over the Kafka protocol with Moldau's own client, so every
//! request takes the same validated path as any Kafka client's and this crate does not
//! depend on the broker's internals; only `/metrics` reads the broker directly, through
//! the [`MetricsSource`] it is given.
//!
//! Layout (one module per surface):
//! - [`minimal`]: `POST /produce` and `GET /fetch`, exactly the original minimal broker's
//!   API (partition 0 of a topic, payloads as UTF-8 text or base64).
//! - [`topics`], [`records`], [`groups`], [`transactions`], [`cluster`]: the REST
//!   surface under `/api`.
//! - [`ops`]: `/metrics` (Prometheus text), `/healthz`, `/readyz`.
//! - [`console`]: the web console at `/`, its files compiled into the binary.
//! - [`error`]: JSON errors with Kafka's error name and a fitting HTTP status.
//! - [`auth`]: who a request acts as (HTTP Basic users log in to the broker with SASL).
//!
//! Every body is JSON; every error is `{"error": {"code", "name", "message"}}`.

pub mod auth;
pub mod cluster;
pub mod console;
pub mod encoding;
pub mod error;
pub mod groups;
pub mod minimal;
pub mod ops;
pub mod produce;
pub mod records;
pub mod topics;
pub mod transactions;

pub use auth::{Access, Session};
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use moldau_client::Client;
use std::future::Future;
use std::sync::atomic::AtomicU32;
use std::sync::Arc;

/// Renders the broker's metrics in Prometheus text format (0.0.4).
pub type MetricsSource = Arc<dyn Fn() -> String + Send + Sync>;

/// Largest request body accepted by default, bytes (1 MiB, Kafka's default
/// `max.message.bytes`).
pub const DEFAULT_MAX_BODY_BYTES: usize = 1 << 20;

/// What every handler shares. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

/// Whose clients requests act through.
pub(crate) enum Principals {
    /// Everyone's: the broker listener authenticates no one.
    Shared(Arc<auth::Clients>),
    /// Each Basic user's own.
    Basic(Box<auth::Logins>),
}

struct Inner {
    principals: Principals,
    /// Reaches the broker without logging in, for `/readyz`.
    probe: moldau_client::ClientConfig,
    metrics: MetricsSource,
    max_body_bytes: usize,
    /// Spreads keyless REST records over partitions.
    round_robin: AtomicU32,
}

impl AppState {
    /// State for requests authenticated as `access` says, with `metrics` for `/metrics`
    /// and a request body cap of `max_body_bytes`. With [`Access::Open`] it connects the
    /// shared client first (errors: the connect's); with [`Access::Basic`] nothing
    /// connects until a user's first request.
    pub async fn new(
        access: Access,
        metrics: MetricsSource,
        max_body_bytes: usize,
    ) -> moldau_client::Result<AppState> {
        let (principals, mut probe) = match access {
            Access::Open(config) => {
                let client = Client::connect(config.clone()).await?;
                (
                    Principals::Shared(Arc::new(auth::Clients::new(client, max_body_bytes))),
                    config,
                )
            }
            Access::Basic { config, mechanisms } => (
                Principals::Basic(Box::new(auth::Logins::new(
                    config.clone(),
                    mechanisms,
                    max_body_bytes,
                ))),
                config,
            ),
        };
        probe.security.sasl = None;
        Ok(AppState {
            inner: Arc::new(Inner {
                principals,
                probe,
                metrics,
                max_body_bytes,
                round_robin: AtomicU32::new(0),
            }),
        })
    }

    pub(crate) fn access(&self) -> &Principals {
        &self.inner.principals
    }

    /// The request body cap, bytes.
    pub fn max_body_bytes(&self) -> usize {
        self.inner.max_body_bytes
    }

    fn next_round_robin(&self) -> u32 {
        self.inner
            .round_robin
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }
}

/// Every route.
pub fn router(state: AppState) -> Router {
    let limit = state.max_body_bytes();
    Router::new()
        .route("/produce", post(minimal::produce))
        .route("/fetch", get(minimal::fetch))
        .route("/api/cluster", get(cluster::describe))
        .route("/api/topics", get(topics::list).post(topics::create))
        .route(
            "/api/topics/{topic}",
            get(topics::describe).delete(topics::delete),
        )
        .route(
            "/api/topics/{topic}/configs",
            axum::routing::patch(topics::alter_configs),
        )
        .route(
            "/api/topics/{topic}/records",
            get(records::fetch).post(records::produce),
        )
        .route("/api/groups", get(groups::list))
        .route("/api/groups/{group}", get(groups::describe))
        .route("/api/transactions", get(transactions::list))
        .route("/api/transactions/{id}", get(transactions::describe))
        .route("/metrics", get(ops::metrics))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/", get(console::index))
        .route("/console/{file}", get(console::asset))
        .fallback(ops::not_found)
        .method_not_allowed_fallback(ops::method_not_allowed)
        .layer(axum::middleware::map_response(ops::json_errors))
        // The handlers read bodies as bytes and check the cap themselves, so the error
        // is JSON; this layer only stops axum's own smaller default from applying first.
        .layer(DefaultBodyLimit::max(limit.saturating_add(1)))
        .with_state(state)
}

/// Serves the API on `listener` (a [`tokio::net::TcpListener`], or a
/// [`HandshakeListener`] for HTTPS) until `shutdown` completes.
pub async fn serve<L>(
    listener: L,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Most connection handshakes (TLS) in progress at once on a [`HandshakeListener`].
pub const MAX_HANDSHAKES: usize = 256;

/// How long a connection's handshake may take before it is dropped (10 s).
pub const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A listener whose connections are handed to the server only after a handshake (TLS)
/// on each, run concurrently (at most [`MAX_HANDSHAKES`], each within
/// [`HANDSHAKE_TIMEOUT`]) so that a slow or silent client delays no one else. A failed
/// handshake (a plaintext client, an untrusted certificate) closes that connection and
/// is logged at INFO.
pub struct HandshakeListener<Io> {
    ready: tokio::sync::mpsc::Receiver<(Io, std::net::SocketAddr)>,
    local: std::net::SocketAddr,
}

impl<Io: Send + 'static> HandshakeListener<Io> {
    /// Accepts on `tcp` and runs `handshake` on every connection.
    pub fn new<F, Fut>(tcp: tokio::net::TcpListener, handshake: F) -> std::io::Result<Self>
    where
        F: Fn(tokio::net::TcpStream) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::io::Result<Io>> + Send + 'static,
    {
        let local = tcp.local_addr()?;
        let (tx, ready) = tokio::sync::mpsc::channel(64);
        let slots = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
        tokio::spawn(async move {
            loop {
                let Ok(slot) = slots.clone().acquire_owned().await else {
                    return;
                };
                let (stream, peer) = match tcp.accept().await {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors and the like: wait, as axum does.
                        tracing::warn!(error = %e, "HTTP accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        continue;
                    }
                };
                if tx.is_closed() {
                    return;
                }
                let _ = stream.set_nodelay(true);
                let shaken = handshake(stream);
                let tx = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, shaken).await {
                        Ok(Ok(io)) => {
                            let _ = tx.send((io, peer)).await;
                        }
                        Ok(Err(e)) => {
                            tracing::info!(%peer, error = %e, "HTTPS handshake failed")
                        }
                        Err(_) => tracing::info!(%peer, "HTTPS handshake timed out"),
                    }
                    drop(slot);
                });
            }
        });
        Ok(HandshakeListener { ready, local })
    }
}

impl<Io> axum::serve::Listener for HandshakeListener<Io>
where
    Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    type Io = Io;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Io, std::net::SocketAddr) {
        match self.ready.recv().await {
            Some(ready) => ready,
            // The accept task ended (its listener failed for good): serve nothing more.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        Ok(self.local)
    }
}
