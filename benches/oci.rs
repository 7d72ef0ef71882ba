//! Module delivery benchmarks: starting a cached module against one already
//! in memory, and pulling a 10 MB module from a loopback registry against
//! plain disk I/O of the same bytes.
//!
//! `cargo bench --bench oci` (needs Debian's docker-registry; results in
//! BENCHMARKS.md).

use std::hint::black_box;
use std::io::Write;
use std::sync::Arc;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::secrets::RegistryAuth;
use sandlet_registry::admission::AllowList;
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

criterion_group!(benches, start_benches, pull_benches);
criterion_main!(benches);
