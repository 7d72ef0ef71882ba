//! Flag groups that several commands share, and what they open: the state
//! directory and its module store (`--state-dir`), and the registries
//! (`--insecure-registry`, `--registry-ca`, `--registry-config`).
//!
//! This module owns how those flags default and what they mean; it never
//! runs a module or reads a dataset.

use std::path::PathBuf;

use sandlet_registry::oci::{Credentials, Registry, RegistryOptions};
use sandlet_registry::store::ModuleStore;

use crate::error::CliError;

/// How to reach registries (the node's flags: a pod's credentials come
/// from its `imagePullSecrets`).
#[derive(Debug, clap::Args)]
pub struct RegistryArgs {
    /// A registry (HOST:PORT) spoken to over plain HTTP (repeatable).
    #[arg(long = "insecure-registry", value_name = "HOST:PORT")]
    pub insecure_registries: Vec<String>,
    /// Extra CA certificates (PEM) to trust for registries.
    #[arg(long, value_name = "FILE")]
    pub registry_ca: Option<PathBuf>,
}

/// How a command run by a person reaches registries: as the node does,
/// with the person's credentials.
#[derive(Debug, clap::Args)]
pub struct RegistryClientArgs {
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// Registry credentials, docker `config.json` format (default:
    /// $DOCKER_CONFIG/config.json or ~/.docker/config.json when present).
    #[arg(long, value_name = "FILE")]
    pub registry_config: Option<PathBuf>,
}

/// Where this host keeps its state: modules, the audit log, budgets.
#[derive(Debug, clap::Args)]
pub struct StoreArgs {
    /// Where fetched and precompiled modules are kept (default:
    /// $SANDLET_STATE_DIR or ~/.local/share/sandlet).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

impl RegistryArgs {
    /// The registry options these flags say.
    pub fn options(&self) -> RegistryOptions {
        RegistryOptions {
            insecure: self.insecure_registries.clone(),
            ca_file: self.registry_ca.clone(),
        }
    }
}

impl RegistryClientArgs {
    /// A registry client and the credentials to present.
    pub fn connect(&self) -> Result<(Registry, Credentials), CliError> {
        let registry = Registry::new(&self.registry.options())?;
        let config = self.registry_config.clone().or_else(|| {
            let dir = std::env::var_os("DOCKER_CONFIG")
                .map(PathBuf::from)
                .or_else(|| {
                    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".docker"))
                })?;
            Some(dir.join("config.json")).filter(|path| path.is_file())
        });
        let credentials = match config {
            Some(path) => Credentials::from_docker_config_file(&path)?,
            None => Credentials::anonymous(),
        };
        Ok((registry, credentials))
    }
}

impl StoreArgs {
    /// `--state-dir`, else the station's default.
    pub fn state_dir(&self) -> Result<PathBuf, CliError> {
        match &self.state_dir {
            Some(dir) => Ok(dir.clone()),
            None => sandlet_station::defaults::state_dir().ok_or_else(|| {
                CliError::Usage("no --state-dir given and no HOME to default it from".to_owned())
            }),
        }
    }

    /// The module store of the state directory, and the directory.
    pub fn open_store(&self) -> Result<(ModuleStore, PathBuf), CliError> {
        let state_dir = self.state_dir()?;
        let store = sandlet_station::defaults::module_store(&state_dir)?;
        Ok((store, state_dir))
    }
}
