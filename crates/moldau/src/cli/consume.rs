//! `moldau consume TOPIC`, after `kafka-console-consumer.sh` (`--from-beginning`,
//! `--offset`, `--partition`, `--group`, `--max-messages`, `--timeout-ms`) and kcat's
//! `-f` format strings.

use super::output::Output;
use super::{Context, Progress};
use base64::Engine;
use moldau_client::consumer::{AutoOffsetReset, Consumer, ConsumerConfig};
use moldau_client::{ConsumerRecord, IsolationLevel, OffsetSpec};
use serde_json::json;
use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

/// Arguments of `moldau consume`.
#[derive(clap::Args)]
pub struct ConsumeArgs {
    /// Topic to read.
    pub topic: String,
    /// Start at the earliest offset (without a group, or when the group has no
    /// committed offset).
    #[arg(long)]
    pub from_beginning: bool,
    /// Start offset without a group: a number, `beginning` or `end` (the default).
    #[arg(long, conflicts_with = "group")]
    pub offset: Option<String>,
    /// Read only this partition (without a group).
    #[arg(long, short = 'p', conflicts_with = "group")]
    pub partition: Option<i32>,
    /// Consume as a member of this group, committing what was printed.
    #[arg(long, short = 'g')]
    pub group: Option<String>,
    /// Exit after this many records.
    #[arg(long)]
    pub max_messages: Option<u64>,
    /// Exit when no record arrives for this long, ms.
    #[arg(long)]
    pub timeout_ms: Option<u64>,
    /// Output format (table output only): `%t` topic, `%p` partition, `%o` offset, `%k`
    /// key, `%s` value, `%T` timestamp (ms), `%h` headers (`k=v,…`), `\n`, `\t`.
    #[arg(long, default_value = "%s\\n")]
    pub format: String,
    /// Read only committed transactional records (isolation.level=read_committed).
    #[arg(long)]
    pub read_committed: bool,
}

/// Runs `moldau consume`.
pub async fn run(ctx: &Context, args: ConsumeArgs) -> anyhow::Result<()> {
    let client = ctx.client().await?;
    // Kafka's consumer default (`allow.auto.create.topics=true`): a missing topic is
    // created when the broker auto-creates topics.
    let info = client.topic_with(&args.topic, true).await?;
    let config = ConsumerConfig {
        group_id: args.group.clone(),
        auto_offset_reset: if args.from_beginning {
            AutoOffsetReset::Earliest
        } else {
            AutoOffsetReset::Latest
        },
        enable_auto_commit: false,
        isolation: if args.read_committed {
            IsolationLevel::ReadCommitted
        } else {
            IsolationLevel::ReadUncommitted
        },
        ..Default::default()
    };
    let mut consumer = Consumer::new(client, config)?;
    if args.group.is_some() {
        consumer.subscribe(std::slice::from_ref(&args.topic))?;
    } else {
        let partitions: Vec<i32> = match args.partition {
            Some(p) if !(0..info.partitions.len() as i32).contains(&p) => anyhow::bail!(
                "UNKNOWN_TOPIC_OR_PARTITION: topic {} has no partition {p}",
                args.topic
            ),
            Some(p) => vec![p],
            None => info.partitions.iter().map(|p| p.partition).collect(),
        };
        let assignment: Vec<(String, i32)> = partitions
            .iter()
            .map(|p| (args.topic.clone(), *p))
            .collect();
        consumer.assign(&assignment)?;
        let start =
            match (args.offset.as_deref(), args.from_beginning) {
                (Some("beginning"), _) | (None, true) => Start::Spec(OffsetSpec::Earliest),
                (Some("end"), _) | (None, false) => Start::Spec(OffsetSpec::Latest),
                (Some(n), _) => Start::Offset(n.parse().map_err(|_| {
                    anyhow::anyhow!("--offset {n:?}: use a number, beginning or end")
                })?),
            };
        for p in partitions {
            match start {
                Start::Spec(spec) => consumer.seek_to(&args.topic, p, spec).await?,
                Start::Offset(o) if o < 0 => anyhow::bail!("--offset {o} is negative"),
                Start::Offset(o) => consumer.seek(&args.topic, p, o)?,
            }
        }
    }
    let result = consume(&mut consumer, ctx, &args).await;
    consumer.close().await?;
    result
}

#[derive(Clone, Copy)]
enum Start {
    Spec(OffsetSpec),
    Offset(i64),
}

async fn consume(consumer: &mut Consumer, ctx: &Context, args: &ConsumeArgs) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut progress = Progress::new("consumed");
    let mut count = 0u64;
    let mut last_record = Instant::now();
    let stop = tokio::signal::ctrl_c();
    tokio::pin!(stop);
    'outer: loop {
        if args.max_messages.is_some_and(|m| count >= m) {
            break;
        }
        if let Some(t) = args.timeout_ms {
            if last_record.elapsed() >= Duration::from_millis(t) {
                break;
            }
        }
        let records = tokio::select! {
            r = consumer.poll(Duration::from_millis(500)) => r?,
            _ = &mut stop => break,
        };
        if !records.is_empty() {
            last_record = Instant::now();
        }
        let mut printed: BTreeMap<i32, i64> = BTreeMap::new();
        for r in &records {
            if args.max_messages.is_some_and(|m| count >= m) {
                commit(consumer, args, &printed).await?;
                break 'outer;
            }
            match ctx.output {
                Output::Json => writeln!(out, "{}", record_json(r))?,
                Output::Table => out.write_all(&format_record(&args.format, r))?,
            }
            printed.insert(r.partition, r.offset);
            count += 1;
            progress.tick(count);
        }
        out.flush()?;
        commit(consumer, args, &printed).await?;
    }
    out.flush()?;
    progress.finish();
    Ok(())
}

