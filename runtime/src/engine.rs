//! The process-wide wasmtime engine, module preparation, and running a plan.
//!
//! [`SandboxEngine`] owns the one `wasmtime::Engine` of the process (pooling
//! allocator, epoch interruption, component model), its two linkers (WASI
//! preview 2 plus `sandlet:algorithm/data` for components, WASI preview 1
//! for core modules) and the thread that advances epochs. Preparing a module
//! classifies it by its exports and links it once into an `InstancePre`, so
//! that each later run only instantiates. Running a plan creates a fresh
//! store whose capabilities come from [`crate::sandbox`] and whose limits
//! come from [`crate::limits`]; a run that fails, traps or hits a limit ends
//! with a [`RunError`] and leaves the engine and every other run untouched.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, Linker as ComponentLinker};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, Linker as CoreLinker, Module,
    PoolingAllocationConfig, Store, Trap, UpdateDeadline,
};
use wasmtime_wasi::I32Exit;
use wasmtime_wasi::p2::bindings::CommandPre;

use crate::algorithm::AlgorithmPre;
use crate::limits::{LimitExceeded, MAX_MEMORY_BYTES, MAX_TABLE_ELEMENTS, Usage};
use crate::output::OutputSinks;
use crate::plan::RunPlan;
use crate::sandbox::{self, ComponentState, CoreState, RunState, SandboxError};
use sandlet_core::Digest;

/// How often the epoch advances. It is both the precision of timeouts and
/// the longest a guest computes before yielding its thread to other runs:
/// 10 ms keeps a busy node responsive while the interrupt checks cost the
/// guest only a few percent.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Wasm stack a guest may use. wasmtime's own default, stated here so that
/// the "stack overflow" message can name it; the async fiber stack is sized
/// above it so host calls always have room.
pub const MAX_WASM_STACK_BYTES: usize = 512 * 1024;

/// Host stack of each run's fiber: the wasm stack plus 1 MiB for host
/// functions called from the guest (DataFusion planning runs there).
const FIBER_STACK_BYTES: usize = MAX_WASM_STACK_BYTES + 1024 * 1024;

/// Core instances one component run may need from the pool. A
/// `wasm32-wasip2` component has its main module plus a few adapter shims.
const CORE_INSTANCES_PER_RUN: u32 = 8;

/// Default number of runs that may be alive at once; see
/// [`EngineOptions::max_concurrent_runs`].
pub const DEFAULT_MAX_CONCURRENT_RUNS: u32 = 128;

/// The wasmtime release this engine is built on (the workspace pins it),
/// reported as the node's container runtime version.
pub const WASMTIME_VERSION: &str = "48.0.8";

/// Settings of the process-wide engine.
#[derive(Debug, Clone, Copy)]
pub struct EngineOptions {
    /// Slots in the pooling allocator. Each slot reserves address space (not
    /// memory) for one run's memories; a run beyond this many at once fails
    /// to instantiate with a clear error.
    pub max_concurrent_runs: u32,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            max_concurrent_runs: DEFAULT_MAX_CONCURRENT_RUNS,
        }
    }
}

/// The two kinds of module sandlet runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModuleKind {
    /// A WASI command: `wasi:cli/run`, or a preview 1 core module with
    /// `_start`.
    Command,
    /// A component of the `sandlet:algorithm/algorithm` world.
    Algorithm,
}

impl std::fmt::Display for ModuleKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ModuleKind::Command => "WASI command",
            ModuleKind::Algorithm => "sandlet algorithm",
        })
    }
}

/// A module that cannot be run. `Display` is the one-line reason.
#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    /// The module file could not be read.
    #[error("cannot read module {}: {source}", path.display())]
    Read {
        /// The module file.
        path: std::path::PathBuf,
        /// Why reading it failed.
        #[source]
        source: std::io::Error,
    },
    /// The bytes are neither a component nor a core module.
    #[error("invalid module: not WebAssembly (no \\0asm header)")]
    NotWasm,
    /// wasmtime refused to compile or load the module (invalid wasm, an
    /// unusable precompiled artifact, bytes that do not match their
    /// digest); says why.
    #[error("invalid module: {0}")]
    Compile(String),
    #[error(
        "invalid module: a component of an unknown world: it exports neither `wasi:cli/run` (a command) nor \
         `run: func(input: string) -> result<string, string>` (world sandlet:algorithm/algorithm); its exports: [{0}]"
    )]
    /// A component that is neither a WASI command nor a sandlet algorithm;
    /// holds its exports, comma-separated.
    UnknownWorld(String),
    /// A core module that is not a WASI preview 1 command.
    #[error("invalid module: a core module without a `_start` export; only WASI commands can run")]
    NoStart,
    #[error(
        "invalid module: it imports {0}, which sandlet does not offer (a guest gets WASI preview 2 \
         without network access, and sandlet:algorithm/data)"
    )]
    /// A component that imports interfaces sandlet does not offer (the
    /// network, for one); holds their names, comma-separated.
    UnofferedImports(String),
    /// The module's imports could not be linked to what sandlet offers
    /// (e.g. a function of the wrong type); says why.
    #[error("invalid module: {0}")]
    Link(String),
    /// The engine itself could not be set up (e.g. the pooling allocator
    /// could not reserve its address space).
    #[error("cannot start the wasm engine: {0}")]
    Engine(String),
}

