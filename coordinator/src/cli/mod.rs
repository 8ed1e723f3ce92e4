//! The `torua` command line: a local dev cluster, status and admin commands over the
//! coordinator's HTTP API. One file per command.

mod client;
mod data;
mod dev;
mod keygen;
mod nodes;
mod shards;
mod status;
mod tls;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

pub use client::{Api, ApiError};

#[derive(Parser)]
#[command(
    name = "torua",
    version,
    about = "Torua: health and placement for a sharded storage cluster"
)]
pub struct Cli {
    /// Coordinator base URL.
    #[arg(
        long,
        global = true,
        env = "TORUA_COORDINATOR",
        default_value = "http://127.0.0.1:7400"
    )]
    coordinator: String,
    /// Admin bearer token for mutating commands.
    #[arg(long, global = true, env = "TORUA_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// CA certificate(s) to trust for an https:// coordinator (default: the system's).
    #[arg(long, global = true, env = "TORUA_CA_FILE")]
    ca_file: Option<std::path::PathBuf>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start a local cluster of real processes (coordinator, nodes, agents).
    Dev(dev::DevArgs),
    /// Cluster line and a table of nodes.
    Status,
    /// Drain nodes: their shards move away while they keep serving.
    Drain { nodes: Vec<String> },
    /// Cancel a drain.
    Undrain { nodes: Vec<String> },
    /// Decommission nodes (drain them first; --force gives up the copies they hold).
    Remove {
        nodes: Vec<String>,
        #[arg(long)]
        force: bool,
    },
    /// Derive a node's key from the cluster secret, or make a new secret.
    Keygen(keygen::KeygenArgs),
    /// The shard map: holders, epochs and health per shard.
    Shards,
    /// Pin a shard's holders; the coordinator copies and hands over towards them.
    Assign {
        shard: u32,
        #[arg(long)]
        primary: String,
        #[arg(long)]
        replica: Vec<String>,
    },
    /// Ask for a rebalance now (and with --unfreeze, lift a storm-guard freeze).
    Rebalance {
        #[arg(long)]
        unfreeze: bool,
    },
    /// Write a value (from the argument, or stdin with `-`).
    Put { key: String, value: String },
    /// Print a value to stdout.
    Get { key: String },
    /// Delete a key.
    Del { key: String },
    /// Certificates for an HTTPS coordinator.
    #[command(subcommand)]
    Tls(tls::TlsCmd),
}

/// Logs to stderr; `RUST_LOG` overrides the default `info`.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let api = Api::new(&cli.coordinator, cli.token.clone(), cli.ca_file.clone());
    let result = match cli.cmd {
        Cmd::Dev(args) => dev::run(args),
        Cmd::Status => status::run(&api, cli.json),
        Cmd::Drain { nodes } => nodes::drain(&api, &nodes, true, cli.json),
        Cmd::Undrain { nodes } => nodes::drain(&api, &nodes, false, cli.json),
        Cmd::Remove { nodes, force } => nodes::remove(&api, &nodes, force, cli.json),
        Cmd::Keygen(args) => keygen::run(args),
        Cmd::Shards => shards::list(&api, cli.json),
        Cmd::Assign {
            shard,
            primary,
            replica,
        } => shards::assign(&api, shard, primary, replica, cli.json),
        Cmd::Rebalance { unfreeze } => shards::rebalance(&api, unfreeze),
        Cmd::Put { key, value } => data::put(&api, &key, &value),
        Cmd::Get { key } => data::get(&api, &key),
        Cmd::Del { key } => data::del(&api, &key),
        Cmd::Tls(cmd) => tls::run(cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("torua: {e:#}");
            ExitCode::FAILURE
        }
    }
}
