//! The default backend, for one coordinator: an embedded database (redb) under
//! `--data-dir`. A restart on the same directory loses nothing that was committed.
//! Its calls block (fsync), so the [`StateStore`] side runs them on the blocking pool.

use super::{decode, ClusterMeta, NodeRecord, StateStore, StoreError};
use crate::shards::record::ShardRecord;
use futures_util::future::BoxFuture;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::path::Path;
use std::sync::Arc;

const NODES: TableDefinition<&str, &[u8]> = TableDefinition::new("nodes");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const SHARDS: TableDefinition<u32, &[u8]> = TableDefinition::new("shards");

fn db_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Db(e.to_string())
}

pub struct RedbStore {
    db: Database,
}

impl RedbStore {
    pub fn open(dir: &Path) -> Result<RedbStore, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Db(format!("create {}: {e}", dir.display())))?;
        let db = Database::create(dir.join("coordinator.redb")).map_err(db_err)?;
        let tx = db.begin_write().map_err(db_err)?;
        tx.open_table(NODES).map_err(db_err)?;
        tx.open_table(META).map_err(db_err)?;
        tx.open_table(SHARDS).map_err(db_err)?;
        tx.commit().map_err(db_err)?;
        Ok(RedbStore { db })
    }

    /// Returns the cluster metadata, creating it on first start.
    pub fn cluster_meta(
        &self,
        now_ms: u64,
        shards: u32,
        replication_factor: u32,
    ) -> Result<ClusterMeta, StoreError> {
        let tx = self.db.begin_write().map_err(db_err)?;
        let meta = {
            let mut t = tx.open_table(META).map_err(db_err)?;
            let existing = t
                .get("cluster")
                .map_err(db_err)?
                .map(|v| decode::<ClusterMeta>("cluster", v.value()));
            match existing {
                Some(m) => m?,
                None => {
                    let m = ClusterMeta {
                        cluster_id: format!("{:016x}", fastrand::u64(..)),
                        created_ms: now_ms,
                        shards,
                        replication_factor,
                    };
                    t.insert("cluster", serde_json::to_vec(&m).unwrap().as_slice())
                        .map_err(db_err)?;
                    m
                }
            }
        };
        tx.commit().map_err(db_err)?;
        Ok(meta)
    }

    /// Bumps and commits the coordinator's term (the high bits of write versions);
    /// returns the new one. Called once per start, before anything is written, so
    /// every term is used by one coordinator process only.
    pub fn next_term(&self) -> Result<u64, StoreError> {
        let tx = self.db.begin_write().map_err(db_err)?;
        let term = {
            let mut t = tx.open_table(META).map_err(db_err)?;
            let last = t
                .get("term")
                .map_err(db_err)?
                .map(|v| decode::<u64>("term", v.value()))
                .transpose()?
                .unwrap_or(0);
            let term = last + 1;
            t.insert("term", serde_json::to_vec(&term).unwrap().as_slice())
                .map_err(db_err)?;
            term
        };
        tx.commit().map_err(db_err)?;
        Ok(term)
    }

    pub fn load_nodes(&self) -> Result<Vec<(String, NodeRecord)>, StoreError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let t = tx.open_table(NODES).map_err(db_err)?;
        let mut out = Vec::new();
        for row in t.iter().map_err(db_err)? {
            let (k, v) = row.map_err(db_err)?;
            out.push((k.value().to_string(), decode(k.value(), v.value())?));
        }
        Ok(out)
    }

    /// Writes several node records in one transaction (group commit).
    pub fn put_nodes(&self, batch: &[(String, Option<NodeRecord>)]) -> Result<(), StoreError> {
        let tx = self.db.begin_write().map_err(db_err)?;
        {
            let mut t = tx.open_table(NODES).map_err(db_err)?;
            for (id, rec) in batch {
                match rec {
                    Some(r) => {
                        t.insert(id.as_str(), serde_json::to_vec(r).unwrap().as_slice())
                            .map_err(db_err)?;
                    }
                    None => {
                        t.remove(id.as_str()).map_err(db_err)?;
                    }
                }
            }
        }
        tx.commit().map_err(db_err)
    }
}

