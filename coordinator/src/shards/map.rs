//! The live shard map: one slot per shard holding its committed record behind an
//! async RwLock. Data requests hold the read side for their whole fan-out; a change
//! takes the write side, so it waits for in-flight writes and the next write already
//! sees the new holders. That lock is the barrier that lets a copy start without
//! losing a write.
//!
//! **Architecture Invariant:** a change is committed to the store, then pushed to the
//! nodes, then made visible to requests — never in another order.

use super::inflight::InFlight;
use super::record::ShardRecord;
use super::stats::{count_holdings, Holdings, ShardStats};
use super::versions::Versions;
use crate::nodeclient::{NodeClient, To};
use crate::registry::Registry;
use crate::store::{SharedStore, StoreError};
use futures_util::future::join_all;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use thiserror::Error;
use tokio::sync::{RwLock, RwLockReadGuard};
use torua_protocol::node_api::Role;

/// Why a shard change did not happen. The map is then as it was: the published
/// record, the store and the nodes all still agree on the old epoch.
#[derive(Debug, Error)]
pub enum ShardError {
    #[error("shard {shard}: committing epoch {epoch} failed: {source}")]
    Store {
        shard: u32,
        epoch: u64,
        #[source]
        source: StoreError,
    },
    #[error("shard {shard}: the change task ended early: {message}")]
    Task { shard: u32, message: String },
}

pub struct Slot {
    pub id: u32,
    pub record: Arc<RwLock<ShardRecord>>,
    /// The last published record, readable without waiting for a change in
    /// progress (status, metrics and views must not block on a slow node).
    view: std::sync::Mutex<ShardRecord>,
    /// Set when a live write to a copy in progress failed: that copy must not be
    /// marked in sync. Private: the data path reports failures, the copy asks.
    copy_broken: AtomicBool,
    /// Keys with client writes of this coordinator in flight, and what reads of
    /// them returned meanwhile.
    pub inflight: InFlight,
}

impl Slot {
    /// A live write to this shard's copy in progress failed.
    pub fn copy_write_failed(&self) {
        self.copy_broken.store(true, Ordering::Release);
    }

    /// Starts watching for failed live writes to a copy about to join the write set.
    pub fn watch_copy(&self) {
        self.copy_broken.store(false, Ordering::Release);
    }

    /// The last published record, without waiting for a change in progress.
    pub fn published(&self) -> ShardRecord {
        self.view.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Whether every live write to the copy since [`Slot::watch_copy`] reached it.
    pub fn copy_intact(&self) -> bool {
        !self.copy_broken.load(Ordering::Acquire)
    }
}

pub struct ShardSet {
    pub slots: Vec<Arc<Slot>>,
    pub rf: usize,
    store: SharedStore,
    pub client: NodeClient,
    /// Write versions of this coordinator's term.
    pub versions: Versions,
}

/// Node id → address, for the holders a change must reach.
type Addrs = HashMap<String, String>;

impl ShardSet {
    /// The live map over `records` (as loaded from `store`; shards without one
    /// start unassigned).
    pub fn new(
        store: SharedStore,
        records: Vec<ShardRecord>,
        shards: u32,
        rf: usize,
        term: u64,
    ) -> ShardSet {
        let mut records: HashMap<u32, ShardRecord> =
            records.into_iter().map(|r| (r.id, r)).collect();
        let slots = (0..shards)
            .map(|id| {
                let rec = records.remove(&id).unwrap_or_else(|| ShardRecord::new(id));
                Arc::new(Slot {
                    id,
                    view: std::sync::Mutex::new(rec.clone()),
                    record: Arc::new(RwLock::new(rec)),
                    copy_broken: AtomicBool::new(false),
                    inflight: InFlight::default(),
                })
            })
            .collect();
        ShardSet {
            slots,
            rf,
            store,
            client: NodeClient::default(),
            versions: Versions::new(term),
        }
    }

    pub fn store(&self) -> &SharedStore {
        &self.store
    }

    pub fn slot(&self, id: u32) -> Option<&Arc<Slot>> {
        self.slots.get(id as usize)
    }

    pub fn slot_for_key(&self, key: &str) -> &Arc<Slot> {
        let id = torua_protocol::shard::shard_for_key(key.as_bytes(), self.slots.len() as u32);
        &self.slots[id as usize]
    }

    pub async fn read(&self, id: u32) -> RwLockReadGuard<'_, ShardRecord> {
        self.slots[id as usize].record.read().await
    }

