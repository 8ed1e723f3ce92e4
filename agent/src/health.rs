//! Check thresholds, liveness/readiness aggregation and the shared latest results that
//! the heartbeat loop and the probes read.

use crate::config::{Affect, CheckConfig};
use std::sync::Mutex;
use tokio::sync::Notify;
use torua_protocol::{CheckResult, Status};

/// Applies `failure_threshold`/`success_threshold` to raw check outcomes.
///
/// The first outcome is reported as is. After that the reported status becomes
/// `fail` only after `failure_threshold` consecutive failures, and leaves `fail` only
/// after `success_threshold` consecutive non-failures. `warn` counts as not failing
/// but is reported as `warn`.
#[derive(Debug, Clone)]
pub struct Threshold {
    failure_threshold: u32,
    success_threshold: u32,
    failures: u32,
    successes: u32,
    reported: Option<Status>,
}

impl Threshold {
    pub fn new(failure_threshold: u32, success_threshold: u32) -> Self {
        Threshold {
            failure_threshold: failure_threshold.max(1),
            success_threshold: success_threshold.max(1),
            failures: 0,
            successes: 0,
            reported: None,
        }
    }

    /// Feeds one raw outcome; returns the status to report and, while a flip is
    /// pending, a note like `failure 1/3`.
    pub fn observe(&mut self, raw: Status) -> (Status, Option<String>) {
        if raw == Status::Fail {
            self.failures += 1;
            self.successes = 0;
        } else {
            self.successes += 1;
            self.failures = 0;
        }
        let (status, note) = match (self.reported, raw) {
            (None, raw) => (raw, None),
            (Some(Status::Fail), Status::Fail) => (Status::Fail, None),
            (Some(prev), Status::Fail) if self.failures < self.failure_threshold => (
                prev,
                Some(format!(
                    "failure {}/{}",
                    self.failures, self.failure_threshold
                )),
            ),
            (Some(_), Status::Fail) => (Status::Fail, None),
            (Some(Status::Fail), _) if self.successes < self.success_threshold => (
                Status::Fail,
                Some(format!(
                    "recovering {}/{}",
                    self.successes, self.success_threshold
                )),
            ),
            (Some(_), ok) => (ok, None),
        };
        self.reported = Some(status);
        (status, note)
    }
}

/// The worst status, `pass` for none.
pub fn worst(statuses: impl IntoIterator<Item = Status>) -> Status {
    statuses.into_iter().max().unwrap_or(Status::Pass)
}

/// One check's slot: which aggregates it feeds and its latest reported result.
#[derive(Debug)]
struct Slot {
    liveness: bool,
    readiness: bool,
    result: Option<CheckResult>,
}

#[derive(Debug)]
struct Inner {
    slots: Vec<Slot>,
    liveness: Status,
    readiness: Status,
    acked: bool,
}

/// Latest results of all checks plus the readiness latches, shared by every task.
#[derive(Debug)]
pub struct Health {
    inner: Mutex<Inner>,
    /// Woken when liveness or readiness changes, and when the first round completes:
    /// the heartbeat loop sends at once.
    pub changed: Notify,
    /// Woken when every check has reported at least once.
    pub first_round: Notify,
}

/// What `/readyz`, `/status` and the heartbeat need at one instant.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Snapshot {
    pub liveness: Status,
    pub readiness: Status,
    pub checks: Vec<CheckResult>,
    /// Every check has reported at least once.
    pub first_round_done: bool,
    /// The coordinator accepted at least one heartbeat.
    pub acked: bool,
}

impl Health {
    pub fn new(checks: &[CheckConfig]) -> Self {
        let slots = checks
            .iter()
            .map(|c| Slot {
                liveness: c.affects(Affect::Liveness),
                readiness: c.affects(Affect::Readiness),
                result: None,
            })
            .collect();
        Health {
            inner: Mutex::new(Inner {
                slots,
                liveness: Status::Pass,
                readiness: Status::Pass,
                acked: false,
            }),
            changed: Notify::new(),
            first_round: Notify::new(),
        }
    }

