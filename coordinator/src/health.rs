//! The node health state machine of SPEC §3, as pure transitions so it can be tested
//! from tables: heartbeats and timer ticks go in, a state and a human reason come out.

use std::borrow::Cow;
use std::fmt::Write;
use torua_protocol::{CheckResult, NodeState, Status};

/// Thresholds of the state machine (from the coordinator config).
#[derive(Debug, Clone, Copy)]
pub struct HealthPolicy {
    pub suspect_phi: f64,
    pub convict_phi: f64,
    pub heartbeat_timeout_ms: f64,
    /// Good heartbeats needed to leave `unhealthy` (hysteresis).
    pub recover_after: u32,
}

/// Health derived from heartbeats alone, before drains are overlaid.
#[derive(Debug, Clone, PartialEq)]
pub struct Health {
    pub base: NodeState,
    /// Static for the common states: a healthy node costs no allocation per
    /// heartbeat and no heap per node.
    pub reason: Cow<'static, str>,
    good_streak: u32,
    /// The coordinator's own calls to the node go unanswered: it is unhealthy
    /// whatever its heartbeats say, until it is reachable again.
    unreachable: bool,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            base: NodeState::Unknown,
            reason: Cow::Borrowed("no heartbeat yet since the coordinator started"),
            good_streak: 0,
            unreachable: false,
        }
    }
}

/// Administrative overlay on top of health.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Overlay {
    pub admin_drain: bool,
    /// The agent announced `leaving` (SIGTERM): its silence afterwards is expected.
    pub leaving: bool,
    pub holds_shards: bool,
}

impl Health {
    /// Applies a received heartbeat's liveness/readiness and checks.
    pub fn on_heartbeat(
        &mut self,
        p: &HealthPolicy,
        liveness: Status,
        readiness: Status,
        checks: &[CheckResult],
    ) {
        if self.unreachable {
            // The agent is right that the node is fine locally; the coordinator
            // cannot use it. Its own evidence decides until it can reach it again.
            return;
        }
        let worst = liveness.max(readiness);
        if worst == Status::Fail {
            self.good_streak = 0;
            self.base = NodeState::Unhealthy;
            self.reason = describe(checks, Status::Fail, liveness, readiness).into();
            return;
        }
        if self.base == NodeState::Unhealthy {
            self.good_streak += 1;
            if self.good_streak < p.recover_after {
                self.reason = format!(
                    "recovering: {}/{} good heartbeats",
                    self.good_streak, p.recover_after
                )
                .into();
                return;
            }
        }
        self.good_streak = 0;
        if worst == Status::Warn {
            self.base = NodeState::Degraded;
            self.reason = describe(checks, Status::Warn, liveness, readiness).into();
        } else {
            self.base = NodeState::Healthy;
            self.reason = Cow::Borrowed("all checks pass");
        }
    }

    /// Applies the failure detector's view `elapsed_ms` after the last heartbeat.
    /// Returns true when this tick convicted the node.
    pub fn on_tick(&mut self, p: &HealthPolicy, elapsed_ms: f64, phi: f64) -> bool {
        if self.base == NodeState::Unknown || self.unreachable {
            return false;
        }
        let secs = elapsed_ms / 1000.0;
        if elapsed_ms >= p.heartbeat_timeout_ms || phi >= p.convict_phi {
            self.good_streak = 0;
            let convicted =
                self.base != NodeState::Unhealthy || !self.reason.starts_with("no heartbeat");
            self.base = NodeState::Unhealthy;
            self.reason = format!("no heartbeat for {secs:.1}s (phi {phi:.1})").into();
            return convicted;
        }
        if phi >= p.suspect_phi && self.base == NodeState::Healthy {
            self.base = NodeState::Degraded;
            self.reason = format!("heartbeat late: {secs:.1}s (phi {phi:.1})").into();
        }
        false
    }

    /// The coordinator's own calls to the node went unanswered (`error`, the last
    /// one): unhealthy, even if its heartbeats say all is well (a gray failure).
    /// Returns true if this convicted it.
    pub fn on_unreachable(&mut self, error: &str) -> bool {
        let convicted = self.base != NodeState::Unhealthy;
        self.unreachable = true;
        self.good_streak = 0;
        self.base = NodeState::Unhealthy;
        self.reason = format!("unreachable from coordinator: {error}").into();
        convicted
    }

