//! Load sampling: every `load_balance_interval / 5`, the leader asks each serving
//! node that holds shards for its shards' load counters (`GET /v1/shards`, the
//! audit's call), feeds them to [`crate::load::LoadState`], and publishes the
//! smoothed view that `/v1/nodes`, `/v1/shards`, `/metrics` and the load balancer
//! read. Why a pull and not the heartbeat: the counters live in the node, not the
//! agent, and a sample every few seconds costs one small call per holder, against
//! one more field to sign, parse and store on every heartbeat of every node.
//!
//! A sweep asks at most [`CONCURRENCY`] nodes at a time and waits at most
//! [`TIMEOUT`] for each; a node that does not answer keeps its last rates and is
//! asked again next sweep. Serving nodes that hold no shard in the map get no
//! client calls: they are recorded as idle without a call. Nodes that stopped
//! serving or were removed are forgotten (their load is unknown, not zero).

use crate::cluster::Cluster;
use crate::load::Counters;
use crate::nodeclient::To;
use futures_util::StreamExt;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use torua_protocol::node_api::ShardInfo;
use torua_protocol::NodeState;

/// Samples per `load_balance_interval` (the balancer then sees the median of 5).
pub const SAMPLES_PER_INTERVAL: u32 = 5;
/// Nodes asked at once.
pub const CONCURRENCY: usize = 16;
/// Longest wait for one node's answer (the gray prober's order of magnitude: a node
/// that cannot list its shards in this time is failing its probes as well).
pub const TIMEOUT: Duration = Duration::from_secs(1);

/// What the sweep knows of one registered node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub id: String,
    pub addr: String,
    /// Healthy or degraded: it serves client calls.
    pub serving: bool,
}

/// What one sweep does, decided from the registry, the map and the book.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Sweep {
    /// Serving holders to ask: (id, addr).
    pub ask: Vec<(String, String)>,
    /// Serving nodes the map gives no shard: no client load, no call needed.
    pub idle: Vec<String>,
    /// Nodes in the book that are gone or stopped serving.
    pub forget: Vec<String>,
}

/// Decides a sweep. `holders` are the nodes of every shard's write set; `known`
/// the nodes the load book has series for.
pub fn plan<'a>(
    nodes: &[Seen],
    holders: &HashSet<&str>,
    known: impl IntoIterator<Item = &'a str>,
) -> Sweep {
    let mut s = Sweep::default();
    for n in nodes {
        if !n.serving || n.addr.is_empty() {
            s.forget.push(n.id.clone());
        } else if holders.contains(n.id.as_str()) {
            s.ask.push((n.id.clone(), n.addr.clone()));
        } else {
            s.idle.push(n.id.clone());
        }
    }
    let registered: HashSet<&str> = nodes.iter().map(|n| n.id.as_str()).collect();
    s.forget.extend(
        known
            .into_iter()
            .filter(|k| !registered.contains(k))
            .map(str::to_string),
    );
    s
}

/// A node's answer as the book's input.
pub fn counters(shards: &[ShardInfo]) -> Vec<(u32, Counters)> {
    shards
        .iter()
        .map(|s| {
            (
                s.id,
                Counters {
                    reads: s.reads,
                    writes: s.writes,
                    read_bytes: s.read_bytes,
                    write_bytes: s.write_bytes,
                },
            )
        })
        .collect()
}

/// Samples every `load_balance_interval / 5` while this coordinator leads, until
/// `shutdown`. A coordinator that stops leading drops what it measured: its figures
/// would be stale, and the new leader measures afresh.
pub async fn run(cluster: Arc<Cluster>, shutdown: impl std::future::Future<Output = ()>) {
    tokio::pin!(shutdown);
    let every = cluster.cfg.load_balance_interval / SAMPLES_PER_INTERVAL;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut measured = false;
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tick.tick() => {}
        }
        if !cluster.leadership.is_leader() {
            if measured {
                for node in cluster.load.snapshot().keys() {
                    cluster.load.forget(node);
                }
                publish(&cluster);
                measured = false;
            }
            continue;
        }
        tokio::select! {
            _ = &mut shutdown => return,
            _ = sweep(&cluster) => measured = true,
        }
    }
}

/// One sweep over the nodes, then a publish.
pub async fn sweep(cluster: &Cluster) {
    let records = cluster.shards.snapshot();
    let holders: HashSet<&str> = records
        .iter()
        .flat_map(|r| r.write_set().map(|(n, _)| n))
        .collect();
    let nodes: Vec<Seen> = cluster
        .nodes
        .all()
        .iter()
        .map(|cell| {
            let n = cell.lock();
            Seen {
                id: cell.id.to_string(),
                addr: n.record.addr.clone(),
                serving: matches!(n.health.base, NodeState::Healthy | NodeState::Degraded),
            }
        })
        .collect();
    let known = cluster.load.snapshot();
    let sweep = plan(&nodes, &holders, known.keys().map(String::as_str));
    for node in &sweep.forget {
        cluster.load.forget(node);
    }
    let now = Instant::now();
    for node in &sweep.idle {
        cluster.load.observe(node, now, &[]);
    }
    let client = &cluster.shards.client;
    futures_util::stream::iter(&sweep.ask)
        .for_each_concurrent(CONCURRENCY, |(node, addr)| async move {
            let sent = Instant::now();
            let to = To { node, addr };
            match client.shard_infos(to, TIMEOUT).await {
                // The counters were read somewhere between sending and the answer.
                Ok(shards) => {
                    let at = sent + sent.elapsed() / 2;
                    cluster.load.observe(node, at, &counters(&shards));
                }
                Err(e) => tracing::debug!("load: asking {node} for its counters failed: {e}"),
            }
        })
        .await;
    publish(cluster);
}

fn publish(cluster: &Cluster) {
    cluster.load.publish();
    cluster.metrics.set_loads(cluster.load.snapshot());
}

#[cfg(test)]
mod tests {
    use super::*;
    use torua_protocol::node_api::Role;

    fn seen(id: &str, addr: &str, serving: bool) -> Seen {
        Seen {
            id: id.into(),
            addr: addr.into(),
            serving,
        }
    }

    #[test]
    fn holders_are_asked_idle_nodes_recorded_and_gone_ones_forgotten() {
        let nodes = [
            seen("n1", "http://n1", true),
            seen("n2", "http://n2", true),
            seen("n3", "http://n3", false),
            seen("n4", "", true),
            seen("n5", "http://n5", true),
        ];
        let holders: HashSet<&str> = ["n1", "n3", "n4"].into_iter().collect();
        let got = plan(&nodes, &holders, ["n1", "n3", "gone"]);
        assert_eq!(
            got,
            Sweep {
                ask: vec![("n1".into(), "http://n1".into())],
                idle: vec!["n2".into(), "n5".into()],
                forget: vec!["n3".into(), "n4".into(), "gone".into()],
            }
        );
        assert_eq!(plan(&[], &holders, []), Sweep::default());
    }

    #[test]
    fn shard_infos_become_counters() {
        let info = ShardInfo {
            id: 7,
            epoch: 3,
            role: Role::Primary,
            keys: 1,
            bytes: 2,
            reads: 10,
            writes: 4,
            read_bytes: 1000,
            write_bytes: 40,
        };
        assert_eq!(
            counters(&[info]),
            vec![(
                7,
                Counters {
                    reads: 10,
                    writes: 4,
                    read_bytes: 1000,
                    write_bytes: 40
                }
            )]
        );
    }
}
