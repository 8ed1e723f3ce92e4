//! Calls from the coordinator to storage nodes (the node API of SPEC §5), each with a
//! timeout: a wedged node costs a bounded wait, never a stuck task. Every call but
//! the probe is signed with the called node's key (`torua_protocol::node_call`), and
//! a pull carries a ticket signed with the source node's key.

use crate::reach::{Change, Reach, ReachPolicy};
use crate::secrets::KeyRing;
use crate::wall::unix_ms;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use thiserror::Error;
use tokio::sync::mpsc;
use torua_protocol::node_api::{
    AssignRequest, KeyList, PullRequest, Role, ShardInfo, ShardList, EPOCH_HEADER, SHARD_HEADER,
    VERSION_HEADER,
};
use torua_protocol::node_call::{
    is_boot_id, sign_call_header, signed_header_values, Call, Nonce, Ticket, BOOT_HEADER,
    NONCE_BYTES, TICKET_LIFETIME_MS, TIME_HEADER, UNKNOWN_BOOT,
};
use torua_protocol::{ErrorCode, NodeKey};

/// Bytes of a key that travel unescaped in a node URL path.
const KEY_ESCAPE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

const CONTROL_TIMEOUT: Duration = Duration::from_secs(2);
/// The same for a node that has been slow or silent lately.
const SUSPECT_CONTROL_TIMEOUT: Duration = Duration::from_millis(250);
/// Longest a key listing may take (client writes take the coordinator's
/// `write_timeout`).
const LIST_TIMEOUT: Duration = Duration::from_secs(3);
/// Reads from one node. Short, because a holder that hangs this long is skipped for
/// a replica (hedged reads ask the replica much sooner); a 16 MiB value takes
/// milliseconds on a healthy network.
const READ_TIMEOUT: Duration = Duration::from_millis(1500);
const COPY_TIMEOUT: Duration = Duration::from_secs(300);
/// Largest response read from a node: a 16 MiB value plus headroom.
const MAX_RESPONSE: usize = 17 * 1024 * 1024;

#[derive(Debug, Clone, Error, PartialEq)]
pub enum CallError {
    #[error("{addr} unreachable: {message}")]
    Unreachable { addr: String, message: String },
    #[error("{addr} timed out after {after:?}")]
    Timeout { addr: String, after: Duration },
    /// The node holds a newer version of the key than the write carried.
    #[error("{addr} holds version {held} of the key, newer than the write")]
    Superseded { addr: String, held: u64 },
    /// The node holds the shard at an older epoch: it missed an assignment.
    #[error("{addr} holds the shard at epoch {held}: it missed an assignment")]
    Behind { addr: String, held: u64 },
    /// The node holds the shard at a newer epoch than the request: this
    /// coordinator's copy of the map is behind (a follower's, before its watch
    /// delivers the change).
    #[error("{addr} holds the shard at a newer epoch: this coordinator's map is behind")]
    Ahead { addr: String },
    #[error("{addr} answered {status}: {message}")]
    Status {
        addr: String,
        status: u16,
        message: String,
    },
}

#[derive(Clone)]
pub struct NodeClient {
    http: Client<HttpConnector, Full<Bytes>>,
    /// Every call's outcome is recorded here: the hedge delays and the
    /// coordinator's own evidence of each node's reachability.
    pub reach: Arc<Reach>,
    /// Where reachability changes go (the health side); none in unit tests.
    changes: Option<mpsc::UnboundedSender<Change>>,
    /// Signs calls and issues tickets; none only in unit tests that call no node.
    signer: Option<Arc<Signer>>,
}

/// Most node keys kept; past it the cache starts over (a cluster has far fewer nodes;
/// this only bounds a map keyed by ids that come and go).
const MAX_CACHED_KEYS: usize = 65_536;

