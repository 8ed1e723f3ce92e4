//! Every coordinator sharing etcd keeps a copy of the committed state: it reads the
//! shard map and the node records, then watches the prefix and installs each newer
//! record as it is committed. That copy is what a follower serves reads and the data
//! path from, and what a new leader starts from (`took_office` reads it afresh).
//!
//! **Architecture Invariant:** followers never commit. They install only records
//! with a higher epoch than they hold, so their map never goes back.

use crate::cluster::Cluster;
use crate::registry::NodeCell;
use crate::shards::record::ShardRecord;
use crate::store::etcd::EtcdStore;
use crate::store::{decode, NodeRecord, StoreError};
use etcd_client::{EventType, WatchOptions};
use std::sync::Arc;
use std::time::{Duration, Instant};

const RETRY: Duration = Duration::from_millis(500);

/// Follows the prefix until `shutdown`; re-reads everything after a broken watch.
pub async fn run(
    cluster: Arc<Cluster>,
    store: Arc<EtcdStore>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            r = follow_once(&cluster, &store) => {
                if let Err(e) = r {
                    tracing::warn!("following etcd: {e}; reading the state again");
                }
            }
        }
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tokio::time::sleep(RETRY) => {}
        }
    }
}

async fn follow_once(cluster: &Cluster, store: &EtcdStore) -> Result<(), StoreError> {
    let at = reload(cluster, store).await?;
    let mut c = store.client();
    let opts = WatchOptions::new()
        .with_prefix()
        .with_start_revision(at + 1);
    let mut stream = store
        .timed("watch", c.watch(store.key(""), Some(opts)))
        .await?;
    let (shards, nodes) = (store.key("shards/"), store.key("nodes/"));
    loop {
        let Some(resp) = stream
            .message()
            .await
            .map_err(|e| StoreError::Etcd(e.to_string()))?
        else {
            return Err(StoreError::Etcd("the watch ended".into()));
        };
        if resp.canceled() {
            return Err(StoreError::Etcd(format!(
                "watch cancelled: {}",
                resp.cancel_reason()
            )));
        }
        for ev in resp.events() {
            let Some(kv) = ev.kv() else { continue };
            let key = String::from_utf8_lossy(kv.key()).into_owned();
            store.saw(
                &key,
                if ev.event_type() == EventType::Put {
                    kv.mod_revision()
                } else {
                    0
                },
            );
            if key.starts_with(&shards) && ev.event_type() == EventType::Put {
                match decode::<ShardRecord>(&key, kv.value()) {
                    Ok(rec) => {
                        cluster.shards.install(rec).await;
                    }
                    Err(e) => tracing::error!("ignoring a foreign value: {e}"),
                }
            } else if let Some(id) = key.strip_prefix(&nodes) {
                // The leader's registry is the source of its own node records.
                if cluster.leadership.is_leader() {
                    continue;
                }
                match ev.event_type() {
                    EventType::Put => match decode::<NodeRecord>(&key, kv.value()) {
                        Ok(rec) => upsert_node(cluster, id, rec),
                        Err(e) => tracing::error!("ignoring a foreign value: {e}"),
                    },
                    EventType::Delete => {
                        cluster.nodes.remove(id);
                    }
                }
            }
        }
    }
}

/// Reads every shard and node record and installs what is newer; returns the
/// revision read at.
async fn reload(cluster: &Cluster, store: &EtcdStore) -> Result<i64, StoreError> {
    let (shards, at) = store.list("shards/").await?;
    for (k, v, _) in shards {
        match decode::<ShardRecord>(&k, &v) {
            Ok(rec) => {
                cluster.shards.install(rec).await;
            }
            Err(e) => tracing::error!("ignoring a foreign value: {e}"),
        }
    }
    let (nodes, at_nodes) = store.list("nodes/").await?;
    let base = store.key("nodes/");
    if !cluster.leadership.is_leader() {
        for (k, v, _) in nodes {
            match decode::<NodeRecord>(&k, &v) {
                Ok(rec) => upsert_node(cluster, k.strip_prefix(&base).unwrap_or(&k), rec),
                Err(e) => tracing::error!("ignoring a foreign value: {e}"),
            }
        }
    }
    Ok(at.min(at_nodes))
}

fn upsert_node(cluster: &Cluster, id: &str, rec: NodeRecord) {
    if let Some(cell) = cluster.nodes.get(id) {
        let mut n = cell.lock();
        n.record = rec;
        n.refresh_state(Instant::now());
        return;
    }
    let id: Arc<str> = id.into();
    let keys = cluster.keys.node_keys(&id);
    cluster
        .nodes
        .insert(Arc::new(NodeCell::new(id, keys, rec, Instant::now())));
}

/// This coordinator just won the election with leader key revision `rev` (and does
/// not hold the fence yet): start
/// from the committed state, judge nodes afresh, and hand out versions of a term
/// no earlier leader or process used.
pub async fn took_office(cluster: &Cluster, store: &EtcdStore, rev: i64) {
    // Must not act on a map older than etcd's: read it again (the watch may lag),
    // node records included (not leading yet, so `reload` takes them). A failure
    // leaves the watched copy, which the fenced commits keep safe.
    if let Err(e) = reload(cluster, store).await {
        tracing::warn!("re-reading the state on election: {e}");
    }
    forget_health(cluster);
    cluster.warm_up();
    cluster.shards.versions.advance_term(rev as u64);
}

/// This coordinator stopped leading: what it learnt as leader goes stale now.
pub fn left_office(cluster: &Cluster) {
    forget_health(cluster);
}

fn forget_health(cluster: &Cluster) {
    let now = Instant::now();
    cluster
        .nodes
        .for_each(|cell| cell.lock().forget_health(now));
}
