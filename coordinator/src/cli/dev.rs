//! `torua dev`: a local cluster of real processes — a coordinator, N storage nodes and
//! N agents — in a temp dir with a fresh cluster secret and short timings. Ctrl-C or
//! SIGTERM stops them all.

use super::keygen::random_bytes;
use anyhow::{bail, Context};
use clap::Args;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Args)]
pub struct DevArgs {
    /// Number of storage nodes (each with its agent).
    #[arg(long, default_value_t = 3)]
    nodes: u16,
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

struct Proc {
    name: String,
    log: PathBuf,
    child: Child,
}

pub fn run(args: DevArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.nodes >= 1, "--nodes must be at least 1");
    check_ports_free(args.base_port, args.nodes)?;
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
    if !secret.exists() {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&secret)?;
        writeln!(f, "{}", hex::encode(random_bytes::<32>()?))?;
    }

    let coord_url = format!("http://127.0.0.1:{}", args.base_port);
    let mut procs = Vec::new();
    let result = (|| -> anyhow::Result<()> {
        procs.push(spawn(
            &bin_dir,
            &dir,
            "coordinator",
            "torua-coordinator",
            &[
                "--listen",
                &format!("127.0.0.1:{}", args.base_port),
                "--data-dir",
                &dir.join("coordinator").display().to_string(),
                "--cluster-secret-file",
                &secret.display().to_string(),
                "--heartbeat-timeout",
                "3s",
            ],
        )?);
        wait_http(&format!("{coord_url}/readyz"), &mut procs)?;
        for i in 1..=args.nodes {
            let id = format!("n{i}");
            let node_port = args.base_port + i;
            let node_url = format!("http://127.0.0.1:{node_port}");
            procs.push(spawn(
                &bin_dir,
                &dir,
                &format!("node-{id}"),
                "torua-node",
                &[
                    "--listen",
                    &format!("127.0.0.1:{node_port}"),
                    "--node-id",
                    &id,
                    "--data-dir",
                    &dir.join(format!("node-{id}")).display().to_string(),
                ],
            )?);
            procs.push(spawn(
                &bin_dir,
                &dir,
                &format!("agent-{id}"),
                "torua-agent",
                &[
                    "--node-id",
                    &id,
                    "--node-addr",
                    &node_url,
                    "--coordinator",
                    &coord_url,
                    "--listen",
                    &format!("127.0.0.1:{}", args.base_port + 100 + i),
                    "--interval",
                    &args.interval,
                    "--cluster-secret-file",
                    &secret.display().to_string(),
                    "--http-check",
                    &format!("{node_url}/health"),
                ],
            )?);
        }
        Ok(())
    })();
    if let Err(e) = result {
        stop_all(&mut procs);
        return Err(e);
    }

    println!("torua dev cluster running in {}", dir.display());
    println!("  coordinator  {coord_url}   (API, /metrics, /v1/nodes)");
    for i in 1..=args.nodes {
        println!(
            "  n{i}: node http://127.0.0.1:{}   agent http://127.0.0.1:{}/readyz",
            args.base_port + i,
            args.base_port + 100 + i
        );
    }
    println!("  logs         {}/*.log", dir.display());
    println!("try: torua status --coordinator {coord_url}    (Ctrl-C stops everything)");

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let exited = rt.block_on(async {
        let stop = crate::signals::terminate();
        tokio::pin!(stop);
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                _ = &mut stop => return None,
                _ = tick.tick() => {
                    for p in procs.iter_mut() {
                        if let Ok(Some(status)) = p.child.try_wait() {
                            return Some(format!("{} exited ({status}); see {}", p.name, p.log.display()));
                        }
                    }
                }
            }
        }
    });
    stop_all(&mut procs);
    match exited {
        Some(msg) => bail!(msg),
        None => {
            println!("stopped");
            Ok(())
        }
    }
}

/// Fails early, naming the port, instead of letting one child die on bind
/// after the others started.
fn check_ports_free(base: u16, nodes: u16) -> anyhow::Result<()> {
    let top = u32::from(base) + 100 + u32::from(nodes);
    anyhow::ensure!(
        top <= u32::from(u16::MAX),
        "--base-port {base} leaves no room for {nodes} nodes (ports up to base+100+nodes)"
    );
    let ports = std::iter::once(base).chain((1..=nodes).flat_map(|i| [base + i, base + 100 + i]));
    for port in ports {
        std::net::TcpListener::bind(("127.0.0.1", port)).with_context(|| {
            format!("port {port} is taken; pick another layout with --base-port (it uses base, base+1..N, base+101..100+N)")
        })?;
    }
    Ok(())
}

fn spawn(bin_dir: &Path, dir: &Path, name: &str, bin: &str, args: &[&str]) -> anyhow::Result<Proc> {
    let exe = bin_dir.join(bin);
    anyhow::ensure!(
        exe.exists(),
        "{} not found: build all binaries first (cargo build --release)",
        exe.display()
    );
    let log = dir.join(format!("{name}.log"));
    let out = File::create(&log)?;
    let child = Command::new(&exe)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .spawn()
        .with_context(|| format!("starting {}", exe.display()))?;
    Ok(Proc {
        name: name.to_string(),
        log,
        child,
    })
}

fn wait_http(url: &str, procs: &mut [Proc]) -> anyhow::Result<()> {
    let api = super::Api::new(url, None, None);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if api.get("").is_ok() {
            return Ok(());
        }
        for p in procs.iter_mut() {
            if let Ok(Some(status)) = p.child.try_wait() {
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
/// whatever is still running after a grace period.
fn stop_all(procs: &mut [Proc]) {
    for p in procs.iter().rev() {
        let pid = Pid::from_raw(p.child.id() as i32);
        let _ = kill(pid, Signal::SIGTERM);
        // A process stopped during the tour acts on SIGTERM only once continued.
        let _ = kill(pid, Signal::SIGCONT);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    for p in procs.iter_mut() {
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
