//! `torua-bench`: Torua's load generator and benchmarks. Each subcommand prints a table
//! and writes JSON. The binaries under test are taken from this executable's target
//! directory: run `cargo build --release` first.

#![forbid(unsafe_code)]

mod cluster;
mod detect;
mod etcd;
mod footprint;
mod heartbeats;
mod http;
mod load;
mod proc;
mod report;
mod scrape;
mod wire;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Torua benchmarks: heartbeat throughput (vs etcd), failure detection, agent
/// footprint (vs node_exporter), /metrics scrape.
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let res = match cli.cmd {
        Cmd::Heartbeats(a) => heartbeats::run(a),
        Cmd::Detect(a) => detect::run(a),
        Cmd::Footprint(a) => footprint::run(a),
        Cmd::Scrape(a) => scrape::run(a),
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("torua-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
