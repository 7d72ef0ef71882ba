//! `sandlet sign`: sign a pushed module's manifest digest in cosign's
//! format, the signature kept in the registry beside it. Exit 0 with the
//! signed digest; 2 when the key, the registry or the reference is wrong.

use std::path::PathBuf;
use std::process::ExitCode;

use sandlet_trust::PrivateKey;

use crate::args::RegistryClientArgs;
use crate::error::CliError;

#[derive(Debug, clap::Args)]
pub struct SignArgs {
    #[command(flatten)]
    registry: RegistryClientArgs,
    /// The module, e.g. 127.0.0.1:5000/algorithms/hello:v1 (its manifest
    /// digest is what is signed).
    reference: String,
    /// The ECDSA P-256 private key: PEM as openssl writes it, or cosign's
    /// encrypted key (`cosign generate-key-pair`; its password from
    /// $COSIGN_PASSWORD).
    #[arg(long, value_name = "KEY.pem")]
    key: PathBuf,
}

pub async fn execute(args: SignArgs) -> Result<ExitCode, CliError> {
    // cosign's encrypted keys take their password from COSIGN_PASSWORD, as
    // cosign does.
    let password = std::env::var_os("COSIGN_PASSWORD").map(|p| p.into_encoded_bytes());
    let flag = || format!("--key {}", args.key.display());
    let text = std::fs::read_to_string(&args.key).map_err(|e| CliError::flag(flag(), e))?;
    let key = PrivateKey::from_encrypted_pem(&text, password.as_deref())
        .map_err(|e| CliError::flag(flag(), e))?;
    let (registry, credentials) = args.registry.connect()?;
    let signed = registry.sign(&args.reference, &credentials, &key).await?;
    println!(
        "signed {} ({}: {} signature(s)) with key {}",
        signed.digest,
        signed.signatures,
        signed.count,
        key.public().fingerprint()
    );
    Ok(ExitCode::SUCCESS)
}
