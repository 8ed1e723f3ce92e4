//! `torua-bench failover-latency`: what clients see while a storage node is frozen.
//!
//! Two local clusters (a coordinator, `--nodes` storage nodes with their agents), one
//! per side of the comparison:
//!
//! - **on**: the coordinator's defaults: hedged reads, bounded write stalls
//!   (`--write-timeout 1s`, `--suspect-write-timeout 100ms`);
//! - **off**: `--hedge-reads false --write-timeout 3s --suspect-write-timeout 3s`, how
//!   the coordinator behaved before (no hedging, 3 s write timeout).
//!
//! Both clusters are preloaded with `--keys` keys. Each run drives an open-loop load
//! through the coordinator (`--rate` ops/s, `--read-fraction` reads, the rest writes,
//! keys uniform): request k is due at `t0 + k / rate` whatever happened to the
//! earlier ones, and is sent on an idle keep-alive connection of a pool (a new one
//! when none is idle, up to `--max-connections`, so a stuck request never delays the
//! next one), and its latency counts from its due time. `--before-secs` in, the
//! storage node of one member is SIGSTOPped for `--freeze-secs`, then SIGCONTed, and
//! the load goes on for `--after-secs`. Every answer is checked: a read must answer
//! 200 with a value at least as new as the last write of that key acknowledged before
//! the read was sent (stale otherwise), a write 204; anything else, or no answer
//! within `--client-timeout-secs`, is an error.
//!
//! Latencies are assigned to the phase their request was due in (before the SIGSTOP,
//! during the freeze, after the SIGCONT; a request due just before the SIGSTOP and
//! still in flight when it lands counts before); throughput is the successful
//! operations that *completed* within a phase, per second. The pool closes
//! connections idle for over 5 s instead of using them (the coordinator closes them
//! at 10 s), as pooling HTTP clients do. Runs alternate between the sides
//! (run i of "on", run i of "off", …) and freeze the same member in both; between
//! runs each cluster is left to recover: the node healthy again, the cluster green,
//! no move in flight and the shard map unchanged for `--settle-secs`.

use crate::cluster::{wait_state, Named};
use crate::http::Client;
use crate::proc::ProcStats;
use crate::report::{self, f1};
use anyhow::{bail, Context, Result};
use hdrhistogram::Histogram;
use nix::sys::signal::Signal;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Freezes per side.
    #[arg(long, default_value_t = 10)]
    pub runs: usize,
    /// Target load, operations per second (open loop).
    #[arg(long, default_value_t = 2000.0)]
    pub rate: f64,
    /// Fraction of reads; the rest are writes.
    #[arg(long, default_value_t = 0.9)]
    pub read_fraction: f64,
    /// Keys, preloaded before the first run.
    #[arg(long, default_value_t = 10_000)]
    pub keys: usize,
    /// Bytes per value.
    #[arg(long, default_value_t = 100)]
    pub value_bytes: usize,
    /// Storage nodes (each with its agent) per cluster.
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    /// `--shards` of the coordinator.
    #[arg(long, default_value_t = 64)]
    pub shards: u32,
    /// Agent heartbeat interval.
    #[arg(long, default_value = "1s")]
    pub interval: String,
    /// Connections opened ahead of each run (the pool grows past them on demand).
    #[arg(long, default_value_t = 16)]
    pub connections: usize,
    /// Most connections open at once; past that, due requests wait for one (and the
    /// wait counts in their latency).
    #[arg(long, default_value_t = 2048)]
    pub max_connections: usize,
    /// Seconds of load before the SIGSTOP.
    #[arg(long, default_value_t = 5.0)]
    pub before_secs: f64,
    /// Seconds the storage node stays stopped.
    #[arg(long, default_value_t = 10.0)]
    pub freeze_secs: f64,
    /// Seconds of load after the SIGCONT.
    #[arg(long, default_value_t = 5.0)]
    pub after_secs: f64,
    /// A request without an answer this long is an error (and its connection closed).
    #[arg(long, default_value_t = 5.0)]
    pub client_timeout_secs: f64,
    /// Between runs, how long the shard map must stay unchanged (longer than the
    /// coordinator's 10 s rebalance delay, so that no hand-back lands in a run).
    #[arg(long, default_value_t = 12.0)]
    pub settle_secs: f64,
    /// Sides to run: `on` (hedging, bounded write stalls), `off` (neither).
    #[arg(long, value_delimiter = ',', default_value = "on,off")]
    pub sides: Vec<String>,
    /// Keep the clusters' temp dirs (every process's log) and print where they are.
    #[arg(long)]
    pub keep: bool,
    #[arg(
        long = "json",
        alias = "out",
        default_value = "bench-results/failover-latency.json"
    )]
    pub json: PathBuf,
}

/// The coordinator flags of a side.
fn side_flags(side: &str) -> Result<Vec<&'static str>> {
    Ok(match side {
        "on" => vec![],
        "off" => vec![
            "--hedge-reads",
            "false",
            "--write-timeout",
            "3s",
            "--suspect-write-timeout",
            "3s",
        ],
        other => bail!("--sides: {other:?} is neither on nor off"),
    })
}

const PHASES: [&str; 3] = ["before", "during", "after"];
/// Goals during the freeze (issue 14).
const GOAL_READ_P999_MS: f64 = 50.0;
const GOAL_READ_MAX_MS: f64 = 100.0;
const GOAL_WRITE_MAX_MS: f64 = 1500.0;
const GOAL_THROUGHPUT: f64 = 0.9;

pub fn run(args: Args) -> Result<()> {
    if !args.rate.is_finite() || args.rate <= 0.0 || !(0.0..=1.0).contains(&args.read_fraction) {
        bail!("--rate must be positive and --read-fraction within 0..=1");
    }
    if args.nodes < 2 || args.keys == 0 || args.runs == 0 {
        bail!("--nodes ≥ 2, --keys ≥ 1, --runs ≥ 1");
    }
    for s in &args.sides {
        side_flags(s)?;
    }
    crate::block_on(1, run_async(args))
}

