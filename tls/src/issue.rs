//! A private CA and server certificates for it, like `consul tls ca create` and
//! `consul tls cert create`: enough for a dev cluster, a test or a small site
//! without a PKI.

use crate::TlsError;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The files [`create`] wrote.
#[derive(Debug, Clone)]
pub struct Issued {
    pub ca_cert: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

fn setup(e: rcgen::Error) -> TlsError {
    TlsError::Setup(e.to_string())
}

/// Creates a CA and a server certificate signed by it for `hosts` (DNS names or IP
/// addresses) in `dir`: `ca.pem`, `server.pem`, `server-key.pem` (mode 0600). The
/// CA's own key is not kept: re-run to issue again. Existing files are not
/// overwritten.
pub fn create(dir: &Path, hosts: &[String]) -> Result<Issued, TlsError> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(setup)?;
    // A unique name, like Consul's CAs: a client that trusts another Torua CA then
    // fails with "unknown issuer", not a confusing "bad signature".
    ca_params.distinguished_name.push(
        DnType::CommonName,
        format!("Torua private CA {:016x}", random_u64()),
    );
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate().map_err(setup)?;
    let ca_cert = ca_params.self_signed(&ca_key).map_err(setup)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let mut params = CertificateParams::new(hosts.to_vec()).map_err(setup)?;
    params
        .distinguished_name
        .push(DnType::CommonName, "torua-coordinator");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().map_err(setup)?;
    let cert = params.signed_by(&key, &issuer).map_err(setup)?;

    let issued = Issued {
        ca_cert: dir.join("ca.pem"),
        server_cert: dir.join("server.pem"),
        server_key: dir.join("server-key.pem"),
    };
    write_new(&issued.ca_cert, ca_cert.pem().as_bytes(), 0o644)?;
    write_new(&issued.server_cert, cert.pem().as_bytes(), 0o644)?;
    write_new(&issued.server_key, key.serialize_pem().as_bytes(), 0o600)?;
    Ok(issued)
}

fn random_u64() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now())
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), TlsError> {
    let err = |source| TlsError::Read {
        file: path.display().to_string(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(err)?;
    f.write_all(bytes).map_err(err)
}
