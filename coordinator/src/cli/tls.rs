//! `torua tls create`: a private CA and a coordinator certificate signed by it, for
//! a site without its own PKI (what `consul tls ca create` + `cert create` do).

use anyhow::Context;
use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum TlsCmd {
    /// Write ca.pem, server.pem and server-key.pem (0600) into a directory.
    Create(CreateArgs),
}

#[derive(Args)]
pub struct CreateArgs {
    /// Directory for the files (created if missing; existing files are kept).
    #[arg(long, default_value = "torua-tls")]
    dir: PathBuf,
    /// A DNS name or IP address the coordinator is reached by (repeatable).
    #[arg(long = "host", default_values_t = ["localhost".to_string(), "127.0.0.1".to_string()])]
    hosts: Vec<String>,
}

pub fn run(cmd: TlsCmd) -> anyhow::Result<()> {
    let TlsCmd::Create(args) = cmd;
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create {}", args.dir.display()))?;
    let issued = torua_tls::issue::create(&args.dir, &args.hosts)?;
    println!(
        "CA certificate:      {}   (give to agents and the CLI: --ca-file)",
        issued.ca_cert.display()
    );
    println!(
        "server certificate:  {}   (coordinator: --tls-cert-file; for {})",
        issued.server_cert.display(),
        args.hosts.join(", ")
    );
    println!(
        "server key:          {}   (coordinator: --tls-key-file)",
        issued.server_key.display()
    );
    Ok(())
}
