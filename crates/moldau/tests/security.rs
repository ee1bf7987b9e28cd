//! TLS and SASL on the broker's listeners, driven by librdkafka (the rdkafka crate, built
//! with OpenSSL) and by hand-made frames, against the real binary. Certificates come
//! from a throwaway CA made here with `rcgen`.
//!
//! What each test would miss without the code it covers (checked by hand where noted):
//! - `clients_connect_over_every_protocol`: produce/consume round trips over SSL, mTLS,
//!   SASL_PLAINTEXT/PLAIN and SASL_SSL with both SCRAM mechanisms, with credentials made
//!   through AlterUserScramCredentials; wrong passwords and unknown users fail with
//!   librdkafka's authentication error while the other clients keep working.
//! - `required_client_certificates`: with `ssl.client.auth=required`, no certificate,
//!   an expired one and one from another CA are refused; a plaintext client on the TLS
//!   port is closed; a good certificate works (checked: with the verifier left out of
//!   the rustls config, the client without a certificate connects and the test fails).
//! - `sasl_exchange_abuse`: requests before authentication, an unknown mechanism, a
//!   token before the handshake, a 100 MB frame, a wrong password, each closes or refuses
//!   that one connection; SaslHandshake on a PLAINTEXT listener is ILLEGAL_SASL_STATE.
//! - `expired_sessions_are_closed`: with `connections.max.reauth.ms`, SaslAuthenticate
//!   says the session lifetime and a request after it closes the connection (checked:
//!   fails with the expiry check removed from `sasl_session_frame`).
//! - `certificates_reload_without_restart`: a new keystore file is served to the next
//!   connection.

mod common;

use common::pki::Pki;

use bytes::Bytes;
use common::wire::Conn;
use common::TestBroker;
use kafka_protocol::messages::alter_user_scram_credentials_request::ScramCredentialUpsertion;
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse, ApiKey,
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse, MetadataRequest,
    MetadataResponse, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
    SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn s(p: PathBuf) -> String {
    p.display().to_string()
}

const PLAIN_JAAS: &str = r#"org.apache.kafka.common.security.plain.PlainLoginModule required username="admin" password="admin-secret" user_admin="admin-secret" user_alice="alice-secret";"#;

/// A broker with PLAINTEXT, SSL, SASL_PLAINTEXT and SASL_SSL listeners.
fn secure_broker(pki: &Pki, extra: &[(&str, &str)]) -> TestBroker {
    let keystore = s(pki.path("server-keystore.pem"));
    let truststore = s(pki.path("ca.pem"));
    let mut props: Vec<(&str, &str)> = vec![
        (
            "listeners",
            "PLAINTEXT://127.0.0.1:0,SSL://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0,SASL_SSL://127.0.0.1:0",
        ),
        ("ssl.keystore.type", "PEM"),
        ("ssl.keystore.location", &keystore),
        ("ssl.truststore.location", &truststore),
        ("listener.name.ssl.ssl.client.auth", "requested"),
        ("sasl.enabled.mechanisms", "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512"),
        ("listener.name.sasl_plaintext.plain.sasl.jaas.config", PLAIN_JAAS),
        ("listener.name.sasl_ssl.plain.sasl.jaas.config", PLAIN_JAAS),
    ];
    props.extend_from_slice(extra);
    TestBroker::start_with(&props)
}

/// Errors librdkafka reported through its error callback.
#[derive(Clone, Default)]
struct Errors(Arc<Mutex<Vec<String>>>);

impl ClientContext for Errors {
    fn error(&self, error: KafkaError, reason: &str) {
        self.0
            .lock()
            .expect("lock")
            .push(format!("{error:?}: {reason}"));
    }
}
impl ConsumerContext for Errors {}

fn client_config(addr: &str, settings: &[(&str, &str)]) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", addr);
    for (k, v) in settings {
        c.set(*k, *v);
    }
    c
}

