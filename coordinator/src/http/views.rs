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
        reason: n.reason.clone(),
        state_since_seconds: round3(now.saturating_duration_since(n.state_since).as_secs_f64()),
        heartbeat_age_seconds: n.heartbeat_age_secs(now).map(round3),
        phi: round3(n.phi(now)),
        incarnation: n.record.incarnation,
        admin_drain: n.record.admin_drain,
        leaving: n.record.leaving,
        liveness: n.liveness,
        readiness: n.readiness,
        checks: n.checks.clone(),
        metrics: n.metrics.clone(),
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
    pub status: &'static str,
    pub moves_frozen: bool,
}

pub fn cluster_view(c: &Cluster, now: Instant) -> ClusterView {
    let mut by_state: BTreeMap<&'static str, usize> =
        NodeState::ALL.iter().map(|s| (s.as_str(), 0)).collect();
    let cells = c.nodes.all();
    for cell in &cells {
        *by_state.entry(cell.lock().state.as_str()).or_default() += 1;
    }
    let serving = by_state["healthy"]
        + by_state["degraded"]
        + by_state["draining"]
        + by_state["drained"];
    ClusterView {
        cluster_id: c.meta.cluster_id.clone(),
        version: crate::metrics::VERSION,
        uptime_seconds: round3(now.saturating_duration_since(c.started).as_secs_f64()),
        nodes: cells.len(),
        nodes_by_state: by_state,
        // Until shards exist, the cluster is as healthy as its nodes.
        status: if cells.is_empty() || serving == 0 {
            "red"
        } else if serving < cells.len() {
            "yellow"
        } else {
            "green"
        },
        moves_frozen: c.metrics.moves_frozen.get() == 1,
    }
}
