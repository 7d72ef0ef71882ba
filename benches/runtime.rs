//! Runtime benchmarks: compile, load a precompiled module, instantiate via
//! `InstancePre` with the pooling allocator, and a whole `hello` run.
//!
//! `cargo bench --bench runtime` (results in docs/developer/benchmarks.md). The guests are
//! built from source by the same fixtures as the integration tests.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use sandlet_runtime::{Digest, EngineOptions, OutputSinks, RunOutcome, RunPlan, SandboxEngine};

#[allow(dead_code)]
#[path = "../tests/integration/fixtures.rs"]
mod fixtures;

#[allow(unsafe_code)] // loads artifacts this engine made
fn runtime_benches(c: &mut Criterion) {
    let guests = fixtures::guests();
    let bytes = std::fs::read(&guests.hello).expect("hello.wasm");
    let engine = SandboxEngine::new(EngineOptions::default()).expect("engine");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    c.bench_function("compile hello (component)", |b| {
        b.iter(|| engine.compile(black_box(&bytes)).unwrap())
    });

    let artifact = engine.precompile(&bytes).unwrap();
    c.bench_function("load precompiled hello", |b| {
        // SAFETY: the artifact was made by this engine.
        b.iter(|| unsafe { engine.deserialize(black_box(&artifact)) }.unwrap())
    });

    let module = engine.load(&bytes).unwrap();
    let plan = RunPlan::builder("hello").build().unwrap();
    let sinks = OutputSinks::null();
    c.bench_function("instantiate hello via InstancePre", |b| {
        b.iter(|| {
            rt.block_on(engine.instantiate(&module, &plan, &sinks))
                .unwrap()
        })
    });

    c.bench_function("run hello in-process", |b| {
        b.iter(|| {
            let outcome = rt.block_on(engine.run(&module, &plan, &sinks)).unwrap();
            assert_eq!(outcome, RunOutcome::Exited(0));
        })
    });

    c.bench_function("prepare (link) hello", |b| {
        let compiled = engine.compile(&bytes).unwrap();
        b.iter(|| {
            engine
                .prepare(compiled.clone(), Digest::of(&bytes))
                .unwrap()
        })
    });
}

criterion_group!(benches, runtime_benches);
criterion_main!(benches);
