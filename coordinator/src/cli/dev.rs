//! `torua dev`: a local cluster of real processes — a coordinator (or, with
//! `--coordinators N`, a local etcd and N coordinators electing a leader on it), N
//! storage nodes and N agents — in a temp dir with a fresh cluster secret, fresh admin
//! and client tokens, and short timings. Nodes and agents sign with the cluster
//! secret; the coordinators demand the tokens, and the CLI finds them through a
//! pointer to the dev dir (`tokens.rs`), so `torua put` and `torua drain` work here
//! without flags. A child that exits is reported and the rest keep running (killing
//! a coordinator to watch a failover is the point); Ctrl-C or SIGTERM stops them all.

use super::keygen::new_token;
use super::tokens::{DevPointers, ADMIN_TOKEN_FILE, CLIENT_TOKEN_FILE};
use anyhow::{bail, Context};
use clap::Args;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Most coordinators: coordinator k listens on base+10·(k-1), below etcd's base+90.
const MAX_COORDINATORS: u16 = 9;
/// etcd's client and peer ports, as offsets from `--base-port`.
const ETCD_CLIENT_OFFSET: u16 = 90;
const ETCD_PEER_OFFSET: u16 = 91;
/// Agent i listens on base+AGENT_OFFSET+i.
const AGENT_OFFSET: u16 = 100;
/// The Debian/Ubuntu package that ships the `etcd` binary.
const ETCD_PACKAGE: &str = "etcd-server";

#[derive(Args)]
pub struct DevArgs {
    /// Number of storage nodes (each with its agent).
    #[arg(long, default_value_t = 3)]
    nodes: u16,
    /// Number of coordinators. 1: one coordinator on its embedded store. More: a
    /// local etcd (the `etcd` binary on PATH) and that many coordinators electing a
    /// leader on it, on base, base+10, base+20, ...; etcd on base+90 (peer base+91).
    #[arg(long, default_value_t = 1)]
    coordinators: u16,
    /// Coordinator port; node i listens on base+i, agent i on base+100+i.
    #[arg(long, default_value_t = 7400)]
    base_port: u16,
    /// Keep state in this directory instead of a fresh temp dir.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Agent heartbeat interval.
    #[arg(long, default_value = "1s")]
    interval: String,
}

/// Every port of a dev cluster, derived from `--base-port`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Layout {
    /// One per coordinator: base, base+10, base+20, ...
    coordinators: Vec<u16>,
    /// Node i (from 1) on base+i.
    nodes: Vec<u16>,
    /// Agent i on base+100+i.
    agents: Vec<u16>,
    /// etcd's (client, peer) ports when there is more than one coordinator.
    etcd: Option<(u16, u16)>,
}

impl Layout {
    fn new(base: u16, nodes: u16, coordinators: u16) -> anyhow::Result<Layout> {
        anyhow::ensure!(nodes >= 1, "--nodes must be at least 1");
        anyhow::ensure!(
            (1..=MAX_COORDINATORS).contains(&coordinators),
            "--coordinators must be within 1..={MAX_COORDINATORS}"
        );
        let ha = coordinators > 1;
        anyhow::ensure!(
            !ha || nodes <= 9,
            "--nodes {nodes} with --coordinators {coordinators}: at most 9 nodes, as node \
             ports (base+1..) stop below the second coordinator's (base+10)"
        );
        let top = u32::from(base) + u32::from(AGENT_OFFSET) + u32::from(nodes);
        anyhow::ensure!(
            top <= u32::from(u16::MAX),
            "--base-port {base} leaves no room for {nodes} nodes (ports up to base+100+nodes)"
        );
        Ok(Layout {
            coordinators: (0..coordinators).map(|k| base + 10 * k).collect(),
            nodes: (1..=nodes).map(|i| base + i).collect(),
            agents: (1..=nodes).map(|i| base + AGENT_OFFSET + i).collect(),
            etcd: ha.then_some((base + ETCD_CLIENT_OFFSET, base + ETCD_PEER_OFFSET)),
        })
    }

    fn ports(&self) -> impl Iterator<Item = u16> + '_ {
        self.coordinators
            .iter()
            .chain(&self.nodes)
            .chain(&self.agents)
            .copied()
            .chain(self.etcd.into_iter().flat_map(|(c, p)| [c, p]))
    }

    fn coordinator_urls(&self) -> Vec<String> {
        self.coordinators
            .iter()
            .map(|p| format!("http://127.0.0.1:{p}"))
            .collect()
    }

    fn etcd_url(&self) -> Option<String> {
        self.etcd.map(|(c, _)| format!("http://127.0.0.1:{c}"))
    }
}

