//! Configuration: a TOML file, overridden by `CHORUS_*` environment
//! variables, overridden by command-line flags.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::acme::{AcmeSettings, LETS_ENCRYPT};
pub use crate::cluster::ClusterSettings;
use crate::turn::IceSettings;
use serde::Deserialize;

/// Command line and environment; the same keys (with underscores) in the
/// config file.
#[derive(Debug, Parser, Default, Deserialize)]
#[command(
    name = "chorus",
    version,
    about = "Chorus: voice and video calls for the browser"
)]
#[serde(default, deny_unknown_fields)]
pub struct Cli {
    /// A TOML file with any of the settings below (keys as the flags, with
    /// underscores: `listen`, `udp_port`, ...).
    #[arg(long, env = "CHORUS_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// HTTP and WebSocket address [default: 127.0.0.1:8080].
    #[arg(long, env = "CHORUS_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// The media node's UDP port; 0 picks a free one [default: 50000].
    #[arg(long, env = "CHORUS_UDP_PORT")]
    pub udp_port: Option<u16>,
    /// The media node's ICE-TCP port, for networks that block UDP; 0 picks
    /// a free one [default: the same number as --udp-port].
    #[arg(long, env = "CHORUS_TCP_PORT")]
    pub tcp_port: Option<u16>,
    /// ICE-TCP connections from one IP address (a NAT can hide a whole
    /// office) [default: 256].
    #[arg(long, env = "CHORUS_TCP_MAX_PER_IP")]
    pub tcp_max_per_ip: Option<usize>,
    /// The address put into ICE candidates [default: the IP of --listen].
    #[arg(long, env = "CHORUS_PUBLIC_IP")]
    pub public_ip: Option<IpAddr>,
    /// Media worker threads, each with its own UDP port (udp_port,
    /// udp_port+1, ...) and its own rooms [default: one per core].
    #[arg(long, env = "CHORUS_WORKERS")]
    pub workers: Option<usize>,
    /// Issue tokens to anyone who asks (POST /api/token) [default: on when
    /// no token secret is configured].
    #[arg(long, env = "CHORUS_DEV", num_args = 0..=1, default_missing_value = "true")]
    pub dev: Option<bool>,
    /// The HS256 secret that signs access tokens.
    #[arg(long, env = "CHORUS_TOKEN_SECRET", hide_env_values = true)]
    pub token_secret: Option<String>,
    /// Seconds a call rings before it is missed [default: 30].
    #[arg(long, env = "CHORUS_RING_TIMEOUT")]
    pub ring_timeout: Option<u64>,
    /// Seconds a dropped connection can resume its session [default: 20].
    #[arg(long, env = "CHORUS_RECONNECT_GRACE")]
    pub reconnect_grace: Option<u64>,
    /// Seconds running calls may go on after SIGTERM [default: 60].
    #[arg(long, env = "CHORUS_DRAIN_TIMEOUT")]
    pub drain_timeout: Option<u64>,
    /// Largest WebSocket message, in bytes [default: 262144].
    #[arg(long, env = "CHORUS_MAX_MESSAGE_BYTES")]
    pub max_message_bytes: Option<usize>,
    /// Messages per second one connection may send (bursts of twice that)
    /// [default: 20].
    #[arg(long, env = "CHORUS_MESSAGES_PER_SECOND")]
    pub messages_per_second: Option<u32>,
    /// Participants in one room [default: 16].
    #[arg(long, env = "CHORUS_MAX_ROOM_PARTICIPANTS")]
    pub max_room_participants: Option<usize>,
    /// Rooms on this server, ringing calls included [default: 1000].
    #[arg(long, env = "CHORUS_MAX_ROOMS")]
    pub max_rooms: Option<usize>,
    /// Calls one user may ring per minute [default: 10].
    #[arg(long, env = "CHORUS_CALLS_PER_MINUTE")]
    pub calls_per_minute: Option<usize>,
    /// Largest SDP accepted, in bytes [default: 65536].
    #[arg(long, env = "CHORUS_MAX_SDP_BYTES")]
    pub max_sdp_bytes: Option<usize>,
    /// PEM certificate chain: serve HTTPS and WSS (with --tls-key).
    #[arg(long, env = "CHORUS_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, env = "CHORUS_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Serve HTTPS with a generated self-signed certificate (for a trial on a LAN).
    #[arg(long, env = "CHORUS_TLS_SELF_SIGNED", num_args = 0..=1, default_missing_value = "true")]
    pub tls_self_signed: Option<bool>,
    /// A TURN server for callers no direct path reaches, e.g.
    /// `turn:turn.example.org:3478?transport=udp` or
    /// `turns:turn.example.org:443?transport=tcp` (repeatable; in the
    /// environment, comma-separated).
    #[arg(long = "turn-url", env = "CHORUS_TURN_URL", value_delimiter = ',')]
    pub turn_url: Option<Vec<String>>,
    /// The secret shared with the TURN server (coturn's
    /// `static-auth-secret`): Chorus mints time-limited credentials with it.
    #[arg(long, env = "CHORUS_TURN_SECRET", hide_env_values = true)]
    pub turn_secret: Option<String>,
    /// Seconds TURN credentials stay valid; renewed on every sign-in and
    /// resume [default: 86400].
    #[arg(long, env = "CHORUS_TURN_TTL")]
    pub turn_ttl: Option<u64>,
    /// Clients send media through TURN only: nobody reaches the media node
    /// directly (needs --turn-url and --turn-secret).
    #[arg(long, env = "CHORUS_FORCE_RELAY", num_args = 0..=1, default_missing_value = "true")]
    pub force_relay: Option<bool>,
    /// Obtain and renew an HTTPS certificate for this name with ACME
    /// (TLS-ALPN-01 on the --listen port, which must be 443 for the CA to
    /// reach it); repeatable; in the environment, comma-separated.
    #[arg(
        long = "acme-domain",
        env = "CHORUS_ACME_DOMAIN",
        value_delimiter = ','
    )]
    pub acme_domain: Option<Vec<String>>,
    /// Contact address given to the CA (expiry warnings).
    #[arg(long, env = "CHORUS_ACME_EMAIL")]
    pub acme_email: Option<String>,
    /// Where ACME certificates and the account key are kept
    /// [default: acme-cache].
    #[arg(long, env = "CHORUS_ACME_CACHE")]
    pub acme_cache: Option<PathBuf>,
    /// The CA's ACME directory [default: Let's Encrypt production].
    #[arg(long, env = "CHORUS_ACME_DIRECTORY")]
    pub acme_directory: Option<String>,
    /// PEM root certificate(s) of a private ACME directory's own HTTPS.
    #[arg(long, env = "CHORUS_ACME_DIRECTORY_CA")]
    pub acme_directory_ca: Option<PathBuf>,
    /// Also listen for plain HTTP here (e.g. 0.0.0.0:80) and redirect every
    /// request to HTTPS.
    #[arg(long, env = "CHORUS_HTTP_REDIRECT")]
    pub http_redirect: Option<SocketAddr>,
    /// Join a cluster of Chorus nodes that share state through this Redis
    /// (`redis://[:password@]host:port/db`, or `rediss://` for TLS).
    /// Without it this node works alone, with nothing external.
    #[arg(long, env = "CHORUS_REDIS", hide_env_values = true)]
    pub redis: Option<String>,
    /// This node's name in the cluster [default: generated].
    #[arg(long, env = "CHORUS_NODE_ID")]
    pub node_id: Option<String>,
    /// The secret every node of the cluster signs its messages to the
    /// others with (needed with --redis).
    #[arg(long, env = "CHORUS_CLUSTER_SECRET", hide_env_values = true)]
    pub cluster_secret: Option<String>,
    /// New rooms are not placed on this node once it carries this many
    /// media participants [default: no limit].
    #[arg(long, env = "CHORUS_MAX_NODE_PARTICIPANTS")]
    pub max_node_participants: Option<usize>,
    /// Log format: `pretty` or `json` [default: pretty].
    #[arg(long, env = "CHORUS_LOG_FORMAT")]
    pub log_format: Option<String>,
}