/// Signs with each node's key derived from the current cluster secret, cached per
/// node: deriving costs two HMAC key setups and a MAC (285 ns in the `micro` bench),
/// a cached key a map lookup under a read lock (18 ns), next to 575 ns for signing a
/// call with a 100-byte body.
///
/// A call is signed for the node's current start (its boot id) at the node's time,
/// both learnt from the node's answers (`Torua-Node-Boot`, `Torua-Node-Time`): so a
/// call captured before a node restart is void after it, and this process's clock may
/// be off by any amount (an NTP step, a restored VM) without the nodes refusing its
/// calls. The first call to a node this process has not heard from, and the first
/// after the node restarts, is refused with the node's boot id and signed again at
/// once ([`NodeClient::call`]).
struct Signer {
    ring: Arc<KeyRing>,
    keys: RwLock<HashMap<String, NodeKey>>,
    /// Each node's current start as last heard, by node id.
    views: RwLock<HashMap<String, View>>,
    /// Nonces: 8 random bytes per process, then a counter, so no two calls of this
    /// process (or, with overwhelming odds, of two processes) share one, at no
    /// syscall per call. A node needs them unique, not secret.
    nonce_prefix: [u8; 8],
    nonce_counter: AtomicU64,
}

impl Signer {
    fn new(ring: Arc<KeyRing>) -> Signer {
        let mut nonce_prefix = [0u8; 8];
        let urandom = std::fs::File::open("/dev/urandom")
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut nonce_prefix));
        if urandom.is_err() {
            // Uniqueness is all a nonce needs; the counter gives it within a process.
            nonce_prefix = fastrand::u64(..).to_be_bytes();
        }
        Signer {
            ring,
            keys: RwLock::new(HashMap::new()),
            views: RwLock::new(HashMap::new()),
            nonce_prefix,
            nonce_counter: AtomicU64::new(0),
        }
    }

    fn with_key<T>(&self, node: &str, f: impl FnOnce(&NodeKey) -> T) -> T {
        if let Some(k) = self
            .keys
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(node)
        {
            return f(k);
        }
        let key = self.ring.node_keys(node).current;
        let out = f(&key);
        let mut keys = self.keys.write().unwrap_or_else(|p| p.into_inner());
        if keys.len() >= MAX_CACHED_KEYS {
            keys.clear();
        }
        keys.insert(node.to_string(), key);
        out
    }

    fn nonce(&self) -> Nonce {
        let mut n = [0u8; NONCE_BYTES];
        n[..8].copy_from_slice(&self.nonce_prefix);
        let count = self.nonce_counter.fetch_add(1, Ordering::Relaxed);
        n[8..].copy_from_slice(&count.to_be_bytes());
        n
    }

    fn view(&self, node: &str) -> Option<View> {
        self.views
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(node)
            .cloned()
    }

    /// Learns `node`'s boot id and clock from an answer's headers; true if that
    /// changed what this process signs for (a new boot id, or the clock estimate off
    /// by more than [`View::CLOCK_SLACK_MS`]).
    fn learn(&self, node: &str, boot: Option<&str>, node_time_ms: Option<u64>) -> bool {
        let (Some(boot), Some(time)) = (boot, node_time_ms) else {
            return false;
        };
        if !is_boot_id(boot) || boot == UNKNOWN_BOOT {
            return false;
        }
        let heard = View {
            boot: boot.to_string(),
            offset_ms: time as i64 - unix_ms() as i64,
        };
        if self.view(node).is_some_and(|v| {
            v.boot == heard.boot && v.offset_ms.abs_diff(heard.offset_ms) <= View::CLOCK_SLACK_MS
        }) {
            return false;
        }
        let mut views = self.views.write().unwrap_or_else(|p| p.into_inner());
        if views.len() >= MAX_CACHED_KEYS {
            views.clear();
        }
        views.insert(node.to_string(), heard);
        true
    }

    /// The `Authorization` value of a call to `node`, for the start of it last heard
    /// of and on its clock.
    fn authorization(
        &self,
        node: &str,
        method: &Method,
        path_and_query: &str,
        headers: &[(&str, String)],
        body: &[u8],
    ) -> String {
        let view = self.view(node);
        let call = Call {
            method: method.as_str(),
            path_and_query,
            node,
            boot: view.as_ref().map_or(UNKNOWN_BOOT, |v| &v.boot),
            ts_ms: View::node_time(view.as_ref()),
            nonce: self.nonce(),
            headers: signed_header_values(headers),
        };
        self.with_key(node, |key| sign_call_header(key, &call, body))
    }

    /// A ticket for `dest` to read `shard` at `epoch` from `source`, expiring on the
    /// source's clock.
    fn ticket(&self, shard: u32, epoch: u64, source: &str, dest: &str) -> String {
        let ticket = Ticket {
            shard,
            epoch,
            source: source.to_string(),
            dest: dest.to_string(),
            expires_ms: View::node_time(self.view(source).as_ref()) + TICKET_LIFETIME_MS,
        };
        self.with_key(source, |key| ticket.sign(key))
    }
}

