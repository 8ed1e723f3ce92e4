//! Client reads and writes through the coordinator (SPEC §4). A write goes to every
//! holder of the key's shard and is acknowledged once every in-sync holder has it; a
//! holder that fails is evicted from the in-sync set (committed) before the ack, so an
//! acknowledged write is always on every copy that can become primary.

use crate::cluster::{unix_ms, Cluster};
use crate::faults::TestFault;
use crate::nodeclient::{CallError, Held, To, WriteAt};
use crate::shards::change::ChangeKind;
use crate::shards::commit::commit;
use crate::shards::inflight::Floor;
use crate::shards::map::Slot;
use crate::shards::record::ShardRecord;
use crate::shards::versions::wall_clock_version;
use bytes::Bytes;
use futures_util::future::join_all;
use futures_util::stream::{FuturesUnordered, StreamExt};
use std::time::{Duration, Instant};
use thiserror::Error;
use torua_protocol::node_api::{validate_key, KeyError};
use torua_protocol::NodeState;

#[derive(Debug, Error)]
pub enum DataError {
    #[error("invalid key: {0}")]
    BadKey(#[from] KeyError),
    #[error("no key {0:?}")]
    NotFound(String),
    #[error("shard {shard} is unavailable: {why}")]
    Unavailable { shard: u32, why: String },
}

/// The node API's key rules (`torua_protocol::node_api::validate_key`): a key the
/// coordinator accepts is one every node accepts.
pub fn check_key(key: &str) -> Result<(), DataError> {
    Ok(validate_key(key)?)
}

/// Attempts at one write: a map change racing with it, and a holder answering
/// `superseded`, each cost one.
const WRITE_ATTEMPTS: usize = 4;

/// When hedging's budget is spent, a read still asks another holder after this
/// long: the budget caps extra load, it must not turn a slow node into a timeout.
const LAST_RESORT_HEDGE: Duration = Duration::from_millis(100);

/// Read attempts: after the map catches up (once for a holder failing, as often as
/// this allows for the map having moved on), and after the writes of the key in
/// flight end.
const READ_ATTEMPTS: usize = 4;

/// Why one read attempt returned nothing.
enum Miss {
    /// No holder answered well.
    Unavailable(String),
    /// Holders answered, below the floor of the key's writes in flight.
    Behind(Floor, String),
    /// A holder holds the shard at a newer epoch: the map read from is behind.
    Moved(String),
}

/// How long a read whose holders are all behind a write of its key in flight
/// first waits before asking again.
const BEHIND_FIRST_WAIT: Duration = Duration::from_millis(20);

/// How often a read waiting for the writes of its key to end looks again.
const SETTLE_POLL: Duration = Duration::from_millis(5);

/// Longest a follower waits for its copy of the map to catch up with the nodes'.
const MAP_CATCH_UP: Duration = Duration::from_secs(1);

impl Cluster {
    pub async fn data_put(&self, key: &str, value: Bytes) -> Result<(), DataError> {
        self.data_write(key, Some(value)).await
    }

    pub async fn data_delete(&self, key: &str) -> Result<(), DataError> {
        self.data_write(key, None).await
    }

