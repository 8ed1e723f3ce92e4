//! `torua-bench heartbeats`: simulated agents push signed heartbeats to a real
//! coordinator at stepped aggregate rates; per step: accepted/s, rejected/s, latency
//! quantiles, coordinator CPU and RSS; the highest rate held with p99 under the bound;
//! the coordinator's memory per tracked node; optionally etcd lease keep-alives at the
//! same rates in the same run.

use crate::cluster::{Coordinator, SECRET};
use crate::load::{self, Tally};
use crate::proc::{ProcStats, MIB};
use crate::report::{self, f1, f2, median};
use anyhow::{bail, Result};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Simulated agents (node ids `bench-<i>`).
    #[arg(long, default_value_t = 10_000)]
    pub nodes: usize,
    /// Keep-alive connections the agents share (the coordinator allows 10,000).
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// Aggregate rates to step through, heartbeats/s, comma-separated; `0`: only
    /// register the fleet and measure memory per node.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "10000,20000,30000,40000,50000,60000,80000"
    )]
    pub rates: Vec<f64>,
    /// Seconds per step.
    #[arg(long, default_value_t = 5.0)]
    pub step_secs: f64,
    /// Runs per step; the table shows medians.
    #[arg(long, default_value_t = 1)]
    pub repeat: usize,
    /// A step is "sustained" when p99 stays under this and ≥ 95 % of the rate is accepted.
    #[arg(long, default_value_t = 10.0)]
    pub max_p99_ms: f64,
    /// Keep stepping past the first step that is not sustained.
    #[arg(long)]
    pub no_stop: bool,
    /// Also run etcd lease keep-alives (same nodes, connections and rates) in this run.
    #[arg(long)]
    pub etcd: bool,
    /// Worker threads of the load generator's runtime.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Let the simulated nodes take shards. By default they advertise `max_shards: 0`:
    /// nothing listens at their address, so shard copies to them could only fail and
    /// retry, which would measure the mover rather than the heartbeat path.
    #[arg(long)]
    pub take_shards: bool,
    /// Extra flag for the coordinator (repeatable), e.g. `--coordinator-arg=--shards=16`.
    #[arg(long = "coordinator-arg", allow_hyphen_values = true)]
    pub coordinator_args: Vec<String>,
    #[arg(long, default_value = "bench-results/heartbeats.json")]
    pub out: PathBuf,
}

/// One run of one step, for any system under test.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Step {
    pub system: String,
    pub target_rate: f64,
    pub run: usize,
    pub secs: f64,
    pub accepted_per_s: f64,
    pub rejected_per_s: f64,
    pub rejected: std::collections::BTreeMap<String, u64>,
    pub errors: u64,
    pub unsent: u64,
    pub latency: Value,
    pub service_time: Value,
    pub server_cpu_secs: f64,
    pub server_cpu_share: f64,
    pub server_rss_mib: f64,
    pub server_peak_rss_mib: f64,
    pub generator_cpu_share: f64,
}

impl Step {
    pub fn new(system: &str, rate: f64, run: usize, t: &Tally, wall: Duration) -> Step {
        let secs = wall.as_secs_f64();
        Step {
            system: system.into(),
            target_rate: rate,
            run,
            secs,
            accepted_per_s: t.accepted as f64 / secs,
            rejected_per_s: t.rejected_total() as f64 / secs,
            rejected: t.rejected.clone(),
            errors: t.errors,
            unsent: t.unsent,
            latency: report::hist_ms(&t.latency),
            service_time: report::hist_ms(&t.service),
            server_cpu_secs: 0.0,
            server_cpu_share: 0.0,
            server_rss_mib: 0.0,
            server_peak_rss_mib: 0.0,
            generator_cpu_share: 0.0,
        }
    }

    /// Fills in the server's and the generator's CPU and memory from two readings each.
    pub fn with_proc(
        mut self,
        s0: &ProcStats,
        s1: &ProcStats,
        g0: &ProcStats,
        g1: &ProcStats,
    ) -> Step {
        self.server_cpu_secs = s1.cpu_secs - s0.cpu_secs;
        self.server_cpu_share = s1.cpu_share_since(s0);
        self.server_rss_mib = s1.rss as f64 / MIB;
        self.server_peak_rss_mib = s1.hwm as f64 / MIB;
        self.generator_cpu_share = g1.cpu_share_since(g0);
        self
    }

