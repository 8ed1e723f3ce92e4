//! The fencing token of a leadership: the etcd create revision of the leader key
//! this coordinator wrote, valid until a local deadline. Every etcd commit compares
//! the leader key against it, so a deposed leader's commit fails in etcd; the local
//! deadline makes the leader stop on its own clock before etcd expires its lease,
//! so it does not even try.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// Held by the sole coordinator of a redb store forever (revision 0, no deadline).
const SOLE: i64 = 0;

#[derive(Debug)]
pub struct Fence {
    /// The leader key's create revision while leading; -1 otherwise.
    rev: AtomicI64,
    deadline: Mutex<Option<Instant>>,
}

impl Fence {
    /// The fence of the only coordinator there is (redb): always held.
    pub fn sole() -> Fence {
        Fence {
            rev: AtomicI64::new(SOLE),
            deadline: Mutex::new(None),
        }
    }

    /// Not held: a coordinator sharing etcd starts as a candidate.
    pub fn unheld() -> Fence {
        Fence {
            rev: AtomicI64::new(-1),
            deadline: Mutex::new(None),
        }
    }

    /// The leader key's create revision, while this coordinator leads and its local
    /// deadline has not passed.
    pub fn current(&self) -> Option<i64> {
        self.current_at(Instant::now())
    }

    pub fn current_at(&self, now: Instant) -> Option<i64> {
        let rev = self.rev.load(Ordering::Acquire);
        if rev < 0 {
            return None;
        }
        match *self.deadline.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(d) if now >= d => None,
            _ => Some(rev),
        }
    }

    /// Leadership won with leader key revision `rev`, valid until `deadline`.
    pub fn hold(&self, rev: i64, deadline: Instant) {
        *self.deadline.lock().unwrap_or_else(|p| p.into_inner()) = Some(deadline);
        self.rev.store(rev, Ordering::Release);
    }

    /// A keep-alive was answered: the leadership holds until `deadline`.
    pub fn extend(&self, deadline: Instant) {
        let mut d = self.deadline.lock().unwrap_or_else(|p| p.into_inner());
        if d.is_some_and(|old| deadline > old) {
            *d = Some(deadline);
        }
    }

    /// Leadership lost or given up.
    pub fn release(&self) {
        self.rev.store(-1, Ordering::Release);
    }

    /// When the leadership lapses on this coordinator's own clock.
    pub fn deadline(&self) -> Option<Instant> {
        *self.deadline.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_fence_lapses_at_its_deadline_and_when_released() {
        let t0 = Instant::now();
        let f = Fence::unheld();
        assert_eq!(f.current_at(t0), None);
        f.hold(42, t0 + Duration::from_secs(2));
        assert_eq!(f.current_at(t0 + Duration::from_secs(1)), Some(42));
        assert_eq!(f.current_at(t0 + Duration::from_secs(2)), None);
        f.extend(t0 + Duration::from_secs(5));
        assert_eq!(f.current_at(t0 + Duration::from_secs(4)), Some(42));
        // A late answer to an older keep-alive never shortens the lease.
        f.extend(t0 + Duration::from_secs(3));
        assert_eq!(f.current_at(t0 + Duration::from_secs(4)), Some(42));
        f.release();
        assert_eq!(f.current_at(t0), None);
    }

    #[test]
    fn the_sole_coordinator_always_holds_it() {
        let f = Fence::sole();
        assert_eq!(
            f.current_at(Instant::now() + Duration::from_secs(1 << 30)),
            Some(0)
        );
    }
}