    /// Writes `value` (a delete for `None`) to every holder of the key's shard.
    async fn data_write(&self, key: &str, value: Option<Bytes>) -> Result<(), DataError> {
        check_key(key)?;
        let slot = self.shards.slot_for_key(key);
        let _writing = slot.inflight.writing(key);
        let wall_clock = self.test_fault == Some(TestFault::WallClockVersions);
        let mut last_err = String::new();
        // One version for every attempt of this write: an attempt may have reached
        // some holders (and readers) before it failed elsewhere, and a retry under a
        // fresh version could then land above a write that began after this one was
        // visible, undoing it (the Jepsen partition suite found this). Drawn anew
        // only to get above a version this process did not hand out.
        let mut drawn = None;
        for _ in 0..WRITE_ATTEMPTS {
            let rec = slot.record.read().await;
            if rec.primary.is_none() {
                return Err(DataError::Unavailable {
                    shard: slot.id,
                    why: "no copy is available".into(),
                });
            }
            let version = *drawn.get_or_insert_with(|| {
                if wall_clock {
                    wall_clock_version(unix_ms())
                } else {
                    self.shards.versions.next()
                }
            });
            let now = Instant::now();
            let calls = rec.write_set().map(|(node, in_sync)| {
                let addr = self.addr_of(node);
                let client = &self.shards.client;
                let (value, rec) = (value.clone(), &rec);
                async move {
                    let result = match addr {
                        None => Err(CallError::Unreachable {
                            addr: node.into(),
                            message: "unknown address".into(),
                        }),
                        Some(addr) => {
                            // Bounded stall: a holder that does not answer in time is
                            // evicted and the write acknowledged without it, sooner if
                            // it is already suspected.
                            let timeout = if self.suspected(node, &addr, now) {
                                self.cfg.suspect_write_timeout
                            } else {
                                self.cfg.write_timeout
                            };
                            self.with_catch_up(&addr, rec, node, || {
                                let at = WriteAt {
                                    shard: rec.id,
                                    epoch: rec.epoch,
                                    version,
                                };
                                let to = To { node, addr: &addr };
                                client.write(to, key, at, value.clone(), timeout)
                            })
                            .await
                        }
                    };
                    (node.to_string(), in_sync, result)
                }
            });
            let results = join_all(calls).await;
            // Whether this write is visible anywhere: then a newer write of another
            // coordinator that superseded it elsewhere came after it.
            let applied = results.iter().any(|(_, _, r)| r.is_ok());
            let mut ok_in_sync = 0;
            let mut failed = Vec::new();
            let mut newer: Option<u64> = None;
            for (node, in_sync, r) in results {
                match (r, in_sync) {
                    (Ok(()), true) => ok_in_sync += 1,
                    (Ok(()), false) => {}
                    // The rule before terms: an older write counted as done. Only
                    // under the test fault that proves the checker bites.
                    (Err(CallError::Superseded { .. }), true) if wall_clock => ok_in_sync += 1,
                    (Err(CallError::Superseded { .. }), false) if wall_clock => {}
                    // A newer version of ours: a write that began after this one did
                    // (versions only grow) overwrote it first. This write is then
                    // linearized just before that one and is done; writing it again
                    // above would reorder it after a write that began once this one
                    // was already visible (the Jepsen suite found exactly that).
                    (Err(CallError::Superseded { held, .. }), in_sync)
                        if self.superseded_by_later(held, applied) =>
                    {
                        self.metrics.write_superseded.inc();
                        ok_in_sync += usize::from(in_sync);
                    }
                    // A version from outside this process (data written before
                    // terms existed): write again above it.
                    (Err(CallError::Superseded { held, .. }), _) => {
                        newer = newer.max(Some(held));
                    }
                    (Err(e), false) => {
                        tracing::warn!(
                            "shard {}: live write to copy on {node} failed: {e}",
                            slot.id
                        );
                        slot.copy_write_failed();
                    }
                    (Err(e), true) => {
                        last_err = e.to_string();
                        failed.push(node);
                    }
                }
            }
            if let Some(held) = newer {
                // A holder has a version this process never handed out (data from
                // before terms, or from a store that went back): write again above
                // it, so that what is acknowledged is not hidden behind it.
                drop(rec);
                self.version_above(held).await;
                drawn = None;
                last_err = format!("a holder has a newer version ({held}) of the key");
                continue;
            }
            let epoch = rec.epoch;
            drop(rec);
            if failed.is_empty() {
                return Ok(());
            }
            if ok_in_sync == 0 {
                if !self.leadership.is_leader() {
                    // Every holder refused: a follower's map may be behind theirs.
                    self.shards.wait_past(slot.id, epoch, MAP_CATCH_UP).await;
                }
                continue;
            }
            // Some in-sync holders have the write and some do not: the ones that do
            // not stop being in sync (durably) before the client hears "ok".
            if !self.leadership.is_leader() {
                match self.evict_through_leader(slot.id, epoch, &failed).await {
                    Ok(true) => return Ok(()),
                    Ok(false) => continue,
                    Err(why) => {
                        return Err(DataError::Unavailable {
                            shard: slot.id,
                            why,
                        })
                    }
                }
            }
            let evicted = commit(self, slot.id, ChangeKind::WriteEvict, None, |r| {
                if r.epoch == epoch {
                    for n in &failed {
                        r.remove(n, &[]);
                    }
                }
            })
            .await;
            match evicted {
                Ok(Some((r, _))) if r.epoch == epoch + 1 => {
                    tracing::warn!("shard {}: evicted {failed:?} from the in-sync set after a failed write: {last_err}", slot.id);
                    self.moves.wake();
                    return Ok(());
                }
                // The map moved on meanwhile: the write's fate is unclear, retry it.
                Ok(_) => continue,
                Err(e) => {
                    return Err(DataError::Unavailable {
                        shard: slot.id,
                        why: format!("could not commit eviction: {e}"),
                    })
                }
            }
        }
        Err(DataError::Unavailable {
            shard: slot.id,
            why: last_err,
        })
    }

