//! `torua-bench footprint`: the RSS and CPU of one agent running 4 checks at 1 Hz
//! against a real node, and, in the same run, of Prometheus `node_exporter` scraped
//! on a Prometheus-like schedule.

use crate::cluster::Coordinator;
use crate::http::Client;
use crate::proc::{cpu_secs_precise, find_tool, free_port, sibling_bin, Proc, ProcStats, MIB};
use crate::report::{self, f1, f3, median};
use anyhow::{Context, Result};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Seconds to measure (after a 3 s warm-up).
    #[arg(long, default_value_t = 60.0)]
    pub secs: f64,
    /// How often node_exporter is scraped during the run (Prometheus' default is 15 s).
    #[arg(long, default_value_t = 15.0)]
    pub exporter_scrape_secs: f64,
    /// Skip node_exporter even if installed.
    #[arg(long)]
    pub no_exporter: bool,
    #[arg(long, default_value = "bench-results/footprint.json")]
    pub out: PathBuf,
}

pub const NODE_EXPORTER: &str = "prometheus-node-exporter";

pub fn run(args: Args) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(run_async(args))
}

struct Watched<'a> {
    name: &'static str,
    proc: &'a Proc,
    rss: Vec<f64>,
    /// `(RssAnon, RssFile)` in MiB: private memory vs mapped code and other file
    /// pages (for the agent most of its RSS is its own binary and glibc).
    split: Vec<(f64, f64)>,
    start: Option<(ProcStats, f64)>,
}

/// `(RssAnon, RssFile)` of `pid` in MiB, from `/proc/<pid>/status`.
fn rss_split(pid: u32) -> Result<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let mib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .map_or(0.0, |kib| kib / 1024.0)
    };
    Ok((mib("RssAnon:"), mib("RssFile:")))
}

