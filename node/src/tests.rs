//! In-process HTTP tests: real nodes on 127.0.0.1:0 talking to each other.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::HeaderMap;
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::io::AsyncWriteExt;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use torua_protocol::node_api::MAX_VALUE_BYTES;

use crate::wire::{Decoder, Record};
use crate::{run, Config};

type TestClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

pub(crate) struct Node {
    pub(crate) addr: SocketAddr,
    client: TestClient,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), crate::NodeError>>,
}

pub(crate) struct Resp {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Resp {
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {:?}", self.body))
    }

    pub(crate) fn error_code(&self) -> String {
        self.json()["error"]["code"].as_str().unwrap().to_owned()
    }

    pub(crate) fn message(&self) -> String {
        self.json()["error"]["message"].as_str().unwrap().to_owned()
    }
}

async fn start(id: &str, data_dir: Option<PathBuf>) -> Node {
    let mut config = Config::new(id);
    config.data_dir = data_dir;
    start_with(config).await
}

pub(crate) async fn start_with(config: Config) -> Node {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(run(config, listener, async {
        let _ = rx.await;
    }));
    Node {
        addr,
        client: Client::builder(TokioExecutor::new()).build_http(),
        stop: Some(tx),
        task,
    }
}

impl Node {
    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, String)],
        body: impl Into<Bytes>,
    ) -> Resp {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.url()));
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let resp = self
            .client
            .request(req.body(Full::new(body.into())).unwrap())
            .await
            .unwrap();
        let (parts, body) = resp.into_parts();
        Resp {
            status: parts.status,
            headers: parts.headers,
            body: body.collect().await.unwrap().to_bytes(),
        }
    }

    async fn assign(&self, shard: u32, epoch: u64, role: &str, reset: bool) -> Resp {
        let body = serde_json::json!({"epoch": epoch, "role": role, "reset": reset}).to_string();
        self.call(Method::PUT, &format!("/v1/shards/{shard}"), &[], body)
            .await
    }

    async fn put(
        &self,
        key: &str,
        shard: u32,
        epoch: u64,
        version: u64,
        value: impl Into<Bytes>,
    ) -> Resp {
        let h = data_headers(shard, epoch, Some(version));
        self.call(Method::PUT, &format!("/v1/data/{}", enc(key)), &h, value)
            .await
    }

    async fn del(&self, key: &str, shard: u32, epoch: u64, version: u64) -> Resp {
        let h = data_headers(shard, epoch, Some(version));
        self.call(
            Method::DELETE,
            &format!("/v1/data/{}", enc(key)),
            &h,
            Bytes::new(),
        )
        .await
    }

    async fn get(&self, key: &str, shard: u32, epoch: u64) -> Resp {
        let h = data_headers(shard, epoch, None);
        self.call(
            Method::GET,
            &format!("/v1/data/{}", enc(key)),
            &h,
            Bytes::new(),
        )
        .await
    }

    async fn snapshot(&self, shard: u32) -> Vec<Record> {
        let r = self
            .call(
                Method::GET,
                &format!("/v1/shards/{shard}/snapshot"),
                &[],
                Bytes::new(),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK);
        let mut d = Decoder::new();
        d.push(&r.body);
        let mut out = Vec::new();
        while let Some(rec) = d.next_record().unwrap() {
            out.push(rec);
        }
        d.finish().unwrap();
        out
    }

    pub(crate) async fn metrics(&self) -> String {
        let r = self.call(Method::GET, "/metrics", &[], Bytes::new()).await;
        assert_eq!(r.status, StatusCode::OK);
        String::from_utf8(r.body.to_vec()).unwrap()
    }

    pub(crate) async fn stop(mut self) {
        self.stop.take().unwrap().send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(15), self.task)
            .await
            .expect("node stops within its grace period")
            .unwrap()
            .unwrap();
    }
}

