//! TURN credentials minted by Chorus, checked by a real coturn: what a
//! client gets in `welcome` allocates a relay; forged or expired
//! credentials are refused. coturn (Debian's `turnserver`) and its own
//! test client (`turnutils_uclient`) are started here, on loopback.

use std::net::UdpSocket;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime};

use chorus_signaling::config::Config;
use chorus_signaling::protocol::{ClientMsg, IceConfig, IceTransportPolicy, ServerMsg};
use chorus_signaling::turn::{IceSettings, credentials};
use chorus_tests::signal::{Client, TestServer};

const SECRET: &str = "shared-with-coturn";

/// A coturn process on 127.0.0.1, killed when dropped.
struct Coturn {
    child: Child,
    port: u16,
}

impl Coturn {
    fn start() -> Coturn {
        let port = free_udp_port();
        let child = Command::new("turnserver")
            .args([
                "-n",
                "--listening-ip=127.0.0.1",
                "--relay-ip=127.0.0.1",
                &format!("--listening-port={port}"),
                "--use-auth-secret",
                &format!("--static-auth-secret={SECRET}"),
                "--realm=chorus.test",
                "--allow-loopback-peers",
                "--no-cli",
                "--no-tls",
                "--no-dtls",
                "--log-file=stdout",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("turnserver (Debian package coturn) runs; tests/run installs it");
        Coturn { child, port }
    }

    /// Allocates relays and sends a few packets through them with coturn's
    /// own client: true if coturn accepted the credentials.
    fn allocates(&self, username: &str, password: &str) -> bool {
        let status = Command::new("turnutils_uclient")
            .args(["-y", "-c", "-n", "2", "-u", username, "-w", password])
            .args(["-p", &self.port.to_string(), "127.0.0.1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("turnutils_uclient (Debian package coturn) runs");
        status.success()
    }

    /// Waits until coturn answers (an allocation with valid credentials).
    fn wait_ready(&self) {
        let (u, p) = credentials(SECRET, "probe", SystemTime::now(), Duration::from_secs(60));
        for _ in 0..50 {
            if self.allocates(&u, &p) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("coturn did not come up");
    }
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Signs in and returns what `welcome` says about ICE.
async fn welcome_ice(server: &TestServer, name: &str, resume: Option<&str>) -> (IceConfig, String) {
    let (token, _) = server.token(name).await.expect("token");
    let mut c = Client::connect(&server.ws_url()).await.expect("connect");
    c.send(&ClientMsg::Auth {
        identity_key: None,
        token,
        resume: resume.map(str::to_string),
    })
    .expect("send");
    let welcome = c
        .recv_until(Duration::from_secs(5), |m| {
            matches!(m, ServerMsg::Welcome { .. })
        })
        .await
        .expect("welcome");
    let ServerMsg::Welcome {
        ice, resume_token, ..
    } = welcome
    else {
        unreachable!("filtered above")
    };
    (ice, resume_token)
}

#[tokio::test]
async fn coturn_accepts_what_chorus_mints_and_refuses_forged_or_expired() {
    let coturn = Coturn::start();
    coturn.wait_ready();
    let url = format!("turn:127.0.0.1:{}?transport=udp", coturn.port);
    let mut config = Config::local();
    config.ice = IceSettings {
        turn_urls: vec![url.clone()],
        turn_secret: Some(SECRET.into()),
        turn_ttl: Duration::from_secs(3600),
        force_relay: true,
    };
    let server = TestServer::start_with(config).await.expect("server");

    let (ice, resume) = welcome_ice(&server, "Ada", None).await;
    assert_eq!(ice.ice_transport_policy, IceTransportPolicy::Relay);
    assert_eq!(ice.ice_servers.len(), 1);
    let turn = &ice.ice_servers[0];
    assert_eq!(turn.urls, vec![url]);
    let username = turn.username.clone().expect("a username");
    let password = turn.credential.clone().expect("a credential");
    assert!(
        coturn.allocates(&username, &password),
        "coturn accepts Chorus' credentials"
    );

    // Forged: the right shape, the wrong secret.
    let (u, forged) = credentials(
        "not-the-secret",
        "ada",
        SystemTime::now(),
        Duration::from_secs(3600),
    );
    assert!(
        !coturn.allocates(&u, &forged),
        "a forged credential is refused"
    );
    assert!(
        !coturn.allocates(&username, "x"),
        "a wrong password is refused"
    );
    // Expired: signed with the right secret, but its time is past.
    let past = SystemTime::now() - Duration::from_secs(7200);
    let (u, p) = credentials(SECRET, "ada", past, Duration::from_secs(3600));
    assert!(
        !coturn.allocates(&u, &p),
        "an expired credential is refused"
    );

    // A resumed session gets fresh credentials, which coturn accepts too.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (again, _) = welcome_ice(&server, "Ada", Some(&resume)).await;
    let renewed = &again.ice_servers[0];
    let renewed_user = renewed.username.clone().expect("a username");
    let expiry = |u: &str| u.split(':').next().and_then(|e| e.parse::<u64>().ok());
    assert!(
        expiry(&renewed_user) > expiry(&username),
        "renewed: {renewed_user} after {username}"
    );
    assert!(coturn.allocates(&renewed_user, renewed.credential.as_deref().unwrap_or("")));
    server.server.stop().await;
}

#[tokio::test]
async fn without_turn_clients_get_no_ice_servers() {
    let server = TestServer::start().await.expect("server");
    let (ice, _) = welcome_ice(&server, "Bo", None).await;
    assert!(ice.ice_servers.is_empty());
    assert_eq!(ice.ice_transport_policy, IceTransportPolicy::All);
    server.server.stop().await;
}
