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
mod tokens;

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
    /// Coordinator base URL, or several comma-separated: tried in order while they
    /// cannot be reached (an HTTP answer, even an error, ends the command).
    #[arg(
        value_name = "URL[,URL...]",
        long,
        global = true,
        env = "TORUA_COORDINATOR",
        default_value = "http://127.0.0.1:7400"
    )]
    coordinator: String,
    /// File holding the admin token, sent by drain, undrain, remove, assign and
    /// rebalance. Else env TORUA_ADMIN_TOKEN (the token itself), else the token of
    /// the `torua dev` cluster at a loopback --coordinator.
    #[arg(long, global = true, value_name = "FILE")]
    admin_token_file: Option<std::path::PathBuf>,
    /// File holding the client token, sent by put, get and del. Else env
    /// TORUA_CLIENT_TOKEN, else the `torua dev` cluster's, else the admin token.
    #[arg(long, global = true, value_name = "FILE")]
    client_token_file: Option<std::path::PathBuf>,
    /// The admin token itself, from env TORUA_ADMIN_TOKEN (a flag would show in `ps`).
    #[arg(
        long,
        global = true,
        env = "TORUA_ADMIN_TOKEN",
        hide_env_values = true,
        hide = true
    )]
    admin_token: Option<String>,
    /// The client token itself, from env TORUA_CLIENT_TOKEN.
    #[arg(
        long,
        global = true,
        env = "TORUA_CLIENT_TOKEN",
        hide_env_values = true,
        hide = true
    )]
    client_token: Option<String>,
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
        /// With --force: also when a node holds a shard's last in-sync copy (its data
        /// is lost).
        #[arg(long, requires = "force")]
        allow_data_loss: bool,
    },
    /// Derive a node's key from the cluster secret, or make a new secret or token.
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

impl Cmd {
    /// The token scope the command's calls need.
    fn needs(&self) -> tokens::Needs {
        use tokens::Needs;
        match self {
            Cmd::Put { .. } | Cmd::Get { .. } | Cmd::Del { .. } => Needs::Client,
            Cmd::Drain { .. }
            | Cmd::Undrain { .. }
            | Cmd::Remove { .. }
            | Cmd::Assign { .. }
            | Cmd::Rebalance { .. } => Needs::Admin,
            Cmd::Dev(_) | Cmd::Status | Cmd::Keygen(_) | Cmd::Shards | Cmd::Tls(_) => {
                Needs::Nothing
            }
        }
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let sources = tokens::Sources {
        admin_file: cli.admin_token_file.clone(),
        client_file: cli.client_token_file.clone(),
        admin_env: cli.admin_token.clone(),
        client_env: cli.client_token.clone(),
    };
    let token = sources.token_for(
        cli.cmd.needs(),
        &client::split_bases(&cli.coordinator),
        &tokens::DevPointers::from_env(),
    );
    let token = match token {
        Ok(t) => t,
        Err(e) => {
            eprintln!("torua: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let api = Api::new(&cli.coordinator, token, cli.ca_file.clone());
    let result = match cli.cmd {
        Cmd::Dev(args) => dev::run(args),
        Cmd::Status => status::run(&api, cli.json),
        Cmd::Drain { nodes } => nodes::drain(&api, &nodes, true, cli.json),
        Cmd::Undrain { nodes } => nodes::drain(&api, &nodes, false, cli.json),
        Cmd::Remove {
            nodes,
            force,
            allow_data_loss,
        } => nodes::remove(&api, &nodes, force, allow_data_loss, cli.json),
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
        let parse = |args: &[&str]| Cli::try_parse_from(args).map(|c| c.cmd.needs());
        assert_eq!(
            parse(&["torua", "keygen", "--token"]).unwrap(),
            tokens::Needs::Nothing
        );
        assert_eq!(
            parse(&["torua", "put", "k", "v", "--client-token-file", "/f"]).unwrap(),
            tokens::Needs::Client
        );
        assert_eq!(
            parse(&["torua", "remove", "n1", "--force", "--allow-data-loss"]).unwrap(),
            tokens::Needs::Admin
        );
        assert!(parse(&["torua", "remove", "n1", "--allow-data-loss"]).is_err());
        assert!(parse(&["torua", "keygen", "--token", "--node", "n1"]).is_err());
    }
}
