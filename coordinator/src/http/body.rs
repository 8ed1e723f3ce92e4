//! Request bodies, read with a size limit, a deadline and a shared memory budget:
//! an oversized body is refused with 413 before it is buffered; a body that
//! arrives slower than the minimum rate is cut with 408 (Apache's mod_reqtimeout
//! rule: a base deadline, extended per byte received); and when the bodies of all
//! requests in flight would exceed the budget, the newcomer gets 503 `overloaded`
//! with `Retry-After` instead of memory.

use super::respond::{error, Resp};
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{header, Request};
use prometheus::IntCounter;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use torua_protocol::ErrorCode;

/// Budget accounting unit: permits are KiB, so a `u32` of them covers any budget.
const UNIT: usize = 1024;

/// What the server lends every request for reading its body (a request
/// extension; absent in unit tests, which read without limits).
#[derive(Clone)]
pub struct BodyCtx {
    pub progress: Arc<Progress>,
    pub budget: Arc<Budget>,
}

/// A connection's body reading, watched by the connection limit: a connection
/// whose body has fallen behind the minimum rate is as evictable as an idle one.
pub struct Progress {
    epoch: Instant,
    in_body: AtomicBool,
    started_ms: AtomicU64,
    received: AtomicU64,
    min_rate: AtomicU64,
}

impl Progress {
    pub fn new(epoch: Instant) -> Progress {
        Progress {
            epoch,
            in_body: AtomicBool::new(false),
            started_ms: AtomicU64::new(0),
            received: AtomicU64::new(0),
            min_rate: AtomicU64::new(1),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn start(&self, min_rate: u64) {
        self.started_ms.store(self.now_ms(), Ordering::Relaxed);
        self.received.store(0, Ordering::Relaxed);
        self.min_rate.store(min_rate.max(1), Ordering::Relaxed);
        self.in_body.store(true, Ordering::Relaxed);
    }

    fn advanced(&self, bytes: usize) {
        self.received.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// When the body being read began, if it is at least `slack` behind the
    /// minimum rate (bytes received buy time at that rate from its start): such a
    /// sender is holding a connection, not using it.
    pub fn behind(&self, slack: Duration) -> Option<u64> {
        if !self.in_body.load(Ordering::Relaxed) {
            return None;
        }
        let started = self.started_ms.load(Ordering::Relaxed);
        let earned_ms = self.received.load(Ordering::Relaxed).saturating_mul(1000)
            / self.min_rate.load(Ordering::Relaxed);
        let late_ms = self
            .now_ms()
            .saturating_sub(started.saturating_add(earned_ms));
        (late_ms >= slack.as_millis() as u64).then_some(started)
    }

    pub fn in_body(&self) -> bool {
        self.in_body.load(Ordering::Relaxed)
    }
}

/// The shared budget of request-body bytes in memory, and the pace bodies must
/// keep.
pub struct Budget {
    bytes: Arc<Semaphore>,
    /// Time allowed to a body before any byte counts.
    pub timeout: Duration,
    /// Bytes per second that earn more time.
    pub min_rate: u64,
    /// `torua_http_connections_closed_total{reason="body_timeout"}`; refusals for
    /// the budget are counted as `torua_http_errors_total{code="overloaded"}`.
    pub timed_out: IntCounter,
}

impl Budget {
    pub fn new(
        max_bytes: usize,
        timeout: Duration,
        min_rate: u64,
        timed_out: IntCounter,
    ) -> Budget {
        Budget {
            bytes: Arc::new(Semaphore::new(max_bytes.div_ceil(UNIT))),
            timeout,
            min_rate: min_rate.max(1),
            timed_out,
        }
    }

    fn take(&self, bytes: usize) -> Option<OwnedSemaphorePermit> {
        let units = u32::try_from(bytes.div_ceil(UNIT)).ok()?;
        self.bytes.clone().try_acquire_many_owned(units).ok()
    }
}

/// Body bytes that keep their share of the budget until the last clone drops.
struct Held {
    bytes: BytesMut,
    _budget: Vec<OwnedSemaphorePermit>,
}

impl AsRef<[u8]> for Held {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

fn overloaded() -> Resp {
    let mut r = error(
        ErrorCode::Overloaded,
        "too many request bodies in flight; retry shortly",
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    r
}

/// Marks the connection as reading a body until dropped.
struct Reading<'a>(Option<&'a Progress>);

impl Drop for Reading<'_> {
    fn drop(&mut self) {
        if let Some(p) = self.0 {
            p.in_body.store(false, Ordering::Relaxed);
        }
    }
}

/// Reads at most `limit` bytes; a larger body is refused without buffering it.
pub async fn read_body(req: Request<Incoming>, limit: usize) -> Result<Bytes, Resp> {
    let ctx = req.extensions().get::<BodyCtx>().cloned();
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(len) = declared.filter(|&len| len > limit as u64) {
        // Read (and drop) a modestly oversized body first: most clients only read
        // the answer once they have sent everything, and would otherwise see a
        // broken pipe instead of the 413.
        if len <= 2 * limit as u64 + (1 << 20) {
            let mut body = req.into_body();
            while let Some(Ok(_)) = body.frame().await {}
        }
        return Err(error(
            ErrorCode::TooLarge,
            format!("body is {len} bytes, the limit is {limit}"),
        ));
    }
    let declared = declared.map_or(0, |l| l as usize);
    let mut permits = Vec::new();
    if let (Some(ctx), true) = (&ctx, declared > 0) {
        match ctx.budget.take(declared) {
            Some(p) => permits.push(p),
            None => return Err(overloaded()),
        }
    }
    let _reading = Reading(ctx.as_ref().map(|c| {
        c.progress.start(c.budget.min_rate);
        &*c.progress
    }));
    let started = tokio::time::Instant::now();
    let mut paid = declared;
    let mut buf = BytesMut::with_capacity(declared.min(limit));
    let mut body = req.into_body();
    loop {
        let frame = match &ctx {
            None => body.frame().await,
            Some(c) => {
                let earned = Duration::from_secs_f64(buf.len() as f64 / c.budget.min_rate as f64);
                match tokio::time::timeout_at(started + c.budget.timeout + earned, body.frame())
                    .await
                {
                    Ok(f) => f,
                    Err(_) => {
                        c.budget.timed_out.inc();
                        return Err(error(
                            ErrorCode::Timeout,
                            format!(
                                "the body arrived too slowly: {} bytes in {:.1}s (at least {} bytes/s after the first {:?})",
                                buf.len(),
                                started.elapsed().as_secs_f64(),
                                c.budget.min_rate,
                                c.budget.timeout
                            ),
                        ));
                    }
                }
            }
        };
        let Some(frame) = frame else { break };
        let frame = frame.map_err(|e| {
            error(
                ErrorCode::Malformed,
                format!("could not read the body: {e}"),
            )
        })?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        if buf.len() + data.len() > limit {
            return Err(error(
                ErrorCode::TooLarge,
                format!("body exceeds the limit of {limit} bytes"),
            ));
        }
        if let Some(c) = &ctx {
            c.progress.advanced(data.len());
            // A body with no length declared pays as it comes.
            let total = buf.len() + data.len();
            if total > paid {
                match c.budget.take(total - paid) {
                    Some(p) => permits.push(p),
                    None => return Err(overloaded()),
                }
                paid = total;
            }
        }
        buf.extend_from_slice(&data);
    }
    if permits.is_empty() {
        return Ok(buf.freeze());
    }
    Ok(Bytes::from_owner(Held {
        bytes: buf,
        _budget: permits,
    }))
}