/// How HTTPS is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tls {
    /// Plain HTTP.
    Off,
    /// A certificate and key from PEM files.
    Files {
        /// Certificate chain.
        cert: PathBuf,
        /// Private key.
        key: PathBuf,
    },
    /// A certificate generated at start.
    SelfSigned,
    /// Certificates obtained and renewed with ACME.
    Acme(AcmeSettings),
}

/// Limits on what clients may do.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest WebSocket message, in bytes.
    pub max_message_bytes: usize,
    /// Messages per second per connection.
    pub messages_per_second: u32,
    /// Participants in one room.
    pub max_room_participants: usize,
    /// Rooms on the server.
    pub max_rooms: usize,
    /// Calls rung per minute per user.
    pub calls_per_minute: usize,
    /// Largest SDP, in bytes.
    pub max_sdp_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_bytes: 256 * 1024,
            messages_per_second: 20,
            max_room_participants: 16,
            max_rooms: 1000,
            calls_per_minute: 10,
            max_sdp_bytes: 64 * 1024,
        }
    }
}

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// HTTP and WebSocket address.
    pub listen: SocketAddr,
    /// The media node's UDP port.
    pub udp_port: u16,
    /// The media node's ICE-TCP port.
    pub tcp_port: u16,
    /// ICE-TCP connections from one IP address.
    pub tcp_max_per_ip: usize,
    /// The address put into ICE candidates.
    pub public_ip: IpAddr,
    /// Media worker threads.
    pub workers: usize,
    /// Dev mode: `POST /api/token` issues tokens.
    pub dev: bool,
    /// The token secret; random in dev mode when unset.
    pub token_secret: Option<String>,
    /// How long a call rings.
    pub ring_timeout: Duration,
    /// How long a dropped connection can resume its session.
    pub reconnect_grace: Duration,
    /// How long calls may go on after SIGTERM.
    pub drain_timeout: Duration,
    /// Client limits.
    pub limits: Limits,
    /// HTTPS.
    pub tls: Tls,
    /// TURN and the ICE transport policy clients get.
    pub ice: IceSettings,
    /// Plain HTTP that redirects to HTTPS.
    pub http_redirect: Option<SocketAddr>,
    /// Cluster membership, with `--redis`.
    pub cluster: Option<ClusterSettings>,
    /// `json` logs instead of pretty ones.
    pub json_logs: bool,
}

