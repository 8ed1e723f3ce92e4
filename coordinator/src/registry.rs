//! The in-memory node registry: one cell per node, each behind its own lock so
//! heartbeats from different nodes never contend beyond a shared read lock.

use crate::detector::PhiDetector;
use crate::health::{Health, HealthPolicy, Overlay};
use crate::reported::{Checks, Metrics};
use crate::secrets::NodeKeys;
use crate::store::NodeRecord;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Instant;
use torua_protocol::{Heartbeat, NodeState, ReplayMark, RunState, Status};

/// Everything the coordinator knows about one node.
pub struct NodeCell {
    pub id: Arc<str>,
    /// Derived once; verifying a heartbeat then hashes only its body.
    pub keys: NodeKeys,
    inner: Mutex<NodeInner>,
}

pub struct NodeInner {
    pub record: NodeRecord,
    pub replay: Option<ReplayMark>,
    pub detector: Option<PhiDetector>,
    pub last_heartbeat: Option<Instant>,
    pub last_heartbeat_ms: u64,
    /// Arrival of the last heartbeat that reported no failure, for detection latency.
    pub last_good: Option<Instant>,
    pub interval_ms: u64,
    pub health: Health,
    pub state: NodeState,
    pub state_since: Instant,
    pub liveness: Option<Status>,
    pub readiness: Option<Status>,
    pub checks: Checks,
    pub metrics: Metrics,
    pub shards_held: usize,
    /// When the node's armed timer fires; None while it has none.
    pub timer: Option<Instant>,
    /// Generation of the armed timer: the deadline task drops heap entries of
    /// older generations (timers superseded by an earlier one).
    pub timer_gen: u32,
    pub removed: bool,
}

/// What [`NodeInner::apply_heartbeat`] changed that the caller must act on outside
/// the node: it does no I/O and knows nothing of the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct Applied {
    /// The durable record (addr, capacity, incarnation, leaving) changed: persist it.
    pub record_changed: bool,
    /// The shown state changed; this is the previous one (for `state_changed`).
    pub old_state: Option<NodeState>,
}

impl NodeInner {
    /// Applies an authenticated, replay-checked heartbeat (`mark` is what
    /// `check_replay` returned for it) that arrived at `now` (`now_ms` on the wall
    /// clock). `y_convict` is the normalised delay at which phi convicts.
    pub fn apply_heartbeat(
        &mut self,
        hb: Heartbeat,
        mark: ReplayMark,
        now: Instant,
        now_ms: u64,
        policy: &HealthPolicy,
        y_convict: f64,
    ) -> Applied {
        let new_incarnation = self
            .replay
            .is_none_or(|m| m.incarnation != mark.incarnation);
        self.replay = Some(mark);

        // The failure detector learns only from a continuous run of one incarnation,
        // and never from the gap that made the node look dead.
        let gap_ms = self
            .last_heartbeat
            .map(|t| now.saturating_duration_since(t).as_secs_f64() * 1000.0);
        match (&mut self.detector, gap_ms) {
            (Some(d), Some(gap)) if !new_incarnation && gap < d.elapsed_at(y_convict) => {
                d.record(gap as u64)
            }
            (Some(_), _) if !new_incarnation => {}
            _ => self.detector = Some(PhiDetector::new(hb.interval_ms)),
        }
        self.last_heartbeat = Some(now);
        self.last_heartbeat_ms = now_ms;
        self.interval_ms = hb.interval_ms;

        let leaving = hb.state == RunState::Leaving;
        let record_changed = self.record.incarnation != hb.incarnation
            || self.record.addr != hb.node_addr
            || self.record.capacity != hb.capacity
            || self.record.leaving != leaving;
        if record_changed {
            self.record.incarnation = hb.incarnation;
            self.record.addr = hb.node_addr;
            self.record.capacity = hb.capacity;
            self.record.leaving = leaving;
        }

        self.health
            .on_heartbeat(policy, hb.liveness, hb.readiness, &hb.checks);
        if hb.liveness.max(hb.readiness) != Status::Fail {
            self.last_good = Some(now);
        }
        self.liveness = Some(hb.liveness);
        self.readiness = Some(hb.readiness);
        self.checks.update(hb.checks);
        self.metrics.update(hb.metrics);
        Applied {
            record_changed,
            old_state: self.refresh_state(now),
        }
    }

    pub fn overlay(&self) -> Overlay {
        Overlay {
            admin_drain: self.record.admin_drain,
            leaving: self.record.leaving,
            holds_shards: self.shards_held > 0,
        }
    }

    /// Recomputes the shown state; returns the previous one if it changed.
    pub fn refresh_state(&mut self, now: Instant) -> Option<NodeState> {
        let state = self.health.shown(self.overlay());
        if state == self.state {
            return None;
        }
        let old = self.state;
        self.state = state;
        self.state_since = now;
        Some(old)
    }

    /// Forgets everything learnt from heartbeats (detector, health, timers), keeping
    /// the durable record and the replay floor: a coordinator that becomes or stops
    /// being leader judges nodes only on what it hears from then on.
    pub fn forget_health(&mut self, now: Instant) {
        self.detector = None;
        self.last_heartbeat = None;
        self.last_good = None;
        self.health = Health::default();
        self.liveness = None;
        self.readiness = None;
        self.checks = Checks::default();
        self.timer = None;
        // Heap entries of the old timers become stale and are dropped.
        self.timer_gen = self.timer_gen.wrapping_add(1);
        self.state = self.health.shown(self.overlay());
        self.state_since = now;
    }

