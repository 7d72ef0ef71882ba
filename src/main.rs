//! The `sandlet` binary: a thin command line over `sandlet-runtime`,
//! `sandlet-registry`, `sandlet-data`, `sandlet-audit` and
//! `sandlet-kubelet`.
//!
//! It owns argument parsing, turning flags into a validated run plan, and the
//! mapping from outcomes to exit codes and messages (CONTRACT.md section 2).
//! Everything else lives in the library crates.

mod develop;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use sandlet_data::{
    AuditTrail, Budget, Caller, DataAccess, DataConfig, GrantedDatasets, Ledger, NoDatasets,
    audit_dir, open_audit_log,
};
use sandlet_kubelet::station::StationConfig;
use sandlet_registry::admission::AllowList;
use sandlet_registry::oci::{Credentials, Registry, RegistryOptions};
use sandlet_registry::store::ModuleStore;
use sandlet_runtime::limits::{self, Limits};
use sandlet_runtime::output::{HostStderr, HostStdout};
use sandlet_runtime::plan::{DirAccess, Preopen, RunPlanBuilder};
use sandlet_runtime::precompiled::PrecompileCache;
use sandlet_runtime::{
    EngineOptions, ModuleKind, OutputSinks, PreparedModule, RunOutcome, RunPlan, SandboxEngine,
};
use sandlet_trust::seal::Recipient;

/// Default bound on the local module store: room for hundreds of typical
/// algorithms (a few MiB each) without filling a small data station's disk.
const DEFAULT_STORE_BYTES: u64 = 4 << 30;

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
    Run(Box<RunArgs>),
    /// Publish a module as an OCI artifact and print its digest.
    Push(PushArgs),
    /// Fetch, verify and precompile a module into the local store.
    Pull(PullArgs),
    /// Sign a pushed module (cosign's format: the signature is kept in the
    /// registry beside it); prints the signed manifest digest.
    Sign(SignArgs),
    /// Check that a pushed module has a valid signature by KEY; exit 0 and
    /// the digest and key, or 1 and why not.
    Verify(VerifyArgs),
    /// Open a sealed result (ASCII-armored age, or the pointer a node
    /// leaves for a stored one) with an age identity; prints the result.
    Open(OpenArgs),
    /// The virtual kubelet: register as a Kubernetes node and run its pods.
    Node(Box<NodeArgs>),
    /// Run one data query under the datasets' policies, as a guest's would
    /// run (for data admins); prints the result as CSV.
    Query(QueryArgs),
    /// Read the data-access audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// The differential-privacy budgets: what each namespace has spent of
    /// each private dataset.
    #[command(subcommand)]
    Budget(BudgetCommand),
    /// Scaffold an algorithm that builds and runs as it is, with a test
    /// (DIR/test/run).
    New(NewArgs),
    /// Build the algorithm in DIR into a component; prints its path last.
    Build(BuildArgs),
}

#[derive(Debug, clap::Args)]
struct NewArgs {
    /// The algorithm's language.
    #[arg(long, value_enum)]
    lang: develop::Language,
    /// A new or empty directory; its name is the algorithm's.
    #[arg(value_name = "DIR")]
    dir: PathBuf,
}