/// Why a run ended without a result. `Display` is the one-line reason.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The guest hit one of the plan's limits.
    #[error("{0}")]
    Limit(LimitExceeded),
    /// The guest trapped (stack overflow, out-of-bounds access, a panic,
    /// ...); says which trap.
    #[error("trap: {0}")]
    Trap(String),
    /// The sandbox could not be built: a preopened directory could not be
    /// opened.
    #[error("{0}")]
    Sandbox(#[from] SandboxError),
    /// Any other failure of the run (instantiation, the pool being full,
    /// a host call), in one line.
    #[error("run failed: {0}")]
    Host(String),
}

/// How a run ended, when it ended on its own terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOutcome {
    /// A command exited with this code.
    Exited(i32),
    /// An algorithm returned `ok(result)` or `err(message)`.
    Returned(Result<String, String>),
}

/// A compiled module, before linking.
#[derive(Clone)]
pub enum Compiled {
    /// A component (WASI preview 2 command or sandlet algorithm).
    Component(Component),
    /// A core module (WASI preview 1 command).
    Core(Module),
}

/// A module compiled, classified and linked, ready to instantiate any number
/// of times.
#[derive(Clone)]
pub struct PreparedModule {
    kind: ModuleKind,
    digest: Digest,
    linked: Linked,
}

#[derive(Clone)]
enum Linked {
    Command(CommandPre<ComponentState>),
    Algorithm(AlgorithmPre<ComponentState>),
    CoreCommand(wasmtime::InstancePre<CoreState>),
}

impl std::fmt::Debug for PreparedModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedModule")
            .field("kind", &self.kind)
            .field("digest", &self.digest)
            .finish_non_exhaustive()
    }
}

impl PreparedModule {
    /// Whether the module is a WASI command or a sandlet algorithm.
    pub fn kind(&self) -> ModuleKind {
        self.kind
    }

    /// The digest of the module's bytes.
    pub fn digest(&self) -> Digest {
        self.digest
    }
}

/// The process-wide engine. Create one and share it (it is cheap to use
/// from many tasks at once).
pub struct SandboxEngine {
    engine: Engine,
    component_linker: ComponentLinker<ComponentState>,
    core_linker: CoreLinker<CoreState>,
    _ticker: EpochTicker,
}

impl SandboxEngine {
    /// Creates the engine with its linkers and starts its epoch thread;
    /// fails with [`ModuleError::Engine`] when wasmtime cannot set it up.
    pub fn new(options: EngineOptions) -> Result<Self, ModuleError> {
        let engine_error = |e: wasmtime::Error| ModuleError::Engine(format!("{e:#}"));
        let engine = Engine::new(&engine_config(options)).map_err(engine_error)?;
        let mut component_linker = ComponentLinker::new(&engine);
        add_component_imports(&mut component_linker).map_err(engine_error)?;
        let mut core_linker = CoreLinker::new(&engine);
        add_core_imports(&mut core_linker).map_err(engine_error)?;
        Ok(SandboxEngine {
            _ticker: EpochTicker::start(engine.clone()),
            engine,
            component_linker,
            core_linker,
        })
    }

    /// The underlying wasmtime engine (for benchmarks and caches keyed by
    /// its configuration).
    pub fn wasmtime(&self) -> &Engine {
        &self.engine
    }

    /// Compiles wasm bytes: a component or a core module.
    pub fn compile(&self, bytes: &[u8]) -> Result<Compiled, ModuleError> {
        let compile_error = |e: wasmtime::Error| ModuleError::Compile(format!("{e:#}"));
        if wasmtime::wasmparser::Parser::is_component(bytes) {
            Component::new(&self.engine, bytes)
                .map(Compiled::Component)
                .map_err(compile_error)
        } else if wasmtime::wasmparser::Parser::is_core_wasm(bytes) {
            Module::new(&self.engine, bytes)
                .map(Compiled::Core)
                .map_err(compile_error)
        } else {
            Err(ModuleError::NotWasm)
        }
    }

