//! `torua-bench hotspots`: load-aware placement under a skewed workload (issue 16).
//!
//! Two local clusters run side by side, at the same time on the same machine, each a
//! coordinator (`--shards 64`, replication factor 2) and `--nodes` storage nodes with
//! their agents, every node given the cluster secret:
//!
//! - **on**: the coordinator's load balancer (`--load-balance-interval`);
//! - **off**: `--load-balance false`, placement by capacity only.
//!
//! Node ids, shard count and keys are the same on both sides, so both start from the
//! same placement and see the same per-shard load: the off side is the control.
//!
//! Each side gets `--clients` closed-loop clients through its coordinator (one request
//! in flight each, paced to `--rate` ops/s in all, `0` unpaced): key rank drawn from
//! Zipf(`--zipf-s`) over `--keys` keys, `--read-fraction` reads (`GET /v1/data/{key}`),
//! the rest writes (`PUT`, `--value-bytes`). Keys are **not** pre-written: a read of a
//! key this side never wrote may answer 404 and counts as a success (the node counts it
//! as a read all the same); a 404 for a key whose write was acknowledged before the
//! read was sent is an error (`lost`), as is any other answer, or none within
//! `--client-timeout-secs`. Latency is from send to answer (closed loop: it does not
//! include time a paced client would have waited).
//!
//! Every `--sample-secs` each side's sampler reads `/v1/nodes` (each node's smoothed
//! `load.score`: the coordinator's view, what the balancer acts on; the same figures
//! from `torua_node_load` in `/metrics` when `/v1/nodes` shows none), `/v1/shards` and
//! `/v1/moves` (which it merges, as `recent` keeps only the last 100). It also computes
//! a **client-attributed** node load from what the clients sent in the interval: each
//! shard's reads charged to its primary, its writes to every holder, at the same
//! score as the coordinator's (ops + bytes at 16 KiB per op). That one needs no load
//! sampling in the coordinator, so it is the like-for-like figure when the off side's
//! coordinator does not sample load.
//!
//! A move is in progress from its `started_ms` to `started_ms + duration_seconds`; a
//! role swap (a load action with no copy) or a failover is instant, so its window is
//! its `started_ms` ± [`INSTANT_WINDOW_MS`]. Latency "during moves" pools the requests
//! sent inside any such window.

use crate::cluster::Named;
use crate::http::Client;
use crate::proc::ProcStats;
use crate::report::{self, f2};
use anyhow::{bail, Result};
use bytes::Bytes;
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Seconds of client load.
    #[arg(long, default_value_t = 360)]
    pub secs: u64,
    /// The on side's `--load-balance-interval` (also given to the off side, where it
    /// paces load sampling if the coordinator samples without balancing).
    #[arg(long, default_value = "30s")]
    pub load_balance_interval: String,
    /// Extra coordinator flags for both sides (e.g. `--load-tolerance=0.05`), comma
    /// separated.
    #[arg(long, value_delimiter = ',', allow_hyphen_values = true)]
    pub coordinator_flag: Vec<String>,
    /// Storage nodes (each with its agent) per cluster.
    #[arg(long, default_value_t = 4)]
    pub nodes: usize,
    /// `--shards` of the coordinators.
    #[arg(long, default_value_t = 64)]
    pub shards: u32,
    /// `--replication-factor` of the coordinators.
    #[arg(long, default_value_t = 2)]
    pub replication_factor: u32,
    /// Keys (ranks of the Zipf distribution).
    #[arg(long, default_value_t = 100_000)]
    pub keys: usize,
    /// Zipf exponent s: rank r is drawn with probability ∝ r^-s.
    #[arg(long, default_value_t = 1.2)]
    pub zipf_s: f64,
    /// Fraction of reads; the rest are writes.
    #[arg(long, default_value_t = 0.9)]
    pub read_fraction: f64,
    /// Bytes per written value.
    #[arg(long, default_value_t = 100)]
    pub value_bytes: usize,
    /// Closed-loop clients per cluster.
    #[arg(long, default_value_t = 8)]
    pub clients: usize,
    /// Operations per second per cluster, shared by its clients (0: as fast as the
    /// answers come).
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// Seconds between load samples.
    #[arg(long, default_value_t = 5.0)]
    pub sample_secs: f64,
    /// Agent heartbeat interval.
    #[arg(long, default_value = "1s")]
    pub interval: String,
    /// A request without an answer this long is an error.
    #[arg(long, default_value_t = 5.0)]
    pub client_timeout_secs: f64,
    /// Before the load starts, how long each shard map must stay unchanged.
    #[arg(long, default_value_t = 12.0)]
    pub settle_secs: f64,
    /// Sides to run: `on` (load balancing), `off` (`--load-balance false`).
    #[arg(long, value_delimiter = ',', default_value = "on,off")]
    pub sides: Vec<String>,
    /// Keep the clusters' temp dirs (every process's log) and print where they are.
    #[arg(long)]
    pub keep: bool,
    #[arg(
        long = "json",
        alias = "out",
        default_value = "bench-results/hotspots.json"
    )]
    pub json: PathBuf,
}

/// Goals (issue 16): max/mean node load at most this ...
const GOAL_RATIO: f64 = 1.15;
/// ... from this many seconds after the start on;
const GOAL_WITHIN_SECS: f64 = 300.0;
/// no shard moved for load more than this many times ...
const GOAL_MOVES_PER_WINDOW: usize = 1;
/// ... in any window this long (ms).
const WINDOW_MS: u64 = 600_000;
/// An instant change (role swap, failover) counts as "in progress" this long either
/// side of its `started_ms`.
const INSTANT_WINDOW_MS: u64 = 1_000;
/// The coordinator's load score: operations plus bytes at this many per operation
/// (`shards::balance::Load::score`).
const BYTES_PER_OP: f64 = 16_384.0;

/// The coordinator flags of a side.
fn side_flags(side: &str, args: &Args) -> Result<Vec<String>> {
    let mut f: Vec<String> = vec![
        "--shards".into(),
        args.shards.to_string(),
        "--replication-factor".into(),
        args.replication_factor.to_string(),
        "--load-balance-interval".into(),
        args.load_balance_interval.clone(),
    ];
    match side {
        "on" => {}
        "off" => f.extend(["--load-balance".into(), "false".into()]),
        other => bail!("--sides: {other:?} is neither on nor off"),
    }
    f.extend(args.coordinator_flag.iter().cloned());
    Ok(f)
}

pub fn run(args: Args) -> Result<()> {
    if !(args.zipf_s > 0.0 && args.zipf_s.is_finite()) || args.keys == 0 {
        bail!("--zipf-s must be positive and --keys ≥ 1");
    }
    if !(0.0..=1.0).contains(&args.read_fraction) || args.rate < 0.0 || !args.rate.is_finite() {
        bail!("--read-fraction within 0..=1, --rate ≥ 0");
    }
    if args.nodes < 2 || args.clients == 0 || args.secs == 0 || args.sample_secs <= 0.0 {
        bail!("--nodes ≥ 2, --clients ≥ 1, --secs ≥ 1, --sample-secs > 0");
    }
    for s in &args.sides {
        side_flags(s, &args)?;
    }
    // Two workers: one cluster's clients and samplers must not wait for the other's.
    crate::block_on(2, run_async(args))
}