async fn run_async(args: Args) -> Result<()> {
    let machine = report::machine();
    let coord = Coordinator::start(&[]).await?;
    let dir = coord.dir.path();
    let node_port = free_port();
    let node = Proc::start(
        "node",
        &sibling_bin("torua-node")?,
        &[
            "--listen".into(),
            format!("127.0.0.1:{node_port}"),
            "--node-id".into(),
            "f1".into(),
        ],
        dir,
        "warn",
    )?;
    let pid_file = dir.join("node.pid");
    std::fs::write(&pid_file, node.pid().to_string())?;
    let config = dir.join("agent.yaml");
    std::fs::write(
        &config,
        format!(
            r#"node_id: f1
node_addr: http://127.0.0.1:{node_port}
coordinator: {coord}
listen: 127.0.0.1:{agent_port}
interval: 1s
cluster_secret_file: {secret}
metrics:
  disk_path: /
checks:
  - name: node-http
    kind: http
    url: http://127.0.0.1:{node_port}/health
    interval: 1s
  - name: node-tcp
    kind: tcp
    addr: 127.0.0.1:{node_port}
    interval: 1s
  - name: root-disk
    kind: disk
    path: /
    interval: 1s
  - name: node-process
    kind: process
    pid_file: {pid_file}
    interval: 1s
"#,
            coord = coord.url,
            agent_port = free_port(),
            secret = coord.secret_file.display(),
            pid_file = pid_file.display(),
        ),
    )?;
    let agent = Proc::start(
        "agent",
        &sibling_bin("torua-agent")?,
        &["--config".into(), config.display().to_string()],
        dir,
        "warn",
    )?;

    let exporter = match (args.no_exporter, find_tool(NODE_EXPORTER)) {
        (true, _) => None,
        (false, Some(exe)) => {
            let port = free_port();
            let p = Proc::start(
                "node_exporter",
                &exe,
                &[format!("--web.listen-address=127.0.0.1:{port}")],
                dir,
                "warn",
            )?;
            Some((p, port))
        }
        (false, None) => {
            println!("\n*** SKIPPED node_exporter: not installed (apt-get install prometheus-node-exporter) ***");
            None
        }
    };

    crate::cluster::wait_state(coord.addr, "f1", "healthy", Duration::from_secs(30))
        .await
        .context("agent f1 never turned healthy")?;
    let mut exporter_client = exporter
        .as_ref()
        .map(|(_, port)| Client::new(format!("127.0.0.1:{port}").parse().expect("addr")));
    if let Some(c) = exporter_client.as_mut() {
        // Wait for it to listen; the first scrape is a warm-up (collectors' state).
        let mut tries = 0;
        loop {
            match c.get("/metrics").await {
                Ok(r) if r.status == 200 => break,
                _ if tries >= 250 => {
                    let (p, _) = exporter.as_ref().expect("exporter");
                    anyhow::bail!(
                        "node_exporter never answered /metrics; log:\n{}",
                        p.log_tail()
                    )
                }
                _ => tries += 1,
            }
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
    }
    tokio::time::sleep(Duration::from_secs(3)).await;

    let mut watched = vec![Watched {
        name: "torua-agent",
        proc: &agent,
        rss: vec![],
        split: vec![],
        start: None,
    }];
    if let Some((p, _)) = &exporter {
        watched.push(Watched {
            name: "node_exporter",
            proc: p,
            rss: vec![],
            split: vec![],
            start: None,
        });
    }
    for w in &mut watched {
        w.start = Some((w.proc.stats()?, cpu_secs_precise(w.proc.pid())?));
    }
    let t0 = Instant::now();
    let end = t0 + Duration::from_secs_f64(args.secs);
    let mut next_scrape = t0;
    let mut scrapes = 0u32;
    while Instant::now() < end {
        if let Some(c) = exporter_client.as_mut() {
            if Instant::now() >= next_scrape {
                c.get("/metrics").await?;
                scrapes += 1;
                next_scrape += Duration::from_secs_f64(args.exporter_scrape_secs);
            }
        }
        for w in &mut watched {
            w.rss.push(w.proc.stats()?.rss as f64 / MIB);
            w.split.push(rss_split(w.proc.pid())?);
        }
        let left = end.saturating_duration_since(Instant::now());
        tokio::time::sleep(left.min(Duration::from_secs(1))).await;
    }

    let mut rows = Vec::new();
    let mut out: Vec<Value> = Vec::new();
    for w in &mut watched {
        let (s0, p0) = w.start.expect("started");
        let s1 = w.proc.stats()?;
        let p1 = cpu_secs_precise(w.proc.pid())?;
        let wall = s1.at.duration_since(s0.at).as_secs_f64();
        let cpu_pct = (s1.cpu_secs - s0.cpu_secs) / wall * 100.0;
        let cpu_pct_precise = (p1 - p0) / wall * 100.0;
        let rss_med = median(&w.rss);
        let rss_max = w.rss.iter().cloned().fold(0.0, f64::max);
        let anon_med = median(&w.split.iter().map(|s| s.0).collect::<Vec<_>>());
        let file_med = median(&w.split.iter().map(|s| s.1).collect::<Vec<_>>());
        let (rss_goal, cpu_goal) = if w.name == "torua-agent" {
            (Some(rss_max < 5.0), Some(cpu_pct_precise < 0.05))
        } else {
            (None, None)
        };
        rows.push(vec![
            w.name.to_string(),
            f1(wall),
            f1(rss_med),
            f1(rss_max),
            f1(s1.hwm as f64 / MIB),
            f1(anon_med),
            f1(file_med),
            f3(cpu_pct_precise),
            f3(cpu_pct),
        ]);
        out.push(json!({
            "process": w.name, "secs": wall,
            "rss_median_mib": rss_med, "rss_max_mib": rss_max, "peak_rss_mib": s1.hwm as f64 / MIB,
            "rss_anon_median_mib": anon_med, "rss_file_median_mib": file_med,
            "cpu_percent_of_core": cpu_pct_precise, "cpu_percent_of_core_ticks": cpu_pct,
            "goal_rss_met": rss_goal, "goal_cpu_met": cpu_goal,
        }));
    }
    report::table(
        "footprint (agent: 4 checks at 1 Hz + 1 heartbeat/s)",
        &[
            "process",
            "secs",
            "rss MiB",
            "rss max",
            "peak MiB",
            "anon MiB",
            "file MiB",
            "cpu % core",
            "cpu % (ticks)",
        ],
        &rows,
    );
    if exporter.is_some() {
        println!(
            "\n  node_exporter scraped {scrapes} time(s), every {} s",
            args.exporter_scrape_secs
        );
    }
    drop(node);
    report::write_json(
        &args.out,
        &json!({
            "benchmark": "footprint",
            "machine": machine,
            "params": { "secs": args.secs, "checks": ["http", "tcp", "disk", "process"], "check_interval_s": 1,
                        "heartbeat_interval_s": 1, "exporter_scrape_secs": args.exporter_scrape_secs },
            "node_exporter_skipped": exporter.is_none(),
            "node_exporter_scrapes": scrapes,
            "processes": out,
            "goals": { "agent_rss_mib": 5, "agent_cpu_percent": 0.05 },
        }),
    )
}
