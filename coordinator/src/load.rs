//! The load signal: nodes count, per shard, the reads and writes they served and
//! their bytes (cumulative counters in `GET /v1/shards`); the coordinator samples
//! them, turns each pair of samples into rates, and smooths each rate as the median
//! of the last [`WINDOW`] (TiKV PD's filter: one burst or one slow sample moves
//! nothing). Pure bookkeeping; the sampling task is `load_sampler.rs`, and the
//! figures are shown by `/v1/nodes`, `/v1/shards` and metrics.

use crate::shards::balance::Load;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Instant;

/// Rates kept per series: the median of this many.
pub const WINDOW: usize = 5;

/// A node's cumulative counters for one shard.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub reads: u64,
    pub writes: u64,
    pub read_bytes: u64,
    pub write_bytes: u64,
}

#[derive(Debug, Default)]
struct Series {
    last: Option<(Instant, Counters)>,
    rates: VecDeque<Load>,
}

/// Every (node, shard) series.
#[derive(Debug, Default)]
pub struct LoadBook {
    series: HashMap<String, HashMap<u32, Series>>,
}

fn rate(now: u64, before: u64, secs: f64) -> f64 {
    now.saturating_sub(before) as f64 / secs
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

impl LoadBook {
    /// Records what `node` reported at `at`. Shards it no longer reports are
    /// forgotten for it; a counter that went back (the node restarted) starts the
    /// series afresh rather than yield a negative or huge rate.
    pub fn observe(&mut self, node: &str, at: Instant, shards: &[(u32, Counters)]) {
        let held = self.series.entry(node.to_string()).or_default();
        held.retain(|id, _| shards.iter().any(|(s, _)| s == id));
        for (id, c) in shards {
            let s = held.entry(*id).or_default();
            if let Some((then, was)) = s.last {
                let secs = at.saturating_duration_since(then).as_secs_f64();
                let went_back = c.reads < was.reads
                    || c.writes < was.writes
                    || c.read_bytes < was.read_bytes
                    || c.write_bytes < was.write_bytes;
                if went_back {
                    s.rates.clear();
                } else if secs > 0.0 {
                    if s.rates.len() == WINDOW {
                        s.rates.pop_front();
                    }
                    s.rates.push_back(Load {
                        reads: rate(c.reads, was.reads, secs),
                        writes: rate(c.writes, was.writes, secs),
                        read_bytes: rate(c.read_bytes, was.read_bytes, secs),
                        write_bytes: rate(c.write_bytes, was.write_bytes, secs),
                    });
                }
            }
            s.last = Some((at, *c));
        }
    }

    /// Drops a node (removed, or no longer serving).
    pub fn forget(&mut self, node: &str) {
        self.series.remove(node);
    }

    /// Nodes with any series.
    pub fn nodes(&self) -> impl Iterator<Item = &str> {
        self.series.keys().map(String::as_str)
    }

    /// Per node, per shard, the median of each rate over the window (series with
    /// no rate yet are left out).
    pub fn smoothed(&self) -> BTreeMap<String, BTreeMap<u32, Load>> {
        self.series
            .iter()
            .map(|(node, shards)| {
                let per_shard = shards
                    .iter()
                    .filter(|(_, s)| !s.rates.is_empty())
                    .map(|(id, s)| {
                        let kind = |f: fn(&Load) -> f64| median(s.rates.iter().map(f).collect());
                        let load = Load {
                            reads: kind(|l| l.reads),
                            writes: kind(|l| l.writes),
                            read_bytes: kind(|l| l.read_bytes),
                            write_bytes: kind(|l| l.write_bytes),
                        };
                        (*id, load)
                    })
                    .collect();
                (node.clone(), per_shard)
            })
            .collect()
    }
}

/// Smoothed loads: per node, per shard.
pub type Loads = BTreeMap<String, BTreeMap<u32, Load>>;

/// The coordinator's load book behind a lock, and the last smoothed view,
/// published after each sampling sweep so readers (views, metrics, the balancer)
/// never wait for one.
#[derive(Default)]
pub struct LoadState {
    book: std::sync::Mutex<LoadBook>,
    published: std::sync::Mutex<std::sync::Arc<Loads>>,
}

impl LoadState {
    pub fn observe(&self, node: &str, at: Instant, shards: &[(u32, Counters)]) {
        self.lock().observe(node, at, shards);
    }

    pub fn forget(&self, node: &str) {
        self.lock().forget(node);
    }

    /// Recomputes the smoothed view (after a sweep over the nodes).
    pub fn publish(&self) {
        let view = std::sync::Arc::new(self.lock().smoothed());
        *self.published.lock().unwrap_or_else(|p| p.into_inner()) = view;
    }

    /// The last published view.
    pub fn snapshot(&self) -> std::sync::Arc<Loads> {
        self.published
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LoadBook> {
        self.book.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A node's load: the sum over its shards.
pub fn node_total(shards: &BTreeMap<u32, Load>) -> Load {
    let mut total = Load::default();
    for l in shards.values() {
        total.add(l);
    }
    total
}

/// Each shard's load: the sum over the nodes that served it.
pub fn shard_totals(loads: &Loads) -> BTreeMap<u32, Load> {
    let mut out: BTreeMap<u32, Load> = BTreeMap::new();
    for (id, l) in loads.values().flatten() {
        out.entry(*id).or_default().add(l);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn c(reads: u64, writes: u64) -> Counters {
        Counters {
            reads,
            writes,
            read_bytes: reads * 100,
            write_bytes: writes * 1000,
        }
    }

    #[test]
    fn rates_are_the_median_of_the_last_five_and_a_burst_moves_nothing() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut book = LoadBook::default();
        // 100 reads/s, one 10x burst in the middle, 10 writes/s.
        let reads = [0, 100, 200, 300, 1300, 1400, 1500];
        for (i, r) in reads.iter().enumerate() {
            book.observe("n1", at(i as u64), &[(7, c(*r, 10 * i as u64))]);
        }
        let l = book.smoothed()["n1"][&7];
        assert_eq!((l.reads, l.writes), (100.0, 10.0), "{l:?}");
        assert_eq!((l.read_bytes, l.write_bytes), (10_000.0, 10_000.0));
        // One sample is not a rate yet.
        book.observe("n2", at(0), &[(7, c(5, 5))]);
        assert!(book.smoothed()["n2"].is_empty());
    }

    #[test]
    fn totals_per_node_and_per_shard() {
        let l = |reads: f64, writes: f64| Load {
            reads,
            writes,
            read_bytes: reads * 10.0,
            write_bytes: 0.0,
        };
        let loads: Loads = [
            (
                "n1".to_string(),
                [(1, l(10.0, 1.0)), (2, l(5.0, 0.0))].into(),
            ),
            ("n2".to_string(), [(1, l(2.0, 1.0))].into()),
            ("n3".to_string(), BTreeMap::new()),
        ]
        .into();
        assert_eq!(node_total(&loads["n1"]), l(15.0, 1.0));
        assert_eq!(node_total(&loads["n3"]), Load::default());
        let shards = shard_totals(&loads);
        assert_eq!(shards.len(), 2);
        assert_eq!((shards[&1], shards[&2]), (l(12.0, 2.0), l(5.0, 0.0)));
    }

    #[test]
    fn a_restarted_node_starts_afresh_and_unreported_shards_are_forgotten() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut book = LoadBook::default();
        book.observe("n1", at(0), &[(1, c(1000, 0)), (2, c(0, 0))]);
        book.observe("n1", at(1), &[(1, c(2000, 0)), (2, c(0, 50))]);
        assert_eq!(book.smoothed()["n1"][&1].reads, 1000.0);
        // Counters back to zero: no negative rate, no stale one either.
        book.observe("n1", at(2), &[(1, c(10, 0))]);
        let s = book.smoothed();
        assert!(!s["n1"].contains_key(&1), "restarted series: {s:?}");
        assert!(
            !s["n1"].contains_key(&2),
            "shard 2 no longer reported: {s:?}"
        );
        book.observe("n1", at(3), &[(1, c(20, 0))]);
        assert_eq!(book.smoothed()["n1"][&1].reads, 10.0);
        book.forget("n1");
        assert!(book.smoothed().is_empty());
    }
}
