//! `moldau topics list|create|describe|delete|alter-config`, after
//! `kafka-topics.sh` and `kafka-configs.sh`.

use super::output::{self, Output};
use super::{kv, Context};
use moldau_client::{ConfigResource, NewTopic};
use serde_json::json;

/// Topic subcommands.
#[derive(clap::Subcommand)]
pub enum TopicsCommand {
    /// List topics.
    List {
        /// Leave out internal topics (__consumer_offsets, __transaction_state).
        #[arg(long)]
        exclude_internal: bool,
    },
    /// Create a topic.
    Create {
        /// Topic name.
        topic: String,
        /// Partitions (default: the broker's num.partitions).
        #[arg(long)]
        partitions: Option<i32>,
        /// Replication factor (default: the broker's default.replication.factor).
        #[arg(long)]
        replication_factor: Option<i16>,
        /// A topic config, e.g. `--config cleanup.policy=compact` (repeatable).
        #[arg(long = "config", value_name = "NAME=VALUE")]
        configs: Vec<String>,
    },
    /// Show partitions (leader, replicas, ISR, offsets) and configs.
    Describe {
        /// Topic name.
        topic: String,
    },
    /// Delete a topic.
    Delete {
        /// Topic name.
        topic: String,
    },
    /// Set or reset topic configs.
    AlterConfig {
        /// Topic name.
        topic: String,
        /// Set a config (repeatable).
        #[arg(long = "set", value_name = "NAME=VALUE")]
        set: Vec<String>,
        /// Reset a config to its default (repeatable).
        #[arg(long = "delete", value_name = "NAME")]
        delete: Vec<String>,
    },
}

