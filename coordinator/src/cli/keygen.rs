//! `torua keygen`: a node's key from the cluster secret (what production agents and
//! nodes hold instead of the secret), a fresh random cluster secret, or a fresh
//! bearer token for the coordinator's admin or client scope.

use clap::Args;
use std::io::Read;
use std::path::PathBuf;

#[derive(Args)]
pub struct KeygenArgs {
    /// Node whose key to derive.
    #[arg(long, required_unless_present_any = ["new_secret", "token"])]
    node: Option<String>,
    /// Cluster secret file to derive from.
    #[arg(
        long,
        env = "TORUA_CLUSTER_SECRET_FILE",
        default_value = "cluster-secret"
    )]
    secret_file: PathBuf,
    /// Print a new random cluster secret (64 hex characters) instead.
    #[arg(long, conflicts_with_all = ["node", "token"])]
    new_secret: bool,
    /// Print a new random bearer token (64 hex characters) for `admin_token_file` or
    /// `client_token_file`: `torua keygen --token > admin.token; chmod 600 admin.token`.
    #[arg(long, conflicts_with = "node")]
    token: bool,
}

pub fn run(args: KeygenArgs) -> anyhow::Result<()> {
    if args.new_secret || args.token {
        println!("{}", new_token()?);
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

/// 32 bytes from the kernel's CSPRNG, as 64 hex characters: a cluster secret or a
/// bearer token.
pub fn new_token() -> std::io::Result<String> {
    Ok(hex::encode(random_bytes::<32>()?))
}

/// Secrets come from the kernel's CSPRNG, never from a fast non-cryptographic RNG.
pub fn random_bytes<const N: usize>() -> std::io::Result<[u8; N]> {
    let mut buf = [0u8; N];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(buf)
}
