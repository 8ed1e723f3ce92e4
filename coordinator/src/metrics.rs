//! Every metric the coordinator exports, named in one place (SPEC §7).
//!
//! Counters and histograms touched on the heartbeat path are plain atomics resolved
//! once at start-up. Per-node gauges (state, age, phi, checks, pushed metrics) are not
//! stored at all: they are rendered from the registry at scrape time, so a heartbeat
//! pays nothing for them and a removed node's series disappear with it.

use crate::load::{node_total, shard_totals, Loads};
use crate::registry::Registry;
use crate::shards::balance::Load;
use crate::shards::change::ChangeKind;
use crate::shards::moves::MoveReason;
use crate::shards::stats::ShardStats;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, TextEncoder,
};
use std::collections::HashMap;
use std::fmt::Write;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use torua_protocol::{ErrorCode, NodeState};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

pub struct Metrics {
    registry: prometheus::Registry,
    pub heartbeats_ok: IntCounter,
    /// First heartbeats asked to echo this process's nonce (`ingest.rs`).
    pub heartbeats_challenged: IntCounter,
    rejected: HashMap<ErrorCode, IntCounter>,
    pub heartbeat_handle_seconds: Histogram,
    pub failure_detection_seconds: Histogram,
    state_changes: IntCounterVec,
    pub moves_frozen: IntGauge,
    /// Shards hotter than any node should carry (`shards/load_round.rs`).
    pub shards_too_hot: IntGauge,
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
    /// Client writes written again because a holder had a newer version of the key.
    pub write_superseded: IntCounter,
    /// Reads sent to a second holder because the first was slow, by outcome.
    pub hedged_reads: IntCounterVec,
    /// Shard map changes that could not be committed, by kind.
    commit_failures: HashMap<ChangeKind, IntCounter>,
    /// Leadership and etcd (coordinator HA).
    pub ha: HaMetrics,
    /// The last published load view (`load_sampler.rs` sets it after each sweep),
    /// rendered at scrape time like the other per-node series.
    loads: Mutex<Arc<Loads>>,
}

/// Shards with a `torua_shard_load` series: the hottest this many, by score.
pub const TOP_SHARDS: usize = 10;

/// Leadership and etcd metrics; cloned into the etcd store and the election task.
#[derive(Clone)]
pub struct HaMetrics {
    pub is_leader: IntGauge,
    pub leader_changes: IntCounter,
    /// Commits refused because this coordinator no longer led (locally at its
    /// deadline, or by etcd's compare on the leader key).
    pub fenced_commits: IntCounter,
    pub etcd_seconds: HistogramVec,
}

