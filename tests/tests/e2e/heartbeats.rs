//! Hostile heartbeats against a live coordinator: forged, replayed, malformed,
//! oversized, skewed — each refused with its status and code, counted, and without
//! changing any node.

use serde_json::{json, Value};
use std::time::{SystemTime, UNIX_EPOCH};
use torua_tests::cluster::{Options, TestCluster, SECRET};
use torua_tests::http::{self, metric};

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn body(node: &str, incarnation: u64, seq: u64, sent_at_ms: u64) -> Vec<u8> {
    serde_json::to_vec(
        &json!({ "v": 1, "node_id": node, "incarnation": incarnation, "seq": seq,
        // One address per node: two live nodes may not share one.
        "sent_at_ms": sent_at_ms, "interval_ms": 1000, "node_addr": format!("http://{node}.invalid:9"),
        "state": "running", "liveness": "pass", "readiness": "pass", "checks": [],
        "metrics": {}, "capacity": {"weight": 1.0} }),
    )
    .unwrap()
}

fn post(c: &TestCluster, auth_node: &str, key_node: &str, body: &[u8]) -> (u16, Value) {
    let r = crate::beat::post(&c.url, SECRET, auth_node, key_node, body);
    (r.status, r.json())
}

fn counted(c: &TestCluster, result: &str) -> f64 {
    metric(
        &c.metrics(),
        &format!("torua_heartbeats_received_total{{result=\"{result}\"}}"),
    )
    .unwrap_or(-1.0)
}

#[test]
fn hostile_heartbeats_are_refused_counted_and_change_nothing() {
    let c = TestCluster::start(Options {
        nodes: 0,
        ..Default::default()
    });
    let inc = now_ms();

    // A genuine first heartbeat registers the node.
    let first = body("probe", inc, 1, now_ms());
    let (status, ack) = post(&c, "probe", "probe", &first);
    assert_eq!(status, 200, "{ack}");
    assert_eq!(ack["node_id"], "probe");
    assert_eq!(ack["interval_ms"], 1000);
    let before = c.node("probe").unwrap();

    type Send<'a> = Box<dyn Fn() -> (u16, Value) + 'a>;
    let cases: Vec<(&str, u16, &str, Send)> = vec![
        (
            "replayed",
            409,
            "replay",
            Box::new(|| post(&c, "probe", "probe", &first)),
        ),
        (
            "older seq",
            409,
            "replay",
            Box::new(|| post(&c, "probe", "probe", &body("probe", inc, 1, now_ms()))),
        ),
        (
            "old incarnation",
            409,
            "replay",
            Box::new(|| post(&c, "probe", "probe", &body("probe", inc - 1, 9, now_ms()))),
        ),
        (
            "clock ahead",
            409,
            "stale",
            Box::new(|| {
                post(
                    &c,
                    "probe",
                    "probe",
                    &body("probe", inc, 50, now_ms() + 120_000),
                )
            }),
        ),
        (
            "clock behind",
            409,
            "stale",
            Box::new(|| {
                post(
                    &c,
                    "probe",
                    "probe",
                    &body("probe", inc, 51, now_ms() - 120_000),
                )
            }),
        ),
        (
            "forged signature",
            401,
            "bad_signature",
            Box::new(|| {
                post(
                    &c,
                    "probe",
                    "someone-else",
                    &body("probe", inc, 60, now_ms()),
                )
            }),
        ),
        (
            "signed for another node",
            401,
            "bad_signature",
            Box::new(|| post(&c, "other", "other", &body("probe", inc, 61, now_ms()))),
        ),
        (
            "malformed JSON",
            400,
            "malformed",
            Box::new(|| post(&c, "probe", "probe", b"{\"v\":1,")),
        ),
        (
            "wrong type",
            400,
            "malformed",
            Box::new(|| {
                let b = String::from_utf8(body("probe", inc, 62, now_ms()))
                    .unwrap()
                    .replace("\"seq\":62", "\"seq\":\"62\"");
                post(&c, "probe", "probe", b.as_bytes())
            }),
        ),
        (
            "invalid node_addr",
            422,
            "invalid",
            Box::new(|| {
                let b = String::from_utf8(body("probe", inc, 63, now_ms()))
                    .unwrap()
                    .replace("http://probe.invalid:9", "file:///etc/passwd");
                post(&c, "probe", "probe", b.as_bytes())
            }),
        ),
        (
            "oversized",
            413,
            "too_large",
            Box::new(|| post(&c, "probe", "probe", &vec![b' '; 70_000])),
        ),
    ];
    for (name, want_status, code, send) in &cases {
        let before_count = counted(&c, code);
        let (status, err) = send();
        assert_eq!(status, *want_status, "{name}: {err}");
        assert_eq!(err["error"]["code"], *code, "{name}: {err}");
        assert!(
            !err["error"]["message"].as_str().unwrap_or("").is_empty(),
            "{name}: {err}"
        );
        assert_eq!(counted(&c, code), before_count + 1.0, "{name} is counted");
    }
    // Missing header.
    let r = http::send("POST", &format!("{}/v1/heartbeat", c.url), &[], &first).unwrap();
    assert_eq!(
        (r.status, r.json()["error"]["code"].as_str()),
        (401, Some("bad_signature"))
    );

    // Nothing changed: same incarnation, no new nodes from forged ids.
    let after = c.node("probe").unwrap();
    assert_eq!(after["incarnation"], before["incarnation"]);
    let ids: Vec<_> = c
        .nodes_json()
        .unwrap()
        .iter()
        .map(|n| n["id"].clone())
        .collect();
    assert_eq!(ids, vec![json!("probe")]);

    // The next genuine heartbeat is still accepted.
    let (status, ack) = post(&c, "probe", "probe", &body("probe", inc, 100, now_ms()));
    assert_eq!(status, 200, "{ack}");
}
