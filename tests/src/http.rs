//! Tiny HTTP helpers over `ureq` that return status and body for any status code.
//! `https://` URLs work for the CAs the harness made (`trust`).

use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use ureq::tls::{Certificate, RootCerts, TlsConfig};

/// Every CA a test of this process has created: each is unique, so trusting all of
/// them lets any test's helpers reach its own HTTPS coordinator.
static TRUSTED: Mutex<Vec<Certificate<'static>>> = Mutex::new(Vec::new());

/// Trusts the CA certificate `pem` for `https://` URLs from now on.
pub fn trust(pem: &[u8]) {
    let cert = Certificate::from_pem(pem).expect("a PEM CA certificate");
    TRUSTED.lock().unwrap_or_else(|e| e.into_inner()).push(cert);
}

pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// The first value of header `name` (lower-case).
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }
}

fn agent_with_timeout(timeout: Duration) -> ureq::Agent {
    let roots = TRUSTED.lock().unwrap_or_else(|e| e.into_inner()).clone();
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .tls_config(
            TlsConfig::builder()
                .root_certs(RootCerts::Specific(Arc::new(roots)))
                .build(),
        )
        .build()
        .into()
}

pub fn get(url: &str) -> Result<Reply, String> {
    get_within(url, Duration::from_secs(10))
}

/// [`get`] that gives up after `timeout`: for polling a process that may be frozen
/// (SIGSTOP), whose kernel still accepts the connection but nobody answers.
pub fn get_within(url: &str, timeout: Duration) -> Result<Reply, String> {
    let mut r = agent_with_timeout(timeout)
        .get(url)
        .call()
        .map_err(|e| e.to_string())?;
    let status = r.status().as_u16();
    let headers = r
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let body = r
        .body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_vec()
        .map_err(|e| e.to_string())?;
    Ok(Reply {
        status,
        body,
        headers,
    })
}

pub fn send(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Reply, String> {
    send_within(method, url, headers, body, Duration::from_secs(10))
}

/// [`send`] that gives up after `timeout`.
pub fn send_within(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> Result<Reply, String> {
    let req = ureq::http::Request::builder().method(method).uri(url);
    let req = headers.iter().fold(req, |r, (k, v)| r.header(*k, *v));
    let req = req.body(body.to_vec()).map_err(|e| e.to_string())?;
    let mut r = agent_with_timeout(timeout)
        .run(req)
        .map_err(|e| e.to_string())?;
    let status = r.status().as_u16();
    let headers = r
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let body = r
        .body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_vec()
        .map_err(|e| e.to_string())?;
    Ok(Reply {
        status,
        body,
        headers,
    })
}

/// Value of an unlabelled or exactly-labelled sample in a Prometheus exposition.
pub fn metric(exposition: &str, series: &str) -> Option<f64> {
    exposition.lines().find_map(|l| {
        let rest = l.strip_prefix(series)?;
        rest.strip_prefix(' ')?.trim().parse().ok()
    })
}
