//! Start-up refuses what it cannot honour, naming the property or the file: unknown,
//! contradictory or unimplemented settings, and data that belongs to another node or
//! another cluster. Each case runs the real binary and checks its exit status and
//! message.

mod common;

use common::TestBroker;
use std::process::Command;
use std::time::Duration;

/// Runs `moldau serve` with `props` (data in a fresh directory unless `log.dirs` is
/// given) and returns (success, stderr). A start that does not fail within the timeout
/// is a test failure: these configurations must be refused at once.
fn serve(props: &[(&str, &str)]) -> (bool, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_moldau"));
    cmd.arg("serve")
        .arg("-o")
        .arg("http.enable=false")
        .env("MOLDAU_LOG", "warn");
    if !props.iter().any(|(k, _)| *k == "log.dirs") {
        cmd.arg("-o")
            .arg(format!("log.dirs={}", dir.path().display()));
    }
    if !props.iter().any(|(k, _)| *k == "listeners") {
        cmd.arg("-o").arg("listeners=PLAINTEXT://127.0.0.1:0");
    }
    for (k, v) in props {
        cmd.arg("-o").arg(format!("{k}={v}"));
    }
    let mut child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn moldau");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let mut stderr = String::new();
            use std::io::Read;
            child
                .stderr
                .take()
                .expect("stderr")
                .read_to_string(&mut stderr)
                .expect("read stderr");
            return (status.success(), stderr);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("moldau serve {props:?} did not stop: it should refuse this configuration");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn refused(props: &[(&str, &str)], names: &[&str]) {
    let (ok, stderr) = serve(props);
    assert!(!ok, "{props:?} must not start");
    for n in names {
        assert!(
            stderr.contains(n),
            "{props:?}: the error must name {n}, got:\n{stderr}"
        );
    }
}

#[test]
fn unknown_contradictory_and_unimplemented_settings_stop_start_up() {
    refused(
        &[("log.retention.hourz", "5")],
        &["log.retention.hourz", "unknown property"],
    );
    refused(
        &[("ssl.key.password", "secret")],
        &["ssl.key.password", "unencrypted"],
    );
    refused(
        &[("listeners", "SSL://127.0.0.1:0"), ("http.enable", "false")],
        &["ssl.keystore.location", "certificate"],
    );
    refused(
        &[
            ("listeners", "SSL://127.0.0.1:0"),
            ("ssl.keystore.location", "/nonexistent/keystore.pem"),
            ("http.enable", "false"),
        ],
        &["cannot read /nonexistent/keystore.pem"],
    );
    refused(
        &[
            (
                "listeners",
                "PLAINTEXT://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0",
            ),
            ("sasl.enabled.mechanisms", "GSSAPI"),
        ],
        &["sasl.enabled.mechanisms", "GSSAPI"],
    );
    refused(
        &[
            (
                "listeners",
                "PLAINTEXT://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0",
            ),
            ("sasl.enabled.mechanisms", "PLAIN"),
        ],
        &["listener.name.sasl_plaintext.plain.sasl.jaas.config"],
    );
    refused(
        &[("http.kafka.listener.name", "NOPE")],
        &["http.kafka.listener.name", "no such listener"],
    );
    // A one-node cluster whose controller listener is CONTROLLER.
    let combined = [
        (
            "listeners",
            "PLAINTEXT://127.0.0.1:0,CONTROLLER://127.0.0.1:0",
        ),
        (
            "listener.security.protocol.map",
            "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        ),
        ("process.roles", "broker,controller"),
        ("node.id", "1"),
        ("controller.quorum.voters", "1@127.0.0.1:1"),
        ("controller.listener.names", "CONTROLLER"),
    ];
    refused(
        &[&combined[..], &[("http.kafka.listener.name", "CONTROLLER")]].concat(),
        &["http.kafka.listener.name", "controller listener"],
    );
    refused(
        &[("authorizer.class.name", "com.example.MyAuthorizer")],
        &["authorizer.class.name", "StandardAuthorizer"],
    );
    refused(
        &[("zookeeper.connect", "localhost:2181")],
        &["zookeeper.connect"],
    );
    refused(&[("log.dirs", "/tmp/a,/tmp/b")], &["log.dirs"]);
    refused(
        &[("max.connections.per.ip.overrides", "db.example:5")],
        &["max.connections.per.ip.overrides", "IP address"],
    );
    refused(&[("max.connections", "0")], &["max.connections"]);
    let oauth_listener = [
        ("listeners", "SASL_PLAINTEXT://127.0.0.1:0"),
        ("sasl.enabled.mechanisms", "OAUTHBEARER"),
    ];
    refused(&oauth_listener, &["sasl.oauthbearer.jwks.endpoint.url"]);
    refused(
        &[
            oauth_listener[0],
            oauth_listener[1],
            (
                "sasl.oauthbearer.jwks.endpoint.url",
                "https://idp.example/jwks",
            ),
        ],
        &["sasl.oauthbearer.jwks.endpoint.url", "file"],
    );
    refused(
        &[
            oauth_listener[0],
            oauth_listener[1],
            (
                "sasl.oauthbearer.jwks.endpoint.url",
                "file:///nonexistent/jwks.json",
            ),
        ],
        &["sasl.oauthbearer.jwks.endpoint.url", "cannot read"],
    );
    refused(
        &[(
            "sasl.oauthbearer.token.endpoint.url",
            "https://idp.example/token",
        )],
        &["sasl.oauthbearer.token.endpoint.url"],
    );
    refused(
        &[("max.connection.creation.rate", "0")],
        &["max.connection.creation.rate"],
    );
    refused(
        &[("listener.name.nope.max.connection.creation.rate", "5")],
        &[
            "listener.name.nope.max.connection.creation.rate",
            "no listener",
        ],
    );
    refused(
        &[
            &combined[..],
            &[("listener.name.controller.max.connection.creation.rate", "5")],
        ]
        .concat(),
        &["max.connection.creation.rate", "controller listener"],
    );
    refused(
        &[("controller.quorum.voters", "1@127.0.0.1:9093")],
        &["controller.quorum.voters", "process.roles"],
    );
    refused(&[("process.roles", "broker,controller")], &["node.id"]);
    refused(
        &[
            ("process.roles", "broker,controller"),
            ("node.id", "1"),
            ("controller.quorum.voters", "1@127.0.0.1:19093"),
        ],
        &["controller.listener.names"],
    );
    refused(
        &[
            ("process.roles", "broker,controller"),
            ("node.id", "2"),
            ("controller.quorum.voters", "1@127.0.0.1:19093"),
            ("controller.listener.names", "CONTROLLER"),
            (
                "listeners",
                "PLAINTEXT://127.0.0.1:0,CONTROLLER://127.0.0.1:19093",
            ),
        ],
        &["controller.quorum.voters", "node.id 2"],
    );
    refused(
        &[
            ("broker.heartbeat.interval.ms", "5000"),
            ("broker.session.timeout.ms", "3000"),
        ],
        &["broker.heartbeat.interval.ms"],
    );
    refused(&[("num.partitions", "many")], &["num.partitions"]);
}

#[test]
fn data_of_another_node_or_cluster_is_refused() {
    // A one-node cluster, stopped cleanly.
    let mut a = TestBroker::start();
    let dir_a = a.data_dir().to_owned();
    assert!(a.stop());
    // The same data under another node id.
    refused(
        &[("log.dirs", &dir_a.display().to_string()), ("node.id", "2")],
        &["meta.properties", "node.id=1"],
    );
    // The same node id, but meta.properties from another cluster: the quorum's own
    // cluster id (in the metadata log) disagrees with it.
    let mut b = TestBroker::start();
    let dir_b = b.data_dir().to_owned();
    assert!(b.stop());
    let props_a = std::fs::read_to_string(dir_a.join("meta.properties")).expect("meta a");
    let props_b = std::fs::read_to_string(dir_b.join("meta.properties")).expect("meta b");
    let cluster = |text: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix("cluster.id="))
            .map(str::to_owned)
            .expect("cluster.id")
    };
    let (id_a, id_b) = (cluster(&props_a), cluster(&props_b));
    assert_ne!(id_a, id_b, "two new single nodes form two clusters");
    std::fs::write(dir_b.join("meta.properties"), props_b.replace(&id_b, &id_a)).expect("write");
    refused(
        &[("log.dirs", &dir_b.display().to_string())],
        &["another cluster", &id_a, &id_b],
    );
    // Put back, it starts again (restart waits until it serves, or fails the test).
    std::fs::write(dir_b.join("meta.properties"), props_b).expect("write");
    b.restart();
    assert!(b.stop(), "the restored node stops cleanly");
    drop(a);
}