    /// The coordinator reaches the node again: it recovers as from any failure,
    /// after `recover_after` good heartbeats.
    pub fn on_reachable(&mut self) {
        if !self.unreachable {
            return;
        }
        self.unreachable = false;
        self.good_streak = 0;
        self.reason =
            Cow::Borrowed("reachable from coordinator again: waiting for good heartbeats");
    }

    /// The state shown to operators: drains overlay health, but a real failure of a
    /// node that did not announce leaving still shows as `unhealthy`.
    pub fn state(&self, o: Overlay) -> (NodeState, Cow<'static, str>) {
        match self.overlaid(o) {
            (state, Some(why)) => (state, Cow::Borrowed(why)),
            (state, None) => (state, self.reason.clone()),
        }
    }

    /// The shown state alone: the heartbeat path needs no reason string.
    pub fn shown(&self, o: Overlay) -> NodeState {
        self.overlaid(o).0
    }

    /// The shown state, and the overlay's reason if the overlay decides it.
    fn overlaid(&self, o: Overlay) -> (NodeState, Option<&'static str>) {
        let draining = o.admin_drain || o.leaving;
        let failed = self.base == NodeState::Unhealthy && !o.leaving;
        if self.base == NodeState::Unknown && !o.leaving || failed || !draining {
            return (self.base, None);
        }
        let reason = match (o.leaving, o.holds_shards) {
            (true, true) => "agent is leaving (SIGTERM): moving shards away",
            (true, false) => "agent is leaving (SIGTERM): holds no shards",
            (false, true) => "drained by an operator: moving shards away",
            (false, false) => "drained by an operator: holds no shards",
        };
        let state = if o.holds_shards {
            NodeState::Draining
        } else {
            NodeState::Drained
        };
        (state, Some(reason))
    }
}

