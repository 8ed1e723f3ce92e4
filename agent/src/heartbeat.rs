//! Heartbeats (SPEC §2): build, serialise once, sign, POST to the coordinator every
//! interval and at once when liveness/readiness changes; back off with full jitter on
//! failure; send one `leaving` heartbeat on shutdown.

use crate::checks::{describe_error, disk_space, pooled, tcp_connector};
use crate::config::{coordinator_uri, Config};
use crate::health::Health;
use crate::metrics::{Metrics, SendResult};
use crate::procfile::ProcFile;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE};
use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::Instant;
use torua_protocol::duration::format_duration;
use torua_protocol::validate::{MAX_INTERVAL_MS, MIN_INTERVAL_MS};
use torua_protocol::{
    authorization_header, sign, Capacity, ErrorBody, Heartbeat, HeartbeatAck, NodeKey, RunState,
    PROTOCOL_VERSION,
};
use tracing::Instrument;

/// First retry delay bound; doubled per failed attempt up to the interval.
const BACKOFF_BASE: Duration = Duration::from_millis(100);
/// Longest any send may take (the `leaving` heartbeat gets exactly this).
const MAX_SEND_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest coordinator answer read.
const MAX_RESPONSE: usize = 64 * 1024;

/// How one send ended.
#[derive(Debug, Clone, PartialEq)]
pub enum SendOutcome {
    Accepted(HeartbeatAck),
    /// An HTTP answer other than 200: `code` is the error body's code (or the status).
    Rejected {
        code: String,
        message: String,
    },
    /// No answer at all.
    Failed(String),
}

/// The heartbeat sender: owns the sequence number and the current interval.
pub struct Heartbeater {
    node_id: String,
    node_addr: String,
    url: hyper::Uri,
    capacity: Capacity,
    disk_path: PathBuf,
    loadavg: ProcFile,
    key: NodeKey,
    client: CoordinatorClient,
    health: Arc<Health>,
    metrics: Metrics,
    incarnation: u64,
    seq: u64,
    interval: Duration,
    /// Last problem logged, so a persistent one is logged once, not every second.
    last_problem: Option<String>,
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The heartbeat client: plain HTTP, or HTTPS for an `https://` coordinator.
#[cfg(feature = "tls")]
pub type CoordinatorClient =
    hyper_util::client::legacy::Client<torua_tls::HttpsConnector, Full<Bytes>>;
/// The heartbeat client of an agent built without TLS: plain HTTP only.
#[cfg(not(feature = "tls"))]
pub type CoordinatorClient = crate::checks::HttpClient;

/// The client for `config.coordinator`, trusting `coordinator_ca_file` (or the
/// system's roots) when it is `https://`.
#[cfg(feature = "tls")]
pub fn coordinator_client(config: &Config) -> Result<CoordinatorClient, String> {
    let connector = torua_tls::connector_for(
        &config.coordinator,
        config.coordinator_ca_file.as_deref(),
        tcp_connector(),
    )
    .map_err(|e| e.to_string())?;
    Ok(pooled(connector))
}

#[cfg(not(feature = "tls"))]
pub fn coordinator_client(_config: &Config) -> Result<CoordinatorClient, String> {
    Ok(pooled(tcp_connector()))
}

/// `{base}/v1/heartbeat` for a coordinator base URL.
pub fn heartbeat_url(coordinator: &str) -> Result<hyper::Uri, String> {
    coordinator_uri(&format!(
        "{}/v1/heartbeat",
        coordinator.trim_end_matches('/')
    ))
}

/// A retry delay: uniform in `0..=min(cap, base * 2^attempt)` ("full jitter").
pub fn backoff(attempt: u32, cap: Duration) -> Duration {
    let ceiling = BACKOFF_BASE
        .saturating_mul(1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX))
        .min(cap);
    Duration::from_millis(fastrand::u64(0..=ceiling.as_millis() as u64))
}