    /// Applies `f` to a copy of the shard's record; if it changed, bumps the epoch,
    /// commits it, tells every holder (a new copy target with `reset`), then publishes
    /// it. Returns the new record and the holders that could not be told, or None
    /// when `f` changed nothing.
    ///
    /// Cancellation-safe: once `f` has run, the commit, push and publish finish in
    /// their own task even if the caller is dropped (say, an HTTP client gave up),
    /// so the store, the nodes and memory never disagree about the epoch.
    pub async fn change(
        &self,
        id: u32,
        nodes: &Registry,
        reset: Option<&str>,
        f: impl FnOnce(&mut ShardRecord),
    ) -> Result<Option<(ShardRecord, Vec<String>)>, ShardError> {
        let slot = self.slots[id as usize].clone();
        let guard = slot.record.clone().write_owned().await;
        let mut next = guard.clone();
        f(&mut next);
        if next == *guard {
            return Ok(None);
        }
        next.epoch = guard.epoch + 1;
        // A shard's first holders create it on their nodes; later pushes must find it
        // there (a node that lost its data then refuses, and is evicted).
        let create_all = !guard.assigned;
        next.assigned |= next.primary.is_some();
        let (store, client) = (self.store.clone(), self.client.clone());
        // Only the new record's holders are looked up, never every node.
        let addrs: Addrs = next
            .write_set()
            .filter_map(|(n, _)| Some((n.to_string(), nodes.addr_of(n)?)))
            .collect();
        let reset = reset.map(str::to_owned);
        tokio::spawn(async move {
            let mut guard = guard;
            let commit = next.clone();
            let (shard, epoch) = (next.id, next.epoch);
            store
                .put_shards(vec![commit])
                .await
                .map_err(|source| ShardError::Store {
                    shard,
                    epoch,
                    source,
                })?;
            let failed = push(&client, &next, &addrs, reset.as_deref(), create_all).await;
            *slot.view.lock().unwrap_or_else(|p| p.into_inner()) = next.clone();
            *guard = next.clone();
            Ok(Some((next, failed)))
        })
        .await
        .map_err(|e| ShardError::Task {
            shard: id,
            message: e.to_string(),
        })?
    }

    /// Installs a record committed elsewhere (by the leader, seen through etcd) if it
    /// is newer than the one held; returns whether it was. Waits for in-flight
    /// writes like any change, so the next write sees the new holders.
    pub async fn install(&self, rec: ShardRecord) -> bool {
        let Some(slot) = self.slots.get(rec.id as usize) else {
            return false;
        };
        let mut guard = slot.record.write().await;
        if rec.epoch <= guard.epoch {
            return false;
        }
        *slot.view.lock().unwrap_or_else(|p| p.into_inner()) = rec.clone();
        *guard = rec;
        true
    }

    /// Waits (up to `within`) until shard `id`'s epoch is above `epoch`: for a
    /// coordinator whose copy of the map is behind a node's.
    pub async fn wait_past(&self, id: u32, epoch: u64, within: std::time::Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if self.slots[id as usize].published().epoch > epoch {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// The published records; never waits for a change in progress.
    pub fn snapshot(&self) -> Vec<ShardRecord> {
        self.slots
            .iter()
            .map(|s| s.view.lock().unwrap_or_else(|p| p.into_inner()).clone())
            .collect()
    }

    /// Per-node counts and shard health, computed from the published records;
    /// copies on nodes that are `down` do not count as available.
    pub fn stats(&self, down: impl Fn(&str) -> bool) -> ShardStats {
        ShardStats::of(&self.snapshot(), self.rf, down)
    }

    /// (primary, replica) shard counts per holder, without the health part of
    /// [`ShardSet::stats`] and its node lookups.
    pub fn holdings(&self) -> Holdings {
        let mut per_node = HashMap::new();
        for r in self.snapshot() {
            count_holdings(&r, &mut per_node);
        }
        per_node
    }

    /// Pushes `rec`'s current assignment again to holder `node` (no reset): for a
    /// holder that still has the shard but missed a push while paused or cut off.
    pub async fn retell(
        &self,
        addr: &str,
        rec: &ShardRecord,
        node: &str,
    ) -> Result<(), crate::nodeclient::CallError> {
        let role = rec.role_of(node).unwrap_or(Role::Replica);
        self.client
            .assign(To { node, addr }, rec.id, rec.epoch, role, false)
            .await
    }

    /// How many shards `node` holds (copies in progress included).
    pub fn held_by(&self, node: &str) -> usize {
        self.slots
            .iter()
            .filter(|s| s.view.lock().unwrap_or_else(|p| p.into_inner()).holds(node))
            .count()
    }
}

/// Sends the record's assignment to each holder. A holder that cannot be told
/// will refuse requests at the new epoch, and the write path evicts it.
async fn push(
    client: &NodeClient,
    rec: &ShardRecord,
    addrs: &Addrs,
    reset: Option<&str>,
    reset_all: bool,
) -> Vec<String> {
    let calls = rec.write_set().map(|(node, _)| {
        let addr = addrs.get(node).cloned();
        let role = rec.role_of(node).unwrap_or(Role::Replica);
        let reset = reset_all || reset == Some(node);
        let client = client.clone();
        let (id, epoch, node) = (rec.id, rec.epoch, node.to_string());
        async move {
            let Some(addr) = addr else { return Some(node) };
            let to = To {
                node: &node,
                addr: &addr,
            };
            match client.assign(to, id, epoch, role, reset).await {
                Ok(()) => None,
                Err(e) => {
                    tracing::warn!("shard {id} epoch {epoch}: assigning {node} failed: {e}");
                    Some(node)
                }
            }
        }
    });
    join_all(calls).await.into_iter().flatten().collect()
}
