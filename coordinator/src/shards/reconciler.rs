//! The executor of the shard wing: one task that owns its state, takes a snapshot of
//! the nodes per pass, asks [`plan`] for each shard's next step, and applies it
//! through [`Reconciler::apply`]. Copies run as tasks (at most
//! `max_concurrent_moves`) and report back here; everything else is a single
//! committed map change. The storm guard freezes all of it when too many nodes fail
//! at once, which more likely means the coordinator is cut off than that they died.

use super::audit;
use super::balance::{self, Action, Policy, Round, ShardView, Target};
use super::change::ChangeKind;
use super::commit::commit;
use super::copy::{self, Finished};
use super::load_round;
use super::moves::{MoveInfo, MoveReason, MoveState};
use super::placement::{place, Candidate};
use super::plan::{self, NodeView, ShardState, Snapshot, Step, Wait};
use super::record::{Replica, ShardRecord};
use crate::cluster::{unix_ms, Cluster};
use crate::nodeclient::To;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch, Notify};
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

/// A copy in flight.
struct Running {
    info: MoveInfo,
    cancel: Arc<Notify>,
}

/// Shortest time between two passes.
const MIN_PASS_GAP: Duration = Duration::from_millis(50);
/// Longest time between two passes.
const MAX_PASS_GAP: Duration = Duration::from_millis(500);
/// How often each live node's actual shards are compared with the map.
const AUDIT_EVERY: Duration = Duration::from_secs(2);

pub struct Reconciler {
    cluster: Arc<Cluster>,
    membership: Option<Membership>,
    /// When each shard was first seen short of in-sync copies.
    under_since: HashMap<u32, Instant>,
    /// Shards waiting for a down in-sync holder to return (logged once each).
    stranded: HashSet<u32>,
    /// Nodes that held a shard at the last [`Reconciler::update_counts`].
    holders: HashSet<String>,
    running: HashMap<u32, Running>,
    /// The load balancer's rounds, history and actions in flight.
    load: super::load_round::LoadRounds,
    frozen: bool,
    done_tx: mpsc::UnboundedSender<Finished>,
    done_rx: mpsc::UnboundedReceiver<Finished>,
}

impl Reconciler {
    pub fn new(cluster: Arc<Cluster>) -> Reconciler {
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        Reconciler {
            cluster,
            membership: None,
            under_since: HashMap::new(),
            stranded: HashSet::new(),
            holders: HashSet::new(),
            running: HashMap::new(),
            load: super::load_round::LoadRounds::default(),
            frozen: false,
            done_tx,
            done_rx,
        }
    }

