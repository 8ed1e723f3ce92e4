//! Per-shard key-value maps with coordinator-assigned versions, epochs and fencing.
//!
//! **Invariant:** a write applies only if its version is greater than the stored
//! entry's (tombstones included). That makes applying a snapshot and applying live
//! writes commute, so a copy can run while writes keep arriving.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;
use torua_protocol::node_api::{Role, ShardInfo};

use crate::persist::{Assignment, Persist, PersistError, ShardLog};
use crate::wire::Record;

/// A key's state; `value: None` is a tombstone, kept so copies propagate deletes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub value: Option<Bytes>,
    pub version: u64,
}

/// The version rule: last writer wins by version; equal versions are duplicates.
pub fn should_apply(existing: Option<&Entry>, version: u64) -> bool {
    existing.is_none_or(|e| version > e.version)
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Fence {
    #[error("shard {0} not held")]
    NotHeld(u32),
    #[error(
        "stale epoch: request carries epoch {request} but shard {shard} is at epoch {current}"
    )]
    Stale {
        shard: u32,
        request: u64,
        current: u64,
    },
    #[error("epoch ahead: assignment not received yet (request carries epoch {request}, shard {shard} is at epoch {current})")]
    Ahead {
        shard: u32,
        request: u64,
        current: u64,
    },
}