/// One start of a node as this process last heard of it.
#[derive(Debug, Clone, PartialEq)]
struct View {
    boot: String,
    /// The node's clock minus this process's, in ms (as of the answer; the answer's
    /// travel time is the error).
    offset_ms: i64,
}

impl View {
    /// Offsets within this of the last one are not news: answers take time to arrive.
    const CLOCK_SLACK_MS: u64 = 1_000;

    /// Now on the node's clock, as far as this process knows it.
    fn node_time(view: Option<&View>) -> u64 {
        let offset = view.map_or(0, |v| v.offset_ms);
        (unix_ms() as i64).saturating_add(offset).max(0) as u64
    }
}

/// A node to call: its id (whose key signs the call) and its address.
#[derive(Debug, Clone, Copy)]
pub struct To<'a> {
    pub node: &'a str,
    pub addr: &'a str,
}

/// Where a client write lands: the shard, its epoch (the node's fence) and the
/// write's version.
#[derive(Debug, Clone, Copy)]
pub struct WriteAt {
    pub shard: u32,
    pub epoch: u64,
    pub version: u64,
}

/// What a node holds for a key: its value (`None`: absent or deleted) and the
/// version of the write that left it so (0 if the node did not say: never
/// written, or a node that sends no `Torua-Version`).
pub struct Held {
    pub value: Option<Bytes>,
    pub version: u64,
}

/// A node's answer: status, the `Torua-Version` and `Torua-Epoch` headers if any,
/// and the body; `relearned` when its boot id or clock changed what calls to it are
/// signed for.
struct Answer {
    status: StatusCode,
    version: Option<u64>,
    epoch: Option<u64>,
    body: Bytes,
    relearned: bool,
}

impl Default for NodeClient {
    fn default() -> Self {
        NodeClient::new(
            ReachPolicy {
                unreachable_after: 3,
                reachable_after: 3,
            },
            None,
        )
    }
}

impl NodeClient {
    pub fn new(policy: ReachPolicy, changes: Option<mpsc::UnboundedSender<Change>>) -> Self {
        let mut conn = HttpConnector::new();
        conn.set_nodelay(true);
        // A LAN connect takes well under a millisecond; a node whose SYNs are
        // dropped (partitioned) must not hold a request longer than this.
        conn.set_connect_timeout(Some(Duration::from_millis(500)));
        NodeClient {
            http: Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build(conn),
            reach: Arc::new(Reach::new(policy)),
            changes,
            signer: None,
        }
    }

    /// Signs every call from now on with keys derived from `ring`'s current secret.
    pub fn sign_with(&mut self, ring: Arc<KeyRing>) {
        self.signer = Some(Arc::new(Signer::new(ring)));
    }

    /// Records a call's outcome; a change of reachability goes to the health side.
    fn record(
        &self,
        addr: &str,
        (method, path): (&Method, &str),
        started: Instant,
        result: &Result<Answer, CallError>,
    ) {
        let read = method == Method::GET && path.starts_with("/v1/data/");
        let now = Instant::now();
        let change = match result {
            Ok(_) => self.reach.answered(addr, now - started, read, now),
            Err(e) => self
                .reach
                .failed(addr, call_kind(method, path), &e.to_string(), now),
        };
        if let (Some(c), Some(tx)) = (change, &self.changes) {
            let _ = tx.send(c);
        }
    }

