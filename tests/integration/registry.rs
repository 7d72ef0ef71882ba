//! A real OCI registry on loopback: Debian's `docker-registry` (CNCF
//! distribution), over HTTP or HTTPS with a test CA, with or without
//! htpasswd basic auth. Stopped when dropped.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How a test registry is set up.
#[derive(Debug, Clone, Copy, Default)]
pub struct RegistrySetup {
    pub tls: bool,
    pub auth: bool,
}

pub const USER: &str = "station";
pub const PASSWORD: &str = "correct horse";

/// A running registry.
pub struct TestRegistry {
    child: Child,
    dir: tempfile::TempDir,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// The CA that signed the server certificate (TLS only).
    pub ca: Option<PathBuf>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn run(command: &mut Command) {
    crate::fixtures::run_ok(command);
}

/// A CA and a server certificate for 127.0.0.1 signed by it.
fn make_certificates(dir: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    run(Command::new("openssl")
        .current_dir(dir)
        .args(["req", "-x509", "-days", "2", "-subj", "/CN=sandlet test CA"])
        .args(ec)
        .args(["-keyout", "ca.key", "-out", "ca.crt"]));
    run(Command::new("openssl")
        .current_dir(dir)
        .args(["req", "-subj", "/CN=127.0.0.1"])
        .args(ec)
        .args(["-keyout", "server.key", "-out", "server.csr"]));
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(Command::new("openssl").current_dir(dir).args([
        "x509",
        "-req",
        "-days",
        "2",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-extfile",
        "server.ext",
        "-out",
        "server.crt",
    ]));
}

impl TestRegistry {
    pub fn start(setup: RegistrySetup) -> TestRegistry {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let addr = format!("127.0.0.1:{}", free_port());
        let mut config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n",
            root.join("data").display()
        );
        let mut ca = None;
        if setup.tls {
            make_certificates(root);
            config.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                root.join("server.crt").display(),
                root.join("server.key").display()
            ));
            ca = Some(root.join("ca.crt"));
        }
        if setup.auth {
            let htpasswd =
                crate::fixtures::output_of(Command::new("htpasswd").args(["-Bbn", USER, PASSWORD]));
            assert!(htpasswd.status.success());
            std::fs::write(root.join("htpasswd"), htpasswd.stdout).unwrap();
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: sandlet-test\n    path: {}\n",
                root.join("htpasswd").display()
            ));
        }
        std::fs::write(root.join("config.yml"), config).unwrap();
        let child = Self::spawn(root);
        let mut registry = TestRegistry {
            child,
            dir,
            addr,
            ca,
        };
        registry.wait_ready();
        registry
    }

    /// Starts Debian's `docker-registry`; where it is not installed, the
    /// test fails saying so.
    fn spawn(root: &Path) -> Child {
        let mut command = Command::new("docker-registry");
        command
            .arg("serve")
            .arg(root.join("config.yml"))
            .stdout(Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(root.join("registry.log"))
                    .unwrap(),
            );
        command
            .spawn()
            .unwrap_or_else(|e| crate::fixtures::cannot_run(&command, e))
    }

    /// Stops the registry (SIGKILL), keeping what it stores.
    #[allow(dead_code)]
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts a stopped registry again on the same address and storage.
    #[allow(dead_code)]
    pub fn start_again(&mut self) {
        self.child = Self::spawn(self.dir.path());
        self.wait_ready();
    }

    /// Waits until the registry accepts connections. Checks that it is our
    /// process that listens (another test's registry could hold a port we
    /// were handed a moment earlier), so a clash fails loudly, not subtly.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "registry on {} exited ({status}): {}",
                    self.addr,
                    self.log()
                );
            }
            if std::net::TcpStream::connect(&self.addr).is_ok() {
                std::thread::sleep(Duration::from_millis(100));
                if let Ok(Some(status)) = self.child.try_wait() {
                    panic!(
                        "registry on {} exited ({status}): {}",
                        self.addr,
                        self.log()
                    );
                }
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("registry on {} did not start: {}", self.addr, self.log());
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// A docker `config.json` holding this registry's credentials.
    pub fn docker_config(&self, user: &str, password: &str) -> PathBuf {
        use base64::Engine as _;
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        let path = self.dir.path().join(format!("docker-config-{user}.json"));
        let json = serde_json::json!({ "auths": { self.addr.clone(): { "auth": auth } } });
        std::fs::write(&path, json.to_string()).unwrap();
        path
    }

    /// Where the registry keeps the blob `hex` (for corrupting it).
    pub fn blob_path(&self, hex: &str) -> PathBuf {
        self.dir
            .path()
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
