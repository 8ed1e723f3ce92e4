//! Durable coordinator state behind one trait, [`StateStore`], with two backends:
//! [`redb::Redb`] (the default: one coordinator, an embedded database under
//! `--data-dir`) and [`etcd::EtcdStore`] (several coordinators sharing one etcd, one
//! of them leader). Both hold the same things: the cluster's identity, the node
//! records (incarnation floors, address, capacity, drain and leaving flags), the
//! shard map with its epochs, and the term counter behind write versions.
//!
//! **Architecture Invariant:** a backend returns from a `put_*` only once the change
//! is durable, and with etcd only if this coordinator still held the leadership the
//! change was planned under (the write is fenced by the leader key's revision).

pub mod etcd;
pub mod redb;

use crate::shards::record::ShardRecord;
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use thiserror::Error;
use torua_protocol::Capacity;

pub use self::redb::RedbStore;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(String),
    #[error("corrupt record `{key}`: {message}")]
    Corrupt { key: String, message: String },
    /// This coordinator is not (or no longer) the leader: the change was refused,
    /// locally or by etcd's compare on the leader key.
    #[error("not committed: this coordinator is not the leader ({0})")]
    Fenced(String),
    #[error("etcd: {0}")]
    Etcd(String),
    /// The record changed in etcd since this coordinator read it.
    #[error("not committed: {0} changed in etcd since it was read")]
    Conflict(String),
}

/// One interface over both backends; every call is async (etcd is a network call,
/// redb's runs on the blocking pool).
pub trait StateStore: Send + Sync {
    /// The cluster's identity and layout, created on the first start.
    fn cluster_meta(
        &self,
        now_ms: u64,
        shards: u32,
        rf: u32,
    ) -> BoxFuture<'_, Result<ClusterMeta, StoreError>>;
    /// A term never handed out before, to any coordinator process: the high bits of
    /// write versions.
    fn next_term(&self) -> BoxFuture<'_, Result<u64, StoreError>>;
    fn load_nodes(&self) -> BoxFuture<'_, Result<Vec<(String, NodeRecord)>, StoreError>>;
    /// Writes (Some) or removes (None) node records, all or nothing.
    fn put_nodes(
        &self,
        batch: Vec<(String, Option<NodeRecord>)>,
    ) -> BoxFuture<'_, Result<(), StoreError>>;
    fn load_shards(&self) -> BoxFuture<'_, Result<Vec<ShardRecord>, StoreError>>;
    /// Commits shard records, all or nothing; returns once they are durable.
    fn put_shards(&self, records: Vec<ShardRecord>) -> BoxFuture<'_, Result<(), StoreError>>;
}

pub type SharedStore = Arc<dyn StateStore>;

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

pub(crate) fn decode<T: for<'de> Deserialize<'de>>(
    key: &str,
    bytes: &[u8],
) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        key: key.to_string(),
        message: e.to_string(),
    })
}
