//! Local clusters of real processes for the benchmarks: a coordinator with a fresh
//! cluster secret in a temp dir, and storage nodes with their agents.

use crate::http::Client;
use crate::proc::{free_port, sibling_bin, Proc};
use anyhow::{bail, Result};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// 48 bytes: the coordinator wants ≥ 32.
pub const SECRET: &[u8] = b"torua-bench-cluster-secret-0123456789abcdef01234";

pub struct Coordinator {
    pub dir: tempfile::TempDir,
    pub secret_file: PathBuf,
    pub addr: SocketAddr,
    pub url: String,
    pub proc: Proc,
}

impl Coordinator {
    /// Starts `torua-coordinator` on a free port with `extra` flags; waits for /readyz.
    pub async fn start(extra: &[&str]) -> Result<Coordinator> {
        let dir = tempfile::Builder::new().prefix("torua-bench-").tempdir()?;
        let secret_file = write_secret(dir.path())?;
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse()?;
        let mut args: Vec<String> = vec![
            "--listen".into(),
            addr.to_string(),
            "--data-dir".into(),
            dir.path().join("coordinator").display().to_string(),
            "--cluster-secret-file".into(),
            secret_file.display().to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let exe = sibling_bin("torua-coordinator")?;
        // warn: per-node state changes at info would make logging part of the measurement.
        let proc = Proc::start("coordinator", &exe, &args, dir.path(), "warn")?;
        let mut c = Coordinator {
            dir,
            secret_file,
            addr,
            url: format!("http://{addr}"),
            proc,
        };
        c.wait_ready().await?;
        Ok(c)
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let mut client = Client::new(self.addr);
        for _ in 0..1000 {
            self.proc.check_running()?;
            if let Ok(r) = client.get("/readyz").await {
                if r.status == 200 {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        bail!(
            "coordinator not ready after 20 s; log:\n{}",
            self.proc.log_tail()
        )
    }
}

/// Writes [`SECRET`] to `dir/cluster-secret` (mode 0600) and returns its path.
pub fn write_secret(dir: &Path) -> Result<PathBuf> {
    let secret_file = dir.join("cluster-secret");
    std::fs::write(&secret_file, SECRET)?;
    std::fs::set_permissions(&secret_file, std::fs::Permissions::from_mode(0o600))?;
    Ok(secret_file)
}

/// A storage node and its agent, heartbeating to `coord`.
pub struct Member {
    pub id: String,
    pub node: Proc,
    pub agent: Proc,
}

impl Member {
    pub async fn start(coord: &Coordinator, id: &str, interval: &str) -> Result<Member> {
        Member::start_at(
            coord.dir.path(),
            &coord.secret_file,
            &coord.url,
            id,
            interval,
        )
    }

    /// A node and its agent with their logs in `dir`; `coordinators` is the agent's
    /// `--coordinator` (one URL, or several comma-separated for coordinator HA).
    pub fn start_at(
        dir: &Path,
        secret_file: &Path,
        coordinators: &str,
        id: &str,
        interval: &str,
    ) -> Result<Member> {
        let node_port = free_port();
        let node_url = format!("http://127.0.0.1:{node_port}");
        let mut node = Proc::start(
            &format!("node-{id}"),
            &sibling_bin("torua-node")?,
            // With the cluster secret, as in production: it takes only signed calls.
            &[
                "--listen".into(),
                format!("127.0.0.1:{node_port}"),
                "--node-id".into(),
                id.into(),
                "--cluster-secret-file".into(),
                secret_file.display().to_string(),
            ],
            dir,
            "warn",
        )?;
        // The agent's first http check must find the node listening: a node that
        // starts out unhealthy is left out of the first placement and rebalanced
        // onto later, in the middle of a measurement.
        wait_listening(&mut node, node_port)?;
        let agent_args: Vec<String> = [
            "--node-id",
            id,
            "--node-addr",
            &node_url,
            "--coordinator",
            coordinators,
            "--listen",
            &format!("127.0.0.1:{}", free_port()),
            "--interval",
            interval,
            "--cluster-secret-file",
            &secret_file.display().to_string(),
            "--http-check",
            &format!("{node_url}/health"),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let agent = Proc::start(
            &format!("agent-{id}"),
            &sibling_bin("torua-agent")?,
            &agent_args,
            dir,
            "warn",
        )?;
        Ok(Member {
            id: id.into(),
            node,
            agent,
        })
    }
}

/// Waits (up to 10 s) until `proc` accepts connections on loopback `port`.
fn wait_listening(proc: &mut Proc, port: u16) -> Result<()> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    for _ in 0..1000 {
        proc.check_running()?;
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    bail!("{} not listening on {addr} after 10 s", proc.name)
}

/// The `state` of node `id` as the coordinator reports it (None before it is known).
pub async fn node_state(client: &mut Client, id: &str) -> Result<Option<String>> {
    let r = client.get(&format!("/v1/nodes/{id}")).await?;
    if r.status == 404 {
        return Ok(None);
    }
    if r.status != 200 {
        bail!("GET /v1/nodes/{id}: {}", r.status);
    }
    Ok(r.json()?["state"].as_str().map(str::to_string))
}

/// Waits until node `id` is in `state`.
pub async fn wait_state(addr: SocketAddr, id: &str, state: &str, timeout: Duration) -> Result<()> {
    let mut client = Client::new(addr);
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let got = node_state(&mut client, id).await;
        match got {
            Ok(Some(s)) if s == state => return Ok(()),
            _ if std::time::Instant::now() >= deadline => {
                bail!("timed out waiting for {id} to be {state}: last {got:?}")
            }
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// A named cluster of one coordinator and its members, for the benchmarks that run
/// two side by side (`hotspots`, `failover-latency`).
pub struct Named {
    pub name: String,
    pub coord: Coordinator,
    pub members: Vec<Member>,
}

impl Named {
    /// A coordinator started with `flags` and `nodes` members (`n1`…), all healthy.
    pub async fn start(name: &str, flags: &[&str], nodes: usize, interval: &str) -> Result<Named> {
        let coord = Coordinator::start(flags).await?;
        let mut members = Vec::new();
        for i in 1..=nodes {
            members.push(Member::start(&coord, &format!("n{i}"), interval).await?);
        }
        for m in &members {
            wait_state(coord.addr, &m.id, "healthy", Duration::from_secs(30)).await?;
        }
        Ok(Named {
            name: name.into(),
            coord,
            members,
        })
    }

    /// The tails of the coordinator's and the nodes' logs.
    pub fn logs(&self) -> String {
        let mut s = format!(
            "--- {} coordinator:\n{}",
            self.name,
            self.coord.proc.log_tail()
        );
        for m in &self.members {
            s += &format!("\n--- {}:\n{}", m.node.name, m.node.log_tail());
        }
        s
    }

    /// Keeps the logs' directory after the run (to look into a failure).
    pub fn keep(&mut self) {
        let dir = std::mem::replace(
            &mut self.coord.dir,
            tempfile::Builder::new()
                .prefix("torua-bench-")
                .tempdir()
                .expect("temp dir"),
        );
        println!("  {} logs kept in {}", self.name, dir.keep().display());
    }
}