/// Produces three records to `topic` and reads them back, over `settings`.
async fn round_trip(addr: &str, settings: &[(&str, &str)], topic: &str) {
    let producer: FutureProducer = client_config(addr, settings)
        .set("acks", "all")
        .create()
        .expect("producer");
    for i in 0..3 {
        producer
            .send(
                FutureRecord::<(), _>::to(topic).payload(&format!("v{i}")),
                Duration::from_secs(30),
            )
            .await
            .unwrap_or_else(|(e, _)| panic!("{topic}: produce over {settings:?}: {e}"));
    }
    let consumer: BaseConsumer = client_config(addr, settings)
        .set("group.id", format!("g-{topic}"))
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while got.len() < 3 && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            got.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned());
        }
    }
    assert_eq!(got, ["v0", "v1", "v2"], "{topic} over {settings:?}");
}

/// Whether a client with `settings` can fetch metadata; the errors it reported if not.
fn connects(addr: &str, settings: &[(&str, &str)]) -> Result<(), Vec<String>> {
    let errors = Errors::default();
    let consumer: BaseConsumer<Errors> = client_config(addr, settings)
        .create_with_context(errors.clone())
        .expect("client");
    match consumer.fetch_metadata(None, Duration::from_secs(5)) {
        Ok(_) => Ok(()),
        Err(e) => {
            // Error callbacks are served by polling.
            for _ in 0..10 {
                let _ = consumer.poll(Duration::from_millis(100));
            }
            let mut all = errors.0.lock().expect("lock").clone();
            all.push(e.to_string());
            Err(all)
        }
    }
}

fn upsert(conn: &mut Conn, user: &str, mechanism: i8, password: &str, iterations: i32) -> i16 {
    let salt = format!("salt-of-{user}").into_bytes();
    let salted = moldau_salted(mechanism, password, &salt, iterations);
    let req = AlterUserScramCredentialsRequest::default().with_upsertions(vec![
        ScramCredentialUpsertion::default()
            .with_name(StrBytes::from_string(user.into()))
            .with_mechanism(mechanism)
            .with_iterations(iterations)
            .with_salt(Bytes::from(salt))
            .with_salted_password(Bytes::from(salted)),
    ]);
    let resp: AlterUserScramCredentialsResponse =
        conn.call(ApiKey::AlterUserScramCredentials, 0, &req);
    resp.results[0].error_code
}

