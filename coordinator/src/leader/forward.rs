//! What a follower sends to the leader: mutating admin calls and node-list reads
//! (proxied whole, so clients need not know who leads), and the one map change the
//! data path cannot do without, evicting a holder that failed a write (the follower
//! answers its client only after the leader committed it).

use super::Peer;
use crate::shards::record::ShardRecord;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{header, Method, Request, Response, StatusCode};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use thiserror::Error;

/// Marks a request a coordinator forwarded, so that two coordinators that each
/// believe the other leads never bounce it back and forth.
pub const FORWARDED_HEADER: &str = "torua-forwarded-by";

/// Longest a forwarded call may take (a drain answers at once; an eviction waits
/// for one commit and one push).
const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest answer relayed (a node list of many thousand nodes fits).
const MAX_ANSWER_BYTES: usize = 64 << 20;

#[derive(Debug, Error)]
pub enum ForwardError {
    #[error("no leader is known")]
    NoLeader,
    #[error("the leader {url} is https://; forwarding needs http:// between coordinators")]
    Https { url: String },
    #[error("the leader at {url} did not answer: {message}")]
    Unreachable { url: String, message: String },
    #[error("the leader at {url} answered {status}: {message}")]
    Refused {
        url: String,
        status: u16,
        message: String,
    },
}

#[derive(Clone)]
pub struct Forwarder {
    http: Client<HttpConnector, Full<Bytes>>,
    /// Sent with this coordinator's own calls to the leader (evictions) when the
    /// admin routes need a token. Relayed calls carry their client's header instead.
    admin_token: Option<crate::secrets::Token>,
    me: String,
}

/// The body of `POST /v1/internal/shards/{id}/evict`.
#[derive(Debug, Serialize, Deserialize)]
pub struct EvictRequest {
    /// The epoch the failed write was made at: nothing is evicted if the map has
    /// moved on since (the write is then retried on the new map).
    pub epoch: u64,
    pub nodes: Vec<String>,
}

impl Forwarder {
    pub fn new(me: &str, admin_token: Option<crate::secrets::Token>) -> Forwarder {
        let mut conn = HttpConnector::new();
        conn.set_connect_timeout(Some(Duration::from_secs(1)));
        conn.set_nodelay(true);
        Forwarder {
            http: Client::builder(TokioExecutor::new()).build(conn),
            admin_token,
            me: me.to_string(),
        }
    }

    /// Sends `method path` with `headers` and `body` to the leader and relays its
    /// answer.
    pub async fn relay(
        &self,
        leader: Option<Peer>,
        method: Method,
        path_and_query: &str,
        headers: &hyper::HeaderMap,
        body: Bytes,
    ) -> Result<Response<Full<Bytes>>, ForwardError> {
        let leader = leader.ok_or(ForwardError::NoLeader)?;
        let url = target(&leader)?;
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{url}{path_and_query}"));
        for (k, v) in headers {
            if k != header::HOST && k != header::CONNECTION && k != header::CONTENT_LENGTH {
                req = req.header(k, v);
            }
        }
        let req = req
            .header(FORWARDED_HEADER, &self.me)
            .body(Full::new(body))
            .map_err(|e| ForwardError::Unreachable {
                url: url.clone(),
                message: e.to_string(),
            })?;
        let (status, headers, body) = self.send(&url, req).await?;
        let mut resp = Response::builder().status(status);
        for (k, v) in &headers {
            if k != header::CONNECTION
                && k != header::TRANSFER_ENCODING
                && k != header::CONTENT_LENGTH
            {
                resp = resp.header(k, v);
            }
        }
        Ok(resp
            .body(Full::new(body))
            .expect("relayed headers are valid"))
    }

    /// GETs a JSON document from the leader.
    pub async fn get_json(
        &self,
        leader: Option<Peer>,
        path: &str,
    ) -> Result<serde_json::Value, ForwardError> {
        let leader = leader.ok_or(ForwardError::NoLeader)?;
        let url = target(&leader)?;
        let req = Request::get(format!("{url}{path}"))
            .header(FORWARDED_HEADER, &self.me)
            .body(Full::new(Bytes::new()))
            .expect("a valid request");
        self.json_answer(&url, req, "JSON").await
    }

    /// Sends `req` and parses a 200 answer as `T` (`what` names it in an error).
    async fn json_answer<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        req: Request<Full<Bytes>>,
        what: &str,
    ) -> Result<T, ForwardError> {
        let (status, _, body) = self.send(url, req).await?;
        if status != StatusCode::OK {
            return Err(refused(url, status, &body));
        }
        serde_json::from_slice(&body).map_err(|e| ForwardError::Unreachable {
            url: url.to_string(),
            message: format!("not {what}: {e}"),
        })
    }

    /// Asks the leader to evict `nodes` from shard `id`'s in-sync set if the shard
    /// is still at `epoch`; returns the shard's record after that.
    pub async fn evict(
        &self,
        leader: Option<Peer>,
        id: u32,
        epoch: u64,
        nodes: &[String],
    ) -> Result<ShardRecord, ForwardError> {
        let leader = leader.ok_or(ForwardError::NoLeader)?;
        let url = target(&leader)?;
        let body = serde_json::to_vec(&EvictRequest {
            epoch,
            nodes: nodes.to_vec(),
        })
        .expect("serialises");
        let mut req = Request::post(format!("{url}/v1/internal/shards/{id}/evict"))
            .header(header::CONTENT_TYPE, "application/json")
            .header(FORWARDED_HEADER, &self.me);
        if let Some(t) = &self.admin_token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {}", t.expose()));
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .expect("a valid request");
        self.json_answer(&url, req, "a shard record").await
    }

    async fn send(
        &self,
        url: &str,
        req: Request<Full<Bytes>>,
    ) -> Result<(StatusCode, hyper::HeaderMap, Bytes), ForwardError> {
        let unreachable = |message: String| ForwardError::Unreachable {
            url: url.to_string(),
            message,
        };
        let call = async {
            let resp = self
                .http
                .request(req)
                .await
                .map_err(|e| unreachable(e.to_string()))?;
            let (parts, body) = resp.into_parts();
            let body = Limited::new(body, MAX_ANSWER_BYTES)
                .collect()
                .await
                .map_err(|e| unreachable(e.to_string()))?
                .to_bytes();
            Ok((parts.status, parts.headers, body))
        };
        tokio::time::timeout(FORWARD_TIMEOUT, call)
            .await
            .map_err(|_| unreachable(format!("no answer within {FORWARD_TIMEOUT:?}")))?
    }
}

fn target(leader: &Peer) -> Result<String, ForwardError> {
    if leader.url.starts_with("https://") {
        return Err(ForwardError::Https {
            url: leader.url.clone(),
        });
    }
    Ok(leader.url.trim_end_matches('/').to_string())
}

fn refused(url: &str, status: StatusCode, body: &[u8]) -> ForwardError {
    let message = serde_json::from_slice::<torua_protocol::ErrorBody>(body)
        .map(|e| e.error.message)
        .unwrap_or_else(|_| String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned());
    ForwardError::Refused {
        url: url.to_string(),
        status: status.as_u16(),
        message,
    }
}
