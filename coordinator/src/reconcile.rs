//! The reconciler: one loop that compares the shard map with where shards should be
//! and takes one step at a time towards it. In order of urgency, per shard:
//!
//! 1. **bootstrap** a never-assigned shard onto its placement (no data to copy);
//! 2. **failover**: drop holders on dead nodes, promoting an in-sync replica at once;
//! 3. **hand off** primaries of draining nodes to an in-sync replica (no copy);
//! 4. **re-replicate** an under-replicated shard (after `move_delay` while any node is
//!    unhealthy: a blip should not cost a copy);
//! 5. **move** a copy onto a node placement prefers (drain at once, rebalance after
//!    `rebalance_delay`), then **trim** the surplus holder once the copy is in sync.
//!
//! Copies run as tasks, at most `max_concurrent_moves`; everything else is a single
//! committed map change. The storm guard freezes all of it when too many nodes fail
//! at once, which more likely means the coordinator is cut off than that they died.

use crate::cluster::{unix_ms, Cluster};
use crate::placement::{place, Candidate};
use crate::shardmap::Replica;
use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use torua_protocol::NodeState;
use tracing::Instrument;

/// Preferred holders per shard, as computed by [`place`].
type Placement = Vec<Vec<String>>;
/// What a placement was computed from: (node id, weight bits, max_shards) per
/// candidate, sorted by id.
type CandidateKey = Vec<(Arc<str>, u64, Option<u32>)>;

/// The eligible set as of the last pass, when it last changed, and its placement.
struct Membership {
    key: CandidateKey,
    since: Instant,
    placement: Arc<Placement>,
}

pub const REASONS: [&str; 5] = ["failover", "rereplicate", "rebalance", "drain", "manual"];
const RECENT_MOVES: usize = 100;

#[derive(Debug, Clone, Serialize)]
pub struct MoveInfo {
    pub shard: u32,
    pub to: String,
    pub from: Option<String>,
    pub reason: &'static str,
    pub started_ms: u64,
    pub state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub duration_seconds: f64,
}

/// Per-node shard counts and shard health, as of the last pass (for metrics/views).
#[derive(Debug, Clone, Default)]
pub struct ShardStats {
    pub per_node: HashMap<String, (usize, usize)>,
    pub under_replicated: usize,
    pub unavailable: usize,
    pub total: usize,
}

#[derive(Default)]
pub struct Mover {
    wake: Notify,
    in_flight: Mutex<HashMap<u32, MoveInfo>>,
    recent: Mutex<VecDeque<MoveInfo>>,
    under_since: Mutex<HashMap<u32, Instant>>,
    /// Nodes that held a shard at the last [`update_stats`].
    holders: Mutex<std::collections::HashSet<String>>,
    /// Shards waiting for a down in-sync holder to return (logged once each).
    stranded: Mutex<std::collections::HashSet<u32>>,
    /// Last candidate set; a change restarts the rebalance delay and the placement.
    membership: Mutex<Option<Membership>>,
    rebalance_now: AtomicBool,
    unfreeze: AtomicBool,
    frozen: AtomicBool,
    /// Copy target and cancel signal per running copy. Cancelling interrupts only
    /// the pull, so map changes are never cut in half.
    tasks: Mutex<HashMap<u32, (String, Arc<Notify>)>>,
}

impl Mover {
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// `POST /v1/rebalance`: skip the rebalance delay once; optionally lift a freeze
    /// until the failure storm is over.
    pub fn request_rebalance(&self, unfreeze: bool) {
        self.rebalance_now.store(true, Ordering::Release);
        if unfreeze {
            self.unfreeze.store(true, Ordering::Release);
        }
        self.wake();
    }

    pub fn frozen(&self) -> bool {
        self.frozen.load(Ordering::Acquire)
    }

