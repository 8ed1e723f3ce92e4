//! The planner: for one shard, given its committed record, a snapshot of the nodes
//! and placement's wish, the one [`Step`] to take next. Pure: no lock, no clock, no
//! I/O, so every rule is tested from tables (`plan/tests.rs`); the reconciler applies
//! the step. In order of urgency:
//!
//! 1. **drop an abandoned copy** (a copy in the map with no task behind it: the
//!    coordinator restarted mid-copy);
//! 2. **bootstrap** a never-assigned shard onto its placement (no data to copy);
//! 3. **failover**: drop holders on dead nodes, promoting an in-sync replica at once.
//!    Never waits behind a copy. The last in-sync copy is never given up while its
//!    node may come back: the shard then waits, unavailable, data intact;
//! 4. **hand off** the primary of a draining node to an in-sync replica (no copy);
//! 5. **pin**: an operator's pinned primary takes over once it is in sync;
//! 6. **re-replicate** a shard short of copies (after `move_delay` while any node is
//!    unhealthy: a blip should not cost a copy);
//! 7. **trim** a surplus in-sync copy (draining holders first), never below rf;
//! 8. **balance the primary** onto placement's first choice once the holders match;
//! 9. **copy** onto a node placement prefers: at once for a drain or a pin, after
//!    `rebalance_delay` for a rebalance.

use super::moves::MoveReason;
use super::record::ShardRecord;
use std::cell::OnceCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use torua_protocol::NodeState;

/// What a pass knows about one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeView {
    /// Health before drains are overlaid.
    pub state: NodeState,
    /// May receive new copies: serving and not draining.
    pub eligible: bool,
    /// An operator drain or an agent that announced it is leaving.
    pub draining: bool,
    /// Below its `max_shards` cap.
    pub has_room: bool,
}

impl NodeView {
    /// A serving, non-draining node with room: the common case.
    pub fn serving() -> NodeView {
        NodeView {
            state: NodeState::Healthy,
            eligible: true,
            draining: false,
            has_room: true,
        }
    }
}

/// Everything one pass decides from, taken once per pass.
#[derive(Debug)]
pub struct Snapshot {
    nodes: HashMap<Arc<str>, NodeView>,
    pub rf: usize,
    /// Nodes that are down (unhealthy, or unknown after the grace) and not draining.
    pub unhealthy: usize,
    /// Nodes not heard from since the coordinator started.
    pub unknown: usize,
    /// How long a shard short of copies waits while any node is unhealthy.
    pub move_delay: Duration,
    /// Membership has been quiet for `rebalance_delay`, or an operator asked.
    pub rebalance_allowed: bool,
    /// Copies that may still start in this pass (`max_concurrent_moves` minus those
    /// running); the reconciler counts it down as it starts copies.
    pub free_slots: usize,
    /// Eligible nodes with room, by id: copy targets when placement offers none.
    /// Sorted at most once per pass, and only if a pass needs it.
    spare: OnceCell<Vec<Arc<str>>>,
}

/// Per-shard facts that are not in its record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShardState {
    /// A copy task of this shard is running.
    pub moving: bool,
    /// How long the shard has been short of in-sync copies (zero if it is not).
    pub under_for: Duration,
}

/// The next step for one shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Nothing,
    /// Something is owed but may not happen yet.
    Wait(Wait),
    /// Forget a copy in progress that no task is making.
    DropAbandonedCopy,
    /// First holders of a never-assigned shard, primary first.
    Bootstrap {
        holders: Vec<String>,
    },
    /// Drop holders on dead nodes; promote an in-sync replica (in `prefer` order
    /// first) if the primary is among them.
    Failover {
        lost: Vec<String>,
        prefer: Vec<String>,
    },
    /// A draining primary hands its role to an in-sync replica.
    HandOff {
        to: String,
    },
    /// The operator's pinned primary, now in sync, takes the role.
    Pin {
        to: String,
    },
    /// Start a copy onto `to`.
    Copy {
        to: String,
        reason: MoveReason,
    },
    /// Drop a surplus in-sync copy.
    Trim {
        victim: String,
        prefer: Vec<String>,
    },
    /// Hand the primary to placement's first choice, already an in-sync replica.
    BalancePrimary {
        to: String,
    },
}

/// Why a shard that needs something waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Every in-sync copy is on a down node: nothing is moved or dropped until one
    /// returns (Kafka without unclean leader election).
    Stranded,
    /// A copy of this shard is running; only failover acts meanwhile.
    CopyRunning,
    /// Short of copies while a node is unhealthy, and `move_delay` has not passed.
    MoveDelay,
    /// Every copy slot (`max_concurrent_moves`) is taken.
    NoSlot,
    /// No eligible node with room to copy onto.
    NoTarget,
    /// Nothing to copy from.
    NoPrimary,
    /// Membership changed recently: rebalancing waits for `rebalance_delay`.
    Settling,
}

