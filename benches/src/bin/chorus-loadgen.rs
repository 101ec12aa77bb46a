//! `chorus-loadgen`: load Chorus (and, with `--compare`, Janus VideoRoom and
//! a plain UDP reflector in the same run) with publishers and a ramp of
//! subscribers; report throughput, CPU, memory, latency and loss as JSON,
//! text and an SVG plot. See docs/benchmarks.md.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chorus_benches::load::client::Feedback;
use chorus_benches::load::host::{self, Namespaces, Proc};
use chorus_benches::load::report::{Report, SystemReport};
use chorus_benches::load::run::{self, System};
use chorus_benches::load::{Plan, reflector};
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "chorus-loadgen",
    about = "Load generator and SFU comparison for Chorus"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
    /// Measure Chorus, Janus VideoRoom and the UDP reflector in one run, each
    /// started by the load generator in a network namespace of its own
    /// (needs root; installs Janus with apt-get if missing).
    #[arg(long)]
    compare: bool,
    /// With --compare: leave Janus out.
    #[arg(long)]
    no_janus: bool,
    /// A few seconds against Chorus and the reflector on loopback, both
    /// started here: checks that a complete report comes out.
    #[arg(long)]
    smoke: bool,
    /// Without --compare/--smoke: the system to load (chorus, janus, reflector).
    #[arg(long, default_value = "chorus")]
    target: String,
    /// Its address: an HTTP base URL (chorus, janus) or host:port (reflector).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// The server's pid, for CPU and memory (without it they are not measured).
    #[arg(long)]
    server_pid: Option<u32>,
    /// The address clients bind to.
    #[arg(long, default_value = "127.0.0.1")]
    client_ip: IpAddr,
    /// Rooms.
    #[arg(long, default_value_t = 2)]
    rooms: usize,
    /// Publishers per room.
    #[arg(long, default_value_t = 1)]
    publishers: usize,
    /// Total subscribers at each step of the ramp.
    #[arg(long, value_delimiter = ',', default_values_t = [25usize, 50, 100, 200, 300, 400])]
    steps: Vec<usize>,
    /// Seconds measured per step.
    #[arg(long, default_value_t = 5.0)]
    step_seconds: f64,
    /// Video bitrate per publisher, bits/s (150 packets/s).
    #[arg(long, default_value_t = 1_200_000)]
    video_bitrate: u64,
    /// Decrypt one packet in N for its send time.
    #[arg(long, default_value_t = 8)]
    latency_sample: u64,
    /// Chorus' clients connect over ICE-TCP instead of UDP (Janus and the
    /// reflector are always reached over UDP).
    #[arg(long)]
    tcp: bool,
    /// Subscribers send no RTCP (no transport-wide feedback, receiver
    /// reports or NACKs): the load before browser-like subscribers.
    #[arg(long)]
    no_feedback: bool,
    /// After the listed steps the ramp goes on until a step loses more than
    /// 1%, the load generator limits one, or this many subscribers.
    #[arg(long, default_value_t = 2000)]
    max_subscribers: usize,
    /// Share of packets subscribers drop on purpose, to NACK (0 to 1).
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// Media workers of the Chorus started here [default: one per core].
    #[arg(long)]
    workers: Option<usize>,
    /// The chorus binary [default: next to this one, built if missing].
    #[arg(long)]
    chorus_bin: Option<PathBuf>,
    /// Write the JSON report here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write the SVG plot here [default: the JSON path with .svg].
    #[arg(long)]
    svg: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run the UDP reflector.
    Reflector {
        /// Address to bind.
        #[arg(long)]
        bind: SocketAddr,
    },
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = real_main(cli) {
        eprintln!("chorus-loadgen: {e}");
        std::process::exit(1);
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
}

