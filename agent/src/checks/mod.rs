//! Local checks: each runs in its own task on its own interval with its timeout,
//! passes its outcome through the thresholds and records it in [`Health`].

mod disk;
mod exec;
mod http;
mod process;
mod tcp;

use crate::config::{CheckConfig, ProbeSpec};
use crate::health::{Health, Threshold};
use crate::metrics::Metrics;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::time::MissedTickBehavior;
use torua_protocol::duration::format_duration;
use torua_protocol::{CheckResult, Status};

pub use disk::space as disk_space;
pub use http::{new_client, pooled, tcp_connector, HttpClient};

/// What one run of a probe found.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub status: Status,
    pub message: String,
}

impl Outcome {
    pub fn pass(message: impl Into<String>) -> Self {
        Outcome {
            status: Status::Pass,
            message: message.into(),
        }
    }
    pub fn warn(message: impl Into<String>) -> Self {
        Outcome {
            status: Status::Warn,
            message: message.into(),
        }
    }
    pub fn fail(message: impl Into<String>) -> Self {
        Outcome {
            status: Status::Fail,
            message: message.into(),
        }
    }
}

/// A check's probe, ready to run.
#[derive(Debug)]
pub struct Probe {
    spec: ProbeSpec,
    client: HttpClient,
    stat_file: process::StatFile,
}

impl Probe {
    pub fn new(spec: ProbeSpec, client: HttpClient) -> Self {
        Probe {
            spec,
            client,
            stat_file: process::StatFile::default(),
        }
    }

    /// Runs once, bounded by `timeout` (a timed-out child process is killed).
    pub async fn run(&self, timeout: Duration) -> Outcome {
        let run = async {
            match &self.spec {
                ProbeSpec::Http { url, expect_status } => {
                    http::probe(&self.client, url, *expect_status).await
                }
                ProbeSpec::Tcp { addr } => tcp::probe(addr).await,
                ProbeSpec::Exec { argv } => exec::probe(argv).await,
                ProbeSpec::Disk {
                    path,
                    warn_free_percent,
                    fail_free_percent,
                } => disk::probe(path, *warn_free_percent, *fail_free_percent),
                ProbeSpec::Process { pid_file } => process::probe(pid_file, &self.stat_file),
            }
        };
        match tokio::time::timeout(timeout, run).await {
            Ok(outcome) => outcome,
            Err(_) => Outcome::fail(format!("timeout after {}", format_duration(timeout))),
        }
    }
}

/// Describes an error by its most specific cause: `connection refused`, …
pub fn describe_error(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    let mut last = err.to_string();
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return describe_io(io);
        }
        last = e.to_string();
        cur = e.source();
    }
    last
}

/// Short lower-case text for common socket errors.
pub fn describe_io(e: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    match e.kind() {
        ConnectionRefused => "connection refused".into(),
        ConnectionReset => "connection reset".into(),
        ConnectionAborted => "connection aborted".into(),
        TimedOut => "timed out".into(),
        NotFound => "not found".into(),
        PermissionDenied => "permission denied".into(),
        HostUnreachable => "host unreachable".into(),
        NetworkUnreachable => "network unreachable".into(),
        UnexpectedEof => "connection closed".into(),
        _ => e.to_string(),
    }
}

/// Runs check `index` forever: probe, apply thresholds, record, export.
pub async fn run_check(
    index: usize,
    config: CheckConfig,
    probe: Probe,
    health: Arc<Health>,
    metrics: Metrics,
) {
    let mut threshold = Threshold::new(config.failure_threshold, config.success_threshold);
    let series = metrics.check(&config.name);
    let mut ticks = tokio::time::interval(config.interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let started = Instant::now();
        let outcome = probe.run(config.timeout).await;
        let elapsed = started.elapsed();
        let (status, note) = threshold.observe(outcome.status);
        let message = match note {
            Some(note) => format!("{} ({note})", outcome.message),
            None => outcome.message,
        };
        if status != Status::Pass {
            tracing::debug!(check = %config.name, status = status.as_str(), %message, "check");
        }
        series.ran(status, elapsed.as_secs_f64());
        let result = CheckResult {
            name: config.name.clone(),
            kind: config.kind,
            status,
            duration_ms: elapsed.as_secs_f64() * 1000.0,
            message,
        };
        let (liveness, readiness) = health.record(index, result);
        metrics.aggregates(liveness, readiness);
    }
}

#[cfg(test)]
mod tests;
