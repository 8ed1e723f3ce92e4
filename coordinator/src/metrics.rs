//! Every metric the coordinator exports, named in one place (SPEC §7).
//!
//! Counters and histograms touched on the heartbeat path are plain atomics resolved
//! once at start-up. Per-node gauges (state, age, phi, checks, pushed metrics) are not
//! stored at all: they are rendered from the registry at scrape time, so a heartbeat
//! pays nothing for them and a removed node's series disappear with it.

use crate::reconcile::ShardStats;
use crate::registry::Registry;
use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    TextEncoder,
};
use std::collections::HashMap;
use std::fmt::Write;
use std::time::Instant;
use torua_protocol::{ErrorCode, NodeState};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

pub struct Metrics {
    registry: prometheus::Registry,
    pub heartbeats_ok: IntCounter,
    rejected: HashMap<ErrorCode, IntCounter>,
    pub heartbeat_handle_seconds: Histogram,
    pub failure_detection_seconds: Histogram,
    state_changes: IntCounterVec,
    pub moves_frozen: IntGauge,
    pub moves_in_flight: IntGauge,
    moves: IntCounterVec,
    move_seconds: Histogram,
    /// Error answers of the HTTP API, by route class and error code.
    pub http_errors: IntCounterVec,
    /// Connections the server closed on its own, by reason.
    pub connections_closed: IntCounterVec,
    pub connections_open: IntGauge,
    /// SIGHUP re-reads of the TLS certificate, by result.
    pub tls_reloads: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = prometheus::Registry::new();
        let received = IntCounterVec::new(
            Opts::new(
                "torua_heartbeats_received_total",
                "Heartbeats received, by result (ok or the rejection code).",
            ),
            &["result"],
        )
        .unwrap();
        let heartbeats_ok = received.with_label_values(&["ok"]);
        let rejected = ErrorCode::HEARTBEAT_REJECTIONS
            .iter()
            .map(|c| (*c, received.with_label_values(&[c.as_str()])))
            .collect();
        let heartbeat_handle_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "torua_heartbeat_handle_seconds",
                "Time to verify and apply one heartbeat, body read to response.",
            )
            .buckets(vec![
                0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                0.025, 0.1,
            ]),
        )
        .unwrap();
        let failure_detection_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "torua_failure_detection_seconds",
                "From a node's last good heartbeat to the coordinator marking it unhealthy.",
            )
            .buckets(vec![0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0]),
        )
        .unwrap();
        let state_changes = IntCounterVec::new(
            Opts::new(
                "torua_node_state_changes_total",
                "Node state transitions, by the state entered.",
            ),
            &["state"],
        )
        .unwrap();
        for s in NodeState::ALL {
            state_changes.with_label_values(&[s.as_str()]);
        }
        let moves_frozen = IntGauge::new(
            "torua_moves_frozen",
            "1 while the storm guard freezes shard moves.",
        )
        .unwrap();
        let moves_in_flight = IntGauge::new(
            "torua_moves_in_flight",
            "Shard copies currently in progress.",
        )
        .unwrap();
        let moves = IntCounterVec::new(
            Opts::new(
                "torua_shard_moves_total",
                "Shard moves by reason (failover, rereplicate, rebalance, drain, manual) and result.",
            ),
            &["reason", "result"],
        )
        .unwrap();
        for r in crate::reconcile::REASONS {
            for res in ["ok", "failed"] {
                moves.with_label_values(&[r, res]);
            }
        }
        let move_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "torua_shard_move_duration_seconds",
                "Duration of shard copies, from start to in sync.",
            )
            .buckets(vec![
                0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
            ]),
        )
        .unwrap();
        let http_errors = IntCounterVec::new(
            Opts::new(
                "torua_http_errors_total",
                "Error answers of the HTTP API, by route (heartbeat, data, admin, api) and error code.",
            ),
            &["route", "code"],
        )
        .unwrap();
        let connections_closed = IntCounterVec::new(
            Opts::new(
                "torua_http_connections_closed_total",
                "Connections the server closed itself: header_timeout (headers not received in time, \
                 idle keep-alive included), evicted (idle, to make room at max_connections), \
                 tls_handshake (failed or too slow), error.",
            ),
            &["reason"],
        )
        .unwrap();
        for r in ["header_timeout", "evicted", "tls_handshake", "error"] {
            connections_closed.with_label_values(&[r]);
        }
        let connections_open =
            IntGauge::new("torua_http_connections_open", "Open HTTP connections.").unwrap();
        let tls_reloads = IntCounterVec::new(
            Opts::new(
                "torua_tls_certificate_reloads_total",
                "Re-reads of the listener's TLS certificate and key on SIGHUP, by result \
                 (ok, error: the previous certificate stays in force).",
            ),
            &["result"],
        )
        .unwrap();
        for r in ["ok", "error"] {
            tls_reloads.with_label_values(&[r]);
        }
        let build_info = IntGaugeVec::new(
            Opts::new("torua_build_info", "Build of this coordinator (always 1)."),
            &["version"],
        )
        .unwrap();
        build_info.with_label_values(&[VERSION]).set(1);

        registry.register(Box::new(received)).unwrap();
        registry
            .register(Box::new(heartbeat_handle_seconds.clone()))
            .unwrap();
        registry
            .register(Box::new(failure_detection_seconds.clone()))
            .unwrap();
        registry.register(Box::new(state_changes.clone())).unwrap();
        registry.register(Box::new(moves_frozen.clone())).unwrap();
        registry.register(Box::new(build_info)).unwrap();
        registry
            .register(Box::new(moves_in_flight.clone()))
            .unwrap();
        registry.register(Box::new(moves.clone())).unwrap();
        registry.register(Box::new(move_seconds.clone())).unwrap();
        registry.register(Box::new(http_errors.clone())).unwrap();
        registry
            .register(Box::new(connections_closed.clone()))
            .unwrap();
        registry
            .register(Box::new(connections_open.clone()))
            .unwrap();
        registry.register(Box::new(tls_reloads.clone())).unwrap();
        registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .unwrap();
        Metrics {
            registry,
            heartbeats_ok,
            rejected,
            heartbeat_handle_seconds,
            failure_detection_seconds,
            state_changes,
            moves_frozen,
            moves_in_flight,
            moves,
            move_seconds,
            http_errors,
            connections_closed,
            connections_open,
            tls_reloads,
        }
    }

    /// Counts a finished move; copies also record their duration.
    pub fn moved(&self, reason: &str, ok: bool, seconds: f64) {
        let result = if ok { "ok" } else { "failed" };
        self.moves.with_label_values(&[reason, result]).inc();
        if reason != "failover" {
            self.move_seconds.observe(seconds);
        }
    }

    pub fn heartbeat_rejected(&self, code: ErrorCode) {
        if let Some(c) = self.rejected.get(&code) {
            c.inc();
        }
    }

    pub fn state_entered(&self, state: NodeState) {
        self.state_changes
            .with_label_values(&[state.as_str()])
            .inc();
    }

    /// The whole exposition: registered metrics, then per-node and shard families.
    pub fn render(&self, nodes: &Registry, shards: &ShardStats, now: Instant) -> String {
        let mut out = Vec::with_capacity(16 * 1024);
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding into a Vec cannot fail");
        let mut out = String::from_utf8(out).expect("exposition is UTF-8");
        render_nodes(&mut out, nodes, now);
        render_shards(&mut out, shards);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn header(out: &mut String, name: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
}

/// Label values are ids from the SPEC §2 charset, but escape anyway: a bug elsewhere
/// must not corrupt the exposition.
fn esc(s: &str) -> std::borrow::Cow<'_, str> {
    if s.bytes().any(|b| matches!(b, b'\\' | b'"' | b'\n')) {
        s.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n")
            .into()
    } else {
        s.into()
    }
}

