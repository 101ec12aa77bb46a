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
    let server = match Server::start(config).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("chorus: cannot start: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    println!("Chorus is running: open http://{}", server.http_addr);
    tokio::select! {
        _ = server_wait(server) => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    std::process::ExitCode::SUCCESS
}

async fn server_wait(server: Server) {
    server.wait().await;
}
