//! Calls to a storage node signed the way the coordinator signs them
//! (`torua_protocol::node_call`), with the test cluster's secret: for tests that read a
//! node directly, and for the node-auth tests that forge, tamper with and replay them.
//! A call is signed for the node's current start, its boot id, which every answer of
//! the node carries ([`boot`] reads it from `/livez`).

use crate::cluster::SECRET;
use crate::http;
use std::time::{SystemTime, UNIX_EPOCH};
use torua_protocol::node_call::{
    sign_call_header, signed_header_values, Call, Nonce, BOOT_HEADER, NONCE_BYTES,
};
use torua_protocol::{derive_node_key, NodeKey};

/// Node `id`'s key under the test cluster's secret.
pub fn key(id: &str) -> NodeKey {
    derive_node_key(SECRET.as_bytes(), id)
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub fn fresh_nonce() -> Nonce {
    let mut n = [0u8; NONCE_BYTES];
    n.iter_mut().for_each(|b| *b = fastrand::u8(..));
    n
}

/// The boot id of the node at `url` (its current start), from an answer's header.
pub fn boot(url: &str) -> Result<String, String> {
    let r = http::get(&format!("{url}/livez"))?;
    r.header(BOOT_HEADER)
        .ok_or_else(|| format!("{url}/livez: no {BOOT_HEADER} header"))
}

/// What goes into one signature: everything the node checks besides the key.
pub struct Signed<'a> {
    /// The node the call is for (`node=`).
    pub node: &'a str,
    /// Its boot id (`boot=`).
    pub boot: &'a str,
    pub method: &'a str,
    /// Path and query exactly as sent.
    pub path: &'a str,
    pub headers: &'a [(&'a str, &'a str)],
    pub body: &'a [u8],
    pub ts_ms: u64,
    pub nonce: Nonce,
}

impl<'a> Signed<'a> {
    /// A call signed now (the test and the nodes share the host's clock), with a
    /// fresh nonce.
    pub fn now(
        node: &'a str,
        boot: &'a str,
        method: &'a str,
        path: &'a str,
        headers: &'a [(&'a str, &'a str)],
        body: &'a [u8],
    ) -> Signed<'a> {
        Signed {
            node,
            boot,
            method,
            path,
            headers,
            body,
            ts_ms: now_ms(),
            nonce: fresh_nonce(),
        }
    }

    /// The `Authorization` value under `key`.
    pub fn authorization(&self, key: &NodeKey) -> String {
        let call = Call {
            method: self.method,
            path_and_query: self.path,
            node: self.node,
            boot: self.boot,
            ts_ms: self.ts_ms,
            nonce: self.nonce,
            headers: signed_header_values(self.headers),
        };
        sign_call_header(key, &call, self.body)
    }
}

/// Sends `method path` to the node at `url` with `authorization` (any value: a
/// test's forgery as well as a good signature) and `headers`.
pub fn send_with(
    url: &str,
    authorization: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<http::Reply, String> {
    let mut h = headers.to_vec();
    h.push(("authorization", authorization));
    http::send(method, &format!("{url}{path}"), &h, body)
}

/// A call to node `id` at `url`, signed now with its key for its current start.
pub fn send(
    url: &str,
    id: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<http::Reply, String> {
    let boot = boot(url)?;
    let auth = Signed::now(id, &boot, method, path, headers, body).authorization(&key(id));
    send_with(url, &auth, method, path, headers, body)
}
