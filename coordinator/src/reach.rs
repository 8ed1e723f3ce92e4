//! What the coordinator itself sees of each node, from its own calls (data reads and
//! writes, assignments, audits, probes): how fast the node answers, and whether it
//! answers at all. The first drives hedged reads and bounded write stalls (a client
//! never waits on a node that is slow right now); the second is evidence of health
//! beside the agent's word (a node the coordinator cannot reach is `unhealthy`,
//! whatever its heartbeats say: a gray failure).
//!
//! Tracked per node address. Pure bookkeeping: no I/O here.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// Read latencies remembered per node, for its p99.
const WINDOW: usize = 128;
/// Below this many samples the hedge delay is [`DEFAULT_HEDGE`].
const MIN_SAMPLES: usize = 16;
pub const DEFAULT_HEDGE: Duration = Duration::from_millis(20);
/// Never hedge sooner: a replica's own answer takes about a millisecond.
pub const HEDGE_FLOOR: Duration = Duration::from_millis(5);
/// Never wait longer before asking another holder.
pub const HEDGE_CEILING: Duration = Duration::from_millis(250);
/// Calls in a row that did not answer within the hedge delay before the node is
/// asked last for a while.
const SLOW_AFTER: u32 = 3;
/// How long a slow node is asked last before it is tried first again.
const SLOW_FOR: Duration = Duration::from_millis(500);

/// Hedging's budget: each read earns 5 % of a hedge, a hedge costs one; at most
/// [`BURST`] hedges saved up.
const EARN_MILLI: i64 = 50;
const COST_MILLI: i64 = 1000;
const BURST: i64 = 20 * COST_MILLI;

/// When a node counts as unreachable, and when as reachable again.
#[derive(Debug, Clone, Copy)]
pub struct ReachPolicy {
    /// Failed calls in a row (no answer: refused, reset, timed out).
    pub unreachable_after: u32,
    /// Answered calls in a row to count as reachable again (hysteresis).
    pub reachable_after: u32,
}

/// A node's reachability changed: the health side applies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Unreachable { addr: String, error: String },
    Reachable { addr: String },
}

#[derive(Debug, Default)]
struct Track {
    lat_us: Vec<u32>,
    pos: usize,
    slow_streak: u32,
    slow_until: Option<Instant>,
    fail_streak: u32,
    ok_streak: u32,
    unreachable: bool,
    last_error: String,
    last_answer: Option<Instant>,
    /// Unanswered calls by kind (`read`, `write`, `assign`, …), for the counter.
    failures: Vec<(&'static str, u64)>,
}

impl Track {
    fn count(&mut self, call: &'static str) {
        match self.failures.iter_mut().find(|(k, _)| *k == call) {
            Some((_, n)) => *n += 1,
            None => self.failures.push((call, 1)),
        }
    }

    fn p99(&self) -> Option<Duration> {
        if self.lat_us.len() < MIN_SAMPLES {
            return None;
        }
        let mut v = self.lat_us.clone();
        let i = (v.len() * 99 / 100).min(v.len() - 1);
        let (_, p, _) = v.select_nth_unstable(i);
        Some(Duration::from_micros(u64::from(*p)))
    }
}

pub struct Reach {
    policy: ReachPolicy,
    nodes: RwLock<HashMap<String, Arc<Mutex<Track>>>>,
    budget: AtomicI64,
}

impl Reach {
    pub fn new(policy: ReachPolicy) -> Reach {
        Reach {
            policy,
            nodes: RwLock::new(HashMap::new()),
            budget: AtomicI64::new(BURST),
        }
    }

    fn track(&self, addr: &str) -> Arc<Mutex<Track>> {
        if let Some(t) = self
            .nodes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(addr)
        {
            return t.clone();
        }
        let mut map = self.nodes.write().unwrap_or_else(|p| p.into_inner());
        map.entry(addr.to_string()).or_default().clone()
    }

    fn with<T>(&self, addr: &str, f: impl FnOnce(&mut Track) -> T) -> T {
        let t = self.track(addr);
        let mut g = t.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g)
    }

