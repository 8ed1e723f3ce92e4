//! `NodeInner::apply_heartbeat`: the heartbeat's effect on one node, without a
//! cluster, a store or a clock.

use super::*;
use crate::detector::y_for_phi;
use crate::secrets::KeyRing;
use std::collections::BTreeMap;
use std::time::Duration;
use torua_protocol::{Capacity, CheckKind, CheckResult, PROTOCOL_VERSION};
use NodeState::*;
use Status::*;

const POLICY: HealthPolicy = HealthPolicy {
    suspect_phi: 3.0,
    convict_phi: 8.0,
    heartbeat_timeout_ms: 5000.0,
    recover_after: 3,
};
/// Wall-clock ms of the first heartbeat (any value: nothing here checks it).
const WALL0: u64 = 1_700_000_000_000;
const INTERVAL: u64 = 1000;

fn y_convict() -> f64 {
    y_for_phi(POLICY.convict_phi)
}

fn check(name: &str, status: Status, message: &str) -> CheckResult {
    CheckResult {
        name: name.into(),
        kind: CheckKind::Disk,
        status,
        duration_ms: 2.0,
        message: message.into(),
    }
}

/// One node as the coordinator sees it, fed heartbeats at chosen times.
struct Node {
    cell: NodeCell,
    t0: Instant,
    /// The next heartbeat before per-beat changes; `seq` is filled in per beat.
    hb: Heartbeat,
    policy: HealthPolicy,
}

impl Node {
    fn new() -> Node {
        let t0 = Instant::now();
        let record = NodeRecord {
            addr: String::new(),
            incarnation: 0,
            admin_drain: false,
            leaving: false,
            capacity: Capacity::default(),
            first_seen_ms: WALL0,
        };
        let keys = KeyRing::from_secret(vec![7; 32]).node_keys("n1");
        Node {
            cell: NodeCell::new("n1".into(), keys, record, t0),
            t0,
            hb: Heartbeat {
                v: PROTOCOL_VERSION,
                node_id: "n1".into(),
                incarnation: 42,
                seq: 0,
                sent_at_ms: WALL0,
                interval_ms: INTERVAL,
                node_addr: "http://10.0.0.1:7500".into(),
                state: RunState::Running,
                liveness: Pass,
                readiness: Pass,
                checks: vec![check("disk", Pass, "")],
                metrics: BTreeMap::new(),
                capacity: Capacity::default(),
                coordinator_nonce: None,
            },
            policy: POLICY,
        }
    }

    /// A heartbeat arriving `at_ms` after `t0`, after `edit` on the template.
    fn beat(&mut self, at_ms: u64, edit: impl FnOnce(&mut Heartbeat)) -> Applied {
        let mut hb = self.hb.clone();
        edit(&mut hb);
        let mut n = self.cell.lock();
        hb.seq = match n.replay {
            Some(m) if m.incarnation == hb.incarnation => m.seq + 1,
            _ => 1,
        };
        hb.sent_at_ms = WALL0 + at_ms;
        let mark = ReplayMark {
            incarnation: hb.incarnation,
            seq: hb.seq,
        };
        n.apply_heartbeat(
            hb,
            mark,
            self.at(at_ms),
            WALL0 + at_ms,
            &self.policy,
            y_convict(),
        )
    }

    fn good(&mut self, at_ms: u64) -> Applied {
        self.beat(at_ms, |_| {})
    }

    /// Good heartbeats every `INTERVAL` from 0 to `(count - 1) * INTERVAL`.
    fn steady(&mut self, count: u64) {
        for i in 0..count {
            let _ = self.good(i * INTERVAL);
        }
    }

    fn at(&self, ms: u64) -> Instant {
        self.t0 + Duration::from_millis(ms)
    }

    fn lock(&self) -> MutexGuard<'_, NodeInner> {
        self.cell.lock()
    }
}

fn fail(hb: &mut Heartbeat) {
    hb.readiness = Fail;
    hb.checks = vec![check("disk", Fail, "98% full")];
}

