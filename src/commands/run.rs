//! `sandlet run`: one module, locally, in the same sandbox as the node.
//!
//! It owns turning the run's flags into a validated run plan (limits, env,
//! directories, granted datasets and their raw files) and the outcome into
//! an exit status: the guest's code for commands; for algorithms 0 with
//! the result on stdout, 1 with the error on stderr; 2 for a trap, a limit
//! or a bad module or flag. Every query of the run is on the audit record
//! as the module's.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use sandlet_audit::Caller;
use sandlet_core::Digest;
use sandlet_core::data::{DataAccess, NoDatasets};
use sandlet_data::{DataConfig, GrantedDatasets};
use sandlet_registry::allow_list::AllowList;
use sandlet_runtime::limits::{self, Limits};
use sandlet_runtime::output::{HostStderr, HostStdout, MemorySink, OutputSink, OutputSinks};
use sandlet_runtime::plan::{DirAccess, Preopen, RunPlan, RunPlanBuilder};
use sandlet_runtime::precompiled::PrecompileCache;
use sandlet_runtime::{ModuleError, ModuleKind, PreparedModule, RunOutcome, SandboxEngine};
use sandlet_station::StationConfig;
use sandlet_station::defaults::precompile_cache_dir;
use sandlet_trust::seal::Recipient;

use crate::args::{RegistryClientArgs, StoreArgs};
use crate::error::CliError;
use crate::local;

#[derive(Debug, clap::Args)]
pub struct RunArgs {
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
    /// Seal the result to this age X25519 recipient (age1...): it is
    /// printed as ASCII-armored age ciphertext (an error message on stderr
    /// too; a command's whole stdout), which `sandlet open` or `age -d`
    /// opens.
    #[arg(long, value_name = "RECIPIENT")]
    seal_to: Option<String>,
    #[command(flatten)]
    registry: RegistryClientArgs,
    #[command(flatten)]
    store: StoreArgs,
    /// The module: a file path, or an OCI reference when no such file
    /// exists.
    module: String,
    /// Arguments for a WASI command.
    #[arg(last = true)]
    args: Vec<String>,
}

pub async fn execute(args: RunArgs) -> Result<ExitCode, CliError> {
    let config = args
        .config
        .as_deref()
        .map(StationConfig::load)
        .transpose()?;
    let granted = grants_of(&args, config.as_ref().map(|c| &c.data))?;
    let builder = plan_of(&args)?;
    let seal = args
        .seal_to
        .as_deref()
        .map(Recipient::parse)
        .transpose()
        .map_err(|e| CliError::flag("--seal-to", e))?;
    let engine = local::engine()?;
    let allow = config
        .as_ref()
        .map(|c| c.modules.clone())
        .unwrap_or_default();
    let module = load_module(&engine, &args, &allow).await?;
    // Every query of the run goes on the record, as the module's.
    let data: Arc<dyn DataAccess> = match granted {
        None => Arc::new(NoDatasets),
        Some(granted) => {
            let caller = Caller {
                via: "run".to_owned(),
                module_digest: Some(module.digest().to_string()),
                ..Caller::default()
            };
            let budget = local::local_budget(&args.store)?;
            let trail = local::audit_trail(&args.store, caller)?;
            Arc::new(granted.audited(trail).budgeted(budget))
        }
    };
    let mut plan = builder.data(data).build()?;
    // Raw files of granted datasets that allow them, for commands only:
    // algorithms read data through queries.
    let _staging = match (module.kind(), &config) {
        (ModuleKind::Command, Some(config)) => {
            Some(add_raw_files(&mut plan, &config.data, &args.grants)?)
        }
        _ => None,
    };
    // An algorithm's stdout carries only its result, so whatever the guest
    // prints goes to stderr. A sealed command's stdout is its result: it is
    // kept and printed sealed at the end.
    let sealed_stdout = MemorySink::new();
    let sinks = match (module.kind(), &seal) {
        (ModuleKind::Command, None) => OutputSinks::host(),
        (ModuleKind::Command, Some(_)) => OutputSinks {
            stdout: Arc::new(sealed_stdout.clone()),
            stderr: Arc::new(HostStderr),
        },
        (ModuleKind::Algorithm, _) => OutputSinks {
            stdout: Arc::new(HostStderr),
            stderr: Arc::new(HostStderr),
        },
    };
    let outcome = engine.run(&module, &plan, &sinks).await;
    let sealed = |text: &[u8]| -> Result<String, CliError> {
        match &seal {
            None => Ok(String::from_utf8_lossy(text).into_owned()),
            Some(recipient) => Ok(sandlet_trust::seal::seal(recipient, text)?),
        }
    };
    if let (ModuleKind::Command, Some(_)) = (module.kind(), &seal) {
        print!("{}", sealed(&sealed_stdout.contents())?);
    }
    match outcome? {
        RunOutcome::Exited(code) => Ok(ExitCode::from(code as u8)),
        RunOutcome::Returned(Ok(result)) => {
            let text = match &seal {
                None => format!("{result}\n"),
                Some(_) => sealed(result.as_bytes())?,
            };
            let _ = HostStdout.write_all(text.as_bytes());
            Ok(ExitCode::SUCCESS)
        }
        RunOutcome::Returned(Err(message)) => {
            eprintln!("{}", sealed(message.as_bytes())?.trim_end());
            Ok(ExitCode::from(1))
        }
    }
}

