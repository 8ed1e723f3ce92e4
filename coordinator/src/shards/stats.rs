//! Counts over the shard map for metrics, views and the draining → drained rule:
//! copies per node and role, and how many shards are short of copies.

use super::record::{ShardHealth, ShardRecord};
use std::collections::HashMap;

/// (primary, replica) copies per holder.
pub type Holdings = HashMap<String, (usize, usize)>;

/// Per-node shard counts and shard health.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ShardStats {
    pub per_node: Holdings,
    pub under_replicated: usize,
    pub unavailable: usize,
    pub total: usize,
}

impl ShardStats {
    /// Counts `records`; copies on nodes that are `down` do not count as available.
    pub fn of<'a>(
        records: impl IntoIterator<Item = &'a ShardRecord>,
        rf: usize,
        down: impl Fn(&str) -> bool,
    ) -> ShardStats {
        let mut stats = ShardStats::default();
        for r in records {
            stats.total += 1;
            match r.health(rf, &down) {
                ShardHealth::Ok => {}
                ShardHealth::UnderReplicated => stats.under_replicated += 1,
                ShardHealth::Unavailable => stats.unavailable += 1,
            }
            count_holdings(r, &mut stats.per_node);
        }
        stats
    }
}

/// Adds `r`'s holders (copies in progress included) to `per_node`.
pub fn count_holdings(r: &ShardRecord, per_node: &mut Holdings) {
    for (node, _) in r.write_set() {
        let e = per_node.entry(node.to_string()).or_default();
        if r.primary.as_deref() == Some(node) {
            e.0 += 1;
        } else {
            e.1 += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shards::record::holders;

    #[test]
    fn counts_roles_health_and_copies_in_progress() {
        let map = [
            holders(0, 1, "a b"),
            holders(1, 1, "b c*"),
            holders(2, 1, "-"),
        ];
        let s = ShardStats::of(&map, 2, |_| false);
        assert_eq!(s.total, 3);
        assert_eq!(s.under_replicated, 2, "a copy in progress does not count");
        assert_eq!(s.unavailable, 0, "a never-assigned shard is not lost");
        let want: Holdings = [("a", (1, 0)), ("b", (1, 1)), ("c", (0, 1))]
            .into_iter()
            .map(|(n, c)| (n.to_string(), c))
            .collect();
        assert_eq!(s.per_node, want);
    }

    #[test]
    fn copies_on_down_nodes_are_not_available() {
        let map = [holders(0, 1, "a b")];
        assert_eq!(ShardStats::of(&map, 2, |n| n == "a").under_replicated, 1);
        let s = ShardStats::of(&map, 2, |_| true);
        assert_eq!((s.unavailable, s.under_replicated), (1, 0));
    }
}
