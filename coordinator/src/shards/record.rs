//! The shard map's records and the pure questions asked of them: who holds a shard,
//! who must acknowledge a write, is it under-replicated or unavailable.

use serde::{Deserialize, Serialize};
use torua_protocol::node_api::Role;

/// One copy of a shard beyond the primary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replica {
    pub node: String,
    /// False while the copy is being made: it receives live writes but is neither
    /// read from nor counted towards the replication factor.
    pub in_sync: bool,
}

/// A shard's durable assignment. `epoch` grows with every change; nodes refuse
/// requests carrying an older one (fencing).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardRecord {
    pub id: u32,
    pub epoch: u64,
    pub primary: Option<String>,
    #[serde(default)]
    pub replicas: Vec<Replica>,
    /// Operator pin (`PUT /v1/shards/{id}`): the holders placement must converge to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pinned: Option<Vec<String>>,
    /// The load balancer's choice of holders (primary first), followed like a pin
    /// while every node in it is eligible; an operator's pin wins over it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_placed: Option<Vec<String>>,
    /// True once the shard has ever had holders: an empty holder list then means the
    /// data is unavailable, not that the shard is new.
    #[serde(default)]
    pub assigned: bool,
}

/// How a shard is doing, for `/v1/cluster` status and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ShardHealth {
    Ok,
    UnderReplicated,
    Unavailable,
}

impl ShardRecord {
    pub fn new(id: u32) -> ShardRecord {
        ShardRecord {
            id,
            epoch: 0,
            primary: None,
            replicas: Vec::new(),
            pinned: None,
            load_placed: None,
            assigned: false,
        }
    }

    /// Primary, then in-sync replicas: the copies that hold every acknowledged write.
    pub fn in_sync(&self) -> impl Iterator<Item = &str> {
        self.primary.iter().map(String::as_str).chain(
            self.replicas
                .iter()
                .filter(|r| r.in_sync)
                .map(|r| r.node.as_str()),
        )
    }

    /// Every node that must receive writes: in-sync holders plus copies in progress.
    pub fn write_set(&self) -> impl Iterator<Item = (&str, bool)> {
        self.primary
            .iter()
            .map(|p| (p.as_str(), true))
            .chain(self.replicas.iter().map(|r| (r.node.as_str(), r.in_sync)))
    }

    pub fn holds(&self, node: &str) -> bool {
        self.primary.as_deref() == Some(node) || self.replicas.iter().any(|r| r.node == node)
    }

    pub fn role_of(&self, node: &str) -> Option<Role> {
        if self.primary.as_deref() == Some(node) {
            Some(Role::Primary)
        } else if self.replicas.iter().any(|r| r.node == node) {
            Some(Role::Replica)
        } else {
            None
        }
    }

    /// Health counting only in-sync copies on nodes that are not `down`: a shard
    /// whose every in-sync holder is down is unavailable even though the map still
    /// names them.
    pub fn health(&self, rf: usize, down: impl Fn(&str) -> bool) -> ShardHealth {
        match self.in_sync().filter(|n| !down(n)).count() {
            0 if self.assigned => ShardHealth::Unavailable,
            0 => ShardHealth::UnderReplicated,
            n if n < rf => ShardHealth::UnderReplicated,
            _ => ShardHealth::Ok,
        }
    }

    /// Drops `node` from the shard. If it was the primary, the first in-sync replica
    /// in `prefer` order (else any in-sync replica) is promoted. Returns whether a
    /// promotion happened.
    pub fn remove(&mut self, node: &str, prefer: &[String]) -> bool {
        self.replicas.retain(|r| r.node != node);
        if self.primary.as_deref() != Some(node) {
            return false;
        }
        self.primary = None;
        let pick = prefer
            .iter()
            .find(|p| self.replicas.iter().any(|r| r.in_sync && &r.node == *p))
            .cloned()
            .or_else(|| {
                self.replicas
                    .iter()
                    .find(|r| r.in_sync)
                    .map(|r| r.node.clone())
            });
        if let Some(new) = pick {
            self.replicas.retain(|r| r.node != new);
            self.primary = Some(new);
            true
        } else {
            false
        }
    }

    /// Makes in-sync `node` the primary, demoting the current one to a replica.
    pub fn make_primary(&mut self, node: &str) {
        if self.primary.as_deref() == Some(node) {
            return;
        }
        if let Some(pos) = self
            .replicas
            .iter()
            .position(|r| r.node == node && r.in_sync)
        {
            self.replicas.remove(pos);
            if let Some(old) = self.primary.take() {
                self.replicas.insert(
                    0,
                    Replica {
                        node: old,
                        in_sync: true,
                    },
                );
            }
            self.primary = Some(node.to_string());
        }
    }
}

/// Test shorthand for a record: `"a b c*"` is primary `a`, in-sync replica `b`, copy
/// in progress `c` (`*`); `"-"` has no primary. Assigned if it names any holder.
#[cfg(test)]
pub(crate) fn holders(id: u32, epoch: u64, spec: &str) -> ShardRecord {
    let mut it = spec.split_whitespace();
    let primary = it.next().filter(|p| *p != "-").map(str::to_owned);
    let replicas: Vec<Replica> = it
        .map(|r| Replica {
            node: r.trim_end_matches('*').to_owned(),
            in_sync: !r.ends_with('*'),
        })
        .collect();
    ShardRecord {
        id,
        epoch,
        assigned: primary.is_some() || !replicas.is_empty(),
        primary,
        replicas,
        pinned: None,
        load_placed: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(spec: &str) -> ShardRecord {
        holders(0, 1, spec)
    }

    #[test]
    fn removing_the_primary_promotes_an_in_sync_replica() {
        let mut r = rec("a b* c");
        assert!(r.remove("a", &[]));
        assert_eq!(r.primary.as_deref(), Some("c"), "never a copy in progress");
        assert_eq!(
            r.replicas,
            vec![Replica {
                node: "b".into(),
                in_sync: false
            }]
        );

        let mut r = rec("a b c");
        r.remove("a", &["c".to_string()]);
        assert_eq!(r.primary.as_deref(), Some("c"), "preference order wins");

        let mut r = rec("a b*");
        assert!(!r.remove("a", &[]));
        assert_eq!(r.primary, None);
        assert_eq!(r.health(2, |_| false), ShardHealth::Unavailable);
    }

    #[test]
    fn health_and_sets() {
        let r = rec("a b c*");
        assert_eq!(r.in_sync().collect::<Vec<_>>(), vec!["a", "b"]);
        assert_eq!(r.write_set().count(), 3);
        assert_eq!(r.health(2, |_| false), ShardHealth::Ok);
        assert_eq!(r.health(3, |_| false), ShardHealth::UnderReplicated);
        assert_eq!(r.health(2, |n| n == "b"), ShardHealth::UnderReplicated);
        assert_eq!(
            r.health(2, |n| n == "a" || n == "b"),
            ShardHealth::Unavailable,
            "every in-sync holder down"
        );
        assert_eq!(
            ShardRecord::new(1).health(2, |_| false),
            ShardHealth::UnderReplicated
        );
        let mut r = rec("a b");
        r.make_primary("b");
        assert_eq!(
            (r.primary.as_deref(), r.role_of("a")),
            (Some("b"), Some(Role::Replica))
        );
    }
}