/// Metrics pushed with every heartbeat: disk space of `disk_path` and `load1` from
/// `loadavg` (`/proc/loadavg`).
pub fn node_metrics(disk_path: &std::path::Path, loadavg: &mut ProcFile) -> BTreeMap<String, f64> {
    let mut m = BTreeMap::new();
    if let Ok((free, total)) = disk_space(disk_path) {
        m.insert("disk_free_bytes".to_string(), free);
        m.insert("disk_total_bytes".to_string(), total);
    }
    let load1 = loadavg
        .read()
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok());
    if let Some(load1) = load1.filter(|l| l.is_finite()) {
        m.insert("load1".to_string(), load1);
    }
    m
}

/// When the heartbeat after an accepted one is due. A `regular` send (one that was
/// due) keeps the fixed rate; one woken early by a status change restarts it from
/// `now`, and so does a regular send that overran a whole interval (never two at once).
fn next_due(due: Instant, regular: bool, now: Instant, interval: Duration) -> Instant {
    match due + interval {
        next if regular && next > now => next,
        _ => now + interval,
    }
}

impl Heartbeater {
    /// `config` must be validated (the coordinator URL parses).
    pub fn new(
        config: &Config,
        key: NodeKey,
        client: CoordinatorClient,
        health: Arc<Health>,
        metrics: Metrics,
    ) -> Self {
        Heartbeater {
            node_id: config.node_id.clone(),
            node_addr: config.node_addr.clone(),
            url: heartbeat_url(&config.coordinator).expect("validated coordinator URL"),
            capacity: config.capacity.clone(),
            disk_path: config.metrics.disk_path.clone(),
            loadavg: ProcFile::new("/proc/loadavg"),
            key,
            client,
            health,
            metrics,
            incarnation: unix_ms(),
            seq: 0,
            interval: config.interval,
            last_problem: None,
        }
    }

    /// Sends until `stop` resolves, then sends one `leaving` heartbeat.
    pub async fn run(mut self, stop: impl Future<Output = ()>) {
        let mut stop = std::pin::pin!(stop);
        let mut attempt = 0u32;
        // Regular sends keep a fixed rate from this instant, not `interval` after the
        // last answer: the checks start their intervals at the same instant, so the
        // heartbeat shares their timer wake-ups instead of drifting into its own.
        let mut due = Instant::now();
        // Report real results, not the empty start state: the first heartbeat waits
        // for the first check round, but no longer than one interval.
        let first_round = tokio::time::timeout(self.interval, self.health.wait_first_round());
        let mut stopped = tokio::select! {
            _ = &mut stop => true,
            _ = first_round => false,
        };
        while !stopped {
            tokio::select! {
                biased;
                _ = &mut stop => { stopped = true; continue; }
                _ = self.health.changed.notified() => {}
                _ = tokio::time::sleep_until(due) => {}
            }
            let regular = Instant::now() >= due;
            let timeout = self.interval.min(MAX_SEND_TIMEOUT);
            let accepted = tokio::select! {
                biased;
                _ = &mut stop => { stopped = true; continue; }
                outcome = self.send(RunState::Running, timeout) => matches!(outcome, SendOutcome::Accepted(_)),
            };
            let now = Instant::now();
            if accepted {
                attempt = 0;
                due = next_due(due, regular, now, self.interval);
            } else {
                due = now + backoff(attempt, self.interval);
                attempt = attempt.saturating_add(1);
            }
        }
        match self.send(RunState::Leaving, MAX_SEND_TIMEOUT).await {
            SendOutcome::Accepted(_) => {
                tracing::info!("coordinator accepted the leaving heartbeat")
            }
            other => tracing::warn!(outcome = ?other, "leaving heartbeat not accepted"),
        }
    }

