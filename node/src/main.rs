//! `torua-node` binary: flags and environment in, tracing set up, then [`torua_node::run`].

#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use torua_node::Config;
use torua_protocol::keyfile::{self, KeyFileError};
use torua_protocol::NodeKey;

/// `EX_USAGE` from sysexits.h: bad flags or environment.
const EX_USAGE: u8 = 64;

/// Torua reference sharded key-value storage node.
#[derive(Debug, Parser)]
#[command(name = "torua-node", version)]
struct Args {
    /// Address to serve the node API on.
    #[arg(long, env = "TORUA_LISTEN", default_value = "127.0.0.1:7401")]
    listen: SocketAddr,
    /// This node's id, `[A-Za-z0-9_.:-]{1,64}`.
    #[arg(long, env = "TORUA_NODE_ID", default_value = "n1", value_parser = parse_node_id)]
    node_id: String,
    /// Directory for shard logs; without it data lives in memory only.
    #[arg(long, env = "TORUA_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// fsync every log append.
    #[arg(long, env = "TORUA_FSYNC")]
    fsync: bool,
    /// How long in-flight requests may finish after SIGTERM/SIGINT, e.g. `10s`.
    #[arg(long, env = "TORUA_SHUTDOWN_GRACE", default_value = "10s", value_parser = parse_duration)]
    shutdown_grace: Duration,
    /// File holding this node's key as 64 hex characters (`torua keygen --node ID`);
    /// the agent on the same host may share it.
    #[arg(
        long,
        env = "TORUA_KEY_FILE",
        value_name = "FILE",
        conflicts_with = "cluster_secret_file"
    )]
    key_file: Option<PathBuf>,
    /// File holding the cluster secret; this node's key is derived from it and --node-id.
    #[arg(long, env = "TORUA_CLUSTER_SECRET_FILE", value_name = "FILE")]
    cluster_secret_file: Option<PathBuf>,
    /// During a key rotation: the previous key file, also accepted.
    #[arg(
        long,
        env = "TORUA_PREVIOUS_KEY_FILE",
        value_name = "FILE",
        requires = "key_file"
    )]
    previous_key_file: Option<PathBuf>,
    /// During a secret rotation: the previous cluster secret, also accepted.
    #[arg(
        long,
        env = "TORUA_PREVIOUS_SECRET_FILE",
        value_name = "FILE",
        requires = "cluster_secret_file"
    )]
    previous_secret_file: Option<PathBuf>,
    /// Accept a key or secret file that group or others may read.
    #[arg(long, env = "TORUA_ALLOW_INSECURE_KEY_FILE")]
    allow_insecure_key_file: bool,
    /// Serve without a key on a non-loopback address (anyone who reaches the node can
    /// change its shards and data).
    #[arg(long, env = "TORUA_INSECURE_NO_AUTH")]
    insecure_no_auth: bool,
    /// How far a signed call's timestamp may be from this node's clock, e.g. `30s`.
    #[arg(long, env = "TORUA_MAX_CLOCK_SKEW", default_value = "30s", value_parser = parse_duration)]
    max_clock_skew: Duration,
}

impl Args {
    /// The keys signed calls are checked against: this node's, then a previous one.
    fn keys(&self) -> Result<Vec<NodeKey>, KeyFileError> {
        let insecure = self.allow_insecure_key_file;
        let mut keys = Vec::new();
        for path in [&self.key_file, &self.previous_key_file]
            .into_iter()
            .flatten()
        {
            keys.push(keyfile::load_key_file(path, insecure)?);
        }
        for path in [&self.cluster_secret_file, &self.previous_secret_file]
            .into_iter()
            .flatten()
        {
            keys.push(keyfile::load_secret_as_key(path, &self.node_id, insecure)?);
        }
        Ok(keys)
    }
}

fn parse_node_id(s: &str) -> Result<String, String> {
    let ok = (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.:-".contains(&b));
    if ok {
        Ok(s.to_owned())
    } else {
        Err("node id must match [A-Za-z0-9_.:-]{1,64}".into())
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    torua_protocol::duration::parse_duration(s)
}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) if !e.use_stderr() => {
            // --help and --version
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(EX_USAGE);
        }
    };
    let keys = match args.keys() {
        Ok(keys) => keys,
        Err(e) => {
            eprintln!("torua-node: {e}");
            return ExitCode::from(EX_USAGE);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("torua-node: starting runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(args.listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("torua-node: binding {}: {e}", args.listen);
                return ExitCode::FAILURE;
            }
        };
        let config = Config {
            node_id: args.node_id,
            data_dir: args.data_dir,
            fsync: args.fsync,
            shutdown_grace: args.shutdown_grace,
            keys,
            max_clock_skew: args.max_clock_skew,
            insecure_no_auth: args.insecure_no_auth,
        };
        match torua_node::run(config, listener, shutdown_signal()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e @ torua_node::NodeError::NoKey { .. }) => {
                eprintln!("torua-node: {e}");
                ExitCode::from(EX_USAGE)
            }
            Err(e) => {
                eprintln!("torua-node: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGTERM; only Ctrl-C stops the node");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
    }
}
