//! A cluster for tests: a `redis-server` of its own and Chorus nodes, in
//! this process or as `chorus` processes (which can be killed).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use chorus_signaling::cluster::ClusterSettings;
use chorus_signaling::config::Config;

use crate::signal::{Client, Error, TestServer, sign_in_at, token_at};

/// The secret the test nodes sign their messages with.
pub const CLUSTER_SECRET: &str = "test-cluster-secret";

/// The secret the test nodes sign access tokens with.
pub const TOKEN_SECRET: &str = "test-token-secret-0123456789abcdef";

/// A `redis-server` on a free loopback port, stopped on drop.
pub struct Redis {
    child: Child,
    /// Its port.
    pub port: u16,
}

impl Redis {
    /// Starts one and waits until it answers.
    pub fn start() -> Result<Redis, Error> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let redis = Redis {
            child: Self::spawn(port)?,
            port,
        };
        redis.wait_ready()?;
        Ok(redis)
    }

    /// Stops it (everything it held is lost) and starts it again on the
    /// same port after `down`.
    pub fn restart(&mut self, down: Duration) -> Result<(), Error> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::thread::sleep(down);
        self.child = Self::spawn(self.port)?;
        self.wait_ready()
    }

    fn spawn(port: u16) -> Result<Child, Error> {
        Ok(Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run redis-server (apt-get install redis-server): {e}"))?)
    }

    fn wait_ready(&self) -> Result<(), Error> {
        for _ in 0..100 {
            if self.cli(&["PING"]).is_ok_and(|r| r.trim() == "PONG") {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err("redis-server did not answer".into())
    }

    /// `redis://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Runs `redis-cli` with `args`; its output.
    pub fn cli(&self, args: &[&str]) -> Result<String, Error> {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .output()?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned().into());
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `HGETALL key` as pairs.
    pub fn hash(&self, key: &str) -> Result<Vec<(String, String)>, Error> {
        let raw = self.cli(&["HGETALL", key])?;
        let lines: Vec<&str> = raw.lines().collect();
        Ok(lines
            .chunks(2)
            .filter(|c| c.len() == 2)
            .map(|c| (c[0].to_string(), c[1].to_string()))
            .collect())
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A node's configuration: loopback, free ports, the shared secrets.
pub fn node_config(redis: &Redis, node_id: &str) -> Config {
    let mut config = Config::local();
    config.token_secret = Some(TOKEN_SECRET.into());
    config.cluster = Some(ClusterSettings {
        redis: redis.url(),
        node_id: node_id.into(),
        secret: CLUSTER_SECRET.into(),
        max_participants: None,
    });
    config
}

/// A node in this process.
pub async fn node(redis: &Redis, node_id: &str) -> Result<TestServer, Error> {
    TestServer::start_with(node_config(redis, node_id)).await
}

/// `GET /api/cluster` of the node at `addr`, with the cluster secret.
pub async fn cluster_status(addr: SocketAddr) -> Result<serde_json::Value, Error> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await?;
    let req = format!(
        "GET /api/cluster HTTP/1.1\r\nHost: chorus\r\nAuthorization: Bearer {CLUSTER_SECRET}\r\nConnection: close\r\n\r\n"
    );
    tcp.write_all(req.as_bytes()).await?;
    let mut resp = Vec::new();
    tcp.read_to_end(&mut resp).await?;
    let text = String::from_utf8_lossy(&resp);
    let body = text.split("\r\n\r\n").nth(1).ok_or("no HTTP body")?;
    Ok(serde_json::from_str(body)?)
}

/// Waits until the node at `addr` sees `n` live nodes.
pub async fn wait_nodes(addr: SocketAddr, n: usize) -> Result<(), Error> {
    crate::eventually::eventually_async(
        Duration::from_secs(15),
        "every node in the cluster's view",
        || async move {
            cluster_status(addr)
                .await
                .ok()
                .and_then(|v| v["nodes"].as_array().map(Vec::len))
                .unwrap_or(0)
        },
        |seen| *seen == n,
    )
    .await?;
    Ok(())
}

/// The `chorus` binary next to the test executables.
pub fn chorus_bin() -> Result<PathBuf, Error> {
    if let Ok(p) = std::env::var("CHORUS_BIN") {
        return Ok(p.into());
    }
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .ok_or("no target directory")?;
    let bin = dir.join("chorus");
    if !bin.exists() {
        return Err(format!("{} missing: cargo build --bin chorus first", bin.display()).into());
    }
    Ok(bin)
}

/// A node as a `chorus` process, killed on drop.
pub struct NodeProcess {
    child: Option<Child>,
    /// Its HTTP address.
    pub addr: SocketAddr,
    /// Its id.
    pub id: String,
}

impl NodeProcess {
    /// Starts `chorus` as node `id` and waits until it serves.
    pub fn start(redis: &Redis, id: &str, extra: &[&str]) -> Result<NodeProcess, Error> {
        let mut child = Command::new(chorus_bin()?)
            .args([
                "--listen",
                "127.0.0.1:0",
                "--udp-port",
                "0",
                "--tcp-port",
                "0",
            ])
            .args([
                "--public-ip",
                "127.0.0.1",
                "--workers",
                "1",
                "--dev",
                "true",
            ])
            .args(["--token-secret", TOKEN_SECRET, "--redis", &redis.url()])
            .args(["--cluster-secret", CLUSTER_SECRET, "--node-id", id])
            .args(extra)
            .env(
                "CHORUS_LOG",
                std::env::var("CHORUS_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::piped())
            .spawn()?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let addr = loop {
            let Some(line) = lines.next() else {
                let _ = child.kill();
                return Err(format!("node {id} exited before serving").into());
            };
            let line = line?;
            if let Some(url) = line.split("open http://").nth(1) {
                let host = url.trim().trim_end_matches('/');
                break host.parse::<SocketAddr>()?;
            }
        };
        // Keep reading so the node never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Ok(NodeProcess {
            child: Some(child),
            addr,
            id: id.into(),
        })
    }

    /// Signs `name` in on this node (a fresh session).
    pub async fn client(&self, name: &str) -> Result<Client, Error> {
        let (token, _) = token_at(self.addr, name).await?;
        Ok(sign_in_at(&self.ws_url(), &token, None).await?.0)
    }

    /// The WebSocket URL.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// SIGKILL: the machine is gone.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM: a rolling restart. Returns at once.
    pub fn terminate(&self) -> Result<(), Error> {
        let pid = self.child.as_ref().ok_or("not running")?.id();
        let status = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()?;
        if !status.success() {
            return Err("kill -TERM failed".into());
        }
        Ok(())
    }

    /// True once the process has exited (at once, without waiting).
    pub fn exited(&mut self) -> Result<bool, Error> {
        let Some(child) = self.child.as_mut() else {
            return Ok(true);
        };
        if child.try_wait()?.is_some() {
            self.child = None;
            return Ok(true);
        }
        Ok(false)
    }

    /// Waits for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<(), Error> {
        let deadline = std::time::Instant::now() + timeout;
        let child = self.child.as_mut().ok_or("not running")?;
        while std::time::Instant::now() < deadline {
            if child.try_wait()?.is_some() {
                self.child = None;
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!("node {} still running", self.id).into())
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `haproxy` in front of some nodes, as an operator runs it: WebSockets
/// tunnelled, nodes checked on `/readyz`. Stopped on drop.
pub struct Haproxy {
    child: Child,
    _dir: TempDir,
    /// Where it listens.
    pub addr: SocketAddr,
}

/// A directory removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Haproxy {
    /// Starts haproxy balancing over `nodes` and waits until it serves.
    pub fn start(nodes: &[SocketAddr]) -> Result<Haproxy, Error> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let dir = std::env::temp_dir().join(format!("chorus-haproxy-{port}"));
        std::fs::create_dir_all(&dir)?;
        let dir = TempDir(dir);
        let servers: String = nodes
            .iter()
            .enumerate()
            .map(|(i, a)| format!("  server node{i} {a} check\n"))
            .collect();
        let config = format!(
            "global\n  maxconn 2000\n\
             defaults\n  mode http\n  timeout connect 2s\n  timeout client 1h\n  timeout server 1h\n  timeout tunnel 1h\n\
             frontend chorus\n  bind 127.0.0.1:{port}\n  default_backend nodes\n\
             backend nodes\n  balance roundrobin\n  option httpchk GET /readyz\n  http-check expect status 200\n\
             \x20 default-server inter 500 fall 2 rise 2\n{servers}"
        );
        let path = dir.0.join("haproxy.cfg");
        std::fs::write(&path, config)?;
        let child = Command::new("haproxy")
            .arg("-f")
            .arg(&path)
            .arg("-db")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run haproxy (apt-get install haproxy): {e}"))?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        for _ in 0..100 {
            if std::net::TcpStream::connect(addr).is_ok() {
                return Ok(Haproxy {
                    child,
                    _dir: dir,
                    addr,
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err("haproxy did not listen".into())
    }

    /// Signs `name` in through the balancer (a fresh session).
    pub async fn client(&self, name: &str) -> Result<Client, Error> {
        let (token, _) = token_at(self.addr, name).await?;
        Ok(sign_in_at(&self.ws_url(), &token, None).await?.0)
    }

    /// The WebSocket URL.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
