//! Live telemetry contracts: every process's `/metrics` passes `promtool check
//! metrics` and carries the SPEC §7 names; the coordinator and the agent speak the
//! systemd notify protocol over a real `NOTIFY_SOCKET` datagram socket.

use nix::sys::signal::Signal;
use std::os::unix::net::UnixDatagram;
use std::sync::Arc;
use std::time::{Duration, Instant};
use torua_tests::cluster::{Options, TestCluster};
use torua_tests::http;
use torua_tests::tools::promtool_check_metrics;

const SOON: Duration = Duration::from_secs(20);

/// SPEC §7: names the coordinator must export.
const COORDINATOR_NAMES: &[&str] = &[
    "torua_node_state{",
    "torua_node_heartbeat_age_seconds{",
    "torua_node_phi{",
    "torua_node_check_status{",
    "torua_node_metric{",
    "torua_heartbeats_received_total{",
    "torua_heartbeat_handle_seconds_bucket",
    "torua_shards{",
    "torua_shards_under_replicated ",
    "torua_shards_unavailable ",
    "torua_shard_moves_total{",
    "torua_shard_move_duration_seconds_bucket",
    "torua_moves_in_flight ",
    "torua_moves_frozen ",
    "torua_failure_detection_seconds_bucket",
    "torua_build_info{",
    "process_resident_memory_bytes ",
];
const AGENT_NAMES: &[&str] = &[
    "torua_agent_check_status{",
    "torua_agent_check_duration_seconds_bucket",
    "torua_agent_heartbeats_sent_total{",
    "torua_agent_heartbeat_rtt_seconds_bucket",
    "process_resident_memory_bytes ",
];

#[test]
fn live_metrics_pass_promtool_and_carry_the_spec_names() {
    let c = TestCluster::start(Options {
        nodes: 2,
        ..Default::default()
    });
    c.wait_all("healthy", SOON);
    c.wait_green(SOON);
    let coordinator = c.metrics();
    for name in COORDINATOR_NAMES {
        assert!(
            coordinator.contains(name),
            "coordinator lacks {name}:\n{coordinator}"
        );
    }
    let agent = http::get(&format!("{}/metrics", c.agent_urls[0]))
        .unwrap()
        .text();
    for name in AGENT_NAMES {
        assert!(agent.contains(name), "agent lacks {name}:\n{agent}");
    }
    let node = http::get(&format!("{}/metrics", c.node_urls[0]))
        .unwrap()
        .text();
    // No secret material ever reaches an exposition.
    for text in [&coordinator, &agent, &node] {
        assert!(!text.contains(torua_tests::cluster::SECRET));
    }
    promtool_check_metrics("the coordinator", &coordinator);
    promtool_check_metrics("an agent", &agent);
    promtool_check_metrics("a node", &node);
}

/// Collects notify datagrams until `done` says enough.
fn read_until(sock: &UnixDatagram, what: &str, done: impl Fn(&[String]) -> bool) -> Vec<String> {
    let deadline = Instant::now() + SOON;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !done(&got) {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; got {got:?}"
        );
        if let Ok(n) = sock.recv(&mut buf) {
            got.extend(
                String::from_utf8_lossy(&buf[..n])
                    .lines()
                    .map(str::to_owned),
            );
        }
    }
    got
}

fn count(msgs: &[String], m: &str) -> usize {
    msgs.iter().filter(|x| *x == m).count()
}

#[test]
fn systemd_ready_watchdog_and_stopping_over_a_real_notify_socket() {
    let dir = tempfile::tempdir().unwrap();
    let coord_sock = dir.path().join("coordinator.sock");
    let agent_sock = dir.path().join("agent.sock");
    let socks: Vec<UnixDatagram> = [&coord_sock, &agent_sock]
        .iter()
        .map(|p| {
            let s = UnixDatagram::bind(p).unwrap();
            s.set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            s
        })
        .collect();
    let (cs, asock) = (
        coord_sock.display().to_string(),
        agent_sock.display().to_string(),
    );
    let env = Arc::new(move |name: &str| {
        let sock = match name {
            "coordinator" => &cs,
            "agent-n1" => &asock,
            _ => return Vec::new(),
        };
        vec![
            ("NOTIFY_SOCKET".to_string(), sock.clone()),
            ("WATCHDOG_USEC".to_string(), "300000".to_string()),
        ]
    });
    let mut c = TestCluster::start_with_env(
        Options {
            nodes: 1,
            ..Default::default()
        },
        env,
    );
    for (sock, who) in socks.iter().zip(["coordinator", "agent"]) {
        let msgs = read_until(sock, &format!("{who} READY=1 and watchdog pings"), |m| {
            count(m, "READY=1") == 1 && count(m, "WATCHDOG=1") >= 2
        });
        assert_eq!(count(&msgs, "READY=1"), 1, "{who}: {msgs:?}");
    }
    c.agents[0].signal(Signal::SIGTERM);
    read_until(&socks[1], "agent STOPPING=1", |m| {
        m.iter().any(|x| x == "STOPPING=1")
    });
    assert!(c.agents[0].wait_exit(SOON).expect("agent exits").success());
    c.coord.signal(Signal::SIGTERM);
    read_until(&socks[0], "coordinator STOPPING=1", |m| {
        m.iter().any(|x| x == "STOPPING=1")
    });
    assert!(c
        .coord
        .wait_exit(SOON)
        .expect("coordinator exits")
        .success());
}