/// Runs a topics subcommand.
pub async fn run(ctx: &Context, command: TopicsCommand) -> anyhow::Result<()> {
    let admin = ctx.admin().await?;
    match command {
        TopicsCommand::List { exclude_internal } => {
            let topics = admin.list_topics(!exclude_internal).await?;
            match ctx.output {
                Output::Json => output::print_json(&json!(topics
                    .iter()
                    .map(|t| json!({"name": t.name, "partitions": t.partitions.len(), "internal": t.internal}))
                    .collect::<Vec<_>>())),
                Output::Table => {
                    let rows: Vec<Vec<String>> = topics
                        .iter()
                        .map(|t| vec![t.name.clone(), t.partitions.len().to_string(), t.internal.to_string()])
                        .collect();
                    print!("{}", output::table(&["TOPIC", "PARTITIONS", "INTERNAL"], &rows));
                }
            }
        }
        TopicsCommand::Create {
            topic,
            partitions,
            replication_factor,
            configs,
        } => {
            let configs = configs
                .iter()
                .map(|c| kv(c))
                .collect::<anyhow::Result<Vec<_>>>()?;
            admin
                .create_topic(&NewTopic {
                    name: topic.clone(),
                    partitions: partitions.unwrap_or(-1),
                    replication_factor: replication_factor.unwrap_or(-1),
                    configs,
                })
                .await?;
            let info = admin.describe_topic(&topic).await?;
            match ctx.output {
                Output::Json => output::print_json(
                    &json!({"created": topic, "partitions": info.partitions.len()}),
                ),
                Output::Table => println!(
                    "Created topic {topic} with {} partitions.",
                    info.partitions.len()
                ),
            }
        }
        TopicsCommand::Describe { topic } => {
            let info = admin.describe_topic(&topic).await?;
            let offsets = admin.partition_offsets(&info).await?;
            let configs = admin
                .describe_configs(&ConfigResource::Topic(topic.clone()))
                .await?;
            let row = |p: &moldau_client::PartitionInfo| {
                offsets.iter().find(|o| o.partition == p.partition).copied()
            };
            match ctx.output {
                Output::Json => output::print_json(&json!({
                    "name": info.name,
                    "topic_id": info.topic_id.to_string(),
                    "internal": info.internal,
                    "partitions": info.partitions.iter().map(|p| {
                        let o = row(p);
                        json!({
                            "partition": p.partition, "leader": p.leader, "leader_epoch": p.leader_epoch,
                            "replicas": p.replicas, "isr": p.isr,
                            "offline": p.leader < 0,
                            "under_replicated": p.isr.len() < p.replicas.len(),
                            "log_start_offset": o.map(|o| o.log_start_offset),
                            "high_watermark": o.map(|o| o.high_watermark),
                            "last_stable_offset": o.map(|o| o.last_stable_offset),
                        })
                    }).collect::<Vec<_>>(),
                    "configs": configs.iter().map(|c| (c.name.clone(), json!(c.value))).collect::<serde_json::Map<_, _>>(),
                })),
                Output::Table => {
                    println!(
                        "Topic: {}  TopicId: {}  Partitions: {}  Internal: {}",
                        info.name,
                        info.topic_id,
                        info.partitions.len(),
                        info.internal
                    );
                    let rows: Vec<Vec<String>> = info
                        .partitions
                        .iter()
                        .map(|p| {
                            let o = row(p);
                            let show = |v: Option<i64>| v.map_or("-".to_owned(), |v| v.to_string());
                            vec![
                                p.partition.to_string(),
                                p.leader.to_string(),
                                p.leader_epoch.to_string(),
                                output::ids(&p.replicas),
                                output::ids(&p.isr),
                                show(o.map(|o| o.log_start_offset)),
                                show(o.map(|o| o.high_watermark)),
                                show(o.map(|o| o.last_stable_offset)),
                                partition_status(p).into(),
                            ]
                        })
                        .collect();
                    print!(
                        "{}",
                        output::table(
                            &[
                                "PARTITION",
                                "LEADER",
                                "EPOCH",
                                "REPLICAS",
                                "ISR",
                                "LOG-START",
                                "HIGH-WATERMARK",
                                "LAST-STABLE",
                                "STATUS"
                            ],
                            &rows
                        )
                    );
                    let set: Vec<Vec<String>> = configs
                        .iter()
                        .filter(|c| !c.is_default)
                        .map(|c| vec![c.name.clone(), c.value.clone().unwrap_or_default()])
                        .collect();
                    if !set.is_empty() {
                        println!();
                        print!("{}", output::table(&["CONFIG", "VALUE"], &set));
                    }
                }
            }
        }
        TopicsCommand::Delete { topic } => {
            admin.delete_topic(&topic).await?;
            match ctx.output {
                Output::Json => output::print_json(&json!({"deleted": topic})),
                Output::Table => println!("Deleted topic {topic}."),
            }
        }
        TopicsCommand::AlterConfig { topic, set, delete } => {
            if set.is_empty() && delete.is_empty() {
                anyhow::bail!("nothing to change: give --set NAME=VALUE or --delete NAME");
            }
            let mut changes: Vec<(String, Option<String>)> = Vec::new();
            for s in &set {
                let (k, v) = kv(s)?;
                changes.push((k, Some(v)));
            }
            changes.extend(delete.into_iter().map(|k| (k, None)));
            admin.describe_topic(&topic).await?;
            admin
                .alter_configs(&ConfigResource::Topic(topic.clone()), &changes)
                .await?;
            match ctx.output {
                Output::Json => {
                    output::print_json(&json!({"altered": topic, "changes": changes.len()}))
                }
                Output::Table => println!("Altered {} config(s) of topic {topic}.", changes.len()),
            }
        }
    }
    Ok(())
}

/// `offline` (no leader), `under-replicated` (ISR smaller than the replica set), or `ok`.
fn partition_status(p: &moldau_client::PartitionInfo) -> &'static str {
    if p.leader < 0 {
        "offline"
    } else if p.isr.len() < p.replicas.len() {
        "under-replicated"
    } else {
        "ok"
    }
}
