//! SASL/OAUTHBEARER against the real binary, configured as Kafka's validating handler is
//! (KIP-768): tokens are ES256 JWTs signed by a key the test makes, whose public half is
//! in a JWKS file (`sasl.oauthbearer.jwks.endpoint.url=file:…`).
//!
//! - librdkafka (the rdkafka crate, its token refresh callback handing over the tokens)
//!   produces as `User:alice` (a super user); `User:bob`, whose token is just as valid,
//!   is refused TOPIC_AUTHORIZATION_FAILED: the principal is the token's `sub`.
//! - On the wire: a valid token is accepted with a session lifetime bounded by its `exp`
//!   (KIP-368, even without `connections.max.reauth.ms`), and a connection whose token
//!   expired is not served; an expired token, one signed by a key outside the set, one
//!   for another audience or issuer, one without `aud`, `iss`, `iat` or `exp`, an
//!   HMAC-signed and an unsigned one are each answered with RFC 7628's error challenge
//!   and then SASL_AUTHENTICATION_FAILED.
//!
//! Checked against the code it exists for: with the signature check off
//! (`insecure_disable_signature_validation`), the token signed by the stranger's key was
//! accepted and the test failed; before `aud`, `iss` and `iat` were required, the tokens
//! without them were accepted; before a token's expiry ended its session without
//! `connections.max.reauth.ms`, the session lifetime sent was 0 (no end).

mod common;

