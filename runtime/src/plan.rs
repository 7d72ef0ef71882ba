//! The validated description of one run: what the guest gets and nothing
//! more.
//!
//! A [`RunPlan`] is the only input from which a sandbox is built
//! ([`crate::sandbox`]). Callers (the CLI, the kubelet) turn what users wrote
//! into a plan with [`RunPlan::builder`]; every check that can fail happens
//! here, before any guest code is loaded, so a sandbox never starts half
//! configured.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::limits::Limits;
use sandlet_core::data::{DataAccess, NoDatasets};

/// Whether a preopened directory may be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirAccess {
    /// The guest may list and read, but not create, change or delete.
    ReadOnly,
    /// The guest may also create, write and delete files and directories.
    ReadWrite,
}

/// A host directory made visible to the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preopen {
    /// Canonical host path of an existing directory.
    pub host: PathBuf,
    /// Where the guest sees it, e.g. `/data`.
    pub guest: String,
    /// Whether the guest may write there.
    pub access: DirAccess,
}

/// A plan that cannot be run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// A `HOST:GUEST[:ro|:rw]` directory spec that cannot be parsed.
    #[error("invalid --dir {spec:?}: {reason}")]
    DirSpec {
        /// The spec as written.
        spec: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A host directory to preopen that does not exist or is a file.
    #[error("directory {} does not exist or is not a directory", .0.display())]
    NoSuchDir(PathBuf),
    /// Two directories were given the same guest path.
    #[error("guest path {0:?} is used by two directories")]
    DuplicateGuestPath(String),
    /// A guest path that is relative or contains `..`.
    #[error("guest path {0:?} must be absolute and must not contain `..`")]
    GuestPath(String),
    /// An environment spec without `=` or with an empty key.
    #[error("invalid --env {0:?}: expected KEY=VALUE with a non-empty KEY")]
    Env(String),
    /// The algorithm input is not JSON; holds the parser's message.
    #[error("invalid --input: not JSON: {0}")]
    Input(String),
}

/// Everything one run may use. Build it with [`RunPlan::builder`].
#[derive(Clone)]
pub struct RunPlan {
    /// `argv`, including `argv[0]` (the module's name).
    pub args: Vec<String>,
    /// The whole environment; nothing is inherited from the host.
    pub env: Vec<(String, String)>,
    /// The host directories the guest sees, each at its own guest path.
    pub preopens: Vec<Preopen>,
    /// The algorithm's input, valid JSON.
    pub input: String,
    /// The memory, time and output the run may use.
    pub limits: Limits,
    /// The data capability: what `data.datasets()` and `data.query()` see.
    pub data: Arc<dyn DataAccess>,
}

impl std::fmt::Debug for RunPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunPlan")
            .field("args", &self.args)
            .field("env", &self.env)
            .field("preopens", &self.preopens)
            .field("input", &self.input)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl RunPlan {
    /// A plan for a module called `name` (its `argv[0]`) that grants
    /// nothing: no args, env, directories or datasets; input `{}`; default
    /// limits.
    pub fn builder(name: impl Into<String>) -> RunPlanBuilder {
        RunPlanBuilder {
            args: vec![name.into()],
            env: Vec::new(),
            dirs: Vec::new(),
            input: None,
            limits: Limits::default(),
            data: Arc::new(NoDatasets),
        }
    }
}

/// Collects what a user asked for; [`RunPlanBuilder::build`] validates it.
pub struct RunPlanBuilder {
    args: Vec<String>,
    env: Vec<(String, String)>,
    dirs: Vec<(PathBuf, String, DirAccess)>,
    input: Option<String>,
    limits: Limits,
    data: Arc<dyn DataAccess>,
}

impl RunPlanBuilder {
    /// Appends one argument after those already given.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Appends arguments after those already given.
    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Adds the environment variable `key` with `value`.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Adds `KEY=VALUE` as written on a command line.
    pub fn env_spec(self, spec: &str) -> Result<Self, PlanError> {
        match spec.split_once('=') {
            Some((key, value)) if !key.is_empty() => Ok(self.env(key, value)),
            _ => Err(PlanError::Env(spec.to_owned())),
        }
    }

    /// Preopens the host directory `host` at the guest path `guest`; both
    /// are checked by [`RunPlanBuilder::build`].
    pub fn dir(
        mut self,
        host: impl Into<PathBuf>,
        guest: impl Into<String>,
        access: DirAccess,
    ) -> Self {
        self.dirs.push((host.into(), guest.into(), access));
        self
    }

    /// Adds `HOST:GUEST[:ro|:rw]` as written on a command line; read-only
    /// unless `:rw` is given.
    pub fn dir_spec(self, spec: &str) -> Result<Self, PlanError> {
        let bad = |reason| PlanError::DirSpec {
            spec: spec.to_owned(),
            reason,
        };
        let (rest, access) = if let Some(rest) = spec.strip_suffix(":rw") {
            (rest, DirAccess::ReadWrite)
        } else if let Some(rest) = spec.strip_suffix(":ro") {
            (rest, DirAccess::ReadOnly)
        } else {
            (spec, DirAccess::ReadOnly)
        };
        let (host, guest) = rest
            .rsplit_once(':')
            .ok_or_else(|| bad("expected HOST:GUEST[:ro|:rw]"))?;
        if host.is_empty() || guest.is_empty() {
            return Err(bad("expected HOST:GUEST[:ro|:rw]"));
        }
        Ok(self.dir(host, guest, access))
    }