    /// Calls `to`, signing the call unless `to.node` is `None` (the open probes). A
    /// signed call refused 401 by a node whose answer taught this process its new boot
    /// id or clock (the first call to it, the first after it restarted) is signed
    /// again and sent once more, within the same `timeout`.
    async fn call(
        &self,
        method: Method,
        to: (Option<&str>, &str),
        path: &str,
        headers: &[(&str, String)],
        body: Bytes,
        timeout: Duration,
    ) -> Result<Answer, CallError> {
        let addr = to.1;
        let fut = async {
            let answer = self
                .send(method.clone(), to, path, headers, body.clone())
                .await?;
            if answer.status == StatusCode::UNAUTHORIZED && answer.relearned {
                return self.send(method.clone(), to, path, headers, body).await;
            }
            Ok(answer)
        };
        let started = Instant::now();
        let result = tokio::time::timeout(timeout, fut)
            .await
            .map_err(|_| CallError::Timeout {
                addr: addr.into(),
                after: timeout,
            })
            .and_then(|r| r);
        self.record(addr, (&method, path), started, &result);
        result
    }

    /// One request: signed (when `to` names the node), sent, answered.
    async fn send(
        &self,
        method: Method,
        to: (Option<&str>, &str),
        path: &str,
        headers: &[(&str, String)],
        body: Bytes,
    ) -> Result<Answer, CallError> {
        let (node, addr) = to;
        let url = format!("{}{path}", addr.trim_end_matches('/'));
        let mut req = Request::builder().method(method.clone()).uri(&url);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        if let (Some(node), Some(signer)) = (node, &self.signer) {
            // Signed over the request target exactly as it goes on the wire.
            let target = req
                .uri_ref()
                .and_then(|u| u.path_and_query())
                .map_or(path, |p| p.as_str());
            let auth = signer.authorization(node, &method, target, headers, &body);
            req = req.header(hyper::header::AUTHORIZATION, auth);
        }
        let req = req
            .body(Full::new(body))
            .map_err(|e| CallError::Unreachable {
                addr: addr.into(),
                message: e.to_string(),
            })?;
        let resp = self
            .http
            .request(req)
            .await
            .map_err(|e| CallError::Unreachable {
                addr: addr.into(),
                message: e.to_string(),
            })?;
        let status = resp.status();
        let text = |name: &str| resp.headers().get(name)?.to_str().ok();
        let number = |name: &str| -> Option<u64> { text(name)?.parse().ok() };
        let (version, epoch) = (number(VERSION_HEADER), number(EPOCH_HEADER));
        let relearned = match (node, &self.signer) {
            (Some(node), Some(signer)) => {
                signer.learn(node, text(BOOT_HEADER), number(TIME_HEADER))
            }
            _ => false,
        };
        let body = Limited::new(resp.into_body(), MAX_RESPONSE)
            .collect()
            .await
            .map_err(|e| CallError::Unreachable {
                addr: addr.into(),
                message: e.to_string(),
            })?
            .to_bytes();
        Ok(Answer {
            status,
            version,
            epoch,
            body,
            relearned,
        })
    }

    async fn expect_ok(
        &self,
        method: Method,
        to: To<'_>,
        path: &str,
        headers: &[(&str, String)],
        body: Bytes,
        timeout: Duration,
    ) -> Result<Bytes, CallError> {
        let answer = self
            .call(
                method,
                (Some(to.node), to.addr),
                path,
                headers,
                body,
                timeout,
            )
            .await?;
        if answer.status.is_success() {
            Ok(answer.body)
        } else {
            Err(refusal(to.addr, &answer))
        }
    }