async fn run_async(args: Args) -> Result<()> {
    let machine = report::machine();
    let started = Instant::now();
    let mut sides = Vec::new();
    for name in &args.sides {
        println!(
            "== side {name}: coordinator {:?}, {} nodes, {} shards; preloading {} keys",
            side_flags(name)?,
            args.nodes,
            args.shards,
            args.keys
        );
        let mut s = SideCluster::start(name, &args).await?;
        let t = Instant::now();
        if let Err(e) = s.preload(&args).await {
            println!("{}", s.cluster.logs());
            return Err(e);
        }
        println!(
            "   preloaded in {:.1} s; waiting for the shard map to settle",
            t.elapsed().as_secs_f64()
        );
        if let Err(e) = s.recover(None, &args).await {
            println!("{}", s.cluster.logs());
            return Err(e);
        }
        sides.push(s);
    }
    let mut runs: Vec<Vec<RunResult>> = sides.iter().map(|_| Vec::new()).collect();
    for i in 0..args.runs {
        for (si, s) in sides.iter_mut().enumerate() {
            let victim = i % args.nodes;
            let r = match s.one_run(i, victim, &args).await {
                Ok(r) => r,
                Err(e) => {
                    println!(
                        "  {} run {i}: FAILED: {e:#}\n{}",
                        s.cluster.name,
                        s.cluster.logs()
                    );
                    if args.keep {
                        s.cluster.keep();
                    }
                    return Err(e);
                }
            };
            println!("  {}", r.line());
            runs[si].push(r);
            let t = Instant::now();
            if let Err(e) = s.recover(Some(victim), &args).await {
                println!(
                    "  {} run {i}: no recovery: {e:#}\n{}",
                    s.cluster.name,
                    s.cluster.logs()
                );
                if args.keep {
                    s.cluster.keep();
                }
                return Err(e);
            }
            runs[si].last_mut().expect("pushed").recovered_s = Some(t.elapsed().as_secs_f64());
        }
    }

    let summaries: Vec<Summary> = sides
        .iter()
        .zip(&runs)
        .map(|(s, r)| Summary::of(&s.cluster.name, r))
        .collect();
    let mut rows = Vec::new();
    for s in &summaries {
        rows.extend(s.rows());
    }
    report::table(
        &format!(
            "client-observed latency (ms, pooled over runs; from each request's due time), target {} ops/s, {:.0} % reads, node frozen {} s",
            args.rate,
            args.read_fraction * 100.0,
            args.freeze_secs
        ),
        &[
            "side", "phase", "ops/s", "reads", "p50", "p99", "p99.9", "max", "writes", "p50",
            "p99", "p99.9", "max", "errors",
        ],
        &rows,
    );
    report::table(
        "goals during the freeze: read p99.9 < 50 ms, read max < 100 ms, write max < 1.5 s, 0 errors, throughput >= 90 % of before",
        &[
            "side",
            "read p99.9",
            "read max",
            "write max",
            "errors",
            "throughput",
            "worst run",
            "verdict",
        ],
        &summaries.iter().map(Summary::goal_row).collect::<Vec<_>>(),
    );
    let mut load_rows = Vec::new();
    for s in &summaries {
        load_rows.push(s.load_row());
    }
    report::table(
        "load: achieved rates (medians over runs), generator lateness, stale reads, hedges",
        &[
            "side",
            "dispatched/s",
            "completed/s before",
            "lag p99 ms",
            "lag max ms",
            "peak conns",
            "stale reads",
            "hedged (won/lost/budget)",
            "gen cpu",
            "coord cpu",
        ],
        &load_rows,
    );
    println!(
        "\n  errors: answers other than 200 (read) / 204 (write), or none within {} s; stale: a read\n  \
         older than a write acknowledged before it was sent. Latency counts every answered or\n  \
         timed-out request, from its due time (open loop: queueing in the client counts).",
        args.client_timeout_secs
    );
    if args.runs < 10 {
        println!(
            "\n  NOTE: only {} run(s) per side (< 10): tails are rough",
            args.runs
        );
    }
    println!(
        "\n  total wall time {:.0} s",
        started.elapsed().as_secs_f64()
    );
    let out = json!({
        "benchmark": "failover-latency",
        "machine": machine,
        "params": {
            "runs": args.runs, "rate": args.rate, "read_fraction": args.read_fraction,
            "keys": args.keys, "value_bytes": args.value_bytes, "nodes": args.nodes,
            "shards": args.shards, "interval": args.interval,
            "connections": args.connections, "max_connections": args.max_connections,
            "before_secs": args.before_secs, "freeze_secs": args.freeze_secs,
            "after_secs": args.after_secs, "client_timeout_secs": args.client_timeout_secs,
            "settle_secs": args.settle_secs,
        },
        "goals_during_freeze": {
            "read_p999_ms": GOAL_READ_P999_MS, "read_max_ms": GOAL_READ_MAX_MS,
            "write_max_ms": GOAL_WRITE_MAX_MS, "errors": 0, "throughput_ratio": GOAL_THROUGHPUT,
        },
        "sides": sides.iter().zip(&summaries).zip(&runs).map(|((s, sum), r)| json!({
            "side": s.cluster.name,
            "coordinator_flags": side_flags(&s.cluster.name).unwrap_or_default(),
            "summary": sum.json(),
            "runs": r.iter().map(RunResult::json).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "wall_secs": started.elapsed().as_secs_f64(),
    });
    if args.keep {
        for s in &mut sides {
            s.cluster.keep();
        }
    }
    report::write_json(&args.json, &out)
}

// ---------------------------------------------------------------------------------
// The client: a lean keep-alive HTTP/1.1 connection (GET and PUT), and a pool.

/// Largest answer head or body accepted.
const MAX_ANSWER: usize = 1 << 20;
/// Idle connections older than this are closed rather than used (the coordinator
/// closes them after 10 s).
const MAX_IDLE: Duration = Duration::from_secs(5);

struct Conn {
    stream: TcpStream,
    out: Vec<u8>,
    inbuf: Vec<u8>,
    reusable: bool,
    /// When it went back to the pool.
    idle_since: Instant,
}

impl Conn {
    async fn connect(addr: SocketAddr) -> Result<Conn> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connect {addr}"))?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            out: Vec::with_capacity(512),
            inbuf: Vec::with_capacity(1024),
            reusable: true,
            idle_since: Instant::now(),
        })
    }

    /// Sends one request; returns the answer's status and body.
    async fn request(&mut self, method: &str, path: &str, body: &[u8]) -> Result<(u16, &[u8])> {
        self.out.clear();
        write!(
            self.out,
            "{method} {path} HTTP/1.1\r\nhost: coordinator\r\ncontent-length: {}\r\n\r\n",
            body.len()
        )?;
        self.out.extend_from_slice(body);
        self.stream.write_all(&self.out).await?;
        self.inbuf.clear();
        let (status, head_len, body_len) = loop {
            self.inbuf.reserve(4096);
            if self.stream.read_buf(&mut self.inbuf).await? == 0 {
                bail!("connection closed before the answer");
            }
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut res = httparse::Response::new(&mut headers);
            let httparse::Status::Complete(head_len) = res.parse(&self.inbuf)? else {
                if self.inbuf.len() > MAX_ANSWER {
                    bail!("answer head larger than {MAX_ANSWER} bytes");
                }
                continue;
            };
            let status = res.code.unwrap_or(0);
            let mut len = None;
            for h in res.headers.iter() {
                if h.name.eq_ignore_ascii_case("content-length") {
                    len = Some(std::str::from_utf8(h.value)?.trim().parse::<usize>()?);
                } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                    bail!("chunked answers are not supported");
                } else if h.name.eq_ignore_ascii_case("connection")
                    && h.value.eq_ignore_ascii_case(b"close")
                {
                    self.reusable = false;
                }
            }
            let len = match (status, len) {
                (100..=199 | 204 | 304, _) => 0,
                (_, Some(n)) if n <= MAX_ANSWER => n,
                (_, Some(n)) => bail!("answer body of {n} bytes"),
                (_, None) => bail!("answer {status} without content-length"),
            };
            break (status, head_len, len);
        };
        while self.inbuf.len() < head_len + body_len {
            self.inbuf.reserve(4096);
            if self.stream.read_buf(&mut self.inbuf).await? == 0 {
                bail!("connection closed inside the answer body");
            }
        }
        Ok((status, &self.inbuf[head_len..head_len + body_len]))
    }
}

