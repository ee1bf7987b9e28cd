//! `moldau produce TOPIC`: records from lines of stdin or a file, after
//! `kafka-console-producer.sh` (`--key-separator` as its `parse.key`/`key.separator`)
//! and kcat `-P` (`--header`, `--partition`).

use super::output::Output;
use super::{kv, Context, Progress};
use moldau_client::{
    parse_compression, Acks, DeliveryFuture, Producer, ProducerConfig, ProducerRecord,
};
use serde_json::json;
use std::collections::VecDeque;
use std::io::BufRead;
use std::path::PathBuf;
use std::time::Duration;

/// Arguments of `moldau produce`.
#[derive(clap::Args)]
pub struct ProduceArgs {
    /// Topic to write to.
    pub topic: String,
    /// Read lines from this file instead of stdin.
    #[arg(long, short = 'f')]
    pub file: Option<PathBuf>,
    /// Split each line into key and value at the first occurrence of this separator
    /// (lines without it get a null key).
    #[arg(long)]
    pub key_separator: Option<String>,
    /// A header added to every record, `NAME=VALUE` (repeatable).
    #[arg(long = "header", short = 'H', value_name = "NAME=VALUE")]
    pub headers: Vec<String>,
    /// Write every record to this partition (default: murmur2 of the key, as Kafka's
    /// Java client; sticky for keyless records).
    #[arg(long, short = 'p')]
    pub partition: Option<i32>,
    /// `all` (-1), `1` or `0`.
    #[arg(long, default_value = "all")]
    pub acks: String,
    /// none, gzip, snappy, lz4 or zstd.
    #[arg(long, default_value = "none")]
    pub compression: String,
    /// `linger.ms`.
    #[arg(long, default_value_t = 5)]
    pub linger_ms: u64,
    /// `batch.size`, bytes.
    #[arg(long, default_value_t = 16384)]
    pub batch_size: usize,
}

/// Deliveries awaited in order once this many are outstanding (bounds memory).
const MAX_OUTSTANDING: usize = 50_000;

/// Lines read from the input per hand-over to the producing task.
const LINES_PER_CHUNK: usize = 1024;

/// Runs `moldau produce`.
pub async fn run(ctx: &Context, args: ProduceArgs) -> anyhow::Result<()> {
    let acks = match args.acks.as_str() {
        "all" | "-1" => Acks::All,
        "1" => Acks::Leader,
        "0" => Acks::None,
        other => anyhow::bail!("--acks {other:?}: use all, 1 or 0"),
    };
    let headers = args
        .headers
        .iter()
        .map(|h| kv(h))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let config = ProducerConfig {
        acks,
        linger: Duration::from_millis(args.linger_ms),
        batch_size: args.batch_size,
        compression: parse_compression(&args.compression)?,
        ..Default::default()
    };
    let client = ctx.client().await?;
    // A missing topic is created when the broker auto-creates topics (Kafka's producer
    // asks for it in its Metadata request); otherwise fail early and clearly.
    let info = client.topic_with(&args.topic, true).await?;
    if let Some(p) = args.partition {
        if !(0..info.partitions.len() as i32).contains(&p) {
            anyhow::bail!(
                "UNKNOWN_TOPIC_OR_PARTITION: topic {} has no partition {p} (it has {})",
                args.topic,
                info.partitions.len()
            );
        }
    }
    let producer = Producer::new(client, config).await?;
    let input: Box<dyn BufRead + Send> = match &args.file {
        Some(path) => Box::new(std::io::BufReader::new(
            std::fs::File::open(path)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?,
        )),
        None => Box::new(std::io::BufReader::new(std::io::stdin())),
    };
    // Lines are read on a blocking thread and handed over in order, a chunk at a time
    // (one channel wake-up per line cost more than the rest of the producer).
    let (tx, mut rx) = tokio::sync::mpsc::channel::<std::io::Result<Vec<String>>>(16);
    std::thread::spawn(move || {
        let mut lines = input.lines();
        loop {
            let chunk: std::io::Result<Vec<String>> =
                lines.by_ref().take(LINES_PER_CHUNK).collect();
            let done = matches!(&chunk, Ok(c) if c.len() < LINES_PER_CHUNK) || chunk.is_err();
            if tx.blocking_send(chunk).is_err() || done {
                return;
            }
        }
    });
    let mut outstanding: VecDeque<DeliveryFuture> = VecDeque::new();
    let mut progress = Progress::new("produced");
    let mut delivered = 0u64;
    let mut partitions = std::collections::BTreeMap::<i32, u64>::new();
    let mut settle = |partition: i32, delivered: &mut u64, progress: &mut Progress| {
        *delivered += 1;
        *partitions.entry(partition).or_default() += 1;
        progress.tick(*delivered);
    };
    while let Some(chunk) = rx.recv().await {
        for line in chunk? {
            let line = line.strip_suffix('\r').unwrap_or(&line);
            let mut record = ProducerRecord::new(args.topic.clone());
            match args
                .key_separator
                .as_deref()
                .and_then(|sep| line.split_once(sep))
            {
                Some((k, v)) => {
                    record = record.with_key(k.to_owned()).with_value(v.to_owned());
                }
                None => record = record.with_value(line.to_owned()),
            }
            for (k, v) in &headers {
                record = record.with_header(k.clone(), v.clone());
            }
            if let Some(p) = args.partition {
                record = record.with_partition(p);
            }
            outstanding.push_back(producer.send(record).await?);
            while outstanding.len() >= MAX_OUTSTANDING {
                if let Some(d) = outstanding.pop_front() {
                    settle(d.await?.partition, &mut delivered, &mut progress);
                }
            }
        }
    }
    producer.flush().await?;
    while let Some(d) = outstanding.pop_front() {
        settle(d.await?.partition, &mut delivered, &mut progress);
    }
    producer.close().await?;
    progress.finish();
    match ctx.output {
        Output::Json => super::output::print_json(&json!({
            "topic": args.topic,
            "records": delivered,
            "partitions": partitions,
        })),
        Output::Table => eprintln!("Produced {delivered} records to {}.", args.topic),
    }
    Ok(())
}
