//! torua-coordinator: verifies signed heartbeats, turns them into node health with a
//! phi accrual failure detector plus a hard timeout and hysteresis (and its own
//! evidence of reaching each node), keeps the registry and the shard map in a store
//! (embedded redb for one coordinator, or etcd shared by several with one elected,
//! fenced leader), serves the data path, the admin API, `/metrics`, and the `torua`
//! CLI.
//!
//! Entry point for embedding and tests: [`run`], which takes any future as the
//! shutdown signal. Data flow of one heartbeat: `http::routes` → `ingest` (auth,
//! decode, replay, health) → `registry` cell; the `deadlines` task convicts silent
//! nodes; `persist` group-commits registry changes to `store`.
//!
//! **Architecture Invariant:** only this crate decides node health; agents report.

#![forbid(unsafe_code)]

pub mod auth;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod datapath;
pub mod deadlines;
pub mod detector;
pub mod events;
pub mod faults;
pub mod gray;
pub mod health;
pub mod http;
pub mod ingest;
pub mod leader;
pub mod load;
pub mod load_sampler;
pub mod metrics;
pub mod nodeclient;
pub mod notify;
pub mod persist;
pub mod reach;
pub mod registry;
pub mod removal;
pub mod reported;
pub mod secrets;
pub mod shards;
pub mod signals;
pub mod store;
pub mod telemetry;
pub mod wall;

use cluster::{unix_ms, Cluster};
use config::Config;
use std::sync::Arc;
use std::time::Duration;
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
    let tokens = secrets::Tokens::load(
        cfg.admin_token_file.as_deref(),
        cfg.client_token_file.as_deref(),
    )?;
    let missing = cfg.missing_tokens();
    if !missing.is_empty() && !cfg.listen.ip().is_loopback() {
        // Only with insecure_no_auth (config refuses it otherwise).
        tracing::warn!(
            "listening on {} with {} unset (insecure_no_auth): whoever reaches the port \
             may call those routes",
            cfg.listen,
            missing.join(" and ")
        );
    }
    let tls = cfg
        .tls
        .as_ref()
        .map(|f| torua_tls::ServerTls::load(&f.cert, &f.key).map(Arc::new))
        .transpose()?;
    let metrics = metrics::Metrics::new();
    let me = leader::Peer {
        id: cfg.coordinator_id.clone(),
        url: cfg.advertise_url.clone(),
    };
    tokio::pin!(shutdown);
    let (db, leadership, etcd): (store::SharedStore, _, _) = match &cfg.etcd {
        None => {
            let db = store::RedbStore::open(&cfg.data_dir)?;
            metrics.ha.is_leader.set(1);
            let db: store::SharedStore = Arc::new(store::redb::Redb(Arc::new(db)));
            (db, Arc::new(leader::Leadership::sole(me)), None)
        }
        Some(e) => {
            let lead = Arc::new(leader::Leadership::shared(me, e.lease_ttl));
            let Some(client) = connect_etcd(&e.endpoints, &mut shutdown).await else {
                return Ok(());
            };
            let s = Arc::new(store::etcd::EtcdStore::new(
                client,
                &e.prefix,
                lead.fence.clone(),
                metrics.ha.clone(),
            ));
            (s.clone() as store::SharedStore, lead, Some(s))
        }
    };
    let Some(loaded) = load_state(db.as_ref(), &cfg, etcd.is_some(), &mut shutdown).await? else {
        return Ok(());
    };
    let Loaded {
        meta,
        records,
        term,
        shards: shard_records,
    } = loaded;
    if (meta.shards, meta.replication_factor) != (cfg.shards, cfg.replication_factor) {
        tracing::warn!(
            "cluster was created with {} shards × {}; ignoring the configured {} × {}",
            meta.shards,
            meta.replication_factor,
            cfg.shards,
            cfg.replication_factor
        );
    }
    let mut shard_set = shards::map::ShardSet::new(
        db.clone(),
        shard_records,
        meta.shards,
        meta.replication_factor as usize,
        term,
    );
    let (reach_tx, reach_rx) = mpsc::unbounded_channel();
    shard_set.client = nodeclient::NodeClient::new(
        reach::ReachPolicy {
            unreachable_after: cfg.unreachable_after,
            reachable_after: cfg.recover_after,
        },
        Some(reach_tx),
    );
    match &cfg.etcd {
        None => tracing::info!(
            "cluster {} opened {} with {} known nodes (term {term})",
            meta.cluster_id,
            cfg.data_dir.display(),
            records.len()
        ),
        Some(e) => tracing::info!(
            "cluster {} in etcd {:?} under {} with {} known nodes (term {term}); coordinator {}",
            meta.cluster_id,
            e.endpoints,
            e.prefix,
            records.len(),
            cfg.coordinator_id
        ),
    }
    let (persist, writer) = persist::spawn(db);
    let (schedule_tx, schedule_rx) = mpsc::unbounded_channel();
    let mut cluster = Cluster::new(
        cfg,
        keys,
        meta,
        tokens,
        persist,
        schedule_tx,
        records,
        shard_set,
        metrics,
        leadership,
    );
    cluster.test_fault = faults::from_env();
    let cluster = Arc::new(cluster);

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
    let reconciler = tokio::spawn(
        shards::reconciler::Reconciler::new(cluster.clone()).run(stopped(stop_rx.clone())),
    );
    let gray_apply = tokio::spawn(gray::apply(cluster.clone(), reach_rx));
    let prober = tokio::spawn(gray::probe(cluster.clone(), stopped(stop_rx.clone())));
    // Load is sampled (and shown) even with balancing off: the figures are what an
    // operator needs to decide whether to turn it on.
    let load_sampler = Some(tokio::spawn(load_sampler::run(
        cluster.clone(),
        stopped(stop_rx.clone()),
    )));
    // The election ends last, after the node records queued while the server
    // drained are committed: only a leader's commits count.
    let (resign_tx, resign_rx) = watch::channel(false);
    let ha_tasks = etcd.map(|s| {
        let ttl = cluster
            .cfg
            .etcd
            .as_ref()
            .map_or(Duration::from_secs(3), |e| e.lease_ttl);
        (
            tokio::spawn(leader::election::run(
                cluster.clone(),
                s.clone(),
                ttl,
                stopped(resign_rx),
            )),
            tokio::spawn(leader::follow::run(
                cluster.clone(),
                s,
                stopped(stop_rx.clone()),
            )),
        )
    });
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
        _ = &mut shutdown => {
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
    let _ = prober.await;
    if let Some(s) = load_sampler {
        let _ = s.await;
    }
    if let Some((election, follow)) = ha_tasks {
        if let Err(e) = cluster.persist.flush().await {
            tracing::warn!("flushing node records before resigning: {e}");
        }
        let _ = resign_tx.send(true);
        // The election task resigns on its way out, so a peer takes over at once.
        let _ = election.await;
        let _ = follow.await;
    }
    if let Some(r) = reloader {
        let _ = r.await;
    }
    // Its channel's senders live in node clients that copy tasks may still hold;
    // nothing more is applied now, and it must let go of the cluster.
    gray_apply.abort();
    let _ = gray_apply.await;
    // Dropping the last handle lets the writer commit what is queued, then end.
    drop(cluster);
    let _ = writer.await;
    Ok(())
}