    /// Whether a holder's `held` version, newer than this write's, belongs to a
    /// write that came after this one, so that this one is done (linearized just
    /// before it). True for a version this process handed out (versions only grow,
    /// so that write began after this one did). For another coordinator's version,
    /// true only if this write is visible somewhere already: it must then stay
    /// ordered before the newer one, never be written again above it.
    fn superseded_by_later(&self, held: u64, applied: bool) -> bool {
        if !self.leadership.shared {
            return held <= self.shards.versions.last();
        }
        self.shards.versions.is_ours(held) || applied
    }

    /// Moves this process's versions above `held` (a version it did not hand out).
    /// Alone, the counter jumps over it; sharing etcd, a fresh term is taken, so
    /// that no two coordinators ever hand out the same version.
    async fn version_above(&self, held: u64) {
        if !self.leadership.shared {
            self.shards.versions.observe(held);
            return;
        }
        match self.shards.store().next_term().await {
            Ok(term) => self.shards.versions.advance_term(term),
            Err(e) => tracing::warn!("taking a new term above version {held}: {e}"),
        }
    }

    /// A follower's eviction: the leader commits it. Ok(true): evicted, the write
    /// is done; Ok(false): the map moved on (installed here), write again.
    async fn evict_through_leader(
        &self,
        id: u32,
        epoch: u64,
        failed: &[String],
    ) -> Result<bool, String> {
        let leader = self.leadership.leader_within_election().await;
        let rec = self
            .forwarder
            .evict(leader, id, epoch, failed)
            .await
            .map_err(|e| format!("the eviction of {failed:?} could not be committed: {e}"))?;
        let done = rec.epoch == epoch + 1 && failed.iter().all(|n| !rec.holds(n));
        self.shards.install(rec).await;
        Ok(done)
    }

    /// Reads the key from an in-sync holder (see [`Cluster::read_once`]). Reads work
    /// on a copy of the record and do not hold the shard lock: a hung node must not
    /// delay the failover that routes around it.
    pub async fn data_get(&self, key: &str) -> Result<Bytes, DataError> {
        check_key(key)?;
        let slot = self.shards.slot_for_key(key);
        let (mut caught_up, mut behind_waits) = (false, 0);
        let mut why = String::new();
        for _ in 0..READ_ATTEMPTS {
            let epoch = slot.published().epoch;
            match self.read_once(slot, key).await {
                Ok(held) => return held.value.ok_or_else(|| DataError::NotFound(key.into())),
                Err(Miss::Behind(floor, w)) => {
                    // Every holder asked answered with less than a read already
                    // returned: the writes of the key in flight have not reached
                    // them yet. Usually they do within milliseconds; at worst, once
                    // those writes end every holder in the map has them.
                    why = w;
                    let patience = if behind_waits == 0 {
                        BEHIND_FIRST_WAIT
                    } else {
                        self.cfg.write_timeout * WRITE_ATTEMPTS as u32
                    };
                    behind_waits += 1;
                    self.writes_end(slot, key, &floor, patience).await;
                }
                Err(Miss::Moved(w)) => {
                    // A change is being pushed (its publication may wait on a slow
                    // or cut-off holder): read again once the map has moved past
                    // this epoch, as often as the attempts allow.
                    why = w;
                    self.shards.wait_past(slot.id, epoch, MAP_CATCH_UP).await;
                }
                Err(Miss::Unavailable(w)) if !caught_up => {
                    // The map may be behind the nodes' (a change being pushed, or a
                    // follower's watch lagging): give it a moment before reading again.
                    why = w;
                    caught_up = true;
                    self.shards.wait_past(slot.id, epoch, MAP_CATCH_UP).await;
                }
                Err(Miss::Unavailable(why)) => {
                    return Err(DataError::Unavailable {
                        shard: slot.id,
                        why,
                    })
                }
            }
        }
        Err(DataError::Unavailable {
            shard: slot.id,
            why,
        })
    }

