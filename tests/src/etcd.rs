//! A real etcd for the coordinator HA tests: one member, or a cluster of several
//! (`--initial-cluster`) on free loopback ports, each member's data in its own dir.
//! Members can be killed (SIGKILL), frozen and thawed, and restarted on the same
//! data dir and ports (etcd then ignores the `--initial-*` flags and rejoins).
//!
//! The `etcd` binary comes from Debian's `etcd-server`; [`available`] follows the
//! tool policy of [`crate::tools::require_tool`] (fail under `CI=true`, skip loudly
//! elsewhere).

use crate::http;
use crate::proc::{free_port, Life, Proc};
use crate::try_poll_until;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The `etcd` binary, or `None` (after saying so loudly) when it is missing outside
/// CI. Panics under `CI=true` when it is missing.
pub fn available() -> Option<PathBuf> {
    crate::tools::require_tool("etcd", "etcd-server")
}

pub struct Member {
    pub name: String,
    pub client_url: String,
    pub peer_url: String,
    pub data_dir: PathBuf,
    pub proc: Proc,
    /// What the harness last did to it.
    pub state: Life,
}

pub struct Etcd {
    pub members: Vec<Member>,
}

impl Etcd {
    /// Starts `members` etcd members under `dir/etcd/` and waits until every one
    /// answers healthy. Panics when `etcd` is missing: callers check [`available`]
    /// first so that a missing tool skips (or fails in CI) with the usual message.
    pub fn start(dir: &Path, members: usize) -> Etcd {
        assert!(members >= 1, "an etcd needs at least one member");
        let exe = available().expect("etcd is not installed (apt-get install etcd-server)");
        let ports: Vec<(u16, u16)> = (0..members).map(|_| (free_port(), free_port())).collect();
        let names: Vec<String> = (1..=members).map(|i| format!("etcd{i}")).collect();
        let initial_cluster = names
            .iter()
            .zip(&ports)
            .map(|(n, (_, peer))| format!("{n}=http://127.0.0.1:{peer}"))
            .collect::<Vec<_>>()
            .join(",");
        // A token unique to this cluster, so members of two tests never mix.
        let token = format!("torua-e2e-{}-{}", std::process::id(), fastrand::u64(..));
        let base = dir.join("etcd");
        std::fs::create_dir_all(&base).expect("create the etcd dir");
        let members = names
            .into_iter()
            .zip(ports)
            .map(|(name, (client, peer))| {
                let client_url = format!("http://127.0.0.1:{client}");
                let peer_url = format!("http://127.0.0.1:{peer}");
                let data_dir = base.join(&name);
                let args: Vec<String> = [
                    "--name",
                    &name,
                    "--data-dir",
                    &data_dir.display().to_string(),
                    "--listen-client-urls",
                    &client_url,
                    "--advertise-client-urls",
                    &client_url,
                    "--listen-peer-urls",
                    &peer_url,
                    "--initial-advertise-peer-urls",
                    &peer_url,
                    "--initial-cluster",
                    &initial_cluster,
                    "--initial-cluster-state",
                    "new",
                    "--initial-cluster-token",
                    &token,
                    "--logger",
                    "zap",
                    "--log-level",
                    "warn",
                ]
                .iter()
                .map(|s| s.to_string())
                .collect();
                let proc = Proc::start_exe(&name, &exe, &args, &base);
                Member {
                    name,
                    client_url,
                    peer_url,
                    data_dir,
                    proc,
                    state: Life::Running,
                }
            })
            .collect();
        let etcd = Etcd { members };
        etcd.wait_healthy(Duration::from_secs(30));
        etcd
    }

    /// Every member's client URL, in member order (what `--etcd-endpoints` takes).
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client_url.clone()).collect()
    }

    /// The endpoints comma-separated, for `--etcd-endpoints`.
    pub fn endpoints_arg(&self) -> String {
        self.endpoints().join(",")
    }

    /// SIGKILL member `i` (and reap it).
    pub fn kill(&mut self, i: usize) {
        let m = &mut self.members[i];
        m.proc.kill();
        m.state = Life::Gone;
    }

    /// SIGSTOP member `i`.
    pub fn stop(&mut self, i: usize) {
        let m = &mut self.members[i];
        m.proc.stop();
        m.state = Life::Stopped;
    }

    /// SIGCONT member `i`.
    pub fn cont(&mut self, i: usize) {
        let m = &mut self.members[i];
        m.proc.cont();
        m.state = Life::Running;
    }

    /// Starts member `i` again on its data dir and ports (killing it first if it
    /// still runs); waits until it answers healthy.
    pub fn restart(&mut self, i: usize) {
        let m = &mut self.members[i];
        m.proc.restart();
        m.state = Life::Running;
        let url = m.client_url.clone();
        let name = m.name.clone();
        try_poll_until(Duration::from_secs(30), &format!("{name} healthy"), || {
            member_health(&url)
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", self.logs()));
    }

    /// Waits until every running member answers `GET /health` with
    /// `{"health":"true"}` (which needs a quorum and a raft leader).
    pub fn wait_healthy(&self, timeout: Duration) {
        try_poll_until(timeout, "etcd healthy", || {
            for m in self.members.iter().filter(|m| m.state == Life::Running) {
                member_health(&m.client_url).map_err(|e| format!("{}: {e}", m.name))?;
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", self.logs()));
    }

    /// Index of the member that is the raft leader, as a running member reports it
    /// (`/v3/maintenance/status` through the gRPC gateway).
    pub fn leader(&self) -> Result<usize, String> {
        let mut ids = Vec::new();
        let mut leader = None;
        for m in &self.members {
            if m.state != Life::Running {
                ids.push(None);
                continue;
            }
            let r = http::send_within(
                "POST",
                &format!("{}/v3/maintenance/status", m.client_url),
                &[],
                b"{}",
                Duration::from_secs(2),
            )?;
            let v = r.json();
            let id = v["header"]["member_id"].as_str().map(String::from);
            if let Some(l) = v["leader"].as_str().filter(|l| *l != "0") {
                leader = Some(l.to_string());
            }
            ids.push(id);
        }
        let leader = leader.ok_or("no member knows a leader")?;
        ids.iter()
            .position(|id| id.as_deref() == Some(leader.as_str()))
            .ok_or_else(|| format!("leader {leader} is not a running member ({ids:?})"))
    }

    /// Every member's log, for a failure message.
    pub fn logs(&self) -> String {
        self.members
            .iter()
            .map(|m| {
                format!(
                    "--- {} ({:?}) ---\n{}",
                    m.name,
                    m.state,
                    tail(&m.proc.log_text(), 40)
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn member_health(client_url: &str) -> Result<(), String> {
    let r = http::get_within(&format!("{client_url}/health"), Duration::from_secs(2))?;
    if r.status == 200 && r.json()["health"] == "true" {
        Ok(())
    } else {
        Err(format!("{} {}", r.status, r.text()))
    }
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
