//! `torua-bench detect`: how long a real coordinator takes to mark a node `unhealthy`
//! after SIGSTOP of its storage node (seen by the agent's http check) or of its agent
//! (seen by phi accrual / the hard timeout), polling `GET /v1/nodes/{id}` every 10 ms;
//! and a false-positive soak: simulated agents with send jitter beside a CPU hog.

use crate::cluster::{node_state, wait_state, Coordinator, Member, SECRET};
use crate::http::Client;
use crate::load;
use crate::report::{self, f2, quantile};
use anyhow::{bail, Result};
use nix::sys::signal::Signal;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// SIGSTOP runs per (interval, target); fewer than 20 is flagged in the output.
    #[arg(long, default_value_t = 20)]
    pub runs: usize,
    /// Agent heartbeat intervals to measure at.
    #[arg(long, value_delimiter = ',', default_value = "1s,250ms")]
    pub intervals: Vec<String>,
    /// Seconds of the false-positive soak (0 skips it).
    #[arg(long, default_value_t = 600.0)]
    pub soak_secs: f64,
    /// Simulated agents in the soak.
    #[arg(long, default_value_t = 100)]
    pub soak_agents: usize,
    /// Send jitter of the soak agents, as a fraction of the 1 s interval (uniform ±).
    #[arg(long, default_value_t = 0.3)]
    pub soak_jitter: f64,
    #[arg(long, default_value = "bench-results/detect.json")]
    pub out: PathBuf,
}

const POLL: Duration = Duration::from_millis(10);
const TARGET: &str = "d1";

pub fn run(args: Args) -> Result<()> {
    crate::block_on(1, run_async(args))
}

async fn run_async(args: Args) -> Result<()> {
    let machine = report::machine();
    let mut results = Vec::new();
    let mut rows = Vec::new();
    for interval in &args.intervals {
        let coord = Coordinator::start(&[]).await?;
        // Three members like a small cluster; d1 is the one we stop.
        let mut members = Vec::new();
        for id in [TARGET, "d2", "d3"] {
            members.push(Member::start(&coord, id, interval).await?);
        }
        for m in &members {
            wait_state(coord.addr, &m.id, "healthy", Duration::from_secs(30)).await?;
        }
        for target in ["node", "agent"] {
            let mut times = Vec::new();
            for _ in 0..args.runs {
                let m = &members[0];
                let victim = if target == "node" { &m.node } else { &m.agent };
                times.push(stop_once(&coord, victim, interval).await?);
            }
            let secs: Vec<f64> = times.iter().map(|d| d.as_secs_f64()).collect();
            let (p50, p90) = (quantile(&secs, 0.5), quantile(&secs, 0.9));
            let max = secs.iter().cloned().fold(0.0, f64::max);
            let goal = match (target, interval.as_str()) {
                ("node", "1s") => Some(1.5),
                ("agent", "1s") => Some(2.5),
                _ => None,
            };
            rows.push(vec![
                interval.clone(),
                format!("{target} SIGSTOP"),
                secs.len().to_string(),
                f2(p50),
                f2(p90),
                f2(max),
                goal.map(|g| format!("< {g} s: {}", if p90 < g { "met" } else { "MISSED" }))
                    .unwrap_or_else(|| "-".into()),
            ]);
            results.push(json!({
                "interval": interval, "target": target, "runs": secs.len(),
                "few_runs": secs.len() < 20,
                "p50_s": p50, "p90_s": p90, "max_s": max, "samples_s": secs,
                "goal_s": goal, "goal_met": goal.map(|g| p90 < g),
            }));
        }
    }
    report::table(
        &format!(
            "time from SIGSTOP to unhealthy (poll every {} ms)",
            POLL.as_millis()
        ),
        &[
            "interval",
            "stopped",
            "runs",
            "p50 s",
            "p90 s",
            "max s",
            "goal (p90)",
        ],
        &rows,
    );
    if args.runs < 20 {
        println!(
            "\n  NOTE: only {} run(s) per case (< 20): quantiles are rough",
            args.runs
        );
    }

    let soak = if args.soak_secs > 0.0 {
        Some(soak(&args).await?)
    } else {
        None
    };
    report::write_json(
        &args.out,
        &json!({
            "benchmark": "detect",
            "machine": machine,
            "params": { "runs": args.runs, "intervals": args.intervals, "poll_ms": POLL.as_millis() as u64,
                        "soak_secs": args.soak_secs, "soak_agents": args.soak_agents, "soak_jitter": args.soak_jitter },
            "few_runs": args.runs < 20,
            "detection": results,
            "soak": soak,
        }),
    )
}

