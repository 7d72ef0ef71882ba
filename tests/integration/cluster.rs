//! The real control plane and sandlet nodes for end-to-end tests.
//!
//! One cluster per test process, started by `scripts/cluster up` (the same
//! harness as the demo) and stopped by its watchdog when this process
//! ends, however it ends. Each test starts its own sandlet node(s) and uses
//! its own namespace, so tests run side by side on one cluster.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::fixtures::{Harness, repo_root};
use crate::registry::TestRegistry;

#[derive(Clone)]
pub struct Cluster {
    pub dir: PathBuf,
    pub kubeconfig: PathBuf,
    path: OsString,
}

/// The cluster of this test process, started on first use.
pub fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(Cluster::up)
}

/// Waits until `check` returns `Some`, or panics naming `what`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl Cluster {
    /// A cluster of its own (`scripts/cluster up`), stopped when this
    /// process ends, or earlier by [`Cluster::down`].
    pub fn up() -> Cluster {
        let harness = Harness::up("cluster");
        let bin = harness.bin();
        let dir = harness.dir;
        let mut path = OsString::from(bin);
        path.push(":");
        path.push(std::env::var_os("PATH").unwrap_or_default());
        Cluster {
            kubeconfig: dir.join("kubeconfig"),
            dir,
            path,
        }
    }

    /// `scripts/cluster down DIR`, which must succeed.
    pub fn down(&self) {
        let status = Command::new(repo_root().join("scripts/cluster"))
            .arg("down")
            .arg(&self.dir)
            .status()
            .unwrap();
        assert!(status.success(), "scripts/cluster down failed");
    }

    /// `kubectl ARGS` as the cluster admin (the harness's own kubectl).
    pub fn kubectl_raw(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut command = Command::new("kubectl");
        command
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("PATH", &self.path);
        match stdin {
            Some(input) => crate::fixtures::output_with_stdin(&mut command, input.as_bytes()),
            None => command
                .stdin(Stdio::null())
                .output()
                .expect("cannot run kubectl"),
        }
    }

    /// `kubectl ARGS` running on, its stdout piped (for `--watch`).
    pub fn kubectl_spawn(&self, args: &[&str]) -> std::process::Child {
        Command::new("kubectl")
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("PATH", &self.path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot run kubectl")
    }

    /// `kubectl ARGS`, which must succeed; its stdout.
    pub fn kubectl(&self, args: &[&str]) -> String {
        let out = self.kubectl_raw(args, None);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn apply(&self, namespace: &str, yaml: &str) {
        let out = self.kubectl_raw(&["apply", "-n", namespace, "-f", "-"], Some(yaml));
        assert!(
            out.status.success(),
            "kubectl apply failed: {}\n{yaml}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The object as JSON, or `None` if it does not exist.
    pub fn get(&self, namespace: &str, kind: &str, name: &str) -> Option<Value> {
        let out = self.kubectl_raw(&["get", "-n", namespace, kind, name, "-o", "json"], None);
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                stderr.contains("NotFound"),
                "kubectl get {kind} {name}: {stderr}"
            );
            return None;
        }
        Some(serde_json::from_slice(&out.stdout).unwrap())
    }

    pub fn pod(&self, namespace: &str, name: &str) -> Value {
        self.get(namespace, "pod", name)
            .unwrap_or_else(|| panic!("pod {namespace}/{name} does not exist"))
    }

    /// Waits for the pod's phase to be `phase`.
    pub fn wait_phase(&self, namespace: &str, name: &str, phase: &str, timeout: Duration) -> Value {
        let start = Instant::now();
        loop {
            let pod = self.pod(namespace, name);
            if pod["status"]["phase"] == phase {
                return pod;
            }
            assert!(
                start.elapsed() < timeout,
                "timed out after {timeout:?} waiting for pod {namespace}/{name} to be {phase}; its status: {:#}",
                pod["status"]
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A fresh namespace whose default ServiceAccount exists (pods need it).
    pub fn namespace(&self, name: &str) -> String {
        let _ = self.kubectl_raw(&["delete", "namespace", name, "--wait=true"], None);
        self.kubectl(&["create", "namespace", name]);
        wait_for(
            "the namespace's default service account",
            Duration::from_secs(30),
            || self.get(name, "serviceaccount", "default").map(drop),
        );
        name.to_owned()
    }

    /// Events about `object` as `reason: message` lines.
    pub fn events(&self, namespace: &str, object: &str) -> Vec<String> {
        let out = self.kubectl(&[
            "get",
            "events",
            "-n",
            namespace,
            "--field-selector",
            &format!("involvedObject.name={object}"),
            "-o",
            "json",
        ]);
        let list: Value = serde_json::from_str(&out).unwrap();
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                format!(
                    "{}: {}",
                    e["reason"].as_str().unwrap_or(""),
                    e["message"].as_str().unwrap_or("")
                )
            })
            .collect()
    }

    pub fn node_kubeconfig(&self, name: &str) -> PathBuf {
        let status = Command::new(repo_root().join("scripts/cluster"))
            .args(["node-credentials"])
            .arg(&self.dir)
            .arg(name)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(
            status.success(),
            "scripts/cluster node-credentials {name} failed"
        );
        self.dir.join(format!("node-{name}.kubeconfig"))
    }

    /// `scripts/cluster bootstrap-kubeconfig`: a kubeconfig holding a new
    /// bootstrap token valid for `ttl_seconds`.
    pub fn bootstrap_kubeconfig(&self, name: &str, ttl_seconds: u64) -> PathBuf {
        let printed = crate::fixtures::run_ok(
            Command::new(repo_root().join("scripts/cluster"))
                .arg("bootstrap-kubeconfig")
                .arg(&self.dir)
                .arg(name)
                .arg(ttl_seconds.to_string()),
        );
        PathBuf::from(printed.trim())
    }
}

/// A `sandlet node` process registered with the test cluster.
pub struct TestNode {
    cluster: Cluster,
    child: Option<Child>,
    pub name: String,
    /// The port of its kubelet API (on 127.0.0.1).
    pub port: u16,
    pub state_dir: PathBuf,
    /// Its `--runtime-dir` (rendered volumes).
    pub runtime_dir: PathBuf,
    _state: tempfile::TempDir,
    _runtime: tempfile::TempDir,
    args: Vec<OsString>,
    log: PathBuf,
}

impl TestNode {
    /// Starts `sandlet node` as `name`, trusting `registry` over HTTP, with
    /// a 1 s restart back-off so restart tests finish quickly.
    pub fn start(name: &str, registry: &TestRegistry, extra: &[&str]) -> TestNode {
        TestNode::start_in(cluster(), name, registry, extra)
    }

    /// [`TestNode::start`] in `cluster`.
    pub fn start_in(
        cluster: &Cluster,
        name: &str,
        registry: &TestRegistry,
        extra: &[&str],
    ) -> TestNode {
        let kubeconfig = cluster.node_kubeconfig(name);
        TestNode::launch(cluster, name, registry, extra, |_| {
            vec!["--kubeconfig".into(), kubeconfig.into()]
        })
    }

    /// [`TestNode::start_in`] with the credentials in `kubeconfig` (e.g.
    /// one whose server is a proxy the test controls).
    pub fn start_with_kubeconfig(
        cluster: &Cluster,
        name: &str,
        registry: &TestRegistry,
        extra: &[&str],
        kubeconfig: PathBuf,
    ) -> TestNode {
        TestNode::launch(cluster, name, registry, extra, |_| {
            vec!["--kubeconfig".into(), kubeconfig.into()]
        })
    }

    /// A node that joins with a bootstrap token (`scripts/cluster
    /// bootstrap-kubeconfig`), from a bare state directory: its
    /// `--kubeconfig` is `<state dir>/kubeconfig`, written by the node.
    pub fn start_bootstrapped(name: &str, registry: &TestRegistry, extra: &[&str]) -> TestNode {
        let bootstrap = cluster().bootstrap_kubeconfig(name, 3600);
        TestNode::launch(cluster(), name, registry, extra, |state| {
            vec![
                "--kubeconfig".into(),
                state.join("kubeconfig").into(),
                "--bootstrap-kubeconfig".into(),
                bootstrap.into(),
            ]
        })
    }

    /// [`TestNode::start_in`] with its state directory inside `parent`
    /// (e.g. a small tmpfs).
    pub fn start_with_state_in(
        cluster: &Cluster,
        name: &str,
        registry: &TestRegistry,
        extra: &[&str],
        parent: &Path,
    ) -> TestNode {
        let kubeconfig = cluster.node_kubeconfig(name);
        TestNode::launch_in(cluster, name, registry, extra, Some(parent), |_| {
            vec!["--kubeconfig".into(), kubeconfig.into()]
        })
    }

    fn launch(
        cluster: &Cluster,
        name: &str,
        registry: &TestRegistry,
        extra: &[&str],
        credentials: impl FnOnce(&Path) -> Vec<OsString>,
    ) -> TestNode {
        TestNode::launch_in(cluster, name, registry, extra, None, credentials)
    }

    fn launch_in(
        cluster: &Cluster,
        name: &str,
        registry: &TestRegistry,
        extra: &[&str],
        state_parent: Option<&Path>,
        credentials: impl FnOnce(&Path) -> Vec<OsString>,
    ) -> TestNode {
        let mut builder = tempfile::Builder::new();
        builder.prefix("sandlet-node-");
        let state = match state_parent {
            Some(parent) => builder.tempdir_in(parent),
            None => builder.tempdir(),
        }
        .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut args: Vec<OsString> = vec!["node".into()];
        args.extend(credentials(state.path()));
        for a in [
            "--node-name",
            name,
            "--address",
            "127.0.0.1",
            "--port",
            &port.to_string(),
        ] {
            args.push(a.into());
        }
        for a in [
            "--insecure-registry",
            &registry.addr,
            "--restart-backoff",
            "1s",
        ] {
            args.push(a.into());
        }
        args.push("--state-dir".into());
        args.push(state.path().into());
        // Rendered volumes in memory, as by default, but in a directory
        // this fixture removes.
        let runtime = tempfile::Builder::new()
            .prefix("sandlet-node-run-")
            .tempdir_in(if Path::new("/dev/shm").is_dir() {
                Path::new("/dev/shm")
            } else {
                state.path()
            })
            .unwrap();
        args.push("--runtime-dir".into());
        args.push(runtime.path().join("run").into());
        args.extend(extra.iter().map(OsString::from));
        let mut node = TestNode {
            cluster: cluster.clone(),
            child: None,
            name: name.to_owned(),
            port,
            state_dir: state.path().to_owned(),
            log: state.path().join("node.log"),
            runtime_dir: runtime.path().join("run"),
            _runtime: runtime,
            _state: state,
            args,
        };
        node.spawn();
        node
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = crate::fixtures::sandlet()
            .args(&self.args)
            .env(
                "SANDLET_LOG",
                std::env::var("SANDLET_LOG").unwrap_or_else(|_| "info".to_owned()),
            )
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let name = self.name.clone();
        wait_for(
            &format!("node {name} to be Ready"),
            Duration::from_secs(60),
            || {
                if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                    panic!("sandlet node exited with {status}: {}", self.log_text());
                }
                let node = self.cluster.get("", "node", &name)?;
                let conditions = node["status"]["conditions"].as_array()?.clone();
                let ready = conditions
                    .iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True");
                let fresh = node["status"]["nodeInfo"]["bootID"].is_string();
                (ready && fresh && self.log_text().contains("registered")).then_some(())
            },
        );
    }

    /// What the node logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Kills the node process (SIGKILL, no clean-up), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts a killed node again with the same state directory.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "the node is still running");
        std::fs::write(&self.log, "").unwrap();
        self.spawn();
    }

    /// The node process's id (for benches/load.rs, which includes this file).
    #[allow(dead_code)]
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the node is running").id()
    }

    pub fn state(&self) -> &Path {
        &self.state_dir
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        self.kill();
        // The Node object goes too, so the cluster does not fill with
        // NotReady nodes while other tests run.
        let _ = self
            .cluster
            .kubectl_raw(&["delete", "node", &self.name, "--wait=false"], None);
    }
}

