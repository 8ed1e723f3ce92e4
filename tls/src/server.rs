//! The server side: a certificate that can be swapped while the listener runs.

use crate::{pem, provider, TlsError};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use tokio_rustls::TlsAcceptor;

/// Hands every handshake the certificate in force; `ServerTls::reload` replaces it.
#[derive(Debug)]
struct Resolver {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}

/// A listener's TLS: the certificate chain and key files, and the acceptor built
/// from them.
pub struct ServerTls {
    cert_file: PathBuf,
    key_file: PathBuf,
    resolver: Arc<Resolver>,
    acceptor: TlsAcceptor,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .finish_non_exhaustive()
    }
}

fn certified_key(cert_file: &Path, key_file: &Path) -> Result<CertifiedKey, TlsError> {
    let chain = pem::certificates(cert_file)?;
    let key = pem::private_key(key_file)?;
    CertifiedKey::from_der(chain, key, &provider()).map_err(|e| TlsError::Mismatch {
        cert: cert_file.display().to_string(),
        key: key_file.display().to_string(),
        message: e.to_string(),
    })
}

impl ServerTls {
    /// Loads `cert_file` (PEM chain, leaf first) and `key_file` (PEM private key).
    /// Only HTTP/1.1 is offered over ALPN: that is all Torua's servers speak.
    pub fn load(cert_file: &Path, key_file: &Path) -> Result<ServerTls, TlsError> {
        let resolver = Arc::new(Resolver {
            current: RwLock::new(Arc::new(certified_key(cert_file, key_file)?)),
        });
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Setup(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(ServerTls {
            cert_file: cert_file.to_path_buf(),
            key_file: key_file.to_path_buf(),
            resolver,
            acceptor: TlsAcceptor::from(Arc::new(config)),
        })
    }

    /// Re-reads both files; new handshakes use the new certificate, connections
    /// already open keep theirs. On any error the certificate in force stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = Arc::new(certified_key(&self.cert_file, &self.key_file)?);
        *self
            .resolver
            .current
            .write()
            .unwrap_or_else(|e| e.into_inner()) = fresh;
        Ok(())
    }

    pub fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }

    pub fn cert_file(&self) -> &Path {
        &self.cert_file
    }
}