    /// Compiles wasm bytes to this engine's native artifact, for a cache.
    pub fn precompile(&self, bytes: &[u8]) -> Result<Vec<u8>, ModuleError> {
        let compile_error = |e: wasmtime::Error| ModuleError::Compile(format!("{e:#}"));
        if wasmtime::wasmparser::Parser::is_component(bytes) {
            self.engine
                .precompile_component(bytes)
                .map_err(compile_error)
        } else if wasmtime::wasmparser::Parser::is_core_wasm(bytes) {
            self.engine.precompile_module(bytes).map_err(compile_error)
        } else {
            Err(ModuleError::NotWasm)
        }
    }

    /// Loads an artifact made by [`SandboxEngine::precompile`].
    ///
    /// # Safety
    ///
    /// `artifact` must come from `precompile` of an engine with this
    /// configuration and must not have been modified since: wasmtime runs
    /// its machine code as is. Keep artifacts where only sandlet writes.
    #[allow(unsafe_code)] // wasmtime's deserialize; the contract is this function's.
    pub unsafe fn deserialize(&self, artifact: &[u8]) -> Result<Compiled, ModuleError> {
        let error = |e: wasmtime::Error| ModuleError::Compile(format!("{e:#}"));
        match Engine::detect_precompiled(artifact) {
            // SAFETY: the caller vouches for the artifact's origin.
            Some(wasmtime::Precompiled::Component) => {
                unsafe { Component::deserialize(&self.engine, artifact) }
                    .map(Compiled::Component)
                    .map_err(error)
            }
            Some(wasmtime::Precompiled::Module) => {
                unsafe { Module::deserialize(&self.engine, artifact) }
                    .map(Compiled::Core)
                    .map_err(error)
            }
            None => Err(ModuleError::Compile(
                "not a precompiled wasmtime artifact".to_owned(),
            )),
        }
    }

    /// Classifies a compiled module by its exports and links it.
    pub fn prepare(
        &self,
        compiled: Compiled,
        digest: Digest,
    ) -> Result<PreparedModule, ModuleError> {
        let link_error = |e: wasmtime::Error| ModuleError::Link(format!("{e:#}"));
        let (kind, linked) = match compiled {
            Compiled::Component(component) => {
                // Named here rather than in the linker's error, which
                // speaks of missing resource implementations.
                let unoffered: Vec<String> = component
                    .component_type()
                    .imports(&self.engine)
                    .map(|(name, _)| name.to_owned())
                    .filter(|name| !OFFERED_IMPORTS.iter().any(|p| name.starts_with(p)))
                    .collect();
                if !unoffered.is_empty() {
                    return Err(ModuleError::UnofferedImports(unoffered.join(", ")));
                }
                let exports: Vec<(String, bool)> = component
                    .component_type()
                    .exports(&self.engine)
                    .map(|(name, item)| {
                        (
                            name.to_owned(),
                            matches!(item.ty, ComponentItem::ComponentFunc(_)),
                        )
                    })
                    .collect();
                let is_command = exports
                    .iter()
                    .any(|(name, _)| name.starts_with("wasi:cli/run@"));
                let is_algorithm = exports
                    .iter()
                    .any(|(name, is_func)| name == "run" && *is_func);
                let pre = || {
                    self.component_linker
                        .instantiate_pre(&component)
                        .map_err(link_error)
                };
                if is_command {
                    (
                        ModuleKind::Command,
                        Linked::Command(CommandPre::new(pre()?).map_err(link_error)?),
                    )
                } else if is_algorithm {
                    (
                        ModuleKind::Algorithm,
                        Linked::Algorithm(AlgorithmPre::new(pre()?).map_err(link_error)?),
                    )
                } else {
                    let names: Vec<&str> = exports.iter().map(|(n, _)| n.as_str()).collect();
                    return Err(ModuleError::UnknownWorld(names.join(", ")));
                }
            }
            Compiled::Core(module) => {
                if !matches!(
                    module.get_export("_start"),
                    Some(wasmtime::ExternType::Func(_))
                ) {
                    return Err(ModuleError::NoStart);
                }
                let pre = self
                    .core_linker
                    .instantiate_pre(&module)
                    .map_err(link_error)?;
                (ModuleKind::Command, Linked::CoreCommand(pre))
            }
        };
        Ok(PreparedModule {
            kind,
            digest,
            linked,
        })
    }

