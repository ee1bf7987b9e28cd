//! The HTTP API on a broker whose listener requires SASL and that runs the ACL
//! authorizer: every request needs HTTP Basic credentials of a broker user (PLAIN from
//! the listener's JAAS config, or SCRAM from the metadata log) and acts as that user, so
//! the user's ACLs decide what it may see and do.
//!
//! Checked against the code it exists for: with the API acting through one shared client
//! (as before this test), `basic_users_act_as_themselves` fails at its first request
//! without credentials (200 instead of 401); acting as the super user for everyone, it
//! fails where alice's write to `orders` must be refused.

mod common;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use common::TestBroker;
use moldau_client::admin_security::Acl;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;

const JAAS: &str = r#"org.apache.kafka.common.security.plain.PlainLoginModule required user_admin="admin-pw" user_alice="alice-pw";"#;

fn broker() -> TestBroker {
    TestBroker::start_with(&[
        ("listeners", "SASL_PLAINTEXT://127.0.0.1:0"),
        ("sasl.enabled.mechanisms", "PLAIN,SCRAM-SHA-256"),
        ("listener.name.sasl_plaintext.plain.sasl.jaas.config", JAAS),
        (
            "authorizer.class.name",
            "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        ),
        ("super.users", "User:admin"),
    ])
}

/// One HTTP call: status, `WWW-Authenticate` header, JSON body (`Null` if not JSON).
fn call(
    broker: &TestBroker,
    method: &str,
    path: &str,
    user: Option<(&str, &str)>,
    body: Option<&Value>,
) -> (u16, Option<String>, Value) {
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(60))
        .max_idle_connections(0)
        .build();
    let mut request = agent.request(method, &format!("http://{}{path}", broker.http));
    if let Some((u, p)) = user {
        request = request.set(
            "Authorization",
            &format!("Basic {}", B64.encode(format!("{u}:{p}"))),
        );
    }
    let result = match body {
        Some(b) => request
            .set("Content-Type", "application/json")
            .send_string(&b.to_string()),
        None => request.call(),
    };
    let response = match result {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{method} {path}: {e}"),
    };
    let status = response.status();
    let challenge = response.header("www-authenticate").map(str::to_owned);
    let text = response.into_string().expect("body");
    (
        status,
        challenge,
        serde_json::from_str(&text).unwrap_or(Value::Null),
    )
}

fn topic_names(v: &Value) -> Vec<String> {
    v["topics"]
        .as_array()
        .unwrap_or_else(|| panic!("no topics in {v}"))
        .iter()
        .map(|t| t["name"].as_str().expect("name").to_owned())
        .collect()
}

