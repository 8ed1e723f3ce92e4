//! HTTP routing of the node API, error mapping and request metrics.

mod body;
mod data;
mod shards;

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use percent_encoding::percent_decode_str;
use serde::Serialize;
use torua_protocol::{ErrorBody, ErrorCode};

use body::full;
pub use body::RespBody;

use crate::metrics::Metrics;
use crate::store::{Fence, Store, StoreError};

pub type HttpClient = Client<HttpConnector, Empty<Bytes>>;

/// Everything a request handler may touch.
pub struct App {
    pub node_id: String,
    pub store: Arc<Store>,
    pub metrics: Metrics,
    pub client: HttpClient,
}

impl App {
    pub fn new(node_id: String, store: Store) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(std::time::Duration::from_secs(5)));
        connector.set_nodelay(true);
        App {
            node_id,
            store: Arc::new(store),
            metrics: Metrics::new(),
            client: Client::builder(TokioExecutor::new()).build(connector),
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
        let resp = res.unwrap_or_else(ApiError::into_response);
        self.metrics
            .request(op, resp.status().as_u16(), started.elapsed().as_secs_f64());
        resp
    }

    async fn route(
        &self,
        req: Request<Incoming>,
    ) -> (&'static str, Result<Response<RespBody>, ApiError>) {
        let path = req.uri().path().to_owned();
        let method = req.method().clone();
        let segments: Vec<&str> = path.trim_start_matches('/').splitn(4, '/').collect();
        match segments.as_slice() {
            ["health"] => (
                "health",
                allow(&method, &[Method::GET]).map(|()| self.health()),
            ),
            ["metrics"] => (
                "other",
                allow(&method, &[Method::GET]).map(|()| self.render_metrics()),
            ),
            ["v1", "shards"] => (
                "shard_list",
                match allow(&method, &[Method::GET]) {
                    Ok(()) => Ok(json(
                        StatusCode::OK,
                        &shards::List {
                            shards: self.store.list(),
                        },
                    )),
                    Err(e) => Err(e),
                },
            ),
            ["v1", "shards", id] => {
                let op = match method {
                    Method::PUT => "shard_put",
                    Method::DELETE => "shard_delete",
                    _ => "shard_get",
                };
                let res = match (parse_shard_id(id), &method) {
                    (Err(e), _) => Err(e),
                    (Ok(id), &Method::GET) => shards::get(self, id),
                    (Ok(id), &Method::PUT) => shards::put(self, id, req).await,
                    (Ok(id), &Method::DELETE) => shards::delete(self, id, &req).await,
                    _ => Err(method_not_allowed(&[
                        Method::GET,
                        Method::PUT,
                        Method::DELETE,
                    ])),
                };
                (op, res)
            }
            ["v1", "shards", id, "snapshot"] => (
                "snapshot",
                allow(&method, &[Method::GET])
                    .and_then(|()| parse_shard_id(id))
                    .and_then(|id| shards::snapshot(self, id)),
            ),
            ["v1", "shards", id, "pull"] => {
                let res = match allow(&method, &[Method::POST]).and_then(|()| parse_shard_id(id)) {
                    Ok(id) => shards::pull(self, id, req).await,
                    Err(e) => Err(e),
                };
                ("pull", res)
            }
            ["v1", "data"] => (
                "data_list",
                allow(&method, &[Method::GET]).and_then(|()| data::list(self, &req)),
            ),
            ["v1", "data", ..] => {
                // The key is everything after `/v1/data/`, slashes included.
                let raw = &path["/v1/data/".len()..];
                match method {
                    Method::GET => ("data_get", data::get(self, raw, &req).await),
                    Method::PUT => ("data_put", data::put(self, raw, req).await),
                    Method::DELETE => ("data_delete", data::delete(self, raw, &req).await),
                    _ => (
                        "other",
                        Err(method_not_allowed(&[
                            Method::GET,
                            Method::PUT,
                            Method::DELETE,
                        ])),
                    ),
                }
            }
            _ => (
                "other",
                Err(ApiError::new(
                    ErrorCode::NotFound,
                    format!("no route for {path}"),
                )),
            ),
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

/// An error answer: `{"error":{"code","message"}}` with the code's status unless a
/// route needs one the protocol has no code for (405, 502).
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub message: String,
    allow: Option<String>,
    /// Fencing reason, for `torua_kv_fenced_total`.
    fence: Option<&'static str>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::from_u16(code.http_status()).expect("valid status"),
            code,
            message: message.into(),
            allow: None,
            fence: None,
        }
    }

    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
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
        e
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Fence(f) => f.into(),
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
fn query_param(req: &Request<Incoming>, name: &str) -> Result<Option<String>, ApiError> {
    let Some(q) = req.uri().query() else {
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

fn required_query<T: std::str::FromStr>(
    req: &Request<Incoming>,
    name: &str,
) -> Result<T, ApiError> {
    match query_param(req, name)? {
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
