//! HTTPS and WSS with rustls: from PEM files, from ACME
//! ([`crate::acme`]), or a self-signed certificate generated at start for a
//! trial on a LAN.

use std::io;
use std::net::IpAddr;

use axum_server::tls_rustls::RustlsConfig;

use crate::config::Tls;

/// The rustls configuration, and the SHA-256 fingerprint of a generated
/// certificate (colon-separated hex, as browsers show it).
pub(crate) async fn rustls_config(
    tls: &Tls,
    public_ip: IpAddr,
) -> io::Result<(RustlsConfig, Option<String>)> {
    // One crypto library for the whole process: aws-lc-rs, as str0m uses.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    match tls {
        Tls::Off => Err(io::Error::other("TLS is off")),
        Tls::Files { cert, key } => Ok((RustlsConfig::from_pem_file(cert, key).await?, None)),
        Tls::Acme(acme) => Ok((crate::acme::rustls_config(acme)?, None)),
        Tls::SelfSigned => {
            let (cert_pem, key_pem, fingerprint) = self_signed(public_ip)?;
            let config =
                RustlsConfig::from_pem(cert_pem.into_bytes(), key_pem.into_bytes()).await?;
            Ok((config, Some(fingerprint)))
        }
    }
}

/// A certificate for `localhost` and `ip`: (cert PEM, key PEM, fingerprint).
pub fn self_signed(ip: IpAddr) -> io::Result<(String, String, String)> {
    let names = vec!["localhost".to_string(), ip.to_string()];
    let certified = rcgen::generate_simple_self_signed(names).map_err(io::Error::other)?;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, certified.cert.der());
    let fingerprint = digest
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":");
    Ok((
        certified.cert.pem(),
        certified.signing_key.serialize_pem(),
        fingerprint,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_certificates_have_a_fingerprint() {
        let (cert, key, fp) = self_signed(IpAddr::from([127, 0, 0, 1])).expect("generated");
        assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(key.contains("PRIVATE KEY"));
        assert_eq!(fp.len(), 32 * 3 - 1);
    }
}
