//! Algorithm development: `sandlet new` scaffolds an algorithm in one of the
//! supported guest languages and `sandlet build` turns one into a
//! component of the world `sandlet:algorithm/algorithm`.
//!
//! This module owns the templates and guest SDKs (embedded in the binary
//! from `sdk/`, so a scaffold and its build always agree with this
//! sandlet), finding each language's toolchain and driving it. It never
//! runs what it builds (that is `sandlet run`'s sandbox) and never writes
//! outside the algorithm's directory and the build's output directory.

mod build;
mod scaffold;

use std::path::{Path, PathBuf};

pub use build::build;
pub use scaffold::scaffold;

/// The world every algorithm implements, as the guest toolchains read it.
const WIT: &str = include_str!("../../wit/0.1.0/algorithm.wit");

/// The languages an algorithm can be written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Language {
    Rust,
    Python,
    Js,
    C,
}

impl Language {
    /// The file whose presence says an algorithm directory is in this
    /// language.
    fn marker(self) -> &'static str {
        match self {
            Language::Rust => "Cargo.toml",
            Language::Python => "algorithm.py",
            Language::Js => "algorithm.js",
            Language::C => "algorithm.c",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Language::Rust => "Rust",
            Language::Python => "Python",
            Language::Js => "JavaScript",
            Language::C => "C",
        }
    }

    const ALL: [Language; 4] = [Language::Rust, Language::Python, Language::Js, Language::C];
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{dir} is not empty: `sandlet new` writes only into a new or empty directory")]
    NotEmpty { dir: PathBuf },
    #[error(
        "cannot name an algorithm after {dir}: use a directory whose name starts with a letter \
         and holds only letters, digits, '-' and '_'"
    )]
    BadName { dir: PathBuf },
    #[error(
        "no algorithm in {dir}: expected Cargo.toml (Rust), algorithm.py (Python), \
         algorithm.js (JavaScript) or algorithm.c (C)"
    )]
    NoAlgorithm { dir: PathBuf },
    #[error("{dir} holds algorithms in more than one language ({found}): keep one")]
    Ambiguous { dir: PathBuf, found: String },
    #[error("{what} not found{where_}: {remedy}")]
    MissingTool {
        what: String,
        where_: String,
        remedy: String,
    },
    #[error("{tool} failed ({status}); its output is above")]
    ToolFailed { tool: String, status: String },
    #[error("{tool} built nothing at {path}")]
    NoOutput { tool: String, path: PathBuf },
    #[error("cannot run {tool}: {source}")]
    Spawn {
        tool: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_owned(),
        source,
    }
}

/// The algorithm's name: its directory's name, which must make a valid
/// package name in every language (a Rust crate, a file name).
fn name_of(dir: &Path) -> Result<String> {
    let bad = || Error::BadName {
        dir: dir.to_owned(),
    };
    // `mean/test/..` is `mean`: resolved where it exists (a build), made
    // absolute where it does not yet (a new scaffold).
    let absolute = match dir.canonicalize() {
        Ok(path) => path,
        Err(_) => std::path::absolute(dir).map_err(io(dir))?,
    };
    let name = absolute
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(bad)?;
    let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && name.len() <= 64;
    if valid {
        Ok(name.to_ascii_lowercase())
    } else {
        Err(bad())
    }
}

fn write(path: &Path, contents: &str) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
    }
    std::fs::write(path, contents).map_err(io(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_the_directory_and_must_suit_every_language() {
        assert_eq!(name_of(Path::new("/tmp/My-Mean_2")).unwrap(), "my-mean_2");
        assert_eq!(name_of(Path::new("relative/mean/")).unwrap(), "mean");
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("mean/test")).unwrap();
        assert_eq!(name_of(&root.path().join("mean/test/..")).unwrap(), "mean");
        for bad in [
            "/tmp/2mean",
            "/tmp/mean algo",
            "/tmp/mean.v2",
            "/tmp/_x",
            "/",
        ] {
            assert!(
                matches!(name_of(Path::new(bad)), Err(Error::BadName { .. })),
                "{bad}"
            );
        }
    }
}
