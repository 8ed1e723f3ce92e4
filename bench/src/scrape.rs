//! `torua-bench scrape`: `/metrics` latency and size of a coordinator tracking many
//! nodes (registered by signed heartbeats), idle and while those nodes keep
//! heartbeating at 1 Hz each.

use crate::cluster::{Coordinator, SECRET};
use crate::http::Client;
use crate::load;
use crate::proc::MIB;
use crate::report::{self, f1, f2, median, quantile};
use anyhow::{bail, Result};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Tracked nodes.
    #[arg(long, default_value_t = 10_000)]
    pub nodes: usize,
    /// Scrapes per phase.
    #[arg(long, default_value_t = 20)]
    pub scrapes: usize,
    /// Pause between scrapes, ms.
    #[arg(long, default_value_t = 250)]
    pub pause_ms: u64,
    /// Skip the phase with every node heartbeating at 1 Hz.
    #[arg(long)]
    pub idle_only: bool,
    #[arg(long, default_value = "bench-results/scrape.json")]
    pub out: PathBuf,
}

pub fn run(args: Args) -> Result<()> {
    crate::block_on(1, run_async(args))
}

async fn scrape_phase(
    client: &mut Client,
    n: usize,
    pause: Duration,
) -> Result<(Vec<f64>, usize, usize)> {
    let mut ms = Vec::with_capacity(n);
    let (mut bytes, mut series) = (0, 0);
    for _ in 0..n {
        let t = Instant::now();
        let r = client.get("/metrics").await?;
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
        if r.status != 200 {
            bail!("/metrics: {}", r.status);
        }
        bytes = r.body.len();
        series = r
            .body
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty() && l[0] != b'#')
            .count();
        tokio::time::sleep(pause).await;
    }
    Ok((ms, bytes, series))
}

async fn run_async(args: Args) -> Result<()> {
    let machine = report::machine();
    let coord = Coordinator::start(&[]).await?;
    let conns = load::fleet(SECRET, args.nodes, 64, coord.addr, 1000);
    let (conns, reg, _) = load::register(conns).await;
    if reg.accepted as usize != args.nodes {
        bail!(
            "registration: {} of {} accepted ({:?})",
            reg.accepted,
            args.nodes,
            reg.rejected
        );
    }
    let mut client = Client::new(coord.addr);
    let pause = Duration::from_millis(args.pause_ms);
    let mut phases: Vec<(&str, Vec<f64>, usize, usize)> = Vec::new();
    let (ms, bytes, series) = scrape_phase(&mut client, args.scrapes, pause).await?;
    phases.push(("idle (nodes registered)", ms, bytes, series));
    if !args.idle_only {
        // Every node at 1 Hz while we scrape.
        let secs = (args.scrapes as f64 * (pause.as_secs_f64() + 0.2)).max(2.0) + 1.0;
        let load = tokio::spawn(load::run_rate(
            conns,
            args.nodes as f64,
            Duration::from_secs_f64(secs),
        ));
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (ms, bytes, series) = scrape_phase(&mut client, args.scrapes, pause).await?;
        let (_, t, wall) = load.await?;
        phases.push(("heartbeats at 1 Hz per node", ms, bytes, series));
        println!(
            "  (background: {:.0} heartbeats/s accepted, p99 {:.1} ms)",
            t.accepted as f64 / wall.as_secs_f64(),
            t.latency.value_at_quantile(0.99) as f64 / 1000.0
        );
    }
    let rss = coord.proc.stats()?.rss as f64 / MIB;
    let mut rows = Vec::new();
    let mut out: Vec<Value> = Vec::new();
    for (name, ms, bytes, series) in &phases {
        let (p50, p90) = (median(ms), quantile(ms, 0.9));
        let max = ms.iter().cloned().fold(0.0, f64::max);
        rows.push(vec![
            name.to_string(),
            args.nodes.to_string(),
            ms.len().to_string(),
            f2(p50),
            f2(p90),
            f2(max),
            f1(*bytes as f64 / MIB),
            series.to_string(),
        ]);
        out.push(json!({
            "phase": name, "scrapes": ms.len(), "p50_ms": p50, "p90_ms": p90, "max_ms": max,
            "bytes": bytes, "series": series, "goal_met": p90 < 100.0, "samples_ms": ms,
        }));
    }
    report::table(
        "coordinator /metrics",
        &[
            "phase", "nodes", "scrapes", "p50 ms", "p90 ms", "max ms", "size MiB", "series",
        ],
        &rows,
    );
    report::write_json(
        &args.out,
        &json!({
            "benchmark": "scrape",
            "machine": machine,
            "params": { "nodes": args.nodes, "scrapes": args.scrapes, "pause_ms": args.pause_ms },
            "coordinator_rss_mib": rss,
            "phases": out,
            "goal_ms": 100,
        }),
    )
}
