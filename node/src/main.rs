//! `torua-node` binary: flags and environment in, tracing set up, then [`torua_node::run`].

#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use torua_node::Config;

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
        };
        match torua_node::run(config, listener, shutdown_signal()).await {
            Ok(()) => ExitCode::SUCCESS,
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