/// Idle keep-alive connections (most recently used on top); `permits` bounds how
/// many are open (idle or busy).
struct Pool {
    addr: SocketAddr,
    idle: Mutex<Vec<Conn>>,
    permits: Arc<Semaphore>,
    open: AtomicUsize,
    peak: AtomicUsize,
}

impl Pool {
    fn new(addr: SocketAddr, max: usize) -> Pool {
        Pool {
            addr,
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(max.max(1))),
            open: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
        }
    }

    /// Closes every idle connection and opens `n` new ones.
    async fn warm(&self, n: usize) -> Result<()> {
        {
            let mut idle = self.idle.lock().expect("pool");
            self.open.fetch_sub(idle.len(), Ordering::Relaxed);
            idle.clear();
        }
        for _ in 0..n {
            let c = Conn::connect(self.addr).await?;
            self.open.fetch_add(1, Ordering::Relaxed);
            self.idle.lock().expect("pool").push(c);
        }
        Ok(())
    }

    /// One request on an idle connection (or a new one); the connection goes back to
    /// the pool unless the request failed. `check` reads the answer.
    async fn call<T>(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
        check: impl FnOnce(u16, &[u8]) -> T,
    ) -> Result<T> {
        let _permit = self.permits.acquire().await?;
        let idle = {
            let mut idle = self.idle.lock().expect("pool");
            // The coordinator closes connections idle for 10 s; like any pooling
            // client, ours lets them go first (those below the top are older still).
            if idle
                .last()
                .is_some_and(|c| c.idle_since.elapsed() > MAX_IDLE)
            {
                self.open.fetch_sub(idle.len(), Ordering::Relaxed);
                idle.clear();
            }
            idle.pop()
        };
        let mut conn = match idle {
            Some(c) => c,
            None => {
                let c = Conn::connect(self.addr).await?;
                let open = self.open.fetch_add(1, Ordering::Relaxed) + 1;
                self.peak.fetch_max(open, Ordering::Relaxed);
                c
            }
        };
        // Dropped here (by a failure or the caller's timeout), the connection closes.
        let guard = OpenGuard(&self.open);
        let out = conn
            .request(method, path, body)
            .await
            .map(|(status, body)| check(status, body))?;
        if conn.reusable {
            std::mem::forget(guard);
            conn.idle_since = Instant::now();
            self.idle.lock().expect("pool").push(conn);
        }
        Ok(out)
    }
}

/// Counts a connection closed when dropped.
struct OpenGuard<'a>(&'a AtomicUsize);

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

// ---------------------------------------------------------------------------------
// Keys and their last acknowledged writes.

struct Key {
    path: String,
    /// Sequence number of the last write acknowledged.
    acked: AtomicU64,
    /// A write of this key is in flight (writes of one key never overlap, so the
    /// acknowledged sequence is the key's value; a write without an answer leaves the
    /// key retired from writing, its value unknown).
    writing: AtomicBool,
}

struct Keys {
    keys: Vec<Key>,
    /// Last sequence number used (global, monotonic).
    seq: AtomicU64,
    value_bytes: usize,
}

impl Keys {
    fn new(n: usize, value_bytes: usize) -> Keys {
        Keys {
            keys: (0..n)
                .map(|i| Key {
                    path: format!("/v1/data/fl-{i:06}"),
                    acked: AtomicU64::new(0),
                    writing: AtomicBool::new(false),
                })
                .collect(),
            seq: AtomicU64::new(0),
            value_bytes: value_bytes.max(24),
        }
    }

    /// `<key>:<seq>:` padded to `value_bytes`.
    fn value(&self, k: usize, seq: u64) -> Vec<u8> {
        let mut v = format!("{k}:{seq}:").into_bytes();
        v.resize(self.value_bytes.max(v.len()), b'x');
        v
    }

    fn seq_of(body: &[u8], k: usize) -> Option<u64> {
        let s = std::str::from_utf8(body).ok()?;
        let mut it = s.split(':');
        let key: usize = it.next()?.parse().ok()?;
        let seq: u64 = it.next()?.parse().ok()?;
        (key == k).then_some(seq)
    }
}

// ---------------------------------------------------------------------------------
// One operation and its record.

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Outcome {
    Ok,
    Stale,
    Status(u16),
    Timeout,
    Io,
}

