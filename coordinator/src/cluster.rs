//! The coordinator's shared state and the operations on it that more than one
//! entry point needs (state changes, persistence, admin actions).

use crate::config::Config;
use crate::detector::y_for_phi;
use crate::health::HealthPolicy;
use crate::metrics::Metrics;
use crate::persist::PersistHandle;
use crate::reconcile::Mover;
use crate::registry::{NodeCell, NodeInner, Registry};
use crate::secrets::KeyRing;
use crate::shards::ShardSet;
use crate::store::{ClusterMeta, NodeRecord};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use thiserror::Error;
use tokio::sync::mpsc;
use torua_protocol::{NodeState, ReplayPolicy};

pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub struct Cluster {
    pub cfg: Config,
    pub policy: HealthPolicy,
    /// Normalised delays at which phi crosses the suspect/convict thresholds.
    pub y_suspect: f64,
    pub y_convict: f64,
    pub replay: ReplayPolicy,
    pub keys: KeyRing,
    pub nodes: Registry,
    pub metrics: Metrics,
    pub meta: ClusterMeta,
    pub admin_token: Option<String>,
    pub started: Instant,
    pub persist: PersistHandle,
    pub shards: ShardSet,
    pub mover: Mover,
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
}

impl Cluster {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        cfg: Config,
        keys: KeyRing,
        meta: ClusterMeta,
        admin_token: Option<String>,
        persist: PersistHandle,
        schedule: mpsc::UnboundedSender<(Arc<NodeCell>, u32)>,
        records: Vec<(String, NodeRecord)>,
        shards: ShardSet,
    ) -> Cluster {
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
            replay: ReplayPolicy {
                max_clock_skew_ms: cfg.max_clock_skew.as_millis() as u64,
                started_at_ms: unix_ms(),
            },
            cfg,
            policy,
            keys,
            nodes,
            metrics: Metrics::new(),
            meta,
            admin_token,
            started: now,
            persist,
            shards,
            mover: Mover::default(),
            schedule,
        }
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
        let first = Duration::from_secs_f64(det.elapsed_at(self.y_suspect).max(0.0) / 1000.0);
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
            self.mover.wake();
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
        crate::reconcile::update_stats(self);
        let state = {
            let mut n = cell.lock();
            if let Some(old) = n.refresh_state(now) {
                self.state_changed(&cell, &n, old, now);
            }
            n.state
        };
        self.mover.wake();
        Ok(state)
    }

    /// Forgets a node (decommission). Its series vanish from /metrics. A node that
    /// still holds shards is refused unless `force`: its copies may be the last
    /// in-sync ones. If its agent keeps running, the node joins again (auto_join),
    /// as a deleted Kubernetes node does while its kubelet runs.
    pub async fn remove_node(&self, id: &str, force: bool) -> Result<(), AdminError> {
        if self.nodes.get(id).is_none() {
            return Err(AdminError::NotFound(id.into()));
        }
        let held = self
            .shards
            .snapshot()
            .iter()
            .filter(|r| r.holds(id))
            .count();
        if held > 0 && !force {
            return Err(AdminError::StillHolds {
                id: id.into(),
                shards: held,
            });
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
        self.mover.wake();
        self.persist
            .write(cell.id.to_string(), None)
            .await
            .map_err(AdminError::Store)
    }
}
