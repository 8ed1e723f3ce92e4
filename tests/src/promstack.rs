//! The real Prometheus and Alertmanager next to a [`TestCluster`]: generated configs in
//! the cluster's temp dir, processes on free loopback ports (killed on drop), a query
//! helper, and a minimal webhook receiver that records what Alertmanager posts.

use crate::cluster::{encode_key, TestCluster};
use crate::http;
use crate::poll_until;
use crate::proc::{free_port, Proc};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// `host:port` of an `http://host:port` URL.
pub fn host_port(url: &str) -> &str {
    url.trim_start_matches("http://").trim_end_matches('/')
}

/// A Prometheus config scraping the cluster every second: jobs `torua-coordinator`,
/// `torua-agent` and `torua-node` (agent and node targets labelled `node: n<i>`, as
/// in deploy/prometheus/prometheus-dev.yml), with `rule_files` and, if given, an
/// Alertmanager on 127.0.0.1:`alertmanager_port`.
pub fn prometheus_config(
    c: &TestCluster,
    rule_files: &[PathBuf],
    alertmanager_port: Option<u16>,
) -> String {
    let mut y = String::from(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n  external_labels:\n    cluster: e2e\n",
    );
    y.push_str("rule_files:\n");
    for f in rule_files {
        y.push_str(&format!("  - {:?}\n", f.display().to_string()));
    }
    if let Some(port) = alertmanager_port {
        y.push_str(&format!(
            "alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: [\"127.0.0.1:{port}\"]\n"
        ));
    }
    y.push_str("scrape_configs:\n");
    y.push_str(&format!(
        "  - job_name: torua-coordinator\n    static_configs:\n      - targets: [\"{}\"]\n",
        host_port(&c.url)
    ));
    for (job, urls) in [("torua-agent", &c.agent_urls), ("torua-node", &c.node_urls)] {
        y.push_str(&format!("  - job_name: {job}\n    static_configs:\n"));
        for (i, u) in urls.iter().enumerate() {
            y.push_str(&format!(
                "      - targets: [\"{}\"]\n        labels: {{ node: n{} }}\n",
                host_port(u),
                i + 1
            ));
        }
    }
    y
}

/// Number of scrape targets [`prometheus_config`] generates for `c`.
pub fn target_count(c: &TestCluster) -> usize {
    1 + c.agent_urls.len() + c.node_urls.len()
}

pub struct Prometheus {
    pub proc: Proc,
    pub url: String,
}

impl Prometheus {
    /// Writes `config` to `<dir>/prometheus.yml` and starts `prometheus` (at `exe`) on
    /// it with its TSDB in `<dir>/prometheus-data`; waits until it is ready.
    pub fn start(exe: &Path, dir: &Path, config: &str) -> Prometheus {
        let file = dir.join("prometheus.yml");
        std::fs::write(&file, config).unwrap();
        let port = free_port();
        let args = vec![
            format!("--config.file={}", file.display()),
            format!(
                "--storage.tsdb.path={}",
                dir.join("prometheus-data").display()
            ),
            format!("--web.listen-address=127.0.0.1:{port}"),
            "--web.enable-lifecycle".to_string(),
        ];
        let p = Prometheus {
            proc: Proc::start_exe("prometheus", exe, &args, dir),
            url: format!("http://127.0.0.1:{port}"),
        };
        p.wait_ready();
        p
    }

    fn wait_ready(&self) {
        poll_until(
            Duration::from_secs(30),
            "prometheus /-/ready",
            || match http::get(&format!("{}/-/ready", self.url)) {
                Ok(r) if r.status == 200 => Ok(()),
                Ok(r) => Err(format!("status {}: {}", r.status, r.text())),
                Err(e) => Err(format!("{e}; log:\n{}", self.proc.log_text())),
            },
        );
    }

    /// `GET /api/v1/<path>`; the `data` of a `success` answer, else the error.
    pub fn api(&self, path_and_query: &str) -> Result<Value, String> {
        let r = http::get(&format!("{}/api/v1/{path_and_query}", self.url))?;
        let v = r.json();
        if v["status"] == "success" {
            Ok(v["data"].clone())
        } else {
            Err(format!("HTTP {}: {}", r.status, r.text()))
        }
    }