async fn run_async(args: Args) -> Result<()> {
    let machine = report::machine();
    let wall = Instant::now();
    let keys = Arc::new(Keys::new(args.keys, args.shards));
    let zipf = Arc::new(Zipf::new(args.keys, args.zipf_s));
    println!(
        "hotspots: Zipf(s = {}) over {} keys: the hottest key takes {:.1} % of requests, the top 10 {:.1} %; \
         the hottest shard {:.1} %",
        args.zipf_s,
        args.keys,
        zipf.p(0) * 100.0,
        (0..10.min(args.keys)).map(|r| zipf.p(r)).sum::<f64>() * 100.0,
        keys.shard_shares(&zipf).iter().cloned().fold(0.0, f64::max) * 100.0,
    );
    let mut sides = Vec::new();
    for name in &args.sides {
        let flags = side_flags(name, &args)?;
        println!(
            "== side {name}: coordinator {flags:?}, {} nodes with agents",
            args.nodes
        );
        sides.push(Side::start(name, flags, &args).await?);
    }
    for s in &mut sides {
        if let Err(e) = s.settle(&args).await {
            println!("{}", s.logs());
            return Err(e);
        }
    }
    println!(
        "clusters settled after {:.1} s; load for {} s",
        wall.elapsed().as_secs_f64(),
        args.secs
    );

    let t0 = Instant::now();
    let t0_ms = unix_ms();
    let end = t0 + Duration::from_secs(args.secs);
    let gen0 = ProcStats::read(std::process::id())?;
    let mut running = Vec::new();
    for s in &sides {
        let shared = Arc::new(SideLoad::new(args.keys, args.shards, args.value_bytes));
        let coord0 = s.coord.proc.stats()?;
        let mut clients = Vec::new();
        for i in 0..args.clients {
            let cfg = ClientCfg {
                addr: s.coord.addr,
                seed: 16_000 + i as u64,
                period: (args.rate > 0.0)
                    .then(|| Duration::from_secs_f64(args.clients as f64 / args.rate)),
                read_fraction: args.read_fraction,
                timeout: Duration::from_secs_f64(args.client_timeout_secs),
                end,
            };
            clients.push(tokio::spawn(client(
                cfg,
                keys.clone(),
                zipf.clone(),
                shared.clone(),
            )));
        }
        let sampler = tokio::spawn(sampler(
            s.name.clone(),
            s.coord.addr,
            shared.clone(),
            t0,
            Duration::from_secs_f64(args.sample_secs),
            end,
        ));
        running.push((clients, sampler, coord0));
    }
    let mut results = Vec::new();
    for (s, (clients, sampler, coord0)) in sides.iter_mut().zip(running) {
        let mut out = ClientOut::default();
        for c in clients {
            out.merge(c.await?);
        }
        let samples = match sampler.await? {
            Ok(x) => x,
            Err(e) => {
                println!("{}", s.logs());
                return Err(e);
            }
        };
        let coord_cpu = s.coord.proc.stats()?.cpu_share_since(&coord0);
        let mut client = Client::new(s.coord.addr);
        let too_hot = metric(&mut client, "torua_shards_too_hot").await;
        let shard_loads = shard_loads(&mut client).await.unwrap_or_default();
        results.push(SideResult::of(
            &s.name,
            t0_ms,
            args.secs as f64,
            out,
            samples,
            coord_cpu,
            too_hot,
            shard_loads,
        ));
    }
    let gen_cpu = ProcStats::read(std::process::id())?.cpu_share_since(&gen0);
    let loadavg_end = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();

    series_table(&results, args.sample_secs);
    report::table(
        "Side by side (latency in ms; load ratios max/mean over the nodes)",
        &[
            "figure",
            results.first().map_or("", |r| r.side.as_str()),
            results.get(1).map_or("", |r| r.side.as_str()),
        ],
        &side_by_side(&results),
    );
    for r in &results {
        println!("\n{}", r.breakdown_text());
    }
    for r in &results {
        println!("\n{}", r.goal_text());
    }
    println!(
        "\ngenerator CPU {:.0} % of a core; loadavg at start {}, at end {}",
        gen_cpu * 100.0,
        machine["loadavg_at_start"].as_str().unwrap_or("?"),
        loadavg_end
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    let out = json!({
        "benchmark": "hotspots",
        "machine": machine,
        "loadavg_at_end": loadavg_end.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
        "config": {
            "secs": args.secs,
            "load_balance_interval": args.load_balance_interval,
            "coordinator_flags": args.coordinator_flag,
            "nodes": args.nodes,
            "shards": args.shards,
            "replication_factor": args.replication_factor,
            "keys": args.keys,
            "zipf_s": args.zipf_s,
            "read_fraction": args.read_fraction,
            "value_bytes": args.value_bytes,
            "clients": args.clients,
            "rate": args.rate,
            "sample_secs": args.sample_secs,
            "preloaded": false,
            "hottest_key_share": zipf.p(0),
            "hottest_shard_share": keys.shard_shares(&zipf).iter().cloned().fold(0.0, f64::max),
        },
        "goals": {
            "max_over_mean": GOAL_RATIO,
            "within_secs": GOAL_WITHIN_SECS,
            "load_actions_per_shard_per_10min": GOAL_MOVES_PER_WINDOW,
            "client_errors": 0,
        },
        "generator_cpu_share": gen_cpu,
        "sides": results.iter().map(SideResult::json).collect::<Vec<_>>(),
        "wall_secs": wall.elapsed().as_secs_f64(),
    });
    if args.keep {
        for s in &mut sides {
            s.keep();
        }
    }
    report::write_json(&args.json, &out)
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

// ---------------------------------------------------------------------------------
// The workload: Zipf ranks over named keys.

/// Zipf(s) over ranks `0..n` (rank 0 the most frequent) by inverse CDF: a table of
/// cumulative probabilities and a binary search per draw (n = 100,000: 800 KB, ~17
/// comparisons).
pub struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    pub fn new(n: usize, s: f64) -> Zipf {
        let mut cdf = Vec::with_capacity(n);
        let mut sum = 0.0;
        for r in 1..=n {
            sum += (r as f64).powf(-s);
            cdf.push(sum);
        }
        for c in &mut cdf {
            *c /= sum;
        }
        if let Some(last) = cdf.last_mut() {
            *last = 1.0;
        }
        Zipf { cdf }
    }

    /// Probability of rank `r`.
    pub fn p(&self, r: usize) -> f64 {
        self.cdf[r] - if r == 0 { 0.0 } else { self.cdf[r - 1] }
    }

    /// The rank for a uniform `u` in [0, 1).
    pub fn rank(&self, u: f64) -> usize {
        self.cdf
            .partition_point(|&c| c <= u)
            .min(self.cdf.len() - 1)
    }

    pub fn sample(&self, rng: &mut fastrand::Rng) -> usize {
        self.rank(rng.f64())
    }
}

/// Key names by rank, and the shard of each (`torua_protocol::shard::shard_for_key`,
/// as the coordinator maps them).
struct Keys {
    paths: Vec<String>,
    shard: Vec<u32>,
    shards: u32,
}

impl Keys {
    fn new(n: usize, shards: u32) -> Keys {
        let names: Vec<String> = (0..n).map(|r| format!("hs-{r:06}")).collect();
        Keys {
            shard: names
                .iter()
                .map(|k| torua_protocol::shard::shard_for_key(k.as_bytes(), shards))
                .collect(),
            paths: names.iter().map(|k| format!("/v1/data/{k}")).collect(),
            shards,
        }
    }

    /// Each shard's share of the requests.
    fn shard_shares(&self, zipf: &Zipf) -> Vec<f64> {
        let mut v = vec![0.0; self.shards as usize];
        for (r, s) in self.shard.iter().enumerate() {
            v[*s as usize] += zipf.p(r);
        }
        v
    }
}

/// What a side's clients share: per-key "a write was acknowledged", per-shard counts
/// of what was sent (for the client-attributed load), the value written.
struct SideLoad {
    written: Vec<AtomicBool>,
    sent: Vec<ShardSent>,
    value: Bytes,
}

#[derive(Default)]
struct ShardSent {
    reads: AtomicU64,
    writes: AtomicU64,
    read_bytes: AtomicU64,
    write_bytes: AtomicU64,
}

impl SideLoad {
    fn new(keys: usize, shards: u32, value_bytes: usize) -> SideLoad {
        SideLoad {
            written: (0..keys).map(|_| AtomicBool::new(false)).collect(),
            sent: (0..shards).map(|_| ShardSent::default()).collect(),
            value: Bytes::from(vec![b'v'; value_bytes]),
        }
    }

    /// Cumulative (reads, writes, read bytes, write bytes) per shard.
    fn counts(&self) -> Vec<[u64; 4]> {
        self.sent
            .iter()
            .map(|s| {
                [
                    s.reads.load(Ordering::Relaxed),
                    s.writes.load(Ordering::Relaxed),
                    s.read_bytes.load(Ordering::Relaxed),
                    s.write_bytes.load(Ordering::Relaxed),
                ]
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------------
// Closed-loop clients.

struct ClientCfg {
    addr: SocketAddr,
    seed: u64,
    /// Time between this client's requests (None: back to back).
    period: Option<Duration>,
    read_fraction: f64,
    timeout: Duration,
    end: Instant,
}

/// One request: when it was sent (unix ms), its latency, its kind and outcome.
#[derive(Clone, Copy)]
struct Op {
    at_ms: u64,
    lat_us: u32,
    read: bool,
    ok: bool,
}

#[derive(Default)]
struct ClientOut {
    ops: Vec<Op>,
    errors: BTreeMap<String, u64>,
    /// A few error examples with their time (unix ms).
    examples: Vec<(u64, String)>,
}

impl ClientOut {
    fn merge(&mut self, other: ClientOut) {
        self.ops.extend(other.ops);
        for (k, v) in other.errors {
            *self.errors.entry(k).or_default() += v;
        }
        self.examples.extend(other.examples);
        self.examples.sort();
        self.examples.truncate(20);
    }

    fn error(&mut self, at_ms: u64, kind: &str, detail: String) {
        *self.errors.entry(kind.to_string()).or_default() += 1;
        if self.examples.len() < 20 {
            self.examples.push((at_ms, format!("{kind}: {detail}")));
        }
    }
}

async fn client(
    cfg: ClientCfg,
    keys: Arc<Keys>,
    zipf: Arc<Zipf>,
    load: Arc<SideLoad>,
) -> ClientOut {
    let mut rng = fastrand::Rng::with_seed(cfg.seed);
    let mut http = Client::new(cfg.addr);
    let mut out = ClientOut::default();
    // Spread the clients' first requests over one period.
    let mut due = Instant::now() + cfg.period.map_or(Duration::ZERO, |p| p.mul_f64(rng.f64()));
    loop {
        if let Some(p) = cfg.period {
            if due > Instant::now() {
                tokio::time::sleep_until(due.into()).await;
            }
            due += p;
            // A client that fell behind (a slow answer) does not burst to catch up.
            if due + Duration::from_secs(1) < Instant::now() {
                due = Instant::now();
            }
        }
        if Instant::now() >= cfg.end {
            return out;
        }
        let k = zipf.sample(&mut rng);
        let read = rng.f64() < cfg.read_fraction;
        let shard = &load.sent[keys.shard[k] as usize];
        let at_ms = unix_ms();
        let t = Instant::now();
        let (ok, err) = if read {
            let acked = load.written[k].load(Ordering::Acquire);
            shard.reads.fetch_add(1, Ordering::Relaxed);
            match http
                .request_within("GET", &keys.paths[k], Bytes::new(), cfg.timeout)
                .await
            {
                Ok(r) if r.status == 200 => {
                    shard
                        .read_bytes
                        .fetch_add(r.body.len() as u64, Ordering::Relaxed);
                    (true, None)
                }
                Ok(r) if r.status == 404 && !acked => (true, None),
                Ok(r) if r.status == 404 => (
                    false,
                    Some((
                        "lost",
                        format!("{} after an acknowledged write", keys.paths[k]),
                    )),
                ),
                Ok(r) => (
                    false,
                    Some((
                        "read_status",
                        format!(
                            "GET {}: {} {}",
                            keys.paths[k],
                            r.status,
                            String::from_utf8_lossy(&r.body)
                        ),
                    )),
                ),
                Err(e) => (
                    false,
                    Some(("read_failed", format!("GET {}: {e:#}", keys.paths[k]))),
                ),
            }
        } else {
            shard.writes.fetch_add(1, Ordering::Relaxed);
            shard
                .write_bytes
                .fetch_add(load.value.len() as u64, Ordering::Relaxed);
            match http
                .request_within("PUT", &keys.paths[k], load.value.clone(), cfg.timeout)
                .await
            {
                Ok(r) if r.status == 204 => {
                    load.written[k].store(true, Ordering::Release);
                    (true, None)
                }
                Ok(r) => (
                    false,
                    Some((
                        "write_status",
                        format!(
                            "PUT {}: {} {}",
                            keys.paths[k],
                            r.status,
                            String::from_utf8_lossy(&r.body)
                        ),
                    )),
                ),
                Err(e) => (
                    false,
                    Some(("write_failed", format!("PUT {}: {e:#}", keys.paths[k]))),
                ),
            }
        };
        let lat_us = t.elapsed().as_micros().min(u32::MAX as u128) as u32;
        if let Some((kind, detail)) = err {
            out.error(at_ms, kind, detail);
            http.reset();
        }
        out.ops.push(Op {
            at_ms,
            lat_us,
            read,
            ok,
        });
    }
}

// ---------------------------------------------------------------------------------
// Sampling: node loads, holders, moves.

/// One sample of a side.
#[derive(Debug, Clone)]
struct Sample {
    t_s: f64,
    /// Each node's smoothed `load.score` from `/v1/nodes` (None: not shown).
    coord: BTreeMap<String, Option<f64>>,
    /// Each node's client-attributed score over the last interval.
    client: BTreeMap<String, f64>,
    moves_in_flight: usize,
}

impl Sample {
    /// max/mean of the coordinator's view; None unless every node shows a load.
    fn coord_ratio(&self) -> Option<f64> {
        let v: Option<Vec<f64>> = self.coord.values().cloned().collect();
        max_over_mean(&v?)
    }

    fn client_ratio(&self) -> Option<f64> {
        max_over_mean(&self.client.values().cloned().collect::<Vec<_>>())
    }
}

/// A shard change seen in `/v1/moves`.
#[derive(Debug, Clone)]
struct MoveRec {
    shard: u32,
    reason: String,
    from: Option<String>,
    to: String,
    started_ms: u64,
    duration_s: f64,
    state: String,
    /// Seen copying in `in_flight` at least once.
    copied: bool,
    load: Option<Value>,
}

impl MoveRec {
    /// A load action that copied nothing: a role swap.
    fn is_swap(&self) -> bool {
        self.reason == "load" && !self.copied && self.duration_s == 0.0
    }

    /// Instant changes (swaps, failovers) get a window either side of their time.
    fn window(&self) -> (u64, u64) {
        if !self.copied && self.duration_s == 0.0 {
            (
                self.started_ms.saturating_sub(INSTANT_WINDOW_MS),
                self.started_ms + INSTANT_WINDOW_MS,
            )
        } else {
            (
                self.started_ms,
                self.started_ms + (self.duration_s * 1000.0).ceil() as u64,
            )
        }
    }

    /// `at_ms`: since the load started (once [`SideResult::of`] rebased it).
    fn json(&self) -> Value {
        json!({
            "shard": self.shard, "reason": self.reason, "from": self.from, "to": self.to,
            "at_ms": self.started_ms, "duration_seconds": self.duration_s,
            "state": self.state, "swap": self.is_swap(), "load": self.load,
        })
    }
}

struct Sampled {
    samples: Vec<Sample>,
    moves: Vec<MoveRec>,
    /// Samples at which `/v1/nodes` or `/v1/shards` did not answer.
    missed: usize,
    /// Each shard's holders at the last sample.
    holders: BTreeMap<u32, (Option<String>, Vec<String>)>,
    /// Each shard's mean rates over the whole run (reads, writes, read bytes, write
    /// bytes per second): Zipf is stationary, so these are its steady load.
    rates: Vec<[f64; 4]>,
}

async fn sampler(
    side: String,
    addr: SocketAddr,
    load: Arc<SideLoad>,
    t0: Instant,
    every: Duration,
    end: Instant,
) -> Result<Sampled> {
    let mut http = Client::new(addr);
    let short = Duration::from_secs(2);
    let mut moves: HashMap<(u32, u64, String, String), MoveRec> = HashMap::new();
    let mut samples = Vec::new();
    let mut missed = 0;
    let mut last = (Instant::now(), load.counts());
    let mut last_holders = BTreeMap::new();
    let mut k = 1u32;
    loop {
        let at = t0 + every * k;
        if at > end + every / 2 {
            break;
        }
        tokio::time::sleep_until(at.into()).await;
        k += 1;
        let counts = load.counts();
        let now = Instant::now();
        let secs = now.duration_since(last.0).as_secs_f64();
        let rates: Vec<[f64; 4]> = counts
            .iter()
            .zip(&last.1)
            .map(|(c, l)| std::array::from_fn(|i| c[i].saturating_sub(l[i]) as f64 / secs))
            .collect();
        last = (now, counts);
        if let Err(e) = merge_moves(&mut http, &mut moves, short).await {
            println!(
                "  {side} t={:.0}s: /v1/moves: {e:#}",
                at.duration_since(t0).as_secs_f64()
            );
        }
        let got = async {
            let nodes = http.get_within("/v1/nodes", short).await?.json()?;
            let shards = http.get_within("/v1/shards", short).await?.json()?;
            anyhow::Ok((nodes, shards))
        }
        .await;
        let (nodes, shards) = match got {
            Ok(x) => x,
            Err(e) => {
                missed += 1;
                println!(
                    "  {side} t={:.0}s: no sample: {e:#}",
                    at.duration_since(t0).as_secs_f64()
                );
                continue;
            }
        };
        let mut coord = BTreeMap::new();
        for n in nodes["nodes"].as_array().into_iter().flatten() {
            let id = n["id"].as_str().unwrap_or("?").to_string();
            coord.insert(id, n["load"]["score"].as_f64());
        }
        // The same figures from /metrics when /v1/nodes does not show them.
        if coord.values().all(Option::is_none) {
            if let Ok(r) = http.get_within("/metrics", short).await {
                let scores = node_load_metrics(&String::from_utf8_lossy(&r.body));
                for (id, v) in coord.iter_mut() {
                    *v = scores.get(id).copied();
                }
            }
        }
        let holders = holders(&shards);
        let client = attribute(&rates, &holders, coord.keys());
        last_holders = holders;
        let s = Sample {
            t_s: at.duration_since(t0).as_secs_f64(),
            coord,
            client,
            moves_in_flight: moves.values().filter(|m| m.state == "copying").count(),
        };
        println!(
            "  {side:>3} t={:>4.0}s  max/mean coordinator {}  client-attributed {}  load actions so far {}",
            s.t_s,
            s.coord_ratio().map_or("-".into(), f2),
            s.client_ratio().map_or("-".into(), f2),
            moves.values().filter(|m| m.reason == "load").count(),
        );
        samples.push(s);
    }
    // The moves finished since the last sample.
    let _ = merge_moves(&mut http, &mut moves, short).await;
    let mut moves: Vec<MoveRec> = moves.into_values().collect();
    moves.sort_by_key(|m| (m.started_ms, m.shard));
    let secs = t0.elapsed().as_secs_f64();
    let rates = load
        .counts()
        .iter()
        .map(|c| std::array::from_fn(|i| c[i] as f64 / secs))
        .collect();
    Ok(Sampled {
        samples,
        moves,
        missed,
        holders: last_holders,
        rates,
    })
}

/// What each node serves at the end, shard by shard (client-attributed, the run's
/// mean rates): (shard, primary?, score on that node), hottest first.
fn breakdown(
    rates: &[[f64; 4]],
    holders: &BTreeMap<u32, (Option<String>, Vec<String>)>,
) -> BTreeMap<String, Vec<(u32, bool, f64)>> {
    let mut out: BTreeMap<String, Vec<(u32, bool, f64)>> = BTreeMap::new();
    for (shard, (primary, replicas)) in holders {
        let Some(r) = rates.get(*shard as usize) else {
            continue;
        };
        let write = r[1] + r[3] / BYTES_PER_OP;
        let read = r[0] + r[2] / BYTES_PER_OP;
        if let Some(p) = primary {
            out.entry(p.clone())
                .or_default()
                .push((*shard, true, read + write));
        }
        for n in replicas {
            out.entry(n.clone())
                .or_default()
                .push((*shard, false, write));
        }
    }
    for v in out.values_mut() {
        v.sort_by(|a, b| b.2.total_cmp(&a.2));
    }
    out
}

/// Merges `/v1/moves` (in flight and recent) into `moves`, keyed by (shard, start,
/// reason, target).
async fn merge_moves(
    http: &mut Client,
    moves: &mut HashMap<(u32, u64, String, String), MoveRec>,
    within: Duration,
) -> Result<()> {
    let v = http.get_within("/v1/moves", within).await?.json()?;
    for (list, in_flight) in [(&v["in_flight"], true), (&v["recent"], false)] {
        for m in list.as_array().into_iter().flatten() {
            let rec = MoveRec {
                shard: m["shard"].as_u64().unwrap_or(0) as u32,
                reason: m["reason"].as_str().unwrap_or("?").to_string(),
                from: m["from"].as_str().map(str::to_string),
                to: m["to"].as_str().unwrap_or("?").to_string(),
                started_ms: m["started_ms"].as_u64().unwrap_or(0),
                duration_s: m["duration_seconds"].as_f64().unwrap_or(0.0),
                state: m["state"].as_str().unwrap_or("?").to_string(),
                copied: in_flight,
                load: m.get("load").cloned(),
            };
            let key = (
                rec.shard,
                rec.started_ms,
                rec.reason.clone(),
                rec.to.clone(),
            );
            match moves.get_mut(&key) {
                Some(seen) => {
                    let copied = seen.copied || rec.copied;
                    *seen = MoveRec { copied, ..rec };
                }
                None => {
                    moves.insert(key, rec);
                }
            }
        }
    }
    Ok(())
}

/// Each shard's (primary, replicas) from `/v1/shards`.
fn holders(shards: &Value) -> BTreeMap<u32, (Option<String>, Vec<String>)> {
    shards["shards"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            let replicas = s["replicas"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| r["node"].as_str().map(str::to_string))
                .collect();
            (
                s["id"].as_u64().unwrap_or(0) as u32,
                (s["primary"].as_str().map(str::to_string), replicas),
            )
        })
        .collect()
}

/// Client-attributed node scores: each shard's reads (and their bytes) charged to its
/// primary, its writes to every holder. `rates` per shard: reads, writes, read bytes,
/// write bytes per second. Every node in `nodes` gets a score (0 if it holds nothing).
fn attribute<'a>(
    rates: &[[f64; 4]],
    holders: &BTreeMap<u32, (Option<String>, Vec<String>)>,
    nodes: impl Iterator<Item = &'a String>,
) -> BTreeMap<String, f64> {
    let mut score: BTreeMap<String, f64> = nodes.map(|n| (n.clone(), 0.0)).collect();
    for (shard, (primary, replicas)) in holders {
        let Some(r) = rates.get(*shard as usize) else {
            continue;
        };
        let write = r[1] + r[3] / BYTES_PER_OP;
        let read = r[0] + r[2] / BYTES_PER_OP;
        if let Some(p) = primary {
            *score.entry(p.clone()).or_default() += read + write;
        }
        for n in replicas {
            *score.entry(n.clone()).or_default() += write;
        }
    }
    score
}

/// Each shard's load score from `/v1/shards` (the coordinator's view, summed over its
/// holders), hottest first.
async fn shard_loads(http: &mut Client) -> Result<Vec<(u32, f64)>> {
    let v = http
        .get_within("/v1/shards", Duration::from_secs(2))
        .await?
        .json()?;
    let mut out: Vec<(u32, f64)> = v["shards"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| Some((s["id"].as_u64()? as u32, s["load"]["score"].as_f64()?)))
        .collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1));
    Ok(out)
}

/// Each node's load score from `torua_node_load{node, kind}` samples in `text` (the
/// coordinator's /v1/nodes figures, as metrics): ops plus bytes at 16 KiB per op.
fn node_load_metrics(text: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("torua_node_load{") else {
            continue;
        };
        let Some((labels, value)) = rest.split_once("} ") else {
            continue;
        };
        let label = |name: &str| {
            labels
                .split(',')
                .find_map(|kv| kv.strip_prefix(name)?.strip_prefix("=\""))
                .map(|v| v.trim_end_matches('"'))
        };
        let (Some(node), Some(kind), Ok(v)) =
            (label("node"), label("kind"), value.trim().parse::<f64>())
        else {
            continue;
        };
        let weight = match kind {
            "reads" | "writes" => 1.0,
            "read_bytes" | "write_bytes" => 1.0 / BYTES_PER_OP,
            _ => continue,
        };
        *out.entry(node.to_string()).or_default() += v * weight;
    }
    out
}

