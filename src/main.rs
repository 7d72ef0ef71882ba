//! The `sandlet` binary: a thin command line over the library crates.
//!
//! This file parses the command line, starts the async runtime and
//! dispatches to one file per subcommand under `commands/`; it maps a
//! command's error to its one-line reason and exit status 2. The
//! subcommands, their flags and exit statuses are documented in
//! `docs/reference/cli.md`.

mod args;
mod commands;
mod develop;
mod error;
mod local;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::commands::{
    audit, budget, build, new, node, open, pull, push, query, run, sign, verify,
};
use crate::error::CliError;

/// Exit status for a trap, a limit hit, an invalid module or bad input.
const EXIT_SANDLET_ERROR: u8 = 2;

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
    Run(Box<run::RunArgs>),
    /// Publish a module as an OCI artifact and print its digest.
    Push(push::PushArgs),
    /// Fetch, verify and precompile a module into the local store.
    Pull(pull::PullArgs),
    /// Sign a pushed module (cosign's format: the signature is kept in the
    /// registry beside it); prints the signed manifest digest.
    Sign(sign::SignArgs),
    /// Check that a pushed module has a valid signature by KEY; exit 0 and
    /// the digest and key, or 1 and why not.
    Verify(verify::VerifyArgs),
    /// Open a sealed result (ASCII-armored age, or the pointer a node
    /// leaves for a stored one) with an age identity; prints the result.
    Open(open::OpenArgs),
    /// The virtual kubelet: register as a Kubernetes node and run its pods.
    Node(Box<node::NodeArgs>),
    /// Run one data query under the datasets' policies, as a guest's would
    /// run (for data admins); prints the result as CSV.
    Query(query::QueryArgs),
    /// Read the data-access audit log.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// The differential-privacy budgets: what each namespace has spent of
    /// each private dataset.
    #[command(subcommand)]
    Budget(budget::BudgetCommand),
    /// Scaffold an algorithm that builds and runs as it is, with a test
    /// (DIR/test/run).
    New(new::NewArgs),
    /// Build the algorithm in DIR into a component; prints its path last.
    Build(build::BuildArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `query` answers with one line on stderr; its details are opt-in.
    init_tracing(if matches!(cli.command, Command::Query(_)) {
        "error"
    } else {
        "warn"
    });
    match dispatch(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("sandlet: {e}");
            ExitCode::from(EXIT_SANDLET_ERROR)
        }
    }
}

fn dispatch(command: Command) -> Result<ExitCode, CliError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|source| CliError::Io {
            what: "cannot start the async runtime".to_owned(),
            source,
        })?;
    match command {
        Command::Run(args) => runtime.block_on(run::execute(*args)),
        Command::Push(args) => runtime.block_on(push::execute(args)),
        Command::Pull(args) => runtime.block_on(pull::execute(args)),
        Command::Sign(args) => runtime.block_on(sign::execute(args)),
        Command::Verify(args) => runtime.block_on(verify::execute(args)),
        Command::Open(args) => runtime.block_on(open::execute(args)),
        Command::Node(args) => runtime.block_on(node::execute(*args)),
        Command::Query(args) => runtime.block_on(query::execute(args)),
        Command::Audit(command) => audit::execute(command),
        Command::Budget(command) => budget::execute(command),
        Command::New(args) => new::execute(args),
        Command::Build(args) => build::execute(args),
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
