//! etcd lease keep-alives, the way Kubernetes-style nodes heartbeat: one lease per
//! simulated node, renewed at the same aggregate rate, over the same number of
//! connections, as Torua's heartbeats (open loop, latency from the due time).
//! Needs the `etcd` cargo feature (etcd-client, which needs `protoc` to build).

use crate::heartbeats::{Args, Step};
use anyhow::Result;
use serde_json::Value;

#[cfg(not(feature = "etcd"))]
pub async fn compare(_args: &Args, _torua: &[Step]) -> Result<Value> {
    anyhow::bail!(
        "built without the `etcd` feature: apt-get install -y protobuf-compiler etcd-server, \
         then cargo build --release -p torua-bench --features etcd"
    )
}

#[cfg(feature = "etcd")]
pub use imp::compare;

#[cfg(feature = "etcd")]
mod imp {
    use super::*;
    use crate::heartbeats::{median_steps, print_steps};
    use crate::load::{run_rate, Outcome, Sender};
    use crate::proc::{find_tool, free_port, Proc, ProcStats, MIB};
    use crate::report::{self, f1, f2};
    use anyhow::{bail, Context};
    use etcd_client::{Client, LeaseKeepAliveStream, LeaseKeeper};
    use serde_json::json;
    use std::time::{Duration, Instant};

    /// Lease TTL: long enough that no lease expires between steps.
    const TTL_SECS: i64 = 60;

    struct Etcd {
        _dir: tempfile::TempDir,
        url: String,
        proc: Proc,
    }

