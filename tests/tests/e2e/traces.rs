//! Traces (SPEC §7): a real agent and coordinator export OTLP/HTTP to an in-process
//! receiver; one heartbeat is one trace, `heartbeat.send` (agent) the parent of
//! `heartbeat.receive` (coordinator), and node state changes arrive as spans.

use std::sync::Arc;
use std::time::Duration;
use torua_tests::cluster::{Options, TestCluster};
use torua_tests::otlp::{Receiver, Span};
use torua_tests::poll_until;

/// An agent's `heartbeat.send` and the coordinator's `heartbeat.receive` it caused,
/// for an accepted heartbeat (an agent's first contact is a challenge, answered by
/// the next one).
fn linked_pair(spans: &[Span]) -> Option<(Span, Span)> {
    spans
        .iter()
        .filter(|s| s.name == "heartbeat.send" && s.service == "e2e-agent")
        .find_map(|send| {
            let receive = spans.iter().find(|r| {
                r.name == "heartbeat.receive"
                    && r.service == "e2e-coordinator"
                    && r.trace_id == send.trace_id
                    && r.parent_span_id == send.span_id
                    && r.attributes.get("result").map(String::as_str) == Some("ok")
            })?;
            Some((send.clone(), receive.clone()))
        })
}

fn summary(spans: &[Span]) -> String {
    let names: Vec<String> = spans
        .iter()
        .map(|s| format!("{}/{}", s.service, s.name))
        .collect();
    format!("{} spans: {names:?}", spans.len())
}

#[test]
fn heartbeat_traces_link_agent_and_coordinator() {
    let receiver = Receiver::start();
    let endpoint = receiver.endpoint();
    let env = Arc::new(move |name: &str| {
        let service = if name == "coordinator" {
            "e2e-coordinator"
        } else {
            "e2e-agent"
        };
        [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_SERVICE_NAME", service),
            ("OTEL_BSP_SCHEDULE_DELAY", "200"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    });
    let c = TestCluster::start_with_env(
        Options {
            nodes: 1,
            ..Default::default()
        },
        env,
    );

    let (send, receive) = poll_until(Duration::from_secs(20), "linked heartbeat spans", || {
        let spans = receiver.spans();
        linked_pair(&spans).ok_or_else(|| summary(&spans))
    });
    assert_eq!(send.attributes.get("node").map(String::as_str), Some("n1"));
    assert_eq!(
        receive.attributes.get("node").map(String::as_str),
        Some("n1")
    );
    assert_eq!(
        receive.attributes.get("result").map(String::as_str),
        Some("ok")
    );

    let change = poll_until(Duration::from_secs(20), "a node.state_change span", || {
        let spans = receiver.spans();
        spans
            .iter()
            .find(|s| s.name == "node.state_change" && s.service == "e2e-coordinator")
            .cloned()
            .ok_or_else(|| summary(&spans))
    });
    assert_eq!(
        change.attributes.get("node").map(String::as_str),
        Some("n1")
    );
    assert!(change.attributes.contains_key("to"), "{change:?}");
    drop(c);
}
