//! rskafka (an independent pure-Rust Kafka client) against the real broker binary.

mod common;

use chrono::{TimeZone, Utc};
use common::TestBroker;
use rskafka::client::partition::{Compression, OffsetAt, UnknownTopicHandling};
use rskafka::client::ClientBuilder;
use rskafka::record::Record;
use std::collections::BTreeMap;

fn record(i: usize, ts_ms: i64) -> Record {
    Record {
        key: Some(format!("key-{i}").into_bytes()),
        value: Some(format!("value-{i}-{}", "x".repeat(i % 50)).into_bytes()),
        headers: BTreeMap::from([("h".to_owned(), i.to_string().into_bytes())]),
        timestamp: Utc.timestamp_millis_opt(ts_ms).single().expect("timestamp"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_fetch_every_codec_and_list_offsets() {
    let broker = TestBroker::start();
    let client = ClientBuilder::new(vec![broker.addr.clone()])
        .build()
        .await
        .expect("client");
    let controller = client.controller_client().expect("controller");
    controller
        .create_topic("rs", 2, 1, 5_000)
        .await
        .expect("create topic");
    let err = controller
        .create_topic("rs", 2, 1, 5_000)
        .await
        .expect_err("duplicate topic");
    assert!(err.to_string().contains("TopicAlreadyExists"), "{err}");

    let topics = client.list_topics().await.expect("list topics");
    let rs = topics
        .iter()
        .find(|t| t.name == "rs")
        .expect("topic listed");
    assert_eq!(rs.partitions.len(), 2);

    let pc = client
        .partition_client("rs", 1, UnknownTopicHandling::Error)
        .await
        .expect("partition client");
    let codecs = [
        Compression::NoCompression,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];
    let base_ts = 1_700_000_000_000i64;
    const PER_CODEC: usize = 100_000;
    const PER_CALL: usize = 1_000;
    let mut expected = Vec::with_capacity(PER_CODEC * codecs.len());
    for (c, codec) in codecs.into_iter().enumerate() {
        for chunk in 0..PER_CODEC / PER_CALL {
            let first = c * PER_CODEC + chunk * PER_CALL;
            let records: Vec<Record> = (first..first + PER_CALL)
                .map(|i| record(i, base_ts + i as i64))
                .collect();
            let offsets = pc.produce(records.clone(), codec).await.expect("produce");
            let want: Vec<i64> = (first as i64..(first + PER_CALL) as i64).collect();
            assert_eq!(
                offsets, want,
                "offsets assigned contiguously for codec #{c}"
            );
            expected.extend(records);
        }
    }

    // Read everything back, batch by batch, checking every byte.
    let mut next = 0i64;
    let mut got = Vec::new();
    while next < expected.len() as i64 {
        let (records, hw) = pc
            .fetch_records(next, 1..1_000_000, 1_000)
            .await
            .expect("fetch");
        assert_eq!(hw, expected.len() as i64);
        assert!(!records.is_empty());
        for r in records {
            if r.offset < next {
                continue; // a fetch inside a compressed batch returns the whole batch
            }
            assert_eq!(r.offset, next, "no gaps");
            next += 1;
            got.push(r.record);
        }
    }
    assert_eq!(got, expected);

    assert_eq!(
        pc.get_offset(OffsetAt::Earliest).await.expect("earliest"),
        0
    );
    assert_eq!(
        pc.get_offset(OffsetAt::Latest).await.expect("latest"),
        expected.len() as i64
    );
    // By timestamp: exact records, inside uncompressed and zstd batches alike.
    for i in [150i64, 4 * PER_CODEC as i64 + 12_345] {
        let ts = Utc.timestamp_millis_opt(base_ts + i).single().expect("ts");
        let found = pc
            .get_offset(OffsetAt::Timestamp(ts))
            .await
            .expect("by timestamp");
        assert_eq!(found, i);
    }

    // Fetching past the end is OFFSET_OUT_OF_RANGE.
    let err = pc
        .fetch_records(expected.len() as i64 + 10, 1..1000, 10)
        .await
        .expect_err("out of range");
    assert!(err.to_string().contains("OffsetOutOfRange"), "{err}");

    // DeleteRecords moves the log start offset.
    pc.delete_records(100, 5_000).await.expect("delete records");
    assert_eq!(
        pc.get_offset(OffsetAt::Earliest).await.expect("earliest"),
        100
    );
    let err = pc
        .fetch_records(50, 1..1000, 10)
        .await
        .expect_err("below log start");
    assert!(err.to_string().contains("OffsetOutOfRange"), "{err}");

    controller
        .delete_topic("rs", 5_000)
        .await
        .expect("delete topic");
    let topics = client.list_topics().await.expect("list topics");
    assert!(topics.iter().all(|t| t.name != "rs"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_fetch_is_woken_by_produce() {
    let broker = TestBroker::start();
    let client = ClientBuilder::new(vec![broker.addr.clone()])
        .build()
        .await
        .expect("client");
    client
        .controller_client()
        .expect("controller")
        .create_topic("wait", 1, 1, 5_000)
        .await
        .expect("create");
    let pc = std::sync::Arc::new(
        client
            .partition_client("wait", 0, UnknownTopicHandling::Error)
            .await
            .expect("pc"),
    );
    let reader = pc.clone();
    let started = std::time::Instant::now();
    let fetch = tokio::spawn(async move { reader.fetch_records(0, 1..1_000_000, 20_000).await });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    pc.produce(
        vec![record(1, 1_700_000_000_000)],
        Compression::NoCompression,
    )
    .await
    .expect("produce");
    let (records, _) = fetch.await.expect("join").expect("fetch");
    assert_eq!(records.len(), 1);
    // Woken by the append, long before the 20 s max wait.
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}
