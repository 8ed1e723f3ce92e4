//! Tests of the check kinds against real sockets, processes and files.

use super::*;
use crate::config::ProbeSpec;
use crate::testutil::{respond, serve};
use std::time::Duration;

fn probe(spec: ProbeSpec) -> Probe {
    Probe::new(spec, new_client())
}

const T: Duration = Duration::from_millis(500);

#[tokio::test]
async fn http_check() {
    let addr = serve(|seen| {
        let path_ok = seen.headers.contains_key("user-agent");
        respond(if path_ok { 200 } else { 500 }, "ok")
    })
    .await;
    let url: hyper::Uri = format!("http://{addr}/health").parse().unwrap();
    let ok = probe(ProbeSpec::Http {
        url: url.clone(),
        expect_status: 200,
    });
    assert_eq!(ok.run(T).await, Outcome::pass("200 OK"));
    assert_eq!(
        ok.run(T).await,
        Outcome::pass("200 OK"),
        "pooled connection reused"
    );
    let other = probe(ProbeSpec::Http {
        url,
        expect_status: 204,
    });
    assert_eq!(other.run(T).await, Outcome::fail("200 OK (expected 204)"));
}

async fn closed_port() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    drop(l);
    addr
}

#[tokio::test]
async fn refused_connections_fail() {
    let addr = closed_port().await;
    let tcp = probe(ProbeSpec::Tcp { addr: addr.clone() });
    assert_eq!(tcp.run(T).await, Outcome::fail("connection refused"));
    let http = probe(ProbeSpec::Http {
        url: format!("http://{addr}/").parse().unwrap(),
        expect_status: 200,
    });
    assert_eq!(http.run(T).await, Outcome::fail("connection refused"));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let open = probe(ProbeSpec::Tcp {
        addr: l.local_addr().unwrap().to_string(),
    });
    assert_eq!(open.run(T).await, Outcome::pass("connected"));
}

#[tokio::test]
async fn http_timeout() {
    // Accepts but never answers.
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let http = probe(ProbeSpec::Http {
        url: format!("http://{addr}/").parse().unwrap(),
        expect_status: 200,
    });
    assert_eq!(
        http.run(Duration::from_millis(100)).await,
        Outcome::fail("timeout after 100ms")
    );
    drop(l);
}

#[tokio::test]
async fn exec_exit_codes() {
    let sh = |script: &str| {
        probe(ProbeSpec::Exec {
            argv: vec!["sh".into(), "-c".into(), script.into()],
        })
    };
    let cases = [
        ("exit 0", Outcome::pass("exit status 0")),
        ("exit 1", Outcome::warn("exit status 1")),
        (
            "echo nearly full; exit 1",
            Outcome::warn("exit status 1: nearly full"),
        ),
        (
            "echo broken >&2; exit 3",
            Outcome::fail("exit status 3: broken"),
        ),
    ];
    for (script, want) in cases {
        assert_eq!(
            sh(script).run(Duration::from_secs(5)).await,
            want,
            "{script}"
        );
    }
    let missing = probe(ProbeSpec::Exec {
        argv: vec!["/nonexistent/torua-check".into()],
    });
    assert_eq!(missing.run(T).await.status, Status::Fail);
}

#[tokio::test]
async fn exec_timeout_kills_the_child() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    let script = format!("echo $$ > {}; exec sleep 5", pid_file.display());
    let slow = probe(ProbeSpec::Exec {
        argv: vec!["sh".into(), "-c".into(), script],
    });
    let started = std::time::Instant::now();
    assert_eq!(
        slow.run(Duration::from_millis(300)).await,
        Outcome::fail("timeout after 300ms")
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // kill_on_drop: the child goes away (tokio reaps it in the background).
    crate::testutil::eventually(
        Duration::from_secs(5),
        "the timed-out child to be killed",
        || async {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            (stat.is_empty() || stat.contains(") Z")).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn disk_check() {
    let spec = |warn, fail| ProbeSpec::Disk {
        path: "/".into(),
        warn_free_percent: warn,
        fail_free_percent: fail,
    };
    let pass = probe(spec(0.0, 0.0)).run(T).await;
    assert_eq!(pass.status, Status::Pass);
    assert!(pass.message.ends_with("% free"), "{}", pass.message);
    assert_eq!(probe(spec(100.1, 0.0)).run(T).await.status, Status::Warn);
    assert_eq!(probe(spec(100.1, 100.1)).run(T).await.status, Status::Fail);
    let gone = probe(ProbeSpec::Disk {
        path: "/nonexistent/x".into(),
        warn_free_percent: 1.0,
        fail_free_percent: 1.0,
    });
    assert_eq!(gone.run(T).await.status, Status::Fail);
}

#[tokio::test]
async fn process_check_sees_stopped_and_dead() {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("node.pid");
    let check = probe(ProbeSpec::Process {
        pid_file: pid_file.clone(),
    });
    assert_eq!(check.run(T).await.status, Status::Fail, "no pid file");

    let mut child = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    std::fs::write(&pid_file, format!("{pid}\n")).unwrap();
    let out = check.run(T).await;
    assert_eq!(out.status, Status::Pass, "{}", out.message);

    kill(Pid::from_raw(pid), Signal::SIGSTOP).unwrap();
    let stopped =
        crate::testutil::eventually(Duration::from_secs(5), "the child to stop", || async {
            let out = check.run(T).await;
            (out.status == Status::Fail).then_some(out)
        })
        .await;
    assert_eq!(stopped.message, format!("pid {pid} is stopped (SIGSTOP)"));

    kill(Pid::from_raw(pid), Signal::SIGCONT).unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        check.run(T).await,
        Outcome::fail(format!("pid {pid} is not running"))
    );
}

#[tokio::test]
async fn run_check_applies_thresholds_and_records() {
    let addr = closed_port().await;
    let mut config = crate::config::CheckConfig::http("c", "http://x");
    config.kind = torua_protocol::CheckKind::Tcp;
    config.interval = Duration::from_millis(20);
    config.timeout = Duration::from_millis(20);
    let health = Arc::new(Health::new(std::slice::from_ref(&config)));
    let metrics = Metrics::new();
    let task = tokio::spawn(run_check(
        0,
        config,
        probe(ProbeSpec::Tcp { addr }),
        health.clone(),
        metrics.clone(),
    ));
    let snap = crate::testutil::eventually(Duration::from_secs(5), "a check result", || async {
        let s = health.snapshot();
        s.first_round_done.then_some(s)
    })
    .await;
    task.abort();
    assert_eq!(snap.liveness, Status::Fail);
    assert_eq!(snap.checks[0].message, "connection refused");
    assert!(metrics
        .encode()
        .contains("torua_agent_check_status{check=\"c\"} 2"));
}
