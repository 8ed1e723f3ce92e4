//! In-process tests of the node's authentication: signed calls, 401s by reason (and
//! nothing changed by a refused call), open probes, pull tickets, rotation, and the
//! refusal to serve off loopback without a key.

use std::time::Duration;

use bytes::Bytes;
use hyper::{Method, StatusCode};
use torua_protocol::node_call::{
    sign_call_header, signed_header_values, Call, Nonce, Ticket, TICKET_LIFETIME_MS, UNKNOWN_BOOT,
};
use torua_protocol::{derive_node_key, NodeKey};

use crate::auth::unix_ms;
use crate::tests::{start_with, Node, Resp};
use crate::{run, Config, NodeError};

const SECRET: &[u8] = b"node auth unit-test secret, 32 bytes+";

fn key(id: &str) -> NodeKey {
    derive_node_key(SECRET, id)
}

async fn start_keyed(id: &str, keys: Vec<NodeKey>) -> Node {
    let mut config = Config::new(id);
    config.keys = keys;
    start_with(config).await
}

fn fresh_nonce() -> Nonce {
    let mut n = [0u8; 16];
    n[..8].copy_from_slice(&fastrand_u64().to_be_bytes());
    n[8..].copy_from_slice(&unix_ms().to_be_bytes());
    n
}

/// A different value per call in this process (no RNG crate in the node's tests).
fn fastrand_u64() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// The `Authorization` the coordinator would send to `node` for this request.
#[allow(clippy::too_many_arguments)]
fn authorization(
    key: &NodeKey,
    node: &str,
    boot: &str,
    method: &Method,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
    ts_ms: u64,
    nonce: Nonce,
) -> String {
    let call = Call {
        method: method.as_str(),
        path_and_query: path,
        node,
        boot,
        ts_ms,
        nonce,
        headers: signed_header_values(headers),
    };
    sign_call_header(key, &call, body)
}

impl Node {
    /// The node's boot id, from the header every answer carries.
    async fn boot(&self) -> String {
        let r = self.call(Method::GET, "/livez", &[], Bytes::new()).await;
        r.headers["torua-node-boot"].to_str().unwrap().to_string()
    }