fn describe(checks: &[CheckResult], level: Status, liveness: Status, readiness: Status) -> String {
    let verb = if level == Status::Fail {
        "failed"
    } else {
        "warns"
    };
    let mut out = String::new();
    for c in checks.iter().filter(|c| c.status == level) {
        if !out.is_empty() {
            out.push_str("; ");
        }
        let _ = write!(out, "check {} {verb}", c.name);
        if !c.message.is_empty() {
            let _ = write!(out, ": {}", c.message);
        }
    }
    if out.is_empty() {
        let _ = write!(
            out,
            "agent reports liveness {} and readiness {}",
            liveness.as_str(),
            readiness.as_str()
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use torua_protocol::CheckKind;

    const P: HealthPolicy = HealthPolicy {
        suspect_phi: 3.0,
        convict_phi: 8.0,
        heartbeat_timeout_ms: 5000.0,
        recover_after: 3,
    };

    fn check(name: &str, status: Status, msg: &str) -> CheckResult {
        CheckResult {
            name: name.into(),
            kind: CheckKind::Http,
            status,
            duration_ms: 1.0,
            message: msg.into(),
        }
    }

    enum Ev {
        Hb(Status, Status),
        Tick(f64, f64),
    }
    use Ev::*;
    use NodeState::*;
    use Status::*;

    #[test]
    fn unreachable_from_the_coordinator_overrides_good_heartbeats_until_it_recovers() {
        let mut h = Health::default();
        h.on_heartbeat(&P, Pass, Pass, &[]);
        assert_eq!(h.base, Healthy);
        assert!(h.on_unreachable("n2 timed out after 1s"));
        for _ in 0..10 {
            h.on_heartbeat(&P, Pass, Pass, &[]);
            assert!(!h.on_tick(&P, 100.0, 0.1));
        }
        assert_eq!(h.base, Unhealthy);
        assert_eq!(
            h.reason,
            "unreachable from coordinator: n2 timed out after 1s"
        );
        assert!(!h.on_unreachable("again"), "convicted once");
        h.on_reachable();
        h.on_heartbeat(&P, Pass, Pass, &[]);
        h.on_heartbeat(&P, Pass, Pass, &[]);
        assert_eq!(
            h.base, Unhealthy,
            "hysteresis: recover_after good heartbeats"
        );
        h.on_heartbeat(&P, Pass, Pass, &[]);
        assert_eq!(h.base, Healthy);
    }

    /// Each row: events applied in order → expected base state and reason fragment.
    #[test]
    fn transitions() {
        let table: &[(&str, &[Ev], NodeState, &str)] = &[
            ("nothing yet", &[], Unknown, "no heartbeat yet"),
            (
                "tick before any heartbeat",
                &[Tick(9e9, 99.0)],
                Unknown,
                "no heartbeat yet",
            ),
            (
                "first good heartbeat",
                &[Hb(Pass, Pass)],
                Healthy,
                "all checks pass",
            ),
            (
                "readiness warn",
                &[Hb(Pass, Warn)],
                Degraded,
                "check node-http warns",
            ),
            (
                "readiness fail",
                &[Hb(Pass, Fail)],
                Unhealthy,
                "check node-http failed: timeout after 500ms",
            ),
            (
                "late but below convict",
                &[Hb(Pass, Pass), Tick(1700.0, 4.0)],
                Degraded,
                "heartbeat late",
            ),
            (
                "phi convicts",
                &[Hb(Pass, Pass), Tick(2100.0, 8.5)],
                Unhealthy,
                "no heartbeat for 2.1s (phi 8.5)",
            ),
            (
                "hard timeout",
                &[Hb(Pass, Pass), Tick(5000.0, 1.0)],
                Unhealthy,
                "no heartbeat for 5.0s",
            ),
            (
                "late heartbeat clears suspicion",
                &[Hb(Pass, Pass), Tick(1700.0, 4.0), Hb(Pass, Pass)],
                Healthy,
                "all checks pass",
            ),
            (
                "one good beat is not enough",
                &[Hb(Pass, Fail), Hb(Pass, Pass)],
                Unhealthy,
                "recovering: 1/3",
            ),
            (
                "two good beats are not enough",
                &[Hb(Pass, Fail), Hb(Pass, Pass), Hb(Pass, Pass)],
                Unhealthy,
                "recovering: 2/3",
            ),
            (
                "three good beats recover",
                &[
                    Hb(Pass, Fail),
                    Hb(Pass, Pass),
                    Hb(Pass, Pass),
                    Hb(Pass, Pass),
                ],
                Healthy,
                "all checks pass",
            ),
            (
                "a failure resets the streak",
                &[
                    Hb(Pass, Fail),
                    Hb(Pass, Pass),
                    Hb(Pass, Pass),
                    Hb(Fail, Pass),
                    Hb(Pass, Pass),
                ],
                Unhealthy,
                "recovering: 1/3",
            ),
            (
                "timeout resets the streak",
                &[
                    Tick(0.0, 0.0),
                    Hb(Pass, Pass),
                    Tick(6000.0, 20.0),
                    Hb(Pass, Pass),
                    Hb(Pass, Pass),
                ],
                Unhealthy,
                "recovering: 2/3",
            ),
        ];
        for (name, events, want, reason) in table {
            let mut h = Health::default();
            for ev in events.iter() {
                match ev {
                    Hb(l, r) => {
                        let checks = [check(
                            "node-http",
                            (*l).max(*r),
                            if *l == Pass && *r == Pass {
                                "200 OK"
                            } else {
                                "timeout after 500ms"
                            },
                        )];
                        h.on_heartbeat(&P, *l, *r, &checks);
                    }
                    Tick(elapsed, phi) => {
                        h.on_tick(&P, *elapsed, *phi);
                    }
                }
            }
            assert_eq!(h.base, *want, "{name}: reason {:?}", h.reason);
            assert!(
                h.reason.contains(reason),
                "{name}: reason {:?} lacks {reason:?}",
                h.reason
            );
        }
    }

    #[test]
    fn conviction_is_reported_once() {
        let mut h = Health::default();
        h.on_heartbeat(&P, Pass, Pass, &[]);
        assert!(h.on_tick(&P, 2100.0, 9.0));
        assert!(!h.on_tick(&P, 3100.0, 12.0));
    }

    #[test]
    fn overlay() {
        let healthy = {
            let mut h = Health::default();
            h.on_heartbeat(&P, Pass, Pass, &[]);
            h
        };
        let dead = {
            let mut h = healthy.clone();
            h.on_tick(&P, 9000.0, 30.0);
            h
        };
        let o = |admin_drain, leaving, holds_shards| Overlay {
            admin_drain,
            leaving,
            holds_shards,
        };
        let table = [
            (&healthy, o(false, false, true), Healthy),
            (&healthy, o(true, false, true), Draining),
            (&healthy, o(true, false, false), Drained),
            (&healthy, o(false, true, true), Draining),
            (&dead, o(true, false, true), Unhealthy),
            (&dead, o(false, true, true), Draining),
            (&dead, o(false, true, false), Drained),
            (&Health::default(), o(true, false, false), Unknown),
        ];
        for (i, (h, ov, want)) in table.into_iter().enumerate() {
            assert_eq!(h.state(ov).0, want, "row {i}");
        }
    }
}
