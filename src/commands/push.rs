//! `sandlet push`: publish a module as an OCI artifact and print its
//! digest. Only modules sandlet can run are published.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::args::RegistryClientArgs;
use crate::error::CliError;
use crate::local;

#[derive(Debug, clap::Args)]
pub struct PushArgs {
    #[command(flatten)]
    registry: RegistryClientArgs,
    /// The module file.
    module: PathBuf,
    /// Where to publish it, e.g. 127.0.0.1:5000/algorithms/hello:v1.
    reference: String,
}

pub async fn execute(args: PushArgs) -> Result<ExitCode, CliError> {
    let module = std::fs::read(&args.module).map_err(|source| CliError::Io {
        what: format!("cannot read module {}", args.module.display()),
        source,
    })?;
    local::engine()?.load(&module)?;
    let (registry, credentials) = args.registry.connect()?;
    let digest = registry
        .push(&module, &args.reference, &credentials)
        .await?;
    println!("{digest}");
    Ok(ExitCode::SUCCESS)
}