    pub fn moves(&self) -> (Vec<MoveInfo>, Vec<MoveInfo>) {
        let mut inf: Vec<_> = lock(&self.in_flight).values().cloned().collect();
        inf.sort_by_key(|m| m.shard);
        (inf, lock(&self.recent).iter().rev().cloned().collect())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What one pass knows about a node.
struct NodeInfo {
    state: NodeState,
    eligible: bool,
    draining: bool,
    /// Below its `max_shards` cap.
    has_room: bool,
}

/// Shortest time between two passes.
const MIN_PASS_GAP: Duration = Duration::from_millis(50);

/// How often each live node's actual shards are compared with the map.
const AUDIT_EVERY: Duration = Duration::from_secs(2);

/// Runs passes until `shutdown`: on every wake-up and at least twice a second, with
/// an assignment audit every [`AUDIT_EVERY`].
pub async fn run(cluster: Arc<Cluster>, shutdown: impl std::future::Future<Output = ()>) {
    tokio::pin!(shutdown);
    let mut last_audit = Instant::now();
    loop {
        pass(&cluster).await;
        if last_audit.elapsed() >= AUDIT_EVERY {
            audit(&cluster).await;
            last_audit = Instant::now();
        }
        tokio::select! {
            _ = &mut shutdown => return,
            _ = cluster.mover.wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
        // Wake-ups coalesce over this gap: a burst of changes costs one pass (a walk
        // over every node), not one each, and failover waits at most this long.
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tokio::time::sleep(MIN_PASS_GAP) => {}
        }
    }
}

/// Evicts in-sync holders that no longer hold their shard at its epoch — a storage
/// node restarted without its data looks healthy, but its copies are gone. Without
/// this, the map would count copies that exist only on paper until a request failed.
pub async fn audit(cluster: &Arc<Cluster>) {
    if cluster.mover.frozen() {
        return;
    }
    let records = cluster.shards.snapshot();
    // Only the map's in-sync holders can be evicted, so only they are asked: a
    // cluster of thousands of nodes with a few hundred shard copies costs a few
    // hundred calls per audit, not one per node.
    let holders: std::collections::BTreeSet<&str> =
        records.iter().flat_map(|r| r.in_sync()).collect();
    if holders.is_empty() {
        return;
    }
    for node in holders {
        // The address of a serving holder, read under one lock.
        let addr = cluster.nodes.get(node).and_then(|cell| {
            let n = cell.lock();
            let serving = matches!(n.health.base, NodeState::Healthy | NodeState::Degraded);
            (serving && !n.record.addr.is_empty()).then(|| n.record.addr.clone())
        });
        let Some(addr) = addr else {
            continue;
        };
        let Ok(held) = cluster.shards.client.held_shards(&addr).await else {
            continue;
        };
        for rec in &records {
            let in_sync = rec.in_sync().any(|n| n == node);
            // A newer epoch on the node means a change is being published right now.
            if !in_sync || held.get(&rec.id).is_some_and(|e| *e >= rec.epoch) {
                continue;
            }
            let epoch = rec.epoch;
            let r = cluster
                .shards
                .change(rec.id, &cluster.nodes, None, |r| {
                    if r.epoch == epoch {
                        r.remove(node, &[]);
                    }
                })
                .await;
            if let Ok(Some(r)) = r {
                tracing::warn!(
                    "shard {}: {node} no longer holds it at epoch {epoch} (has {:?}); evicted (epoch {})",
                    rec.id,
                    held.get(&rec.id),
                    r.epoch
                );
                cluster.mover.wake();
            }
        }
    }
}

pub async fn pass(cluster: &Arc<Cluster>) {
    let now = Instant::now();
    let m = &cluster.mover;
    let cfg = &cluster.cfg;
    let in_grace = now.saturating_duration_since(cluster.started) < cfg.startup_grace;

    // One walk over the registry, cloning only `Arc` ids: this runs twice a second
    // over every node.
    let mut nodes: HashMap<Arc<str>, NodeInfo> = HashMap::with_capacity(cluster.nodes.len());
    let mut key: CandidateKey = Vec::new();
    cluster.nodes.for_each(|cell| {
        let n = cell.lock();
        let draining = n.record.admin_drain || n.record.leaving;
        let eligible =
            matches!(n.health.base, NodeState::Healthy | NodeState::Degraded) && !draining;
        // A node offering no room at all is not a placement candidate.
        if eligible && n.record.capacity.max_shards != Some(0) {
            let cap = &n.record.capacity;
            key.push((cell.id.clone(), cap.weight.to_bits(), cap.max_shards));
        }
        nodes.insert(
            cell.id.clone(),
            NodeInfo {
                state: n.health.base,
                eligible,
                draining,
                has_room: n
                    .record
                    .capacity
                    .max_shards
                    .is_none_or(|cap| n.shards_held < cap as usize),
            },
        );
    });
    key.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let unknown = nodes
        .values()
        .filter(|n| n.state == NodeState::Unknown)
        .count();
    // Nodes still unknown after the startup grace count as failed too: a
    // coordinator restarted on the wrong side of a partition sees exactly that.
    let unhealthy = nodes
        .values()
        .filter(|n| matches!(n.state, NodeState::Unhealthy | NodeState::Unknown) && !n.draining)
        .count();
    // After a restart, wait for nodes to report before judging anyone.
    if in_grace && unknown > 0 {
        update_stats(cluster);
        return;
    }
    let dead = |id: &str| match nodes.get(id) {
        None => true,
        Some(n) => n.state == NodeState::Unhealthy || n.state == NodeState::Unknown,
    };

    // Storm guard.
    let counted = nodes.len();
    let storm = counted >= 2 && unhealthy as f64 >= cfg.storm_fraction * counted as f64;
    if !storm {
        m.unfreeze.store(false, Ordering::Release);
    }
    let frozen = storm && !m.unfreeze.load(Ordering::Acquire);
    if m.frozen.swap(frozen, Ordering::AcqRel) != frozen {
        if frozen {
            tracing::error!(
                "storm guard: {unhealthy} of {counted} nodes unhealthy; shard moves frozen"
            );
        } else {
            tracing::warn!("storm guard lifted; shard moves resume");
        }
    }
    cluster.metrics.moves_frozen.set(i64::from(frozen));
    if frozen {
        update_stats(cluster);
        return;
    }

    // Membership as placement sees it. A change restarts the rebalance delay, and
    // only a change recomputes the placement (O(shards × nodes)).
    let unchanged = lock(&m.membership).as_ref().is_some_and(|ms| ms.key == key);
    if !unchanged {
        let candidates: Vec<Candidate> = key
            .iter()
            .map(|(id, w, cap)| Candidate {
                id: id.to_string(),
                weight: f64::from_bits(*w),
                max_shards: *cap,
            })
            .collect();
        let (shards, rf) = (cluster.shards.slots.len() as u32, cluster.shards.rf);
        // Tens of milliseconds at 10,000 nodes: keep it off the runtime workers that
        // serve heartbeats.
        let placement = tokio::task::spawn_blocking(move || place(shards, rf, &candidates))
            .await
            .expect("placement panicked");
        *lock(&m.membership) = Some(Membership {
            key,
            since: now,
            placement: Arc::new(placement),
        });
    }
    let (desired, membership_settled) = {
        let g = lock(&m.membership);
        let ms = g.as_ref().expect("membership set above");
        let settled = now.saturating_duration_since(ms.since) >= cfg.rebalance_delay
            || m.rebalance_now.swap(false, Ordering::AcqRel);
        (ms.placement.clone(), settled)
    };
    let mut records = cluster.shards.snapshot();
    // A copy onto a node that died, or from a primary that died, would only wait out
    // its timeout while holding a move slot.
    let doomed: Vec<u32> = lock(&m.tasks)
        .iter()
        .filter(|(id, (target, _))| {
            let source_dead = records
                .get(**id as usize)
                .and_then(|r| r.primary.as_deref())
                .is_some_and(&dead);
            source_dead || dead(target) || nodes.get(target.as_str()).is_some_and(|n| n.draining)
        })
        .map(|(id, _)| *id)
        .collect();
    for id in doomed {
        abort_move(
            cluster,
            id,
            "its source or target node is no longer eligible",
        );
    }
    // Urgent work first: shards whose primary is draining or dead.
    records.sort_by_key(|r| {
        let p = r.primary.as_deref().unwrap_or("");
        !(dead(p) || nodes.get(p).is_some_and(|n| n.draining))
    });

    let mut spare: Option<Vec<&Arc<str>>> = None;
    for rec in records {
        let id = rec.id;
        let want: Vec<String> = match &rec.pinned {
            Some(pin) => pin
                .iter()
                .filter(|n| nodes.get(n.as_str()).is_some_and(|i| i.eligible))
                .cloned()
                .collect(),
            None => desired[id as usize].clone(),
        };
        let moving = lock(&m.in_flight).contains_key(&id);

        // A copy with no task behind it was abandoned (coordinator crash mid-copy):
        // drop it; the steps below start a fresh one if it is still wanted.
        if !moving && rec.replicas.iter().any(|r| !r.in_sync) {
            let _ = cluster
                .shards
                .change(id, &cluster.nodes, None, |r| {
                    r.replicas.retain(|x| x.in_sync)
                })
                .await;
            tracing::info!("shard {id}: dropped an abandoned copy");
            continue;
        }

        // 1. bootstrap
        if !rec.assigned && rec.primary.is_none() && !want.is_empty() {
            let _ = cluster
                .shards
                .change(id, &cluster.nodes, None, |r| {
                    r.primary = Some(want[0].clone());
                    r.replicas = want[1..]
                        .iter()
                        .map(|n| Replica {
                            node: n.clone(),
                            in_sync: true,
                        })
                        .collect();
                })
                .await;
            continue;
        }

        // 2. failover. The last in-sync copy is never given up while its node may
        // come back: a shard whose every in-sync holder is down stays unavailable,
        // data intact, until one returns (Kafka without unclean leader election).
        // Only a holder an operator removed from the cluster is let go.
        let live_in_sync = rec.write_set().any(|(n, s)| s && !dead(n));
        let dead_holders: Vec<String> = rec
            .write_set()
            .filter(|(n, in_sync)| dead(n) && (live_in_sync || !in_sync || !nodes.contains_key(*n)))
            .map(|(n, _)| n.to_string())
            .collect();
        if dead_holders.is_empty() && !live_in_sync && rec.primary.is_some() {
            if lock(&m.stranded).insert(id) {
                tracing::error!(
                    "shard {id}: unavailable, every in-sync copy is on a down node; \
                     waiting for one to return (nothing is moved or dropped meanwhile)"
                );
            }
            continue;
        }
        if lock(&m.stranded).remove(&id) {
            tracing::warn!("shard {id}: an in-sync copy is back; available again");
        }
        if !dead_holders.is_empty() {
            let old_primary = rec.primary.clone();
            let promote = tracing::info_span!("shard.promote", shard = id, lost = ?dead_holders, from = ?old_primary);
            match cluster
                .shards
                .change(id, &cluster.nodes, None, |r| {
                    for n in &dead_holders {
                        r.remove(n, &want);
                    }
                })
                .instrument(promote)
                .await
            {
                Ok(Some(r)) if r.primary != old_primary => {
                    cluster.metrics.moved("failover", r.primary.is_some(), 0.0);
                    match &r.primary {
                        Some(p) => tracing::warn!(
                            "shard {id}: failover, promoted {p} (epoch {}) after losing {dead_holders:?}",
                            r.epoch
                        ),
                        None => tracing::error!("shard {id}: unavailable, no in-sync copy left after losing {dead_holders:?}"),
                    }
                    record_recent(
                        m,
                        MoveInfo {
                            shard: id,
                            to: r.primary.clone().unwrap_or_default(),
                            from: old_primary,
                            reason: "failover",
                            started_ms: unix_ms(),
                            state: if r.primary.is_some() { "ok" } else { "failed" },
                            error: None,
                            duration_seconds: 0.0,
                        },
                    );
                }
                Ok(_) => tracing::warn!("shard {id}: dropped {dead_holders:?} from its holders"),
                Err(e) => tracing::error!("shard {id}: failover commit failed: {e}"),
            }
            continue;
        }

        // Failover (above) never waits for a copy; everything below does.
        if moving {
            continue;
        }

        // 3. hand off a draining primary to an in-sync replica
        if let Some(p) = rec.primary.as_deref() {
            if nodes.get(p).is_some_and(|n| n.draining) {
                let next = want
                    .iter()
                    .find(|w| rec.replicas.iter().any(|r| r.in_sync && &&r.node == w))
                    .or_else(|| {
                        rec.replicas
                            .iter()
                            .find(|r| {
                                r.in_sync && nodes.get(r.node.as_str()).is_some_and(|n| n.eligible)
                            })
                            .map(|r| &r.node)
                    })
                    .cloned();
                if let Some(next) = next {
                    if let Ok(Some(r)) = cluster
                        .shards
                        .change(id, &cluster.nodes, None, |r| r.make_primary(&next))
                        .await
                    {
                        tracing::info!(
                            "shard {id}: primary handed from draining {p} to {next} (epoch {})",
                            r.epoch
                        );
                    }
                    continue;
                }
            }
        }

        // An operator's pinned primary takes over once it is in sync.
        if let Some(first) = rec.pinned.as_ref().and_then(|p| p.first()) {
            let ready = rec.replicas.iter().any(|r| r.in_sync && &r.node == first);
            if ready && rec.primary.as_ref() != Some(first) {
                let first = first.clone();
                let _ = cluster
                    .shards
                    .change(id, &cluster.nodes, None, |r| r.make_primary(&first))
                    .await;
                continue;
            }
        }

        let in_sync = rec.in_sync().count();
        let copying = rec.replicas.iter().any(|r| !r.in_sync);
        let rf = cluster.shards.rf;
        let room = lock(&m.in_flight).len() < cfg.max_concurrent_moves;

        // 4. re-replicate
        if in_sync < rf && !copying {
            let since = *lock(&m.under_since).entry(id).or_insert(now);
            let waited = now.saturating_duration_since(since) >= cfg.move_delay;
            let target = want.iter().find(|n| !rec.holds(n)).cloned().or_else(|| {
                // Any eligible node with room, in id order, when placement
                // offers none (sorted once per pass, and only if needed).
                spare
                    .get_or_insert_with(|| {
                        let mut ids: Vec<&Arc<str>> = nodes
                            .iter()
                            .filter(|(_, i)| i.eligible && i.has_room)
                            .map(|(n, _)| n)
                            .collect();
                        ids.sort_unstable();
                        ids
                    })
                    .iter()
                    .find(|n| !rec.holds(n))
                    .map(|n| n.to_string())
            });
            if let (Some(target), true, true) = (target, room, unhealthy == 0 || waited) {
                if rec.primary.is_some() {
                    spawn_copy(cluster.clone(), id, target, "rereplicate");
                }
            }
            continue;
        }
        lock(&m.under_since).remove(&id);

        // 5. move towards placement, then trim
        let draining_holder = rec
            .write_set()
            .any(|(n, _)| nodes.get(n).is_some_and(|i| i.draining));
        let missing = want.iter().find(|n| !rec.holds(n)).cloned();
        let extra: Vec<String> = rec
            .write_set()
            .filter(|(n, s)| *s && !want.iter().any(|w| w == n))
            .map(|(n, _)| n.to_string())
            .collect();
        if in_sync > rf && !extra.is_empty() {
            // Drop a surplus holder, draining ones first, never below rf.
            let victim = extra
                .iter()
                .find(|n| nodes.get(n.as_str()).is_some_and(|i| i.draining))
                .unwrap_or(&extra[0])
                .clone();
            let epoch_before = rec.epoch;
            if let Ok(Some(r)) = cluster
                .shards
                .change(id, &cluster.nodes, None, |r| {
                    r.remove(&victim, &want);
                })
                .await
            {
                tracing::info!(
                    "shard {id}: removed surplus copy on {victim} (epoch {epoch_before} → {})",
                    r.epoch
                );
                if let Some(addr) = cluster.addr_of(&victim) {
                    let (client, epoch) = (cluster.shards.client.clone(), r.epoch);
                    tokio::spawn(async move {
                        if let Err(e) = client.drop_shard(&addr, id, epoch).await {
                            tracing::debug!("shard {id}: dropping data on {addr} failed: {e}");
                        }
                    });
                }
            }
            continue;
        }
        // Balance primaries too: hand the primary to the preferred in-sync holder.
        if missing.is_none() && membership_settled {
            if let Some(first) = want.first() {
                if rec.primary.as_ref() != Some(first)
                    && rec.replicas.iter().any(|r| r.in_sync && &r.node == first)
                {
                    let first = first.clone();
                    let _ = cluster
                        .shards
                        .change(id, &cluster.nodes, None, |r| r.make_primary(&first))
                        .await;
                    continue;
                }
            }
        }
        if let (Some(target), false, true) = (missing, copying, room) {
            let reason = if draining_holder {
                "drain"
            } else if rec.pinned.is_some() {
                "manual"
            } else if membership_settled {
                "rebalance"
            } else {
                continue;
            };
            spawn_copy(cluster.clone(), id, target, reason);
        }
    }
    update_stats(cluster);
}

fn record_recent(m: &Mover, info: MoveInfo) {
    let mut r = lock(&m.recent);
    if r.len() == RECENT_MOVES {
        r.pop_front();
    }
    r.push_back(info);
}

/// Copies shard `id` onto `target` from its primary, while live writes also reach it;
/// marks it in sync only if no live write to it failed meanwhile.
fn spawn_copy(cluster: Arc<Cluster>, id: u32, target: String, reason: &'static str) {
    let info = MoveInfo {
        shard: id,
        to: target.clone(),
        from: None,
        reason,
        started_ms: unix_ms(),
        state: "copying",
        error: None,
        duration_seconds: 0.0,
    };
    lock(&cluster.mover.in_flight).insert(id, info.clone());
    cluster.metrics.moves_in_flight.inc();
    let cancel = Arc::new(Notify::new());
    lock(&cluster.mover.tasks).insert(id, (target.clone(), cancel.clone()));
    tokio::spawn(async move {
        let started = Instant::now();
        let span = tracing::info_span!("shard.move", shard = id, to = %target, reason);
        let result = async {
            tracing::info!("shard {id}: copying to {target} ({reason})");
            copy(&cluster, id, &target, &cancel).await
        }
        .instrument(span)
        .await;
        let secs = started.elapsed().as_secs_f64();
        let mut done = info;
        done.duration_seconds = secs;
        match &result {
            Ok(from) => {
                done.state = "ok";
                done.from = Some(from.clone());
                tracing::info!(
                    "shard {id}: copy from {from} to {target} in sync after {secs:.2}s ({reason})"
                );
            }
            Err(e) => {
                done.state = "failed";
                done.error = Some(e.clone());
                tracing::warn!("shard {id}: copy to {target} failed after {secs:.2}s: {e}");
                let _ = cluster
                    .shards
                    .change(id, &cluster.nodes, None, |r| {
                        r.replicas.retain(|x| x.node != target || x.in_sync)
                    })
                    .await;
            }
        }
        lock(&cluster.mover.tasks).remove(&id);
        cluster.metrics.moved(reason, result.is_ok(), secs);
        cluster.metrics.moves_in_flight.dec();
        lock(&cluster.mover.in_flight).remove(&id);
        record_recent(&cluster.mover, done);
        update_stats(&cluster);
        cluster.mover.wake();
    });
}

/// Asks shard `id`'s copy to give up; it then fails and rolls back as usual.
fn abort_move(cluster: &Cluster, id: u32, why: &str) {
    if let Some((target, cancel)) = lock(&cluster.mover.tasks).get(&id) {
        tracing::warn!("shard {id}: cancelling the copy to {target}: {why}");
        cancel.notify_one();
    }
}

async fn copy(cluster: &Cluster, id: u32, target: &str, cancel: &Notify) -> Result<String, String> {
    let target_addr = cluster.addr_of(target).ok_or("target has no address")?;
    let slot = cluster.shards.slot(id).ok_or("no such shard")?;
    // Reset before the copy joins the write set: from then on, any failed live write
    // to it must be seen.
    slot.copy_broken.store(false, Ordering::Release);
    let (rec, untold) = cluster
        .shards
        .change_checked(id, &cluster.nodes, Some(target), |r| {
            if !r.holds(target) {
                r.replicas.push(Replica {
                    node: target.to_string(),
                    in_sync: false,
                });
            }
        })
        .await?
        .ok_or("the target already holds the shard")?;
    if untold.iter().any(|n| n == target) {
        return Err(format!("{target} did not accept the assignment"));
    }
    let from = rec.primary.clone().ok_or("no primary to copy from")?;
    let from_addr = cluster.addr_of(&from).ok_or("primary has no address")?;
    let pull = cluster
        .shards
        .client
        .pull(&target_addr, id, rec.epoch, &from_addr);
    let copy_span = tracing::info_span!("shard.copy", shard = id, from = %from, to = %target, epoch = rec.epoch);
    tokio::select! {
        r = pull.instrument(copy_span) => r.map_err(|e| e.to_string())?,
        _ = cancel.notified() => return Err("cancelled: the target is no longer eligible".into()),
    }
    if slot.copy_broken.load(Ordering::Acquire) {
        return Err("a live write to the copy failed during the copy".into());
    }
    let marked = cluster
        .shards
        .change(id, &cluster.nodes, None, |r| {
            if r.epoch == rec.epoch {
                for x in r.replicas.iter_mut().filter(|x| x.node == target) {
                    x.in_sync = true;
                }
            }
        })
        .await?;
    match marked {
        Some(r) if r.replicas.iter().any(|x| x.node == target && x.in_sync) => Ok(from),
        _ => Err("the shard changed during the copy".into()),
    }
}

/// Refreshes per-node shard counts, which drive draining → drained.
pub fn update_stats(cluster: &Cluster) {
    let per_node = cluster.shards.holdings();
    let now = std::time::Instant::now();
    // Only holders, now or at the last update, can have a changed count: this runs
    // every pass, and the fleet may be far larger than the set of holders.
    let mut holders = lock(&cluster.mover.holders);
    let visit: std::collections::BTreeSet<String> =
        holders.drain().chain(per_node.keys().cloned()).collect();
    for id in visit {
        let held = per_node.get(&id).map_or(0, |(p, r)| p + r);
        if held > 0 {
            holders.insert(id.clone());
        }
        let Some(cell) = cluster.nodes.get(&id) else {
            continue;
        };
        let mut n = cell.lock();
        if n.shards_held != held {
            n.shards_held = held;
            if let Some(old) = n.refresh_state(now) {
                cluster.state_changed(&cell, &n, old, now);
            }
        }
    }
}