impl Config {
    /// A configuration for tests and embedding: loopback, free ports, dev mode.
    pub fn local() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            udp_port: 0,
            tcp_port: 0,
            tcp_max_per_ip: 256,
            public_ip: IpAddr::from([127, 0, 0, 1]),
            workers: 2,
            dev: true,
            token_secret: None,
            ring_timeout: Duration::from_secs(30),
            reconnect_grace: Duration::from_secs(20),
            drain_timeout: Duration::from_secs(60),
            limits: Limits::default(),
            tls: Tls::Off,
            ice: IceSettings::default(),
            http_redirect: None,
            cluster: None,
            json_logs: false,
        }
    }

    /// Resolves the command line, the environment and the config file.
    pub fn resolve(cli: Cli) -> Result<Self, String> {
        let file = match &cli.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                toml::from_str::<Cli>(&text).map_err(|e| format!("{}: {e}", path.display()))?
            }
            None => Cli::default(),
        };
        let d = Limits::default();
        let listen = cli
            .listen
            .or(file.listen)
            .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 8080)));
        let token_secret = cli.token_secret.or(file.token_secret);
        let dev = cli.dev.or(file.dev).unwrap_or(token_secret.is_none());
        if !dev && token_secret.is_none() {
            return Err("without --dev, a --token-secret is required".into());
        }
        let log_format = cli.log_format.or(file.log_format);
        let json_logs = match log_format.as_deref() {
            None | Some("pretty") => false,
            Some("json") => true,
            Some(other) => return Err(format!("unknown log format {other:?}")),
        };
        let acme_domains = cli.acme_domain.or(file.acme_domain).unwrap_or_default();
        let tls = match (
            cli.tls_cert.or(file.tls_cert),
            cli.tls_key.or(file.tls_key),
            cli.tls_self_signed
                .or(file.tls_self_signed)
                .unwrap_or(false),
            acme_domains.is_empty(),
        ) {
            (Some(cert), Some(key), false, true) => Tls::Files { cert, key },
            (None, None, true, true) => Tls::SelfSigned,
            (None, None, false, true) => Tls::Off,
            (None, None, false, false) => Tls::Acme(AcmeSettings {
                domains: acme_domains,
                email: cli.acme_email.or(file.acme_email),
                cache: cli
                    .acme_cache
                    .or(file.acme_cache)
                    .unwrap_or_else(|| PathBuf::from("acme-cache")),
                directory: cli
                    .acme_directory
                    .or(file.acme_directory)
                    .unwrap_or_else(|| LETS_ENCRYPT.to_string()),
                directory_ca: cli.acme_directory_ca.or(file.acme_directory_ca),
            }),
            (_, _, _, false) => {
                return Err(
                    "--acme-domain excludes --tls-cert, --tls-key and --tls-self-signed".into(),
                );
            }
            (_, _, true, _) => return Err("--tls-self-signed excludes --tls-cert/--tls-key".into()),
            _ => return Err("--tls-cert and --tls-key go together".into()),
        };
        let http_redirect = cli.http_redirect.or(file.http_redirect);
        let cluster = match cli.redis.or(file.redis) {
            None => None,
            Some(redis) => Some(ClusterSettings {
                redis,
                node_id: cli
                    .node_id
                    .or(file.node_id)
                    .unwrap_or_else(ClusterSettings::generated_id),
                secret: cli
                    .cluster_secret
                    .or(file.cluster_secret)
                    .ok_or("--redis needs a --cluster-secret shared by every node")?,
                max_participants: cli.max_node_participants.or(file.max_node_participants),
            }),
        };
        if http_redirect.is_some() && tls == Tls::Off {
            return Err(
                "--http-redirect needs HTTPS (--acme-domain, --tls-cert or --tls-self-signed)"
                    .into(),
            );
        }
        let secs = |a: Option<u64>, b: Option<u64>, default: u64| {
            Duration::from_secs(a.or(b).unwrap_or(default))
        };
        let ice = IceSettings {
            turn_urls: cli.turn_url.or(file.turn_url).unwrap_or_default(),
            turn_secret: cli.turn_secret.or(file.turn_secret),
            turn_ttl: secs(cli.turn_ttl, file.turn_ttl, 86_400),
            force_relay: cli.force_relay.or(file.force_relay).unwrap_or(false),
        };
        if let Some(bad) = ice.turn_urls.iter().find(|u| {
            !["turn:", "turns:", "stun:"]
                .iter()
                .any(|s| u.starts_with(s))
        }) {
            return Err(format!(
                "--turn-url {bad:?}: must start with turn:, turns: or stun:"
            ));
        }
        let has_turn = ice.turn_urls.iter().any(|u| !u.starts_with("stun:"));
        if has_turn != ice.turn_secret.is_some() {
            return Err("--turn-url (turn: or turns:) and --turn-secret go together".into());
        }
        if ice.force_relay && !has_turn {
            return Err("--force-relay needs a TURN server (--turn-url, --turn-secret)".into());
        }
        let udp_port = cli.udp_port.or(file.udp_port).unwrap_or(50000);
        Ok(Config {
            listen,
            udp_port,
            tcp_port: cli.tcp_port.or(file.tcp_port).unwrap_or(udp_port),
            tcp_max_per_ip: cli.tcp_max_per_ip.or(file.tcp_max_per_ip).unwrap_or(256),
            public_ip: cli.public_ip.or(file.public_ip).unwrap_or(listen.ip()),
            workers: cli
                .workers
                .or(file.workers)
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
                .max(1),
            dev,
            token_secret,
            ring_timeout: secs(cli.ring_timeout, file.ring_timeout, 30),
            reconnect_grace: secs(cli.reconnect_grace, file.reconnect_grace, 20),
            drain_timeout: secs(cli.drain_timeout, file.drain_timeout, 60),
            limits: Limits {
                max_message_bytes: cli
                    .max_message_bytes
                    .or(file.max_message_bytes)
                    .unwrap_or(d.max_message_bytes),
                messages_per_second: cli
                    .messages_per_second
                    .or(file.messages_per_second)
                    .unwrap_or(d.messages_per_second),
                max_room_participants: cli
                    .max_room_participants
                    .or(file.max_room_participants)
                    .unwrap_or(d.max_room_participants),
                max_rooms: cli.max_rooms.or(file.max_rooms).unwrap_or(d.max_rooms),
                calls_per_minute: cli
                    .calls_per_minute
                    .or(file.calls_per_minute)
                    .unwrap_or(d.calls_per_minute),
                max_sdp_bytes: cli
                    .max_sdp_bytes
                    .or(file.max_sdp_bytes)
                    .unwrap_or(d.max_sdp_bytes),
            },
            tls,
            ice,
            http_redirect,
            cluster,
            json_logs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_local_and_dev() {
        let c = Config::resolve(Cli::default()).expect("defaults resolve");
        assert_eq!(c.listen, SocketAddr::from(([127, 0, 0, 1], 8080)));
        assert_eq!(c.udp_port, 50000);
        assert_eq!(c.tcp_port, 50000, "TCP on the same number as UDP");
        assert_eq!(c.public_ip, IpAddr::from([127, 0, 0, 1]));
        assert!(c.dev);
    }

    #[test]
    fn flags_override_the_file() {
        let dir = std::env::temp_dir().join(format!("chorus-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("chorus.toml");
        std::fs::write(
            &path,
            "listen = \"0.0.0.0:9000\"\nudp_port = 40000\ntoken_secret = \"s\"\n",
        )
        .expect("write config");
        let cli = Cli::parse_from([
            "chorus",
            "--config",
            path.to_str().unwrap_or(""),
            "--udp-port",
            "0",
        ]);
        let c = Config::resolve(cli).expect("resolves");
        assert_eq!(c.listen, SocketAddr::from(([0, 0, 0, 0], 9000)));
        assert_eq!(c.udp_port, 0);
        assert!(!c.dev, "a secret turns dev mode off");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn unknown_keys_are_errors() {
        let dir = std::env::temp_dir().join(format!("chorus-config-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("chorus.toml");
        std::fs::write(&path, "lisen = \"0.0.0.0:9000\"\n").expect("write config");
        let cli = Cli::parse_from(["chorus", "--config", path.to_str().unwrap_or("")]);
        assert!(Config::resolve(cli).is_err());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn the_packaged_config_file_shows_every_setting_and_parses() {
        use clap::CommandFactory;
        let text = include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../packaging/debian/chorus.toml"
        ));
        // Uncomment every setting: the file must then parse, with the types
        // the flags have.
        let uncommented: String = text
            .lines()
            .filter_map(|l| l.strip_prefix('#'))
            .filter(|l| {
                l.split(" = ").next().is_some_and(|k| {
                    !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                })
            })
            .map(|l| format!("{l}\n"))
            .collect();
        let parsed: Result<Cli, _> = toml::from_str(&uncommented);
        assert!(parsed.is_ok(), "{parsed:?}\n{uncommented}");
        for arg in Cli::command().get_arguments() {
            let key = arg.get_id().as_str();
            if key == "config" {
                continue;
            }
            assert!(
                uncommented
                    .lines()
                    .any(|l| l.starts_with(&format!("{key} = "))),
                "packaging/debian/chorus.toml does not show `{key}`"
            );
        }
    }
}
