//! `sandlet new --lang L DIR`: an algorithm that builds and runs as it is
//! (the mean of one column), with a test (`test/run`: build, run on a
//! small dataset, compare with the expected result).

use std::path::Path;

use super::{Error, Language, Result, WIT, io, name_of, write};

/// Files every scaffold has, whatever its language.
const COMMON: &[(&str, &str)] = &[
    (
        "README.md",
        include_str!("../../sdk/templates/common/README.md"),
    ),
    (".gitignore", "/build/\n/target/\n"),
    (
        "test/station.yaml",
        include_str!("../../sdk/templates/common/test/station.yaml"),
    ),
    (
        "test/example.csv",
        include_str!("../../sdk/templates/common/test/example.csv"),
    ),
    (
        "test/input.json",
        include_str!("../../sdk/templates/common/test/input.json"),
    ),
    (
        "test/expected.json",
        include_str!("../../sdk/templates/common/test/expected.json"),
    ),
];

/// The test script, made executable.
const TEST_RUN: &str = include_str!("../../sdk/templates/common/test/run");

fn sources(language: Language) -> &'static [(&'static str, &'static str)] {
    match language {
        // The world is the crate's own copy: wit-bindgen's macro reads it
        // at compile time. The other languages build against the copy
        // inside sandlet, the one their SDK was written for.
        Language::Rust => &[
            ("wit/algorithm.wit", WIT),
            (
                "Cargo.toml",
                include_str!("../../sdk/templates/rust/Cargo.toml"),
            ),
            (
                "src/lib.rs",
                include_str!("../../sdk/templates/rust/src/lib.rs"),
            ),
        ],
        Language::Python => &[(
            "algorithm.py",
            include_str!("../../sdk/templates/python/algorithm.py"),
        )],
        Language::Js => &[(
            "algorithm.js",
            include_str!("../../sdk/templates/js/algorithm.js"),
        )],
        Language::C => &[(
            "algorithm.c",
            include_str!("../../sdk/templates/c/algorithm.c"),
        )],
    }
}

/// Writes a new algorithm in `language` into `dir` (created, or empty).
/// Nothing is overwritten: a directory with anything in it is refused
/// before a file is written.
pub fn scaffold(language: Language, dir: &Path) -> Result<()> {
    let name = name_of(dir)?;
    if dir.exists() {
        let mut entries = std::fs::read_dir(dir).map_err(io(dir))?;
        if entries.next().is_some() {
            return Err(Error::NotEmpty {
                dir: dir.to_owned(),
            });
        }
    }
    let fill = |text: &str| {
        text.replace("{{name}}", &name)
            .replace("{{language}}", language.title())
    };
    for (path, text) in COMMON.iter().chain(sources(language)) {
        write(&dir.join(path), &fill(text))?;
    }
    let test = dir.join("test/run");
    write(&test, TEST_RUN)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&test, std::fs::Permissions::from_mode(0o755)).map_err(io(&test))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_language_gets_its_sources_the_world_and_the_test() {
        for language in Language::ALL {
            let root = tempfile::tempdir().unwrap();
            let dir = root.path().join("mean");
            scaffold(language, &dir).unwrap();
            assert!(dir.join(language.marker()).is_file(), "{language:?}");
            if language == Language::Rust {
                let wit = std::fs::read_to_string(dir.join("wit/algorithm.wit")).unwrap();
                assert_eq!(wit, WIT);
            }
            let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
            assert!(readme.starts_with("# mean\n"), "{readme}");
            assert!(readme.contains(language.title()));
            let mode = std::fs::metadata(dir.join("test/run")).unwrap();
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(mode.permissions().mode() & 0o111, 0o111);
            for (path, _) in sources(language) {
                let text = std::fs::read_to_string(dir.join(path)).unwrap();
                assert!(!text.contains("{{"), "{path} keeps a placeholder");
            }
        }
    }

    #[test]
    fn a_directory_with_anything_in_it_is_refused_and_left_as_it_was() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("mean");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("algorithm.py"), "mine").unwrap();
        let error = scaffold(Language::Python, &dir).unwrap_err();
        assert!(matches!(error, Error::NotEmpty { .. }), "{error}");
        assert_eq!(
            std::fs::read_to_string(dir.join("algorithm.py")).unwrap(),
            "mine"
        );
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        // An empty directory is fine.
        let empty = root.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        scaffold(Language::C, &empty).unwrap();
    }
}
