//! `torua-agent` binary: parse the config (exit 64 on error), then run the agent on a
//! current-thread runtime until SIGTERM or SIGINT.

use anyhow::Context;
use clap::Parser;
use std::process::ExitCode;
use torua_agent::{Cli, Config};

/// `EX_USAGE`: bad command line or config.
const EXIT_USAGE: u8 = 64;

fn main() -> anyhow::Result<ExitCode> {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return Ok(ExitCode::from(if e.use_stderr() { EXIT_USAGE } else { 0 }));
        }
    };
    let telemetry = torua_agent::telemetry::init("torua-agent");
    let config = match Config::load(&cli) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("torua-agent: {e}");
            telemetry.shutdown();
            return Ok(ExitCode::from(EXIT_USAGE));
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(2)
        .build()
        .context("building the tokio runtime")?;
    let result = runtime.block_on(async {
        let shutdown = shutdown_signal().context("installing signal handlers")?;
        torua_agent::run(config, shutdown).await?;
        Ok::<_, anyhow::Error>(())
    });
    drop(runtime);
    telemetry.shutdown();
    match result {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => {
            eprintln!("torua-agent: {e:#}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Resolves on the first SIGTERM or SIGINT.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM"),
            _ = int.recv() => tracing::info!("SIGINT"),
        }
    })
}
