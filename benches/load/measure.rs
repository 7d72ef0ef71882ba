//! Measurement from /proc: the CPU time of the processes a burst involves
//! and of the whole machine, how fast the machine is at the moment, waiting
//! for it to be quiet, and what a node holds (CPU time, proportional and
//! resident memory, open file descriptors, files left behind).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::cluster;

/// CPU time of the processes a burst involves, from /proc (in USER_HZ
/// ticks, 100 per second on Linux), and of the whole machine.
pub struct CpuProbe {
    processes: Vec<(String, u32)>,
}

pub struct CpuSample {
    at: Instant,
    /// Every process: its name and CPU ticks.
    everyone: HashMap<u32, (String, u64)>,
    /// The machine's busy and total ticks, all cores.
    busy: u64,
    total: u64,
}

impl CpuSample {
    fn ticks(&self, pid: u32) -> u64 {
        self.everyone.get(&pid).map_or(0, |t| t.1)
    }

    /// The share of the machine's time spent busy since `before`.
    fn busy_since(&self, before: &CpuSample) -> f64 {
        (self.busy - before.busy) as f64 / (self.total - before.total).max(1) as f64
    }
}

impl CpuProbe {
    /// The control plane's processes (found by their data directory on the
    /// command line), the node and this load generator.
    pub fn new(cluster_dir: &std::path::Path, nodes: &[(String, u32)]) -> CpuProbe {
        let dir = cluster_dir.to_string_lossy().into_owned();
        let mut processes = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            let program = cmdline.split(' ').next().unwrap_or_default();
            let name = program.rsplit('/').next().unwrap_or_default();
            if cmdline.contains(&dir) && (name == "etcd" || name.starts_with("kube-")) {
                processes.push((name.to_owned(), pid));
            }
        }
        processes.sort();
        processes.extend(nodes.iter().cloned());
        processes.push(("load generator".to_owned(), std::process::id()));
        CpuProbe { processes }
    }

    pub fn sample(&self) -> CpuSample {
        let mut everyone = HashMap::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            if let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() {
                everyone.insert(pid, process_ticks(pid));
            }
        }
        let stat = std::fs::read_to_string("/proc/stat").unwrap();
        let cpu: Vec<u64> = stat
            .lines()
            .next()
            .unwrap()
            .split_whitespace()
            .skip(1)
            .filter_map(|f| f.parse().ok())
            .collect();
        let idle = cpu[3] + cpu.get(4).copied().unwrap_or(0);
        let total: u64 = cpu.iter().take(8).sum();
        CpuSample {
            at: Instant::now(),
            everyone,
            busy: total - idle,
            total,
        }
    }

    /// One line: each process's CPU seconds between the samples, the
    /// busiest other process, and how busy the machine's cores were.
    pub fn describe(&self, before: &CpuSample, after: &CpuSample) -> String {
        let mut parts: Vec<String> = self
            .processes
            .iter()
            .map(|(name, pid)| {
                let ticks = after.ticks(*pid).saturating_sub(before.ticks(*pid));
                format!("{name} {:.2}", ticks as f64 / 100.0)
            })
            .collect();
        let ours: std::collections::HashSet<u32> =
            self.processes.iter().map(|(_, pid)| *pid).collect();
        let mut others: Vec<(u64, &str)> = after
            .everyone
            .iter()
            .filter(|(pid, _)| !ours.contains(pid))
            .map(|(pid, (name, ticks))| (ticks.saturating_sub(before.ticks(*pid)), name.as_str()))
            .collect();
        others.sort_unstable_by(|a, b| b.cmp(a));
        let rest: u64 = others.iter().map(|o| o.0).sum();
        parts.push(format!("others {:.2}", rest as f64 / 100.0));
        if let Some((ticks, name)) = others.first().filter(|o| o.0 > 0) {
            parts.push(format!("(most: {name} {:.2})", *ticks as f64 / 100.0));
        }
        format!(
            "CPU s: {}; machine {:.0} % busy over {:.2} s",
            parts.join(", "),
            after.busy_since(before) * 100.0,
            (after.at - before.at).as_secs_f64()
        )
    }
}