/// A pod manifest for a sandlet node: the krustlet-style toleration and a
/// `kubernetes.io/hostname` selector pinning it to `node`.
pub fn wasm_pod(
    name: &str,
    node: &str,
    image: &str,
    args: &[&str],
    restart_policy: &str,
) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  restartPolicy: {restart_policy}
  nodeSelector:
    kubernetes.io/hostname: {node}
  tolerations:
  - {{key: kubernetes.io/arch, operator: Equal, value: wasm32-wasi}}
  containers:
  - name: main
    image: {image}
    args: {args}
"#,
        args = serde_json::to_string(args).unwrap()
    )
}

/// The processes of container worker `id` (`DIR/workers/NAME/id`): those
/// in its mount namespace (`ns`: the link `/proc/HOLDER/ns/mnt`, read while
/// the holder lives) or in its cgroups (`sandlet-ID`; containers have
/// mount namespaces of their own).
pub fn worker_processes(ns: &Path, id: &str) -> Vec<u32> {
    let cgroup = format!("/sandlet-{id}/");
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/ns/mnt")).is_ok_and(|link| link == ns)
                || std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
                    .is_ok_and(|c| c.contains(&cgroup))
        })
        .collect()
}

/// `pod` (a manifest from [`wasm_pod`]) asking for `datasets` with the
/// `sandlet.dev/datasets` annotation.
/// A node of its own for a station holding `rows` generated patients (the
/// dataset `patients`, columns age, sex and bmi visible, for the pods of
/// `namespaces`), with `rest` appended to its station file; the node, the
/// patients, and the directory the station's files are in.
pub fn patients_station(
    name: &str,
    registry: &TestRegistry,
    rows: usize,
    seed: u64,
    namespaces: &str,
    rest: &str,
) -> (TestNode, crate::fixtures::Patients, tempfile::TempDir) {
    let data = tempfile::tempdir().unwrap();
    let patients = crate::fixtures::write_patients(data.path(), "patients", rows, seed);
    let config = data.path().join("station.yaml");
    std::fs::write(
        &config,
        format!(
            "datasets:\n  - name: patients\n    source: {{ csv: patients.csv }}\n    policy:\n      allowedColumns: [age, sex, bmi]\n      allowedNamespaces: [{namespaces}]\n{rest}"
        ),
    )
    .unwrap();
    let node = TestNode::start(name, registry, &["--config", config.to_str().unwrap()]);
    (node, patients, data)
}

pub fn with_datasets(pod: &str, datasets: &str) -> String {
    pod.replacen(
        "metadata:\n",
        &format!("metadata:\n  annotations: {{sandlet.dev/datasets: \"{datasets}\"}}\n"),
        1,
    )
}

/// Pushes `module` to `registry` as `repo:tag` with the CLI; returns the
/// reference.
pub fn push(registry: &TestRegistry, module: &Path, repo: &str) -> String {
    let reference = format!("{}/{repo}", registry.addr);
    let ran = crate::fixtures::run_sandlet([
        OsString::from("push"),
        "--insecure-registry".into(),
        registry.addr.clone().into(),
        module.into(),
        reference.clone().into(),
    ]);
    assert_eq!(ran.code, Some(0), "push failed: {}", ran.stderr);
    reference
}
