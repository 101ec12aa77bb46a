//! The impairment relay as a process, for tests that are not written in
//! Rust (the browser tests): one client on one side, the media node on the
//! other, controlled by lines on stdin.
//!
//! Prints `relay <addr>` once it listens (the client's side). Commands,
//! each answered with `ok` (or `error: ...`):
//!
//! ```text
//! upstream 127.0.0.1:40000                   the media node's address
//! down rate=300000 queue=15000 loss=0.1 delay_ms=20 jitter_ms=5
//! down clear                                 no impairment toward the client
//! stats                                      packets lost overflow (toward the client)
//! ```
//!
//! It exits when stdin closes.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chorus_tests::relay::{Impairment, Relay};

fn parse_down(args: &str) -> Result<Impairment, String> {
    let mut imp = Impairment::default();
    for kv in args.split_whitespace() {
        if kv == "clear" {
            return Ok(Impairment::default());
        }
        let (k, v) = kv
            .split_once('=')
            .ok_or(format!("expected key=value, got {kv:?}"))?;
        let num = |v: &str| v.parse::<f64>().map_err(|e| format!("{k}: {e}"));
        match k {
            "rate" => imp.rate_bps = Some(num(v)? as u64),
            "queue" => imp.queue_bytes = num(v)? as usize,
            "loss" => imp.loss = num(v)?,
            "delay_ms" => imp.delay = Duration::from_secs_f64(num(v)? / 1000.0),
            "jitter_ms" => imp.jitter = Duration::from_secs_f64(num(v)? / 1000.0),
            _ => return Err(format!("unknown setting {k:?}")),
        }
    }
    Ok(imp)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let seed = std::env::args()
        .skip_while(|a| a != "--seed")
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(6464);
    let relay = Relay::start(Impairment::default(), Impairment::default(), seed).await?;
    println!("relay {}", relay.client_addr());
    // Stdin is read on a thread of its own; lines come over a channel.
    let (tx, mut lines) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    while let Some(line) = lines.recv().await {
        let line = line.trim();
        let (cmd, rest) = line.split_once(' ').unwrap_or((line, ""));
        let reply = match cmd {
            "upstream" => match rest.trim().parse::<SocketAddr>() {
                Ok(a) => {
                    relay.set_upstream(a);
                    "ok".to_string()
                }
                Err(e) => format!("error: {e}"),
            },
            "down" => match parse_down(rest) {
                Ok(imp) => {
                    relay.set_down(imp);
                    "ok".to_string()
                }
                Err(e) => format!("error: {e}"),
            },
            "stats" => {
                let s = &relay.down_stats;
                format!(
                    "{} {} {}",
                    s.packets.load(Ordering::Relaxed),
                    s.lost.load(Ordering::Relaxed),
                    s.overflow.load(Ordering::Relaxed)
                )
            }
            "" => continue,
            other => format!("error: unknown command {other:?}"),
        };
        println!("{reply}");
    }
    Ok(())
}
