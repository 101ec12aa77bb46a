//! Automatic HTTPS against a real ACME server: Debian's pebble (with its
//! DNS stand-in, pebble-challtestsrv, answering 127.0.0.1 for every name),
//! started here on loopback. Chorus obtains a certificate for `chorus.test`
//! by TLS-ALPN-01, serves HTTPS with it to a client that trusts pebble's
//! root, caches it, and reuses it after a restart with pebble gone.

use std::net::{SocketAddr, TcpListener as StdTcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chorus_signaling::acme::AcmeSettings;
use chorus_signaling::config::{Config, Tls};
use chorus_signaling::server::Server;
use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

const DOMAIN: &str = "chorus.test";

/// A child process killed when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_tcp_port() -> u16 {
    StdTcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// pebble and its DNS, with pebble's own HTTPS certificate in `dir`.
struct Pebble {
    _dns: Process,
    _pebble: Process,
    directory: String,
    management: SocketAddr,
    /// The root of pebble's own HTTPS (not of what it issues).
    listener_ca: PathBuf,
}

impl Pebble {
    fn start(dir: &Path, tls_port: u16) -> Pebble {
        // pebble ships no certificate for its own HTTPS: a test CA signs
        // one for 127.0.0.1.
        let (ca, cert, key) = listener_certificate();
        let listener_ca = dir.join("pebble-ca.pem");
        std::fs::write(&listener_ca, ca).expect("write");
        std::fs::write(dir.join("pebble-cert.pem"), cert).expect("write");
        std::fs::write(dir.join("pebble-key.pem"), key).expect("write");
        let (acme, management, dns) = (free_tcp_port(), free_tcp_port(), free_udp_port());
        let config = serde_json::json!({"pebble": {
            "listenAddress": format!("127.0.0.1:{acme}"),
            "managementListenAddress": format!("127.0.0.1:{management}"),
            "certificate": dir.join("pebble-cert.pem"),
            "privateKey": dir.join("pebble-key.pem"),
            "httpPort": free_tcp_port(),
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
        }});
        std::fs::write(dir.join("pebble.json"), config.to_string()).expect("write");
        let quiet = |c: &mut Command| {
            c.stdout(Stdio::null()).stderr(Stdio::null());
        };
        let mut dns_cmd = Command::new("pebble-challtestsrv");
        dns_cmd.args([
            "-defaultIPv4",
            "127.0.0.1",
            "-defaultIPv6",
            "",
            "-dns01",
            &format!("127.0.0.1:{dns}"),
            "-http01",
            "",
            "-https01",
            "",
            "-tlsalpn01",
            "",
            "-management",
            &format!("127.0.0.1:{}", free_tcp_port()),
        ]);
        quiet(&mut dns_cmd);
        let dns_proc = Process(
            dns_cmd
                .spawn()
                .expect("pebble-challtestsrv (Debian package pebble) runs"),
        );
        let mut pebble_cmd = Command::new("pebble");
        pebble_cmd
            .arg("-config")
            .arg(dir.join("pebble.json"))
            .args(["-dnsserver", &format!("127.0.0.1:{dns}")])
            // No random waits before validating; no nonces refused at random.
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0");
        quiet(&mut pebble_cmd);
        let pebble_proc = Process(
            pebble_cmd
                .spawn()
                .expect("pebble (Debian package pebble) runs"),
        );
        Pebble {
            _dns: dns_proc,
            _pebble: pebble_proc,
            directory: format!("https://127.0.0.1:{acme}/dir"),
            management: SocketAddr::from(([127, 0, 0, 1], management)),
            listener_ca,
        }
    }

    /// The root pebble signs certificates with (it makes a new one at
    /// every start).
    async fn issuing_root(&self) -> Vec<CertificateDer<'static>> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let body = https_get(self.management, "127.0.0.1", "/roots/0", &self.pem_roots()).await;
            if let Ok(body) = body {
                let certs: Vec<_> = CertificateDer::pem_slice_iter(body.as_bytes())
                    .filter_map(Result::ok)
                    .collect();
                if !certs.is_empty() {
                    return certs;
                }
            }
            assert!(
                Instant::now() < deadline,
                "pebble's management API did not answer"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn pem_roots(&self) -> Vec<CertificateDer<'static>> {
        let pem = std::fs::read(&self.listener_ca).expect("read");
        CertificateDer::pem_slice_iter(&pem)
            .filter_map(Result::ok)
            .collect()
    }
}

/// A test CA, and a certificate it signs for 127.0.0.1: (CA PEM, cert
/// PEM, key PEM).
fn listener_certificate() -> (String, String, String) {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Chorus test CA");
    let ca_key = rcgen::KeyPair::generate().expect("key");
    let ca = ca_params.self_signed(&ca_key).expect("CA");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let params = rcgen::CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()])
        .expect("params");
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = params.signed_by(&key, &issuer).expect("certificate");
    (ca.pem(), cert.pem(), key.serialize_pem())
}

