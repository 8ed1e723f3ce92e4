//! Operation histories and a linearizability checker for the key-value data path.
//!
//! Why: a chaos test that only re-reads its keys at the end sees lost writes, but not a
//! stale read during a failover, a delete that comes back, or a read that travels back
//! in time. Those need every client operation recorded as an interval (invoke,
//! complete) with its result, and a check that some single order of the operations,
//! each taking effect at an instant inside its interval, explains every read.
//!
//! The model: each key is an independent register holding `Option<bytes>` (`None` =
//! absent, the initial value). `Put` and `Delete` write it, `Get` reads it. A key's
//! history is checked on its own (linearizability is compositional), with the
//! Wing–Gong / Lowe search that Porcupine uses: try the operations in time order,
//! backtrack when a completed operation cannot be placed, and memoise (set of placed
//! operations, register value) so each reachable configuration is explored once.
//!
//! Outcomes: [`Outcome::Ok`] / [`Outcome::Read`] took effect inside the interval;
//! [`Outcome::Fail`] definitely did not take effect (the caller decides when that is
//! true, e.g. a 4xx or a 503 answered before applying) and is ignored; a write with
//! [`Outcome::Unknown`] (timeout, connection error, or never completed) may take
//! effect at any time after its invoke, or never; an unknown read constrains nothing.
//!
//! What it can see: any history of acknowledged results that no interleaving explains
//! — lost acknowledged writes, stale reads, resurrected deletes, reads that go back in
//! time, values nobody wrote — reported with a classification where one can be proved
//! and a minimal offending subset of the key's history.
//!
//! What it cannot see: anything the client did not observe (a write lost after the last
//! read of its key looks like a write that was simply never read; finish a test by
//! reading every key), anything across keys (no transactions are modelled), a failed
//! operation that did in fact take effect if the caller marked it `Fail` wrongly, and
//! real-time order finer than the recorder's clock: the clock is a logical counter
//! taken under one lock at invoke and at complete, so an operation that completed
//! before another was invoked is ordered before it exactly, but a client must call
//! [`History::invoke`] before sending and [`History::complete`] after the answer.
//! Reads are best made distinguishable: tests should write a unique value each time
//! (the checker is correct with repeated values, only slower and its classification
//! vaguer).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Search steps allowed for one key (and for each candidate while shrinking) before
/// the checker gives up with [`Kind::Undecided`] rather than run for ever.
pub const MAX_SEARCH_STEPS: u64 = 20_000_000;

/// Memory for remembered configurations in one search, in 64-bit words (1 GiB), past
/// which the checker gives up with [`Kind::Undecided`] too.
const MAX_SEEN_WORDS: usize = 128 << 20;

/// Wall-clock budget for shrinking a violation to a minimal history; when it runs out
/// the history found so far is reported (still non-linearizable, maybe not minimal).
pub const SHRINK_TIME: Duration = Duration::from_secs(10);

/// A client operation on one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Put { key: String, value: Vec<u8> },
    Delete { key: String },
    Get { key: String },
}

impl Op {
    pub fn put(key: impl Into<String>, value: impl Into<Vec<u8>>) -> Op {
        Op::Put {
            key: key.into(),
            value: value.into(),
        }
    }

    pub fn delete(key: impl Into<String>) -> Op {
        Op::Delete { key: key.into() }
    }

    pub fn get(key: impl Into<String>) -> Op {
        Op::Get { key: key.into() }
    }

    pub fn key(&self) -> &str {
        match self {
            Op::Put { key, .. } | Op::Delete { key } | Op::Get { key } => key,
        }
    }

    /// What a write sets the register to (`Some(None)` for a delete); `None` for a get.
    fn written(&self) -> Option<Option<&[u8]>> {
        match self {
            Op::Put { value, .. } => Some(Some(value)),
            Op::Delete { .. } => Some(None),
            Op::Get { .. } => None,
        }
    }
}

/// How an operation ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A put or delete that was acknowledged.
    Ok,
    /// What a get returned (`None` = absent).
    Read(Option<Vec<u8>>),
    /// Definitely did not take effect; ignored by the checker.
    Fail,
    /// May or may not have taken effect (timeout, connection error).
    Unknown,
}

/// Index of an operation in its [`History`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OpId(pub usize);

impl fmt::Display for OpId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// One recorded operation. Times are ticks of the history's logical clock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub id: OpId,
    pub client: usize,
    pub op: Op,
    pub invoke: u64,
    /// `None` while (or if never) completed; such an operation counts as unknown.
    pub complete: Option<u64>,
    pub outcome: Outcome,
}

const INF: u64 = u64::MAX;

impl Entry {
    /// The latest time the operation can have taken effect (`INF` if unknown).
    fn end(&self) -> u64 {
        match (&self.outcome, self.complete) {
            (Outcome::Ok | Outcome::Read(_), Some(t)) => t,
            _ => INF,
        }
    }

    /// Whether the checker must account for it: not failed, and not an unknown read.
    fn checked(&self) -> bool {
        match (&self.op, &self.outcome) {
            (_, Outcome::Fail) => false,
            (Op::Get { .. }, Outcome::Read(_)) => self.complete.is_some(),
            (Op::Get { .. }, Outcome::Unknown) => false,
            (Op::Put { .. } | Op::Delete { .. }, Outcome::Ok | Outcome::Unknown) => true,
            _ => panic!("malformed history entry {self:?}: a get needs Read, a write Ok"),
        }
    }

    /// What a get returned, if it is an answered get.
    fn read(&self) -> Option<Option<&[u8]>> {
        match (&self.op, &self.outcome) {
            (Op::Get { .. }, Outcome::Read(v)) => Some(v.as_deref()),
            _ => None,
        }
    }

    fn label(&self) -> String {
        let what = match &self.op {
            Op::Put { value, .. } => format!("put {}", show(Some(value))),
            Op::Delete { .. } => "delete".to_string(),
            Op::Get { .. } => "get".to_string(),
        };
        format!("{what} {} (client {})", self.id, self.client)
    }
}

/// A value for humans: quoted if short printable ASCII, else hex (cut at 32 bytes).
fn show(v: Option<&[u8]>) -> String {
    match v {
        None => "absent".to_string(),
        Some(b) if b.len() <= 48 && b.iter().all(|c| (0x20..0x7f).contains(c)) => {
            format!("{:?}", String::from_utf8_lossy(b))
        }
        Some(b) => {
            let hex: String = b.iter().take(32).map(|c| format!("{c:02x}")).collect();
            if b.len() > 32 {
                format!("0x{hex}…({} bytes)", b.len())
            } else {
                format!("0x{hex}")
            }
        }
    }
}

/// A thread-safe recorder: share it as `Arc<History>` between client threads.
#[derive(Default)]
pub struct History {
    inner: Mutex<Recorded>,
}

#[derive(Default)]
struct Recorded {
    clock: u64,
    entries: Vec<Entry>,
}

impl History {
    pub fn new() -> History {
        History::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Recorded> {
        // A client thread that panicked must not hide the history from the checker.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records that `client` is about to send `op`; call it before the request.
    pub fn invoke(&self, client: usize, op: Op) -> OpId {
        let mut r = self.lock();
        r.clock += 1;
        let id = OpId(r.entries.len());
        let invoke = r.clock;
        r.entries.push(Entry {
            id,
            client,
            op,
            invoke,
            complete: None,
            outcome: Outcome::Unknown,
        });
        id
    }

    /// Records how `id` ended; call it after the answer (or the timeout). Panics on a
    /// second completion or an outcome that does not fit the operation.
    pub fn complete(&self, id: OpId, outcome: Outcome) {
        let mut r = self.lock();
        r.clock += 1;
        let now = r.clock;
        let e = &mut r.entries[id.0];
        assert!(e.complete.is_none(), "{} completed twice", e.label());
        let fits = !matches!(
            (&e.op, &outcome),
            (Op::Get { .. }, Outcome::Ok) | (Op::Put { .. } | Op::Delete { .. }, Outcome::Read(_))
        );
        assert!(fits, "{} cannot end with {outcome:?}", e.label());
        e.complete = Some(now);
        e.outcome = outcome;
    }

    /// A snapshot of everything recorded so far, in invoke order.
    pub fn entries(&self) -> Vec<Entry> {
        self.lock().entries.clone()
    }

    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What a successful check saw.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub keys: usize,
    pub puts: usize,
    pub deletes: usize,
    pub gets: usize,
    /// Operations that ended with [`Outcome::Fail`].
    pub failed: usize,
    /// Operations with unknown outcome, including those never completed.
    pub unknown: usize,
    /// Search steps of the hardest key, and that key.
    pub max_steps: u64,
    pub hardest_key: Option<String>,
    /// Wall time of the slowest key's search.
    pub longest_search: Duration,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "linearizable: {} keys, {} puts, {} deletes, {} gets ({} failed, {} unknown); \
             longest search {:?}, most steps {} (key {})",
            self.keys,
            self.puts,
            self.deletes,
            self.gets,
            self.failed,
            self.unknown,
            self.longest_search,
            self.max_steps,
            self.hardest_key.as_deref().unwrap_or("-"),
        )
    }
}

