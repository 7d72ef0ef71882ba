//! The unmodified vantage6 platform of `scripts/vantage6`, for the
//! vantage6 tests and `benches/vantage6.rs` (which includes this file).

use serde_json::Value;

/// `scripts/vantage6 up` in a directory of its own (Keycloak, HQ, a control
/// plane, two sandlet stations and two unmodified vantage6 nodes); `down`
/// when dropped, and by its watchdog if this process dies first.
pub struct Vantage6 {
    pub dir: tempfile::TempDir,
    pub env: std::collections::BTreeMap<String, String>,
    cluster: std::collections::BTreeMap<String, String>,
}

/// The `export NAME="VALUE"` lines of a shell env file.
pub fn exports(path: &std::path::Path) -> std::collections::BTreeMap<String, String> {
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

impl Vantage6 {
    /// With `worker`, also a container worker and `V6_CONTAINER_IMAGE`
    /// (`SANDLET_V6_WORKER=1`).
    pub fn up(worker: bool) -> Vantage6 {
        let dir = tempfile::Builder::new()
            .prefix("sandlet-v6-")
            .tempdir()
            .unwrap();
        let out = std::process::Command::new(crate::fixtures::repo_root().join("scripts/vantage6"))
            .arg("up")
            .arg(dir.path())
            .env("SANDLET_BIN", env!("CARGO_BIN_EXE_sandlet"))
            .env(
                "SANDLET_V6_MODULE",
                &crate::fixtures::guests().vantage6_mean,
            )
            .env("SANDLET_V6_WORKER", if worker { "1" } else { "0" })
            .env("SANDLET_CLUSTER_OWNER", std::process::id().to_string())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "scripts/vantage6 up failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let env = exports(&dir.path().join("env"));
        let cluster = exports(&dir.path().join("cluster/env"));
        Vantage6 { dir, env, cluster }
    }

    /// tests/vantage6/client.py ARGS with the official client; its stdout.
    pub fn client(&self, args: &[&str]) -> String {
        let root = crate::fixtures::repo_root();
        let out = std::process::Command::new(&self.env["V6_PYTHON"])
            .arg(root.join("tests/vantage6/client.py"))
            .args(args)
            .envs(&self.env)
            .env("PYTHONPATH", root.join("scripts/vantage6.d"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "client.py {args:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Routes the task namespaces of both organisations to `nodes` (their
    /// node-selector annotation; new pods only).
    #[allow(dead_code)] // benches/vantage6.rs
    pub fn route(&self, nodes: [&str; 2]) {
        for (n, node) in nodes.iter().enumerate() {
            self.kubectl(&[
                "annotate",
                "namespace",
                &format!("v6-station-{}", n + 1),
                "--overwrite",
                &format!(
                    "scheduler.alpha.kubernetes.io/node-selector=kubernetes.io/hostname={node}"
                ),
            ]);
        }
    }

    /// A task for both organisations, waited for; its summary.
    pub fn task(&self, image: &str, method: &str, arguments: &str) -> Value {
        let line = self.client(&["task", image, method, arguments, "240"]);
        serde_json::from_str(line.trim()).unwrap_or_else(|e| panic!("{line}: {e}"))
    }

    pub fn kubectl(&self, args: &[&str]) -> String {
        let path = format!(
            "{}:{}",
            self.cluster["PATH"].trim_end_matches(":$PATH"),
            std::env::var("PATH").unwrap_or_default()
        );
        let out = std::process::Command::new("kubectl")
            .args(args)
            .env("KUBECONFIG", &self.cluster["KUBECONFIG"])
            .env("PATH", path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

impl Drop for Vantage6 {
    fn drop(&mut self) {
        let _ = std::process::Command::new(crate::fixtures::repo_root().join("scripts/vantage6"))
            .arg("down")
            .arg(self.dir.path())
            .status();
    }
}
