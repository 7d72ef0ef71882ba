//! `sandlet build DIR`: the algorithm in DIR (its language told by the file
//! that marks it) built into one component, whose path is returned.
//!
//! - Rust: `cargo build --release --target wasm32-wasip2`; the component is
//!   cargo's artifact.
//! - Python: componentize-py over the algorithm and the Python SDK.
//! - JavaScript: esbuild bundles the SDK's entry, the SDK and the algorithm
//!   into one module; componentize-js without `wasi:http`.
//! - C: wit-bindgen's C bindings, clang for wasm32-wasi (reactor) with the
//!   SDK, and the component linker rustup ships.
//!
//! The guest toolchains are looked up in sandlet's toolchain cache
//! (`$SANDLET_CACHE/toolchains`, where `scripts/toolchains` installs the
//! versions sandlet is tested with), then on `PATH`; a missing one is named
//! with the command that installs it. Everything but Rust's artifact is
//! written under the output directory (`DIR/build` unless given); the
//! component appears there only once it is complete.

use std::ffi::OsString;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{Error, Language, Result, WIT, io, name_of, write};

const PYTHON_SDK: &[(&str, &str)] = &[
    ("sandlet.py", include_str!("../../sdk/python/sandlet.py")),
    (
        "sandlet_app.py",
        include_str!("../../sdk/python/sandlet_app.py"),
    ),
    (
        "sandlet_vantage6.py",
        include_str!("../../sdk/python/sandlet_vantage6.py"),
    ),
];
const JS_SDK: &[(&str, &str)] = &[
    ("sandlet.js", include_str!("../../sdk/js/sandlet.js")),
    ("entry.js", include_str!("../../sdk/js/entry.js")),
];
const C_SDK: &[(&str, &str)] = &[
    ("sandlet.h", include_str!("../../sdk/c/sandlet.h")),
    ("sandlet.c", include_str!("../../sdk/c/sandlet.c")),
];

/// The interface the data import is bundled as an external of (esbuild
/// must leave it to componentize-js).
const DATA_IMPORT: &str = "sandlet:algorithm/data@0.1.0";

/// Debian's LLVM 19, whose `wasm-ld` the component linker drives.
const LLVM_BIN: &str = "/usr/lib/llvm-19/bin";