/// What kind of violation a minimal history shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A read found the key absent (or without a value already read) although an
    /// acknowledged write came before it and no delete could come between.
    LostWrite,
    /// A read returned a value that a later write (or a read of another value)
    /// had already replaced before the read began — including reads going back in time.
    StaleRead,
    /// A stale read whose replacing operation was a delete (or a read of absence).
    ResurrectedDelete,
    /// A read returned a value that no put which could have taken effect wrote.
    UnwrittenValue,
    /// No order explains the reads, and none of the simple patterns above applies.
    NotLinearizable,
    /// The search ran out of [`MAX_SEARCH_STEPS`]; nothing is known.
    Undecided,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::LostWrite => "lost acknowledged write",
            Kind::StaleRead => "stale read",
            Kind::ResurrectedDelete => "resurrected delete",
            Kind::UnwrittenValue => "read of a value never written",
            Kind::NotLinearizable => "not linearizable",
            Kind::Undecided => "undecided",
        })
    }
}

/// A key whose history no linearization explains (or that could not be decided).
#[derive(Clone, PartialEq, Eq)]
pub struct Anomaly {
    pub key: String,
    pub kind: Kind,
    /// One sentence naming the offending read and what rules its value out.
    pub detail: String,
    /// A non-linearizable subset of the key's history, ordered by invoke: removing any
    /// one operation from it makes it linearizable (unless `shrunk` is false).
    pub minimal: Vec<Entry>,
    /// Whether shrinking finished within [`SHRINK_TIME`].
    pub shrunk: bool,
    /// Operations the checker considered on this key (failed and unknown reads aside).
    pub ops_on_key: usize,
}

