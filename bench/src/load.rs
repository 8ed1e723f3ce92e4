//! The heartbeat load generator: simulated agents with real node keys and signatures,
//! spread over keep-alive HTTP/1.1 connections, sending at a fixed aggregate rate
//! (open loop: latency counts from the moment a request was *due*, so a slow
//! coordinator cannot hide behind back-pressure).
//!
//! Requests go out through [`Wire`], a lean keep-alive client in the style of `wrk`:
//! the generator shares the machine with the coordinator, so every microsecond it
//! spends is taken from the system under test.

use crate::wire::Wire;
use anyhow::Result;
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use torua_protocol::{authorization_header, derive_node_key, sign, NodeKey};

/// One simulated agent: its id, key and replay state. Shardless by default (see
/// [`body_with`]).
pub struct SimNode {
    pub id: String,
    key: NodeKey,
    incarnation: u64,
    seq: u64,
    /// Advertise `max_shards: 0` (see [`body_with`]).
    pub shardless: bool,
    /// The coordinator nonce to echo, once one answered.
    pub nonce: Option<String>,
}

impl SimNode {
    pub fn new(secret: &[u8], id: String, incarnation: u64) -> SimNode {
        SimNode {
            key: derive_node_key(secret, &id),
            id,
            incarnation,
            seq: 0,
            shardless: true,
            nonce: None,
        }
    }

