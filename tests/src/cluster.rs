//! A real cluster for one test: coordinator, storage nodes and agents as child
//! processes on free loopback ports, sharing a temp dir and a fresh cluster secret.

use crate::http;
use crate::poll_until;
use crate::proc::{free_port, Proc};
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub const SECRET: &str = "e2e-cluster-secret-0123456789abcdef0123456789";

pub struct Options {
    pub nodes: usize,
    pub interval: &'static str,
    pub coordinator_args: Vec<String>,
    /// Serve the coordinator over HTTPS with a CA made by `torua tls create`; agents
    /// and the harness's HTTP helpers trust that CA.
    pub tls: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            nodes: 3,
            interval: "1s",
            coordinator_args: Vec::new(),
            tls: false,
        }
    }
}

/// Extra environment for each process, by its name (`coordinator`, `node-n1`,
/// `agent-n1`, ...).
pub type ProcEnv = Arc<dyn Fn(&str) -> Vec<(String, String)> + Send + Sync>;

pub struct TestCluster {
    pub dir: tempfile::TempDir,
    pub secret_file: PathBuf,
    /// The CA of an HTTPS coordinator (`Options::tls`).
    pub ca_file: Option<PathBuf>,
    pub coord: Proc,
    pub url: String,
    pub nodes: Vec<Proc>,
    pub agents: Vec<Proc>,
    pub node_urls: Vec<String>,
    pub agent_urls: Vec<String>,
    pub env: ProcEnv,
}

impl TestCluster {
    pub fn start(opts: Options) -> TestCluster {
        TestCluster::start_with_env(opts, Arc::new(|_| Vec::new()))
    }

    /// Like [`TestCluster::start`], with extra environment variables per process.
    pub fn start_with_env(opts: Options, env: ProcEnv) -> TestCluster {
        let dir = tempfile::Builder::new()
            .prefix("torua-e2e-")
            .tempdir()
            .unwrap();
        let secret_file = dir.path().join("cluster-secret");
        std::fs::write(&secret_file, SECRET).unwrap();
        std::fs::set_permissions(&secret_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let port = free_port();
        let scheme = if opts.tls { "https" } else { "http" };
        let url = format!("{scheme}://127.0.0.1:{port}");
        let mut args: Vec<String> = [
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--data-dir".into(),
            dir.path().join("coordinator").display().to_string(),
            "--cluster-secret-file".into(),
            secret_file.display().to_string(),
        ]
        .into();
        args.extend(opts.coordinator_args.iter().cloned());
        let ca_file = opts.tls.then(|| {
            let tls = create_certificates(&dir.path().join("tls"));
            args.extend([
                "--tls-cert-file".into(),
                tls.join("server.pem").display().to_string(),
                "--tls-key-file".into(),
                tls.join("server-key.pem").display().to_string(),
            ]);
            tls.join("ca.pem")
        });
        let coord = Proc::start_with_env(
            "coordinator",
            "torua-coordinator",
            &args,
            dir.path(),
            &env("coordinator"),
        );
        let mut c = TestCluster {
            dir,
            secret_file,
            ca_file,
            coord,
            url,
            nodes: Vec::new(),
            agents: Vec::new(),
            node_urls: Vec::new(),
            agent_urls: Vec::new(),
            env,
        };
        c.wait_ready();
        for i in 1..=opts.nodes {
            c.add_node(&format!("n{i}"), opts.interval);
        }
        c
    }

    pub fn wait_ready(&self) {
        wait_coordinator_ready(&self.url, &self.coord);
    }

    /// Starts a storage node and its agent (the agent derives its key from the secret).
    pub fn add_node(&mut self, id: &str, interval: &str) {
        let node_port = free_port();
        let agent_port = free_port();
        let node_url = format!("http://127.0.0.1:{node_port}");
        let node_name = format!("node-{id}");
        let node = Proc::start_with_env(
            &node_name,
            "torua-node",
            &[
                "--listen".into(),
                format!("127.0.0.1:{node_port}"),
                "--node-id".into(),
                id.into(),
            ],
            self.dir.path(),
            &(self.env)(&node_name),
        );
        let agent_name = format!("agent-{id}");
        let agent = Proc::start_with_env(
            &agent_name,
            "torua-agent",
            &self.agent_args(id, &node_url, agent_port, interval),
            self.dir.path(),
            &(self.env)(&agent_name),
        );
        self.nodes.push(node);
        self.agents.push(agent);
        self.node_urls.push(node_url);
        self.agent_urls
            .push(format!("http://127.0.0.1:{agent_port}"));
    }

    pub fn agent_args(&self, id: &str, node_url: &str, port: u16, interval: &str) -> Vec<String> {
        let ca = self
            .ca_file
            .iter()
            .flat_map(|f| ["--coordinator-ca-file".to_string(), f.display().to_string()]);
        [
            "--node-id",
            id,
            "--node-addr",
            node_url,
            "--coordinator",
            &self.url,
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--interval",
            interval,
            "--cluster-secret-file",
            &self.secret_file.display().to_string(),
            "--http-check",
            &format!("{node_url}/health"),
        ]
        .iter()
        .map(|s| s.to_string())
        .chain(ca)
        .collect()
    }

    pub fn nodes_json(&self) -> Result<Vec<Value>, String> {
        let r = http::get(&format!("{}/v1/nodes", self.url))?;
        r.json()["nodes"]
            .as_array()
            .cloned()
            .ok_or_else(|| format!("bad /v1/nodes: {}", r.text()))
    }

    pub fn node(&self, id: &str) -> Result<Value, String> {
        let r = http::get(&format!("{}/v1/nodes/{id}", self.url))?;
        if r.status == 200 {
            Ok(r.json())
        } else {
            Err(format!("{}: {}", r.status, r.text()))
        }
    }

    /// Waits until node `id` is in `state`; returns its JSON view.
    pub fn wait_state(&self, id: &str, state: &str, timeout: Duration) -> Value {
        poll_until(timeout, &format!("{id} to be {state}"), || {
            let n = self.node(id)?;
            if n["state"] == state {
                Ok(n)
            } else {
                Err(n.to_string())
            }
        })
    }

    pub fn wait_all(&self, state: &str, timeout: Duration) {
        let want = self.agents.len();
        poll_until(timeout, &format!("{want} nodes {state}"), || {
            let nodes = self.nodes_json()?;
            let n = nodes.iter().filter(|n| n["state"] == state).count();
            if n == want && nodes.len() == want {
                Ok(())
            } else {
                Err(serde_json::to_string(&nodes).unwrap())
            }
        });
    }

    pub fn metrics(&self) -> String {
        http::get(&format!("{}/metrics", self.url)).unwrap().text()
    }
}

/// Data-path helpers over the coordinator's `/v1/data` API.
impl TestCluster {
    pub fn key_url(&self, key: &str) -> String {
        format!("{}/v1/data/{}", self.url, encode_key(key))
    }