use base64::Engine;
use bytes::Bytes;
use common::wire::Conn;
use common::TestBroker;
use kafka_protocol::messages::{
    ApiKey, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
    SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::client::OAuthToken;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const AUDIENCE: &str = "moldau";
const ISSUER: &str = "https://idp.example";

/// An ES256 signing key and its JWK.
struct SigningKey {
    pem: String,
    jwk: serde_json::Value,
}

impl SigningKey {
    fn new(kid: &str) -> Self {
        let pair = rcgen::KeyPair::generate().expect("key");
        let raw = pair.public_key_raw();
        assert_eq!((raw.len(), raw[0]), (65, 4), "an uncompressed P-256 point");
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        SigningKey {
            pem: pair.serialize_pem(),
            jwk: serde_json::json!({
                "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
                "x": b64(&raw[1..33]), "y": b64(&raw[33..]),
            }),
        }
    }

    /// A token for `sub`, signed by this key under key id `kid`, valid until `exp`
    /// (s since the epoch), for `aud` from `iss`.
    fn token(&self, kid: &str, sub: &str, exp: u64, aud: &str, iss: &str) -> String {
        self.sign(
            kid,
            &serde_json::json!({
                "sub": sub, "exp": exp, "iat": now_s(), "aud": aud, "iss": iss,
            }),
        )
    }

    /// `claims`, signed by this key under key id `kid`.
    fn sign(&self, kid: &str, claims: &serde_json::Value) -> String {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some(kid.to_owned());
        let key = jsonwebtoken::EncodingKey::from_ec_pem(self.pem.as_bytes()).expect("pem");
        jsonwebtoken::encode(&header, claims, &key).expect("signed")
    }
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// A broker whose SASL_PLAINTEXT listener serves OAUTHBEARER with `key`'s JWKS and an
/// authorizer with `User:alice` as super user (no `connections.max.reauth.ms`: sessions
/// still end with their tokens).
fn broker(dir: &std::path::Path, key: &SigningKey) -> TestBroker {
    let jwks = dir.join("jwks.json");
    std::fs::write(&jwks, serde_json::json!({ "keys": [key.jwk] }).to_string()).expect("jwks");
    let url = format!("file://{}", jwks.display());
    TestBroker::start_with(&[
        (
            "listeners",
            "PLAINTEXT://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0",
        ),
        ("sasl.enabled.mechanisms", "OAUTHBEARER"),
        (
            "listener.name.sasl_plaintext.oauthbearer.sasl.server.callback.handler.class",
            "org.apache.kafka.common.security.oauthbearer.OAuthBearerValidatorCallbackHandler",
        ),
        (
            "listener.name.sasl_plaintext.oauthbearer.sasl.jaas.config",
            "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required ;",
        ),
        ("sasl.oauthbearer.jwks.endpoint.url", &url),
        ("sasl.oauthbearer.expected.audience", AUDIENCE),
        ("sasl.oauthbearer.expected.issuer", ISSUER),
        (
            "authorizer.class.name",
            "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        ),
        ("super.users", "User:alice;User:ANONYMOUS"),
    ])
}

/// Hands librdkafka the token of one user through its refresh callback.
struct TokenSource {
    token: String,
    user: String,
    exp: u64,
    delivered: mpsc::Sender<Result<(), String>>,
}

impl ClientContext for TokenSource {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn generate_oauth_token(
        &self,
        _config: Option<&str>,
    ) -> Result<OAuthToken, Box<dyn std::error::Error>> {
        Ok(OAuthToken {
            token: self.token.clone(),
            principal_name: self.user.clone(),
            lifetime_ms: (self.exp * 1000) as i64,
        })
    }
}

impl ProducerContext for TokenSource {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        let _ = self
            .delivered
            .send(result.as_ref().map(|_| ()).map_err(|(e, _)| e.to_string()));
    }
}

/// Produces one record to `topic` as `user` with `token`; the delivery result.
fn produce_as(addr: &str, user: &str, token: String, exp: u64, topic: &str) -> Result<(), String> {
    let (tx, rx) = mpsc::channel();
    let producer: ThreadedProducer<TokenSource> = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("security.protocol", "SASL_PLAINTEXT")
        .set("sasl.mechanism", "OAUTHBEARER")
        .set("message.timeout.ms", "20000")
        .create_with_context(TokenSource {
            token,
            user: user.to_owned(),
            exp,
            delivered: tx,
        })
        .expect("producer");
    producer
        .send(BaseRecord::<(), _>::to(topic).payload("hello"))
        .map_err(|(e, _)| e.to_string())?;
    let _ = producer.flush(Duration::from_secs(30));
    rx.recv_timeout(Duration::from_secs(30))
        .unwrap_or_else(|_| Err("no delivery report".into()))
}

#[test]
fn librdkafka_produces_as_the_tokens_subject() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = SigningKey::new("k1");
    let broker = broker(dir.path(), &key);
    let sasl = broker.listener("SASL_PLAINTEXT");
    let exp = now_s() + 3600;
    produce_as(
        &sasl,
        "alice",
        key.token("k1", "alice", exp, AUDIENCE, ISSUER),
        exp,
        "oauth-topic",
    )
    .expect("alice's record was not acknowledged");
    let bob = produce_as(
        &sasl,
        "bob",
        key.token("k1", "bob", exp, AUDIENCE, ISSUER),
        exp,
        "oauth-topic",
    );
    let err = bob.expect_err("bob, who has no ACL, produced");
    println!("alice produced; bob was refused: {err}");
    assert!(
        err.contains("TopicAuthorizationFailed") || err.contains("authoriz"),
        "bob was refused with {err}"
    );
    let log = broker.log_text();
    assert!(
        log.contains("User:bob"),
        "bob's denial was not logged with his principal"
    );
}

/// SaslHandshake v1 for OAUTHBEARER, then the client's first message with `token`: the
/// SaslAuthenticate response, and, if it was the error challenge, the response to the
/// client's `\x01`.
fn authenticate(
    addr: &str,
    token: &str,
) -> (SaslAuthenticateResponse, Option<SaslAuthenticateResponse>) {
    let (first, end, _) = authenticate_on(addr, token);
    (first, end)
}

/// [`authenticate`], also handing back the connection.
fn authenticate_on(
    addr: &str,
    token: &str,
) -> (
    SaslAuthenticateResponse,
    Option<SaslAuthenticateResponse>,
    Conn,
) {
    let mut c = Conn::open(addr);
    let h: SaslHandshakeResponse = c.call(
        ApiKey::SaslHandshake,
        1,
        &SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("OAUTHBEARER")),
    );
    assert_eq!(h.error_code, 0, "{h:?}");
    let first = format!("n,,\x01auth=Bearer {token}\x01\x01");
    let a: SaslAuthenticateResponse = c.call(
        ApiKey::SaslAuthenticate,
        2,
        &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(first)),
    );
    if a.error_code != 0 || a.auth_bytes.is_empty() {
        return (a, None, c);
    }
    let b: SaslAuthenticateResponse = c.call(
        ApiKey::SaslAuthenticate,
        2,
        &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from_static(b"\x01")),
    );
    (a, Some(b), c)
}

