//! Shard moves as the rest of the coordinator sees them: why a move happened, how it
//! is going, and [`Moves`], the handle through which the HTTP API and the data path
//! wake the reconciler, ask it for a rebalance, and read what it last published.
//! The reconciler owns the moves themselves; this holds only its published view and
//! the requests waiting for it.

use serde::Serialize;
use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use tokio::sync::Notify;

/// Why a shard changed holders; the `reason` label of `torua_shard_moves_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MoveReason {
    /// A holder died; an in-sync replica was promoted (no data copied).
    Failover,
    /// A shard short of copies got a new one.
    Rereplicate,
    /// Placement prefers another node after a membership change.
    Rebalance,
    /// A draining node's copy moved away.
    Drain,
    /// An operator pinned the shard's holders.
    Manual,
    /// A hot node shed the shard's load (a role swap, or a copy elsewhere).
    Load,
}

impl MoveReason {
    pub const ALL: [MoveReason; 6] = [
        MoveReason::Failover,
        MoveReason::Rereplicate,
        MoveReason::Rebalance,
        MoveReason::Drain,
        MoveReason::Manual,
        MoveReason::Load,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MoveReason::Failover => "failover",
            MoveReason::Rereplicate => "rereplicate",
            MoveReason::Rebalance => "rebalance",
            MoveReason::Drain => "drain",
            MoveReason::Manual => "manual",
            MoveReason::Load => "load",
        }
    }
}

impl fmt::Display for MoveReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MoveState {
    Copying,
    Ok,
    Failed,
}

/// One move, in flight or recent (`GET /v1/moves`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MoveInfo {
    pub shard: u32,
    pub to: String,
    pub from: Option<String>,
    pub reason: MoveReason,
    pub started_ms: u64,
    pub state: MoveState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub duration_seconds: f64,
    /// For `reason: "load"`: the loads that justified it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load: Option<super::balance::Figures>,
}

/// How many finished moves `GET /v1/moves` shows.
pub const RECENT_MOVES: usize = 100;

/// What the reconciler last published about its moves.
#[derive(Debug, Clone, Default)]
struct Published {
    frozen: bool,
    in_flight: Vec<MoveInfo>,
    recent: VecDeque<MoveInfo>,
}

/// The reconciler's door: requests in, its published view out.
#[derive(Default)]
pub struct Moves {
    wake: Notify,
    rebalance_now: AtomicBool,
    unfreeze: AtomicBool,
    published: Mutex<Published>,
}

impl Moves {
    /// Asks for a pass soon (a map change, an eviction, a new pin).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    pub(super) async fn woken(&self) {
        self.wake.notified().await
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

    /// Takes a pending rebalance request.
    pub(super) fn take_rebalance_request(&self) -> bool {
        self.rebalance_now.swap(false, Ordering::AcqRel)
    }

    /// Whether an operator lifted the storm guard; the lift lasts until the storm ends.
    pub(super) fn unfreeze_requested(&self) -> bool {
        self.unfreeze.load(Ordering::Acquire)
    }

    pub(super) fn storm_over(&self) {
        self.unfreeze.store(false, Ordering::Release);
    }

    pub fn frozen(&self) -> bool {
        self.lock().frozen
    }

    /// In-flight moves by shard, then recent ones, newest first.
    pub fn moves(&self) -> (Vec<MoveInfo>, Vec<MoveInfo>) {
        let p = self.lock();
        (
            p.in_flight.clone(),
            p.recent.iter().rev().cloned().collect(),
        )
    }

    pub(super) fn publish_frozen(&self, frozen: bool) {
        self.lock().frozen = frozen;
    }

    pub(super) fn publish_in_flight(&self, mut in_flight: Vec<MoveInfo>) {
        in_flight.sort_by_key(|m| m.shard);
        self.lock().in_flight = in_flight;
    }

    pub(super) fn publish_finished(&self, info: MoveInfo) {
        let mut p = self.lock();
        if p.recent.len() == RECENT_MOVES {
            p.recent.pop_front();
        }
        p.recent.push_back(info);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Published> {
        self.published.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(shard: u32) -> MoveInfo {
        MoveInfo {
            shard,
            to: "n1".into(),
            from: None,
            reason: MoveReason::Rereplicate,
            started_ms: 0,
            state: MoveState::Ok,
            error: None,
            duration_seconds: 0.5,
            load: None,
        }
    }

    #[test]
    fn wire_spelling_of_reasons_and_states() {
        let v = serde_json::to_value(done(3)).unwrap();
        assert_eq!(v["reason"], "rereplicate");
        assert_eq!(v["state"], "ok");
        assert!(v.get("error").is_none(), "no error field on success");
        for r in MoveReason::ALL {
            assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
        }
        assert_eq!(serde_json::to_value(MoveState::Copying).unwrap(), "copying");
    }

    #[test]
    fn recent_moves_are_bounded_and_newest_first() {
        let m = Moves::default();
        for shard in 0..(RECENT_MOVES as u32 + 5) {
            m.publish_finished(done(shard));
        }
        let (in_flight, recent) = m.moves();
        assert!(in_flight.is_empty());
        assert_eq!(recent.len(), RECENT_MOVES);
        assert_eq!(recent[0].shard, RECENT_MOVES as u32 + 4);
        assert_eq!(recent.last().unwrap().shard, 5);
    }

    #[test]
    fn rebalance_request_is_taken_once_and_unfreeze_lasts_until_the_storm_ends() {
        let m = Moves::default();
        assert!(!m.take_rebalance_request());
        m.request_rebalance(true);
        assert!(m.take_rebalance_request());
        assert!(!m.take_rebalance_request(), "taken once");
        assert!(m.unfreeze_requested());
        assert!(m.unfreeze_requested(), "still lifted");
        m.storm_over();
        assert!(!m.unfreeze_requested());
    }

    #[test]
    fn in_flight_is_published_in_shard_order() {
        let m = Moves::default();
        m.publish_in_flight(vec![done(7), done(2), done(5)]);
        let shards: Vec<u32> = m.moves().0.iter().map(|i| i.shard).collect();
        assert_eq!(shards, vec![2, 5, 7]);
        m.publish_frozen(true);
        assert!(m.frozen());
    }
}
