//! Client writes in flight, per key, and what reads saw while they were.
//!
//! A write goes to every holder at once, so while it is in flight some holders may
//! have it and others not yet. A read may still ask any holder (a frozen primary
//! must not hold reads up), provided it never returns something older than what a
//! read that already finished returned. So while a key has writes in flight, every
//! read that returns records the version it returned (the key's *floor*), and a
//! read that began meanwhile refuses an answer below the floor it found at its
//! start. Once the key's last write ends, every holder in the map has it (or was
//! evicted before the client heard "ok"), and the entry goes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// The newest version any read of a key returned while the writes it is shared
/// with were in flight.
#[derive(Clone, Debug, Default)]
pub struct Floor(Arc<AtomicU64>);

impl Floor {
    /// Whether an answer at `version` may be returned: not older than one a read
    /// that already ended returned.
    pub fn admits(&self, version: u64) -> bool {
        version >= self.0.load(Ordering::Acquire)
    }

    /// Whether `other` is this floor (the same writes in flight).
    pub fn same(&self, other: &Floor) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

#[derive(Default)]
struct Entry {
    writers: u32,
    floor: Floor,
}

/// The keys of one shard with writes of this coordinator in flight.
#[derive(Default)]
pub struct InFlight {
    keys: Mutex<HashMap<Box<str>, Entry>>,
    /// How many keys `keys` holds, kept under its lock: reads (the hot path) skip
    /// the lock while no write of the shard is in flight, which is most of the time.
    live: AtomicUsize,
}

/// Marks a key as being written until dropped.
pub struct Writing<'a> {
    inflight: &'a InFlight,
    key: &'a str,
}

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        let mut keys = self.inflight.lock();
        if let Some(e) = keys.get_mut(self.key) {
            e.writers -= 1;
            if e.writers == 0 {
                keys.remove(self.key);
                self.inflight.live.store(keys.len(), Ordering::SeqCst);
            }
        }
    }
}

impl InFlight {
    fn lock(&self) -> MutexGuard<'_, HashMap<Box<str>, Entry>> {
        self.keys.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// No write of this shard in flight. A write registering right after this
    /// answered is ordered after the read asking, as it would be had the read taken
    /// the lock first.
    fn idle(&self) -> bool {
        self.live.load(Ordering::SeqCst) == 0
    }

    /// Marks `key` as being written until the guard drops.
    pub fn writing<'a>(&'a self, key: &'a str) -> Writing<'a> {
        let mut keys = self.lock();
        keys.entry(key.into()).or_default().writers += 1;
        self.live.store(keys.len(), Ordering::SeqCst);
        drop(keys);
        Writing {
            inflight: self,
            key,
        }
    }

    /// The floor of `key`'s writes in flight now, if any.
    pub fn floor(&self, key: &str) -> Option<Floor> {
        if self.idle() {
            return None;
        }
        self.lock().get(key).map(|e| e.floor.clone())
    }

    /// A read of `key` is about to return `version`: raises the floor of the key's
    /// writes in flight, if any. Must happen before the client hears the answer.
    pub fn returned(&self, key: &str, version: u64) {
        if self.idle() {
            return;
        }
        let keys = self.lock();
        if let Some(e) = keys.get(key) {
            e.floor.0.fetch_max(version, Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_floor_lives_while_its_writes_do_and_only_rises() {
        let f = InFlight::default();
        assert!(f.floor("k").is_none() && f.idle(), "no write, no floor");
        f.returned("k", 9);
        let w1 = f.writing("k");
        let floor = f.floor("k").expect("a write is in flight");
        assert!(floor.admits(0), "nothing returned yet: anything goes");
        f.returned("k", 7);
        f.returned("k", 5);
        assert!(floor.admits(7) && !floor.admits(6), "the highest stays");
        let w2 = f.writing("k");
        assert!(
            f.floor("k").unwrap().same(&floor),
            "writes overlapping share one"
        );
        assert!(f.floor("other").is_none());
        drop(w1);
        assert!(
            f.floor("k").unwrap().same(&floor),
            "one write still in flight"
        );
        let w_other = f.writing("other");
        drop(w2);
        assert!(f.floor("k").is_none(), "the last write took it");
        assert!(!f.idle(), "another key is still being written");
        drop(w_other);
        assert!(f.idle(), "no write left: reads skip the lock");
        let _w3 = f.writing("k");
        assert!(f.floor("k").unwrap().admits(0), "a new write starts afresh");
        assert!(
            floor.admits(7) && !floor.admits(6),
            "a read holding the old one keeps it"
        );
    }
}
