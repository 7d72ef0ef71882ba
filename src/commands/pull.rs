//! `sandlet pull`: fetch a module into the local store, checked against a
//! station's allow-list (signatures included) when one is given, and
//! precompile it; prints the image id, the module digest and kind, and the
//! key that signed it.

use std::path::PathBuf;
use std::process::ExitCode;

use sandlet_registry::allow_list::AllowList;
use sandlet_station::StationConfig;

use crate::args::{RegistryClientArgs, StoreArgs};
use crate::error::CliError;
use crate::local;

#[derive(Debug, clap::Args)]
pub struct PullArgs {
    /// A station file whose module allow-list the module must pass
    /// (signatures included) before it is fetched.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(flatten)]
    registry: RegistryClientArgs,
    #[command(flatten)]
    store: StoreArgs,
    /// The module's reference (tag or @sha256: digest).
    reference: String,
}

pub async fn execute(args: PullArgs) -> Result<ExitCode, CliError> {
    let allow = match &args.config {
        Some(path) => StationConfig::load(path)?.modules,
        None => AllowList::allow_all(),
    };
    let (store, state_dir) = args.store.open_store()?;
    let pulled = local::pull_into(&args.registry, &args.reference, &store, &allow).await?;
    let engine = local::engine()?;
    let module = local::precompiled(&engine, &store, &state_dir, &pulled.module_digest)?;
    println!("{}", pulled.image_id);
    println!("module {} ({})", pulled.module_digest, module.kind());
    if let Some(key) = &pulled.signed_by {
        println!("signed by key {key}");
    }
    Ok(ExitCode::SUCCESS)
}