/// Waits for `TARGET` to be healthy, stops `victim` at a random phase of the interval,
/// times how long until `unhealthy`, then continues it.
async fn stop_once(
    coord: &Coordinator,
    victim: &crate::proc::Proc,
    interval: &str,
) -> Result<Duration> {
    wait_state(coord.addr, TARGET, "healthy", Duration::from_secs(60)).await?;
    let iv = parse_interval(interval)?;
    tokio::time::sleep(Duration::from_millis(500) + iv.mul_f64(fastrand::f64())).await;
    let mut client = Client::new(coord.addr);
    victim.signal(Signal::SIGSTOP)?;
    let t0 = Instant::now();
    let res = loop {
        match node_state(&mut client, TARGET).await {
            Ok(Some(s)) if s == "unhealthy" => break Ok(t0.elapsed()),
            _ if t0.elapsed() > Duration::from_secs(30) => {
                break Err(anyhow::anyhow!(
                    "{TARGET} not unhealthy 30 s after stopping {}",
                    victim.name
                ))
            }
            _ => tokio::time::sleep(POLL).await,
        }
    };
    victim.signal(Signal::SIGCONT)?;
    res
}

fn parse_interval(s: &str) -> Result<Duration> {
    if let Some(ms) = s.strip_suffix("ms") {
        return Ok(Duration::from_millis(ms.parse()?));
    }
    if let Some(secs) = s.strip_suffix('s') {
        return Ok(Duration::from_secs_f64(secs.parse()?));
    }
    bail!("interval {s:?}: use e.g. 1s or 250ms")
}

/// Simulated agents (1 s ± jitter, own connection each) next to a spinning thread;
/// counts every `unhealthy` mark, though no agent ever stops.
async fn soak(args: &Args) -> Result<Value> {
    let coord = Coordinator::start(&[]).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let hog = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut x = 0u64;
            while !stop.load(Ordering::Relaxed) {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
        })
    };
    let conns = load::fleet(SECRET, args.soak_agents, args.soak_agents, coord.addr, 1000);
    let end = Instant::now() + Duration::from_secs_f64(args.soak_secs);
    let jitter = args.soak_jitter;
    // Senders outlive the watch: the count is read while every agent still sends.
    let sending = Arc::new(AtomicBool::new(true));
    let senders: Vec<_> = conns
        .into_iter()
        .map(|mut c| {
            let sending = sending.clone();
            tokio::spawn(async move {
                // Random start phase, then 1 s ± jitter between sends.
                tokio::time::sleep(Duration::from_secs_f64(fastrand::f64())).await;
                let (mut ok, mut bad) = (0u64, 0u64);
                while sending.load(Ordering::Relaxed) {
                    match c.send_one().await {
                        Ok(load::Outcome::Accepted) => ok += 1,
                        _ => bad += 1,
                    }
                    let f = 1.0 + jitter * (2.0 * fastrand::f64() - 1.0);
                    tokio::time::sleep(Duration::from_secs_f64(f)).await;
                }
                (ok, bad)
            })
        })
        .collect();
    // Watch every node's state; count transitions into unhealthy.
    let mut client = Client::new(coord.addr);
    let mut last: HashMap<String, String> = HashMap::new();
    let mut marks = 0u64;
    let mut marked: Vec<String> = Vec::new();
    while Instant::now() < end {
        if let Ok(r) = client.get("/v1/nodes").await {
            if let Ok(v) = r.json() {
                for n in v["nodes"].as_array().into_iter().flatten() {
                    let (id, st) = (
                        n["id"].as_str().unwrap_or(""),
                        n["state"].as_str().unwrap_or(""),
                    );
                    if st == "unhealthy" && last.get(id).map(String::as_str) != Some("unhealthy") {
                        marks += 1;
                        marked.push(id.to_string());
                    }
                    last.insert(id.to_string(), st.to_string());
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let metrics = client.get("/metrics").await?;
    sending.store(false, Ordering::Relaxed);
    let (mut ok, mut bad) = (0u64, 0u64);
    for s in senders {
        let (o, b) = s.await?;
        ok += o;
        bad += b;
    }
    let text = String::from_utf8_lossy(&metrics.body);
    let convictions = text
        .lines()
        .find_map(|l| l.strip_prefix("torua_failure_detection_seconds_count "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(f64::NAN);
    stop.store(true, Ordering::Relaxed);
    let _ = hog.join();
    report::table(
        "false-positive soak (no agent ever stops)",
        &[
            "agents",
            "secs",
            "jitter",
            "heartbeats ok",
            "not ok",
            "unhealthy marks",
            "detector convictions",
        ],
        &[vec![
            args.soak_agents.to_string(),
            format!("{:.0}", args.soak_secs),
            format!("±{:.0}%", jitter * 100.0),
            ok.to_string(),
            bad.to_string(),
            marks.to_string(),
            format!("{convictions}"),
        ]],
    );
    Ok(json!({
        "agents": args.soak_agents, "secs": args.soak_secs, "jitter": jitter, "cpu_hog_threads": 1,
        "heartbeats_ok": ok, "heartbeats_not_ok": bad,
        "unhealthy_marks": marks, "marked_nodes": marked,
        "failure_detection_count": if convictions.is_nan() { Value::Null } else { json!(convictions) },
        "goal_met": marks == 0,
    }))
}
