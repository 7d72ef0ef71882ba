//! `sandlet open`: the plaintext of a sealed result on stdout, exit 0;
//! exit 2 with the reason (a wrong identity says so). The input is
//! ASCII-armored age, or the pointer a node leaves for a result kept in
//! the registry, which is fetched first.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use crate::args::RegistryClientArgs;
use crate::error::CliError;

#[derive(Debug, clap::Args)]
pub struct OpenArgs {
    /// An age identity file (AGE-SECRET-KEY-1... lines, as age-keygen
    /// writes).
    #[arg(long, value_name = "FILE", required = true)]
    identity: PathBuf,
    #[command(flatten)]
    registry: RegistryClientArgs,
    /// The sealed result: a file, or - (the default) for stdin.
    #[arg(value_name = "FILE", default_value = "-")]
    input: PathBuf,
}

pub async fn execute(args: OpenArgs) -> Result<ExitCode, CliError> {
    let identity = std::fs::read_to_string(&args.identity).map_err(|source| CliError::Io {
        what: format!("--identity {}: cannot read", args.identity.display()),
        source,
    })?;
    let input = if args.input.as_os_str() == "-" {
        let mut bytes = Vec::new();
        std::io::stdin().read_to_end(&mut bytes).map(|_| bytes)
    } else {
        std::fs::read(&args.input)
    }
    .map_err(|e| CliError::unreadable(&args.input, e))?;
    let pointer = sandlet_registry::results::parse_pointer(&String::from_utf8_lossy(&input))
        .map(str::to_owned);
    let sealed = match pointer {
        None => input,
        Some(stored) => fetch(&args.registry, &stored)
            .await
            .map_err(|e| CliError::step("the stored sealed result", e))?,
    };
    let plaintext = sandlet_trust::seal::open(&identity, &sealed)?;
    let mut out = std::io::stdout().lock();
    out.write_all(&plaintext)
        .and_then(|()| out.flush())
        .map_err(|source| CliError::Io {
            what: "cannot write the result".to_owned(),
            source,
        })?;
    Ok(ExitCode::SUCCESS)
}

/// The sealed bytes a pointer names.
async fn fetch(registry: &RegistryClientArgs, stored: &str) -> Result<Vec<u8>, CliError> {
    let (registry, credentials) = registry.connect()?;
    Ok(registry.pull_sealed(stored, &credentials).await?)
}
