//! The binary's one error type: why a command could not do its job.
//!
//! Every command returns `Result<ExitCode, CliError>`. `Ok` carries the
//! outcomes a command answers with (0, or 1 for a refusal the command has
//! already printed); a `CliError` is printed by `main` as one line,
//! `sandlet: <reason>`, with exit status 2. Each variant keeps its source,
//! so the reason names the flag or file and then what went wrong with it.

use std::error::Error as StdError;
use std::path::Path;

/// A boxed cause, for the variants that name a flag or a step.
pub type Cause = Box<dyn StdError + Send + Sync + 'static>;

/// Why a command failed; its `Display` is the one-line reason.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A flag's value cannot be used: `--memory: ...`.
    #[error("{flag}: {source}")]
    Flag {
        flag: String,
        #[source]
        source: Cause,
    },
    /// Flags that do not go together, or are missing.
    #[error("{0}")]
    Usage(String),
    /// Something that should hold and does not, with no error beneath it.
    #[error("{0}")]
    Failed(String),
    /// A step that failed, named in front of its cause: `the data-access
    /// audit log cannot be opened, so no query may run: ...`.
    #[error("{step}: {source}")]
    Step {
        step: String,
        #[source]
        source: Cause,
    },
    /// A file, stream or directory: `--identity F: cannot read: ...`.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// The station file.
    #[error(transparent)]
    Station(#[from] sandlet_station::ConfigError),
    /// A registry, or the credentials and options to reach one.
    #[error(transparent)]
    Registry(#[from] sandlet_registry::oci::OciError),
    /// The local module store.
    #[error(transparent)]
    Store(#[from] sandlet_registry::store::StoreError),
    /// A module that cannot be loaded, or an engine that cannot start.
    #[error(transparent)]
    Module(#[from] sandlet_runtime::ModuleError),
    /// A run's flags that do not make a valid plan.
    #[error(transparent)]
    Plan(#[from] sandlet_runtime::PlanError),
    /// A run that trapped or hit a limit.
    #[error(transparent)]
    Run(#[from] sandlet_runtime::RunError),
    /// Raw files of a granted dataset.
    #[error(transparent)]
    RawFiles(#[from] sandlet_data::RawFilesError),
    /// Sealing or opening a result.
    #[error(transparent)]
    Seal(#[from] sandlet_trust::seal::SealError),
    /// The audit log.
    #[error(transparent)]
    Audit(#[from] sandlet_audit::AuditError),
    /// The privacy budget ledger.
    #[error(transparent)]
    Ledger(#[from] sandlet_privacy::LedgerError),
    /// `sandlet new` and `sandlet build`.
    #[error(transparent)]
    Develop(#[from] crate::develop::Error),
    /// The node stopped, or never started.
    #[error(transparent)]
    Node(#[from] sandlet_kubelet::NodeError),
}

impl CliError {
    /// `flag: source`.
    pub fn flag(flag: impl Into<String>, source: impl Into<Cause>) -> Self {
        CliError::Flag {
            flag: flag.into(),
            source: source.into(),
        }
    }

    /// `step: source`.
    pub fn step(step: impl Into<String>, source: impl Into<Cause>) -> Self {
        CliError::Step {
            step: step.into(),
            source: source.into(),
        }
    }

    /// `PATH: cannot read: source`.
    pub fn unreadable(path: &Path, source: std::io::Error) -> Self {
        CliError::Io {
            what: format!("{}: cannot read", path.display()),
            source,
        }
    }
}
