//! The server side of Kafka's SASL exchange on SASL_PLAINTEXT and SASL_SSL listeners
//! (protocol guide "SASL Authentication Sequence", KIP-43, KIP-152, KIP-368).
//!
//! Before a client has authenticated, only ApiVersions, SaslHandshake and
//! SaslAuthenticate are served (the caller answers ApiVersions); anything else closes
//! the connection, as Kafka does. SaslHandshake v1 is followed by SaslAuthenticate
//! requests carrying the tokens; after SaslHandshake v0 the tokens come as bare
//! size-prefixed frames and are answered the same way (the pre-KIP-152 flow that old
//! clients use). PLAIN (RFC 4616) checks the listener's JAAS users; SCRAM takes two
//! round trips ([`super::scram`]); OAUTHBEARER checks a signed JWT ([`super::oauth`]) and
//! answers a refused one with RFC 7628's error challenge before failing.

use super::oauth;
use super::scram::{self, ServerFirst};
use crate::config::security::{SaslMechanism, SaslSettings};
use crate::handlers::{encode_response, Reply};
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
    SaslHandshakeResponse,
};
use kafka_protocol::protocol::{Decodable, StrBytes};
use moldau_metadata::{ScramCredential, ScramMechanism};
use moldau_protocol::error::ResponseError;
use moldau_protocol::frame;
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// Looks up a user's SCRAM credential (from the metadata image).
pub type CredentialLookup =
    Arc<dyn Fn(&str, ScramMechanism) -> Option<ScramCredential> + Send + Sync>;

enum State {
    /// Waiting for SaslHandshake.
    Handshake,
    /// Mechanism chosen; waiting for the first token.
    Start { mechanism: SaslMechanism, raw: bool },
    /// SCRAM: server-first sent; waiting for client-final.
    ScramFinal {
        mechanism: SaslMechanism,
        raw: bool,
        first: Box<ServerFirst>,
    },
    /// OAUTHBEARER: the token was refused and the error challenge sent; waiting for the
    /// client's `\x01` (RFC 7628 §3.2.2), after which the exchange fails with `reason`.
    OAuthFailed { raw: bool, reason: String },
    /// Authenticated.
    Done,
}

/// What the connection does after a frame of the exchange.
pub enum Outcome {
    /// Send this and go on with the exchange.
    Continue(Reply),
    /// The client authenticated as user `user`; send this, then serve requests.
    Authenticated {
        /// The response to send.
        reply: Reply,
        /// The user name (the principal is `User:<user>`).
        user: String,
        /// The mechanism used.
        mechanism: SaslMechanism,
        /// The session's lifetime sent to the client, ms (0: none; KIP-368).
        session_lifetime_ms: i64,
    },
    /// Authentication failed: send `reply` (if any) after
    /// `connection.failed.authentication.delay.ms`, then close. `reason` is logged.
    Failed {
        /// The error response (none in the raw v0 flow, where there is no way to say).
        reply: Option<Reply>,
        /// What went wrong, for the log.
        reason: String,
    },
    /// A protocol violation: close at once.
    Close(String),
}

/// One connection's SASL exchange.
pub struct Authenticator {
    settings: Arc<SaslSettings>,
    credentials: CredentialLookup,
    session_lifetime_ms: i64,
    state: State,
}

impl Authenticator {
    /// A fresh exchange. `session_lifetime_ms` is `connections.max.reauth.ms` (0: none).
    pub fn new(
        settings: Arc<SaslSettings>,
        credentials: CredentialLookup,
        session_lifetime_ms: i64,
    ) -> Self {
        Self {
            settings,
            credentials,
            session_lifetime_ms,
            state: State::Handshake,
        }
    }

    /// Starts a re-authentication (KIP-368) on an authenticated connection.
    pub fn restart(&mut self) {
        self.state = State::Handshake;
    }

    /// Whether the next frame is a bare token (after SaslHandshake v0).
    pub fn expects_raw_token(&self) -> bool {
        matches!(
            self.state,
            State::Start { raw: true, .. }
                | State::ScramFinal { raw: true, .. }
                | State::OAuthFailed { raw: true, .. }
        )
    }

