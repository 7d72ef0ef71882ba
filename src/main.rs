//! The `sandlet` binary: a thin command line over `sandlet-runtime`.
//!
//! It owns argument parsing, turning flags into a validated run plan, and the
//! mapping from outcomes to exit codes and messages (CONTRACT.md section 2).
//! Everything else lives in the library crates.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use sandlet_runtime::data::{DataAccess, DataConfig, GrantedDatasets, NoDatasets};
use sandlet_runtime::limits::{self, Limits};
use sandlet_runtime::output::{HostStderr, HostStdout};
use sandlet_runtime::{EngineOptions, ModuleKind, OutputSinks, RunOutcome, RunPlan, SandboxEngine};

/// Exit status for a trap, a limit hit, an invalid module or bad input.
const EXIT_SANDLET_ERROR: u8 = 2;

/// Runs of `sandlet run`: one at a time, so the pool needs one slot; a
/// second keeps a stray instance from failing the run.
const CLI_POOL_SLOTS: u32 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "sandlet",
    version,
    about = "Run untrusted analysis code as sandboxed WebAssembly next to privacy-sensitive data"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one module locally, in the same sandbox as the node.
    Run(RunArgs),
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Datasets and policies (YAML).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// A dataset this run may query (repeatable).
    #[arg(long = "grant", value_name = "NAME")]
    grants: Vec<String>,
    /// Algorithm input (JSON).
    #[arg(long, value_name = "JSON", default_value = "{}")]
    input: String,
    /// An environment variable for the guest (repeatable); nothing is
    /// inherited.
    #[arg(long = "env", value_name = "K=V")]
    envs: Vec<String>,
    /// A host directory for the guest, read-only unless `:rw` (repeatable).
    #[arg(long = "dir", value_name = "HOST:GUEST[:ro|:rw]")]
    dirs: Vec<String>,
    /// Memory limit, e.g. 64Mi.
    #[arg(long, value_name = "SIZE")]
    memory: Option<String>,
    /// Wall-clock limit, e.g. 30s.
    #[arg(long, value_name = "DURATION")]
    timeout: Option<String>,
    /// Bound on stdout and stderr together, e.g. 16Mi.
    #[arg(long, value_name = "SIZE")]
    output_limit: Option<String>,
    /// The module: a file path.
    module: PathBuf,
    /// Arguments for a WASI command.
    #[arg(last = true)]
    args: Vec<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return fail(format!("cannot start the async runtime: {e}")),
    };
    match cli.command {
        Command::Run(args) => runtime.block_on(run(args)),
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SANDLET_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// Prints the one-line reason and returns exit status 2.
fn fail(reason: impl std::fmt::Display) -> ExitCode {
    eprintln!("sandlet: {reason}");
    ExitCode::from(EXIT_SANDLET_ERROR)
}

async fn run(args: RunArgs) -> ExitCode {
    let plan = match plan_of(&args) {
        Ok(plan) => plan,
        Err(reason) => return fail(reason),
    };
    let engine = match SandboxEngine::new(EngineOptions {
        max_concurrent_runs: CLI_POOL_SLOTS,
    }) {
        Ok(engine) => engine,
        Err(e) => return fail(e),
    };
    let module = match engine.load_file(&args.module) {
        Ok(module) => module,
        Err(e) => return fail(e),
    };
    // An algorithm's stdout carries only its result, so whatever the guest
    // prints goes to stderr.
    let sinks = match module.kind() {
        ModuleKind::Command => OutputSinks::host(),
        ModuleKind::Algorithm => OutputSinks {
            stdout: Arc::new(HostStderr),
            stderr: Arc::new(HostStderr),
        },
    };
    match engine.run(&module, &plan, &sinks).await {
        Ok(RunOutcome::Exited(code)) => ExitCode::from(code as u8),
        Ok(RunOutcome::Returned(Ok(result))) => {
            use sandlet_runtime::OutputSink;
            let _ = HostStdout.write_all(format!("{result}\n").as_bytes());
            ExitCode::SUCCESS
        }
        Ok(RunOutcome::Returned(Err(message))) => {
            eprintln!("{message}");
            ExitCode::from(1)
        }
        Err(e) => fail(e),
    }
}

/// Validates the flags into a run plan; the error is the one-line reason.
fn plan_of(args: &RunArgs) -> Result<RunPlan, String> {
    let name = args
        .module
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "module.wasm".to_owned());
    let mut limits = Limits::default();
    if let Some(memory) = &args.memory {
        limits.memory_bytes =
            limits::parse_memory_limit(memory).map_err(|e| format!("--memory: {e}"))?;
    }
    if let Some(timeout) = &args.timeout {
        limits.timeout = limits::parse_timeout(timeout).map_err(|e| format!("--timeout: {e}"))?;
    }
    if let Some(output) = &args.output_limit {
        limits.output_bytes = match limits::parse_size(output) {
            Ok(0) => return Err("--output-limit: must be greater than zero".to_owned()),
            Ok(bytes) => bytes,
            Err(e) => return Err(format!("--output-limit: {e}")),
        };
    }
    let data: Arc<dyn DataAccess> = match (&args.config, args.grants.is_empty()) {
        (None, true) => Arc::new(NoDatasets),
        (None, false) => {
            return Err("--grant needs --config to say where the datasets are".to_owned());
        }
        (Some(path), _) => {
            let config = DataConfig::load(path).map_err(|e| e.to_string())?;
            Arc::new(
                GrantedDatasets::new(&config, &args.grants).map_err(|e| format!("--grant: {e}"))?,
            )
        }
    };
    let mut builder = RunPlan::builder(name)
        .args(args.args.iter().cloned())
        .input(args.input.clone())
        .limits(limits)
        .data(data);
    for env in &args.envs {
        builder = builder.env_spec(env).map_err(|e| e.to_string())?;
    }
    for dir in &args.dirs {
        builder = builder.dir_spec(dir).map_err(|e| e.to_string())?;
    }
    builder.build().map_err(|e| e.to_string())
}
