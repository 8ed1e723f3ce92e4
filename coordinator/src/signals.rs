//! The shutdown signal every Torua binary uses (SIGTERM or SIGINT), and SIGHUP,
//! which re-reads the listener's TLS certificate.

use crate::cluster::Cluster;
use std::sync::Arc;
use torua_tls::ServerTls;

/// Resolves on the first SIGTERM or SIGINT.
pub async fn terminate() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("install SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// Re-reads the TLS certificate and key on every SIGHUP until `stop` resolves, the
/// way cert-manager or certbot expect to hand over a renewed certificate. A failed
/// reload keeps the certificate in force and says why.
pub async fn reload_on_sighup(
    tls: Arc<ServerTls>,
    cluster: Arc<Cluster>,
    stop: impl std::future::Future<Output = ()>,
) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("cannot watch SIGHUP, TLS certificate reload is off: {e}");
            return;
        }
    };
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = hup.recv() => {}
        }
        let result = match tls.reload() {
            Ok(()) => {
                tracing::info!(
                    "SIGHUP: reloaded TLS certificate {}",
                    tls.cert_file().display()
                );
                "ok"
            }
            Err(e) => {
                tracing::error!(
                    "SIGHUP: TLS certificate not reloaded, the previous one stays: {e}"
                );
                "error"
            }
        };
        cluster
            .metrics
            .tls_reloads
            .with_label_values(&[result])
            .inc();
    }
}
