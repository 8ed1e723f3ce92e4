//! The heartbeat an agent pushes to the coordinator (SPEC §2).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One signed report of a node's liveness, readiness, checks and metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    pub v: u32,
    pub node_id: String,
    /// The agent's start time in unix ms; never goes back for a node.
    pub incarnation: u64,
    /// Restarts at 1 per incarnation and strictly increases.
    pub seq: u64,
    pub sent_at_ms: u64,
    /// The agent's send interval, which seeds the coordinator's failure detector.
    pub interval_ms: u64,
    /// Where the storage node serves (`http://host:port`).
    pub node_addr: String,
    pub state: RunState,
    pub liveness: Status,
    pub readiness: Status,
    #[serde(default)]
    pub checks: Vec<CheckResult>,
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
    #[serde(default)]
    pub capacity: Capacity,
    /// The nonce of the coordinator process this agent last heard from (the
    /// [`COORDINATOR_NONCE_HEADER`] of its answers), echoed back. A coordinator
    /// takes a node's first heartbeat of its life only if it echoes its own nonce:
    /// a heartbeat recorded before a restart cannot, whatever its clock says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coordinator_nonce: Option<String>,
}

/// Response header carrying the coordinator process's nonce, on every heartbeat
/// answer (accepted or refused).
pub const COORDINATOR_NONCE_HEADER: &str = "torua-coordinator-nonce";

/// Longest nonce a heartbeat may echo.
pub const MAX_NONCE_CHARS: usize = 64;

/// What the agent says about its own lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    Running,
    /// Sent once on SIGTERM: the coordinator drains the node.
    Leaving,
}

/// Outcome of a check, and of liveness/readiness aggregated over checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Warn,
    Fail,
}

impl Status {
    /// Gauge value used by `*_check_status` metrics: 0 pass, 1 warn, 2 fail.
    pub fn as_gauge(self) -> f64 {
        match self {
            Status::Pass => 0.0,
            Status::Warn => 1.0,
            Status::Fail => 2.0,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Warn => "warn",
            Status::Fail => "fail",
        }
    }
}

/// Kinds of local checks an agent runs (SPEC §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckKind {
    Http,
    Tcp,
    Exec,
    Disk,
    Process,
}

impl CheckKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckKind::Http => "http",
            CheckKind::Tcp => "tcp",
            CheckKind::Exec => "exec",
            CheckKind::Disk => "disk",
            CheckKind::Process => "process",
        }
    }
}

/// The latest result of one named check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckResult {
    pub name: String,
    pub kind: CheckKind,
    pub status: Status,
    pub duration_ms: f64,
    #[serde(default)]
    pub message: String,
}

/// What the node offers to placement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Capacity {
    /// Relative share of shards this node should hold (rendezvous weight).
    #[serde(default = "default_weight")]
    pub weight: f64,
    /// Placement never puts more shards than this on the node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_shards: Option<u32>,
}

fn default_weight() -> f64 {
    1.0
}

impl Default for Capacity {
    fn default() -> Self {
        Capacity {
            weight: default_weight(),
            max_shards: None,
        }
    }
}
