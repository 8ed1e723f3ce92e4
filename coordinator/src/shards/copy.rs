//! Copying a shard onto a new holder while live writes keep reaching it: the target
//! joins the write set (not in sync), pulls a snapshot from the primary, and is marked
//! in sync only if no live write to it failed meanwhile. A copy that fails leaves the
//! write set again. Each copy is its own task; its outcome goes back to the
//! reconciler, which owns the bookkeeping.

use super::change::ChangeKind;
use super::commit::commit;
use super::map::ShardError;
use super::moves::MoveReason;
use super::record::Replica;
use crate::cluster::Cluster;
use crate::nodeclient::{CallError, To};
use std::sync::Arc;
use std::time::Instant;
use thiserror::Error;
use tokio::sync::{mpsc, Notify};
use tracing::Instrument;

#[derive(Debug, Error)]
pub enum CopyError {
    #[error("{0} has no address")]
    NoAddress(String),
    #[error("the target already holds the shard")]
    AlreadyHeld,
    #[error("{0} did not accept the assignment")]
    Refused(String),
    #[error("no primary to copy from")]
    NoPrimary,
    #[error(transparent)]
    Pull(#[from] CallError),
    #[error("cancelled: its source or target is no longer eligible")]
    Cancelled,
    #[error("a live write to the copy failed during the copy")]
    WriteFailed,
    #[error("the shard changed during the copy")]
    Changed,
    #[error(transparent)]
    Commit(#[from] ShardError),
}

/// A copy's outcome, for the reconciler.
#[derive(Debug)]
pub struct Finished {
    pub shard: u32,
    /// The node copied from.
    pub result: Result<String, CopyError>,
    pub seconds: f64,
}

/// Starts copying shard `id` onto `target`; `cancel` interrupts only the pull, so map
/// changes are never cut in half. The outcome is sent on `done`.
pub fn spawn(
    cluster: Arc<Cluster>,
    id: u32,
    target: String,
    reason: MoveReason,
    cancel: Arc<Notify>,
    done: mpsc::UnboundedSender<Finished>,
) {
    tokio::spawn(async move {
        let started = Instant::now();
        let span = tracing::info_span!("shard.move", shard = id, to = %target, %reason);
        let result = async {
            tracing::info!("shard {id}: copying to {target} ({reason})");
            let result = copy(&cluster, id, &target, &cancel).await;
            let secs = started.elapsed().as_secs_f64();
            match &result {
                Ok(from) => tracing::info!(
                    "shard {id}: copy from {from} to {target} in sync after {secs:.2}s ({reason})"
                ),
                Err(e) => {
                    tracing::warn!("shard {id}: copy to {target} failed after {secs:.2}s: {e}");
                    // A failed rollback is counted by commit; the next pass drops the
                    // copy as abandoned.
                    let _rolled_back = commit(&cluster, id, ChangeKind::CopyRollback, None, |r| {
                        r.replicas.retain(|x| x.node != target || x.in_sync)
                    })
                    .await;
                }
            }
            result
        }
        .instrument(span)
        .await;
        // The reconciler is gone only at shutdown; the copy's outcome is in the map.
        let _ = done.send(Finished {
            shard: id,
            result,
            seconds: started.elapsed().as_secs_f64(),
        });
    });
}

async fn copy(
    cluster: &Cluster,
    id: u32,
    target: &str,
    cancel: &Notify,
) -> Result<String, CopyError> {
    let address = |node: &str| {
        cluster
            .addr_of(node)
            .ok_or_else(|| CopyError::NoAddress(node.to_string()))
    };
    let target_addr = address(target)?;
    let slot = cluster.shards.slot(id).ok_or(CopyError::Changed)?;
    // Before the copy joins the write set: from then on, any failed live write to it
    // must be seen.
    slot.watch_copy();
    let (rec, untold) = commit(cluster, id, ChangeKind::CopyStart, Some(target), |r| {
        if !r.holds(target) {
            r.replicas.push(Replica {
                node: target.to_string(),
                in_sync: false,
            });
        }
    })
    .await?
    .ok_or(CopyError::AlreadyHeld)?;
    if untold.iter().any(|n| n == target) {
        return Err(CopyError::Refused(target.to_string()));
    }
    // The primary first, then any other in-sync holder: a target that cannot pull
    // from one source (a partition between the two nodes) tries the next.
    let sources: Vec<String> = rec
        .primary
        .iter()
        .cloned()
        .chain(
            rec.in_sync()
                .filter(|n| Some(*n) != rec.primary.as_deref())
                .map(str::to_string),
        )
        .filter(|n| n != target)
        .collect();
    if sources.is_empty() {
        return Err(CopyError::NoPrimary);
    }
    let mut from = None;
    let mut last_err = None;
    for source in &sources {
        let source_addr = address(source)?;
        let pull = cluster.shards.client.pull(
            To {
                node: target,
                addr: &target_addr,
            },
            id,
            rec.epoch,
            To {
                node: source,
                addr: &source_addr,
            },
        );
        let copy_span = tracing::info_span!("shard.copy", shard = id, from = %source, to = %target, epoch = rec.epoch);
        let r = tokio::select! {
            r = pull.instrument(copy_span) => r,
            _ = cancel.notified() => return Err(CopyError::Cancelled),
        };
        match r {
            Ok(()) => {
                from = Some(source.clone());
                break;
            }
            // The target answered: it could not pull from this source. Counted
            // against the source (node-to-node), then the next source is tried.
            Err(e @ CallError::Status { .. }) => {
                tracing::warn!("shard {id}: {target} could not copy from {source}: {e}");
                cluster
                    .shards
                    .client
                    .reach
                    .count_failure(&source_addr, "copy_source");
                last_err = Some(e);
            }
            // The target itself did not answer: no other source helps.
            Err(e) => return Err(e.into()),
        }
    }
    let Some(from) = from else {
        return Err(last_err.map_or(CopyError::NoPrimary, CopyError::Pull));
    };
    if !slot.copy_intact() {
        return Err(CopyError::WriteFailed);
    }
    let marked = commit(cluster, id, ChangeKind::CopyInSync, None, |r| {
        if r.epoch == rec.epoch {
            for x in r.replicas.iter_mut().filter(|x| x.node == target) {
                x.in_sync = true;
            }
        }
    })
    .await?;
    match marked {
        Some((r, _)) if r.replicas.iter().any(|x| x.node == target && x.in_sync) => Ok(from),
        _ => Err(CopyError::Changed),
    }
}