    /// Compiles and prepares wasm bytes.
    pub fn load(&self, bytes: &[u8]) -> Result<PreparedModule, ModuleError> {
        let compiled = self.compile(bytes)?;
        self.prepare(compiled, Digest::of(bytes))
    }

    /// Reads, compiles and prepares a module file.
    pub fn load_file(&self, path: &Path) -> Result<PreparedModule, ModuleError> {
        let bytes = std::fs::read(path).map_err(|source| ModuleError::Read {
            path: path.to_owned(),
            source,
        })?;
        self.load(&bytes)
    }

    /// Instantiates `module` in a fresh sandbox built from `plan` and drops
    /// it without calling anything: the cost of a start with no guest work,
    /// and a check that the module's initial memory fits the plan's limits.
    pub async fn instantiate(
        &self,
        module: &PreparedModule,
        plan: &RunPlan,
        sinks: &OutputSinks,
    ) -> Result<(), RunError> {
        self.execute(module, plan, sinks, Call::No, &Arc::default())
            .await
            .map(drop)
    }

    /// Runs `module` in a new sandbox built from `plan`, writing its output
    /// to `sinks`.
    pub async fn run(
        &self,
        module: &PreparedModule,
        plan: &RunPlan,
        sinks: &OutputSinks,
    ) -> Result<RunOutcome, RunError> {
        self.run_metered(module, plan, sinks, &Arc::default()).await
    }

    /// [`SandboxEngine::run`], reporting what the run uses to `usage` while
    /// it runs.
    pub async fn run_metered(
        &self,
        module: &PreparedModule,
        plan: &RunPlan,
        sinks: &OutputSinks,
        usage: &Arc<Usage>,
    ) -> Result<RunOutcome, RunError> {
        let run = std::pin::pin!(self.execute(module, plan, sinks, Call::Yes, usage));
        // The guest runs inside these polls (epochs make it yield), so
        // their sum is the time it ran.
        let mut run = run;
        std::future::poll_fn(|cx| {
            let polled = Instant::now();
            let poll = run.as_mut().poll(cx);
            usage.add_cpu(polled.elapsed());
            poll
        })
        .await
    }

    async fn execute(
        &self,
        module: &PreparedModule,
        plan: &RunPlan,
        sinks: &OutputSinks,
        call: Call,
        usage: &Arc<Usage>,
    ) -> Result<RunOutcome, RunError> {
        let timeout = plan.limits.timeout;
        let deadline = Instant::now() + timeout;
        let run = async {
            let result = match &module.linked {
                Linked::Command(pre) => {
                    let mut store = self.store(
                        sandbox::component_state(plan, sinks)?,
                        deadline,
                        timeout,
                        usage,
                    );
                    async {
                        let command = pre.instantiate_async(&mut store).await?;
                        if call == Call::No {
                            return Ok(RunOutcome::Exited(0));
                        }
                        let exit = command.wasi_cli_run().call_run(&mut store).await?;
                        Ok(RunOutcome::Exited(if exit.is_ok() { 0 } else { 1 }))
                    }
                    .await
                }
                Linked::Algorithm(pre) => {
                    let mut store = self.store(
                        sandbox::component_state(plan, sinks)?,
                        deadline,
                        timeout,
                        usage,
                    );
                    async {
                        let algorithm = pre.instantiate_async(&mut store).await?;
                        if call == Call::No {
                            return Ok(RunOutcome::Exited(0));
                        }
                        let returned = algorithm.call_run(&mut store, &plan.input).await?;
                        Ok(RunOutcome::Returned(returned))
                    }
                    .await
                }
                Linked::CoreCommand(pre) => {
                    let mut store =
                        self.store(sandbox::core_state(plan, sinks)?, deadline, timeout, usage);
                    async {
                        let instance = pre.instantiate_async(&mut store).await?;
                        if call == Call::No {
                            return Ok(RunOutcome::Exited(0));
                        }
                        let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
                        start.call_async(&mut store, ()).await?;
                        Ok(RunOutcome::Exited(0))
                    }
                    .await
                }
            };
            result.or_else(outcome_of_error)
        };
        // Epochs stop a guest that computes; this stops one that waits in a
        // host call (a sleep, a slow query) past its deadline.
        tokio::time::timeout_at(deadline.into(), run)
            .await
            .unwrap_or(Err(RunError::Limit(LimitExceeded::Timeout(timeout))))
    }

