//! TLS bootstrap against the real control plane: a node with nothing but a
//! bootstrap token joins as `system:node:NAME`, and a token that expired or
//! was revoked is refused by name, leaving nothing behind.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::cluster::{TestNode, cluster, push, wait_for, wasm_pod};
use crate::fixtures::{Ran, guests, sandlet};
use crate::registry::{RegistrySetup, TestRegistry};

const LONG: Duration = Duration::from_secs(60);

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// The token a bootstrap kubeconfig holds.
fn token_of(kubeconfig: &Path) -> String {
    let text = std::fs::read_to_string(kubeconfig).unwrap();
    text.lines()
        .find_map(|l| l.trim().strip_prefix("token: "))
        .expect("a token")
        .to_owned()
}

#[test]
fn kube_a_node_joins_with_a_bootstrap_token_and_runs_pods_as_itself() {
    let c = cluster();
    let registry = TestRegistry::start(RegistrySetup::default());
    let mut node = TestNode::start_bootstrapped("joiner", &registry, &[]);

    // The certificate and the kubeconfig the node wrote, private to it.
    let kubeconfig = node.state_dir.join("kubeconfig");
    let stored = node.state_dir.join("pki/kubelet-client-current.pem");
    assert_eq!(mode(&kubeconfig), 0o600);
    assert_eq!(mode(&stored), 0o600);
    let written = std::fs::read_to_string(&kubeconfig).unwrap();
    assert!(written.contains("kubelet-client-current.pem"), "{written}");
    assert!(
        !written.contains("token"),
        "the bootstrap token is not kept: {written}"
    );

    // The request: made with the bootstrap token, for the client signer,
    // approved by the controller-manager, nobody else.
    let csrs: Value = serde_json::from_str(&c.kubectl(&["get", "csr", "-o", "json"])).unwrap();
    let request = csrs["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|csr| {
            csr["spec"]["signerName"] == "kubernetes.io/kube-apiserver-client-kubelet"
                && csr["spec"]["username"]
                    .as_str()
                    .is_some_and(|u| u.starts_with("system:bootstrap:"))
        })
        .cloned()
        .expect("the node's client certificate request");
    let approved = request["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Approved")
        .cloned()
        .unwrap();
    assert_eq!(approved["reason"], "AutoApproved", "{approved}");

    // The API server sees the node as system:node:joiner in system:nodes.
    let whoami: Value = serde_json::from_str(&c.kubectl(&[
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
        "auth",
        "whoami",
        "-o",
        "json",
    ]))
    .unwrap();
    assert_eq!(
        whoami["status"]["userInfo"]["username"],
        "system:node:joiner"
    );
    let groups = whoami["status"]["userInfo"]["groups"].to_string();
    assert!(groups.contains("system:nodes"), "{groups}");
    // NodeRestriction holds it to its own Node: labelling another is
    // refused.
    let other = TestNode::start("joiner-neighbour", &registry, &[]);
    let refused = c.kubectl_raw(
        &[
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
            "label",
            "node",
            &other.name,
            "stolen=yes",
        ],
        None,
    );
    assert!(!refused.status.success());
    let error = String::from_utf8_lossy(&refused.stderr);
    assert!(
        error.contains("Forbidden") || error.contains("forbidden"),
        "{error}"
    );

    // It runs pods.
    let image = push(&registry, &guests().hello, "bootstrap/hello:v1");
    let ns = c.namespace("bootstrap");
    c.apply(
        &ns,
        &wasm_pod("hello", &node.name, &image, &["joined"], "Never"),
    );
    c.wait_phase(&ns, "hello", "Succeeded", LONG);

    // A restart uses the stored certificate: no new request.
    let requests = || client_requests(c).len();
    let before = requests();
    node.kill();
    node.start_again();
    assert_eq!(requests(), before);
    c.apply(
        &ns,
        &wasm_pod("again", &node.name, &image, &["again"], "Never"),
    );
    c.wait_phase(&ns, "again", "Succeeded", LONG);

    // The certificate expired while the station was off: the node
    // bootstraps again with its bootstrap credentials.
    node.kill();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "system:node:joiner");
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let expired = params.self_signed(&key).unwrap().pem();
    std::fs::write(&stored, format!("{expired}{}", key.serialize_pem())).unwrap();
    node.start_again();
    assert_eq!(requests(), before + 1);
    assert!(!std::fs::read_to_string(&stored).unwrap().contains(&expired));
    assert_eq!(mode(&stored), 0o600);
    c.apply(
        &ns,
        &wasm_pod("renewed", &node.name, &image, &["renewed"], "Never"),
    );
    c.wait_phase(&ns, "renewed", "Succeeded", LONG);
}

