//! A small blocking client for the coordinator API, used by the CLI commands.
//!
//! It takes a list of coordinators (`--coordinator a,b,c`) and tries them in order
//! while they cannot be reached; an HTTP answer, error or not, ends the command. A
//! mutating call answered `503 not_leader` with a `Torua-Leader` header is sent once
//! to that leader ([`next_step`]).

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::Duration;
use thiserror::Error;
use torua_protocol::api::LEADER_HEADER;
use torua_protocol::{ErrorBody, ErrorCode};

/// Longest wait for a TCP connection (a host that drops packets).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest wait for a whole answer from one coordinator.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Error)]
pub enum ApiError {
    #[error("cannot reach the coordinator at {url}: {message}")]
    Unreachable { url: String, message: String },
    /// Every coordinator of the list was tried; `tried` says what each did.
    #[error("cannot reach any coordinator: {tried}")]
    NoneReachable { tried: String },
    #[error("{status}: {message}")]
    Status { status: u16, message: String },
    #[error("unexpected answer from {url}: {message}")]
    Decode { url: String, message: String },
    #[error(transparent)]
    Tls(#[from] torua_tls::TlsError),
}

/// How one attempt at one coordinator ended.
#[derive(Debug)]
enum Attempt {
    /// An HTTP answer; `leader` is its `Torua-Leader` header.
    Answer {
        status: u16,
        leader: Option<String>,
        body: Bytes,
    },
    /// No answer: connection refused, reset, timed out, …
    Unreachable(String),
}

/// What the CLI does after an attempt.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// The answer is the command's result (success or HTTP error).
    Done,
    /// Try the next coordinator of the list.
    TryNext,
    /// Send the same call to this leader (base URL), once.
    Follow(String),
}

/// The choice after an attempt at `base`: an unreachable coordinator passes the call
/// on to the next; any HTTP answer ends it, except that a `mutating` call answered
/// `503 not_leader` naming another leader goes there, if none was `followed` yet.
fn next_step(attempt: &Attempt, base: &str, mutating: bool, followed: bool) -> Step {
    match attempt {
        Attempt::Unreachable(_) => Step::TryNext,
        Attempt::Answer {
            status: 503,
            leader: Some(leader),
            body,
        } if mutating && !followed => {
            let not_leader = serde_json::from_slice::<ErrorBody>(body)
                .is_ok_and(|e| e.error.code == ErrorCode::NotLeader);
            let leader = leader.trim().trim_end_matches('/');
            let usable = leader.starts_with("http://") || leader.starts_with("https://");
            if not_leader && usable && leader != base {
                Step::Follow(leader.to_string())
            } else {
                Step::Done
            }
        }
        Attempt::Answer { .. } => Step::Done,
    }
}

/// `a, b ,c/` → `["a", "b", "c"]`: the coordinator list of `--coordinator`.
pub fn split_bases(list: &str) -> Vec<String> {
    list.split(',')
        .map(|b| b.trim().trim_end_matches('/').to_string())
        .filter(|b| !b.is_empty())
        .collect()
}

pub struct Api {
    bases: Vec<String>,
    token: Option<String>,
    ca_file: Option<PathBuf>,
}

impl Api {
    /// `bases`: one coordinator URL or several, comma-separated, tried in order.
    /// `ca_file`: whom to trust for an `https://` base (default: the system's roots).
    pub fn new(bases: &str, token: Option<String>, ca_file: Option<PathBuf>) -> Api {
        Api {
            bases: split_bases(bases),
            token,
            ca_file,
        }
    }

    fn client(
        &self,
        base: &str,
    ) -> Result<Client<torua_tls::HttpsConnector, Full<Bytes>>, ApiError> {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let connector = torua_tls::connector_for(base, self.ca_file.as_deref(), http)?;
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
        let (url, bytes) = self.call_at(method, path, body)?;
        serde_json::from_slice(&bytes).map_err(|e| ApiError::Decode {
            url,
            message: e.to_string(),
        })
    }

    /// Sends `body`, returns the raw answer body of a 2xx response.
    pub fn call(&self, method: Method, path: &str, body: Bytes) -> Result<Bytes, ApiError> {
        self.call_at(method, path, body).map(|(_, body)| body)
    }

