//! `chorus`: signaling server, embedded media node and web client in one
//! process.

use chorus_signaling::config::{Cli, Config};
use chorus_signaling::server::Server;
use clap::Parser;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let config = match Config::resolve(Cli::parse()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("chorus: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let filter = EnvFilter::try_from_env("CHORUS_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    if config.json_logs {
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    } else {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    }
    let drain_timeout = config.drain_timeout;
    let server = match Server::start(config).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("chorus: cannot start: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    println!(
        "Chorus is running: open {}://{}",
        server.scheme, server.http_addr
    );
    if let Some(fp) = &server.tls_fingerprint {
        println!("Self-signed certificate, SHA-256 fingerprint {fp}");
    }
    shutdown_signal().await;
    tracing::info!(
        ?drain_timeout,
        "draining: no new calls; running calls may continue"
    );
    server.shutdown_gracefully(drain_timeout).await;
    std::process::ExitCode::SUCCESS
}

/// SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
