//! librdkafka (through the rdkafka crate) against the real broker binary: the client
//! most of the Kafka world runs on.

mod common;

use common::TestBroker;
use rdkafka::admin::{
    AdminClient, AdminOptions, NewPartitions, NewTopic, ResourceSpecifier, TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::time::{Duration, Instant};

const PARTITIONS: i32 = 3;

fn admin(addr: &str) -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", addr)
        .create()
        .expect("admin client")
}

fn producer(addr: &str, compression: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("compression.type", compression)
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("enable.idempotence", "false")
        .set("queue.buffering.max.messages", "500000")
        .set("message.max.bytes", "10000000")
        .create()
        .expect("producer")
}

async fn create_topic(addr: &str, name: &str, partitions: i32, configs: &[(&str, &str)]) {
    let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    for (k, v) in configs {
        topic = topic.set(k, v);
    }
    let results = admin(addr)
        .create_topics(&[topic], &AdminOptions::new())
        .await
        .expect("create_topics");
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
}

fn value_of(i: usize) -> Vec<u8> {
    // Varied sizes and non-UTF-8 bytes.
    let len = 10 + (i * 7919) % 300;
    (0..len)
        .map(|j| (i.wrapping_mul(31).wrapping_add(j * 17) % 256) as u8)
        .collect()
}

/// Produces `n` keyed records with two headers; returns (partition, offset) → index.
async fn produce_all(
    addr: &str,
    topic: &str,
    compression: &str,
    n: usize,
) -> HashMap<(i32, i64), usize> {
    let producer = producer(addr, compression);
    let mut futures = Vec::with_capacity(n);
    for i in 0..n {
        let p = producer.clone();
        futures.push(async move {
            let key = format!("key-{i}");
            let value = value_of(i);
            let headers = OwnedHeaders::new()
                .insert(Header {
                    key: "index",
                    value: Some(i.to_string().as_bytes()),
                })
                .insert(Header {
                    key: "codec",
                    value: Some(compression.as_bytes()),
                });
            let record = FutureRecord::to(topic)
                .key(&key)
                .payload(&value)
                .headers(headers);
            p.send(record, Duration::from_secs(60)).await
        });
    }
    let mut placed = HashMap::with_capacity(n);
    let results = futures::future::join_all(futures).await;
    for (i, r) in results.into_iter().enumerate() {
        let delivery = r.unwrap_or_else(|(e, _)| panic!("record {i} not delivered: {e}"));
        assert!(
            placed
                .insert((delivery.partition, delivery.offset), i)
                .is_none(),
            "offset handed out twice"
        );
    }
    placed
}

fn consumer(addr: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("group.id", "verifier")
        .set("enable.auto.commit", "false")
        .set("check.crcs", "true")
        .set("fetch.message.max.bytes", "1048576")
        .create()
        .expect("consumer")
}