    /// Records check `index`'s latest reported result; wakes the heartbeat loop if
    /// an aggregate changed. Returns the new `(liveness, readiness)`.
    pub fn record(&self, index: usize, result: CheckResult) -> (Status, Status) {
        let mut inner = self.inner.lock().expect("health lock");
        let first = inner.slots[index].result.is_none();
        inner.slots[index].result = Some(result);
        let reported = |want: fn(&Slot) -> bool, inner: &Inner| {
            worst(
                inner
                    .slots
                    .iter()
                    .filter(|s| want(s))
                    .filter_map(|s| s.result.as_ref().map(|r| r.status)),
            )
        };
        let liveness = reported(|s| s.liveness, &inner);
        let readiness = reported(|s| s.readiness, &inner);
        let changed = (liveness, readiness) != (inner.liveness, inner.readiness);
        inner.liveness = liveness;
        inner.readiness = readiness;
        let round_done = first && inner.slots.iter().all(|s| s.result.is_some());
        drop(inner);
        if changed || round_done {
            self.changed.notify_one();
        }
        if round_done {
            self.first_round.notify_waiters();
        }
        (liveness, readiness)
    }

    /// Releases the "coordinator acked" readiness latch.
    pub fn set_acked(&self) {
        self.inner.lock().expect("health lock").acked = true;
    }

    pub fn snapshot(&self) -> Snapshot {
        let inner = self.inner.lock().expect("health lock");
        Snapshot {
            liveness: inner.liveness,
            readiness: inner.readiness,
            checks: inner
                .slots
                .iter()
                .filter_map(|s| s.result.clone())
                .collect(),
            first_round_done: inner.slots.iter().all(|s| s.result.is_some()),
            acked: inner.acked,
        }
    }

    /// Resolves once every check has reported at least once.
    pub async fn wait_first_round(&self) {
        loop {
            let notified = self.first_round.notified();
            if self.snapshot().first_round_done {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Status::{Fail as F, Pass as P, Warn as W};

    /// `(failure_threshold, success_threshold, raw outcomes, reported statuses)`.
    #[test]
    fn thresholds() {
        let cases: &[(u32, u32, &[Status], &[Status])] = &[
            (1, 1, &[P, F, P, W, F], &[P, F, P, W, F]),
            (3, 1, &[P, F, F, F, F, P], &[P, P, P, F, F, P]),
            (3, 1, &[P, F, F, P, F, F, F], &[P, P, P, P, P, P, F]),
            (2, 1, &[P, F, W, F, F], &[P, P, W, W, F]),
            (1, 3, &[P, F, P, P, P], &[P, F, F, F, P]),
            (1, 2, &[P, F, P, F, W, W], &[P, F, F, F, F, W]),
            (3, 3, &[F, P, P, P], &[F, F, F, P]),
            (2, 2, &[W, W, P], &[W, W, P]),
        ];
        for (fail_t, ok_t, raw, want) in cases {
            let mut t = Threshold::new(*fail_t, *ok_t);
            let got: Vec<Status> = raw.iter().map(|s| t.observe(*s).0).collect();
            assert_eq!(&got, want, "thresholds {fail_t}/{ok_t} over {raw:?}");
        }
    }

    #[test]
    fn pending_flip_is_explained() {
        let mut t = Threshold::new(3, 2);
        t.observe(P);
        assert_eq!(t.observe(F), (P, Some("failure 1/3".into())));
        t.observe(F);
        assert_eq!(t.observe(F), (F, None));
        assert_eq!(t.observe(P), (F, Some("recovering 1/2".into())));
    }

    #[test]
    fn worst_of() {
        let cases: &[(&[Status], Status)] = &[
            (&[], P),
            (&[P], P),
            (&[P, W], W),
            (&[W, F, P], F),
            (&[P, P], P),
        ];
        for (input, want) in cases {
            assert_eq!(worst(input.iter().copied()), *want, "{input:?}");
        }
    }

    fn result(name: &str, status: Status) -> CheckResult {
        CheckResult {
            name: name.into(),
            kind: torua_protocol::CheckKind::Tcp,
            status,
            duration_ms: 1.0,
            message: String::new(),
        }
    }

    #[test]
    fn aggregation_respects_affects() {
        let mut live_only = CheckConfig::http("live", "http://x");
        live_only.affects = vec![Affect::Liveness];
        let mut ready_only = CheckConfig::http("ready", "http://x");
        ready_only.affects = vec![Affect::Readiness];
        let health = Health::new(&[live_only, ready_only]);
        assert!(!health.snapshot().first_round_done);
        assert_eq!(health.record(0, result("live", P)), (P, P));
        assert!(!health.snapshot().first_round_done);
        assert_eq!(health.record(1, result("ready", F)), (P, F));
        assert!(health.snapshot().first_round_done);
        assert_eq!(health.record(0, result("live", W)), (W, F));
        assert_eq!(health.record(1, result("ready", P)), (W, P));
        let none = Health::new(&[]);
        let snap = none.snapshot();
        assert_eq!(
            (snap.liveness, snap.readiness, snap.first_round_done),
            (P, P, true)
        );
    }
}