/// How fast this machine is at the moment: the time a fixed piece of work
/// takes (median of 5 on one thread, lower is faster; about 11.5 ms on an
/// idle machine here at its fastest). On a shared virtual
/// machine it varies between runs and within one; a slow burst with a
/// slow loop beside it says the machine, not the code, was slow.
pub fn machine_speed() -> Duration {
    let mut times: Vec<Duration> = (0..5)
        .map(|_| {
            let start = Instant::now();
            // Branchy, memory-bound work, as an API server's is: make,
            // sort and index 400,000 pseudo-random numbers.
            let mut x = 0x9E37_79B9_7F4A_7C15u64;
            let mut numbers: Vec<u64> = (0..400_000)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x
                })
                .collect();
            numbers.sort_unstable();
            let index: HashMap<u64, usize> = numbers
                .iter()
                .take(100_000)
                .enumerate()
                .map(|(i, n)| (*n, i))
                .collect();
            std::hint::black_box(index);
            start.elapsed()
        })
        .collect();
    times.sort();
    times[2]
}

/// Waits (up to 15 s) until the machine is quiet: under 25 % busy over
/// half a second, then 2 s more. What the last burst left behind (its pods'
/// deletion, a node's queued Events) is then done before the next burst
/// starts, and the scheduler's client rate limit is full again, so each
/// burst starts from the same place whoever had the one before.
pub async fn settle(probe: &CpuProbe) {
    if std::env::var("SANDLET_LOAD_SETTLE").as_deref() == Ok("0") {
        return;
    }
    let start = Instant::now();
    let mut before = probe.sample();
    while start.elapsed() < Duration::from_secs(15) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let after = probe.sample();
        if after.busy_since(&before) < 0.25 {
            // And the scheduler's API client has its whole burst again (100
            // requests, refilled at 50/s), so it binds every burst alike.
            tokio::time::sleep(Duration::from_secs(2)).await;
            return;
        }
        before = after;
    }
    println!("  (the machine did not settle under 25 % busy in 15 s)");
}

/// A process's name and CPU time (user + system, in USER_HZ ticks).
fn process_ticks(pid: u32) -> (String, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let name = stat
        .split_once('(')
        .and_then(|(_, rest)| rest.rsplit_once(')'))
        .map(|(name, _)| name.to_owned())
        .unwrap_or_default();
    // After the name: state, then fields 4...; utime and stime are fields
    // 14 and 15.
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .unwrap_or_default();
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |n: usize| {
        fields
            .get(n - 3)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (name, field(14) + field(15))
}

/// How a node's own CPU time and memory are read.
pub enum NodeCost {
    /// One process (sandlet).
    Process(u32),
    /// A container worker: the cpuacct cgroup holding its kubelet,
    /// containerd, shims and pods; its processes are those in the cgroup
    /// or in the worker's mount namespace.
    Worker {
        cgroup: std::path::PathBuf,
        holder: u32,
    },
}

impl NodeCost {
    /// CPU seconds used so far.
    pub fn cpu_seconds(&self) -> f64 {
        match self {
            NodeCost::Process(pid) => process_ticks(*pid).1 as f64 / 100.0,
            NodeCost::Worker { cgroup, .. } => {
                std::fs::read_to_string(cgroup.join("cpuacct.usage"))
                    .ok()
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .unwrap_or(0) as f64
                    / 1e9
            }
        }
    }

    /// The node's processes' proportional set size, KiB.
    pub fn memory_kib(&self) -> u64 {
        match self {
            NodeCost::Process(pid) => pss_kib(*pid),
            NodeCost::Worker { cgroup, holder } => {
                let Ok(ns) = std::fs::read_link(format!("/proc/{holder}/ns/mnt")) else {
                    return 0;
                };
                let name = cgroup.file_name().unwrap().to_string_lossy();
                let id = name.strip_prefix("sandlet-").unwrap_or(&name);
                cluster::worker_processes(&ns, id)
                    .into_iter()
                    .map(pss_kib)
                    .sum()
            }
        }
    }
}

/// A process's proportional set size (shared pages split among their
/// users), KiB; 0 if it is gone.
fn pss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

pub fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// Entries (pod directories) under `dir`, and the files below them.
pub fn left_behind(dir: &std::path::Path) -> (usize, usize) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return (0, 0);
    };
    let mut dirs = 0;
    let mut files = 0;
    for entry in entries.flatten() {
        dirs += 1;
        let mut stack = vec![entry.path()];
        while let Some(path) = stack.pop() {
            match std::fs::read_dir(&path) {
                Ok(children) => stack.extend(children.flatten().map(|c| c.path())),
                Err(_) => files += 1,
            }
        }
    }
    (dirs, files)
}
