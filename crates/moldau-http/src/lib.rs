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
//!
//! Every body is JSON; every error is `{"error": {"code", "name", "message"}}`.

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

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use moldau_client::{Acks, Admin, Client, Producer, ProducerConfig};
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

struct Inner {
    client: Client,
    admin: Admin,
    producer: Producer,
    metrics: MetricsSource,
    max_body_bytes: usize,
    /// Spreads keyless REST records over partitions.
    round_robin: AtomicU32,
}

impl AppState {
    /// State over `client` (connected to the broker), with `metrics` for `/metrics` and
    /// a request body cap of `max_body_bytes`. Starts the API's producer: idempotent,
    /// `acks=all`, no linger (concurrent requests still share batches while one is in
    /// flight), `max.request.size` at least the body cap.
    pub async fn new(
        client: Client,
        metrics: MetricsSource,
        max_body_bytes: usize,
    ) -> moldau_client::Result<AppState> {
        let producer = Producer::new(
            client.clone(),
            ProducerConfig {
                acks: Acks::All,
                enable_idempotence: true,
                linger: std::time::Duration::ZERO,
                max_request_size: max_body_bytes.max(ProducerConfig::default().max_request_size),
                delivery_timeout: std::time::Duration::from_secs(30),
                ..Default::default()
            },
        )
        .await?;
        Ok(AppState {
            inner: Arc::new(Inner {
                admin: Admin::new(client.clone()),
                client,
                producer,
                metrics,
                max_body_bytes,
                round_robin: AtomicU32::new(0),
            }),
        })
    }

    /// The producer every HTTP write goes through.
    pub fn producer(&self) -> &Producer {
        &self.inner.producer
    }

    /// The Kafka client.
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    /// The admin client.
    pub fn admin(&self) -> &Admin {
        &self.inner.admin
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

/// Serves the API on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}
