//! The registry survives a SIGKILL of the coordinator: restarted on the same data
//! dir it lists every node as `unknown` until they report and keeps operator drains.
//! (A heartbeat signed before the restart and replayed after it is refused:
//! `hostile::a_heartbeat_captured_before_a_coordinator_restart_is_refused_after_it`.)

use std::time::Duration;
use torua_tests::cluster::{Options, TestCluster};
use torua_tests::http;

#[test]
fn coordinator_sigkill_and_restart_keeps_the_registry() {
    let mut c = TestCluster::start(Options {
        nodes: 2,
        ..Default::default()
    });
    c.wait_all("healthy", Duration::from_secs(20));
    c.wait_green(Duration::from_secs(20));
    // With two nodes and two copies per shard there is nowhere to move n2's shards:
    // it stays `draining` (still serving) rather than dropping a copy.
    let r = http::send("POST", &format!("{}/v1/nodes/n2/drain", c.url), &[], b"").unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["state"], "draining");

    for a in &c.agents {
        a.stop();
    }
    c.coord.kill();
    c.coord.restart();
    c.wait_ready();

    let nodes = c.nodes_json().unwrap();
    let states: Vec<_> = nodes
        .iter()
        .map(|n| (n["id"].as_str().unwrap().to_string(), n["state"].clone()))
        .collect();
    assert_eq!(states.len(), 2, "{nodes:?}");
    assert!(nodes.iter().all(|n| n["state"] == "unknown"), "{nodes:?}");
    assert!(
        nodes
            .iter()
            .any(|n| n["id"] == "n2" && n["admin_drain"] == true),
        "{nodes:?}"
    );

    for a in &c.agents {
        a.cont();
    }
    c.wait_state("n1", "healthy", Duration::from_secs(15));
    let n2 = c.wait_state("n2", "draining", Duration::from_secs(15));
    assert_eq!(n2["admin_drain"], true);
    let r = http::send("POST", &format!("{}/v1/nodes/n2/undrain", c.url), &[], b"").unwrap();
    assert_eq!(r.json()["state"], "healthy", "{}", r.text());
}
