//! `torua-agent`: a small sidecar beside a Torua storage node. It runs local checks
//! (http, tcp, exec, disk, process), aggregates them into liveness and readiness, and
//! pushes signed heartbeats to the coordinator every interval and at once on a status
//! change. It serves `/livez`, `/readyz` and `/metrics` and talks to systemd.
//!
//! The binary only parses the config and calls [`run`] with SIGTERM/SIGINT as the
//! shutdown future; tests call [`run_on`] with a bound listener and a oneshot.
//!
//! **Architecture Invariant:** the agent reports, the coordinator decides. Nothing here
//! judges a node's health beyond its own checks.

#![forbid(unsafe_code)]

pub mod checks;
pub mod config;
pub mod health;
pub mod heartbeat;
mod locate;
pub mod metrics;
pub mod notify;
mod procfile;
pub mod server;
pub mod telemetry;
#[cfg(test)]
mod testutil;

pub use config::{Cli, Config, ConfigError};

use sd_notify::NotifyState;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// Why the agent could not run.
#[derive(Debug, Error)]
pub enum AgentError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("coordinator TLS: {0}")]
    Tls(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Binds `config.listen` and runs the agent until `shutdown` resolves.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), AgentError> {
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| AgentError::Bind {
            addr: config.listen,
            source,
        })?;
    run_on(listener, config, shutdown).await
}

/// Runs the agent on an already bound listener until `shutdown` resolves, then stops
/// the checks, sends one `leaving` heartbeat and returns.
pub async fn run_on(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AgentError> {
    config
        .validate()
        .map_err(|(field, message)| ConfigError::Invalid {
            at: None,
            field,
            message,
        })?;
    let key = config.node_key()?;
    let client = checks::new_client();
    let coordinator = heartbeat::coordinator_client(&config).map_err(AgentError::Tls)?;
    let metrics = metrics::Metrics::new();
    let health = Arc::new(health::Health::new(&config.checks));

    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, node_id = %config.node_id, coordinator = %config.coordinator.join(","), "agent listening");
    }
    let probes = server::Probes {
        health: health.clone(),
        metrics: metrics.clone(),
    };
    let server = tokio::spawn(server::serve(listener, probes));

    let mut check_tasks = JoinSet::new();
    for (index, check) in config.checks.iter().enumerate() {
        let spec = check.probe().expect("validated check");
        let probe = checks::Probe::new(spec, client.clone());
        check_tasks.spawn(checks::run_check(
            index,
            check.clone(),
            probe,
            health.clone(),
            metrics.clone(),
        ));
    }

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let sender = heartbeat::Heartbeater::new(&config, key, coordinator, health.clone(), metrics);
    let heartbeats = tokio::spawn(sender.run(async {
        let _ = stop_rx.await;
    }));

    let mut watchdog = notify::watchdog_period().map(tokio::time::interval);
    let mut ready = false;
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = health.wait_first_round(), if !ready => {
                ready = true;
                tracing::info!("first check round done");
                notify::notify(&[NotifyState::Ready]);
            }
            _ = async { watchdog.as_mut().expect("guarded").tick().await }, if watchdog.is_some() => {
                notify::notify(&[NotifyState::Watchdog]);
            }
        }
    }

    tracing::info!("shutting down: stopping checks, sending a leaving heartbeat");
    notify::notify(&[NotifyState::Stopping]);
    check_tasks.shutdown().await;
    let _ = stop_tx.send(());
    let _ = heartbeats.await;
    server.abort();
    Ok(())
}

#[cfg(test)]
mod tests {
    /// Every module opens with a `//!` line saying what it is for.
    #[test]
    fn every_module_has_a_doc_line() {
        fn walk(dir: &std::path::Path, missing: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    walk(&path, missing);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let text = std::fs::read_to_string(&path).unwrap();
                    if !text.starts_with("//!") {
                        missing.push(path.display().to_string());
                    }
                }
            }
        }
        let mut missing = Vec::new();
        walk(
            concat!(env!("CARGO_MANIFEST_DIR"), "/src").as_ref(),
            &mut missing,
        );
        assert!(
            missing.is_empty(),
            "modules without a //! line: {missing:?}"
        );
    }
}