impl Snapshot {
    pub fn new(nodes: HashMap<Arc<str>, NodeView>, rf: usize) -> Snapshot {
        let unknown = nodes
            .values()
            .filter(|n| n.state == NodeState::Unknown)
            .count();
        let unhealthy = nodes
            .values()
            .filter(|n| is_down(n.state) && !n.draining)
            .count();
        Snapshot {
            nodes,
            rf,
            unhealthy,
            unknown,
            move_delay: Duration::ZERO,
            rebalance_allowed: false,
            free_slots: usize::MAX,
            spare: OnceCell::new(),
        }
    }

    /// Nodes in the snapshot (for the storm guard).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Unknown to the registry, judged unhealthy, or not heard from since a restart.
    pub fn dead(&self, id: &str) -> bool {
        self.nodes.get(id).is_none_or(|n| is_down(n.state))
    }

    pub fn draining(&self, id: &str) -> bool {
        self.nodes.get(id).is_some_and(|n| n.draining)
    }

    pub fn eligible(&self, id: &str) -> bool {
        self.nodes.get(id).is_some_and(|n| n.eligible)
    }

    /// Eligible nodes (serving, not draining) and whether each has room, by id.
    pub fn eligible_nodes(&self) -> Vec<(Arc<str>, bool)> {
        let mut v: Vec<(Arc<str>, bool)> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.eligible)
            .map(|(id, n)| (id.clone(), n.has_room))
            .collect();
        v.sort_unstable();
        v
    }

    fn known(&self, id: &str) -> bool {
        self.nodes.contains_key(id)
    }

    fn spare(&self) -> &[Arc<str>] {
        self.spare.get_or_init(|| {
            let mut ids: Vec<Arc<str>> = self
                .nodes
                .iter()
                .filter(|(_, n)| n.eligible && n.has_room)
                .map(|(id, _)| id.clone())
                .collect();
            ids.sort_unstable();
            ids
        })
    }

    /// Shards whose primary is dead or draining go first in a pass.
    pub fn urgent(&self, rec: &ShardRecord) -> bool {
        rec.primary
            .as_deref()
            .is_some_and(|p| self.dead(p) || self.draining(p))
    }

    /// Whether a running copy of `rec` onto `target` can no longer finish usefully:
    /// its source (the primary) or its target died, or the target is draining. It
    /// would only wait out its timeout while holding a move slot.
    pub fn copy_doomed(&self, rec: &ShardRecord, target: &str) -> bool {
        let source_dead = rec.primary.as_deref().is_some_and(|p| self.dead(p));
        source_dead || self.dead(target) || self.draining(target)
    }
}

fn is_down(s: NodeState) -> bool {
    matches!(s, NodeState::Unhealthy | NodeState::Unknown)
}

/// The storm guard: so many nodes failing at once more likely means the coordinator
/// is cut off than that they died, so moves freeze.
pub fn storm(nodes: usize, unhealthy: usize, fraction: f64) -> bool {
    nodes >= 2 && unhealthy as f64 >= fraction * nodes as f64
}

/// The holders `rec` should converge to: an operator's pin (its eligible nodes), else
/// the load balancer's choice while all of it is eligible, else placement's wish.
pub fn wanted(rec: &ShardRecord, wish: &[String], snap: &Snapshot) -> Vec<String> {
    match (&rec.pinned, &rec.load_placed) {
        (Some(pin), _) => pin.iter().filter(|n| snap.eligible(n)).cloned().collect(),
        (None, Some(placed)) if load_placement_holds(rec, snap) => placed.clone(),
        _ => wish.to_vec(),
    }
}

/// Whether `rec` follows a load placement that still stands (every node in it
/// eligible, no pin over it).
pub fn load_placement_holds(rec: &ShardRecord, snap: &Snapshot) -> bool {
    rec.pinned.is_none()
        && rec
            .load_placed
            .as_ref()
            .is_some_and(|p| !p.is_empty() && p.iter().all(|n| snap.eligible(n)))
}

