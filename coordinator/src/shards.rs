//! The live shard map: one slot per shard holding its committed record behind an
//! async RwLock. Data requests hold the read side for their whole fan-out; a change
//! takes the write side, so it waits for in-flight writes and the next write already
//! sees the new holders. That lock is the barrier that lets a copy start without
//! losing a write.
//!
//! **Architecture Invariant:** a change is committed to the store, then pushed to the
//! nodes, then made visible to requests — never in another order.

use crate::nodeclient::NodeClient;
use crate::reconcile::ShardStats;
use crate::registry::Registry;
use crate::shardmap::{ShardHealth, ShardRecord};
use crate::store::{Store, StoreError};
use futures_util::future::join_all;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::{RwLock, RwLockReadGuard};

pub struct Slot {
    pub id: u32,
    pub record: Arc<RwLock<ShardRecord>>,
    /// The last published record, readable without waiting for a change in
    /// progress (status, metrics and views must not block on a slow node).
    view: std::sync::Mutex<ShardRecord>,
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

/// Node id → address, for the holders a change must reach.
type Addrs = HashMap<String, String>;

impl ShardSet {
    pub fn load(
        store: Arc<Store>,
        shards: u32,
        rf: usize,
        now_ms: u64,
    ) -> Result<ShardSet, StoreError> {
        let mut records: HashMap<u32, ShardRecord> = store
            .load_shards()?
            .into_iter()
            .map(|r| (r.id, r))
            .collect();
        let slots = (0..shards)
            .map(|id| {
                let rec = records.remove(&id).unwrap_or_else(|| ShardRecord::new(id));
                Arc::new(Slot {
                    id,
                    view: std::sync::Mutex::new(rec.clone()),
                    record: Arc::new(RwLock::new(rec)),
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
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                Some(v.max(floor - 1) + 1)
            })
            .expect("closure always returns Some");
        prev.max(floor - 1) + 1
    }

    pub async fn read(&self, id: u32) -> RwLockReadGuard<'_, ShardRecord> {
        self.slots[id as usize].record.read().await
    }

    /// Like [`ShardSet::change_checked`], ignoring which holders could not be told.
    pub async fn change(
        &self,
        id: u32,
        nodes: &Registry,
        reset: Option<&str>,
        f: impl FnOnce(&mut ShardRecord),
    ) -> Result<Option<ShardRecord>, String> {
        Ok(self
            .change_checked(id, nodes, reset, f)
            .await?
            .map(|(r, _)| r))
    }

    /// Applies `f` to a copy of the shard's record; if it changed, bumps the epoch,
    /// commits it, tells every holder (a new copy target with `reset`), then publishes
    /// it. Returns the new record and the holders that could not be told, or None
    /// when `f` changed nothing.
    ///
    /// Cancellation-safe: once `f` has run, the commit, push and publish finish in
    /// their own task even if the caller is dropped (say, an HTTP client gave up),
    /// so the store, the nodes and memory never disagree about the epoch.
    pub async fn change_checked(
        &self,
        id: u32,
        nodes: &Registry,
        reset: Option<&str>,
        f: impl FnOnce(&mut ShardRecord),
    ) -> Result<Option<(ShardRecord, Vec<String>)>, String> {
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
            tokio::task::spawn_blocking(move || store.put_shards(&[commit]))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
            let failed = push(&client, &next, &addrs, reset.as_deref(), create_all).await;
            *slot.view.lock().unwrap_or_else(|p| p.into_inner()) = next.clone();
            *guard = next.clone();
            Ok(Some((next, failed)))
        })
        .await
        .map_err(|e| format!("shard change task failed: {e}"))?
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
        let mut stats = ShardStats {
            total: self.slots.len(),
            ..Default::default()
        };
        for r in self.snapshot() {
            match r.health(self.rf, &down) {
                ShardHealth::Ok => {}
                ShardHealth::UnderReplicated => stats.under_replicated += 1,
                ShardHealth::Unavailable => stats.unavailable += 1,
            }
            count_holdings(&r, &mut stats.per_node);
        }
        stats
    }

    /// (primary, replica) shard counts per holder, without the health part of
    /// [`ShardSet::stats`] and its node lookups.
    pub fn holdings(&self) -> HashMap<String, (usize, usize)> {
        let mut per_node = HashMap::new();
        for r in self.snapshot() {
            count_holdings(&r, &mut per_node);
        }
        per_node
    }
}

fn count_holdings(r: &ShardRecord, per_node: &mut HashMap<String, (usize, usize)>) {
    for (node, _) in r.write_set() {
        let e = per_node.entry(node.to_string()).or_default();
        if r.primary.as_deref() == Some(node) {
            e.0 += 1;
        } else {
            e.1 += 1;
        }
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
        let role = rec.role_of(node).unwrap_or("replica");
        let reset = reset_all || reset == Some(node);
        let client = client.clone();
        let (id, epoch, node) = (rec.id, rec.epoch, node.to_string());
        async move {
            let Some(addr) = addr else { return Some(node) };
            match client.assign(&addr, id, epoch, role, reset).await {
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