/// The admin client of the super user, over SASL/PLAIN.
async fn admin(addr: &str) -> moldau_client::Admin {
    let props: BTreeMap<String, String> = [
        ("security.protocol", "SASL_PLAINTEXT"),
        ("sasl.mechanism", "PLAIN"),
        ("sasl.username", "admin"),
        ("sasl.password", "admin-pw"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let mut config = moldau_client::ClientConfig::new(addr);
    config.security = moldau_client::security::Security::from_properties(&props).expect("props");
    moldau_client::Admin::new(
        moldau_client::Client::connect(config)
            .await
            .expect("admin connects"),
    )
}

#[test]
fn basic_users_act_as_themselves() {
    let broker = broker();
    let rt = common::runtime();
    let admin = rt.block_on(admin(&broker.addr));
    let alice = Some(("alice", "alice-pw"));

    // No credentials: 401 with a Basic challenge, for the API, the console page and the
    // metrics alike; liveness and readiness stay open for probes.
    for path in ["/api/topics", "/", "/metrics", "/api/cluster"] {
        let (status, challenge, body) = call(&broker, "GET", path, None, None);
        assert_eq!(status, 401, "GET {path} without credentials: {body}");
        assert!(
            challenge
                .as_deref()
                .is_some_and(|c| c.starts_with("Basic ")),
            "GET {path}: challenge {challenge:?}"
        );
    }
    let (_, _, body) = call(&broker, "GET", "/api/topics", None, None);
    assert_eq!(
        body["error"]["name"], "SASL_AUTHENTICATION_FAILED",
        "{body}"
    );
    assert_eq!(call(&broker, "GET", "/readyz", None, None).0, 200);
    assert_eq!(call(&broker, "GET", "/healthz", None, None).0, 200);

    // A wrong password is refused by the broker's own SASL check.
    let (status, _, body) = call(&broker, "GET", "/api/topics", Some(("alice", "nope")), None);
    assert_eq!(status, 401, "{body}");
    let (status, _, _) = call(&broker, "GET", "/api/topics", Some(("mallory", "x")), None);
    assert_eq!(status, 401);

    // The super user creates a topic and writes to it.
    let admin_user = Some(("admin", "admin-pw"));
    let (status, _, body) = call(
        &broker,
        "POST",
        "/api/topics",
        admin_user,
        Some(&json!({"name": "orders", "partitions": 1})),
    );
    assert_eq!(status, 201, "{body}");
    let (status, _, body) = call(
        &broker,
        "POST",
        "/api/topics/orders/records",
        admin_user,
        Some(&json!({"records": [{"value": "first"}]})),
    );
    assert_eq!(status, 200, "{body}");

    // alice has no ACLs: she sees no topic, may not write, read or create one.
    let (status, _, body) = call(&broker, "GET", "/api/topics", alice, None);
    assert_eq!(status, 200, "{body}");
    assert!(!topic_names(&body).contains(&"orders".to_owned()), "{body}");
    let (status, _, body) = call(
        &broker,
        "POST",
        "/api/topics/orders/records",
        alice,
        Some(&json!({"records": [{"value": "sneaky"}]})),
    );
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        body["error"]["name"], "TOPIC_AUTHORIZATION_FAILED",
        "{body}"
    );
    let (status, _, body) = call(
        &broker,
        "POST",
        "/api/topics",
        alice,
        Some(&json!({"name": "alices", "partitions": 1})),
    );
    assert_eq!(status, 403, "{body}");

    // Granted READ and WRITE on orders, she sees it, writes and reads it back.
    rt.block_on(async {
        let grant = |op: i8| Acl {
            resource_type: 2,
            resource_name: Some("orders".into()),
            pattern_type: 3,
            principal: Some("User:alice".into()),
            host: Some("*".into()),
            operation: op,
            permission: 3,
        };
        admin
            .create_acls(&[grant(3), grant(4)])
            .await
            .expect("create ACLs");
    });
    let (status, _, body) = call(&broker, "GET", "/api/topics", alice, None);
    assert_eq!(status, 200, "{body}");
    assert!(topic_names(&body).contains(&"orders".to_owned()), "{body}");
    let (status, _, body) = call(
        &broker,
        "POST",
        "/api/topics/orders/records",
        alice,
        Some(&json!({"records": [{"value": "from alice"}]})),
    );
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = call(
        &broker,
        "GET",
        "/api/topics/orders/records?partition=0&offset=0",
        alice,
        None,
    );
    assert_eq!(status, 200, "{body}");
    let values: Vec<&str> = body["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|r| r["value"].as_str().expect("value"))
        .collect();
    assert_eq!(values, ["first", "from alice"]);

    // A SCRAM user (not in the PLAIN JAAS list) logs in through the listener's next
    // mechanism, and has no ACLs either.
    rt.block_on(async {
        admin
            .set_scram_credential("carol", "SCRAM-SHA-256", "carol-pw", 4096)
            .await
            .expect("SCRAM credential");
    });
    let carol = Some(("carol", "carol-pw"));
    let (status, _, body) = call(&broker, "GET", "/api/topics", carol, None);
    assert_eq!(status, 200, "{body}");
    assert!(!topic_names(&body).contains(&"orders".to_owned()), "{body}");
    let (status, _, _) = call(
        &broker,
        "GET",
        "/api/topics",
        Some(("carol", "wrong")),
        None,
    );
    assert_eq!(status, 401);
}

/// Basic credentials over plain HTTP on an address other hosts reach: the broker says at
/// start that passwords would cross the network in clear (it still starts: a private
/// network may be trusted). On 127.0.0.1, as in the test above, it says nothing.
#[test]
fn plain_http_on_a_shared_address_is_warned_about() {
    let exposed = TestBroker::start_with(&[
        ("listeners", "SASL_PLAINTEXT://127.0.0.1:0"),
        ("sasl.enabled.mechanisms", "PLAIN"),
        ("listener.name.sasl_plaintext.plain.sasl.jaas.config", JAAS),
        ("http.listener", "0.0.0.0:0"),
    ]);
    let warning = "passwords cross the network in clear";
    assert!(exposed.log_text().contains(warning), "no warning at start");
    let local = broker();
    assert!(!local.log_text().contains(warning), "warned on loopback");
}
