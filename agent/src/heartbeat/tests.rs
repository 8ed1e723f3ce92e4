//! Tests of the heartbeat sender and of the whole agent against a fake coordinator.

use super::*;
use crate::config::{CheckConfig, Config};
use crate::testutil::{eventually, respond, serve, Seen};
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::Mutex;
use torua_protocol::api::LEADER_HEADER;
use torua_protocol::{derive_node_key, parse_authorization, verify, NodeState, Status};

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

/// A coordinator that verifies signatures and records every heartbeat. It answers
/// with `status` (200 → an ack carrying `ack_interval_ms`; 503 with `leader` set →
/// `not_leader` naming it in `Torua-Leader`).
#[derive(Clone, Default)]
struct FakeCoordinator {
    seen: Arc<Mutex<Vec<Heartbeat>>>,
    status: Arc<AtomicU16>,
    ack_interval_ms: Arc<AtomicU64>,
    leader: Arc<Mutex<Option<String>>>,
    /// When set: sent on every answer, and a heartbeat not echoing it is
    /// challenged (409 `stale`), as a real coordinator does at first contact.
    nonce: Arc<Mutex<Option<String>>>,
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
        let nonce = self.nonce.lock().unwrap().clone();
        let challenged = nonce.is_some() && hb.coordinator_nonce != nonce;
        self.seen.lock().unwrap().push(hb);
        let mut resp = self.answer(node, interval_ms, challenged);
        if let Some(n) = nonce {
            resp.headers_mut()
                .insert(COORDINATOR_NONCE_HEADER, n.parse().unwrap());
        }
        resp
    }

    fn answer(
        &self,
        node: &str,
        interval_ms: u64,
        challenged: bool,
    ) -> hyper::Response<Full<Bytes>> {
        if challenged {
            return respond(
                409,
                r#"{"error":{"code":"stale","message":"echo the nonce"}}"#,
            );
        }
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
            503 => match self.leader.lock().unwrap().clone() {
                Some(leader) => {
                    let mut r = respond(
                        503,
                        r#"{"error":{"code":"not_leader","message":"c2 is a follower"}}"#,
                    );
                    r.headers_mut()
                        .insert(LEADER_HEADER, leader.parse().unwrap());
                    r
                }
                None => respond(503, "overloaded"),
            },
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
        coordinator: crate::config::split_list(coordinator),
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
            status: 409,
            code: "replay".into(),
            message: "seq 3 <= 7".into(),
            leader: None,
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

fn ack() -> SendOutcome {
    SendOutcome::Accepted(HeartbeatAck {
        node_id: "n1".into(),
        state: NodeState::Healthy,
        interval_ms: 1000,
        assignment_version: 1,
    })
}

fn rejected(status: u16, code: &str, leader: Option<&str>) -> SendOutcome {
    SendOutcome::Rejected {
        status,
        code: code.into(),
        message: "m".into(),
        leader: leader.map(String::from),
    }
}

/// (name, list, current, answer, expected switch).
type Case<'a> = (
    &'a str,
    &'a [String],
    Target,
    SendOutcome,
    Option<(Target, SwitchReason)>,
);

