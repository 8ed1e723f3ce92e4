//! Locating, building and supervising the real binaries.

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Path of a workspace binary, built (once per test process) by `cargo build`, so the
/// tests never run a stale binary whatever `cargo test` built.
pub fn bin(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--bins", "--workspace", "--quiet"]);
        if profile_dir().ends_with("release") {
            cmd.arg("--release");
        }
        let status = cmd
            .current_dir(workspace_root())
            .status()
            .expect("run cargo build");
        assert!(status.success(), "cargo build --bins failed");
    });
    let p = assert_cmd::cargo::cargo_bin(name);
    assert!(p.exists(), "{} was not built", p.display());
    p
}

fn profile_dir() -> PathBuf {
    // target/<profile>/deps/<test-binary>
    let exe = std::env::current_exe().expect("current exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>")
        .to_path_buf()
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// What a test last did to a process it signals, so helpers that poll every
/// process skip those that cannot answer (a frozen one would hold each poll until
/// its timeout).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Life {
    Running,
    /// SIGSTOP: the kernel still accepts connections, nobody answers.
    Stopped,
    /// SIGKILL, or SIGTERM and on its way out.
    Gone,
}

/// A running child process; killed (SIGKILL) on drop.
pub struct Proc {
    pub name: String,
    pub log: PathBuf,
    child: Child,
    exe: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

impl Proc {
    pub fn start(name: &str, bin_name: &str, args: &[String], dir: &Path) -> Proc {
        Proc::start_with_env(name, bin_name, args, dir, &[])
    }

    /// Like [`Proc::start`], with extra environment variables (kept for `restart`).
    pub fn start_with_env(
        name: &str,
        bin_name: &str,
        args: &[String],
        dir: &Path,
        env: &[(String, String)],
    ) -> Proc {
        let exe = bin(bin_name);
        let log = dir.join(format!("{name}.log"));
        let child = spawn(&exe, args, env, &log);
        Proc {
            name: name.into(),
            log,
            child,
            exe,
            args: args.to_vec(),
            env: env.to_vec(),
        }
    }

    /// Starts an external program (not a workspace binary, e.g. Prometheus) the same
    /// way: output to `<dir>/<name>.log`, killed on drop.
    pub fn start_exe(name: &str, exe: &Path, args: &[String], dir: &Path) -> Proc {
        let log = dir.join(format!("{name}.log"));
        let child = spawn(exe, args, &[], &log);
        Proc {
            name: name.into(),
            log,
            child,
            exe: exe.to_path_buf(),
            args: args.to_vec(),
            env: Vec::new(),
        }
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    pub fn signal(&self, sig: Signal) {
        kill(self.pid(), sig).unwrap_or_else(|e| panic!("{} {sig}: {e}", self.name));
    }

    pub fn stop(&self) {
        self.signal(Signal::SIGSTOP);
    }

    pub fn cont(&self) {
        self.signal(Signal::SIGCONT);
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the same command again (after `kill`), appending to the same log.
    pub fn restart(&mut self) {
        self.kill();
        self.child = spawn(&self.exe, &self.args, &self.env, &self.log);
    }

    /// Starts the same command again (after `kill`) with `env` instead of the
    /// environment it had, appending to the same log: a restart under libfaketime,
    /// or with a test fault switched on.
    pub fn restart_with_env(&mut self, env: &[(String, String)]) {
        self.env = env.to_vec();
        self.restart();
    }

    /// Waits for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn spawn(exe: &Path, args: &[String], env: &[(String, String)], log: &Path) -> Child {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("open log");
    Command::new(exe)
        .args(args)
        .env("RUST_LOG", "info")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", exe.display()))
}

impl Drop for Proc {
    fn drop(&mut self) {
        // A stopped process cannot act on SIGKILL until continued on some kernels'
        // views of the tree; continue it first so nothing lingers.
        let _ = kill(self.pid(), Signal::SIGCONT);
        self.kill();
    }
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A base port for a process that lays out its own ports as `base + offset`
/// (`torua dev`), with every offset free a moment ago.
///
/// The base is drawn below the kernel's ephemeral range (32768 and up on
/// Linux) so that `free_port()` in parallel tests and outbound connections,
/// which both take ephemeral ports, cannot land on it between the check and
/// the child's bind.
pub fn free_port_block(offsets: &[u16]) -> u16 {
    let seed = std::process::id() as u64
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() as u64)
            .unwrap_or(0);
    let span = offsets.iter().copied().max().unwrap_or(0);
    for attempt in 0..200u64 {
        let base = 10_000 + ((seed.wrapping_mul(2_654_435_761) + attempt * 7_919) % 20_000) as u16;
        if base as u32 + span as u32 >= 32_768 {
            continue;
        }
        let all_free = offsets
            .iter()
            .all(|o| std::net::TcpListener::bind(("127.0.0.1", base + o)).is_ok());
        if all_free {
            return base;
        }
    }
    panic!("no block of free loopback ports below 32768 for offsets {offsets:?}");
}
