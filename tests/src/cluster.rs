//! A real cluster for one test: coordinator, storage nodes and agents as child
//! processes on free loopback ports, sharing a temp dir and a fresh cluster secret.
//! Every node is started with that secret (`--cluster-secret-file`), so every call
//! the coordinator makes to a node is a signed one; a test that reads a node directly
//! signs its calls too ([`crate::nodecall`], [`TestCluster::node_call`]).
//!
//! Coordinator HA ([`Options::etcd_members`], [`Options::coordinators`]): a real etcd
//! (one member or several) and K coordinators `c1`..`cK` on it, each on its own port
//! with `--coordinator-id cK --advertise-url <its URL>`; agents get every
//! coordinator's URL (`--coordinator a,b,c`). Helpers find the leader by asking each
//! coordinator's `/v1/cluster` for its role, signal or restart one coordinator, and
//! read one coordinator's metrics. Without those options (the default) nothing
//! changes: one coordinator on redb.

use crate::delay::DelayProxy;
use crate::etcd::Etcd;
use crate::http;
use crate::netns::Net;
use crate::proc::{bin, free_port, Life, Proc};
use crate::{poll_until, try_poll_until};
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
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
    /// Give every storage node a `--data-dir`, at [`TestCluster::node_data_dir`];
    /// without it nodes keep their data in memory.
    pub node_data_dirs: bool,
    /// Put a [`DelayProxy`] in front of each storage node: the node advertises the
    /// proxy, so a test can slow every call to it (its agent checks it directly).
    pub delay_proxies: bool,
    /// Start a real etcd of this many members (3 for a quorum that survives one
    /// loss) and keep the coordinators' state in it; 0 (the default): no etcd, the
    /// coordinator keeps its state in redb.
    pub etcd_members: usize,
    /// How many coordinators (`c1`..`cK`); more than one needs `etcd_members`.
    pub coordinators: usize,
    /// `--leader-lease-ttl` of every coordinator when on etcd (whole seconds).
    pub leader_lease_ttl: &'static str,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            nodes: 3,
            interval: "1s",
            coordinator_args: Vec::new(),
            tls: false,
            node_data_dirs: false,
            delay_proxies: false,
            etcd_members: 0,
            coordinators: 1,
            leader_lease_ttl: "3s",
        }
    }
}

