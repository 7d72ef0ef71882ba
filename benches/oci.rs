//! Module delivery benchmarks: starting a cached module against one already
//! in memory, pulling a 10 MB module from a loopback registry against
//! plain disk I/O of the same bytes, and what signature checks add to a
//! cached start and to an uncached one.
//!
//! `cargo bench --bench oci` (needs Debian's docker-registry; results in
//! docs/developer/benchmarks.md).

use std::hint::black_box;
use std::io::Write;
use std::sync::Arc;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::secrets::RegistryAuth;
use sandlet_registry::allow_list::AllowList;
use sandlet_registry::oci::{Credentials, Registry, RegistryOptions};
use sandlet_registry::store::ModuleStore;
use sandlet_runtime::precompiled::PrecompileCache;
use sandlet_runtime::{Digest, EngineOptions, OutputSinks, RunOutcome, RunPlan, SandboxEngine};

#[allow(dead_code)]
#[path = "../tests/integration/fixtures.rs"]
mod fixtures;
#[allow(dead_code)]
#[path = "../tests/integration/registry.rs"]
mod registry;

/// `module` with a custom section of `padding` bytes appended: a valid
/// module of any size.
fn padded(module: &[u8], padding: usize) -> Vec<u8> {
    fn leb(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let name = b"sandlet-bench-padding";
    let mut payload = Vec::new();
    leb(name.len(), &mut payload);
    payload.extend_from_slice(name);
    payload.resize(payload.len() + padding, 0x5a);
    let mut out = module.to_vec();
    out.push(0);
    leb(payload.len(), &mut out);
    out.extend_from_slice(&payload);
    out
}

fn start_benches(c: &mut Criterion) {
    let guests = fixtures::guests();
    let bytes = std::fs::read(&guests.hello).unwrap();
    let digest = Digest::of(&bytes);
    let engine = SandboxEngine::new(EngineOptions::default()).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let plan = RunPlan::builder("hello").build().unwrap();
    let sinks = OutputSinks::null();
    let state = tempfile::tempdir().unwrap();
    let store = ModuleStore::open(&state.path().join("modules"), 1 << 30).unwrap();
    store.insert(&digest, &bytes).unwrap();
    let compiled = state.path().join("compiled");
    PrecompileCache::open(&compiled, &engine)
        .unwrap()
        .load_or_compile(&engine, &digest, &bytes)
        .unwrap();

    let in_memory = engine.load(&bytes).unwrap();
    c.bench_function("start hello: prepared module in memory", |b| {
        b.iter(|| {
            let outcome = rt.block_on(engine.run(&in_memory, &plan, &sinks)).unwrap();
            assert_eq!(outcome, RunOutcome::Exited(0));
        })
    });

    let cache = PrecompileCache::open(&compiled, &engine).unwrap();
    c.bench_function(
        "start hello: second start in the same process (cache in memory)",
        |b| {
            b.iter(|| {
                let (module, _) = cache.load_or_compile(&engine, &digest, &[]).unwrap();
                let outcome = rt.block_on(engine.run(&module, &plan, &sinks)).unwrap();
                assert_eq!(outcome, RunOutcome::Exited(0));
            })
        },
    );

    c.bench_function(
        "start hello: first start after a restart (store + artifact from disk)",
        |b| {
            b.iter(|| {
                let cache = PrecompileCache::open(&compiled, &engine).unwrap();
                let stored = store.get(&digest).unwrap().unwrap();
                let (module, _) = cache.load_or_compile(&engine, &digest, &stored).unwrap();
                let outcome = rt.block_on(engine.run(&module, &plan, &sinks)).unwrap();
                assert_eq!(outcome, RunOutcome::Exited(0));
            })
        },
    );
}

fn pull_benches(c: &mut Criterion) {
    let guests = fixtures::guests();
    let module = padded(&std::fs::read(&guests.hello).unwrap(), 10 << 20);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let test_registry = registry::TestRegistry::start(registry::RegistrySetup::default());
    let _ = rustls::crypto::ring::default_provider().install_default();
    let reference = format!("{}/bench/big:v1", test_registry.addr);
    rt.block_on(async {
        let client = oci_client::Client::new(ClientConfig {
            protocol: ClientProtocol::HttpsExcept(vec![test_registry.addr.clone()]),
            ..ClientConfig::default()
        });
        let config = Config::new(
            b"{}".to_vec(),
            "application/vnd.wasm.config.v0+json".into(),
            None,
        );
        let layer = ImageLayer::new(module.clone(), "application/wasm".into(), None);
        client
            .push(
                &reference.parse().unwrap(),
                &[layer],
                config,
                &RegistryAuth::Anonymous,
                None,
            )
            .await
            .unwrap();
    });
    let client = Registry::new(&RegistryOptions {
        insecure: vec![test_registry.addr.clone()],
        ca_file: None,
    })
    .unwrap();
    let scratch = tempfile::tempdir().unwrap();

    let mut group = c.benchmark_group(format!("10 MB module ({} bytes)", module.len()));
    group.sample_size(20);
    group.bench_function("sha256 of the module (one digest check)", |b| {
        b.iter(|| Digest::of(black_box(&module)))
    });
    group.bench_function("disk: write + fsync + read back", |b| {
        b.iter_batched(
            || tempfile::tempdir_in(scratch.path()).unwrap(),
            |dir| {
                let path = dir.path().join("m.wasm");
                let mut file = std::fs::File::create(&path).unwrap();
                file.write_all(&module).unwrap();
                file.sync_all().unwrap();
                black_box(std::fs::read(&path).unwrap());
                dir
            },
            BatchSize::PerIteration,
        )
    });
    group.bench_function(
        "pull from loopback registry into a fresh store (verified, fsynced)",
        |b| {
            b.iter_batched(
                || {
                    let dir = tempfile::tempdir_in(scratch.path()).unwrap();
                    let store = Arc::new(ModuleStore::open(dir.path(), 1 << 30).unwrap());
                    (dir, store)
                },
                |(dir, store)| {
                    let pulled = rt
                        .block_on(client.pull(
                            &reference,
                            &Credentials::anonymous(),
                            &store,
                            &AllowList::allow_all(),
                        ))
                        .unwrap();
                    assert!(pulled.downloaded);
                    dir
                },
                BatchSize::PerIteration,
            )
        },
    );
    group.finish();
}

/// Signature verification, side by side: the same module stored on the
/// node, admitted by an allow-list without keys and by one that
/// names the key that signed it. Cached: the reference index and the
/// signature remembered with it (imagePullPolicy IfNotPresent). Uncached: a
/// fresh client resolving the reference (the module already stored, so
/// nothing is downloaded), with and without the signature check.
fn signature_benches(c: &mut Criterion) {
    use sandlet_registry::allow_list::AllowRule;
    use sandlet_registry::pull::{ImagePuller, PullPolicy};

    let guests = fixtures::guests();
    let module = std::fs::read(&guests.hello).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let test_registry = registry::TestRegistry::start(registry::RegistrySetup::default());
    let addr = test_registry.addr.clone();
    let reference = format!("{addr}/bench/signed:v1");
    let fresh_client = || {
        Arc::new(
            Registry::new(&RegistryOptions {
                insecure: vec![addr.clone()],
                ca_file: None,
            })
            .unwrap(),
        )
    };
    let anonymous = Credentials::anonymous();
    let key = sandlet_trust::PrivateKey::generate();
    let keys = tempfile::tempdir().unwrap();
    std::fs::write(keys.path().join("reviewer.pub"), key.public().to_pem()).unwrap();
    rt.block_on(async {
        let client = fresh_client();
        client.push(&module, &reference, &anonymous).await.unwrap();
        client.sign(&reference, &anonymous, &key).await.unwrap();
    });
    let keyed = AllowList::new(
        vec![AllowRule {
            repository: format!("{addr}/bench/*"),
            digests: None,
            keys: Some(vec!["reviewer.pub".into()]),
        }],
        keys.path(),
    )
    .unwrap();
    let state = tempfile::tempdir().unwrap();
    let store = Arc::new(ModuleStore::open(&state.path().join("modules"), 1 << 30).unwrap());
    let plain_state = tempfile::tempdir().unwrap();
    let signed_state = tempfile::tempdir().unwrap();
    let plain = ImagePuller::new(
        fresh_client(),
        store.clone(),
        AllowList::allow_all(),
        plain_state.path(),
    )
    .unwrap();
    let signed = ImagePuller::new(
        fresh_client(),
        store.clone(),
        keyed.clone(),
        signed_state.path(),
    )
    .unwrap();
    rt.block_on(async {
        plain
            .ensure(&reference, PullPolicy::IfNotPresent, &anonymous)
            .await
            .unwrap();
        let pulled = signed
            .ensure(&reference, PullPolicy::IfNotPresent, &anonymous)
            .await
            .unwrap();
        assert!(pulled.signed_by.is_some());
    });

    let mut group = c.benchmark_group("signature verification (hello, loopback registry)");
    group.bench_function(
        "cached start: stored module, allow-list without keys",
        |b| {
            b.iter(|| {
                rt.block_on(plain.ensure(&reference, PullPolicy::IfNotPresent, &anonymous))
                    .unwrap()
            })
        },
    );
    group.bench_function(
        "cached start: stored module, allow-list with keys (signature remembered)",
        |b| {
            b.iter(|| {
                let pulled = rt
                    .block_on(signed.ensure(&reference, PullPolicy::IfNotPresent, &anonymous))
                    .unwrap();
                assert!(pulled.signed_by.is_some());
                pulled
            })
        },
    );
    group.bench_function("uncached: resolve with a fresh client, no keys", |b| {
        b.iter_batched(
            fresh_client,
            |client| {
                rt.block_on(client.pull(&reference, &anonymous, &store, &AllowList::allow_all()))
                    .unwrap()
            },
            BatchSize::PerIteration,
        )
    });
    group.bench_function(
        "uncached: resolve with a fresh client + signature check",
        |b| {
            b.iter_batched(
                fresh_client,
                |client| {
                    let pulled = rt
                        .block_on(client.pull(&reference, &anonymous, &store, &keyed))
                        .unwrap();
                    assert!(pulled.signed_by.is_some() && !pulled.downloaded);
                    pulled
                },
                BatchSize::PerIteration,
            )
        },
    );
    group.bench_function(
        "a warm client resolving the reference (one manifest request)",
        |b| {
            let client = fresh_client();
            b.iter(|| {
                rt.block_on(client.pull(&reference, &anonymous, &store, &AllowList::allow_all()))
                    .unwrap()
            })
        },
    );
    group.finish();
}

criterion_group!(benches, start_benches, pull_benches, signature_benches);
criterion_main!(benches);