    pub fn p99(&self) -> f64 {
        self.latency["p99_ms"].as_f64().unwrap_or(f64::INFINITY)
    }

    pub fn sustained(&self, max_p99_ms: f64) -> bool {
        self.p99() < max_p99_ms
            && self.accepted_per_s >= 0.95 * self.target_rate
            && self.errors == 0
            && self.unsent == 0
    }
}

/// Median over runs of the same system and rate, field by field.
pub fn median_steps(runs: &[Step]) -> Step {
    let m = |f: &dyn Fn(&Step) -> f64| median(&runs.iter().map(f).collect::<Vec<_>>());
    let q = |k: &'static str| move |s: &Step| s.latency[k].as_f64().unwrap_or(0.0);
    let mut s = runs[0].clone();
    s.run = 0;
    s.accepted_per_s = m(&|s| s.accepted_per_s);
    s.rejected_per_s = m(&|s| s.rejected_per_s);
    s.errors = m(&|s| s.errors as f64) as u64;
    s.unsent = m(&|s| s.unsent as f64) as u64;
    s.latency = json!({
        "p50_ms": m(&q("p50_ms")), "p90_ms": m(&q("p90_ms")), "p99_ms": m(&q("p99_ms")),
        "p999_ms": m(&q("p999_ms")), "max_ms": m(&q("max_ms")),
    });
    s.server_cpu_secs = m(&|s| s.server_cpu_secs);
    s.server_cpu_share = m(&|s| s.server_cpu_share);
    s.server_rss_mib = m(&|s| s.server_rss_mib);
    s.server_peak_rss_mib = runs
        .iter()
        .map(|s| s.server_peak_rss_mib)
        .fold(0.0, f64::max);
    s.generator_cpu_share = m(&|s| s.generator_cpu_share);
    s
}

pub fn print_steps(title: &str, steps: &[Step]) {
    let rows: Vec<Vec<String>> = steps
        .iter()
        .map(|s| {
            vec![
                s.system.clone(),
                format!("{:.0}", s.target_rate),
                format!("{:.0}", s.accepted_per_s),
                format!("{:.0}", s.rejected_per_s),
                f2(s.latency["p50_ms"].as_f64().unwrap_or(0.0)),
                f2(s.p99()),
                f2(s.latency["p999_ms"].as_f64().unwrap_or(0.0)),
                format!("{:.0}%", s.server_cpu_share * 100.0),
                f1(s.server_rss_mib),
                format!("{:.0}%", s.generator_cpu_share * 100.0),
                format!("{}", s.errors + s.unsent),
            ]
        })
        .collect();
    report::table(
        title,
        &[
            "system",
            "target/s",
            "accepted/s",
            "rejected/s",
            "p50 ms",
            "p99 ms",
            "p999 ms",
            "server cpu",
            "rss MiB",
            "gen cpu",
            "err+unsent",
        ],
        &rows,
    );
}

pub fn run(args: Args) -> Result<()> {
    crate::block_on(args.threads.max(1), run_async(args))
}

