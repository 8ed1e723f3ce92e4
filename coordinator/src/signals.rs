//! The shutdown signal every Torua binary uses: SIGTERM or SIGINT.

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