    /// Handles one frame (without its size prefix) of the exchange.
    pub fn on_frame(&mut self, frame_bytes: Bytes) -> Outcome {
        if self.expects_raw_token() {
            return self.on_token(frame_bytes, None);
        }
        let mut body = frame_bytes;
        let header = match frame::decode_header(&mut body) {
            Ok((_, h)) => h,
            Err(e) => return Outcome::Close(e.to_string()),
        };
        let version = header.request_api_version;
        let correlation_id = header.correlation_id;
        match ApiKey::try_from(header.request_api_key) {
            Ok(ApiKey::SaslHandshake) => {
                let Some(req) = guarded(|| SaslHandshakeRequest::decode(&mut body, version)) else {
                    return Outcome::Close("malformed SaslHandshake".into());
                };
                self.on_handshake(req, version, correlation_id)
            }
            Ok(ApiKey::SaslAuthenticate) => {
                let Some(req) = guarded(|| SaslAuthenticateRequest::decode(&mut body, version))
                else {
                    return Outcome::Close("malformed SaslAuthenticate".into());
                };
                if !matches!(
                    self.state,
                    State::Start { raw: false, .. }
                        | State::ScramFinal { raw: false, .. }
                        | State::OAuthFailed { raw: false, .. }
                ) {
                    return Outcome::Close(
                        "SaslAuthenticate before a SaslHandshake chose a mechanism".into(),
                    );
                }
                self.on_token(req.auth_bytes, Some((version, correlation_id)))
            }
            Ok(other) => Outcome::Close(format!(
                "{other:?} before SASL authentication completed (only ApiVersions, \
                 SaslHandshake and SaslAuthenticate are served then)"
            )),
            Err(_) => Outcome::Close(format!(
                "unknown api key {} during SASL authentication",
                header.request_api_key
            )),
        }
    }

    fn on_handshake(
        &mut self,
        req: SaslHandshakeRequest,
        version: i16,
        correlation_id: i32,
    ) -> Outcome {
        if !matches!(self.state, State::Handshake) {
            return Outcome::Close("a second SaslHandshake in one exchange".into());
        }
        let enabled: Vec<StrBytes> = self
            .settings
            .mechanisms
            .iter()
            .map(|m| StrBytes::from_static_str(m.name()))
            .collect();
        let chosen = SaslMechanism::from_name(req.mechanism.as_str())
            .filter(|m| self.settings.mechanisms.contains(m));
        let mut resp = SaslHandshakeResponse::default().with_mechanisms(enabled);
        match chosen {
            Some(mechanism) => {
                self.state = State::Start {
                    mechanism,
                    raw: version == 0,
                };
                Outcome::Continue(encode_response(
                    ApiKey::SaslHandshake,
                    version,
                    correlation_id,
                    &resp,
                ))
            }
            None => {
                resp.error_code = ResponseError::UnsupportedSaslMechanism.code();
                Outcome::Failed {
                    reply: Some(encode_response(
                        ApiKey::SaslHandshake,
                        version,
                        correlation_id,
                        &resp,
                    )),
                    reason: format!("unsupported SASL mechanism {:?}", req.mechanism.as_str()),
                }
            }
        }
    }