/// The client certificate requests (CSRs) made by `username` since
/// `since` (unix seconds).
fn client_requests_by(c: &crate::cluster::Cluster, username: &str, since: i64) -> Vec<Value> {
    client_requests(c)
        .into_iter()
        .filter(|csr| {
            csr["spec"]["username"] == username
                && csr["metadata"]["creationTimestamp"]
                    .as_str()
                    .and_then(|t| t.parse::<k8s_openapi::jiff::Timestamp>().ok())
                    .is_some_and(|t| t.as_second() >= since)
        })
        .collect()
}

/// Every request for a node client certificate.
fn client_requests(c: &crate::cluster::Cluster) -> Vec<Value> {
    let csrs: Value = serde_json::from_str(&c.kubectl(&["get", "csr", "-o", "json"])).unwrap();
    csrs["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|csr| csr["spec"]["signerName"] == "kubernetes.io/kube-apiserver-client-kubelet")
        .cloned()
        .collect()
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Validity (unix seconds) of the first certificate in a PEM file.
fn validity(path: &Path) -> (i64, i64) {
    use x509_parser::prelude::FromDer;
    let pem = std::fs::read(path).unwrap();
    let (_, block) = x509_parser::pem::parse_x509_pem(&pem).unwrap();
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(&block.contents).unwrap();
    (
        cert.validity().not_before.timestamp(),
        cert.validity().not_after.timestamp(),
    )
}

#[test]
fn kube_a_node_rotates_its_client_certificate_before_it_expires_and_keeps_working() {
    let c = cluster();
    let registry = TestRegistry::start(RegistrySetup::default());
    let mut node = TestNode::start_bootstrapped("rotator", &registry, &["--rotate-certificates"]);
    let stored = node.state_dir.join("pki/kubelet-client-current.pem");
    // Give the node a certificate from the cluster's CA that is 80 % into
    // its lifetime in a few seconds and expires soon after: what a
    // year-old certificate looks like, in seconds.
    node.kill();
    let ca_key =
        rcgen::KeyPair::from_pem(&std::fs::read_to_string(c.dir.join("pki/ca.key")).unwrap())
            .unwrap();
    let ca = rcgen::Issuer::from_ca_cert_pem(
        &std::fs::read_to_string(c.dir.join("pki/ca.crt")).unwrap(),
        ca_key,
    )
    .unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "system:nodes");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "system:node:rotator");
    let at = |unix: i64| time::OffsetDateTime::from_unix_timestamp(unix).unwrap();
    let now = unix_now();
    let expires = now + 45;
    params.not_before = at(now - 120);
    params.not_after = at(expires);
    let short = params.signed_by(&key, &ca).unwrap().pem();
    std::fs::write(&stored, format!("{short}{}", key.serialize_pem())).unwrap();
    node.start_again();
    let ns = c.namespace("rotation");
    let image = push(&registry, &guests().hello, "rotation/hello:v1");
    c.apply(
        &ns,
        &wasm_pod("before", &node.name, &image, &["before"], "Never"),
    );
    c.wait_phase(&ns, "before", "Succeeded", LONG);

    // Renewed with the node's own certificate (not the bootstrap token),
    // approved, stored privately, and valid for far longer.
    // (Waiting until it is decided: the approver may come a moment after
    // the request, as it did under load.)
    let renewal = wait_for("the node's renewal request to be decided", LONG, || {
        client_requests_by(c, "system:node:rotator", now)
            .into_iter()
            .find(|r| !r["status"]["conditions"].is_null())
    });
    let conditions = renewal["status"]["conditions"].to_string();
    assert!(conditions.contains("AutoApproved"), "{conditions}");
    let (_, renewed_until) = wait_for("the renewed certificate to be stored", LONG, || {
        let (from, until) = validity(&stored);
        (until > expires + 3600).then_some((from, until))
    });
    assert!(renewed_until > unix_now() + 24 * 3600);
    assert_eq!(mode(&stored), 0o600);
    // The node's log since the restart: renewed, not bootstrapped again.
    let log = node.log_text();
    assert!(
        log.contains("rotated the node's client certificate"),
        "{log}"
    );
    assert!(!log.contains("bootstrap"), "{log}");

    // Past the old certificate's expiry the node still talks to the API
    // server: its lease is renewed, and a new pod runs and reports.
    while unix_now() < expires + 5 {
        std::thread::sleep(Duration::from_millis(500));
    }
    c.apply(
        &ns,
        &wasm_pod("after", &node.name, &image, &["after"], "Never"),
    );
    c.wait_phase(&ns, "after", "Succeeded", LONG);
    wait_for(
        "a lease renewal after the old certificate expired",
        LONG,
        || {
            let lease = c.get("kube-node-lease", "lease", &node.name)?;
            let renewed = lease["spec"]["renewTime"].as_str()?.to_owned();
            let renewed = renewed.parse::<k8s_openapi::jiff::Timestamp>().ok()?;
            (renewed.as_second() > expires + 1).then_some(())
        },
    );
    let log = node.log_text();
    assert!(!log.contains("Unauthorized"), "{log}");
    // Only one renewal: the new certificate is not due for months.
    assert_eq!(client_requests_by(c, "system:node:rotator", now).len(), 1);
}

