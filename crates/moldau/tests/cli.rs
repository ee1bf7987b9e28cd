//! The CLI against a running broker: topics, produce, consume, groups and cluster round
//! trips, JSON output, and error exit codes.

mod common;

use common::TestBroker;
use serde_json::Value;
use std::io::Write;
use std::process::{Command, Output, Stdio};

/// Runs `moldau -b <broker> <args>` with `stdin`; returns the process output.
fn moldau(broker: &str, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_moldau"))
        .arg("--bootstrap-server")
        .arg(broker)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
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

/// Runs a command that must succeed; returns its stdout.
fn ok(broker: &str, args: &[&str], stdin: &str) -> String {
    let out = moldau(broker, args, stdin);
    assert!(
        out.status.success(),
        "moldau {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 stdout")
}

fn json(broker: &str, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["--output", "json"]);
    serde_json::from_str(&ok(broker, &all, "")).expect("JSON output")
}

#[test]
fn topics_lifecycle_and_errors() {
    let broker = TestBroker::start();
    let b = broker.addr.as_str();
    let created = ok(
        b,
        &[
            "topics",
            "create",
            "orders",
            "--partitions",
            "3",
            "--config",
            "retention.ms=3600000",
        ],
        "",
    );
    assert_eq!(created.trim(), "Created topic orders with 3 partitions.");

    let table = ok(b, &["topics", "list", "--exclude-internal"], "");
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["TOPIC", "PARTITIONS", "INTERNAL"]
    );
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>(),
        ["orders", "3", "false"]
    );
    // Columns are aligned: every row starts its second column at the same place.
    assert_eq!(lines[0].find("PARTITIONS"), lines[1].find('3'));

    let described = json(b, &["topics", "describe", "orders"]);
    assert_eq!(described["partitions"].as_array().map(Vec::len), Some(3));
    assert_eq!(described["partitions"][1]["high_watermark"], 0);
    assert_eq!(described["configs"]["retention.ms"], "3600000");

    ok(
        b,
        &[
            "topics",
            "alter-config",
            "orders",
            "--set",
            "retention.ms=60000",
            "--set",
            "cleanup.policy=compact",
        ],
        "",
    );
    let described = json(b, &["topics", "describe", "orders"]);
    assert_eq!(described["configs"]["retention.ms"], "60000");
    assert_eq!(described["configs"]["cleanup.policy"], "compact");
    ok(
        b,
        &[
            "topics",
            "alter-config",
            "orders",
            "--delete",
            "cleanup.policy",
        ],
        "",
    );
    let described = json(b, &["topics", "describe", "orders"]);
    assert_eq!(described["configs"]["cleanup.policy"], "delete");

    let dup = moldau(b, &["topics", "create", "orders", "--partitions", "3"], "");
    assert_eq!(dup.status.code(), Some(1));
    let err = String::from_utf8_lossy(&dup.stderr);
    assert!(
        err.starts_with("moldau: error: TOPIC_ALREADY_EXISTS"),
        "{err}"
    );
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );

    let missing = moldau(b, &["topics", "describe", "nope"], "");
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("UNKNOWN_TOPIC_OR_PARTITION"));

    let bad_config = moldau(b, &["topics", "create", "x", "--config", "novalue"], "");
    assert_eq!(bad_config.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad_config.stderr).contains("is not NAME=VALUE"));

    let usage = moldau(b, &["topics", "frobnicate"], "");
    assert_eq!(usage.status.code(), Some(2), "usage errors exit 2");

    ok(b, &["topics", "delete", "orders"], "");
    let listed = json(b, &["topics", "list"]);
    assert!(listed
        .as_array()
        .expect("array")
        .iter()
        .all(|t| t["name"] != "orders"));

    let unreachable = moldau("127.0.0.1:1", &["topics", "list"], "");
    assert_eq!(unreachable.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&unreachable.stderr)
        .contains("cannot reach a broker at 127.0.0.1:1"));

    let cluster = json(b, &["cluster", "info"]);
    let port: i64 = b
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port");
    assert_eq!(cluster["brokers"][0]["port"], port);
    assert_eq!(cluster["controller_id"], cluster["brokers"][0]["node_id"]);
    assert!(cluster["cluster_id"]
        .as_str()
        .is_some_and(|c| !c.is_empty()));
}