    /// Runs passes until `shutdown`: on every wake-up, node state change or finished
    /// copy, and at least every [`MAX_PASS_GAP`], with an assignment audit every
    /// [`AUDIT_EVERY`].
    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut node_events: watch::Receiver<u64> = self.cluster.node_events.subscribe();
        let mut last_audit = Instant::now();
        let mut last_load_round = Instant::now();
        loop {
            self.pass().await;
            if last_load_round.elapsed() >= self.cluster.cfg.load_balance_interval {
                if self.cluster.cfg.load_balance && !self.frozen {
                    self.balance_load().await;
                }
                last_load_round = Instant::now();
            }
            if last_audit.elapsed() >= AUDIT_EVERY {
                if !self.frozen && audit::run(&self.cluster).await > 0 {
                    self.cluster.moves.wake();
                }
                last_audit = Instant::now();
            }
            let cluster = self.cluster.clone();
            let done = tokio::select! {
                _ = &mut shutdown => return,
                _ = cluster.moves.woken() => None,
                _ = node_events.changed() => None,
                done = self.done_rx.recv() => done,
                _ = tokio::time::sleep(MAX_PASS_GAP) => None,
            };
            if let Some(done) = done {
                self.finished(done);
            }
            // Wake-ups coalesce over this gap: a burst of changes costs one pass (a
            // walk over every node), not one each, and failover waits at most this long.
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(MIN_PASS_GAP) => {}
            }
            while let Ok(done) = self.done_rx.try_recv() {
                self.finished(done);
            }
        }
    }

    /// One pass over every shard.
    pub async fn pass(&mut self) {
        let now = Instant::now();
        let cluster = self.cluster.clone();
        let cfg = &cluster.cfg;
        if !cluster.leadership.is_leader() {
            // Followers never commit; a deposed leader stops here too.
            return;
        }
        let in_grace =
            now.saturating_duration_since(self.cluster.warm_up_from()) < cfg.startup_grace;
        let (mut snap, key) = self.snapshot();
        // After a restart or an election, wait for nodes to report before judging
        // anyone (TiKV PD's prepare checker): until 90 % of the known nodes have reported,
        // or the grace is over, a missing report says more about this coordinator
        // (just started, just elected) than about the node.
        if in_grace && snap.unknown * 10 > snap.len() {
            self.update_counts();
            return;
        }
        // Nodes still unknown after the startup grace count as failed too: a
        // coordinator restarted on the wrong side of a partition sees exactly that.
        let storm = plan::storm(snap.len(), snap.unhealthy, cfg.storm_fraction);
        if !storm {
            self.cluster.moves.storm_over();
        }
        let frozen = storm && !self.cluster.moves.unfreeze_requested();
        if frozen != self.frozen {
            if frozen {
                tracing::error!(
                    "storm guard: {} of {} nodes unhealthy; shard moves frozen",
                    snap.unhealthy,
                    snap.len()
                );
            } else {
                tracing::warn!("storm guard lifted; shard moves resume");
            }
            self.frozen = frozen;
            self.cluster.moves.publish_frozen(frozen);
        }
        self.cluster.metrics.moves_frozen.set(i64::from(frozen));
        if frozen {
            self.update_counts();
            return;
        }

        let (wish, settled) = self.placement(key, now).await;
        snap.move_delay = cfg.move_delay;
        snap.rebalance_allowed = settled;
        snap.free_slots = cfg.max_concurrent_moves.saturating_sub(self.running.len());

        let mut records = self.cluster.shards.snapshot();
        for rec in &records {
            if let Some(run) = self.running.get(&rec.id) {
                if snap.copy_doomed(rec, &run.info.to) {
                    tracing::warn!(
                        "shard {}: cancelling the copy to {}: its source or target node is no longer eligible",
                        rec.id,
                        run.info.to
                    );
                    run.cancel.notify_one();
                }
            }
        }
        // Urgent work first: shards whose primary is draining or dead.
        records.sort_by_key(|r| !snap.urgent(r));
        for rec in records {
            let state = ShardState {
                moving: self.running.contains_key(&rec.id),
                under_for: self.under_for(&rec, now),
            };
            let step = plan::plan(&rec, &wish[rec.id as usize], &snap, state);
            if matches!(step, Step::Copy { .. }) {
                snap.free_slots = snap.free_slots.saturating_sub(1);
            }
            self.apply(&rec, step).await;
        }
        self.update_counts();
    }

    /// One walk over the registry, cloning only `Arc` ids: this runs twice a second
    /// over every node. Also returns the placement candidates.
    fn snapshot(&self) -> (Snapshot, CandidateKey) {
        let nodes = &self.cluster.nodes;
        let mut views = HashMap::with_capacity(nodes.len());
        let mut key: CandidateKey = Vec::new();
        nodes.for_each(|cell| {
            let n = cell.lock();
            let draining = n.record.admin_drain || n.record.leaving;
            let serving = matches!(n.health.base, NodeState::Healthy | NodeState::Degraded);
            let cap = &n.record.capacity;
            // A node offering no room at all is not a placement candidate.
            if serving && !draining && cap.max_shards != Some(0) {
                key.push((cell.id.clone(), cap.weight.to_bits(), cap.max_shards));
            }
            views.insert(
                cell.id.clone(),
                NodeView {
                    state: n.health.base,
                    eligible: serving && !draining,
                    draining,
                    has_room: cap.max_shards.is_none_or(|c| n.shards_held < c as usize),
                },
            );
        });
        key.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        (Snapshot::new(views, self.cluster.shards.rf), key)
    }

    /// Placement's wish per shard, and whether membership has been quiet for the
    /// rebalance delay (or an operator asked to skip it). A membership change
    /// restarts the delay, and only a change recomputes the placement
    /// (O(shards × nodes)).
    async fn placement(&mut self, key: CandidateKey, now: Instant) -> (Arc<Placement>, bool) {
        if self.membership.as_ref().is_none_or(|m| m.key != key) {
            let candidates: Vec<Candidate> = key
                .iter()
                .map(|(id, w, cap)| Candidate {
                    id: id.to_string(),
                    weight: f64::from_bits(*w),
                    max_shards: *cap,
                })
                .collect();
            let (shards, rf) = (
                self.cluster.shards.slots.len() as u32,
                self.cluster.shards.rf,
            );
            // Tens of milliseconds at 10,000 nodes: keep it off the runtime workers
            // that serve heartbeats.
            let placement = tokio::task::spawn_blocking(move || place(shards, rf, &candidates))
                .await
                .expect("placement panicked");
            self.membership = Some(Membership {
                key,
                since: now,
                placement: Arc::new(placement),
            });
        }
        let m = self.membership.as_ref().expect("membership set above");
        let settled = now.saturating_duration_since(m.since) >= self.cluster.cfg.rebalance_delay
            || self.cluster.moves.take_rebalance_request();
        (m.placement.clone(), settled)
    }

    /// How long `rec` has been short of in-sync copies.
    fn under_for(&mut self, rec: &ShardRecord, now: Instant) -> Duration {
        if rec.in_sync().count() >= self.cluster.shards.rf {
            self.under_since.remove(&rec.id);
            return Duration::ZERO;
        }
        let since = *self.under_since.entry(rec.id).or_insert(now);
        now.saturating_duration_since(since)
    }

    /// Takes one step: every effect of the shard wing's decisions happens here (or
    /// in the copy task started here), committed, logged and traced the same way.
    pub async fn apply(&mut self, rec: &ShardRecord, step: Step) {
        let id = rec.id;
        if step == Step::Wait(Wait::Stranded) {
            if self.stranded.insert(id) {
                tracing::error!(
                    "shard {id}: unavailable, every in-sync copy is on a down node; \
                     waiting for one to return (nothing is moved or dropped meanwhile)"
                );
            }
            return;
        }
        if self.stranded.remove(&id) {
            tracing::warn!("shard {id}: an in-sync copy is back; available again");
        }
        let cluster = self.cluster.clone();
        match step {
            Step::Nothing | Step::Wait(_) => {}
            Step::DropAbandonedCopy => {
                let changed = commit(&cluster, id, ChangeKind::DropAbandonedCopy, None, |r| {
                    r.replicas.retain(|x| x.in_sync)
                })
                .await;
                if let Ok(Some((r, _))) = changed {
                    tracing::info!("shard {id}: dropped an abandoned copy (epoch {})", r.epoch);
                }
            }
            Step::Bootstrap { holders } => {
                let changed = commit(&cluster, id, ChangeKind::Bootstrap, None, |r| {
                    r.primary = Some(holders[0].clone());
                    r.replicas = holders[1..]
                        .iter()
                        .map(|n| Replica {
                            node: n.clone(),
                            in_sync: true,
                        })
                        .collect();
                })
                .await;
                if let Ok(Some((r, _))) = changed {
                    tracing::info!("shard {id}: assigned to {holders:?} (epoch {})", r.epoch);
                }
            }
            Step::Failover { lost, prefer } => self.failover(rec, lost, prefer).await,
            Step::HandOff { to } => {
                self.make_primary(rec, ChangeKind::HandOff, to, "handed from draining")
                    .await
            }
            Step::Pin { to } => {
                self.make_primary(rec, ChangeKind::Pin, to, "pinned, taken over from")
                    .await
            }
            Step::BalancePrimary { to } => {
                let from = rec.primary.clone();
                self.make_primary(rec, ChangeKind::BalancePrimary, to.clone(), "balanced from")
                    .await;
                if let Some(figures) = self.load.swap_figures(id) {
                    // A load swap done: no copy, so it is finished at once.
                    self.cluster.metrics.moved(MoveReason::Load, true, 0.0);
                    self.cluster.moves.publish_finished(MoveInfo {
                        shard: id,
                        to,
                        from,
                        reason: MoveReason::Load,
                        started_ms: unix_ms(),
                        state: MoveState::Ok,
                        error: None,
                        duration_seconds: 0.0,
                        load: Some(figures),
                    });
                }
            }
            Step::Trim { victim, prefer } => {
                let changed = commit(&cluster, id, ChangeKind::Trim, None, |r| {
                    r.remove(&victim, &prefer);
                })
                .await;
                if let Ok(Some((r, _))) = changed {
                    tracing::info!(
                        "shard {id}: removed surplus copy on {victim} (epoch {} → {})",
                        rec.epoch,
                        r.epoch
                    );
                    if let Some(addr) = cluster.addr_of(&victim) {
                        let (client, epoch) = (cluster.shards.client.clone(), r.epoch);
                        tokio::spawn(async move {
                            let to = To {
                                node: &victim,
                                addr: &addr,
                            };
                            if let Err(e) = client.drop_shard(to, id, epoch).await {
                                tracing::debug!("shard {id}: dropping data on {addr} failed: {e}");
                            }
                        });
                    }
                }
            }
            Step::Copy { to, reason } => self.start_copy(id, to, reason),
        }
    }

    async fn failover(&mut self, rec: &ShardRecord, lost: Vec<String>, prefer: Vec<String>) {
        let id = rec.id;
        let old = rec.primary.clone();
        let span = tracing::info_span!("shard.promote", shard = id, step = "failover", lost = ?lost, from = ?old);
        let changed = commit(&self.cluster, id, ChangeKind::Failover, None, |r| {
            for n in &lost {
                r.remove(n, &prefer);
            }
        })
        .instrument(span)
        .await;
        let Ok(Some((r, _))) = changed else {
            return;
        };
        if r.primary == old {
            tracing::warn!("shard {id}: dropped {lost:?} from its holders");
            return;
        }
        let ok = r.primary.is_some();
        self.cluster.metrics.moved(MoveReason::Failover, ok, 0.0);
        match &r.primary {
            Some(p) => tracing::warn!(
                "shard {id}: failover, promoted {p} (epoch {}) after losing {lost:?}",
                r.epoch
            ),
            None => tracing::error!(
                "shard {id}: unavailable, no in-sync copy left after losing {lost:?}"
            ),
        }
        self.cluster.moves.publish_finished(MoveInfo {
            shard: id,
            to: r.primary.clone().unwrap_or_default(),
            from: old,
            reason: MoveReason::Failover,
            started_ms: unix_ms(),
            state: if ok { MoveState::Ok } else { MoveState::Failed },
            error: None,
            duration_seconds: 0.0,
            load: None,
        });
    }

    /// One round of the load balancer (`balance.rs` decides, `load_round.rs`
    /// remembers): its actions become the records' `load_placed`, which the
    /// planner then follows like a pin, so each is committed, copied, trimmed and
    /// counted like any other change.
    async fn balance_load(&mut self) {
        let cluster = self.cluster.clone();
        if !cluster.leadership.is_leader() {
            return;
        }
        let loads = cluster.load.snapshot();
        let (snap, _) = self.snapshot();
        let records = cluster.shards.snapshot();
        let now = Instant::now();
        for rec in records.iter().filter(|r| r.load_placed.is_some()) {
            if rec.pinned.is_none() && !plan::load_placement_holds(rec, &snap) {
                // A node of the choice left: placement takes over again.
                let epoch = rec.epoch;
                let _ = commit(&cluster, rec.id, ChangeKind::LoadPlace, None, |r| {
                    if r.epoch == epoch {
                        r.load_placed = None;
                    }
                })
                .await;
            }
        }
        if loads.is_empty() {
            return;
        }
        let targets: Vec<Target> = snap
            .eligible_nodes()
            .into_iter()
            .map(|(id, has_room)| Target {
                id: id.to_string(),
                has_room,
            })
            .collect();
        let policy = Policy {
            tolerance: cluster.cfg.load_tolerance,
            floor: cluster.cfg.load_floor,
            ..Policy::default()
        };
        let prepared = self.load.prepare(&policy, &loads, &targets, &records, now);
        let views: Vec<ShardView> = records
            .iter()
            .filter(|r| r.primary.is_some())
            .map(|r| ShardView {
                id: r.id,
                primary: r.primary.clone(),
                replicas: r
                    .replicas
                    .iter()
                    .filter(|x| x.in_sync)
                    .map(|x| x.node.clone())
                    .collect(),
                frozen: r.pinned.is_some()
                    || self.running.contains_key(&r.id)
                    || r.replicas.iter().any(|x| !x.in_sync)
                    || self.load.cooling(r.id),
            })
            .collect();
        let decision = balance::decide(
            &policy,
            &Round {
                loads: &loads,
                shards: &views,
                targets: &targets,
                hot: &prepared.hot,
                busy: &prepared.busy,
            },
        );
        for shard in self.load.too_hot(&decision.too_hot) {
            tracing::warn!(
                "shard {shard}: hotter than any node should carry (over the mean node load \
                 by more than load_tolerance); reported, not moved"
            );
        }
        cluster
            .metrics
            .shards_too_hot
            .set(self.load.too_hot_count() as i64);
        let mut slots = cluster
            .cfg
            .max_concurrent_moves
            .saturating_sub(self.running.len());
        for action in decision.actions {
            if matches!(action, Action::Move { .. }) {
                if slots == 0 {
                    continue;
                }
                slots -= 1;
            }
            let id = action.shard();
            let Some(rec) = records.iter().find(|r| r.id == id) else {
                continue;
            };
            let placed = load_round::placement_after(rec, &action);
            let epoch = rec.epoch;
            let changed = commit(&cluster, id, ChangeKind::LoadPlace, None, |r| {
                if r.epoch == epoch {
                    r.load_placed = Some(placed.clone());
                }
            })
            .await;
            if let Ok(Some(_)) = changed {
                tracing::info!("shard {id}: load: {action:?} → holders {placed:?}");
                self.load.started(action, now);
            }
        }
        cluster.moves.wake();
    }

    /// Hands the primary role to in-sync replica `to` (no data moves).
    async fn make_primary(&mut self, rec: &ShardRecord, kind: ChangeKind, to: String, how: &str) {
        let id = rec.id;
        let span = tracing::info_span!("shard.promote", shard = id, step = kind.as_str(), to = %to, from = ?rec.primary);
        let changed = commit(&self.cluster, id, kind, None, |r| r.make_primary(&to))
            .instrument(span)
            .await;
        if let (Ok(Some((r, _))), Some(from)) = (changed, &rec.primary) {
            tracing::info!(
                "shard {id}: primary {how} {from} to {to} (epoch {})",
                r.epoch
            );
        }
    }

    fn start_copy(&mut self, id: u32, to: String, reason: MoveReason) {
        let info = MoveInfo {
            shard: id,
            to: to.clone(),
            from: None,
            reason,
            started_ms: unix_ms(),
            state: MoveState::Copying,
            error: None,
            duration_seconds: 0.0,
            load: self.load.move_figures(id, reason),
        };
        let cancel = Arc::new(Notify::new());
        self.running.insert(
            id,
            Running {
                info,
                cancel: cancel.clone(),
            },
        );
        self.cluster.metrics.moves_in_flight.inc();
        self.publish_in_flight();
        copy::spawn(
            self.cluster.clone(),
            id,
            to,
            reason,
            cancel,
            self.done_tx.clone(),
        );
    }

    /// Books a finished copy: counts it, moves it to the recent list.
    fn finished(&mut self, done: Finished) {
        let Some(run) = self.running.remove(&done.shard) else {
            return;
        };
        let mut info = run.info;
        info.duration_seconds = done.seconds;
        match done.result {
            Ok(from) => {
                info.state = MoveState::Ok;
                info.from = Some(from);
            }
            Err(e) => {
                info.state = MoveState::Failed;
                info.error = Some(e.to_string());
            }
        }
        let ok = info.state == MoveState::Ok;
        self.cluster.metrics.moved(info.reason, ok, done.seconds);
        self.cluster.metrics.moves_in_flight.dec();
        self.cluster.moves.publish_finished(info);
        self.publish_in_flight();
        self.update_counts();
    }

    fn publish_in_flight(&self) {
        self.cluster
            .moves
            .publish_in_flight(self.running.values().map(|r| r.info.clone()).collect());
    }

    /// Refreshes per-node shard counts, which drive draining → drained.
    fn update_counts(&mut self) {
        let cluster = &self.cluster;
        let per_node = cluster.shards.holdings();
        let now = Instant::now();
        // Only holders, now or at the last update, can have a changed count: this
        // runs every pass, and the fleet may be far larger than the set of holders.
        let visit: BTreeSet<String> = self
            .holders
            .drain()
            .chain(per_node.keys().cloned())
            .collect();
        for id in visit {
            let held = per_node.get(&id).map_or(0, |(p, r)| p + r);
            if held > 0 {
                self.holders.insert(id.clone());
            }
            if let Some(cell) = cluster.nodes.get(&id) {
                cluster.set_shards_held(&cell, held, now);
            }
        }
    }
}
