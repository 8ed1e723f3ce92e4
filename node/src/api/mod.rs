//! HTTP routing of the node API, authentication, error mapping and request metrics.
//!
//! Every route but the probes is authenticated before it is routed
//! ([`App::admit`]): a caller without a valid signature learns nothing, not even
//! whether the path exists.

mod body;
mod data;
mod shards;

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE, WWW_AUTHENTICATE};
use hyper::http::request::Parts;
use hyper::{Method, Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use percent_encoding::percent_decode_str;
use serde::Serialize;
use torua_protocol::node_api::{
    ShardList, EPOCH_HEADER, MAX_VALUE_BYTES, TICKET_HEADER, VERSION_HEADER,
};
use torua_protocol::node_call::{Refusal, Ticket, BOOT_HEADER, CALL_SCHEME, TIME_HEADER};
use torua_protocol::{ErrorBody, ErrorCode};

pub use body::RespBody;
use body::{full, read_bounded};

use crate::auth::{unix_ms, Auth};
use crate::metrics::Metrics;
use crate::store::{Fence, Store, StoreError};

pub type HttpClient = Client<HttpConnector, Empty<Bytes>>;

/// Bodies other than a data `PUT`'s value (assignments, pulls; nothing for the rest)
/// are tiny; this bounds what a broken or hostile client can make the node read.
const JSON_LIMIT: usize = 64 * 1024;

/// Everything a request handler may touch.
pub struct App {
    pub node_id: String,
    pub store: Arc<Store>,
    pub metrics: Metrics,
    pub client: HttpClient,
    pub auth: Auth,
}

impl App {
    pub fn new(node_id: String, store: Store, auth: Auth) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(std::time::Duration::from_secs(5)));
        connector.set_nodelay(true);
        App {
            node_id,
            store: Arc::new(store),
            metrics: Metrics::new(),
            client: Client::builder(TokioExecutor::new()).build(connector),
            auth,
        }
    }

    /// Runs a store operation, off the async runtime when it may block on disk.
    pub async fn store_op<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> T + Send + 'static,
    ) -> T {
        if self.store.durable() {
            let store = self.store.clone();
            tokio::task::spawn_blocking(move || f(&store))
                .await
                .expect("store operation panicked")
        } else {
            f(&self.store)
        }
    }

    pub async fn handle(&self, req: Request<Incoming>) -> Response<RespBody> {
        let started = Instant::now();
        let (op, res) = self.route(req).await;
        let mut resp = res.unwrap_or_else(ApiError::into_response);
        // Who answered and when, for the coordinator to sign its next call for: this
        // start of the node (boot id) on this node's clock.
        let h = resp.headers_mut();
        if let Ok(boot) = HeaderValue::from_str(self.auth.boot()) {
            h.insert(BOOT_HEADER, boot);
        }
        h.insert(TIME_HEADER, HeaderValue::from(unix_ms()));
        self.metrics
            .request(op, resp.status().as_u16(), started.elapsed().as_secs_f64());
        resp
    }

    async fn route(
        &self,
        req: Request<Incoming>,
    ) -> (&'static str, Result<Response<RespBody>, ApiError>) {
        let path = req.uri().path().to_owned();
        let segments: Vec<&str> = path.trim_start_matches('/').splitn(4, '/').collect();
        let op = op_of(req.method(), &segments);
        // The probes: open to anyone, as load balancers and Prometheus need.
        let open = match segments.as_slice() {
            ["health"] => Some(self.health()),
            ["livez"] | ["readyz"] => {
                Some(json(StatusCode::OK, &serde_json::json!({"status": "ok"})))
            }
            ["metrics"] => Some(self.render_metrics()),
            _ => None,
        };
        if let Some(resp) = open {
            return (op, allow(req.method(), &[Method::GET]).map(|()| resp));
        }
        let snapshot_of = match segments.as_slice() {
            ["v1", "shards", id, "snapshot"] => id.parse().ok(),
            _ => None,
        };
        let limit = if op == "data_put" {
            MAX_VALUE_BYTES
        } else {
            JSON_LIMIT
        };
        let (parts, body) = req.into_parts();
        let res = match self.admit(&parts, body, limit, snapshot_of).await {
            Ok((body, ticket)) => self.dispatch(&parts, &path, &segments, body, ticket).await,
            Err(e) => Err(e),
        };
        (op, res)
    }

    /// Reads the body (within `limit`: the signature covers it) and, when this node
    /// has keys, checks the call's signature, or a snapshot fetch's ticket. What can
    /// be refused before the body is read (no or a malformed `Authorization`, another
    /// node's name, a stale `ts`) is.
    async fn admit(
        &self,
        parts: &Parts,
        body: Incoming,
        limit: usize,
        snapshot_of: Option<u32>,
    ) -> Result<(Bytes, Option<Ticket>), ApiError> {
        let what = if limit == MAX_VALUE_BYTES {
            "value"
        } else {
            "request body"
        };
        if !self.auth.enabled() {
            return Ok((read_bounded(&parts.headers, body, limit, what).await?, None));
        }
        if let (Some(shard), Some(value)) = (snapshot_of, parts.headers.get(TICKET_HEADER)) {
            let ticket = self
                .auth
                .ticket(value.as_bytes(), shard, unix_ms())
                .map_err(|r| self.refused(r))?;
            let body = read_bounded(&parts.headers, body, limit, what).await?;
            return Ok((body, Some(ticket)));
        }
        let call = self
            .auth
            .precheck(&parts.headers, unix_ms())
            .map_err(|r| self.refused(r))?;
        let body = read_bounded(&parts.headers, body, limit, what).await?;
        let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        self.auth
            .verify(
                &call,
                &parts.method,
                target,
                &parts.headers,
                &body,
                unix_ms(),
            )
            .map_err(|r| self.refused(r))?;
        Ok((body, None))
    }

    /// A 401 in the usual error shape, counted by reason.
    fn refused(&self, r: Refusal) -> ApiError {
        self.metrics.auth_failure(r.reason());
        tracing::debug!(reason = r.reason(), "refused a call: {r}");
        let mut e = ApiError::new(r.code(), r.to_string()).with_status(StatusCode::UNAUTHORIZED);
        e.challenge = true;
        e
    }

    async fn dispatch(
        &self,
        parts: &Parts,
        path: &str,
        segments: &[&str],
        body: Bytes,
        ticket: Option<Ticket>,
    ) -> Result<Response<RespBody>, ApiError> {
        let method = &parts.method;
        match segments {
            ["v1", "shards"] => allow(method, &[Method::GET]).map(|()| {
                json(
                    StatusCode::OK,
                    &ShardList {
                        shards: self.store.list(),
                    },
                )
            }),
            ["v1", "shards", id] => {
                let id = parse_shard_id(id)?;
                match *method {
                    Method::GET => shards::get(self, id),
                    Method::PUT => shards::put(self, id, &body).await,
                    Method::DELETE => shards::delete(self, id, &parts.uri).await,
                    _ => Err(method_not_allowed(&[
                        Method::GET,
                        Method::PUT,
                        Method::DELETE,
                    ])),
                }
            }
            ["v1", "shards", id, "snapshot"] => {
                allow(method, &[Method::GET])?;
                shards::snapshot(self, parse_shard_id(id)?, ticket.as_ref())
            }
            ["v1", "shards", id, "pull"] => {
                allow(method, &[Method::POST])?;
                shards::pull(self, parse_shard_id(id)?, &body).await
            }
            ["v1", "data"] => {
                allow(method, &[Method::GET])?;
                data::list(self, &parts.uri, &parts.headers)
            }
            ["v1", "data", ..] => {
                // The key is everything after `/v1/data/`, slashes included.
                let raw = &path["/v1/data/".len()..];
                match *method {
                    Method::GET => data::get(self, raw, &parts.headers).await,
                    Method::PUT => data::put(self, raw, &parts.headers, body).await,
                    Method::DELETE => data::delete(self, raw, &parts.headers).await,
                    _ => Err(method_not_allowed(&[
                        Method::GET,
                        Method::PUT,
                        Method::DELETE,
                    ])),
                }
            }
            _ => Err(ApiError::new(
                ErrorCode::NotFound,
                format!("no route for {path}"),
            )),
        }
    }

    fn health(&self) -> Response<RespBody> {
        json(
            StatusCode::OK,
            &serde_json::json!({
                "status": "ok",
                "node_id": self.node_id,
                "shards": self.store.shard_count(),
            }),
        )
    }

    fn render_metrics(&self) -> Response<RespBody> {
        let text = self.metrics.render(self.store.totals());
        let mut resp = Response::new(full(text));
        resp.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        resp
    }

    /// Counts a fencing refusal on the data path.
    fn count_fence(&self, e: &ApiError) {
        if let Some(reason) = e.fence {
            self.metrics.fenced(reason);
        }
    }
}

