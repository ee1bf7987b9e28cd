//! The cluster's Prometheus metrics (part of `GET /metrics`), named after Kafka's
//! (`UnderReplicatedPartitions`, `OfflinePartitionsCount`, `ActiveControllerCount`,
//! `LeaderCount`, `IsrShrinksPerSec`/`IsrExpandsPerSec`, replica lag):
//!
//! - `moldau_controller_active` (gauge, 0/1): this node is the active controller.
//! - `moldau_controller_id` (gauge): the active controller's node id, -1 if none.
//! - `moldau_brokers{status="live"|"fenced"}` (gauge): registered brokers.
//! - `moldau_partitions_offline` (gauge): partitions of the cluster without a leader.
//! - `moldau_partitions_led` (gauge): partitions this broker leads.
//! - `moldau_partitions_under_replicated` (gauge): partitions this broker leads whose
//!   ISR is smaller than the replica set.
//! - `moldau_isr_shrinks_total`, `moldau_isr_expands_total` (counters): ISR changes this
//!   broker, as leader, got committed.
//! - `moldau_replica_lag{topic, partition, replica}` (gauge, records): on a leader, how
//!   far each follower's durable position is behind the leader's log end offset (-1 when
//!   the follower has not fetched in this leader epoch).

use crate::broker::Broker;
use crate::metrics::{family, sample, single};
use moldau_partition::Role;
use std::sync::atomic::Ordering::Relaxed;

/// Appends the cluster metrics of `broker` to `out`.
pub(crate) fn render(out: &mut String, broker: &Broker) {
    let image = broker.image();
    let controller = broker.active_controller();
    single(
        out,
        "moldau_controller_active",
        "gauge",
        "1 if this node is the active controller (the leader of the metadata quorum).",
        u8::from(controller == broker.config.node_id),
    );
    single(
        out,
        "moldau_controller_id",
        "gauge",
        "Node id of the active controller, -1 while the quorum elects one.",
        controller,
    );
    family(
        out,
        "moldau_brokers",
        "gauge",
        "Registered brokers by status.",
    );
    let fenced = image.brokers.values().filter(|b| b.fenced).count();
    sample(
        out,
        "moldau_brokers",
        &[("status", "live")],
        image.brokers.len() - fenced,
    );
    sample(out, "moldau_brokers", &[("status", "fenced")], fenced);
    let offline = image
        .topics
        .values()
        .flat_map(|t| t.partitions.values())
        .filter(|p| p.leader < 0)
        .count();
    single(
        out,
        "moldau_partitions_offline",
        "gauge",
        "Partitions of the cluster that have no leader.",
        offline,
    );
    let mut led = 0;
    let mut under = 0;
    let mut lags = Vec::new();
    for p in broker.replicas.all() {
        let leo = p.offsets().log_end_offset;
        p.with_replica(|r| {
            if let Role::Leader(l) = r.role() {
                led += 1;
                if l.isr.len() < l.replicas.len() {
                    under += 1;
                }
                for (id, f) in &l.followers {
                    let lag = if f.position < 0 {
                        -1
                    } else {
                        (leo - f.position).max(0)
                    };
                    lags.push((p.tp.topic.to_string(), p.tp.partition, *id, lag));
                }
            }
        });
    }
    single(
        out,
        "moldau_partitions_led",
        "gauge",
        "Partitions this broker leads.",
        led,
    );
    single(
        out,
        "moldau_partitions_under_replicated",
        "gauge",
        "Partitions this broker leads whose ISR is smaller than the replica set.",
        under,
    );
    single(
        out,
        "moldau_isr_shrinks_total",
        "counter",
        "ISR shrinks this broker, as leader, got committed.",
        broker.metrics.isr_shrinks.load(Relaxed),
    );
    single(
        out,
        "moldau_isr_expands_total",
        "counter",
        "ISR expansions this broker, as leader, got committed.",
        broker.metrics.isr_expands.load(Relaxed),
    );
    family(
        out,
        "moldau_replica_lag",
        "gauge",
        "On a leader: records between the log end offset and each follower's durable position (-1: not fetched yet in this leader epoch).",
    );
    lags.sort();
    for (topic, partition, replica, lag) in lags {
        sample(
            out,
            "moldau_replica_lag",
            &[
                ("topic", &topic),
                ("partition", &partition.to_string()),
                ("replica", &replica.to_string()),
            ],
            lag,
        );
    }
}
