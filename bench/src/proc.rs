//! Child processes (killed on drop), binary lookup next to our own executable, and
//! the `/proc` readings every benchmark reports: CPU seconds, RSS, peak RSS.

use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

/// A workspace binary (`torua-coordinator`, `torua-agent`, `torua-node`) from the same
/// target directory as this executable: run `cargo build --release` first.
pub fn sibling_bin(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe().context("current exe")?;
    let dir = exe.parent().context("exe dir")?;
    for cand in [
        dir.join(name),
        dir.parent().map(|p| p.join(name)).unwrap_or_default(),
    ] {
        if cand.is_file() {
            return Ok(cand);
        }
    }
    bail!(
        "{name} not found next to {} (run `cargo build --release` first)",
        exe.display()
    )
}

/// An external tool on `PATH`.
pub fn find_tool(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

/// A running child process; SIGCONT + SIGKILL + reap on drop.
pub struct Proc {
    pub name: String,
    pub log: PathBuf,
    child: Child,
}

impl Proc {
    pub fn start(
        name: &str,
        exe: &Path,
        args: &[String],
        dir: &Path,
        rust_log: &str,
    ) -> Result<Proc> {
        let log = dir.join(format!("{name}.log"));
        let out =
            std::fs::File::create(&log).with_context(|| format!("create {}", log.display()))?;
        let child = Command::new(exe)
            .args(args)
            .env("RUST_LOG", rust_log)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("start {}", exe.display()))?;
        Ok(Proc {
            name: name.into(),
            log,
            child,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, sig: Signal) -> Result<()> {
        kill(Pid::from_raw(self.pid() as i32), sig).with_context(|| format!("{} {sig}", self.name))
    }

    /// Fails if the process already exited (with the tail of its log).
    pub fn check_running(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("{} exited ({status}); log:\n{}", self.name, self.log_tail());
        }
        Ok(())
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    pub fn stats(&self) -> Result<ProcStats> {
        ProcStats::read(self.pid())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.signal(Signal::SIGCONT);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One reading of a process's CPU time and memory.
#[derive(Debug, Clone, Copy)]
pub struct ProcStats {
    /// utime + stime, seconds.
    pub cpu_secs: f64,
    /// VmRSS, bytes.
    pub rss: u64,
    /// VmHWM (peak RSS), bytes.
    pub hwm: u64,
    pub at: Instant,
}

impl ProcStats {
    pub fn read(pid: u32) -> Result<ProcStats> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        // Fields after the parenthesised comm; utime and stime are fields 14 and 15.
        let rest = &stat[stat.rfind(')').context("bad stat")? + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 = f[11].parse::<u64>()? + f[12].parse::<u64>()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let kb = |key: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
                .unwrap_or(0)
        };
        Ok(ProcStats {
            cpu_secs: ticks as f64 / clock_ticks(),
            rss: kb("VmRSS:") * 1024,
            hwm: kb("VmHWM:") * 1024,
            at: Instant::now(),
        })
    }

    /// CPU used since `earlier`, as a fraction of one core.
    pub fn cpu_share_since(&self, earlier: &ProcStats) -> f64 {
        let wall = self.at.duration_since(earlier.at).as_secs_f64();
        if wall > 0.0 {
            (self.cpu_secs - earlier.cpu_secs) / wall
        } else {
            0.0
        }
    }
}

/// `USER_HZ`: the unit of `/proc/<pid>/stat` times, fixed at 100 in Linux's ABI.
fn clock_ticks() -> f64 {
    100.0
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

pub const MIB: f64 = 1024.0 * 1024.0;

/// CPU time of the live threads of `pid` in seconds, from `schedstat` (ns resolution,
/// unlike the 10 ms ticks of `stat`; threads that already exited are not counted).
pub fn cpu_secs_precise(pid: u32) -> Result<f64> {
    let mut ns: u64 = 0;
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let path = t?.path().join("schedstat");
        if let Ok(s) = std::fs::read_to_string(path) {
            ns += s
                .split_whitespace()
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
        }
    }
    Ok(ns as f64 / 1e9)
}