    /// Why the node is in its state, for people.
    pub fn reason(&self) -> std::borrow::Cow<'static, str> {
        self.health.state(self.overlay()).1
    }

    pub fn heartbeat_age_secs(&self, now: Instant) -> Option<f64> {
        self.last_heartbeat
            .map(|t| now.saturating_duration_since(t).as_secs_f64())
    }

    pub fn phi(&self, now: Instant) -> f64 {
        match (&self.detector, self.last_heartbeat) {
            (Some(d), Some(t)) => d.phi(now.saturating_duration_since(t).as_secs_f64() * 1000.0),
            _ => 0.0,
        }
    }
}

impl NodeCell {
    pub fn new(id: Arc<str>, keys: NodeKeys, record: NodeRecord, now: Instant) -> NodeCell {
        let health = Health::default();
        let state = health.shown(Overlay {
            admin_drain: record.admin_drain,
            leaving: record.leaving,
            holds_shards: false,
        });
        NodeCell {
            id,
            keys,
            inner: Mutex::new(NodeInner {
                record,
                replay: None,
                detector: None,
                last_heartbeat: None,
                last_heartbeat_ms: 0,
                last_good: None,
                interval_ms: 1000,
                health,
                state,
                state_since: now,
                liveness: None,
                readiness: None,
                checks: Checks::default(),
                metrics: Metrics::default(),
                shards_held: 0,
                timer: None,
                timer_gen: 0,
                removed: false,
            }),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, NodeInner> {
        // A panic while holding a node lock is a bug, but one node's bug must not
        // take the whole control plane down with a poisoned lock.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// All known nodes by id.
#[derive(Default)]
pub struct Registry {
    nodes: RwLock<HashMap<Arc<str>, Arc<NodeCell>>>,
}

impl Registry {
    pub fn get(&self, id: &str) -> Option<Arc<NodeCell>> {
        self.read().get(id).cloned()
    }

    /// Inserts `cell` unless a cell for the id appeared meanwhile; returns the winner.
    pub fn insert(&self, cell: Arc<NodeCell>) -> Arc<NodeCell> {
        let mut map = self.nodes.write().unwrap_or_else(|p| p.into_inner());
        map.entry(cell.id.clone()).or_insert(cell).clone()
    }

    pub fn remove(&self, id: &str) -> Option<Arc<NodeCell>> {
        let mut map = self.nodes.write().unwrap_or_else(|p| p.into_inner());
        let cell = map.remove(id)?;
        cell.lock().removed = true;
        Some(cell)
    }

    /// A snapshot of the cells, sorted by id.
    pub fn all(&self) -> Vec<Arc<NodeCell>> {
        let mut v: Vec<_> = self.read().values().cloned().collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    /// The node's reported address, if it is known and has one.
    pub fn addr_of(&self, id: &str) -> Option<String> {
        let addr = self.get(id)?.lock().record.addr.clone();
        (!addr.is_empty()).then_some(addr)
    }

    /// Whether the node cannot serve: unknown to the registry, or judged
    /// unhealthy, or not heard from since a restart. Draining nodes still serve.
    pub fn is_down(&self, id: &str) -> bool {
        self.get(id).is_none_or(|cell| {
            matches!(
                cell.lock().health.base,
                NodeState::Unhealthy | NodeState::Unknown
            )
        })
    }

    /// A live node other than `except` that has `addr` (live: not judged
    /// unhealthy; a node not yet heard from since a restart still counts, so a
    /// restart opens no window to take its address).
    pub fn live_at_addr(&self, addr: &str, except: &str) -> Option<Arc<str>> {
        self.read().values().find_map(|cell| {
            if &*cell.id == except {
                return None;
            }
            let n = cell.lock();
            (n.record.addr == addr && !n.removed && n.health.base != NodeState::Unhealthy)
                .then(|| cell.id.clone())
        })
    }

    /// Visits every cell in no particular order, without collecting or sorting.
    /// Holds the registry's read lock: `f` must not insert or remove nodes.
    pub fn for_each(&self, mut f: impl FnMut(&Arc<NodeCell>)) {
        for cell in self.read().values() {
            f(cell);
        }
    }

    pub fn len(&self) -> usize {
        self.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<Arc<str>, Arc<NodeCell>>> {
        self.nodes.read().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
impl NodeCell {
    /// A cell for unit tests: node `id` at `http://{id}:7401`, keyed under a test
    /// secret.
    pub fn for_tests(id: &str) -> NodeCell {
        let keys =
            crate::secrets::KeyRing::from_secret(b"torua unit-test secret, 32 bytes".to_vec());
        NodeCell::new(
            id.into(),
            keys.node_keys(id),
            NodeRecord {
                addr: format!("http://{id}:7401"),
                incarnation: 1,
                admin_drain: false,
                leaving: false,
                capacity: Default::default(),
                first_seen_ms: 0,
            },
            Instant::now(),
        )
    }
}

#[cfg(test)]
#[path = "registry_tests.rs"]
mod tests;
