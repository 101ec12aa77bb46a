//! What this process is given and uses: numbers from its environment, and
//! from /proc its resident memory, its threads' time on and waiting for a
//! CPU, and the datagrams the kernel dropped at UDP sockets for full
//! receive buffers.

use std::str::FromStr;

use crate::signal::Error;

/// The number in the environment variable `name`, or `default` if it is
/// unset or not a number.
pub fn env_number<T: FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// This process's resident set size in kB.
pub fn rss_kb() -> Result<i64, Error> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .ok_or("no VmRSS")?;
    Ok(line.split_whitespace().nth(1).ok_or("bad VmRSS")?.parse()?)
}

/// Datagrams the kernel dropped for full receive buffers (`drops` of
/// /proc/net/udp, this network namespace): at the socket bound to `port`,
/// and at all other UDP sockets. Zeros if the table cannot be read.
pub fn udp_drops(port: u16) -> (u64, u64) {
    let Ok(table) = std::fs::read_to_string("/proc/net/udp") else {
        return (0, 0);
    };
    let (mut at_port, mut others) = (0, 0);
    for line in table.lines().skip(1) {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let (Some(local), Some(drops)) = (cols.get(1), cols.last()) else {
            continue;
        };
        let local_port = local
            .rsplit(':')
            .next()
            .and_then(|p| u16::from_str_radix(p, 16).ok());
        let drops: u64 = drops.parse().unwrap_or(0);
        if local_port == Some(port) {
            at_port += drops;
        } else {
            others += drops;
        }
    }
    (at_port, others)
}

/// Nanoseconds spent on a CPU and waiting in a runqueue for one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTime {
    /// On a CPU.
    pub running_ns: u64,
    /// Runnable, waiting for a CPU.
    pub waiting_ns: u64,
}

impl CpuTime {
    /// The time from `earlier` to this one.
    pub fn since(self, earlier: CpuTime) -> CpuTime {
        CpuTime {
            running_ns: self.running_ns.saturating_sub(earlier.running_ns),
            waiting_ns: self.waiting_ns.saturating_sub(earlier.waiting_ns),
        }
    }

    fn add(&mut self, other: CpuTime) {
        self.running_ns += other.running_ns;
        self.waiting_ns += other.waiting_ns;
    }

    /// The share of the time this wanted a CPU that it spent waiting, in
    /// percent.
    pub fn waiting_percent(self) -> f64 {
        let wanted = self.running_ns + self.waiting_ns;
        self.waiting_ns as f64 / wanted.max(1) as f64 * 100.0
    }
}

/// The CPU time of this process's threads whose names start with `prefix`,
/// and of all its threads together (/proc/self/task/*/schedstat).
pub fn cpu_time(prefix: &str) -> (CpuTime, CpuTime) {
    let (mut named, mut all) = (CpuTime::default(), CpuTime::default());
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return (named, all);
    };
    for task in tasks.flatten() {
        let path = task.path();
        let stat = std::fs::read_to_string(path.join("schedstat")).unwrap_or_default();
        let mut fields = stat
            .split_whitespace()
            .map(|v| v.parse::<u64>().unwrap_or(0));
        let t = CpuTime {
            running_ns: fields.next().unwrap_or(0),
            waiting_ns: fields.next().unwrap_or(0),
        };
        all.add(t);
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if comm.starts_with(prefix) {
            named.add(t);
        }
    }
    (named, all)
}