/// The files every child shares.
struct Files<'a> {
    dir: &'a Path,
    secret: &'a Path,
}

impl Files<'_> {
    fn admin_token(&self) -> PathBuf {
        self.dir.join(ADMIN_TOKEN_FILE)
    }

    fn client_token(&self) -> PathBuf {
        self.dir.join(CLIENT_TOKEN_FILE)
    }
}

/// `etcd` arguments: one member on loopback, its data in `dir/etcd`.
fn etcd_args(layout: &Layout, files: &Files) -> Vec<String> {
    let (client, peer) = layout.etcd.expect("etcd runs with several coordinators");
    let client = format!("http://127.0.0.1:{client}");
    let peer = format!("http://127.0.0.1:{peer}");
    [
        "--name",
        "torua-dev",
        "--data-dir",
        &files.dir.join("etcd").display().to_string(),
        "--listen-client-urls",
        &client,
        "--advertise-client-urls",
        &client,
        "--listen-peer-urls",
        &peer,
        "--initial-advertise-peer-urls",
        &peer,
        "--initial-cluster",
        &format!("torua-dev={peer}"),
        "--initial-cluster-state",
        "new",
    ]
    .map(String::from)
    .to_vec()
}

/// `torua-coordinator` arguments for coordinator `k` (from 0). A lone coordinator
/// keeps its state in `dir/coordinator`, as `torua dev` always did; several are
/// `c1`, `c2`, … keeping theirs in the local etcd, each advertising its own URL.
fn coordinator_args(layout: &Layout, k: usize, files: &Files) -> Vec<String> {
    let port = layout.coordinators[k];
    let mut args = vec!["--listen".to_string(), format!("127.0.0.1:{port}")];
    if layout.etcd.is_none() {
        args.extend([
            "--data-dir".to_string(),
            files.dir.join("coordinator").display().to_string(),
        ]);
    }
    args.extend([
        "--cluster-secret-file".to_string(),
        files.secret.display().to_string(),
        "--admin-token-file".to_string(),
        files.admin_token().display().to_string(),
        "--client-token-file".to_string(),
        files.client_token().display().to_string(),
        "--heartbeat-timeout".to_string(),
        "3s".to_string(),
    ]);
    if let Some(etcd) = layout.etcd_url() {
        args.extend([
            "--etcd-endpoints".to_string(),
            etcd,
            "--coordinator-id".to_string(),
            format!("c{}", k + 1),
            "--advertise-url".to_string(),
            format!("http://127.0.0.1:{port}"),
        ]);
    }
    args
}

fn node_args(layout: &Layout, i: usize, files: &Files) -> Vec<String> {
    let id = format!("n{}", i + 1);
    vec![
        "--listen".into(),
        format!("127.0.0.1:{}", layout.nodes[i]),
        "--node-id".into(),
        id.clone(),
        "--data-dir".into(),
        files.dir.join(format!("node-{id}")).display().to_string(),
        // The node checks the coordinator's signed calls with the key it derives
        // from the secret, as its agent does.
        "--cluster-secret-file".into(),
        files.secret.display().to_string(),
    ]
}

/// `torua-agent` arguments for node `i` (from 0): it is given every coordinator.
fn agent_args(layout: &Layout, i: usize, files: &Files, interval: &str) -> Vec<String> {
    let node_url = format!("http://127.0.0.1:{}", layout.nodes[i]);
    vec![
        "--node-id".into(),
        format!("n{}", i + 1),
        "--node-addr".into(),
        node_url.clone(),
        "--coordinator".into(),
        layout.coordinator_urls().join(","),
        "--listen".into(),
        format!("127.0.0.1:{}", layout.agents[i]),
        "--interval".into(),
        interval.into(),
        "--cluster-secret-file".into(),
        files.secret.display().to_string(),
        "--http-check".into(),
        format!("{node_url}/health"),
    ]
}

struct Proc {
    name: String,
    log: PathBuf,
    child: Child,
    /// Set once the child has exited and been reaped: never signal its pid again.
    exited: Option<ExitStatus>,
}