/// The `op` label of a request (`torua_kv_requests_total`), from its method and path.
fn op_of(method: &Method, segments: &[&str]) -> &'static str {
    match (segments, method) {
        (["health"] | ["livez"] | ["readyz"], _) => "health",
        (["v1", "shards"], _) => "shard_list",
        (["v1", "shards", _], &Method::PUT) => "shard_put",
        (["v1", "shards", _], &Method::DELETE) => "shard_delete",
        (["v1", "shards", _], _) => "shard_get",
        (["v1", "shards", _, "snapshot"], _) => "snapshot",
        (["v1", "shards", _, "pull"], _) => "pull",
        (["v1", "data"], _) => "data_list",
        (["v1", "data", ..], &Method::GET) => "data_get",
        (["v1", "data", ..], &Method::PUT) => "data_put",
        (["v1", "data", ..], &Method::DELETE) => "data_delete",
        _ => "other",
    }
}

/// An error answer: `{"error":{"code","message"}}` with the code's status unless a
/// route needs one the protocol has no code for (405, 502), or is a refused call
/// (401 with `WWW-Authenticate`).
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub message: String,
    allow: Option<String>,
    /// Fencing reason, for `torua_kv_fenced_total`.
    fence: Option<&'static str>,
    /// The version held, sent as `Torua-Version` with a `superseded` refusal and
    /// with a `not_found` for a deleted key.
    held_version: Option<u64>,
    /// The shard's epoch here, sent as `Torua-Epoch` when a request is ahead of it
    /// (this node missed an assignment): the coordinator pushes it again.
    held_epoch: Option<u64>,
    /// A refused call: answered with `WWW-Authenticate: Torua-Call-HMAC-SHA256`.
    challenge: bool,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::from_u16(code.http_status()).expect("valid status"),
            code,
            message: message.into(),
            allow: None,
            fence: None,
            held_version: None,
            held_epoch: None,
            challenge: false,
        }
    }

    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    /// Sends `version` as `Torua-Version`.
    pub fn with_version(mut self, version: u64) -> Self {
        self.held_version = Some(version);
        self
    }

    pub fn malformed(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Malformed, message)
    }

    fn into_response(self) -> Response<RespBody> {
        let mut resp = json(self.status, &ErrorBody::new(self.code, self.message));
        if let Some(allow) = self.allow {
            resp.headers_mut().insert(
                ALLOW,
                HeaderValue::from_str(&allow).expect("method names are ASCII"),
            );
        }
        if let Some(epoch) = self.held_epoch {
            resp.headers_mut()
                .insert(EPOCH_HEADER, HeaderValue::from(epoch));
        }
        if let Some(held) = self.held_version {
            resp.headers_mut()
                .insert(VERSION_HEADER, HeaderValue::from(held));
        }
        if self.challenge {
            resp.headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static(CALL_SCHEME));
        }
        resp
    }
}