impl Outcome {
    fn reason(self) -> String {
        match self {
            Outcome::Ok => "ok".into(),
            Outcome::Stale => "stale".into(),
            Outcome::Status(s) => format!("http_{s}"),
            Outcome::Timeout => "timeout".into(),
            Outcome::Io => "connection".into(),
        }
    }
}

#[derive(Clone, Copy)]
struct Rec {
    /// µs from t0 to the request's due time.
    due_us: u64,
    /// µs from t0 to the answer (or the timeout).
    done_us: u64,
    read: bool,
    key: u32,
    outcome: Outcome,
}

/// A side's client state, shared by its runs: the pool and the keys.
struct Shared {
    pool: Pool,
    keys: Keys,
    timeout: Duration,
}

async fn read_op(sh: &Shared, k: usize) -> Outcome {
    let key = &sh.keys.keys[k];
    let floor = key.acked.load(Ordering::Acquire);
    let res = tokio::time::timeout(
        sh.timeout,
        sh.pool.call("GET", &key.path, b"", |status, body| {
            if status != 200 {
                return Outcome::Status(status);
            }
            match Keys::seq_of(body, k) {
                Some(seq) if seq >= floor => Outcome::Ok,
                _ => Outcome::Stale,
            }
        }),
    )
    .await;
    match res {
        Ok(Ok(o)) => o,
        Ok(Err(_)) => Outcome::Io,
        Err(_) => Outcome::Timeout,
    }
}

async fn write_op(sh: &Shared, k: usize) -> Outcome {
    let key = &sh.keys.keys[k];
    let seq = sh.keys.seq.fetch_add(1, Ordering::Relaxed) + 1;
    let value = sh.keys.value(k, seq);
    let res = tokio::time::timeout(
        sh.timeout,
        sh.pool.call("PUT", &key.path, &value, |status, _| {
            if status == 204 || status == 200 {
                Outcome::Ok
            } else {
                Outcome::Status(status)
            }
        }),
    )
    .await;
    let o = match res {
        Ok(Ok(o)) => o,
        Ok(Err(_)) => Outcome::Io,
        Err(_) => Outcome::Timeout,
    };
    match o {
        Outcome::Ok => {
            key.acked.fetch_max(seq, Ordering::AcqRel);
            key.writing.store(false, Ordering::Release);
        }
        // A refused write (an answer) left the value as it was; one without an
        // answer may still land: the key is retired from writing.
        Outcome::Status(_) => key.writing.store(false, Ordering::Release),
        _ => {}
    }
    o
}

/// A key no write is in flight for (None if 16 random tries found none).
fn claim_key(keys: &Keys, rng: &mut fastrand::Rng) -> Option<usize> {
    for _ in 0..16 {
        let k = rng.usize(0..keys.keys.len());
        if keys.keys[k]
            .writing
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            return Some(k);
        }
    }
    None
}

// ---------------------------------------------------------------------------------
// A cluster per side.

struct SideCluster {
    cluster: Named,
    shared: Arc<Shared>,
    rng: fastrand::Rng,
}

impl SideCluster {
    async fn start(name: &str, args: &Args) -> Result<SideCluster> {
        let shards = args.shards.to_string();
        let mut flags = vec!["--shards", shards.as_str()];
        flags.extend(side_flags(name)?);
        let cluster = Named::start(name, &flags, args.nodes, &args.interval).await?;
        let shared = Arc::new(Shared {
            pool: Pool::new(cluster.coord.addr, args.max_connections),
            keys: Keys::new(args.keys, args.value_bytes),
            timeout: Duration::from_secs_f64(args.client_timeout_secs),
        });
        Ok(SideCluster {
            cluster,
            shared,
            rng: fastrand::Rng::with_seed(14),
        })
    }