pub fn run(args: DevArgs) -> anyhow::Result<()> {
    let layout = Layout::new(args.base_port, args.nodes, args.coordinators)?;
    let etcd_exe = match layout.etcd {
        Some(_) => Some(find_etcd(&std::env::var_os("PATH").unwrap_or_default())?),
        None => None,
    };
    check_ports_free(&layout)?;
    let bin_dir = std::env::current_exe()?
        .parent()
        .context("no directory for the torua binary")?
        .to_path_buf();
    let tmp;
    let dir = match &args.dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            d.clone()
        }
        None => {
            tmp = tempfile::Builder::new().prefix("torua-dev-").tempdir()?;
            tmp.path().to_path_buf()
        }
    };
    let secret = dir.join("cluster-secret");
    let files = Files {
        dir: &dir,
        secret: &secret,
    };
    // Kept when --dir names a dir that has them: a restarted dev cluster keeps its
    // secret and tokens.
    for file in [secret.clone(), files.admin_token(), files.client_token()] {
        write_new_secret(&file)?;
    }
    let pointers = DevPointers::from_env();
    let registered: Vec<u16> = layout
        .coordinators
        .iter()
        .copied()
        .filter(|&port| match pointers.register(port, &dir) {
            Ok(()) => true,
            Err(e) => {
                eprintln!(
                    "torua dev: the CLI will not find this cluster's tokens ({e:#}); pass \
                     --admin-token-file {} and --client-token-file {}",
                    files.admin_token().display(),
                    files.client_token().display()
                );
                false
            }
        })
        .collect();
    let unregister = || {
        for &port in &registered {
            pointers.unregister(port, &dir);
        }
    };

    let coord_urls = layout.coordinator_urls();
    // etcd apart: it stops last, after the coordinators let go of it.
    let mut etcd: Vec<Proc> = Vec::new();
    let mut procs = Vec::new();
    let result = (|| -> anyhow::Result<()> {
        if let (Some(exe), Some(url)) = (&etcd_exe, layout.etcd_url()) {
            etcd.push(spawn_exe(&dir, "etcd", exe, &etcd_args(&layout, &files))?);
            wait_http(&format!("{url}/health"), &mut etcd)?;
        }
        let ha = layout.etcd.is_some();
        for (k, url) in coord_urls.iter().enumerate() {
            let name = if ha {
                format!("coordinator-c{}", k + 1)
            } else {
                "coordinator".to_string()
            };
            procs.push(spawn(
                &bin_dir,
                &dir,
                &name,
                "torua-coordinator",
                &coordinator_args(&layout, k, &files),
            )?);
            wait_http(&format!("{url}/readyz"), &mut procs)?;
        }
        for i in 0..layout.nodes.len() {
            let id = format!("n{}", i + 1);
            procs.push(spawn(
                &bin_dir,
                &dir,
                &format!("node-{id}"),
                "torua-node",
                &node_args(&layout, i, &files),
            )?);
            procs.push(spawn(
                &bin_dir,
                &dir,
                &format!("agent-{id}"),
                "torua-agent",
                &agent_args(&layout, i, &files, &args.interval),
            )?);
        }
        Ok(())
    })();
    if let Err(e) = result {
        stop_all(&mut procs);
        stop_all(&mut etcd);
        unregister();
        return Err(e);
    }

    print!("{}", banner(&layout, &dir));

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let all_gone = rt.block_on(async {
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        let stop = async {
            tokio::select! {
                _ = crate::signals::terminate() => {}
                _ = hup.recv() => {}
            }
        };
        tokio::pin!(stop);
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                biased;
                _ = &mut stop => return Ok::<_, std::io::Error>(false),
                _ = tick.tick() => {
                    for p in etcd.iter_mut().chain(procs.iter_mut()) {
                        if let Some(status) = p.reap() {
                            println!(
                                "torua dev: {} exited ({status}); see {}; the rest keep running",
                                p.name,
                                p.log.display()
                            );
                        }
                    }
                    if etcd.iter().chain(&procs).all(|p| p.exited.is_some()) {
                        return Ok(true);
                    }
                }
            }
        }
    });
    stop_all(&mut procs);
    stop_all(&mut etcd);
    unregister();
    let all_gone = all_gone?;
    if all_gone {
        bail!(
            "every process of the dev cluster has exited; logs in {}",
            dir.display()
        );
    }
    println!("stopped");
    Ok(())
}

