//! Smoke test: every `torua-bench` subcommand runs for a second or two against the
//! real binaries, exits 0, and writes JSON with the expected fields. The figures
//! themselves come from release builds (see BENCHMARKS.md), not from here.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Builds the workspace binaries the benchmarks start (coordinator, agent, node) in
/// the same profile as this test, once per test process.
fn bench_bin() -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--quiet", "--bins"]);
        for p in ["torua-coordinator", "torua-agent", "torua-node"] {
            cmd.args(["-p", p]);
        }
        let exe = PathBuf::from(env!("CARGO_BIN_EXE_torua-bench"));
        if exe.parent().is_some_and(|d| d.ends_with("release")) {
            cmd.arg("--release");
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("workspace root");
        let status = cmd.current_dir(root).status().expect("run cargo build");
        assert!(
            status.success(),
            "cargo build of the workspace binaries failed"
        );
    });
    PathBuf::from(env!("CARGO_BIN_EXE_torua-bench"))
}

/// Runs `torua-bench <args> --out <tmp>`; asserts exit 0; returns the JSON written.
fn run(args: &[&str]) -> Value {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out.json");
    let res = Command::new(bench_bin())
        .args(args)
        .arg("--out")
        .arg(&out)
        .output()
        .expect("run torua-bench");
    let stdout = String::from_utf8_lossy(&res.stdout);
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert!(
        res.status.success(),
        "torua-bench {args:?} failed:\n{stdout}\n{stderr}"
    );
    let text = std::fs::read_to_string(&out).expect("JSON written");
    let v: Value = serde_json::from_str(&text).expect("JSON parses");
    assert_eq!(v["benchmark"], args[0]);
    assert!(v["machine"]["cores"].as_u64().unwrap_or(0) >= 1);
    v
}

/// The tool policy: missing tool → fail under CI=true, else skip loudly.
fn require_tool(name: &str, apt_package: &str) -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(name).is_file()));
    if !found {
        let msg = format!("{name} not installed (apt-get install {apt_package})");
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "CI=true and {msg}"
        );
        // Straight to stderr: libtest swallows `eprintln!` of a passing test.
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "\n*** SKIPPED: {msg} ***\n");
    }
    found
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[test]
fn heartbeats() {
    let v = run(&[
        "heartbeats",
        "--nodes",
        "200",
        "--connections",
        "8",
        "--rates",
        "1000,2000",
        "--step-secs",
        "1",
    ]);
    assert!(num(&v["memory"]["bytes_per_node"]).is_finite());
    let steps = v["steps"].as_array().expect("steps");
    assert!(!steps.is_empty());
    let s = &steps[0];
    assert_eq!(s["system"], "torua");
    assert!(num(&s["accepted_per_s"]) > 500.0, "{s}");
    assert_eq!(num(&s["rejected_per_s"]), 0.0, "{s}");
    for k in ["p50_ms", "p99_ms", "p999_ms"] {
        assert!(num(&s["latency"][k]) > 0.0, "{k}: {s}");
    }
    assert!(num(&s["server_cpu_secs"]) >= 0.0);
    assert!(num(&s["server_peak_rss_mib"]) > 0.0);
    num(&v["sustained_rate"]);
}

#[cfg(feature = "etcd")]
#[test]
fn heartbeats_vs_etcd() {
    if !require_tool("etcd", "etcd-server") {
        return;
    }
    let v = run(&[
        "heartbeats",
        "--nodes",
        "100",
        "--connections",
        "4",
        "--rates",
        "500",
        "--step-secs",
        "1",
        "--etcd",
    ]);
    let e = &v["etcd"];
    let s = &e["steps"][0];
    assert_eq!(s["system"], "etcd");
    assert!(num(&s["accepted_per_s"]) > 200.0, "{s}");
    assert!(num(&e["ratio"][0]["accepted_ratio"]) > 0.0, "{e}");
}

#[test]
fn detect() {
    let v = run(&[
        "detect",
        "--runs",
        "1",
        "--intervals",
        "250ms",
        "--soak-secs",
        "2",
        "--soak-agents",
        "10",
    ]);
    assert_eq!(v["few_runs"], true);
    let d = v["detection"].as_array().expect("detection");
    assert_eq!(d.len(), 2, "node and agent");
    for case in d {
        assert!(num(&case["p50_s"]) > 0.0, "{case}");
        assert!(num(&case["max_s"]) < 30.0, "{case}");
    }
    assert!(v["soak"]["unhealthy_marks"].is_u64());
    assert!(v["soak"]["heartbeats_ok"].as_u64().unwrap_or(0) > 0);
}

#[test]
fn footprint() {
    let exporter = require_tool("prometheus-node-exporter", "prometheus-node-exporter");
    let mut args = vec!["footprint", "--secs", "1", "--exporter-scrape-secs", "1"];
    if !exporter {
        args.push("--no-exporter");
    }
    let v = run(&args);
    let procs = v["processes"].as_array().expect("processes");
    assert_eq!(procs.len(), if exporter { 2 } else { 1 });
    for p in procs {
        assert!(num(&p["rss_max_mib"]) > 0.0, "{p}");
        assert!(num(&p["cpu_percent_of_core"]) >= 0.0, "{p}");
    }
    assert_eq!(procs[0]["process"], "torua-agent");
}

#[test]
fn scrape() {
    let v = run(&[
        "scrape",
        "--nodes",
        "300",
        "--scrapes",
        "2",
        "--pause-ms",
        "50",
    ]);
    let phases = v["phases"].as_array().expect("phases");
    assert_eq!(phases.len(), 2);
    for p in phases {
        assert!(num(&p["bytes"]) > 1000.0, "{p}");
        assert!(num(&p["p50_ms"]) > 0.0, "{p}");
    }
}

#[test]
fn failover() {
    if !require_tool("etcd", "etcd-server") {
        return;
    }
    let v = run(&[
        "failover",
        "--runs",
        "1",
        "--ttl",
        "2",
        "--settle-secs",
        "1",
    ]);
    assert_eq!(v["few_runs"], true);
    let t = &v["ttls"][0];
    let r = &t["runs"][0];
    for k in [
        "takeover_s",
        "first_commit_s",
        "agents_attached_s",
        "nodes_healthy_s",
    ] {
        let x = num(&r[k]);
        assert!(x > 0.0 && x < 30.0, "{k}: {r}");
    }
    assert!(r["writes_acked"].as_u64().unwrap_or(0) > 0, "{r}");
    assert_eq!(r["lost"], 0, "{r}");
    assert_eq!(r["etcd_audit"]["vacancy_writes"], 0, "{r}");
    assert!(r["etcd_audit"]["error"].is_null(), "{r}");
    assert_eq!(r["restarted_role"], "follower", "{r}");
    assert!(t["summary"]["goal_met"].is_boolean());
}
