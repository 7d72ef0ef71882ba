//! vantage6 on sandlet, side by side with containers (issue 16): the time
//! from the official client's `task.create` until it has read both
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

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

#[path = "../tests/integration/fixtures.rs"]
#[allow(dead_code)]
mod fixtures;

fn exports(path: &Path) -> BTreeMap<String, String> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| {
            let (name, value) = l.split_once('=')?;
            let value = value.split(" #").next().unwrap_or(value).trim();
            Some((name.to_owned(), value.trim_matches('"').to_owned()))
        })
        .collect()
}

struct Down<'a>(&'a Path);

impl Drop for Down<'_> {
    fn drop(&mut self) {
        let _ = Command::new(fixtures::repo_root().join("scripts/vantage6"))
            .arg("down")
            .arg(self.0)
            .status();
    }
}

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
    let dir = tempfile::Builder::new()
        .prefix("sandlet-v6-bench-")
        .tempdir()
        .unwrap();
    let _down = Down(dir.path());
    let started = Instant::now();
    let status = Command::new(fixtures::repo_root().join("scripts/vantage6"))
        .arg("up")
        .arg(dir.path())
        .env("SANDLET_BIN", env!("CARGO_BIN_EXE_sandlet"))
        .env("SANDLET_V6_MODULE", &fixtures::guests().vantage6_mean)
        .env("SANDLET_V6_WORKER", "1")
        .env("SANDLET_CLUSTER_OWNER", std::process::id().to_string())
        .status()
        .unwrap();
    assert!(status.success(), "scripts/vantage6 up failed");
    println!(
        "vantage6: scripts/vantage6 up (with a container worker) took {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let env = exports(&dir.path().join("env"));
    let cluster = exports(&dir.path().join("cluster/env"));
    let kubectl = |args: &[&str]| {
        let path = format!(
            "{}:{}",
            cluster["PATH"].trim_end_matches(":$PATH"),
            std::env::var("PATH").unwrap_or_default()
        );
        let out = Command::new("kubectl")
            .args(args)
            .env("KUBECONFIG", &cluster["KUBECONFIG"])
            .env("PATH", path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let namespaces = ["v6-station-1", "v6-station-2"];
    let route = |to_worker: bool| {
        for (n, ns) in namespaces.iter().enumerate() {
            let node = if to_worker {
                "v6-worker".to_owned()
            } else {
                format!("station-{}", n + 1)
            };
            kubectl(&[
                "annotate",
                "namespace",
                ns,
                "--overwrite",
                &format!(
                    "scheduler.alpha.kubernetes.io/node-selector=kubernetes.io/hostname={node}"
                ),
            ]);
        }
    };
    let task = |image: &str| -> f64 {
        let root = fixtures::repo_root();
        let out = Command::new(&env["V6_PYTHON"])
            .arg(root.join("tests/vantage6/client.py"))
            .args(["task", image, "partial", r#"{"column": "bmi"}"#, "240"])
            .envs(&env)
            .env("PYTHONPATH", root.join("scripts/vantage6.d"))
            .output()
            .unwrap();
        let line = String::from_utf8_lossy(&out.stdout);
        let summary: serde_json::Value = serde_json::from_str(line.trim())
            .unwrap_or_else(|e| panic!("{line}: {e}\n{}", String::from_utf8_lossy(&out.stderr)));
        assert_eq!(summary["status"], "completed", "{summary}");
        summary["seconds"].as_f64().unwrap()
    };
    let wasm_image = env["V6_MEAN_IMAGE"].clone();
    let container_image = env["V6_CONTAINER_IMAGE"].clone();
    let (mut wasm, mut container) = (Vec::new(), Vec::new());
    for round in 0..=rounds {
        route(false);
        let w = task(&wasm_image);
        route(true);
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
