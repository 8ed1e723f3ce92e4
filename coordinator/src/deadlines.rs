//! One timer per node, not a scan of every node per tick: a min-heap of deadlines
//! served by a single task. Heartbeats never touch the heap; when a node's timer fires
//! the task re-reads the node and, if heartbeats arrived meanwhile, simply re-arms it
//! from the newest one. A node has one live heap entry; a heartbeat replaces it (by
//! bumping the node's timer generation) only when the armed timer would fire later
//! than the node's new first deadline, which happens after a conviction, not in
//! steady state.

use crate::cluster::Cluster;
use crate::registry::NodeCell;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

struct Entry {
    at: Instant,
    cell: Arc<NodeCell>,
    gen: u32,
}

impl PartialEq for Entry {
    fn eq(&self, o: &Self) -> bool {
        self.at == o.at
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Entry {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.at.cmp(&o.at)
    }
}

/// Runs until `shutdown` resolves.
pub async fn run(
    cluster: Arc<Cluster>,
    mut rx: mpsc::UnboundedReceiver<(Arc<NodeCell>, u32)>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut heap: BinaryHeap<Reverse<Entry>> = BinaryHeap::new();
    loop {
        let next = heap.peek().map(|Reverse(e)| e.at);
        tokio::select! {
            _ = &mut shutdown => return,
            msg = rx.recv() => match msg {
                Some((cell, gen)) => {
                    if let Some((at, gen)) = evaluate(&cluster, &cell, gen, Duration::ZERO) {
                        heap.push(Reverse(Entry { at, cell, gen }));
                    }
                }
                None => return,
            },
            _ = sleep_until(next) => {
                let now = Instant::now();
                while heap.peek().is_some_and(|Reverse(e)| e.at <= now) {
                    let Reverse(e) = heap.pop().expect("peeked");
                    let lag = now.saturating_duration_since(e.at);
                    if let Some((at, gen)) = evaluate(&cluster, &e.cell, e.gen, lag) {
                        heap.push(Reverse(Entry { at, cell: e.cell, gen }));
                    }
                }
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// A timer firing this much later than scheduled means the coordinator itself was
/// not running (SIGSTOP, a VM pause, swap): the silence it sees is its own.
const STALL: Duration = Duration::from_millis(250);

/// Applies the detector's current view to the node; returns when to look again (and
/// the timer generation), or None when nothing can change before the next heartbeat.
/// `gen` is the generation the timer was armed with; `lag` is how late it fired.
fn evaluate(cluster: &Cluster, cell: &NodeCell, gen: u32, lag: Duration) -> Option<(Instant, u32)> {
    // One clock for both: tokio's, which is std's unless time is paused (tests).
    let now = Instant::now();
    let now_std = now.into_std();
    let mut n = cell.lock();
    if gen != n.timer_gen {
        // Superseded by an earlier timer, which is (or is about to be) armed too.
        return None;
    }
    let (Some(last), Some(det)) = (n.last_heartbeat, n.detector.clone()) else {
        n.timer = None;
        return None;
    };
    if n.removed || !cluster.leadership.is_leader() {
        // Only the leader judges nodes: a deposed one must not convict on silence
        // that is its own (its health view is forgotten when it steps down).
        n.timer = None;
        return None;
    }
    let elapsed_ms = now_std.saturating_duration_since(last).as_secs_f64() * 1000.0;
    if lag > STALL {
        // Heartbeats sent while we were stalled are still waiting in socket buffers:
        // give them as long as we were away (at least one interval) to be read before
        // judging anyone, instead of convicting every node at once.
        let grace = lag.max(Duration::from_millis(n.interval_ms));
        tracing::debug!(
            "node {}: timer fired {lag:?} late; re-checking in {grace:?}",
            cell.id
        );
        n.timer = Some(now_std + grace);
        return Some((now + grace, n.timer_gen));
    }
    let phi = det.phi(elapsed_ms);
    let policy = cluster.policy;
    n.health.on_tick(&policy, elapsed_ms, phi);
    if let Some(old) = n.refresh_state(now_std) {
        cluster.state_changed(cell, &n, old, now_std);
    }
    let deadlines = [
        det.elapsed_at(cluster.y_suspect),
        det.elapsed_at(cluster.y_convict),
        policy.heartbeat_timeout_ms,
    ];
    // +1 ms so a deadline that lands exactly on `now` is not re-evaluated in a loop.
    let next = deadlines
        .into_iter()
        .filter(|d| *d > elapsed_ms)
        .fold(f64::MAX, f64::min);
    if next == f64::MAX {
        n.timer = None;
        return None;
    }
    let wait = Duration::from_secs_f64((next - elapsed_ms + 1.0) / 1000.0);
    n.timer = Some(now_std + wait);
    Some((now + wait, n.timer_gen))
}

#[cfg(test)]
#[path = "deadlines_tests.rs"]
mod tests;