    /// Sends a JSON control body and expects a 2xx answer.
    async fn send_json(
        &self,
        method: Method,
        to: To<'_>,
        path: &str,
        body: &impl Serialize,
        timeout: Duration,
    ) -> Result<(), CallError> {
        // The node API's bodies are plain structs of numbers and strings: serialising
        // them cannot fail.
        let body = serde_json::to_vec(body).expect("node API body serialises");
        self.expect_ok(
            method,
            to,
            path,
            &[("content-type", "application/json".into())],
            body.into(),
            timeout,
        )
        .await
        .map(drop)
    }

    /// GETs `path` and parses the 2xx answer as `T`; `what` names it in an error.
    async fn get_json<T: DeserializeOwned>(
        &self,
        to: To<'_>,
        path: &str,
        timeout: Duration,
        what: &str,
    ) -> Result<T, CallError> {
        let body = self
            .expect_ok(Method::GET, to, path, &[], Bytes::new(), timeout)
            .await?;
        serde_json::from_slice(&body).map_err(|e| CallError::Status {
            addr: to.addr.into(),
            status: 200,
            message: format!("bad {what}: {e}"),
        })
    }

    /// Tells a node it holds `shard` at `epoch` in `role`; `reset` clears its data first.
    pub async fn assign(
        &self,
        to: To<'_>,
        shard: u32,
        epoch: u64,
        role: Role,
        reset: bool,
    ) -> Result<(), CallError> {
        let body = AssignRequest { epoch, role, reset };
        let path = format!("/v1/shards/{shard}");
        // A map change waits for its pushes, and requests wait for the change: a
        // holder already slow or unreachable gets a short deadline (it is evicted
        // or told again later if it misses the push).
        let timeout = if self.reach.is_slow(to.addr, Instant::now()) {
            SUSPECT_CONTROL_TIMEOUT
        } else {
            CONTROL_TIMEOUT
        };
        self.send_json(Method::PUT, to, &path, &body, timeout).await
    }

    pub async fn drop_shard(&self, to: To<'_>, shard: u32, epoch: u64) -> Result<(), CallError> {
        self.expect_ok(
            Method::DELETE,
            to,
            &format!("/v1/shards/{shard}?epoch={epoch}"),
            &[],
            Bytes::new(),
            CONTROL_TIMEOUT,
        )
        .await
        .map(drop)
    }

    /// The shards a node actually holds, with their epochs.
    pub async fn held_shards(&self, to: To<'_>) -> Result<HashMap<u32, u64>, CallError> {
        let shards = self.shard_infos(to, CONTROL_TIMEOUT).await?;
        Ok(shards.into_iter().map(|s| (s.id, s.epoch)).collect())
    }

    /// Everything `GET /v1/shards` says of the node's shards: epochs, roles, sizes
    /// and the load counters (zero from a node too old to send them).
    pub async fn shard_infos(
        &self,
        to: To<'_>,
        timeout: Duration,
    ) -> Result<Vec<ShardInfo>, CallError> {
        let list: ShardList = self
            .get_json(to, "/v1/shards", timeout, "shard list")
            .await?;
        Ok(list.shards)
    }

    /// Has `to` copy `shard` from `from` (snapshot stream; live writes keep
    /// arriving), showing `from` a ticket signed with `from`'s key.
    pub async fn pull(
        &self,
        to: To<'_>,
        shard: u32,
        epoch: u64,
        from: To<'_>,
    ) -> Result<(), CallError> {
        let body = PullRequest {
            epoch,
            from: from.addr.to_owned(),
            ticket: self
                .signer
                .as_ref()
                .map(|s| s.ticket(shard, epoch, from.node, to.node)),
        };
        let path = format!("/v1/shards/{shard}/pull");
        self.send_json(Method::POST, to, &path, &body, COPY_TIMEOUT)
            .await
    }

    fn data_headers(shard: u32, epoch: u64, version: Option<u64>) -> Vec<(&'static str, String)> {
        let mut h = vec![
            (SHARD_HEADER, shard.to_string()),
            (EPOCH_HEADER, epoch.to_string()),
        ];
        if let Some(v) = version {
            h.push((VERSION_HEADER, v.to_string()));
        }
        h
    }