    /// Builds the next message: a new `seq` and `sent_at_ms` every time.
    pub fn build(&mut self, state: RunState) -> Heartbeat {
        self.seq += 1;
        let snap = self.health.snapshot();
        Heartbeat {
            v: PROTOCOL_VERSION,
            node_id: self.node_id.clone(),
            incarnation: self.incarnation,
            seq: self.seq,
            sent_at_ms: unix_ms(),
            interval_ms: self.interval.as_millis() as u64,
            node_addr: self.node_addr.clone(),
            state,
            liveness: snap.liveness,
            readiness: snap.readiness,
            checks: snap.checks,
            metrics: node_metrics(&self.disk_path, &mut self.loadavg),
            capacity: self.capacity.clone(),
        }
    }

    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Sends one heartbeat and accounts for the answer.
    pub async fn send(&mut self, state: RunState, timeout: Duration) -> SendOutcome {
        let hb = self.build(state);
        let body = serde_json::to_vec(&hb).expect("a heartbeat serialises");
        let sig = sign(&self.key, &body);
        let span = tracing::debug_span!(
            "heartbeat.send",
            node = %self.node_id,
            seq = hb.seq,
            state = ?state,
            result = tracing::field::Empty
        );
        let mut req = hyper::Request::post(self.url.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(AUTHORIZATION, authorization_header(&self.node_id, &sig))
            .body(Full::new(Bytes::from(body)))
            .expect("a valid request");
        crate::telemetry::inject(&span, req.headers_mut());
        let started = std::time::Instant::now();
        let client = &self.client;
        let answer = tokio::time::timeout(timeout, async {
            let resp = client.request(req).await.map_err(|e| describe_error(&e))?;
            let status = resp.status();
            let body = Limited::new(resp.into_body(), MAX_RESPONSE)
                .collect()
                .await
                .map_err(|e| format!("reading the answer: {e}"))?
                .to_bytes();
            Ok::<_, String>((status, body))
        })
        .instrument(span.clone())
        .await;
        let rtt = started.elapsed().as_secs_f64();
        let outcome = match answer {
            Err(_) => SendOutcome::Failed(format!("timeout after {}", format_duration(timeout))),
            Ok(Err(e)) => SendOutcome::Failed(e),
            Ok(Ok((status, body))) if status == hyper::StatusCode::OK => {
                match serde_json::from_slice::<HeartbeatAck>(&body) {
                    Ok(ack) => SendOutcome::Accepted(ack),
                    Err(e) => SendOutcome::Rejected {
                        code: "bad_ack".into(),
                        message: format!("unreadable 200 answer: {e}"),
                    },
                }
            }
            Ok(Ok((status, body))) => match serde_json::from_slice::<ErrorBody>(&body) {
                Ok(err) => SendOutcome::Rejected {
                    code: err.error.code.as_str().to_string(),
                    message: err.error.message,
                },
                Err(_) => SendOutcome::Rejected {
                    code: status.as_u16().to_string(),
                    message: String::from_utf8_lossy(&body).chars().take(200).collect(),
                },
            },
        };
        span.record(
            "result",
            match &outcome {
                SendOutcome::Accepted(_) => "ok",
                SendOutcome::Rejected { code, .. } => code.as_str(),
                SendOutcome::Failed(_) => "error",
            },
        );
        self.account(&hb, &outcome, rtt);
        outcome
    }

    /// Metrics, logs (once per distinct problem), the ack latch and interval changes.
    fn account(&mut self, hb: &Heartbeat, outcome: &SendOutcome, rtt: f64) {
        match outcome {
            SendOutcome::Accepted(ack) => {
                self.metrics.heartbeat_sent(SendResult::Ok, Some(rtt));
                self.health.set_acked();
                if self.last_problem.take().is_some() {
                    tracing::info!(seq = hb.seq, "coordinator accepts heartbeats again");
                }
                let wanted = Duration::from_millis(ack.interval_ms);
                if ack.interval_ms != hb.interval_ms
                    && (MIN_INTERVAL_MS..=MAX_INTERVAL_MS).contains(&ack.interval_ms)
                {
                    tracing::info!(
                        from = %format_duration(self.interval),
                        to = %format_duration(wanted),
                        "adopting the coordinator's heartbeat interval"
                    );
                    self.interval = wanted;
                }
            }
            SendOutcome::Rejected { code, message } => {
                self.metrics.heartbeat_sent(SendResult::Rejected, Some(rtt));
                if self.last_problem.as_deref() != Some(code) {
                    tracing::warn!(seq = hb.seq, %code, %message, "coordinator rejected a heartbeat");
                    self.last_problem = Some(code.clone());
                }
            }
            SendOutcome::Failed(why) => {
                self.metrics.heartbeat_sent(SendResult::Error, None);
                if self.last_problem.as_deref() != Some(why) {
                    tracing::warn!(seq = hb.seq, error = %why, url = %self.url, "heartbeat not delivered");
                    self.last_problem = Some(why.clone());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