async fn run_async(args: Args) -> Result<()> {
    if args.nodes == 0 {
        bail!("--nodes must be at least 1");
    }
    let machine = report::machine();
    let extra: Vec<&str> = args.coordinator_args.iter().map(String::as_str).collect();
    let coord = Coordinator::start(&extra).await?;
    let pid = coord.proc.pid();
    let me = std::process::id();
    let interval_ms = 1000;

    // Register the fleet: one heartbeat per node, then the memory per tracked node.
    let idle = ProcStats::read(pid)?;
    let mut conns = load::fleet(
        SECRET,
        args.nodes,
        args.connections,
        coord.addr,
        interval_ms,
    );
    for c in &mut conns {
        for n in &mut c.nodes {
            n.shardless = !args.take_shards;
        }
    }
    let (mut conns, reg, reg_wall) = load::register(conns).await;
    if reg.accepted as usize != args.nodes {
        bail!(
            "registration: {} of {} accepted (rejected {:?}, errors {}); coordinator log:\n{}",
            reg.accepted,
            args.nodes,
            reg.rejected,
            reg.errors,
            coord.proc.log_tail()
        );
    }
    tokio::time::sleep(Duration::from_secs(2)).await; // let group commits land
    let after = ProcStats::read(pid)?;
    let per_node = (after.rss as f64 - idle.rss as f64) / args.nodes as f64;
    let memory = json!({
        "nodes": args.nodes,
        "register_secs": reg_wall.as_secs_f64(),
        "register_per_s": args.nodes as f64 / reg_wall.as_secs_f64(),
        "rss_idle_mib": idle.rss as f64 / MIB,
        "rss_after_mib": after.rss as f64 / MIB,
        "peak_rss_mib": after.hwm as f64 / MIB,
        "bytes_per_node": per_node,
        "goal_bytes_per_node": 2048,
        "goal_met": per_node < 2048.0,
    });
    report::table(
        "coordinator memory per tracked node",
        &[
            "nodes",
            "register s",
            "rss idle MiB",
            "rss after MiB",
            "peak MiB",
            "bytes/node",
        ],
        &[vec![
            args.nodes.to_string(),
            f2(reg_wall.as_secs_f64()),
            f1(idle.rss as f64 / MIB),
            f1(after.rss as f64 / MIB),
            f1(after.hwm as f64 / MIB),
            format!("{per_node:.0}"),
        ]],
    );

    // Step the rate up.
    let mut runs: Vec<Step> = Vec::new();
    let mut medians: Vec<Step> = Vec::new();
    let step = Duration::from_secs_f64(args.step_secs);
    for &rate in args.rates.iter().filter(|r| **r > 0.0) {
        let mut these = Vec::new();
        for run in 1..=args.repeat.max(1) {
            let (s0, g0) = (ProcStats::read(pid)?, ProcStats::read(me)?);
            let (c, t, wall) = load::run_rate(conns, rate, step).await;
            conns = c;
            let (s1, g1) = (ProcStats::read(pid)?, ProcStats::read(me)?);
            these.push(Step::new("torua", rate, run, &t, wall).with_proc(&s0, &s1, &g0, &g1));
        }
        let m = median_steps(&these);
        runs.extend(these);
        let ok = m.sustained(args.max_p99_ms);
        medians.push(m);
        if !ok && !args.no_stop {
            break;
        }
    }
    let best = medians
        .iter()
        .filter(|s| s.sustained(args.max_p99_ms))
        .map(|s| s.target_rate)
        .fold(0.0, f64::max);
    let max_accepted = medians.iter().map(|s| s.accepted_per_s).fold(0.0, f64::max);
    if !medians.is_empty() {
        print_steps(
            &format!(
                "torua heartbeats ({} nodes, {} connections; medians of {} run(s))",
                args.nodes,
                conns.len(),
                args.repeat.max(1)
            ),
            &medians,
        );
        println!(
            "\n  highest rate sustained with p99 < {} ms: {best:.0}/s; most accepted: {max_accepted:.0}/s",
            args.max_p99_ms
        );
    }
    drop(conns);
    drop(coord);

    let etcd = if args.etcd {
        Some(crate::etcd::compare(&args, &medians).await?)
    } else {
        None
    };

    let out = json!({
        "benchmark": "heartbeats",
        "machine": machine,
        "params": {
            "nodes": args.nodes, "connections": args.connections, "rates": args.rates,
            "step_secs": args.step_secs, "repeat": args.repeat, "max_p99_ms": args.max_p99_ms,
            "generator_threads": args.threads, "interval_ms": interval_ms,
            "coordinator_args": args.coordinator_args, "take_shards": args.take_shards,
        },
        "memory": memory,
        "steps": medians,
        "runs": runs,
        "sustained_rate": best,
        "max_accepted_per_s": max_accepted,
        "goal_accepted_per_s": 50_000,
        "goal_met": max_accepted >= 50_000.0 ,
        "etcd": etcd,
    });
    report::write_json(&args.out, &out)?;
    Ok(())
}
