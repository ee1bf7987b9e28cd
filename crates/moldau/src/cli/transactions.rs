//! `moldau transactions list|describe`, after `kafka-transactions.sh` (KIP-664).

use super::output::{self, Output};
use super::Context;
use serde_json::json;

/// Transaction subcommands.
#[derive(clap::Subcommand)]
pub enum TransactionsCommand {
    /// List transactional ids and their states.
    List,
    /// State, producer id/epoch and open partitions of a transactional id.
    Describe {
        /// `transactional.id`.
        transactional_id: String,
    },
}

/// Runs a transactions subcommand.
pub async fn run(ctx: &Context, command: TransactionsCommand) -> anyhow::Result<()> {
    let admin = ctx.admin().await?;
    match command {
        TransactionsCommand::List => {
            let txns = admin.list_transactions().await?;
            match ctx.output {
                Output::Json => output::print_json(&json!(txns
                    .iter()
                    .map(|t| json!({"transactional_id": t.transactional_id, "producer_id": t.producer_id, "state": t.state}))
                    .collect::<Vec<_>>())),
                Output::Table => {
                    let rows: Vec<Vec<String>> = txns
                        .iter()
                        .map(|t| vec![t.transactional_id.clone(), t.producer_id.to_string(), t.state.clone()])
                        .collect();
                    print!("{}", output::table(&["TRANSACTIONAL-ID", "PRODUCER-ID", "STATE"], &rows));
                }
            }
        }
        TransactionsCommand::Describe { transactional_id } => {
            let t = admin.describe_transaction(&transactional_id).await?;
            let partitions: Vec<String> = t
                .partitions
                .iter()
                .flat_map(|(topic, ps)| ps.iter().map(move |p| format!("{topic}-{p}")))
                .collect();
            match ctx.output {
                Output::Json => output::print_json(&json!({
                    "transactional_id": t.transactional_id,
                    "state": t.state,
                    "producer_id": t.producer_id,
                    "producer_epoch": t.producer_epoch,
                    "timeout_ms": t.timeout_ms,
                    "start_time_ms": t.start_time_ms,
                    "partitions": partitions,
                })),
                Output::Table => {
                    let row = vec![
                        t.transactional_id.clone(),
                        t.state.clone(),
                        t.producer_id.to_string(),
                        t.producer_epoch.to_string(),
                        t.timeout_ms.to_string(),
                        t.start_time_ms.to_string(),
                        partitions.join(","),
                    ];
                    print!(
                        "{}",
                        output::table(
                            &[
                                "TRANSACTIONAL-ID",
                                "STATE",
                                "PRODUCER-ID",
                                "EPOCH",
                                "TIMEOUT-MS",
                                "START-TIME-MS",
                                "PARTITIONS"
                            ],
                            &[row]
                        )
                    );
                }
            }
        }
    }
    Ok(())
}
