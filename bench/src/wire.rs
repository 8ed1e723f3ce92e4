//! A minimal HTTP/1.1 keep-alive client for the load generator: one buffer and one
//! write per request, answers parsed with `httparse`. It speaks only what the
//! generator needs (POST with a body, answers with `Content-Length`) and refuses
//! anything else loudly rather than mis-measuring.

use anyhow::{bail, Context, Result};
use std::io::Write;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest answer head or body the generator accepts.
const MAX_ANSWER: usize = 1 << 20;

pub struct Wire {
    stream: TcpStream,
    out: Vec<u8>,
    inbuf: Vec<u8>,
    /// The last `Torua-Coordinator-Nonce` answered (the coordinator's handshake).
    pub nonce: Option<String>,
    last_body: std::ops::Range<usize>,
}

impl Wire {
    pub async fn connect(addr: SocketAddr) -> Result<Wire> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connect {addr}"))?;
        stream.set_nodelay(true)?;
        Ok(Wire {
            stream,
            out: Vec::with_capacity(1024),
            inbuf: Vec::with_capacity(1024),
            nonce: None,
            last_body: 0..0,
        })
    }

    /// Sends one POST and returns the status and body of its answer.
    pub async fn post(&mut self, path: &str, auth: &str, body: &[u8]) -> Result<(u16, &[u8])> {
        self.out.clear();
        write!(
            self.out,
            "POST {path} HTTP/1.1\r\nhost: coordinator\r\ncontent-type: application/json\r\n\
             authorization: {auth}\r\ncontent-length: {}\r\n\r\n",
            body.len()
        )?;
        self.out.extend_from_slice(body);
        self.stream.write_all(&self.out).await?;
        self.read_answer().await
    }

    async fn read_answer(&mut self) -> Result<(u16, &[u8])> {
        self.inbuf.clear();
        let (status, head_len, body_len) = loop {
            if self.fill().await? == 0 {
                bail!("connection closed before the answer");
            }
            let mut headers = [httparse::EMPTY_HEADER; 16];
            let mut res = httparse::Response::new(&mut headers);
            let httparse::Status::Complete(head_len) = res.parse(&self.inbuf)? else {
                if self.inbuf.len() > MAX_ANSWER {
                    bail!("answer head larger than {MAX_ANSWER} bytes");
                }
                continue;
            };
            let len = res
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .context("answer without content-length")?;
            let len: usize = std::str::from_utf8(len.value)?.trim().parse()?;
            let nonce = res.headers.iter().find(|h| {
                h.name
                    .eq_ignore_ascii_case(torua_protocol::heartbeat::COORDINATOR_NONCE_HEADER)
            });
            if let Some(n) = nonce {
                if self.nonce.as_deref().map(str::as_bytes) != Some(n.value) {
                    self.nonce = Some(String::from_utf8_lossy(n.value).into_owned());
                }
            }
            if len > MAX_ANSWER {
                bail!("answer body of {len} bytes");
            }
            break (res.code.unwrap_or(0), head_len, len);
        };
        while self.inbuf.len() < head_len + body_len {
            if self.fill().await? == 0 {
                bail!("connection closed inside the answer body");
            }
        }
        self.last_body = head_len..head_len + body_len;
        Ok((status, &self.inbuf[head_len..head_len + body_len]))
    }

    /// The body of the last answer read.
    pub fn last_body(&self) -> &[u8] {
        &self.inbuf[self.last_body.clone()]
    }

    async fn fill(&mut self) -> Result<usize> {
        self.inbuf.reserve(4096);
        Ok(self.stream.read_buf(&mut self.inbuf).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// Against a real hyper server: answers split across reads, keep-alive reuse.
    #[tokio::test]
    async fn posts_and_reads_answers_over_one_connection() {
        use http_body_util::{BodyExt, Full};
        use hyper::service::service_fn;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            let svc = service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
                let auth = req.headers()["authorization"].to_str().unwrap().to_string();
                let body = req.into_body().collect().await.unwrap().to_bytes();
                let answer = format!("{auth}:{}", body.len());
                Ok::<_, std::convert::Infallible>(
                    hyper::Response::builder()
                        .status(if body.is_empty() { 400 } else { 200 })
                        .body(Full::new(bytes::Bytes::from(answer)))
                        .unwrap(),
                )
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                .await;
        });
        let mut w = Wire::connect(addr).await.unwrap();
        let (status, body) = w.post("/x", "Torua a:b", b"hello").await.unwrap();
        assert_eq!((status, body), (200, &b"Torua a:b:5"[..]));
        let (status, body) = w.post("/x", "t", b"").await.unwrap();
        assert_eq!((status, body), (400, &b"t:0"[..]));
    }
}
