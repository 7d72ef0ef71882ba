//! Modules through a real registry (Debian's `docker-registry` on
//! loopback): `sandlet push`, `sandlet pull`, `sandlet run <reference>`,
//! over HTTP and HTTPS, with and without basic auth, and every way a pull
//! can go wrong leaving the store clean. (Where no registry answers:
//! `local::oci`; a full disk: `e2e::oci`.)

use std::sync::Arc;

use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::secrets::RegistryAuth;
use sandlet_registry::allow_list::AllowList;
use sandlet_registry::oci::{Credentials, OciError};
use sandlet_registry::store::ModuleStore;
use sandlet_runtime::Digest;

use crate::fixtures::{Ran, guests, run_sandlet};
use crate::local::oci::{loopback_client, stored_files};
use crate::registry::{PASSWORD, RegistrySetup, TestRegistry, USER};

/// `--insecure-registry` or `--registry-ca`, as the registry needs.
fn access(registry: &TestRegistry) -> Vec<String> {
    match &registry.ca {
        Some(ca) => vec!["--registry-ca".into(), ca.display().to_string()],
        None => vec!["--insecure-registry".into(), registry.addr.clone()],
    }
}

/// `sandlet SUBCOMMAND EXTRA... REST...`.
fn sandlet_with(args: &[&str], extra: &[String]) -> Ran {
    let mut all = vec![args[0].to_owned()];
    all.extend(extra.iter().cloned());
    all.extend(args[1..].iter().map(|a| a.to_string()));
    run_sandlet(all)
}

/// Push hello, pull it into a fresh store, run it by reference.
fn round_trip(setup: RegistrySetup) {
    let registry = TestRegistry::start(setup);
    let mut extra = access(&registry);
    if setup.auth {
        extra.extend([
            "--registry-config".into(),
            registry.docker_config(USER, PASSWORD).display().to_string(),
        ]);
    }
    let reference = format!("{}/algorithms/hello:v1", registry.addr);
    let hello = guests().hello.display().to_string();
    let pushed = sandlet_with(&["push", &hello, &reference], &extra);
    assert_eq!(pushed.code, Some(0), "{pushed:#?}");
    let manifest_digest: Digest = pushed
        .stdout
        .trim()
        .parse()
        .expect("push prints the manifest digest");

    let state = tempfile::tempdir().unwrap();
    let state_dir = state.path().display().to_string();
    let pulled = sandlet_with(&["pull", "--state-dir", &state_dir, &reference], &extra);
    assert_eq!(pulled.code, Some(0), "{pulled:#?}");
    let module_digest = Digest::of(&std::fs::read(&guests().hello).unwrap());
    assert_eq!(
        pulled.stdout,
        format!(
            "{}/algorithms/hello@{manifest_digest}\nmodule {module_digest} (WASI command)\n",
            registry.addr
        )
    );
    assert!(
        state
            .path()
            .join("modules/sha256")
            .join(module_digest.hex())
            .is_file()
    );

    // By digest, from the store, with the precompiled artifact.
    let by_digest = format!("{}/algorithms/hello@{manifest_digest}", registry.addr);
    let ran = sandlet_with(
        &[
            "run",
            "--state-dir",
            &state_dir,
            &by_digest,
            "--",
            "from",
            "registry",
        ],
        &extra,
    );
    assert_eq!(ran.code, Some(0), "{ran:#?}");
    assert_eq!(ran.stdout, "arg: from\narg: registry\nhello from wasm\n");
}

#[test]
fn push_pull_run_over_http() {
    round_trip(RegistrySetup {
        tls: false,
        auth: false,
    });
}

#[test]
fn push_pull_run_over_https_with_a_private_ca() {
    round_trip(RegistrySetup {
        tls: true,
        auth: false,
    });
}

#[test]
fn push_pull_run_over_https_with_basic_auth() {
    round_trip(RegistrySetup {
        tls: true,
        auth: true,
    });
}

#[test]
fn push_pull_run_over_http_with_basic_auth() {
    round_trip(RegistrySetup {
        tls: false,
        auth: true,
    });
}

#[test]
fn wrong_credentials_are_named() {
    let registry = TestRegistry::start(RegistrySetup {
        tls: true,
        auth: true,
    });
    let mut extra = access(&registry);
    extra.extend([
        "--registry-config".into(),
        registry.docker_config(USER, "wrong").display().to_string(),
    ]);
    let reference = format!("{}/algorithms/hello:v1", registry.addr);
    let ran = sandlet_with(
        &["push", &guests().hello.display().to_string(), &reference],
        &extra,
    );
    ran.assert_sandlet_error("refused the credentials");
}