    pub fn put(&self, key: &str, value: &[u8]) -> Result<(), String> {
        let r = http::send("PUT", &self.key_url(key), &[], value)?;
        if r.status == 204 {
            Ok(())
        } else {
            Err(format!("PUT {key}: {} {}", r.status, r.text()))
        }
    }

    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
        let r = http::get(&self.key_url(key))?;
        match r.status {
            200 => Ok(Some(r.body)),
            404 => Ok(None),
            s => Err(format!("GET {key}: {s} {}", r.text())),
        }
    }

    pub fn cluster_json(&self) -> Result<Value, String> {
        Ok(http::get(&format!("{}/v1/cluster", self.url))?.json())
    }

    pub fn shards_json(&self) -> Result<Vec<Value>, String> {
        let r = http::get(&format!("{}/v1/shards", self.url))?;
        r.json()["shards"]
            .as_array()
            .cloned()
            .ok_or_else(|| r.text())
    }

    /// Waits until the cluster is green with no move in flight.
    pub fn wait_green(&self, timeout: Duration) -> Value {
        poll_until(timeout, "cluster green and settled", || {
            let c = self.cluster_json()?;
            if c["status"] == "green" && c["moves_in_flight"] == 0 {
                Ok(c)
            } else {
                Err(c.to_string())
            }
        })
    }
}

/// Percent-encodes everything but unreserved characters and `/`.
pub fn encode_key(key: &str) -> String {
    let mut out = String::new();
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl TestCluster {
    /// Every shard has a primary and rf-1 in-sync replicas on distinct known nodes.
    /// Waits until [`TestCluster::check_consistent_map`] holds: a surplus copy is
    /// trimmed, and an in-progress copy finishes, a pass after the move that made it.
    pub fn wait_consistent_map(&self, rf: usize, timeout: Duration) -> Result<(), String> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            match self.check_consistent_map(rf) {
                Ok(()) => return Ok(()),
                Err(e) if std::time::Instant::now() >= deadline => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    pub fn check_consistent_map(&self, rf: usize) -> Result<(), String> {
        let known: Vec<String> = self
            .nodes_json()?
            .iter()
            .filter_map(|n| n["id"].as_str().map(str::to_owned))
            .collect();
        for s in self.shards_json()? {
            let mut holders = vec![s["primary"]
                .as_str()
                .ok_or_else(|| format!("no primary: {s}"))?
                .to_string()];
            for r in s["replicas"].as_array().into_iter().flatten() {
                if r["in_sync"] != true {
                    return Err(format!("copy in progress: {s}"));
                }
                holders.push(r["node"].as_str().unwrap_or("?").to_string());
            }
            let mut distinct = holders.clone();
            distinct.sort();
            distinct.dedup();
            if holders.len() != rf
                || distinct.len() != rf
                || !holders.iter().all(|h| known.contains(h))
            {
                return Err(format!("want {rf} distinct known holders: {s}"));
            }
        }
        Ok(())
    }
}

/// The holders of a shard as `/v1/shards` lists it, primary first.
pub fn shard_holders(shard: &Value) -> Vec<String> {
    std::iter::once(&shard["primary"])
        .chain(
            shard["replicas"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| &r["node"]),
        )
        .filter_map(|n| n.as_str().map(String::from))
        .collect()
}

/// A CA and a coordinator certificate for 127.0.0.1 in `dir`, made by the real
/// `torua tls create`; the harness's HTTP helpers trust the CA from now on.
pub fn create_certificates(dir: &std::path::Path) -> PathBuf {
    assert_cmd::Command::new(crate::proc::bin("torua"))
        .args(["tls", "create", "--dir"])
        .arg(dir)
        .assert()
        .success();
    http::trust(&std::fs::read(dir.join("ca.pem")).unwrap());
    dir.to_path_buf()
}

/// Waits until the coordinator at `url` answers `/readyz`, showing `proc`'s log if
/// it never does.
pub fn wait_coordinator_ready(url: &str, proc: &Proc) {
    poll_until(
        Duration::from_secs(20),
        "coordinator /readyz",
        || match http::get(&format!("{url}/readyz")) {
            Ok(r) if r.status == 200 => Ok(()),
            Ok(r) => Err(format!("status {}", r.status)),
            Err(e) => Err(format!("{e}; log:\n{}", proc.log_text())),
        },
    );
}
