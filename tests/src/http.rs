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
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn agent() -> ureq::Agent {
    let roots = TRUSTED.lock().unwrap_or_else(|e| e.into_inner()).clone();
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .tls_config(
            TlsConfig::builder()
                .root_certs(RootCerts::Specific(Arc::new(roots)))
                .build(),
        )
        .build()
        .into()
}

pub fn get(url: &str) -> Result<Reply, String> {
    let mut r = agent().get(url).call().map_err(|e| e.to_string())?;
    let status = r.status().as_u16();
    let body = r
        .body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_vec()
        .map_err(|e| e.to_string())?;
    Ok(Reply { status, body })
}

pub fn send(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Reply, String> {
    let req = ureq::http::Request::builder().method(method).uri(url);
    let req = headers.iter().fold(req, |r, (k, v)| r.header(*k, *v));
    let req = req.body(body.to_vec()).map_err(|e| e.to_string())?;
    let mut r = agent().run(req).map_err(|e| e.to_string())?;
    let status = r.status().as_u16();
    let body = r
        .body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_vec()
        .map_err(|e| e.to_string())?;
    Ok(Reply { status, body })
}

/// Value of an unlabelled or exactly-labelled sample in a Prometheus exposition.
pub fn metric(exposition: &str, series: &str) -> Option<f64> {
    exposition.lines().find_map(|l| {
        let rest = l.strip_prefix(series)?;
        rest.strip_prefix(' ')?.trim().parse().ok()
    })
}