    /// The next heartbeat (seq + 1, sent now) and its `Authorization` header.
    pub fn next(&mut self, interval_ms: u64) -> (Vec<u8>, String) {
        self.seq += 1;
        let mut body = body_with(
            &self.id,
            self.incarnation,
            self.seq,
            now_ms(),
            interval_ms,
            self.shardless,
        );
        if let Some(n) = &self.nonce {
            // The template ends with the capacity object's and the body's braces.
            body.pop();
            write!(body, r#","coordinator_nonce":"{n}"}}"#).expect("write to Vec");
        }
        let auth = authorization_header(&self.id, &sign(&self.key, &body));
        (body, auth)
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A SPEC §2 heartbeat like a real agent's (one http check, two disk metrics),
/// written from a template: serde would cost the generator more than the format.
/// `shardless` adds `"max_shards":0` so placement never sends shards to
/// the simulated node. Node `id` claims to serve at `http://<id>.invalid:9`: one
/// address per node (two live nodes may not share one), on a name that never
/// resolves (`.invalid`, RFC 2606).
pub fn body_with(
    id: &str,
    incarnation: u64,
    seq: u64,
    sent_at_ms: u64,
    interval_ms: u64,
    shardless: bool,
) -> Vec<u8> {
    let mut b = Vec::with_capacity(440);
    write!(
        b,
        concat!(
            r#"{{"v":1,"node_id":"{}","incarnation":{},"seq":{},"sent_at_ms":{},"#,
            r#""interval_ms":{},"node_addr":"http://{}.invalid:9","state":"running","liveness":"pass","#,
            r#""readiness":"pass","checks":[{{"name":"node-http","kind":"http","#,
            r#""status":"pass","duration_ms":0.8,"message":"200 OK"}}],"#,
            r#""metrics":{{"disk_free_bytes":1.2e11,"disk_total_bytes":2.5e11}},"#,
            r#""capacity":{{"weight":1.0{}}}}}"#
        ),
        id,
        incarnation,
        seq,
        sent_at_ms,
        interval_ms,
        id,
        if shardless { r#","max_shards":0"# } else { "" }
    )
    .expect("write to Vec");
    b
}

/// The simulated fleet, `nodes` agents named `bench-<i>` declaring `interval_ms`,
/// split over `connections`.
pub fn fleet(
    secret: &[u8],
    nodes: usize,
    connections: usize,
    addr: SocketAddr,
    interval_ms: u64,
) -> Vec<Conn> {
    let incarnation = now_ms();
    let connections = connections.clamp(1, nodes.max(1));
    let mut conns: Vec<Conn> = (0..connections)
        .map(|_| Conn {
            addr,
            wire: None,
            nodes: Vec::new(),
            next: 0,
            interval_ms,
        })
        .collect();
    for i in 0..nodes {
        conns[i % connections]
            .nodes
            .push(SimNode::new(secret, format!("bench-{i}"), incarnation));
    }
    conns
}

/// One keep-alive connection and the simulated nodes that take turns on it.
pub struct Conn {
    addr: SocketAddr,
    wire: Option<Wire>,
    pub nodes: Vec<SimNode>,
    next: usize,
    /// The interval the simulated agents declare.
    interval_ms: u64,
}

/// What a step of load produced.
pub struct Tally {
    /// Due time → answer, µs.
    pub latency: Histogram<u64>,
    /// Actual send → answer, µs (no queueing behind earlier requests).
    pub service: Histogram<u64>,
    pub accepted: u64,
    /// Non-200 answers by error code.
    pub rejected: BTreeMap<String, u64>,
    /// Connection or protocol errors (no answer).
    pub errors: u64,
    /// Requests that were due but never sent before the step's grace ran out.
    pub unsent: u64,
}

impl Tally {
    pub fn new() -> Tally {
        Tally {
            latency: Histogram::new_with_bounds(1, 120_000_000, 3).expect("bounds"),
            service: Histogram::new_with_bounds(1, 120_000_000, 3).expect("bounds"),
            accepted: 0,
            rejected: BTreeMap::new(),
            errors: 0,
            unsent: 0,
        }
    }

    pub fn merge(&mut self, other: &Tally) {
        let _ = self.latency.add(&other.latency);
        let _ = self.service.add(&other.service);
        self.accepted += other.accepted;
        for (k, v) in &other.rejected {
            *self.rejected.entry(k.clone()).or_default() += v;
        }
        self.errors += other.errors;
        self.unsent += other.unsent;
    }

    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }
}

impl Default for Tally {
    fn default() -> Self {
        Tally::new()
    }
}

pub enum Outcome {
    Accepted,
    Rejected(String),
}

impl Conn {
    /// Sends the next node's heartbeat and waits for the answer.
    pub async fn send_one(&mut self) -> Result<Outcome> {
        let wire = match &mut self.wire {
            Some(w) => w,
            None => self.wire.insert(Wire::connect(self.addr).await?),
        };
        let i = self.next;
        self.next = (self.next + 1) % self.nodes.len();
        let mut challenged = false;
        let (status, body) = loop {
            let (body, auth) = self.nodes[i].next(self.interval_ms);
            let status = match wire.post("/v1/heartbeat", &auth, &body).await {
                Ok((status, _)) => status,
                Err(e) => {
                    self.wire = None;
                    return Err(e);
                }
            };
            // A node's first heartbeat to a coordinator process is asked to echo its
            // nonce, as a real agent does: once per node, at registration.
            if status == 409 && !challenged && wire.nonce != self.nodes[i].nonce {
                self.nodes[i].nonce = wire.nonce.clone();
                challenged = true;
                continue;
            }
            break (status, wire.last_body());
        };
        if status == 200 {
            return Ok(Outcome::Accepted);
        }
        let code = serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v["error"]["code"].as_str().map(str::to_string))
            .unwrap_or_else(|| format!("http_{status}"));
        Ok(Outcome::Rejected(code))
    }

    /// Closed loop: one heartbeat for each of this connection's nodes, back to back.
    pub async fn register_all(mut self) -> (Conn, Tally) {
        let mut t = Tally::new();
        for _ in 0..self.nodes.len() {
            let sent = Instant::now();
            match self.send_one().await {
                Ok(o) => {
                    let _ = t.service.record(sent.elapsed().as_micros().max(1) as u64);
                    match o {
                        Outcome::Accepted => t.accepted += 1,
                        Outcome::Rejected(code) => *t.rejected.entry(code).or_default() += 1,
                    }
                }
                Err(_) => t.errors += 1,
            }
        }
        (self, t)
    }
}

/// One connection's side of an open-loop step, for any system under test.
pub trait Sender: Send + 'static {
    /// Sends one request and waits for its answer.
    fn send(&mut self) -> impl Future<Output = Result<Outcome>> + Send;
}

impl Sender for Conn {
    fn send(&mut self) -> impl Future<Output = Result<Outcome>> + Send {
        self.send_one()
    }
}

/// Open loop: request k is due at `start + offset + k * period` until `end`, and its
/// latency counts from that due time; due requests still unsent at `end + grace` are
/// counted as `unsent`.
async fn run_open<S: Sender>(
    mut sender: S,
    start: Instant,
    offset: Duration,
    period: Duration,
    end: Instant,
) -> (S, Tally) {
    let grace = Duration::from_secs(2);
    let mut t = Tally::new();
    let mut k: u32 = 0;
    loop {
        let due = start + offset + period * k;
        if due >= end {
            break;
        }
        let now = Instant::now();
        if now > end + grace {
            let left = (end.duration_since(due).as_secs_f64() / period.as_secs_f64()) as u64;
            t.unsent += left + 1;
            break;
        }
        if due > now {
            tokio::time::sleep_until(due.into()).await;
        }
        let sent = Instant::now();
        let outcome = sender.send().await;
        let done = Instant::now();
        match outcome {
            Ok(o) => {
                let _ = t
                    .latency
                    .record(done.duration_since(due).as_micros().max(1) as u64);
                let _ = t
                    .service
                    .record(done.duration_since(sent).as_micros().max(1) as u64);
                match o {
                    Outcome::Accepted => t.accepted += 1,
                    Outcome::Rejected(code) => *t.rejected.entry(code).or_default() += 1,
                }
            }
            Err(_) => t.errors += 1,
        }
        k += 1;
    }
    (sender, t)
}

/// Runs `senders` at an aggregate `rate`/s for `dur`, each connection staggered
/// evenly over one period; returns them (with their state advanced), the merged
/// tally and the wall time used.
pub async fn run_rate<S: Sender>(
    senders: Vec<S>,
    rate: f64,
    dur: Duration,
) -> (Vec<S>, Tally, Duration) {
    let n = senders.len() as f64;
    let period = Duration::from_secs_f64(n / rate);
    let start = Instant::now() + Duration::from_millis(20);
    let end = start + dur;
    let handles: Vec<_> = senders
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            tokio::spawn(run_open(
                c,
                start,
                period.mul_f64(i as f64 / n),
                period,
                end,
            ))
        })
        .collect();
    collect(handles, start).await
}

