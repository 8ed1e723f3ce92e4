//! The live shard map: one slot per shard holding its committed record behind an
//! async RwLock. Data requests hold the read side for their whole fan-out; a change
//! takes the write side, so it waits for in-flight writes and the next write already
//! sees the new holders. That lock is the barrier that lets a copy start without
//! losing a write.
//!
//! **Architecture Invariant:** a change is committed to the store, then pushed to the
//! nodes, then made visible to requests — never in another order.

use crate::nodeclient::NodeClient;
use futures_util::future::join_all;
use crate::shardmap::{ShardHealth, ShardRecord};
use crate::store::{Store, StoreError};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::{RwLock, RwLockReadGuard};

pub struct Slot {
    pub id: u32,
    pub record: RwLock<ShardRecord>,
    /// Set when a live write to a copy in progress failed: that copy must not be
    /// marked in sync.
    pub copy_broken: AtomicBool,
}

pub struct ShardSet {
    pub slots: Vec<Arc<Slot>>,
    pub rf: usize,
    store: Arc<Store>,
    pub client: NodeClient,
    last_version: AtomicU64,
}

/// Where a change must reach: node id → address, for the holders of a record.
pub type Addrs = HashMap<String, String>;

impl ShardSet {
    pub fn load(store: Arc<Store>, shards: u32, rf: usize, now_ms: u64) -> Result<ShardSet, StoreError> {
        let mut records: HashMap<u32, ShardRecord> =
            store.load_shards()?.into_iter().map(|r| (r.id, r)).collect();
        let slots = (0..shards)
            .map(|id| {
                Arc::new(Slot {
                    id,
                    record: RwLock::new(records.remove(&id).unwrap_or_else(|| ShardRecord::new(id))),
                    copy_broken: AtomicBool::new(false),
                })
            })
            .collect();
        Ok(ShardSet {
            slots,
            rf,
            store,
            client: NodeClient::default(),
            // Versions order writes to a key across coordinator restarts: start from the
            // clock (ms << 20 leaves room for a million writes per ms).
            last_version: AtomicU64::new(now_ms << 20),
        })
    }

    pub fn slot(&self, id: u32) -> Option<&Arc<Slot>> {
        self.slots.get(id as usize)
    }

    pub fn slot_for_key(&self, key: &str) -> &Arc<Slot> {
        let id = torua_protocol::shard::shard_for_key(key.as_bytes(), self.slots.len() as u32);
        &self.slots[id as usize]
    }

    /// A version above every version handed out before, in this process or an
    /// earlier one (given a clock that does not jump back across a restart).
    pub fn next_version(&self, now_ms: u64) -> u64 {
        let floor = now_ms << 20;
        let prev = self
            .last_version
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| Some(v.max(floor - 1) + 1))
            .expect("closure always returns Some");
        prev.max(floor - 1) + 1
    }

    pub async fn read(&self, id: u32) -> RwLockReadGuard<'_, ShardRecord> {
        self.slots[id as usize].record.read().await
    }

    /// Applies `f` to a copy of the shard's record; if it changed, bumps the epoch,
    /// commits it, tells every holder (a new copy target with `reset`), then publishes
    /// it. Returns the new record, or None when `f` changed nothing.
    pub async fn change(
        &self,
        id: u32,
        addrs: &Addrs,
        reset: Option<&str>,
        f: impl FnOnce(&mut ShardRecord),
    ) -> Result<Option<ShardRecord>, String> {
        let slot = &self.slots[id as usize];
        let mut guard = slot.record.write().await;
        let mut next = guard.clone();
        f(&mut next);
        if next == *guard {
            return Ok(None);
        }
        next.epoch = guard.epoch + 1;
        next.assigned |= next.primary.is_some();
        let store = self.store.clone();
        let commit = next.clone();
        tokio::task::spawn_blocking(move || store.put_shards(&[commit]))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        self.push(&next, addrs, reset).await;
        *guard = next.clone();
        Ok(Some(next))
    }

    /// Sends the record's assignment to each holder. A holder that cannot be told
    /// will refuse requests at the new epoch, and the write path evicts it.
    async fn push(&self, rec: &ShardRecord, addrs: &Addrs, reset: Option<&str>) {
        let calls = rec.write_set().filter_map(|(node, _)| {
            let addr = addrs.get(node)?.clone();
            let role = rec.role_of(node).unwrap_or("replica");
            let reset = reset == Some(node);
            let client = self.client.clone();
            let (id, epoch, node) = (rec.id, rec.epoch, node.to_string());
            Some(async move {
                if let Err(e) = client.assign(&addr, id, epoch, role, reset).await {
                    tracing::warn!("shard {id} epoch {epoch}: assigning {node} failed: {e}");
                }
            })
        });
        join_all(calls).await;
    }

    /// Counts per health class, for `/v1/cluster` and metrics.
    pub async fn health_counts(&self) -> (usize, usize, usize) {
        let (mut ok, mut under, mut unavailable) = (0, 0, 0);
        for s in &self.slots {
            match s.record.read().await.health(self.rf) {
                ShardHealth::Ok => ok += 1,
                ShardHealth::UnderReplicated => under += 1,
                ShardHealth::Unavailable => unavailable += 1,
            }
        }
        (ok, under, unavailable)
    }

    pub async fn snapshot(&self) -> Vec<ShardRecord> {
        let mut out = Vec::with_capacity(self.slots.len());
        for s in &self.slots {
            out.push(s.record.read().await.clone());
        }
        out
    }
}