/// Data requests must carry exactly the shard's current epoch.
pub fn fence(shard: u32, current: u64, request: u64) -> Result<(), Fence> {
    match request.cmp(&current) {
        std::cmp::Ordering::Less => Err(Fence::Stale {
            shard,
            request,
            current,
        }),
        std::cmp::Ordering::Greater => Err(Fence::Ahead {
            shard,
            request,
            current,
        }),
        std::cmp::Ordering::Equal => Ok(()),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Fence(#[from] Fence),
    #[error("key {key:?}: version {version} is older than the held version {held}")]
    Superseded {
        key: String,
        version: u64,
        held: u64,
    },
    #[error(transparent)]
    Persist(#[from] PersistError),
}

/// Client data calls this copy served since it was taken here (created, reset, or
/// the node restarted): the coordinator's load signal. Plain numbers, not atomics:
/// every data call already holds the shard's lock, and an add under it costs less
/// than an atomic one. Copies (snapshots out, pulls in) are not client load and do
/// not count.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Served {
    /// `GET`s of a key that passed the fence, found or not.
    pub reads: u64,
    /// `PUT`s and `DELETE`s of a key that passed the fence, applied or not (a
    /// duplicate or superseded write costs a lookup all the same).
    pub writes: u64,
    /// Value bytes answered (keys not included).
    pub read_bytes: u64,
    /// Value bytes received (keys not included; a delete carries none).
    pub write_bytes: u64,
}

#[derive(Debug)]
struct Shard {
    epoch: u64,
    role: Role,
    entries: BTreeMap<String, Entry>,
    live_keys: u64,
    live_bytes: u64,
    served: Served,
    log: Option<ShardLog>,
    /// Set when the shard is deleted, for writers that already hold its `Arc`.
    dropped: bool,
}

impl Shard {
    fn new(epoch: u64, role: Role, log: Option<ShardLog>) -> Self {
        Shard {
            epoch,
            role,
            entries: BTreeMap::new(),
            live_keys: 0,
            live_bytes: 0,
            served: Served::default(),
            log,
            dropped: false,
        }
    }

    fn info(&self, id: u32) -> ShardInfo {
        ShardInfo {
            id,
            epoch: self.epoch,
            role: self.role,
            keys: self.live_keys,
            bytes: self.live_bytes,
            reads: self.served.reads,
            writes: self.served.writes,
            read_bytes: self.served.read_bytes,
            write_bytes: self.served.write_bytes,
        }
    }

    fn held(&self, id: u32) -> Result<(), Fence> {
        if self.dropped {
            Err(Fence::NotHeld(id))
        } else {
            Ok(())
        }
    }

    /// Applies in memory only; the caller has already logged the record.
    fn apply_mem(&mut self, r: Record) {
        let weight = |k: &str, e: &Entry| e.value.as_ref().map(|v| (k.len() + v.len()) as u64);
        let new = Entry {
            value: r.value,
            version: r.version,
        };
        if let Some(w) = weight(&r.key, &new) {
            self.live_keys += 1;
            self.live_bytes += w;
        }
        if let Some(old) = self.entries.get(&r.key) {
            if let Some(w) = weight(&r.key, old) {
                self.live_keys -= 1;
                self.live_bytes -= w;
            }
        }
        self.entries.insert(r.key, new);
    }

    /// Version rule, write-ahead log, then memory. Returns how many records applied.
    fn apply(&mut self, records: Vec<Record>) -> Result<usize, PersistError> {
        // Reduce the batch to its highest version per key first, so the log and
        // memory agree whatever order duplicates arrived in.
        let mut best: BTreeMap<String, Record> = BTreeMap::new();
        for r in records {
            if best.get(&r.key).is_none_or(|b| r.version > b.version) {
                best.insert(r.key.clone(), r);
            }
        }
        let winners: Vec<Record> = best
            .into_values()
            .filter(|r| should_apply(self.entries.get(&r.key), r.version))
            .collect();
        if let Some(log) = &mut self.log {
            if !winners.is_empty() {
                log.append(&winners.iter().collect::<Vec<_>>())?;
            }
        }
        let n = winners.len();
        for r in winners {
            self.apply_mem(r);
        }
        Ok(n)
    }

    fn clear(&mut self) -> Result<(), PersistError> {
        if let Some(log) = &mut self.log {
            log.truncate()?;
        }
        self.entries.clear();
        self.live_keys = 0;
        self.live_bytes = 0;
        // A reset shard is taken afresh (a copy target): its load starts over too.
        self.served = Served::default();
        Ok(())
    }
}

/// Totals for the gauges.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    pub keys: u64,
    pub bytes: u64,
    pub primary: u64,
    pub replica: u64,
}

/// All shards of this node. Lock order: the map lock, then at most one shard lock at
/// a time; data requests take only the map read lock, briefly, then the shard lock.
#[derive(Debug, Default)]
pub struct Store {
    shards: RwLock<BTreeMap<u32, Arc<Mutex<Shard>>>>,
    persist: Option<Persist>,
}

impl Store {
    pub fn in_memory() -> Self {
        Self::default()
    }

    /// Opens a durable store and replays it.
    pub fn open(persist: Persist, recovered: Vec<crate::persist::Recovered>) -> Self {
        let mut shards = BTreeMap::new();
        for r in recovered {
            let mut s = Shard::new(r.assignment.epoch, r.assignment.role, None);
            for rec in r.records {
                if should_apply(s.entries.get(&rec.key), rec.version) {
                    s.apply_mem(rec);
                }
            }
            s.log = Some(r.log);
            shards.insert(r.assignment.id, Arc::new(Mutex::new(s)));
        }
        Store {
            shards: RwLock::new(shards),
            persist: Some(persist),
        }
    }

    /// Whether operations may block on disk (callers then move them off the runtime).
    pub fn durable(&self) -> bool {
        self.persist.is_some()
    }

    fn shard(&self, id: u32) -> Result<Arc<Mutex<Shard>>, Fence> {
        self.shards
            .read()
            .expect("lock")
            .get(&id)
            .cloned()
            .ok_or(Fence::NotHeld(id))
    }

    fn save_assignments(&self, map: &BTreeMap<u32, Arc<Mutex<Shard>>>) -> Result<(), PersistError> {
        let Some(p) = &self.persist else {
            return Ok(());
        };
        let list = map
            .iter()
            .map(|(&id, s)| {
                let s = s.lock().expect("lock");
                Assignment {
                    id,
                    epoch: s.epoch,
                    role: s.role,
                }
            })
            .collect();
        p.write_assignments(list)
    }

    /// `PUT /v1/shards/{id}`: create, move to a newer epoch, or (same epoch) change
    /// role; `reset` clears the data first.
    pub fn assign(
        &self,
        id: u32,
        epoch: u64,
        role: Role,
        reset: bool,
    ) -> Result<ShardInfo, StoreError> {
        let mut map = self.shards.write().expect("lock");
        if let Some(cell) = map.get(&id).cloned() {
            let mut s = cell.lock().expect("lock");
            if epoch < s.epoch {
                return Err(Fence::Stale {
                    shard: id,
                    request: epoch,
                    current: s.epoch,
                }
                .into());
            }
            // Clear before recording the new epoch: a crash in between must never
            // leave stale data under the new epoch.
            if reset {
                s.clear()?;
            }
            let old = (s.epoch, s.role);
            s.epoch = epoch;
            s.role = role;
            drop(s);
            if let Err(e) = self.save_assignments(&map) {
                let mut s = cell.lock().expect("lock");
                (s.epoch, s.role) = old;
                return Err(e.into());
            }
            let info = cell.lock().expect("lock").info(id);
            return Ok(info);
        }
        // Only an assignment with `reset` may create a shard. A node that lost its
        // data (restarted without --data-dir) must refuse a routine assignment push,
        // or an empty copy would pass for an in-sync one under the current epoch.
        if !reset {
            return Err(Fence::NotHeld(id).into());
        }
        let log = match &self.persist {
            Some(p) => {
                // A leftover log (its assignment lost) must not leak into a new shard.
                p.remove_log(id)?;
                Some(p.open_log(id)?)
            }
            None => None,
        };
        let cell = Arc::new(Mutex::new(Shard::new(epoch, role, log)));
        map.insert(id, cell.clone());
        if let Err(e) = self.save_assignments(&map) {
            map.remove(&id);
            return Err(e.into());
        }
        let info = cell.lock().expect("lock").info(id);
        Ok(info)
    }

    /// `DELETE /v1/shards/{id}?epoch=N`. Absent shards are already deleted: `Ok`.
    pub fn drop_shard(&self, id: u32, epoch: u64) -> Result<(), StoreError> {
        let mut map = self.shards.write().expect("lock");
        let Some(cell) = map.get(&id).cloned() else {
            return Ok(());
        };
        let mut s = cell.lock().expect("lock");
        if epoch < s.epoch {
            return Err(Fence::Stale {
                shard: id,
                request: epoch,
                current: s.epoch,
            }
            .into());
        }
        map.remove(&id);
        if let Err(e) = self.save_assignments(&map) {
            map.insert(id, cell.clone());
            return Err(e.into());
        }
        s.dropped = true;
        s.log = None;
        s.entries.clear();
        if let Some(p) = &self.persist {
            p.remove_log(id)?;
        }
        Ok(())
    }

    pub fn info(&self, id: u32) -> Option<ShardInfo> {
        let cell = self.shard(id).ok()?;
        let s = cell.lock().expect("lock");
        Some(s.info(id))
    }

    pub fn list(&self) -> Vec<ShardInfo> {
        let map = self.shards.read().expect("lock");
        map.iter()
            .map(|(&id, s)| s.lock().expect("lock").info(id))
            .collect()
    }

    pub fn totals(&self) -> Totals {
        let mut t = Totals::default();
        for i in self.list() {
            t.keys += i.keys;
            t.bytes += i.bytes;
            match i.role {
                Role::Primary => t.primary += 1,
                Role::Replica => t.replica += 1,
            }
        }
        t
    }

    pub fn shard_count(&self) -> usize {
        self.shards.read().expect("lock").len()
    }

    /// Applies records under the version rule if `epoch` is the shard's epoch.
    /// Returns how many changed the store (the rest were older or duplicates).
    pub fn write(&self, id: u32, epoch: u64, records: Vec<Record>) -> Result<usize, StoreError> {
        let cell = self.shard(id)?;
        let mut s = cell.lock().expect("lock");
        s.held(id)?;
        fence(id, s.epoch, epoch)?;
        Ok(s.apply(records)?)
    }

    /// A client write (through the coordinator): like [`Store::write`], but a version
    /// older than the one held is refused with the held version, so the coordinator
    /// never acknowledges a write that lost to an older one. The same version again is
    /// a duplicate and succeeds.
    pub fn write_live(&self, id: u32, epoch: u64, record: Record) -> Result<(), StoreError> {
        let cell = self.shard(id)?;
        let mut s = cell.lock().expect("lock");
        s.held(id)?;
        fence(id, s.epoch, epoch)?;
        s.served.writes += 1;
        s.served.write_bytes += record.value.as_ref().map_or(0, |v| v.len() as u64);
        if let Some(held) = s.entries.get(&record.key).map(|e| e.version) {
            if held > record.version {
                return Err(StoreError::Superseded {
                    key: record.key,
                    version: record.version,
                    held,
                });
            }
        }
        s.apply(vec![record])?;
        Ok(())
    }

    /// The key's live value (`None` if absent or tombstoned) and the version it is
    /// held at: a tombstone's version too, 0 for a key never written. Readers need
    /// the version of a delete as much as of a value, to order what they saw.
    pub fn get(&self, id: u32, epoch: u64, key: &str) -> Result<(Option<Bytes>, u64), Fence> {
        let cell = self.shard(id)?;
        let mut s = cell.lock().expect("lock");
        s.held(id)?;
        fence(id, s.epoch, epoch)?;
        let found = s
            .entries
            .get(key)
            .map_or((None, 0), |e| (e.value.clone(), e.version));
        s.served.reads += 1;
        s.served.read_bytes += found.0.as_ref().map_or(0, |v| v.len() as u64);
        Ok(found)
    }

    /// Live keys with `prefix`, sorted. `epoch` is checked only when given.
    /// Up to `limit` live keys with `prefix` after `after` (exclusive), sorted: one
    /// page, found by a range scan (no more is read than returned, tombstones aside).
    pub fn keys_page(
        &self,
        id: u32,
        epoch: Option<u64>,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, Fence> {
        use std::ops::Bound;
        let cell = self.shard(id)?;
        let s = cell.lock().expect("lock");
        s.held(id)?;
        if let Some(e) = epoch {
            fence(id, s.epoch, e)?;
        }
        let from = match after {
            Some(a) if a >= prefix => Bound::Excluded(a),
            _ => Bound::Included(prefix),
        };
        Ok(s.entries
            .range::<str, _>((from, Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .filter(|(_, e)| e.value.is_some())
            .take(limit)
            .map(|(k, _)| k.clone())
            .collect())
    }

    /// A point-in-time copy (values are refcounted, so this copies no value bytes),
    /// with the epoch it was taken at. Tombstones included.
    pub fn snapshot(&self, id: u32) -> Result<(u64, Vec<Record>), Fence> {
        let cell = self.shard(id)?;
        let s = cell.lock().expect("lock");
        s.held(id)?;
        let records = s
            .entries
            .iter()
            .map(|(k, e)| Record {
                key: k.clone(),
                version: e.version,
                value: e.value.clone(),
            })
            .collect();
        Ok((s.epoch, records))
    }

    /// Current epoch of a held shard.
    pub fn epoch(&self, id: u32) -> Result<u64, Fence> {
        let cell = self.shard(id)?;
        let s = cell.lock().expect("lock");
        s.held(id)?;
        Ok(s.epoch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::rec;

    #[test]
    fn version_rule_table() {
        let live = |v| {
            Some(Entry {
                value: Some(Bytes::from_static(b"x")),
                version: v,
            })
        };
        let tomb = |v| {
            Some(Entry {
                value: None,
                version: v,
            })
        };
        let cases: &[(Option<Entry>, u64, bool)] = &[
            (None, 0, true),
            (None, 5, true),
            (live(5), 4, false),
            (live(5), 5, false),
            (live(5), 6, true),
            (tomb(5), 4, false),
            (tomb(5), 5, false),
            (tomb(5), 6, true),
        ];
        for (existing, version, want) in cases {
            assert_eq!(
                should_apply(existing.as_ref(), *version),
                *want,
                "{existing:?} <- v{version}"
            );
        }
    }

    #[test]
    fn writes_commute_in_any_order() {
        let writes = [
            rec("a", 1, Some("a1")),
            rec("a", 3, Some("a3")),
            rec("a", 2, None),
            rec("b", 2, None),
            rec("b", 1, Some("b1")),
            rec("c", 4, Some("c4")),
            rec("c", 4, Some("c4")),
        ];
        let state = |order: &[usize]| {
            let s = Store::in_memory();
            s.assign(1, 1, Role::Primary, true).unwrap();
            for &i in order {
                s.write(1, 1, vec![writes[i].clone()]).unwrap();
            }
            (s.snapshot(1).unwrap().1, s.info(1).unwrap())
        };
        let forward = state(&[0, 1, 2, 3, 4, 5, 6]);
        assert_eq!(forward, state(&[6, 5, 4, 3, 2, 1, 0]));
        assert_eq!(forward, state(&[2, 4, 0, 6, 3, 1, 5]));
        assert_eq!(
            forward.0,
            vec![
                rec("a", 3, Some("a3")),
                rec("b", 2, None),
                rec("c", 4, Some("c4"))
            ]
        );
        // "a"+"a3" and "c"+"c4": bytes count keys and values of live entries.
        assert_eq!((forward.1.keys, forward.1.bytes), (2, 6));
    }

    #[test]
    fn batch_with_duplicate_keys_keeps_highest() {
        let s = Store::in_memory();
        s.assign(1, 1, Role::Primary, true).unwrap();
        let n = s
            .write(
                1,
                1,
                vec![
                    rec("k", 2, Some("two")),
                    rec("k", 5, None),
                    rec("k", 3, Some("three")),
                ],
            )
            .unwrap();
        assert_eq!(n, 1);
        assert_eq!(s.snapshot(1).unwrap().1, vec![rec("k", 5, None)]);
    }

    #[test]
    fn fencing_table() {
        let s = Store::in_memory();
        s.assign(1, 5, Role::Replica, true).unwrap();
        let cases: &[(u32, u64, Result<(), Fence>)] = &[
            (1, 5, Ok(())),
            (2, 5, Err(Fence::NotHeld(2))),
            (
                1,
                4,
                Err(Fence::Stale {
                    shard: 1,
                    request: 4,
                    current: 5,
                }),
            ),
            (
                1,
                0,
                Err(Fence::Stale {
                    shard: 1,
                    request: 0,
                    current: 5,
                }),
            ),
            (
                1,
                6,
                Err(Fence::Ahead {
                    shard: 1,
                    request: 6,
                    current: 5,
                }),
            ),
        ];
        for (shard, epoch, want) in cases {
            let got = s.get(*shard, *epoch, "k").map(|_| ());
            assert_eq!(&got, want, "shard {shard} epoch {epoch}");
            let got = s
                .write(*shard, *epoch, vec![rec("k", 1, Some("v"))])
                .map(|_| ());
            match (got, want) {
                (Ok(()), Ok(())) => {}
                (Err(StoreError::Fence(f)), Err(w)) => assert_eq!(&f, w),
                (g, w) => panic!("shard {shard} epoch {epoch}: {g:?} vs {w:?}"),
            }
        }
        assert_eq!(Fence::NotHeld(2).to_string(), "shard 2 not held");
    }

    #[test]
    fn assignment_epochs_reset_and_drop() {
        let s = Store::in_memory();
        // Only `reset` creates a shard: a node that lost its data refuses a push.
        assert!(matches!(
            s.assign(1, 2, Role::Primary, false),
            Err(StoreError::Fence(Fence::NotHeld(1)))
        ));
        s.assign(1, 2, Role::Primary, true).unwrap();
        s.write(1, 2, vec![rec("k", 1, Some("v"))]).unwrap();
        assert!(matches!(
            s.assign(1, 1, Role::Primary, false),
            Err(StoreError::Fence(Fence::Stale {
                request: 1,
                current: 2,
                ..
            }))
        ));
        let info = s.assign(1, 2, Role::Replica, false).unwrap();
        assert_eq!((info.epoch, info.role, info.keys), (2, Role::Replica, 1));
        let info = s.assign(1, 3, Role::Replica, true).unwrap();
        assert_eq!((info.epoch, info.keys, info.bytes), (3, 0, 0));
        assert!(s.snapshot(1).unwrap().1.is_empty());
        assert!(matches!(
            s.drop_shard(1, 2),
            Err(StoreError::Fence(Fence::Stale { .. }))
        ));
        s.drop_shard(1, 3).unwrap();
        s.drop_shard(1, 3).unwrap();
        assert_eq!(s.info(1), None);
        assert!(s.list().is_empty());
    }

    #[test]
    fn durable_store_replays_and_forgets_resets() {
        let dir = tempfile::tempdir().unwrap();
        let open = || {
            let (p, r) = Persist::open(dir.path(), false).unwrap();
            Store::open(p, r)
        };
        {
            let s = open();
            s.assign(1, 1, Role::Primary, true).unwrap();
            s.assign(2, 1, Role::Replica, true).unwrap();
            s.write(1, 1, vec![rec("a", 1, Some("old")), rec("b", 1, Some("b"))])
                .unwrap();
            s.write(1, 1, vec![rec("a", 2, Some("new")), rec("b", 2, None)])
                .unwrap();
            s.write(2, 1, vec![rec("x", 1, Some("x"))]).unwrap();
            s.assign(2, 4, Role::Replica, true).unwrap();
            s.write(2, 4, vec![rec("y", 9, Some("y"))]).unwrap();
        }
        let s = open();
        assert_eq!(
            s.snapshot(1).unwrap(),
            (1, vec![rec("a", 2, Some("new")), rec("b", 2, None)])
        );
        assert_eq!(s.snapshot(2).unwrap(), (4, vec![rec("y", 9, Some("y"))]));
        s.drop_shard(2, 4).unwrap();
        drop(s);
        let s = open();
        assert_eq!(s.list().iter().map(|i| i.id).collect::<Vec<_>>(), vec![1]);
    }
}
