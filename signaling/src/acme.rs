//! Automatic HTTPS: certificates obtained and renewed with ACME (Let's
//! Encrypt by default), validated by TLS-ALPN-01 on the HTTPS port itself,
//! and kept in a cache directory so a restart reuses them.
//!
//! The ACME client (`rustls-acme`) runs as a task that drives its state:
//! it loads the cached certificate or orders one, answers the CA's
//! validation connections (ALPN `acme-tls/1`) through the same listener as
//! the browsers, and renews before expiry. The server's TLS configuration
//! takes its certificates from the client's resolver.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum_server::tls_rustls::RustlsConfig;
use futures_util::StreamExt;
use rustls_acme::caches::DirCache;
use rustls_acme::{AcmeConfig, EventOk};
use tracing::{info, warn};

/// Let's Encrypt's production directory.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";

/// ALPN of TLS-ALPN-01 validation (RFC 8737).
const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// How to get certificates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeSettings {
    /// The names the certificate is for.
    pub domains: Vec<String>,
    /// Whom the CA may write to about the certificates.
    pub email: Option<String>,
    /// Where certificates and the account key are kept.
    pub cache: PathBuf,
    /// The CA's ACME directory URL.
    pub directory: String,
    /// A PEM file with the root certificate(s) that the directory's own
    /// HTTPS certificate chains to, for a private CA; the public web roots
    /// otherwise.
    pub directory_ca: Option<PathBuf>,
}

/// A TLS configuration whose certificates come from ACME, and the task
/// that obtains and renews them.
pub(crate) fn rustls_config(settings: &AcmeSettings) -> io::Result<RustlsConfig> {
    let mut acme = AcmeConfig::new(&settings.domains)
        .contact(settings.email.iter().map(|e| format!("mailto:{e}")))
        .directory(&settings.directory);
    if let Some(ca) = &settings.directory_ca {
        acme = acme.client_tls_config(Arc::new(client_config(ca)?));
    }
    let mut state = acme.cache(DirCache::new(settings.cache.clone())).state();
    let mut server = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_cert_resolver(state.resolver());
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec(), ACME_TLS_ALPN.to_vec()];
    let domains = settings.domains.join(", ");
    tokio::spawn(async move {
        while let Some(event) = state.next().await {
            match event {
                Ok(EventOk::DeployedCachedCert) => info!(%domains, "certificate from the cache"),
                Ok(EventOk::DeployedNewCert) => info!(%domains, "new certificate from ACME"),
                Ok(ok) => tracing::debug!(?ok, "acme"),
                Err(e) => warn!(%domains, "acme: {e}"),
            }
        }
    });
    Ok(RustlsConfig::from_config(Arc::new(server)))
}

/// A client configuration that trusts the roots in `ca` (PEM).
fn client_config(ca: &Path) -> io::Result<rustls::ClientConfig> {
    let pem = std::fs::read(ca)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", ca.display())))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile_certs(&pem)? {
        roots
            .add(cert)
            .map_err(|e| io::Error::other(format!("{}: {e}", ca.display())))?;
    }
    if roots.is_empty() {
        return Err(io::Error::other(format!(
            "{}: no certificate in it",
            ca.display()
        )));
    }
    Ok(rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// The certificates of a PEM file.
fn rustls_pemfile_certs(pem: &[u8]) -> io::Result<Vec<rustls::pki_types::CertificateDer<'static>>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| io::Error::other(format!("not PEM certificates: {e}")))
}
