//! The leader's side of ISR changes (Kafka's `AlterPartitionManager`, KIP-497): ISR
//! changes the partitions propose go to the active controller as AlterPartition, and
//! the answer goes back to the partition; a periodic check proposes to drop followers
//! that fell behind for longer than `replica.lag.time.max.ms`.

use crate::broker::Broker;
use crate::cluster::controller::{ControllerReply, ControllerRequest};
use crate::partition::Partition;
use crate::replica_manager::now_ms;
use moldau_metadata::cluster::IsrChange;
use moldau_partition::{Action, IsrProposal};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Carries out partition actions: ISR proposals are sent to the controller.
pub fn act(broker: &Arc<Broker>, actions: Vec<(Arc<Partition>, Action)>) {
    for (partition, action) in actions {
        if let Action::AlterIsr(proposal) = action {
            tokio::spawn(propose(broker.clone(), partition, proposal));
        }
    }
}

async fn propose(broker: Arc<Broker>, partition: Arc<Partition>, proposal: IsrProposal) {
    let epoch = broker.lifecycle.state().epoch;
    // Replicas the controller would refuse (fenced or shutting down, as this broker's
    // image says) are not proposed at all.
    let image = broker.image();
    let ineligible = proposal
        .new_isr
        .iter()
        .filter(|r| !partition.isr().contains(r))
        .any(|r| image.brokers.get(r).is_none_or(|b| !b.is_active()));
    if epoch < 0 || ineligible {
        partition.isr_change_done(&proposal, None);
        return;
    }
    tracing::info!(partition = %partition.tp, isr = ?proposal.new_isr, "proposing an ISR change");
    let request = ControllerRequest::AlterPartition {
        broker_id: broker.config.node_id,
        broker_epoch: epoch,
        changes: vec![IsrChange {
            topic_id: partition.topic_id,
            partition: partition.tp.partition,
            leader_epoch: proposal.leader_epoch,
            new_isr: proposal.new_isr.clone(),
            partition_epoch: proposal.partition_epoch,
        }],
    };
    let outcome = broker
        .controller
        .call(request, Duration::from_secs(10))
        .await;
    let committed = match outcome {
        Ok(ok) => {
            if let ControllerReply::AlterPartition(results) = ok.reply {
                match results.into_iter().next() {
                    Some(Ok(state)) => {
                        let counter = if state.isr.len() < partition.isr().len() {
                            &broker.metrics.isr_shrinks
                        } else {
                            &broker.metrics.isr_expands
                        };
                        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        broker
                            .controller
                            .wait_for_offset(ok.offset, Duration::from_secs(5))
                            .await;
                        Some((state.isr, state.partition_epoch))
                    }
                    Some(Err(e)) => {
                        tracing::info!(partition = %partition.tp, error = %e, "ISR change refused");
                        None
                    }
                    None => None,
                }
            } else {
                None
            }
        }
        Err(e) => {
            tracing::info!(partition = %partition.tp, error = %e, "ISR change not sent");
            None
        }
    };
    partition.isr_change_done(&proposal, committed);
}

/// Checks every led partition for lagging followers every half
/// `replica.lag.time.max.ms`, until `stop` flips.
pub async fn run_checks(broker: Arc<Broker>, mut stop: watch::Receiver<bool>) {
    let lag = broker.config.cluster.replica_lag_time_max_ms;
    let mut tick = tokio::time::interval(Duration::from_millis((lag as u64 / 2).max(10)));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let now = now_ms();
        let actions: Vec<(Arc<Partition>, Action)> = broker
            .replicas
            .all()
            .into_iter()
            .filter(|p| p.is_leader())
            .flat_map(|p| {
                p.tick(lag, now)
                    .into_iter()
                    .map(move |a| (p.clone(), a))
                    .collect::<Vec<_>>()
            })
            .collect();
        act(&broker, actions);
    }
}