#[test]
fn first_heartbeat_seeds_the_detector_and_health_follows_the_policy() {
    let table = [
        ("all pass", Pass, Pass, Healthy),
        ("readiness warns", Pass, Warn, Degraded),
        ("liveness warns", Warn, Pass, Degraded),
        ("readiness fails", Pass, Fail, Unhealthy),
        ("liveness fails", Fail, Pass, Unhealthy),
    ];
    for (name, liveness, readiness, want) in table {
        let mut node = Node::new();
        {
            let n = node.lock();
            assert_eq!((n.state, n.health.base), (Unknown, Unknown), "{name}");
            assert!(n.detector.is_none(), "{name}");
        }
        let applied = node.beat(0, |hb| {
            hb.liveness = liveness;
            hb.readiness = readiness;
            hb.interval_ms = 750;
        });
        assert_eq!(applied.old_state, Some(Unknown), "{name}");
        let n = node.lock();
        assert_eq!((n.state, n.health.base), (want, want), "{name}");
        let det = n
            .detector
            .as_ref()
            .expect("a detector after the first heartbeat");
        assert_eq!(det.mean_ms(), 750.0, "{name}: seeded from interval_ms");
        assert_eq!(n.interval_ms, 750, "{name}");
        assert_eq!(n.last_heartbeat, Some(node.t0), "{name}");
        assert_eq!(n.last_heartbeat_ms, WALL0, "{name}");
        assert_eq!(
            n.replay,
            Some(ReplayMark {
                incarnation: 42,
                seq: 1
            }),
            "{name}"
        );
        assert_eq!((n.liveness, n.readiness), (Some(liveness), Some(readiness)));
        assert_eq!(
            n.last_good.is_some(),
            want != Unhealthy,
            "{name}: last_good only from a heartbeat without failure"
        );
    }
}

#[test]
fn unchanged_state_reports_no_old_state() {
    let mut node = Node::new();
    assert_eq!(node.good(0).old_state, Some(Unknown));
    for i in 1..5 {
        let applied = node.good(i * INTERVAL);
        assert_eq!(
            applied,
            Applied {
                record_changed: false,
                old_state: None
            },
            "beat {i}"
        );
    }
    assert_eq!(node.lock().state, Healthy);
}

#[test]
fn failing_check_makes_the_node_unhealthy_with_its_reason() {
    let mut node = Node::new();
    node.steady(3);
    let applied = node.beat(3 * INTERVAL, fail);
    assert_eq!(applied.old_state, Some(Healthy));
    let n = node.lock();
    assert_eq!((n.state, n.health.base), (Unhealthy, Unhealthy));
    assert_eq!(n.reason(), "check disk failed: 98% full");
    assert_eq!(
        n.last_good,
        Some(node.at(2 * INTERVAL)),
        "the failing heartbeat is not good"
    );
    assert_eq!(
        n.last_heartbeat,
        Some(node.at(3 * INTERVAL)),
        "but it is a heartbeat"
    );
    assert_eq!(n.checks.to_vec(), [check("disk", Fail, "98% full")]);
    assert_eq!(n.readiness, Some(Fail));
}

#[test]
fn checks_and_metrics_follow_the_latest_heartbeat() {
    let mut node = Node::new();
    let _ = node.beat(0, |hb| {
        hb.metrics = BTreeMap::from([("cpu".into(), 0.5), ("rss".into(), 1e6)]);
    });
    let _ = node.beat(INTERVAL, |hb| {
        hb.readiness = Warn;
        hb.checks = vec![check("tcp", Warn, "slow"), check("disk", Pass, "")];
        hb.metrics = BTreeMap::from([("cpu".into(), 0.75)]);
    });
    let n = node.lock();
    assert_eq!(
        n.checks.to_vec(),
        [check("tcp", Warn, "slow"), check("disk", Pass, "")]
    );
    assert_eq!(n.metrics.iter().collect::<Vec<_>>(), [("cpu", 0.75)]);
    assert_eq!(n.state, Degraded);
    assert_eq!(n.reason(), "check tcp warns: slow");
}

