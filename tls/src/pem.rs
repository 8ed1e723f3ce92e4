//! Reading certificates and keys from PEM files.

use crate::TlsError;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        file: path.display().to_string(),
        source,
    })
}

/// Every certificate in a PEM file, in order (leaf first for a chain).
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let file = path.display().to_string();
    let bytes = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            file: file.clone(),
            message: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Missing {
            file,
            what: "CERTIFICATE",
        });
    }
    Ok(certs)
}

/// The private key of a PEM file (PKCS#8, PKCS#1 or SEC1), refusing a file that
/// group or others may read.
pub fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let file = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|source| TlsError::Read {
        file: file.clone(),
        source,
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(TlsError::LoosePermissions { file, mode });
    }
    let bytes = read(path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => TlsError::Missing {
            file,
            what: "PRIVATE KEY",
        },
        e => TlsError::Pem {
            file,
            message: e.to_string(),
        },
    })
}
