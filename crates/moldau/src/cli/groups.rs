//! `moldau groups list|describe`, after `kafka-consumer-groups.sh`: members,
//! assignments, and lag per partition.

use super::output::{self, Output};
use super::Context;
use serde_json::json;

/// Group subcommands.
#[derive(clap::Subcommand)]
pub enum GroupsCommand {
    /// List groups.
    List,
    /// Members, assignments, committed offsets and lag of a group.
    Describe {
        /// Group id.
        group: String,
    },
}

/// Runs a groups subcommand.
pub async fn run(ctx: &Context, command: GroupsCommand) -> anyhow::Result<()> {
    let admin = ctx.admin().await?;
    match command {
        GroupsCommand::List => {
            let groups = admin.list_groups().await?;
            match ctx.output {
                Output::Json => output::print_json(&json!(groups
                    .iter()
                    .map(|g| json!({"group_id": g.group_id, "state": g.state, "protocol_type": g.protocol_type}))
                    .collect::<Vec<_>>())),
                Output::Table => {
                    let rows: Vec<Vec<String>> = groups
                        .iter()
                        .map(|g| vec![g.group_id.clone(), g.state.clone(), g.protocol_type.clone()])
                        .collect();
                    print!("{}", output::table(&["GROUP", "STATE", "PROTOCOL-TYPE"], &rows));
                }
            }
        }
        GroupsCommand::Describe { group } => {
            let (g, lag) = admin.describe_group_lag(&group).await?;
            let owner = |topic: &str, partition: i32| {
                g.members.iter().find(|m| {
                    m.assignment
                        .iter()
                        .any(|(t, ps)| t == topic && ps.contains(&partition))
                })
            };
            match ctx.output {
                Output::Json => output::print_json(&json!({
                    "group_id": g.group_id,
                    "state": g.state,
                    "protocol_type": g.protocol_type,
                    "protocol": g.protocol,
                    "members": g.members.iter().map(|m| json!({
                        "member_id": m.member_id, "client_id": m.client_id, "client_host": m.client_host,
                        "assignments": m.assignment.iter().map(|(t, ps)| json!({"topic": t, "partitions": ps})).collect::<Vec<_>>(),
                    })).collect::<Vec<_>>(),
                    "offsets": lag.iter().map(|l| json!({
                        "topic": l.topic, "partition": l.partition, "committed_offset": l.committed_offset,
                        "high_watermark": l.high_watermark, "lag": l.lag,
                        "member_id": owner(&l.topic, l.partition).map(|m| m.member_id.clone()),
                    })).collect::<Vec<_>>(),
                    "total_lag": lag.iter().map(|l| l.lag).sum::<i64>(),
                })),
                Output::Table => {
                    println!(
                        "Group: {}  State: {}  Protocol: {} {}  Members: {}",
                        g.group_id,
                        g.state,
                        g.protocol_type,
                        g.protocol,
                        g.members.len()
                    );
                    println!();
                    let rows: Vec<Vec<String>> = lag
                        .iter()
                        .map(|l| {
                            let m = owner(&l.topic, l.partition);
                            vec![
                                l.topic.clone(),
                                l.partition.to_string(),
                                l.committed_offset.to_string(),
                                l.high_watermark.to_string(),
                                l.lag.to_string(),
                                m.map_or("-".into(), |m| m.member_id.clone()),
                                m.map_or("-".into(), |m| m.client_host.clone()),
                                m.map_or("-".into(), |m| m.client_id.clone()),
                            ]
                        })
                        .collect();
                    print!(
                        "{}",
                        output::table(
                            &[
                                "TOPIC",
                                "PARTITION",
                                "CURRENT-OFFSET",
                                "LOG-END-OFFSET",
                                "LAG",
                                "CONSUMER-ID",
                                "HOST",
                                "CLIENT-ID"
                            ],
                            &rows
                        )
                    );
                    if !g.members.is_empty() {
                        println!();
                        let rows: Vec<Vec<String>> = g
                            .members
                            .iter()
                            .map(|m| {
                                let assigned = m
                                    .assignment
                                    .iter()
                                    .map(|(t, ps)| format!("{t}({})", output::ids(ps)))
                                    .collect::<Vec<_>>()
                                    .join(" ");
                                vec![
                                    m.member_id.clone(),
                                    m.client_id.clone(),
                                    m.client_host.clone(),
                                    assigned,
                                ]
                            })
                            .collect();
                        print!(
                            "{}",
                            output::table(&["MEMBER-ID", "CLIENT-ID", "HOST", "ASSIGNMENT"], &rows)
                        );
                    }
                }
            }
        }
    }
    Ok(())
}
