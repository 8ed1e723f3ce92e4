//! `torua-coordinator`: parses config, binds, and runs until SIGTERM/SIGINT.

use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;
use torua_coordinator::config::Settings;

/// Torua coordinator: node health, placement and the admin API.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// YAML config file; flags and TORUA_* env vars override its keys.
    #[arg(long, env = "TORUA_CONFIG")]
    config: Option<PathBuf>,
    #[command(flatten)]
    settings: Settings,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let telemetry = torua_coordinator::telemetry::init("torua-coordinator");
    let code = run(args);
    telemetry.shutdown();
    code
}

fn run(args: Args) -> ExitCode {
    let loaded = args
        .config
        .as_deref()
        .map(Settings::from_file_with_text)
        .transpose();
    let (file, text) = match loaded {
        Ok(Some((settings, text))) => (settings, Some(text)),
        Ok(None) => (Settings::default(), None),
        Err(e) => return usage(e),
    };
    let flags = args.settings;
    let cfg = match flags.clone().over(file).resolve() {
        Ok(c) => c,
        // Point at the file's line for a value that came from it.
        Err(e) => match (args.config.as_deref(), text) {
            (Some(path), Some(text)) => {
                return usage(e.locate(&path.display().to_string(), &text, |f| flags.sets(f)))
            }
            _ => return usage(e),
        },
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let code = rt.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(cfg.listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("torua-coordinator: cannot listen on {}: {e}", cfg.listen);
                return ExitCode::from(69);
            }
        };
        match torua_coordinator::run(cfg, listener, torua_coordinator::signals::terminate()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("torua-coordinator: {e}");
                ExitCode::from(78)
            }
        }
    });
    // The exporter's blocking client must be shut down outside the runtime.
    drop(rt);
    code
}

/// Configuration errors exit 64 (EX_USAGE), like linkerd's proxy.
fn usage(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("torua-coordinator: {e}");
    ExitCode::from(64)
}