/// A gauge's value from `/metrics` (None if absent or unanswered).
async fn metric(http: &mut Client, name: &str) -> Option<f64> {
    let r = http
        .get_within("/metrics", Duration::from_secs(2))
        .await
        .ok()?;
    let text = String::from_utf8_lossy(&r.body).into_owned();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

// ---------------------------------------------------------------------------------
// Statistics.

/// Largest over mean of `xs` (None when empty or the mean is 0).
pub fn max_over_mean(xs: &[f64]) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    let mean = xs.iter().sum::<f64>() / xs.len() as f64;
    let max = xs.iter().cloned().fold(f64::MIN, f64::max);
    (mean > 0.0).then(|| max / mean)
}

/// The most of `times` (ms, any order) within any window of `window` ms (a window
/// [t, t + window)).
pub fn max_in_window(times: &[u64], window: u64) -> usize {
    let mut t = times.to_vec();
    t.sort_unstable();
    let mut best = 0;
    let mut lo = 0;
    for hi in 0..t.len() {
        while t[hi] - t[lo] >= window {
            lo += 1;
        }
        best = best.max(hi - lo + 1);
    }
    best
}

/// Sorted, merged copies of `spans` (each [from, to]).
pub fn merge_spans(spans: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut s = spans.to_vec();
    s.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (a, b) in s {
        match out.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

/// Whether `t` lies in one of the merged, sorted `spans`.
pub fn in_spans(spans: &[(u64, u64)], t: u64) -> bool {
    let i = spans.partition_point(|s| s.1 < t);
    spans.get(i).is_some_and(|s| s.0 <= t)
}

/// The goal on a ratio series: (first time at or under `goal`, whether every sample
/// from `from_s` on is at or under it). Samples without a ratio are skipped.
pub fn goal_on_series(
    series: &[(f64, Option<f64>)],
    goal: f64,
    from_s: f64,
) -> (Option<f64>, bool) {
    let first = series
        .iter()
        .find(|(_, r)| r.is_some_and(|r| r <= goal))
        .map(|(t, _)| *t);
    let tail: Vec<f64> = series
        .iter()
        .filter(|(t, _)| *t >= from_s)
        .filter_map(|(_, r)| *r)
        .collect();
    (first, !tail.is_empty() && tail.iter().all(|&r| r <= goal))
}

fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("histogram bounds")
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    if h.is_empty() {
        return 0.0;
    }
    h.value_at_quantile(q) as f64 / 1000.0
}

fn max_ms(h: &Histogram<u64>) -> f64 {
    if h.is_empty() {
        return 0.0;
    }
    h.max() as f64 / 1000.0
}

fn fms(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.2}")
    }
}

