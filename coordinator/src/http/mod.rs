//! The coordinator's HTTP/1.1 server: connection limits, header-read timeout,
//! graceful drain on shutdown. Routing lives in `routes`.

mod data;
mod respond;
mod routes;
mod shards;
mod views;

pub use respond::Resp;

use crate::cluster::Cluster;
use crate::metrics::Metrics;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify, Semaphore};

/// A client must send its request headers within this time (slowloris guard). hyper
/// also arms it while a kept-alive connection waits for its next request, so it is
/// the idle timeout too.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// In-flight requests get this long to finish once shutdown starts.
const DRAIN_GRACE: Duration = Duration::from_secs(5);
/// An evicted connection that has never delivered a request gets this long to close
/// by itself before it is dropped (it is dribbling header bytes).
const EVICT_GRACE: Duration = Duration::from_millis(200);

/// One open connection, as seen by the accept loop.
struct Slot {
    /// A request is being served (set when hyper calls the service, cleared when
    /// the handler returns).
    busy: AtomicBool,
    /// At least one request reached the service on this connection.
    served: AtomicBool,
    /// Milliseconds since `Conns::epoch` at which the connection last went idle.
    idle_since_ms: AtomicU64,
    evicting: AtomicBool,
    evict: Notify,
}

/// The open connections, so that at `max_connections` the one idle the longest can
/// be closed to make room: otherwise a few hundred idle sockets would hold every
/// slot for a whole header timeout while real agents wait in the backlog.
struct Conns {
    epoch: Instant,
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, Arc<Slot>>>,
}

impl Conns {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn add(&self) -> (u64, Arc<Slot>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let slot = Arc::new(Slot {
            busy: AtomicBool::new(false),
            served: AtomicBool::new(false),
            idle_since_ms: AtomicU64::new(self.now_ms()),
            evicting: AtomicBool::new(false),
            evict: Notify::new(),
        });
        lock(&self.open).insert(id, slot.clone());
        (id, slot)
    }

    fn remove(&self, id: u64) {
        lock(&self.open).remove(&id);
    }

    /// Asks an idle connection to close: one that never sent a request first (the
    /// likely hostile kind, sparing agents' kept-alive connections), then the one
    /// idle the longest. False if every connection is busy.
    fn evict_oldest_idle(&self) -> bool {
        let open = lock(&self.open);
        let victim = open
            .values()
            .filter(|s| !s.busy.load(Ordering::Relaxed) && !s.evicting.load(Ordering::Relaxed))
            .min_by_key(|s| {
                (
                    s.served.load(Ordering::Relaxed),
                    s.idle_since_ms.load(Ordering::Relaxed),
                )
            });
        match victim {
            Some(s) => {
                s.evicting.store(true, Ordering::Relaxed);
                // notify_one stores a permit, so a connection task that is not
                // waiting right now still sees it.
                s.evict.notify_one();
                true
            }
            None => false,
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Serves until `shutdown` resolves, then drains open connections.
pub async fn serve(
    cluster: Arc<Cluster>,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let max = cluster.cfg.max_connections;
    let limit = Arc::new(Semaphore::new(max));
    let conns = Arc::new(Conns {
        epoch: Instant::now(),
        next_id: AtomicU64::new(0),
        open: Mutex::new(HashMap::new()),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        // Accept only when a connection is actually waiting, then find it a slot:
        // beyond the limit, the rest keep waiting in the kernel backlog instead of
        // costing us memory.
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
        let permit = match limit.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                // At the limit: close the connection idle the longest (an idle
                // keep-alive, or one that never sent a byte) and take its slot. If
                // every connection is busy serving, wait for one to finish.
                let permit = loop {
                    let retry = if conns.evict_oldest_idle() {
                        EVICT_GRACE * 2
                    } else {
                        DRAIN_GRACE
                    };
                    tokio::select! {
                        _ = &mut shutdown => break None,
                        p = limit.clone().acquire_owned() => break p.ok(),
                        _ = tokio::time::sleep(retry) => {}
                    }
                };
                match permit {
                    Some(p) => p,
                    None => break,
                }
            }
        };
        let _ = stream.set_nodelay(true);
        spawn_connection(
            cluster.clone(),
            conns.clone(),
            stream,
            permit,
            stop_rx.clone(),
        );
    }
    let _ = stop_tx.send(true);
    // Every connection holds a permit until it ends: all permits back means drained.
    if tokio::time::timeout(
        DRAIN_GRACE,
        limit.acquire_many(u32::try_from(max).unwrap_or(u32::MAX)),
    )
    .await
    .is_err()
    {
        tracing::warn!("connections still open after {DRAIN_GRACE:?}; closing them");
    }
}

/// Serves one connection until it ends, is evicted, or the server stops.
fn spawn_connection(
    cluster: Arc<Cluster>,
    conns: Arc<Conns>,
    stream: tokio::net::TcpStream,
    permit: tokio::sync::OwnedSemaphorePermit,
    mut stop: watch::Receiver<bool>,
) {
    let (id, slot) = conns.add();
    let metrics: &Metrics = &cluster.metrics;
    metrics.connections_open.inc();
    let service = {
        let (cluster, slot, conns) = (cluster.clone(), slot.clone(), conns.clone());
        service_fn(move |req| {
            // Marked busy as soon as hyper has the request head, before the handler
            // first runs, so eviction never picks a connection with a request.
            slot.busy.store(true, Ordering::Relaxed);
            slot.served.store(true, Ordering::Relaxed);
            let (cluster, slot, conns) = (cluster.clone(), slot.clone(), conns.clone());
            async move {
                let resp = routes::handle(cluster, req).await;
                slot.idle_since_ms.store(conns.now_ms(), Ordering::Relaxed);
                slot.busy.store(false, Ordering::Relaxed);
                Ok::<_, std::convert::Infallible>(resp)
            }
        })
    };
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service);
    tokio::spawn(async move {
        tokio::pin!(conn);
        let evicted = tokio::select! {
            r = conn.as_mut() => {
                count_close(&cluster.metrics, r);
                None
            }
            _ = slot.evict.notified() => Some(true),
            _ = stop.wait_for(|s| *s) => Some(false),
        };
        if let Some(evicted) = evicted {
            // Graceful: an idle connection closes at once, a request in progress
            // finishes first (keep-alive off).
            conn.as_mut().graceful_shutdown();
            if evicted {
                cluster
                    .metrics
                    .connections_closed
                    .with_label_values(&["evicted"])
                    .inc();
                // One that never delivered a request and did not close is mid-way
                // through dribbling its headers: drop it rather than wait out the
                // header timeout.
                let r = tokio::time::timeout(EVICT_GRACE, conn.as_mut()).await;
                if r.is_err()
                    && (slot.served.load(Ordering::Relaxed) || slot.busy.load(Ordering::Relaxed))
                {
                    let _ = conn.await;
                }
            } else {
                let _ = conn.await;
            }
        }
        conns.remove(id);
        cluster.metrics.connections_open.dec();
        drop(permit);
    });
}

/// Counts a connection that ended on an error of its own (header timeout, bad
/// request head, I/O); clean closes by the client are not counted.
fn count_close(metrics: &Metrics, r: hyper::Result<()>) {
    let Err(e) = r else { return };
    let reason = if e.is_timeout() {
        "header_timeout"
    } else {
        "error"
    };
    metrics
        .connections_closed
        .with_label_values(&[reason])
        .inc();
    tracing::debug!("connection closed: {e}");
}