    /// An instant query; the result vector (or scalar/string as a one-element list).
    pub fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let data = self.api(&format!("query?query={}", encode_key(expr)))?;
        match &data["result"] {
            Value::Array(a) if data["resultType"] != "scalar" && data["resultType"] != "string" => {
                Ok(a.clone())
            }
            other => Ok(vec![other.clone()]),
        }
    }

    /// Waits until `up` is 1 for `targets` series.
    pub fn wait_targets_up(&self, targets: usize, timeout: Duration) {
        poll_until(timeout, &format!("up == 1 for {targets} targets"), || {
            let up = self.query("up")?;
            let ok = up.iter().filter(|s| s["value"][1] == "1").count();
            if ok == targets && up.len() == targets {
                Ok(())
            } else {
                Err(serde_json::to_string(&up).unwrap())
            }
        });
    }
}

/// An Alertmanager config routing every alert to `webhook_url` quickly (group_wait and
/// group_interval 1s, repeat_interval 1m), with resolved notifications.
pub fn alertmanager_config(webhook_url: &str) -> String {
    format!(
        "route:\n  receiver: webhook\n  group_by: [alertname, node]\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1m\nreceivers:\n  - name: webhook\n    webhook_configs:\n      - url: {webhook_url:?}\n        send_resolved: true\n"
    )
}

pub struct Alertmanager {
    pub proc: Proc,
    pub url: String,
    pub port: u16,
}

impl Alertmanager {
    /// Writes `config` to `<dir>/alertmanager.yml` and starts `prometheus-alertmanager`
    /// (at `exe`) without clustering; waits until it is ready.
    pub fn start(exe: &Path, dir: &Path, config: &str) -> Alertmanager {
        let file = dir.join("alertmanager.yml");
        std::fs::write(&file, config).unwrap();
        let port = free_port();
        let args = vec![
            format!("--config.file={}", file.display()),
            format!("--storage.path={}", dir.join("alertmanager-data").display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
            "--cluster.listen-address=".to_string(),
        ];
        let am = Alertmanager {
            proc: Proc::start_exe("alertmanager", exe, &args, dir),
            url: format!("http://127.0.0.1:{port}"),
            port,
        };
        poll_until(
            Duration::from_secs(30),
            "alertmanager /-/ready",
            || match http::get(&format!("{}/-/ready", am.url)) {
                Ok(r) if r.status == 200 => Ok(()),
                Ok(r) => Err(format!("status {}: {}", r.status, r.text())),
                Err(e) => Err(format!("{e}; log:\n{}", am.proc.log_text())),
            },
        );
        am
    }
}

/// A blocking HTTP receiver on 127.0.0.1:0 that answers 200 to everything and records
/// the body of every POST. Stopped on drop.
pub struct Webhook {
    pub url: String,
    addr: SocketAddr,
    bodies: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Webhook {
    pub fn start() -> Webhook {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (bodies, stop) = (bodies.clone(), stop.clone());
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    if let Ok(conn) = conn {
                        let bodies = bodies.clone();
                        std::thread::spawn(move || serve(conn, &bodies));
                    }
                }
            })
        };
        Webhook {
            url: format!("http://{addr}/alerts"),
            addr,
            bodies,
            stop,
            thread: Some(thread),
        }
    }

    /// Bodies of the POSTs received so far, in order.
    pub fn bodies(&self) -> Vec<String> {
        self.bodies.lock().unwrap().clone()
    }
}

/// Serves requests on one connection until it closes or idles for 10 s (keep-alive
/// is allowed).
fn serve(conn: TcpStream, bodies: &Mutex<Vec<String>>) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let mut out = match conn.try_clone() {
        Ok(c) => c,
        Err(_) => return,
    };
    let mut r = BufReader::new(conn);
    loop {
        let mut request_line = String::new();
        if r.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut len = 0usize;
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                if k.trim().eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0; len];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        if request_line.starts_with("POST ") {
            bodies
                .lock()
                .unwrap()
                .push(String::from_utf8_lossy(&body).into_owned());
        }
        if out
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            .is_err()
        {
            return;
        }
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