/// What `torua dev` prints once the cluster runs: every URL, coordinators first.
fn banner(layout: &Layout, dir: &Path) -> String {
    let urls = layout.coordinator_urls();
    let ha = layout.etcd.is_some();
    let mut out = format!(
        "torua dev: open {}/ui   (the live cluster page; cluster running in {})\n",
        urls[0],
        dir.display()
    );
    for (k, url) in urls.iter().enumerate() {
        let what = match (ha, k) {
            (false, _) => "(API, /metrics, /v1/nodes)".to_string(),
            (true, 0) => {
                "(c1; API, /metrics, /v1/nodes; /v1/leader answers 200 on the leader)".to_string()
            }
            (true, _) => format!("(c{})", k + 1),
        };
        out.push_str(&format!("  coordinator  {url}   {what}\n"));
    }
    if let (Some(url), Some((_, peer))) = (layout.etcd_url(), layout.etcd) {
        out.push_str(&format!(
            "  etcd         {url}   (peer port {peer}; base+{ETCD_CLIENT_OFFSET} and \
             base+{ETCD_PEER_OFFSET}; data in {})\n",
            dir.join("etcd").display()
        ));
    }
    for (i, (node, agent)) in layout.nodes.iter().zip(&layout.agents).enumerate() {
        out.push_str(&format!(
            "  n{}: node http://127.0.0.1:{node}   agent http://127.0.0.1:{agent}/readyz\n",
            i + 1
        ));
    }
    out.push_str(&format!("  logs         {}/*.log\n", dir.display()));
    out.push_str(&format!(
        "  tokens       {dir}/{ADMIN_TOKEN_FILE} (admin: the page's drain asks for it), \
         {dir}/{CLIENT_TOKEN_FILE} (data); the torua CLI finds both\n",
        dir = dir.display()
    ));
    out.push_str(&format!(
        "try: torua status --coordinator {}    (Ctrl-C stops everything)\n",
        urls.join(",")
    ));
    if ha {
        out.push_str(
            "a process that exits is reported and the rest keep running: kill the leader \
             (see `torua status`) to watch a failover\n",
        );
    }
    out
}

/// Writes a fresh random secret (64 hex characters) to `path`, mode 0600, unless
/// the file exists.
fn write_new_secret(path: &Path) -> anyhow::Result<()> {
    if path.exists() {
        return Ok(());
    }
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    writeln!(f, "{}", new_token()?)?;
    Ok(())
}

/// The `etcd` binary on `path` (a PATH value), or an error naming the package.
fn find_etcd(path: &std::ffi::OsStr) -> anyhow::Result<PathBuf> {
    std::env::split_paths(path)
        .map(|d| d.join("etcd"))
        .find(|p| p.is_file())
        .with_context(|| {
            format!(
                "`etcd` is not on PATH: torua dev --coordinators N (N > 1) runs a local etcd; \
                 install it (Debian/Ubuntu: apt-get install {ETCD_PACKAGE}) or use \
                 --coordinators 1"
            )
        })
}

/// Fails early, naming the port, instead of letting one child die on bind
/// after the others started.
fn check_ports_free(layout: &Layout) -> anyhow::Result<()> {
    let scheme = if layout.etcd.is_some() {
        "base, base+10.. per coordinator, base+1..N, base+101..100+N, base+90 and base+91 for etcd"
    } else {
        "base, base+1..N, base+101..100+N"
    };
    for port in layout.ports() {
        std::net::TcpListener::bind(("127.0.0.1", port)).with_context(|| {
            format!("port {port} is taken; pick another layout with --base-port (it uses {scheme})")
        })?;
    }
    Ok(())
}

fn spawn(
    bin_dir: &Path,
    dir: &Path,
    name: &str,
    bin: &str,
    args: &[String],
) -> anyhow::Result<Proc> {
    let exe = bin_dir.join(bin);
    anyhow::ensure!(
        exe.exists(),
        "{} not found: build all binaries first (cargo build --release)",
        exe.display()
    );
    spawn_exe(dir, name, &exe, args)
}