#[test]
fn new_incarnation_restarts_the_detector() {
    // Each row: the second run's incarnation and interval → the detector's mean.
    let table = [
        ("same incarnation keeps learning", 42, 2000, None),
        ("new incarnation starts over", 43, 2000, Some(2000.0)),
        (
            "new incarnation with the same interval",
            43,
            INTERVAL,
            Some(INTERVAL as f64),
        ),
    ];
    for (name, incarnation, interval, want_mean) in table {
        let mut node = Node::new();
        // Beats 500 ms apart: the detector learns a mean below the declared 1000.
        for i in 0..8 {
            let _ = node.good(i * 500);
        }
        let learned = node.lock().detector.clone().unwrap();
        assert!(learned.mean_ms() < 600.0, "{name}: {}", learned.mean_ms());
        let _ = node.beat(4000, |hb| {
            hb.incarnation = incarnation;
            hb.interval_ms = interval;
        });
        let n = node.lock();
        let det = n.detector.as_ref().unwrap();
        match want_mean {
            Some(mean) => {
                assert_eq!(det.mean_ms(), mean, "{name}");
                assert_eq!(det.std_ms(), mean * crate::detector::MIN_STD_RATIO);
            }
            // The 500 ms gap is learned on top of the run.
            None => assert!(
                det.mean_ms() < learned.mean_ms(),
                "{name}: {}",
                det.mean_ms()
            ),
        }
        assert_eq!(n.replay.unwrap().incarnation, incarnation, "{name}");
        assert_eq!(n.record.incarnation, incarnation, "{name}");
    }
}

#[test]
fn detector_never_learns_the_gap_that_convicted() {
    let mut node = Node::new();
    node.steady(6);
    let probe = node.lock().detector.clone().unwrap();
    let convict_at = probe.elapsed_at(y_convict());
    assert!(
        (1800.0..2300.0).contains(&convict_at),
        "convict point {convict_at}"
    );
    let table = [
        ("a little late", 1100.0, true),
        ("late but alive", 1500.0, true),
        ("just under the convict point", convict_at - 2.0, true),
        ("just over the convict point", convict_at + 2.0, false),
        ("long outage", 60_000.0, false),
    ];
    for (name, gap, learned) in table {
        let mut node = Node::new();
        node.steady(6);
        let last = 5 * INTERVAL;
        let before = node.lock().detector.clone().unwrap();
        assert_eq!(before.mean_ms(), 1000.0);
        let _ = node.good(last + gap as u64);
        let n = node.lock();
        let after = n.detector.as_ref().unwrap();
        let moved = after.mean_ms() != before.mean_ms()
            || after.elapsed_at(y_convict()) != before.elapsed_at(y_convict());
        assert_eq!(
            moved,
            learned,
            "{name}: gap {gap}, mean {}",
            after.mean_ms()
        );
        if !learned {
            assert_eq!(after.elapsed_at(y_convict()), convict_at, "{name}");
        }
        // Either way the heartbeat itself counts.
        assert_eq!(n.last_heartbeat, Some(node.at(last + gap as u64)), "{name}");
    }
}

#[test]
fn record_change_is_reported_for_durable_fields_only() {
    type Edit = fn(&mut Heartbeat);
    let table: &[(&str, Edit, bool)] = &[
        ("identical", |_| {}, false),
        (
            "addr",
            |hb| hb.node_addr = "http://10.0.0.2:7500".into(),
            true,
        ),
        ("capacity weight", |hb| hb.capacity.weight = 2.0, true),
        (
            "capacity max_shards",
            |hb| hb.capacity.max_shards = Some(5),
            true,
        ),
        ("incarnation", |hb| hb.incarnation = 43, true),
        ("leaving", |hb| hb.state = RunState::Leaving, true),
        ("interval is not durable", |hb| hb.interval_ms = 250, false),
        ("health is not durable", fail, false),
        (
            "metrics are not durable",
            |hb| hb.metrics = BTreeMap::from([("x".into(), 1.0)]),
            false,
        ),
    ];
    for (name, edit, want) in table {
        let mut node = Node::new();
        assert!(
            node.good(0).record_changed,
            "{name}: first beat sets the record"
        );
        let applied = node.beat(INTERVAL, *edit);
        assert_eq!(applied.record_changed, *want, "{name}");
        let mut expected = node.hb.clone();
        edit(&mut expected);
        {
            let n = node.lock();
            assert_eq!(n.record.addr, expected.node_addr, "{name}");
            assert_eq!(n.record.capacity, expected.capacity, "{name}");
            assert_eq!(n.record.incarnation, expected.incarnation, "{name}");
            assert_eq!(
                n.record.leaving,
                expected.state == RunState::Leaving,
                "{name}"
            );
            assert_eq!(n.record.first_seen_ms, WALL0, "{name}: untouched");
        }
        // The same heartbeat again changes nothing more.
        assert!(
            !node.beat(2 * INTERVAL, *edit).record_changed,
            "{name}: repeated"
        );
    }
}

