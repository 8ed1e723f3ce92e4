//! JSON views of nodes and the cluster for the API and the CLI.

use crate::cluster::Cluster;
use crate::registry::NodeCell;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Instant;
use torua_protocol::{Capacity, CheckResult, NodeState, Status};

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
}

pub fn node_view(cell: &NodeCell, now: Instant) -> NodeView {
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
        moves_frozen: c.mover.frozen(),
        moves_in_flight: c.metrics.moves_in_flight.get(),
    }
}
