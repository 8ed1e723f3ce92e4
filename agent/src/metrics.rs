//! Every Prometheus metric the agent exports, defined in one place with its HELP text.

use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounterVec, Opts,
    Registry, TextEncoder,
};
use torua_protocol::Status;

/// Buckets for check durations and heartbeat round trips: 0.5 ms .. 10 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Outcome label values of `torua_agent_heartbeats_sent_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendResult {
    /// 200 from the coordinator.
    Ok,
    /// Any other HTTP answer (`{"error":{"code":…}}`).
    Rejected,
    /// No answer: connection error or timeout.
    Error,
}

impl SendResult {
    pub const ALL: [SendResult; 3] = [SendResult::Ok, SendResult::Rejected, SendResult::Error];

    pub fn as_str(self) -> &'static str {
        match self {
            SendResult::Ok => "ok",
            SendResult::Rejected => "rejected",
            SendResult::Error => "error",
        }
    }
}

/// Why the heartbeat sender moved to another coordinator: the `reason` label of
/// `torua_agent_coordinator_switches_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwitchReason {
    /// No answer: connection error or timeout.
    Unreachable,
    /// A 5xx answer that named no leader (or only one that just did not answer).
    ServerError,
    /// A `not_leader` answer whose `Torua-Leader` header named the leader.
    NotLeader,
}

impl SwitchReason {
    pub const ALL: [SwitchReason; 3] = [
        SwitchReason::Unreachable,
        SwitchReason::ServerError,
        SwitchReason::NotLeader,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SwitchReason::Unreachable => "unreachable",
            SwitchReason::ServerError => "server_error",
            SwitchReason::NotLeader => "not_leader",
        }
    }
}

/// The agent's registry and metric handles.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    check_status: GaugeVec,
    check_duration: HistogramVec,
    heartbeats_sent: IntCounterVec,
    heartbeat_rtt: Histogram,
    coordinator_switches: IntCounterVec,
    liveness: Gauge,
    readiness: Gauge,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let check_status = GaugeVec::new(
            Opts::new(
                "torua_agent_check_status",
                "Reported status of each local check: 0 pass, 1 warn, 2 fail.",
            ),
            &["check"],
        )
        .expect("valid metric");
        let check_duration = HistogramVec::new(
            HistogramOpts::new(
                "torua_agent_check_duration_seconds",
                "Time taken by each run of a local check.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["check"],
        )
        .expect("valid metric");
        let heartbeats_sent = IntCounterVec::new(
            Opts::new(
                "torua_agent_heartbeats_sent_total",
                "Heartbeats sent to the coordinator, by result (ok, rejected, error).",
            ),
            &["result"],
        )
        .expect("valid metric");
        let heartbeat_rtt = Histogram::with_opts(
            HistogramOpts::new(
                "torua_agent_heartbeat_rtt_seconds",
                "Round trip of heartbeats that got an HTTP answer.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
        )
        .expect("valid metric");
        let coordinator_switches = IntCounterVec::new(
            Opts::new(
                "torua_agent_coordinator_switches_total",
                "Times the heartbeat sender moved to another coordinator, by reason \
                 (unreachable, server_error, not_leader).",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let liveness = Gauge::new(
            "torua_agent_liveness",
            "Aggregated liveness over checks: 0 pass, 1 warn, 2 fail.",
        )
        .expect("valid metric");
        let readiness = Gauge::new(
            "torua_agent_readiness",
            "Aggregated readiness over checks: 0 pass, 1 warn, 2 fail.",
        )
        .expect("valid metric");
        let build_info = GaugeVec::new(
            Opts::new(
                "torua_agent_build_info",
                "Always 1; the agent's version as a label.",
            ),
            &["version"],
        )
        .expect("valid metric");
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1.0);
        for r in SendResult::ALL {
            heartbeats_sent.with_label_values(&[r.as_str()]);
        }
        for r in SwitchReason::ALL {
            coordinator_switches.with_label_values(&[r.as_str()]);
        }
        for c in [
            Box::new(check_status.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(check_duration.clone()),
            Box::new(heartbeats_sent.clone()),
            Box::new(heartbeat_rtt.clone()),
            Box::new(coordinator_switches.clone()),
            Box::new(liveness.clone()),
            Box::new(readiness.clone()),
            Box::new(build_info),
            Box::new(prometheus::process_collector::ProcessCollector::for_self()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        Metrics {
            registry,
            check_status,
            check_duration,
            heartbeats_sent,
            heartbeat_rtt,
            coordinator_switches,
            liveness,
            readiness,
        }
    }

    /// The series of one check, looked up once rather than by label on every run.
    pub fn check(&self, check: &str) -> CheckMetrics {
        CheckMetrics {
            status: self.check_status.with_label_values(&[check]),
            duration: self.check_duration.with_label_values(&[check]),
        }
    }

    /// The aggregates after a check result.
    pub fn aggregates(&self, liveness: Status, readiness: Status) {
        self.liveness.set(liveness.as_gauge());
        self.readiness.set(readiness.as_gauge());
    }

    /// A heartbeat send finished; `rtt` is set when an HTTP answer came back.
    pub fn heartbeat_sent(&self, result: SendResult, rtt: Option<f64>) {
        self.heartbeats_sent
            .with_label_values(&[result.as_str()])
            .inc();
        if let Some(rtt) = rtt {
            self.heartbeat_rtt.observe(rtt);
        }
    }

    /// The heartbeat sender moved to another coordinator.
    pub fn coordinator_switched(&self, reason: SwitchReason) {
        self.coordinator_switches
            .with_label_values(&[reason.as_str()])
            .inc();
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("encoding to a Vec cannot fail");
        String::from_utf8(buf).expect("exposition is UTF-8")
    }
}

/// One check's series of `torua_agent_check_status` and `_check_duration_seconds`.
#[derive(Clone)]
pub struct CheckMetrics {
    status: Gauge,
    duration: Histogram,
}

impl CheckMetrics {
    /// The check finished a run.
    pub fn ran(&self, status: Status, seconds: f64) {
        self.status.set(status.as_gauge());
        self.duration.observe(seconds);
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_every_family() {
        let m = Metrics::new();
        m.check("node-http").ran(Status::Warn, 0.002);
        m.heartbeat_sent(SendResult::Ok, Some(0.001));
        let text = m.encode();
        for want in [
            "# HELP torua_agent_check_status ",
            "torua_agent_check_status{check=\"node-http\"} 1",
            "torua_agent_check_duration_seconds_bucket{check=\"node-http\",le=\"0.0025\"} 1",
            "torua_agent_heartbeats_sent_total{result=\"ok\"} 1",
            "torua_agent_heartbeats_sent_total{result=\"rejected\"} 0",
            "torua_agent_heartbeats_sent_total{result=\"error\"} 0",
            "torua_agent_heartbeat_rtt_seconds_count 1",
            "torua_agent_coordinator_switches_total{reason=\"unreachable\"} 0",
            "torua_agent_coordinator_switches_total{reason=\"server_error\"} 0",
            "torua_agent_coordinator_switches_total{reason=\"not_leader\"} 0",
            "torua_agent_liveness 0",
            "torua_agent_readiness 0",
            "torua_agent_build_info{version=\"",
            "process_resident_memory_bytes ",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
    }
}
