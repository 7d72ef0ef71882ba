//! Part 4, the soak: waves of short pods through the node, then its memory,
//! open file descriptors and files left behind against its idle baseline.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;

use crate::cluster;
use crate::measure::{fd_count, left_behind, rss_kib};
use crate::pods::{Timeline, clear, create_all, pod_object};

/// Part 4: waves of short pods, then the node against its idle baseline.
pub async fn soak(api: &Api<Pod>, timeline: &Timeline, node: &cluster::TestNode, image: &str) {
    let pid = node.pid();
    let total: usize = std::env::var("SANDLET_SOAK_PODS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    const WAVE: usize = 100;
    let wave = |label: String| {
        let names: Vec<String> = (0..WAVE).map(|i| format!("{label}-{i}")).collect();
        let pods: Vec<Pod> = names
            .iter()
            .map(|n| pod_object(n, &node.name, image, &[]))
            .collect();
        (names, pods)
    };
    let mut stuck = 0;
    let mut run_wave = async |label: String| {
        let (names, pods) = wave(label.clone());
        create_all(api, pods, timeline, 50).await;
        let start = Instant::now();
        loop {
            let done = {
                let t = timeline.lock().unwrap();
                names
                    .iter()
                    .filter(|n| t.get(*n).is_some_and(|s| s.finished.is_some()))
                    .count()
            };
            if done == names.len() {
                break;
            }
            if start.elapsed() > Duration::from_secs(120) {
                println!(
                    "soak: wave {label}: {} of {} pods not finished after 120 s",
                    names.len() - done,
                    names.len()
                );
                stuck += names.len() - done;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        clear(api).await;
        timeline.lock().unwrap().retain(|k, _| !names.contains(k));
    };
    let rss_start = rss_kib(pid);
    let fds_start = fd_count(pid);
    run_wave("soak-warm".to_owned()).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let rss_idle = rss_kib(pid);
    let fds_idle = fd_count(pid);
    let started = Instant::now();
    let mut peak = rss_idle;
    for w in 0..total / WAVE {
        run_wave(format!("soak-{w}")).await;
        peak = peak.max(rss_kib(pid));
        if (w + 1) % 10 == 0 {
            println!(
                "soak: {} pods in {:.0} s; node RSS {:.1} MiB, {} fds",
                (w + 1) * WAVE,
                started.elapsed().as_secs_f64(),
                rss_kib(pid) as f64 / 1024.0,
                fd_count(pid)
            );
        }
    }
    let took = started.elapsed();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let rss_after = rss_kib(pid);
    let fds_after = fd_count(pid);
    let (pod_dirs, pod_files) = left_behind(&node.state_dir.join("pods"));
    let (volume_dirs, volume_files) = left_behind(&node.runtime_dir.join("pods"));
    println!(
        "soak: {} pods in {:.1} s ({:.1} pods/s); stuck {stuck}",
        total / WAVE * WAVE,
        took.as_secs_f64(),
        (total / WAVE * WAVE) as f64 / took.as_secs_f64()
    );
    println!(
        "soak: node RSS {:.1} MiB at start, {:.1} MiB idle after the first wave, peak {:.1} MiB, {:.1} MiB 10 s after the last ({:+.1} % of idle; target within 10 %)",
        rss_start as f64 / 1024.0,
        rss_idle as f64 / 1024.0,
        peak as f64 / 1024.0,
        rss_after as f64 / 1024.0,
        (rss_after as f64 / rss_idle as f64 - 1.0) * 100.0
    );
    println!("soak: open fds {fds_start} at start, {fds_idle} idle, {fds_after} after");
    println!(
        "soak: left behind: {pod_dirs} pod directories ({pod_files} files) in the state directory, {volume_dirs} ({volume_files} files) in the runtime directory"
    );
}