/// One heartbeat per node, as fast as the connections go (registers a fleet).
pub async fn register(conns: Vec<Conn>) -> (Vec<Conn>, Tally, Duration) {
    let start = Instant::now();
    let handles: Vec<_> = conns
        .into_iter()
        .map(|c| tokio::spawn(c.register_all()))
        .collect();
    collect(handles, start).await
}

async fn collect<S>(
    handles: Vec<tokio::task::JoinHandle<(S, Tally)>>,
    start: Instant,
) -> (Vec<S>, Tally, Duration) {
    let mut conns = Vec::with_capacity(handles.len());
    let mut total = Tally::new();
    for h in handles {
        let (c, t) = h.await.expect("load task panicked");
        total.merge(&t);
        conns.push(c);
    }
    (conns, total, start.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_is_a_valid_heartbeat() {
        let b = body_with(
            "bench-7",
            1_700_000_000_000,
            3,
            1_700_000_000_500,
            1000,
            false,
        );
        let hb = torua_protocol::decode_heartbeat(&b).expect("decodes");
        assert_eq!(hb.node_id, "bench-7");
        assert_eq!(hb.seq, 3);
        assert_eq!(hb.checks.len(), 1);
        assert_eq!(hb.metrics.len(), 2);
        assert_eq!(hb.node_addr, "http://bench-7.invalid:9");
        assert_eq!(hb.capacity.max_shards, None);
        let b = body_with("bench-7", 1, 1, 2, 1000, true);
        let hb = torua_protocol::decode_heartbeat(&b).expect("decodes");
        assert_eq!(hb.capacity.max_shards, Some(0));
        let mut n = SimNode::new(b"secret", "bench-8".into(), 1);
        n.nonce = Some("00ff".into());
        let hb = torua_protocol::decode_heartbeat(&n.next(1000).0).expect("decodes");
        assert_eq!(hb.coordinator_nonce.as_deref(), Some("00ff"));
    }
}