    /// Waits, at most `patience`, until the writes of `key` that `floor` belongs
    /// to have all ended.
    async fn writes_end(&self, slot: &Slot, key: &str, floor: &Floor, patience: Duration) {
        let deadline = Instant::now() + patience;
        while Instant::now() < deadline && slot.inflight.floor(key).is_some_and(|f| f.same(floor)) {
            tokio::time::sleep(SETTLE_POLL).await;
        }
    }

    /// Whether the coordinator has reason to doubt `node` right now: degraded or
    /// unhealthy, unreachable from here, or slow to answer lately. Such holders
    /// are asked last and waited for least.
    fn suspected(&self, node: &str, addr: &str, now: Instant) -> bool {
        let doubted = self.nodes.get(node).is_some_and(|c| {
            matches!(
                c.lock().health.base,
                NodeState::Degraded | NodeState::Unhealthy
            )
        });
        doubted || self.shards.client.reach.is_slow(addr, now)
    }

    /// One read, hedged (Dean & Barroso, "The Tail at Scale"): the preferred
    /// in-sync holder first (suspected ones last); if it has not answered within
    /// its hedge delay (2 × its recent p99), the next one too, within a 5 % budget;
    /// the first good answer wins and the other request is dropped. A read racing
    /// a change meets a fenced node (409) and falls through to the next copy.
    ///
    /// While writes of the key are in flight, holders may differ: an answer older
    /// than one a finished read returned (the key's [`Floor`]) is not good, so a
    /// read never goes back in time, whichever holder it asks.
    async fn read_once(&self, slot: &Slot, key: &str) -> Result<Held, Miss> {
        // Taken before the record: a write that ends before this leaves no holder
        // without it in the record read next (it evicts the ones it missed first).
        let floor = slot.inflight.floor(key);
        // Never queue behind a map change (it may be waiting for a write stalled
        // on a frozen holder, or pushing to one): read the published record.
        let rec = match slot.record.try_read() {
            Ok(r) => r.clone(),
            Err(_) => slot.published(),
        };
        let now = Instant::now();
        let mut order: Vec<(&str, String)> = rec
            .in_sync()
            .filter_map(|n| Some((n, self.addr_of(n)?)))
            .collect();
        // Stable: among equals the map's order (primary first) stays.
        order.sort_by_key(|(n, a)| self.suspected(n, a, now));
        let mut why = String::from("no copy is available");
        if order.is_empty() {
            return Err(Miss::Unavailable(why));
        }
        let reach = &self.shards.client.reach;
        reach.earn();
        let rec = &rec;
        let mut trail = Trail::new();
        let ask = |i: usize, pause: Duration| {
            let (node, addr) = &order[i];
            async move {
                if !pause.is_zero() {
                    tokio::time::sleep(pause).await;
                }
                let to = To { node, addr };
                let get = || self.shards.client.get(to, key, rec.id, rec.epoch);
                (i, self.with_catch_up(addr, rec, node, get).await)
            }
        };
        let mut pending = FuturesUnordered::new();
        pending.push(ask(0, Duration::ZERO));
        trail.note(0, "asked");
        let mut next = 1;
        let mut retries = 0;
        let hedge_after = |i: usize| {
            (self.cfg.hedge_reads && i + 1 < order.len())
                .then(|| tokio::time::Instant::now() + reach.hedge_delay(&order[i].1))
        };
        let mut hedge_at = hedge_after(0);
        let mut hedge: Option<usize> = None;
        let mut last_resort = false;
        let mut behind = false;
        loop {
            let due = async {
                match hedge_at {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                Some((i, result)) = pending.next() => {
                    if hedge.is_none() && i == 0 {
                        reach.prompt(&order[0].1);
                    }
                    trail.note(i, match &result {
                        Ok(_) => "answered",
                        Err(e) => error_kind(e),
                    });
                    match result {
                        Ok(held) if floor.as_ref().is_none_or(|f| f.admits(held.version)) => {
                            trail.report_if_slow(key, &order);
                            slot.inflight.returned(key, held.version);
                            if let Some(h) = hedge {
                                let outcome = if i == h { "won" } else { "lost" };
                                self.metrics.hedged_reads.with_label_values(&[outcome]).inc();
                            }
                            return Ok(held);
                        }
                        Ok(held) => {
                            behind = true;
                            why = format!(
                                "{} holds version {} of the key, older than a read returned while a write of it is in flight",
                                order[i].0, held.version
                            );
                        }
                        Err(e) => {
                            why = e.to_string();
                            if map_moved(&e) {
                                // This read's copy of the map is behind the nodes'
                                // (a holder was just evicted, say a silent one): read
                                // again from the new map rather than ask, or wait out,
                                // holders of the old one.
                                trail.report_if_slow(key, &order);
                                return Err(Miss::Moved(why));
                            }
                            if !pending.is_empty() && next == order.len() && retries < HEDGE_RETRIES {
                                // Another holder failed while the first is still
                                // silent: ask it again shortly rather than wait the
                                // silent one out (its error may pass; the silence
                                // rarely does).
                                retries += 1;
                                pending.push(ask(i, HEDGE_RETRY_PAUSE));
                                trail.note(i, "asked again");
                            }
                        }
                    }
                    if pending.is_empty() {
                        if next == order.len() {
                            trail.report_if_slow(key, &order);
                            return Err(match floor {
                                Some(f) if behind => Miss::Behind(f, why),
                                _ => Miss::Unavailable(why),
                            });
                        }
                        // Failed outright: the next holder now, not after a delay.
                        pending.push(ask(next, Duration::ZERO));
                        trail.note(next, "asked");
                        hedge_at = hedge_after(next);
                        next += 1;
                    }
                }
                _ = due => {
                    let late = next - 1;
                    reach.late(&order[late].1, Instant::now());
                    if hedge.is_none() && !last_resort && !reach.spend_hedge() {
                        // Out of budget (many holders slow at once): hedge anyway, but
                        // only once the wait has become long.
                        self.metrics.hedged_reads.with_label_values(&["no_budget"]).inc();
                        last_resort = true;
                        hedge_at = Some(tokio::time::Instant::now() + LAST_RESORT_HEDGE);
                        continue;
                    }
                    hedge.get_or_insert(next);
                    pending.push(ask(next, Duration::ZERO));
                    trail.note(next, "hedged");
                    hedge_at = hedge_after(next);
                    next += 1;
                }
            }
        }
    }

    /// Runs `call` on holder `node`; if the node holds the shard at an older epoch
    /// (it was paused or cut off when an assignment was pushed), pushes the current
    /// assignment again and runs `call` once more. Safe without copying anything:
    /// the map still lists the node at this epoch, so every write acknowledged since
    /// reached it (a write it failed would have evicted it), and a node that lost the
    /// shard answers "not held", never "behind".
    async fn with_catch_up<T, Fut>(
        &self,
        addr: &str,
        rec: &ShardRecord,
        node: &str,
        call: impl Fn() -> Fut,
    ) -> Result<T, CallError>
    where
        Fut: std::future::Future<Output = Result<T, CallError>>,
    {
        match call().await {
            Err(CallError::Behind { held, .. }) => {
                self.shards.retell(addr, rec, node).await?;
                tracing::info!(
                    "shard {}: {node} was at epoch {held}; pushed epoch {} again",
                    rec.id,
                    rec.epoch
                );
                call().await
            }
            r => r,
        }
    }

    /// A page of the live keys with `prefix` across all shards, sorted: the first
    /// `limit` after `after`, and the cursor for the next page (`None` at the end).
    /// Each shard is asked for at most `limit` keys after the cursor, so a page
    /// costs O(shards × limit) whatever the keyspace holds.
    pub async fn data_list(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<String>, Option<String>), DataError> {
        let (mut keys, mut cut) = (Vec::new(), false);
        for slot in &self.shards.slots {
            let rec = slot.record.read().await.clone();
            if !rec.assigned {
                continue;
            }
            let mut got = None;
            let mut why = String::from("no copy is available");
            for node in rec.in_sync() {
                let Some(addr) = self.addr_of(node) else {
                    continue;
                };
                let to = To { node, addr: &addr };
                match self
                    .shards
                    .client
                    .list(to, rec.id, prefix, after, limit)
                    .await
                {
                    Ok(k) => {
                        got = Some(k);
                        break;
                    }
                    Err(e) => why = e.to_string(),
                }
            }
            keys.extend(got.ok_or(DataError::Unavailable {
                shard: slot.id,
                why,
            })?);
            // Keep only what can still make the page: memory stays O(limit).
            if keys.len() > 2 * limit {
                keys.sort_unstable();
                keys.truncate(limit);
                cut = true;
            }
        }
        keys.sort_unstable();
        let more = cut || keys.len() > limit;
        keys.truncate(limit);
        let next = more.then(|| keys.last().cloned()).flatten();
        Ok((keys, next))
    }
}

/// Times a read asks a failed holder again while another is still silent.
const HEDGE_RETRIES: u32 = 3;
/// Pause before asking it again.
const HEDGE_RETRY_PAUSE: Duration = Duration::from_millis(20);
/// A read slower than this is logged with what happened to it.
const SLOW_READ: Duration = Duration::from_millis(500);

/// What happened to one read, kept without allocating (reads are the hot path)
/// and written to the log only if the read was slow: which holder was asked when,
/// and how each answered.
struct Trail {
    start: Instant,
    events: [(u32, u8, &'static str); 12],
    len: usize,
}

impl Trail {
    fn new() -> Trail {
        Trail {
            start: Instant::now(),
            events: [(0, 0, ""); 12],
            len: 0,
        }
    }

    fn note(&mut self, holder: usize, what: &'static str) {
        if let Some(e) = self.events.get_mut(self.len) {
            *e = (self.start.elapsed().as_millis() as u32, holder as u8, what);
            self.len += 1;
        }
    }

    fn report_if_slow(&self, key: &str, order: &[(&str, String)]) {
        let took = self.start.elapsed();
        if took < SLOW_READ {
            return;
        }
        let events: Vec<String> = self.events[..self.len]
            .iter()
            .map(|(ms, h, what)| {
                let node = order.get(*h as usize).map_or("?", |o| o.0);
                format!("{ms}ms {node} {what}")
            })
            .collect();
        tracing::warn!(
            key,
            took_ms = took.as_millis() as u64,
            "slow read: {}",
            events.join(", ")
        );
    }
}

/// A short, static name for a failed call, for [`Trail`].
fn error_kind(e: &CallError) -> &'static str {
    match e {
        CallError::Unreachable { .. } => "unreachable",
        CallError::Timeout { .. } => "timed out",
        CallError::Superseded { .. } => "superseded",
        CallError::Behind { .. } => "behind (epoch)",
        CallError::Ahead { .. } => "ahead (epoch)",
        CallError::Status { .. } => "refused",
    }
}

/// Whether a holder's refusal says the map moved on past the record a request
/// was sent with: it holds the shard at a newer epoch, or no longer holds it.
fn map_moved(e: &CallError) -> bool {
    match e {
        CallError::Ahead { .. } => true,
        CallError::Status { status, .. } => *status == 409,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use torua_protocol::node_api::MAX_KEY_BYTES;

    #[test]
    fn keys_follow_the_node_api_rules() {
        // The rules themselves are tested in torua_protocol::node_api; this checks
        // that the data path applies them and says why.
        assert!(check_key("../etc/passwd").is_ok());
        let long = "k".repeat(MAX_KEY_BYTES + 1);
        for (bad, why) in [("", "empty"), ("a\nb", "U+000A"), (long.as_str(), "1025")] {
            let e = check_key(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }
}
