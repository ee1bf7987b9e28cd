//! `moldau cluster info`: cluster id, the active controller, the metadata quorum and
//! every broker, live or fenced.

use super::output::{self, Output};
use super::Context;
use serde_json::json;

/// Cluster subcommands.
#[derive(clap::Subcommand)]
pub enum ClusterCommand {
    /// Cluster id, active controller, quorum and brokers (live or fenced).
    Info,
}

/// Runs a cluster subcommand.
pub async fn run(ctx: &Context, command: ClusterCommand) -> anyhow::Result<()> {
    let ClusterCommand::Info = command;
    let admin = ctx.admin().await?;
    let meta = admin.describe_cluster().await?;
    // A quorum that cannot answer (no active controller) is shown as such, not an error.
    let quorum = admin.describe_quorum().await.ok();
    match ctx.output {
        Output::Json => output::print_json(&json!({
            "cluster_id": meta.cluster_id,
            "controller_id": meta.controller_id,
            "quorum": quorum.as_ref().map(|q| json!({
                "leader_id": q.leader_id,
                "leader_epoch": q.leader_epoch,
                "high_watermark": q.high_watermark,
                "voters": q.voters.iter().map(|(id, leo)| json!({"node_id": id, "log_end_offset": leo})).collect::<Vec<_>>(),
            })),
            "brokers": meta.brokers.iter().map(|b| json!({
                "node_id": b.node_id, "host": b.host, "port": b.port, "rack": b.rack,
                "status": if b.fenced { "fenced" } else { "live" },
            })).collect::<Vec<_>>(),
        })),
        Output::Table => {
            println!("Cluster id: {}", meta.cluster_id.as_deref().unwrap_or("-"));
            println!(
                "Controller: {}",
                if meta.controller_id >= 0 {
                    meta.controller_id.to_string()
                } else {
                    "none (the quorum is electing one)".into()
                }
            );
            match &quorum {
                Some(q) => {
                    let voters: Vec<String> = q
                        .voters
                        .iter()
                        .map(|(id, leo)| {
                            let lag = if *leo >= 0 {
                                (q.high_watermark - leo).max(0).to_string()
                            } else {
                                "?".into()
                            };
                            format!("{id} (lag {lag})")
                        })
                        .collect();
                    println!(
                        "Quorum: leader {} epoch {}, committed offset {}, voters {}",
                        q.leader_id,
                        q.leader_epoch,
                        q.high_watermark,
                        voters.join(", ")
                    );
                }
                None => println!("Quorum: no active controller answered"),
            }
            let rows: Vec<Vec<String>> = meta
                .brokers
                .iter()
                .map(|b| {
                    vec![
                        b.node_id.to_string(),
                        b.host.clone(),
                        b.port.to_string(),
                        b.rack.clone().unwrap_or_else(|| "-".into()),
                        if b.fenced { "fenced" } else { "live" }.into(),
                    ]
                })
                .collect();
            print!(
                "{}",
                output::table(&["NODE", "HOST", "PORT", "RACK", "STATUS"], &rows)
            );
        }
    }
    Ok(())
}