    /// A token; `framing` is the SaslAuthenticate version and correlation id (`None`
    /// for a bare v0 token).
    fn on_token(&mut self, token: Bytes, framing: Option<(i16, i32)>) -> Outcome {
        let state = std::mem::replace(&mut self.state, State::Handshake);
        let answer = |bytes: Vec<u8>| -> Reply {
            match framing {
                Some((version, correlation_id)) => {
                    let resp = SaslAuthenticateResponse::default().with_auth_bytes(bytes.into());
                    encode_response(ApiKey::SaslAuthenticate, version, correlation_id, &resp)
                }
                None => {
                    let mut out = BytesMut::with_capacity(4 + bytes.len());
                    out.put_i32(bytes.len() as i32);
                    out.put_slice(&bytes);
                    Reply::Send(vec![out.freeze()])
                }
            }
        };
        let lifetime = self.session_lifetime_ms;
        let done = |bytes: Vec<u8>, lifetime: i64| -> Reply {
            match framing {
                Some((version, correlation_id)) => {
                    let resp = SaslAuthenticateResponse::default()
                        .with_auth_bytes(bytes.into())
                        .with_session_lifetime_ms(lifetime);
                    encode_response(ApiKey::SaslAuthenticate, version, correlation_id, &resp)
                }
                None => answer(bytes),
            }
        };
        let fail = |mechanism: SaslMechanism, reason: String| -> Outcome {
            let reply = framing.map(|(version, correlation_id)| {
                let resp = SaslAuthenticateResponse::default()
                    .with_error_code(ResponseError::SaslAuthenticationFailed.code())
                    .with_error_message(Some(StrBytes::from_string(format!(
                        "Authentication failed during authentication due to invalid credentials with SASL mechanism {}",
                        mechanism.name()
                    ))));
                encode_response(ApiKey::SaslAuthenticate, version, correlation_id, &resp)
            });
            Outcome::Failed { reply, reason }
        };
        match state {
            State::Start {
                mechanism: SaslMechanism::Plain,
                ..
            } => match self.check_plain(&token) {
                Ok(user) => {
                    self.state = State::Done;
                    Outcome::Authenticated {
                        reply: done(Vec::new(), lifetime),
                        user,
                        mechanism: SaslMechanism::Plain,
                        session_lifetime_ms: lifetime,
                    }
                }
                Err(reason) => fail(SaslMechanism::Plain, reason),
            },
            State::Start {
                mechanism: SaslMechanism::OAuthBearer,
                raw,
            } => match self.check_oauth(&token) {
                Ok(accepted) => {
                    // The session ends when the token does, and no later than
                    // `connections.max.reauth.ms` when that is set (KIP-368, as Kafka's
                    // SaslServerAuthenticator): the client must bring a fresh token by
                    // then. At least 1 ms: 0 would mean "no limit".
                    let left = accepted.expires_at_ms - crate::replica_manager::now_ms();
                    let lifetime = if lifetime > 0 {
                        lifetime.min(left)
                    } else {
                        left
                    }
                    .max(1);
                    self.state = State::Done;
                    Outcome::Authenticated {
                        reply: done(Vec::new(), lifetime),
                        user: accepted.user,
                        mechanism: SaslMechanism::OAuthBearer,
                        session_lifetime_ms: lifetime,
                    }
                }
                Err(reason) => {
                    self.state = State::OAuthFailed { raw, reason };
                    Outcome::Continue(answer(oauth::error_challenge()))
                }
            },
            State::OAuthFailed { reason, .. } => fail(SaslMechanism::OAuthBearer, reason),
            State::Start { mechanism, raw } => {
                let scram_mechanism = scram_of(mechanism);
                let lookup = self.credentials.clone();
                match scram::client_first(scram_mechanism, &token, |user| {
                    lookup(user, scram_mechanism)
                }) {
                    Ok((first, reply)) => {
                        self.state = State::ScramFinal {
                            mechanism,
                            raw,
                            first: Box::new(first),
                        };
                        Outcome::Continue(answer(reply))
                    }
                    Err(e) => fail(mechanism, e.0),
                }
            }
            State::ScramFinal {
                mechanism, first, ..
            } => {
                let user = first.user.clone();
                match first.client_final(&token) {
                    Ok(reply) => {
                        self.state = State::Done;
                        Outcome::Authenticated {
                            reply: done(reply, lifetime),
                            user,
                            mechanism,
                            session_lifetime_ms: lifetime,
                        }
                    }
                    Err(e) => fail(mechanism, e.0),
                }
            }
            State::Handshake | State::Done => {
                Outcome::Close("a SASL token outside an exchange".into())
            }
        }
    }

    /// OAUTHBEARER (RFC 7628): the client's first message, its token validated
    /// ([`oauth::Validator`]); an authorization id, if given, must be the token's
    /// principal name (as Kafka requires).
    fn check_oauth(&self, message: &[u8]) -> Result<oauth::Accepted, String> {
        let validator = self
            .settings
            .oauthbearer
            .as_ref()
            .ok_or("OAUTHBEARER is not configured on this listener")?;
        let (authzid, token) = oauth::parse_client_first(message)?;
        let accepted = validator.validate(&token)?;
        if authzid.is_some_and(|a| a != accepted.user) {
            return Err(format!(
                "the token of {} asked for a different authorization id",
                accepted.user
            ));
        }
        Ok(accepted)
    }

    /// PLAIN (RFC 4616): `authzid NUL authcid NUL passwd`; the authorization id must be
    /// empty or the user's own name (as Kafka requires).
    fn check_plain(&self, token: &[u8]) -> Result<String, String> {
        let mut parts = token.split(|b| *b == 0);
        let (Some(authzid), Some(user), Some(password), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err("a PLAIN token is authzid NUL user NUL password".into());
        };
        let user = std::str::from_utf8(user).map_err(|_| "user name is not UTF-8")?;
        if !authzid.is_empty() && authzid != user.as_bytes() {
            return Err(format!(
                "user {user} asked for a different authorization id"
            ));
        }
        let Some(expected) = self.settings.plain_users.get(user) else {
            return Err(format!("unknown PLAIN user {user:?}"));
        };
        if bool::from(expected.as_bytes().ct_eq(password)) {
            Ok(user.to_owned())
        } else {
            Err(format!("wrong password for PLAIN user {user:?}"))
        }
    }
}

/// Runs a decoder on peer bytes under `catch_unwind`: a decoder bug costs the
/// connection, not the broker (as `handlers::dispatch` does).
fn guarded<T, E>(decode: impl FnOnce() -> Result<T, E>) -> Option<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(decode))
        .ok()
        .and_then(Result::ok)
}

fn scram_of(mechanism: SaslMechanism) -> ScramMechanism {
    match mechanism {
        SaslMechanism::ScramSha512 => ScramMechanism::Sha512,
        _ => ScramMechanism::Sha256,
    }
}
