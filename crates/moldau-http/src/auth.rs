//! Who an HTTP request acts as.
//!
//! The API reaches the broker over the Kafka protocol, so the broker authenticates and
//! authorizes HTTP users exactly as it does Kafka clients:
//! - [`Access::Open`]: the broker listener the API uses authenticates no one (PLAINTEXT),
//!   so every request shares one client and acts as that listener's principal
//!   (`User:ANONYMOUS`), as any Kafka client on it would.
//! - [`Access::Basic`]: the listener requires SASL, so every request must carry HTTP
//!   Basic credentials (RFC 7617). Each user acts through a client of its own that logs
//!   in to the broker with SASL using that name and password, trying the listener's
//!   mechanisms in order (PLAIN checks the listener's JAAS users, SCRAM the credentials
//!   in the metadata log). ACLs then apply to HTTP users as to anyone, a wrong password
//!   gets the broker's failed-login delay, and nothing here stores or checks passwords.
//!
//! Logins are cached (at most [`MAX_LOGINS`], least recently used first out) and each
//! is renewed after [`LOGIN_LIFETIME`], so a changed or deleted SCRAM credential stops
//! working for HTTP users within that time.

use crate::error::{ApiError, ApiResult};
use crate::AppState;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use base64::Engine;
use moldau_client::kafka_protocol::error::ResponseError;
use moldau_client::security::{SaslCredentials, SaslMechanism};
use moldau_client::{Acks, Admin, Client, ClientConfig, Error, Producer, ProducerConfig};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Most users whose logins are kept at once.
pub const MAX_LOGINS: usize = 256;

/// How long a cached login is used before the user's credentials are checked again by a
/// new SASL login (5 min).
pub const LOGIN_LIFETIME: Duration = Duration::from_secs(300);

/// How HTTP requests authenticate; see the [module docs](self).
#[derive(Debug, Clone)]
pub enum Access {
    /// No authentication: one shared client on `config`.
    Open(ClientConfig),
    /// HTTP Basic, each user logging in to the broker with SASL over `config` (its
    /// bootstrap and TLS settings; its SASL credentials are replaced per user), trying
    /// `mechanisms` in order.
    Basic {
        /// Bootstrap servers and TLS for the listener that requires SASL.
        config: ClientConfig,
        /// The listener's mechanisms, in the order to try.
        mechanisms: Vec<SaslMechanism>,
    },
}

/// The Kafka clients one principal acts through.
pub(crate) struct Clients {
    client: Client,
    admin: Admin,
    /// Started at the first write: an idempotent producer needs the principal to be
    /// allowed to write somewhere (KIP-679), which a read-only user is not.
    producer: tokio::sync::OnceCell<Producer>,
    max_body_bytes: usize,
}

impl Clients {
    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    pub(crate) fn new(client: Client, max_body_bytes: usize) -> Clients {
        Clients {
            admin: Admin::new(client.clone()),
            client,
            producer: tokio::sync::OnceCell::new(),
            max_body_bytes,
        }
    }

    /// The API's producer for this principal: idempotent, `acks=all`, no linger
    /// (concurrent requests still share batches while one is in flight),
    /// `max.request.size` at least the body cap.
    async fn producer(&self) -> moldau_client::Result<&Producer> {
        self.producer
            .get_or_try_init(|| {
                Producer::new(
                    self.client.clone(),
                    ProducerConfig {
                        acks: Acks::All,
                        enable_idempotence: true,
                        linger: Duration::ZERO,
                        max_request_size: self
                            .max_body_bytes
                            .max(ProducerConfig::default().max_request_size),
                        delivery_timeout: Duration::from_secs(30),
                        ..Default::default()
                    },
                )
            })
            .await
    }
}

struct Login {
    clients: Arc<Clients>,
    created: Instant,
    used: Instant,
}

/// The cache of Basic logins, keyed by user name and password.
pub(crate) struct Logins {
    config: ClientConfig,
    mechanisms: Vec<SaslMechanism>,
    max_body_bytes: usize,
    users: Mutex<HashMap<(String, String), Login>>,
}

impl Logins {
    pub(crate) fn new(
        config: ClientConfig,
        mechanisms: Vec<SaslMechanism>,
        max_body_bytes: usize,
    ) -> Logins {
        Logins {
            config,
            mechanisms,
            max_body_bytes,
            users: Mutex::new(HashMap::new()),
        }
    }