/// A fresh temp dir holding the cluster secret (mode 0600, as Torua demands).
pub fn dir_with_secret(prefix: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::Builder::new().prefix(prefix).tempdir().unwrap();
    let secret_file = dir.path().join("cluster-secret");
    std::fs::write(&secret_file, SECRET).unwrap();
    std::fs::set_permissions(&secret_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    (dir, secret_file)
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
    /// Each node's id, in the order of `nodes` (`n1`, `n2`, … by default).
    pub node_ids: Vec<String>,
    pub node_urls: Vec<String>,
    pub agent_urls: Vec<String>,
    pub env: ProcEnv,
    pub node_data_dirs: bool,
    /// One per node when [`Options::delay_proxies`] is set, else empty.
    pub proxies: Vec<DelayProxy>,
    pub delay_proxies: bool,
    /// Coordinators `c2`..`cK` of an HA cluster ([`Options::coordinators`]); `coord`
    /// is `c1`. Empty without HA.
    pub more_coords: Vec<Proc>,
    /// Every coordinator's URL, `c1` (= `url`) first.
    pub coord_urls: Vec<String>,
    /// What the harness last did to each coordinator, `c1` first.
    pub coord_life: Vec<Life>,
    /// The etcd of an HA cluster ([`Options::etcd_members`]). Last, so that it is
    /// dropped (killed) after the coordinators.
    pub etcd: Option<Etcd>,
}

impl TestCluster {
    pub fn start(opts: Options) -> TestCluster {
        TestCluster::start_with_env(opts, Arc::new(|_| Vec::new()))
    }

    /// Like [`TestCluster::start`], with extra environment variables per process.
    pub fn start_with_env(opts: Options, env: ProcEnv) -> TestCluster {
        assert!(opts.coordinators >= 1, "a cluster needs a coordinator");
        assert!(
            opts.coordinators == 1 || opts.etcd_members > 0,
            "{} coordinators need an etcd (Options::etcd_members)",
            opts.coordinators
        );
        let (dir, secret_file) = dir_with_secret("torua-e2e-");
        let etcd = (opts.etcd_members > 0).then(|| Etcd::start(dir.path(), opts.etcd_members));
        let scheme = if opts.tls { "https" } else { "http" };
        let ports: Vec<u16> = (0..opts.coordinators).map(|_| free_port()).collect();
        let coord_urls: Vec<String> = ports
            .iter()
            .map(|p| format!("{scheme}://127.0.0.1:{p}"))
            .collect();
        let url = coord_urls[0].clone();
        let tls = opts
            .tls
            .then(|| create_certificates(&dir.path().join("tls")));
        let ca_file = tls.as_ref().map(|t| t.join("ca.pem"));
        let mut coords: Vec<Proc> = Vec::new();
        for (i, port) in ports.iter().enumerate() {
            let id = format!("c{}", i + 1);
            // One coordinator keeps the names (process, log, data dir) it always had.
            let name = if opts.coordinators == 1 {
                "coordinator".to_string()
            } else {
                format!("coordinator-{id}")
            };
            let mut args: Vec<String> = vec!["--listen".into(), format!("127.0.0.1:{port}")];
            // On etcd a coordinator keeps nothing on disk (`data_dir` is unused).
            if etcd.is_none() {
                args.extend([
                    "--data-dir".into(),
                    dir.path().join(&name).display().to_string(),
                ]);
            }
            args.extend([
                "--cluster-secret-file".into(),
                secret_file.display().to_string(),
            ]);
            if let Some(etcd) = &etcd {
                args.extend([
                    "--etcd-endpoints".into(),
                    etcd.endpoints_arg(),
                    "--leader-lease-ttl".into(),
                    opts.leader_lease_ttl.into(),
                    "--coordinator-id".into(),
                    id.clone(),
                    "--advertise-url".into(),
                    coord_urls[i].clone(),
                ]);
            }
            args.extend(opts.coordinator_args.iter().cloned());
            if let Some(tls) = &tls {
                args.extend([
                    "--tls-cert-file".into(),
                    tls.join("server.pem").display().to_string(),
                    "--tls-key-file".into(),
                    tls.join("server-key.pem").display().to_string(),
                ]);
            }
            coords.push(Proc::start_with_env(
                &name,
                "torua-coordinator",
                &args,
                dir.path(),
                &env(&name),
            ));
        }
        let coord = coords.remove(0);
        let coord_life = vec![Life::Running; opts.coordinators];
        let mut c = TestCluster {
            dir,
            secret_file,
            ca_file,
            coord,
            url,
            nodes: Vec::new(),
            agents: Vec::new(),
            node_ids: Vec::new(),
            node_urls: Vec::new(),
            agent_urls: Vec::new(),
            env,
            node_data_dirs: opts.node_data_dirs,
            proxies: Vec::new(),
            delay_proxies: opts.delay_proxies,
            more_coords: coords,
            coord_urls,
            coord_life,
            etcd,
        };
        if c.is_ha() {
            for i in 0..c.coordinators() {
                c.wait_coordinator_up(i);
            }
            c.wait_leader(Duration::from_secs(30));
        } else {
            c.wait_ready();
        }
        for i in 1..=opts.nodes {
            c.add_node(&format!("n{i}"), opts.interval);
        }
        c
    }

    /// A cluster whose storage hosts (node + agent) each live in one of `net`'s
    /// namespaces, the coordinator (listening on every address) in the root one.
    pub fn start_partitioned(net: &Net, coordinator_args: Vec<String>) -> TestCluster {
        let (dir, secret_file) = dir_with_secret("torua-e2e-net-");
        let port = free_port();
        let mut args = vec![
            "--listen".to_string(),
            format!("0.0.0.0:{port}"),
            "--data-dir".into(),
            dir.path().join("coordinator").display().to_string(),
            "--cluster-secret-file".into(),
            secret_file.display().to_string(),
            // It must listen beyond loopback for the namespaces to reach it; these
            // tests are about the network, not about client tokens.
            "--insecure-no-auth".into(),
        ];
        args.extend(coordinator_args);
        let coord = Proc::start("coordinator", "torua-coordinator", &args, dir.path());
        let url = format!("http://127.0.0.1:{port}");
        let ip = Path::new("/usr/sbin/ip");
        let ip = if ip.exists() {
            ip
        } else {
            Path::new("/sbin/ip")
        };
        let (mut nodes, mut agents, mut node_urls, mut agent_urls) =
            (vec![], vec![], vec![], vec![]);
        for (i, host) in net.hosts.iter().enumerate() {
            let id = format!("n{}", i + 1);
            let node_url = format!("http://{}:7401", host.addr);
            let mut node_args = net.exec_in(i);
            node_args.extend([
                bin("torua-node").display().to_string(),
                "--listen".into(),
                format!("{}:7401", host.addr),
                "--node-id".into(),
                id.clone(),
                "--data-dir".into(),
                dir.path().join(format!("data-{id}")).display().to_string(),
                "--cluster-secret-file".into(),
                secret_file.display().to_string(),
            ]);
            nodes.push(Proc::start_exe(
                &format!("node-{id}"),
                ip,
                &node_args,
                dir.path(),
            ));
            let mut agent_args = net.exec_in(i);
            agent_args.extend([
                bin("torua-agent").display().to_string(),
                "--node-id".into(),
                id.clone(),
                "--node-addr".into(),
                node_url.clone(),
                "--coordinator".into(),
                format!("http://{}:{port}", host.gateway),
                "--listen".into(),
                format!("{}:7501", host.addr),
                "--interval".into(),
                "250ms".into(),
                "--cluster-secret-file".into(),
                secret_file.display().to_string(),
                "--http-check".into(),
                format!("{node_url}/health"),
            ]);
            agents.push(Proc::start_exe(
                &format!("agent-{id}"),
                ip,
                &agent_args,
                dir.path(),
            ));
            node_urls.push(node_url);
            agent_urls.push(format!("http://{}:7501", host.addr));
        }
        let node_ids = (1..=net.hosts.len()).map(|i| format!("n{i}")).collect();
        let c = TestCluster {
            dir,
            secret_file,
            ca_file: None,
            coord,
            url: url.clone(),
            nodes,
            agents,
            node_ids,
            node_urls,
            agent_urls,
            env: Arc::new(|_| Vec::new()),
            node_data_dirs: true,
            proxies: Vec::new(),
            delay_proxies: false,
            more_coords: Vec::new(),
            coord_urls: vec![url],
            coord_life: vec![Life::Running],
            etcd: None,
        };
        c.wait_ready();
        c
    }

    pub fn wait_ready(&self) {
        wait_coordinator_ready(&self.url, &self.coord);
    }

    /// Starts a storage node and its agent; both derive the node's key from the
    /// cluster secret.
    pub fn add_node(&mut self, id: &str, interval: &str) {
        let node_port = free_port();
        let agent_port = free_port();
        let node_url = format!("http://127.0.0.1:{node_port}");
        let node_name = format!("node-{id}");
        let mut node_args = vec![
            "--listen".into(),
            format!("127.0.0.1:{node_port}"),
            "--node-id".into(),
            id.into(),
            "--cluster-secret-file".into(),
            self.secret_file.display().to_string(),
        ];
        if let Some(data_dir) = self.node_data_dir(id) {
            node_args.extend(["--data-dir".into(), data_dir.display().to_string()]);
        }
        let node = Proc::start_with_env(
            &node_name,
            "torua-node",
            &node_args,
            self.dir.path(),
            &(self.env)(&node_name),
        );
        // The agent starts once its node listens, as a sidecar ordered after its
        // node would: on a loaded machine its first check would otherwise find the
        // port closed and report the node unhealthy before any fault.
        let node_addr = std::net::SocketAddr::from(([127, 0, 0, 1], node_port));
        poll_until(Duration::from_secs(20), &format!("{id} listening"), || {
            std::net::TcpStream::connect_timeout(&node_addr, Duration::from_millis(200))
                .map(drop)
                .map_err(|e| e.to_string())
        });
        let agent_name = format!("agent-{id}");
        let mut agent_args = self.agent_args(id, &node_url, agent_port, interval);
        let node_url = if self.delay_proxies {
            let proxy = DelayProxy::start(([127, 0, 0, 1], node_port).into());
            let advertised = proxy.url();
            self.proxies.push(proxy);
            // Everyone else reaches the node through the proxy; the agent's check
            // stays direct, as a sidecar's would.
            let at = agent_args.iter().position(|a| a == "--node-addr").unwrap() + 1;
            agent_args[at] = advertised.clone();
            advertised
        } else {
            node_url
        };
        let agent = Proc::start_with_env(
            &agent_name,
            "torua-agent",
            &agent_args,
            self.dir.path(),
            &(self.env)(&agent_name),
        );
        self.nodes.push(node);
        self.agents.push(agent);
        self.node_ids.push(id.to_string());
        self.node_urls.push(node_url);
        self.agent_urls
            .push(format!("http://127.0.0.1:{agent_port}"));
    }

    /// Where node `id` keeps its data (`Options::node_data_dirs`):
    /// `<dir>/nodes/<id>/data`, three levels below the cluster's temp dir, so that a
    /// key with up to three `..` used as a path from it still lands inside that dir.
    pub fn node_data_dir(&self, id: &str) -> Option<PathBuf> {
        self.node_data_dirs
            .then(|| self.dir.path().join("nodes").join(id).join("data"))
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
            &self.coord_urls.join(","),
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
        let r = http::get(&format!("{}/v1/nodes", self.api_url()))?;
        r.json()["nodes"]
            .as_array()
            .cloned()
            .ok_or_else(|| format!("bad /v1/nodes: {}", r.text()))
    }

    pub fn node(&self, id: &str) -> Result<Value, String> {
        let r = http::get(&format!("{}/v1/nodes/{id}", self.api_url()))?;
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

    /// A call to node `i` (0-based, as in `nodes`) signed with its key, as the
    /// coordinator makes them: for tests that read a node directly.
    pub fn node_call(
        &self,
        i: usize,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<http::Reply, String> {
        crate::nodecall::send(
            &self.node_urls[i],
            &self.node_ids[i],
            method,
            path,
            headers,
            body,
        )
    }
}

/// Data-path helpers over the coordinator's `/v1/data` API.
impl TestCluster {
    pub fn key_url(&self, key: &str) -> String {
        format!("{}/v1/data/{}", self.api_url(), encode_key(key))
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
        Ok(http::get(&format!("{}/v1/cluster", self.api_url()))?.json())
    }

    pub fn shards_json(&self) -> Result<Vec<Value>, String> {
        let r = http::get(&format!("{}/v1/shards", self.api_url()))?;
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

/// Everything a refused or no-op call must leave as it was: every node as
/// `/v1/nodes` lists it and the whole shard map as `/v1/shards` lists it (holders,
/// in-sync flags, epochs, pins, health). Only what changes with time alone is left
/// out: each node's heartbeat age, phi, time in its state, each check's duration, and
/// the values (not the names) of the metrics its agent reports. Compare two with
/// `assert_eq!`, which shows both on a difference.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterState {
    /// Each node's JSON view without the time-varying fields, in id order.
    pub nodes: Vec<Value>,
    /// The whole `/v1/shards` answer.
    pub shards: Value,
}

impl ClusterState {
    /// Reads the state of the coordinator at `url`.
    pub fn read(url: &str) -> Result<ClusterState, String> {
        let r = http::get(&format!("{url}/v1/nodes"))?;
        let mut nodes = r.json()["nodes"]
            .as_array()
            .cloned()
            .ok_or_else(|| format!("bad /v1/nodes: {}", r.text()))?;
        for n in &mut nodes {
            without_time_varying_fields(n)?;
        }
        nodes.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
        let r = http::get(&format!("{url}/v1/shards"))?;
        let shards = r.json();
        if r.status != 200 || !shards["shards"].is_array() {
            return Err(format!("bad /v1/shards: {} {}", r.status, r.text()));
        }
        Ok(ClusterState { nodes, shards })
    }
}

/// Removes from a `/v1/nodes` entry what changes while nothing happens; fails on a
/// view without them, so a renamed field cannot silently widen the comparison.
fn without_time_varying_fields(n: &mut Value) -> Result<(), String> {
    if !n.is_object() {
        return Err(format!("node is not an object: {n}"));
    }
    let o = n.as_object_mut().expect("an object");
    for field in ["heartbeat_age_seconds", "phi", "state_since_seconds"] {
        o.remove(field)
            .ok_or_else(|| format!("no {field} in a node view"))?;
    }
    for check in o
        .get_mut("checks")
        .and_then(Value::as_array_mut)
        .ok_or("no checks in a node view")?
    {
        if check
            .as_object_mut()
            .and_then(|c| c.remove("duration_ms"))
            .is_none()
        {
            return Err(format!("no duration_ms in a check: {check}"));
        }
    }
    let metrics = o
        .get_mut("metrics")
        .and_then(Value::as_object_mut)
        .ok_or("no metrics in a node view")?;
    for v in metrics.values_mut() {
        *v = Value::Null;
    }
    Ok(())
}

impl TestCluster {
    /// [`ClusterState::read`] of this cluster's coordinator.
    pub fn state(&self) -> Result<ClusterState, String> {
        ClusterState::read(self.api_url())
    }
}

/// How long one poll of one coordinator may take: a frozen one (SIGSTOP) accepts the
/// connection and never answers, and must not hold up a poll of the others.
pub const POLL_TIMEOUT: Duration = Duration::from_millis(800);

/// Coordinator HA: several coordinators on one etcd ([`Options::coordinators`]).
/// Coordinators are numbered from 0 (`c1`) to K-1 (`cK`).
impl TestCluster {
    /// More than one coordinator, or one on etcd.
    pub fn is_ha(&self) -> bool {
        self.etcd.is_some() || !self.more_coords.is_empty()
    }

    pub fn coordinators(&self) -> usize {
        1 + self.more_coords.len()
    }

    /// The `--coordinator-id` of coordinator `i`.
    pub fn coord_id(i: usize) -> String {
        format!("c{}", i + 1)
    }

    pub fn coordinator(&self, i: usize) -> &Proc {
        if i == 0 {
            &self.coord
        } else {
            &self.more_coords[i - 1]
        }
    }

    pub fn coordinator_mut(&mut self, i: usize) -> &mut Proc {
        if i == 0 {
            &mut self.coord
        } else {
            &mut self.more_coords[i - 1]
        }
    }

    pub fn coord_url(&self, i: usize) -> &str {
        &self.coord_urls[i]
    }

    /// The coordinators the harness has not killed, stopped or terminated.
    pub fn running_coordinators(&self) -> Vec<usize> {
        (0..self.coordinators())
            .filter(|&i| self.coord_life[i] == Life::Running)
            .collect()
    }

    /// The coordinator the shared helpers (`nodes_json`, `put`, `wait_green`, ...)
    /// talk to: `url` (c1) without HA, whatever happened to it; with HA the first
    /// coordinator still running (every coordinator serves those routes).
    pub fn api_url(&self) -> &str {
        if !self.is_ha() {
            return &self.url;
        }
        self.running_coordinators()
            .first()
            .map(|&i| self.coord_urls[i].as_str())
            .unwrap_or(&self.url)
    }

    /// Waits until coordinator `i` answers `/livez` (a follower may well not be
    /// ready in the load balancer's sense; it must be up).
    pub fn wait_coordinator_up(&self, i: usize) {
        let url = format!("{}/livez", self.coord_urls[i]);
        try_poll_until(
            Duration::from_secs(20),
            &format!("{} up", Self::coord_id(i)),
            || match http::get_within(&url, POLL_TIMEOUT) {
                Ok(r) if r.status == 200 => Ok(()),
                Ok(r) => Err(format!("status {}", r.status)),
                Err(e) => Err(e),
            },
        )
        .unwrap_or_else(|e| panic!("{e}\n{}", self.coord_log_tail(i)));
    }

    /// Coordinator `i`'s `/v1/cluster`, polled with [`POLL_TIMEOUT`].
    pub fn cluster_json_of(&self, i: usize) -> Result<Value, String> {
        let r = http::get_within(&format!("{}/v1/cluster", self.coord_urls[i]), POLL_TIMEOUT)?;
        if r.status == 200 {
            Ok(r.json())
        } else {
            Err(format!(
                "{} /v1/cluster: {} {}",
                Self::coord_id(i),
                r.status,
                r.text()
            ))
        }
    }

    /// The role coordinator `i` reports for itself (`leader`, `follower`,
    /// `candidate`) in `/v1/cluster`'s `coordinator.role`.
    pub fn role(&self, i: usize) -> Result<String, String> {
        let c = self.cluster_json_of(i)?;
        c["coordinator"]["role"]
            .as_str()
            .map(String::from)
            .ok_or_else(|| {
                format!(
                    "{}: no coordinator.role in /v1/cluster: {c}",
                    Self::coord_id(i)
                )
            })
    }

    /// The one running coordinator that reports itself leader right now; an error
    /// when none does, or more than one does.
    pub fn leader_now(&self) -> Result<usize, String> {
        let mut leaders = Vec::new();
        let mut seen = Vec::new();
        for i in self.running_coordinators() {
            match self.role(i) {
                Ok(role) => {
                    if role == "leader" {
                        leaders.push(i);
                    }
                    seen.push(format!("{}={role}", Self::coord_id(i)));
                }
                Err(e) => seen.push(format!("{}: {e}", Self::coord_id(i))),
            }
        }
        match leaders.as_slice() {
            [one] => Ok(*one),
            [] => Err(format!("no leader: {}", seen.join(", "))),
            _ => Err(format!("more than one leader: {}", seen.join(", "))),
        }
    }

    /// Waits until exactly one running coordinator reports itself leader.
    pub fn wait_leader(&self, timeout: Duration) -> usize {
        try_poll_until(timeout, "a coordinator to lead", || self.leader_now())
            .unwrap_or_else(|e| panic!("{e}\n{}", self.coord_logs()))
    }

    /// Waits until a running coordinator other than `old` reports itself leader;
    /// returns it and the time the wait took.
    pub fn wait_new_leader(&self, old: usize, timeout: Duration) -> (usize, Duration) {
        let start = std::time::Instant::now();
        let i = try_poll_until(timeout, "another coordinator to lead", || {
            match self.leader_now()? {
                i if i == old => Err(format!("{} still leads", Self::coord_id(i))),
                i => Ok(i),
            }
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", self.coord_logs()));
        (i, start.elapsed())
    }

    /// SIGKILL coordinator `i` (and reap it).
    pub fn kill_coordinator(&mut self, i: usize) {
        self.coordinator_mut(i).kill();
        self.coord_life[i] = Life::Gone;
    }

    /// SIGSTOP coordinator `i`.
    pub fn stop_coordinator(&mut self, i: usize) {
        self.coordinator(i).stop();
        self.coord_life[i] = Life::Stopped;
    }

    /// SIGCONT coordinator `i`.
    pub fn cont_coordinator(&mut self, i: usize) {
        self.coordinator(i).cont();
        self.coord_life[i] = Life::Running;
    }

    /// SIGTERM coordinator `i`: a graceful shutdown (a leader resigns). Does not
    /// wait for the exit; see [`Proc::wait_exit`].
    pub fn term_coordinator(&mut self, i: usize) {
        self.coordinator(i)
            .signal(nix::sys::signal::Signal::SIGTERM);
        self.coord_life[i] = Life::Gone;
    }

    /// Starts coordinator `i` again with the same arguments (killing it first if it
    /// still runs) and waits until it is up.
    pub fn restart_coordinator(&mut self, i: usize) {
        self.coordinator_mut(i).restart();
        self.coord_life[i] = Life::Running;
        self.wait_coordinator_up(i);
    }

    /// Coordinator `i`'s `/metrics`.
    pub fn metrics_of(&self, i: usize) -> Result<String, String> {
        let r = http::get_within(&format!("{}/metrics", self.coord_urls[i]), POLL_TIMEOUT)?;
        if r.status == 200 {
            Ok(r.text())
        } else {
            Err(format!("{} /metrics: {}", Self::coord_id(i), r.status))
        }
    }

    /// One sample (`name` or `name{labels}` exactly as exposed) of coordinator `i`.
    pub fn metric_of(&self, i: usize, series: &str) -> Result<f64, String> {
        let text = self.metrics_of(i)?;
        http::metric(&text, series)
            .ok_or_else(|| format!("{}: no sample {series} in /metrics", Self::coord_id(i)))
    }

    /// The last lines of coordinator `i`'s log.
    pub fn coord_log_tail(&self, i: usize) -> String {
        format!(
            "--- {} log ---\n{}",
            Self::coord_id(i),
            crate::etcd::tail(&self.coordinator(i).log_text(), 40)
        )
    }

    /// The tails of every coordinator's log (and etcd's), for a failure message.
    pub fn coord_logs(&self) -> String {
        let mut out: Vec<String> = (0..self.coordinators())
            .map(|i| self.coord_log_tail(i))
            .collect();
        if let Some(etcd) = &self.etcd {
            out.push(etcd.logs());
        }
        out.join("\n")
    }
}

/// Data-path and state helpers through one chosen coordinator.
impl TestCluster {
    pub fn key_url_via(&self, i: usize, key: &str) -> String {
        format!("{}/v1/data/{}", self.coord_urls[i], encode_key(key))
    }

    pub fn put_via(&self, i: usize, key: &str, value: &[u8]) -> Result<(), String> {
        put_at(&self.coord_urls[i], key, value)
    }

    pub fn get_via(&self, i: usize, key: &str) -> Result<Option<Vec<u8>>, String> {
        get_at(&self.coord_urls[i], key)
    }

    pub fn delete_via(&self, i: usize, key: &str) -> Result<(), String> {
        delete_at(&self.coord_urls[i], key)
    }

    pub fn shards_json_of(&self, i: usize) -> Result<Vec<Value>, String> {
        shards_at(&self.coord_urls[i])
    }

    pub fn nodes_json_of(&self, i: usize) -> Result<Vec<Value>, String> {
        let r = http::get_within(&format!("{}/v1/nodes", self.coord_urls[i]), POLL_TIMEOUT)?;
        r.json()["nodes"]
            .as_array()
            .cloned()
            .ok_or_else(|| format!("bad /v1/nodes: {} {}", r.status, r.text()))
    }
}

/// `PUT <base>/v1/data/<key>`: `Ok` on 204.
pub fn put_at(base: &str, key: &str, value: &[u8]) -> Result<(), String> {
    let url = format!("{base}/v1/data/{}", encode_key(key));
    let r = http::send("PUT", &url, &[], value)?;
    if r.status == 204 {
        Ok(())
    } else {
        Err(format!("PUT {key} via {base}: {} {}", r.status, r.text()))
    }
}

/// `GET <base>/v1/data/<key>`: the value, `None` on 404.
pub fn get_at(base: &str, key: &str) -> Result<Option<Vec<u8>>, String> {
    let r = http::get(&format!("{base}/v1/data/{}", encode_key(key)))?;
    match r.status {
        200 => Ok(Some(r.body)),
        404 => Ok(None),
        s => Err(format!("GET {key} via {base}: {s} {}", r.text())),
    }
}

/// `DELETE <base>/v1/data/<key>`: `Ok` on 204.
pub fn delete_at(base: &str, key: &str) -> Result<(), String> {
    let url = format!("{base}/v1/data/{}", encode_key(key));
    let r = http::send("DELETE", &url, &[], b"")?;
    if r.status == 204 {
        Ok(())
    } else {
        Err(format!(
            "DELETE {key} via {base}: {} {}",
            r.status,
            r.text()
        ))
    }
}

/// `GET <base>/v1/shards`'s `shards`, polled with [`POLL_TIMEOUT`].
pub fn shards_at(base: &str) -> Result<Vec<Value>, String> {
    let r = http::get_within(&format!("{base}/v1/shards"), POLL_TIMEOUT)?;
    r.json()["shards"]
        .as_array()
        .cloned()
        .ok_or_else(|| format!("bad /v1/shards via {base}: {} {}", r.status, r.text()))
}
