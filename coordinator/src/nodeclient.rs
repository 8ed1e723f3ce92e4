//! Calls from the coordinator to storage nodes (the node API of SPEC §5), each with a
//! timeout: a wedged node costs a bounded wait, never a stuck task.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::json;
use std::time::Duration;
use thiserror::Error;

/// Bytes of a key that travel unescaped in a node URL path.
const KEY_ESCAPE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

const CONTROL_TIMEOUT: Duration = Duration::from_secs(2);
/// Writes and reads to one node. Short, because a holder that hangs this long is
/// evicted (writes) or skipped for a replica (reads); a 16 MiB value takes
/// milliseconds on a healthy network.
const WRITE_TIMEOUT: Duration = Duration::from_secs(3);
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
}

/// A value read from a node.
pub struct Value {
    pub bytes: Bytes,
}

impl Default for NodeClient {
    fn default() -> Self {
        let mut conn = HttpConnector::new();
        conn.set_nodelay(true);
        conn.set_connect_timeout(Some(Duration::from_secs(2)));
        NodeClient {
            http: Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build(conn),
        }
    }
}

impl NodeClient {
    async fn call(
        &self,
        method: Method,
        addr: &str,
        path: &str,
        headers: &[(&str, String)],
        body: Bytes,
        timeout: Duration,
    ) -> Result<(StatusCode, Bytes), CallError> {
        let url = format!("{}{path}", addr.trim_end_matches('/'));
        let mut req = Request::builder().method(method).uri(&url);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let req = req
            .body(Full::new(body))
            .map_err(|e| CallError::Unreachable {
                addr: addr.into(),
                message: e.to_string(),
            })?;
        let fut = async {
            let resp = self
                .http
                .request(req)
                .await
                .map_err(|e| CallError::Unreachable {
                    addr: addr.into(),
                    message: e.to_string(),
                })?;
            let status = resp.status();
            let body = Limited::new(resp.into_body(), MAX_RESPONSE)
                .collect()
                .await
                .map_err(|e| CallError::Unreachable {
                    addr: addr.into(),
                    message: e.to_string(),
                })?
                .to_bytes();
            Ok((status, body))
        };
        tokio::time::timeout(timeout, fut)
            .await
            .map_err(|_| CallError::Timeout {
                addr: addr.into(),
                after: timeout,
            })?
    }

    async fn expect_ok(
        &self,
        method: Method,
        addr: &str,
        path: &str,
        headers: &[(&str, String)],
        body: Bytes,
        timeout: Duration,
    ) -> Result<Bytes, CallError> {
        let (status, body) = self
            .call(method, addr, path, headers, body, timeout)
            .await?;
        if status.is_success() {
            Ok(body)
        } else {
            Err(status_error(addr, status, &body))
        }
    }

    /// Sends a JSON control body and expects a 2xx answer.
    async fn send_json(
        &self,
        method: Method,
        addr: &str,
        path: &str,
        body: serde_json::Value,
        timeout: Duration,
    ) -> Result<(), CallError> {
        self.expect_ok(
            method,
            addr,
            path,
            &[("content-type", "application/json".into())],
            body.to_string().into(),
            timeout,
        )
        .await
        .map(drop)
    }

    /// Tells a node it holds `shard` at `epoch` in `role`; `reset` clears its data first.
    pub async fn assign(
        &self,
        addr: &str,
        shard: u32,
        epoch: u64,
        role: &str,
        reset: bool,
    ) -> Result<(), CallError> {
        let body = json!({ "epoch": epoch, "role": role, "reset": reset });
        let path = format!("/v1/shards/{shard}");
        self.send_json(Method::PUT, addr, &path, body, CONTROL_TIMEOUT)
            .await
    }

    pub async fn drop_shard(&self, addr: &str, shard: u32, epoch: u64) -> Result<(), CallError> {
        self.expect_ok(
            Method::DELETE,
            addr,
            &format!("/v1/shards/{shard}?epoch={epoch}"),
            &[],
            Bytes::new(),
            CONTROL_TIMEOUT,
        )
        .await
        .map(drop)
    }

