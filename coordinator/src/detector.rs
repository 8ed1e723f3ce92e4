//! Phi accrual failure detector (Hayashibara et al.), as used by Akka and Cassandra,
//! over a bounded window of heartbeat inter-arrival times.
//!
//! phi depends only on `y = (elapsed - mean) / std`, so the elapsed time at which a
//! node crosses a phi threshold is `mean + y(threshold) * std`: the deadline of a node
//! is O(1) to compute, which lets the coordinator arm one timer per node instead of
//! scanning every node on every tick.

/// Inter-arrival samples kept per node. Small enough to stay well under the memory
/// budget per node, large enough to smooth scheduler jitter.
pub const WINDOW: usize = 32;

/// Floor for the standard deviation, as a fraction of the mean interval: a perfectly
/// regular sender would otherwise make any tiny delay look like a failure.
pub const MIN_STD_RATIO: f64 = 0.2;

#[derive(Debug, Clone)]
pub struct PhiDetector {
    samples: [u32; WINDOW],
    len: usize,
    next: usize,
    sum: u64,
    sum_sq: u64,
}

impl PhiDetector {
    /// Starts from the sender's declared interval so phi is meaningful from the
    /// second heartbeat on.
    pub fn new(interval_ms: u64) -> Self {
        let mut d = PhiDetector {
            samples: [0; WINDOW],
            len: 0,
            next: 0,
            sum: 0,
            sum_sq: 0,
        };
        d.record(interval_ms);
        d
    }

    pub fn record(&mut self, interval_ms: u64) {
        let x = interval_ms.min(u32::MAX as u64) as u32;
        if self.len == WINDOW {
            let old = self.samples[self.next] as u64;
            self.sum -= old;
            self.sum_sq -= old * old;
        } else {
            self.len += 1;
        }
        self.samples[self.next] = x;
        self.next = (self.next + 1) % WINDOW;
        self.sum += x as u64;
        self.sum_sq += (x as u64) * (x as u64);
    }

    pub fn mean_ms(&self) -> f64 {
        self.sum as f64 / self.len as f64
    }

    pub fn std_ms(&self) -> f64 {
        let mean = self.mean_ms();
        let var = (self.sum_sq as f64 / self.len as f64 - mean * mean).max(0.0);
        var.sqrt().max(mean * MIN_STD_RATIO).max(1.0)
    }

    /// Suspicion level after `elapsed_ms` without a heartbeat.
    pub fn phi(&self, elapsed_ms: f64) -> f64 {
        phi_of_y((elapsed_ms - self.mean_ms()) / self.std_ms())
    }

    /// Elapsed time (ms after the last heartbeat) at which phi reaches `y(threshold)`.
    pub fn elapsed_at(&self, y: f64) -> f64 {
        self.mean_ms() + y * self.std_ms()
    }
}

/// phi for a normalised delay `y`, with the logistic approximation of the normal CDF
/// that Akka uses (accurate to 1e-4 and never NaN).
pub fn phi_of_y(y: f64) -> f64 {
    let e = (-y * (1.5976 + 0.070566 * y * y)).exp();
    if y > 0.0 {
        -(e / (1.0 + e)).log10()
    } else {
        -(1.0 - 1.0 / (1.0 + e)).log10()
    }
}

/// Inverse of [`phi_of_y`] by bisection; computed once per threshold at start-up.
pub fn y_for_phi(phi: f64) -> f64 {
    let (mut lo, mut hi) = (-10.0f64, 50.0f64);
    for _ in 0..100 {
        let mid = (lo + hi) / 2.0;
        if phi_of_y(mid) < phi {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    hi
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phi_grows_with_silence() {
        let mut d = PhiDetector::new(1000);
        for _ in 0..10 {
            d.record(1000);
        }
        let table = [
            (500.0, 0.0, 0.5),
            (1000.0, 0.2, 0.4),
            (1600.0, 2.0, 4.0),
            (2200.0, 8.0, 40.0),
        ];
        for (elapsed, lo, hi) in table {
            let p = d.phi(elapsed);
            assert!(
                (lo..=hi).contains(&p),
                "phi({elapsed}) = {p}, want {lo}..={hi}"
            );
        }
    }

    #[test]
    fn inverse_matches_forward() {
        for phi in [1.0, 3.0, 8.0, 12.0] {
            let y = y_for_phi(phi);
            assert!((phi_of_y(y) - phi).abs() < 1e-6, "phi {phi}");
        }
        let d = PhiDetector::new(1000);
        let t = d.elapsed_at(y_for_phi(8.0));
        assert!((d.phi(t) - 8.0).abs() < 1e-6);
        // With 1 s heartbeats, conviction at phi 8 lands near 2 s: fast, yet tolerant of
        // a few hundred ms of jitter.
        assert!((1800.0..2300.0).contains(&t), "t = {t}");
    }

    #[test]
    fn window_is_bounded_and_adapts() {
        let mut d = PhiDetector::new(1000);
        for _ in 0..(WINDOW * 3) {
            d.record(250);
        }
        assert!((d.mean_ms() - 250.0).abs() < 1e-9);
        assert!(
            (d.std_ms() - 50.0).abs() < 1e-9,
            "floor applies: {}",
            d.std_ms()
        );
    }
}