    /// A cheap liveness probe of the node's API (`GET /readyz`): the coordinator's
    /// own evidence that it can reach the node, for nodes it has not called lately.
    /// Unsigned: `/readyz` is open.
    pub async fn probe(&self, addr: &str, timeout: Duration) -> Result<(), CallError> {
        self.call(
            Method::GET,
            (None, addr),
            "/readyz",
            &[],
            Bytes::new(),
            timeout,
        )
        .await
        .map(drop)
    }

    /// Writes `key` (`Some(value)`) or deletes it (`None`) as `at` says.
    pub async fn write(
        &self,
        to: To<'_>,
        key: &str,
        at: WriteAt,
        value: Option<Bytes>,
        timeout: Duration,
    ) -> Result<(), CallError> {
        let (method, body) = match value {
            Some(v) => (Method::PUT, v),
            None => (Method::DELETE, Bytes::new()),
        };
        let headers = Self::data_headers(at.shard, at.epoch, Some(at.version));
        let answer = self
            .call(
                method,
                (Some(to.node), to.addr),
                &data_path(key),
                &headers,
                body,
                timeout,
            )
            .await?;
        if answer.status.is_success() {
            Ok(())
        } else {
            Err(refusal(to.addr, &answer))
        }
    }

    /// `Ok(None)` when the node holds the shard but not the key.
    pub async fn get(
        &self,
        to: To<'_>,
        key: &str,
        shard: u32,
        epoch: u64,
    ) -> Result<Held, CallError> {
        let answer = self
            .call(
                Method::GET,
                (Some(to.node), to.addr),
                &data_path(key),
                &Self::data_headers(shard, epoch, None),
                Bytes::new(),
                READ_TIMEOUT,
            )
            .await?;
        let version = answer.version.unwrap_or(0);
        match answer.status {
            StatusCode::OK => Ok(Held {
                value: Some(answer.body),
                version,
            }),
            StatusCode::NOT_FOUND => Ok(Held {
                value: None,
                version,
            }),
            _ => Err(refusal(to.addr, &answer)),
        }
    }

    /// One page of a shard's live keys under `prefix`: after `after`, at most
    /// `limit`, sorted.
    pub async fn list(
        &self,
        to: To<'_>,
        shard: u32,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, CallError> {
        let mut path = format!(
            "/v1/data?shard={shard}&prefix={}&limit={limit}",
            utf8_percent_encode(prefix, KEY_ESCAPE)
        );
        if let Some(a) = after {
            path.push_str("&after=");
            path.extend(utf8_percent_encode(a, KEY_ESCAPE));
        }
        let list: KeyList = self.get_json(to, &path, LIST_TIMEOUT, "key list").await?;
        Ok(list.keys)
    }
}

/// The kind of a node API call, for `torua_node_call_failures_total{call}`.
fn call_kind(method: &Method, path: &str) -> &'static str {
    match (method, path) {
        (&Method::GET, p) if p.starts_with("/v1/data") => "read",
        (_, p) if p.starts_with("/v1/data") => "write",
        (&Method::GET, "/v1/shards") => "audit",
        (&Method::POST, p) if p.ends_with("/pull") => "pull",
        (_, p) if p.starts_with("/v1/shards/") => "assign",
        (_, "/readyz") => "probe",
        _ => "other",
    }
}

fn data_path(key: &str) -> String {
    format!("/v1/data/{}", utf8_percent_encode(key, KEY_ESCAPE))
}