#[test]
fn https_without_the_ca_is_refused() {
    let registry = TestRegistry::start(RegistrySetup {
        tls: true,
        auth: false,
    });
    let reference = format!("{}/algorithms/hello:v1", registry.addr);
    let state = tempfile::tempdir().unwrap();
    let ran = run_sandlet([
        "pull",
        "--state-dir",
        &state.path().display().to_string(),
        &reference,
    ]);
    assert_eq!(ran.code, Some(2), "{ran:#?}");
    assert!(
        ran.stderr.to_lowercase().contains("certificate"),
        "{ran:#?}"
    );
}

#[test]
fn unknown_reference_syntax_and_missing_tags() {
    let registry = TestRegistry::start(RegistrySetup::default());
    let state = tempfile::tempdir().unwrap();
    let state_dir = state.path().display().to_string();
    let ran = sandlet_with(
        &[
            "pull",
            "--state-dir",
            &state_dir,
            "127.0.0.1:1/UPPER/case:v1",
        ],
        &[],
    );
    ran.assert_sandlet_error("invalid image reference");
    let missing = format!("{}/algorithms/nothing:v1", registry.addr);
    let ran = sandlet_with(
        &["pull", "--state-dir", &state_dir, &missing],
        &access(&registry),
    );
    ran.assert_sandlet_error("not found");
}

fn raw_client(registry: &TestRegistry) -> oci_client::Client {
    // reqwest is built without a default crypto provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    oci_client::Client::new(ClientConfig {
        protocol: ClientProtocol::HttpsExcept(vec![registry.addr.clone()]),
        ..ClientConfig::default()
    })
}

pub async fn push_raw(registry: &TestRegistry, name: &str, layers: Vec<ImageLayer>) -> String {
    let reference = format!("{}/odd/{name}:v1", registry.addr);
    let config = Config::new(
        b"{}".to_vec(),
        "application/vnd.wasm.config.v0+json".into(),
        None,
    );
    raw_client(registry)
        .push(
            &reference.parse().unwrap(),
            &layers,
            config,
            &RegistryAuth::Anonymous,
            None,
        )
        .await
        .unwrap();
    reference
}

/// Pushes `module` as a one-layer `application/wasm` artifact `odd/NAME:v1`.
pub(crate) async fn push_module(registry: &TestRegistry, name: &str, module: &[u8]) -> String {
    let layer = ImageLayer::new(module.to_vec(), "application/wasm".into(), None);
    push_raw(registry, name, vec![layer]).await
}

async fn pull_into_fresh_store(
    registry: &TestRegistry,
    reference: &str,
) -> (Result<(), OciError>, tempfile::TempDir) {
    let state = tempfile::tempdir().unwrap();
    let store = ModuleStore::open(state.path(), 1 << 30).unwrap();
    let client = loopback_client(&registry.addr);
    let result = client
        .pull(
            reference,
            &Credentials::anonymous(),
            &store,
            &AllowList::allow_all(),
        )
        .await
        .map(drop);
    (result, state)
}