impl HaMetrics {
    fn new(registry: &prometheus::Registry) -> HaMetrics {
        let is_leader = IntGauge::new(
            "torua_coordinator_is_leader",
            "1 while this coordinator is the leader (always, without etcd), else 0.",
        )
        .unwrap();
        let leader_changes = IntCounter::new(
            "torua_leader_changes_total",
            "Times this coordinator became leader or stopped being leader.",
        )
        .unwrap();
        let fenced_commits = IntCounter::new(
            "torua_fenced_commits_total",
            "Commits refused because this coordinator was no longer the leader.",
        )
        .unwrap();
        let etcd_seconds = HistogramVec::new(
            HistogramOpts::new(
                "torua_etcd_request_duration_seconds",
                "Duration of this coordinator's etcd requests, by operation.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
            &["op"],
        )
        .unwrap();
        registry.register(Box::new(is_leader.clone())).unwrap();
        registry.register(Box::new(leader_changes.clone())).unwrap();
        registry.register(Box::new(fenced_commits.clone())).unwrap();
        registry.register(Box::new(etcd_seconds.clone())).unwrap();
        HaMetrics {
            is_leader,
            leader_changes,
            fenced_commits,
            etcd_seconds,
        }
    }
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
        let heartbeats_challenged = received.with_label_values(&["challenge"]);
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
        for r in MoveReason::ALL {
            for res in ["ok", "failed"] {
                moves.with_label_values(&[r.as_str(), res]);
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
        let shards_too_hot = IntGauge::new(
            "torua_shards_too_hot",
            "Shards whose load alone exceeds the mean node load by more than load_tolerance: reported, not moved.",
        )
        .unwrap();
        registry.register(Box::new(shards_too_hot.clone())).unwrap();
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
        let commit_failures_vec = IntCounterVec::new(
            Opts::new(
                "torua_shard_commit_failures_total",
                "Shard map changes that could not be committed (store or task failure), by \
                 kind of change; the reconciler's next pass tries again.",
            ),
            &["change"],
        )
        .unwrap();
        let commit_failures = ChangeKind::ALL
            .iter()
            .map(|k| (*k, commit_failures_vec.with_label_values(&[k.as_str()])))
            .collect();
        registry.register(Box::new(commit_failures_vec)).unwrap();
        let write_superseded = IntCounter::new(
            "torua_data_write_superseded_total",
            "Client writes a holder answered superseded: a newer concurrent write \
             reached it first, so this one is done there.",
        )
        .unwrap();
        registry
            .register(Box::new(write_superseded.clone()))
            .unwrap();
        registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .unwrap();
        let hedged_reads = IntCounterVec::new(
            Opts::new(
                "torua_data_hedged_reads_total",
                "Client reads whose first holder had not answered within its hedge delay, by \
                 outcome: won (the second holder answered first), lost (the first did), \
                 no_budget (hedging's 5 % budget was spent: the second request went after 100 ms).",
            ),
            &["outcome"],
        )
        .unwrap();
        for o in ["won", "lost", "no_budget"] {
            hedged_reads.with_label_values(&[o]);
        }
        registry.register(Box::new(hedged_reads.clone())).unwrap();
        let ha = HaMetrics::new(&registry);
        Metrics {
            hedged_reads,
            ha,
            loads: Mutex::default(),
            registry,
            heartbeats_ok,
            heartbeats_challenged,
            rejected,
            heartbeat_handle_seconds,
            failure_detection_seconds,
            state_changes,
            moves_frozen,
            shards_too_hot,
            moves_in_flight,
            moves,
            move_seconds,
            http_errors,
            connections_closed,
            connections_open,
            tls_reloads,
            commit_failures,
            write_superseded,
        }
    }

    pub fn commit_failed(&self, kind: ChangeKind) {
        if let Some(c) = self.commit_failures.get(&kind) {
            c.inc();
        }
    }

    /// Counts a finished move; copies also record their duration.
    pub fn moved(&self, reason: MoveReason, ok: bool, seconds: f64) {
        let result = if ok { "ok" } else { "failed" };
        self.moves
            .with_label_values(&[reason.as_str(), result])
            .inc();
        if reason != MoveReason::Failover {
            self.move_seconds.observe(seconds);
        }
    }

    pub fn heartbeat_rejected(&self, code: ErrorCode) {
        if let Some(c) = self.rejected.get(&code) {
            c.inc();
        }
    }

    /// The load view to render from now on.
    pub fn set_loads(&self, loads: Arc<Loads>) {
        *self.loads.lock().unwrap_or_else(|p| p.into_inner()) = loads;
    }

    pub fn state_entered(&self, state: NodeState) {
        self.state_changes
            .with_label_values(&[state.as_str()])
            .inc();
    }

    /// The whole exposition: registered metrics, then per-node and shard families.
    pub fn render(
        &self,
        nodes: &Registry,
        reach: &crate::reach::Reach,
        shards: &ShardStats,
        now: Instant,
    ) -> String {
        let mut out = Vec::with_capacity(16 * 1024);
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding into a Vec cannot fail");
        let mut out = String::from_utf8(out).expect("exposition is UTF-8");
        let loads = self.loads.lock().unwrap_or_else(|p| p.into_inner()).clone();
        render_nodes(&mut out, nodes, reach, &loads, now);
        render_shards(&mut out, shards);
        render_shard_load(&mut out, &loads);
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
fn render_nodes(
    out: &mut String,
    nodes: &Registry,
    reach: &crate::reach::Reach,
    loads: &Loads,
    now: Instant,
) {
    let cells = nodes.all();
    let mut by_state = [0usize; NodeState::ALL.len()];
    let mut state = String::with_capacity(cells.len() * 6 * 64);
    let mut age = String::with_capacity(cells.len() * 56);
    let mut phi = String::with_capacity(cells.len() * 40);
    let mut checks = String::with_capacity(cells.len() * 64);
    let mut pushed = String::with_capacity(cells.len() * 2 * 72);
    let mut reachable = String::with_capacity(cells.len() * 40);
    let mut call_failures = String::new();
    let mut load = String::with_capacity(loads.len() * 4 * 64);
    for cell in &cells {
        let id = esc(&cell.id);
        // Only nodes sampled: a node never measured has no load series, not a 0.
        if let Some(shards) = loads.get(&*cell.id) {
            write_load(
                &mut load,
                "torua_node_load",
                "node",
                &id,
                &node_total(shards),
            );
        }
        let n = cell.lock();
        if !n.record.addr.is_empty() {
            let (ok, failures) = reach.report(&n.record.addr);
            let _ = writeln!(
                reachable,
                "torua_node_reachable{{node=\"{id}\"}} {}",
                u8::from(ok)
            );
            for (call, count) in failures {
                let _ = writeln!(
                    call_failures,
                    "torua_node_call_failures_total{{node=\"{id}\",call=\"{call}\"}} {count}"
                );
            }
        }
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
        (
            "torua_node_reachable",
            "1 while the coordinator's own calls to the node are answered, 0 once they are not.",
            reachable,
        ),
        (
            "torua_node_load",
            "Load the node serves, per second, by kind (reads, writes, read_bytes, write_bytes): \
             the sum over its shards, median of the last 5 samples.",
            load,
        ),
    ];
    out.reserve(families.iter().map(|f| f.2.len() + 128).sum());
    for (name, help, body) in families {
        header(out, name, help);
        out.push_str(&body);
    }
    let name = "torua_node_call_failures_total";
    let _ = writeln!(
        out,
        "# HELP {name} The coordinator's calls to the node that got no answer, by call.\n# TYPE {name} counter"
    );
    out.push_str(&call_failures);
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

/// The four series of one load: `{name}{{{label}="{value}",kind="…"}} rate`.
fn write_load(out: &mut String, name: &str, label: &str, value: &str, l: &Load) {
    for (kind, v) in [
        ("reads", l.reads),
        ("writes", l.writes),
        ("read_bytes", l.read_bytes),
        ("write_bytes", l.write_bytes),
    ] {
        let _ = writeln!(out, "{name}{{{label}=\"{value}\",kind=\"{kind}\"}} {v:.3}");
    }
}

/// The [`TOP_SHARDS`] hottest shards that served anything, by score (ties: lower id
/// first): a bounded number of series, whatever the number of shards; a shard
/// leaving the top loses its series.
fn render_shard_load(out: &mut String, loads: &Loads) {
    header(
        out,
        "torua_shard_load",
        "Load of the hottest shards, per second, by kind: the sum over the nodes that \
         served them (top 10 by score only).",
    );
    for (id, l) in top_shards(loads, TOP_SHARDS) {
        write_load(out, "torua_shard_load", "shard", &id.to_string(), &l);
    }
}

/// The `k` busiest shards (score above 0), hottest first.
pub fn top_shards(loads: &Loads, k: usize) -> Vec<(u32, Load)> {
    let mut all: Vec<(u32, Load)> = shard_totals(loads)
        .into_iter()
        .filter(|(_, l)| l.score() > 0.0)
        .collect();
    all.sort_by(|a, b| b.1.score().total_cmp(&a.1.score()).then(a.0.cmp(&b.0)));
    all.truncate(k);
    all
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::NodeCell;
    use std::collections::BTreeMap;

    fn load(reads: f64) -> Load {
        Load {
            reads,
            writes: reads / 10.0,
            read_bytes: reads * 100.0,
            write_bytes: 0.0,
        }
    }

    fn node(nodes: &Registry, id: &str) {
        nodes.insert(Arc::new(NodeCell::for_tests(id)));
    }

    #[test]
    fn load_series_per_sampled_node_and_for_the_ten_hottest_shards() {
        let metrics = Metrics::new();
        let nodes = Registry::default();
        for id in ["n1", "n2", "n3"] {
            node(&nodes, id);
        }
        // n1 serves shards 0..12 (shard i at i reads/s, shard 0 idle), n2 serves
        // shard 11 too; n3 was never sampled; "gone" was removed since the sweep.
        let n1: BTreeMap<u32, Load> = (0..12).map(|i| (i, load(f64::from(i)))).collect();
        let loads: Loads = [
            ("n1".to_string(), n1),
            ("n2".to_string(), [(11, load(4.0))].into()),
            ("gone".to_string(), [(5, load(1000.0))].into()),
        ]
        .into();
        metrics.set_loads(Arc::new(loads));
        let reach = crate::reach::Reach::new(crate::reach::ReachPolicy {
            unreachable_after: 3,
            reachable_after: 3,
        });
        let text = metrics.render(&nodes, &reach, &ShardStats::default(), Instant::now());
        let lines = |prefix: &str| -> Vec<&str> {
            text.lines().filter(|l| l.starts_with(prefix)).collect()
        };
        assert_eq!(
            lines("torua_node_load{node=\"n1\""),
            [
                "torua_node_load{node=\"n1\",kind=\"reads\"} 66.000",
                "torua_node_load{node=\"n1\",kind=\"writes\"} 6.600",
                "torua_node_load{node=\"n1\",kind=\"read_bytes\"} 6600.000",
                "torua_node_load{node=\"n1\",kind=\"write_bytes\"} 0.000",
            ]
        );
        assert_eq!(lines("torua_node_load{node=\"n2\"").len(), 4);
        assert!(
            lines("torua_node_load{node=\"n3\"").is_empty(),
            "never sampled"
        );
        assert!(lines("torua_node_load{node=\"gone\"").is_empty(), "removed");

        // Shard 5 (with the removed node's figure) then 11 (11 + 4) lead; shard 0
        // (idle) has no series, and of the 11 busy shards the coolest, 1, is out.
        let shards: Vec<&str> = lines("torua_shard_load{")
            .into_iter()
            .filter(|l| l.contains("kind=\"reads\""))
            .collect();
        assert_eq!(shards.len(), TOP_SHARDS);
        assert_eq!(
            shards[0],
            "torua_shard_load{shard=\"5\",kind=\"reads\"} 1005.000"
        );
        assert_eq!(
            shards[1],
            "torua_shard_load{shard=\"11\",kind=\"reads\"} 15.000"
        );
        assert!(text.contains("torua_shard_load{shard=\"2\",kind=\"reads\"} 2.000\n"));
        for out in ["0", "1"] {
            assert!(
                !text.contains(&format!("torua_shard_load{{shard=\"{out}\"")),
                "{text}"
            );
        }
        assert_eq!(lines("torua_shard_load{").len(), 4 * TOP_SHARDS);
        for family in ["torua_node_load", "torua_shard_load"] {
            assert!(
                text.contains(&format!("# TYPE {family} gauge\n")),
                "{family}"
            );
        }
        torua_tests::tools::promtool_check_metrics("the coordinator", &text);
    }
}