/// One walk over the nodes, one short lock each, nothing cloned: each family is
/// written into its own buffer (the format wants a family's series together) and
/// the buffers are joined at the end.
fn render_nodes(out: &mut String, nodes: &Registry, now: Instant) {
    let cells = nodes.all();
    let mut by_state = [0usize; NodeState::ALL.len()];
    let mut state = String::with_capacity(cells.len() * 6 * 64);
    let mut age = String::with_capacity(cells.len() * 56);
    let mut phi = String::with_capacity(cells.len() * 40);
    let mut checks = String::with_capacity(cells.len() * 64);
    let mut pushed = String::with_capacity(cells.len() * 2 * 72);
    for cell in &cells {
        let id = esc(&cell.id);
        let n = cell.lock();
        for (i, s) in NodeState::ALL.iter().enumerate() {
            let v = u8::from(n.state == *s);
            by_state[i] += usize::from(v);
            let _ = writeln!(
                state,
                "torua_node_state{{node=\"{id}\",state=\"{}\"}} {v}",
                s.as_str()
            );
        }
        if let Some(a) = n.heartbeat_age_secs(now) {
            let _ = writeln!(
                age,
                "torua_node_heartbeat_age_seconds{{node=\"{id}\"}} {a:.3}"
            );
        }
        let _ = writeln!(phi, "torua_node_phi{{node=\"{id}\"}} {:.3}", n.phi(now));
        for c in n.checks.iter() {
            let _ = writeln!(
                checks,
                "torua_node_check_status{{node=\"{id}\",check=\"{}\"}} {}",
                esc(&c.name),
                c.status.as_gauge()
            );
        }
        for (name, v) in n.metrics.iter() {
            let _ = writeln!(
                pushed,
                "torua_node_metric{{node=\"{id}\",name=\"{}\"}} {v}",
                esc(name)
            );
        }
    }

    header(out, "torua_nodes", "Nodes by state.");
    for (s, count) in NodeState::ALL.iter().zip(by_state) {
        let _ = writeln!(out, "torua_nodes{{state=\"{}\"}} {count}", s.as_str());
    }
    let families = [
        (
            "torua_node_state",
            "1 for the node's current state, 0 for the others.",
            state,
        ),
        (
            "torua_node_heartbeat_age_seconds",
            "Seconds since the node's last accepted heartbeat.",
            age,
        ),
        (
            "torua_node_phi",
            "Phi accrual suspicion level of the node.",
            phi,
        ),
        (
            "torua_node_check_status",
            "Agent check status per node: 0 pass, 1 warn, 2 fail.",
            checks,
        ),
        (
            "torua_node_metric",
            "Metrics pushed by the node's agent, by name.",
            pushed,
        ),
    ];
    out.reserve(families.iter().map(|f| f.2.len() + 128).sum());
    for (name, help, body) in families {
        header(out, name, help);
        out.push_str(&body);
    }
}