/// Connects to etcd, retrying with a log line every few seconds while it is
/// unreachable (a coordinator started before its etcd waits for it, as
/// Kubernetes' API server does); None if told to shut down meanwhile.
async fn connect_etcd(
    endpoints: &[String],
    shutdown: &mut std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
) -> Option<etcd_client::Client> {
    loop {
        match store::etcd::connect(endpoints).await {
            Ok(c) => return Some(c),
            Err(e) => tracing::warn!("etcd unreachable ({e}); retrying in 2s"),
        }
        tokio::select! {
            _ = shutdown.as_mut() => return None,
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}

struct Loaded {
    meta: store::ClusterMeta,
    records: Vec<(String, store::NodeRecord)>,
    term: u64,
    shards: Vec<shards::record::ShardRecord>,
}

/// Reads the durable state; with etcd, retries while etcd is unreachable. A
/// corrupt or foreign value is an error either way (it names its key).
async fn load_state(
    db: &dyn store::StateStore,
    cfg: &Config,
    retry: bool,
    shutdown: &mut std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
) -> Result<Option<Loaded>, RunError> {
    loop {
        let attempt = async {
            let meta = db
                .cluster_meta(unix_ms(), cfg.shards, cfg.replication_factor)
                .await?;
            let records = db.load_nodes().await?;
            // Committed before anything is written: no write of this process can
            // carry a version of an earlier one, whatever the wall clock says.
            let term = db.next_term().await?;
            let shards = db.load_shards().await?;
            Ok::<_, store::StoreError>(Loaded {
                meta,
                records,
                term,
                shards,
            })
        };
        match attempt.await {
            Ok(l) => return Ok(Some(l)),
            Err(e @ store::StoreError::Etcd(_)) if retry => {
                tracing::warn!("reading the cluster state from etcd: {e}; retrying in 2s")
            }
            Err(e) => return Err(e.into()),
        }
        tokio::select! {
            _ = shutdown.as_mut() => return Ok(None),
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}