impl From<Fence> for ApiError {
    fn from(f: Fence) -> Self {
        // The protocol has `stale` for an old epoch; "not held" and "ahead" are
        // conflicts the coordinator resolves by re-pushing the assignment.
        let (code, reason) = match f {
            Fence::Stale { .. } => (ErrorCode::Stale, "stale"),
            Fence::Ahead { .. } => (ErrorCode::Conflict, "ahead"),
            Fence::NotHeld(_) => (ErrorCode::Conflict, "not_held"),
        };
        let mut e = ApiError::new(code, f.to_string());
        e.fence = Some(reason);
        if let Fence::Ahead { current, .. } = f {
            e.held_epoch = Some(current);
        }
        e
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Fence(f) => f.into(),
            e @ StoreError::Superseded { held, .. } => {
                let mut err = ApiError::new(ErrorCode::Superseded, e.to_string());
                err.held_version = Some(held);
                err
            }
            StoreError::Persist(p) => {
                tracing::error!(error = %p, "storage failure");
                ApiError::new(ErrorCode::Internal, format!("storage failure: {p}"))
            }
        }
    }
}

fn allow(method: &Method, allowed: &[Method]) -> Result<(), ApiError> {
    if allowed.contains(method) {
        Ok(())
    } else {
        Err(method_not_allowed(allowed))
    }
}

fn method_not_allowed(allowed: &[Method]) -> ApiError {
    let list = allowed
        .iter()
        .map(Method::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    let mut e = ApiError::malformed(format!("method not allowed; use {list}"))
        .with_status(StatusCode::METHOD_NOT_ALLOWED);
    e.allow = Some(list);
    e
}

fn parse_shard_id(s: &str) -> Result<u32, ApiError> {
    s.parse().map_err(|_| {
        ApiError::malformed(format!("shard id {s:?} is not an unsigned 32-bit integer"))
    })
}

pub fn json(status: StatusCode, value: &impl Serialize) -> Response<RespBody> {
    let body = serde_json::to_vec(value).expect("serialisable");
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

pub fn empty(status: StatusCode) -> Response<RespBody> {
    let mut resp = Response::new(full(Bytes::new()));
    *resp.status_mut() = status;
    resp
}

/// Percent-decoded query parameter (first occurrence). `+` stays a literal `+`;
/// encode spaces as `%20`.
fn query_param(uri: &Uri, name: &str) -> Result<Option<String>, ApiError> {
    let Some(q) = uri.query() else {
        return Ok(None);
    };
    for pair in q.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k == name {
            return percent_decode_str(v)
                .decode_utf8()
                .map(|v| Some(v.into_owned()))
                .map_err(|_| {
                    ApiError::malformed(format!("query parameter {name} is not valid UTF-8"))
                });
        }
    }
    Ok(None)
}

fn parse_num<T: std::str::FromStr>(what: &str, s: &str) -> Result<T, ApiError> {
    s.trim()
        .parse()
        .map_err(|_| ApiError::malformed(format!("{what}: {s:?} is not an unsigned integer")))
}

fn required_query<T: std::str::FromStr>(uri: &Uri, name: &str) -> Result<T, ApiError> {
    match query_param(uri, name)? {
        Some(v) => parse_num(&format!("query parameter {name}"), &v),
        None => Err(ApiError::malformed(format!(
            "missing query parameter {name}"
        ))),
    }
}

/// Parses a JSON body, naming the failing field in the message.
fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::malformed(format!("invalid JSON body: {e}")))
}