#[test]
fn produce_lines_and_consume_them_back() {
    let broker = TestBroker::start();
    let b = broker.addr.as_str();
    ok(b, &["topics", "create", "lines", "--partitions", "4"], "");
    let input: String = (0..200)
        .map(|i| format!("key-{}|value {i}\n", i % 10))
        .collect();
    let produced = moldau(
        b,
        &[
            "produce",
            "lines",
            "--key-separator",
            "|",
            "--header",
            "origin=cli",
            "--compression",
            "lz4",
        ],
        &input,
    );
    assert!(
        produced.status.success(),
        "{}",
        String::from_utf8_lossy(&produced.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&produced.stderr).trim(),
        "Produced 200 records to lines."
    );

    let out = ok(
        b,
        &[
            "consume",
            "lines",
            "--from-beginning",
            "--max-messages",
            "200",
            "--output",
            "json",
        ],
        "",
    );
    let records: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(records.len(), 200);
    // Per key: every value, in the order produced, all on murmur2's partition.
    for k in 0..10 {
        let key = format!("key-{k}");
        let mine: Vec<&Value> = records
            .iter()
            .filter(|r| r["key"] == key.as_str())
            .collect();
        let values: Vec<String> = mine
            .iter()
            .map(|r| r["value"].as_str().expect("value").to_owned())
            .collect();
        let expected: Vec<String> = (0..200)
            .filter(|i| i % 10 == k)
            .map(|i| format!("value {i}"))
            .collect();
        assert_eq!(values, expected, "{key}");
        let partition = moldau_client::partition_for_key(key.as_bytes(), 4);
        assert!(
            mine.iter().all(|r| r["partition"] == partition),
            "{key} on partition {partition}"
        );
        assert!(mine
            .iter()
            .all(|r| r["headers"][0]["key"] == "origin" && r["headers"][0]["value"] == "cli"));
    }

    // From a file, to one partition, then read with a format string from an offset.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("in.txt");
    std::fs::write(&file, "a\nb\nc\n").expect("write file");
    ok(
        b,
        &[
            "produce",
            "lines",
            "--file",
            file.to_str().expect("path"),
            "--partition",
            "3",
        ],
        "",
    );
    let end: i64 = records.iter().filter(|r| r["partition"] == 3).count() as i64;
    let offset = (end + 1).to_string();
    let formatted = ok(
        b,
        &[
            "consume",
            "lines",
            "--partition",
            "3",
            "--offset",
            &offset,
            "--max-messages",
            "2",
            "--format",
            "%p/%o:%s\\n",
        ],
        "",
    );
    assert_eq!(formatted, format!("3/{}:b\n3/{}:c\n", end + 1, end + 2));

    // Nothing new after the end: --timeout-ms ends an idle consumer without output.
    let idle = ok(b, &["consume", "lines", "--timeout-ms", "1500"], "");
    assert_eq!(idle, "");

    let bad = moldau(b, &["produce", "lines", "--partition", "9"], "x\n");
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("UNKNOWN_TOPIC_OR_PARTITION"));
    let bad = moldau(b, &["consume", "lines", "--offset", "soon"], "");
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--offset"));
}