/// The next step for shard `rec`; `wish` is placement's preferred holders for it.
pub fn plan(rec: &ShardRecord, wish: &[String], snap: &Snapshot, shard: ShardState) -> Step {
    let want = wanted(rec, wish, snap);

    if !shard.moving && rec.replicas.iter().any(|r| !r.in_sync) {
        return Step::DropAbandonedCopy;
    }
    if !rec.assigned && rec.primary.is_none() && !want.is_empty() {
        return Step::Bootstrap { holders: want };
    }
    if let Some(step) = failover(rec, &want, snap) {
        return step;
    }
    if shard.moving {
        return Step::Wait(Wait::CopyRunning);
    }
    if let Some(to) = hand_off_target(rec, &want, snap) {
        return Step::HandOff { to };
    }
    if let Some(first) = rec.pinned.as_ref().and_then(|p| p.first()) {
        if rec.primary.as_ref() != Some(first) && in_sync_replica(rec, first) {
            return Step::Pin { to: first.clone() };
        }
    }

    let in_sync = rec.in_sync().count();
    if in_sync < snap.rf {
        return rereplicate(rec, &want, snap, shard.under_for);
    }

    let extra: Vec<&str> = rec
        .write_set()
        .filter(|(n, s)| *s && !want.iter().any(|w| w == n))
        .map(|(n, _)| n)
        .collect();
    if in_sync > snap.rf && !extra.is_empty() {
        let victim = extra.iter().find(|n| snap.draining(n)).unwrap_or(&extra[0]);
        return Step::Trim {
            victim: victim.to_string(),
            prefer: want,
        };
    }
    // A load placement is acted on at once, like a pin: it answers load now.
    let load = load_placement_holds(rec, snap);
    let missing = want.iter().find(|n| !rec.holds(n));
    if missing.is_none() && (snap.rebalance_allowed || load) {
        if let Some(first) = want.first() {
            if rec.primary.as_ref() != Some(first) && in_sync_replica(rec, first) {
                return Step::BalancePrimary { to: first.clone() };
            }
        }
    }
    let Some(to) = missing else {
        return Step::Nothing;
    };
    let reason = if rec.write_set().any(|(n, _)| snap.draining(n)) {
        MoveReason::Drain
    } else if rec.pinned.is_some() {
        MoveReason::Manual
    } else if load {
        MoveReason::Load
    } else if snap.rebalance_allowed {
        MoveReason::Rebalance
    } else {
        return Step::Wait(Wait::Settling);
    };
    if snap.free_slots == 0 {
        return Step::Wait(Wait::NoSlot);
    }
    Step::Copy {
        to: to.clone(),
        reason,
    }
}

/// Failover, or the wait of a shard whose every in-sync copy is down. Only a
/// holder an operator removed from the cluster is let go of when no in-sync copy
/// is left.
fn failover(rec: &ShardRecord, want: &[String], snap: &Snapshot) -> Option<Step> {
    let live_in_sync = rec.write_set().any(|(n, s)| s && !snap.dead(n));
    let lost: Vec<String> = rec
        .write_set()
        .filter(|(n, in_sync)| snap.dead(n) && (live_in_sync || !in_sync || !snap.known(n)))
        .map(|(n, _)| n.to_string())
        .collect();
    if !lost.is_empty() {
        return Some(Step::Failover {
            lost,
            prefer: want.to_vec(),
        });
    }
    (!live_in_sync && rec.primary.is_some()).then_some(Step::Wait(Wait::Stranded))
}

/// The in-sync replica a draining primary hands its role to: placement's choice
/// first, else any eligible in-sync replica.
fn hand_off_target(rec: &ShardRecord, want: &[String], snap: &Snapshot) -> Option<String> {
    let primary = rec.primary.as_deref()?;
    if !snap.draining(primary) {
        return None;
    }
    want.iter()
        .find(|w| in_sync_replica(rec, w))
        .or_else(|| {
            rec.replicas
                .iter()
                .find(|r| r.in_sync && snap.eligible(&r.node))
                .map(|r| &r.node)
        })
        .cloned()
}

fn rereplicate(rec: &ShardRecord, want: &[String], snap: &Snapshot, under_for: Duration) -> Step {
    let target = want.iter().find(|n| !rec.holds(n)).cloned().or_else(|| {
        snap.spare()
            .iter()
            .find(|n| !rec.holds(n))
            .map(|n| n.to_string())
    });
    let Some(to) = target else {
        return Step::Wait(Wait::NoTarget);
    };
    if snap.free_slots == 0 {
        return Step::Wait(Wait::NoSlot);
    }
    if snap.unhealthy > 0 && under_for < snap.move_delay {
        return Step::Wait(Wait::MoveDelay);
    }
    if rec.primary.is_none() {
        return Step::Wait(Wait::NoPrimary);
    }
    Step::Copy {
        to,
        reason: MoveReason::Rereplicate,
    }
}

fn in_sync_replica(rec: &ShardRecord, node: &str) -> bool {
    rec.replicas.iter().any(|r| r.in_sync && r.node == node)
}

#[cfg(test)]
mod tests;
