//! `torua-bench`: Torua's load generator and benchmarks. Each subcommand prints a table
//! and writes JSON. The binaries under test are taken from this executable's target
//! directory: run `cargo build --release` first.

#![forbid(unsafe_code)]

mod cluster;
mod detect;
mod etcd;
mod failover;
mod failover_latency;
mod footprint;
mod heartbeats;
mod hotspots;
mod http;
mod load;
mod proc;
mod report;
mod scrape;
mod wire;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Torua benchmarks: heartbeat throughput (vs etcd), failure detection, agent
/// footprint (vs node_exporter), /metrics scrape, coordinator failover on etcd.
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Simulated agents push signed heartbeats at stepped rates (optionally vs etcd leases).
    Heartbeats(heartbeats::Args),
    /// Time from SIGSTOP of a node or an agent to `unhealthy`; false-positive soak.
    Detect(detect::Args),
    /// RSS and CPU of one agent (and of node_exporter in the same run).
    Footprint(footprint::Args),
    /// /metrics latency and size with many tracked nodes.
    Scrape(scrape::Args),
    /// SIGKILL of the leading coordinator (HA on etcd): takeover, first commit,
    /// agents re-attached, client write errors; acknowledged writes checked.
    Failover(failover::Args),
    /// A storage node SIGSTOPped under client load: client-observed latency before,
    /// during and after, with hedged reads and bounded write stalls on and off.
    FailoverLatency(failover_latency::Args),
    /// Zipf-skewed client load on two clusters at once, load balancing on and off:
    /// max/mean node load over time, load moves and role swaps, client latency.
    Hotspots(hotspots::Args),
}

/// Runs a benchmark's async body on a runtime of `workers` threads (one by default:
/// the figures must not depend on how many the machine has spare).
fn block_on<T>(
    workers: usize,
    body: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()?
        .block_on(body)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let res = match cli.cmd {
        Cmd::Heartbeats(a) => heartbeats::run(a),
        Cmd::Detect(a) => detect::run(a),
        Cmd::Footprint(a) => footprint::run(a),
        Cmd::Scrape(a) => scrape::run(a),
        Cmd::Failover(a) => failover::run(a),
        Cmd::FailoverLatency(a) => failover_latency::run(a),
        Cmd::Hotspots(a) => hotspots::run(a),
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("torua-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
