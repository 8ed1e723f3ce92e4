//! Heartbeats (SPEC §2): build, serialise once, sign, POST to the coordinator every
//! interval and at once when liveness/readiness changes; back off with full jitter on
//! failure; send one `leaving` heartbeat on shutdown. With several coordinators the
//! sender keeps a current one: it moves on when that one does not answer or fails
//! (5xx), and follows a `not_leader` answer's `Torua-Leader` header ([`switch_after`]).

use crate::checks::{describe_error, disk_space, pooled, tcp_connector};
use crate::config::{coordinator_uri, normalize_base, Config};
use crate::health::Health;
use crate::metrics::{Metrics, SendResult, SwitchReason};
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
use torua_protocol::api::LEADER_HEADER;
use torua_protocol::duration::format_duration;
use torua_protocol::heartbeat::COORDINATOR_NONCE_HEADER;
use torua_protocol::validate::{MAX_INTERVAL_MS, MIN_INTERVAL_MS};
use torua_protocol::{
    authorization_header, sign, Capacity, ErrorBody, ErrorCode, Heartbeat, HeartbeatAck, NodeKey,
    RunState, PROTOCOL_VERSION,
};
use tracing::Instrument;

/// First retry delay bound; doubled per failed attempt up to the interval.
const BACKOFF_BASE: Duration = Duration::from_millis(100);
/// Longest any send may take (the `leaving` heartbeat gets exactly this).
const MAX_SEND_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest coordinator answer read.
const MAX_RESPONSE: usize = 64 * 1024;
/// Longest wait before trying the coordinator just switched to (full jitter below it).
const SWITCH_RETRY_CAP: Duration = Duration::from_millis(200);
/// How long after the last accepted heartbeat switches are retried at once; beyond it
/// (the whole control plane down for a while) the ordinary backoff applies.
const FAST_SWITCH_WINDOW: Duration = Duration::from_secs(15);

/// How one send ended.
#[derive(Debug, Clone, PartialEq)]
pub enum SendOutcome {
    Accepted(HeartbeatAck),
    /// An HTTP answer other than 200: `code` is the error body's code (or the status);
    /// `leader` is the `Torua-Leader` header of a `not_leader` answer, if any.
    Rejected {
        status: u16,
        code: String,
        message: String,
        leader: Option<String>,
    },
    /// No answer at all.
    Failed(String),
}

/// Where heartbeats go: an entry of the configured list, or a leader that a
/// coordinator named and the list does not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `coordinator[i]`.
    Listed(usize),
    /// A leader named in a `Torua-Leader` header; when it fails, the list resumes at
    /// entry `then` (the coordinator that named it).
    Named { base: String, then: usize },
}

/// After an answer from `current`: the coordinator the next heartbeat goes to, when
/// it is another one, and why. The rule:
///
/// - accepted, or refused with a 4xx (replay, bad signature, …): stay;
/// - `not_leader` with a valid `Torua-Leader` URL other than `current`: go there
///   (the list's entry if it is one, even if the list does not hold it), unless that
///   URL is `just_failed` (the previous send got no answer from it: a follower still
///   names a leader that died, until the election ends);
/// - no answer (connection error, timeout) or any other 5xx: the next entry of the
///   list (from a named leader: the entry that named it).
///
/// With one coordinator and no leader named, nothing ever switches.
pub fn switch_after(
    list: &[String],
    current: &Target,
    outcome: &SendOutcome,
    just_failed: Option<&str>,
) -> Option<(Target, SwitchReason)> {
    let base_of = |t: &Target| -> String {
        match t {
            Target::Listed(i) => normalize_base(&list[*i]).to_string(),
            Target::Named { base, .. } => base.clone(),
        }
    };
    let resume = match current {
        Target::Listed(i) => *i,
        Target::Named { then, .. } => *then,
    };
    let reason = match outcome {
        SendOutcome::Accepted(_) => return None,
        SendOutcome::Failed(_) => SwitchReason::Unreachable,
        SendOutcome::Rejected {
            status,
            code,
            leader,
            ..
        } => {
            let named = leader
                .as_deref()
                .filter(|_| code == ErrorCode::NotLeader.as_str())
                .map(|l| normalize_base(l.trim()))
                .filter(|l| *l != base_of(current) && heartbeat_url(l).is_ok())
                .filter(|l| Some(*l) != just_failed.map(normalize_base));
            if let Some(leader) = named {
                let to = match list.iter().position(|b| normalize_base(b) == leader) {
                    Some(j) => Target::Listed(j),
                    None => Target::Named {
                        base: leader.to_string(),
                        then: resume,
                    },
                };
                return Some((to, SwitchReason::NotLeader));
            }
            if *status < 500 {
                return None;
            }
            SwitchReason::ServerError
        }
    };
    let to = match current {
        Target::Listed(i) => Target::Listed((i + 1) % list.len()),
        Target::Named { then, .. } => Target::Listed(*then),
    };
    (to != *current).then_some((to, reason))
}