/// Adds the `/data/<name>` preopens of granted `rawFiles` datasets; the
/// returned directory holds staged files until it is dropped.
fn add_raw_files(
    plan: &mut RunPlan,
    config: &DataConfig,
    grants: &[String],
) -> Result<tempfile::TempDir, CliError> {
    let staging = tempfile::Builder::new()
        .prefix("sandlet-raw-")
        .tempdir()
        .map_err(|source| CliError::Io {
            what: "cannot create a staging directory for raw files".to_owned(),
            source,
        })?;
    for mount in sandlet_data::raw_file_mounts(config, grants, staging.path())? {
        let preopen = Preopen {
            host: mount.host,
            guest: mount.guest,
            access: DirAccess::ReadOnly,
        };
        if plan.preopens.iter().any(|p| p.guest == preopen.guest) {
            return Err(CliError::Usage(format!(
                "--dir: {} is where dataset files are mounted",
                preopen.guest
            )));
        }
        plan.preopens.push(preopen);
    }
    Ok(staging)
}

/// The datasets `--grant` names, checked against `--config`.
fn grants_of(
    args: &RunArgs,
    config: Option<&DataConfig>,
) -> Result<Option<GrantedDatasets>, CliError> {
    match (config, args.grants.is_empty()) {
        (_, true) => Ok(None),
        (None, false) => Err(CliError::Usage(
            "--grant needs --config to say where the datasets are".to_owned(),
        )),
        (Some(config), false) => GrantedDatasets::new(config, &args.grants)
            .map(Some)
            .map_err(|e| CliError::flag("--grant", e)),
    }
}

/// Validates the flags into a run plan, all but its data.
fn plan_of(args: &RunArgs) -> Result<RunPlanBuilder, CliError> {
    let name = Path::new(&args.module)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "module.wasm".to_owned());
    let mut limits = Limits::default();
    if let Some(memory) = &args.memory {
        limits.memory_bytes =
            limits::parse_memory_limit(memory).map_err(|e| CliError::flag("--memory", e))?;
    }
    if let Some(timeout) = &args.timeout {
        limits.timeout =
            limits::parse_timeout(timeout).map_err(|e| CliError::flag("--timeout", e))?;
    }
    if let Some(output) = &args.output_limit {
        limits.output_bytes = match limits::parse_size(output) {
            Ok(0) => {
                return Err(CliError::Usage(
                    "--output-limit: must be greater than zero".to_owned(),
                ));
            }
            Ok(bytes) => bytes,
            Err(e) => return Err(CliError::flag("--output-limit", e)),
        };
    }
    let mut builder = RunPlan::builder(name)
        .args(args.args.iter().cloned())
        .input(args.input.clone())
        .limits(limits);
    for env in &args.envs {
        builder = builder.env_spec(env)?;
    }
    for dir in &args.dirs {
        builder = builder.dir_spec(dir)?;
    }
    Ok(builder)
}

/// A module file, or, when no file of that name exists, an OCI reference
/// pulled into the local store and started through the precompile cache.
async fn load_module(
    engine: &SandboxEngine,
    args: &RunArgs,
    allow: &AllowList,
) -> Result<PreparedModule, CliError> {
    let path = Path::new(&args.module);
    if path.exists() || !looks_like_reference(&args.module) {
        return load_local(engine, path, &args.store);
    }
    let (store, state_dir) = args.store.open_store()?;
    let pulled = local::pull_into(&args.registry, &args.module, &store, allow).await?;
    local::precompiled(engine, &store, &state_dir, &pulled.module_digest)
}

/// A module file, through the state directory's precompile cache like a
/// pulled module (keyed by the file's digest): the second run of a large
/// component (an 18 MB Python one compiles for seconds) starts without
/// compiling. Where the cache cannot be used (no state directory, a
/// read-only or full one) the file is compiled as it is, with a warning.
fn load_local(
    engine: &SandboxEngine,
    path: &Path,
    store: &StoreArgs,
) -> Result<PreparedModule, CliError> {
    let bytes = std::fs::read(path).map_err(|source| ModuleError::Read {
        path: path.to_owned(),
        source,
    })?;
    let uncached = |why: String| -> Result<PreparedModule, CliError> {
        tracing::warn!(
            "compiling {} without the precompile cache: {why}",
            path.display()
        );
        Ok(engine.load(&bytes)?)
    };
    let cache = match store.state_dir().and_then(|dir| {
        PrecompileCache::open(&precompile_cache_dir(&dir), engine).map_err(CliError::from)
    }) {
        Ok(cache) => cache,
        Err(why) => return uncached(why.to_string()),
    };
    match cache.load_or_compile(engine, &Digest::of(&bytes), &bytes) {
        Ok((module, _)) => Ok(module),
        // The cache's own trouble (IO, a full disk): compile without it.
        Err(ModuleError::Engine(why)) => uncached(why),
        // The module's: that is the answer.
        Err(other) => Err(other.into()),
    }
}

/// `registry/repository[:tag][@digest]` rather than a file name: it has a
/// slash and does not end in `.wasm`.
fn looks_like_reference(text: &str) -> bool {
    text.contains('/') && !text.ends_with(".wasm")
}