    /// Waits for a green cluster, then writes every key once (closed loop over
    /// `--connections` workers).
    async fn preload(&mut self, args: &Args) -> Result<()> {
        wait_stable(self.cluster.coord.addr, 0.0, Duration::from_secs(60)).await?;
        self.shared.pool.warm(args.connections).await?;
        let workers = args.connections.max(1);
        let next = Arc::new(AtomicUsize::new(0));
        let mut handles = Vec::new();
        for _ in 0..workers {
            let (sh, next) = (self.shared.clone(), next.clone());
            handles.push(tokio::spawn(async move {
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    if k >= sh.keys.keys.len() {
                        return Ok::<(), anyhow::Error>(());
                    }
                    sh.keys.keys[k].writing.store(true, Ordering::Release);
                    let o = write_op(&sh, k).await;
                    if o != Outcome::Ok {
                        bail!("preload of key {k}: {}", o.reason());
                    }
                }
            }));
        }
        for h in handles {
            h.await??;
        }
        Ok(())
    }

    /// After a run (`victim` SIGCONTed): the node healthy, then a green cluster with
    /// no move in flight and a shard map unchanged for `--settle-secs`.
    async fn recover(&mut self, victim: Option<usize>, args: &Args) -> Result<()> {
        if let Some(v) = victim {
            wait_state(
                self.cluster.coord.addr,
                &self.cluster.members[v].id,
                "healthy",
                Duration::from_secs(60),
            )
            .await?;
        }
        wait_stable(
            self.cluster.coord.addr,
            args.settle_secs,
            Duration::from_secs(180),
        )
        .await
    }

    async fn one_run(&mut self, run: usize, victim: usize, args: &Args) -> Result<RunResult> {
        for m in &mut self.cluster.members {
            m.node.check_running()?;
            m.agent.check_running()?;
        }
        self.cluster.coord.proc.check_running()?;
        let victim_id = self.cluster.members[victim].id.clone();
        let mut client = Client::new(self.cluster.coord.addr);
        let (held, primaries) = holdings(&mut client, &victim_id).await?;
        let hedges0 = hedged_reads(&mut client).await;
        let pool = &self.shared.pool;
        pool.warm(args.connections).await?;
        pool.peak
            .store(pool.open.load(Ordering::Relaxed), Ordering::Relaxed);

        let period = Duration::from_secs_f64(1.0 / args.rate);
        let before = Duration::from_secs_f64(args.before_secs);
        let freeze = Duration::from_secs_f64(args.freeze_secs);
        let after = Duration::from_secs_f64(args.after_secs);
        let total = before + freeze + after;
        let n = (total.as_secs_f64() * args.rate).round() as u64;
        let t0 = Instant::now() + Duration::from_millis(50);
        let recs: Arc<Mutex<Vec<Rec>>> = Arc::new(Mutex::new(Vec::with_capacity(n as usize + 16)));

        // The freeze, on its own task: SIGSTOP at t0 + before, SIGCONT `freeze` later.
        let node_pid = self.cluster.members[victim].node.pid();
        let freezer = tokio::spawn(async move {
            tokio::time::sleep_until((t0 + before).into()).await;
            let stop = Instant::now();
            let r1 = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(node_pid as i32),
                Signal::SIGSTOP,
            );
            tokio::time::sleep_until((stop + freeze).into()).await;
            let cont = Instant::now();
            let r2 = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(node_pid as i32),
                Signal::SIGCONT,
            );
            r1.and(r2).map(|_| (stop, cont))
        });

        let gen0 = ProcStats::read(std::process::id())?;
        let coord0 = self.cluster.coord.proc.stats()?;
        let mut lag = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3)?;
        let mut tasks = Vec::with_capacity(n as usize);
        let mut unwritable = 0u64;
        for k in 0..n {
            let due = t0 + period.mul_f64(k as f64);
            if due > Instant::now() {
                tokio::time::sleep_until(due.into()).await;
            }
            let _ = lag.record(due.elapsed().as_micros().max(1) as u64);
            let mut read = self.rng.f64() < args.read_fraction;
            let key = if read {
                self.rng.usize(0..args.keys)
            } else {
                match claim_key(&self.shared.keys, &mut self.rng) {
                    Some(k) => k,
                    None => {
                        unwritable += 1;
                        read = true;
                        self.rng.usize(0..args.keys)
                    }
                }
            };
            let (sh, recs) = (self.shared.clone(), recs.clone());
            tasks.push(tokio::spawn(async move {
                let o = if read {
                    read_op(&sh, key).await
                } else {
                    write_op(&sh, key).await
                };
                let rec = Rec {
                    due_us: due.duration_since(t0).as_micros() as u64,
                    done_us: t0.elapsed().as_micros() as u64,
                    read,
                    key: key as u32,
                    outcome: o,
                };
                recs.lock().expect("recs").push(rec);
            }));
        }
        let dispatched_secs = t0.elapsed().as_secs_f64();
        let gen1 = ProcStats::read(std::process::id())?;
        let coord1 = self.cluster.coord.proc.stats()?;
        for t in tasks {
            t.await?;
        }
        let (stop, cont) = freezer.await??;
        let hedges1 = hedged_reads(&mut client).await;
        let recs = std::mem::take(&mut *recs.lock().expect("recs"));
        let stop_us = stop.saturating_duration_since(t0).as_micros() as u64;
        let cont_us = cont.saturating_duration_since(t0).as_micros() as u64;
        let end_us = (dispatched_secs * 1e6) as u64;
        let bounds = [
            (0, stop_us),
            (stop_us, cont_us),
            (cont_us, end_us.max(cont_us)),
        ];
        let mut phases: Vec<PhaseResult> = bounds
            .iter()
            .map(|&(from, to)| PhaseResult::new((to - from) as f64 / 1e6))
            .collect();
        for r in &recs {
            let p = bounds
                .iter()
                .position(|&(_, to)| r.due_us < to)
                .unwrap_or(2);
            phases[p].add(r);
            if let Some(q) = bounds
                .iter()
                .position(|&(from, to)| r.done_us >= from && r.done_us < to)
            {
                if r.outcome == Outcome::Ok {
                    phases[q].completed_ok += 1;
                }
            }
        }
        let hedges = hedges1
            .iter()
            .map(|(k, v)| (k.clone(), v - hedges0.get(k).copied().unwrap_or(0.0)))
            .collect();
        Ok(RunResult {
            side: self.cluster.name.clone(),
            run,
            victim: victim_id,
            victim_shards: held,
            victim_primaries: primaries,
            stop_at_s: stop_us as f64 / 1e6,
            freeze_s: (cont_us - stop_us) as f64 / 1e6,
            dispatched: n,
            dispatched_per_s: n as f64 / dispatched_secs,
            unwritable,
            lag_p99_ms: lag.value_at_quantile(0.99) as f64 / 1000.0,
            lag_max_ms: lag.max() as f64 / 1000.0,
            peak_connections: self.shared.pool.peak.load(Ordering::Relaxed),
            phases,
            hedges,
            gen_cpu: gen1.cpu_share_since(&gen0),
            coord_cpu: coord1.cpu_share_since(&coord0),
            slowest: slowest(&recs, stop_us, 12),
            slow_reads: slow_reads(&recs, stop_us, cont_us),
            recovered_s: None,
        })
    }
}

// ---------------------------------------------------------------------------------
// Cluster state.

