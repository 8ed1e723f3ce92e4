//! A real cluster for one test: coordinator, storage nodes and agents as child
//! processes on free loopback ports, sharing a temp dir and a fresh cluster secret.

use crate::http;
use crate::poll_until;
use crate::proc::{free_port, Proc};
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

pub const SECRET: &str = "e2e-cluster-secret-0123456789abcdef0123456789";

pub struct Options {
    pub nodes: usize,
    pub interval: &'static str,
    pub coordinator_args: Vec<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            nodes: 3,
            interval: "1s",
            coordinator_args: Vec::new(),
        }
    }
}

pub struct TestCluster {
    pub dir: tempfile::TempDir,
    pub secret_file: PathBuf,
    pub coord: Proc,
    pub url: String,
    pub nodes: Vec<Proc>,
    pub agents: Vec<Proc>,
    pub node_urls: Vec<String>,
    pub agent_urls: Vec<String>,
}

impl TestCluster {
    pub fn start(opts: Options) -> TestCluster {
        let dir = tempfile::Builder::new().prefix("torua-e2e-").tempdir().unwrap();
        let secret_file = dir.path().join("cluster-secret");
        std::fs::write(&secret_file, SECRET).unwrap();
        std::fs::set_permissions(&secret_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let port = free_port();
        let url = format!("http://127.0.0.1:{port}");
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
        let coord = Proc::start("coordinator", "torua-coordinator", &args, dir.path());
        let mut c = TestCluster {
            dir,
            secret_file,
            coord,
            url,
            nodes: Vec::new(),
            agents: Vec::new(),
            node_urls: Vec::new(),
            agent_urls: Vec::new(),
        };
        c.wait_ready();
        for i in 1..=opts.nodes {
            c.add_node(&format!("n{i}"), opts.interval);
        }
        c
    }

    pub fn wait_ready(&self) {
        poll_until(Duration::from_secs(20), "coordinator /readyz", || {
            match http::get(&format!("{}/readyz", self.url)) {
                Ok(r) if r.status == 200 => Ok(()),
                Ok(r) => Err(format!("status {}", r.status)),
                Err(e) => Err(format!("{e}; log:\n{}", self.coord.log_text())),
            }
        });
    }

    /// Starts a storage node and its agent (the agent derives its key from the secret).
    pub fn add_node(&mut self, id: &str, interval: &str) {
        let node_port = free_port();
        let agent_port = free_port();
        let node_url = format!("http://127.0.0.1:{node_port}");
        let node = Proc::start(
            &format!("node-{id}"),
            "torua-node",
            &[
                "--listen".into(),
                format!("127.0.0.1:{node_port}"),
                "--node-id".into(),
                id.into(),
            ],
            self.dir.path(),
        );
        let agent = Proc::start(
            &format!("agent-{id}"),
            "torua-agent",
            &self.agent_args(id, &node_url, agent_port, interval),
            self.dir.path(),
        );
        self.nodes.push(node);
        self.agents.push(agent);
        self.node_urls.push(node_url);
        self.agent_urls.push(format!("http://127.0.0.1:{agent_port}"));
    }

    pub fn agent_args(&self, id: &str, node_url: &str, port: u16, interval: &str) -> Vec<String> {
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
