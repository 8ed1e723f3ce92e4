//! The load balancer's memory between rounds, kept by the reconciler: how many
//! rounds in a row each node has been hot, the actions in flight, when each shard
//! was last re-placed for load, and which shards are too hot to move. The decision
//! itself is [`super::balance::decide`]; its actions become the record's
//! `load_placed`, which the planner follows like a pin.

use super::balance::{self, Action, Figures, Load, Policy, Target};
use super::moves::MoveReason;
use super::record::ShardRecord;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

/// A shard re-placed for load is left alone this long (no thrashing).
pub const COOL_DOWN: Duration = Duration::from_secs(600);
/// An action not carried out by then is forgotten (its nodes are free again).
const GIVE_UP: Duration = Duration::from_secs(600);

struct Pending {
    action: Action,
    since: Instant,
}

#[derive(Default)]
pub struct LoadRounds {
    hot: HashMap<String, u32>,
    pending: HashMap<u32, Pending>,
    moved_at: HashMap<u32, Instant>,
    too_hot: BTreeSet<u32>,
}

/// What a round decides from, after [`LoadRounds::prepare`].
pub struct Prepared {
    pub hot: BTreeSet<String>,
    pub busy: BTreeSet<String>,
}

impl LoadRounds {
    /// Retires finished or stale actions, counts hot rounds, and names the nodes
    /// hot for long enough and those busy with an action.
    pub fn prepare(
        &mut self,
        policy: &Policy,
        loads: &BTreeMap<String, BTreeMap<u32, Load>>,
        targets: &[Target],
        records: &[ShardRecord],
        now: Instant,
    ) -> Prepared {
        self.pending.retain(|id, p| {
            let Some(rec) = records.iter().find(|r| r.id == *id) else {
                return false;
            };
            let done = match &p.action {
                Action::Swap { to, .. } => rec.primary.as_deref() == Some(to.as_str()),
                Action::Move { from, to, .. } => {
                    !rec.holds(from) && rec.in_sync().any(|n| n == to.as_str())
                }
            };
            let still_wanted = rec.load_placed.is_some() && rec.pinned.is_none();
            !done && still_wanted && now.saturating_duration_since(p.since) < GIVE_UP
        });
        self.moved_at
            .retain(|_, at| now.saturating_duration_since(*at) < COOL_DOWN);
        let scores = balance::node_scores(loads);
        let mean = balance::mean_score(&scores, targets);
        let mut hot = HashMap::new();
        for t in targets {
            let score = scores.get(&t.id).copied().unwrap_or(0.0);
            if balance::is_hot(policy, score, mean) {
                hot.insert(t.id.clone(), self.hot.get(&t.id).copied().unwrap_or(0) + 1);
            }
        }
        self.hot = hot;
        Prepared {
            hot: self
                .hot
                .iter()
                .filter(|(_, n)| **n >= policy.hot_rounds)
                .map(|(id, _)| id.clone())
                .collect(),
            busy: self
                .pending
                .values()
                .flat_map(|p| match &p.action {
                    Action::Swap { from, to, .. } | Action::Move { from, to, .. } => {
                        [from.clone(), to.clone()]
                    }
                })
                .collect(),
        }
    }

    /// Whether `shard` was re-placed for load within the cool-down, or is being.
    pub fn cooling(&self, shard: u32) -> bool {
        self.moved_at.contains_key(&shard) || self.pending.contains_key(&shard)
    }

    /// Books an action just committed.
    pub fn started(&mut self, action: Action, now: Instant) {
        let shard = action.shard();
        self.moved_at.insert(shard, now);
        self.pending.insert(shard, Pending { action, since: now });
    }

    /// The figures of a role swap in flight for `shard`.
    pub fn swap_figures(&self, shard: u32) -> Option<Figures> {
        match self.pending.get(&shard).map(|p| &p.action) {
            Some(Action::Swap { why, .. }) => Some(*why),
            _ => None,
        }
    }

    /// The figures of a load move in flight for `shard`, for a copy started for
    /// `reason`.
    pub fn move_figures(&self, shard: u32, reason: MoveReason) -> Option<Figures> {
        match self.pending.get(&shard).map(|p| &p.action) {
            Some(Action::Move { why, .. }) if reason == MoveReason::Load => Some(*why),
            _ => None,
        }
    }

