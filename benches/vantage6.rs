//! vantage6 on sandlet, side by side with containers: the time from the
//! official client's `task.create` until it has read both
//! stations' results, for the same two-station task run
//!
//! - as wasm on the stations' sandlet nodes (`vantage6-mean`, one aggregate
//!   query per station), and
//! - as a trivial container (busybox writing a fixed result) on a container
//!   worker (kubelet, containerd, runc) of the same cluster,
//!
//! alternating between the two, after one warm-up task each. The task
//! namespaces are routed to the sandlet nodes or to the worker by their
//! PodNodeSelector annotation, so the unmodified vantage6 nodes, HQ and the
//! control plane are the same for both.
//!
//! `cargo bench --bench vantage6` (`SANDLET_V6_ROUNDS`, default 5). Starts
//! `scripts/vantage6 up` with a container worker (`SANDLET_V6_WORKER=1`)
//! and stops it at the end; prints the set-up time too.

use std::time::Instant;

#[path = "../tests/integration/fixtures.rs"]
#[allow(dead_code)]
mod fixtures;

#[path = "../tests/integration/v6platform.rs"]
mod v6platform;

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rounds: usize = std::env::var("SANDLET_V6_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);
    let started = Instant::now();
    let v6 = v6platform::Vantage6::up(true);
    println!(
        "vantage6: scripts/vantage6 up (with a container worker) took {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let task = |image: &str| -> f64 {
        let summary = v6.task(image, "partial", r#"{"column": "bmi"}"#);
        assert_eq!(summary["status"], "completed", "{summary}");
        summary["seconds"].as_f64().unwrap()
    };
    let env = &v6.env;
    let wasm_image = env["V6_MEAN_IMAGE"].clone();
    let container_image = env["V6_CONTAINER_IMAGE"].clone();
    let (mut wasm, mut container) = (Vec::new(), Vec::new());
    for round in 0..=rounds {
        v6.route(["station-1", "station-2"]);
        let w = task(&wasm_image);
        v6.route(["v6-worker", "v6-worker"]);
        let c = task(&container_image);
        if round == 0 {
            println!("vantage6: warm-up: wasm {w:.2} s, container {c:.2} s");
            continue;
        }
        println!("vantage6: round {round}: wasm {w:.2} s, container {c:.2} s");
        wasm.push(w);
        container.push(c);
    }
    let (w, c) = (median(&mut wasm), median(&mut container));
    println!(
        "vantage6: two-station task, created to both results read, median of {rounds}: wasm on sandlet {w:.2} s, trivial container on the worker {c:.2} s (wasm/container {:.2})",
        w / c
    );
}
