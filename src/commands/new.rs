//! `sandlet new`: scaffold an algorithm that builds and runs as it is,
//! with a test (`DIR/test/run`). The templates live in `crate::develop`.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::develop::{self, Language};
use crate::error::CliError;

#[derive(Debug, clap::Args)]
pub struct NewArgs {
    /// The algorithm's language.
    #[arg(long, value_enum)]
    lang: Language,
    /// A new or empty directory; its name is the algorithm's.
    #[arg(value_name = "DIR")]
    dir: PathBuf,
}

pub fn execute(args: NewArgs) -> Result<ExitCode, CliError> {
    develop::scaffold(args.lang, &args.dir)?;
    let dir = args.dir.display();
    eprintln!("created {dir}: build it with `sandlet build {dir}`, test it with `{dir}/test/run`");
    Ok(ExitCode::SUCCESS)
}