    /// The clients of `user` with `password`, logging in first unless a login younger
    /// than [`LOGIN_LIFETIME`] exists. Errors: 401 when every mechanism refuses the
    /// credentials, 503 when the broker cannot be reached.
    async fn get(&self, user: &str, password: &str) -> ApiResult<Arc<Clients>> {
        let key = (user.to_owned(), password.to_owned());
        {
            let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(login) = users.get_mut(&key) {
                if login.created.elapsed() < LOGIN_LIFETIME {
                    login.used = Instant::now();
                    return Ok(login.clients.clone());
                }
                users.remove(&key);
            }
        }
        let clients = Arc::new(self.login(user, password).await?);
        let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        users.retain(|_, l| l.created.elapsed() < LOGIN_LIFETIME);
        if users.len() >= MAX_LOGINS {
            if let Some(oldest) = users
                .iter()
                .min_by_key(|(_, l)| l.used)
                .map(|(k, _)| k.clone())
            {
                users.remove(&oldest);
            }
        }
        let now = Instant::now();
        users.insert(
            key,
            Login {
                clients: clients.clone(),
                created: now,
                used: now,
            },
        );
        Ok(clients)
    }

    async fn login(&self, user: &str, password: &str) -> ApiResult<Clients> {
        let mut refused = None;
        for &mechanism in &self.mechanisms {
            let mut config = self.config.clone();
            config.client_id = "moldau-http".into();
            config.security.sasl = Some(SaslCredentials {
                mechanism,
                username: user.to_owned(),
                password: password.to_owned(),
            });
            match Client::connect(config).await {
                Ok(client) => return Ok(Clients::new(client, self.max_body_bytes)),
                Err(Error::Authentication(reason)) => refused = Some(reason),
                Err(e) => return Err(e.into()),
            }
        }
        tracing::info!(user, reason = ?refused, "HTTP API: login refused");
        Err(unauthorized(format!(
            "the broker refused the credentials of user {user:?}"
        )))
    }
}

/// A 401 SASL_AUTHENTICATION_FAILED; the response carries `WWW-Authenticate: Basic`
/// ([`ApiError`]'s rendering adds it for every 401).
fn unauthorized(message: impl Into<String>) -> ApiError {
    ApiError::kafka(ResponseError::SaslAuthenticationFailed, message)
        .with_status(StatusCode::UNAUTHORIZED)
}

/// `user:password` of an `Authorization: Basic` header. Errors: 401 when the header is
/// missing, is another scheme, or is not base64 of UTF-8 `user:password`.
fn basic_credentials(parts: &Parts) -> ApiResult<(String, String)> {
    let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
        return Err(unauthorized(
            "authentication required: send HTTP Basic credentials of a broker user",
        ));
    };
    let value = value
        .to_str()
        .map_err(|_| unauthorized("the Authorization header is not ASCII"))?;
    let (scheme, encoded) = value.trim().split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(unauthorized(format!(
            "Authorization scheme {scheme:?} is not served: use Basic"
        )));
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| unauthorized("the Basic credentials are not base64 of UTF-8"))?;
    let (user, password) = decoded
        .split_once(':')
        .ok_or_else(|| unauthorized("the Basic credentials have no ':'"))?;
    if user.is_empty() {
        return Err(unauthorized("the Basic credentials name no user"));
    }
    Ok((user.to_owned(), password.to_owned()))
}

/// One request's view of the API: the shared state and the clients of the principal it
/// acts as. Extracting it authenticates the request (401 without valid credentials when
/// the API requires them).
#[derive(Clone)]
pub struct Session {
    state: AppState,
    clients: Arc<Clients>,
}

impl FromRequestParts<AppState> for Session {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Session> {
        let clients = match state.access() {
            crate::Principals::Shared(clients) => clients.clone(),
            crate::Principals::Basic(logins) => {
                let (user, password) = basic_credentials(parts)?;
                logins.get(&user, &password).await?
            }
        };
        Ok(Session {
            state: state.clone(),
            clients,
        })
    }
}

impl Session {
    /// The Kafka client.
    pub fn client(&self) -> &Client {
        &self.clients.client
    }

    /// The admin client.
    pub fn admin(&self) -> &Admin {
        &self.clients.admin
    }

    /// The producer every HTTP write goes through, started at the first write. Errors:
    /// the broker's (TOPIC_AUTHORIZATION_FAILED or CLUSTER_AUTHORIZATION_FAILED for a
    /// principal that may not write).
    pub async fn producer(&self) -> ApiResult<&Producer> {
        Ok(self.clients.producer().await?)
    }

    /// The shared state.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The request body cap, bytes.
    pub fn max_body_bytes(&self) -> usize {
        self.state.max_body_bytes()
    }

    pub(crate) fn next_round_robin(&self) -> u32 {
        self.state.next_round_robin()
    }
}