// ---------------------------------------------------------------------------------
// One side's results.

struct SideResult {
    side: String,
    secs: f64,
    ops: u64,
    ok: u64,
    errors: BTreeMap<String, u64>,
    error_examples: Vec<(u64, String)>,
    all: Histogram<u64>,
    reads: Histogram<u64>,
    writes: Histogram<u64>,
    during: Histogram<u64>,
    during_errors: u64,
    /// Seconds of the run with a move in progress.
    during_secs: f64,
    samples: Vec<Sample>,
    missed_samples: usize,
    /// Moves since the load started (`started_ms` relative to its start).
    moves: Vec<MoveRec>,
    /// Moves that ended before it (the first placement).
    moves_before_load: usize,
    coord_cpu: f64,
    too_hot: Option<f64>,
    shard_loads: Vec<(u32, f64)>,
    /// Per node at the end: its shards, hottest first (see [`breakdown`]).
    breakdown: BTreeMap<String, Vec<(u32, bool, f64)>>,
}

impl SideResult {
    #[allow(clippy::too_many_arguments)]
    fn of(
        side: &str,
        t0_ms: u64,
        secs: f64,
        out: ClientOut,
        sampled: Sampled,
        coord_cpu: f64,
        too_hot: Option<f64>,
        shard_loads: Vec<(u32, f64)>,
    ) -> SideResult {
        // Moves that ended before the load started (the first placement) are only
        // counted.
        let (moves, before): (Vec<MoveRec>, Vec<MoveRec>) = sampled
            .moves
            .into_iter()
            .partition(|m| m.window().1 >= t0_ms);
        let breakdown = breakdown(&sampled.rates, &sampled.holders);
        let sampled = Sampled { moves, ..sampled };
        let spans = merge_spans(
            &sampled
                .moves
                .iter()
                .map(MoveRec::window)
                .collect::<Vec<_>>(),
        );
        let end_ms = t0_ms + (secs * 1000.0) as u64;
        let during_ms: u64 = spans
            .iter()
            .map(|&(a, b)| b.min(end_ms).saturating_sub(a.max(t0_ms)))
            .sum();
        let (mut all, mut reads, mut writes, mut during) =
            (new_hist(), new_hist(), new_hist(), new_hist());
        let mut ok = 0;
        let mut during_errors = 0;
        for op in &out.ops {
            let us = u64::from(op.lat_us.max(1));
            let _ = all.record(us);
            let _ = if op.read {
                reads.record(us)
            } else {
                writes.record(us)
            };
            ok += u64::from(op.ok);
            if in_spans(&spans, op.at_ms) {
                let _ = during.record(us);
                during_errors += u64::from(!op.ok);
            }
        }
        SideResult {
            side: side.into(),
            secs,
            ops: out.ops.len() as u64,
            ok,
            errors: out.errors,
            error_examples: out
                .examples
                .into_iter()
                .map(|(t, e)| (t.saturating_sub(t0_ms), e))
                .collect(),
            all,
            reads,
            writes,
            during,
            during_errors,
            during_secs: during_ms as f64 / 1000.0,
            samples: sampled.samples,
            missed_samples: sampled.missed,
            moves: sampled
                .moves
                .into_iter()
                .map(|mut m| {
                    m.started_ms = m.started_ms.saturating_sub(t0_ms);
                    m
                })
                .collect(),
            moves_before_load: before.len(),
            breakdown,
            coord_cpu,
            too_hot,
            shard_loads,
        }
    }

    fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    fn load_moves(&self) -> impl Iterator<Item = &MoveRec> {
        self.moves.iter().filter(|m| m.reason == "load")
    }

    fn swaps(&self) -> usize {
        self.load_moves().filter(|m| m.is_swap()).count()
    }

    fn copies(&self) -> usize {
        self.load_moves().filter(|m| !m.is_swap()).count()
    }

    fn other_moves(&self) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for x in self.moves.iter().filter(|m| m.reason != "load") {
            *m.entry(x.reason.clone()).or_default() += 1;
        }
        m
    }

    /// The most times one shard changed in any 10 min window: load actions only, and
    /// changes for any reason.
    fn max_per_shard(&self) -> (usize, usize) {
        let mut load: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
        let mut any: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
        for m in &self.moves {
            any.entry(m.shard).or_default().push(m.started_ms);
            if m.reason == "load" {
                load.entry(m.shard).or_default().push(m.started_ms);
            }
        }
        let most = |x: &BTreeMap<u32, Vec<u64>>| {
            x.values()
                .map(|t| max_in_window(t, WINDOW_MS))
                .max()
                .unwrap_or(0)
        };
        (most(&load), most(&any))
    }

    fn coord_series(&self) -> Vec<(f64, Option<f64>)> {
        self.samples
            .iter()
            .map(|s| (s.t_s, s.coord_ratio()))
            .collect()
    }

    fn client_series(&self) -> Vec<(f64, Option<f64>)> {
        self.samples
            .iter()
            .map(|s| (s.t_s, s.client_ratio()))
            .collect()
    }

    /// Mean ratio over the samples of the last minute.
    fn last_minute(series: &[(f64, Option<f64>)], secs: f64) -> Option<f64> {
        let v: Vec<f64> = series
            .iter()
            .filter(|(t, _)| *t > secs - 60.0)
            .filter_map(|(_, r)| *r)
            .collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    }

    /// Each node's client-attributed load at the end and its hottest shards.
    fn breakdown_text(&self) -> String {
        let mut s = format!(
            "{} at the end (client-attributed, the run's mean rates; p = primary):",
            self.side
        );
        for (node, shards) in &self.breakdown {
            let top: Vec<String> = shards
                .iter()
                .take(6)
                .map(|(id, p, l)| format!("{id}{} {l:.0}", if *p { "p" } else { "" }))
                .collect();
            s += &format!(
                "\n  {node}: {:.0} over {} shards ({} primaries); hottest {}",
                shards.iter().map(|x| x.2).sum::<f64>(),
                shards.len(),
                shards.iter().filter(|x| x.1).count(),
                top.join(", ")
            );
        }
        s
    }

    fn goal_text(&self) -> String {
        let (first, held) = goal_on_series(&self.coord_series(), GOAL_RATIO, GOAL_WITHIN_SECS);
        let (cfirst, cheld) = goal_on_series(&self.client_series(), GOAL_RATIO, GOAL_WITHIN_SECS);
        let (per_shard, _) = self.max_per_shard();
        let yes = |b: bool| if b { "met" } else { "NOT met" };
        format!(
            "{} goals: max/mean ≤ {GOAL_RATIO} from {GOAL_WITHIN_SECS:.0} s on: coordinator view {} (first ≤ at {}), client-attributed {} (first ≤ at {}); \
             ≤ {GOAL_MOVES_PER_WINDOW} load action per shard in 10 min: {} (max {per_shard}); 0 client errors: {} ({})",
            self.side,
            yes(held),
            first.map_or("never".into(), |t| format!("{t:.0} s")),
            yes(cheld),
            cfirst.map_or("never".into(), |t| format!("{t:.0} s")),
            yes(per_shard <= GOAL_MOVES_PER_WINDOW),
            yes(self.error_count() == 0),
            self.error_count(),
        )
    }

    fn json(&self) -> Value {
        let (first, held) = goal_on_series(&self.coord_series(), GOAL_RATIO, GOAL_WITHIN_SECS);
        let (cfirst, cheld) = goal_on_series(&self.client_series(), GOAL_RATIO, GOAL_WITHIN_SECS);
        let (per_shard, per_shard_any) = self.max_per_shard();
        json!({
            "side": self.side,
            "ops": self.ops,
            "ok": self.ok,
            "ops_per_s": self.ops as f64 / self.secs,
            "errors": self.errors,
            "error_examples": self.error_examples.iter().map(|(t, e)| json!({"at_ms": t, "error": e})).collect::<Vec<_>>(),
            "latency": report::hist_ms(&self.all),
            "reads": report::hist_ms(&self.reads),
            "writes": report::hist_ms(&self.writes),
            "during_moves": {
                "secs": self.during_secs,
                "latency": report::hist_ms(&self.during),
                "errors": self.during_errors,
            },
            "load_role_swaps": self.swaps(),
            "load_moves": self.copies(),
            "other_moves": self.other_moves(),
            "max_load_actions_per_shard_10min": per_shard,
            "max_changes_any_reason_per_shard_10min": per_shard_any,
            "max_over_mean": {
                "coordinator_first_at_or_under_goal_s": first,
                "coordinator_goal_met": held,
                "coordinator_last_minute": Self::last_minute(&self.coord_series(), self.secs),
                "client_attributed_first_at_or_under_goal_s": cfirst,
                "client_attributed_goal_met": cheld,
                "client_attributed_last_minute": Self::last_minute(&self.client_series(), self.secs),
            },
            "samples": self.samples.iter().map(|s| json!({
                "t_s": s.t_s,
                "coordinator": s.coord,
                "coordinator_max_over_mean": s.coord_ratio(),
                "client_attributed": s.client,
                "client_attributed_max_over_mean": s.client_ratio(),
                "moves_in_flight": s.moves_in_flight,
            })).collect::<Vec<_>>(),
            "missed_samples": self.missed_samples,
            "moves": self.moves.iter().map(MoveRec::json).collect::<Vec<_>>(),
            "moves_before_load": self.moves_before_load,
            "coordinator_cpu_share": self.coord_cpu,
            "shards_too_hot_gauge": self.too_hot,
            "per_node_at_end": self.breakdown.iter().map(|(n, v)| (n.clone(), json!({
                "score": v.iter().map(|x| x.2).sum::<f64>(),
                "shards": v.iter().take(12).map(|(s, p, l)| json!({"shard": s, "primary": p, "score": l})).collect::<Vec<_>>(),
            }))).collect::<serde_json::Map<_, _>>(),
            "shard_loads_at_end": self.shard_loads.iter().take(10).map(|(s, l)| json!({"shard": s, "score": l})).collect::<Vec<_>>(),
        })
    }
}