/// GET `path` over HTTPS from `addr`, verifying the certificate for
/// `name` against `roots`; the response body.
async fn https_get(
    addr: SocketAddr,
    name: &str,
    path: &str,
    roots: &[CertificateDer<'static>],
) -> Result<String, String> {
    Ok(https_exchange(addr, name, path, roots).await?.1)
}

/// As [`https_get`], and the certificate the server presented.
async fn https_exchange(
    addr: SocketAddr,
    name: &str,
    path: &str,
    roots: &[CertificateDer<'static>],
) -> Result<(CertificateDer<'static>, String), String> {
    let mut store = rustls::RootCertStore::empty();
    for r in roots {
        store.add(r.clone()).map_err(|e| e.to_string())?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(store)
    .with_no_client_auth();
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let server_name = ServerName::try_from(name.to_string()).map_err(|e| e.to_string())?;
    let mut tls = TlsConnector::from(Arc::new(config))
        .connect(server_name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let cert = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.clone().into_owned())
        .ok_or("no certificate")?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    let _ = tls.read_to_end(&mut response).await;
    let response = String::from_utf8_lossy(&response).into_owned();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .ok_or("no HTTP response")?;
    Ok((cert, body))
}

fn acme_config(listen: SocketAddr, pebble: &Pebble, cache: &Path) -> Config {
    let mut config = Config::local();
    config.listen = listen;
    config.tls = Tls::Acme(AcmeSettings {
        domains: vec![DOMAIN.into()],
        email: Some("ops@chorus.test".into()),
        cache: cache.to_path_buf(),
        directory: pebble.directory.clone(),
        directory_ca: Some(pebble.listener_ca.clone()),
    });
    config.http_redirect = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    config
}

/// Waits until `addr` serves HTTPS for [`DOMAIN`] with a certificate that
/// chains to `roots`.
async fn wait_for_certificate(
    addr: SocketAddr,
    roots: &[CertificateDer<'static>],
) -> CertificateDer<'static> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match https_exchange(addr, DOMAIN, "/healthz", roots).await {
            Ok((cert, body)) => {
                assert_eq!(body, "ok");
                return cert;
            }
            Err(e) => assert!(
                Instant::now() < deadline,
                "no certificate from pebble within 60 s: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_certificate_from_acme_is_served_cached_and_reused() {
    let dir = std::env::temp_dir().join(format!("chorus-acme-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let cache = dir.join("cache");
    let port = free_tcp_port();
    let listen = SocketAddr::from(([127, 0, 0, 1], port));
    let pebble = Pebble::start(&dir, port);
    let roots = pebble.issuing_root().await;

    let server = Server::start(acme_config(listen, &pebble, &cache))
        .await
        .expect("server");
    let issued = wait_for_certificate(listen, &roots).await;
    assert!(
        std::fs::read_dir(&cache).is_ok_and(|d| d.count() > 0),
        "the certificate is cached"
    );

    // Plain HTTP is sent to HTTPS under the name asked for.
    let redirect = server.redirect_addr.expect("redirect listener");
    let mut http = TcpStream::connect(redirect).await.expect("connect");
    http.write_all(
        format!("GET /call/abc HTTP/1.1\r\nHost: {DOMAIN}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .expect("write");
    let mut answer = String::new();
    let _ = http.read_to_string(&mut answer).await;
    assert!(answer.starts_with("HTTP/1.1 308"), "{answer}");
    assert!(
        answer.contains(&format!("location: https://{DOMAIN}:{port}/call/abc")),
        "{answer}"
    );
    server.stop().await;

    // pebble is gone: a restart must serve the cached certificate (the
    // cache is kept per directory and names).
    let restart_config = acme_config(listen, &pebble, &cache);
    drop(pebble);
    let restarted = Server::start(restart_config)
        .await
        .expect("restarted server");
    let again = wait_for_certificate(listen, &roots).await;
    assert_eq!(again, issued, "the same certificate, from the cache");
    restarted.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