#[tokio::test]
async fn artifacts_that_are_not_one_wasm_layer_are_refused() {
    let registry = TestRegistry::start(RegistrySetup::default());
    let wasm = std::fs::read(&guests().hello).unwrap();
    let layer = |media: &str, bytes: &[u8]| ImageLayer::new(bytes.to_vec(), media.to_owned(), None);

    let two = push_raw(
        &registry,
        "two",
        vec![
            layer("application/wasm", &wasm),
            layer("application/wasm", b"\0asm\x01\0\0\0"),
        ],
    )
    .await;
    let (result, state) = pull_into_fresh_store(&registry, &two).await;
    assert!(
        matches!(result, Err(OciError::TooManyLayers { count: 2, .. })),
        "{result:?}"
    );
    assert_eq!(stored_files(state.path()), 0);

    let tar = push_raw(
        &registry,
        "tar",
        vec![layer("application/vnd.oci.image.layer.v1.tar", &wasm)],
    )
    .await;
    let (result, state) = pull_into_fresh_store(&registry, &tar).await;
    let err = result.unwrap_err();
    assert!(matches!(err, OciError::NotWasmLayer { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("application/vnd.oci.image.layer.v1.tar"),
        "{err}"
    );
    assert_eq!(stored_files(state.path()), 0);

    // Each accepted media type pulls.
    for (i, media) in sandlet_registry::oci::WASM_LAYER_MEDIA_TYPES
        .iter()
        .enumerate()
    {
        let reference = push_raw(&registry, &format!("media{i}"), vec![layer(media, &wasm)]).await;
        let (result, state) = pull_into_fresh_store(&registry, &reference).await;
        result.unwrap_or_else(|e| panic!("{media}: {e}"));
        assert_eq!(stored_files(state.path()), 1);
    }
}

#[tokio::test]
async fn a_tampered_blob_is_refused_and_nothing_is_stored() {
    let registry = TestRegistry::start(RegistrySetup::default());
    let wasm = std::fs::read(&guests().hello).unwrap();
    let reference = push_module(&registry, "tampered", &wasm).await;
    let blob = registry.blob_path(&Digest::of(&wasm).hex());
    // Same length with one byte changed behind the registry's back; then
    // cut short, as a truncated download would be.
    let mut flipped = wasm.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x01;
    for served in [flipped, wasm[..wasm.len() / 2].to_vec()] {
        std::fs::write(&blob, &served).unwrap();
        let (result, state) = pull_into_fresh_store(&registry, &reference).await;
        let err = result.unwrap_err();
        assert!(
            matches!(
                err,
                OciError::Verification { .. } | OciError::Registry { .. } | OciError::Store(_)
            ),
            "{err}"
        );
        assert_eq!(
            stored_files(state.path()),
            0,
            "nothing partial or corrupt is stored: {err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_pods_of_one_new_module_download_and_compile_it_once() {
    use sandlet_runtime::precompiled::{CacheOutcome, PrecompileCache};
    use sandlet_runtime::{EngineOptions, SandboxEngine};
    let registry = TestRegistry::start(RegistrySetup::default());
    let wasm = std::fs::read(&guests().hello).unwrap();
    let reference = push_module(&registry, "shared", &wasm).await;
    let state = tempfile::tempdir().unwrap();
    let store = Arc::new(ModuleStore::open(&state.path().join("modules"), 1 << 30).unwrap());
    let client = Arc::new(loopback_client(&registry.addr));
    let engine = Arc::new(
        SandboxEngine::new(EngineOptions {
            max_concurrent_runs: 2,
        })
        .unwrap(),
    );
    let cache = Arc::new(PrecompileCache::open(&state.path().join("compiled"), &engine).unwrap());
    let mut pods = Vec::new();
    for _ in 0..100 {
        let (store, client, reference) = (store.clone(), client.clone(), reference.clone());
        let (engine, cache) = (engine.clone(), cache.clone());
        pods.push(tokio::spawn(async move {
            let pulled = client
                .pull(
                    &reference,
                    &Credentials::anonymous(),
                    &store,
                    &AllowList::allow_all(),
                )
                .await
                .unwrap();
            let bytes = store.get(&pulled.module_digest).unwrap().unwrap();
            let outcome = tokio::task::spawn_blocking(move || {
                cache
                    .load_or_compile(&engine, &pulled.module_digest, &bytes)
                    .unwrap()
                    .1
            })
            .await
            .unwrap();
            (pulled.downloaded, outcome)
        }));
    }
    let (mut downloads, mut compiles) = (0, 0);
    for pod in pods {
        let (downloaded, outcome) = pod.await.unwrap();
        downloads += usize::from(downloaded);
        compiles += usize::from(outcome == CacheOutcome::Compiled);
    }
    assert_eq!((downloads, compiles), (1, 1));
}

#[test]
fn a_plain_http_registry_is_refused_unless_named_insecure() {
    let registry = TestRegistry::start(RegistrySetup::default());
    let hello = guests().hello.display().to_string();
    let reference = format!("{}/algorithms/hello:v1", registry.addr);
    let ran = run_sandlet(["push", &hello, &reference]);
    assert_eq!(ran.code, Some(2), "{ran:#?}");
    let ran = sandlet_with(&["push", &hello, &reference], &access(&registry));
    assert_eq!(ran.code, Some(0), "{ran:#?}");
}

#[test]
fn a_module_outside_the_allow_list_is_refused_before_download() {
    let registry = TestRegistry::start(RegistrySetup::default());
    let extra = access(&registry);
    let hello = guests().hello.display().to_string();
    let reference = format!("{}/algorithms/hello:v1", registry.addr);
    let pushed = sandlet_with(&["push", &hello, &reference], &extra);
    assert_eq!(pushed.code, Some(0), "{pushed:#?}");
    let module_digest = Digest::of(&std::fs::read(&guests().hello).unwrap());

    let dir = tempfile::tempdir().unwrap();
    let state_dir = dir.path().join("state").display().to_string();
    let write_config = |rules: &str| {
        let path = dir.path().join("station.yaml");
        std::fs::write(&path, format!("modules:\n  allow:\n{rules}")).unwrap();
        path.display().to_string()
    };
    let run_under = |config: &str| {
        sandlet_with(
            &[
                "run",
                "--config",
                config,
                "--state-dir",
                &state_dir,
                &reference,
            ],
            &extra,
        )
    };
    // Another repository only.
    let config = write_config(&format!("    - repository: {}/reviewed/*\n", registry.addr));
    let ran = run_under(&config);
    ran.assert_sandlet_error(
        "is not allowed on this station: no allow-list rule covers repository",
    );
    assert_eq!(
        stored_files(&dir.path().join("state/modules")),
        0,
        "nothing was downloaded"
    );
    // The right repository, but another digest pinned.
    let config = write_config(&format!(
        "    - repository: {}/algorithms/hello\n      digests: [{}]\n",
        registry.addr,
        Digest::of(b"the reviewed build")
    ));
    let ran = run_under(&config);
    ran.assert_sandlet_error("is not one of the pinned digests");
    assert_eq!(stored_files(&dir.path().join("state/modules")), 0);
    // Pinned to this module: it runs.
    let config = write_config(&format!(
        "    - repository: {}/algorithms/hello\n      digests: [{module_digest}]\n",
        registry.addr
    ));
    let ran = run_under(&config);
    assert_eq!(ran.code, Some(0), "{ran:#?}");
    assert_eq!(ran.stdout, "hello from wasm\n");
}

#[tokio::test]
async fn pull_policies_and_back_off_behave_as_in_kubernetes() {
    use sandlet_registry::pull::{ImagePuller, PullPolicy, WaitingReason};
    use std::time::Duration;

    let registry = TestRegistry::start(RegistrySetup::default());
    let wasm = std::fs::read(&guests().hello).unwrap();
    let reference = push_module(&registry, "policy", &wasm).await;
    let state = tempfile::tempdir().unwrap();
    let addr = registry.addr.clone();
    let puller = |state: &std::path::Path| {
        let store = Arc::new(ModuleStore::open(&state.join("modules"), 1 << 30).unwrap());
        let client = Arc::new(loopback_client(&addr));
        ImagePuller::new(client, store, AllowList::allow_all(), state)
            .unwrap()
            .with_backoff(Duration::from_millis(300), Duration::from_millis(1000))
    };
    let anonymous = Credentials::anonymous();
    let first = puller(state.path());

    let never = first
        .ensure(&reference, PullPolicy::Never, &anonymous)
        .await
        .unwrap_err();
    assert_eq!(never.reason, WaitingReason::ErrImageNeverPull);
    assert_eq!(never.retry_after, None);
    let pulled = first
        .ensure(&reference, PullPolicy::IfNotPresent, &anonymous)
        .await
        .unwrap();
    assert!(pulled.downloaded);
    // Later answers come from the store: nothing is downloaded again.
    let pulled = sandlet_registry::oci::PulledModule {
        downloaded: false,
        ..pulled
    };
    assert_eq!(
        first
            .ensure(&reference, PullPolicy::Never, &anonymous)
            .await
            .unwrap(),
        pulled
    );
    let invalid = first
        .ensure("Bad Reference", PullPolicy::Always, &anonymous)
        .await
        .unwrap_err();
    assert_eq!(invalid.reason, WaitingReason::InvalidImageName);

    // The registry goes away: stored modules still start, Always cannot.
    drop(registry);
    // A restarted node finds what it pulled before.
    let restarted = puller(state.path());
    assert_eq!(
        restarted
            .ensure(&reference, PullPolicy::IfNotPresent, &anonymous)
            .await
            .unwrap(),
        pulled
    );
    let failed = restarted
        .ensure(&reference, PullPolicy::Always, &anonymous)
        .await
        .unwrap_err();
    assert_eq!(failed.reason, WaitingReason::ErrImagePull, "{failed}");
    assert!(failed.message.contains("unreachable"), "{failed}");
    assert_eq!(failed.retry_after, Some(Duration::from_millis(300)));
    let waiting = restarted
        .ensure(&reference, PullPolicy::Always, &anonymous)
        .await
        .unwrap_err();
    assert_eq!(waiting.reason, WaitingReason::ImagePullBackOff);
    assert!(waiting.retry_after.unwrap() <= Duration::from_millis(300));
    tokio::time::sleep(Duration::from_millis(350)).await;
    let again = restarted
        .ensure(&reference, PullPolicy::Always, &anonymous)
        .await
        .unwrap_err();
    assert_eq!(again.reason, WaitingReason::ErrImagePull);
    assert_eq!(
        again.retry_after,
        Some(Duration::from_millis(600)),
        "the window doubles"
    );
}

/// `(digest, size)` of the manifest `reference` points at.
async fn manifest_of(registry: &TestRegistry, reference: &str) -> (String, usize) {
    use oci_client::manifest::OCI_IMAGE_MEDIA_TYPE;
    let (bytes, digest) = raw_client(registry)
        .pull_manifest_raw(
            &reference.parse().unwrap(),
            &RegistryAuth::Anonymous,
            &[OCI_IMAGE_MEDIA_TYPE],
        )
        .await
        .unwrap();
    (digest, bytes.len())
}

#[tokio::test]
async fn an_image_index_resolves_to_its_wasm_entry() {
    use oci_client::manifest::{OCI_IMAGE_INDEX_MEDIA_TYPE, OCI_IMAGE_MEDIA_TYPE, OciImageIndex};
    let registry = TestRegistry::start(RegistrySetup::default());
    let wasm = std::fs::read(&guests().hello).unwrap();
    let wasm_ref = push_module(&registry, "index-wasm", &wasm).await;
    let tar = ImageLayer::new(
        b"not wasm".to_vec(),
        "application/vnd.oci.image.layer.v1.tar".into(),
        None,
    );
    let linux_ref = push_raw(&registry, "index-linux", vec![tar]).await;
    let (wasm_digest, wasm_size) = manifest_of(&registry, &wasm_ref).await;
    let (linux_digest, linux_size) = manifest_of(&registry, &linux_ref).await;
    let index: OciImageIndex = serde_json::from_value(serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_IMAGE_INDEX_MEDIA_TYPE,
        "manifests": [
            { "mediaType": OCI_IMAGE_MEDIA_TYPE, "digest": linux_digest, "size": linux_size,
              "platform": { "architecture": "amd64", "os": "linux" } },
            { "mediaType": OCI_IMAGE_MEDIA_TYPE, "digest": wasm_digest, "size": wasm_size,
              "platform": { "architecture": "wasm", "os": "wasip1" } },
        ],
    }))
    .unwrap();
    // An index refers to manifests of its own repository: push both there.
    let reference = format!("{}/odd/index:multi", registry.addr);
    push_module(&registry, "index", &wasm).await;
    let tar = ImageLayer::new(
        b"not wasm".to_vec(),
        "application/vnd.oci.image.layer.v1.tar".into(),
        None,
    );
    let config = Config::new(
        b"{}".to_vec(),
        "application/vnd.wasm.config.v0+json".into(),
        None,
    );
    raw_client(&registry)
        .push(
            &format!("{}/odd/index:linux", registry.addr)
                .parse()
                .unwrap(),
            &[tar],
            config,
            &RegistryAuth::Anonymous,
            None,
        )
        .await
        .unwrap();
    raw_client(&registry)
        .push_manifest_list(&reference.parse().unwrap(), &RegistryAuth::Anonymous, index)
        .await
        .unwrap();
    let (result, state) = pull_into_fresh_store(&registry, &reference).await;
    result.unwrap();
    assert!(
        state
            .path()
            .join("sha256")
            .join(Digest::of(&wasm).hex())
            .is_file()
    );
}

/// Regression: oci-client keeps the first credentials a client used for a
/// registry, so one shared client let an anonymous pull ride on an earlier
/// authenticated one (and refused an authenticated pull after an anonymous
/// one). Each set of credentials now has its own client.
#[tokio::test]
async fn one_pulls_credentials_never_serve_another_pull() {
    let registry = TestRegistry::start(RegistrySetup {
        tls: false,
        auth: true,
    });
    let config = registry.docker_config(USER, PASSWORD);
    let reference = format!("{}/private/hello:v1", registry.addr);
    let wasm = std::fs::read(&guests().hello).unwrap();
    let credentials = Credentials::from_docker_config_file(&config).unwrap();
    let client = loopback_client(&registry.addr);
    client.push(&wasm, &reference, &credentials).await.unwrap();
    let pull = |credentials: Credentials| {
        let client = &client;
        let reference = reference.clone();
        async move {
            let state = tempfile::tempdir().unwrap();
            let store = ModuleStore::open(state.path(), 1 << 30).unwrap();
            client
                .pull(&reference, &credentials, &store, &AllowList::allow_all())
                .await
                .map(drop)
        }
    };
    // Anonymous first, then with credentials, then anonymous again.
    assert!(matches!(
        pull(Credentials::anonymous()).await,
        Err(OciError::Unauthorized { .. })
    ));
    pull(credentials.clone()).await.unwrap();
    let again = pull(Credentials::anonymous()).await;
    assert!(
        matches!(again, Err(OciError::Unauthorized { .. })),
        "{again:?}"
    );
}
