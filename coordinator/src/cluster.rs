//! The coordinator's shared state and the operations on it that more than one
//! entry point needs (state changes, persistence, admin actions).

use crate::config::Config;
use crate::detector::y_for_phi;
use crate::events::NodeEvents;
use crate::health::HealthPolicy;
use crate::metrics::Metrics;
use crate::persist::PersistHandle;
use crate::registry::{NodeCell, NodeInner, Registry};
use crate::secrets::KeyRing;
use crate::shards::map::ShardSet;
use crate::shards::moves::Moves;
use crate::store::{ClusterMeta, NodeRecord};
use std::sync::Arc;
use std::time::{Duration, Instant};
use thiserror::Error;
use tokio::sync::mpsc;
use torua_protocol::{NodeState, ReplayPolicy};

pub use crate::wall::unix_ms;

pub struct Cluster {
    pub cfg: Config,
    pub policy: HealthPolicy,
    /// Normalised delays at which phi crosses the suspect/convict thresholds.
    pub y_suspect: f64,
    pub y_convict: f64,
    pub replay: ReplayPolicy,
    /// Shared with the node client, which signs every call to a node with it.
    pub keys: Arc<KeyRing>,
    pub nodes: Registry,
    /// This process's nonce: a node's first heartbeat of this life must echo it
    /// (`ingest.rs`), so nothing recorded before a restart is taken after it.
    /// Unique per start, not secret (an agent learns it from any answer).
    pub nonce: String,
    /// Serialises address claims (`ingest.rs`): no two live nodes share one.
    pub(crate) addr_claims: std::sync::Mutex<()>,
    pub metrics: Metrics,
    pub meta: ClusterMeta,
    /// Bearer tokens of the admin and client scopes (`auth.rs`).
    pub tokens: crate::secrets::Tokens,
    pub started: Instant,
    /// Who may commit, and who leads (always this process without etcd).
    pub leadership: Arc<crate::leader::Leadership>,
    /// A follower's line to the leader.
    pub forwarder: crate::leader::forward::Forwarder,
    /// Start of the current warm-up: the process start, then each election won.
    /// Nothing is convicted or moved in it until nodes have reported.
    warm_up_from: std::sync::Mutex<Instant>,
    pub persist: PersistHandle,
    pub shards: ShardSet,
    /// The shard wing's door: wake the reconciler, read its moves.
    pub moves: Moves,
    /// Per-shard load the nodes report, sampled and smoothed (`load.rs`).
    pub load: crate::load::LoadState,
    /// Node state changes, for the shard wing to subscribe to.
    pub node_events: NodeEvents,
    /// A guarantee broken on purpose, in debug builds only (`faults.rs`).
    pub test_fault: Option<crate::faults::TestFault>,
    schedule: mpsc::UnboundedSender<(Arc<NodeCell>, u32)>,
}

#[derive(Debug, Error)]
pub enum AdminError {
    #[error("no node {0:?}")]
    NotFound(String),
    #[error("could not persist the change: {0}")]
    Store(String),
    #[error(
        "node {id:?} still holds {shards} shard(s): drain it first (`torua drain {id}`) and \
         remove it once it is drained, or add ?force=true to give up its copies"
    )]
    StillHolds { id: String, shards: usize },
    #[error(
        "node {id:?} holds the last in-sync copy of shard(s) {}: removing it would lose \
         their data. Drain it first (`torua drain {id}`), bring a holder back, or add \
         allow_data_loss=true to force=true (`torua remove --force --allow-data-loss`)",
        crate::removal::list(shards)
    )]
    WouldLoseData { id: String, shards: Vec<u32> },
}

