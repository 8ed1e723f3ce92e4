//! `torua-node`: the reference sharded key-value storage node of Torua.
//!
//! It holds the shards the coordinator assigns to it, refuses requests that carry
//! another epoch than the shard's (fencing), and copies a shard from another node by
//! streaming that node's snapshot while live writes keep arriving.
//!
//! **Architecture Invariant:** the node never decides placement or versions. Epochs
//! and versions come from the coordinator; the node only enforces "newer version
//! wins" and "only the current epoch is served". Because applying a write is
//! idempotent and order-insensitive, a snapshot copy and concurrent live writes
//! converge to the same state whatever their interleaving.
//!
//! Code map: [`server`] accepts connections, [`api`] routes requests, [`store`]
//! holds the shards, [`wire`] frames records, [`persist`] logs them to disk,
//! [`copy`] pulls a shard from another node, [`metrics`] names every metric.

#![forbid(unsafe_code)]

pub mod api;
pub mod copy;
pub mod key;
pub mod metrics;
pub mod persist;
pub mod server;
pub mod store;
pub mod wire;

#[cfg(test)]
mod tests;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::persist::{Persist, PersistError};
use crate::store::Store;

/// Everything `run` needs; `main` builds it from flags and environment.
#[derive(Debug, Clone)]
pub struct Config {
    /// Reported by `/health`.
    pub node_id: String,
    /// When set, shards are logged here and replayed on start; otherwise memory only.
    pub data_dir: Option<PathBuf>,
    /// fsync every log append (slower; survives power loss, not just a crash).
    pub fsync: bool,
    /// How long in-flight requests may run after shutdown is signalled.
    pub shutdown_grace: Duration,
}

impl Config {
    pub fn new(node_id: impl Into<String>) -> Self {
        Config {
            node_id: node_id.into(),
            data_dir: None,
            fsync: false,
            shutdown_grace: default_shutdown_grace(),
        }
    }
}

pub fn default_shutdown_grace() -> Duration {
    Duration::from_secs(10)
}

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("opening data directory: {0}")]
    Persist(#[from] PersistError),
    #[error("replay task failed: {0}")]
    Replay(#[from] tokio::task::JoinError),
}

/// Serves the node API on `listener` until `shutdown` completes, then drains.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), NodeError> {
    let store = match config.data_dir.clone() {
        Some(dir) => {
            let fsync = config.fsync;
            let (persist, recovered) =
                tokio::task::spawn_blocking(move || Persist::open(&dir, fsync)).await??;
            let store = Store::open(persist, recovered);
            tracing::info!(shards = store.shard_count(), dir = %config.data_dir.as_ref().unwrap().display(), "replayed data directory");
            store
        }
        None => Store::in_memory(),
    };
    let app = Arc::new(api::App::new(config.node_id.clone(), store));
    match listener.local_addr() {
        Ok(addr) => tracing::info!(%addr, node_id = %config.node_id, "listening"),
        Err(e) => tracing::warn!(error = %e, "listening on an unknown address"),
    }
    server::serve(listener, app, shutdown, config.shutdown_grace).await;
    tracing::info!("stopped");
    Ok(())
}
