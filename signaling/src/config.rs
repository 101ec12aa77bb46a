//! Configuration: a TOML file, overridden by `CHORUS_*` environment
//! variables, overridden by command-line flags.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use serde::Deserialize;

/// Command line and environment.
#[derive(Debug, Parser, Default)]
#[command(
    name = "chorus",
    version,
    about = "Chorus: voice and video calls for the browser"
)]
pub struct Cli {
    /// A TOML file with any of the settings below (keys as the flags, with
    /// underscores: `listen`, `udp_port`, ...).
    #[arg(long, env = "CHORUS_CONFIG")]
    pub config: Option<PathBuf>,
    /// HTTP and WebSocket address [default: 127.0.0.1:8080].
    #[arg(long, env = "CHORUS_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// The media node's UDP port; 0 picks a free one [default: 50000].
    #[arg(long, env = "CHORUS_UDP_PORT")]
    pub udp_port: Option<u16>,
    /// The address put into ICE candidates [default: the IP of --listen].
    #[arg(long, env = "CHORUS_PUBLIC_IP")]
    pub public_ip: Option<IpAddr>,
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
    /// Log format: `pretty` or `json` [default: pretty].
    #[arg(long, env = "CHORUS_LOG_FORMAT")]
    pub log_format: Option<String>,
}

/// The same settings in a config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    listen: Option<SocketAddr>,
    udp_port: Option<u16>,
    public_ip: Option<IpAddr>,
    dev: Option<bool>,
    token_secret: Option<String>,
    ring_timeout: Option<u64>,
    log_format: Option<String>,
}

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// HTTP and WebSocket address.
    pub listen: SocketAddr,
    /// The media node's UDP port.
    pub udp_port: u16,
    /// The address put into ICE candidates.
    pub public_ip: IpAddr,
    /// Dev mode: `POST /api/token` issues tokens.
    pub dev: bool,
    /// The token secret; random in dev mode when unset.
    pub token_secret: Option<String>,
    /// How long a call rings.
    pub ring_timeout: Duration,
    /// `json` logs instead of pretty ones.
    pub json_logs: bool,
}

impl Config {
    /// A configuration for tests and embedding: loopback, free ports, dev mode.
    pub fn local() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            udp_port: 0,
            public_ip: IpAddr::from([127, 0, 0, 1]),
            dev: true,
            token_secret: None,
            ring_timeout: Duration::from_secs(30),
            json_logs: false,
        }
    }

    /// Resolves the command line, the environment and the config file.
    pub fn resolve(cli: Cli) -> Result<Self, String> {
        let file = match &cli.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                toml::from_str::<FileConfig>(&text)
                    .map_err(|e| format!("{}: {e}", path.display()))?
            }
            None => FileConfig::default(),
        };
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
        Ok(Config {
            listen,
            udp_port: cli.udp_port.or(file.udp_port).unwrap_or(50000),
            public_ip: cli.public_ip.or(file.public_ip).unwrap_or(listen.ip()),
            dev,
            token_secret,
            ring_timeout: Duration::from_secs(cli.ring_timeout.or(file.ring_timeout).unwrap_or(30)),
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
}