/// The time series of max/mean, one row per sample, sides side by side.
fn series_table(results: &[SideResult], sample_secs: f64) {
    let n = results.iter().map(|r| r.samples.len()).max().unwrap_or(0);
    let mut headers = vec!["t (s)".to_string()];
    for r in results {
        headers.push(format!("{} coord", r.side));
        headers.push(format!("{} client", r.side));
        headers.push(format!("{} load acts", r.side));
    }
    let mut rows = Vec::new();
    for i in 0..n {
        let t = results
            .iter()
            .find_map(|r| r.samples.get(i))
            .map_or((i as f64 + 1.0) * sample_secs, |s| s.t_s);
        let mut row = vec![format!("{t:.0}")];
        for r in results {
            let s = r.samples.get(i);
            row.push(s.and_then(Sample::coord_ratio).map_or("-".into(), f2));
            row.push(s.and_then(Sample::client_ratio).map_or("-".into(), f2));
            let acts = r
                .load_moves()
                .filter(|m| (m.started_ms as f64) / 1000.0 <= t)
                .count();
            row.push(acts.to_string());
        }
        rows.push(row);
    }
    let h: Vec<&str> = headers.iter().map(String::as_str).collect();
    report::table(
        "max/mean node load over time (coordinator's smoothed view | client-attributed; load actions so far)",
        &h,
        &rows,
    );
}

