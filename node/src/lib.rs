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
//! **Architecture Invariant:** with a key, nothing but the probes answers a caller
//! that cannot show this node's signature (or, for a snapshot, a ticket the
//! coordinator signed with it); without one, the node serves on loopback only unless
//! told `insecure_no_auth`.
//!
//! Code map: [`server`] accepts connections, [`api`] routes requests, [`auth`]
//! checks signed calls and pull tickets, [`store`] holds the shards, [`wire`] frames
//! records, [`persist`] logs them to disk, [`copy`] pulls a shard from another node,
//! [`metrics`] names every metric.

#![forbid(unsafe_code)]

pub mod api;
pub mod auth;
pub mod copy;
pub mod metrics;
pub mod persist;
pub mod server;
pub mod store;
pub mod wire;

#[cfg(test)]
mod tests;

#[cfg(test)]
mod auth_tests;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use torua_protocol::NodeKey;

use crate::auth::Auth;
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
    /// The keys calls must be signed with: this node's key, and during a rotation the
    /// previous one. Empty: the API is not authenticated (loopback only, unless
    /// `insecure_no_auth`).
    pub keys: Vec<NodeKey>,
    /// How far a call's `ts` may be from this node's clock.
    pub max_clock_skew: Duration,
    /// Serve without keys on a non-loopback address anyway.
    pub insecure_no_auth: bool,
}

impl Config {
    pub fn new(node_id: impl Into<String>) -> Self {
        Config {
            node_id: node_id.into(),
            data_dir: None,
            fsync: false,
            shutdown_grace: default_shutdown_grace(),
            keys: Vec::new(),
            max_clock_skew: default_max_clock_skew(),
            insecure_no_auth: false,
        }
    }
}

pub fn default_shutdown_grace() -> Duration {
    Duration::from_secs(10)
}

pub fn default_max_clock_skew() -> Duration {
    Duration::from_millis(torua_protocol::node_call::DEFAULT_MAX_SKEW_MS)
}

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("opening data directory: {0}")]
    Persist(#[from] PersistError),
    #[error("replay task failed: {0}")]
    Replay(#[from] tokio::task::JoinError),
    #[error(
        "refusing to serve the node API on {addr} without a key: anyone who can reach it \
         could reassign shards and write data. Give this node its key with \
         --key-file FILE (made by `torua keygen --node {node_id} > FILE; chmod 600 FILE`) \
         or --cluster-secret-file FILE (the coordinator's secret, mode 600), or pass \
         --insecure-no-auth to serve unauthenticated anyway"
    )]
    NoKey { addr: SocketAddr, node_id: String },
}

/// Serves the node API on `listener` until `shutdown` completes, then drains.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), NodeError> {
    let addr = listener.local_addr().ok();
    if config.keys.is_empty() {
        match addr {
            Some(addr) if !addr.ip().is_loopback() && !config.insecure_no_auth => {
                return Err(NodeError::NoKey {
                    addr,
                    node_id: config.node_id,
                })
            }
            _ => tracing::warn!(
                "no key given (--key-file or --cluster-secret-file): the node API is not \
                 authenticated; anyone who can reach {} can change this node's shards and data",
                addr.map_or("it".to_string(), |a| a.to_string())
            ),
        }
    }
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
    let auth = Auth::new(&config.node_id, config.keys.clone(), config.max_clock_skew);
    let authenticated = auth.enabled();
    let app = Arc::new(api::App::new(config.node_id.clone(), store, auth));
    match addr {
        Some(addr) => tracing::info!(%addr, node_id = %config.node_id, authenticated, "listening"),
        None => tracing::warn!("listening on an unknown address"),
    }
    server::serve(listener, app, shutdown, config.shutdown_grace).await;
    tracing::info!("stopped");
    Ok(())
}