#[derive(Debug, clap::Args)]
struct BuildArgs {
    /// Where the component and what the build stages go (default DIR/build;
    /// a Rust component is copied there from cargo's target directory only
    /// when this is given).
    #[arg(long, value_name = "DIR")]
    out_dir: Option<PathBuf>,
    /// The algorithm: Cargo.toml, algorithm.py, algorithm.js or
    /// algorithm.c tells its language.
    #[arg(value_name = "DIR")]
    dir: PathBuf,
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Check the log's hash chain: prints the number of records and the last
    /// record's hash and exits 0, or names the first broken record and exits
    /// 1.
    Verify {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Print the log's records as a table.
    Show(AuditShowArgs),
}

#[derive(Debug, Subcommand)]
enum BudgetCommand {
    /// Print every account: dataset, namespace, ε spent, its budget and
    /// what is left (budgets from --config), and how many charges.
    List {
        /// The station file, for each private dataset's budget; its private
        /// datasets are listed even where nothing is spent yet.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Set one account back to nothing spent; the reset goes on the audit
    /// record.
    Reset {
        /// The dataset.
        #[arg(value_name = "DATASET")]
        dataset: String,
        /// The namespace whose account is reset (`@local` for `sandlet run`
        /// and `sandlet query`).
        #[arg(long, value_name = "NS")]
        namespace: String,
        /// The station file, to record the account's budget with the reset.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Debug, clap::Args)]
struct AuditShowArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Only records at or after T: an RFC 3339 time
    /// (2026-12-02T10:00:00Z) or an age (30s, 10m, 2h, 1d).
    #[arg(long, value_name = "T")]
    since: Option<String>,
    /// Only queries from pods of this namespace.
    #[arg(long, value_name = "N")]
    namespace: Option<String>,
    /// Only this decision: answered, not-granted, denied, invalid,
    /// limit-exceeded, or refused (every one but answered).
    #[arg(long, value_name = "D")]
    decision: Option<String>,
}

#[derive(Debug, clap::Args)]
struct QueryArgs {
    /// The station's datasets and policies (YAML).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// A dataset the query may read (repeatable; default: every dataset in
    /// --config).
    #[arg(long = "grant", value_name = "NAME")]
    grants: Vec<String>,
    /// The query. Errors raised while data is read are told only in the
    /// log (SANDLET_LOG=warn shows them), as guests are told.
    #[arg(value_name = "SQL")]
    sql: String,
    /// The audit log is <state dir>/audit.
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Debug, clap::Args)]
struct NodeArgs {
    /// Credentials of the node (system:node:<name>); default: $KUBECONFIG,
    /// ~/.kube/config or the in-cluster service account.
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// When the --kubeconfig file does not exist yet: obtain the node's
    /// client certificate with the bootstrap credentials in FILE (a
    /// CertificateSigningRequest to kubernetes.io/kube-apiserver-client-kubelet),
    /// keep it in <state dir>/pki and write --kubeconfig, as the kubelet does.
    #[arg(long, value_name = "FILE", requires = "kubeconfig")]
    bootstrap_kubeconfig: Option<PathBuf>,
    /// The Node's name (default: this host's name).
    #[arg(long, value_name = "NAME")]
    node_name: Option<String>,
    /// The station's datasets, policies and module allow-list (YAML).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address of the kubelet HTTPS API, also reported as the node's
    /// InternalIP (0.0.0.0 is reported as 127.0.0.1).
    #[arg(long, value_name = "IP", default_value = "0.0.0.0")]
    address: std::net::IpAddr,
    /// Port of the kubelet HTTPS API.
    #[arg(long, value_name = "PORT", default_value_t = sandlet_kubelet::DEFAULT_PORT)]
    port: u16,
    /// Pods this node accepts (its `pods` capacity).
    #[arg(long, value_name = "N", default_value_t = sandlet_kubelet::DEFAULT_MAX_PODS)]
    max_pods: u32,
    /// Serving certificate of the kubelet API (PEM); without it the node
    /// serves with a self-signed one.
    #[arg(long, value_name = "FILE", requires = "tls_private_key_file")]
    tls_cert_file: Option<PathBuf>,
    /// Key of --tls-cert-file (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert_file")]
    tls_private_key_file: Option<PathBuf>,
    /// Without --tls-cert-file: ask the cluster for a serving certificate
    /// (a CertificateSigningRequest to kubernetes.io/kubelet-serving, to be
    /// approved by an admin or an approver), serve it once signed, keep it
    /// in <state dir>/pki and renew it; until then, serve a self-signed one.
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set,
          num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    rotate_server_certificates: bool,
    /// Renew the client certificate obtained with --bootstrap-kubeconfig
    /// before it expires (a CertificateSigningRequest made with the current
    /// one, 80 % into its lifetime), as the kubelet does.
    #[arg(long, value_name = "BOOL", default_value_t = false, action = clap::ArgAction::Set,
          num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    rotate_certificates: bool,
    /// CA certificates (PEM) that kubelet API client certificates must be
    /// signed by; the user is the certificate's CN, its groups the O values
    /// (default: the CA of the kubeconfig's cluster).
    #[arg(long, value_name = "FILE")]
    client_ca_file: Option<PathBuf>,
    /// Let kubelet API requests without credentials through as
    /// system:anonymous, to be authorized like any user.
    #[arg(long, value_name = "BOOL", default_value_t = false, action = clap::ArgAction::Set,
          num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    anonymous_auth: bool,
    /// Check kubelet API bearer tokens with a TokenReview.
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set,
          num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    authentication_token_webhook: bool,
    /// How kubelet API requests are authorized: Webhook (a
    /// SubjectAccessReview for nodes/<subresource> of this node) or
    /// AlwaysAllow (every authenticated request).
    #[arg(long, value_name = "MODE", default_value = "Webhook")]
    authorization_mode: sandlet_kubelet::auth::AuthorizationMode,
    /// First delay before restarting a failed container; doubles per
    /// restart up to 5 minutes (the kubelet's 10s by default).
    #[arg(long, value_name = "DURATION", default_value = "10s")]
    restart_backoff: String,
    /// Where pod volumes rendered from Secrets, service-account tokens,
    /// ConfigMaps and the downward API are written, and emptyDirs with
    /// medium Memory; should be a tmpfs (default: a private directory in
    /// /dev/shm when that is a tmpfs, else <state dir>/run).
    #[arg(long, value_name = "DIR")]
    runtime_dir: Option<PathBuf>,
    /// Events the node creates per second at most, after a burst of
    /// --event-burst (the kubelet's eventRecordQPS); 0: no limit.
    #[arg(long, value_name = "N", default_value_t = sandlet_kubelet::EventRate::default().qps)]
    event_qps: u32,
    /// Events the node may create at once after a quiet spell (the
    /// kubelet's eventBurst).
    #[arg(long, value_name = "N", default_value_t = sandlet_kubelet::EventRate::default().burst)]
    event_burst: u32,
    #[command(flatten)]
    registry: RegistryArgs,
    #[command(flatten)]
    store: StoreArgs,
}

/// How to reach registries and where fetched modules are kept.
#[derive(Debug, clap::Args)]
struct RegistryArgs {
    /// A registry (HOST:PORT) spoken to over plain HTTP (repeatable).
    #[arg(long = "insecure-registry", value_name = "HOST:PORT")]
    insecure_registries: Vec<String>,
    /// Extra CA certificates (PEM) to trust for registries.
    #[arg(long, value_name = "FILE")]
    registry_ca: Option<PathBuf>,
    /// Registry credentials, docker `config.json` format (default:
    /// $DOCKER_CONFIG/config.json or ~/.docker/config.json when present).
    #[arg(long, value_name = "FILE")]
    registry_config: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct StoreArgs {
    /// Where fetched and precompiled modules are kept (default:
    /// $SANDLET_STATE_DIR or ~/.local/share/sandlet).
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct PushArgs {
    #[command(flatten)]
    registry: RegistryArgs,
    /// The module file.
    module: PathBuf,
    /// Where to publish it, e.g. 127.0.0.1:5000/algorithms/hello:v1.
    reference: String,
}

#[derive(Debug, clap::Args)]
struct SignArgs {
    #[command(flatten)]
    registry: RegistryArgs,
    /// The module, e.g. 127.0.0.1:5000/algorithms/hello:v1 (its manifest
    /// digest is what is signed).
    reference: String,
    /// The ECDSA P-256 private key: PEM as openssl writes it, or cosign's
    /// encrypted key (`cosign generate-key-pair`; its password from
    /// $COSIGN_PASSWORD).
    #[arg(long, value_name = "KEY.pem")]
    key: PathBuf,
}

#[derive(Debug, clap::Args)]
struct VerifyArgs {
    #[command(flatten)]
    registry: RegistryArgs,
    /// The module.
    reference: String,
    /// A trusted public key (PEM `PUBLIC KEY`; repeatable: any one of them
    /// will do).
    #[arg(long, value_name = "KEY.pub", required = true)]
    key: Vec<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct OpenArgs {
    /// An age identity file (AGE-SECRET-KEY-1... lines, as age-keygen
    /// writes).
    #[arg(long, value_name = "FILE", required = true)]
    identity: PathBuf,
    #[command(flatten)]
    registry: RegistryArgs,
    /// The sealed result: a file, or - (the default) for stdin.
    #[arg(value_name = "FILE", default_value = "-")]
    input: PathBuf,
}

#[derive(Debug, clap::Args)]
struct PullArgs {
    /// A station file whose module allow-list the module must pass
    /// (signatures included) before it is fetched.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(flatten)]
    registry: RegistryArgs,
    #[command(flatten)]
    store: StoreArgs,
    /// The module's reference (tag or @sha256: digest).
    reference: String,
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
    /// Seal the result to this age X25519 recipient (age1...): it is
    /// printed as ASCII-armored age ciphertext (an error message on stderr
    /// too; a command's whole stdout), which `sandlet open` or `age -d`
    /// opens.
    #[arg(long, value_name = "RECIPIENT")]
    seal_to: Option<String>,
    #[command(flatten)]
    registry: RegistryArgs,
    #[command(flatten)]
    store: StoreArgs,
    /// The module: a file path, or an OCI reference when no such file
    /// exists.
    module: String,
    /// Arguments for a WASI command.
    #[arg(last = true)]
    args: Vec<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `query` answers with one line on stderr; its details are opt-in.
    init_tracing(if matches!(cli.command, Command::Query(_)) {
        "error"
    } else {
        "warn"
    });
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return fail(format!("cannot start the async runtime: {e}")),
    };
    match cli.command {
        Command::Run(args) => runtime.block_on(run(*args)),
        Command::Push(args) => runtime.block_on(push(args)),
        Command::Pull(args) => runtime.block_on(pull(args)),
        Command::Sign(args) => runtime.block_on(sign(args)),
        Command::Verify(args) => runtime.block_on(verify(args)),
        Command::Open(args) => runtime.block_on(open(args)),
        Command::Node(args) => runtime.block_on(node(*args)),
        Command::Query(args) => runtime.block_on(query(args)),
        Command::Audit(command) => audit(command),
        Command::Budget(command) => budget(command),
        Command::New(args) => new(args),
        Command::Build(args) => build(args),
    }
}

fn new(args: NewArgs) -> ExitCode {
    match develop::scaffold(args.lang, &args.dir) {
        Ok(()) => {
            let dir = args.dir.display();
            eprintln!(
                "created {dir}: build it with `sandlet build {dir}`, test it with `{dir}/test/run`"
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

fn build(args: BuildArgs) -> ExitCode {
    match develop::build(&args.dir, args.out_dir.as_deref()) {
        Ok(component) => {
            println!("{}", component.display());
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

fn init_tracing(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SANDLET_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
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
    let config = match args.config.as_deref().map(StationConfig::load).transpose() {
        Ok(config) => config,
        Err(e) => return fail(e),
    };
    let granted = match grants_of(&args, config.as_ref().map(|c| &c.data)) {
        Ok(granted) => granted,
        Err(reason) => return fail(reason),
    };
    let builder = match plan_of(&args) {
        Ok(builder) => builder,
        Err(reason) => return fail(reason),
    };
    let seal = match args.seal_to.as_deref().map(Recipient::parse).transpose() {
        Ok(seal) => seal,
        Err(e) => return fail(format!("--seal-to: {e}")),
    };
    let engine = match SandboxEngine::new(EngineOptions {
        max_concurrent_runs: CLI_POOL_SLOTS,
    }) {
        Ok(engine) => engine,
        Err(e) => return fail(e),
    };
    let allow = config
        .as_ref()
        .map(|c| c.modules.clone())
        .unwrap_or_default();
    let module = match load_module(&engine, &args, &allow).await {
        Ok(module) => module,
        Err(reason) => return fail(reason),
    };
    // Every query of the run goes on the record, as the module's.
    let data: Arc<dyn DataAccess> = match granted {
        None => Arc::new(NoDatasets),
        Some(granted) => {
            let caller = Caller {
                via: "run".to_owned(),
                module_digest: Some(module.digest().to_string()),
                ..Caller::default()
            };
            let budget = match local_budget(&args.store) {
                Ok(budget) => budget,
                Err(reason) => return fail(reason),
            };
            match audit_trail(&args.store, caller) {
                Ok(trail) => Arc::new(granted.audited(trail).budgeted(budget)),
                Err(reason) => return fail(reason),
            }
        }
    };
    let mut plan = match builder.data(data).build() {
        Ok(plan) => plan,
        Err(e) => return fail(e),
    };
    // Raw files of granted datasets that allow them, for commands only:
    // algorithms read data through queries.
    let _staging = match (module.kind(), &config) {
        (ModuleKind::Command, Some(config)) => {
            match add_raw_files(&mut plan, &config.data, &args.grants) {
                Ok(staging) => Some(staging),
                Err(reason) => return fail(reason),
            }
        }
        _ => None,
    };
    // An algorithm's stdout carries only its result, so whatever the guest
    // prints goes to stderr. A sealed command's stdout is its result: it is
    // kept and printed sealed at the end.
    let sealed_stdout = sandlet_runtime::output::MemorySink::new();
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
    let sealed = |text: &[u8]| match &seal {
        None => Ok(String::from_utf8_lossy(text).into_owned()),
        Some(recipient) => sandlet_trust::seal::seal(recipient, text).map_err(|e| e.to_string()),
    };
    if let (ModuleKind::Command, Some(_)) = (module.kind(), &seal) {
        match sealed(&sealed_stdout.contents()) {
            Ok(text) => print!("{text}"),
            Err(reason) => return fail(reason),
        }
    }
    match outcome {
        Ok(RunOutcome::Exited(code)) => ExitCode::from(code as u8),
        Ok(RunOutcome::Returned(Ok(result))) => {
            use sandlet_runtime::OutputSink;
            let text = match &seal {
                None => format!("{result}\n"),
                Some(_) => match sealed(result.as_bytes()) {
                    Ok(text) => text,
                    Err(reason) => return fail(reason),
                },
            };
            let _ = HostStdout.write_all(text.as_bytes());
            ExitCode::SUCCESS
        }
        Ok(RunOutcome::Returned(Err(message))) => {
            match sealed(message.as_bytes()) {
                Ok(text) => eprintln!("{}", text.trim_end()),
                Err(reason) => return fail(reason),
            }
            ExitCode::from(1)
        }
        Err(e) => fail(e),
    }
}

/// `sandlet open`: the plaintext of a sealed result on stdout, exit 0;
/// exit 2 with the reason (a wrong identity says so).
async fn open(args: OpenArgs) -> ExitCode {
    let identity = match std::fs::read_to_string(&args.identity) {
        Ok(text) => text,
        Err(e) => {
            return fail(format!(
                "--identity {}: cannot read: {e}",
                args.identity.display()
            ));
        }
    };
    let input = if args.input.as_os_str() == "-" {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes).map(|_| bytes)
    } else {
        std::fs::read(&args.input)
    };
    let input = match input {
        Ok(bytes) => bytes,
        Err(e) => return fail(format!("{}: cannot read: {e}", args.input.display())),
    };
    let pointer = sandlet_registry::results::parse_pointer(&String::from_utf8_lossy(&input))
        .map(str::to_owned);
    let sealed = match pointer {
        None => input,
        Some(stored) => {
            let fetched = match registry_of(&args.registry) {
                Ok((registry, credentials)) => registry
                    .pull_sealed(&stored, &credentials)
                    .await
                    .map_err(|e| e.to_string()),
                Err(reason) => Err(reason),
            };
            match fetched {
                Ok(bytes) => bytes,
                Err(reason) => return fail(format!("the stored sealed result: {reason}")),
            }
        }
    };
    match sandlet_trust::seal::open(&identity, &sealed) {
        Ok(plaintext) => {
            use std::io::Write as _;
            let mut out = std::io::stdout().lock();
            match out.write_all(&plaintext).and_then(|()| out.flush()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(format!("cannot write the result: {e}")),
            }
        }
        Err(e) => fail(e),
    }
}

/// Adds the `/data/<name>` preopens of granted `rawFiles` datasets; the
/// returned directory holds staged files until it is dropped.
fn add_raw_files(
    plan: &mut RunPlan,
    config: &DataConfig,
    grants: &[String],
) -> Result<tempfile::TempDir, String> {
    let staging = tempfile::Builder::new()
        .prefix("sandlet-raw-")
        .tempdir()
        .map_err(|e| format!("cannot create a staging directory for raw files: {e}"))?;
    for mount in
        sandlet_data::raw_file_mounts(config, grants, staging.path()).map_err(|e| e.to_string())?
    {
        let preopen = Preopen {
            host: mount.host,
            guest: mount.guest,
            access: DirAccess::ReadOnly,
        };
        if plan.preopens.iter().any(|p| p.guest == preopen.guest) {
            return Err(format!(
                "--dir: {} is where dataset files are mounted",
                preopen.guest
            ));
        }
        plan.preopens.push(preopen);
    }
    Ok(staging)
}

/// The datasets `--grant` names, checked against `--config`.
fn grants_of(
    args: &RunArgs,
    config: Option<&DataConfig>,
) -> Result<Option<GrantedDatasets>, String> {
    match (config, args.grants.is_empty()) {
        (_, true) => Ok(None),
        (None, false) => Err("--grant needs --config to say where the datasets are".to_owned()),
        (Some(config), false) => GrantedDatasets::new(config, &args.grants)
            .map(Some)
            .map_err(|e| format!("--grant: {e}")),
    }
}

/// Validates the flags into a run plan, all but its data; the error is the
/// one-line reason.
fn plan_of(args: &RunArgs) -> Result<RunPlanBuilder, String> {
    let name = std::path::Path::new(&args.module)
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
    let mut builder = RunPlan::builder(name)
        .args(args.args.iter().cloned())
        .input(args.input.clone())
        .limits(limits);
    for env in &args.envs {
        builder = builder.env_spec(env).map_err(|e| e.to_string())?;
    }
    for dir in &args.dirs {
        builder = builder.dir_spec(dir).map_err(|e| e.to_string())?;
    }
    Ok(builder)
}

/// The audit trail of this host's queries: `<state dir>/audit`, on the
/// record as `caller`.
fn audit_trail(store: &StoreArgs, caller: Caller) -> Result<AuditTrail, String> {
    let log = open_audit_log(&state_dir_of(store)?).map_err(|e| {
        format!("the data-access audit log cannot be opened, so no query may run: {e}")
    })?;
    Ok(AuditTrail {
        log: Arc::new(log),
        station: host_name().unwrap_or_else(|| "localhost".to_owned()),
        caller,
        counters: None,
    })
}

/// The privacy budget account of this host's runs and queries: the
/// `@local` namespace of `<state dir>/privacy`.
fn local_budget(store: &StoreArgs) -> Result<Budget, String> {
    let ledger = Ledger::open(&state_dir_of(store)?).map_err(|e| {
        format!("the privacy budget ledger cannot be opened, so no query may run: {e}")
    })?;
    Ok(Budget {
        ledger: Arc::new(ledger),
        namespace: Budget::LOCAL.to_owned(),
    })
}

/// A module file, or, when no file of that name exists, an OCI reference
/// pulled into the local store and started through the precompile cache.
async fn load_module(
    engine: &SandboxEngine,
    args: &RunArgs,
    allow: &AllowList,
) -> Result<PreparedModule, String> {
    let path = std::path::Path::new(&args.module);
    if path.exists() || !looks_like_reference(&args.module) {
        return load_local(engine, path, &args.store);
    }
    let (store, state_dir) = open_store(&args.store)?;
    let pulled = pull_into(&args.registry, &args.module, &store, allow).await?;
    precompiled(engine, &store, &state_dir, &pulled.module_digest)
}

/// A module file, through the state directory's precompile cache like a
/// pulled module (keyed by the file's digest): the second run of a large
/// component (an 18 MB Python one compiles for seconds) starts without
/// compiling. Where the cache cannot be used (no state directory, a
/// read-only or full one) the file is compiled as it is, with a warning.
fn load_local(
    engine: &SandboxEngine,
    path: &std::path::Path,
    store: &StoreArgs,
) -> Result<PreparedModule, String> {
    let bytes = std::fs::read(path).map_err(|source| {
        sandlet_runtime::ModuleError::Read {
            path: path.to_owned(),
            source,
        }
        .to_string()
    })?;
    let uncached = |why: String| {
        tracing::warn!(
            "compiling {} without the precompile cache: {why}",
            path.display()
        );
        engine.load(&bytes).map_err(|e| e.to_string())
    };
    let cache = match state_dir_of(store).and_then(|dir| {
        PrecompileCache::open(&dir.join("compiled"), engine).map_err(|e| e.to_string())
    }) {
        Ok(cache) => cache,
        Err(why) => return uncached(why),
    };
    match cache.load_or_compile(engine, &sandlet_runtime::Digest::of(&bytes), &bytes) {
        Ok((module, _)) => Ok(module),
        // The cache's own trouble (IO, a full disk): compile without it.
        Err(sandlet_runtime::ModuleError::Engine(why)) => uncached(why),
        // The module's: that is the answer.
        Err(other) => Err(other.to_string()),
    }
}

/// The stored module `digest`, through the precompile cache in `state_dir`.
fn precompiled(
    engine: &SandboxEngine,
    store: &ModuleStore,
    state_dir: &std::path::Path,
    digest: &sandlet_runtime::Digest,
) -> Result<PreparedModule, String> {
    let bytes = store
        .get(digest)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("{digest} vanished from the store"))?;
    let cache =
        PrecompileCache::open(&state_dir.join("compiled"), engine).map_err(|e| e.to_string())?;
    let (module, _) = cache
        .load_or_compile(engine, digest, &bytes)
        .map_err(|e| e.to_string())?;
    Ok(module)
}

/// `registry/repository[:tag][@digest]` rather than a file name: it has a
/// slash and does not end in `.wasm`.
fn looks_like_reference(text: &str) -> bool {
    text.contains('/') && !text.ends_with(".wasm")
}

/// `--state-dir`, else $SANDLET_STATE_DIR, else ~/.local/share/sandlet.
fn state_dir_of(args: &StoreArgs) -> Result<PathBuf, String> {
    match &args.state_dir {
        Some(dir) => Ok(dir.clone()),
        None => match (
            std::env::var_os("SANDLET_STATE_DIR"),
            std::env::var_os("HOME"),
        ) {
            (Some(dir), _) => Ok(PathBuf::from(dir)),
            (None, Some(home)) => Ok(PathBuf::from(home).join(".local/share/sandlet")),
            (None, None) => Err("no --state-dir given and no HOME to default it from".to_owned()),
        },
    }
}

fn open_store(args: &StoreArgs) -> Result<(ModuleStore, PathBuf), String> {
    let state_dir = state_dir_of(args)?;
    let store = ModuleStore::open(&state_dir.join("modules"), DEFAULT_STORE_BYTES)
        .map_err(|e| e.to_string())?;
    Ok((store, state_dir))
}

fn registry_of(args: &RegistryArgs) -> Result<(Registry, Credentials), String> {
    let registry = Registry::new(&RegistryOptions {
        insecure: args.insecure_registries.clone(),
        ca_file: args.registry_ca.clone(),
    })
    .map_err(|e| e.to_string())?;
    let config = args.registry_config.clone().or_else(|| {
        let dir = std::env::var_os("DOCKER_CONFIG")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".docker")))?;
        Some(dir.join("config.json")).filter(|path| path.is_file())
    });
    let credentials = match config {
        Some(path) => Credentials::from_docker_config_file(&path).map_err(|e| e.to_string())?,
        None => Credentials::anonymous(),
    };
    Ok((registry, credentials))
}

async fn pull_into(
    args: &RegistryArgs,
    reference: &str,
    store: &ModuleStore,
    allow: &AllowList,
) -> Result<sandlet_registry::oci::PulledModule, String> {
    let (registry, credentials) = registry_of(args)?;
    registry
        .pull(reference, &credentials, store, allow)
        .await
        .map_err(|e| e.to_string())
}

/// `sandlet sign`: exit 0 with the signed digest, 2 when the key, the
/// registry or the reference is wrong.
async fn sign(args: SignArgs) -> ExitCode {
    // cosign's encrypted keys take their password from COSIGN_PASSWORD, as
    // cosign does.
    let password = std::env::var_os("COSIGN_PASSWORD").map(|p| p.into_encoded_bytes());
    let key = match std::fs::read_to_string(&args.key)
        .map_err(|e| e.to_string())
        .and_then(|text| {
            sandlet_trust::PrivateKey::from_encrypted_pem(&text, password.as_deref())
                .map_err(|e| e.to_string())
        }) {
        Ok(key) => key,
        Err(reason) => return fail(format!("--key {}: {reason}", args.key.display())),
    };
    let (registry, credentials) = match registry_of(&args.registry) {
        Ok(pair) => pair,
        Err(reason) => return fail(reason),
    };
    match registry.sign(&args.reference, &credentials, &key).await {
        Ok(signed) => {
            println!(
                "signed {} ({}: {} signature(s)) with key {}",
                signed.digest,
                signed.signatures,
                signed.count,
                key.public().fingerprint()
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

/// `sandlet verify`: exit 0 when a trusted key signed the module's digest,
/// 1 with the reason when none did, 2 when a key file or the registry is
/// wrong.
async fn verify(args: VerifyArgs) -> ExitCode {
    let mut keys = Vec::with_capacity(args.key.len());
    for path in &args.key {
        match std::fs::read_to_string(path)
            .map_err(|e| e.to_string())
            .and_then(|text| sandlet_trust::PublicKey::from_pem(&text).map_err(|e| e.to_string()))
        {
            Ok(key) => keys.push(key),
            Err(reason) => return fail(format!("--key {}: {reason}", path.display())),
        }
    }
    let (registry, credentials) = match registry_of(&args.registry) {
        Ok(pair) => pair,
        Err(reason) => return fail(reason),
    };
    match registry
        .verify_signature(&args.reference, &credentials, &keys)
        .await
    {
        Ok(verified) => {
            println!(
                "verified {} signed by key {}",
                verified.digest, verified.key
            );
            ExitCode::SUCCESS
        }
        Err(unsigned @ sandlet_registry::oci::OciError::Unsigned { .. }) => {
            eprintln!("{unsigned}");
            ExitCode::from(1)
        }
        Err(e) => fail(e),
    }
}

async fn push(args: PushArgs) -> ExitCode {
    let module = match std::fs::read(&args.module) {
        Ok(bytes) => bytes,
        Err(e) => return fail(format!("cannot read module {}: {e}", args.module.display())),
    };
    // Only modules sandlet can run are published.
    let engine = match SandboxEngine::new(EngineOptions {
        max_concurrent_runs: CLI_POOL_SLOTS,
    }) {
        Ok(engine) => engine,
        Err(e) => return fail(e),
    };
    if let Err(e) = engine.load(&module) {
        return fail(e);
    }
    let result = match registry_of(&args.registry) {
        Ok((registry, credentials)) => registry
            .push(&module, &args.reference, &credentials)
            .await
            .map_err(|e| e.to_string()),
        Err(reason) => Err(reason),
    };
    match result {
        Ok(digest) => {
            println!("{digest}");
            ExitCode::SUCCESS
        }
        Err(reason) => fail(reason),
    }
}

async fn pull(args: PullArgs) -> ExitCode {
    let result = async {
        let allow = match &args.config {
            Some(path) => {
                StationConfig::load(path)
                    .map_err(|e| e.to_string())?
                    .modules
            }
            None => AllowList::allow_all(),
        };
        let (store, state_dir) = open_store(&args.store)?;
        let pulled = pull_into(&args.registry, &args.reference, &store, &allow).await?;
        let engine = SandboxEngine::new(EngineOptions {
            max_concurrent_runs: CLI_POOL_SLOTS,
        })
        .map_err(|e| e.to_string())?;
        let module = precompiled(&engine, &store, &state_dir, &pulled.module_digest)?;
        Ok::<_, String>((pulled, module.kind()))
    }
    .await;
    match result {
        Ok((pulled, kind)) => {
            println!("{}", pulled.image_id);
            println!("module {} ({kind})", pulled.module_digest);
            if let Some(key) = &pulled.signed_by {
                println!("signed by key {key}");
            }
            ExitCode::SUCCESS
        }
        Err(reason) => fail(reason),
    }
}

async fn node(args: NodeArgs) -> ExitCode {
    let station = match args.config.as_deref().map(StationConfig::load).transpose() {
        Ok(station) => station,
        Err(e) => return fail(e),
    };
    let restart_backoff = match limits::parse_timeout(&args.restart_backoff) {
        Ok(d) => d,
        Err(e) => return fail(format!("--restart-backoff: {e}")),
    };
    let node_name = match args.node_name.clone().or_else(host_name) {
        Some(name) => name,
        None => return fail("--node-name is required: this host's name cannot be read"),
    };
    let state_dir = match state_dir_of(&args.store) {
        Ok(dir) => dir,
        Err(reason) => return fail(reason),
    };
    let options = sandlet_kubelet::NodeOptions {
        kubeconfig: args.kubeconfig,
        bootstrap_kubeconfig: args.bootstrap_kubeconfig,
        node_name,
        station,
        address: args.address,
        port: args.port,
        max_pods: args.max_pods,
        state_dir,
        runtime_dir: args.runtime_dir,
        tls: args.tls_cert_file.zip(args.tls_private_key_file),
        rotate_server_certificates: args.rotate_server_certificates,
        rotate_certificates: args.rotate_certificates,
        client_ca: args.client_ca_file,
        auth: sandlet_kubelet::auth::AuthOptions {
            anonymous: args.anonymous_auth,
            token_review: args.authentication_token_webhook,
            authorization: args.authorization_mode,
        },
        registry: RegistryOptions {
            insecure: args.registry.insecure_registries,
            ca_file: args.registry.registry_ca,
        },
        restart_backoff,
        event_rate: sandlet_kubelet::EventRate {
            qps: args.event_qps,
            burst: args.event_burst,
        },
    };
    let stop = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("a SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    };
    tokio::select! {
        result = sandlet_kubelet::run(options) => match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(e),
        },
        _ = stop => ExitCode::SUCCESS,
    }
}

/// `sandlet query`: exit 0 with CSV on stdout, 1 with the refusal on
/// stderr, 2 when the configuration or a grant is wrong.
async fn query(args: QueryArgs) -> ExitCode {
    let config = match StationConfig::load(&args.config) {
        Ok(station) => station.data,
        Err(e) => return fail(e),
    };
    let grants = if args.grants.is_empty() {
        config.datasets.iter().map(|d| d.name.clone()).collect()
    } else {
        args.grants
    };
    let data = match GrantedDatasets::new(&config, &grants) {
        Ok(data) => data,
        Err(e) => return fail(format!("--grant: {e}")),
    };
    // No record, no answer: a log that cannot be opened refuses the query.
    let caller = Caller {
        via: "query".to_owned(),
        ..Caller::default()
    };
    let budget = match local_budget(&args.store) {
        Ok(budget) => budget,
        Err(reason) => return fail(reason),
    };
    let data = match audit_trail(&args.store, caller) {
        Ok(trail) => data.audited(trail).budgeted(budget),
        Err(reason) => {
            eprintln!(
                "{}",
                sandlet_data::QueryError::Denied(format!("audit: {reason}"))
            );
            return ExitCode::from(1);
        }
    };
    match data.query(&args.sql).await {
        Ok(table) => {
            use std::io::Write;
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            let header: Vec<String> = table.columns.iter().map(|c| csv_field(c)).collect();
            let mut text = header.join(",");
            text.push('\n');
            for row in &table.rows {
                let fields: Vec<String> = row.iter().map(|v| csv_field(&v.to_string())).collect();
                text.push_str(&fields.join(","));
                text.push('\n');
            }
            match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(format!("cannot write the result: {e}")),
            }
        }
        Err(refusal) => {
            // One line, starting with the case (`denied:` ...).
            eprintln!("{}", refusal.to_string().replace('\n', " "));
            ExitCode::from(1)
        }
    }
}

/// `sandlet audit verify|show`.
fn audit(command: AuditCommand) -> ExitCode {
    match command {
        AuditCommand::Verify { store } => {
            let dir = match state_dir_of(&store) {
                Ok(dir) => audit_dir(&dir),
                Err(reason) => return fail(reason),
            };
            match sandlet_audit::verify(&dir) {
                Ok(verified) => {
                    println!(
                        "{} records, chain intact; last hash {}",
                        verified.records, verified.last_hash
                    );
                    ExitCode::SUCCESS
                }
                Err(broken) => {
                    eprintln!("audit log broken at {broken}");
                    ExitCode::from(1)
                }
            }
        }
        AuditCommand::Show(args) => {
            let filter = match audit_filter(&args) {
                Ok(filter) => filter,
                Err(reason) => return fail(reason),
            };
            let dir = match state_dir_of(&args.store) {
                Ok(dir) => audit_dir(&dir),
                Err(reason) => return fail(reason),
            };
            match sandlet_audit::read(&dir, &filter) {
                Ok(records) => {
                    print!("{}", sandlet_audit::render_table(&records));
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e),
            }
        }
    }
}

/// `sandlet budget list|reset`.
fn budget(command: BudgetCommand) -> ExitCode {
    let totals =
        |config: &Option<PathBuf>| -> Result<Vec<(String, sandlet_data::Epsilon)>, String> {
            let Some(path) = config else {
                return Ok(Vec::new());
            };
            let station = StationConfig::load(path).map_err(|e| e.to_string())?;
            Ok(station
                .data
                .datasets
                .iter()
                .filter_map(|d| {
                    d.policy
                        .privacy
                        .as_ref()
                        .map(|p| (d.name.clone(), p.epsilon))
                })
                .collect())
        };
    match command {
        BudgetCommand::List { config, store } => {
            let totals = match totals(&config) {
                Ok(totals) => totals,
                Err(reason) => return fail(reason),
            };
            let ledger = match state_dir_of(&store)
                .and_then(|dir| Ledger::open(&dir).map_err(|e| e.to_string()))
            {
                Ok(ledger) => ledger,
                Err(reason) => return fail(reason),
            };
            let accounts = match ledger.accounts() {
                Ok(accounts) => accounts,
                Err(e) => return fail(e),
            };
            let mut rows: Vec<[String; 6]> = Vec::new();
            for account in &accounts {
                let total = totals
                    .iter()
                    .find(|(d, _)| *d == account.dataset)
                    .map(|(_, t)| *t);
                rows.push([
                    account.dataset.clone(),
                    account.namespace.clone(),
                    account.spent().to_string(),
                    total.map_or("-".to_owned(), |t| t.to_string()),
                    total.map_or("-".to_owned(), |t| {
                        t.saturating_sub(account.spent()).to_string()
                    }),
                    account.charges.to_string(),
                ]);
            }
            for (dataset, total) in &totals {
                if !accounts.iter().any(|a| a.dataset == *dataset) {
                    rows.push([
                        dataset.clone(),
                        "-".to_owned(),
                        "0".to_owned(),
                        total.to_string(),
                        total.to_string(),
                        "0".to_owned(),
                    ]);
                }
            }
            let header = ["DATASET", "NAMESPACE", "SPENT", "BUDGET", "LEFT", "CHARGES"];
            let mut widths = header.map(str::len);
            for row in &rows {
                for (width, cell) in widths.iter_mut().zip(row) {
                    *width = (*width).max(cell.len());
                }
            }
            for row in std::iter::once(header.map(str::to_owned)).chain(rows) {
                let line: Vec<String> = row
                    .iter()
                    .zip(widths)
                    .map(|(cell, width)| format!("{cell:width$}"))
                    .collect();
                println!("{}", line.join("  ").trim_end());
            }
            ExitCode::SUCCESS
        }
        BudgetCommand::Reset {
            dataset,
            namespace,
            config,
            store,
        } => {
            let total = match totals(&config) {
                Ok(totals) => totals
                    .into_iter()
                    .find(|(d, _)| *d == dataset)
                    .map_or("-".to_owned(), |(_, t)| t.to_string()),
                Err(reason) => return fail(reason),
            };
            let dir = match state_dir_of(&store) {
                Ok(dir) => dir,
                Err(reason) => return fail(reason),
            };
            // The record must be writable before anything changes.
            let log = match open_audit_log(&dir) {
                Ok(log) => log,
                Err(e) => {
                    return fail(format!(
                        "the audit log cannot be opened, so no budget is reset: {e}"
                    ));
                }
            };
            let ledger = match Ledger::open(&dir) {
                Ok(ledger) => ledger,
                Err(e) => return fail(e),
            };
            let old = match ledger.reset(&dataset, &namespace) {
                Ok(Some(old)) => old,
                Ok(None) => {
                    eprintln!(
                        "no account of dataset {dataset} for namespace {namespace}: nothing is spent"
                    );
                    return ExitCode::from(1);
                }
                Err(e) => return fail(e),
            };
            let access = sandlet_audit::Access {
                station: host_name().unwrap_or_else(|| "localhost".to_owned()),
                caller: Caller {
                    via: "budget".to_owned(),
                    namespace: Some(namespace.clone()),
                    ..Caller::default()
                },
                datasets: vec![dataset.clone()],
                sql: String::new(),
                plan_fingerprint: None,
                decision: sandlet_audit::Decision::Answered,
                rule: None,
                reason: Some("privacy budget reset by the station's admin".to_owned()),
                rows: 0,
                duration_ms: 0.0,
                privacy: Some(sandlet_data::PrivacyEntry {
                    action: "reset".to_owned(),
                    dataset: dataset.clone(),
                    namespace: namespace.clone(),
                    epsilon: old.spent().to_string(),
                    spent: "0".to_owned(),
                    total,
                }),
            };
            if let Err(e) = log.append(&access) {
                return fail(format!(
                    "the budget was reset, and its audit record could not be written: {e}"
                ));
            }
            println!(
                "reset dataset {dataset} for namespace {namespace}: {} spent in {} charges",
                old.spent(),
                old.charges
            );
            ExitCode::SUCCESS
        }
    }
}

fn audit_filter(args: &AuditShowArgs) -> Result<sandlet_audit::Filter, String> {
    let since = args
        .since
        .as_deref()
        .map(sandlet_audit::parse_since)
        .transpose()
        .map_err(|e| format!("--since: {e}"))?;
    let decision = args
        .decision
        .as_deref()
        .map(str::parse::<sandlet_audit::DecisionFilter>)
        .transpose()
        .map_err(|e| format!("--decision: {e}"))?;
    Ok(sandlet_audit::Filter {
        since,
        namespace: args.namespace.clone(),
        decision,
    })
}

/// One CSV field (RFC 4180): quoted when it holds a comma, a quote or a
/// line break.
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

/// This host's name, the default node name (as the kubelet's).
fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_lowercase())
        .filter(|s| !s.is_empty())
}
