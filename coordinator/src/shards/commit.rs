//! The one way the coordinator changes a shard's record: through the live map, with
//! a failure logged and counted the same way whoever asked. A failed commit changes
//! nothing (store, nodes and memory keep the old epoch); the reconciler's next pass
//! plans the same step again, which is the retry.

use super::change::ChangeKind;
use super::map::ShardError;
use super::record::ShardRecord;
use crate::cluster::Cluster;

/// A committed change: the new record, and the holders that could not be told.
pub type Committed = Option<(ShardRecord, Vec<String>)>;

/// Applies `f` to shard `id`'s record and commits it if it changed (`Ok(None)` if
/// not). `reset` names a copy target whose old data the node must drop first.
pub async fn commit(
    cluster: &Cluster,
    id: u32,
    kind: ChangeKind,
    reset: Option<&str>,
    f: impl FnOnce(&mut ShardRecord),
) -> Result<Committed, ShardError> {
    let result = cluster.shards.change(id, &cluster.nodes, reset, f).await;
    if let Err(e) = &result {
        cluster.metrics.commit_failed(kind);
        tracing::error!("shard {id}: {kind} not committed (retried by the next pass): {e}");
    }
    result
}