    /// How long to wait for `addr` before asking another holder: 2 × its recent
    /// p99, within [`HEDGE_FLOOR`]..[`HEDGE_CEILING`].
    pub fn hedge_delay(&self, addr: &str) -> Duration {
        self.with(addr, |t| t.p99())
            .map_or(DEFAULT_HEDGE, |p| (p * 2).clamp(HEDGE_FLOOR, HEDGE_CEILING))
    }

    /// Whether `addr` has been slow or silent lately: ask it last.
    pub fn is_slow(&self, addr: &str, now: Instant) -> bool {
        self.with(addr, |t| {
            t.unreachable || t.slow_until.is_some_and(|u| now < u)
        })
    }

    /// Whether `addr` is unreachable from this coordinator (the health evidence).
    pub fn is_unreachable(&self, addr: &str) -> bool {
        self.with(addr, |t| t.unreachable)
    }

    /// A read earns hedging budget.
    pub fn earn(&self) {
        let b = self.budget.fetch_add(EARN_MILLI, Ordering::Relaxed) + EARN_MILLI;
        if b > BURST {
            self.budget.fetch_min(BURST, Ordering::Relaxed);
        }
    }

    /// Whether a hedge may be sent now; spends its budget if so.
    pub fn spend_hedge(&self) -> bool {
        let mut cur = self.budget.load(Ordering::Relaxed);
        while cur >= COST_MILLI {
            match self.budget.compare_exchange_weak(
                cur,
                cur - COST_MILLI,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(now) => cur = now,
            }
        }
        false
    }

    /// A call was answered (any HTTP answer: the node is reachable) after `took`;
    /// `timed` says whether it was a read whose latency feeds the hedge delay.
    pub fn answered(
        &self,
        addr: &str,
        took: Duration,
        timed: bool,
        now: Instant,
    ) -> Option<Change> {
        let reachable_after = self.policy.reachable_after;
        self.with(addr, |t| {
            if timed {
                let us = took.as_micros().min(u128::from(u32::MAX)) as u32;
                if t.lat_us.len() < WINDOW {
                    t.lat_us.push(us);
                } else {
                    t.lat_us[t.pos] = us;
                }
                t.pos = (t.pos + 1) % WINDOW;
            }
            t.last_answer = Some(now);
            t.fail_streak = 0;
            t.ok_streak = t.ok_streak.saturating_add(1);
            if t.unreachable && t.ok_streak >= reachable_after {
                t.unreachable = false;
                return Some(Change::Reachable {
                    addr: addr.to_string(),
                });
            }
            None
        })
    }

    /// A read was not answered within its hedge delay (another holder was asked).
    pub fn late(&self, addr: &str, now: Instant) {
        self.with(addr, |t| {
            t.slow_streak += 1;
            if t.slow_streak >= SLOW_AFTER {
                t.slow_until = Some(now + SLOW_FOR);
            }
        })
    }

    /// A read answered within its hedge delay.
    pub fn prompt(&self, addr: &str) {
        self.with(addr, |t| {
            t.slow_streak = 0;
            t.slow_until = None;
        })
    }

    /// A call of kind `call` got no answer at all (connection refused or reset,
    /// timed out).
    pub fn failed(
        &self,
        addr: &str,
        call: &'static str,
        error: &str,
        now: Instant,
    ) -> Option<Change> {
        let after = self.policy.unreachable_after;
        self.with(addr, |t| {
            t.count(call);
            t.ok_streak = 0;
            t.fail_streak = t.fail_streak.saturating_add(1);
            t.slow_streak = t.slow_streak.saturating_add(1);
            t.slow_until = Some(now + SLOW_FOR);
            t.last_error = error.to_string();
            if !t.unreachable && t.fail_streak >= after {
                t.unreachable = true;
                return Some(Change::Unreachable {
                    addr: addr.to_string(),
                    error: error.to_string(),
                });
            }
            None
        })
    }

    /// Counts a failed call of kind `call` involving `addr` that says nothing about
    /// whether the coordinator reaches it (a copy another node could not pull
    /// from it).
    pub fn count_failure(&self, addr: &str, call: &'static str) {
        self.with(addr, |t| t.count(call))
    }