/// `Hi(password, salt, i)` as a client computes it (kafka-configs.sh does the same).
fn moldau_salted(mechanism: i8, password: &str, salt: &[u8], iterations: i32) -> Vec<u8> {
    let m = moldau_metadata::ScramMechanism::from_type_id(mechanism)
        .unwrap_or(moldau_metadata::ScramMechanism::Sha256);
    moldau_server::security::scram::salted_password(m, password.as_bytes(), salt, iterations as u32)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_connect_over_every_protocol() {
    let pki = Pki::new("Moldau test CA");
    pki.leaf("server", "localhost", true, false);
    pki.leaf("alice", "alice", false, false);
    let broker = secure_broker(&pki, &[]);
    let ca = s(pki.path("ca.pem"));
    let alice_cert = s(pki.path("alice.pem"));
    let alice_key = s(pki.path("alice.key"));

    // SCRAM credentials through the admin API, on the PLAINTEXT listener.
    let mut admin = Conn::open(&broker.addr);
    assert_eq!(upsert(&mut admin, "carol", 1, "carol-pw", 8192), 0);
    assert_eq!(upsert(&mut admin, "carol", 2, "carol-pw", 4096), 0);
    assert_eq!(
        upsert(&mut admin, "dave", 1, "x", 1000),
        93,
        "too few iterations"
    );
    assert_eq!(
        upsert(&mut admin, "dave", 7, "x", 4096),
        33,
        "unknown mechanism"
    );
    let described: DescribeUserScramCredentialsResponse = admin.call(
        ApiKey::DescribeUserScramCredentials,
        0,
        &DescribeUserScramCredentialsRequest::default(),
    );
    assert_eq!(described.results.len(), 1, "{described:?}");
    let infos: Vec<(i8, i32)> = described.results[0]
        .credential_infos
        .iter()
        .map(|c| (c.mechanism, c.iterations))
        .collect();
    assert_eq!(infos, [(1, 8192), (2, 4096)]);

    let ssl = broker.listener("SSL");
    let sasl_plaintext = broker.listener("SASL_PLAINTEXT");
    let sasl_ssl = broker.listener("SASL_SSL");
    let tls = [
        ("security.protocol", "SSL"),
        ("ssl.ca.location", ca.as_str()),
    ];
    round_trip(&ssl, &tls, "over-ssl").await;
    let mtls = [
        ("security.protocol", "SSL"),
        ("ssl.ca.location", ca.as_str()),
        ("ssl.certificate.location", alice_cert.as_str()),
        ("ssl.key.location", alice_key.as_str()),
    ];
    round_trip(&ssl, &mtls, "over-mtls").await;
    let plain = |user: &'static str, password: &'static str| {
        vec![
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanism", "PLAIN"),
            ("sasl.username", user),
            ("sasl.password", password),
        ]
    };
    round_trip(
        &sasl_plaintext,
        &plain("alice", "alice-secret"),
        "over-plain",
    )
    .await;
    for mechanism in ["SCRAM-SHA-256", "SCRAM-SHA-512"] {
        let scram = [
            ("security.protocol", "SASL_SSL"),
            ("ssl.ca.location", ca.as_str()),
            ("sasl.mechanism", mechanism),
            ("sasl.username", "carol"),
            ("sasl.password", "carol-pw"),
        ];
        round_trip(&sasl_ssl, &scram, &format!("over-{mechanism}")).await;
        let wrong = [
            ("security.protocol", "SASL_SSL"),
            ("ssl.ca.location", ca.as_str()),
            ("sasl.mechanism", mechanism),
            ("sasl.username", "carol"),
            ("sasl.password", "not-it"),
        ];
        let errors = connects(&sasl_ssl, &wrong).expect_err("wrong SCRAM password");
        assert!(
            errors.iter().any(|e| e.contains("Authentication failed")),
            "{errors:?}"
        );
    }
    for (user, password) in [("alice", "wrong"), ("mallory", "alice-secret")] {
        let errors = connects(&sasl_plaintext, &plain(user, password)).expect_err("refused");
        assert!(
            errors.iter().any(|e| e.contains("Authentication failed")),
            "{user}: {errors:?}"
        );
    }
    // SCRAM on a listener whose JAAS users are PLAIN users: alice has no SCRAM credential.
    let no_scram = [
        ("security.protocol", "SASL_PLAINTEXT"),
        ("sasl.mechanism", "SCRAM-SHA-256"),
        ("sasl.username", "alice"),
        ("sasl.password", "alice-secret"),
    ];
    assert!(connects(&sasl_plaintext, &no_scram).is_err());
    // Everyone else is still served.
    round_trip(
        &sasl_plaintext,
        &plain("admin", "admin-secret"),
        "after-failures",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_client_certificates() {
    let pki = Pki::new("Moldau test CA");
    pki.leaf("server", "localhost", true, false);
    pki.leaf("alice", "alice", false, false);
    pki.leaf("old", "old", false, true);
    let other = Pki::new("Some other CA");
    other.leaf("eve", "eve", false, false);
    let broker = secure_broker(&pki, &[("listener.name.ssl.ssl.client.auth", "required")]);
    let ssl = broker.listener("SSL");
    let ca = s(pki.path("ca.pem"));
    let with_cert = |cert: PathBuf, key: PathBuf| {
        vec![
            ("security.protocol", "SSL".to_owned()),
            ("ssl.ca.location", ca.clone()),
            ("ssl.certificate.location", s(cert)),
            ("ssl.key.location", s(key)),
        ]
    };
    let check = |settings: Vec<(&'static str, String)>| {
        let refs: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
        connects(&ssl, &refs)
    };
    assert!(
        check(vec![
            ("security.protocol", "SSL".to_owned()),
            ("ssl.ca.location", ca.clone()),
        ])
        .is_err(),
        "no client certificate"
    );
    assert!(
        check(with_cert(pki.path("old.pem"), pki.path("old.key"))).is_err(),
        "expired client certificate"
    );
    assert!(
        check(with_cert(other.path("eve.pem"), other.path("eve.key"))).is_err(),
        "certificate from an untrusted CA"
    );
    // A plaintext client on the TLS port: its ApiVersions is not an answer-able TLS
    // ClientHello, so the connection closes.
    let mut plaintext = Conn::open(&ssl);
    let answered = plaintext.try_call::<_, kafka_protocol::messages::ApiVersionsResponse>(
        ApiKey::ApiVersions,
        3,
        &kafka_protocol::messages::ApiVersionsRequest::default(),
    );
    assert!(
        answered.is_err(),
        "a plaintext request on the TLS port was answered"
    );
    check(with_cert(pki.path("alice.pem"), pki.path("alice.key")))
        .expect("a trusted certificate connects");
}

fn handshake(
    conn: &mut Conn,
    version: i16,
    mechanism: &str,
) -> std::io::Result<SaslHandshakeResponse> {
    conn.try_call(
        ApiKey::SaslHandshake,
        version,
        &SaslHandshakeRequest::default().with_mechanism(StrBytes::from_string(mechanism.into())),
    )
}

fn authenticate(
    conn: &mut Conn,
    version: i16,
    token: &[u8],
) -> std::io::Result<SaslAuthenticateResponse> {
    conn.try_call(
        ApiKey::SaslAuthenticate,
        version,
        &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::copy_from_slice(token)),
    )
}

fn metadata(conn: &mut Conn) -> std::io::Result<MetadataResponse> {
    conn.try_call(ApiKey::Metadata, 9, &MetadataRequest::default())
}

#[test]
fn sasl_exchange_abuse() {
    let pki = Pki::new("Moldau test CA");
    pki.leaf("server", "localhost", true, false);
    let broker = secure_broker(&pki, &[]);
    let sasl = broker.listener("SASL_PLAINTEXT");

    // A request before authentication closes the connection.
    let mut c = Conn::open(&sasl);
    assert!(metadata(&mut c).is_err(), "Metadata answered before SASL");

    // SaslAuthenticate before a handshake chose a mechanism.
    let mut c = Conn::open(&sasl);
    assert!(authenticate(&mut c, 2, b"\0alice\0alice-secret").is_err());

    // An unknown mechanism: UNSUPPORTED_SASL_MECHANISM with the enabled ones, then closed.
    let mut c = Conn::open(&sasl);
    let resp = handshake(&mut c, 1, "GSSAPI").expect("handshake answered");
    assert_eq!(resp.error_code, 33);
    let offered: Vec<&str> = resp.mechanisms.iter().map(|m| m.as_str()).collect();
    assert_eq!(offered, ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]);
    assert!(c.is_closed());

    // A frame of 100 MB before authentication: closed (sasl.server.max.receive.size).
    let mut c = Conn::open(&sasl);
    c.send_raw(&(100_000_000i32).to_be_bytes()).expect("write");
    let _ = c.send_raw(&[0u8; 1024]);
    assert!(
        c.is_closed(),
        "a 100 MB pre-authentication frame was accepted"
    );

    // A wrong PLAIN password: SASL_AUTHENTICATION_FAILED, then closed.
    let mut c = Conn::open(&sasl);
    assert_eq!(
        handshake(&mut c, 1, "PLAIN").expect("handshake").error_code,
        0
    );
    let resp = authenticate(&mut c, 2, b"\0alice\0wrong").expect("answered");
    assert_eq!(resp.error_code, 58);
    assert!(c.is_closed());

    // An authorization id other than the user's own.
    let mut c = Conn::open(&sasl);
    handshake(&mut c, 1, "PLAIN").expect("handshake");
    let resp = authenticate(&mut c, 2, b"admin\0alice\0alice-secret").expect("answered");
    assert_eq!(resp.error_code, 58);

    // The right password: requests are served; no re-authentication is offered.
    let mut c = Conn::open(&sasl);
    handshake(&mut c, 1, "PLAIN").expect("handshake");
    let resp = authenticate(&mut c, 2, b"\0alice\0alice-secret").expect("answered");
    assert_eq!((resp.error_code, resp.session_lifetime_ms), (0, 0));
    assert!(metadata(&mut c).is_ok());
    // A second handshake without connections.max.reauth.ms: ILLEGAL_SASL_STATE.
    assert_eq!(
        handshake(&mut c, 1, "PLAIN").expect("answered").error_code,
        34
    );

    // The v0 handshake: bare tokens follow, answered with bare frames.
    let mut c = Conn::open(&sasl);
    assert_eq!(
        handshake(&mut c, 0, "PLAIN").expect("handshake").error_code,
        0
    );
    let token = b"\0alice\0alice-secret";
    let mut frame = (token.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(token);
    c.send_raw(&frame).expect("write token");
    assert_eq!(
        c.recv_raw().expect("bare answer"),
        b"",
        "PLAIN answers with no bytes"
    );
    assert!(metadata(&mut c).is_ok(), "served after a v0 exchange");

    // SaslHandshake on a PLAINTEXT listener: ILLEGAL_SASL_STATE, connection kept.
    let mut c = Conn::open(&broker.addr);
    assert_eq!(
        handshake(&mut c, 1, "PLAIN").expect("answered").error_code,
        34
    );
    assert!(metadata(&mut c).is_ok());
}

#[test]
fn expired_sessions_are_closed() {
    let pki = Pki::new("Moldau test CA");
    pki.leaf("server", "localhost", true, false);
    let broker = secure_broker(&pki, &[("connections.max.reauth.ms", "1500")]);
    let sasl = broker.listener("SASL_PLAINTEXT");
    let login = |c: &mut Conn| {
        handshake(c, 1, "PLAIN").expect("handshake");
        authenticate(c, 2, b"\0alice\0alice-secret").expect("authenticate")
    };
    let mut lazy = Conn::open(&sasl);
    assert_eq!(login(&mut lazy).session_lifetime_ms, 1500);
    let mut diligent = Conn::open(&sasl);
    login(&mut diligent);
    assert!(metadata(&mut lazy).is_ok());
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(2500) {
        // Re-authenticates well inside its lifetime, on the same connection.
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(login(&mut diligent).error_code, 0);
        assert!(metadata(&mut diligent).is_ok());
    }
    assert!(
        metadata(&mut lazy).is_err(),
        "a request after the session expired was served"
    );
    // Re-authenticating as someone else is refused.
    handshake(&mut diligent, 1, "PLAIN").expect("handshake");
    assert!(
        authenticate(&mut diligent, 2, b"\0admin\0admin-secret").is_err() || diligent.is_closed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_reload_without_restart() {
    let first = Pki::new("First CA");
    first.leaf("server", "localhost", true, false);
    let broker = secure_broker(&first, &[]);
    let ssl = broker.listener("SSL");
    let second = Pki::new("Second CA");
    second.leaf("server", "localhost", true, false);
    let trusting = |pki: &Pki| {
        vec![
            ("security.protocol", "SSL".to_owned()),
            ("ssl.ca.location", s(pki.path("ca.pem"))),
        ]
    };
    let check = |settings: Vec<(&'static str, String)>| {
        let refs: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
        connects(&ssl, &refs)
    };
    check(trusting(&first)).expect("first certificate served");
    assert!(check(trusting(&second)).is_err());
    // Replace the keystore file in place (a renewed certificate).
    std::fs::copy(
        second.path("server-keystore.pem"),
        first.path("server-keystore.pem"),
    )
    .expect("replace keystore");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if check(trusting(&second)).is_ok() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new certificate was never served"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        check(trusting(&first)).is_err(),
        "the old certificate is still served"
    );
}

/// Runs the `moldau` CLI with `args` and `stdin`.
fn cli(args: &[&str], stdin: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_moldau"))
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn moldau");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("moldau output")
}

/// Moldau's own CLI and client crate over SASL_SSL (SCRAM-SHA-512) and mTLS, configured
/// by a Kafka `client.properties` file and `-X` properties; a wrong password fails with
/// an authentication error and exit code 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moldau_cli_and_client_over_tls_and_sasl() {
    let pki = Pki::new("Moldau test CA");
    pki.leaf("server", "localhost", true, false);
    pki.leaf("alice", "alice", false, false);
    let broker = secure_broker(&pki, &[("listener.name.ssl.ssl.client.auth", "required")]);
    let mut admin = Conn::open(&broker.addr);
    assert_eq!(upsert(&mut admin, "carol", 2, "carol-pw", 4096), 0);
    let properties = pki.path("client.properties");
    std::fs::write(
        &properties,
        format!(
            "security.protocol=SASL_SSL\nssl.truststore.type=PEM\nssl.truststore.location={}\n\
             sasl.mechanism=SCRAM-SHA-512\n\
             sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=\"carol\" password=\"carol-pw\";\n",
            pki.path("ca.pem").display()
        ),
    )
    .expect("write client.properties");
    let sasl_ssl = broker.listener("SASL_SSL");
    let config = s(properties);
    let base = ["-b", sasl_ssl.as_str(), "--command-config", config.as_str()];
    let produced = cli(
        &[&base[..], &["produce", "cli-secure"]].concat(),
        "one\ntwo\n",
    );
    assert!(
        produced.status.success(),
        "{}",
        String::from_utf8_lossy(&produced.stderr)
    );
    let consumed = cli(
        &[
            &base[..],
            &[
                "consume",
                "cli-secure",
                "--from-beginning",
                "--max-messages",
                "2",
            ],
        ]
        .concat(),
        "",
    );
    assert!(
        consumed.status.success(),
        "{}",
        String::from_utf8_lossy(&consumed.stderr)
    );
    let out = String::from_utf8_lossy(&consumed.stdout);
    assert!(out.contains("one") && out.contains("two"), "{out}");
    let wrong = cli(
        &[
            &base[..],
            &[
                "-X",
                "sasl.jaas.config=x required username=\"carol\" password=\"nope\";",
                "topics",
                "list",
            ],
        ]
        .concat(),
        "",
    );
    assert_eq!(wrong.status.code(), Some(1));
    let err = String::from_utf8_lossy(&wrong.stderr);
    assert!(err.contains("authentication failed"), "{err}");
    assert!(
        err.contains("-X sasl.jaas.config is visible"),
        "a password on the command line goes unremarked: {err}"
    );

    // The client crate over mutual TLS, from librdkafka-style property names.
    let ssl = broker.listener("SSL");
    let props: std::collections::BTreeMap<String, String> = [
        ("bootstrap.servers", ssl.as_str()),
        ("security.protocol", "SSL"),
        ("ssl.ca.location", &s(pki.path("ca.pem"))),
        ("ssl.certificate.location", &s(pki.path("alice.pem"))),
        ("ssl.key.location", &s(pki.path("alice.key"))),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let config = moldau_client::ClientConfig::from_properties(&props).expect("config");
    let client = moldau_client::Client::connect(config)
        .await
        .expect("mTLS connect");
    let topics = moldau_client::Admin::new(client)
        .list_topics(false)
        .await
        .expect("list topics over mTLS");
    assert!(topics.iter().any(|t| t.name == "cli-secure"), "{topics:?}");
    // Without its certificate the same client is refused.
    let mut no_cert = props.clone();
    no_cert.remove("ssl.certificate.location");
    no_cert.remove("ssl.key.location");
    let config = moldau_client::ClientConfig::from_properties(&no_cert).expect("config");
    assert!(moldau_client::Client::connect(config).await.is_err());
    // A misspelt property is an error, not ignored.
    let mut typo = props;
    typo.insert("ssl.ca.locaton".into(), "x".into());
    assert!(moldau_client::ClientConfig::from_properties(&typo).is_err());
}

/// One HTTPS/1.1 request to `addr` trusting the test CA (presenting `cert` when given):
/// `Ok((status, body))`, or the TLS or I/O error.
async fn https(
    pki: &Pki,
    addr: &str,
    cert: Option<&str>,
    path: &str,
    user: Option<(&str, &str)>,
) -> std::io::Result<(u16, String)> {
    use base64::Engine;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut props: std::collections::BTreeMap<String, String> = [
        ("security.protocol", "SSL".to_owned()),
        ("ssl.ca.location", s(pki.path("ca.pem"))),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    if let Some(name) = cert {
        props.insert(
            "ssl.certificate.location".into(),
            s(pki.path(&format!("{name}.pem"))),
        );
        props.insert(
            "ssl.key.location".into(),
            s(pki.path(&format!("{name}.key"))),
        );
    }
    let security = moldau_client::security::Security::from_properties(&props).expect("TLS");
    let connector = tokio_rustls::TlsConnector::from(security.tls.expect("TLS config"));
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = rustls_pki_types::ServerName::try_from("localhost").expect("name");
    let mut tls = connector.connect(name, tcp).await?;
    let auth = user.map_or(String::new(), |(u, p)| {
        let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
        format!("Authorization: Basic {b64}\r\n")
    });
    tls.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: close\r\n\r\n")
            .as_bytes(),
    )
    .await?;
    let mut response = Vec::new();
    tls.read_to_end(&mut response).await?;
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    Ok((status, body))
}

/// The HTTP API over HTTPS (`http.listener=https://…`, the broker-wide `ssl.*` key
/// material, `http.ssl.client.auth=required`), acting through the broker's SASL_SSL
/// listener as the HTTP Basic user. A client without a certificate and a plaintext HTTP
/// client are refused at the handshake, and the API keeps serving. Without the HTTPS
/// listener the first request fails its TLS handshake; without the per-user login the
/// request without credentials gets 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_api_with_client_certificates_and_basic_users() {
    use std::io::{Read, Write};
    let pki = Pki::new("Moldau test CA");
    pki.leaf("server", "localhost", true, false);
    pki.leaf("alice", "alice", false, false);
    let keystore = s(pki.path("server-keystore.pem"));
    let truststore = s(pki.path("ca.pem"));
    let broker = TestBroker::start_with(&[
        ("listeners", "SASL_SSL://127.0.0.1:0"),
        ("ssl.keystore.location", &keystore),
        ("ssl.truststore.location", &truststore),
        ("sasl.enabled.mechanisms", "PLAIN"),
        ("listener.name.sasl_ssl.plain.sasl.jaas.config", PLAIN_JAAS),
        ("http.listener", "https://127.0.0.1:0"),
        ("http.ssl.client.auth", "required"),
    ]);
    let addr = broker.http.clone();
    let alice = Some(("alice", "alice-secret"));

    let (status, body) = https(&pki, &addr, Some("alice"), "/api/topics", alice)
        .await
        .expect("HTTPS with a client certificate");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"topics\""), "{body}");
    let (status, body) = https(&pki, &addr, Some("alice"), "/api/topics", None)
        .await
        .expect("HTTPS without credentials");
    assert_eq!(status, 401, "{body}");
    let (status, _) = https(
        &pki,
        &addr,
        Some("alice"),
        "/api/topics",
        Some(("alice", "wrong")),
    )
    .await
    .expect("HTTPS with a wrong password");
    assert_eq!(status, 401);

    // No client certificate: the handshake fails (TLS 1.3 reports it at the first read).
    let refused = https(&pki, &addr, None, "/api/topics", alice).await;
    assert!(
        refused.is_err(),
        "served without a client certificate: {refused:?}"
    );

    // Plain HTTP on the HTTPS port: no HTTP answer.
    let mut plain = std::net::TcpStream::connect(&addr).expect("connect");
    plain
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("write");
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    assert!(
        !String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"),
        "plain HTTP was served"
    );

    // Still serving.
    let (status, body) = https(&pki, &addr, Some("alice"), "/healthz", None)
        .await
        .expect("HTTPS after the refusals");
    assert_eq!(status, 200, "{body}");
    assert!(broker.log_text().contains("HTTPS handshake failed"));
}
