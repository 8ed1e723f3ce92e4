//! Prometheus metrics of the node; every metric name lives here.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use torua_protocol::node_api::Role;
use torua_protocol::node_call::Refusal;

use crate::store::Totals;

/// Request kinds, the `op` label. Initialised up front so `rate()` works from the
/// first scrape.
pub const OPS: [&str; 12] = [
    "data_put",
    "data_get",
    "data_delete",
    "data_list",
    "shard_put",
    "shard_delete",
    "shard_get",
    "shard_list",
    "snapshot",
    "pull",
    "health",
    "other",
];

/// The success answer of each op, initialised to 0 alongside the op's histogram.
const SUCCESS: [(&str, &str); 11] = [
    ("data_put", "204"),
    ("data_get", "200"),
    ("data_delete", "204"),
    ("data_list", "200"),
    ("shard_put", "200"),
    ("shard_delete", "204"),
    ("shard_get", "200"),
    ("shard_list", "200"),
    ("snapshot", "200"),
    ("pull", "200"),
    ("health", "200"),
];

pub const FENCE_REASONS: [&str; 3] = ["stale", "ahead", "not_held"];

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    keys: IntGauge,
    bytes: IntGauge,
    shards: IntGaugeVec,
    fenced: IntCounterVec,
    copy_bytes: IntCounter,
    copies: IntCounterVec,
    auth_failures: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "torua_kv_requests_total",
                "Node API requests by operation and HTTP status code.",
            ),
            &["op", "code"],
        )
        .unwrap();
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "torua_kv_request_duration_seconds",
                "Node API request handling time (for snapshots: until the response starts).",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0, 30.0,
            ]),
            &["op"],
        )
        .unwrap();
        let keys = IntGauge::new("torua_kv_keys", "Live keys held, over all shards.").unwrap();
        let bytes = IntGauge::new(
            "torua_kv_bytes",
            "Key plus value bytes of live entries held, over all shards.",
        )
        .unwrap();
        let shards = IntGaugeVec::new(
            Opts::new("torua_kv_shards", "Shards held, by role."),
            &["role"],
        )
        .unwrap();
        let fenced = IntCounterVec::new(
            Opts::new(
                "torua_kv_fenced_total",
                "Data requests refused by epoch fencing: stale epoch, epoch ahead, or shard not held.",
            ),
            &["reason"],
        )
        .unwrap();
        let copy_bytes = IntCounter::new(
            "torua_kv_copy_bytes_total",
            "Snapshot bytes received by shard pulls from other nodes.",
        )
        .unwrap();
        let copies = IntCounterVec::new(
            Opts::new(
                "torua_kv_copies_total",
                "Shard pulls finished, by result (ok or error).",
            ),
            &["result"],
        )
        .unwrap();
        let auth_failures = IntCounterVec::new(
            Opts::new(
                "torua_kv_auth_failures_total",
                "Calls refused 401: unsigned, malformed, for another node, clock skew, bad signature, replayed, or a snapshot fetch with a bad, expired or wrong ticket.",
            ),
            &["reason"],
        )
        .unwrap();
        let build = IntGaugeVec::new(
            Opts::new("torua_kv_build_info", "Build of this node; always 1."),
            &["version"],
        )
        .unwrap();
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);

        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(duration.clone()),
            Box::new(keys.clone()),
            Box::new(bytes.clone()),
            Box::new(shards.clone()),
            Box::new(fenced.clone()),
            Box::new(copy_bytes.clone()),
            Box::new(copies.clone()),
            Box::new(auth_failures.clone()),
            Box::new(build),
            Box::new(prometheus::process_collector::ProcessCollector::for_self()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        for op in OPS {
            duration.with_label_values(&[op]);
        }
        for (op, code) in SUCCESS {
            requests.with_label_values(&[op, code]);
        }
        for role in Role::ALL {
            shards.with_label_values(&[role.as_str()]);
        }
        for r in FENCE_REASONS {
            fenced.with_label_values(&[r]);
        }
        for r in ["ok", "error"] {
            copies.with_label_values(&[r]);
        }
        for r in Refusal::REASONS {
            auth_failures.with_label_values(&[r]);
        }
        Metrics {
            registry,
            requests,
            duration,
            keys,
            bytes,
            shards,
            fenced,
            copy_bytes,
            copies,
            auth_failures,
        }
    }

    pub fn request(&self, op: &str, status: u16, seconds: f64) {
        self.requests
            .with_label_values(&[op, status.to_string().as_str()])
            .inc();
        self.duration.with_label_values(&[op]).observe(seconds);
    }

    pub fn fenced(&self, reason: &str) {
        self.fenced.with_label_values(&[reason]).inc();
    }

    /// A call refused 401, by [`Refusal::reason`].
    pub fn auth_failure(&self, reason: &str) {
        self.auth_failures.with_label_values(&[reason]).inc();
    }

    pub fn copy_bytes(&self, n: u64) {
        self.copy_bytes.inc_by(n);
    }

    pub fn copy_done(&self, ok: bool) {
        self.copies
            .with_label_values(&[if ok { "ok" } else { "error" }])
            .inc();
    }

    /// Renders the text exposition, refreshing the store gauges first (they are
    /// computed on scrape so the write path stays free of metric updates).
    pub fn render(&self, totals: Totals) -> String {
        self.keys.set(totals.keys as i64);
        self.bytes.set(totals.bytes as i64);
        self.shards
            .with_label_values(&["primary"])
            .set(totals.primary as i64);
        self.shards
            .with_label_values(&["replica"])
            .set(totals.replica as i64);
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding cannot fail");
        String::from_utf8(out).expect("exposition is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