    /// The algorithm input; must be JSON.
    pub fn input(mut self, input: impl Into<String>) -> Self {
        self.input = Some(input.into());
        self
    }

    /// The run's limits, in place of the defaults.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The data capability of the run.
    pub fn data(mut self, data: Arc<dyn DataAccess>) -> Self {
        self.data = data;
        self
    }

    /// Checks everything given and makes the plan: guest paths absolute,
    /// without `..` and distinct, host directories existing (and made
    /// canonical), the input JSON (`{}` when none was given).
    pub fn build(self) -> Result<RunPlan, PlanError> {
        let mut seen = HashSet::new();
        let mut preopens = Vec::with_capacity(self.dirs.len());
        for (host, guest, access) in self.dirs {
            let guest = validate_guest_path(&guest)?;
            if !seen.insert(guest.clone()) {
                return Err(PlanError::DuplicateGuestPath(guest));
            }
            let host = canonical_dir(&host)?;
            preopens.push(Preopen {
                host,
                guest,
                access,
            });
        }
        let input = self.input.unwrap_or_else(|| "{}".to_owned());
        serde_json::from_str::<serde_json::Value>(&input)
            .map_err(|e| PlanError::Input(e.to_string()))?;
        Ok(RunPlan {
            args: self.args,
            env: self.env,
            preopens,
            input,
            limits: self.limits,
            data: self.data,
        })
    }
}

fn validate_guest_path(guest: &str) -> Result<String, PlanError> {
    let path = Path::new(guest);
    let ok = path.is_absolute()
        && path
            .components()
            .all(|c| !matches!(c, std::path::Component::ParentDir));
    if !ok {
        return Err(PlanError::GuestPath(guest.to_owned()));
    }
    let trimmed = guest.trim_end_matches('/');
    Ok(if trimmed.is_empty() { "/" } else { trimmed }.to_owned())
}

fn canonical_dir(host: &Path) -> Result<PathBuf, PlanError> {
    match std::fs::canonicalize(host) {
        Ok(path) if path.is_dir() => Ok(path),
        _ => Err(PlanError::NoSuchDir(host.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_plan_grants_nothing() {
        let plan = RunPlan::builder("m.wasm").build().unwrap();
        assert_eq!(plan.args, ["m.wasm"]);
        assert!(plan.env.is_empty());
        assert!(plan.preopens.is_empty());
        assert_eq!(plan.input, "{}");
    }

    #[test]
    fn dir_specs_default_to_read_only() {
        let dir = tempfile::tempdir().unwrap();
        let host = dir.path().to_str().unwrap();
        let plan = RunPlan::builder("m")
            .dir_spec(&format!("{host}:/in"))
            .unwrap()
            .dir_spec(&format!("{host}:/out:rw"))
            .unwrap()
            .dir_spec(&format!("{host}:/ro:ro"))
            .unwrap()
            .build()
            .unwrap();
        let access: Vec<_> = plan
            .preopens
            .iter()
            .map(|p| (p.guest.as_str(), p.access))
            .collect();
        assert_eq!(
            access,
            [
                ("/in", DirAccess::ReadOnly),
                ("/out", DirAccess::ReadWrite),
                ("/ro", DirAccess::ReadOnly)
            ]
        );
    }

    #[test]
    fn bad_dirs_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let host = dir.path().to_str().unwrap();
        assert!(matches!(
            RunPlan::builder("m")
                .dir_spec("/nonexistent-sandlet:/x")
                .unwrap()
                .build(),
            Err(PlanError::NoSuchDir(_))
        ));
        assert!(RunPlan::builder("m").dir_spec("nocolon").is_err());
        assert!(matches!(
            RunPlan::builder("m")
                .dir_spec(&format!("{host}:rel"))
                .unwrap()
                .build(),
            Err(PlanError::GuestPath(_))
        ));
        assert!(matches!(
            RunPlan::builder("m")
                .dir_spec(&format!("{host}:/a/../b"))
                .unwrap()
                .build(),
            Err(PlanError::GuestPath(_))
        ));
        assert!(matches!(
            RunPlan::builder("m")
                .dir_spec(&format!("{host}:/a"))
                .unwrap()
                .dir_spec(&format!("{host}:/a/:rw"))
                .unwrap()
                .build(),
            Err(PlanError::DuplicateGuestPath(_))
        ));
    }

    #[test]
    fn env_and_input_are_checked() {
        assert!(RunPlan::builder("m").env_spec("=x").is_err());
        assert!(RunPlan::builder("m").env_spec("novalue").is_err());
        let plan = RunPlan::builder("m")
            .env_spec("A=b=c")
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(plan.env, [("A".to_owned(), "b=c".to_owned())]);
        let err = RunPlan::builder("m").input("{oops").build().unwrap_err();
        assert!(
            err.to_string().starts_with("invalid --input: not JSON"),
            "{err}"
        );
    }
}