    /// When `addr` last answered anything (for the prober: quiet nodes get probed).
    pub fn last_answer(&self, addr: &str) -> Option<Instant> {
        self.with(addr, |t| t.last_answer)
    }

    /// Whether `addr` is reachable, and its unanswered calls by kind (for
    /// `/metrics`).
    pub fn report(&self, addr: &str) -> (bool, Vec<(&'static str, u64)>) {
        let map = self.nodes.read().unwrap_or_else(|p| p.into_inner());
        match map.get(addr) {
            Some(t) => {
                let t = t.lock().unwrap_or_else(|p| p.into_inner());
                (!t.unreachable, t.failures.clone())
            }
            None => (true, Vec::new()),
        }
    }

    /// Forgets an address (a removed node).
    pub fn forget(&self, addr: &str) {
        self.nodes
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reach() -> Reach {
        Reach::new(ReachPolicy {
            unreachable_after: 3,
            reachable_after: 2,
        })
    }

    #[test]
    fn the_hedge_delay_follows_recent_latency_within_bounds() {
        let r = reach();
        let now = Instant::now();
        assert_eq!(r.hedge_delay("a"), DEFAULT_HEDGE, "too few samples");
        for _ in 0..100 {
            r.answered("a", Duration::from_millis(4), true, now);
        }
        assert_eq!(r.hedge_delay("a"), Duration::from_millis(8));
        for _ in 0..100 {
            r.answered("b", Duration::from_micros(300), true, now);
        }
        assert_eq!(r.hedge_delay("b"), HEDGE_FLOOR);
        for _ in 0..100 {
            r.answered("c", Duration::from_secs(1), true, now);
        }
        assert_eq!(r.hedge_delay("c"), HEDGE_CEILING);
    }

    #[test]
    fn a_node_late_three_times_is_asked_last_for_a_while() {
        let r = reach();
        let t0 = Instant::now();
        r.late("a", t0);
        r.late("a", t0);
        assert!(!r.is_slow("a", t0));
        r.late("a", t0);
        assert!(r.is_slow("a", t0));
        assert!(
            !r.is_slow("a", t0 + SLOW_FOR),
            "tried first again after a while"
        );
        r.prompt("a");
        assert!(!r.is_slow("a", t0));
    }

    #[test]
    fn unreachable_after_consecutive_failures_and_back_with_hysteresis() {
        let r = reach();
        let t = Instant::now();
        assert_eq!(r.failed("a", "read", "timed out", t), None);
        assert_eq!(r.failed("a", "read", "timed out", t), None);
        r.answered("a", Duration::from_millis(1), false, t);
        assert_eq!(
            r.failed("a", "read", "timed out", t),
            None,
            "an answer resets the streak"
        );
        assert_eq!(r.failed("a", "read", "timed out", t), None);
        assert_eq!(
            r.failed("a", "write", "refused", t),
            Some(Change::Unreachable {
                addr: "a".into(),
                error: "refused".into()
            })
        );
        assert!(r.is_unreachable("a") && r.is_slow("a", t + SLOW_FOR * 10));
        assert_eq!(r.failed("a", "write", "refused", t), None, "reported once");
        assert_eq!(r.answered("a", Duration::ZERO, false, t), None);
        assert_eq!(
            r.answered("a", Duration::ZERO, false, t),
            Some(Change::Reachable { addr: "a".into() })
        );
        assert!(!r.is_unreachable("a"));
        let (reachable, mut failures) = r.report("a");
        failures.sort_unstable();
        assert!(reachable);
        assert_eq!(failures, [("read", 4), ("write", 2)]);
    }

    #[test]
    fn hedging_is_capped_at_about_five_percent() {
        let r = reach();
        // Spend the saved-up burst first.
        while r.spend_hedge() {}
        let mut hedges = 0;
        for _ in 0..10_000 {
            r.earn();
            if r.spend_hedge() {
                hedges += 1;
            }
        }
        assert!(
            (450..=550).contains(&hedges),
            "{hedges} hedges per 10,000 reads"
        );
    }
}
