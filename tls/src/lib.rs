//! TLS for Torua's HTTP listeners and clients, on rustls with the `ring` provider.
//!
//! - [`ServerTls`]: a coordinator listener's certificate and key, loaded from PEM
//!   files and reloadable in place (SIGHUP), so a rotated certificate takes effect
//!   without dropping a connection.
//! - [`connector_for`]: the client side for the agent and the `torua` CLI: trusts a
//!   given CA bundle, or the system's roots when none is given, and still speaks
//!   plain `http://` so one client serves both schemes.
//!
//! - [`issue`] (feature `issue`): a private CA and a server certificate, for `torua
//!   tls create`, dev clusters and tests.
//!
//! Private key files that group or others can read are refused, like every other
//! secret file of Torua.

mod client;
#[cfg(feature = "issue")]
pub mod issue;
mod pem;
mod server;

pub use client::{connector_for, HttpsConnector};
pub use server::ServerTls;
pub use tokio_rustls::server::TlsStream;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum TlsError {
    /// Reading or (for `issue`) writing a file failed.
    #[error("{file}: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}: permissions {mode:o} let other users read this private key; run `chmod 600 {file}`")]
    LoosePermissions { file: String, mode: u32 },
    #[error("{file}: {message}")]
    Pem { file: String, message: String },
    #[error("{file}: no {what} found (expected a PEM file with a `-----BEGIN {what}-----` block)")]
    Missing { file: String, what: &'static str },
    #[error("certificate {cert} and key {key} do not go together: {message}")]
    Mismatch {
        cert: String,
        key: String,
        message: String,
    },
    #[error("system trust roots: {0}")]
    NativeRoots(String),
    #[error("TLS setup: {0}")]
    Setup(String),
}

/// The one crypto provider every config here is built with, named explicitly so
/// nothing depends on a process-wide default being installed.
fn provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    std::sync::Arc::new(rustls::crypto::ring::default_provider())
}

#[cfg(test)]
mod tests;
