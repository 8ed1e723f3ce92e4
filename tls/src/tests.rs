use crate::client::client_config;
use crate::issue::{create, Issued};
use crate::{ServerTls, TlsError};
use rustls_pki_types::ServerName;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};

fn issued(dir: &Path) -> Issued {
    create(dir, &["localhost".to_string(), "127.0.0.1".to_string()]).unwrap()
}

/// Serves one handshake per accepted connection with `tls`, and reports whether a
/// client trusting `ca` completes one.
async fn handshake(tls: Arc<ServerTls>, ca: &Path) -> Result<(), String> {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let _ = tls.acceptor().accept(stream).await;
    });
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config(Some(ca)).unwrap()));
    let stream = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let r = connector.connect(name, stream).await.map(|_| ());
    let _ = server.await;
    r.map_err(|e| e.to_string())
}

#[tokio::test]
async fn a_client_trusting_the_ca_completes_a_handshake_and_another_does_not() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (ia, ib) = (issued(a.path()), issued(b.path()));
    let tls = Arc::new(ServerTls::load(&ia.server_cert, &ia.server_key).unwrap());
    handshake(tls.clone(), &ia.ca_cert).await.unwrap();
    let err = handshake(tls, &ib.ca_cert).await.unwrap_err();
    assert!(err.contains("UnknownIssuer"), "{err}");
}

#[tokio::test]
async fn reload_swaps_the_certificate_and_a_failed_reload_keeps_the_old_one() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (ia, ib) = (issued(a.path()), issued(b.path()));
    let tls = Arc::new(ServerTls::load(&ia.server_cert, &ia.server_key).unwrap());
    // Rotate: the new pair lands in the same paths.
    std::fs::copy(&ib.server_cert, &ia.server_cert).unwrap();
    std::fs::copy(&ib.server_key, &ia.server_key).unwrap();
    tls.reload().unwrap();
    handshake(tls.clone(), &ib.ca_cert).await.unwrap();
    assert!(handshake(tls.clone(), &ia.ca_cert).await.is_err());

    std::fs::write(&ia.server_cert, "not a certificate").unwrap();
    let err = tls.reload().unwrap_err();
    assert!(matches!(err, TlsError::Missing { .. }), "{err}");
    handshake(tls, &ib.ca_cert).await.unwrap();
}

#[test]
fn a_key_file_others_can_read_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let i = issued(d.path());
    std::fs::set_permissions(&i.server_key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = ServerTls::load(&i.server_cert, &i.server_key).unwrap_err();
    assert!(matches!(
        err,
        TlsError::LoosePermissions { mode: 0o644, .. }
    ));
    assert!(err.to_string().contains("chmod 600"), "{err}");
}

#[test]
fn a_certificate_with_another_key_is_refused() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (ia, ib) = (issued(a.path()), issued(b.path()));
    let err = ServerTls::load(&ia.server_cert, &ib.server_key).unwrap_err();
    assert!(matches!(err, TlsError::Mismatch { .. }), "{err}");
}

#[test]
fn files_without_pem_blocks_name_what_is_missing() {
    let d = tempfile::tempdir().unwrap();
    let i = issued(d.path());
    let empty = d.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    std::fs::set_permissions(&empty, std::fs::Permissions::from_mode(0o600)).unwrap();
    let err = ServerTls::load(&empty, &i.server_key).unwrap_err();
    assert!(err.to_string().contains("no CERTIFICATE found"), "{err}");
    let err = ServerTls::load(&i.server_cert, &empty).unwrap_err();
    assert!(err.to_string().contains("no PRIVATE KEY found"), "{err}");
    let err = client_config(Some(&empty)).unwrap_err();
    assert!(err.to_string().contains("empty.pem"), "{err}");
    let err = ServerTls::load(&d.path().join("absent.pem"), &i.server_key).unwrap_err();
    assert!(matches!(err, TlsError::Read { .. }), "{err}");
}

#[test]
fn connectors_build_for_both_schemes_and_read_trust_only_for_https() {
    let d = tempfile::tempdir().unwrap();
    let i = issued(d.path());
    let http = hyper_util::client::legacy::connect::HttpConnector::new();
    crate::connector_for("https://c:1", Some(&i.ca_cert), http.clone()).unwrap();
    // A CA file that does not exist is not even opened for an http:// base.
    let absent = d.path().join("absent.pem");
    crate::connector_for("http://c:1", Some(&absent), http.clone()).unwrap();
    assert!(crate::connector_for("https://c:1", Some(&absent), http).is_err());
}

#[test]
fn create_never_overwrites() {
    let d = tempfile::tempdir().unwrap();
    issued(d.path());
    let err = create(d.path(), &["localhost".to_string()]).unwrap_err();
    assert!(err.to_string().contains("ca.pem"), "{err}");
}
