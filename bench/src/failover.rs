//! `torua-bench failover`: coordinator HA on etcd. One etcd, three coordinators and
//! a few storage nodes with their agents (given every coordinator's URL). Each run
//! waits for a leader and a green cluster, starts a client writing unique keys
//! through a follower, SIGKILLs the leader at a random phase of its keep-alive
//! cycle, and times, from the kill:
//!
//! 1. **takeover**: the first `200` from `GET /v1/leader` on a survivor (polled every
//!    10 ms);
//! 2. **first commit**: the new leader's first committed shard change. From the
//!    moment a new leader is seen, `PUT /v1/shards/{s}` pins shard `s` to the holders
//!    it already has (nothing moves, but the record changes, so it is one fenced etcd
//!    commit and the epoch rises) is sent to it every 10 ms until it answers 200 with
//!    an epoch above the one before the kill; the time is that answer's;
//! 3. **agents re-attached**: every node has a heartbeat on the new leader (which
//!    forgets all heartbeat times when it takes office, so any age it shows is of a
//!    heartbeat it received itself); a node's re-attach time is poll time − its
//!    `heartbeat_age_seconds`, the figure is the latest over nodes (a heartbeat shown
//!    and then gone again, forgotten by the new leader, does not count). Also: all
//!    nodes `healthy` on the new leader (poll time);
//! 4. **write error window**: from the start of the first failed client write to the
//!    end of the last one (0 when no write failed; a failed write is an answer other
//!    than 2xx, or none within 2 s).
//!
//! After each run every acknowledged write is read back (lost = missing or another
//! value), etcd's history of the run is audited (state writes under `nodes/` or
//! `shards/` at a revision where no leader key existed, which is what a commit by a
//! deposed leader would look like; shard epochs that went back), the pin is removed
//! and the killed coordinator restarted (it rejoins as a follower).

use crate::cluster::{write_secret, Member};
use crate::http::{self, Client, Reply};
use crate::proc::{find_tool, free_port, sibling_bin, Proc};
use crate::report::{self, f2, quantile};
use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use nix::sys::signal::Signal;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Kills of the leader per TTL; fewer than 20 is flagged in the output.
    #[arg(long, default_value_t = 20)]
    pub runs: usize,
    /// Leader lease TTLs to measure at, whole seconds (the coordinators are restarted
    /// for each).
    #[arg(long, value_delimiter = ',', default_value = "2,3,5")]
    pub ttl: Vec<u64>,
    /// Storage nodes (each with its agent).
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    /// Agent heartbeat interval.
    #[arg(long, default_value = "1s")]
    pub interval: String,
    /// `--shards` of the cluster.
    #[arg(long, default_value_t = 8)]
    pub shards: u32,
    /// Pause between two writes of the client, ms (one write at a time).
    #[arg(long, default_value_t = 10)]
    pub write_pause_ms: u64,
    /// Give every agent only the first coordinator's URL (agents without the list).
    #[arg(long)]
    pub agent_single: bool,
    /// Seconds the cluster sits idle (no etcd write) before each run's client starts,
    /// as a production cluster between changes does.
    #[arg(long, default_value_t = 0.0)]
    pub idle_secs: f64,
    /// After start, how long the shard map must stay unchanged before the first run
    /// (longer than the coordinators' 10 s rebalance delay, so that no rebalance of
    /// the first placement lands in a run).
    #[arg(long, default_value_t = 12.0)]
    pub settle_secs: f64,
    /// Keep the temp dirs (every process's log) and print where they are.
    #[arg(long)]
    pub keep: bool,
    #[arg(
        long = "json",
        alias = "out",
        default_value = "bench-results/failover.json"
    )]
    pub json: PathBuf,
}

/// The coordinators' etcd prefix (their default).
const PREFIX: &str = "/torua/";
const POLL: Duration = Duration::from_millis(10);
/// A client write without an answer this long is a failed write.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest wait for all four figures after a kill.
const RUN_TIMEOUT: Duration = Duration::from_secs(30);
const COORDINATORS: usize = 3;

pub fn run(args: Args) -> Result<()> {
    if args.ttl.contains(&0) {
        bail!("--ttl: whole seconds, at least 1");
    }
    crate::block_on(1, run_async(args))
}

async fn run_async(args: Args) -> Result<()> {
    let machine = report::machine();
    let started = Instant::now();
    let mut per_ttl = Vec::new();
    let mut summary_rows = Vec::new();
    let mut goal_rows = Vec::new();
    for &ttl in &args.ttl {
        println!(
            "\n== lease TTL {ttl} s: starting etcd, {COORDINATORS} coordinators, {} nodes",
            args.nodes
        );
        let mut ha = Ha::start(&args, ttl).await?;
        if let Err(e) = ha
            .settle(
                Duration::from_secs_f64(args.settle_secs),
                Duration::from_secs(120),
            )
            .await
        {
            println!("  cluster did not settle: {e:#}\n{}", ha.logs());
            if args.keep {
                ha.keep();
            }
            return Err(e);
        }
        let mut runs = Vec::new();
        for i in 0..args.runs {
            let r = match one_run(&mut ha, &args, ttl, i).await {
                Ok(r) => r,
                Err(e) => {
                    println!("  run {i}: FAILED: {e:#}\n{}", ha.logs());
                    if args.keep {
                        ha.keep();
                    }
                    return Err(e);
                }
            };
            println!("  {}", r.line());
            runs.push(r);
        }
        let s = Summary::of(ttl, &runs);
        summary_rows.extend(s.rows());
        goal_rows.push(s.goal_row());
        per_ttl.push(json!({
            "ttl_s": ttl,
            "summary": s.json(),
            "runs": runs.iter().map(RunResult::json).collect::<Vec<_>>(),
        }));
        if args.keep {
            ha.keep();
        }
    }
    report::table(
        "coordinator failover after SIGKILL of the leader (seconds from the kill)",
        &["TTL", "figure", "runs", "p50 s", "p90 s", "max s"],
        &summary_rows,
    );
    report::table(
        "goals: p90 takeover <= TTL + 1 s; 0 acknowledged writes lost; 0 commits by a deposed leader",
        &[
            "TTL",
            "p90 takeover",
            "goal",
            "acked writes",
            "lost",
            "unverified",
            "deposed commits",
            "fenced (refused)",
            "nodes convicted",
            "heartbeats forgotten",
            "verdict",
        ],
        &goal_rows,
    );
    println!(
        "\n  deposed commits: state writes in etcd's history at a revision where no leader key\n  \
         existed. The SIGKILLed leader cannot commit at all; this checks the fence in etcd, not the\n  \
         dead process. fenced: survivors' torua_fenced_commits_total increase (refused attempts).\n  \
         nodes convicted: polls of the new leader showing a node degraded/unhealthy (none stopped).\n  \
         heartbeats forgotten: a node the new leader showed a heartbeat for, then none (it took a\n  \
         heartbeat before it forgot all on taking office)."
    );
    if args.runs < 20 {
        println!(
            "\n  NOTE: only {} run(s) per TTL (< 20): quantiles are rough",
            args.runs
        );
    }
    println!(
        "\n  total wall time {:.0} s",
        started.elapsed().as_secs_f64()
    );
    report::write_json(
        &args.json,
        &json!({
            "benchmark": "failover",
            "machine": machine,
            "etcd_version": etcd_version(),
            "source": source(),
            "params": {
                "runs": args.runs, "ttl_s": args.ttl, "coordinators": COORDINATORS,
                "nodes": args.nodes, "interval": args.interval, "shards": args.shards,
                "write_pause_ms": args.write_pause_ms, "idle_s": args.idle_secs, "settle_s": args.settle_secs, "write_timeout_ms": WRITE_TIMEOUT.as_millis() as u64,
                "poll_ms": POLL.as_millis() as u64, "agent_single": args.agent_single,
            },
            "definitions": {
                "takeover": "kill -> first 200 from GET /v1/leader on a survivor",
                "first_commit": "kill -> 200 from the new leader for PUT /v1/shards/{s} (pin to the current holders) with a higher epoch",
                "agents_attached": "kill -> latest over nodes of the first heartbeat the new leader received and kept (poll time - heartbeat_age_seconds)",
                "nodes_healthy": "kill -> every node healthy on the new leader (poll time)",
                "write_error_window": "start of the first failed write -> end of the last failed write (0 if none)",
                "deposed_commits": "nodes/ or shards/ writes in etcd's history at a revision with no leader key",
            },
            "few_runs": args.runs < 20,
            "wall_s": started.elapsed().as_secs_f64(),
            "ttls": per_ttl,
        }),
    )
}

