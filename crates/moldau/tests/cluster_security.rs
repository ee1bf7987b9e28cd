//! A three-node cluster whose brokers reach each other over a SASL_PLAINTEXT
//! inter-broker listener: followers fetch and authenticate as the broker user from the
//! listener's JAAS config (`sasl.mechanism.inter.broker.protocol=PLAIN`), so an RF=3
//! topic with `min.insync.replicas=3` takes `acks=all` writes from librdkafka.
//!
//! Without SASL on the inter-broker client the followers' fetches are closed before
//! authentication and never catch up, so the first `acks=all` produce times out
//! (checked by hand with the broker's inter-broker client left at its PLAINTEXT
//! default: "Message timed out" after 60 s).

mod common;

use common::cluster::{Cluster, ClusterSpec};
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
        .set("sasl.username", "alice")
        .set("sasl.password", "alice-pw");
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brokers_replicate_over_a_sasl_inter_broker_listener() {
    let extra = [
        (
            "listener.security.protocol.map",
            "PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT",
        ),
        ("sasl.enabled.mechanisms", "PLAIN"),
        ("sasl.mechanism.inter.broker.protocol", "PLAIN"),
        ("listener.name.plaintext.plain.sasl.jaas.config", JAAS),
        ("http.enable", "false"),
    ];
    let cluster = Cluster::start(ClusterSpec {
        extra: extra
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..ClusterSpec::default()
    });
    let bootstrap = cluster.bootstrap();
    let admin: AdminClient<DefaultClientContext> = client(&bootstrap).create().expect("admin");
    let created = admin
        .create_topics(
            &[NewTopic::new("replicated", 1, TopicReplication::Fixed(3))
                .set("min.insync.replicas", "3")],
            &AdminOptions::new(),
        )
        .await
        .expect("create_topics");
    assert!(created.iter().all(|r| r.is_ok()), "{created:?}");
    let producer: FutureProducer = client(&bootstrap)
        .set("acks", "all")
        .set("message.timeout.ms", "60000")
        .create()
        .expect("producer");
    for i in 0..20 {
        producer
            .send(
                FutureRecord::<(), _>::to("replicated").payload(&format!("v{i}")),
                Duration::from_secs(60),
            )
            .await
            .unwrap_or_else(|(e, _)| {
                cluster.dump_logs();
                panic!("acks=all with all three replicas in the ISR: {e}")
            });
    }
}