#[test]
fn group_consumption_shows_lag() {
    let broker = TestBroker::start();
    let b = broker.addr.as_str();
    ok(b, &["topics", "create", "work", "--partitions", "2"], "");
    let input: String = (0..30).map(|i| format!("{i}\n")).collect();
    ok(b, &["produce", "work", "--partition", "0"], &input);
    let first_ten: String = (0..10).map(|i| format!("{i}\n")).collect();
    ok(b, &["produce", "work", "--partition", "1"], &first_ten);
    let total = 30 + 10;

    let first = ok(
        b,
        &[
            "consume",
            "work",
            "--group",
            "workers",
            "--from-beginning",
            "--max-messages",
            "25",
            "--format",
            "%p:%o\\n",
        ],
        "",
    );
    assert_eq!(first.lines().count(), 25);
    // Lag per committed partition is exactly its end minus the commit (partitions the
    // group never committed are not listed, as kafka-consumer-groups.sh shows an empty
    // group).
    let described = json(b, &["groups", "describe", "workers"]);
    let offsets = described["offsets"].as_array().expect("offsets").clone();
    let mut committed = 0;
    for o in &offsets {
        let end = if o["partition"] == 0 { 30 } else { 10 };
        assert_eq!(o["high_watermark"], end, "{o}");
        let c = o["committed_offset"].as_i64().expect("offset");
        assert_eq!(o["lag"], end - c, "{o}");
        committed += c;
    }
    assert_eq!(committed, 25, "{described}");
    let listed_lag: i64 = offsets
        .iter()
        .map(|o| o["lag"].as_i64().expect("lag"))
        .sum();
    assert_eq!(described["total_lag"], listed_lag);

    // The table shows the same lag per partition, Kafka's column names.
    let table = ok(b, &["groups", "describe", "workers"], "");
    assert!(
        table.contains("CURRENT-OFFSET  LOG-END-OFFSET  LAG"),
        "{table}"
    );

    // The group resumes where it committed (and from the beginning where it never
    // committed): the remaining records, none twice.
    let rest = ok(
        b,
        &[
            "consume",
            "work",
            "--group",
            "workers",
            "--from-beginning", // only where nothing was committed
            "--max-messages",
            "15",
            "--timeout-ms",
            "30000",
            "--format",
            "%p:%o\\n",
        ],
        "",
    );
    let mut seen: Vec<String> = first
        .lines()
        .chain(rest.lines())
        .map(str::to_owned)
        .collect();
    assert_eq!(seen.len() as i64, total);
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 40, "every partition:offset exactly once");
    assert_eq!(json(b, &["groups", "describe", "workers"])["total_lag"], 0);

    let groups = json(b, &["groups", "list"]);
    assert!(groups
        .as_array()
        .expect("array")
        .iter()
        .any(|g| g["group_id"] == "workers"));
    let unknown = moldau(b, &["groups", "describe", "nobody"], "");
    assert_eq!(unknown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("GROUP_ID_NOT_FOUND"));
}

/// `moldau produce` asks for auto-creation as Kafka's producer does: on a broker with
/// `auto.create.topics.enable=true` (the default) a missing topic is created and the
/// record written; with it off, the CLI fails with UNKNOWN_TOPIC_OR_PARTITION and exit
/// code 1. Before the fix the first half failed with UNKNOWN_TOPIC_OR_PARTITION.
#[test]
fn produce_creates_a_missing_topic_unless_the_broker_forbids_it() {
    let broker = TestBroker::start();
    let b = broker.addr.as_str();
    ok(b, &["produce", "newtopic-x"], "hi\n");
    let read = ok(
        b,
        &[
            "consume",
            "newtopic-x",
            "--from-beginning",
            "--max-messages",
            "1",
        ],
        "",
    );
    assert_eq!(read, "hi\n");

    let strict = TestBroker::start_with(&[("auto.create.topics.enable", "false")]);
    let s = strict.addr.as_str();
    let refused = moldau(s, &["produce", "newtopic-y"], "hi\n");
    assert_eq!(refused.status.code(), Some(1));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("UNKNOWN_TOPIC_OR_PARTITION"), "{err}");
    let missing = moldau(s, &["topics", "describe", "newtopic-y"], "");
    assert_eq!(missing.status.code(), Some(1), "nothing was created");
    assert!(String::from_utf8_lossy(&missing.stderr).contains("UNKNOWN_TOPIC_OR_PARTITION"));
}