fn side_by_side(results: &[SideResult]) -> Vec<Vec<String>> {
    let cell =
        |f: &dyn Fn(&SideResult) -> String| -> Vec<String> { results.iter().map(f).collect() };
    let row = |name: &str, f: &dyn Fn(&SideResult) -> String| -> Vec<String> {
        let mut r = vec![name.to_string()];
        r.extend(cell(f));
        r
    };
    let ratio = |x: Option<f64>| x.map_or("-".into(), f2);
    let first = |x: (Option<f64>, bool)| {
        format!(
            "{} ({})",
            x.0.map_or("never".into(), |t| format!("{t:.0} s")),
            if x.1 { "held from 300 s" } else { "not held" }
        )
    };
    vec![
        row("requests (ops/s)", &|r| {
            format!("{} ({:.0})", r.ops, r.ops as f64 / r.secs)
        }),
        row("client errors", &|r| {
            if r.errors.is_empty() {
                "0".into()
            } else {
                format!("{} {:?}", r.error_count(), r.errors)
            }
        }),
        row("latency p50 / p99 / max", &|r| {
            format!(
                "{} / {} / {}",
                fms(ms(&r.all, 0.5)),
                fms(ms(&r.all, 0.99)),
                fms(max_ms(&r.all))
            )
        }),
        row("during moves: s, requests", &|r| {
            format!("{:.1} s, {}", r.during_secs, r.during.len())
        }),
        row("during moves: p99 / max", &|r| {
            format!("{} / {}", fms(ms(&r.during, 0.99)), fms(max_ms(&r.during)))
        }),
        row("load role swaps", &|r| r.swaps().to_string()),
        row("load moves (copies)", &|r| r.copies().to_string()),
        row("other moves", &|r| format!("{:?}", r.other_moves())),
        row("max load actions/shard/10 min", &|r| {
            r.max_per_shard().0.to_string()
        }),
        row("max changes/shard/10 min (any)", &|r| {
            r.max_per_shard().1.to_string()
        }),
        row("max/mean coord, first ≤ 1.15", &|r| {
            first(goal_on_series(
                &r.coord_series(),
                GOAL_RATIO,
                GOAL_WITHIN_SECS,
            ))
        }),
        row("max/mean coord, last minute", &|r| {
            ratio(SideResult::last_minute(&r.coord_series(), r.secs))
        }),
        row("max/mean client, first ≤ 1.15", &|r| {
            first(goal_on_series(
                &r.client_series(),
                GOAL_RATIO,
                GOAL_WITHIN_SECS,
            ))
        }),
        row("max/mean client, last minute", &|r| {
            ratio(SideResult::last_minute(&r.client_series(), r.secs))
        }),
        row("hottest shard (coord score)", &|r| {
            r.shard_loads
                .first()
                .map_or("-".into(), |(s, l)| format!("{s}: {l:.0}"))
        }),
        row("torua_shards_too_hot", &|r| ratio(r.too_hot)),
        row("coordinator CPU", &|r| {
            format!("{:.0} %", r.coord_cpu * 100.0)
        }),
    ]
}

// ---------------------------------------------------------------------------------
// A cluster per side.

/// One side of the comparison (load balancing on or off).
struct Side(Named);

impl std::ops::Deref for Side {
    type Target = Named;
    fn deref(&self) -> &Named {
        &self.0
    }
}

impl std::ops::DerefMut for Side {
    fn deref_mut(&mut self) -> &mut Named {
        &mut self.0
    }
}

impl Side {
    async fn start(name: &str, flags: Vec<String>, args: &Args) -> Result<Side> {
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        Ok(Side(
            Named::start(name, &flags, args.nodes, &args.interval).await?,
        ))
    }