impl RedbStore {
    pub fn load_shards(&self) -> Result<Vec<ShardRecord>, StoreError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let t = tx.open_table(SHARDS).map_err(db_err)?;
        let mut out = Vec::new();
        for row in t.iter().map_err(db_err)? {
            let (k, v) = row.map_err(db_err)?;
            out.push(decode(&k.value().to_string(), v.value())?);
        }
        Ok(out)
    }

    /// Commits shard records; returns only once they are durable (write-ahead: the
    /// coordinator acts on a change only after this).
    pub fn put_shards(&self, records: &[ShardRecord]) -> Result<(), StoreError> {
        let tx = self.db.begin_write().map_err(db_err)?;
        {
            let mut t = tx.open_table(SHARDS).map_err(db_err)?;
            for r in records {
                t.insert(r.id, serde_json::to_vec(r).unwrap().as_slice())
                    .map_err(db_err)?;
            }
        }
        tx.commit().map_err(db_err)
    }
}

/// Runs a blocking store call off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Db(format!("store task: {e}")))?
}

/// The redb store as a [`StateStore`]: always the sole authority, so nothing is
/// fenced.
pub struct Redb(pub Arc<RedbStore>);

impl StateStore for Redb {
    fn cluster_meta(
        &self,
        now_ms: u64,
        shards: u32,
        rf: u32,
    ) -> BoxFuture<'_, Result<ClusterMeta, StoreError>> {
        let db = self.0.clone();
        Box::pin(blocking(move || db.cluster_meta(now_ms, shards, rf)))
    }

    fn next_term(&self) -> BoxFuture<'_, Result<u64, StoreError>> {
        let db = self.0.clone();
        Box::pin(blocking(move || db.next_term()))
    }

    fn load_nodes(&self) -> BoxFuture<'_, Result<Vec<(String, NodeRecord)>, StoreError>> {
        let db = self.0.clone();
        Box::pin(blocking(move || db.load_nodes()))
    }

    fn put_nodes(
        &self,
        batch: Vec<(String, Option<NodeRecord>)>,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        let db = self.0.clone();
        Box::pin(blocking(move || db.put_nodes(&batch)))
    }

    fn load_shards(&self) -> BoxFuture<'_, Result<Vec<ShardRecord>, StoreError>> {
        let db = self.0.clone();
        Box::pin(blocking(move || db.load_shards()))
    }

    fn put_shards(&self, records: Vec<ShardRecord>) -> BoxFuture<'_, Result<(), StoreError>> {
        let db = self.0.clone();
        Box::pin(blocking(move || db.put_shards(&records)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use torua_protocol::Capacity;

    #[test]
    fn survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let rec = NodeRecord {
            addr: "http://127.0.0.1:7401".into(),
            incarnation: 7,
            admin_drain: true,
            leaving: false,
            capacity: Capacity::default(),
            first_seen_ms: 1,
        };
        let id = {
            let s = RedbStore::open(dir.path()).unwrap();
            s.put_nodes(&[
                ("n1".into(), Some(rec.clone())),
                ("n2".into(), Some(rec.clone())),
            ])
            .unwrap();
            s.put_nodes(&[("n2".into(), None)]).unwrap();
            s.cluster_meta(5, 64, 2).unwrap().cluster_id
        };
        let s = RedbStore::open(dir.path()).unwrap();
        assert_eq!(s.load_nodes().unwrap(), vec![("n1".to_string(), rec)]);
        let meta = s.cluster_meta(99, 8, 3).unwrap();
        assert_eq!((meta.cluster_id, meta.created_ms, meta.shards), (id, 5, 64));
    }

    #[test]
    fn every_start_gets_a_new_term_that_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let first = RedbStore::open(dir.path()).unwrap().next_term().unwrap();
        let second = RedbStore::open(dir.path()).unwrap().next_term().unwrap();
        let s = RedbStore::open(dir.path()).unwrap();
        let third = s.next_term().unwrap();
        assert_eq!((first, second, third), (1, 2, 3));
        assert_eq!(s.next_term().unwrap(), 4);
    }
}
