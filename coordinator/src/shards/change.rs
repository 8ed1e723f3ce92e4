//! The kinds of shard map change, named once: the `change` label of
//! `torua_shard_commit_failures_total` and the word logs use for each.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChangeKind {
    Bootstrap,
    DropAbandonedCopy,
    Failover,
    HandOff,
    Pin,
    BalancePrimary,
    Trim,
    /// A copy joins the write set, not yet in sync.
    CopyStart,
    /// A finished copy is marked in sync.
    CopyInSync,
    /// A failed copy leaves the write set.
    CopyRollback,
    /// The audit found a holder that lost its copy.
    AuditEvict,
    /// A holder failed a write that others acknowledged.
    WriteEvict,
    /// An operator pinned or unpinned the shard (`PUT /v1/shards/{id}`).
    Assign,
    /// The load balancer chose new holders (or dropped a choice gone stale).
    LoadPlace,
}

impl ChangeKind {
    pub const ALL: [ChangeKind; 14] = [
        ChangeKind::Bootstrap,
        ChangeKind::DropAbandonedCopy,
        ChangeKind::Failover,
        ChangeKind::HandOff,
        ChangeKind::Pin,
        ChangeKind::BalancePrimary,
        ChangeKind::Trim,
        ChangeKind::CopyStart,
        ChangeKind::CopyInSync,
        ChangeKind::CopyRollback,
        ChangeKind::AuditEvict,
        ChangeKind::WriteEvict,
        ChangeKind::Assign,
        ChangeKind::LoadPlace,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Bootstrap => "bootstrap",
            ChangeKind::DropAbandonedCopy => "drop_abandoned_copy",
            ChangeKind::Failover => "failover",
            ChangeKind::HandOff => "hand_off",
            ChangeKind::Pin => "pin",
            ChangeKind::BalancePrimary => "balance_primary",
            ChangeKind::Trim => "trim",
            ChangeKind::CopyStart => "copy_start",
            ChangeKind::CopyInSync => "copy_in_sync",
            ChangeKind::CopyRollback => "copy_rollback",
            ChangeKind::AuditEvict => "audit_evict",
            ChangeKind::WriteEvict => "write_evict",
            ChangeKind::Assign => "assign",
            ChangeKind::LoadPlace => "load_place",
        }
    }
}

impl fmt::Display for ChangeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_unique_snake_case() {
        let labels: std::collections::HashSet<_> =
            ChangeKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(labels.len(), ChangeKind::ALL.len());
        assert!(labels
            .iter()
            .all(|l| l.chars().all(|c| c.is_ascii_lowercase() || c == '_')));
    }
}
