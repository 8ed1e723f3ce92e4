//! Gray failures: what the coordinator sees of a node counts, not only what its
//! agent says (differential observability, Huang et al., HotOS 2017). Every call to
//! a node is recorded in [`crate::reach`]; this module applies the verdicts to node
//! health and probes nodes the coordinator has not called lately, so that a node cut
//! off from the coordinator alone (its agent still heartbeating) is found even when
//! no client touches it. As Elasticsearch's follower checks: 1 s apart, 3 failures.

use crate::cluster::Cluster;
use crate::reach::Change;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// How often quiet nodes are probed, and how long a probe may take.
pub const PROBE_EVERY: Duration = Duration::from_secs(1);
const PROBE_TIMEOUT: Duration = Duration::from_millis(800);

/// Applies reachability changes to node health until the channel closes.
pub async fn apply(cluster: Arc<Cluster>, mut changes: mpsc::UnboundedReceiver<Change>) {
    while let Some(change) = changes.recv().await {
        apply_one(&cluster, &change);
    }
}

fn apply_one(cluster: &Cluster, change: &Change) {
    let addr = match change {
        Change::Unreachable { addr, .. } | Change::Reachable { addr } => addr,
    };
    let now = Instant::now();
    for cell in cluster.nodes.all() {
        let mut n = cell.lock();
        if n.record.addr != *addr {
            continue;
        }
        match change {
            Change::Unreachable { error, .. } => {
                n.health.on_unreachable(error);
            }
            Change::Reachable { .. } => n.health.on_reachable(),
        }
        if let Some(old) = n.refresh_state(now) {
            cluster.state_changed(&cell, &n, old, now);
        }
    }
}

/// Probes, once per [`PROBE_EVERY`], every node that has answered no call of the
/// coordinator's for that long (the leader's job: followers do not judge nodes).
pub async fn probe(cluster: Arc<Cluster>, shutdown: impl std::future::Future<Output = ()>) {
    tokio::pin!(shutdown);
    let mut tick = tokio::time::interval(PROBE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tick.tick() => {}
        }
        if !cluster.leadership.is_leader() {
            continue;
        }
        let client = &cluster.shards.client;
        let now = Instant::now();
        let quiet: Vec<String> = cluster
            .nodes
            .all()
            .iter()
            .filter_map(|c| {
                let n = c.lock();
                // Only nodes heard from: an unknown node has nothing to contradict.
                let heard = n.last_heartbeat.is_some() && !n.record.addr.is_empty();
                heard.then(|| n.record.addr.clone())
            })
            .filter(|a| {
                client
                    .reach
                    .last_answer(a)
                    .is_none_or(|t| now.saturating_duration_since(t) >= PROBE_EVERY)
            })
            .collect();
        let probes = quiet.iter().map(|a| client.probe(a, PROBE_TIMEOUT));
        // Outcomes are recorded by the client; the answers themselves say nothing more.
        let _ = futures_util::future::join_all(probes).await;
    }
}