/// The commit the binaries were built from, and the files of the crates under test
/// that differed from it (the tree is shared: a build may include work in progress).
fn source() -> Value {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim_end().to_string())
    };
    let dirty: Vec<String> = git(&[
        "status",
        "--porcelain",
        "--",
        "../coordinator",
        "../agent",
        "../node",
        "../protocol",
    ])
    .unwrap_or_default()
    .lines()
    .map(str::to_string)
    .collect();
    json!({ "commit": git(&["rev-parse", "--short", "HEAD"]), "uncommitted_in_crates_under_test": dirty })
}

fn etcd_version() -> Option<String> {
    let exe = find_tool("etcd")?;
    let out = std::process::Command::new(exe)
        .arg("--version")
        .output()
        .ok()?;
    Some(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or("")
            .to_string(),
    )
}

// ---------------------------------------------------------------------------------
// The cluster.

struct Coord {
    id: String,
    addr: SocketAddr,
    url: String,
    data_dir: PathBuf,
    proc: Option<Proc>,
    starts: u32,
}

/// Fields drop in order: agents and nodes, coordinators, etcd, then the dir.
struct Ha {
    members: Vec<Member>,
    coords: Vec<Coord>,
    etcd: Proc,
    etcd_addr: SocketAddr,
    etcd_url: String,
    secret_file: PathBuf,
    ttl: u64,
    shards: u32,
    nodes: usize,
    interval: Duration,
    dir: Option<tempfile::TempDir>,
    dir_path: PathBuf,
}

impl Ha {
    async fn start(args: &Args, ttl: u64) -> Result<Ha> {
        let dir = tempfile::Builder::new()
            .prefix("torua-bench-failover-")
            .tempdir()?;
        let dir_path = dir.path().to_path_buf();
        let secret_file = write_secret(dir.path())?;
        let (etcd, etcd_addr) = start_etcd(dir.path()).await?;
        let coords = (1..=COORDINATORS)
            .map(|i| {
                let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
                let id = format!("c{i}");
                Coord {
                    data_dir: dir.path().join(format!("coordinator-{id}")),
                    id,
                    addr,
                    url: format!("http://{addr}"),
                    proc: None,
                    starts: 0,
                }
            })
            .collect();
        let mut ha = Ha {
            members: Vec::new(),
            coords,
            etcd,
            etcd_addr,
            etcd_url: format!("http://{etcd_addr}"),
            secret_file,
            ttl,
            shards: args.shards,
            nodes: args.nodes,
            interval: parse_duration(&args.interval)?,
            dir: Some(dir),
            dir_path,
        };
        for i in 0..COORDINATORS {
            ha.start_coord(i)?;
        }
        for i in 0..COORDINATORS {
            ha.wait_up(i).await?;
        }
        let list = if args.agent_single {
            ha.coords[0].url.clone()
        } else {
            ha.coords
                .iter()
                .map(|c| c.url.as_str())
                .collect::<Vec<_>>()
                .join(",")
        };
        for n in 1..=args.nodes {
            let m = Member::start_at(
                &ha.dir_path,
                &ha.secret_file,
                &list,
                &format!("n{n}"),
                &args.interval,
            )?;
            ha.members.push(m);
        }
        Ok(ha)
    }

