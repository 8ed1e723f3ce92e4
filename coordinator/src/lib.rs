//! torua-coordinator: verifies signed heartbeats, turns them into node health with a
//! phi accrual failure detector plus a hard timeout and hysteresis, persists the node
//! registry in an embedded database, and serves the admin API, `/metrics`, and the
//! `torua` CLI.
//!
//! Entry point for embedding and tests: [`run`], which takes any future as the
//! shutdown signal. Data flow of one heartbeat: `http::routes` → `ingest` (auth,
//! decode, replay, health) → `registry` cell; the `deadlines` task convicts silent
//! nodes; `persist` group-commits registry changes to `store`.
//!
//! **Architecture Invariant:** only this crate decides node health; agents report.

#![forbid(unsafe_code)]

pub mod cli;
pub mod cluster;
pub mod config;
pub mod datapath;
pub mod deadlines;
pub mod detector;
pub mod health;
pub mod http;
pub mod ingest;
pub mod metrics;
pub mod nodeclient;
pub mod notify;
pub mod persist;
pub mod placement;
pub mod reconcile;
pub mod registry;
pub mod reported;
pub mod secrets;
pub mod shardmap;
pub mod shards;
pub mod signals;
pub mod store;
pub mod telemetry;

use cluster::{unix_ms, Cluster};
use config::Config;
use std::sync::Arc;
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

#[derive(Debug, Error)]
pub enum RunError {
    #[error(transparent)]
    Secret(#[from] secrets::SecretError),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Tls(#[from] torua_tls::TlsError),
}

/// Runs the coordinator on `listener` until `shutdown` resolves.
pub async fn run(
    cfg: Config,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), RunError> {
    let keys = secrets::KeyRing::load(
        &cfg.cluster_secret_file,
        cfg.previous_secret_file.as_deref(),
    )?;
    let admin_token = cfg
        .admin_token_file
        .as_deref()
        .map(secrets::read_token_file)
        .transpose()?;
    let tls = cfg
        .tls
        .as_ref()
        .map(|f| torua_tls::ServerTls::load(&f.cert, &f.key).map(Arc::new))
        .transpose()?;
    let db = Arc::new(store::Store::open(&cfg.data_dir)?);
    let meta = db.cluster_meta(unix_ms(), cfg.shards, cfg.replication_factor)?;
    if (meta.shards, meta.replication_factor) != (cfg.shards, cfg.replication_factor) {
        tracing::warn!(
            "cluster was created with {} shards × {}; ignoring the configured {} × {}",
            meta.shards,
            meta.replication_factor,
            cfg.shards,
            cfg.replication_factor
        );
    }
    let records = db.load_nodes()?;
    let shard_set = shards::ShardSet::load(
        db.clone(),
        meta.shards,
        meta.replication_factor as usize,
        unix_ms(),
    )?;
    tracing::info!(
        "cluster {} opened {} with {} known nodes",
        meta.cluster_id,
        cfg.data_dir.display(),
        records.len()
    );
    let (persist, writer) = persist::spawn(db);
    let (schedule_tx, schedule_rx) = mpsc::unbounded_channel();
    let cluster = Arc::new(Cluster::new(
        cfg,
        keys,
        meta,
        admin_token,
        persist,
        schedule_tx,
        records,
        shard_set,
    ));

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let deadlines = tokio::spawn(deadlines::run(
        cluster.clone(),
        schedule_rx,
        stopped(stop_rx.clone()),
    ));
    let watchdog = tokio::spawn(notify::watchdog_loop(stopped(stop_rx.clone())));
    let reconciler = tokio::spawn(reconcile::run(cluster.clone(), stopped(stop_rx.clone())));
    let reloader = tls.clone().map(|tls| {
        tokio::spawn(signals::reload_on_sighup(
            tls,
            cluster.clone(),
            stopped(stop_rx.clone()),
        ))
    });
    tracing::info!(
        "listening on {}://{}",
        if tls.is_some() { "https" } else { "http" },
        listener
            .local_addr()
            .map_or_else(|e| e.to_string(), |a| a.to_string())
    );
    notify::ready();

    let server = http::serve(cluster.clone(), listener, tls, stopped(stop_rx));
    tokio::pin!(server);
    tokio::select! {
        _ = &mut server => {}
        _ = shutdown => {
            tracing::info!("shutting down");
            notify::stopping();
            let _ = stop_tx.send(true);
            server.await;
        }
    }
    let _ = stop_tx.send(true);
    let _ = deadlines.await;
    let _ = watchdog.await;
    let _ = reconciler.await;
    if let Some(r) = reloader {
        let _ = r.await;
    }
    // Dropping the last handle lets the writer commit what is queued, then end.
    drop(cluster);
    let _ = writer.await;
    Ok(())
}
