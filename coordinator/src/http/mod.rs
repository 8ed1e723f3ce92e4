//! The coordinator's HTTP/1.1 server, plain or over TLS: connection limits,
//! header-read (and TLS handshake) timeout, graceful drain on shutdown. Routing lives
//! in `routes`.

mod body;
mod data;
mod leader;
mod respond;
mod routes;
mod shards;
mod ui;
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
use torua_tls::ServerTls;

/// A client must send its request headers within this time (slowloris guard). hyper
/// also arms it while a kept-alive connection waits for its next request, so it is
/// the idle timeout too.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// In-flight requests get this long to finish once shutdown starts.
const DRAIN_GRACE: Duration = Duration::from_secs(5);
/// An evicted connection that has never delivered a request gets this long to close
/// by itself before it is dropped (it is dribbling header bytes).
const EVICT_GRACE: Duration = Duration::from_millis(200);
/// A request body this far behind the minimum rate makes its connection evictable.
/// (Senders that mean it send the body right after the head, at link speed.)
const BODY_STALL: Duration = Duration::from_millis(250);

/// One open connection, as seen by the accept loop.
struct Slot {
    /// The body of the request in progress, if one is being read.
    progress: Arc<body::Progress>,
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
    budget: Arc<body::Budget>,
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
            progress: Arc::new(body::Progress::new(self.epoch)),
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
        // Suspects first (connections that never sent a request, and ones whose
        // request body lags the minimum rate), then the kept-alive one idle the
        // longest. But while bodies are being read, one of them may soon lag:
        // rather wait for that than cut a client that keeps its connection
        // (a real agent between two heartbeats).
        let reading = open.values().any(|s| s.progress.in_body());
        let victim = open
            .values()
            .filter(|s| !s.evicting.load(Ordering::Relaxed))
            .filter_map(|s| {
                if let Some(since) = s.progress.behind(BODY_STALL) {
                    return Some(((false, since), s));
                }
                (!s.busy.load(Ordering::Relaxed)).then(|| {
                    let key = (
                        s.served.load(Ordering::Relaxed),
                        s.idle_since_ms.load(Ordering::Relaxed),
                    );
                    (key, s)
                })
            })
            .filter(|((served, _), _)| !(*served && reading))
            .min_by_key(|(key, _)| *key)
            .map(|(_, s)| s);
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

/// Serves until `shutdown` resolves, then drains open connections. With `tls`,
/// every connection is HTTPS.
pub async fn serve(
    cluster: Arc<Cluster>,
    listener: TcpListener,
    tls: Option<Arc<ServerTls>>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let max = cluster.cfg.max_connections;
    let limit = Arc::new(Semaphore::new(max));
    let conns = Arc::new(Conns {
        budget: Arc::new(body::Budget::new(
            cluster.cfg.max_inflight_body_bytes,
            cluster.cfg.body_timeout,
            cluster.cfg.body_min_rate,
            cluster
                .metrics
                .connections_closed
                .with_label_values(&["body_timeout"]),
        )),
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
                // every connection is busy serving, wait for one to finish, looking
                // again soon: a body may fall behind its pace meanwhile.
                let permit = loop {
                    let retry = if conns.evict_oldest_idle() {
                        EVICT_GRACE * 2
                    } else {
                        BODY_STALL
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
            tls.clone(),
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

/// Serves one connection until it ends, is evicted, or the server stops; with
/// `tls`, after a TLS handshake that must finish within the header-read timeout.
fn spawn_connection(
    cluster: Arc<Cluster>,
    conns: Arc<Conns>,
    stream: tokio::net::TcpStream,
    tls: Option<Arc<ServerTls>>,
    permit: tokio::sync::OwnedSemaphorePermit,
    mut stop: watch::Receiver<bool>,
) {
    let (id, slot) = conns.add();
    cluster.metrics.connections_open.inc();
    tokio::spawn(async move {
        match tls {
            None => drive(&cluster, &conns, &slot, &mut stop, stream).await,
            Some(tls) => {
                let handshake = tokio::select! {
                    r = tokio::time::timeout(HEADER_READ_TIMEOUT, handshake(&tls, stream)) => Some(r),
                    _ = slot.evict.notified() => None,
                    _ = stop.wait_for(|s| *s) => None,
                };
                match handshake {
                    Some(Ok(Ok(stream))) => drive(&cluster, &conns, &slot, &mut stop, stream).await,
                    Some(failed) => {
                        let reason = match failed {
                            Ok(Err(e)) => e.to_string(),
                            _ => format!("not done within {HEADER_READ_TIMEOUT:?}"),
                        };
                        tracing::debug!("TLS handshake failed: {reason}");
                        cluster
                            .metrics
                            .connections_closed
                            .with_label_values(&["tls_handshake"])
                            .inc();
                    }
                    None => {}
                }
            }
        }
        conns.remove(id);
        cluster.metrics.connections_open.dec();
        drop(permit);
    });
}

/// What a plain-HTTP client gets from an HTTPS listener, instead of a TLS alert it
/// would misread as "invalid HTTP version" (nginx does the same).
const PLAIN_HTTP_BODY: &str =
    r#"{"error":{"code":"malformed","message":"this port speaks HTTPS: use an https:// URL"}}"#;

/// The TLS handshake, after one look at the first byte: a TLS client starts with a
/// handshake record (0x16); anything else is answered in plain HTTP and closed.
async fn handshake(
    tls: &ServerTls,
    stream: tokio::net::TcpStream,
) -> std::io::Result<torua_tls::TlsStream<tokio::net::TcpStream>> {
    let mut first = [0u8; 1];
    let n = stream.peek(&mut first).await?;
    if n == 1 && first[0] != 0x16 {
        use tokio::io::AsyncWriteExt;
        let mut stream = stream;
        let answer = format!(
            "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\nconnection: close\r\n\
             content-length: {}\r\n\r\n{PLAIN_HTTP_BODY}",
            PLAIN_HTTP_BODY.len()
        );
        let _ = stream.write_all(answer.as_bytes()).await;
        let _ = stream.shutdown().await;
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "plain HTTP on the HTTPS listener",
        ));
    }
    tls.acceptor().accept(stream).await
}

/// Runs hyper's HTTP/1.1 state machine over `io` (a TCP or TLS stream).
async fn drive<I>(
    cluster: &Arc<Cluster>,
    conns: &Arc<Conns>,
    slot: &Arc<Slot>,
    stop: &mut watch::Receiver<bool>,
    io: I,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = {
        let (cluster, slot, conns) = (cluster.clone(), slot.clone(), conns.clone());
        service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(body::BodyCtx {
                progress: slot.progress.clone(),
                budget: conns.budget.clone(),
            });
            // Marked busy as soon as hyper has the request head, before the handler
            // first runs, so eviction never picks a connection with a request (unless
            // its body stalls).
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
        .serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let evicted = tokio::select! {
        r = conn.as_mut() => {
            count_close(&cluster.metrics, r);
            None
        }
        _ = slot.evict.notified() => Some(true),
        _ = stop.wait_for(|s| *s) => Some(false),
    };
    let Some(evicted) = evicted else { return };
    // Graceful: an idle connection closes at once, a request in progress finishes
    // first (keep-alive off).
    conn.as_mut().graceful_shutdown();
    if evicted {
        cluster
            .metrics
            .connections_closed
            .with_label_values(&["evicted"])
            .inc();
        // One that never delivered a request and did not close is mid-way through
        // dribbling its headers: drop it rather than wait out the header timeout.
        // So is one evicted mid-body, at once: its request cannot finish soon.
        if slot.progress.in_body() {
            return;
        }
        let r = tokio::time::timeout(EVICT_GRACE, conn.as_mut()).await;
        if r.is_err() && (slot.served.load(Ordering::Relaxed) || slot.busy.load(Ordering::Relaxed))
        {
            let _ = conn.await;
        }
    } else {
        let _ = conn.await;
    }
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