/// Builds the algorithm in `dir`; returns the component's path.
pub fn build(dir: &Path, out_dir: Option<&Path>) -> Result<PathBuf> {
    if !dir.is_dir() {
        return Err(Error::Io {
            path: dir.to_owned(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such directory"),
        });
    }
    let dir = dir.canonicalize().map_err(io(dir))?;
    let language = language_of(&dir)?;
    let name = name_of(&dir)?;
    let build = Build {
        dir: &dir,
        name: &name,
        out_dir: &match out_dir {
            Some(out) => std::path::absolute(out).map_err(io(out))?,
            None => dir.join("build"),
        },
        out_dir_given: out_dir.is_some(),
    };
    match language {
        Language::Rust => build.rust(),
        Language::Python => build.python(),
        Language::Js => build.js(),
        Language::C => build.c(),
    }
}

/// The one language whose marker file `dir` holds.
fn language_of(dir: &Path) -> Result<Language> {
    let found: Vec<Language> = Language::ALL
        .into_iter()
        .filter(|l| dir.join(l.marker()).is_file())
        .collect();
    match found.as_slice() {
        [one] => Ok(*one),
        [] => Err(Error::NoAlgorithm {
            dir: dir.to_owned(),
        }),
        many => Err(Error::Ambiguous {
            dir: dir.to_owned(),
            found: many
                .iter()
                .map(|l| l.marker())
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

struct Build<'a> {
    dir: &'a Path,
    name: &'a str,
    out_dir: &'a Path,
    /// Rust's component stays in cargo's target directory unless an
    /// output directory was asked for.
    out_dir_given: bool,
}

impl Build<'_> {
    /// Writes `files` under `out_dir/sub` (the SDK and the world a build
    /// reads, always this sandlet's own) and returns that directory.
    fn stage(&self, sub: &str, files: &[(&str, &str)]) -> Result<PathBuf> {
        let stage = self.out_dir.join(sub);
        for (name, text) in files {
            write(&stage.join(name), text)?;
        }
        Ok(stage)
    }

    fn wit(&self) -> Result<PathBuf> {
        self.stage("wit", &[("algorithm.wit", WIT)])
    }

    /// Where a tool writes the component, and where it is moved when
    /// complete.
    fn outputs(&self) -> (PathBuf, PathBuf) {
        (
            self.out_dir.join(format!("{}.partial.wasm", self.name)),
            self.out_dir.join(format!("{}.wasm", self.name)),
        )
    }

    /// Runs the tool that writes the component and moves it into place;
    /// a failed build leaves no partial component behind (and the last
    /// good one where it was).
    fn component(&self, tool: &str, command: &mut Command) -> Result<PathBuf> {
        let (partial, _) = self.outputs();
        let _ = std::fs::remove_file(&partial);
        if let Err(e) = run_tool(command, tool) {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
        self.finish(tool)
    }

    fn finish(&self, tool: &str) -> Result<PathBuf> {
        let (partial, done) = self.outputs();
        if !partial.is_file() {
            return Err(Error::NoOutput {
                tool: tool.to_owned(),
                path: partial,
            });
        }
        std::fs::rename(&partial, &done).map_err(io(&done))?;
        Ok(done)
    }

    fn python(&self) -> Result<PathBuf> {
        let componentize = cached_tool("python", "venv/bin/componentize-py", "componentize-py")?;
        let sdk = self.stage("sdk/python", PYTHON_SDK)?;
        let wit = self.wit()?;
        let (partial, _) = self.outputs();
        self.component(
            "componentize-py",
            Command::new(&componentize)
                .arg("-d")
                .arg(&wit)
                .args(["-w", "algorithm", "componentize", "-p"])
                .arg(&sdk)
                .arg("-p")
                .arg(self.dir)
                .arg("sandlet_app")
                .arg("-o")
                .arg(&partial),
        )
    }

    fn js(&self) -> Result<PathBuf> {
        let componentize =
            cached_tool("js", "node_modules/.bin/componentize-js", "componentize-js")?;
        let esbuild = cached_tool("js", "node_modules/.bin/esbuild", "esbuild")?;
        let sdk = self.stage("sdk/js", JS_SDK)?;
        let wit = self.wit()?;
        let bundle = self.out_dir.join(format!("{}.bundle.js", self.name));
        run_tool(
            Command::new(&esbuild)
                .arg(sdk.join("entry.js"))
                .args([
                    "--bundle",
                    "--format=esm",
                    "--platform=neutral",
                    "--log-level=warning",
                ])
                .arg(format!("--external:{DATA_IMPORT}"))
                .arg(flag("--alias:sandlet=", &sdk.join("sandlet.js")))
                .arg(flag("--alias:algorithm=", &self.dir.join("algorithm.js")))
                .arg(flag("--outfile=", &bundle)),
            "esbuild",
        )?;
        let (partial, _) = self.outputs();
        // Without `-d http fetch-event` the component imports `wasi:http`,
        // which sandlet does not offer.
        self.component(
            "componentize-js",
            Command::new(&componentize)
                .arg(&bundle)
                .arg("--wit")
                .arg(&wit)
                .args([
                    "--world-name",
                    "algorithm",
                    "-d",
                    "http",
                    "fetch-event",
                    "-o",
                ])
                .arg(&partial),
        )
    }

    fn c(&self) -> Result<PathBuf> {
        let wit_bindgen = cached_tool("c", "bin/wit-bindgen", "wit-bindgen")?;
        let clang = on_path("clang-19")
            .or_else(|| on_path("clang"))
            .ok_or_else(|| missing("clang (clang-19)", " on PATH", "c"))?;
        let linker = component_linker()?;
        let sdk = self.stage("sdk/c", C_SDK)?;
        let wit = self.wit()?;
        let generated = self.out_dir.join("gen");
        if generated.exists() {
            std::fs::remove_dir_all(&generated).map_err(io(&generated))?;
        }
        run_tool(
            Command::new(&wit_bindgen)
                .arg("c")
                .arg(&wit)
                .args(["--world", "algorithm", "--out-dir"])
                .arg(&generated),
            "wit-bindgen",
        )?;
        let mut sources: Vec<PathBuf> = std::fs::read_dir(self.dir)
            .map_err(io(self.dir))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "c") && p.is_file())
            .collect();
        sources.sort();
        let (partial, _) = self.outputs();
        // Debian's wasi-libc is preview 1: the component linker adapts it
        // with the reactor adapter (no `_start`; the export is `run`).
        self.component(
            "clang",
            Command::new(&clang)
                .env("PATH", path_with(Path::new(LLVM_BIN)))
                .args([
                    "--target=wasm32-wasi",
                    "-mexec-model=reactor",
                    "-O2",
                    "-Wall",
                ])
                .arg("-I")
                .arg(&generated)
                .arg("-I")
                .arg(&sdk)
                .arg(flag("-fuse-ld=", &linker))
                .arg("-Wl,--wasi-adapter=reactor")
                .arg("-o")
                .arg(&partial)
                .args(&sources)
                .arg(sdk.join("sandlet.c"))
                .arg(generated.join("algorithm.c"))
                .arg(generated.join("algorithm_component_type.o")),
        )
    }

    fn rust(&self) -> Result<PathBuf> {
        let cargo = on_path("cargo").ok_or_else(|| Error::MissingTool {
            what: "cargo".to_owned(),
            where_: " on PATH".to_owned(),
            remedy: "install Rust with rustup (https://rustup.rs)".to_owned(),
        })?;
        let sysroot = rust_sysroot()?;
        if !sysroot.join("lib/rustlib/wasm32-wasip2").is_dir() {
            return Err(Error::MissingTool {
                what: "the Rust target wasm32-wasip2".to_owned(),
                where_: format!(" in {}", sysroot.display()),
                remedy: "rustup target add wasm32-wasip2".to_owned(),
            });
        }
        let manifest = self.dir.join("Cargo.toml");
        let output = Command::new(&cargo)
            .args([
                "build",
                "--release",
                "--target",
                "wasm32-wasip2",
                "--message-format=json-render-diagnostics",
                "--manifest-path",
            ])
            .arg(&manifest)
            .stderr(Stdio::inherit())
            .output()
            .map_err(|source| Error::Spawn {
                tool: "cargo".to_owned(),
                source,
            })?;
        if !output.status.success() {
            return Err(Error::ToolFailed {
                tool: "cargo build".to_owned(),
                status: output.status.to_string(),
            });
        }
        let artifact = String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|m| {
                m["reason"] == "compiler-artifact"
                    && m["manifest_path"].as_str().map(Path::new) == Some(manifest.as_path())
            })
            .flat_map(|m| {
                m["filenames"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|f| f.as_str().map(PathBuf::from))
                    .collect::<Vec<_>>()
            })
            .find(|f| f.extension().is_some_and(|e| e == "wasm"))
            .ok_or_else(|| Error::NoOutput {
                tool: "cargo build".to_owned(),
                path: manifest.clone(),
            })?;
        if !self.out_dir_given {
            return Ok(artifact);
        }
        std::fs::create_dir_all(self.out_dir).map_err(io(self.out_dir))?;
        let (partial, _) = self.outputs();
        std::fs::copy(&artifact, &partial).map_err(io(&partial))?;
        self.finish("cargo build")
    }
}

/// `prefix` and a path as one argument.
fn flag(prefix: &str, path: &Path) -> OsString {
    let mut flag = OsString::from(prefix);
    flag.push(path);
    flag
}

/// Runs a tool with its output on our stderr, so that stdout holds the
/// component's path only.
fn run_tool(command: &mut Command, tool: &str) -> Result<()> {
    let stderr = std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|source| Error::Spawn {
            tool: tool.to_owned(),
            source,
        })?;
    let status = command
        .stdout(Stdio::from(stderr))
        .status()
        .map_err(|source| Error::Spawn {
            tool: tool.to_owned(),
            source,
        })?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::ToolFailed {
            tool: tool.to_owned(),
            status: status.to_string(),
        })
    }
}