    /// [`Api::call`], also returning the URL that answered.
    fn call_at(
        &self,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> Result<(String, Bytes), ApiError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let mutating = !matches!(method, Method::GET | Method::HEAD);
        let mut queue: VecDeque<String> = self.bases.iter().cloned().collect();
        let mut followed = false;
        let mut tried = Vec::new();
        while let Some(base) = queue.pop_front() {
            let url = format!("{base}{path}");
            let client = self.client(&base)?;
            let attempt = rt.block_on(self.attempt(&client, method.clone(), &url, body.clone()));
            match next_step(&attempt, &base, mutating, followed) {
                Step::TryNext => {
                    if let Attempt::Unreachable(message) = attempt {
                        tried.push((url, message));
                    }
                }
                Step::Follow(leader) => {
                    followed = true;
                    queue.push_front(leader);
                }
                Step::Done => return answer(url, attempt),
            }
        }
        Err(match tried.len() {
            1 => {
                let (url, message) = tried.pop().expect("one");
                ApiError::Unreachable { url, message }
            }
            _ => ApiError::NoneReachable {
                tried: tried
                    .iter()
                    .map(|(url, m)| format!("{url}: {m}"))
                    .collect::<Vec<_>>()
                    .join("; "),
            },
        })
    }

    async fn attempt(
        &self,
        client: &Client<torua_tls::HttpsConnector, Full<Bytes>>,
        method: Method,
        url: &str,
        body: Bytes,
    ) -> Attempt {
        let mut req = Request::builder().method(method).uri(url);
        if let Some(t) = &self.token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let req = match req.body(Full::new(body)) {
            Ok(req) => req,
            Err(e) => return Attempt::Unreachable(e.to_string()),
        };
        let resp = match tokio::time::timeout(REQUEST_TIMEOUT, client.request(req)).await {
            Err(_) => return Attempt::Unreachable("timed out after 10s".into()),
            Ok(Err(e)) => return Attempt::Unreachable(root_cause(&e)),
            Ok(Ok(resp)) => resp,
        };
        let status = resp.status().as_u16();
        let leader = resp
            .headers()
            .get(LEADER_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = tokio::time::timeout(REQUEST_TIMEOUT, resp.into_body().collect()).await;
        match body {
            Err(_) => Attempt::Unreachable("timed out reading the answer".into()),
            Ok(Err(e)) => Attempt::Unreachable(e.to_string()),
            Ok(Ok(body)) => Attempt::Answer {
                status,
                leader,
                body: body.to_bytes(),
            },
        }
    }
}

/// The command's result from a final answer.
fn answer(url: String, attempt: Attempt) -> Result<(String, Bytes), ApiError> {
    match attempt {
        Attempt::Unreachable(message) => Err(ApiError::Unreachable { url, message }),
        Attempt::Answer { status, body, .. } if (200..300).contains(&status) => Ok((url, body)),
        Attempt::Answer { status, body, .. } => {
            let message = serde_json::from_slice::<ErrorBody>(&body)
                .map(|e| e.error.message)
                .unwrap_or_else(|_| String::from_utf8_lossy(&body).into_owned());
            Err(ApiError::Status { status, message })
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, code: &str, leader: Option<&str>) -> Attempt {
        Attempt::Answer {
            status,
            leader: leader.map(String::from),
            body: Bytes::from(format!(r#"{{"error":{{"code":"{code}","message":"m"}}}}"#)),
        }
    }

    #[test]
    fn choice_after_an_attempt() {
        let down = Attempt::Unreachable("connection refused".into());
        let ok = Attempt::Answer {
            status: 200,
            leader: None,
            body: Bytes::from_static(b"{}"),
        };
        let follow = |s: &str| Step::Follow(s.into());
        let here = "http://b:1";
        #[rustfmt::skip]
        let cases = [
            ("unreachable, read", &down, false, false, Step::TryNext),
            ("unreachable, write", &down, true, false, Step::TryNext),
            ("unreachable after following", &down, true, true, Step::TryNext),
            ("success", &ok, true, false, Step::Done),
            ("an HTTP error ends it", &answer(500, "internal", None), true, false, Step::Done),
            ("a 4xx ends it", &answer(404, "not_found", None), false, false, Step::Done),
            ("not_leader, no leader known", &answer(503, "not_leader", None), true, false, Step::Done),
            ("not_leader naming the leader", &answer(503, "not_leader", Some("http://a:1/")), true, false, follow("http://a:1")),
            ("followed once only", &answer(503, "not_leader", Some("http://a:1")), true, true, Step::Done),
            ("reads are not redirected", &answer(503, "not_leader", Some("http://a:1")), false, false, Step::Done),
            ("a leader naming itself", &answer(503, "not_leader", Some("http://b:1")), true, false, Step::Done),
            ("a header that is no URL", &answer(503, "not_leader", Some("a:1")), true, false, Step::Done),
            ("the header needs not_leader", &answer(503, "unavailable", Some("http://a:1")), true, false, Step::Done),
        ];
        let mut failures = Vec::new();
        for (name, attempt, mutating, followed, want) in cases {
            let got = next_step(attempt, here, mutating, followed);
            if got != want {
                failures.push(format!("{name}: got {got:?}, want {want:?}"));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn coordinator_lists() {
        assert_eq!(split_bases("http://a:1"), ["http://a:1"]);
        assert_eq!(
            split_bases("http://a:1/, http://b:1 ,,https://c:1"),
            ["http://a:1", "http://b:1", "https://c:1"]
        );
    }

    /// Two dead coordinators, then a live one: the call lands on the live one; with
    /// only dead ones the error names each.
    #[test]
    fn tries_the_list_in_order() {
        let dead = || {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            format!("http://{}", l.local_addr().unwrap())
        };
        let (d1, d2) = (dead(), dead());
        let live = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let live_url = format!("http://{}", live.local_addr().unwrap());
        let server = std::thread::spawn(move || {
            use std::io::{Read, Write};
            let (mut s, _) = live.accept().unwrap();
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).unwrap();
            s.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-length: 11\r\nconnection: close\r\n\r\n{\"ok\":true}",
            )
            .unwrap();
        });
        let api = Api::new(&format!("{d1},{d2},{live_url}"), None, None);
        assert_eq!(api.get("/v1/cluster").unwrap()["ok"], true);
        server.join().unwrap();

        let err = Api::new(&format!("{d1},{d2}"), None, None)
            .get("/v1/cluster")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("cannot reach any coordinator: ")
                && err.contains(&format!("{d1}/v1/cluster: Connection refused"))
                && err.contains(&format!("{d2}/v1/cluster: Connection refused")),
            "{err}"
        );
        let err = Api::new(&d1, None, None).get("/v1/cluster").unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&format!("cannot reach the coordinator at {d1}/v1/cluster")),
            "{err}"
        );
    }

    /// Serves one connection with `answer` (a whole HTTP response); returns the URL
    /// and the request line it got.
    fn one_shot(answer: String) -> (String, std::thread::JoinHandle<String>) {
        use std::io::{Read, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let h = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut buf = [0u8; 4096];
            let n = s.read(&mut buf).unwrap();
            s.write_all(answer.as_bytes()).unwrap();
            String::from_utf8_lossy(&buf[..n])
                .lines()
                .next()
                .unwrap_or_default()
                .to_string()
        });
        (url, h)
    }

    fn http(status: &str, extra: &str, body: &str) -> String {
        format!(
            "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n{extra}\r\n{body}",
            body.len()
        )
    }

    /// A follower that answers a drain with not_leader naming the leader: the CLI
    /// sends the same call there, once.
    #[test]
    fn a_mutating_call_follows_not_leader_once() {
        let (leader, leader_seen) = one_shot(http("200 OK", "", r#"{"state":"draining"}"#));
        let (follower, follower_seen) = one_shot(http(
            "503 Service Unavailable",
            &format!("torua-leader: {leader}/\r\n"),
            r#"{"error":{"code":"not_leader","message":"c2 follows"}}"#,
        ));
        let api = Api::new(&follower, Some("t".into()), None);
        assert_eq!(api.post("/v1/nodes/n1/drain").unwrap()["state"], "draining");
        assert!(follower_seen
            .join()
            .unwrap()
            .starts_with("POST /v1/nodes/n1/drain "));
        assert!(leader_seen
            .join()
            .unwrap()
            .starts_with("POST /v1/nodes/n1/drain "));

        // A read is answered where it is sent: the 503 is the result.
        let (follower, _seen) = one_shot(http(
            "503 Service Unavailable",
            "torua-leader: http://127.0.0.1:9/\r\n",
            r#"{"error":{"code":"not_leader","message":"no"}}"#,
        ));
        let err = Api::new(&follower, None, None).get("/v1/x").unwrap_err();
        assert!(matches!(err, ApiError::Status { status: 503, .. }), "{err}");
    }
}
