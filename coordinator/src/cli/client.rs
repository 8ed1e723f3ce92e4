//! A small blocking client for the coordinator API, used by the CLI commands.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;
use thiserror::Error;
use torua_protocol::ErrorBody;

#[derive(Debug, Error)]
pub enum ApiError {
    #[error("cannot reach the coordinator at {url}: {message}")]
    Unreachable { url: String, message: String },
    #[error("{status}: {message}")]
    Status { status: u16, message: String },
    #[error("unexpected answer from {url}: {message}")]
    Decode { url: String, message: String },
    #[error(transparent)]
    Tls(#[from] torua_tls::TlsError),
}

pub struct Api {
    base: String,
    token: Option<String>,
    ca_file: Option<PathBuf>,
}

impl Api {
    /// `ca_file`: whom to trust for an `https://` base (default: the system's roots).
    pub fn new(base: &str, token: Option<String>, ca_file: Option<PathBuf>) -> Api {
        Api {
            base: base.trim_end_matches('/').to_string(),
            token,
            ca_file,
        }
    }

    fn client(&self) -> Result<Client<torua_tls::HttpsConnector, Full<Bytes>>, ApiError> {
        let connector =
            torua_tls::connector_for(&self.base, self.ca_file.as_deref(), HttpConnector::new())?;
        Ok(Client::builder(TokioExecutor::new()).build(connector))
    }

    pub fn get(&self, path: &str) -> Result<Value, ApiError> {
        self.json(Method::GET, path, Bytes::new())
    }

    pub fn post(&self, path: &str) -> Result<Value, ApiError> {
        self.json(Method::POST, path, Bytes::new())
    }

    pub fn delete(&self, path: &str) -> Result<Value, ApiError> {
        self.json(Method::DELETE, path, Bytes::new())
    }

    pub fn put_json(&self, path: &str, body: &Value) -> Result<Value, ApiError> {
        self.json(Method::PUT, path, Bytes::from(body.to_string()))
    }

    fn json(&self, method: Method, path: &str, body: Bytes) -> Result<Value, ApiError> {
        let url = format!("{}{path}", self.base);
        let bytes = self.call(method, path, body)?;
        serde_json::from_slice(&bytes).map_err(|e| ApiError::Decode {
            url,
            message: e.to_string(),
        })
    }

    /// Sends `body`, returns the raw answer body of a 2xx response.
    pub fn call(&self, method: Method, path: &str, body: Bytes) -> Result<Bytes, ApiError> {
        let url = format!("{}{path}", self.base);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let client = self.client()?;
        rt.block_on(async {
            let mut req = Request::builder().method(method).uri(&url);
            if let Some(t) = &self.token {
                req = req.header("authorization", format!("Bearer {t}"));
            }
            let req = req
                .body(Full::new(body))
                .map_err(|e| ApiError::Unreachable {
                    url: url.clone(),
                    message: e.to_string(),
                })?;
            let unreachable = |message: String| ApiError::Unreachable {
                url: url.clone(),
                message,
            };
            let resp = tokio::time::timeout(Duration::from_secs(10), client.request(req))
                .await
                .map_err(|_| unreachable("timed out after 10s".into()))?
                .map_err(|e| unreachable(root_cause(&e)))?;
            let status = resp.status();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| unreachable(e.to_string()))?
                .to_bytes();
            if !status.is_success() {
                let message = serde_json::from_slice::<ErrorBody>(&body)
                    .map(|e| e.error.message)
                    .unwrap_or_else(|_| String::from_utf8_lossy(&body).into_owned());
                return Err(ApiError::Status {
                    status: status.as_u16(),
                    message,
                });
            }
            Ok(body)
        })
    }
}

/// The innermost error's text: hyper's own says only "client error (Connect)",
/// where the cause says what the operator must fix ("connection refused",
/// "invalid peer certificate: UnknownIssuer").
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}