impl fmt::Display for Anomaly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "key {:?}: {}", self.key, self.kind)?;
        writeln!(f, "  {}", self.detail)?;
        if self.minimal.is_empty() {
            return Ok(());
        }
        writeln!(
            f,
            "  minimal offending history: {} of {} operations on this key{} \
             (times are logical ticks, \"-\" = never completed):",
            self.minimal.len(),
            self.ops_on_key,
            if self.shrunk {
                ""
            } else {
                ", shrinking stopped at its time limit"
            },
        )?;
        let rows: Vec<[String; 6]> = self
            .minimal
            .iter()
            .map(|e| {
                let op = match &e.op {
                    Op::Put { value, .. } => format!("put {}", show(Some(value))),
                    Op::Delete { .. } => "delete".to_string(),
                    Op::Get { .. } => "get".to_string(),
                };
                let outcome = match &e.outcome {
                    Outcome::Ok => "ok".to_string(),
                    Outcome::Read(v) => format!("-> {}", show(v.as_deref())),
                    Outcome::Fail => "fail".to_string(),
                    Outcome::Unknown => "unknown".to_string(),
                };
                [
                    e.id.to_string(),
                    e.client.to_string(),
                    op,
                    e.invoke.to_string(),
                    e.complete.map_or("-".to_string(), |t| t.to_string()),
                    outcome,
                ]
            })
            .collect();
        let header = ["op", "client", "operation", "invoke", "complete", "outcome"];
        let mut width = header.map(str::len);
        for row in &rows {
            for (w, cell) in width.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let header = header.map(str::to_string);
        for row in std::iter::once(&header).chain(&rows) {
            write!(f, "   ")?;
            for (i, (cell, w)) in row.iter().zip(width).enumerate() {
                if i + 1 == row.len() {
                    write!(f, " {cell}")?;
                } else {
                    write!(f, " {cell:<w$}")?;
                }
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

// `unwrap()` and `{:?}` print the table, not a struct dump.
impl fmt::Debug for Anomaly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for Anomaly {}

/// Checks a recorded history; see [`check_entries`].
pub fn check(history: &History) -> Result<Summary, Anomaly> {
    check_entries(&history.entries())
}

/// Checks every key of `entries` for linearizability as a register. On the first key
/// (in key order) that fails, shrinks its history and classifies the violation.
/// Panics on an entry whose outcome does not fit its operation (a get that ended `Ok`,
/// a write that ended `Read`), which [`History`] never records.
pub fn check_entries(entries: &[Entry]) -> Result<Summary, Anomaly> {
    let mut summary = Summary::default();
    let mut by_key: BTreeMap<&str, Vec<&Entry>> = BTreeMap::new();
    for e in entries {
        match e.op {
            Op::Put { .. } => summary.puts += 1,
            Op::Delete { .. } => summary.deletes += 1,
            Op::Get { .. } => summary.gets += 1,
        }
        match e.outcome {
            Outcome::Fail => summary.failed += 1,
            Outcome::Unknown => summary.unknown += 1,
            _ => {}
        }
        by_key.entry(e.op.key()).or_default().push(e);
    }
    summary.keys = by_key.len();
    for (key, ops) in by_key {
        let mut ops: Vec<&Entry> = ops.into_iter().filter(|e| e.checked()).collect();
        ops.sort_by_key(|e| (e.invoke, e.id));
        let started = Instant::now();
        let verdict = search(&prepare(&ops), MAX_SEARCH_STEPS);
        let took = started.elapsed();
        match verdict {
            Verdict::Linearizable { steps } => {
                if steps > summary.max_steps {
                    summary.max_steps = steps;
                    summary.hardest_key = Some(key.to_string());
                }
                summary.longest_search = summary.longest_search.max(took);
            }
            Verdict::Undecided { steps } => {
                return Err(Anomaly {
                    key: key.to_string(),
                    kind: Kind::Undecided,
                    detail: format!(
                        "no linearization found or ruled out within {steps} search steps"
                    ),
                    minimal: Vec::new(),
                    shrunk: false,
                    ops_on_key: ops.len(),
                })
            }
            Verdict::Violation {
                steps,
                frontier,
                blocked,
            } => {
                let budget = steps.saturating_mul(4).clamp(1_000_000, MAX_SEARCH_STEPS);
                let stuck = (frontier, blocked.map(|i| ops[i].id));
                let deadline = Instant::now() + SHRINK_TIME;
                let (minimal, shrunk) = shrink(&ops, stuck, budget, deadline);
                let (kind, detail) = classify(&minimal);
                return Err(Anomaly {
                    key: key.to_string(),
                    kind,
                    detail,
                    minimal: minimal.into_iter().cloned().collect(),
                    shrunk,
                    ops_on_key: ops.len(),
                });
            }
        }
    }
    Ok(summary)
}

// ---------------------------------------------------------------------------------
// The search.

/// An operation as the search sees it: register values interned (0 = absent).
#[derive(Clone, Copy, Debug)]
struct SearchOp {
    /// Index in the slice given to [`prepare`].
    entry: usize,
    invoke: u64,
    /// Latest time it can take effect; `INF` for a write that may never happen.
    end: u64,
    /// Cannot take effect before every operation that completed by then did.
    after: Option<u64>,
    step: Step,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Step {
    Write(u32),
    Read(u32),
}

/// Interns values and applies exact reductions (each only states a constraint every
/// linearization already obeys, so verdicts do not change, but the search shrinks):
/// - an unknown write whose value no read returned is dropped: placing it last (after
///   every read) is always possible and changes nothing, and no read needs it earlier;
/// - the only writer of a (non-absent) value that some read returned takes effect
///   before the first such read `r` completes: its end is clamped, which turns a read
///   unknown put into an ordinary operation;
/// - and it is the last write before `r`, so it comes after every operation that
///   completed before `r` began (they precede `r`, and none of them can sit between:
///   a write would overwrite the value, a read would have returned it and completed
///   before `r`): a put that took effect long after its client gave up is then not
///   tried at every step since its invoke.
fn prepare(ops: &[&Entry]) -> Vec<SearchOp> {
    fn intern<'a>(ids: &mut HashMap<&'a [u8], u32>, v: Option<&'a [u8]>) -> u32 {
        match v {
            None => 0,
            Some(b) => {
                let next = ids.len() as u32 + 1;
                *ids.entry(b).or_insert(next)
            }
        }
    }
    let mut ids: HashMap<&[u8], u32> = HashMap::new();
    let mut out: Vec<SearchOp> = ops
        .iter()
        .enumerate()
        .map(|(entry, e)| {
            let step = match (e.op.written(), e.read()) {
                (Some(w), _) => Step::Write(intern(&mut ids, w)),
                (None, Some(r)) => Step::Read(intern(&mut ids, r)),
                (None, None) => unreachable!("unchecked operation {e:?}"),
            };
            SearchOp {
                entry,
                invoke: e.invoke,
                end: e.end(),
                after: None,
                step,
            }
        })
        .collect();
    let values = ids.len() + 1;
    let mut writers = vec![0u32; values];
    // Per value: (end, invoke) of the read that completed first.
    let mut first_read = vec![(INF, INF); values];
    for o in &out {
        match o.step {
            Step::Write(v) => writers[v as usize] += 1,
            Step::Read(v) => {
                let slot = &mut first_read[v as usize];
                *slot = (*slot).min((o.end, o.invoke));
            }
        }
    }
    out.retain_mut(|o| {
        let Step::Write(v) = o.step else { return true };
        let (read_by, _) = first_read[v as usize];
        if o.end == INF && read_by == INF {
            return false;
        }
        if v != 0 && writers[v as usize] == 1 && read_by > o.invoke {
            o.end = o.end.min(read_by);
        }
        true
    });
    let mut ends: Vec<(u64, usize)> = (out.iter().enumerate())
        .filter(|(_, o)| o.end != INF)
        .map(|(i, o)| (o.end, i))
        .collect();
    ends.sort_unstable();
    for (i, o) in out.iter_mut().enumerate() {
        let Step::Write(v) = o.step else { continue };
        let (read_by, reader_invoke) = first_read[v as usize];
        if v == 0 || writers[v as usize] != 1 || read_by == INF || o.end == INF {
            continue;
        }
        let before = ends.partition_point(|&(t, _)| t < reader_invoke);
        let latest = ends[..before].iter().rev().find(|&&(_, j)| j != i);
        if let Some(&(t, _)) = latest {
            if t >= o.invoke && t < o.end {
                o.after = Some(t);
            }
        }
    }
    out
}

#[derive(Debug)]
enum Verdict {
    Linearizable {
        steps: u64,
    },
    /// `frontier`: the latest completion the search ever got stuck at (operations
    /// invoked after it were never looked at), and whose it is (an entry index).
    Violation {
        steps: u64,
        frontier: u64,
        blocked: Option<usize>,
    },
    Undecided {
        steps: u64,
    },
}

const NIL: usize = usize::MAX;
const HEAD: usize = 0;

fn mix(mut x: u64) -> u64 {
    // splitmix64's finaliser.
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[derive(Clone, Copy)]
struct Event {
    op: usize,
    time: u64,
    is_call: bool,
}

/// One visited configuration: the placed operations that must complete, the register
/// value, and which may-never-happen writes were placed (`extra`). The placed set is
/// numbered in return order, so it is nearly a prefix: it is kept as the index of its
/// first word that is not all ones (`full`) and the words from there to the last one
/// that is not zero (`done`), a word or two however long the history.
struct Seen {
    full: usize,
    done: Box<[u64]>,
    value: u32,
    extra: Box<[u64]>,
}

fn window(done: &[u64]) -> (usize, &[u64]) {
    let full = done
        .iter()
        .position(|&w| w != u64::MAX)
        .unwrap_or(done.len());
    let end = done.iter().rposition(|&w| w != 0).map_or(full, |l| l + 1);
    (full, &done[full..end.max(full)])
}

fn subset(a: &[u64], b: &[u64]) -> bool {
    a.iter().zip(b).all(|(x, y)| x & !y == 0)
}

/// Wing–Gong / Lowe search with Porcupine's memoisation, over a doubly linked list of
/// call and return events in time order. The candidates at any point are the calls
/// before the first return still in the list; placing an operation unlinks its call
/// and return; reaching a return whose call is unplaced means backtracking.
///
/// Writes that may never happen (`end == INF`) have no return event and need not be
/// placed; their call sits at the end of its block of candidates so the search tries
/// "not yet" first, and a configuration is skipped if one with the same placed
/// definite operations and value, and a subset of them placed, was seen.
fn search(ops: &[SearchOp], budget: u64) -> Verdict {
    let n = ops.len();
    // Bit index within `done` (definite operations, in return order; set below) or
    // `extra` (may-never writes).
    let mut slot = vec![0usize; n];
    let (mut definite, mut maybe) = (0usize, 0usize);
    for (i, o) in ops.iter().enumerate() {
        if o.end == INF {
            slot[i] = maybe;
            maybe += 1;
        } else {
            definite += 1;
        }
    }
    if definite == 0 {
        return Verdict::Linearizable { steps: 0 };
    }
    let mut returns: Vec<u64> = ops.iter().map(|o| o.end).filter(|&t| t != INF).collect();
    returns.sort_unstable();
    // (position key, class, event): class 0 = call, 1 = may-never call, 2 = return,
    // 3 = call held back until the returns at its `after` time; a call ties before a
    // return at the same time (the two overlap).
    let mut events: Vec<(u64, u8, Event)> = Vec::with_capacity(2 * n);
    for (i, o) in ops.iter().enumerate() {
        let call = Event {
            op: i,
            time: o.invoke,
            is_call: true,
        };
        if o.end == INF {
            let next_return = returns[returns.partition_point(|&t| t < o.invoke)..]
                .first()
                .copied()
                .unwrap_or(INF);
            events.push((next_return, 1, call));
        } else {
            match o.after {
                Some(t) if t >= o.invoke => events.push((t, 3, call)),
                _ => events.push((o.invoke, 0, call)),
            }
            let ret = Event {
                op: i,
                time: o.end,
                is_call: false,
            };
            events.push((o.end, 2, ret));
        }
    }
    events.sort_by_key(|&(t, class, e)| (t, class, e.op));
    // Node 0 is the head; event k is node k + 1.
    let nodes = events.len() + 1;
    let mut next: Vec<usize> = (1..=nodes)
        .map(|k| if k == nodes { NIL } else { k })
        .collect();
    let mut prev: Vec<usize> = (0..nodes).map(|k| k.wrapping_sub(1)).collect();
    let ev: Vec<Event> = std::iter::once(Event {
        op: NIL,
        time: 0,
        is_call: false,
    })
    .chain(events.iter().map(|&(_, _, e)| e))
    .collect();
    let mut ret_node = vec![NIL; n];
    // Writes that may never happen and write the same value are interchangeable once
    // reached (they stay available for ever), so they are placed in list order only:
    // `twin[i]` is the previous one, which must be placed before `i` may be.
    let mut twin = vec![NIL; n];
    let mut last_twin: HashMap<Step, usize> = HashMap::new();
    let mut returned = 0;
    for (k, e) in ev.iter().enumerate().skip(1) {
        if !e.is_call {
            ret_node[e.op] = k;
            slot[e.op] = returned;
            returned += 1;
        } else if ops[e.op].end == INF {
            if let Some(prev) = last_twin.insert(ops[e.op].step, e.op) {
                twin[e.op] = prev;
            }
        }
    }
    let unlink = |next: &mut Vec<usize>, prev: &mut Vec<usize>, k: usize| {
        let (p, q) = (prev[k], next[k]);
        next[p] = q;
        if q != NIL {
            prev[q] = p;
        }
    };
    let relink = |next: &mut Vec<usize>, prev: &mut Vec<usize>, k: usize| {
        let (p, q) = (prev[k], next[k]);
        next[p] = k;
        if q != NIL {
            prev[q] = k;
        }
    };
    let zobrist: Vec<u64> = (0..n as u64).map(|i| mix(i.wrapping_mul(2) + 1)).collect();

    let mut done = vec![0u64; definite.div_ceil(64)];
    let mut extra = vec![0u64; maybe.div_ceil(64)];
    let mut hash = 0u64;
    let mut placed = 0usize;
    let mut value = 0u32;
    let mut stack: Vec<(usize, u32)> = Vec::new(); // (call node, value before)
    let mut seen: HashMap<u64, Vec<Seen>> = HashMap::new();
    let mut seen_words = 0usize;
    let mut steps = 0u64;
    let mut frontier = 0u64;
    let mut blocked = None;
    let mut k = next[HEAD];
    loop {
        steps += 1;
        if steps > budget {
            return Verdict::Undecided { steps };
        }
        let at_return = k == NIL || !ev[k].is_call;
        if at_return {
            let time = if k == NIL { INF } else { ev[k].time };
            if time >= frontier {
                frontier = time;
                blocked = (k != NIL).then(|| ops[ev[k].op].entry);
            }
            let Some((call, before)) = stack.pop() else {
                return Verdict::Violation {
                    steps,
                    frontier,
                    blocked,
                };
            };
            let i = ev[call].op;
            value = before;
            let bit = slot[i];
            if ops[i].end == INF {
                extra[bit / 64] &= !(1 << (bit % 64));
            } else {
                done[bit / 64] &= !(1 << (bit % 64));
                hash ^= zobrist[i];
                placed -= 1;
                relink(&mut next, &mut prev, ret_node[i]);
            }
            relink(&mut next, &mut prev, call);
            k = next[call];
            continue;
        }
        let i = ev[k].op;
        let may_never = ops[i].end == INF;
        let twin_placed = |j: usize| j == NIL || extra[slot[j] / 64] & (1 << (slot[j] % 64)) != 0;
        if may_never && !twin_placed(twin[i]) {
            k = next[k];
            continue;
        }
        let after = match ops[i].step {
            Step::Write(v) => Some(v),
            Step::Read(v) => (v == value).then_some(value),
        };
        // Placing a may-never write that changes nothing is never needed.
        let Some(after) = after.filter(|&a| !(may_never && a == value)) else {
            k = next[k];
            continue;
        };
        let bit = slot[i];
        let key = if may_never {
            extra[bit / 64] |= 1 << (bit % 64);
            hash ^ mix(after as u64)
        } else {
            done[bit / 64] |= 1 << (bit % 64);
            hash ^ zobrist[i] ^ mix(after as u64)
        };
        let bucket = seen.entry(key).or_default();
        let (full, placed_window) = window(&done);
        let dominated = bucket.iter().any(|s| {
            s.value == after
                && s.full == full
                && *s.done == *placed_window
                && subset(&s.extra, &extra)
        });
        if dominated {
            if may_never {
                extra[bit / 64] &= !(1 << (bit % 64));
            } else {
                done[bit / 64] &= !(1 << (bit % 64));
            }
            k = next[k];
            continue;
        }
        seen_words += placed_window.len() + extra.len() + 6;
        if seen_words > MAX_SEEN_WORDS {
            return Verdict::Undecided { steps };
        }
        bucket.push(Seen {
            full,
            done: placed_window.into(),
            value: after,
            extra: extra.clone().into_boxed_slice(),
        });
        stack.push((k, value));
        value = after;
        unlink(&mut next, &mut prev, k);
        if !may_never {
            hash ^= zobrist[i];
            placed += 1;
            if placed == definite {
                return Verdict::Linearizable { steps };
            }
            unlink(&mut next, &mut prev, ret_node[i]);
        }
        k = next[HEAD];
    }
}

// ---------------------------------------------------------------------------------
// Shrinking and classification.

/// `keep` minus the operations `drop` selects, except the writes a remaining read may
/// need; `None` if nothing would go.
///
/// Why: if no remaining read can have read from a write `w` (none returned its value,
/// or each that did came before `w` or has another remaining write definitely between
/// `w` and itself), any linearization of the larger set minus `w` is one of the
/// smaller set, so the smaller set's violation implies the larger set's: a shrunk
/// history is a true witness. To keep it a readable one too, a put stays while any
/// remaining read returned its value (else `put v1; put v2; get -> v1` would shrink to
/// a lone `get -> v1`, true but useless); deletes get the finer rule, since absence
/// needs no delete to explain it (the key starts absent).
fn without<'a>(keep: &[&'a Entry], drop: impl Fn(usize, &Entry) -> bool) -> Option<Vec<&'a Entry>> {
    let rest: Vec<&Entry> = (keep.iter().enumerate())
        .filter(|&(i, e)| !drop(i, e))
        .map(|(_, e)| *e)
        .collect();
    if rest.len() == keep.len() {
        return None;
    }
    // For a read invoked at t: the latest invoke of a remaining write that completed
    // before t. A write that completed before that invoke is shadowed for this read.
    let mut writes: Vec<(u64, u64)> = (rest.iter())
        .filter(|e| e.op.written().is_some() && e.end() != INF)
        .map(|e| (e.end(), e.invoke))
        .collect();
    writes.sort_unstable();
    let mut latest = 0;
    let shadow: Vec<(u64, u64)> = (writes.iter())
        .map(|&(end, invoke)| {
            latest = latest.max(invoke);
            (end, latest)
        })
        .collect();
    // Per value read: (completion, shadowing invoke) of each remaining read of it.
    type Reads = Vec<(u64, Option<u64>)>;
    let mut reads: HashMap<Option<&[u8]>, Reads> = HashMap::new();
    for r in &rest {
        if let Some(v) = r.read() {
            let before = shadow.partition_point(|&(end, _)| end < r.invoke);
            let shadowed = before.checked_sub(1).map(|i| shadow[i].1);
            reads.entry(v).or_default().push((r.end(), shadowed));
        }
    }
    let needed = |w: &Entry| match w.op.written() {
        None => false,
        Some(Some(v)) => reads.contains_key(&Some(v)),
        Some(None) => reads.get(&None).is_some_and(|rs| {
            rs.iter().any(|&(read_end, shadowed)| {
                w.invoke <= read_end && shadowed.is_none_or(|s| w.end() >= s)
            })
        }),
    };
    let cand: Vec<&'a Entry> = (keep.iter().enumerate())
        .filter(|&(i, e)| !drop(i, e) || needed(e))
        .map(|(_, e)| *e)
        .collect();
    (cand.len() < keep.len()).then_some(cand)
}

/// Greedy delta debugging: remove chunks (halves, then quarters, … then single
/// operations) while what remains is still non-linearizable, each removal subject to
/// [`without`]'s rule. Before it, three cheap guesses about where the first search got
/// `stuck` (the completion time and operation): keep only the operations of a simple
/// [`proof`] about that read; cut everything the search never looked at (invoked
/// after that time); drop every other read. Returns the history and whether shrinking
/// finished in time.
fn shrink<'a>(
    ops: &[&'a Entry],
    stuck: (u64, Option<OpId>),
    budget: u64,
    deadline: Instant,
) -> (Vec<&'a Entry>, bool) {
    let violation =
        |cand: &[&Entry]| matches!(search(&prepare(cand), budget), Verdict::Violation { .. });
    let confirmed = |cand: Option<Vec<&'a Entry>>| cand.filter(|c| violation(c));
    let (frontier, blocked) = stuck;
    let mut keep = ops.to_vec();
    let blocked = blocked.and_then(|id| ops.iter().copied().find(|e| e.id == id));
    if let Some((_, _, used)) = blocked.and_then(|r| proof(&keep, r)) {
        let ids: HashSet<OpId> = used.iter().map(|e| e.id).collect();
        if let Some(cand) = confirmed(without(&keep, |_, e| !ids.contains(&e.id))) {
            keep = cand;
        }
    }
    if let Some(cand) = confirmed(without(&keep, |_, e| e.invoke > frontier)) {
        keep = cand;
    }
    if let Some(r) = blocked.filter(|r| keep.iter().any(|e| e.id == r.id)) {
        let others = |_, e: &Entry| e.read().is_some() && e.id != r.id;
        if let Some(cand) = confirmed(without(&keep, others)) {
            keep = cand;
        }
    }
    let mut chunk = (keep.len() / 2).max(1);
    loop {
        let mut removed_any = false;
        let mut start = 0;
        while start < keep.len() {
            if Instant::now() > deadline {
                return (keep, false);
            }
            let end = (start + chunk).min(keep.len());
            match without(&keep, |i, _| (start..end).contains(&i)) {
                Some(cand) if violation(&cand) => {
                    // What was kept of the chunk stays at `start..`: look at it again
                    // only in the next pass.
                    let kept = end - start - (keep.len() - cand.len());
                    keep = cand;
                    removed_any = true;
                    start += kept;
                }
                _ => start = end,
            }
        }
        if chunk == 1 && !removed_any {
            return (keep, true);
        }
        if !removed_any {
            chunk = (chunk / 2).max(1);
        }
    }
}

/// A simple proof that `ops` cannot explain what the read `r` returned, if there is
/// one: its kind, a sentence, and the operations it rests on. (Two operations are
/// ordered only if one completed strictly before the other was invoked.)
fn proof<'a>(ops: &[&'a Entry], r: &'a Entry) -> Option<(Kind, String, Vec<&'a Entry>)> {
    let got = r.read()?;
    let writes: Vec<(&Entry, Option<&[u8]>)> = (ops.iter())
        .filter_map(|e| e.op.written().map(|v| (*e, v)))
        .collect();
    let reads = ops.iter().filter_map(|e| e.read().map(|v| (*e, v)));
    // Could a delete take effect after something invoked at `from`, and before
    // something completed at `until`?
    let delete_between = |from: u64, until: u64| {
        (writes.iter()).any(|(d, v)| v.is_none() && d.end() >= from && d.invoke <= until)
    };
    let label = |e: &Entry, v: Option<&[u8]>| format!("{} returned {}", e.label(), show(v));
    let Some(_) = got else {
        if let Some((p, _)) = writes.iter().find(|(p, v)| {
            v.is_some()
                && p.outcome == Outcome::Ok
                && p.end() < r.invoke
                && !delete_between(p.invoke, r.end())
        }) {
            let detail = format!(
                "{}, but {} was acknowledged before the read began and no delete could \
                 come between",
                label(r, got),
                p.label()
            );
            return Some((Kind::LostWrite, detail, vec![p, r]));
        }
        let (r2, v) = reads.clone().find(|(r2, v)| {
            v.is_some() && r2.end() < r.invoke && !delete_between(r2.invoke, r.end())
        })?;
        let detail = format!(
            "{}, but the earlier {} and no delete could come between",
            label(r, got),
            label(r2, v)
        );
        return Some((Kind::LostWrite, detail, vec![r2, r]));
    };
    let puts: Vec<&Entry> = (writes.iter())
        .filter(|(_, v)| *v == got)
        .map(|(w, _)| *w)
        .collect();
    if puts.is_empty() {
        let detail = format!(
            "{}, which no put that could have taken effect wrote",
            label(r, got)
        );
        return Some((Kind::UnwrittenValue, detail, vec![r]));
    }
    // Every put of the value was over by `last`; something else was in place after
    // that and before the read began.
    let last = puts.iter().map(|p| p.end()).max().unwrap_or(INF);
    if last == INF {
        return None;
    }
    let kind = |v: Option<&[u8]>| match v {
        None => Kind::ResurrectedDelete,
        Some(_) => Kind::StaleRead,
    };
    if let Some((w, v)) = (writes.iter())
        .filter(|(w, v)| *v != got && w.invoke > last && w.end() < r.invoke)
        .max_by_key(|(w, _)| w.end())
    {
        let detail = format!(
            "{}, but {} took effect after every put of that value and before the read \
             began",
            label(r, got),
            w.label()
        );
        return Some((kind(*v), detail, [puts, vec![w, r]].concat()));
    }
    let (r2, v) = reads
        .filter(|(r2, v)| *v != got && r2.invoke > last && r2.end() < r.invoke)
        .max_by_key(|(r2, _)| r2.end())?;
    let detail = format!(
        "{}, but the earlier {}, after every put of {} (the reads go back in time)",
        label(r, got),
        label(r2, v),
        show(got)
    );
    Some((kind(v), detail, [puts, vec![r2, r]].concat()))
}