/// The wait before the next attempt after `attempt + 1` unaccepted sends in a row:
/// short (at most [`SWITCH_RETRY_CAP`]) right after a switch, during the first
/// [`FAST_SWITCH_WINDOW`] of trouble, so agents re-attach within about a second of a
/// new leader; otherwise the ordinary [`backoff`].
pub fn retry_delay(
    switched: bool,
    attempt: u32,
    interval: Duration,
    in_trouble_for: Duration,
) -> Duration {
    if switched && in_trouble_for < FAST_SWITCH_WINDOW {
        backoff(attempt.min(1), SWITCH_RETRY_CAP.min(interval))
    } else {
        backoff(attempt, interval)
    }
}

/// The heartbeat sender: owns the sequence number, the current interval and the
/// current coordinator.
pub struct Heartbeater {
    node_id: String,
    node_addr: String,
    /// The configured coordinator base URLs, without trailing `/`.
    coordinators: Vec<String>,
    target: Target,
    /// `{target}/v1/heartbeat`.
    url: hyper::Uri,
    /// When the current run of unaccepted sends began (`None` while accepted).
    trouble_since: Option<Instant>,
    /// Switches in the current run of unaccepted sends: the first few are logged at
    /// `info`, the rest (a control plane down for long) at `debug`.
    switches_in_trouble: usize,
    /// The coordinator the previous send went to, when it got no answer.
    just_failed: Option<String>,
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
    /// The nonce of the coordinator process last heard from, echoed in every
    /// heartbeat: a coordinator takes a node's first heartbeat of its life only
    /// with its own nonce (so no recording from before its start passes).
    coordinator_nonce: Option<String>,
    /// The last answer asked for a nonce this agent did not send: send again now.
    challenged: bool,
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
/// system's roots) when one of them is `https://`. One client serves every
/// coordinator, `http://` and `https://` alike.
#[cfg(feature = "tls")]
pub fn coordinator_client(config: &Config) -> Result<CoordinatorClient, String> {
    let any_https = config
        .coordinator
        .iter()
        .find(|c| c.starts_with("https://"))
        .or(config.coordinator.first())
        .map_or("http://", |c| c.as_str());
    let connector = torua_tls::connector_for(
        any_https,
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
    /// `config` must be validated (the coordinator URLs parse).
    pub fn new(
        config: &Config,
        key: NodeKey,
        client: CoordinatorClient,
        health: Arc<Health>,
        metrics: Metrics,
    ) -> Self {
        let coordinators: Vec<String> = config
            .coordinator
            .iter()
            .map(|c| normalize_base(c).to_string())
            .collect();
        Heartbeater {
            node_id: config.node_id.clone(),
            node_addr: config.node_addr.clone(),
            url: heartbeat_url(&coordinators[0]).expect("validated coordinator URL"),
            coordinators,
            target: Target::Listed(0),
            trouble_since: None,
            switches_in_trouble: 0,
            just_failed: None,
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
            coordinator_nonce: None,
            challenged: false,
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
            let (accepted, switched) = tokio::select! {
                biased;
                _ = &mut stop => { stopped = true; continue; }
                (outcome, switched) = self.send_and_follow(RunState::Running, timeout) => {
                    (matches!(outcome, SendOutcome::Accepted(_)), switched)
                }
            };
            let now = Instant::now();
            if accepted {
                attempt = 0;
                due = next_due(due, regular, now, self.interval);
            } else {
                let trouble = self.trouble_since.map_or(Duration::ZERO, |t| now - t);
                due = now + retry_delay(switched, attempt, self.interval, trouble);
                attempt = attempt.saturating_add(1);
            }
        }
        // One leaving heartbeat, within MAX_SEND_TIMEOUT in all: if the current
        // coordinator does not take it, the one it points to (or the next) may.
        let deadline = Instant::now() + MAX_SEND_TIMEOUT;
        let mut outcome = None;
        for _ in 0..=self.coordinators.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let (o, switched) = self.send_and_follow(RunState::Leaving, left).await;
            let done = !switched || matches!(o, SendOutcome::Accepted(_));
            outcome = Some(o);
            if done {
                break;
            }
        }
        match outcome {
            Some(SendOutcome::Accepted(_)) => {
                tracing::info!(url = %self.url, "coordinator accepted the leaving heartbeat")
            }
            other => tracing::warn!(outcome = ?other, "leaving heartbeat not accepted"),
        }
    }

    /// The coordinator heartbeats go to now (base URL).
    pub fn current(&self) -> &str {
        match &self.target {
            Target::Listed(i) => &self.coordinators[*i],
            Target::Named { base, .. } => base,
        }
    }

    /// Sends one heartbeat, then moves to another coordinator if the answer says so
    /// ([`switch_after`]); `true` when it switched.
    pub async fn send_and_follow(
        &mut self,
        state: RunState,
        timeout: Duration,
    ) -> (SendOutcome, bool) {
        let mut outcome = self.send(state, timeout).await;
        if std::mem::take(&mut self.challenged) {
            // First contact with this coordinator process (or it restarted): it
            // asked for its nonce back, which this heartbeat now carries.
            outcome = self.send(state, timeout).await;
            self.challenged = false;
        }
        let switched = self.follow(&outcome);
        (outcome, switched)
    }

    /// Applies [`switch_after`] to `outcome`: counts and logs a switch.
    fn follow(&mut self, outcome: &SendOutcome) -> bool {
        if matches!(outcome, SendOutcome::Accepted(_)) {
            self.trouble_since = None;
            self.switches_in_trouble = 0;
            self.just_failed = None;
            return false;
        }
        self.trouble_since.get_or_insert_with(Instant::now);
        let failed_now =
            matches!(outcome, SendOutcome::Failed(_)).then(|| self.current().to_string());
        let just_failed = std::mem::replace(&mut self.just_failed, failed_now);
        let Some((to, reason)) = switch_after(
            &self.coordinators,
            &self.target,
            outcome,
            just_failed.as_deref(),
        ) else {
            return false;
        };
        let from = self.current().to_string();
        self.target = to;
        self.url = heartbeat_url(self.current()).expect("checked by switch_after");
        self.metrics.coordinator_switched(reason);
        self.switches_in_trouble += 1;
        let why = match outcome {
            SendOutcome::Failed(e) => e.clone(),
            SendOutcome::Rejected { status, code, .. } => format!("{status} {code}"),
            SendOutcome::Accepted(_) => unreachable!("accepted answers never switch"),
        };
        if self.switches_in_trouble <= 2 * self.coordinators.len() {
            tracing::info!(%from, to = %self.current(), reason = reason.as_str(), %why, "switching coordinator");
        } else {
            tracing::debug!(%from, to = %self.current(), reason = reason.as_str(), %why, "switching coordinator");
        }
        true
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
            coordinator_nonce: self.coordinator_nonce.clone(),
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
            let header = |name: &str| {
                resp.headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            };
            let leader = header(LEADER_HEADER);
            let nonce = header(COORDINATOR_NONCE_HEADER);
            let body = Limited::new(resp.into_body(), MAX_RESPONSE)
                .collect()
                .await
                .map_err(|e| format!("reading the answer: {e}"))?
                .to_bytes();
            Ok::<_, String>((status, leader, nonce, body))
        })
        .instrument(span.clone())
        .await;
        let rtt = started.elapsed().as_secs_f64();
        if let Ok(Ok((status, _, Some(nonce), _))) = &answer {
            self.challenged = *status == hyper::StatusCode::CONFLICT
                && hb.coordinator_nonce.as_deref() != Some(nonce.as_str());
            if self.coordinator_nonce.as_deref() != Some(nonce.as_str()) {
                self.coordinator_nonce = Some(nonce.clone());
            }
        }
        let outcome = match answer {
            Err(_) => SendOutcome::Failed(format!("timeout after {}", format_duration(timeout))),
            Ok(Err(e)) => SendOutcome::Failed(e),
            Ok(Ok((status, _, _, body))) if status == hyper::StatusCode::OK => {
                match serde_json::from_slice::<HeartbeatAck>(&body) {
                    Ok(ack) => SendOutcome::Accepted(ack),
                    Err(e) => SendOutcome::Rejected {
                        status: status.as_u16(),
                        code: "bad_ack".into(),
                        message: format!("unreadable 200 answer: {e}"),
                        leader: None,
                    },
                }
            }
            Ok(Ok((status, leader, _, body))) => match serde_json::from_slice::<ErrorBody>(&body) {
                Ok(err) => SendOutcome::Rejected {
                    status: status.as_u16(),
                    code: err.error.code.as_str().to_string(),
                    message: err.error.message,
                    leader,
                },
                Err(_) => SendOutcome::Rejected {
                    status: status.as_u16(),
                    code: status.as_u16().to_string(),
                    message: String::from_utf8_lossy(&body).chars().take(200).collect(),
                    leader,
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
        // A challenge is the coordinator's handshake, answered at once: no problem.
        if !self.challenged {
            self.account(&hb, &outcome, rtt);
        }
        outcome
    }

    /// Metrics, logs (once per distinct problem), the ack latch and interval changes.
    fn account(&mut self, hb: &Heartbeat, outcome: &SendOutcome, rtt: f64) {
        match outcome {
            SendOutcome::Accepted(ack) => {
                self.metrics.heartbeat_sent(SendResult::Ok, Some(rtt));
                self.health.set_acked();
                if self.last_problem.take().is_some() {
                    tracing::info!(seq = hb.seq, url = %self.url, "coordinator accepts heartbeats again");
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
            SendOutcome::Rejected {
                code,
                message,
                leader,
                ..
            } => {
                self.metrics.heartbeat_sent(SendResult::Rejected, Some(rtt));
                // A follower naming the leader is no problem: the switch is logged.
                let redirect = leader.is_some() && code == ErrorCode::NotLeader.as_str();
                if !redirect && self.last_problem.as_deref() != Some(code) {
                    tracing::warn!(seq = hb.seq, %code, %message, url = %self.url, "coordinator rejected a heartbeat");
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