    /// Records this round's too-hot shards; returns those newly reported.
    pub fn too_hot(&mut self, shards: &[u32]) -> Vec<u32> {
        let now: BTreeSet<u32> = shards.iter().copied().collect();
        let new = now.difference(&self.too_hot).copied().collect();
        self.too_hot = now;
        new
    }

    /// How many shards are too hot for any node, as of the last round.
    pub fn too_hot_count(&self) -> usize {
        self.too_hot.len()
    }
}

/// The holders `rec` should have after `action` (primary first), for its
/// `load_placed`: a swap puts the new primary first; a move puts the target in the
/// source's place, so a moved primary's reads follow it to the target (the source
/// leads until the copy is in sync, then the trim hands the role over).
pub fn placement_after(rec: &ShardRecord, action: &Action) -> Vec<String> {
    let holders: Vec<String> = rec.in_sync().map(str::to_string).collect();
    match action {
        Action::Swap { to, .. } => std::iter::once(to.clone())
            .chain(holders.into_iter().filter(|h| h != to))
            .collect(),
        Action::Move { from, to, .. } => holders
            .into_iter()
            .map(|h| if &h == from { to.clone() } else { h })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shards::record::holders;

    fn figures() -> Figures {
        Figures {
            mean: 100.0,
            source_before: 200.0,
            source_after: 150.0,
            target_before: 50.0,
            target_after: 100.0,
            shard: 50.0,
        }
    }

    #[test]
    fn a_choice_lists_the_new_holders_primary_first() {
        let rec = holders(3, 5, "a b");
        let swap = Action::Swap {
            shard: 3,
            from: "a".into(),
            to: "b".into(),
            why: figures(),
        };
        assert_eq!(placement_after(&rec, &swap), ["b", "a"]);
        let mv = |from: &str| Action::Move {
            shard: 3,
            from: from.into(),
            to: "c".into(),
            why: figures(),
        };
        assert_eq!(
            placement_after(&rec, &mv("a")),
            ["c", "b"],
            "the reads go along"
        );
        assert_eq!(placement_after(&rec, &mv("b")), ["a", "c"]);
    }

    #[test]
    fn hot_rounds_count_in_a_row_and_actions_retire_when_done() {
        let policy = Policy {
            hot_rounds: 2,
            ..Policy::default()
        };
        let loads: BTreeMap<String, BTreeMap<u32, Load>> = [
            (
                "a".to_string(),
                [(
                    3,
                    Load {
                        reads: 300.0,
                        ..Load::default()
                    },
                )]
                .into(),
            ),
            ("b".to_string(), BTreeMap::new()),
        ]
        .into();
        let targets: Vec<Target> = ["a", "b"]
            .iter()
            .map(|id| Target {
                id: id.to_string(),
                has_room: true,
            })
            .collect();
        let mut rec = holders(3, 5, "a b");
        let t0 = Instant::now();
        let mut rounds = LoadRounds::default();
        let p = rounds.prepare(&policy, &loads, &targets, std::slice::from_ref(&rec), t0);
        assert!(p.hot.is_empty(), "one round is not a trend");
        let p = rounds.prepare(&policy, &loads, &targets, std::slice::from_ref(&rec), t0);
        assert_eq!(p.hot, ["a".to_string()].into());
        let swap = Action::Swap {
            shard: 3,
            from: "a".into(),
            to: "b".into(),
            why: figures(),
        };
        rec.load_placed = Some(placement_after(&rec, &swap));
        rounds.started(swap, t0);
        assert!(rounds.cooling(3));
        assert_eq!(rounds.swap_figures(3), Some(figures()));
        let p = rounds.prepare(&policy, &loads, &targets, std::slice::from_ref(&rec), t0);
        assert_eq!(p.busy, ["a".to_string(), "b".to_string()].into());
        // Done once b is primary; the shard still cools down.
        rec.make_primary("b");
        let p = rounds.prepare(&policy, &loads, &targets, std::slice::from_ref(&rec), t0);
        assert!(p.busy.is_empty());
        assert_eq!(rounds.swap_figures(3), None);
        assert!(rounds.cooling(3));
        let later = t0 + COOL_DOWN;
        rounds.prepare(&policy, &loads, &targets, std::slice::from_ref(&rec), later);
        assert!(!rounds.cooling(3), "cooled down after {COOL_DOWN:?}");
        assert_eq!(rounds.too_hot(&[3, 4]), [3, 4]);
        assert_eq!(rounds.too_hot(&[4]), Vec::<u32>::new());
        assert_eq!(rounds.too_hot_count(), 1);
    }
}
