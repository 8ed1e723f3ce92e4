//! The load balancer's decision: given each node's smoothed load per shard, which
//! hot node sheds which shard, and how. Pure (no clock, no I/O): the caller keeps
//! the rounds and the history and applies the [`Action`]s as placement wishes the
//! planner then carries out, so a load move is made, logged and fenced like any
//! other. The rules follow TiKV PD's hot-region scheduler and CockroachDB's store
//! rebalancer:
//!
//! - a node is **hot** when its load exceeds the mean of the eligible nodes by more
//!   than `tolerance` and an absolute floor, for `hot_rounds` rounds in a row (one
//!   busy sample is not a trend);
//! - the **cheapest action first**: when the shard's load on the hot node is mostly
//!   reads and it is the primary there, swap roles with an in-sync replica (no data
//!   copied); otherwise copy it to the least-loaded eligible node;
//! - only if it **helps**: the hot node drops by at least `min_gain` of its load and
//!   the target stays within `mean × (1 + target_headroom)`;
//! - **no thrashing**: at most one load action per node in flight, a shard re-placed
//!   for load at most once per cool-down (the caller filters those out), and a shard
//!   hotter than any node can take is reported, never moved.

use std::collections::{BTreeMap, BTreeSet};

/// A shard's load on one node, per second, smoothed.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Load {
    pub reads: f64,
    pub writes: f64,
    pub read_bytes: f64,
    pub write_bytes: f64,
}

/// Bytes that cost as much as one operation in the load score.
pub const BYTES_PER_OP: f64 = 16.0 * 1024.0;

impl Load {
    /// One number per load: operations, plus bytes at [`BYTES_PER_OP`].
    pub fn score(&self) -> f64 {
        self.reads + self.writes + (self.read_bytes + self.write_bytes) / BYTES_PER_OP
    }

    /// The part of the score that reads make.
    pub fn read_score(&self) -> f64 {
        self.reads + self.read_bytes / BYTES_PER_OP
    }

    pub fn add(&mut self, o: &Load) {
        self.reads += o.reads;
        self.writes += o.writes;
        self.read_bytes += o.read_bytes;
        self.write_bytes += o.write_bytes;
    }
}

/// Knobs of the balancer (`load_*` settings).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    /// Hot above `mean × (1 + tolerance)`.
    pub tolerance: f64,
    /// ... and above this score (ops/s): an idle cluster is never "unbalanced".
    pub floor: f64,
    /// Consecutive hot rounds before acting.
    pub hot_rounds: u32,
    /// The hot node must shed at least this fraction of its load.
    pub min_gain: f64,
    /// The target must stay within `mean × (1 + target_headroom)`.
    pub target_headroom: f64,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            tolerance: 0.10,
            floor: 50.0,
            hot_rounds: 3,
            min_gain: 0.05,
            target_headroom: 0.05,
        }
    }
}

/// One shard as the balancer sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardView {
    pub id: u32,
    pub primary: Option<String>,
    /// In-sync replicas (copies that may take the primary role at once).
    pub replicas: Vec<String>,
    /// Not to be touched now: pinned, a copy running, or moved for load lately.
    pub frozen: bool,
}

/// A node that may take load: serving, not draining, with room for a copy.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub id: String,
    pub has_room: bool,
}

/// What the balancer sees in one round.
#[derive(Debug, Clone)]
pub struct Round<'a> {
    /// Per node, per shard, the smoothed load that node served.
    pub loads: &'a BTreeMap<String, BTreeMap<u32, Load>>,
    pub shards: &'a [ShardView],
    /// Eligible nodes (the mean is taken over these).
    pub targets: &'a [Target],
    /// Nodes hot for enough rounds to act on.
    pub hot: &'a BTreeSet<String>,
    /// Nodes with a load action still in flight.
    pub busy: &'a BTreeSet<String>,
}

/// A decision, with the figures that justified it (shown in `/v1/moves`).
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Make in-sync replica `to` the primary of `shard` instead of `from`.
    Swap {
        shard: u32,
        from: String,
        to: String,
        why: Figures,
    },
    /// Copy `shard` from `from` onto `to`, then drop it from `from`.
    Move {
        shard: u32,
        from: String,
        to: String,
        why: Figures,
    },
}