    /// Waits until the cluster is green, no move is in flight, every shard has a
    /// primary, and the shard map has not changed for `--settle-secs`.
    async fn settle(&mut self, args: &Args) -> Result<()> {
        let mut http = Client::new(self.coord.addr);
        let deadline = Instant::now() + Duration::from_secs(180);
        let settle = Duration::from_secs_f64(args.settle_secs);
        let short = Duration::from_secs(2);
        let mut last: Option<(String, Instant)> = None;
        let mut seen = String::new();
        loop {
            let state = async {
                let cl = http.get_within("/v1/cluster", short).await?.json()?;
                let sh = http.get_within("/v1/shards", short).await?.json()?;
                let list = sh["shards"].as_array().cloned().unwrap_or_default();
                let sig: Vec<String> = list
                    .iter()
                    .map(|s| format!("{}@{}", s["id"], s["epoch"]))
                    .collect();
                let all_placed = !list.is_empty() && list.iter().all(|s| s["primary"].is_string());
                anyhow::Ok((
                    cl["status"].as_str().unwrap_or("?").to_string(),
                    cl["moves_in_flight"].as_i64().unwrap_or(-1),
                    all_placed,
                    sig.join(","),
                ))
            }
            .await;
            let now = Instant::now();
            match state {
                Ok((status, 0, true, sig)) if status == "green" => match &last {
                    Some((s, since)) if *s == sig => {
                        if now.duration_since(*since) >= settle {
                            return Ok(());
                        }
                    }
                    _ => last = Some((sig, now)),
                },
                Ok((status, moves, placed, _)) => {
                    seen = format!("status {status}, {moves} moves in flight, all placed {placed}");
                    last = None;
                }
                Err(e) => {
                    seen = format!("{e:#}");
                    last = None;
                }
            }
            if now >= deadline {
                bail!(
                    "{}: cluster not green and settled within 180 s: last {seen}",
                    self.name
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipf_draws_follow_the_power_law() {
        let z = Zipf::new(100_000, 1.2);
        // Rank probabilities ∝ r^-s, summing to 1.
        let sum: f64 = (0..100_000).map(|r| z.p(r)).sum();
        assert!((sum - 1.0).abs() < 1e-9, "{sum}");
        assert!((z.p(0) / z.p(1) - 2f64.powf(1.2)).abs() < 1e-9);
        assert!((z.p(9) / z.p(99) - 10f64.powf(1.2)).abs() < 1e-6);
        // The hottest key of Zipf(1.2) over 100,000 keys: 1 / H(100000, 1.2) ≈ 19.6 %.
        assert!((z.p(0) - 0.196).abs() < 0.002, "{}", z.p(0));
        // Inverse CDF at the edges.
        assert_eq!(z.rank(0.0), 0);
        assert_eq!(z.rank(z.p(0) - 1e-12), 0);
        assert_eq!(z.rank(z.p(0) + 1e-12), 1);
        assert!(z.rank(0.999_999_999_999) > 10_000);
        assert!(z.rank(1.0) < 100_000);
        // Sampled frequencies match within a few standard errors.
        let mut rng = fastrand::Rng::with_seed(7);
        let n = 200_000;
        let mut counts = [0usize; 3];
        for _ in 0..n {
            let r = z.sample(&mut rng);
            if r < 3 {
                counts[r] += 1;
            }
        }
        for (r, &c) in counts.iter().enumerate() {
            let want = z.p(r) * n as f64;
            let sd = (want * (1.0 - z.p(r))).sqrt();
            assert!(
                (c as f64 - want).abs() < 5.0 * sd,
                "rank {r}: {c} vs {want:.0}"
            );
        }
        // A one-key table always answers rank 0.
        assert_eq!(Zipf::new(1, 1.2).sample(&mut rng), 0);
    }

    #[test]
    fn node_load_scores_from_metrics() {
        let text = "# HELP torua_node_load Load\n\
            torua_node_load{node=\"n1\",kind=\"reads\"} 66.000\n\
            torua_node_load{node=\"n1\",kind=\"writes\"} 4.000\n\
            torua_node_load{node=\"n1\",kind=\"read_bytes\"} 16384.000\n\
            torua_node_load{node=\"n1\",kind=\"write_bytes\"} 8192.000\n\
            torua_node_load{node=\"n2\",kind=\"reads\"} 0\n\
            torua_node_loadx{node=\"n3\",kind=\"reads\"} 9\n\
            torua_shard_load{shard=\"1\",kind=\"reads\"} 5\n";
        let got = node_load_metrics(text);
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got["n1"], 66.0 + 4.0 + 1.5);
        assert_eq!(got["n2"], 0.0);
    }

    #[test]
    fn max_over_mean_of_node_loads() {
        assert_eq!(max_over_mean(&[]), None);
        assert_eq!(max_over_mean(&[0.0, 0.0]), None);
        assert_eq!(max_over_mean(&[1.0, 1.0, 1.0, 1.0]), Some(1.0));
        assert_eq!(max_over_mean(&[2.0, 1.0, 1.0, 0.0]), Some(2.0));
    }

    #[test]
    fn most_changes_of_one_shard_in_any_window() {
        let w = 600_000;
        assert_eq!(max_in_window(&[], w), 0);
        assert_eq!(max_in_window(&[5], w), 1);
        // 10 min apart exactly: two windows, one each.
        assert_eq!(max_in_window(&[0, 600_000], w), 1);
        assert_eq!(max_in_window(&[0, 599_999], w), 2);
        assert_eq!(max_in_window(&[900_000, 0, 300_000, 1_000_000], w), 2);
        assert_eq!(max_in_window(&[900_000, 599_999, 0, 300_000], w), 3);
    }

    #[test]
    fn requests_during_moves() {
        let spans = merge_spans(&[(50, 60), (10, 20), (15, 30), (100, 100)]);
        assert_eq!(spans, vec![(10, 30), (50, 60), (100, 100)]);
        for (t, want) in [
            (9, false),
            (10, true),
            (30, true),
            (31, false),
            (55, true),
            (100, true),
            (101, false),
        ] {
            assert_eq!(in_spans(&spans, t), want, "t = {t}");
        }
        assert!(!in_spans(&[], 1));
    }

    #[test]
    fn the_balance_goal_holds_from_its_deadline_on() {
        let s = |v: &[(f64, Option<f64>)]| goal_on_series(v, 1.15, 300.0);
        assert_eq!(s(&[]), (None, false));
        // Reached at 120 s and held.
        assert_eq!(
            s(&[
                (60.0, Some(1.5)),
                (120.0, Some(1.1)),
                (300.0, Some(1.14)),
                (360.0, Some(1.15))
            ]),
            (Some(120.0), true)
        );
        // Reached, then lost after the deadline.
        assert_eq!(
            s(&[(120.0, Some(1.1)), (300.0, Some(1.1)), (330.0, Some(1.2))]),
            (Some(120.0), false)
        );
        // Missing samples are skipped, but some sample must exist after the deadline.
        assert_eq!(
            s(&[(120.0, Some(1.1)), (300.0, None)]),
            (Some(120.0), false)
        );
        assert_eq!(s(&[(300.0, None), (305.0, Some(1.0))]), (Some(305.0), true));
    }

    #[test]
    fn client_load_goes_to_the_primary_for_reads_and_every_holder_for_writes() {
        let holders: BTreeMap<u32, (Option<String>, Vec<String>)> = [
            (0, (Some("n1".to_string()), vec!["n2".to_string()])),
            (1, (Some("n2".to_string()), vec!["n1".to_string()])),
        ]
        .into();
        // Shard 0: 90 reads/s, 10 writes/s of 16 KiB each; shard 1 idle.
        let rates = [[90.0, 10.0, 0.0, 10.0 * BYTES_PER_OP], [0.0; 4]];
        let nodes = ["n1".to_string(), "n2".to_string(), "n3".to_string()];
        let got = attribute(&rates, &holders, nodes.iter());
        assert_eq!(got["n1"], 90.0 + 20.0);
        assert_eq!(got["n2"], 20.0);
        assert_eq!(got["n3"], 0.0);
    }

    #[test]
    fn a_load_action_without_a_copy_is_a_swap_with_a_window_around_it() {
        let m = MoveRec {
            shard: 3,
            reason: "load".into(),
            from: Some("n1".into()),
            to: "n2".into(),
            started_ms: 10_000,
            duration_s: 0.0,
            state: "ok".into(),
            copied: false,
            load: None,
        };
        assert!(m.is_swap());
        assert_eq!(m.window(), (9_000, 11_000));
        let copy = MoveRec {
            duration_s: 1.5,
            ..m.clone()
        };
        assert!(!copy.is_swap());
        assert_eq!(copy.window(), (10_000, 11_500));
        let rebalance = MoveRec {
            reason: "rebalance".into(),
            ..copy
        };
        assert!(!rebalance.is_swap());
    }

    #[test]
    fn keys_map_to_shards_as_the_coordinator_does() {
        let k = Keys::new(1000, 64);
        assert_eq!(k.paths[7], "/v1/data/hs-000007");
        assert!(k.shard.iter().all(|&s| s < 64));
        let z = Zipf::new(1000, 1.2);
        let shares = k.shard_shares(&z);
        assert!((shares.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        assert!(shares[k.shard[0] as usize] >= z.p(0));
    }
}
