//! The client side: whom to trust, and a connector for hyper's pooled client.

use crate::{pem, provider, TlsError};
use hyper_util::client::legacy::connect::HttpConnector;
use std::path::Path;

/// A connector that speaks `https://` with the given trust and plain `http://`.
pub type HttpsConnector = hyper_rustls::HttpsConnector<HttpConnector>;

/// A client config trusting the CA certificates of `ca_file`, or the system's trust
/// roots when `None` (read once, here, not per connection).
pub fn client_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            for cert in pem::certificates(path)? {
                roots.add(cert).map_err(|e| TlsError::Pem {
                    file: path.display().to_string(),
                    message: format!("not a usable CA certificate: {e}"),
                })?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            if found.certs.is_empty() {
                let why = found
                    .errors
                    .first()
                    .map_or_else(|| "none installed".to_string(), |e| e.to_string());
                return Err(TlsError::NativeRoots(format!(
                    "no CA certificates found ({why}); give a CA file"
                )));
            }
            // Like curl: one unparsable system certificate does not break the rest.
            roots.add_parsable_certificates(found.certs);
        }
    }
    // No ALPN here: the connector offers the protocols it was built for.
    Ok(rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Setup(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// A connector for a client of `base_url`: TLS trusting `ca_file` (or the system's
/// roots) when it is `https://`. For an `http://` base no trust roots are read: the
/// connector keeps one type for both schemes but will never make a handshake.
pub fn connector_for(
    base_url: &str,
    ca_file: Option<&Path>,
    http: HttpConnector,
) -> Result<HttpsConnector, TlsError> {
    let config = if base_url.starts_with("https://") {
        client_config(ca_file)?
    } else {
        client_config_trusting_nothing()
    };
    Ok(https_connector(http, config))
}

/// A client config with no trust roots at all.
fn client_config_trusting_nothing() -> rustls::ClientConfig {
    rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth()
}

/// Wraps `http` so that `https://` URLs get TLS with `config`; `http://` URLs pass
/// through unchanged.
pub fn https_connector(mut http: HttpConnector, config: rustls::ClientConfig) -> HttpsConnector {
    // The TLS layer decides the scheme; the TCP connector must not refuse https.
    http.enforce_http(false);
    hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http)
}