fn data_headers(shard: u32, epoch: u64, version: Option<u64>) -> Vec<(&'static str, String)> {
    let mut h = vec![
        ("Torua-Shard", shard.to_string()),
        ("Torua-Epoch", epoch.to_string()),
    ];
    if let Some(v) = version {
        h.push(("Torua-Version", v.to_string()));
    }
    h
}

/// Encodes what a path segment cannot carry literally; `/` stays, as clients send it.
fn enc(key: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
        .add(b' ')
        .add(b'%')
        .add(b'?')
        .add(b'#')
        .add(b'"')
        .add(b'<')
        .add(b'>');
    percent_encoding::utf8_percent_encode(key, SET).to_string()
}

/// Not a multiple of 50, so the setup's deletes leave it alone.
const BIG_KEY: u64 = 251;

fn key(i: u64) -> String {
    format!("user/{i} é@x:{}", i % 7)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pull_converges_with_concurrent_writes() {
    let a = start("a", None).await;
    let b = start("b", None).await;
    assert_eq!(a.assign(1, 1, "primary", true).await.status, StatusCode::OK);
    assert_eq!(b.assign(1, 1, "replica", true).await.status, StatusCode::OK);
    // B's leftover data from an earlier life must not survive the reset.
    assert_eq!(
        b.put("stale", 1, 1, 1_000_000, "old").await.status,
        StatusCode::NO_CONTENT
    );

    let version = Arc::new(AtomicU64::new(1));
    let next = || version.fetch_add(1, Ordering::SeqCst);
    let big = Bytes::from(vec![0x5a; 1024 * 1024 + 3]);
    for i in 0..500u64 {
        let value: Bytes = if i == BIG_KEY {
            big.clone()
        } else {
            format!("value-{i}").into()
        };
        assert_eq!(
            a.put(&key(i), 1, 1, next(), value).await.status,
            StatusCode::NO_CONTENT
        );
    }
    for i in (0..500u64).step_by(50) {
        assert_eq!(
            a.del(&key(i), 1, 1, next()).await.status,
            StatusCode::NO_CONTENT
        );
    }

    // The coordinator's move: bump the epoch on both, reset the newcomer, then pull
    // while every write goes to both holders.
    assert_eq!(
        a.assign(1, 2, "primary", false).await.status,
        StatusCode::OK
    );
    let r = b.assign(1, 2, "replica", true).await;
    assert_eq!(
        (r.status, r.json()["keys"].as_u64()),
        (StatusCode::OK, Some(0))
    );

    let a = Arc::new(a);
    let b = Arc::new(b);
    let (done_tx, mut done_rx) = tokio::sync::watch::channel(false);
    let (started_tx, started_rx) = oneshot::channel::<()>();
    let writer = {
        let (a, b, version) = (a.clone(), b.clone(), version.clone());
        tokio::spawn(async move {
            let mut i = 0u64;
            // Keep writing until the pull is done, plus a tail after it.
            let mut after = 0;
            let mut started = Some(started_tx);
            while after < 20 {
                if i == 20 {
                    // Let the pull begin only once live writes are flowing.
                    let _ = started.take().unwrap().send(());
                }
                if *done_rx.borrow_and_update() {
                    after += 1;
                }
                let v = version.fetch_add(1, Ordering::SeqCst);
                // Overwrite old keys too, but leave the big value alone so the
                // pull is sure to carry it.
                let old = (i * 7) % 500;
                let k = key(if i.is_multiple_of(3) || old == BIG_KEY {
                    500 + i
                } else {
                    old
                });
                let (ra, rb) = if i % 5 == 4 {
                    tokio::join!(a.del(&k, 1, 2, v), b.del(&k, 1, 2, v))
                } else {
                    let val = Bytes::from(format!("live-{i}"));
                    tokio::join!(a.put(&k, 1, 2, v, val.clone()), b.put(&k, 1, 2, v, val))
                };
                assert_eq!(
                    (ra.status, rb.status),
                    (StatusCode::NO_CONTENT, StatusCode::NO_CONTENT)
                );
                i += 1;
            }
            i
        })
    };
    started_rx.await.unwrap();
    let body = serde_json::json!({"epoch": 2, "from": a.url()}).to_string();
    let pull = b.call(Method::POST, "/v1/shards/1/pull", &[], body).await;
    done_tx.send(true).unwrap();
    assert_eq!(pull.status, StatusCode::OK, "{:?}", pull.body);
    assert!(pull.json()["keys"].as_u64().unwrap() >= 500);
    assert!(pull.json()["bytes"].as_u64().unwrap() > big.len() as u64);
    let live_writes = writer.await.unwrap();
    assert!(live_writes >= 40);

    let (sa, sb) = (a.snapshot(1).await, b.snapshot(1).await);
    assert!(sa.len() >= 500);
    assert!(
        sa.iter().any(|r| r.value.is_none()),
        "tombstones are copied"
    );
    assert!(!sb.iter().any(|r| r.key == "stale"));
    assert_eq!(sa, sb);
    let r = b.get(&key(BIG_KEY), 1, 2).await;
    assert_eq!((r.status, r.body), (StatusCode::OK, big));
    let (ia, ib) = (
        a.call(Method::GET, "/v1/shards/1", &[], Bytes::new())
            .await
            .json(),
        b.call(Method::GET, "/v1/shards/1", &[], Bytes::new())
            .await
            .json(),
    );
    assert_eq!((&ia["keys"], &ia["bytes"]), (&ib["keys"], &ib["bytes"]));
    assert!(b.metrics().await.contains("torua_kv_copy_bytes_total "));

    for n in [a, b] {
        Arc::into_inner(n).unwrap().stop().await;
    }
}

/// (method, path, headers, body) -> (status, code, message fragment).
type ErrorCase = (
    Method,
    &'static str,
    Vec<(&'static str, String)>,
    Bytes,
    u16,
    &'static str,
    &'static str,
);

#[tokio::test]
async fn api_contract() {
    let n = start("n1", None).await;
    let health = n
        .call(Method::GET, "/health", &[], Bytes::new())
        .await
        .json();
    assert_eq!(
        health,
        serde_json::json!({"status":"ok","node_id":"n1","shards":0})
    );

    let r = n.assign(3, 7, "primary", true).await;
    assert_eq!(
        r.json(),
        serde_json::json!({"id":3,"epoch":7,"role":"primary","keys":0,"bytes":0,
            "reads":0,"writes":0,"read_bytes":0,"write_bytes":0})
    );
    n.assign(1, 1, "replica", true).await;
    let list = n
        .call(Method::GET, "/v1/shards", &[], Bytes::new())
        .await
        .json();
    assert_eq!(list["shards"][0]["id"], 1);
    assert_eq!(list["shards"][1]["id"], 3);

    // Keys with slashes, spaces, @, :, unicode, and %2F all round-trip.
    for (raw, decoded) in [
        ("a/b/c", "a/b/c"),
        ("sp%20ace", "sp ace"),
        ("u@h:1", "u@h:1"),
        ("%E2%9C%93", "✓"),
        ("x%2Fy", "x/y"),
    ] {
        let h = data_headers(3, 7, Some(5));
        let r = n
            .call(
                Method::PUT,
                &format!("/v1/data/{raw}"),
                &h,
                decoded.to_owned(),
            )
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{raw}");
        let r = n
            .call(
                Method::GET,
                &format!("/v1/data/{raw}"),
                &data_headers(3, 7, None),
                Bytes::new(),
            )
            .await;
        assert_eq!(
            (r.status, &r.body[..]),
            (StatusCode::OK, decoded.as_bytes()),
            "{raw}"
        );
        assert_eq!(r.headers["torua-version"], "5");
    }
    let list = n
        .call(
            Method::GET,
            "/v1/data?shard=3&prefix=x%2F",
            &[],
            Bytes::new(),
        )
        .await;
    assert_eq!(list.json(), serde_json::json!({"keys":["x/y"]}));

    // Version rule over HTTP: an older write is refused as superseded with the held
    // version, a duplicate is acknowledged, newer wins, a tombstone hides.
    assert_eq!(
        n.put("k", 3, 7, 10, "ten").await.status,
        StatusCode::NO_CONTENT
    );
    let older = n.put("k", 3, 7, 9, "nine").await;
    assert_eq!(
        (older.status, older.error_code()),
        (StatusCode::CONFLICT, "superseded".into())
    );
    assert_eq!(
        older
            .headers
            .get("torua-version")
            .map(|v| v.to_str().unwrap()),
        Some("10")
    );
    assert_eq!(
        n.del("k", 3, 7, 9).await.status,
        StatusCode::CONFLICT,
        "an older delete is refused too"
    );
    assert_eq!(
        n.put("k", 3, 7, 10, "ten").await.status,
        StatusCode::NO_CONTENT,
        "the same version again is a duplicate"
    );
    assert_eq!(&n.get("k", 3, 7).await.body[..], b"ten");
    assert_eq!(n.del("k", 3, 7, 11).await.status, StatusCode::NO_CONTENT);
    let r = n.get("k", 3, 7).await;
    assert_eq!(
        (r.status, r.error_code()),
        (StatusCode::NOT_FOUND, "not_found".into())
    );
    assert_eq!(
        n.put("k", 3, 7, 11, "same version").await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(n.get("k", 3, 7).await.status, StatusCode::NOT_FOUND);

    // Errors: (method, path, headers, body) -> (status, code, message fragment).
    let h = |s: u32, e: u64| data_headers(s, e, Some(1));
    let cases: Vec<ErrorCase> = vec![
        (
            Method::GET,
            "/v1/data/k",
            h(9, 1),
            Bytes::new(),
            409,
            "conflict",
            "shard 9 not held",
        ),
        (
            Method::PUT,
            "/v1/data/k",
            h(3, 6),
            "v".into(),
            409,
            "stale",
            "epoch 6 but shard 3 is at epoch 7",
        ),
        (
            Method::PUT,
            "/v1/data/k",
            h(3, 8),
            "v".into(),
            409,
            "conflict",
            "epoch ahead: assignment not received yet",
        ),
        (
            Method::GET,
            "/v1/data/k",
            vec![("Torua-Shard", "3".into())],
            Bytes::new(),
            400,
            "malformed",
            "missing header Torua-Epoch",
        ),
        (
            Method::GET,
            "/v1/data/k",
            vec![("Torua-Epoch", "7".into())],
            Bytes::new(),
            400,
            "malformed",
            "missing header Torua-Shard",
        ),
        (
            Method::PUT,
            "/v1/data/k",
            data_headers(3, 7, None),
            Bytes::new(),
            400,
            "malformed",
            "missing header Torua-Version",
        ),
        (
            Method::PUT,
            "/v1/data/k",
            vec![
                ("Torua-Shard", "x".into()),
                ("Torua-Epoch", "7".into()),
                ("Torua-Version", "1".into()),
            ],
            Bytes::new(),
            400,
            "malformed",
            "header Torua-Shard",
        ),
        (
            Method::GET,
            "/v1/data/",
            h(3, 7),
            Bytes::new(),
            400,
            "malformed",
            "key is empty",
        ),
        (
            Method::GET,
            "/v1/data/a%0Ab",
            h(3, 7),
            Bytes::new(),
            400,
            "malformed",
            "control character",
        ),
        (
            Method::GET,
            "/v1/data/%FF",
            h(3, 7),
            Bytes::new(),
            400,
            "malformed",
            "UTF-8",
        ),
        (
            Method::POST,
            "/v1/data/k",
            h(3, 7),
            Bytes::new(),
            405,
            "malformed",
            "method not allowed",
        ),
        (
            Method::GET,
            "/nope",
            vec![],
            Bytes::new(),
            404,
            "not_found",
            "no route",
        ),
        (
            Method::GET,
            "/v1/shards/9",
            vec![],
            Bytes::new(),
            404,
            "not_found",
            "shard 9",
        ),
        (
            Method::GET,
            "/v1/shards/x",
            vec![],
            Bytes::new(),
            400,
            "malformed",
            "shard id",
        ),
        (
            Method::PUT,
            "/v1/shards/3",
            vec![],
            r#"{"epoch":6,"role":"primary"}"#.into(),
            409,
            "stale",
            "epoch 6 but shard 3 is at epoch 7",
        ),
        (
            Method::PUT,
            "/v1/shards/3",
            vec![],
            r#"{"epoch":7,"role":"leader"}"#.into(),
            400,
            "malformed",
            "unknown variant",
        ),
        (
            Method::DELETE,
            "/v1/shards/3?epoch=6",
            vec![],
            Bytes::new(),
            409,
            "stale",
            "epoch 6",
        ),
        (
            Method::DELETE,
            "/v1/shards/3",
            vec![],
            Bytes::new(),
            400,
            "malformed",
            "missing query parameter epoch",
        ),
        (
            Method::POST,
            "/v1/shards/3/pull",
            vec![],
            r#"{"epoch":6,"from":"http://127.0.0.1:1"}"#.into(),
            409,
            "stale",
            "epoch 6",
        ),
        (
            Method::POST,
            "/v1/shards/3/pull",
            vec![],
            r#"{"epoch":7,"from":"127.0.0.1:1"}"#.into(),
            400,
            "malformed",
            "127.0.0.1:1",
        ),
        (
            Method::GET,
            "/v1/data?prefix=a",
            vec![],
            Bytes::new(),
            400,
            "malformed",
            "missing query parameter shard",
        ),
    ];
    for (method, path, headers, body, status, code, fragment) in cases {
        let what = format!("{method} {path} {headers:?}");
        let r = n.call(method, path, &headers, body).await;
        assert_eq!(r.status.as_u16(), status, "{what}: {:?}", r.body);
        assert_eq!(r.error_code(), code, "{what}");
        assert!(r.message().contains(fragment), "{what}: {}", r.message());
    }

    // 413 for a value one byte over the limit.
    let r = n.put("big", 3, 7, 50, vec![0u8; MAX_VALUE_BYTES + 1]).await;
    assert_eq!(
        (r.status.as_u16(), r.error_code()),
        (413, "too_large".into())
    );
    assert_eq!(
        n.put("big", 3, 7, 50, vec![0u8; MAX_VALUE_BYTES])
            .await
            .status,
        StatusCode::NO_CONTENT
    );

    let m = n.metrics().await;
    assert!(
        m.contains(r#"torua_kv_fenced_total{reason="stale"} 1"#),
        "{m}"
    );
    assert!(
        m.contains(r#"torua_kv_fenced_total{reason="ahead"} 1"#),
        "{m}"
    );
    assert!(m.contains(r#"torua_kv_shards{role="primary"} 1"#), "{m}");
    torua_tests::tools::promtool_check_metrics("a node", &m);

    assert_eq!(
        n.call(Method::DELETE, "/v1/shards/3?epoch=7", &[], Bytes::new())
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        n.call(Method::DELETE, "/v1/shards/3?epoch=7", &[], Bytes::new())
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(n.get("a/b/c", 3, 7).await.status, StatusCode::CONFLICT);
    n.stop().await;
}

/// A fake source that answers 200 and then breaks the stream in `how`.
async fn broken_source(response: &'static [u8]) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = tokio::io::AsyncReadExt::read(&mut s, &mut buf).await;
            let _ = s.write_all(response).await;
            let _ = s.shutdown().await;
        }
    });
    addr
}

#[tokio::test]
async fn pull_reports_failed_and_truncated_sources() {
    let n = start("n1", None).await;
    n.assign(1, 1, "replica", true).await;
    let dead = {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    // A complete record (kind 1, key "k", version 1, value "v") followed by a cut one.
    const CUT_CHUNKED: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1a\r\n\x01\x00\x00\x00\x01k\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x01v\x01\x00\x00\x00\x05ab\r\n0\r\n\r\n";
    const SHORT_BODY: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n\x01\x00\x00";
    const NOT_OK: &[u8] = b"HTTP/1.1 404 Not Found\r\nContent-Length: 7\r\n\r\nmissing";
    let cases = [
        (format!("http://{dead}"), "request failed"),
        (
            format!("http://{}", broken_source(CUT_CHUNKED).await),
            "stream truncated",
        ),
        (
            format!("http://{}", broken_source(SHORT_BODY).await),
            "stream failed",
        ),
        (
            format!("http://{}", broken_source(NOT_OK).await),
            "404 Not Found: missing",
        ),
    ];
    for (from, fragment) in cases {
        let body = serde_json::json!({"epoch": 1, "from": from}).to_string();
        let r = n.call(Method::POST, "/v1/shards/1/pull", &[], body).await;
        assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{from}: {:?}", r.body);
        assert!(r.message().contains(fragment), "{from}: {}", r.message());
    }
    // A source that does not hold the shard answers 409, which the pull passes on as 502.
    let other = start("n2", None).await;
    let body = serde_json::json!({"epoch": 1, "from": other.url()}).to_string();
    let r = n.call(Method::POST, "/v1/shards/1/pull", &[], body).await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
    assert!(r.message().contains("shard 1 not held"), "{}", r.message());
    assert!(n
        .metrics()
        .await
        .contains(r#"torua_kv_copies_total{result="error"} 5"#));
    other.stop().await;
    n.stop().await;
}

/// The load counters of one shard, as `GET /v1/shards/{id}` shows them.
async fn served(n: &Node, shard: u32) -> [u64; 4] {
    let info = n
        .call(
            Method::GET,
            &format!("/v1/shards/{shard}"),
            &[],
            Bytes::new(),
        )
        .await
        .json();
    ["reads", "writes", "read_bytes", "write_bytes"]
        .map(|k| info[k].as_u64().unwrap_or_else(|| panic!("{k} in {info}")))
}

#[tokio::test]
async fn shards_count_the_client_reads_and_writes_they_serve() {
    let a = start("a", None).await;
    let b = start("b", None).await;
    a.assign(1, 1, "primary", true).await;
    a.assign(2, 1, "primary", true).await;
    assert_eq!(served(&a, 1).await, [0, 0, 0, 0]);

    // Three writes (10 + 4 value bytes and a delete), four reads (10 bytes found,
    // the deleted key, a key never written, the 10 bytes again).
    for (key, version, value) in [("k1", 1, "0123456789"), ("k2", 2, "abcd")] {
        assert_eq!(
            a.put(key, 1, 1, version, value).await.status,
            StatusCode::NO_CONTENT
        );
    }
    assert_eq!(a.del("k2", 1, 1, 3).await.status, StatusCode::NO_CONTENT);
    for (key, status) in [
        ("k1", StatusCode::OK),
        ("k2", StatusCode::NOT_FOUND),
        ("never", StatusCode::NOT_FOUND),
        ("k1", StatusCode::OK),
    ] {
        assert_eq!(a.get(key, 1, 1).await.status, status, "{key}");
    }
    // A superseded write was still served (looked up and refused); fenced calls
    // were not served by this copy and do not count.
    assert_eq!(
        a.put("k1", 1, 1, 0, "old").await.status,
        StatusCode::CONFLICT
    );
    assert_eq!(a.get("k1", 1, 9).await.status, StatusCode::CONFLICT);
    assert_eq!(a.put("k1", 1, 0, 9, "x").await.status, StatusCode::CONFLICT);
    assert_eq!(served(&a, 1).await, [4, 4, 20, 17]);
    assert_eq!(served(&a, 2).await, [0, 0, 0, 0], "per shard");

    // The list shows the same counters.
    let list = a
        .call(Method::GET, "/v1/shards", &[], Bytes::new())
        .await
        .json();
    let one = &list["shards"][0];
    assert_eq!(
        (&one["id"], &one["reads"], &one["writes"]),
        (
            &serde_json::json!(1),
            &serde_json::json!(4),
            &serde_json::json!(4)
        )
    );
    assert_eq!(
        (&one["read_bytes"], &one["write_bytes"]),
        (&serde_json::json!(20), &serde_json::json!(17))
    );

    // A copy is not client load: neither the source's snapshot nor the target's pull.
    b.assign(1, 1, "replica", true).await;
    let body = serde_json::json!({"epoch": 1, "from": a.url()}).to_string();
    let r = b.call(Method::POST, "/v1/shards/1/pull", &[], body).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(a.snapshot(1).await.len(), 2);
    assert_eq!(served(&a, 1).await, [4, 4, 20, 17]);
    assert_eq!(served(&b, 1).await, [0, 0, 0, 0]);

    // A new epoch or role keeps them; a reset (taken afresh) and a drop start over.
    a.assign(1, 2, "replica", false).await;
    assert_eq!(served(&a, 1).await, [4, 4, 20, 17]);
    a.assign(1, 3, "replica", true).await;
    assert_eq!(served(&a, 1).await, [0, 0, 0, 0]);
    a.get("k1", 1, 3).await;
    assert_eq!(served(&a, 1).await, [1, 0, 0, 0]);
    let r = a
        .call(Method::DELETE, "/v1/shards/1?epoch=3", &[], Bytes::new())
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    a.assign(1, 4, "primary", true).await;
    assert_eq!(served(&a, 1).await, [0, 0, 0, 0]);
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn durable_node_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let n = start("n1", Some(dir.path().to_owned())).await;
    n.assign(2, 3, "primary", true).await;
    n.put("a/1", 2, 3, 1, "one").await;
    n.put("a/2", 2, 3, 2, "two").await;
    n.del("a/2", 2, 3, 3).await;
    n.stop().await;

    let n = start("n1", Some(dir.path().to_owned())).await;
    let info = n
        .call(Method::GET, "/v1/shards/2", &[], Bytes::new())
        .await
        .json();
    assert_eq!(
        info,
        serde_json::json!({"id":2,"epoch":3,"role":"primary","keys":1,"bytes":6,
            "reads":0,"writes":0,"read_bytes":0,"write_bytes":0}),
        "a restart starts the load counters afresh"
    );
    assert_eq!(&n.get("a/1", 2, 3).await.body[..], b"one");
    assert_eq!(n.get("a/2", 2, 3).await.status, StatusCode::NOT_FOUND);
    // A reset must not come back after a restart.
    n.assign(2, 4, "replica", true).await;
    n.stop().await;
    let n = start("n1", Some(dir.path().to_owned())).await;
    let info = n
        .call(Method::GET, "/v1/shards/2", &[], Bytes::new())
        .await
        .json();
    assert_eq!(
        info,
        serde_json::json!({"id":2,"epoch":4,"role":"replica","keys":0,"bytes":0,
            "reads":0,"writes":0,"read_bytes":0,"write_bytes":0})
    );
    n.stop().await;
}

#[test]
fn every_module_starts_with_a_doc_line() {
    fn walk(dir: &std::path::Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut files,
    );
    assert!(files.len() > 10);
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        assert!(
            text.starts_with("//! "),
            "{} must start with a `//!` line",
            f.display()
        );
    }
}