#[test]
fn leaving_shows_draining_while_holding_shards_else_drained() {
    let table = [
        ("holds shards", 3, Pass, Draining),
        ("holds none", 0, Pass, Drained),
        ("failing but leaving, holds shards", 2, Fail, Draining),
        ("failing but leaving, holds none", 0, Fail, Drained),
    ];
    for (name, shards_held, readiness, want) in table {
        let mut node = Node::new();
        node.steady(2);
        node.lock().shards_held = shards_held;
        let applied = node.beat(2 * INTERVAL, |hb| {
            hb.state = RunState::Leaving;
            hb.readiness = readiness;
        });
        assert!(applied.record_changed, "{name}");
        assert_eq!(applied.old_state, Some(Healthy), "{name}");
        let n = node.lock();
        assert_eq!(n.state, want, "{name}");
        assert!(n.reason().contains("leaving"), "{name}: {}", n.reason());
        assert!(n.record.leaving, "{name}");
    }

    // Running again (a restart that kept its incarnation) ends the overlay.
    let mut node = Node::new();
    node.steady(2);
    let _ = node.beat(2 * INTERVAL, |hb| hb.state = RunState::Leaving);
    assert_eq!(node.lock().state, Drained);
    let applied = node.good(3 * INTERVAL);
    assert_eq!(
        applied,
        Applied {
            record_changed: true,
            old_state: Some(Drained)
        }
    );
    assert_eq!(node.lock().state, Healthy);
}

#[test]
fn recovery_needs_recover_after_good_heartbeats() {
    for recover_after in 1..=4u32 {
        let mut node = Node::new();
        node.policy.recover_after = recover_after;
        node.steady(2);
        let mut t = 2 * INTERVAL;
        assert_eq!(node.beat(t, fail).old_state, Some(Healthy));
        for k in 1..recover_after {
            t += INTERVAL;
            let applied = node.good(t);
            assert_eq!(applied.old_state, None, "r={recover_after} beat {k}");
            let n = node.lock();
            assert_eq!(n.state, Unhealthy, "r={recover_after} beat {k}");
            assert_eq!(
                n.reason(),
                format!("recovering: {k}/{recover_after} good heartbeats")
            );
            // A good heartbeat counts for detection latency even while recovering.
            assert_eq!(n.last_good, Some(node.at(t)));
        }
        t += INTERVAL;
        assert_eq!(
            node.good(t).old_state,
            Some(Unhealthy),
            "r={recover_after}: recovers on the last good beat"
        );
        assert_eq!(node.lock().state, Healthy, "r={recover_after}");
    }
}

#[test]
fn a_failure_while_recovering_restarts_the_count() {
    let mut node = Node::new();
    node.steady(1);
    let _ = node.beat(1000, fail);
    let _ = node.good(2000);
    let _ = node.good(3000);
    let _ = node.beat(4000, fail);
    let _ = node.good(5000);
    let _ = node.good(6000);
    assert_eq!(
        node.lock().state,
        Unhealthy,
        "2 of 3 after the second failure"
    );
    assert_eq!(node.good(7000).old_state, Some(Unhealthy));
    assert_eq!(node.lock().state, Healthy);
}
