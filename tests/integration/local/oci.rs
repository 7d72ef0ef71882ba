//! sandlet's registry client where no registry answers: a registry that is
//! down is named, and a repository the allow-list does not cover is never
//! contacted. (The pulls from a real registry are `services::oci`.)

use std::sync::Arc;

use sandlet_registry::allow_list::AllowList;
use sandlet_registry::oci::{Credentials, OciError, Registry, RegistryOptions};
use sandlet_registry::store::ModuleStore;
use sandlet_runtime::Digest;

use crate::fixtures::run_sandlet;

/// sandlet's registry client for a plain-HTTP loopback registry.
pub(crate) fn loopback_client(addr: &str) -> Registry {
    Registry::new(&RegistryOptions {
        insecure: vec![addr.to_owned()],
        ca_file: None,
    })
    .unwrap()
}

/// How many modules the store in `dir` holds.
pub(crate) fn stored_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir.join("sha256"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn a_registry_that_is_down_is_named() {
    let addr = format!(
        "127.0.0.1:{}",
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    );
    let state = tempfile::tempdir().unwrap();
    let ran = run_sandlet([
        "pull",
        "--state-dir",
        &state.path().display().to_string(),
        "--insecure-registry",
        &addr,
        &format!("{addr}/algorithms/hello:v1"),
    ]);
    ran.assert_sandlet_error(&format!("registry {addr} is unreachable"));
}

/// A module from a repository that no allow-list rule covers is refused
/// before the registry is contacted: a station that lists only its own
/// registry never connects elsewhere because a pod named another (as
/// vantage6's node does with its probe image).
#[tokio::test]
async fn a_repository_outside_the_allow_list_is_never_contacted() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    // A "registry" that only counts the connections made to it.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    let accept = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    let allow = AllowList::new(
        vec![sandlet_registry::allow_list::AllowRule {
            repository: format!("{addr}/reviewed/*"),
            digests: None,
            keys: None,
        }],
        std::path::Path::new("."),
    )
    .unwrap();
    let state = tempfile::tempdir().unwrap();
    let store = ModuleStore::open(state.path(), 1 << 30).unwrap();
    let client = loopback_client(&addr);
    for reference in [
        format!("{addr}/unreviewed/mean:v1"),
        format!("{addr}/reviewedx/mean:v1"),
        format!("{addr}/reviewed:v1"),
        format!("{addr}/reviewed-not/mean:v1"),
        format!("{addr}/unreviewed/mean@sha256:{}", Digest::of(b"m").hex()),
    ] {
        let err = client
            .pull(&reference, &Credentials::anonymous(), &store, &allow)
            .await
            .unwrap_err();
        assert!(matches!(err, OciError::NotAllowed(_)), "{reference}: {err}");
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(
        connections.load(Ordering::SeqCst),
        0,
        "a refused repository was contacted"
    );
    // The control: a covered repository is contacted (and fails, as this
    // is no registry).
    let covered = client
        .pull(
            &format!("{addr}/reviewed/mean:v1"),
            &Credentials::anonymous(),
            &store,
            &allow,
        )
        .await;
    assert!(covered.is_err());
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(connections.load(Ordering::SeqCst) >= 1);
    accept.abort();
}