/// Waits until the cluster is green with no move in flight and its shard map
/// (every shard's epoch) has not changed for `settle_secs`.
async fn wait_stable(addr: SocketAddr, settle_secs: f64, timeout: Duration) -> Result<()> {
    let mut client = Client::new(addr);
    let deadline = Instant::now() + timeout;
    let settle = Duration::from_secs_f64(settle_secs);
    let short = Duration::from_secs(2);
    let mut last: Option<(String, Instant)> = None;
    let mut seen = String::new();
    loop {
        let state = async {
            let cl = client.get_within("/v1/cluster", short).await?.json()?;
            let sh = client.get_within("/v1/shards", short).await?.json()?;
            let sig: Vec<String> = sh["shards"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|s| format!("{}@{}", s["id"], s["epoch"]))
                        .collect()
                })
                .unwrap_or_default();
            anyhow::Ok((
                cl["status"].as_str().unwrap_or("?").to_string(),
                cl["moves_in_flight"].as_i64().unwrap_or(-1),
                sig.join(","),
            ))
        }
        .await;
        let now = Instant::now();
        match state {
            Ok((status, moves, sig)) if status == "green" && moves == 0 => match &last {
                Some((s, since)) if *s == sig => {
                    if now.duration_since(*since) >= settle {
                        return Ok(());
                    }
                }
                _ => last = Some((sig, now)),
            },
            Ok((status, moves, _)) => {
                seen = format!("status {status}, {moves} moves in flight");
                last = None;
            }
            Err(e) => {
                seen = format!("{e:#}");
                last = None;
            }
        }
        if now >= deadline {
            bail!("cluster not green and settled within {timeout:?}: last {seen}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Shards `id` holds (any role) and of which it is the primary.
async fn holdings(client: &mut Client, id: &str) -> Result<(usize, usize)> {
    let v = client
        .get_within("/v1/shards", Duration::from_secs(2))
        .await?
        .json()?;
    let (mut held, mut primaries) = (0, 0);
    for s in v["shards"].as_array().into_iter().flatten() {
        let primary = s["primary"].as_str() == Some(id);
        let replica = s["replicas"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|r| r["node"].as_str() == Some(id));
        if primary || replica {
            held += 1;
        }
        if primary {
            primaries += 1;
        }
    }
    Ok((held, primaries))
}

/// `torua_data_hedged_reads_total` by outcome (empty if /metrics does not answer).
async fn hedged_reads(client: &mut Client) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    let Ok(r) = client.get_within("/metrics", Duration::from_secs(2)).await else {
        return out;
    };
    let text = String::from_utf8_lossy(&r.body);
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("torua_data_hedged_reads_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.split_once('}') else {
            continue;
        };
        let outcome = labels
            .split(',')
            .find_map(|l| l.strip_prefix("outcome="))
            .map(|v| v.trim_matches('"').to_string())
            .unwrap_or_default();
        if let Ok(v) = value.trim().parse::<f64>() {
            *out.entry(outcome).or_default() += v;
        }
    }
    out
}

// ---------------------------------------------------------------------------------
// Results.

/// The writes of each key: (due, done) µs.
fn writes_by_key(recs: &[Rec]) -> std::collections::HashMap<u32, Vec<(u64, u64)>> {
    let mut m: std::collections::HashMap<u32, Vec<(u64, u64)>> = Default::default();
    for w in recs.iter().filter(|w| !w.read) {
        m.entry(w.key).or_default().push((w.due_us, w.done_us));
    }
    m
}

/// Whether a write of `r`'s key was in flight at some time while `r` was.
fn overlaps_write(writes: &std::collections::HashMap<u32, Vec<(u64, u64)>>, r: &Rec) -> bool {
    writes.get(&r.key).is_some_and(|ws| {
        ws.iter()
            .any(|&(due, done)| due < r.done_us && done > r.due_us)
    })
}

/// The `n` slowest requests: kind, key, due time from the SIGSTOP, latency, outcome,
/// and whether a write of the same key overlapped it.
fn slowest(recs: &[Rec], stop_us: u64, n: usize) -> Vec<Value> {
    let writes = writes_by_key(recs);
    let mut v: Vec<&Rec> = recs.iter().collect();
    v.sort_by_key(|r| std::cmp::Reverse(r.done_us.saturating_sub(r.due_us)));
    v.iter()
        .take(n)
        .map(|r| {
            json!({
                "kind": if r.read { "read" } else { "write" },
                "key": r.key,
                "due_from_sigstop_ms": (r.due_us as f64 - stop_us as f64) / 1000.0,
                "latency_ms": r.done_us.saturating_sub(r.due_us) as f64 / 1000.0,
                "outcome": r.outcome.reason(),
                "overlapping_write_of_key": r.read && overlaps_write(&writes, r),
            })
        })
        .collect()
}

/// Reads due during the freeze slower than the read max goal; of them, those that
/// overlapped a write of their key (the coordinator does not hedge those).
fn slow_reads(recs: &[Rec], stop_us: u64, cont_us: u64) -> (usize, usize) {
    let slow: Vec<&Rec> = recs
        .iter()
        .filter(|r| {
            r.read
                && r.due_us >= stop_us
                && r.due_us < cont_us
                && (r.done_us.saturating_sub(r.due_us) as f64) / 1000.0 > GOAL_READ_MAX_MS
        })
        .collect();
    let writes = writes_by_key(recs);
    let overlapping = slow.iter().filter(|r| overlaps_write(&writes, r)).count();
    (slow.len(), overlapping)
}

fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("bounds")
}

struct PhaseResult {
    secs: f64,
    /// µs from due time to answer (or timeout), every request due in the phase.
    reads: Histogram<u64>,
    writes: Histogram<u64>,
    due: u64,
    ok: u64,
    /// Successful operations that completed within the phase.
    completed_ok: u64,
    /// `read http_503`, `write timeout`, … → count (of requests due in the phase).
    errors: BTreeMap<String, u64>,
}

impl PhaseResult {
    fn new(secs: f64) -> PhaseResult {
        PhaseResult {
            secs,
            reads: new_hist(),
            writes: new_hist(),
            due: 0,
            ok: 0,
            completed_ok: 0,
            errors: BTreeMap::new(),
        }
    }

    fn add(&mut self, r: &Rec) {
        let lat = r.done_us.saturating_sub(r.due_us).max(1);
        let h = if r.read {
            &mut self.reads
        } else {
            &mut self.writes
        };
        let _ = h.record(lat);
        self.due += 1;
        if r.outcome == Outcome::Ok {
            self.ok += 1;
        } else {
            let kind = if r.read { "read" } else { "write" };
            *self
                .errors
                .entry(format!("{kind} {}", r.outcome.reason()))
                .or_default() += 1;
        }
    }

    fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    fn ops_per_s(&self) -> f64 {
        if self.secs > 0.0 {
            self.completed_ok as f64 / self.secs
        } else {
            0.0
        }
    }

    fn json(&self) -> Value {
        json!({
            "secs": self.secs,
            "due": self.due,
            "ok": self.ok,
            "completed_ok_in_phase": self.completed_ok,
            "ops_per_s": self.ops_per_s(),
            "reads": report::hist_ms(&self.reads),
            "writes": report::hist_ms(&self.writes),
            "errors": self.errors,
        })
    }
}

