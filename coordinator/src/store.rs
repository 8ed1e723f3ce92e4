//! Durable coordinator state in an embedded database (redb): the node registry and
//! cluster metadata. A restart on the same `--data-dir` loses nothing that was
//! committed.

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use std::path::Path;
use thiserror::Error;
use torua_protocol::Capacity;

pub use crate::shardmap::ShardRecord;

const NODES: TableDefinition<&str, &[u8]> = TableDefinition::new("nodes");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const SHARDS: TableDefinition<u32, &[u8]> = TableDefinition::new("shards");

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(String),
    #[error("corrupt record `{key}`: {message}")]
    Corrupt { key: String, message: String },
}

fn db_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Db(e.to_string())
}

/// What the coordinator remembers about a node across restarts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub addr: String,
    /// Floor for replay protection: the highest incarnation ever accepted.
    pub incarnation: u64,
    #[serde(default)]
    pub admin_drain: bool,
    #[serde(default)]
    pub leaving: bool,
    #[serde(default)]
    pub capacity: Capacity,
    pub first_seen_ms: u64,
}

/// Cluster identity and shard layout, written once at creation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterMeta {
    pub cluster_id: String,
    pub created_ms: u64,
    pub shards: u32,
    pub replication_factor: u32,
}

pub struct Store {
    db: Database,
}

impl Store {
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Db(format!("create {}: {e}", dir.display())))?;
        let db = Database::create(dir.join("coordinator.redb")).map_err(db_err)?;
        let tx = db.begin_write().map_err(db_err)?;
        tx.open_table(NODES).map_err(db_err)?;
        tx.open_table(META).map_err(db_err)?;
        tx.open_table(SHARDS).map_err(db_err)?;
        tx.commit().map_err(db_err)?;
        Ok(Store { db })
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

impl Store {
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

fn decode<T: for<'de> Deserialize<'de>>(key: &str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        key: key.to_string(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
            let s = Store::open(dir.path()).unwrap();
            s.put_nodes(&[
                ("n1".into(), Some(rec.clone())),
                ("n2".into(), Some(rec.clone())),
            ])
            .unwrap();
            s.put_nodes(&[("n2".into(), None)]).unwrap();
            s.cluster_meta(5, 64, 2).unwrap().cluster_id
        };
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.load_nodes().unwrap(), vec![("n1".to_string(), rec)]);
        let meta = s.cluster_meta(99, 8, 3).unwrap();
        assert_eq!((meta.cluster_id, meta.created_ms, meta.shards), (id, 5, 64));
    }
}
