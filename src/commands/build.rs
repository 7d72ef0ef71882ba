//! `sandlet build`: build the algorithm in a directory into a component
//! and print its path last. The builds live in `crate::develop`.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::develop;
use crate::error::CliError;

#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    /// Where the component and what the build stages go (default DIR/build;
    /// a Rust component is copied there from cargo's target directory only
    /// when this is given).
    #[arg(long, value_name = "DIR")]
    out_dir: Option<PathBuf>,
    /// The algorithm: Cargo.toml, algorithm.py, algorithm.js or
    /// algorithm.c tells its language.
    #[arg(value_name = "DIR")]
    dir: PathBuf,
}

pub fn execute(args: BuildArgs) -> Result<ExitCode, CliError> {
    let component = develop::build(&args.dir, args.out_dir.as_deref())?;
    println!("{}", component.display());
    Ok(ExitCode::SUCCESS)
}