    /// Stable, and no shard epoch changed for `quiet` (longer than the default
    /// rebalance delay, 10 s: a rebalance of the first placement must not land in
    /// the middle of a run).
    async fn settle(&mut self, quiet: Duration, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut last: Option<(Vec<(u64, u64)>, Instant)> = None;
        loop {
            let l = self
                .wait_stable(deadline.saturating_duration_since(Instant::now()))
                .await?;
            let epochs = shard_epochs(&mut Client::new(self.coords[l].addr)).await?;
            match &last {
                Some((e, since)) if *e == epochs => {
                    if since.elapsed() >= quiet {
                        return Ok(());
                    }
                }
                _ => last = Some((epochs, Instant::now())),
            }
            if Instant::now() > deadline {
                bail!("the shard map did not settle within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    fn start_coord(&mut self, i: usize) -> Result<()> {
        let c = &mut self.coords[i];
        c.starts += 1;
        let name = if c.starts == 1 {
            format!("coordinator-{}", c.id)
        } else {
            format!("coordinator-{}.{}", c.id, c.starts)
        };
        let args: Vec<String> = vec![
            "--listen".into(),
            c.addr.to_string(),
            "--data-dir".into(),
            c.data_dir.display().to_string(),
            "--cluster-secret-file".into(),
            self.secret_file.display().to_string(),
            "--etcd-endpoints".into(),
            self.etcd_url.clone(),
            "--leader-lease-ttl".into(),
            format!("{}s", self.ttl),
            "--coordinator-id".into(),
            c.id.clone(),
            "--advertise-url".into(),
            c.url.clone(),
            "--shards".into(),
            self.shards.to_string(),
        ];
        // info: the election's log lines (became leader, stepped down) are the
        // evidence when a run looks wrong; three nodes log little else.
        c.proc = Some(Proc::start(
            &name,
            &sibling_bin("torua-coordinator")?,
            &args,
            &self.dir_path,
            "info",
        )?);
        Ok(())
    }

    async fn wait_up(&mut self, i: usize) -> Result<()> {
        let mut client = Client::new(self.coords[i].addr);
        for _ in 0..1000 {
            if let Some(p) = self.coords[i].proc.as_mut() {
                p.check_running()?;
            }
            if let Ok(r) = client
                .get_within("/readyz", Duration::from_millis(500))
                .await
            {
                if r.status == 200 {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        bail!("coordinator {} not ready after 20 s", self.coords[i].id)
    }

    fn live(&self) -> Vec<usize> {
        (0..self.coords.len())
            .filter(|i| self.coords[*i].proc.is_some())
            .collect()
    }

    /// The only live coordinator answering 200 on /v1/leader, if exactly one does.
    async fn leader(&self) -> Option<usize> {
        let mut found = Vec::new();
        for i in self.live() {
            let mut c = Client::new(self.coords[i].addr);
            if let Ok(r) = c.get_within("/v1/leader", Duration::from_millis(500)).await {
                if r.status == 200 {
                    found.push(i);
                }
            }
        }
        (found.len() == 1).then(|| found[0])
    }

    /// Waits for one leader that every coordinator names, a green cluster with every
    /// node healthy and heartbeating to it, no move in flight, and every coordinator
    /// holding the leader's shard epochs. Returns the leader.
    async fn wait_stable(&mut self, timeout: Duration) -> Result<usize> {
        let deadline = Instant::now() + timeout;
        loop {
            for i in self.live() {
                if let Some(p) = self.coords[i].proc.as_mut() {
                    p.check_running()?;
                }
            }
            let why = match self.stable_now().await {
                Ok(l) => return Ok(l),
                Err(e) => e,
            };
            if Instant::now() > deadline {
                bail!("cluster not stable after {timeout:?}: {why:#}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn stable_now(&self) -> Result<usize> {
        let l = self.leader().await.context("no single leader")?;
        let lid = &self.coords[l].id;
        let t = Duration::from_secs(2);
        let mut lc = Client::new(self.coords[l].addr);
        let cl = lc.get_within("/v1/cluster", t).await?.json()?;
        if cl["status"] != "green" {
            bail!("cluster {}", cl["status"]);
        }
        if cl["nodes_by_state"]["healthy"].as_u64() != Some(self.nodes as u64) {
            bail!("nodes by state {}", cl["nodes_by_state"]);
        }
        if cl["moves_in_flight"].as_i64().unwrap_or(0) != 0 {
            bail!("moves in flight");
        }
        let nodes = lc.get_within("/v1/nodes", t).await?.json()?;
        let fresh = self.interval.as_secs_f64() * 2.0;
        for n in nodes["nodes"].as_array().into_iter().flatten() {
            match n["heartbeat_age_seconds"].as_f64() {
                Some(a) if a < fresh => {}
                _ => bail!(
                    "node {} heartbeat age {}",
                    n["id"],
                    n["heartbeat_age_seconds"]
                ),
            }
        }
        let epochs = shard_epochs(&mut lc).await?;
        for i in self.live() {
            let mut c = Client::new(self.coords[i].addr);
            let v = c.get_within("/v1/cluster", t).await?.json()?;
            if v["leader"]["id"].as_str() != Some(lid) {
                bail!("{} names leader {}", self.coords[i].id, v["leader"]);
            }
            if shard_epochs(&mut c).await? != epochs {
                bail!(
                    "{} has other shard epochs than the leader",
                    self.coords[i].id
                );
            }
        }
        Ok(l)
    }

    fn logs(&self) -> String {
        let mut out = String::new();
        for c in &self.coords {
            if let Some(p) = &c.proc {
                out.push_str(&format!("--- {} ---\n{}\n", p.name, p.log_tail()));
            }
        }
        out.push_str(&format!("--- etcd ---\n{}\n", self.etcd.log_tail()));
        out
    }

    fn keep(&mut self) {
        if let Some(d) = self.dir.take() {
            let p = d.keep();
            println!("  logs kept in {}", p.display());
        }
    }
}

async fn start_etcd(dir: &Path) -> Result<(Proc, SocketAddr)> {
    let exe = find_tool("etcd").context("etcd not on PATH (apt-get install etcd-server)")?;
    let (client, peer) = (free_port(), free_port());
    let addr: SocketAddr = format!("127.0.0.1:{client}").parse()?;
    let url = format!("http://{addr}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let args: Vec<String> = vec![
        "--name".into(),
        "bench".into(),
        "--data-dir".into(),
        dir.join("etcd").display().to_string(),
        "--listen-client-urls".into(),
        url.clone(),
        "--advertise-client-urls".into(),
        url,
        "--listen-peer-urls".into(),
        peer_url.clone(),
        "--initial-advertise-peer-urls".into(),
        peer_url.clone(),
        "--initial-cluster".into(),
        format!("bench={peer_url}"),
        "--logger".into(),
        "zap".into(),
        "--log-level".into(),
        "warn".into(),
    ];
    let mut proc = Proc::start("etcd", &exe, &args, dir, "warn")?;
    let mut c = Client::new(addr);
    for _ in 0..500 {
        proc.check_running()?;
        if let Ok(r) = c.get_within("/health", Duration::from_millis(500)).await {
            if r.status == 200 && r.json().is_ok_and(|v| v["health"] == "true") {
                return Ok((proc, addr));
            }
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    bail!("etcd not healthy after 20 s; log:\n{}", proc.log_tail())
}

async fn shard_epochs(c: &mut Client) -> Result<Vec<(u64, u64)>> {
    let v = c
        .get_within("/v1/shards", Duration::from_secs(2))
        .await?
        .json()?;
    Ok(v["shards"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            (
                s["id"].as_u64().unwrap_or(0),
                s["epoch"].as_u64().unwrap_or(0),
            )
        })
        .collect())
}

async fn metric(addr: SocketAddr, name: &str) -> Option<f64> {
    let mut c = Client::new(addr);
    let r = c
        .get_within("/metrics", Duration::from_secs(2))
        .await
        .ok()?;
    let text = String::from_utf8_lossy(&r.body).into_owned();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

fn parse_duration(s: &str) -> Result<Duration> {
    if let Some(ms) = s.strip_suffix("ms") {
        return Ok(Duration::from_millis(ms.parse()?));
    }
    if let Some(secs) = s.strip_suffix('s') {
        return Ok(Duration::from_secs_f64(secs.parse()?));
    }
    bail!("duration {s:?}: use e.g. 1s or 250ms")
}

// ---------------------------------------------------------------------------------
// The client writing through a follower.

struct WriteError {
    start: Instant,
    end: Instant,
    what: String,
}

#[derive(Default)]
struct WriterLog {
    acked: Vec<(String, String)>,
    errors: Vec<WriteError>,
    total: u64,
}

async fn writer(
    addr: SocketAddr,
    prefix: String,
    pause: Duration,
    stop: Arc<AtomicBool>,
) -> WriterLog {
    let mut log = WriterLog::default();
    let mut c = Client::new(addr);
    let nonce = fastrand::u32(..);
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        seq += 1;
        let key = format!("{prefix}{seq}");
        let value = format!("{seq}:{nonce:08x}");
        let start = Instant::now();
        let r = c
            .request_within(
                "PUT",
                &format!("/v1/data/{key}"),
                Bytes::from(value.clone()),
                WRITE_TIMEOUT,
            )
            .await;
        log.total += 1;
        match r {
            Ok(r) if (200..300).contains(&r.status) => log.acked.push((key, value)),
            Ok(r) => log.errors.push(WriteError {
                start,
                end: Instant::now(),
                what: format!("{} {}", r.status, snippet(&r.body)),
            }),
            Err(e) => log.errors.push(WriteError {
                start,
                end: Instant::now(),
                what: format!("{e:#}"),
            }),
        }
        tokio::time::sleep(pause).await;
    }
    log
}

/// The fields of a `/v1/cluster` answer that say how healthy it thinks things are.
fn cluster_brief(v: &Value) -> Value {
    json!({
        "status": v["status"], "nodes_by_state": v["nodes_by_state"],
        "shards_unavailable": v["shards_unavailable"], "shards_under_replicated": v["shards_under_replicated"],
        "coordinator": v["coordinator"], "leader": v["leader"],
    })
}

/// Counts the states of a `/v1/nodes` answer.
fn note_states(nodes: &Value, seen: &mut BTreeMap<String, usize>) {
    for n in nodes["nodes"].as_array().into_iter().flatten() {
        let st = n["state"].as_str().unwrap_or("?").to_string();
        *seen.entry(st).or_default() += 1;
    }
}

fn snippet(body: &[u8]) -> String {
    let s = String::from_utf8_lossy(body);
    let s = s.trim();
    if s.chars().count() > 160 {
        format!("{}…", s.chars().take(160).collect::<String>())
    } else {
        s.to_string()
    }
}

// ---------------------------------------------------------------------------------
// One kill of the leader.

struct RunResult {
    run: usize,
    old_leader: String,
    new_leader: Option<String>,
    writer_via: String,
    kill_phase_s: f64,
    takeover_s: Option<f64>,
    commit_s: Option<f64>,
    attach_s: Option<f64>,
    healthy_s: Option<f64>,
    /// Per node: seconds from the kill to its first heartbeat on the new leader.
    attach_by_node: BTreeMap<String, f64>,
    /// Node states seen on the new leader after the kill (poll samples per state).
    states_seen: BTreeMap<String, usize>,
    /// Nodes the new leader showed a heartbeat for and then none.
    forgotten: Vec<String>,
    /// `/v1/cluster` status samples: the writer's coordinator before a new leader
    /// was seen, the new leader after.
    vacancy_status: BTreeMap<String, usize>,
    leader_status: BTreeMap<String, usize>,
    green_s: Option<f64>,
    /// The first such answer (a few fields) before takeover, and the new leader's
    /// first answer that was not green.
    vacancy_example: Option<Value>,
    leader_example: Option<Value>,
    err_window_s: f64,
    errors: usize,
    errors_before_kill: usize,
    first_error_s: Option<f64>,
    last_error_s: Option<f64>,
    error_kinds: BTreeMap<String, usize>,
    commit_tries: u32,
    commit_errors: BTreeMap<String, usize>,
    writes_total: u64,
    acked: usize,
    lost: usize,
    lost_keys: Vec<String>,
    unverified: usize,
    audit: Audit,
    fenced_delta: f64,
    leader_changes_delta: f64,
    restarted_role: String,
}

impl RunResult {
    /// Poll samples with a node degraded or unhealthy on the new leader.
    fn convicted(&self) -> usize {
        ["degraded", "unhealthy"]
            .iter()
            .filter_map(|s| self.states_seen.get(*s))
            .sum()
    }

    fn line(&self) -> String {
        let o = |x: Option<f64>| x.map_or("-".into(), f2);
        format!(
            "run {:>2}: {} killed → {} leads; takeover {} s, first commit {} s, agents {} s, healthy {} s, green {} s; \
             writes via {}: {} acked, {} failed (window {} s), lost {}, unverified {}; deposed commits {}, fenced {}; \
             new leader: node states {:?}, cluster {:?}; before: cluster {:?}",
            self.run,
            self.old_leader,
            self.new_leader.as_deref().unwrap_or("?"),
            o(self.takeover_s),
            o(self.commit_s),
            o(self.attach_s),
            o(self.healthy_s),
            o(self.green_s),
            self.writer_via,
            self.acked,
            self.errors,
            f2(self.err_window_s),
            self.lost,
            self.unverified,
            self.audit.vacancy_writes,
            self.fenced_delta,
            self.states_seen,
            self.leader_status,
            self.vacancy_status,
        ) + &if self.forgotten.is_empty() {
            String::new()
        } else {
            format!("; heartbeats forgotten by the new leader: {:?}", self.forgotten)
        }
    }

    fn json(&self) -> Value {
        json!({
            "run": self.run,
            "old_leader": self.old_leader,
            "new_leader": self.new_leader,
            "writer_via": self.writer_via,
            "kill_phase_s": self.kill_phase_s,
            "takeover_s": self.takeover_s,
            "first_commit_s": self.commit_s,
            "agents_attached_s": self.attach_s,
            "agents_attached_after_takeover_s": self.attach_s.zip(self.takeover_s).map(|(a, t)| a - t),
            "attach_by_node_s": self.attach_by_node,
            "nodes_healthy_s": self.healthy_s,
            "node_states_seen_on_new_leader": self.states_seen,
            "heartbeats_forgotten_by_new_leader": self.forgotten,
            "convicted_on_new_leader": self.convicted(),
            "cluster_status_before_takeover": self.vacancy_status,
            "cluster_status_on_new_leader": self.leader_status,
            "cluster_green_on_new_leader_s": self.green_s,
            "cluster_before_takeover_example": self.vacancy_example,
            "cluster_on_new_leader_not_green_example": self.leader_example,
            "write_error_window_s": self.err_window_s,
            "write_errors": self.errors,
            "write_errors_before_kill": self.errors_before_kill,
            "first_write_error_s": self.first_error_s,
            "last_write_error_s": self.last_error_s,
            "write_error_kinds": self.error_kinds,
            "commit_tries": self.commit_tries,
            "commit_errors": self.commit_errors,
            "writes_total": self.writes_total,
            "writes_acked": self.acked,
            "lost": self.lost,
            "lost_keys": self.lost_keys,
            "unverified": self.unverified,
            "etcd_audit": self.audit.json(),
            "fenced_commits_delta": self.fenced_delta,
            "leader_changes_delta": self.leader_changes_delta,
            "restarted_role": self.restarted_role,
        })
    }
}

async fn one_run(ha: &mut Ha, args: &Args, ttl: u64, run: usize) -> Result<RunResult> {
    let leader = ha.wait_stable(Duration::from_secs(60)).await?;
    let survivors: Vec<usize> = ha.live().into_iter().filter(|i| *i != leader).collect();
    if survivors.len() != COORDINATORS - 1 {
        bail!(
            "expected {} survivors, have {}",
            COORDINATORS - 1,
            survivors.len()
        );
    }
    let via = survivors[run % survivors.len()];
    let old_id = ha.coords[leader].id.clone();

    // What the run changes: shard `s`, pinned to the holders it has.
    let s = (run as u32) % ha.shards;
    let mut lc = Client::new(ha.coords[leader].addr);
    let shard = lc
        .get_within(&format!("/v1/shards/{s}"), Duration::from_secs(2))
        .await?
        .json()?;
    let epoch_before = shard["epoch"].as_u64().context("shard epoch")?;
    let replicas: Vec<Value> = shard["replicas"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| r["node"].clone())
        .collect();
    let pin = json!({ "primary": shard["primary"], "replicas": replicas }).to_string();
    let epochs_before: HashMap<u64, u64> = shard_epochs(&mut lc).await?.into_iter().collect();
    drop(lc);

    let mut fenced_before = 0.0;
    let mut changes_before = 0.0;
    for &i in &survivors {
        fenced_before += metric(ha.coords[i].addr, "torua_fenced_commits_total")
            .await
            .unwrap_or(0.0);
        changes_before += metric(ha.coords[i].addr, "torua_leader_changes_total")
            .await
            .unwrap_or(0.0);
    }

    if args.idle_secs > 0.0 {
        tokio::time::sleep(Duration::from_secs_f64(args.idle_secs)).await;
    }
    // The client, writing for at least a second before the kill.
    let stop = Arc::new(AtomicBool::new(false));
    let w = tokio::spawn(writer(
        ha.coords[via].addr,
        format!("fo-t{ttl}-r{run}-"),
        Duration::from_millis(args.write_pause_ms),
        stop.clone(),
    ));
    // A random phase of the keep-alive cycle (every TTL/3).
    let phase = Duration::from_secs_f64(ttl as f64 / 3.0 * fastrand::f64());
    tokio::time::sleep(Duration::from_secs(1) + phase).await;

    let gw = EtcdGw { addr: ha.etcd_addr };
    let (rev_before, leader_key_before) = gw.leader_key().await?;

    let proc = ha.coords[leader]
        .proc
        .take()
        .context("leader not running")?;
    let t0 = Instant::now();
    proc.signal(Signal::SIGKILL)?;
    drop(proc); // reaps it
    let rel = |t: Instant| t.saturating_duration_since(t0).as_secs_f64();

    let mut clients: HashMap<usize, Client> = survivors
        .iter()
        .map(|&i| (i, Client::new(ha.coords[i].addr)))
        .collect();
    let (mut new, mut takeover, mut committed, mut attached, mut healthy) =
        (None::<usize>, None, None, None, None);
    let mut attach_by_node: BTreeMap<String, f64> = BTreeMap::new();
    let mut states_seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut forgotten: Vec<String> = Vec::new();
    let mut in_office = false;
    // `status` of GET /v1/cluster: on the writer's coordinator while no leader is
    // known, on the new leader after; and when the new leader first says green.
    let mut vacancy_status: BTreeMap<String, usize> = BTreeMap::new();
    let mut leader_status: BTreeMap<String, usize> = BTreeMap::new();
    let mut green: Option<f64> = None;
    let (mut vacancy_example, mut leader_example) = (None::<Value>, None::<Value>);
    let mut commit_tries = 0u32;
    let mut commit_errors: BTreeMap<String, usize> = BTreeMap::new();
    let short = Duration::from_millis(500);
    while t0.elapsed() < RUN_TIMEOUT {
        if new.is_none() {
            let c = clients.get_mut(&via).expect("client");
            if let Ok(v) = c
                .get_within("/v1/cluster", short)
                .await
                .and_then(|r| r.json())
            {
                let st = v["status"].as_str().unwrap_or("?").to_string();
                *vacancy_status.entry(st).or_default() += 1;
                if vacancy_example.is_none() {
                    vacancy_example = Some(cluster_brief(&v));
                }
            }
            for &i in &survivors {
                let c = clients.get_mut(&i).expect("client");
                if let Ok(r) = c.get_within("/v1/leader", short).await {
                    if r.status == 200 {
                        new = Some(i);
                        takeover = Some(rel(Instant::now()));
                        break;
                    }
                }
            }
        }
        if let Some(n) = new {
            let c = clients.get_mut(&n).expect("client");
            if committed.is_none() {
                commit_tries += 1;
                let r = c
                    .request_within(
                        "PUT",
                        &format!("/v1/shards/{s}"),
                        Bytes::from(pin.clone()),
                        Duration::from_secs(2),
                    )
                    .await;
                let at = Instant::now();
                match r {
                    Ok(r) if r.status == 200 => {
                        let e = r.json().ok().and_then(|v| v["epoch"].as_u64()).unwrap_or(0);
                        if e > epoch_before {
                            committed = Some(rel(at));
                        } else {
                            *commit_errors
                                .entry(format!("200 at epoch {e}"))
                                .or_default() += 1;
                        }
                    }
                    Ok(r) => {
                        *commit_errors
                            .entry(format!("{} {}", r.status, snippet(&r.body)))
                            .or_default() += 1
                    }
                    Err(e) => *commit_errors.entry(format!("{e:#}")).or_default() += 1,
                }
            }
            if green.is_none() || !in_office {
                if let Ok(v) = c
                    .get_within("/v1/cluster", short)
                    .await
                    .and_then(|r| r.json())
                {
                    // /v1/leader answers 200 as soon as the fence is held; the role
                    // turns `leader` once `took_office` has re-read the state and
                    // forgotten node health. Node figures count from then on.
                    if v["coordinator"]["role"] == "leader" {
                        in_office = true;
                    }
                    let st = v["status"].as_str().unwrap_or("?").to_string();
                    if st == "green" && in_office {
                        green = Some(rel(Instant::now()));
                    } else if leader_example.is_none() {
                        leader_example = Some(cluster_brief(&v));
                    }
                    *leader_status.entry(st).or_default() += 1;
                }
            }
            if attached.is_none() || healthy.is_none() {
                if let Ok(r) = c.get_within("/v1/nodes", short).await {
                    let at = Instant::now();
                    if let (200, Ok(v)) = (r.status, r.json()) {
                        note_states(&v, &mut states_seen);
                        let list = v["nodes"].as_array().cloned().unwrap_or_default();
                        for node in &list {
                            let id = node["id"].as_str().unwrap_or("").to_string();
                            if let Some(age) = node["heartbeat_age_seconds"].as_f64() {
                                let t = rel(at) - age;
                                let e = attach_by_node.entry(id).or_insert(t);
                                *e = e.min(t);
                            } else if attach_by_node.remove(&id).is_some() {
                                // Seen, then gone: the new leader forgot a heartbeat
                                // it had taken (it forgets all when taking office).
                                forgotten.push(id);
                            }
                        }
                        if in_office && attached.is_none() && attach_by_node.len() >= ha.nodes {
                            attached = attach_by_node.values().cloned().reduce(f64::max);
                        }
                        if in_office
                            && healthy.is_none()
                            && list.len() == ha.nodes
                            && list.iter().all(|n| n["state"] == "healthy")
                        {
                            healthy = Some(rel(at));
                        }
                    }
                }
            }
        }
        if takeover.is_some()
            && committed.is_some()
            && attached.is_some()
            && healthy.is_some()
            && green.is_some()
        {
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    // Keep writing a second more (late errors belong to the window too), watching
    // the nodes' states on the new leader: nodes that kept heartbeating must not be
    // convicted by it.
    let tail = Instant::now() + Duration::from_secs(1);
    while Instant::now() < tail {
        if let Some(c) = new.and_then(|n| clients.get_mut(&n)) {
            if let Ok(v) = c
                .get_within("/v1/nodes", short)
                .await
                .and_then(|r| r.json())
            {
                note_states(&v, &mut states_seen);
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let log = w.await?;

    let errors_before_kill = log.errors.iter().filter(|e| e.end < t0).count();
    let err_window_s = match (log.errors.first(), log.errors.last()) {
        (Some(a), Some(b)) => b.end.saturating_duration_since(a.start).as_secs_f64(),
        _ => 0.0,
    };
    let mut error_kinds: BTreeMap<String, usize> = BTreeMap::new();
    for e in &log.errors {
        *error_kinds.entry(e.what.clone()).or_default() += 1;
    }
    let signed = |t: Instant| {
        if t >= t0 {
            t.duration_since(t0).as_secs_f64()
        } else {
            -t0.duration_since(t).as_secs_f64()
        }
    };

    // Every acknowledged write, read back through the new leader (or a survivor).
    let reader = new.unwrap_or(via);
    let mut rc = Client::new(ha.coords[reader].addr);
    let (mut lost, mut unverified, mut lost_keys) = (0usize, 0usize, Vec::new());
    for (key, value) in &log.acked {
        let mut verdict = None;
        for _ in 0..5 {
            match rc
                .get_within(&format!("/v1/data/{key}"), Duration::from_secs(2))
                .await
            {
                Ok(r) if r.status == 200 => {
                    verdict = Some(r.body.as_ref() == value.as_bytes());
                    break;
                }
                Ok(r) if r.status == 404 => {
                    verdict = Some(false);
                    break;
                }
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        match verdict {
            Some(true) => {}
            Some(false) => {
                lost += 1;
                if lost_keys.len() < 20 {
                    lost_keys.push(key.clone());
                }
            }
            None => unverified += 1,
        }
    }

    let audit = gw
        .audit(rev_before, leader_key_before, &epochs_before)
        .await
        .unwrap_or_else(|e| Audit::failed(format!("{e:#}")));

    let mut fenced_after = 0.0;
    let mut changes_after = 0.0;
    for &i in &survivors {
        fenced_after += metric(ha.coords[i].addr, "torua_fenced_commits_total")
            .await
            .unwrap_or(0.0);
        changes_after += metric(ha.coords[i].addr, "torua_leader_changes_total")
            .await
            .unwrap_or(0.0);
    }

    // Undo: unpin (through any survivor: a follower forwards it), restart the killed one.
    let mut undone = false;
    for _ in 0..50 {
        let target = ha.leader().await.unwrap_or(survivors[0]);
        let mut c = Client::new(ha.coords[target].addr);
        if let Ok(r) = c
            .request_within(
                "PUT",
                &format!("/v1/shards/{s}"),
                Bytes::from_static(b"{\"primary\":null}"),
                Duration::from_secs(2),
            )
            .await
        {
            if r.status == 200 {
                undone = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if !undone {
        bail!("could not remove the pin of shard {s}");
    }
    ha.start_coord(leader)?;
    ha.wait_up(leader).await?;
    ha.wait_stable(Duration::from_secs(60)).await?;
    let mut c = Client::new(ha.coords[leader].addr);
    let restarted_role = c
        .get_within("/v1/cluster", Duration::from_secs(2))
        .await
        .ok()
        .and_then(|r| r.json().ok())
        .and_then(|v| v["coordinator"]["role"].as_str().map(str::to_string))
        .unwrap_or_default();

    Ok(RunResult {
        run,
        old_leader: old_id,
        new_leader: new.map(|n| ha.coords[n].id.clone()),
        writer_via: ha.coords[via].id.clone(),
        kill_phase_s: phase.as_secs_f64(),
        takeover_s: takeover,
        commit_s: committed,
        attach_s: attached,
        healthy_s: healthy,
        attach_by_node,
        states_seen,
        forgotten,
        vacancy_status,
        leader_status,
        green_s: green,
        vacancy_example,
        leader_example,
        err_window_s,
        errors: log.errors.len(),
        errors_before_kill,
        first_error_s: log.errors.first().map(|e| signed(e.start)),
        last_error_s: log.errors.last().map(|e| signed(e.end)),
        error_kinds,
        commit_tries,
        commit_errors,
        writes_total: log.total,
        acked: log.acked.len(),
        lost,
        lost_keys,
        unverified,
        audit,
        fenced_delta: fenced_after - fenced_before,
        leader_changes_delta: changes_after - changes_before,
        restarted_role,
    })
}

// ---------------------------------------------------------------------------------
// etcd's own record of the run, through its JSON gateway (no gRPC client needed).

struct EtcdGw {
    addr: SocketAddr,
}

/// The leader key as etcd holds it: (create revision, coordinator id).
type LeaderKey = Option<(i64, String)>;

#[derive(Default)]
struct Audit {
    error: Option<String>,
    from_rev: i64,
    to_rev: i64,
    events: usize,
    /// nodes/ or shards/ writes at a revision with no leader key.
    vacancy_writes: usize,
    /// State writes per leader (by the leader key's value when they happened).
    writes_by_leader: BTreeMap<String, usize>,
    /// A shard record written with an epoch not above the one before.
    epoch_regressions: usize,
    /// The leader key's owners in order.
    leaders: Vec<String>,
}

impl Audit {
    fn failed(error: String) -> Audit {
        Audit {
            error: Some(error),
            ..Audit::default()
        }
    }

    fn json(&self) -> Value {
        json!({
            "error": self.error,
            "from_rev": self.from_rev,
            "to_rev": self.to_rev,
            "events": self.events,
            "vacancy_writes": self.vacancy_writes,
            "writes_by_leader": self.writes_by_leader,
            "epoch_regressions": self.epoch_regressions,
            "leaders": self.leaders,
        })
    }
}

impl EtcdGw {
    async fn post(&self, path: &str, body: Value) -> Result<Value> {
        let mut c = Client::new(self.addr);
        let r: Reply = c
            .request_within(
                "POST",
                path,
                Bytes::from(body.to_string()),
                Duration::from_secs(3),
            )
            .await?;
        if r.status != 200 {
            bail!("etcd {path}: {} {}", r.status, snippet(&r.body));
        }
        r.json()
    }

    /// The current revision and the leader key.
    async fn leader_key(&self) -> Result<(i64, LeaderKey)> {
        let v = self
            .post(
                "/v3/kv/range",
                json!({ "key": b64(format!("{PREFIX}leader").as_bytes()) }),
            )
            .await?;
        let rev = num(&v["header"]["revision"]);
        let key = v["kvs"]
            .as_array()
            .and_then(|k| k.first())
            .map(|kv| (num(&kv["create_revision"]), peer_id(&kv["value"])));
        Ok((rev, key))
    }

    /// Replays the prefix's history after `from` up to the current revision.
    async fn audit(
        &self,
        from: i64,
        mut leader: LeaderKey,
        epochs: &HashMap<u64, u64>,
    ) -> Result<Audit> {
        let (to, _) = self.leader_key().await?;
        let events = self.history(from + 1, to).await?;
        let mut a = Audit {
            from_rev: from,
            to_rev: to,
            events: events.len(),
            leaders: leader.iter().map(|l| l.1.clone()).collect(),
            ..Audit::default()
        };
        let mut epochs = epochs.clone();
        let (lkey, shards, nodes) = (
            format!("{PREFIX}leader"),
            format!("{PREFIX}shards/"),
            format!("{PREFIX}nodes/"),
        );
        for ev in events {
            if ev.key == lkey {
                leader = if ev.deleted {
                    None
                } else {
                    let id = peer_id(&Value::String(ev.value_b64.clone()));
                    a.leaders.push(id.clone());
                    Some((ev.create_rev, id))
                };
                continue;
            }
            if !(ev.key.starts_with(&shards) || ev.key.starts_with(&nodes)) {
                continue;
            }
            match &leader {
                None => a.vacancy_writes += 1,
                Some((_, id)) => *a.writes_by_leader.entry(id.clone()).or_default() += 1,
            }
            if let Some(id) = ev
                .key
                .strip_prefix(&shards)
                .and_then(|s| s.parse::<u64>().ok())
            {
                if !ev.deleted {
                    let rec: Value =
                        serde_json::from_slice(&unb64(&ev.value_b64)?).unwrap_or(Value::Null);
                    let e = rec["epoch"].as_u64().unwrap_or(0);
                    if epochs.get(&id).is_some_and(|&old| e <= old) {
                        a.epoch_regressions += 1;
                    }
                    epochs.insert(id, e);
                }
            }
        }
        Ok(a)
    }

    /// The events under the prefix from revision `from` through `to`, by a watch.
    async fn history(&self, from: i64, to: i64) -> Result<Vec<Event>> {
        if from > to {
            return Ok(Vec::new());
        }
        let mut send = http::connect(self.addr).await?;
        let mut end = PREFIX.as_bytes().to_vec();
        *end.last_mut().expect("prefix") += 1;
        let body = json!({ "create_request": {
            "key": b64(PREFIX.as_bytes()), "range_end": b64(&end), "start_revision": from.to_string(),
        }});
        let req = hyper::Request::builder()
            .method("POST")
            .uri("/v3/watch")
            .header("host", self.addr.to_string())
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_string())))?;
        let res = send.send_request(req).await?;
        if res.status() != 200 {
            bail!("etcd watch: {}", res.status());
        }
        let mut body = res.into_body();
        let mut buf: Vec<u8> = Vec::new();
        let mut out = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut seen = 0i64;
        while seen < to {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!("etcd watch: history up to revision {to} not read within 5 s (got {seen})");
            }
            let frame = match tokio::time::timeout(left, body.frame()).await {
                Err(_) => continue,
                Ok(None) => bail!("etcd watch ended at revision {seen} of {to}"),
                Ok(Some(f)) => f?,
            };
            let Ok(data) = frame.into_data() else {
                continue;
            };
            buf.extend_from_slice(&data);
            let mut stream = serde_json::Deserializer::from_slice(&buf).into_iter::<Value>();
            let mut used = 0;
            while let Some(Ok(msg)) = stream.next() {
                used = stream.byte_offset();
                let res = &msg["result"];
                if res["canceled"] == true {
                    bail!("etcd watch canceled: {}", res["cancel_reason"]);
                }
                for ev in res["events"].as_array().into_iter().flatten() {
                    let kv = &ev["kv"];
                    let e = Event {
                        key: String::from_utf8_lossy(&unb64(kv["key"].as_str().unwrap_or(""))?)
                            .into_owned(),
                        deleted: ev["type"] == "DELETE",
                        create_rev: num(&kv["create_revision"]),
                        mod_rev: num(&kv["mod_revision"]),
                        value_b64: kv["value"].as_str().unwrap_or("").to_string(),
                    };
                    seen = seen.max(e.mod_rev);
                    if e.mod_rev <= to {
                        out.push(e);
                    }
                }
            }
            buf.drain(..used);
        }
        Ok(out)
    }
}

struct Event {
    key: String,
    deleted: bool,
    create_rev: i64,
    mod_rev: i64,
    value_b64: String,
}

/// The gateway writes int64 as strings; absent means 0.
fn num(v: &Value) -> i64 {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .or_else(|| v.as_i64())
        .unwrap_or(0)
}

fn peer_id(value_b64: &Value) -> String {
    value_b64
        .as_str()
        .and_then(|s| unb64(s).ok())
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .and_then(|v| v["id"].as_str().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn b64(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn unb64(s: &str) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes().filter(|c| *c != b'=') {
        let v = B64
            .iter()
            .position(|x| *x == c)
            .with_context(|| format!("not base64: {c:?}"))? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------
// Per-TTL summary.

struct Summary {
    ttl: u64,
    runs: usize,
    figures: Vec<(&'static str, Vec<f64>)>,
    acked: usize,
    lost: usize,
    unverified: usize,
    deposed: usize,
    audit_errors: usize,
    regressions: usize,
    fenced: f64,
    convicted: usize,
    forgotten: usize,
    missing: usize,
}

impl Summary {
    fn of(ttl: u64, runs: &[RunResult]) -> Summary {
        let col =
            |f: &dyn Fn(&RunResult) -> Option<f64>| runs.iter().filter_map(f).collect::<Vec<_>>();
        let figures = vec![
            ("takeover (new leader)", col(&|r| r.takeover_s)),
            ("first committed shard change", col(&|r| r.commit_s)),
            ("agents re-attached", col(&|r| r.attach_s)),
            (
                "  of which after takeover",
                col(&|r| r.attach_s.zip(r.takeover_s).map(|(a, t)| a - t)),
            ),
            ("all nodes healthy on new leader", col(&|r| r.healthy_s)),
            ("cluster green on new leader", col(&|r| r.green_s)),
            ("client write error window", col(&|r| Some(r.err_window_s))),
            (
                "client write errors (count)",
                col(&|r| Some(r.errors as f64)),
            ),
        ];
        let missing = runs
            .iter()
            .filter(|r| {
                r.takeover_s.is_none()
                    || r.commit_s.is_none()
                    || r.attach_s.is_none()
                    || r.healthy_s.is_none()
            })
            .count();
        Summary {
            ttl,
            runs: runs.len(),
            figures,
            acked: runs.iter().map(|r| r.acked).sum(),
            lost: runs.iter().map(|r| r.lost).sum(),
            unverified: runs.iter().map(|r| r.unverified).sum(),
            deposed: runs.iter().map(|r| r.audit.vacancy_writes).sum(),
            audit_errors: runs.iter().filter(|r| r.audit.error.is_some()).count(),
            regressions: runs.iter().map(|r| r.audit.epoch_regressions).sum(),
            fenced: runs.iter().map(|r| r.fenced_delta).sum(),
            convicted: runs.iter().map(RunResult::convicted).sum(),
            forgotten: runs.iter().map(|r| r.forgotten.len()).sum(),
            missing,
        }
    }

    fn p(xs: &[f64], q: f64) -> f64 {
        quantile(xs, q)
    }

    fn max(xs: &[f64]) -> f64 {
        xs.iter().cloned().fold(0.0, f64::max)
    }

    fn rows(&self) -> Vec<Vec<String>> {
        self.figures
            .iter()
            .map(|(name, xs)| {
                vec![
                    format!("{} s", self.ttl),
                    name.to_string(),
                    xs.len().to_string(),
                    f2(Self::p(xs, 0.5)),
                    f2(Self::p(xs, 0.9)),
                    f2(Self::max(xs)),
                ]
            })
            .collect()
    }

    fn takeover_p90(&self) -> f64 {
        Self::p(&self.figures[0].1, 0.9)
    }

    fn met(&self) -> bool {
        self.takeover_p90() <= self.ttl as f64 + 1.0
            && self.lost == 0
            && self.deposed == 0
            && self.regressions == 0
            && self.audit_errors == 0
            && self.missing == 0
    }

    fn goal_row(&self) -> Vec<String> {
        vec![
            format!("{} s", self.ttl),
            f2(self.takeover_p90()),
            format!("<= {} s", self.ttl + 1),
            self.acked.to_string(),
            self.lost.to_string(),
            self.unverified.to_string(),
            if self.audit_errors > 0 {
                format!("{} ({} audits failed)", self.deposed, self.audit_errors)
            } else {
                self.deposed.to_string()
            },
            format!("{}", self.fenced),
            self.convicted.to_string(),
            self.forgotten.to_string(),
            if self.met() {
                "met".into()
            } else {
                "MISSED".into()
            },
        ]
    }

    fn json(&self) -> Value {
        let mut figs = serde_json::Map::new();
        for (name, xs) in &self.figures {
            figs.insert(
                name.trim().to_string(),
                json!({ "n": xs.len(), "p50_s": Self::p(xs, 0.5), "p90_s": Self::p(xs, 0.9), "max_s": Self::max(xs) }),
            );
        }
        json!({
            "ttl_s": self.ttl,
            "runs": self.runs,
            "figures": figs,
            "runs_missing_a_figure": self.missing,
            "acked_writes": self.acked,
            "lost_writes": self.lost,
            "unverified_writes": self.unverified,
            "deposed_commits": self.deposed,
            "audit_errors": self.audit_errors,
            "epoch_regressions": self.regressions,
            "fenced_commits": self.fenced,
            "node_convictions_on_new_leader": self.convicted,
            "heartbeats_forgotten_by_new_leader": self.forgotten,
            "goal_takeover_p90_s": self.ttl as f64 + 1.0,
            "goal_met": self.met(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips() {
        for s in [
            "",
            "f",
            "fo",
            "foo",
            "foob",
            "fooba",
            "foobar",
            "/torua/leader",
        ] {
            assert_eq!(unb64(&b64(s.as_bytes())).unwrap(), s.as_bytes());
        }
        assert_eq!(b64(b"foobar"), "Zm9vYmFy");
        assert_eq!(b64(b"fo"), "Zm8=");
        assert_eq!(b64(b"/torua/"), "L3RvcnVhLw==");
    }
}