/// `sandlet node` with only bootstrap credentials, in a fresh state
/// directory; it is expected to stop.
fn bootstrap_once(bootstrap: &Path, state: &Path) -> Ran {
    let mut node = sandlet();
    node.args([
        "node",
        "--node-name",
        "refused",
        "--address",
        "127.0.0.1",
        "--port",
        "0",
    ])
    .arg("--kubeconfig")
    .arg(state.join("kubeconfig"))
    .arg("--bootstrap-kubeconfig")
    .arg(bootstrap)
    .arg("--state-dir")
    .arg(state);
    let mut child = node
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + LONG;
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    child.wait_with_output().unwrap().into()
}

#[test]
fn kube_an_expired_or_revoked_bootstrap_token_is_refused_and_leaves_nothing() {
    let c = cluster();
    // Expired: valid for no time at all.
    let expired = c.bootstrap_kubeconfig("expired", 0);
    std::thread::sleep(Duration::from_secs(2));
    // Revoked: its Secret deleted, and the API server no longer takes it.
    let revoked = c.bootstrap_kubeconfig("revoked", 3600);
    let token = token_of(&revoked);
    let id = token.split('.').next().unwrap();
    c.kubectl(&[
        "delete",
        "secret",
        "-n",
        "kube-system",
        &format!("bootstrap-token-{id}"),
    ]);
    let revoked_path = revoked.to_str().unwrap();
    wait_for("the revoked token to be refused", LONG, || {
        let out = c.kubectl_raw(&["--kubeconfig", revoked_path, "auth", "whoami"], None);
        (!out.status.success()).then_some(())
    });
    for bootstrap in [&expired, &revoked] {
        let state = tempfile::tempdir().unwrap();
        let ran = bootstrap_once(bootstrap, state.path());
        assert_eq!(ran.code, Some(2), "{ran:#?}");
        assert!(
            ran.stderr.contains("refused the bootstrap credentials"),
            "{}",
            ran.stderr
        );
        assert!(ran.stderr.contains("401"), "{}", ran.stderr);
        assert!(
            ran.stderr.contains("expired, was revoked"),
            "{}",
            ran.stderr
        );
        assert!(!state.path().join("kubeconfig").exists());
        assert!(!state.path().join("pki/kubelet-client-current.pem").exists());
    }
    // A bootstrap file that is not a kubeconfig is named.
    let state = tempfile::tempdir().unwrap();
    let garbage = state.path().join("garbage.kubeconfig");
    std::fs::write(&garbage, "{ not: [ yaml").unwrap();
    let ran = bootstrap_once(&garbage, state.path());
    assert_eq!(ran.code, Some(2), "{ran:#?}");
    assert!(
        ran.stderr.contains("--bootstrap-kubeconfig"),
        "{}",
        ran.stderr
    );
    assert!(ran.stderr.contains("garbage.kubeconfig"), "{}", ran.stderr);
    // Bootstrap credentials need a --kubeconfig to write.
    let ran: Ran = sandlet()
        .args(["node", "--bootstrap-kubeconfig"])
        .arg(&expired)
        .output()
        .unwrap()
        .into();
    assert_eq!(ran.code, Some(2), "{ran:#?}");
    assert!(ran.stderr.contains("--kubeconfig"), "{}", ran.stderr);
}