/// Reads every partition from the beginning until `expected` records were seen and
/// checks each against what was produced: key, value, headers, offsets contiguous.
fn consume_and_verify(
    addr: &str,
    topic: &str,
    compression: &str,
    placed: &HashMap<(i32, i64), usize>,
) {
    let consumer = consumer(addr);
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("tpl");
    }
    consumer.assign(&tpl).expect("assign");
    let mut next_offset = [0i64; PARTITIONS as usize];
    let mut seen = 0usize;
    let deadline = Instant::now() + Duration::from_secs(120);
    while seen < placed.len() {
        assert!(
            Instant::now() < deadline,
            "timed out after {seen} of {} records",
            placed.len()
        );
        let Some(msg) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let msg = msg.expect("consume error");
        let p = msg.partition();
        assert_eq!(
            msg.offset(),
            next_offset[p as usize],
            "offsets contiguous in partition {p}"
        );
        next_offset[p as usize] += 1;
        let i = *placed
            .get(&(p, msg.offset()))
            .expect("record at an acknowledged offset");
        assert_eq!(msg.key(), Some(format!("key-{i}").as_bytes()));
        assert_eq!(msg.payload(), Some(value_of(i).as_slice()));
        let headers = msg.headers().expect("headers");
        assert_eq!(headers.count(), 2);
        assert_eq!(headers.get(0).value, Some(i.to_string().as_bytes()));
        assert_eq!(headers.get(1).value, Some(compression.as_bytes()));
        seen += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_thousand_records_in_every_codec() {
    let broker = TestBroker::start();
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let topic = format!("codec-{codec}");
        create_topic(&broker.addr, &topic, PARTITIONS, &[]).await;
        let placed = produce_all(&broker.addr, &topic, codec, 100_000).await;
        assert_eq!(placed.len(), 100_000);
        let addr = broker.addr.clone();
        tokio::task::spawn_blocking(move || consume_and_verify(&addr, &topic, codec, &placed))
            .await
            .expect("verify");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_batch_is_rejected_and_others_still_served() {
    let broker = TestBroker::start();
    create_topic(&broker.addr, "big", 1, &[("max.message.bytes", "100000")]).await;
    let producer = producer(&broker.addr, "none");
    let huge = vec![7u8; 200_000];
    let err = producer
        .send(
            FutureRecord::<(), _>::to("big").payload(&huge),
            Duration::from_secs(30),
        )
        .await
        .expect_err("too large");
    assert_eq!(
        err.0,
        KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge)
    );
    let ok = producer
        .send(
            FutureRecord::<(), _>::to("big").payload(&b"small"[..]),
            Duration::from_secs(30),
        )
        .await
        .expect("small record accepted");
    assert_eq!(ok.offset, 0, "the rejected batch consumed no offset");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_operations_and_metadata() {
    let broker = TestBroker::start();
    let admin = admin(&broker.addr);
    let opts = AdminOptions::new();
    create_topic(
        &broker.addr,
        "adm",
        2,
        &[("retention.ms", "3600000"), ("cleanup.policy", "delete")],
    )
    .await;

    let dup = admin
        .create_topics(
            &[NewTopic::new("adm", 1, TopicReplication::Fixed(1))],
            &opts,
        )
        .await
        .expect("request");
    assert_eq!(
        dup[0].as_ref().expect_err("exists").1,
        RDKafkaErrorCode::TopicAlreadyExists
    );
    let bad = admin
        .create_topics(
            &[NewTopic::new("bad", 1, TopicReplication::Fixed(3))],
            &opts,
        )
        .await
        .expect("request");
    assert_eq!(
        bad[0].as_ref().expect_err("rf").1,
        RDKafkaErrorCode::InvalidReplicationFactor
    );

    // The metadata log's topic name is reserved: creating it must not touch the log.
    let reserved = admin
        .create_topics(
            &[NewTopic::new(
                "__cluster_metadata",
                1,
                TopicReplication::Fixed(1),
            )],
            &opts,
        )
        .await
        .expect("request");
    assert_eq!(
        reserved[0].as_ref().expect_err("reserved").1,
        RDKafkaErrorCode::InvalidRequest
    );

    let configs = admin
        .describe_configs(&[ResourceSpecifier::Topic("adm")], &opts)
        .await
        .expect("describe");
    let resource = configs[0].as_ref().expect("resource");
    let entry = resource.get("retention.ms").expect("retention.ms listed");
    assert_eq!(entry.value.as_deref(), Some("3600000"));
    assert!(!entry.is_default);
    let segment = resource.get("segment.bytes").expect("segment.bytes listed");
    assert_eq!(segment.value.as_deref(), Some("1073741824"));
    assert!(segment.is_default);

    let grown = admin
        .create_partitions(&[NewPartitions::new("adm", 5)], &opts)
        .await
        .expect("create partitions");
    assert!(grown[0].is_ok(), "{grown:?}");

    let assigned = admin
        .create_partitions(&[NewPartitions::new("adm", 6).assign(&[&[1]])], &opts)
        .await
        .expect("create partitions with an assignment");
    assert!(assigned[0].is_ok(), "{assigned:?}");
    let bad = admin
        .create_partitions(&[NewPartitions::new("adm", 7).assign(&[&[42]])], &opts)
        .await
        .expect("request");
    assert_eq!(
        bad[0].as_ref().expect_err("unknown broker").1,
        RDKafkaErrorCode::InvalidReplicaAssignment
    );

    let consumer = consumer(&broker.addr);
    let md = consumer
        .fetch_metadata(Some("adm"), Duration::from_secs(10))
        .expect("metadata");
    let topic = &md.topics()[0];
    assert_eq!(topic.partitions().len(), 6);
    assert!(topic
        .partitions()
        .iter()
        .all(|p| p.leader() == 1 && p.isr() == [1]));
    let brokers = md.brokers();
    assert_eq!(brokers.len(), 1);
    assert_eq!(brokers[0].id(), 1);
    assert_eq!(
        format!("{}:{}", brokers[0].host(), brokers[0].port()),
        broker.addr
    );

    // Auto-creation on metadata request by name (auto.create.topics.enable=true).
    let producer = producer(&broker.addr, "none");
    let d = producer
        .send(
            FutureRecord::to("auto-created").key("k").payload("v"),
            Duration::from_secs(30),
        )
        .await
        .expect("auto-created topic accepts records");
    assert_eq!(d.offset, 0);

    let deleted = admin.delete_topics(&["adm"], &opts).await.expect("delete");
    assert!(deleted[0].is_ok());
    let again = admin
        .delete_topics(&["adm"], &opts)
        .await
        .expect("delete again");
    assert_eq!(
        again[0].as_ref().expect_err("gone").1,
        RDKafkaErrorCode::UnknownTopicOrPartition
    );
    assert!(
        !broker.data_dir().join("adm-0").exists(),
        "log directory removed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_and_topics_survive_a_graceful_restart() {
    let mut broker = TestBroker::start();
    create_topic(
        &broker.addr,
        "durable",
        PARTITIONS,
        &[("retention.ms", "86400000")],
    )
    .await;
    let placed = produce_all(&broker.addr, "durable", "lz4", 20_000).await;
    let in_partition_0 = placed.keys().filter(|(p, _)| *p == 0).count() as i64;
    assert!(broker.stop(), "clean exit on SIGTERM");
    assert!(
        broker.data_dir().join(".kafka_cleanshutdown").exists(),
        "clean shutdown marker written"
    );
    broker.restart();
    let addr = broker.addr.clone();
    tokio::task::spawn_blocking(move || consume_and_verify(&addr, "durable", "lz4", &placed))
        .await
        .expect("verify");
    let admin = admin(&broker.addr);
    let configs = admin
        .describe_configs(&[ResourceSpecifier::Topic("durable")], &AdminOptions::new())
        .await
        .expect("describe");
    let resource = configs[0].as_ref().expect("resource");
    assert_eq!(
        resource
            .get("retention.ms")
            .and_then(|e| e.value.as_deref()),
        Some("86400000")
    );
    // A produce after restart continues the offsets.
    let d = producer(&broker.addr, "none")
        .send(
            FutureRecord::to("durable")
                .key("after")
                .payload("restart")
                .partition(0),
            Duration::from_secs(30),
        )
        .await
        .expect("produce after restart");
    assert_eq!(d.offset, in_partition_0);
}

/// Sends 100 records in one batch (long linger) in `compression`; `bad(i)` decides which
/// get `modify` applied. Returns each record's delivery error code (`None`: delivered).
async fn one_batch(
    addr: &str,
    topic: &str,
    compression: &str,
    bad: impl Fn(usize) -> bool,
) -> Vec<Option<RDKafkaErrorCode>> {
    let p: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("compression.type", compression)
        .set("linger.ms", "500")
        .set("batch.num.messages", "1000")
        .set("enable.idempotence", "false")
        .set("retries", "0")
        .create()
        .expect("producer");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    let keys: Vec<String> = (0..100).map(|i| format!("k{i}")).collect();
    let values: Vec<String> = (0..100).map(|i| format!("v{i}")).collect();
    let mut pending = Vec::new();
    for i in 0..100 {
        let mut record = FutureRecord::<str, str>::to(topic)
            .partition(0)
            .payload(values[i].as_str())
            .timestamp(now);
        if bad(i) {
            // Keyless, and an hour ahead of the broker's clock.
            record = record.timestamp(now + 3_600_000);
        } else {
            record = record.key(keys[i].as_str());
        }
        pending.push(p.send_result(record).map_err(|(e, _)| e).expect("queued"));
    }
    let mut codes = Vec::new();
    for d in pending {
        codes.push(match d.await.expect("delivery report") {
            Ok(_) => None,
            Err((KafkaError::MessageProduction(code), _)) => Some(code),
            Err((other, _)) => panic!("unexpected delivery error {other:?}"),
        });
    }
    codes
}

/// KIP-467: a batch with 10 bad records among 100 is refused with `record_errors`
/// naming those 10, so librdkafka fails exactly them (with `INVALID_RECORD`: it gives
/// every listed record that code, whatever the partition's) and the other 90 with
/// `INVALID_DIFFERENT_RECORD`, so they can be sent again. Two rules, each uncompressed
/// and lz4: keyless records in a compacted topic and timestamps past
/// `message.timestamp.after.max.ms` (the partition codes, `INVALID_RECORD` and
/// `INVALID_TIMESTAMP`, are checked in `raw_protocol.rs`). Nothing of a refused batch
/// is stored. Without `record_errors` in the response (checked by leaving the list
/// empty) librdkafka fails all 100 with the partition's error and this fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_record_errors_fail_exactly_the_offending_records() {
    let broker = TestBroker::start();
    create_topic(&broker.addr, "keyed", 1, &[("cleanup.policy", "compact")]).await;
    create_topic(
        &broker.addr,
        "timely",
        1,
        &[
            ("message.timestamp.type", "CreateTime"),
            ("message.timestamp.after.max.ms", "60000"),
        ],
    )
    .await;
    for topic in ["keyed", "timely"] {
        for compression in ["none", "lz4"] {
            let codes = one_batch(&broker.addr, topic, compression, |i| i % 10 == 3).await;
            for (i, got) in codes.iter().enumerate() {
                let want = if i % 10 == 3 {
                    RDKafkaErrorCode::InvalidRecord
                } else {
                    RDKafkaErrorCode::InvalidDifferentRecord
                };
                assert_eq!(*got, Some(want), "{topic} ({compression}) record {i}");
            }
            // A batch without bad records goes through.
            let codes = one_batch(&broker.addr, topic, compression, |_| false).await;
            assert!(codes.iter().all(Option::is_none), "{topic}: {codes:?}");
        }
        let (low, high) = consumer(&broker.addr)
            .fetch_watermarks(topic, 0, Duration::from_secs(10))
            .expect("watermarks");
        assert_eq!((low, high), (0, 200), "{topic}: only the two good batches");
    }
}

/// The legacy AlterConfigs API (key 33) through librdkafka's `AlterConfigs`: the named
/// configs replace the topic's whole set of overrides (one not named returns to its
/// default), `validate_only` writes nothing, and errors come back per resource as
/// IncrementalAlterConfigs gives them. Before the API was served librdkafka failed with
/// "AlterConfigs not supported by broker". (The rdkafka crate reports every resource of
/// an AlterConfigs answer as a success, so the error codes are checked through
/// confluent-kafka in `tests/compat/compat.py`; here, that refused ones change nothing.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_alter_configs_replaces_the_overrides() {
    use rdkafka::admin::AlterConfig;
    let broker = TestBroker::start();
    create_topic(
        &broker.addr,
        "cfg",
        1,
        &[("retention.ms", "1000000"), ("cleanup.policy", "compact")],
    )
    .await;
    let admin = admin(&broker.addr);
    let opts = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
    type Entry = (String, bool);
    async fn described(admin: &AdminClient<DefaultClientContext>) -> (Entry, Entry, Entry) {
        let configs = admin
            .describe_configs(&[ResourceSpecifier::Topic("cfg")], &AdminOptions::new())
            .await
            .expect("describe");
        let resource = configs[0].as_ref().expect("resource");
        let get = |name: &str| {
            let e = resource.get(name).expect("listed");
            (e.value.clone().unwrap_or_default(), e.is_default)
        };
        (
            get("retention.ms"),
            get("cleanup.policy"),
            get("max.message.bytes"),
        )
    }

    let set = AlterConfig::new(ResourceSpecifier::Topic("cfg")).set("retention.ms", "60000");
    let results = admin.alter_configs(&[set], &opts).await.expect("alter");
    assert!(results[0].is_ok(), "{results:?}");
    let (retention, policy, _) = described(&admin).await;
    assert_eq!(retention, ("60000".to_string(), false));
    assert_eq!(
        policy,
        ("delete".to_string(), true),
        "not named: back to the default"
    );

    let dry = AlterConfig::new(ResourceSpecifier::Topic("cfg")).set("max.message.bytes", "5000");
    let results = admin
        .alter_configs(&[dry], &AdminOptions::new().validate_only(true))
        .await
        .expect("validate");
    assert!(results[0].is_ok(), "{results:?}");
    let (retention, _, max) = described(&admin).await;
    assert_eq!(retention.0, "60000", "validate_only changed nothing");
    assert!(max.1, "validate_only changed nothing");

    for config in [
        AlterConfig::new(ResourceSpecifier::Topic("cfg")).set("retention.ms", "soon"),
        AlterConfig::new(ResourceSpecifier::Topic("cfg"))
            .set("no.such.config", "1")
            .set("max.message.bytes", "5000"),
    ] {
        admin.alter_configs(&[config], &opts).await.expect("alter");
        let (retention, _, max) = described(&admin).await;
        assert_eq!(retention.0, "60000", "a refused alteration changed nothing");
        assert!(max.1, "a refused alteration changed nothing");
    }
}
