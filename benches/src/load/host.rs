//! The host side of a run: processes, `/proc` readings and the two network
//! namespaces a comparison runs in.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// The server namespace.
pub const SRV_NS: &str = "chorus-lg-srv";
/// The load generator's namespace.
pub const GEN_NS: &str = "chorus-lg-gen";
/// The server's address on the veth pair (198.18.0.0/15 is for benchmarks).
pub const SRV_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2));
/// The load generator's address.
pub const GEN_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1));
/// The server side of the veth pair.
pub const SRV_IF: &str = "clg-s";
const GEN_IF: &str = "clg-g";

/// CPU seconds (user + system) a process has used, all threads.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / clock_ticks())
}

fn clock_ticks() -> f64 {
    #[cfg(target_os = "linux")]
    if let Ok(Some(t)) = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
        return t as f64;
    }
    100.0
}

/// Resident memory of a process, bytes.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// UDP datagrams dropped because a socket's receive buffer was full, in
/// the network namespace of `pid` (all sockets of that namespace).
pub fn rcvbuf_errors(pid: u32) -> Option<u64> {
    let snmp = std::fs::read_to_string(format!("/proc/{pid}/net/snmp")).ok()?;
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let names: Vec<&str> = udp.next()?.split_whitespace().collect();
    let values: Vec<&str> = udp.next()?.split_whitespace().collect();
    let i = names.iter().position(|n| *n == "RcvbufErrors")?;
    values.get(i)?.parse().ok()
}

/// A process that is killed when dropped.
#[derive(Debug)]
pub struct Proc {
    child: Child,
    /// What it is, for messages.
    pub name: String,
}

impl Proc {
    /// Starts `program` (inside namespace `ns` if given), its output to
    /// `log`.
    pub fn spawn(
        name: &str,
        ns: Option<&str>,
        program: &Path,
        args: &[String],
        log: &Path,
    ) -> Result<Proc, String> {
        let out = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let mut cmd = match ns {
            // `ip netns exec` execs the program: the pid is the server's.
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(program);
                c
            }
            None => Command::new(program),
        };
        let child = cmd
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", program.display()))?;
        Ok(Proc {
            child,
            name: name.to_string(),
        })
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// True while it runs.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Stops it: SIGTERM, then SIGKILL after a second.
    pub fn stop(&mut self) {
        #[cfg(target_os = "linux")]
        {
            use nix::sys::signal::{Signal, kill};
            use nix::unistd::Pid;
            if let Ok(pid) = i32::try_from(self.child.id()) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
            }
            for _ in 0..20 {
                if !self.running() {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The two namespaces joined by a veth pair; removed when dropped.
#[derive(Debug)]
pub struct Namespaces(());

impl Namespaces {
    /// Creates them (removing leftovers of an earlier run first).
    pub fn create() -> Result<Namespaces, String> {
        Self::remove();
        ip(&["netns", "add", SRV_NS])?;
        let ns = Namespaces(());
        ip(&["netns", "add", GEN_NS])?;
        ip(&[
            "link", "add", SRV_IF, "type", "veth", "peer", "name", GEN_IF,
        ])?;
        ip(&["link", "set", SRV_IF, "netns", SRV_NS])?;
        ip(&["link", "set", GEN_IF, "netns", GEN_NS])?;
        let srv = format!("{SRV_IP}/30");
        let gen_addr = format!("{GEN_IP}/30");
        for (ns_name, dev, addr) in [(SRV_NS, SRV_IF, &srv), (GEN_NS, GEN_IF, &gen_addr)] {
            ip(&["-n", ns_name, "addr", "add", addr, "dev", dev])?;
            ip(&["-n", ns_name, "link", "set", dev, "up"])?;
            ip(&["-n", ns_name, "link", "set", "lo", "up"])?;
        }
        Ok(ns)
    }

    /// Moves this process (every thread started after this call) into the
    /// load generator's namespace. Call before starting any thread.
    #[cfg(target_os = "linux")]
    pub fn enter_gen(&self) -> Result<(), String> {
        let f = std::fs::File::open(format!("/run/netns/{GEN_NS}"))
            .map_err(|e| format!("open {GEN_NS}: {e}"))?;
        nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| format!("setns {GEN_NS}: {e}"))
    }

    fn remove() {
        let _ = ip(&["netns", "del", SRV_NS]);
        let _ = ip(&["netns", "del", GEN_NS]);
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        Self::remove();
    }
}
