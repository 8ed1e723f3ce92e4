//! JSON views of nodes and the cluster for the API and the CLI.

use crate::cluster::Cluster;
use crate::load::{node_total, Loads};
use crate::registry::NodeCell;
use crate::shards::balance::Load;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Instant;
use torua_protocol::{Capacity, CheckResult, NodeState, Status};

/// A load as the views show it: per second, smoothed (the median of the last 5
/// samples), with its one-number `score` (operations plus bytes at 16 KiB per
/// operation).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LoadView {
    pub reads: f64,
    pub writes: f64,
    pub read_bytes: f64,
    pub write_bytes: f64,
    pub score: f64,
}

impl LoadView {
    pub fn of(l: &Load) -> LoadView {
        LoadView {
            reads: round3(l.reads),
            writes: round3(l.writes),
            read_bytes: round3(l.read_bytes),
            write_bytes: round3(l.write_bytes),
            score: round3(l.score()),
        }
    }
}

#[derive(Serialize)]
pub struct NodeView {
    pub id: String,
    pub addr: String,
    pub state: NodeState,
    /// Torua-compatible coarse status.
    pub status: &'static str,
    pub reason: String,
    pub state_since_seconds: f64,
    pub heartbeat_age_seconds: Option<f64>,
    pub phi: f64,
    pub incarnation: u64,
    pub admin_drain: bool,
    pub leaving: bool,
    pub liveness: Option<Status>,
    pub readiness: Option<Status>,
    pub checks: Vec<CheckResult>,
    pub metrics: BTreeMap<String, f64>,
    pub capacity: Capacity,
    pub shards: usize,
    /// What the node serves: the sum over its shards. Null while it has not been
    /// sampled (load sampling off, a follower's own view, not serving); zeros
    /// until a second sample gives rates.
    pub load: Option<LoadView>,
}

/// A node's view, its load from `loads` (`cluster.load.snapshot()`).
pub fn node_view_with_load(cell: &NodeCell, loads: &Loads, now: Instant) -> NodeView {
    let load = loads
        .get(&*cell.id)
        .map(|shards| LoadView::of(&node_total(shards)));
    let n = cell.lock();
    NodeView {
        id: cell.id.to_string(),
        addr: n.record.addr.clone(),
        state: n.state,
        status: n.state.torua_status(),
        reason: n.reason().into_owned(),
        state_since_seconds: round3(now.saturating_duration_since(n.state_since).as_secs_f64()),
        heartbeat_age_seconds: n.heartbeat_age_secs(now).map(round3),
        phi: round3(n.phi(now)),
        incarnation: n.record.incarnation,
        admin_drain: n.record.admin_drain,
        leaving: n.record.leaving,
        liveness: n.liveness,
        readiness: n.readiness,
        checks: n.checks.to_vec(),
        metrics: n.metrics.to_map(),
        capacity: n.record.capacity.clone(),
        shards: n.shards_held,
        load,
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[derive(Serialize)]
pub struct ClusterView {
    pub cluster_id: String,
    pub version: &'static str,
    pub uptime_seconds: f64,
    pub nodes: usize,
    pub nodes_by_state: BTreeMap<&'static str, usize>,
    pub shards: u32,
    pub replication_factor: usize,
    pub shards_under_replicated: usize,
    pub shards_unavailable: usize,
    /// green: every shard fully replicated; yellow: all available, some
    /// under-replicated; red: some unavailable.
    pub status: &'static str,
    pub moves_frozen: bool,
    pub moves_in_flight: i64,
    /// The coordinator that answered.
    pub coordinator: CoordinatorView,
    /// The leader as the answering coordinator knows it; null while unknown.
    pub leader: Option<crate::leader::Peer>,
}

#[derive(Serialize)]
pub struct CoordinatorView {
    pub id: String,
    pub role: crate::leader::Role,
    pub url: String,
}

pub fn coordinator_view(c: &Cluster) -> CoordinatorView {
    CoordinatorView {
        id: c.leadership.me.id.clone(),
        role: c.leadership.role(),
        url: c.leadership.me.url.clone(),
    }
}

pub fn cluster_view(c: &Cluster, now: Instant) -> ClusterView {
    let mut by_state: BTreeMap<&'static str, usize> =
        NodeState::ALL.iter().map(|s| (s.as_str(), 0)).collect();
    let cells = c.nodes.all();
    for cell in &cells {
        *by_state.entry(cell.lock().state.as_str()).or_default() += 1;
    }
    let stats = c.shards.stats(|n| c.nodes.is_down(n));
    ClusterView {
        cluster_id: c.meta.cluster_id.clone(),
        version: crate::metrics::VERSION,
        uptime_seconds: round3(now.saturating_duration_since(c.started).as_secs_f64()),
        nodes: cells.len(),
        nodes_by_state: by_state,
        shards: c.meta.shards,
        replication_factor: c.shards.rf,
        shards_under_replicated: stats.under_replicated,
        shards_unavailable: stats.unavailable,
        status: crate::metrics::cluster_status(&stats).0,
        moves_frozen: c.moves.frozen(),
        moves_in_flight: c.metrics.moves_in_flight.get(),
        coordinator: coordinator_view(c),
        leader: c.leadership.leader(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cell(id: &str) -> NodeCell {
        NodeCell::for_tests(id)
    }

    #[test]
    fn a_node_shows_the_sum_of_its_shards_load_or_null_before_it_is_measured() {
        let l = |reads, writes, read_bytes, write_bytes| Load {
            reads,
            writes,
            read_bytes,
            write_bytes,
        };
        let loads: Loads = [(
            "n1".to_string(),
            [
                (1, l(100.0, 10.0, 8192.0, 1024.0)),
                (2, l(0.5, 0.25, 8192.0, 0.0)),
            ]
            .into(),
        )]
        .into();
        let now = Instant::now();
        let v = serde_json::to_value(node_view_with_load(&cell("n1"), &loads, now)).unwrap();
        // 110.75 ops + 17 KiB at 16 KiB per op.
        assert_eq!(
            v["load"],
            json!({"reads": 100.5, "writes": 10.25, "read_bytes": 16384.0,
                   "write_bytes": 1024.0, "score": 111.813})
        );
        // The other fields are unchanged.
        for key in [
            "id", "addr", "state", "status", "reason", "phi", "shards", "capacity",
        ] {
            assert!(v.get(key).is_some(), "{key} missing in {v}");
        }
        assert_eq!(v["id"], "n1");
        let unmeasured = node_view_with_load(&cell("n2"), &loads, now);
        assert_eq!(
            serde_json::to_value(unmeasured).unwrap()["load"],
            json!(null)
        );
    }
}
