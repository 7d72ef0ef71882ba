//! `sandlet verify`: exit 0 when a trusted key signed the module's
//! digest, 1 with the reason when none did, 2 when a key file or the
//! registry is wrong.

use std::path::PathBuf;
use std::process::ExitCode;

use sandlet_registry::oci::OciError;
use sandlet_trust::PublicKey;

use crate::args::RegistryClientArgs;
use crate::error::CliError;

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    registry: RegistryClientArgs,
    /// The module.
    reference: String,
    /// A trusted public key (PEM `PUBLIC KEY`; repeatable: any one of them
    /// will do).
    #[arg(long, value_name = "KEY.pub", required = true)]
    key: Vec<PathBuf>,
}

pub async fn execute(args: VerifyArgs) -> Result<ExitCode, CliError> {
    let mut keys = Vec::with_capacity(args.key.len());
    for path in &args.key {
        let flag = || format!("--key {}", path.display());
        let text = std::fs::read_to_string(path).map_err(|e| CliError::flag(flag(), e))?;
        keys.push(PublicKey::from_pem(&text).map_err(|e| CliError::flag(flag(), e))?);
    }
    let (registry, credentials) = args.registry.connect()?;
    match registry
        .verify_signature(&args.reference, &credentials, &keys)
        .await
    {
        Ok(verified) => {
            println!(
                "verified {} signed by key {}",
                verified.digest, verified.key
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(unsigned @ OciError::Unsigned { .. }) => {
            eprintln!("{unsigned}");
            Ok(ExitCode::from(1))
        }
        Err(e) => Err(e.into()),
    }
}