struct RunResult {
    side: String,
    run: usize,
    victim: String,
    victim_shards: usize,
    victim_primaries: usize,
    stop_at_s: f64,
    freeze_s: f64,
    dispatched: u64,
    dispatched_per_s: f64,
    /// Writes turned into reads because no free key was found (should be 0).
    unwritable: u64,
    lag_p99_ms: f64,
    lag_max_ms: f64,
    peak_connections: usize,
    /// before, during, after.
    phases: Vec<PhaseResult>,
    hedges: BTreeMap<String, f64>,
    gen_cpu: f64,
    coord_cpu: f64,
    /// The slowest requests of the run.
    slowest: Vec<Value>,
    /// Reads due during the freeze slower than the read max goal, and how many of
    /// them overlapped a write of the same key.
    slow_reads: (usize, usize),
    recovered_s: Option<f64>,
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

fn max_ms(h: &Histogram<u64>) -> f64 {
    h.max() as f64 / 1000.0
}

/// Milliseconds with a precision that suits their size.
fn fms(x: f64) -> String {
    if x < 10.0 {
        format!("{x:.2}")
    } else if x < 100.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.0}")
    }
}

impl RunResult {
    fn ratio(&self) -> f64 {
        let b = self.phases[0].ops_per_s();
        if b > 0.0 {
            self.phases[1].ops_per_s() / b
        } else {
            0.0
        }
    }

    fn errors(&self) -> u64 {
        self.phases.iter().map(PhaseResult::error_count).sum()
    }

    fn stale(&self) -> u64 {
        self.phases
            .iter()
            .flat_map(|p| p.errors.iter())
            .filter(|(k, _)| k.ends_with("stale"))
            .map(|(_, v)| v)
            .sum()
    }

    fn line(&self) -> String {
        let d = &self.phases[1];
        format!(
            "{:>3} run {:>2}: froze {} ({} shards, {} primaries) {:.2} s; ops/s {:.0} / {:.0} / {:.0} ({:.0} % of before); \
             during: reads p99 {} p99.9 {} max {} ms, writes p99 {} max {} ms; errors {} (during {}); hedged {:.0}; slow reads {} ({} beside a write of their key); lag max {} ms; conns {}",
            self.side,
            self.run,
            self.victim,
            self.victim_shards,
            self.victim_primaries,
            self.freeze_s,
            self.phases[0].ops_per_s(),
            d.ops_per_s(),
            self.phases[2].ops_per_s(),
            self.ratio() * 100.0,
            fms(ms(&d.reads, 0.99)),
            fms(ms(&d.reads, 0.999)),
            fms(max_ms(&d.reads)),
            fms(ms(&d.writes, 0.99)),
            fms(max_ms(&d.writes)),
            self.errors(),
            d.error_count(),
            self.hedges.values().sum::<f64>(),
            self.slow_reads.0,
            self.slow_reads.1,
            fms(self.lag_max_ms),
            self.peak_connections,
        )
    }

    fn json(&self) -> Value {
        json!({
            "side": self.side,
            "run": self.run,
            "frozen_node": self.victim,
            "frozen_node_shards": self.victim_shards,
            "frozen_node_primaries": self.victim_primaries,
            "sigstop_at_s": self.stop_at_s,
            "freeze_s": self.freeze_s,
            "dispatched": self.dispatched,
            "dispatched_per_s": self.dispatched_per_s,
            "writes_without_free_key": self.unwritable,
            "dispatch_lag_p99_ms": self.lag_p99_ms,
            "dispatch_lag_max_ms": self.lag_max_ms,
            "peak_connections": self.peak_connections,
            "phases": PHASES.iter().zip(&self.phases).map(|(n, p)| (n.to_string(), p.json())).collect::<serde_json::Map<_, _>>(),
            "throughput_during_vs_before": self.ratio(),
            "errors": self.errors(),
            "stale_reads": self.stale(),
            "hedged_reads": self.hedges,
            "generator_cpu_share": self.gen_cpu,
            "coordinator_cpu_share": self.coord_cpu,
            "recovered_green_settled_s": self.recovered_s,
            "slow_reads_during": {
                "over_ms": GOAL_READ_MAX_MS,
                "count": self.slow_reads.0,
                "overlapping_a_write_of_their_key": self.slow_reads.1,
            },
            "slowest_requests": self.slowest,
        })
    }
}

/// A side's runs, pooled.
struct Summary {
    side: String,
    runs: usize,
    reads: Vec<Histogram<u64>>,
    writes: Vec<Histogram<u64>>,
    /// Median over runs of each phase's ops/s.
    ops_per_s: Vec<f64>,
    errors: Vec<u64>,
    /// (Σ during ok / Σ during secs) / (Σ before ok / Σ before secs).
    ratio: f64,
    worst_ratio: f64,
    dispatched_per_s: f64,
    lag_p99_ms: f64,
    lag_max_ms: f64,
    peak_connections: usize,
    stale: u64,
    unwritable: u64,
    hedges: BTreeMap<String, f64>,
    gen_cpu: f64,
    coord_cpu: f64,
    recovered_s: f64,
    /// Runs that met every goal on their own.
    runs_meeting: usize,
}

impl Summary {
    fn of(side: &str, runs: &[RunResult]) -> Summary {
        let mut reads: Vec<Histogram<u64>> = (0..3).map(|_| new_hist()).collect();
        let mut writes: Vec<Histogram<u64>> = (0..3).map(|_| new_hist()).collect();
        let mut errors = vec![0u64; 3];
        let mut ok = [0u64; 3];
        let mut secs = [0f64; 3];
        let mut hedges = BTreeMap::new();
        for r in runs {
            for (i, p) in r.phases.iter().enumerate() {
                let _ = reads[i].add(&p.reads);
                let _ = writes[i].add(&p.writes);
                errors[i] += p.error_count();
                ok[i] += p.completed_ok;
                secs[i] += p.secs;
            }
            for (k, v) in &r.hedges {
                *hedges.entry(k.clone()).or_default() += v;
            }
        }
        let rate = |i: usize| {
            if secs[i] > 0.0 {
                ok[i] as f64 / secs[i]
            } else {
                0.0
            }
        };
        let med =
            |f: &dyn Fn(&RunResult) -> f64| report::median(&runs.iter().map(f).collect::<Vec<_>>());
        let runs_meeting = runs
            .iter()
            .filter(|r| {
                let d = &r.phases[1];
                ms(&d.reads, 0.999) < GOAL_READ_P999_MS
                    && max_ms(&d.reads) < GOAL_READ_MAX_MS
                    && max_ms(&d.writes) < GOAL_WRITE_MAX_MS
                    && r.errors() == 0
                    && r.ratio() >= GOAL_THROUGHPUT
            })
            .count();
        Summary {
            side: side.into(),
            runs: runs.len(),
            ops_per_s: (0..3).map(|i| med(&|r| r.phases[i].ops_per_s())).collect(),
            ratio: if rate(0) > 0.0 {
                rate(1) / rate(0)
            } else {
                0.0
            },
            worst_ratio: runs
                .iter()
                .map(RunResult::ratio)
                .fold(f64::INFINITY, f64::min),
            reads,
            writes,
            errors,
            dispatched_per_s: med(&|r| r.dispatched_per_s),
            lag_p99_ms: med(&|r| r.lag_p99_ms),
            lag_max_ms: runs.iter().map(|r| r.lag_max_ms).fold(0.0, f64::max),
            peak_connections: runs.iter().map(|r| r.peak_connections).max().unwrap_or(0),
            stale: runs.iter().map(RunResult::stale).sum(),
            unwritable: runs.iter().map(|r| r.unwritable).sum(),
            hedges,
            gen_cpu: med(&|r| r.gen_cpu),
            coord_cpu: med(&|r| r.coord_cpu),
            recovered_s: med(&|r| r.recovered_s.unwrap_or(0.0)),
            runs_meeting,
        }
    }

