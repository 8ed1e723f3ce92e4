//! `http` check: GET a URL through the shared keep-alive client; pass on the expected
//! status (message `200 OK`), fail otherwise or on a connection error.

use super::{describe_error, Outcome};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::Uri;
use hyper_util::client::legacy::connect::{Connect, HttpConnector};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::time::Duration;

/// The checks' HTTP/1.1 client, pooling keep-alive connections per host.
pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// Bytes of a check's response body read (and discarded) to keep the connection.
const MAX_BODY: usize = 64 * 1024;

pub fn new_client() -> HttpClient {
    pooled(tcp_connector())
}

/// TCP connections as the agent makes them: no Nagle delay, 2 s to connect.
pub fn tcp_connector() -> HttpConnector {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(2)));
    connector
}

/// A keep-alive client over `connector` (a sidecar talks to one or two hosts).
pub fn pooled<C>(connector: C) -> Client<C, Full<Bytes>>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(2)
        .build(connector)
}

pub async fn probe(client: &HttpClient, url: &Uri, expect_status: u16) -> Outcome {
    let req = hyper::Request::get(url.clone())
        .header(hyper::header::USER_AGENT, "torua-agent")
        .body(Full::default())
        .expect("a GET with a valid URI");
    match client.request(req).await {
        Err(e) => Outcome::fail(describe_error(&e)),
        Ok(resp) => {
            let status = resp.status();
            // Read the body so the connection returns to the pool.
            let _ = Limited::new(resp.into_body(), MAX_BODY).collect().await;
            let text = match status.canonical_reason() {
                Some(reason) => format!("{} {reason}", status.as_u16()),
                None => status.as_u16().to_string(),
            };
            if status.as_u16() == expect_status {
                Outcome::pass(text)
            } else {
                Outcome::fail(format!("{text} (expected {expect_status})"))
            }
        }
    }
}
