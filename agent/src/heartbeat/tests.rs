//! Tests of the heartbeat sender and of the whole agent against a fake coordinator.

use super::*;
use crate::config::{CheckConfig, Config};
use crate::testutil::{eventually, respond, serve, Seen};
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::Mutex;
use torua_protocol::{derive_node_key, parse_authorization, verify, NodeState, Status};

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

/// A coordinator that verifies signatures and records every heartbeat. It answers
/// with `status` (200 → an ack carrying `ack_interval_ms`).
#[derive(Clone, Default)]
struct FakeCoordinator {
    seen: Arc<Mutex<Vec<Heartbeat>>>,
    status: Arc<AtomicU16>,
    ack_interval_ms: Arc<AtomicU64>,
}

impl FakeCoordinator {
    async fn start(&self) -> String {
        self.status.store(200, Ordering::SeqCst);
        let me = self.clone();
        let addr = serve(move |req: Seen| me.handle(req)).await;
        format!("http://{addr}")
    }

    fn handle(&self, req: Seen) -> hyper::Response<Full<Bytes>> {
        let auth = req.headers["authorization"].to_str().unwrap().to_string();
        assert_eq!(req.headers["content-type"], "application/json");
        let (node, sig) = parse_authorization(&auth).unwrap();
        let key = derive_node_key(SECRET, node);
        assert!(verify(&key, &req.body, &sig), "bad signature");
        let hb: Heartbeat = torua_protocol::decode_heartbeat(&req.body).unwrap();
        assert_eq!(hb.node_id, node);
        let interval_ms = match self.ack_interval_ms.load(Ordering::SeqCst) {
            0 => hb.interval_ms,
            n => n,
        };
        self.seen.lock().unwrap().push(hb);
        match self.status.load(Ordering::SeqCst) {
            200 => {
                let ack = HeartbeatAck {
                    node_id: node.into(),
                    state: NodeState::Healthy,
                    interval_ms,
                    assignment_version: 1,
                };
                respond(200, serde_json::to_vec(&ack).unwrap())
            }
            409 => respond(409, r#"{"error":{"code":"replay","message":"seq 3 <= 7"}}"#),
            other => respond(other, "overloaded"),
        }
    }

    fn all(&self) -> Vec<Heartbeat> {
        self.seen.lock().unwrap().clone()
    }
}

fn config(coordinator: &str, dir: &std::path::Path) -> Config {
    let secret = dir.join("secret");
    std::fs::write(&secret, SECRET).unwrap();
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    Config {
        node_id: "n1".into(),
        coordinator: coordinator.into(),
        cluster_secret_file: Some(secret),
        ..Config::default()
    }
}

fn sender(config: &Config, checks: &[CheckConfig]) -> (Heartbeater, Arc<Health>, Metrics) {
    let health = Arc::new(Health::new(checks));
    let metrics = Metrics::new();
    let key = config.node_key().unwrap();
    let hb = Heartbeater::new(
        config,
        key,
        super::coordinator_client(config).unwrap(),
        health.clone(),
        metrics.clone(),
    );
    (hb, health, metrics)
}

#[test]
fn backoff_is_full_jitter_capped() {
    let cap = Duration::from_millis(1000);
    let cases = [
        (0, 100),
        (1, 200),
        (3, 800),
        (4, 1000),
        (30, 1000),
        (u32::MAX, 1000),
    ];
    for (attempt, ceiling) in cases {
        for _ in 0..200 {
            let d = backoff(attempt, cap);
            assert!(
                d <= Duration::from_millis(ceiling),
                "attempt {attempt}: {d:?}"
            );
        }
    }
}

#[test]
fn regular_sends_keep_a_fixed_rate() {
    let t0 = Instant::now();
    let ms = Duration::from_millis;
    let second = ms(1000);
    // (regular, answered at, next due), the send having been due at t0.
    let cases = [
        (true, ms(3), ms(1000)),
        (true, ms(999), ms(1000)),
        (true, ms(1000), ms(2000)),
        (true, ms(1500), ms(2500)),
        (false, ms(3), ms(1003)),
        (false, ms(400), ms(1400)),
    ];
    for (regular, answered, want) in cases {
        assert_eq!(
            next_due(t0, regular, t0 + answered, second),
            t0 + want,
            "regular {regular}, answered at {answered:?}"
        );
    }
}

#[tokio::test]
async fn each_send_is_a_new_signed_message() {
    let fake = FakeCoordinator::default();
    let url = fake.start().await;
    let dir = tempfile::tempdir().unwrap();
    let (mut hb, health, metrics) = sender(&config(&url, dir.path()), &[]);
    for _ in 0..3 {
        assert!(matches!(
            hb.send(RunState::Running, MAX_SEND_TIMEOUT).await,
            SendOutcome::Accepted(_)
        ));
    }
    fake.status.store(409, Ordering::SeqCst);
    let rejected = hb.send(RunState::Running, MAX_SEND_TIMEOUT).await;
    assert_eq!(
        rejected,
        SendOutcome::Rejected {
            code: "replay".into(),
            message: "seq 3 <= 7".into()
        }
    );
    let seen = fake.all();
    let seqs: Vec<u64> = seen.iter().map(|h| h.seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4]);
    assert!(seen
        .iter()
        .all(|h| h.incarnation == seen[0].incarnation && h.interval_ms == 1000));
    assert!(
        seen[0].metrics.contains_key("disk_free_bytes"),
        "{:?}",
        seen[0].metrics
    );
    assert!(health.snapshot().acked);
    let text = metrics.encode();
    assert!(
        text.contains("torua_agent_heartbeats_sent_total{result=\"ok\"} 3"),
        "{text}"
    );
    assert!(
        text.contains("torua_agent_heartbeats_sent_total{result=\"rejected\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn unreachable_coordinator_is_an_error() {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    drop(l);
    let dir = tempfile::tempdir().unwrap();
    let (mut hb, health, metrics) = sender(&config(&url, dir.path()), &[]);
    assert_eq!(
        hb.send(RunState::Running, MAX_SEND_TIMEOUT).await,
        SendOutcome::Failed("connection refused".into())
    );
    assert!(!health.snapshot().acked);
    assert!(metrics
        .encode()
        .contains("torua_agent_heartbeats_sent_total{result=\"error\"} 1"));
}

#[tokio::test]
async fn retries_fast_then_adopts_the_acked_interval() {
    let fake = FakeCoordinator::default();
    let url = fake.start().await;
    fake.status.store(503, Ordering::SeqCst);
    fake.ack_interval_ms.store(150, Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&url, dir.path());
    cfg.interval = Duration::from_secs(2);
    let (hb, _health, _metrics) = sender(&cfg, &[]);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(hb.run(async {
        let _ = stop_rx.await;
    }));
    // Retries come well before the 2 s interval.
    eventually(Duration::from_millis(1900), "three attempts", || async {
        (fake.all().len() >= 3).then_some(())
    })
    .await;
    fake.status.store(200, Ordering::SeqCst);
    // After one ack at 150 ms the agent sends every ~150 ms and says so.
    eventually(Duration::from_secs(5), "the adopted interval", || async {
        fake.all()
            .iter()
            .any(|h| h.interval_ms == 150)
            .then_some(())
    })
    .await;
    stop_tx.send(()).unwrap();
    task.await.unwrap();
    let seen = fake.all();
    assert_eq!(seen.last().unwrap().state, RunState::Leaving);
    assert!(seen.windows(2).all(|w| w[0].seq < w[1].seq));
}

/// The whole agent: an http check on a fake node, a fake coordinator, probes.
#[tokio::test]
async fn agent_reports_a_failing_node_at_once_and_leaves_on_shutdown() {
    let node_status = Arc::new(AtomicU16::new(200));
    let ns = node_status.clone();
    let node = serve(move |_| respond(ns.load(Ordering::SeqCst), "ok")).await;
    let fake = FakeCoordinator::default();
    let url = fake.start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&url, dir.path());
    // A long heartbeat interval: only the status-change wake-up can be fast.
    cfg.interval = Duration::from_secs(10);
    let mut check = CheckConfig::http("node-http", &format!("http://{node}/health"));
    check.interval = Duration::from_millis(100);
    check.timeout = Duration::from_millis(100);
    cfg.checks = vec![check];

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let probes = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let agent = tokio::spawn(crate::run_on(listener, cfg, async {
        let _ = stop_rx.await;
    }));

    let client = crate::checks::new_client();
    let get = |path: &'static str| {
        let client = client.clone();
        async move {
            let resp = client
                .get(format!("http://{probes}{path}").parse().unwrap())
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            (status, String::from_utf8_lossy(&body).to_string())
        }
    };
    assert_eq!(get("/livez").await, (200, "ok\n".into()));
    eventually(Duration::from_secs(5), "readyz 200", || async {
        (get("/readyz").await.0 == 200).then_some(())
    })
    .await;
    eventually(Duration::from_secs(5), "a passing heartbeat", || async {
        fake.all()
            .iter()
            .any(|h| h.liveness == Status::Pass && h.checks.len() == 1)
            .then_some(())
    })
    .await;

    node_status.store(503, Ordering::SeqCst);
    let flipped = std::time::Instant::now();
    let failing = eventually(
        Duration::from_millis(1500),
        "a failing heartbeat within 1.5 s",
        || async { fake.all().into_iter().find(|h| h.liveness == Status::Fail) },
    )
    .await;
    assert!(flipped.elapsed() < Duration::from_millis(1500));
    assert_eq!(
        failing.checks[0].message,
        "503 Service Unavailable (expected 200)"
    );
    assert_eq!(failing.readiness, Status::Fail);

    let (_, metrics) = get("/metrics").await;
    assert!(metrics.contains("torua_agent_liveness 2"), "{metrics}");

    stop_tx.send(()).unwrap();
    agent.await.unwrap().unwrap();
    let last = fake.all().pop().unwrap();
    assert_eq!(last.state, RunState::Leaving);
}
