//! The book's reference pages against the binary they describe: the CLI
//! reference includes `docs/reference/cli/<command>.txt`, and each of
//! those must be exactly what `sandlet <command> --help` prints today.
//! `SANDLET_BLESS=1` rewrites them from the binary (then review the diff).

use std::path::PathBuf;

use crate::fixtures::{repo_root, run_sandlet};

/// The help pages the reference includes: the top level, every
/// subcommand, and the subcommands of `audit` and `budget`.
fn help_pages() -> Vec<(String, Vec<String>)> {
    let mut pages = vec![("sandlet".to_owned(), vec![])];
    for name in subcommands(&[]) {
        let nested = subcommands(std::slice::from_ref(&name));
        for sub in nested {
            pages.push((format!("{name}-{sub}"), vec![name.clone(), sub]));
        }
        pages.push((name.clone(), vec![name]));
    }
    pages
}

/// `sandlet PATH... --help`.
fn help(path: &[String]) -> crate::fixtures::Ran {
    let ran = run_sandlet(path.iter().map(String::as_str).chain(["--help"]));
    assert_eq!(ran.code, Some(0), "{ran:#?}");
    ran
}

/// The commands `sandlet [PATH] --help` lists (without `help`).
fn subcommands(path: &[String]) -> Vec<String> {
    let ran = help(path);
    assert_eq!(ran.code, Some(0), "{ran:#?}");
    let Some((_, commands)) = ran.stdout.split_once("Commands:\n") else {
        return Vec::new();
    };
    commands
        .lines()
        .take_while(|line| line.starts_with("  "))
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

fn cli_dir() -> PathBuf {
    repo_root().join("docs/reference/cli")
}

#[test]
fn the_cli_reference_is_what_help_prints() {
    let bless = std::env::var_os("SANDLET_BLESS").is_some();
    let reference = std::fs::read_to_string(repo_root().join("docs/reference/cli.md")).unwrap();
    let pages = help_pages();
    assert!(pages.len() > 12, "{pages:?}");
    let mut stale = Vec::new();
    for (page, path) in &pages {
        let ran = help(path);
        let file = cli_dir().join(format!("{page}.txt"));
        if bless {
            std::fs::create_dir_all(cli_dir()).unwrap();
            std::fs::write(&file, &ran.stdout).unwrap();
        }
        match std::fs::read_to_string(&file) {
            Ok(text) if text == ran.stdout => {}
            Ok(_) => stale.push(format!("{} differs from `--help`", file.display())),
            Err(e) => stale.push(format!("{}: {e}", file.display())),
        }
        let include = format!("{{{{#include cli/{page}.txt}}}}");
        if !reference.contains(&include) {
            stale.push(format!("docs/reference/cli.md does not include {include}"));
        }
    }
    // No page for a command that no longer exists.
    for entry in std::fs::read_dir(cli_dir()).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        let page = name.strip_suffix(".txt").unwrap_or(&name);
        if !pages.iter().any(|(p, _)| p == page) {
            stale.push(format!("docs/reference/cli/{name} is for no command"));
        }
    }
    assert!(
        stale.is_empty(),
        "the CLI reference is out of date (SANDLET_BLESS=1 cargo test --test integration \
         the_cli_reference rewrites the help pages):\n{}",
        stale.join("\n")
    );
}

/// The README's quick start, run as it is written: the block after the
/// `<!-- quickstart` marker, with `sandlet` on PATH and its state in a
/// fresh directory instead of /tmp/sandlet-quickstart.
#[test]
fn the_readme_quick_start_runs_as_written() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let (_, after) = readme
        .split_once("<!-- quickstart")
        .expect("the README marks its quick start");
    let block = after
        .split_once("```sh\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .map(|(block, _)| block)
        .expect("a sh block after the marker");
    let state = tempfile::tempdir().unwrap();
    let script = block.replace("/tmp/sandlet-quickstart", state.path().to_str().unwrap());
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_sandlet"));
    let path = format!(
        "{}:{}",
        bin.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let ran: crate::fixtures::Ran = std::process::Command::new("bash")
        .args(["-c", &script])
        .current_dir(repo_root())
        .env("PATH", path)
        // The example algorithm is built where the tests build guests.
        .env("CARGO_TARGET_DIR", crate::fixtures::wasm_target_dir())
        .output()
        .unwrap()
        .into();
    assert_eq!(ran.code, Some(0), "{ran:#?}");
    // The run's one line of JSON: a mean per sex.
    let result = ran
        .stdout
        .lines()
        .find(|line| line.starts_with('{'))
        .unwrap_or_else(|| panic!("no result: {ran:#?}"));
    let result: serde_json::Value = serde_json::from_str(result).unwrap();
    let groups = result["groups"].as_array().unwrap();
    let keys: Vec<&str> = groups.iter().filter_map(|g| g["key"].as_str()).collect();
    assert_eq!(keys, ["F", "M"], "{result}");
    let counts: i64 = groups.iter().map(|g| g["count"].as_i64().unwrap()).sum();
    assert_eq!(counts, 240, "{result}");
    // The refused query: exit 1, one line naming the case.
    assert!(ran.stdout.contains("exit status 1"), "{ran:#?}");
    assert!(
        ran.stderr.lines().any(|l| l.starts_with("denied:")),
        "{ran:#?}"
    );
    // The audit log holds the run's query and the refused one, chained.
    assert!(ran.stdout.contains("answered"), "{ran:#?}");
    assert!(ran.stdout.contains("denied"), "{ran:#?}");
    assert!(ran.stdout.contains("records, chain intact"), "{ran:#?}");
}

/// Every relative link of the README names a file of the repository (the
/// book's own links are checked by `scripts/book`).
#[test]
fn the_readme_links_to_files_that_exist() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let mut links = 0;
    let mut missing = Vec::new();
    for (_, rest) in readme
        .match_indices("](")
        .map(|(i, _)| readme.split_at(i + 2))
    {
        let Some(end) = rest.find(')') else { continue };
        let target = &rest[..end];
        if target.contains("://") || target.starts_with('#') {
            continue;
        }
        links += 1;
        let path = target.split('#').next().unwrap();
        if !repo_root().join(path).exists() {
            missing.push(target.to_owned());
        }
    }
    assert!(
        links >= 10,
        "only {links} relative links found in README.md"
    );
    assert!(
        missing.is_empty(),
        "README.md links to missing files: {missing:?}"
    );
}