    /// A fresh store for one run, with its limiter and deadline.
    fn store<T: RunState>(
        &self,
        mut state: T,
        deadline: Instant,
        timeout: Duration,
        usage: &Arc<Usage>,
    ) -> Store<T> {
        state.limiter().report_to(usage.clone());
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| state.limiter());
        set_deadline(&mut store, deadline, timeout);
        store
    }
}

/// Whether [`SandboxEngine::execute`] calls the guest after instantiating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    Yes,
    No,
}

/// Traps the guest at `deadline`, and makes it yield its thread at every
/// epoch tick before then.
fn set_deadline<T: 'static>(store: &mut Store<T>, deadline: Instant, timeout: Duration) {
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |_| {
        if Instant::now() >= deadline {
            Err(wasmtime::Error::new(LimitExceeded::Timeout(timeout)))
        } else {
            Ok(UpdateDeadline::Yield(1))
        }
    });
}

/// Sorts the error a guest ended with: an exit is an outcome, anything else
/// is a [`RunError`] naming the limit or trap.
fn outcome_of_error(error: wasmtime::Error) -> Result<RunOutcome, RunError> {
    if let Some(exit) = error.downcast_ref::<I32Exit>() {
        return Ok(RunOutcome::Exited(exit.0));
    }
    for cause in error.chain() {
        if let Some(limit) = cause.downcast_ref::<LimitExceeded>() {
            return Err(RunError::Limit(limit.clone()));
        }
    }
    if let Some(trap) = error.downcast_ref::<Trap>() {
        return Err(RunError::Trap(describe_trap(*trap)));
    }
    Err(RunError::Host(one_line(&format!("{error:#}"))))
}

fn describe_trap(trap: Trap) -> String {
    match trap {
        Trap::StackOverflow => format!(
            "stack overflow: the guest used more than {} of wasm stack",
            crate::limits::Size(MAX_WASM_STACK_BYTES as u64)
        ),
        Trap::MemoryOutOfBounds => {
            "out-of-bounds memory access (also how a guest's own shadow stack overflows)".to_owned()
        }
        Trap::UnreachableCodeReached => {
            "wasm `unreachable` executed (a Rust guest panicked or aborted; see its stderr)"
                .to_owned()
        }
        other => other.to_string(),
    }
}

/// Error chains from wasmtime can span lines (guest backtraces); users get
/// one line.
fn one_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().to_owned()
}

fn engine_config(options: EngineOptions) -> Config {
    let runs = options.max_concurrent_runs.max(1);
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(runs)
        .total_core_instances(runs * CORE_INSTANCES_PER_RUN)
        .total_memories(runs * 2)
        .total_tables(runs * CORE_INSTANCES_PER_RUN)
        .total_stacks(runs)
        .table_elements(MAX_TABLE_ELEMENTS)
        .max_memory_size(MAX_MEMORY_BYTES as usize);
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .max_wasm_stack(MAX_WASM_STACK_BYTES)
        .async_stack_size(FIBER_STACK_BYTES)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    config
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until dropped.
struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    fn start(engine: Engine) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("sandlet-epoch".to_owned())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })
            .expect("spawning the epoch thread");
        EpochTicker {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The interfaces [`add_component_imports`] links, by prefix: a component
/// importing anything else is refused by name. (`wasi:sockets` is linked so
/// that guests built with it load; every socket is denied.)
const OFFERED_IMPORTS: [&str; 7] = [
    "wasi:cli/",
    "wasi:io/",
    "wasi:clocks/",
    "wasi:filesystem/",
    "wasi:random/",
    "wasi:sockets/",
    "sandlet:algorithm/data@",
];

/// Adds every host interface a component may import: WASI preview 2 and
/// `sandlet:algorithm/data`, versions 0.1.0 and 0.2.0.
fn add_component_imports(
    linker: &mut wasmtime::component::Linker<ComponentState>,
) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_async(linker)?;
    crate::algorithm::sandlet::algorithm::data::add_to_linker::<
        _,
        wasmtime::component::HasSelf<ComponentState>,
    >(linker, |state| state)?;
    crate::algorithm::v0_2::sandlet::algorithm::data::add_to_linker::<
        _,
        wasmtime::component::HasSelf<ComponentState>,
    >(linker, |state| state)
}

/// Adds WASI preview 1, the only import a core module may have.
fn add_core_imports(linker: &mut wasmtime::Linker<CoreState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p1::add_to_linker_async(linker, CoreState::wasi)
}