    /// A call signed now with `key` for `node`, with a fresh nonce.
    async fn signed(
        &self,
        key: &NodeKey,
        node: &str,
        method: Method,
        path: &str,
        headers: &[(&'static str, String)],
        body: &[u8],
    ) -> Resp {
        let boot = self.boot().await;
        let auth = authorization(
            key,
            node,
            &boot,
            &method,
            path,
            headers,
            body,
            unix_ms(),
            fresh_nonce(),
        );
        let mut h = headers.to_vec();
        h.push(("Authorization", auth));
        self.call(method, path, &h, Bytes::copy_from_slice(body))
            .await
    }

    async fn state(&self, key: &NodeKey, node: &str) -> serde_json::Value {
        let r = self
            .signed(key, node, Method::GET, "/v1/shards", &[], b"")
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        r.json()
    }
}

fn assign_body(epoch: u64, reset: bool) -> Vec<u8> {
    serde_json::json!({"epoch": epoch, "role": "primary", "reset": reset})
        .to_string()
        .into_bytes()
}

fn data(shard: u32, epoch: u64, version: u64) -> Vec<(&'static str, String)> {
    vec![
        ("Torua-Shard", shard.to_string()),
        ("Torua-Epoch", epoch.to_string()),
        ("Torua-Version", version.to_string()),
    ]
}

fn metric(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

#[tokio::test]
async fn unsigned_forged_stale_and_replayed_calls_are_refused_401_and_change_nothing() {
    let n = start_keyed("n1", vec![key("n1")]).await;
    let k = key("n1");
    let r = n
        .signed(
            &k,
            "n1",
            Method::PUT,
            "/v1/shards/3",
            &[],
            &assign_body(7, true),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let r = n
        .signed(&k, "n1", Method::PUT, "/v1/data/k", &data(3, 7, 5), b"kept")
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
    let before = n.state(&k, "n1").await;

    // One correctly signed call, captured: replayed as it is it must be refused.
    let huge = assign_body(u64::MAX / 2, true);
    let now = unix_ms();
    let boot = n.boot().await;
    assert_eq!(boot.len(), 16, "{boot}");
    let captured = authorization(
        &k,
        "n1",
        &boot,
        &Method::GET,
        "/v1/shards",
        &[],
        b"",
        now,
        fresh_nonce(),
    );
    let first = n
        .call(
            Method::GET,
            "/v1/shards",
            &[("Authorization", captured.clone())],
            Bytes::new(),
        )
        .await;
    assert_eq!(first.status, StatusCode::OK);

    let auth = |a: String| vec![("Authorization", a)];
    let signed_as = |key: &NodeKey, node: &str, body: &[u8], ts: u64| {
        authorization(
            key,
            node,
            &boot,
            &Method::PUT,
            "/v1/shards/3",
            &[],
            body,
            ts,
            fresh_nonce(),
        )
    };
    // (what, method, path, headers, body, code, reason)
    type Case = (
        &'static str,
        Method,
        &'static str,
        Vec<(&'static str, String)>,
        Vec<u8>,
        &'static str,
        &'static str,
    );
    let cases: Vec<Case> = vec![
        (
            "unsigned reset",
            Method::PUT,
            "/v1/shards/3",
            vec![],
            huge.clone(),
            "unauthorized",
            "missing",
        ),
        (
            "bearer",
            Method::PUT,
            "/v1/shards/3",
            auth("Bearer x".into()),
            huge.clone(),
            "unauthorized",
            "missing",
        ),
        (
            "garbled",
            Method::PUT,
            "/v1/shards/3",
            auth("Torua-Call-HMAC-SHA256 node=n1".into()),
            huge.clone(),
            "unauthorized",
            "malformed",
        ),
        (
            "another secret",
            Method::PUT,
            "/v1/shards/3",
            auth(signed_as(
                &derive_node_key(b"a guessed secret, also 32 bytes!", "n1"),
                "n1",
                &huge,
                now,
            )),
            huge.clone(),
            "bad_signature",
            "bad_signature",
        ),
        (
            "n2's key as n1",
            Method::PUT,
            "/v1/shards/3",
            auth(signed_as(&key("n2"), "n1", &huge, now)),
            huge.clone(),
            "bad_signature",
            "bad_signature",
        ),
        (
            "signed for n2",
            Method::PUT,
            "/v1/shards/3",
            auth(signed_as(&key("n2"), "n2", &huge, now)),
            huge.clone(),
            "unauthorized",
            "wrong_node",
        ),
        (
            "body swapped",
            Method::PUT,
            "/v1/shards/3",
            auth(signed_as(&k, "n1", &assign_body(7, false), now)),
            huge.clone(),
            "bad_signature",
            "bad_signature",
        ),
        (
            "stale ts",
            Method::PUT,
            "/v1/shards/3",
            auth(signed_as(&k, "n1", &huge, now - 31_000)),
            huge.clone(),
            "unauthorized",
            "clock_skew",
        ),
        (
            "future ts",
            Method::PUT,
            "/v1/shards/3",
            auth(signed_as(&k, "n1", &huge, now + 31_000)),
            huge.clone(),
            "unauthorized",
            "clock_skew",
        ),
        (
            "replayed",
            Method::GET,
            "/v1/shards",
            auth(captured.clone()),
            vec![],
            "replay",
            "replay",
        ),
        (
            "signed without the boot id",
            Method::PUT,
            "/v1/shards/3",
            auth(authorization(
                &k,
                "n1",
                UNKNOWN_BOOT,
                &Method::PUT,
                "/v1/shards/3",
                &[],
                &huge,
                now,
                fresh_nonce(),
            )),
            huge.clone(),
            "unauthorized",
            "challenge",
        ),
        (
            "signed for an earlier start",
            Method::PUT,
            "/v1/shards/3",
            auth(authorization(
                &k,
                "n1",
                "0123456789abcdef",
                &Method::PUT,
                "/v1/shards/3",
                &[],
                &huge,
                now,
                fresh_nonce(),
            )),
            huge.clone(),
            "unauthorized",
            "wrong_boot",
        ),
        (
            "replay onto a reset",
            Method::PUT,
            "/v1/shards/3",
            auth(captured.clone()),
            huge.clone(),
            "bad_signature",
            "bad_signature",
        ),
        (
            "forged data headers",
            Method::PUT,
            "/v1/data/k",
            data(3, 7, u64::MAX),
            b"forged".to_vec(),
            "unauthorized",
            "missing",
        ),
        (
            "delete shard",
            Method::DELETE,
            "/v1/shards/3?epoch=99",
            vec![],
            vec![],
            "unauthorized",
            "missing",
        ),
        (
            "delete key",
            Method::DELETE,
            "/v1/data/k",
            data(3, 7, u64::MAX),
            vec![],
            "unauthorized",
            "missing",
        ),
        (
            "pull from anywhere",
            Method::POST,
            "/v1/shards/3/pull",
            vec![],
            br#"{"epoch":7,"from":"http://127.0.0.1:1"}"#.to_vec(),
            "unauthorized",
            "missing",
        ),
        (
            "snapshot",
            Method::GET,
            "/v1/shards/3/snapshot",
            vec![],
            vec![],
            "unauthorized",
            "missing",
        ),
        (
            "read",
            Method::GET,
            "/v1/data/k",
            data(3, 7, 1),
            vec![],
            "unauthorized",
            "missing",
        ),
        (
            "unknown path",
            Method::GET,
            "/nope",
            vec![],
            vec![],
            "unauthorized",
            "missing",
        ),
    ];
    for (what, method, path, headers, body, code, reason) in cases {
        let before_reason = metric(
            &n.metrics().await,
            &format!("torua_kv_auth_failures_total{{reason=\"{reason}\"}}"),
        );
        let r = n.call(method, path, &headers, body).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{what}: {:?}", r.body);
        assert_eq!(r.error_code(), code, "{what}: {}", r.message());
        assert_eq!(
            r.headers.get("www-authenticate").unwrap(),
            "Torua-Call-HMAC-SHA256",
            "{what}"
        );
        assert_eq!(
            metric(
                &n.metrics().await,
                &format!("torua_kv_auth_failures_total{{reason=\"{reason}\"}}"),
            ),
            before_reason + 1,
            "{what} counted as {reason}"
        );
    }
    assert_eq!(
        n.state(&k, "n1").await,
        before,
        "a refused call changed nothing"
    );
    let r = n
        .signed(&k, "n1", Method::GET, "/v1/data/k", &data(3, 7, 0), b"")
        .await;
    assert_eq!((r.status, &r.body[..]), (StatusCode::OK, &b"kept"[..]));
    let m = n.metrics().await;
    assert!(
        m.contains(r#"torua_kv_requests_total{code="401",op="shard_put"}"#),
        "{m}"
    );
    torua_tests::tools::promtool_check_metrics("a node", &m);
    n.stop().await;
}

#[tokio::test]
async fn probes_stay_open_and_every_reason_starts_at_zero() {
    let n = start_keyed("n1", vec![key("n1")]).await;
    for path in ["/health", "/livez", "/readyz", "/metrics"] {
        let r = n.call(Method::GET, path, &[], Bytes::new()).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
    }
    let r = n.call(Method::POST, "/livez", &[], Bytes::new()).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    let m = n.metrics().await;
    for reason in torua_protocol::node_call::Refusal::REASONS {
        assert_eq!(
            metric(
                &m,
                &format!("torua_kv_auth_failures_total{{reason=\"{reason}\"}}")
            ),
            0
        );
    }
    n.stop().await;
}

#[tokio::test]
async fn a_previous_key_is_accepted_during_a_rotation() {
    let old = derive_node_key(b"the old cluster secret, 32 bytes.", "n1");
    let new = derive_node_key(b"the new cluster secret, 32 bytes.", "n1");
    let n = start_keyed("n1", vec![new.clone(), old.clone()]).await;
    for k in [&new, &old] {
        let r = n.signed(k, "n1", Method::GET, "/v1/shards", &[], b"").await;
        assert_eq!(r.status, StatusCode::OK);
    }
    n.stop().await;
    let n = start_keyed("n1", vec![new.clone()]).await;
    let r = n
        .signed(&old, "n1", Method::GET, "/v1/shards", &[], b"")
        .await;
    assert_eq!(
        (r.status, r.error_code()),
        (StatusCode::UNAUTHORIZED, "bad_signature".into())
    );
    n.stop().await;
}

#[tokio::test]
async fn a_pull_shows_the_source_a_ticket_signed_with_its_key() {
    let (a, b) = (
        start_keyed("a", vec![key("a")]).await,
        start_keyed("b", vec![key("b")]).await,
    );
    for (n, id) in [(&a, "a"), (&b, "b")] {
        let r = n
            .signed(
                &key(id),
                id,
                Method::PUT,
                "/v1/shards/1",
                &[],
                &assign_body(4, true),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK);
    }
    for i in 0..20u64 {
        let r = a
            .signed(
                &key("a"),
                "a",
                Method::PUT,
                &format!("/v1/data/k{i}"),
                &data(1, 4, i + 1),
                b"v",
            )
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT);
    }
    let ticket = |shard: u32, epoch: u64, source: &str, expires_ms: u64, signer: &str| {
        Ticket {
            shard,
            epoch,
            source: source.into(),
            dest: "b".into(),
            expires_ms,
        }
        .sign(&key(signer))
    };
    let later = unix_ms() + TICKET_LIFETIME_MS;
    let pull = |t: Option<String>| {
        let mut body = serde_json::json!({"epoch": 4, "from": a.url()});
        if let Some(t) = t {
            body["ticket"] = t.into();
        }
        body.to_string().into_bytes()
    };
    // Refused by the source: the pull fails (502) and says why.
    for (what, t, fragment) in [
        ("no ticket", None, "must be signed"),
        (
            "forged",
            Some(ticket(1, 4, "a", later, "b")),
            "does not verify",
        ),
        (
            "expired",
            Some(ticket(1, 4, "a", unix_ms() - 1, "a")),
            "expired",
        ),
        (
            "another shard",
            Some(ticket(2, 4, "a", later, "a")),
            "shard 2",
        ),
        (
            "another source",
            Some(ticket(1, 4, "b", later, "a")),
            "a pull from",
        ),
        (
            "an older epoch",
            Some(ticket(1, 3, "a", later, "a")),
            "stale epoch",
        ),
    ] {
        let r = b
            .signed(
                &key("b"),
                "b",
                Method::POST,
                "/v1/shards/1/pull",
                &[],
                &pull(t),
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{what}: {:?}", r.body);
        assert!(r.message().contains(fragment), "{what}: {}", r.message());
    }
    assert_eq!(b.state(&key("b"), "b").await["shards"][0]["keys"], 0);
    let r = b
        .signed(
            &key("b"),
            "b",
            Method::POST,
            "/v1/shards/1/pull",
            &[],
            &pull(Some(ticket(1, 4, "a", later, "a"))),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.json()["keys"], 20);
    assert_eq!(b.state(&key("b"), "b").await["shards"][0]["keys"], 20);
    let m = a.metrics().await;
    for (reason, n) in [
        ("missing", 1),
        ("bad_ticket", 1),
        ("expired_ticket", 1),
        ("wrong_ticket", 2),
    ] {
        assert_eq!(
            metric(
                &m,
                &format!("torua_kv_auth_failures_total{{reason=\"{reason}\"}}")
            ),
            n,
            "{reason}"
        );
    }
    // A snapshot fetched with a good ticket directly, and the coordinator's own
    // signed fetch, both work.
    let r = a
        .call(
            Method::GET,
            "/v1/shards/1/snapshot",
            &[("Torua-Ticket", ticket(1, 4, "a", later, "a"))],
            Bytes::new(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = a
        .signed(
            &key("a"),
            "a",
            Method::GET,
            "/v1/shards/1/snapshot",
            &[],
            b"",
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_node_without_a_key_serves_only_on_loopback_unless_told_otherwise() {
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let err = tokio::time::timeout(
        Duration::from_secs(5),
        run(Config::new("n7"), listener, std::future::pending()),
    )
    .await
    .expect("refuses at once")
    .unwrap_err();
    assert!(matches!(err, NodeError::NoKey { .. }), "{err}");
    let msg = err.to_string();
    for want in [
        "without a key",
        "--key-file",
        "torua keygen --node n7",
        "--cluster-secret-file",
        "--insecure-no-auth",
    ] {
        assert!(msg.contains(want), "{want}: {msg}");
    }
    // With --insecure-no-auth or a key it serves (and stops when told).
    for (insecure, keys) in [(true, vec![]), (false, vec![key("n7")])] {
        let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut config = Config::new("n7");
        config.insecure_no_auth = insecure;
        config.keys = keys;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(run(config, listener, async {
            let _ = rx.await;
        }));
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<http_body_util::Empty<Bytes>>();
        let resp = client
            .get(format!("http://127.0.0.1:{port}/livez").parse().unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        tx.send(()).unwrap();
        task.await.unwrap().unwrap();
    }
}

/// `PUT /v1/shards/5` with `body` and the given `Authorization`.
async fn send_with(n: &Node, authorization: &str, body: &[u8]) -> Resp {
    let h = [("Authorization", authorization.to_string())];
    n.call(
        Method::PUT,
        "/v1/shards/5",
        &h,
        Bytes::copy_from_slice(body),
    )
    .await
}

#[tokio::test]
async fn a_call_captured_before_a_restart_is_refused_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let start = || {
        let mut config = Config::new("n1");
        config.keys = vec![key("n1")];
        config.data_dir = Some(dir.path().to_owned());
        start_with(config)
    };
    let k = key("n1");
    let n = start().await;
    let boot = n.boot().await;
    // The captured call: a reset, which wipes the shard every time it is applied.
    let reset = assign_body(1, true);
    let captured = authorization(
        &k,
        "n1",
        &boot,
        &Method::PUT,
        "/v1/shards/5",
        &[],
        &reset,
        unix_ms(),
        fresh_nonce(),
    );
    assert_eq!(
        send_with(&n, &captured, &reset).await.status,
        StatusCode::OK
    );
    let r = n
        .signed(&k, "n1", Method::PUT, "/v1/data/k", &data(5, 1, 1), b"kept")
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    n.stop().await;

    // Restarted (its replay guard is new and empty), well within the skew window.
    let n = start().await;
    let before = n.state(&k, "n1").await;
    assert_eq!(before["shards"][0]["keys"], 1);
    assert_ne!(n.boot().await, boot, "a new boot id per start");
    let r = send_with(&n, &captured, &reset).await;
    assert_eq!(
        (r.status, r.error_code()),
        (StatusCode::UNAUTHORIZED, "unauthorized".into()),
        "{}",
        r.message()
    );
    assert!(r.message().contains("restarted since"), "{}", r.message());
    assert_eq!(
        n.state(&k, "n1").await,
        before,
        "the replayed reset wiped nothing"
    );
    assert_eq!(
        metric(
            &n.metrics().await,
            r#"torua_kv_auth_failures_total{reason="wrong_boot"}"#
        ),
        1
    );
    n.stop().await;
}
