//! `moldau cluster info`: cluster id, controller, brokers.

use super::output::{self, Output};
use super::Context;
use serde_json::json;

/// Cluster subcommands.
#[derive(clap::Subcommand)]
pub enum ClusterCommand {
    /// Cluster id, controller and brokers.
    Info,
}

/// Runs a cluster subcommand.
pub async fn run(ctx: &Context, command: ClusterCommand) -> anyhow::Result<()> {
    let ClusterCommand::Info = command;
    let meta = ctx.admin().await?.describe_cluster().await?;
    match ctx.output {
        Output::Json => output::print_json(&json!({
            "cluster_id": meta.cluster_id,
            "controller_id": meta.controller_id,
            "brokers": meta.brokers.iter().map(|b| json!({"node_id": b.node_id, "host": b.host, "port": b.port, "rack": b.rack})).collect::<Vec<_>>(),
        })),
        Output::Table => {
            println!("Cluster id: {}", meta.cluster_id.as_deref().unwrap_or("-"));
            println!("Controller: {}", meta.controller_id);
            let rows: Vec<Vec<String>> = meta
                .brokers
                .iter()
                .map(|b| {
                    vec![
                        b.node_id.to_string(),
                        b.host.clone(),
                        b.port.to_string(),
                        b.rack.clone().unwrap_or_else(|| "-".into()),
                    ]
                })
                .collect();
            print!(
                "{}",
                output::table(&["NODE", "HOST", "PORT", "RACK"], &rows)
            );
        }
    }
    Ok(())
}
