//! Where shards should live: weighted rendezvous (highest random weight) hashing over
//! the eligible nodes, capped by each node's `max_shards`. Pure, so it is tested from
//! tables of memberships.

use torua_protocol::shard::rendezvous_score;

/// A node placement may use.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub id: String,
    pub weight: f64,
    pub max_shards: Option<u32>,
}

/// For each shard, up to `rf` node ids in preference order (first = preferred primary).
///
/// Without caps, each shard's choice depends only on that shard and the node set, so
/// adding or removing a node moves only the shards it wins or held. Caps are applied
/// greedily in shard order; a capped node's overflow goes to the next-best node.
pub fn place(shards: u32, rf: usize, nodes: &[Candidate]) -> Vec<Vec<String>> {
    let mut load = vec![0u32; nodes.len()];
    let mut out = Vec::with_capacity(shards as usize);
    let mut ranked: Vec<(f64, usize)> = Vec::with_capacity(nodes.len());
    // Highest score first; the index breaks (practically impossible) ties so the
    // result never depends on the selection algorithm.
    let by_rank = |a: &(f64, usize), b: &(f64, usize)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
    for shard in 0..shards {
        ranked.clear();
        ranked.extend(
            nodes
                .iter()
                .enumerate()
                .map(|(i, n)| (rendezvous_score(&n.id, shard, n.weight), i)),
        );
        // Only the first few ranks are ever read unless caps skip many nodes: select
        // them in O(n) and sort just those, not every node for every shard.
        let mut sorted = (rf + 8).min(ranked.len());
        if sorted < ranked.len() {
            ranked.select_nth_unstable_by(sorted, by_rank);
        }
        ranked[..sorted].sort_unstable_by(by_rank);
        let mut chosen = Vec::with_capacity(rf);
        let mut next = 0;
        while chosen.len() < rf && next < ranked.len() {
            if next == sorted {
                ranked[sorted..].sort_unstable_by(by_rank);
                sorted = ranked.len();
            }
            let i = ranked[next].1;
            next += 1;
            if nodes[i].max_shards.is_some_and(|cap| load[i] >= cap) {
                continue;
            }
            load[i] += 1;
            chosen.push(nodes[i].id.clone());
        }
        out.push(chosen);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn nodes(ids: &[&str]) -> Vec<Candidate> {
        ids.iter()
            .map(|id| Candidate {
                id: id.to_string(),
                weight: 1.0,
                max_shards: None,
            })
            .collect()
    }

    fn per_node(p: &[Vec<String>]) -> HashMap<String, usize> {
        let mut m = HashMap::new();
        for holders in p {
            for h in holders {
                *m.entry(h.clone()).or_default() += 1;
            }
        }
        m
    }

    fn moved_slots(a: &[Vec<String>], b: &[Vec<String>]) -> usize {
        a.iter()
            .zip(b)
            .map(|(x, y)| x.iter().filter(|n| !y.contains(n)).count())
            .sum()
    }

    #[test]
    fn every_shard_gets_rf_distinct_nodes_and_load_is_even() {
        // (nodes, rf, max spread of shard counts across nodes for 64 shards)
        let table = [(3, 2, 16), (5, 2, 14), (10, 3, 14), (2, 2, 0), (1, 2, 0)];
        for (n, rf, spread) in table {
            let ids: Vec<String> = (1..=n).map(|i| format!("n{i}")).collect();
            let refs: Vec<&str> = ids.iter().map(|s| s.as_str()).collect();
            let p = place(64, rf, &nodes(&refs));
            for holders in &p {
                assert_eq!(holders.len(), rf.min(n), "n={n}");
                let mut d = holders.clone();
                d.dedup();
                assert_eq!(d.len(), holders.len(), "distinct holders");
            }
            let counts = per_node(&p);
            let (lo, hi) = (
                counts.values().min().unwrap(),
                counts.values().max().unwrap(),
            );
            assert!(hi - lo <= spread, "n={n} rf={rf}: {counts:?}");
        }
    }

    #[test]
    fn adding_a_node_moves_about_one_in_n_plus_one() {
        for n in 2..=12 {
            let ids: Vec<String> = (1..=n).map(|i| format!("node-{i}")).collect();
            let before = place(
                2048,
                2,
                &nodes(&ids.iter().map(|s| s.as_str()).collect::<Vec<_>>()),
            );
            let mut more = ids.clone();
            more.push("newcomer".into());
            let after = place(
                2048,
                2,
                &nodes(&more.iter().map(|s| s.as_str()).collect::<Vec<_>>()),
            );
            let frac = moved_slots(&before, &after) as f64 / (2048.0 * 2.0);
            let ideal = 1.0 / (n as f64 + 1.0);
            assert!(
                (ideal * 0.8..ideal * 1.2).contains(&frac),
                "n={n}: moved {frac:.3}, ideal {ideal:.3}"
            );
            // Only the newcomer gains shards: nothing moves between old nodes.
            for (b, a) in before.iter().zip(&after) {
                for h in a.iter().filter(|h| !b.contains(h)) {
                    assert_eq!(h, "newcomer");
                }
            }
        }
    }

    #[test]
    fn removing_a_node_moves_only_its_shards() {
        let before = place(256, 2, &nodes(&["a", "b", "c", "d"]));
        let after = place(256, 2, &nodes(&["a", "b", "d"]));
        for (b, a) in before.iter().zip(&after) {
            if !b.contains(&"c".to_string()) {
                assert_eq!(a, b);
            }
        }
    }

    #[test]
    fn weights_and_caps() {
        let mut ns = nodes(&["big", "small1", "small2"]);
        ns[0].weight = 2.0;
        let counts = per_node(&place(1024, 1, &ns));
        assert!(counts["big"] > 450 && counts["big"] < 570, "{counts:?}");
        ns[0].max_shards = Some(100);
        let counts = per_node(&place(1024, 1, &ns));
        assert_eq!(counts["big"], 100, "cap holds: {counts:?}");
        // Caps can leave shards short of holders; placement never exceeds them.
        let capped: Vec<Candidate> = ["x", "y"]
            .iter()
            .map(|id| Candidate {
                id: id.to_string(),
                weight: 1.0,
                max_shards: Some(10),
            })
            .collect();
        let p = place(64, 2, &capped);
        assert_eq!(per_node(&p).values().sum::<usize>(), 20);
    }
}