/// Where sandlet's caches are (scripts/lib.sh's `SANDLET_CACHE`).
fn cache_dir() -> Option<PathBuf> {
    std::env::var_os("SANDLET_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/sandlet")))
}

fn missing(what: &str, where_: &str, lang: &str) -> Error {
    Error::MissingTool {
        what: what.to_owned(),
        where_: where_.to_owned(),
        remedy: format!(
            "install it with `scripts/toolchains {lang}` (in sandlet's source tree), \
             which installs the versions sandlet is tested with"
        ),
    }
}

/// A guest tool: from the newest complete install in sandlet's toolchain
/// cache (`toolchains/LANG/VERSION/RELATIVE`), else from PATH.
fn cached_tool(lang: &str, relative: &str, name: &str) -> Result<PathBuf> {
    let home = cache_dir().map(|c| c.join("toolchains").join(lang));
    if let Some(home) = &home
        && let Ok(entries) = std::fs::read_dir(home)
    {
        let mut versions: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|v| !v.to_string_lossy().ends_with(".partial"))
            .collect();
        versions.sort();
        // An install is complete when its `ready` mark is there (python,
        // js) or, for C, once its directory has its final name.
        let complete = |v: &Path| lang == "c" || v.join("ready").is_file();
        if let Some(tool) = versions
            .iter()
            .rev()
            .filter(|v| complete(v))
            .map(|v| v.join(relative))
            .find(|t| t.is_file())
        {
            return Ok(tool);
        }
    }
    on_path(name).ok_or_else(|| {
        let where_ = match &home {
            Some(home) => format!(" in {} or on PATH", home.display()),
            None => " on PATH".to_owned(),
        };
        missing(name, &where_, lang)
    })
}