fn real_main(mut cli: Cli) -> Result<(), String> {
    if let Some(Cmd::Reflector { bind }) = cli.command {
        return runtime()?
            .block_on(reflector::serve(bind))
            .map_err(|e| e.to_string());
    }
    if cli.smoke {
        cli.rooms = 1;
        cli.publishers = 1;
        cli.steps = vec![2, 4];
        cli.step_seconds = 2.0;
        cli.latency_sample = 1;
    }
    let plan = Plan {
        rooms: cli.rooms.max(1),
        publishers: cli.publishers.max(1),
        steps: cli.steps.clone(),
        step_seconds: cli.step_seconds,
        video_bitrate: cli.video_bitrate,
        latency_sample: cli.latency_sample.max(1),
        tcp: cli.tcp,
        feedback: Feedback {
            on: !cli.no_feedback,
            loss: cli.loss.clamp(0.0, 1.0),
        },
        // The smoke run stays as short as listed.
        max_subscribers: if cli.smoke {
            cli.steps.iter().copied().max().unwrap_or(0)
        } else {
            cli.max_subscribers
        },
    };
    let started = Instant::now();
    let report = if cli.compare || cli.smoke {
        compare(&cli, &plan)?
    } else {
        let system = match cli.target.as_str() {
            "chorus" => System::Chorus(cli.url.clone()),
            "janus" => System::Janus(cli.url.clone()),
            "reflector" => System::Reflector(cli.url.parse().map_err(|e| format!("--url: {e}"))?),
            other => return Err(format!("unknown target {other:?}")),
        };
        let rt = runtime()?;
        let r = rt.block_on(run::measure(
            &cli.target,
            &system,
            cli.server_pid,
            &plan,
            cli.client_ip,
        ))?;
        let r = Some(SystemReport::new(r.0, r.1));
        match cli.target.as_str() {
            "chorus" => Report::new(plan, r, None, None),
            "janus" => Report::new(plan, None, r, None),
            _ => Report::new(plan, None, None, r),
        }
    };
    print!("{}", report.text());
    println!("({:.0} s)", started.elapsed().as_secs_f64());
    if let Some(json) = &cli.json {
        report.write_json(json)?;
        let svg = cli
            .svg
            .clone()
            .unwrap_or_else(|| json.with_extension("svg"));
        report.write_svg(&svg)?;
        println!("wrote {} and {}", json.display(), svg.display());
    } else if let Some(svg) = &cli.svg {
        report.write_svg(svg)?;
    }
    Ok(())
}

/// Each system in turn, started here, under the same load.
fn compare(cli: &Cli, plan: &Plan) -> Result<Report, String> {
    let chorus_bin = chorus_binary(cli)?;
    let self_bin = std::env::current_exe().map_err(|e| e.to_string())?;
    let logs = std::env::temp_dir().join(format!("chorus-loadgen-{}", std::process::id()));
    std::fs::create_dir_all(&logs).map_err(|e| e.to_string())?;
    // The smoke run stays on loopback (CI runs it in a loopback-only
    // namespace); the comparison uses two namespaces and a veth pair.
    let namespaces = if cli.smoke {
        None
    } else {
        if !cli.no_janus {
            install_janus()?;
        }
        let ns = Namespaces::create()?;
        ns.enter_gen()?;
        Some(ns)
    };
    let (srv_ip, client_ip, ns) = match namespaces {
        Some(_) => (host::SRV_IP, host::GEN_IP, Some(host::SRV_NS)),
        None => (cli.client_ip, cli.client_ip, None),
    };
    let rt = runtime()?;
    let measure = |name: &str, system: System, server: &mut Proc| -> Result<SystemReport, String> {
        let pid = server.pid();
        let r = rt.block_on(run::measure(name, &system, Some(pid), plan, client_ip));
        if !server.running() {
            return Err(format!(
                "{} exited during the run; see {}",
                server.name,
                logs.display()
            ));
        }
        server.stop();
        let (steps, measured) = r?;
        Ok(SystemReport::new(steps, measured))
    };

    let refl_addr = SocketAddr::new(srv_ip, 40000);
    let mut refl = Proc::spawn(
        "reflector",
        ns,
        &self_bin,
        &["reflector".into(), "--bind".into(), refl_addr.to_string()],
        &logs.join("reflector.log"),
    )?;
    std::thread::sleep(Duration::from_millis(300));
    let reflector = measure("reflector", System::Reflector(refl_addr), &mut refl)?;

    let listen = SocketAddr::new(srv_ip, 18080);
    let mut args = vec![
        "--listen".into(),
        listen.to_string(),
        "--udp-port".into(),
        "0".into(),
        "--max-room-participants".into(),
        "100000".into(),
        "--max-rooms".into(),
        "100000".into(),
        // Every client comes from the load generator's one address.
        "--tcp-max-per-ip".into(),
        "100000".into(),
    ];
    if let Some(w) = cli.workers {
        args.extend(["--workers".into(), w.to_string()]);
    }
    let mut chorus = Proc::spawn("chorus", ns, &chorus_bin, &args, &logs.join("chorus.log"))?;
    let base = format!("http://{listen}");
    rt.block_on(wait_http(&format!("{base}/readyz")))?;
    let chorus_report = measure("chorus", System::Chorus(base), &mut chorus)?;

    let janus_report = if cli.smoke || cli.no_janus {
        None
    } else {
        let dir = logs.join("janus");
        write_janus_config(&dir)?;
        let mut janus = Proc::spawn(
            "janus",
            ns,
            Path::new("janus"),
            &[
                "-C".into(),
                dir.join("janus.jcfg").display().to_string(),
                "-F".into(),
                dir.display().to_string(),
                "-d".into(),
                "3".into(),
                "-D".into(),
                "-o".into(),
                "-N".into(),
                "-L".into(),
                logs.join("janus.log").display().to_string(),
            ],
            &logs.join("janus.out"),
        )?;
        let base = format!("http://{srv_ip}:8088");
        rt.block_on(wait_http(&format!("{base}/janus/info")))?;
        Some(measure("janus", System::Janus(base), &mut janus)?)
    };
    drop(rt);
    drop(namespaces);
    Ok(Report::new(
        plan.clone(),
        Some(chorus_report),
        janus_report,
        Some(reflector),
    ))
}