impl Cluster {
    /// Starts a warm-up: a leader just elected judges no node and moves no shard
    /// until nodes have reported (or the startup grace has passed).
    pub fn warm_up(&self) {
        *self.warm_up_from.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    pub fn warm_up_from(&self) -> Instant {
        *self.warm_up_from.lock().unwrap_or_else(|p| p.into_inner())
    }

    #[allow(clippy::too_many_arguments)]
    pub fn new(
        cfg: Config,
        keys: KeyRing,
        meta: ClusterMeta,
        tokens: crate::secrets::Tokens,
        persist: PersistHandle,
        schedule: mpsc::UnboundedSender<(Arc<NodeCell>, u32)>,
        records: Vec<(String, NodeRecord)>,
        mut shards: ShardSet,
        metrics: Metrics,
        leadership: Arc<crate::leader::Leadership>,
    ) -> Cluster {
        let keys = Arc::new(keys);
        shards.client.sign_with(keys.clone());
        let policy = HealthPolicy {
            suspect_phi: cfg.suspect_phi,
            convict_phi: cfg.convict_phi,
            heartbeat_timeout_ms: cfg.heartbeat_timeout.as_secs_f64() * 1000.0,
            recover_after: cfg.recover_after,
        };
        let now = Instant::now();
        let nodes = Registry::default();
        for (id, rec) in records {
            let id: Arc<str> = id.into();
            nodes.insert(Arc::new(NodeCell::new(
                id.clone(),
                keys.node_keys(&id),
                rec,
                now,
            )));
        }
        Cluster {
            y_suspect: y_for_phi(cfg.suspect_phi),
            y_convict: y_for_phi(cfg.convict_phi),
            nonce: process_nonce(),
            addr_claims: std::sync::Mutex::new(()),
            replay: ReplayPolicy {
                max_clock_skew_ms: cfg.max_clock_skew.as_millis() as u64,
                started_at_ms: unix_ms(),
            },
            cfg,
            policy,
            keys,
            nodes,
            metrics,
            forwarder: crate::leader::forward::Forwarder::new(
                &leadership.me.id,
                tokens.admin.clone(),
            ),
            leadership,
            meta,
            tokens,
            started: now,
            warm_up_from: std::sync::Mutex::new(now),
            persist,
            shards,
            moves: Moves::default(),
            load: Default::default(),
            node_events: NodeEvents::default(),
            test_fault: None,
            schedule,
        }
    }

    /// A cluster over a fresh store in `dir`, with `cfg`'s policy, a fixed secret and
    /// no nodes: the hub for unit tests of anything that needs it. Must run inside a
    /// tokio runtime (the store writer is a task). The receiver gets the deadline
    /// timers that heartbeats arm.
    pub fn for_tests(
        cfg: Config,
        dir: &std::path::Path,
    ) -> (Arc<Cluster>, mpsc::UnboundedReceiver<(Arc<NodeCell>, u32)>) {
        let db = crate::store::RedbStore::open(dir).expect("open a test store");
        let meta = db
            .cluster_meta(unix_ms(), cfg.shards, cfg.replication_factor)
            .expect("create test cluster meta");
        let term = db.next_term().expect("bump the test term");
        let records = db.load_shards().expect("load an empty shard map");
        let store: crate::store::SharedStore = Arc::new(crate::store::redb::Redb(Arc::new(db)));
        let shards = ShardSet::new(
            store.clone(),
            records,
            meta.shards,
            meta.replication_factor as usize,
            term,
        );
        let (persist, _writer) = crate::persist::spawn(store);
        let (tx, rx) = mpsc::unbounded_channel();
        let keys = KeyRing::from_secret(b"torua unit-test secret, 32 bytes".to_vec());
        let me = crate::leader::Peer {
            id: cfg.coordinator_id.clone(),
            url: cfg.advertise_url.clone(),
        };
        let cluster = Cluster::new(
            cfg,
            keys,
            meta,
            crate::secrets::Tokens::default(),
            persist,
            tx,
            Vec::new(),
            shards,
            Metrics::new(),
            Arc::new(crate::leader::Leadership::sole(me)),
        );
        (Arc::new(cluster), rx)
    }

    /// The address node `id` reported, if any. The data path asks only for the
    /// holders it talks to, not for the whole map.
    pub fn addr_of(&self, id: &str) -> Option<String> {
        self.nodes.addr_of(id)
    }

    /// Arms the node's deadline timer if it has none, or if the one it has fires
    /// later than the node could now first turn suspect: after a conviction the
    /// armed timer is the hard timeout, seconds away, and a node that recovers and
    /// stops again must not wait for it.
    pub fn ensure_scheduled(&self, cell: &Arc<NodeCell>, inner: &mut NodeInner) {
        let (Some(last), Some(det)) = (inner.last_heartbeat, &inner.detector) else {
            return;
        };
        // The hard timeout can come before the suspect point (a short timeout with a
        // slow heartbeat interval): the first deadline is whichever is earlier.
        let first_ms = det
            .elapsed_at(self.y_suspect)
            .min(self.policy.heartbeat_timeout_ms)
            .max(0.0);
        let first = Duration::from_secs_f64(first_ms / 1000.0);
        let due = last + first;
        if inner.timer.is_none_or(|t| t > due) {
            inner.timer = Some(due);
            inner.timer_gen = inner.timer_gen.wrapping_add(1);
            // The receiver lives as long as the server; a send error means shutdown.
            let _ = self.schedule.send((cell.clone(), inner.timer_gen));
        }
    }

    /// Records a state change that `refresh_state` reported: log, metrics, trace span.
    pub fn state_changed(&self, cell: &NodeCell, inner: &NodeInner, old: NodeState, now: Instant) {
        let new = inner.state;
        self.metrics.state_entered(new);
        // Healthy ↔ degraded changes nothing the reconciler acts on; under overload
        // such flips come by the thousand and would keep it running back to back.
        let serving = |s: NodeState| matches!(s, NodeState::Healthy | NodeState::Degraded);
        if serving(old) != serving(new) {
            self.node_events.publish();
        }
        if new == NodeState::Unhealthy {
            if let Some(t) = inner.last_good.or(inner.last_heartbeat) {
                self.metrics
                    .failure_detection_seconds
                    .observe(now.saturating_duration_since(t).as_secs_f64());
            }
        }
        let span = tracing::info_span!(
            "node.state_change",
            node = %cell.id,
            from = old.as_str(),
            to = new.as_str(),
            reason = %inner.reason()
        );
        let _g = span.enter();
        if new == NodeState::Unhealthy {
            tracing::warn!("node {} {} → {}: {}", cell.id, old, new, inner.reason());
        } else {
            tracing::info!("node {} {} → {}: {}", cell.id, old, new, inner.reason());
        }
    }

    /// Records how many shards a node holds; a change can turn draining into drained.
    pub fn set_shards_held(&self, cell: &NodeCell, held: usize, now: Instant) {
        let mut n = cell.lock();
        if n.shards_held != held {
            n.shards_held = held;
            if let Some(old) = n.refresh_state(now) {
                self.state_changed(cell, &n, old, now);
            }
        }
    }

    /// Sets or clears an operator drain; durable before it is acknowledged.
    pub async fn set_drain(&self, id: &str, drain: bool) -> Result<NodeState, AdminError> {
        let cell = self
            .nodes
            .get(id)
            .ok_or_else(|| AdminError::NotFound(id.into()))?;
        let rec = {
            let mut n = cell.lock();
            n.record.admin_drain = drain;
            n.record.clone()
        };
        self.persist
            .write(cell.id.to_string(), Some(rec))
            .await
            .map_err(AdminError::Store)?;
        let now = Instant::now();
        // Shard counts decide draining vs drained: take them from the published map,
        // not from the last reconciler pass.
        let held = self.shards.held_by(id);
        let state = {
            let mut n = cell.lock();
            n.shards_held = held;
            if let Some(old) = n.refresh_state(now) {
                self.state_changed(&cell, &n, old, now);
            }
            n.state
        };
        self.node_events.publish();
        Ok(state)
    }

    /// Forgets a node (decommission). Its series vanish from /metrics. A node that
    /// still holds shards is refused unless `force`, and one holding a shard's last
    /// in-sync copy unless `allow_data_loss` too (`removal.rs`). If its agent keeps
    /// running, the node joins again (auto_join), as a deleted Kubernetes node does
    /// while its kubelet runs.
    pub async fn remove_node(
        &self,
        id: &str,
        force: bool,
        allow_data_loss: bool,
    ) -> Result<(), AdminError> {
        let _one_at_a_time = crate::removal::REMOVALS.lock().await;
        if self.nodes.get(id).is_none() {
            return Err(AdminError::NotFound(id.into()));
        }
        let records = self.shards.snapshot();
        let held = records.iter().filter(|r| r.holds(id)).count();
        if held > 0 && !force {
            return Err(AdminError::StillHolds {
                id: id.into(),
                shards: held,
            });
        }
        let last = crate::removal::last_copies(&records, id, |n| self.nodes.get(n).is_some());
        if !last.is_empty() && !allow_data_loss {
            return Err(AdminError::WouldLoseData {
                id: id.into(),
                shards: last,
            });
        }
        if !last.is_empty() {
            tracing::warn!(
                "node {id} removed with allow_data_loss: shard(s) {} lose their last in-sync copy",
                crate::removal::list(&last)
            );
        }
        let cell = self
            .nodes
            .remove(id)
            .ok_or_else(|| AdminError::NotFound(id.into()))?;
        if held > 0 {
            tracing::warn!(
                "node {} removed by an operator (forced) while holding {held} shard(s)",
                cell.id
            );
        } else {
            tracing::info!("node {} removed by an operator", cell.id);
        }
        self.node_events.publish();
        self.persist
            .write(cell.id.to_string(), None)
            .await
            .map_err(AdminError::Store)
    }
}

/// 128 bits unique to this process start: its start time in nanoseconds and 64
/// random bits (a clock stepped back cannot repeat both).
fn process_nonce() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    format!("{nanos:016x}{:016x}", fastrand::u64(..))
}