fn on_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// PATH with `dir` in front.
fn path_with(dir: &Path) -> OsString {
    let mut dirs = vec![dir.to_owned()];
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    std::env::join_paths(dirs).unwrap_or_default()
}

fn rust_sysroot() -> Result<PathBuf> {
    let rustc = on_path("rustc").ok_or_else(|| Error::MissingTool {
        what: "rustc".to_owned(),
        where_: " on PATH".to_owned(),
        remedy: "install Rust with rustup (https://rustup.rs)".to_owned(),
    })?;
    let output = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .map_err(|source| Error::Spawn {
            tool: "rustc".to_owned(),
            source,
        })?;
    Ok(PathBuf::from(
        String::from_utf8_lossy(&output.stdout).trim(),
    ))
}

/// The component linker: `SANDLET_COMPONENT_LD`, else the one rustup ships
/// beside rust-lld (with the wasm32-wasip2 target).
fn component_linker() -> Result<PathBuf> {
    if let Some(linker) = std::env::var_os("SANDLET_COMPONENT_LD") {
        return Ok(PathBuf::from(linker));
    }
    let rustlib = rust_sysroot()?.join("lib/rustlib");
    std::fs::read_dir(&rustlib)
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|host| {
            let bin = host.path().join("bin");
            [
                bin.join("wasm-component-ld"),
                bin.join("gcc-ld/wasm-component-ld"),
            ]
        })
        .find(|p| p.is_file())
        .ok_or_else(|| Error::MissingTool {
            what: "wasm-component-ld".to_owned(),
            where_: format!(" in {}", rustlib.display()),
            remedy: "rustup target add wasm32-wasip2 (it ships the component linker)".to_owned(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_language_is_told_by_one_marker_file() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("algo");
        std::fs::create_dir(&dir).unwrap();
        assert!(matches!(language_of(&dir), Err(Error::NoAlgorithm { .. })));
        std::fs::write(dir.join("algorithm.py"), "").unwrap();
        assert_eq!(language_of(&dir).unwrap(), Language::Python);
        std::fs::write(dir.join("algorithm.c"), "").unwrap();
        let error = language_of(&dir).unwrap_err();
        assert!(matches!(error, Error::Ambiguous { .. }), "{error}");
        assert!(
            error.to_string().contains("algorithm.py, algorithm.c"),
            "{error}"
        );
    }
}