/// Commits, for a group, the offsets after the records printed (exactly what was shown,
/// never what was fetched and not shown). A commit refused because the group is
/// rebalancing or this member was expelled is reported and consumption goes on (the
/// consumer rejoins; records since the last commit may be printed again, at least once
/// as `kafka-console-consumer.sh`).
async fn commit(
    consumer: &mut Consumer,
    args: &ConsumeArgs,
    printed: &BTreeMap<i32, i64>,
) -> anyhow::Result<()> {
    if args.group.is_none() || printed.is_empty() {
        return Ok(());
    }
    let offsets: Vec<(String, i32, i64)> = printed
        .iter()
        .map(|(p, o)| (args.topic.clone(), *p, o + 1))
        .collect();
    match consumer.commit_offsets(&offsets).await {
        Ok(()) => Ok(()),
        Err(e) if rebalancing(&e) => {
            eprintln!("moldau: warning: commit not accepted ({e}); rejoining the group");
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

fn rebalancing(e: &moldau_client::Error) -> bool {
    use moldau_client::kafka_protocol::error::ResponseError::*;
    matches!(
        e.kafka_code(),
        Some(RebalanceInProgress | IllegalGeneration | UnknownMemberId | FencedInstanceId)
    )
}

fn text(bytes: Option<&bytes::Bytes>) -> String {
    bytes.map_or_else(String::new, |b| String::from_utf8_lossy(b).into_owned())
}

/// One record as a JSON object. Keys, values and header values are UTF-8 text; a field
/// that is not UTF-8 is base64 instead, and named in `"base64": ["value", …]` so a
/// script knows which fields to decode.
fn record_json(r: &ConsumerRecord) -> serde_json::Value {
    let mut base64_fields: Vec<String> = Vec::new();
    let mut encode = |field: String, b: Option<&bytes::Bytes>| match b {
        None => serde_json::Value::Null,
        Some(b) => match std::str::from_utf8(b) {
            Ok(s) => json!(s),
            Err(_) => {
                base64_fields.push(field);
                json!(base64::engine::general_purpose::STANDARD.encode(b))
            }
        },
    };
    let key = encode("key".into(), r.key.as_ref());
    let value = encode("value".into(), r.value.as_ref());
    let headers: Vec<serde_json::Value> = r
        .headers
        .iter()
        .enumerate()
        .map(|(i, h)| json!({"key": h.key, "value": encode(format!("headers[{i}]"), h.value.as_ref())}))
        .collect();
    let mut v = json!({
        "topic": r.topic,
        "partition": r.partition,
        "offset": r.offset,
        "timestamp": r.timestamp_ms,
        "key": key,
        "value": value,
        "headers": headers,
    });
    if !base64_fields.is_empty() {
        v["base64"] = json!(base64_fields);
    }
    v
}

/// Renders `r` with a kcat-style format string.
pub fn format_record(format: &str, r: &ConsumerRecord) -> Vec<u8> {
    let mut out = Vec::new();
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, chars.peek().copied()) {
            ('%', Some(k)) => {
                chars.next();
                match k {
                    't' => out.extend_from_slice(r.topic.as_bytes()),
                    'p' => out.extend_from_slice(r.partition.to_string().as_bytes()),
                    'o' => out.extend_from_slice(r.offset.to_string().as_bytes()),
                    'T' => out.extend_from_slice(r.timestamp_ms.to_string().as_bytes()),
                    'k' => out.extend_from_slice(r.key.as_deref().unwrap_or_default()),
                    's' => out.extend_from_slice(r.value.as_deref().unwrap_or_default()),
                    'h' => {
                        let h: Vec<String> = r
                            .headers
                            .iter()
                            .map(|h| format!("{}={}", h.key, text(h.value.as_ref())))
                            .collect();
                        out.extend_from_slice(h.join(",").as_bytes());
                    }
                    '%' => out.push(b'%'),
                    other => {
                        out.push(b'%');
                        out.extend_from_slice(other.to_string().as_bytes());
                    }
                }
            }
            ('\\', Some('n')) => {
                chars.next();
                out.push(b'\n');
            }
            ('\\', Some('t')) => {
                chars.next();
                out.push(b'\t');
            }
            (c, _) => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use moldau_client::Header;

    #[test]
    fn json_names_exactly_the_fields_it_base64_encoded() {
        let r = ConsumerRecord {
            topic: "t".into(),
            partition: 0,
            offset: 1,
            timestamp_ms: 5,
            key: Some("user-1".into()),
            value: Some(bytes::Bytes::from_static(&[0, 0xff])),
            headers: vec![Header {
                key: "h".into(),
                value: Some(bytes::Bytes::from_static(&[0xfe])),
            }],
        };
        let v = record_json(&r);
        assert_eq!(v["key"], "user-1");
        assert_eq!(v["value"], "AP8=");
        assert_eq!(v["headers"][0]["value"], "/g==");
        assert_eq!(v["base64"], json!(["value", "headers[0]"]));
        let text = ConsumerRecord {
            value: Some("plain".into()),
            headers: vec![],
            ..r
        };
        assert!(record_json(&text).get("base64").is_none());
    }

    #[test]
    fn kcat_style_format() {
        let r = ConsumerRecord {
            topic: "t".into(),
            partition: 2,
            offset: 7,
            timestamp_ms: 1000,
            key: Some("k".into()),
            value: Some("v".into()),
            headers: vec![Header {
                key: "h".into(),
                value: Some("x".into()),
            }],
        };
        assert_eq!(
            format_record("%t/%p@%o %k=%s [%h] %T 100%%\\n", &r),
            b"t/2@7 k=v [h=x] 1000 100%\n".to_vec()
        );
    }
}