async fn wait_http(url: &str) -> Result<(), String> {
    let http = reqwest::Client::new();
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = http.get(url).send().await
            && r.status().is_success()
        {
            return Ok(());
        }
        if Instant::now() > end {
            return Err(format!("{url} did not answer in 20 s"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The chorus binary next to this one, built with the same profile if missing.
fn chorus_binary(cli: &Cli) -> Result<PathBuf, String> {
    if let Some(p) = &cli.chorus_bin {
        return Ok(p.clone());
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let dir = exe.parent().ok_or("no directory")?;
    let bin = dir.join("chorus");
    if !bin.exists() {
        let release = dir.file_name().is_some_and(|n| n == "release");
        let mut cmd = std::process::Command::new(std::env::var("CARGO").unwrap_or("cargo".into()));
        cmd.args(["build", "-p", "chorus-signaling", "--bin", "chorus"]);
        if release {
            cmd.arg("--release");
        }
        eprintln!("building the chorus binary ...");
        let ok = cmd.status().map_err(|e| e.to_string())?.success();
        if !ok || !bin.exists() {
            return Err(format!("no chorus binary at {}", bin.display()));
        }
    }
    Ok(bin)
}

fn install_janus() -> Result<(), String> {
    let found = std::process::Command::new("sh")
        .args(["-c", "command -v janus"])
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        return Ok(());
    }
    eprintln!("installing janus (apt-get install -y janus) ...");
    let ok = std::process::Command::new("apt-get")
        .args(["install", "-y", "janus"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        Ok(())
    } else {
        Err("could not install janus; run with --no-janus to leave it out".into())
    }
}

/// Janus configured as in docs/benchmarks.md: event loops = cores, HTTP
/// transport and VideoRoom only, ICE on the veth only, no event handlers.
fn write_janus_config(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let files = [
        ("janus.jcfg", include_str!("../../janus/janus.jcfg")),
        (
            "janus.transport.http.jcfg",
            include_str!("../../janus/janus.transport.http.jcfg"),
        ),
        (
            "janus.plugin.videoroom.jcfg",
            include_str!("../../janus/janus.plugin.videoroom.jcfg"),
        ),
    ];
    for (name, template) in files {
        let text = template
            .replace("EVENT_LOOPS", &cores.to_string())
            .replace("ICE_IFACE", host::SRV_IF)
            .replace("SRV_IP", &host::SRV_IP.to_string())
            .replace("CONFIGS_FOLDER", &dir.display().to_string());
        std::fs::write(dir.join(name), text).map_err(|e| e.to_string())?;
    }
    Ok(())
}
