//! The runtime library in-process: one engine shared by concurrent runs, and
//! a run that fails leaves the others and the engine unaffected.

use std::sync::Arc;
use std::time::Duration;

use sandlet_runtime::{
    EngineOptions, LimitExceeded, Limits, MemorySink, ModuleKind, OutputSinks, RunError,
    RunOutcome, RunPlan, SandboxEngine,
};

use crate::fixtures::guests;

fn memory_sinks() -> (OutputSinks, MemorySink) {
    let out = MemorySink::new();
    (
        OutputSinks {
            stdout: Arc::new(out.clone()),
            stderr: Arc::new(MemorySink::new()),
        },
        out,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_runs_leave_other_runs_and_the_engine_unaffected() {
    let engine = Arc::new(
        SandboxEngine::new(EngineOptions {
            max_concurrent_runs: 8,
        })
        .unwrap(),
    );
    let escape = engine.load_file(&guests().escape).unwrap();
    let hello = engine.load_file(&guests().hello).unwrap();
    assert_eq!(hello.kind(), ModuleKind::Command);

    let looping = {
        let engine = engine.clone();
        let escape = escape.clone();
        tokio::spawn(async move {
            let plan = RunPlan::builder("escape")
                .arg("loop")
                .limits(Limits {
                    timeout: Duration::from_secs(2),
                    ..Limits::default()
                })
                .build()
                .unwrap();
            engine.run(&escape, &plan, &OutputSinks::null()).await
        })
    };
    let hoarding = {
        let engine = engine.clone();
        let escape = escape.clone();
        tokio::spawn(async move {
            let plan = RunPlan::builder("escape")
                .arg("memory")
                .limits(Limits {
                    memory_bytes: 16 << 20,
                    ..Limits::default()
                })
                .build()
                .unwrap();
            engine.run(&escape, &plan, &OutputSinks::null()).await
        })
    };
    // While those misbehave, ordinary runs complete with the right output.
    for i in 0..5 {
        let (sinks, out) = memory_sinks();
        let plan = RunPlan::builder("hello")
            .arg(format!("run-{i}"))
            .build()
            .unwrap();
        assert_eq!(
            engine.run(&hello, &plan, &sinks).await.unwrap(),
            RunOutcome::Exited(0)
        );
        assert_eq!(
            out.contents_lossy(),
            format!("arg: run-{i}\nhello from wasm\n")
        );
    }
    assert!(matches!(
        looping.await.unwrap(),
        Err(RunError::Limit(LimitExceeded::Timeout(t))) if t == Duration::from_secs(2)
    ));
    assert!(matches!(
        hoarding.await.unwrap(),
        Err(RunError::Limit(LimitExceeded::Memory { limit, .. })) if limit == 16 << 20
    ));
    // And afterwards the engine still runs modules.
    let (sinks, out) = memory_sinks();
    let plan = RunPlan::builder("hello").build().unwrap();
    assert_eq!(
        engine.run(&hello, &plan, &sinks).await.unwrap(),
        RunOutcome::Exited(0)
    );
    assert_eq!(out.contents_lossy(), "hello from wasm\n");
}

#[tokio::test]
async fn modules_are_classified_by_their_exports() {
    let engine = SandboxEngine::new(EngineOptions {
        max_concurrent_runs: 2,
    })
    .unwrap();
    assert_eq!(
        engine.load_file(&guests().column_stats).unwrap().kind(),
        ModuleKind::Algorithm
    );
    assert_eq!(
        engine.load_file(&guests().hello_p1).unwrap().kind(),
        ModuleKind::Command
    );
    let err = engine
        .load_file(&guests().unknown_world)
        .expect_err("unknown world must be refused");
    assert!(err.to_string().contains("unknown world"), "{err}");
}

#[tokio::test]
#[allow(unsafe_code)] // loads artifacts this engine made, and garbage it must refuse
async fn a_precompiled_module_runs_like_a_compiled_one() {
    let engine = SandboxEngine::new(EngineOptions {
        max_concurrent_runs: 2,
    })
    .unwrap();
    let bytes = std::fs::read(&guests().hello).unwrap();
    let artifact = engine.precompile(&bytes).unwrap();
    // SAFETY: the artifact was made by this engine a line above.
    let compiled = unsafe { engine.deserialize(&artifact) }.unwrap();
    let module = engine
        .prepare(compiled, sandlet_runtime::Digest::of(&bytes))
        .unwrap();
    let (sinks, out) = memory_sinks();
    let plan = RunPlan::builder("hello").arg("pre").build().unwrap();
    assert_eq!(
        engine.run(&module, &plan, &sinks).await.unwrap(),
        RunOutcome::Exited(0)
    );
    assert_eq!(out.contents_lossy(), "arg: pre\nhello from wasm\n");
    // Garbage is refused, not run.
    // SAFETY: wasmtime checks the header before it maps anything.
    assert!(unsafe { engine.deserialize(b"\0asm garbage") }.is_err());
}

#[tokio::test]
async fn the_precompile_cache_compiles_once_and_never_trusts_a_corrupt_artifact() {
    use sandlet_runtime::precompiled::{CacheOutcome, PrecompileCache};
    let dir = tempfile::tempdir().unwrap();
    let engine = SandboxEngine::new(EngineOptions {
        max_concurrent_runs: 2,
    })
    .unwrap();
    let bytes = std::fs::read(&guests().hello).unwrap();
    let digest = sandlet_runtime::Digest::of(&bytes);

    let cache = PrecompileCache::open(dir.path(), &engine).unwrap();
    let (_, outcome) = cache.load_or_compile(&engine, &digest, &bytes).unwrap();
    assert_eq!(outcome, CacheOutcome::Compiled);
    // A second cache over the same directory (a restarted node) loads it.
    let cache = PrecompileCache::open(dir.path(), &engine).unwrap();
    let (module, outcome) = cache.load_or_compile(&engine, &digest, &bytes).unwrap();
    assert_eq!(outcome, CacheOutcome::Hit);
    let (sinks, out) = memory_sinks();
    let plan = RunPlan::builder("hello").arg("cached").build().unwrap();
    assert_eq!(
        engine.run(&module, &plan, &sinks).await.unwrap(),
        RunOutcome::Exited(0)
    );
    assert_eq!(out.contents_lossy(), "arg: cached\nhello from wasm\n");

    // Flip one byte of the stored artifact: it must be recompiled, not run.
    let artifact = walk_files(dir.path())
        .into_iter()
        .find(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .unwrap();
    let mut stored = std::fs::read(&artifact).unwrap();
    let middle = stored.len() / 2;
    stored[middle] ^= 0xff;
    std::fs::write(&artifact, stored).unwrap();
    let cache = PrecompileCache::open(dir.path(), &engine).unwrap();
    let (module, outcome) = cache.load_or_compile(&engine, &digest, &bytes).unwrap();
    assert_eq!(outcome, CacheOutcome::Recompiled);
    let (sinks, out) = memory_sinks();
    assert_eq!(
        engine.run(&module, &plan, &sinks).await.unwrap(),
        RunOutcome::Exited(0)
    );
    assert_eq!(out.contents_lossy(), "arg: cached\nhello from wasm\n");
    // In this process the module is now prepared; a new process loads it.
    assert_eq!(
        cache.load_or_compile(&engine, &digest, &bytes).unwrap().1,
        CacheOutcome::InMemory
    );
    let cache = PrecompileCache::open(dir.path(), &engine).unwrap();
    assert_eq!(
        cache.load_or_compile(&engine, &digest, &bytes).unwrap().1,
        CacheOutcome::Hit
    );

    // Bytes that are not the module the digest names are refused.
    let other = sandlet_runtime::Digest::of(b"something else");
    let err = cache
        .load_or_compile(&engine, &other, &bytes)
        .expect_err("mismatch must be refused");
    assert!(err.to_string().contains("do not match its digest"), "{err}");
}

/// Regression: opening the cache removed every temporary file in it, so a
/// `sandlet run` starting while another process stored an artifact deleted
/// that file, whose rename then failed and whose run compiled uncached
/// with a warning on stderr. Only writes that died long ago are removed.
#[test]
fn opening_the_precompile_cache_leaves_another_process_write_in_progress() {
    use sandlet_runtime::precompiled::PrecompileCache;
    let dir = tempfile::tempdir().unwrap();
    let engine = SandboxEngine::new(EngineOptions {
        max_concurrent_runs: 2,
    })
    .unwrap();
    let bytes = std::fs::read(&guests().hello).unwrap();
    let digest = sandlet_runtime::Digest::of(&bytes);
    let cache = PrecompileCache::open(dir.path(), &engine).unwrap();
    cache.load_or_compile(&engine, &digest, &bytes).unwrap();
    let engine_dir = walk_files(dir.path())[0].parent().unwrap().to_owned();
    let live = engine_dir.join(".partial-live");
    let dead = engine_dir.join(".partial-dead");
    std::fs::write(&live, b"being written").unwrap();
    std::fs::write(&dead, b"half").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&dead)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(7200))
        .unwrap();
    PrecompileCache::open(dir.path(), &engine).unwrap();
    assert!(live.exists(), "another process's write was removed");
    assert!(!dead.exists(), "a write that died was kept");
}

fn walk_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk_files(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[test]
fn a_hundred_concurrent_starts_of_a_new_module_compile_it_once() {
    use sandlet_runtime::precompiled::{CacheOutcome, PrecompileCache};
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(
        SandboxEngine::new(EngineOptions {
            max_concurrent_runs: 2,
        })
        .unwrap(),
    );
    let bytes = Arc::new(std::fs::read(&guests().column_stats).unwrap());
    let digest = sandlet_runtime::Digest::of(&bytes);
    let cache = Arc::new(PrecompileCache::open(dir.path(), &engine).unwrap());
    let threads: Vec<_> = (0..100)
        .map(|_| {
            let (engine, bytes, cache) = (engine.clone(), bytes.clone(), cache.clone());
            std::thread::spawn(move || cache.load_or_compile(&engine, &digest, &bytes).unwrap().1)
        })
        .collect();
    let outcomes: Vec<CacheOutcome> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let compiled = outcomes
        .iter()
        .filter(|o| **o == CacheOutcome::Compiled)
        .count();
    assert_eq!(compiled, 1, "{outcomes:?}");
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, CacheOutcome::Compiled | CacheOutcome::InMemory))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_reports_its_memory_and_cpu_time_while_it_runs() {
    let engine = Arc::new(
        SandboxEngine::new(EngineOptions {
            max_concurrent_runs: 4,
        })
        .unwrap(),
    );
    let hello = engine.load_file(&guests().hello).unwrap();
    let escape = engine.load_file(&guests().escape).unwrap();

    // A guest that waits: its memory shows while it runs, and the waiting
    // is not counted as CPU time.
    let usage = Arc::new(sandlet_runtime::Usage::default());
    let sleeping = {
        let (engine, hello, usage) = (engine.clone(), hello.clone(), usage.clone());
        tokio::spawn(async move {
            let plan = RunPlan::builder("hello")
                .args(["--sleep", "3"])
                .build()
                .unwrap();
            engine
                .run_metered(&hello, &plan, &OutputSinks::null(), &usage)
                .await
        })
    };
    let start = std::time::Instant::now();
    while usage.memory_bytes() == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no memory reported"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!sleeping.is_finished());
    assert!(
        usage.memory_bytes() >= 64 * 1024,
        "{}",
        usage.memory_bytes()
    );
    assert_eq!(sleeping.await.unwrap().unwrap(), RunOutcome::Exited(0));
    assert!(usage.cpu() < Duration::from_secs(2), "{:?}", usage.cpu());

    // A guest that computes until its time limit: most of that time is
    // CPU time.
    let busy = Arc::new(sandlet_runtime::Usage::default());
    let plan = RunPlan::builder("escape")
        .arg("loop")
        .limits(Limits {
            timeout: Duration::from_secs(1),
            ..Limits::default()
        })
        .build()
        .unwrap();
    let outcome = engine
        .run_metered(&escape, &plan, &OutputSinks::null(), &busy)
        .await;
    assert!(
        matches!(outcome, Err(RunError::Limit(LimitExceeded::Timeout(_)))),
        "{outcome:?}"
    );
    assert!(busy.cpu() >= Duration::from_millis(500), "{:?}", busy.cpu());
    assert!(busy.memory_bytes() > 0);
}