#[test]
fn tokens_are_validated_on_the_wire() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = SigningKey::new("k1");
    let stranger = SigningKey::new("k1");
    let broker = broker(dir.path(), &key);
    let sasl = broker.listener("SASL_PLAINTEXT");
    let now = now_s();

    let (ok, _) = authenticate(&sasl, &key.token("k1", "alice", now + 60, AUDIENCE, ISSUER));
    assert_eq!(ok.error_code, 0, "{ok:?}");
    assert!(ok.auth_bytes.is_empty(), "{ok:?}");
    assert!(
        (1..=60_000).contains(&ok.session_lifetime_ms),
        "the session of a token that expires in 60 s lasts {} ms",
        ok.session_lifetime_ms
    );

    // A token that expires in 10 s gives a session that ends then (its lifetime, as
    // sent, is at most 10 s); the connection is served within it and not after it.
    let short_exp = now_s() + 10;
    let (short, _, mut conn) = authenticate_on(
        &sasl,
        &key.token("k1", "alice", short_exp, AUDIENCE, ISSUER),
    );
    assert_eq!(short.error_code, 0, "{short:?}");
    assert!(
        (1..=10_000).contains(&short.session_lifetime_ms),
        "the session of a token that expires in 10 s lasts {} ms",
        short.session_lifetime_ms
    );
    let metadata = kafka_protocol::messages::MetadataRequest::default();
    let served: std::io::Result<kafka_protocol::messages::MetadataResponse> =
        conn.try_call(ApiKey::Metadata, 12, &metadata);
    assert!(served.is_ok(), "not served within the session: {served:?}");
    while now_s() <= short_exp {
        std::thread::sleep(Duration::from_millis(100));
    }
    let late: std::io::Result<kafka_protocol::messages::MetadataResponse> =
        conn.try_call(ApiKey::Metadata, 12, &metadata);
    assert!(late.is_err(), "served after the token expired: {late:?}");

    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let unsigned = format!(
        "{}.{}.",
        b64(r#"{"alg":"none","typ":"JWT"}"#),
        b64(&format!(
            r#"{{"sub":"alice","exp":{},"iat":{now},"aud":"{AUDIENCE}","iss":"{ISSUER}"}}"#,
            now + 60
        ))
    );
    for (what, token) in [
        (
            "expired",
            key.token("k1", "alice", now - 3600, AUDIENCE, ISSUER),
        ),
        (
            "signed by a key outside the set",
            stranger.token("k1", "alice", now + 60, AUDIENCE, ISSUER),
        ),
        (
            "for another audience",
            key.token("k1", "alice", now + 60, "someone-else", ISSUER),
        ),
        (
            "from another issuer",
            key.token("k1", "alice", now + 60, AUDIENCE, "https://evil.example"),
        ),
        ("unsigned", unsigned),
        (
            "without aud",
            key.sign(
                "k1",
                &serde_json::json!({"sub": "alice", "exp": now + 60, "iat": now, "iss": ISSUER}),
            ),
        ),
        (
            "without iss",
            key.sign(
                "k1",
                &serde_json::json!({"sub": "alice", "exp": now + 60, "iat": now, "aud": AUDIENCE}),
            ),
        ),
        (
            "without iat",
            key.sign(
                "k1",
                &serde_json::json!({"sub": "alice", "exp": now + 60, "aud": AUDIENCE, "iss": ISSUER}),
            ),
        ),
        (
            "without exp",
            key.sign(
                "k1",
                &serde_json::json!({"sub": "alice", "iat": now, "aud": AUDIENCE, "iss": ISSUER}),
            ),
        ),
        (
            "signed with HMAC",
            jsonwebtoken::encode(
                &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
                &serde_json::json!({"sub": "alice", "exp": now + 60, "iat": now,
                    "aud": AUDIENCE, "iss": ISSUER}),
                &jsonwebtoken::EncodingKey::from_secret(key.jwk["x"].to_string().as_bytes()),
            )
            .expect("signed"),
        ),
        ("not a JWT", "garbage".to_owned()),
    ] {
        let (challenge, end) = authenticate(&sasl, &token);
        assert_eq!(challenge.error_code, 0, "{what}: {challenge:?}");
        assert_eq!(
            &challenge.auth_bytes[..],
            br#"{"status":"invalid_token"}"#,
            "{what}: no error challenge"
        );
        let end = end.expect("the exchange went on");
        assert_eq!(end.error_code, 58, "{what}: {end:?}");
    }
    let log = broker.log_text();
    assert!(
        log.contains("token refused"),
        "refused tokens were not logged"
    );
}
