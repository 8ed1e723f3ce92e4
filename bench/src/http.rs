//! A minimal keep-alive HTTP/1.1 client over one hyper connection, reconnecting when
//! the connection breaks. Used for probes and polling, not for the load itself.

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::Request;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use tokio::net::TcpStream;

pub struct Reply {
    pub status: u16,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> Result<serde_json::Value> {
        serde_json::from_slice(&self.body).context("response is not JSON")
    }
}

/// Opens one HTTP/1.1 connection; the connection task runs on the current runtime.
pub async fn connect(addr: SocketAddr) -> Result<SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connect {addr}"))?;
    stream.set_nodelay(true)?;
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(send)
}

pub struct Client {
    addr: SocketAddr,
    send: Option<SendRequest<Full<Bytes>>>,
}

impl Client {
    pub fn new(addr: SocketAddr) -> Client {
        Client { addr, send: None }
    }

    /// Drops the connection; the next request opens a new one.
    pub fn reset(&mut self) {
        self.send = None;
    }

    /// [`Client::request`] with a deadline; past it the connection is dropped (its
    /// answer, if any, would belong to the abandoned request).
    pub async fn request_within(
        &mut self,
        method: &str,
        path: &str,
        body: Bytes,
        within: std::time::Duration,
    ) -> Result<Reply> {
        match tokio::time::timeout(within, self.request(method, path, body)).await {
            Ok(r) => r,
            Err(_) => {
                self.reset();
                anyhow::bail!("{method} {path}: no answer within {within:?}")
            }
        }
    }

    pub async fn get_within(&mut self, path: &str, within: std::time::Duration) -> Result<Reply> {
        self.request_within("GET", path, Bytes::new(), within).await
    }

    pub async fn get(&mut self, path: &str) -> Result<Reply> {
        self.request("GET", path, Bytes::new()).await
    }

    pub async fn request(&mut self, method: &str, path: &str, body: Bytes) -> Result<Reply> {
        if self.send.as_ref().is_none_or(|s| s.is_closed()) {
            self.send = Some(connect(self.addr).await?);
        }
        let send = self.send.as_mut().expect("connected");
        send.ready().await?;
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", self.addr.to_string())
            .body(Full::new(body))?;
        let res = match send.send_request(req).await {
            Ok(r) => r,
            Err(e) => {
                self.send = None;
                return Err(e.into());
            }
        };
        let status = res.status().as_u16();
        let body = res.into_body().collect().await?.to_bytes();
        Ok(Reply { status, body })
    }
}
