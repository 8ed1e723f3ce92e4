//! `torua keygen`: a node's key from the cluster secret (what production agents hold
//! instead of the secret), or a fresh random cluster secret.

use clap::Args;
use std::io::Read;
use std::path::PathBuf;

#[derive(Args)]
pub struct KeygenArgs {
    /// Node whose key to derive.
    #[arg(long, required_unless_present = "new_secret")]
    node: Option<String>,
    /// Cluster secret file to derive from.
    #[arg(
        long,
        env = "TORUA_CLUSTER_SECRET_FILE",
        default_value = "cluster-secret"
    )]
    secret_file: PathBuf,
    /// Print a new random cluster secret (64 hex characters) instead.
    #[arg(long)]
    new_secret: bool,
}

pub fn run(args: KeygenArgs) -> anyhow::Result<()> {
    if args.new_secret {
        println!("{}", hex::encode(random_bytes::<32>()?));
        return Ok(());
    }
    let node = args.node.expect("clap requires --node");
    anyhow::ensure!(
        torua_protocol::validate::is_valid_name(&node),
        "node id {node:?} must match [A-Za-z0-9_.:-]{{1,64}}"
    );
    let secret = crate::secrets::read_secret_file(&args.secret_file)?;
    anyhow::ensure!(
        secret.len() >= crate::secrets::MIN_SECRET_BYTES,
        "{}: a cluster secret needs at least 32 bytes",
        args.secret_file.display()
    );
    println!(
        "{}",
        torua_protocol::derive_node_key(&secret, &node).to_hex()
    );
    Ok(())
}

/// Secrets come from the kernel's CSPRNG, never from a fast non-cryptographic RNG.
pub fn random_bytes<const N: usize>() -> std::io::Result<[u8; N]> {
    let mut buf = [0u8; N];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(buf)
}