    /// The shards a node actually holds, with their epochs.
    pub async fn held_shards(
        &self,
        addr: &str,
    ) -> Result<std::collections::HashMap<u32, u64>, CallError> {
        let body = self
            .expect_ok(
                Method::GET,
                addr,
                "/v1/shards",
                &[],
                Bytes::new(),
                CONTROL_TIMEOUT,
            )
            .await?;
        let v: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| CallError::Status {
                addr: addr.into(),
                status: 200,
                message: format!("bad shard list: {e}"),
            })?;
        Ok(v["shards"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| Some((s["id"].as_u64()? as u32, s["epoch"].as_u64()?)))
            .collect())
    }

    /// Has `addr` copy `shard` from `from` (snapshot stream; live writes keep arriving).
    pub async fn pull(
        &self,
        addr: &str,
        shard: u32,
        epoch: u64,
        from: &str,
    ) -> Result<(), CallError> {
        let body = json!({ "epoch": epoch, "from": from });
        let path = format!("/v1/shards/{shard}/pull");
        self.send_json(Method::POST, addr, &path, body, COPY_TIMEOUT)
            .await
    }

    fn data_headers(shard: u32, epoch: u64, version: Option<u64>) -> Vec<(&'static str, String)> {
        let mut h = vec![
            ("torua-shard", shard.to_string()),
            ("torua-epoch", epoch.to_string()),
        ];
        if let Some(v) = version {
            h.push(("torua-version", v.to_string()));
        }
        h
    }

    pub async fn put(
        &self,
        addr: &str,
        key: &str,
        shard: u32,
        epoch: u64,
        version: u64,
        value: Bytes,
    ) -> Result<(), CallError> {
        self.expect_ok(
            Method::PUT,
            addr,
            &data_path(key),
            &Self::data_headers(shard, epoch, Some(version)),
            value,
            WRITE_TIMEOUT,
        )
        .await
        .map(drop)
    }

    pub async fn delete(
        &self,
        addr: &str,
        key: &str,
        shard: u32,
        epoch: u64,
        version: u64,
    ) -> Result<(), CallError> {
        self.expect_ok(
            Method::DELETE,
            addr,
            &data_path(key),
            &Self::data_headers(shard, epoch, Some(version)),
            Bytes::new(),
            WRITE_TIMEOUT,
        )
        .await
        .map(drop)
    }

    /// `Ok(None)` when the node holds the shard but not the key.
    pub async fn get(
        &self,
        addr: &str,
        key: &str,
        shard: u32,
        epoch: u64,
    ) -> Result<Option<Value>, CallError> {
        let (status, body) = self
            .call(
                Method::GET,
                addr,
                &data_path(key),
                &Self::data_headers(shard, epoch, None),
                Bytes::new(),
                READ_TIMEOUT,
            )
            .await?;
        match status {
            StatusCode::OK => Ok(Some(Value { bytes: body })),
            StatusCode::NOT_FOUND => Ok(None),
            s => Err(status_error(addr, s, &body)),
        }
    }

    pub async fn list(
        &self,
        addr: &str,
        shard: u32,
        prefix: &str,
    ) -> Result<Vec<String>, CallError> {
        let path = format!(
            "/v1/data?shard={shard}&prefix={}",
            utf8_percent_encode(prefix, KEY_ESCAPE)
        );
        let body = self
            .expect_ok(Method::GET, addr, &path, &[], Bytes::new(), WRITE_TIMEOUT)
            .await?;
        let v: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| CallError::Status {
                addr: addr.into(),
                status: 200,
                message: format!("bad key list: {e}"),
            })?;
        Ok(v["keys"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|k| k.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default())
    }
}

fn data_path(key: &str) -> String {
    format!("/v1/data/{}", utf8_percent_encode(key, KEY_ESCAPE))
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