/// A node's non-2xx answer as an error: the two refusals the coordinator acts on
/// (`superseded` with the held version; a missed assignment with the held epoch)
/// get their own variants.
fn refusal(addr: &str, answer: &Answer) -> CallError {
    let code = serde_json::from_slice::<torua_protocol::ErrorBody>(&answer.body)
        .map(|e| e.error.code)
        .ok();
    match (answer.status, code, answer.version, answer.epoch) {
        (StatusCode::CONFLICT, Some(ErrorCode::Superseded), Some(held), _) => {
            CallError::Superseded {
                addr: addr.into(),
                held,
            }
        }
        (StatusCode::CONFLICT, Some(ErrorCode::Conflict), _, Some(held)) => CallError::Behind {
            addr: addr.into(),
            held,
        },
        (StatusCode::CONFLICT, Some(ErrorCode::Stale), _, _) => {
            CallError::Ahead { addr: addr.into() }
        }
        _ => status_error(addr, answer.status, &answer.body),
    }
}

fn status_error(addr: &str, status: StatusCode, body: &[u8]) -> CallError {
    let message = serde_json::from_slice::<torua_protocol::ErrorBody>(body)
        .map(|e| e.error.message)
        .unwrap_or_else(|_| String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned());
    CallError::Status {
        addr: addr.into(),
        status: status.as_u16(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use torua_protocol::node_call::{parse_call_authorization, verify_call};

    const SECRET: &[u8] = b"torua unit-test secret, 32 bytes";

    /// A node that answers each connection's first request with `body` (after
    /// `delay`) and hands the request's head to the test.
    async fn fake_node(
        body: &'static str,
        delay: Duration,
    ) -> (String, mpsc::UnboundedReceiver<String>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = tx.send(String::from_utf8_lossy(&head).into_owned());
                tokio::time::sleep(delay).await;
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                     content-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            }
        });
        (addr, rx)
    }

    #[tokio::test]
    async fn shard_infos_reads_the_load_counters_and_older_nodes_without_them() {
        let mut client = NodeClient::default();
        client.sign_with(Arc::new(KeyRing::from_secret(SECRET.to_vec())));
        let (addr, mut heads) = fake_node(
            r#"{"shards":[{"id":3,"epoch":7,"role":"primary","keys":1,"bytes":6,"reads":40,"writes":2,"read_bytes":200,"write_bytes":10},{"id":4,"epoch":2,"role":"replica","keys":0,"bytes":0}]}"#,
            Duration::ZERO,
        )
        .await;
        let to = To {
            node: "n1",
            addr: &addr,
        };
        let shards = client
            .shard_infos(to, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(
            shards
                .iter()
                .map(|s| (
                    s.id,
                    s.epoch,
                    s.reads,
                    s.writes,
                    s.read_bytes,
                    s.write_bytes
                ))
                .collect::<Vec<_>>(),
            vec![(3, 7, 40, 2, 200, 10), (4, 2, 0, 0, 0, 0)],
            "an older node's shard reads as no load"
        );
        let head = heads.recv().await.unwrap().to_ascii_lowercase();
        assert!(head.starts_with("get /v1/shards http/1.1\r\n"), "{head}");
        let auth = head
            .lines()
            .find_map(|l| l.strip_prefix("authorization: "))
            .unwrap_or_else(|| panic!("unsigned: {head}"));
        assert!(auth.contains("node=n1"), "signed with n1's key: {auth}");
        // The audit's view of the same answer.
        let held = client.held_shards(to).await.unwrap();
        assert_eq!(held, [(3, 7), (4, 2)].into_iter().collect());
    }

    #[tokio::test]
    async fn shard_infos_gives_up_on_a_node_that_does_not_answer_in_time() {
        let client = NodeClient::default();
        let (addr, _heads) = fake_node(r#"{"shards":[]}"#, Duration::from_secs(30)).await;
        let to = To {
            node: "n1",
            addr: &addr,
        };
        let started = Instant::now();
        let r = client.shard_infos(to, Duration::from_millis(200)).await;
        assert!(matches!(r, Err(CallError::Timeout { .. })), "{r:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn calls_are_signed_with_the_called_nodes_key_and_tickets_with_the_sources() {
        let signer = Signer::new(Arc::new(KeyRing::from_secret(SECRET.to_vec())));
        let headers = [
            (SHARD_HEADER, "3".to_string()),
            (EPOCH_HEADER, "7".to_string()),
            (VERSION_HEADER, "9".to_string()),
        ];
        let path = "/v1/data/a%2Fb";
        let auth = signer.authorization("n2", &Method::PUT, path, &headers, b"v");
        let parsed = parse_call_authorization(&auth).unwrap();
        assert_eq!(parsed.node, "n2");
        assert!(parsed.ts_ms.abs_diff(unix_ms()) < 5_000);
        assert_eq!(parsed.boot, UNKNOWN_BOOT, "no boot id heard of yet");
        let call = |node, headers: [&'static [u8]; 4]| Call {
            method: "PUT",
            path_and_query: path,
            node,
            boot: UNKNOWN_BOOT,
            ts_ms: parsed.ts_ms,
            nonce: parsed.nonce,
            headers,
        };
        let n2 = torua_protocol::derive_node_key(SECRET, "n2");
        let signed = call("n2", [b"3", b"7", b"9", b""]);
        assert!(verify_call(
            std::slice::from_ref(&n2),
            &signed,
            b"v",
            &parsed.sig
        ));
        assert!(!verify_call(
            std::slice::from_ref(&n2),
            &call("n2", [b"3", b"8", b"9", b""]),
            b"v",
            &parsed.sig
        ));
        let n1 = torua_protocol::derive_node_key(SECRET, "n1");
        assert!(!verify_call(
            std::slice::from_ref(&n1),
            &signed,
            b"v",
            &parsed.sig
        ));
        // The key is cached after the first call; the second signs the same way.
        assert_eq!(signer.keys.read().unwrap().len(), 1);
        let again = signer.authorization("n2", &Method::PUT, path, &headers, b"v");
        let again = parse_call_authorization(&again).unwrap();
        assert_ne!(again.nonce, parsed.nonce, "a fresh nonce per call");
        assert_eq!(again.nonce[..8], parsed.nonce[..8]);
        assert_eq!(signer.keys.read().unwrap().len(), 1);

        let ticket = signer.ticket(3, 7, "n1", "n2");
        let now = unix_ms();
        let t = Ticket::verify(&ticket, std::slice::from_ref(&n1), "n1", 3, now, 30_000).unwrap();
        assert_eq!((t.epoch, t.dest.as_str()), (7, "n2"));
        assert!(t.expires_ms >= now + TICKET_LIFETIME_MS - 5_000);
        assert!(Ticket::verify(&ticket, &[n2], "n1", 3, now, 30_000).is_err());

        // What n1's answers say is what calls and tickets are signed for: its boot
        // id, and its clock (here an hour behind this process's).
        let node_time = unix_ms() - 3_600_000;
        assert!(
            !signer.learn("n1", None, Some(node_time)),
            "no boot id: nothing learnt"
        );
        assert!(signer.learn("n1", Some("00112233aabbccdd"), Some(node_time)));
        assert!(
            !signer.learn("n1", Some("00112233aabbccdd"), Some(node_time + 500)),
            "not news"
        );
        let auth = signer.authorization("n1", &Method::GET, "/v1/shards", &[], b"");
        let parsed = parse_call_authorization(&auth).unwrap();
        assert_eq!(parsed.boot, "00112233aabbccdd");
        assert!(
            parsed.ts_ms.abs_diff(node_time) < 5_000,
            "signed on n1's clock"
        );
        let t = Ticket::parse(&signer.ticket(3, 7, "n1", "n2")).unwrap().0;
        assert!(t.expires_ms.abs_diff(node_time + TICKET_LIFETIME_MS) < 5_000);
        assert!(Ticket::verify(
            &signer.ticket(3, 7, "n1", "n2"),
            &[n1],
            "n1",
            3,
            node_time,
            30_000
        )
        .is_ok());
        // n1 restarted: a new boot id is news.
        assert!(signer.learn("n1", Some("99112233aabbccdd"), Some(node_time)));
    }
}