/// Names the violation in a (minimal) non-linearizable history: the first read, in
/// invoke order, with a [`proof`] (a read of an unwritten value first of all).
fn classify(ops: &[&Entry]) -> (Kind, String) {
    let reads = || ops.iter().filter(|e| e.read().is_some());
    let found = (reads().filter_map(|r| proof(ops, r)))
        .find(|(kind, _, _)| *kind == Kind::UnwrittenValue)
        .or_else(|| reads().find_map(|r| proof(ops, r)));
    match found {
        Some((kind, detail, _)) => (kind, detail),
        None => (
            Kind::NotLinearizable,
            "no order of these operations, each taking effect within its interval, \
             explains every read"
                .to_string(),
        ),
    }
}

/// One client operation against the coordinator, with its outcome as a client sees
/// it: a write answered 5xx or not at all may or may not have happened.
pub fn perform(url: &str, op: &Op) -> Outcome {
    let key_url = |key: &str| format!("{url}/v1/data/{}", crate::cluster::encode_key(key));
    let write = |r: Result<crate::http::Reply, String>| match r {
        Ok(r) if r.status == 204 => Outcome::Ok,
        // 4xx: refused before anything was applied (bad request, never expected here).
        Ok(r) if (400..500).contains(&r.status) => Outcome::Fail,
        _ => Outcome::Unknown,
    };
    match op {
        Op::Get { key } => match crate::http::get(&key_url(key)) {
            Ok(r) if r.status == 200 => Outcome::Read(Some(r.body)),
            Ok(r) if r.status == 404 => Outcome::Read(None),
            _ => Outcome::Unknown,
        },
        Op::Put { key, value } => write(crate::http::send("PUT", &key_url(key), &[], value)),
        Op::Delete { key } => write(crate::http::send("DELETE", &key_url(key), &[], b"")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::Arc;

    /// Hand-written histories: every operation on key "k" unless `on` says otherwise.
    #[derive(Default)]
    struct Hist {
        entries: Vec<Entry>,
        key: Option<String>,
    }

    impl Hist {
        fn on(mut self, key: &str) -> Hist {
            self.key = Some(key.to_string());
            self
        }

        fn add(mut self, client: usize, op: Op, t: (u64, Option<u64>), outcome: Outcome) -> Hist {
            self.entries.push(Entry {
                id: OpId(self.entries.len()),
                client,
                op,
                invoke: t.0,
                complete: t.1,
                outcome,
            });
            self
        }

        fn k(&self) -> String {
            self.key.clone().unwrap_or_else(|| "k".to_string())
        }

        fn put(self, c: usize, v: &str, inv: u64, comp: u64) -> Hist {
            let op = Op::put(self.k(), v);
            self.add(c, op, (inv, Some(comp)), Outcome::Ok)
        }

        /// A put that timed out at `comp` (or, with `None`, never came back).
        fn put_unknown(self, c: usize, v: &str, inv: u64, comp: Option<u64>) -> Hist {
            let op = Op::put(self.k(), v);
            self.add(c, op, (inv, comp), Outcome::Unknown)
        }

        fn put_failed(self, c: usize, v: &str, inv: u64, comp: u64) -> Hist {
            let op = Op::put(self.k(), v);
            self.add(c, op, (inv, Some(comp)), Outcome::Fail)
        }

        fn del(self, c: usize, inv: u64, comp: u64) -> Hist {
            let op = Op::delete(self.k());
            self.add(c, op, (inv, Some(comp)), Outcome::Ok)
        }

        fn del_unknown(self, c: usize, inv: u64) -> Hist {
            let op = Op::delete(self.k());
            self.add(c, op, (inv, None), Outcome::Unknown)
        }

        fn get(self, c: usize, v: Option<&str>, inv: u64, comp: u64) -> Hist {
            let op = Op::get(self.k());
            let got = Outcome::Read(v.map(|s| s.as_bytes().to_vec()));
            self.add(c, op, (inv, Some(comp)), got)
        }

        fn get_unknown(self, c: usize, inv: u64, comp: u64) -> Hist {
            let op = Op::get(self.k());
            self.add(c, op, (inv, Some(comp)), Outcome::Unknown)
        }

        fn check(&self) -> Result<Summary, Anomaly> {
            check_entries(&self.entries)
        }

        #[track_caller]
        fn ok(&self) -> Summary {
            match self.check() {
                Ok(s) => s,
                Err(a) => panic!("expected linearizable, got:\n{a}"),
            }
        }

        #[track_caller]
        fn rejected(&self) -> Anomaly {
            match self.check() {
                Ok(s) => panic!("expected a violation, got {s}"),
                Err(a) => a,
            }
        }
    }

    fn ids(a: &Anomaly) -> Vec<usize> {
        a.minimal.iter().map(|e| e.id.0).collect()
    }

    // --- linearizable ------------------------------------------------------------

    #[test]
    fn sequential_history_is_linearizable() {
        let s = Hist::default()
            .get(0, None, 1, 2)
            .put(0, "v1", 3, 4)
            .get(1, Some("v1"), 5, 6)
            .put(1, "v2", 7, 8)
            .get(0, Some("v2"), 9, 10)
            .del(0, 11, 12)
            .get(1, None, 13, 14)
            .ok();
        assert_eq!((s.keys, s.puts, s.deletes, s.gets), (1, 2, 1, 4));
        assert_eq!((s.failed, s.unknown), (0, 0));
    }

    #[test]
    fn concurrent_get_may_see_old_or_new_value() {
        let base = || Hist::default().put(0, "v1", 1, 2).put(0, "v2", 3, 10);
        base().get(1, Some("v1"), 4, 5).ok();
        base().get(1, Some("v2"), 4, 5).ok();
        // The old value, then the new one, within the write: fine.
        base()
            .get(1, Some("v1"), 4, 5)
            .get(1, Some("v2"), 6, 7)
            .ok();
        // But absence is no option: v1 was acknowledged and nothing deletes.
        let a = base().get(1, None, 4, 5).rejected();
        assert_eq!(a.kind, Kind::LostWrite, "{a}");
    }

    #[test]
    fn overlapping_writes_may_land_in_either_order_but_consistently() {
        let base = || Hist::default().put(0, "v1", 1, 10).put(1, "v2", 2, 11);
        // Both orders are possible ...
        base()
            .get(2, Some("v1"), 12, 13)
            .get(2, Some("v1"), 14, 15)
            .ok();
        base()
            .get(2, Some("v2"), 12, 13)
            .get(3, Some("v2"), 14, 15)
            .ok();
        // ... and reads during the writes may see the first one land, then the second.
        base()
            .get(2, Some("v2"), 3, 4)
            .get(3, Some("v1"), 5, 6)
            .get(2, Some("v1"), 12, 13)
            .ok();
        // Once both completed, the value cannot flip.
        let a = base()
            .get(2, Some("v1"), 12, 13)
            .get(3, Some("v2"), 14, 15)
            .rejected();
        assert_eq!(a.kind, Kind::StaleRead, "{a}");
        assert_eq!(ids(&a), vec![0, 1, 2, 3], "{a}");
    }

    #[test]
    fn unknown_write_may_be_seen_late() {
        // Timed out at 5, seen long after: it took effect after the client gave up.
        Hist::default()
            .put(0, "v1", 1, 2)
            .put_unknown(0, "v2", 3, Some(5))
            .get(1, Some("v1"), 6, 7)
            .get(1, Some("v2"), 20, 21)
            .get(2, Some("v2"), 22, 23)
            .ok();
        // Never completed at all, and seen.
        Hist::default()
            .put(0, "v1", 1, 2)
            .put_unknown(0, "v2", 3, None)
            .get(1, Some("v2"), 10, 11)
            .ok();
    }

    #[test]
    fn unknown_write_may_never_happen() {
        let s = Hist::default()
            .put(0, "v1", 1, 2)
            .put_unknown(0, "v2", 3, Some(5))
            .del_unknown(1, 4)
            .get(1, Some("v1"), 6, 7)
            .get(2, Some("v1"), 8, 9)
            .ok();
        assert_eq!(s.unknown, 2);
    }

    #[test]
    fn unknown_write_cannot_take_effect_before_its_invoke() {
        let a = Hist::default()
            .get(1, Some("v2"), 1, 2)
            .put_unknown(0, "v2", 3, None)
            .rejected();
        assert_eq!(a.kind, Kind::NotLinearizable, "{a}");
        assert_eq!(a.minimal.len(), 2, "{a}");
    }

    #[test]
    fn unknown_delete_may_explain_a_later_absence_once() {
        let base = || Hist::default().put(0, "v1", 1, 2).del_unknown(1, 3);
        base().get(2, Some("v1"), 4, 5).get(2, None, 6, 7).ok();
        // One delete cannot remove two values. (No simple pattern names this: each
        // absence alone could be the delete's doing.)
        let a = base()
            .get(2, None, 4, 5)
            .put(0, "v2", 6, 7)
            .get(2, None, 8, 9)
            .rejected();
        assert_eq!(a.kind, Kind::NotLinearizable, "{a}");
        assert_eq!(a.minimal.len(), 5, "{a}");
    }

    #[test]
    fn failed_write_is_never_visible() {
        let base = || Hist::default().put(0, "v1", 1, 2).put_failed(1, "v2", 3, 4);
        let s = base().get(2, Some("v1"), 5, 6).ok();
        assert_eq!(s.failed, 1);
        let a = base().get(2, Some("v2"), 5, 6).rejected();
        assert_eq!(a.kind, Kind::UnwrittenValue, "{a}");
        assert_eq!(ids(&a), vec![2], "{a}");
    }

    #[test]
    fn unknown_reads_constrain_nothing() {
        let s = Hist::default()
            .put(0, "v1", 1, 2)
            .get_unknown(1, 3, 4)
            .get(1, Some("v1"), 5, 6)
            .ok();
        assert_eq!((s.gets, s.unknown), (2, 1));
    }

    #[test]
    fn keys_are_checked_independently() {
        let h = Hist::default()
            .put(0, "a1", 1, 2)
            .on("b")
            .put(1, "b1", 3, 4)
            .get(1, Some("b1"), 5, 6)
            .on("k")
            .get(0, Some("a1"), 7, 8);
        assert_eq!(h.ok().keys, 2);
        // A stale read on "b" is reported on "b".
        let a = h
            .on("b")
            .put(1, "b2", 9, 10)
            .get(2, Some("b1"), 11, 12)
            .rejected();
        assert_eq!((a.key.as_str(), a.kind), ("b", Kind::StaleRead), "{a}");
    }

    #[test]
    fn recorder_times_and_never_completed_operations() {
        let h = History::new();
        let a = h.invoke(0, Op::put("k", "v1"));
        let b = h.invoke(1, Op::put("k", "v2")); // never completes
        h.complete(a, Outcome::Ok);
        let c = h.invoke(2, Op::get("k"));
        h.complete(c, Outcome::Read(Some(b"v2".to_vec())));
        let e = h.entries();
        assert_eq!(e.len(), 3);
        assert!(e[a.0].invoke < e[b.0].invoke && e[b.0].invoke < e[a.0].complete.unwrap());
        assert!(e[a.0].complete.unwrap() < e[c.0].invoke);
        assert_eq!(
            (e[b.0].complete, &e[b.0].outcome),
            (None, &Outcome::Unknown)
        );
        let s = check(&h).unwrap();
        assert_eq!(s.unknown, 1);
    }

    #[test]
    #[should_panic(expected = "cannot end with")]
    fn recorder_rejects_a_read_result_for_a_write() {
        let h = History::new();
        let id = h.invoke(0, Op::delete("k"));
        h.complete(id, Outcome::Read(None));
    }

    // --- must be rejected ---------------------------------------------------------

    #[test]
    fn stale_read_is_rejected() {
        let a = Hist::default()
            .put(0, "v1", 1, 2)
            .put(0, "v2", 3, 4)
            .get(1, Some("v1"), 5, 6)
            .rejected();
        assert_eq!(a.kind, Kind::StaleRead, "{a}");
        assert_eq!(ids(&a), vec![0, 1, 2], "{a}");
        assert!(a.shrunk);
    }

    #[test]
    fn lost_write_is_rejected() {
        let a = Hist::default()
            .put(0, "v1", 1, 2)
            .get(1, None, 3, 4)
            .rejected();
        assert_eq!(a.kind, Kind::LostWrite, "{a}");
        assert_eq!(ids(&a), vec![0, 1], "{a}");
    }

    #[test]
    fn resurrected_delete_is_rejected() {
        let a = Hist::default()
            .put(0, "v1", 1, 2)
            .del(0, 3, 4)
            .get(1, Some("v1"), 5, 6)
            .rejected();
        assert_eq!(a.kind, Kind::ResurrectedDelete, "{a}");
        assert_eq!(ids(&a), vec![0, 1, 2], "{a}");
    }

    #[test]
    fn reads_going_back_in_time_are_rejected() {
        // v2's write is still in flight, but once a read saw v2, v1 cannot come back.
        let a = Hist::default()
            .put(0, "v1", 1, 2)
            .put(0, "v2", 3, 20)
            .get(1, Some("v2"), 4, 5)
            .get(1, Some("v1"), 6, 7)
            .rejected();
        assert_eq!(a.kind, Kind::StaleRead, "{a}");
        assert!(a.detail.contains("back in time"), "{a}");
        // All four are needed: without the first read, v2 may land after the second.
        assert_eq!(ids(&a), vec![0, 1, 2, 3], "{a}");
        // A read of absence does the same for a delete.
        let a = Hist::default()
            .put(0, "v1", 1, 2)
            .del(0, 3, 20)
            .get(1, None, 4, 5)
            .get(1, Some("v1"), 6, 7)
            .rejected();
        assert_eq!(a.kind, Kind::ResurrectedDelete, "{a}");
    }

    #[test]
    fn read_of_a_value_never_written_is_rejected() {
        let a = Hist::default()
            .put(0, "v1", 1, 2)
            .get(1, Some("v9"), 3, 4)
            .rejected();
        assert_eq!(a.kind, Kind::UnwrittenValue, "{a}");
        assert_eq!(ids(&a), vec![1], "{a}");
    }

    #[test]
    fn minimal_history_is_cut_out_of_noise_and_printed_as_a_table() {
        // 40 clean rounds, a stale read in the middle, 40 more rounds.
        let mut h = Hist::default();
        let mut t = 0;
        let mut round = |h: Hist, i: usize| {
            t += 4;
            let v = format!("v{i}");
            h.put(i % 3, &v, t, t + 2)
                .get((i + 1) % 3, Some(&v), t + 1, t + 3)
        };
        for i in 0..40 {
            h = round(h, i);
        }
        h = h.get(7, Some("v10"), 1000, 1001);
        let stale = h.entries.len() - 1;
        for i in 40..80 {
            h = round(h, i);
        }
        let a = h.rejected();
        assert_eq!(a.kind, Kind::StaleRead, "{a}");
        assert_eq!(a.minimal.len(), 3, "{a}");
        assert!(ids(&a).contains(&stale), "{a}");
        assert_eq!(a.ops_on_key, 161);
        let text = a.to_string();
        assert!(text.contains("key \"k\": stale read"), "{text}");
        assert!(text.contains("op") && text.contains("outcome"), "{text}");
        assert!(text.contains("-> \"v10\""), "{text}");
        assert!(text.contains("3 of 161 operations"), "{text}");
        // One header and three rows, ordered by invoke.
        let rows: Vec<&str> = text.lines().skip(3).collect();
        assert_eq!(rows.len(), 4, "{text}");
        let invokes: Vec<u64> = a.minimal.iter().map(|e| e.invoke).collect();
        assert!(invokes.windows(2).all(|w| w[0] <= w[1]), "{text}");
    }

    // --- against brute force ---------------------------------------------------------

    /// Linearizability by trying every order: an operation may go next once every
    /// definite operation that completed before its invoke is placed; writes with
    /// unknown outcome may be placed or left out.
    fn brute_force(entries: &[Entry]) -> bool {
        fn go(ops: &[&Entry], placed: &mut Vec<bool>, value: Option<&[u8]>) -> bool {
            if ops.iter().zip(&*placed).all(|(e, &p)| p || e.end() == INF) {
                return true;
            }
            for i in 0..ops.len() {
                let ready = !placed[i]
                    && ops
                        .iter()
                        .zip(&*placed)
                        .all(|(j, &p)| p || j.end() >= ops[i].invoke);
                if !ready {
                    continue;
                }
                let after = match (ops[i].op.written(), ops[i].read()) {
                    (Some(w), _) => w,
                    (None, Some(r)) if r == value => value,
                    _ => continue,
                };
                placed[i] = true;
                let ok = go(ops, placed, after);
                placed[i] = false;
                if ok {
                    return true;
                }
            }
            false
        }
        let ops: Vec<&Entry> = entries.iter().filter(|e| e.checked()).collect();
        go(&ops, &mut vec![false; ops.len()], None)
    }

    fn random_small_history(rng: &mut fastrand::Rng) -> Vec<Entry> {
        let values = ["v1", "v2", "v3"];
        let n = rng.usize(1..=7);
        let mut h = Hist::default();
        for _ in 0..n {
            let (c, inv) = (rng.usize(..4), rng.u64(..16));
            let comp = inv + rng.u64(1..8);
            let v = values[rng.usize(..values.len())];
            h = match rng.u8(..100) {
                0..30 => h.put(c, v, inv, comp),
                30..36 => h.put_unknown(c, v, inv, rng.bool().then_some(comp)),
                36..40 => h.put_failed(c, v, inv, comp),
                40..48 => h.del(c, inv, comp),
                48..53 => h.del_unknown(c, inv),
                53..58 => h.get_unknown(c, inv, comp),
                _ => h.get(c, rng.bool().then_some(v), inv, comp),
            };
        }
        h.entries
    }

    #[test]
    fn agrees_with_brute_force_on_small_random_histories() {
        let mut rng = fastrand::Rng::with_seed(42);
        let mut rejected = 0;
        for case in 0..4000 {
            let entries = random_small_history(&mut rng);
            let expected = brute_force(&entries);
            match check_entries(&entries) {
                Ok(_) => assert!(
                    expected,
                    "case {case}: accepted, but no order exists: {entries:#?}"
                ),
                Err(a) => {
                    assert!(
                        !expected,
                        "case {case}: rejected, but an order exists:\n{a}"
                    );
                    rejected += 1;
                    // The minimal history is itself a violation, and 1-minimal: removing
                    // any operation the shrinking rule allows leaves it linearizable.
                    assert!(a.shrunk && !brute_force(&a.minimal), "case {case}:\n{a}");
                    let minimal: Vec<&Entry> = a.minimal.iter().collect();
                    for i in 0..minimal.len() {
                        if let Some(rest) = without(&minimal, |j, _| j == i) {
                            let rest: Vec<Entry> = rest.into_iter().cloned().collect();
                            assert!(brute_force(&rest), "case {case}: not minimal:\n{a}");
                        }
                    }
                }
            }
        }
        // Both verdicts were exercised in earnest.
        assert!(
            (400..3600).contains(&rejected),
            "{rejected} of 4000 rejected"
        );
    }

    #[test]
    fn shrinking_rule_and_proofs_agree_with_brute_force() {
        let mut rng = fastrand::Rng::with_seed(7);
        let (mut removals, mut proofs) = (0, 0);
        for case in 0..3000 {
            let entries = random_small_history(&mut rng);
            let ops: Vec<&Entry> = entries.iter().filter(|e| e.checked()).collect();
            let linearizable = brute_force(&entries);
            // What `without` lets go keeps a linearizable history linearizable (so a
            // shrunk violation implies the original one), for single ops and for chunks.
            if linearizable {
                for i in 0..ops.len() {
                    let half = rng.bool();
                    let drop = |j: usize, _: &Entry| j == i || (half && j < i);
                    if let Some(rest) = without(&ops, drop) {
                        removals += 1;
                        let rest: Vec<Entry> = rest.into_iter().cloned().collect();
                        assert!(brute_force(&rest), "case {case}: {entries:#?}\n{rest:#?}");
                    }
                }
            }
            // Every proof the classifier offers is a violation on its own.
            for r in ops.iter().filter(|e| e.read().is_some()) {
                if let Some((kind, detail, used)) = proof(&ops, r) {
                    proofs += 1;
                    let used: Vec<Entry> = used.into_iter().cloned().collect();
                    assert!(!linearizable, "case {case}: {kind}: {detail}: {entries:#?}");
                    assert!(
                        !brute_force(&used),
                        "case {case}: {kind}: {detail}: {used:#?}"
                    );
                }
            }
        }
        assert!(
            removals > 1000 && proofs > 300,
            "{removals} removals, {proofs} proofs"
        );
    }

    #[test]
    fn search_gives_up_at_its_budget() {
        let entries = simulate(5, 6, 300, 6);
        let ops: Vec<&Entry> = entries.iter().filter(|e| e.checked()).collect();
        assert!(matches!(
            search(&prepare(&ops), 10),
            Verdict::Undecided { .. }
        ));
        assert!(matches!(
            search(&prepare(&ops), MAX_SEARCH_STEPS),
            Verdict::Linearizable { .. }
        ));
    }

    // --- randomised: a real register, driven by simulated clients --------------------

    /// Simulates `clients` clients doing `ops` operations on one key against a real
    /// register, with random overlaps: each operation takes effect at a random moment
    /// between its invoke and complete (so the history is linearizable by
    /// construction). 4% fail without effect; `timeouts` % time out, taking effect
    /// before the timeout, at a random later time, or never; a quarter of those never
    /// complete at all.
    fn simulate(seed: u64, clients: usize, ops: usize, timeouts: u8) -> Vec<Entry> {
        let mut rng = fastrand::Rng::with_seed(seed);
        let h = History::new();
        let mut register: Option<Vec<u8>> = None;
        // Per client: (id, op, result once applied, fate) with fate 0 ok, 1 fail, 2 timeout.
        #[allow(clippy::type_complexity)]
        let mut pending: Vec<Option<(OpId, Op, Option<Outcome>, u8)>> = vec![None; clients];
        let mut zombies: Vec<Op> = Vec::new(); // timed out, not applied yet
        let mut started = 0;
        let mut values = 0;
        let apply = |register: &mut Option<Vec<u8>>, op: &Op| match op {
            Op::Put { value, .. } => {
                *register = Some(value.clone());
                Outcome::Ok
            }
            Op::Delete { .. } => {
                *register = None;
                Outcome::Ok
            }
            Op::Get { .. } => Outcome::Read(register.clone()),
        };
        while started < ops || pending.iter().any(Option::is_some) {
            if !zombies.is_empty() && rng.u8(..100) < 3 {
                let op = zombies.swap_remove(rng.usize(..zombies.len()));
                if rng.bool() {
                    apply(&mut register, &op);
                }
            }
            let c = rng.usize(..clients);
            match &mut pending[c] {
                None if started < ops => {
                    let op = match rng.u8(..100) {
                        0..40 => {
                            values += 1;
                            Op::put("k", format!("v{values}"))
                        }
                        40..48 => Op::delete("k"),
                        _ => Op::get("k"),
                    };
                    let fate = match rng.u8(..100) {
                        f if f < 4 => 1,
                        f if f < 4 + timeouts => 2,
                        _ => 0,
                    };
                    let id = h.invoke(c, op.clone());
                    pending[c] = Some((id, op, None, fate));
                    started += 1;
                }
                None => {}
                Some((_, op, result @ None, fate)) => {
                    *result = Some(match *fate {
                        1 => Outcome::Fail,
                        2 => Outcome::Unknown,
                        _ => apply(&mut register, op),
                    });
                }
                Some((id, op, Some(result), fate)) => {
                    if *fate == 2 {
                        match rng.u8(..3) {
                            0 => {
                                let _ = apply(&mut register, op);
                            }
                            1 => zombies.push(op.clone()),
                            _ => {}
                        }
                        if rng.u8(..4) > 0 {
                            h.complete(*id, Outcome::Unknown);
                        }
                    } else {
                        h.complete(*id, result.clone());
                    }
                    pending[c] = None;
                }
            }
        }
        h.entries()
    }

    #[test]
    fn random_linearizable_history_checks_fast() {
        // (seed, clients, operations, % timeouts): the last is a bad day, with zombie
        // writes landing hundreds of operations after their client gave up.
        for (seed, clients, ops, timeouts) in [(1, 6, 2000, 6), (2, 6, 2000, 6), (3, 8, 3000, 25)] {
            let entries = simulate(seed, clients, ops, timeouts);
            let started = Instant::now();
            let s = check_entries(&entries).unwrap_or_else(|a| panic!("seed {seed}:\n{a}"));
            let took = started.elapsed();
            eprintln!("seed {seed}: {s}; checked in {took:?}");
            assert_eq!(s.puts + s.deletes + s.gets, ops);
            assert!(s.unknown > ops / 40 && s.failed > ops / 50, "{s}");
            assert!(took < Duration::from_secs(3), "seed {seed}: took {took:?}");
        }
    }

    #[test]
    fn random_history_with_one_stale_read_is_rejected() {
        let entries = simulate(7, 6, 2000, 6);
        // Make room between ticks, then insert a read, in the middle of the history, of
        // the first acknowledged value after an acknowledged put of another value,
        // invoked after the first one completed, has completed.
        let mut entries: Vec<Entry> = entries
            .into_iter()
            .map(|mut e| {
                e.invoke *= 4;
                e.complete = e.complete.map(|t| t * 4);
                e
            })
            .collect();
        let acked_put = |e: &&Entry| matches!(e.op, Op::Put { .. }) && e.outcome == Outcome::Ok;
        let first = entries
            .iter()
            .filter(acked_put)
            .min_by_key(|e| e.end())
            .unwrap()
            .clone();
        let middle = entries.iter().map(|e| e.invoke).max().unwrap() / 2;
        let later = entries
            .iter()
            .filter(acked_put)
            .filter(|e| e.invoke > first.end() && e.end() >= middle)
            .min_by_key(|e| e.end())
            .unwrap()
            .clone();
        let Op::Put { value, .. } = &first.op else {
            unreachable!()
        };
        let stale = OpId(entries.len());
        entries.push(Entry {
            id: stale,
            client: 99,
            op: Op::get("k"),
            invoke: later.end() + 1,
            complete: Some(later.end() + 3),
            outcome: Outcome::Read(Some(value.clone())),
        });
        let started = Instant::now();
        let a = check_entries(&entries).unwrap_err();
        eprintln!("rejected and shrunk in {:?}:\n{a}", started.elapsed());
        // The witness is the read, the first put, and one write that replaced it
        // (a put or a delete, whichever the shrinking kept).
        assert!(
            matches!(a.kind, Kind::StaleRead | Kind::ResurrectedDelete),
            "{a}"
        );
        assert_eq!(a.minimal.len(), 3, "{a}");
        assert!(a.shrunk, "{a}");
        assert!(
            ids(&a).contains(&stale.0) && ids(&a).contains(&first.id.0),
            "{a}"
        );
    }

    #[test]
    fn threads_recording_against_a_real_store_are_linearizable() {
        let h = Arc::new(History::new());
        let store = Arc::new(Mutex::new(HashMap::<String, Vec<u8>>::new()));
        let threads: Vec<_> = (0..6)
            .map(|c| {
                let (h, store) = (h.clone(), store.clone());
                std::thread::spawn(move || {
                    let mut rng = fastrand::Rng::with_seed(c as u64);
                    for i in 0..300 {
                        let key = format!("k{}", rng.u8(..3));
                        let op = match rng.u8(..10) {
                            0..4 => Op::put(&key, format!("c{c}-{i}")),
                            4 => Op::delete(&key),
                            _ => Op::get(&key),
                        };
                        let id = h.invoke(c, op.clone());
                        let outcome = {
                            let mut s = store.lock().unwrap();
                            match op {
                                Op::Put { value, .. } => {
                                    s.insert(key, value);
                                    Outcome::Ok
                                }
                                Op::Delete { .. } => {
                                    s.remove(&key);
                                    Outcome::Ok
                                }
                                Op::Get { .. } => Outcome::Read(s.get(&key).cloned()),
                            }
                        };
                        if rng.u8(..20) == 0 {
                            std::thread::yield_now();
                        }
                        h.complete(id, outcome);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(h.len(), 1800);
        let s = check(&h).unwrap();
        assert_eq!(s.keys, 3);
        assert!(h.entries().iter().all(|e| e.invoke < e.complete.unwrap()));
    }
}