fn spawn_exe(dir: &Path, name: &str, exe: &Path, args: &[String]) -> anyhow::Result<Proc> {
    let log = dir.join(format!("{name}.log"));
    let out = File::create(&log)?;
    let mut cmd = Command::new(exe);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        // Its own process group: a terminal's Ctrl-C reaches `torua dev` alone, which
        // then stops the children in order (etcd after the coordinators).
        .process_group(0);
    if exe.file_name().is_some_and(|n| n == "etcd") && std::env::consts::ARCH == "aarch64" {
        // etcd 3.4 refuses to start on arm64 without this.
        cmd.env("ETCD_UNSUPPORTED_ARCH", "arm64");
    }
    let child = cmd
        .spawn()
        .with_context(|| format!("starting {}", exe.display()))?;
    Ok(Proc {
        name: name.to_string(),
        log,
        child,
        exited: None,
    })
}

impl Proc {
    /// The exit status, the first time the child is seen to have exited.
    fn reap(&mut self) -> Option<ExitStatus> {
        if self.exited.is_some() {
            return None;
        }
        let status = self.child.try_wait().ok().flatten()?;
        self.exited = Some(status);
        Some(status)
    }
}

fn wait_http(url: &str, procs: &mut [Proc]) -> anyhow::Result<()> {
    let api = super::Api::new(url, None, None);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if api.get("").is_ok() {
            return Ok(());
        }
        for p in procs.iter_mut() {
            if let Some(status) = p.reap() {
                let tail = std::fs::read_to_string(&p.log).unwrap_or_default();
                bail!("{} exited ({status}):\n{tail}", p.name);
            }
        }
        if Instant::now() > deadline {
            bail!("{url} did not answer within 15s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// SIGTERM in reverse start order (agents announce `leaving` first), then SIGKILL
/// whatever is still running after a grace period. Children already reaped are left
/// alone (their pid may belong to another process by now).
fn stop_all(procs: &mut [Proc]) {
    for p in procs.iter().rev().filter(|p| p.exited.is_none()) {
        let pid = Pid::from_raw(p.child.id() as i32);
        let _ = kill(pid, Signal::SIGTERM);
        // A process stopped during the tour acts on SIGTERM only once continued.
        let _ = kill(pid, Signal::SIGCONT);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    for p in procs.iter_mut().filter(|p| p.exited.is_none()) {
        loop {
            match p.child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() > deadline => {
                    let _ = p.child.kill();
                    let _ = p.child.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files() -> (PathBuf, PathBuf) {
        (PathBuf::from("/d"), PathBuf::from("/d/cluster-secret"))
    }

    #[test]
    fn one_coordinator_is_the_old_layout() {
        let l = Layout::new(7400, 3, 1).unwrap();
        assert_eq!(l.coordinators, [7400]);
        assert_eq!(l.nodes, [7401, 7402, 7403]);
        assert_eq!(l.agents, [7501, 7502, 7503]);
        assert_eq!(l.etcd, None);
        let (dir, secret) = files();
        let f = Files {
            dir: &dir,
            secret: &secret,
        };
        assert_eq!(
            coordinator_args(&l, 0, &f).join(" "),
            "--listen 127.0.0.1:7400 --data-dir /d/coordinator \
             --cluster-secret-file /d/cluster-secret --admin-token-file /d/admin.token \
             --client-token-file /d/client.token --heartbeat-timeout 3s"
        );
        assert_eq!(
            agent_args(&l, 1, &f, "1s").join(" "),
            "--node-id n2 --node-addr http://127.0.0.1:7402 \
             --coordinator http://127.0.0.1:7400 --listen 127.0.0.1:7502 --interval 1s \
             --cluster-secret-file /d/cluster-secret --http-check http://127.0.0.1:7402/health"
        );
        assert_eq!(
            node_args(&l, 2, &f).join(" "),
            "--listen 127.0.0.1:7403 --node-id n3 --data-dir /d/node-n3 \
             --cluster-secret-file /d/cluster-secret"
        );
        let b = banner(&l, &dir);
        assert!(
            b.contains("  coordinator  http://127.0.0.1:7400   (API, /metrics, /v1/nodes)\n"),
            "{b}"
        );
        assert!(!b.contains("etcd"), "{b}");
        assert!(
            b.contains("  tokens       /d/admin.token (admin: ")
                && b.contains("/d/client.token (data)"),
            "{b}"
        );
        assert!(
            b.contains("try: torua status --coordinator http://127.0.0.1:7400 "),
            "{b}"
        );
    }

    #[test]
    fn three_coordinators_on_etcd() {
        let l = Layout::new(7400, 3, 3).unwrap();
        assert_eq!(l.coordinators, [7400, 7410, 7420]);
        assert_eq!(l.nodes, [7401, 7402, 7403]);
        assert_eq!(l.agents, [7501, 7502, 7503]);
        assert_eq!(l.etcd, Some((7490, 7491)));
        let mut ports: Vec<u16> = l.ports().collect();
        let n = ports.len();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!((n, ports.len()), (11, 11), "ports collide: {ports:?}");

        let (dir, secret) = files();
        let f = Files {
            dir: &dir,
            secret: &secret,
        };
        assert_eq!(
            coordinator_args(&l, 1, &f).join(" "),
            "--listen 127.0.0.1:7410 \
             --cluster-secret-file /d/cluster-secret --admin-token-file /d/admin.token \
             --client-token-file /d/client.token --heartbeat-timeout 3s \
             --etcd-endpoints http://127.0.0.1:7490 --coordinator-id c2 \
             --advertise-url http://127.0.0.1:7410"
        );
        let agent = agent_args(&l, 0, &f, "1s");
        let at = agent.iter().position(|a| a == "--coordinator").unwrap();
        assert_eq!(
            agent[at + 1],
            "http://127.0.0.1:7400,http://127.0.0.1:7410,http://127.0.0.1:7420"
        );
        assert_eq!(
            etcd_args(&l, &f).join(" "),
            "--name torua-dev --data-dir /d/etcd \
             --listen-client-urls http://127.0.0.1:7490 \
             --advertise-client-urls http://127.0.0.1:7490 \
             --listen-peer-urls http://127.0.0.1:7491 \
             --initial-advertise-peer-urls http://127.0.0.1:7491 \
             --initial-cluster torua-dev=http://127.0.0.1:7491 --initial-cluster-state new"
        );

        // Every URL, coordinators first.
        let b = banner(&l, &dir);
        let lines: Vec<&str> = b.lines().collect();
        assert!(
            lines[1].starts_with("  coordinator  http://127.0.0.1:7400   (c1;"),
            "{b}"
        );
        assert!(
            lines[2].starts_with("  coordinator  http://127.0.0.1:7410   (c2)"),
            "{b}"
        );
        assert!(
            lines[3].starts_with("  coordinator  http://127.0.0.1:7420   (c3)"),
            "{b}"
        );
        assert!(
            lines[4].starts_with("  etcd         http://127.0.0.1:7490   (peer port 7491"),
            "{b}"
        );
        assert!(
            lines[5].starts_with("  n1: node http://127.0.0.1:7401"),
            "{b}"
        );
        assert!(
            b.contains(
                "try: torua status --coordinator \
                 http://127.0.0.1:7400,http://127.0.0.1:7410,http://127.0.0.1:7420 "
            ),
            "{b}"
        );
    }

    #[test]
    fn layouts_that_do_not_fit() {
        let cases = [
            (7400, 3, 0, "--coordinators must be within 1..=9"),
            (7400, 3, 10, "--coordinators must be within 1..=9"),
            (7400, 0, 1, "--nodes must be at least 1"),
            (7400, 10, 3, "at most 9 nodes"),
            (65_500, 3, 1, "leaves no room"),
        ];
        for (base, nodes, coordinators, want) in cases {
            let err = Layout::new(base, nodes, coordinators)
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{base}/{nodes}/{coordinators}: {err}");
        }
        // One coordinator keeps allowing many nodes, as before.
        assert_eq!(Layout::new(7400, 20, 1).unwrap().nodes.len(), 20);
        // The nine coordinators stay below etcd's ports.
        let l = Layout::new(7400, 9, 9).unwrap();
        assert_eq!(*l.coordinators.last().unwrap(), 7480);
        let mut ports: Vec<u16> = l.ports().collect();
        let n = ports.len();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(n, ports.len(), "ports collide");
    }

    #[test]
    fn a_missing_etcd_names_the_package() {
        let dir = tempfile::tempdir().unwrap();
        let err = find_etcd(dir.path().as_os_str()).unwrap_err().to_string();
        assert!(
            err.contains("`etcd` is not on PATH") && err.contains("apt-get install etcd-server"),
            "{err}"
        );
        std::fs::write(dir.path().join("etcd"), "").unwrap();
        let path = std::env::join_paths(["/nonexistent".as_ref(), dir.path()]).unwrap();
        assert_eq!(find_etcd(&path).unwrap(), dir.path().join("etcd"));
    }
}