#[test]
fn switching_rule() {
    use SwitchReason::*;
    use Target::*;
    let three: Vec<String> = ["http://a:1", "http://b:1", "http://c:1"]
        .map(String::from)
        .to_vec();
    let one = vec!["http://a:1".to_string()];
    let down = SendOutcome::Failed("connection refused".into());
    let named = |base: &str, then| Named {
        base: base.into(),
        then,
    };
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("accepted stays", &three, Listed(1), ack(), None),
        ("4xx stays", &three, Listed(1), rejected(409, "replay", None), None),
        ("4xx naming a leader stays", &three, Listed(1), rejected(401, "bad_signature", Some("http://c:1")), None),
        ("unreachable moves on", &three, Listed(0), down.clone(), Some((Listed(1), Unreachable))),
        ("the list wraps", &three, Listed(2), down.clone(), Some((Listed(0), Unreachable))),
        ("5xx moves on", &three, Listed(1), rejected(500, "internal", None), Some((Listed(2), ServerError))),
        ("not_leader without a leader moves on", &three, Listed(0), rejected(503, "not_leader", None), Some((Listed(1), ServerError))),
        ("not_leader follows the header", &three, Listed(0), rejected(503, "not_leader", Some("http://c:1")), Some((Listed(2), NotLeader))),
        ("a trailing slash is the same URL", &three, Listed(0), rejected(503, "not_leader", Some("http://c:1/")), Some((Listed(2), NotLeader))),
        ("a leader outside the list", &three, Listed(1), rejected(503, "not_leader", Some("http://z:9")), Some((named("http://z:9", 1), NotLeader))),
        ("a leader naming itself moves on", &three, Listed(1), rejected(503, "not_leader", Some("http://b:1")), Some((Listed(2), ServerError))),
        ("a bad header moves on", &three, Listed(1), rejected(503, "not_leader", Some("ftp://z")), Some((Listed(2), ServerError))),
        ("the header only counts with not_leader", &three, Listed(0), rejected(503, "unavailable", Some("http://c:1")), Some((Listed(1), ServerError))),
        ("a failed named leader resumes the list", &three, named("http://z:9", 1), down.clone(), Some((Listed(1), Unreachable))),
        ("a named leader names another", &three, named("http://z:9", 1), rejected(503, "not_leader", Some("http://y:9")), Some((named("http://y:9", 1), NotLeader))),
        ("a named leader accepted stays", &three, named("http://z:9", 1), ack(), None),
        ("one coordinator never moves on", &one, Listed(0), down.clone(), None),
        ("one coordinator, 5xx", &one, Listed(0), rejected(503, "not_leader", None), None),
        ("one coordinator follows a named leader", &one, Listed(0), rejected(503, "not_leader", Some("http://z:9")), Some((named("http://z:9", 0), NotLeader))),
        ("and returns to it", &one, named("http://z:9", 0), down.clone(), Some((Listed(0), Unreachable))),
    ];
    // A follower naming the coordinator that just did not answer: the list goes on.
    #[rustfmt::skip]
    let after_a_failure: Vec<(Case, Option<&str>)> = vec![
        (("a dead leader named again is skipped", &three, Listed(1), rejected(503, "not_leader", Some("http://a:1")), Some((Listed(2), ServerError))), Some("http://a:1/")),
        (("another leader is followed", &three, Listed(1), rejected(503, "not_leader", Some("http://c:1")), Some((Listed(2), NotLeader))), Some("http://a:1")),
        (("a dead named leader is skipped", &three, Listed(0), rejected(503, "not_leader", Some("http://z:9")), Some((Listed(1), ServerError))), Some("http://z:9")),
    ];
    let mut failures = Vec::new();
    let all = cases
        .into_iter()
        .map(|case| (case, None))
        .chain(after_a_failure);
    for ((name, list, current, outcome, want), just_failed) in all {
        let got = switch_after(list, &current, &outcome, just_failed);
        if got != want {
            failures.push(format!("{name}: got {got:?}, want {want:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn retries_after_a_switch_are_prompt() {
    let second = Duration::from_secs(1);
    let cap = Duration::from_millis(200);
    for attempt in [0, 1, 5, 30] {
        for _ in 0..200 {
            // After a switch, in the first seconds of trouble: at most 200 ms.
            let d = retry_delay(true, attempt, second, Duration::from_secs(3));
            assert!(d <= cap, "attempt {attempt}: {d:?}");
            // Never above a short interval either.
            let d = retry_delay(true, attempt, Duration::from_millis(50), Duration::ZERO);
            assert!(d <= Duration::from_millis(50), "{d:?}");
            // Without a switch, or after long trouble: the ordinary backoff.
            let d = retry_delay(false, attempt, second, Duration::ZERO);
            assert!(d <= second.min(Duration::from_millis(100) * (1 << attempt.min(10))));
            let d = retry_delay(true, attempt, second, Duration::from_secs(60));
            assert!(d <= second);
        }
    }
    // The ordinary backoff reaches the interval; the prompt one never does.
    let long = (0..500)
        .map(|_| retry_delay(false, 30, second, Duration::ZERO))
        .max()
        .unwrap();
    assert!(long > cap, "{long:?}");
}

/// Three coordinators: the first is down, the second a follower that names a leader
/// outside the list. The agent gets there at once, and when that leader fails and
/// the follower takes over, it is back within one interval and a few quick switches.
#[tokio::test]
async fn follows_the_leader_across_coordinators() {
    let dead = {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        drop(l);
        url
    };
    let leader = FakeCoordinator::default();
    let leader_url = leader.start().await;
    let follower = FakeCoordinator::default();
    let follower_url = follower.start().await;
    follower.status.store(503, Ordering::SeqCst);
    *follower.leader.lock().unwrap() = Some(format!("{leader_url}/"));

    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&format!("{dead},{follower_url}"), dir.path());
    let (hb, _health, metrics) = sender(&cfg, &[]);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let started = std::time::Instant::now();
    let task = tokio::spawn(hb.run(async {
        let _ = stop_rx.await;
    }));
    eventually(
        Duration::from_secs(5),
        "a heartbeat at the leader",
        || async { (!leader.all().is_empty()).then_some(()) },
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    let text = metrics.encode();
    for want in [
        "torua_agent_coordinator_switches_total{reason=\"unreachable\"} 1",
        "torua_agent_coordinator_switches_total{reason=\"not_leader\"} 1",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }

    // The leader fails; the follower takes over.
    follower.status.store(200, Ordering::SeqCst);
    *follower.leader.lock().unwrap() = None;
    leader.status.store(503, Ordering::SeqCst);
    let failed_over = std::time::Instant::now();
    let at_follower = follower.all().len();
    eventually(
        Duration::from_secs(5),
        "a heartbeat at the new leader",
        || async { (follower.all().len() > at_follower).then_some(()) },
    )
    .await;
    assert!(
        failed_over.elapsed() < Duration::from_secs(2),
        "re-attached after {:?}",
        failed_over.elapsed()
    );
    stop_tx.send(()).unwrap();
    task.await.unwrap();
    assert_eq!(follower.all().last().unwrap().state, RunState::Leaving);
    assert!(metrics
        .encode()
        .contains("torua_agent_coordinator_switches_total{reason=\"server_error\"} 1"));
}

/// A single coordinator behaves as before: failures never count as switches.
#[tokio::test]
async fn one_coordinator_never_switches() {
    let fake = FakeCoordinator::default();
    let url = fake.start().await;
    fake.status.store(503, Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let (mut hb, _health, metrics) = sender(&config(&url, dir.path()), &[]);
    for _ in 0..3 {
        let (outcome, switched) = hb
            .send_and_follow(RunState::Running, MAX_SEND_TIMEOUT)
            .await;
        assert!(matches!(outcome, SendOutcome::Rejected { status: 503, .. }));
        assert!(!switched);
    }
    assert_eq!(hb.current(), url);
    assert!(!metrics
        .encode()
        .lines()
        .any(|l| l.starts_with("torua_agent_coordinator_switches_total") && !l.ends_with(" 0")));
}

#[tokio::test]
async fn a_challenge_is_answered_at_once_with_the_coordinators_nonce() {
    let fake = FakeCoordinator::default();
    let url = fake.start().await;
    *fake.nonce.lock().unwrap() = Some("aa01".into());
    let dir = tempfile::tempdir().unwrap();
    let (mut hb, health, metrics) = sender(&config(&url, dir.path()), &[]);
    assert!(matches!(
        hb.send_and_follow(RunState::Running, MAX_SEND_TIMEOUT)
            .await
            .0,
        SendOutcome::Accepted(_)
    ));
    assert!(matches!(
        hb.send_and_follow(RunState::Running, MAX_SEND_TIMEOUT)
            .await
            .0,
        SendOutcome::Accepted(_)
    ));
    // The coordinator restarts: a new nonce, one more challenge.
    *fake.nonce.lock().unwrap() = Some("bb02".into());
    assert!(matches!(
        hb.send_and_follow(RunState::Running, MAX_SEND_TIMEOUT)
            .await
            .0,
        SendOutcome::Accepted(_)
    ));
    let echoed: Vec<Option<String>> = fake
        .all()
        .into_iter()
        .map(|h| h.coordinator_nonce)
        .collect();
    let s = |x: &str| Some(x.to_string());
    assert_eq!(echoed, [None, s("aa01"), s("aa01"), s("aa01"), s("bb02")]);
    assert!(health.snapshot().acked);
    let text = metrics.encode();
    assert!(
        text.contains("torua_agent_heartbeats_sent_total{result=\"ok\"} 3")
            && !text.contains("result=\"rejected\"} 1"),
        "a challenge is no rejection: {text}"
    );
    // A refusal that is not a challenge (the nonce was echoed) is not sent again.
    fake.status.store(409, Ordering::SeqCst);
    assert!(matches!(
        hb.send_and_follow(RunState::Running, MAX_SEND_TIMEOUT)
            .await
            .0,
        SendOutcome::Rejected { .. }
    ));
    assert_eq!(fake.all().len(), 6, "one send, no retry");
}
