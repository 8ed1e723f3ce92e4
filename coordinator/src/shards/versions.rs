//! Write versions: they order the writes to a key on every node, so they must grow
//! across coordinator restarts whatever the wall clock says (an NTP step, a restored
//! VM snapshot, a replacement host). A version is a **term** in the high bits, bumped
//! and committed to the store at every coordinator start before anything is written,
//! and a counter in the low bits. A node refuses a write older than what it holds
//! (`superseded`, with the held version). A held version this process handed out
//! belongs to a newer concurrent write, which wins; only a version from outside
//! (data written before terms) makes the coordinator move its counter above it and
//! write again.
//!
//! With several coordinators sharing etcd, each process's term is an etcd revision
//! of its own (and a new leader's, its leader key's revision), so no two processes
//! share a term. A held version of another process's term is then a write this
//! process cannot order by its counter: it takes a fresh term above it instead.

use std::sync::atomic::{AtomicU64, Ordering};

/// Bits of the per-term counter: 2^40 writes per coordinator start.
pub const COUNTER_BITS: u32 = 40;

/// The version source of one coordinator process.
#[derive(Debug)]
pub struct Versions {
    last: AtomicU64,
    /// The terms this process has used (a handful: one per start and election).
    terms: std::sync::Mutex<Vec<u64>>,
}

impl Versions {
    /// Versions of `term` start above every version of earlier terms.
    pub fn new(term: u64) -> Versions {
        Versions {
            last: AtomicU64::new(term << COUNTER_BITS),
            terms: std::sync::Mutex::new(vec![term]),
        }
    }

    /// Moves to `term` if it is above the current one; later versions are of it.
    pub fn advance_term(&self, term: u64) {
        let mut terms = self.terms.lock().unwrap_or_else(|p| p.into_inner());
        if self.last.fetch_max(term << COUNTER_BITS, Ordering::AcqRel) < term << COUNTER_BITS {
            terms.push(term);
        }
    }

    /// Whether `version` is one this process handed out (of one of its terms, and
    /// not above the last it handed out).
    pub fn is_ours(&self, version: u64) -> bool {
        version <= self.last()
            && self
                .terms
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(&Self::term_of(version))
    }

    /// A version above every version handed out or observed before.
    pub fn next(&self) -> u64 {
        self.last.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// The newest version handed out or observed so far.
    pub fn last(&self) -> u64 {
        self.last.load(Ordering::Acquire)
    }

    /// A holder has `held` (a node refused a write as superseded): versions from
    /// now on are above it.
    pub fn observe(&self, held: u64) {
        self.last.fetch_max(held, Ordering::AcqRel);
    }

    pub fn term_of(version: u64) -> u64 {
        version >> COUNTER_BITS
    }
}

/// The versions of wall-clock time (`unix ms << 20`) that this coordinator used before
/// terms: only for the unsafe test fault that proves the history checker bites.
pub fn wall_clock_version(now_ms: u64) -> u64 {
    now_ms << 20
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_later_term_is_above_every_version_of_an_earlier_one() {
        let first = Versions::new(1);
        let mut last = 0;
        for _ in 0..1000 {
            let v = first.next();
            assert!(v > last, "strictly increasing");
            last = v;
        }
        let second = Versions::new(2);
        assert!(second.next() > last);
        assert_eq!(Versions::term_of(last), 1);
        assert_eq!(Versions::term_of(second.next()), 2);
    }

    #[test]
    fn an_observed_version_is_jumped_over_and_a_lower_one_ignored() {
        let v = Versions::new(1);
        let held = (5 << COUNTER_BITS) + 17;
        v.observe(held);
        assert_eq!(v.next(), held + 1);
        v.observe(3);
        assert_eq!(
            v.next(),
            held + 2,
            "observing an older version changes nothing"
        );
    }

    #[test]
    fn a_new_term_jumps_above_and_versions_of_others_are_not_ours() {
        let v = Versions::new(10);
        let mine = v.next();
        let other = (12 << COUNTER_BITS) + 5;
        assert!(v.is_ours(mine) && !v.is_ours(other));
        v.advance_term(13);
        let next = v.next();
        assert!(next > other && v.is_ours(next) && v.is_ours(mine));
        v.advance_term(11);
        assert!(v.next() > next, "an older term never takes versions back");
    }

    #[test]
    fn versions_are_unique_across_threads() {
        let v = std::sync::Arc::new(Versions::new(9));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let v = v.clone();
                std::thread::spawn(move || (0..1000).map(|_| v.next()).collect::<Vec<_>>())
            })
            .collect();
        let mut all: Vec<u64> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 4000);
    }
}