/// 0 green (all shards fully replicated), 1 yellow (some under-replicated), 2 red
/// (some unavailable).
pub fn cluster_status(s: &ShardStats) -> (&'static str, u8) {
    if s.unavailable > 0 {
        ("red", 2)
    } else if s.under_replicated > 0 {
        ("yellow", 1)
    } else {
        ("green", 0)
    }
}

fn render_shards(out: &mut String, s: &ShardStats) {
    header(out, "torua_shards", "Shards held per node and role.");
    let mut nodes: Vec<_> = s.per_node.iter().collect();
    nodes.sort();
    for (node, (p, r)) in nodes {
        let _ = writeln!(
            out,
            "torua_shards{{node=\"{}\",role=\"primary\"}} {p}",
            esc(node)
        );
        let _ = writeln!(
            out,
            "torua_shards{{node=\"{}\",role=\"replica\"}} {r}",
            esc(node)
        );
    }
    header(
        out,
        "torua_shards_under_replicated",
        "Shards with fewer in-sync copies than the replication factor.",
    );
    let _ = writeln!(out, "torua_shards_under_replicated {}", s.under_replicated);
    header(
        out,
        "torua_shards_unavailable",
        "Shards with no in-sync copy.",
    );
    let _ = writeln!(out, "torua_shards_unavailable {}", s.unavailable);
    header(
        out,
        "torua_cluster_status",
        "Cluster status: 0 green, 1 yellow, 2 red.",
    );
    let _ = writeln!(out, "torua_cluster_status {}", cluster_status(s).1);
}
