//! The assignment audit: in-sync holders that no longer hold their shard are
//! evicted. A storage node restarted without its data looks healthy, but its copies
//! are gone; without this, the map would count copies that exist only on paper until
//! a request failed. A holder that has the shard at an older epoch only missed an
//! assignment (it was paused or cut off when it was pushed) and is told again: the
//! map still lists it, so it missed no acknowledged write.

use super::change::ChangeKind;
use super::commit::commit;
use super::record::ShardRecord;
use crate::cluster::Cluster;
use crate::nodeclient::To;
use std::collections::{BTreeSet, HashMap};
use torua_protocol::NodeState;

/// What a node's answer says of the shards the map gives it in sync.
#[derive(Debug, Default, PartialEq)]
pub struct Findings<'a> {
    /// The shard is missing on the node: evict the holder.
    pub lost: Vec<&'a ShardRecord>,
    /// The node holds the shard at an older epoch: push the assignment again.
    pub behind: Vec<&'a ShardRecord>,
}

/// Compares the map's in-sync holdings of `node` with what it `held` (shard →
/// epoch). A newer epoch on the node means a change is being published right now,
/// and is fine.
pub fn findings<'a>(
    records: &'a [ShardRecord],
    node: &str,
    held: &HashMap<u32, u64>,
) -> Findings<'a> {
    let mut f = Findings::default();
    for r in records.iter().filter(|r| r.in_sync().any(|n| n == node)) {
        match held.get(&r.id) {
            None => f.lost.push(r),
            Some(e) if *e < r.epoch => f.behind.push(r),
            Some(_) => {}
        }
    }
    f
}

/// Asks each serving in-sync holder what it holds and evicts lost copies. Returns
/// how many were evicted.
pub async fn run(cluster: &Cluster) -> usize {
    let records = cluster.shards.snapshot();
    // Only the map's in-sync holders can be evicted, so only they are asked: a
    // cluster of thousands of nodes with a few hundred shard copies costs a few
    // hundred calls per audit, not one per node.
    let holders: BTreeSet<&str> = records.iter().flat_map(|r| r.in_sync()).collect();
    let mut evicted = 0;
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
        let to = To { node, addr: &addr };
        let held = match cluster.shards.client.held_shards(to).await {
            Ok(held) => held,
            Err(e) => {
                tracing::debug!("audit: asking {node} for its shards failed: {e}");
                continue;
            }
        };
        let found = findings(&records, node, &held);
        for rec in found.behind {
            match cluster.shards.retell(&addr, rec, node).await {
                Ok(()) => tracing::info!(
                    "shard {}: {node} was at epoch {:?}; pushed epoch {} again",
                    rec.id,
                    held.get(&rec.id),
                    rec.epoch
                ),
                Err(e) => tracing::debug!("shard {}: re-pushing to {node} failed: {e}", rec.id),
            }
        }
        for rec in found.lost {
            let epoch = rec.epoch;
            let changed = commit(cluster, rec.id, ChangeKind::AuditEvict, None, |r| {
                if r.epoch == epoch {
                    r.remove(node, &[]);
                }
            })
            .await;
            if let Ok(Some((r, _))) = changed {
                tracing::warn!(
                    "shard {}: {node} no longer holds it at epoch {epoch} (has {:?}); evicted (epoch {})",
                    rec.id,
                    held.get(&rec.id),
                    r.epoch
                );
                evicted += 1;
            }
        }
    }
    evicted
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shards::record::holders;

    #[test]
    fn a_missing_copy_is_lost_an_older_one_behind_a_newer_one_fine() {
        let map = vec![
            holders(0, 5, "a b"),
            holders(1, 5, "b a"),
            holders(2, 5, "a c"),
            holders(3, 5, "c a*"),
        ];
        let held: HashMap<u32, u64> = [(0, 5), (1, 4), (2, 6)].into_iter().collect();
        let ids = |v: &[&ShardRecord]| v.iter().map(|r| r.id).collect::<Vec<u32>>();
        let f = findings(&map, "a", &held);
        assert!(f.lost.is_empty(), "{f:?}");
        assert_eq!(
            ids(&f.behind),
            vec![1],
            "shard 1 is behind; 2 is ahead (a change in flight); 3 is a copy in progress"
        );
        let nothing: HashMap<u32, u64> = HashMap::new();
        let f = findings(&map, "a", &nothing);
        assert_eq!(ids(&f.lost), vec![0, 1, 2], "a node that lost its data");
        assert!(f.behind.is_empty());
        assert_eq!(findings(&map, "z", &nothing), Findings::default());
    }
}