impl Action {
    pub fn shard(&self) -> u32 {
        match self {
            Action::Swap { shard, .. } | Action::Move { shard, .. } => *shard,
        }
    }
}

/// The numbers behind an action: loads as scores (ops/s-equivalent).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Figures {
    pub mean: f64,
    pub source_before: f64,
    pub source_after: f64,
    pub target_before: f64,
    pub target_after: f64,
    pub shard: f64,
}

/// The balancer's answer for one round.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decision {
    pub actions: Vec<Action>,
    /// Shards whose load alone exceeds what any node should carry: moving them
    /// would only make another node hot. Reported, not moved.
    pub too_hot: Vec<u32>,
}

/// Each node's total score.
pub fn node_scores(loads: &BTreeMap<String, BTreeMap<u32, Load>>) -> BTreeMap<String, f64> {
    loads
        .iter()
        .map(|(n, shards)| (n.clone(), shards.values().map(Load::score).sum()))
        .collect()
}

/// The mean score over `targets` (0 with none).
pub fn mean_score(scores: &BTreeMap<String, f64>, targets: &[Target]) -> f64 {
    if targets.is_empty() {
        return 0.0;
    }
    let sum: f64 = targets
        .iter()
        .map(|t| scores.get(&t.id).copied().unwrap_or(0.0))
        .sum();
    sum / targets.len() as f64
}

/// Whether `node` is hot this round (the caller counts the rounds).
pub fn is_hot(policy: &Policy, score: f64, mean: f64) -> bool {
    score > policy.floor && score > mean * (1.0 + policy.tolerance)
}

/// Decides this round's actions: for each hot node that is not busy, hottest first,
/// the first of its shards (by load there, highest first) that can go somewhere
/// useful. Projected loads are updated as actions are chosen, so two hot nodes
/// never pick the same target into overload.
pub fn decide(policy: &Policy, round: &Round) -> Decision {
    let mut scores = node_scores(round.loads);
    let mean = mean_score(&scores, round.targets);
    let mut d = Decision::default();
    let mut hot: Vec<(&String, f64)> = round
        .hot
        .iter()
        .filter(|n| !round.busy.contains(*n))
        .map(|n| (n, scores.get(n).copied().unwrap_or(0.0)))
        .filter(|(_, s)| is_hot(policy, *s, mean))
        .collect();
    hot.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
    let mut taken: BTreeSet<u32> = BTreeSet::new();
    let mut busy: BTreeSet<String> = round.busy.clone();
    for (node, _) in hot {
        let Some(on_node) = round.loads.get(node) else {
            continue;
        };
        let mut by_load: Vec<(u32, Load)> = on_node.iter().map(|(s, l)| (*s, *l)).collect();
        by_load.sort_by(|a, b| b.1.score().total_cmp(&a.1.score()).then(a.0.cmp(&b.0)));
        for (shard, load) in by_load {
            if taken.contains(&shard) || load.score() <= 0.0 {
                continue;
            }
            let Some(view) = round.shards.iter().find(|s| s.id == shard) else {
                continue;
            };
            if load.score() > mean * (1.0 + policy.tolerance) {
                // Wherever it goes, that node is hot: report it once.
                if !d.too_hot.contains(&shard) {
                    d.too_hot.push(shard);
                }
                continue;
            }
            if view.frozen {
                continue;
            }
            let action = choose(policy, node, view, &load, &scores, round, &busy, mean);
            if let Some(action) = action {
                let (from, to, moved) = match &action {
                    Action::Swap { from, to, why, .. } | Action::Move { from, to, why, .. } => (
                        from.clone(),
                        to.clone(),
                        why.source_before - why.source_after,
                    ),
                };
                *scores.entry(from.clone()).or_default() -= moved;
                *scores.entry(to.clone()).or_default() += moved;
                busy.insert(from);
                busy.insert(to);
                taken.insert(shard);
                d.actions.push(action);
                break;
            }
        }
    }
    d.too_hot.sort_unstable();
    d
}

