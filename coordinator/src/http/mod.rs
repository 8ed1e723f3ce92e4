//! The coordinator's HTTP/1.1 server: connection limits, header-read timeout,
//! graceful drain on shutdown. Routing lives in `routes`.

mod data;
mod respond;
mod routes;
mod shards;
mod views;

pub use respond::Resp;

use crate::cluster::Cluster;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// A client must send its request headers within this time (slowloris guard).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// In-flight requests get this long to finish once shutdown starts.
const DRAIN_GRACE: Duration = Duration::from_secs(5);

/// Serves until `shutdown` resolves, then drains open connections.
pub async fn serve(
    cluster: Arc<Cluster>,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let limit = Arc::new(Semaphore::new(cluster.cfg.max_connections));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        // Take a connection slot before accepting: past the limit, new connections
        // wait in the kernel backlog instead of costing us memory.
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            p = limit.clone().acquire_owned() => p.expect("semaphore never closes"),
        };
        let (stream, _) = tokio::select! {
            _ = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let cluster = cluster.clone();
        let conn =
            http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .keep_alive(true)
                .serve_connection(
                    TokioIo::new(stream),
                    service_fn(move |req| {
                        let cluster = cluster.clone();
                        async move {
                            Ok::<_, std::convert::Infallible>(routes::handle(cluster, req).await)
                        }
                    }),
                );
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _ = conn.await;
            drop(permit);
        });
    }
    if tokio::time::timeout(DRAIN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after {DRAIN_GRACE:?}; closing them");
    }
}
