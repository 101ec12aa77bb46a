//! HTTPS and WSS with a self-signed certificate, pinned by its fingerprint.

use std::sync::Arc;

use chorus_signaling::config::{Config, Tls};
use chorus_signaling::protocol::{ClientMsg, ServerMsg};
use chorus_tests::signal::{Error, TestServer};
use futures_util::{SinkExt, StreamExt};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::tungstenite::Message;

/// Accepts exactly the certificate whose SHA-256 fingerprint the server
/// printed, as a person comparing fingerprints would.
#[derive(Debug)]
struct Pinned {
    fingerprint: String,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, end_entity.as_ref());
        let fp: Vec<String> = digest.as_ref().iter().map(|b| format!("{b:02X}")).collect();
        if fp.join(":") == self.fingerprint {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "certificate fingerprint mismatch".into(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

async fn connect(server: &TestServer, fingerprint: &str) -> Result<TlsStream<TcpStream>, Error> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Pinned {
            fingerprint: fingerprint.to_string(),
            provider,
        }))
        .with_no_client_auth();
    let tcp = TcpStream::connect(server.server.http_addr).await?;
    let name = ServerName::try_from("localhost")?;
    Ok(TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await?)
}

async fn https(server: &TestServer, fp: &str, request: &str) -> Result<String, Error> {
    let mut tls = connect(server, fp).await?;
    tls.write_all(request.as_bytes()).await?;
    let mut resp = Vec::new();
    // The server may close without a TLS close_notify; what was read counts.
    let _ = tls.read_to_end(&mut resp).await;
    Ok(String::from_utf8_lossy(&resp).into_owned())
}

#[tokio::test]
async fn https_and_wss_with_a_self_signed_certificate() -> Result<(), Error> {
    let server = TestServer::start_with(Config {
        tls: Tls::SelfSigned,
        ..Config::local()
    })
    .await?;
    assert_eq!(server.server.scheme, "https");
    let fp = server
        .server
        .tls_fingerprint
        .clone()
        .ok_or("no fingerprint printed")?;

    let health = https(
        &server,
        &fp,
        "GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await?;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");

    let body = r#"{"name":"Ada"}"#;
    let token_resp = https(
        &server,
        &fp,
        &format!(
            "POST /api/token HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
    .await?;
    let json = token_resp.split("\r\n\r\n").nth(1).ok_or("no body")?;
    let v: serde_json::Value = serde_json::from_str(json)?;
    let token = v["token"].as_str().ok_or("no token")?.to_string();

    // WSS: the signaling protocol over TLS.
    let tls = connect(&server, &fp).await?;
    let (mut ws, _) = tokio_tungstenite::client_async("wss://localhost/ws", tls).await?;
    let auth = serde_json::to_string(&ClientMsg::Auth {
        identity_key: None,
        token,
        resume: None,
    })?;
    ws.send(Message::Text(auth.into())).await?;
    let first = ws.next().await.ok_or("closed")??;
    let msg: ServerMsg = serde_json::from_str(first.to_text()?)?;
    assert!(matches!(msg, ServerMsg::Welcome { user, .. } if user.name == "Ada"));

    // A client that pins another certificate refuses the connection.
    assert!(connect(&server, "00:11").await.is_err());
    // Plain HTTP on the TLS port gets nothing useful.
    let mut tcp = TcpStream::connect(server.server.http_addr).await?;
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await?;
    let mut resp = Vec::new();
    let _ = tcp.read_to_end(&mut resp).await;
    assert!(!String::from_utf8_lossy(&resp).contains("200 OK"));
    server.server.stop().await;
    Ok(())
}