    async fn start_etcd() -> Result<Etcd> {
        let exe = find_tool("etcd").context("etcd not installed (apt-get install etcd-server)")?;
        let dir = tempfile::Builder::new()
            .prefix("torua-bench-etcd-")
            .tempdir()?;
        let (client, peer) = (free_port(), free_port());
        let url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let args: Vec<String> = vec![
            "--name".into(),
            "bench".into(),
            "--data-dir".into(),
            dir.path().join("data").display().to_string(),
            "--listen-client-urls".into(),
            url.clone(),
            "--advertise-client-urls".into(),
            url.clone(),
            "--listen-peer-urls".into(),
            peer_url.clone(),
            "--initial-advertise-peer-urls".into(),
            peer_url.clone(),
            "--initial-cluster".into(),
            format!("bench={peer_url}"),
            "--logger".into(),
            "zap".into(),
            "--log-level".into(),
            "warn".into(),
        ];
        let mut proc = Proc::start("etcd", &exe, &args, dir.path(), "warn")?;
        for _ in 0..500 {
            proc.check_running()?;
            if let Ok(mut c) = Client::connect([url.as_str()], None).await {
                if c.status().await.is_ok() {
                    return Ok(Etcd {
                        _dir: dir,
                        url,
                        proc,
                    });
                }
            }
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
        bail!("etcd not ready after 20 s; log:\n{}", proc.log_tail())
    }

    /// One gRPC connection (HTTP/2 channel) and the leases kept alive over it.
    struct Conn {
        leases: Vec<(LeaseKeeper, LeaseKeepAliveStream)>,
        next: usize,
    }

    impl Conn {
        /// Renews the next lease; Ok(true) if etcd answered with a live TTL.
        async fn keep_alive_one(&mut self) -> Result<bool> {
            let i = self.next;
            self.next = (self.next + 1) % self.leases.len();
            let (keeper, stream) = &mut self.leases[i];
            keeper.keep_alive().await?;
            let resp = stream
                .message()
                .await?
                .context("keep-alive stream closed")?;
            Ok(resp.ttl() > 0)
        }
    }

    impl Sender for Conn {
        async fn send(&mut self) -> Result<Outcome> {
            Ok(if self.keep_alive_one().await? {
                Outcome::Accepted
            } else {
                Outcome::Rejected("expired".into())
            })
        }
    }

    /// Grants one lease per node and opens its keep-alive stream, `connections` channels.
    async fn setup(url: &str, nodes: usize, connections: usize) -> Result<Vec<Conn>> {
        let connections = connections.clamp(1, nodes.max(1));
        let mut tasks = Vec::new();
        for c in 0..connections {
            let url = url.to_string();
            let mine = (c..nodes).step_by(connections).count();
            tasks.push(tokio::spawn(async move {
                let mut client = Client::connect([url.as_str()], None).await?;
                let mut leases = Vec::with_capacity(mine);
                for _ in 0..mine {
                    let id = client.lease_grant(TTL_SECS, None).await?.id();
                    leases.push(client.lease_keep_alive(id).await?);
                }
                anyhow::Ok(Conn { leases, next: 0 })
            }));
        }
        let mut conns = Vec::new();
        for t in tasks {
            conns.push(t.await??);
        }
        Ok(conns)
    }

    pub async fn compare(args: &Args, torua: &[Step]) -> Result<Value> {
        let etcd = start_etcd().await?;
        let pid = etcd.proc.pid();
        let me = std::process::id();
        let idle = ProcStats::read(pid)?;
        let t0 = Instant::now();
        let mut conns = setup(&etcd.url, args.nodes, args.connections).await?;
        let setup_secs = t0.elapsed().as_secs_f64();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let after = ProcStats::read(pid)?;
        let per_lease = (after.rss as f64 - idle.rss as f64) / args.nodes as f64;
        report::table(
            "etcd memory per lease (grant + open keep-alive stream)",
            &[
                "leases",
                "setup s",
                "rss idle MiB",
                "rss after MiB",
                "bytes/lease",
            ],
            &[vec![
                args.nodes.to_string(),
                f2(setup_secs),
                f1(idle.rss as f64 / MIB),
                f1(after.rss as f64 / MIB),
                format!("{per_lease:.0}"),
            ]],
        );

        let step = Duration::from_secs_f64(args.step_secs);
        let mut runs = Vec::new();
        let mut medians = Vec::new();
        for t in torua {
            let rate = t.target_rate;
            let mut these = Vec::new();
            for run in 1..=args.repeat.max(1) {
                let (s0, g0) = (ProcStats::read(pid)?, ProcStats::read(me)?);
                let (c, total, wall) = run_rate(conns, rate, step).await;
                conns = c;
                let (s1, g1) = (ProcStats::read(pid)?, ProcStats::read(me)?);
                these
                    .push(Step::new("etcd", rate, run, &total, wall).with_proc(&s0, &s1, &g0, &g1));
            }
            medians.push(median_steps(&these));
            runs.extend(these);
        }
        let mut both = Vec::new();
        let mut ratios = Vec::new();
        for (t, e) in torua.iter().zip(&medians) {
            both.push(t.clone());
            both.push(e.clone());
            let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
            ratios.push(json!({
                "target_rate": t.target_rate,
                "accepted_ratio": ratio(t.accepted_per_s, e.accepted_per_s),
                "p99_ratio_etcd_over_torua": ratio(e.p99(), t.p99()),
                "server_cpu_ratio_etcd_over_torua": ratio(e.server_cpu_share, t.server_cpu_share),
            }));
        }
        print_steps(
            "torua heartbeats vs etcd lease keep-alives (same run, same rates)",
            &both,
        );
        Ok(json!({
            "etcd_version": std::process::Command::new(find_tool("etcd").expect("found"))
                .arg("--version").output().ok()
                .map(|o| String::from_utf8_lossy(&o.stdout).lines().next().unwrap_or("").to_string()),
            "lease_ttl_s": TTL_SECS,
            "memory": {
                "leases": args.nodes, "setup_secs": setup_secs,
                "rss_idle_mib": idle.rss as f64 / MIB, "rss_after_mib": after.rss as f64 / MIB,
                "bytes_per_lease": per_lease,
            },
            "steps": medians,
            "runs": runs,
            "ratio": ratios,
        }))
    }
}