/// The cheapest useful action for `shard` on hot `node`, if any.
#[allow(clippy::too_many_arguments)]
fn choose(
    policy: &Policy,
    node: &str,
    view: &ShardView,
    load: &Load,
    scores: &BTreeMap<String, f64>,
    round: &Round,
    busy: &BTreeSet<String>,
    mean: f64,
) -> Option<Action> {
    let ceiling = mean * (1.0 + policy.target_headroom);
    let source_before = scores.get(node).copied().unwrap_or(0.0);
    let score = |n: &str| scores.get(n).copied().unwrap_or(0.0);
    let eligible = |n: &str| round.targets.iter().any(|t| t.id == n) && !busy.contains(n);
    let helps = |shed: f64| shed >= policy.min_gain * source_before;
    let figures = |shed: f64, target: &str| Figures {
        mean,
        source_before,
        source_after: source_before - shed,
        target_before: score(target),
        target_after: score(target) + shed,
        shard: load.score(),
    };
    // Reads follow the primary: a swap moves them, and nothing is copied.
    let reads = load.read_score();
    if view.primary.as_deref() == Some(node) && reads > load.score() / 2.0 && helps(reads) {
        let to = view
            .replicas
            .iter()
            .filter(|r| eligible(r) && score(r) + reads <= ceiling)
            .min_by(|a, b| score(a).total_cmp(&score(b)).then(a.cmp(b)));
        if let Some(to) = to {
            return Some(Action::Swap {
                shard: view.id,
                from: node.to_string(),
                to: to.clone(),
                why: figures(reads, to),
            });
        }
    }
    // A copy takes everything this node serves for the shard.
    let shed = load.score();
    if !helps(shed) {
        return None;
    }
    let holds =
        |n: &str| view.primary.as_deref() == Some(n) || view.replicas.iter().any(|r| r == n);
    let to = round
        .targets
        .iter()
        .filter(|t| t.has_room && eligible(&t.id) && !holds(&t.id))
        .filter(|t| score(&t.id) + shed <= ceiling)
        .min_by(|a, b| score(&a.id).total_cmp(&score(&b.id)).then(a.id.cmp(&b.id)))?;
    Some(Action::Move {
        shard: view.id,
        from: node.to_string(),
        to: to.id.clone(),
        why: figures(shed, &to.id),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reads(r: f64) -> Load {
        Load {
            reads: r,
            ..Load::default()
        }
    }

    fn writes(w: f64) -> Load {
        Load {
            writes: w,
            ..Load::default()
        }
    }

    fn loads(rows: &[(&str, &[(u32, Load)])]) -> BTreeMap<String, BTreeMap<u32, Load>> {
        rows.iter()
            .map(|(n, s)| (n.to_string(), s.iter().copied().collect()))
            .collect()
    }

    fn targets(ids: &[&str]) -> Vec<Target> {
        ids.iter()
            .map(|id| Target {
                id: id.to_string(),
                has_room: true,
            })
            .collect()
    }

    fn shard(id: u32, primary: &str, replicas: &[&str]) -> ShardView {
        ShardView {
            id,
            primary: Some(primary.into()),
            replicas: replicas.iter().map(|r| r.to_string()).collect(),
            frozen: false,
        }
    }

    fn set(ids: &[&str]) -> BTreeSet<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    fn run(
        l: &BTreeMap<String, BTreeMap<u32, Load>>,
        shards: &[ShardView],
        hot: &[&str],
    ) -> Decision {
        decide(
            &Policy::default(),
            &Round {
                loads: l,
                shards,
                targets: &targets(&["a", "b", "c", "d"]),
                hot: &set(hot),
                busy: &set(&[]),
            },
        )
    }

    #[test]
    fn a_read_hot_primary_swaps_roles_before_anything_is_copied() {
        // a serves 400 reads/s of shard 1 as its primary; b holds an in-sync copy.
        let l = loads(&[
            ("a", &[(1, reads(400.0)), (2, reads(100.0))]),
            ("b", &[(3, reads(100.0))]),
            ("c", &[(4, reads(100.0))]),
            ("d", &[(5, reads(100.0))]),
        ]);
        let shards = [shard(1, "a", &["b"]), shard(2, "a", &["c"])];
        // mean 200: a is hot; moving 400 onto b (100) would make it 500 > 210.
        let d = run(&l, &shards, &["a"]);
        assert_eq!(d.too_hot, [1], "400 alone is beyond any node: reported");
        // Shard 2 (100 reads) swaps to its replica c: a 500 → 400, c 100 → 200 ≤ 210.
        match &d.actions[..] {
            [Action::Swap {
                shard: 2,
                from,
                to,
                why,
            }] => {
                assert_eq!((from.as_str(), to.as_str()), ("a", "c"));
                assert_eq!((why.source_before, why.source_after), (500.0, 400.0));
                assert_eq!((why.target_before, why.target_after), (100.0, 200.0));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_write_hot_shard_is_copied_to_the_least_loaded_node() {
        let l = loads(&[
            ("a", &[(1, writes(120.0)), (2, writes(120.0))]),
            ("b", &[(1, writes(120.0)), (3, writes(30.0))]),
            ("c", &[(2, writes(120.0))]),
            ("d", &[(4, writes(10.0))]),
        ]);
        // Mean (240 + 150 + 120 + 10) / 4 = 130; a (240) is hot. Writes reach every
        // holder, so a swap sheds nothing: shard 1 goes to d, which holds none of it.
        let shards = [shard(1, "a", &["b"]), shard(2, "a", &["c"])];
        let d = run(&l, &shards, &["a"]);
        assert_eq!(
            d.actions,
            [Action::Move {
                shard: 1,
                from: "a".into(),
                to: "d".into(),
                why: Figures {
                    mean: 130.0,
                    source_before: 240.0,
                    source_after: 120.0,
                    target_before: 10.0,
                    target_after: 130.0,
                    shard: 120.0,
                },
            }]
        );
    }

    #[test]
    fn nothing_moves_unless_hot_for_enough_rounds_above_the_floor_and_it_helps() {
        let l = loads(&[
            ("a", &[(1, reads(300.0))]),
            ("b", &[(2, reads(100.0))]),
            ("c", &[(3, reads(100.0))]),
            ("d", &[(4, reads(100.0))]),
        ]);
        let shards = [shard(1, "a", &["b"])];
        assert!(
            run(&l, &shards, &[]).actions.is_empty(),
            "not hot for enough rounds"
        );
        // An idle cluster: skewed, but under the floor.
        let idle = loads(&[("a", &[(1, reads(30.0))]), ("b", &[(2, reads(1.0))])]);
        assert_eq!(run(&idle, &shards, &["a"]), Decision::default());
        // Frozen (pinned, copying or moved lately): left alone.
        let frozen = [ShardView {
            frozen: true,
            ..shard(1, "a", &["b"])
        }];
        assert!(run(&l, &frozen, &["a"]).actions.is_empty());
    }

    #[test]
    fn a_busy_node_is_neither_source_nor_target_and_targets_are_not_overfilled() {
        let l = loads(&[
            ("a", &[(1, writes(100.0)), (2, writes(100.0))]),
            ("b", &[(3, writes(100.0)), (4, writes(100.0))]),
            ("c", &[]),
            ("d", &[]),
        ]);
        let shards = [
            shard(1, "a", &[]),
            shard(2, "a", &[]),
            shard(3, "b", &[]),
            shard(4, "b", &[]),
        ];
        let ts = targets(&["a", "b", "c", "d"]);
        let round = |busy: &BTreeSet<String>| {
            decide(
                &Policy::default(),
                &Round {
                    loads: &l,
                    shards: &shards,
                    targets: &ts,
                    hot: &set(&["a", "b"]),
                    busy,
                },
            )
        };
        // Mean 100: a and b each send one shard, to different targets.
        let d = round(&set(&[]));
        let moves: Vec<(u32, String, String)> = d
            .actions
            .iter()
            .map(|a| match a {
                Action::Move {
                    shard, from, to, ..
                } => (*shard, from.clone(), to.clone()),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            moves,
            [(1, "a".into(), "c".into()), (3, "b".into(), "d".into())]
        );
        // With d busy, b's shard has nowhere to go: c takes a's.
        let d = round(&set(&["d"]));
        assert_eq!(d.actions.len(), 1, "{d:?}");
        // With a busy, only b acts.
        let d = round(&set(&["a"]));
        assert!(
            matches!(&d.actions[..], [Action::Move { shard: 3, .. }]),
            "{d:?}"
        );
    }
}
