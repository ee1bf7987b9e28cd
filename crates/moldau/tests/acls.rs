//! The ACL authorizer against the real binary: SASL/PLAIN principals, ACLs made with
//! CreateAcls by a super user, enforced on librdkafka clients (the rdkafka crate) with
//! Kafka's error codes.
//!
//! Without the authorizer's checks in the handlers, `a_principal_without_acls_is_refused`
//! fails at its first produce (the record is written); without the DENY rule,
//! `prefixed_and_deny_acls` reads the denied topic.

mod common;

use bytes::Bytes;
use common::wire::Conn;
use common::TestBroker;
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::{
    ApiKey, CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse,
    DescribeAclsRequest, DescribeAclsResponse, MetadataRequest, MetadataResponse,
    SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
    TopicName,
};
use kafka_protocol::messages::{
    CreateTopicsRequest, CreateTopicsResponse, GroupId, OffsetFetchRequest, OffsetFetchResponse,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use std::time::{Duration, Instant};

const JAAS: &str = r#"org.apache.kafka.common.security.plain.PlainLoginModule required user_admin="admin-pw" user_alice="alice-pw" user_bob="bob-pw";"#;

fn broker() -> TestBroker {
    TestBroker::start_with(&[
        ("listeners", "SASL_PLAINTEXT://127.0.0.1:0"),
        ("sasl.enabled.mechanisms", "PLAIN"),
        ("listener.name.sasl_plaintext.plain.sasl.jaas.config", JAAS),
        (
            "authorizer.class.name",
            "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        ),
        ("super.users", "User:admin"),
        ("http.enable", "false"),
    ])
}

fn config(addr: &str, user: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", addr)
        .set("security.protocol", "SASL_PLAINTEXT")
        .set("sasl.mechanism", "PLAIN")
        .set("sasl.username", user)
        .set("sasl.password", format!("{user}-pw"));
    c
}

/// A raw connection logged in with PLAIN.
fn login(addr: &str, user: &str) -> Conn {
    let mut c = Conn::open(addr);
    let h: SaslHandshakeResponse = c.call(
        ApiKey::SaslHandshake,
        1,
        &SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN")),
    );
    assert_eq!(h.error_code, 0);
    let token = format!("\0{user}\0{user}-pw");
    let a: SaslAuthenticateResponse = c.call(
        ApiKey::SaslAuthenticate,
        2,
        &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(token)),
    );
    assert_eq!(a.error_code, 0, "{a:?}");
    c
}

/// An ACL as CreateAcls carries it (codes as Kafka's enums).
fn acl(
    resource_type: i8,
    name: &str,
    pattern: i8,
    principal: &str,
    op: i8,
    permission: i8,
) -> AclCreation {
    AclCreation::default()
        .with_resource_type(resource_type)
        .with_resource_name(StrBytes::from_string(name.into()))
        .with_resource_pattern_type(pattern)
        .with_principal(StrBytes::from_string(principal.into()))
        .with_host(StrBytes::from_static_str("*"))
        .with_operation(op)
        .with_permission_type(permission)
}

const TOPIC: i8 = 2;
const GROUP: i8 = 3;
const CLUSTER: i8 = 4;
const LITERAL: i8 = 3;
const PREFIXED: i8 = 4;
const READ: i8 = 3;
const WRITE: i8 = 4;
const DESCRIBE: i8 = 8;
const ALLOW: i8 = 3;
const DENY: i8 = 2;

fn create_acls(conn: &mut Conn, acls: Vec<AclCreation>) -> CreateAclsResponse {
    conn.call(
        ApiKey::CreateAcls,
        3,
        &CreateAclsRequest::default().with_creations(acls),
    )
}

async fn create_topic(addr: &str, name: &str) {
    let admin: AdminClient<DefaultClientContext> = config(addr, "admin").create().expect("admin");
    let r = admin
        .create_topics(
            &[NewTopic::new(name, 1, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await
        .expect("create_topics");
    assert!(r.iter().all(|x| x.is_ok()), "{r:?}");
}

async fn produce(addr: &str, user: &str, topic: &str) -> Result<(), KafkaError> {
    let p: FutureProducer = config(addr, user)
        .set("message.timeout.ms", "10000")
        .create()
        .expect("producer");
    p.send(
        FutureRecord::<(), _>::to(topic).payload("v"),
        Duration::from_secs(15),
    )
    .await
    .map(|_| ())
    .map_err(|(e, _)| e)
}

/// Consumes one record of `topic` in `group`: the record, or the first error.
fn consume_one(addr: &str, user: &str, topic: &str, group: &str) -> Result<String, KafkaError> {
    let c: BaseConsumer = config(addr, user)
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    c.subscribe(&[topic]).expect("subscribe");
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        match c.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                return Ok(String::from_utf8_lossy(m.payload().unwrap_or_default()).into())
            }
            Some(Err(e)) => return Err(e),
            None => {}
        }
    }
    panic!("{user} read nothing from {topic} and got no error");
}

fn code(e: &KafkaError) -> Option<RDKafkaErrorCode> {
    e.rdkafka_error_code()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_principal_without_acls_is_refused() {
    let broker = broker();
    let addr = broker.listener("SASL_PLAINTEXT");
    create_topic(&addr, "orders").await;
    produce(&addr, "admin", "orders")
        .await
        .expect("a super user writes");

    let e = produce(&addr, "alice", "orders")
        .await
        .expect_err("alice may not write");
    assert_eq!(
        code(&e),
        Some(RDKafkaErrorCode::TopicAuthorizationFailed),
        "{e:?}"
    );
    let e = consume_one(&addr, "alice", "orders", "g1").expect_err("alice may not read");
    assert!(
        matches!(
            code(&e),
            Some(
                RDKafkaErrorCode::GroupAuthorizationFailed
                    | RDKafkaErrorCode::TopicAuthorizationFailed
            )
        ),
        "{e:?}"
    );
    // Metadata leaves out what alice may not DESCRIBE.
    let c: BaseConsumer = config(&addr, "alice").create().expect("client");
    let md = c
        .fetch_metadata(None, Duration::from_secs(10))
        .expect("metadata");
    assert!(
        md.topics().iter().all(|t| t.name() != "orders"),
        "orders is visible to alice"
    );
    // Topic creation, transactional init.
    let admin: AdminClient<DefaultClientContext> = config(&addr, "alice").create().expect("admin");
    let r = admin
        .create_topics(
            &[NewTopic::new("alices", 1, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await
        .expect("create_topics answered");
    assert!(
        matches!(&r[0], Err((_, RDKafkaErrorCode::TopicAuthorizationFailed))),
        "{r:?}"
    );
    let p: FutureProducer = config(&addr, "alice")
        .set("transactional.id", "alice-tx")
        .create()
        .expect("producer");
    let e = p
        .init_transactions(Duration::from_secs(15))
        .expect_err("alice may not use a transactional id");
    assert!(
        e.to_string()
            .contains("Transactional Id authorization failed")
            || code(&e) == Some(RDKafkaErrorCode::TransactionalIdAuthorizationFailed),
        "{e:?}"
    );
    // ACL administration is for those with ALTER on the cluster.
    let mut alice = login(&addr, "alice");
    let r = create_acls(
        &mut alice,
        vec![acl(TOPIC, "orders", LITERAL, "User:alice", READ, ALLOW)],
    );
    assert_eq!(r.results[0].error_code, 31, "{r:?}");
    let d: DescribeAclsResponse = alice.call(ApiKey::DescribeAcls, 3, &describe_all());
    assert_eq!(d.error_code, 31);
}

fn describe_all() -> DescribeAclsRequest {
    DescribeAclsRequest::default()
        .with_resource_name_filter(None)
        .with_principal_filter(None)
        .with_host_filter(None)
        .with_resource_type_filter(1)
        .with_pattern_type_filter(1)
        .with_operation(1)
        .with_permission_type(1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefixed_and_deny_acls() {
    let broker = broker();
    let addr = broker.listener("SASL_PLAINTEXT");
    create_topic(&addr, "orders").await;
    create_topic(&addr, "orders-secret").await;
    produce(&addr, "admin", "orders-secret")
        .await
        .expect("admin writes");
    let mut admin = login(&addr, "admin");
    let r = create_acls(
        &mut admin,
        vec![
            acl(TOPIC, "orders", PREFIXED, "User:alice", WRITE, ALLOW),
            acl(TOPIC, "orders", PREFIXED, "User:alice", READ, ALLOW),
            acl(GROUP, "g-", PREFIXED, "User:alice", READ, ALLOW),
            acl(TOPIC, "orders-secret", LITERAL, "User:alice", READ, DENY),
            acl(
                CLUSTER,
                "kafka-cluster",
                LITERAL,
                "User:bob",
                DESCRIBE,
                ALLOW,
            ),
            acl(TOPIC, "own-", PREFIXED, "User:alice", 5, ALLOW),
            // Invalid: ANY is for filters.
            acl(TOPIC, "x", LITERAL, "User:alice", 1, ALLOW),
        ],
    );
    let codes: Vec<i16> = r.results.iter().map(|x| x.error_code).collect();
    assert_eq!(codes, [0, 0, 0, 0, 0, 0, 42], "{r:?}");

    produce(&addr, "alice", "orders")
        .await
        .expect("prefixed WRITE");
    assert_eq!(
        consume_one(&addr, "alice", "orders", "g-1").expect("prefixed READ and group READ"),
        "v"
    );
    produce(&addr, "alice", "orders-secret")
        .await
        .expect("WRITE is not denied");
    let e = consume_one(&addr, "alice", "orders-secret", "g-2").expect_err("DENY wins");
    assert_eq!(
        code(&e),
        Some(RDKafkaErrorCode::TopicAuthorizationFailed),
        "{e:?}"
    );
    let e = produce(&addr, "bob", "orders")
        .await
        .expect_err("bob has no topic ACL");
    assert_eq!(code(&e), Some(RDKafkaErrorCode::TopicAuthorizationFailed));

    // alice may DESCRIBE orders-new (implied by her prefixed READ) but not CREATE it:
    // auto-creation is refused with TOPIC_AUTHORIZATION_FAILED, not UNKNOWN_TOPIC.
    let mut alice = login(&addr, "alice");
    let md: MetadataResponse = alice.call(
        ApiKey::Metadata,
        9,
        &MetadataRequest::default()
            .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(
                TopicName(StrBytes::from_static_str("orders-new")),
            ))]))
            .with_allow_auto_topic_creation(true),
    );
    assert_eq!(md.topics[0].error_code, 29, "{md:?}");

    // OffsetFetch naming a topic alice may not DESCRIBE answers its partition 29.
    let fetched: OffsetFetchResponse = alice.call(
        ApiKey::OffsetFetch,
        7,
        &OffsetFetchRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("g-1")))
            .with_topics(Some(vec![
                OffsetFetchRequestTopic::default()
                    .with_name(TopicName(StrBytes::from_static_str("orders")))
                    .with_partition_indexes(vec![0]),
                OffsetFetchRequestTopic::default()
                    .with_name(TopicName(StrBytes::from_static_str("unrelated")))
                    .with_partition_indexes(vec![0]),
            ])),
    );
    let codes: Vec<(String, i16)> = fetched
        .topics
        .iter()
        .map(|t| (t.name.to_string(), t.partitions[0].error_code))
        .collect();
    assert!(codes.contains(&("orders".into(), 0)), "{fetched:?}");
    assert!(codes.contains(&("unrelated".into(), 29)), "{fetched:?}");

    // alice may create own-1 (prefixed CREATE) but not DESCRIBE_CONFIGS it: the
    // CreateTopics answer leaves its configs out with TOPIC_AUTHORIZATION_FAILED.
    let created: CreateTopicsResponse = alice.call(
        ApiKey::CreateTopics,
        7,
        &CreateTopicsRequest::default()
            .with_topics(vec![CreatableTopic::default()
                .with_name(TopicName(StrBytes::from_static_str("own-1")))
                .with_num_partitions(1)
                .with_replication_factor(1)])
            .with_timeout_ms(30_000),
    );
    let t = &created.topics[0];
    assert_eq!(
        (t.error_code, t.topic_config_error_code),
        (0, 29),
        "{created:?}"
    );
    assert!(
        t.configs.as_ref().is_none_or(|c| c.is_empty()),
        "{created:?}"
    );

    // DescribeAcls, grouped by resource; bob may describe (DESCRIBE on the cluster).
    let mut bob = login(&addr, "bob");
    let d: DescribeAclsResponse = bob.call(ApiKey::DescribeAcls, 3, &describe_all());
    assert_eq!(d.error_code, 0, "{d:?}");
    let acl_count: usize = d.resources.iter().map(|r| r.acls.len()).sum();
    assert_eq!(acl_count, 6);
    // DeleteAcls: alice's prefixed WRITE goes, and with it her writes.
    let del: DeleteAclsResponse = admin.call(
        ApiKey::DeleteAcls,
        3,
        &DeleteAclsRequest::default().with_filters(vec![DeleteAclsFilter::default()
            .with_resource_type_filter(TOPIC)
            .with_resource_name_filter(Some(StrBytes::from_static_str("orders")))
            .with_pattern_type_filter(PREFIXED)
            .with_principal_filter(Some(StrBytes::from_static_str("User:alice")))
            .with_host_filter(None)
            .with_operation(WRITE)
            .with_permission_type(ALLOW)]),
    );
    assert_eq!(del.filter_results[0].matching_acls.len(), 1, "{del:?}");
    let e = produce(&addr, "alice", "orders")
        .await
        .expect_err("WRITE was deleted");
    assert_eq!(code(&e), Some(RDKafkaErrorCode::TopicAuthorizationFailed));
    // The audit log names the principal, operation, resource and client.
    let log = broker.log_text();
    assert!(
        log.lines().any(|l| l.contains("authorization denied")
            && l.contains("principal=User:alice")
            && l.contains("operation=\"READ\"")
            && l.contains("orders-secret")
            && l.contains("client=127.0.0.1")),
        "no audit line for alice's denied READ"
    );
}

/// Runs `moldau -b <addr> --command-config <file> <args>`; returns (exit code, stdout,
/// stderr).
fn cli(addr: &str, properties: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_moldau"))
        .args(["-b", addr, "--command-config"])
        .arg(properties)
        .args(args)
        .output()
        .expect("run moldau");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `moldau acls|users|quotas` as a super user: what they create shows in their listings
/// and takes effect on a librdkafka client; a user without cluster rights is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_manages_acls_users_and_quotas() {
    let broker = broker();
    let addr = broker.listener("SASL_PLAINTEXT");
    create_topic(&addr, "orders-x").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let props = |user: &str| {
        let path = dir.path().join(format!("{user}.properties"));
        std::fs::write(
            &path,
            format!(
                "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=PLAIN\n\
                 sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required \\\n  username=\"{user}\" password=\"{user}-pw\";\n"
            ),
        )
        .expect("write properties");
        path
    };
    let admin = props("admin");
    let ok = |args: &[&str]| {
        let (code, out, err) = cli(&addr, &admin, args);
        assert_eq!(code, 0, "moldau {args:?}: {err}");
        out
    };
    ok(&[
        "users",
        "set",
        "carol",
        "--password",
        "carol-pw",
        "--mechanism",
        "SCRAM-SHA-512",
    ]);
    let users: serde_json::Value =
        serde_json::from_str(&ok(&["users", "list", "--output", "json"])).expect("json");
    assert_eq!(users[0]["user"], "carol", "{users}");
    assert_eq!(users[0]["credentials"][0]["mechanism"], "SCRAM-SHA-512");

    assert!(produce(&addr, "alice", "orders-x").await.is_err());
    ok(&[
        "acls",
        "create",
        "--topic",
        "orders",
        "--prefixed",
        "--principal",
        "User:alice",
        "--operation",
        "write",
        "--operation",
        "describe",
    ]);
    let acls: serde_json::Value = serde_json::from_str(&ok(&[
        "acls",
        "list",
        "--principal",
        "User:alice",
        "--output",
        "json",
    ]))
    .expect("json");
    assert_eq!(acls.as_array().map(Vec::len), Some(2), "{acls}");
    produce(&addr, "alice", "orders-x")
        .await
        .expect("the CLI's ACL lets alice write");

    ok(&[
        "quotas",
        "set",
        "--client-id",
        "slow",
        "--producer-byte-rate",
        "1000",
    ]);
    let quotas: serde_json::Value =
        serde_json::from_str(&ok(&["quotas", "list", "--output", "json"])).expect("json");
    assert_eq!(quotas[0]["entity"], "client-id=slow", "{quotas}");
    assert_eq!(quotas[0]["quotas"][0]["value"], 1000.0);

    let deleted: serde_json::Value = serde_json::from_str(&ok(&[
        "acls",
        "delete",
        "--topic",
        "orders",
        "--prefixed",
        "--principal",
        "User:alice",
        "--output",
        "json",
    ]))
    .expect("json");
    assert_eq!(deleted.as_array().map(Vec::len), Some(2), "{deleted}");
    assert!(produce(&addr, "alice", "orders-x").await.is_err());

    let (code, _, err) = cli(&addr, &props("alice"), &["acls", "list"]);
    assert_eq!(code, 1);
    assert!(err.contains("CLUSTER_AUTHORIZATION_FAILED"), "{err}");
}
