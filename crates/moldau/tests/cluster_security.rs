//! A three-node cluster, with the ACL authorizer, whose nodes reach each other only over
//! SASL_PLAINTEXT: followers fetch over the inter-broker listener and log in as the
//! broker user from its JAAS config (`sasl.mechanism.inter.broker.protocol=PLAIN`), and
//! every node reaches the controllers (Raft, registration, heartbeats) over a SASL
//! controller listener (`sasl.mechanism.controller.protocol=PLAIN`), as the super user.
//! An RF=3 topic with `min.insync.replicas=3` then takes `acks=all` writes from
//! librdkafka. On the controller listener a connection that does not authenticate, and
//! one that authenticates as a user without CLUSTER_ACTION, are closed.
//!
//! Without SASL on the inter-broker client the followers' fetches are closed before
//! authentication and never catch up, so the first `acks=all` produce times out
//! (checked by hand with the broker's inter-broker client left at its PLAINTEXT
//! default: "Message timed out" after 60 s). Without SASL on the controller client no
//! node can register or vote, and the cluster never starts.

mod common;

use bytes::Bytes;
use common::cluster::{Cluster, ClusterSpec};
use common::pki::Pki;
use common::wire::Conn;
use kafka_protocol::messages::{
    ApiKey, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
    SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::time::Duration;

const JAAS: &str = r#"org.apache.kafka.common.security.plain.PlainLoginModule required username="broker" password="broker-pw" user_broker="broker-pw" user_alice="alice-pw";"#;

fn client(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("security.protocol", "SASL_PLAINTEXT")
        .set("sasl.mechanism", "PLAIN")
        .set("sasl.username", "broker")
        .set("sasl.password", "broker-pw");
    c
}

/// Logs in to `addr` with PLAIN over raw Kafka frames.
fn login(addr: &str, user: &str, password: &str) -> Conn {
    let mut c = Conn::open(addr);
    let h: SaslHandshakeResponse = c.call(
        ApiKey::SaslHandshake,
        1,
        &SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN")),
    );
    assert_eq!(h.error_code, 0);
    let a: SaslAuthenticateResponse = c.call(
        ApiKey::SaslAuthenticate,
        2,
        &SaslAuthenticateRequest::default()
            .with_auth_bytes(Bytes::from(format!("\0{user}\0{password}"))),
    );
    assert_eq!(a.error_code, 0, "{a:?}");
    c
}

/// Creates `topic` (RF=3, `min.insync.replicas=3`) and writes 20 records with
/// `acks=all`, every client configured by `config` for the bootstrap servers.
async fn replicate_acks_all(cluster: &Cluster, config: impl Fn(&str) -> ClientConfig, topic: &str) {
    let bootstrap = cluster.bootstrap();
    let admin: AdminClient<DefaultClientContext> = config(&bootstrap).create().expect("admin");
    let created = admin
        .create_topics(
            &[NewTopic::new(topic, 1, TopicReplication::Fixed(3)).set("min.insync.replicas", "3")],
            &AdminOptions::new(),
        )
        .await
        .expect("create_topics");
    assert!(created.iter().all(|r| r.is_ok()), "{created:?}");
    let producer: FutureProducer = config(&bootstrap)
        .set("acks", "all")
        .set("message.timeout.ms", "60000")
        .create()
        .expect("producer");
    for i in 0..20 {
        producer
            .send(
                FutureRecord::<(), _>::to(topic).payload(&format!("v{i}")),
                Duration::from_secs(60),
            )
            .await
            .unwrap_or_else(|(e, _)| {
                cluster.dump_logs();
                panic!("acks=all with all three replicas in the ISR: {e}")
            });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brokers_replicate_over_a_sasl_inter_broker_listener() {
    let extra = [
        (
            "listener.security.protocol.map",
            "PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT",
        ),
        ("sasl.enabled.mechanisms", "PLAIN"),
        ("sasl.mechanism.inter.broker.protocol", "PLAIN"),
        ("sasl.mechanism.controller.protocol", "PLAIN"),
        ("listener.name.plaintext.plain.sasl.jaas.config", JAAS),
        ("listener.name.controller.plain.sasl.jaas.config", JAAS),
        (
            "authorizer.class.name",
            "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        ),
        ("super.users", "User:broker"),
        ("http.enable", "false"),
    ];
    let cluster = Cluster::start(ClusterSpec {
        extra: extra
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..ClusterSpec::default()
    });
    replicate_acks_all(&cluster, client, "replicated").await;

    // The controller listener: bytes that are not a SASL exchange, and a user without
    // CLUSTER_ACTION, are both shown the door.
    let controller = cluster
        .node(0)
        .controller
        .clone()
        .expect("controller address");
    let mut raw = Conn::open(&controller);
    raw.send_raw(b"\x00\x00\x00\x02{}").expect("write");
    assert!(
        raw.is_closed(),
        "an unauthenticated controller connection stayed open"
    );
    let mut alice = login(&controller, "alice", "alice-pw");
    assert!(
        alice.is_closed(),
        "a controller connection without CLUSTER_ACTION stayed open"
    );
    let log = std::fs::read_to_string(cluster.log_path(0)).expect("node log");
    assert!(
        log.contains("controller listener: closing during SASL authentication"),
        "the unauthenticated connection was not refused by the SASL exchange"
    );
    assert!(
        log.contains("controller listener connection closed"),
        "no audit line"
    );
}

/// The same cluster over mutual TLS instead: the client, inter-broker and controller
/// listeners are all SSL with `ssl.client.auth=required`; each node presents the
/// certificate of the `node` principal (a super user, through
/// `ssl.principal.mapping.rules`) to the others, and checks theirs against the test CA
/// with host names. An RF=3 topic takes `acks=all` writes over TLS from librdkafka.
///
/// Without TLS on the controller client no node can register or vote (the handshake
/// fails), and without it on the inter-broker client the followers never fetch: either
/// way the test fails (the first at start-up, the second at its first produce).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_talk_over_mutual_tls() {
    let pki = Pki::new("Moldau cluster CA");
    pki.leaf("node", "node", true, false);
    let path = |name: &str| pki.path(name).display().to_string();
    let extra = [
        (
            "listener.security.protocol.map",
            "PLAINTEXT:SSL,CONTROLLER:SSL".to_owned(),
        ),
        ("ssl.keystore.location", path("node-keystore.pem")),
        ("ssl.truststore.location", path("ca.pem")),
        ("ssl.client.auth", "required".to_owned()),
        (
            "ssl.principal.mapping.rules",
            "RULE:^.*CN=([a-z]+).*$/$1/".to_owned(),
        ),
        (
            "authorizer.class.name",
            "org.apache.kafka.metadata.authorizer.StandardAuthorizer".to_owned(),
        ),
        ("super.users", "User:node".to_owned()),
        ("http.enable", "false".to_owned()),
    ];
    let cluster = Cluster::start(ClusterSpec {
        extra: extra
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
        ..ClusterSpec::default()
    });
    let tls = |bootstrap: &str| {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", bootstrap)
            .set("security.protocol", "SSL")
            .set("ssl.ca.location", path("ca.pem"))
            .set("ssl.certificate.location", path("node.pem"))
            .set("ssl.key.location", path("node.key"));
        c
    };
    replicate_acks_all(&cluster, tls, "over-tls").await;
    // A plaintext connection to a controller gets no further than the TLS handshake.
    let controller = cluster
        .node(1)
        .controller
        .clone()
        .expect("controller address");
    let mut raw = Conn::open(&controller);
    raw.send_raw(b"\x00\x00\x00\x02{}").expect("write");
    assert!(raw.ends(), "a plaintext controller connection stayed open");
}