    fn rows(&self) -> Vec<Vec<String>> {
        (0..3)
            .map(|i| {
                let (r, w) = (&self.reads[i], &self.writes[i]);
                vec![
                    self.side.clone(),
                    PHASES[i].into(),
                    format!("{:.0}", self.ops_per_s[i]),
                    r.len().to_string(),
                    fms(ms(r, 0.5)),
                    fms(ms(r, 0.99)),
                    fms(ms(r, 0.999)),
                    fms(max_ms(r)),
                    w.len().to_string(),
                    fms(ms(w, 0.5)),
                    fms(ms(w, 0.99)),
                    fms(ms(w, 0.999)),
                    fms(max_ms(w)),
                    self.errors[i].to_string(),
                ]
            })
            .collect()
    }

    fn errors_total(&self) -> u64 {
        self.errors.iter().sum()
    }

    fn goals(&self) -> [(f64, bool); 5] {
        let (r, w) = (&self.reads[1], &self.writes[1]);
        [
            (ms(r, 0.999), ms(r, 0.999) < GOAL_READ_P999_MS),
            (max_ms(r), max_ms(r) < GOAL_READ_MAX_MS),
            (max_ms(w), max_ms(w) < GOAL_WRITE_MAX_MS),
            (self.errors_total() as f64, self.errors_total() == 0),
            (self.ratio, self.ratio >= GOAL_THROUGHPUT),
        ]
    }

    fn goal_row(&self) -> Vec<String> {
        let g = self.goals();
        let mark = |ok: bool| if ok { "met" } else { "MISSED" };
        vec![
            self.side.clone(),
            format!("{} ms {}", fms(g[0].0), mark(g[0].1)),
            format!("{} ms {}", fms(g[1].0), mark(g[1].1)),
            format!("{} ms {}", fms(g[2].0), mark(g[2].1)),
            format!("{} {}", g[3].0, mark(g[3].1)),
            format!("{:.0} % {}", g[4].0 * 100.0, mark(g[4].1)),
            format!("{:.0} %", self.worst_ratio * 100.0),
            format!(
                "{} ({}/{} runs met all on their own)",
                if g.iter().all(|x| x.1) {
                    "all met"
                } else {
                    "MISSED"
                },
                self.runs_meeting,
                self.runs
            ),
        ]
    }

    fn load_row(&self) -> Vec<String> {
        let h = |k: &str| self.hedges.get(k).copied().unwrap_or(0.0);
        vec![
            self.side.clone(),
            format!("{:.0}", self.dispatched_per_s),
            format!("{:.0}", self.ops_per_s[0]),
            fms(self.lag_p99_ms),
            fms(self.lag_max_ms),
            self.peak_connections.to_string(),
            self.stale.to_string(),
            format!("{:.0}/{:.0}/{:.0}", h("won"), h("lost"), h("no_budget")),
            format!("{} %", f1(self.gen_cpu * 100.0)),
            format!("{} %", f1(self.coord_cpu * 100.0)),
        ]
    }

    fn json(&self) -> Value {
        let g = self.goals();
        let phase = |i: usize| {
            json!({
                "ops_per_s_median": self.ops_per_s[i],
                "reads": report::hist_ms(&self.reads[i]),
                "writes": report::hist_ms(&self.writes[i]),
                "errors": self.errors[i],
            })
        };
        json!({
            "runs": self.runs,
            "pooled": PHASES.iter().enumerate().map(|(i, n)| (n.to_string(), phase(i))).collect::<serde_json::Map<_, _>>(),
            "throughput_during_vs_before": self.ratio,
            "throughput_during_vs_before_worst_run": self.worst_ratio,
            "dispatched_per_s_median": self.dispatched_per_s,
            "dispatch_lag_p99_ms_median": self.lag_p99_ms,
            "dispatch_lag_max_ms": self.lag_max_ms,
            "peak_connections": self.peak_connections,
            "stale_reads": self.stale,
            "writes_without_free_key": self.unwritable,
            "hedged_reads": self.hedges,
            "generator_cpu_share_median": self.gen_cpu,
            "coordinator_cpu_share_median": self.coord_cpu,
            "recovered_green_settled_s_median": self.recovered_s,
            "goals": {
                "read_p999_ms": {"value": g[0].0, "met": g[0].1},
                "read_max_ms": {"value": g[1].0, "met": g[1].1},
                "write_max_ms": {"value": g[2].0, "met": g[2].1},
                "errors": {"value": g[3].0, "met": g[3].1},
                "throughput_ratio": {"value": g[4].0, "met": g[4].1},
                "all_met": g.iter().all(|x| x.1),
                "runs_meeting_all": self.runs_meeting,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_carry_their_key_and_sequence() {
        let keys = Keys::new(3, 100);
        let v = keys.value(2, 41);
        assert_eq!(v.len(), 100);
        assert_eq!(Keys::seq_of(&v, 2), Some(41));
        assert_eq!(Keys::seq_of(&v, 1), None);
        assert_eq!(Keys::seq_of(b"junk", 2), None);
    }
}
