//! Raw dataset files for WASI commands: what `rawFiles: true` grants.
//!
//! A granted dataset whose policy has `rawFiles: true` is mounted read-only
//! at `/data/<name>/` for WASI commands (algorithm components reach data only
//! through queries). A directory source is preopened as it is. A file
//! source is given a directory of its own under the run's staging
//! directory, holding a hard link to the file (a copy where the staging
//! directory is on another file system), so that the guest sees that one
//! file and not its neighbours.

use std::path::{Path, PathBuf};

use super::{DataConfig, SourceConfig};

/// Where raw dataset files appear in the guest.
pub const RAW_FILES_ROOT: &str = "/data";

/// Raw files that could not be staged.
#[derive(Debug, thiserror::Error)]
#[error("raw files of dataset {dataset:?}: {what} {}: {source}", path.display())]
pub struct RawFilesError {
    /// The dataset whose files could not be staged.
    pub dataset: String,
    what: &'static str,
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

/// A host directory to mount read-only in the guest: a dataset's raw files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawMount {
    /// The host directory that holds the dataset's file.
    pub host: PathBuf,
    /// `/data/<name>`.
    pub guest: String,
}

/// The read-only mounts of the granted datasets that allow raw files,
/// staging single files under `staging` (one directory per dataset).
/// Datasets without `rawFiles: true` are left out.
pub fn raw_file_mounts(
    config: &DataConfig,
    grants: &[String],
    staging: &Path,
) -> Result<Vec<RawMount>, RawFilesError> {
    let mut mounts = Vec::new();
    for name in grants {
        let Some(dataset) = config.dataset(name) else {
            continue;
        };
        if !dataset.policy.raw_files {
            continue;
        }
        let source = match &dataset.source {
            SourceConfig::Csv(path) | SourceConfig::Parquet(path) => path,
            // Refused when the configuration is read.
            SourceConfig::Postgres { .. } => continue,
        };
        let error = |what: &'static str, path: &Path| {
            let dataset = name.clone();
            let path = path.to_owned();
            move |source| RawFilesError {
                dataset,
                what,
                path,
                source,
            }
        };
        let host = if source.is_dir() {
            source.clone()
        } else {
            let dir = staging.join(name);
            std::fs::create_dir_all(&dir).map_err(error("cannot create", &dir))?;
            let file_name = source.file_name().unwrap_or(name.as_ref());
            let staged = dir.join(file_name);
            if !staged.exists()
                && let Err(e) = std::fs::hard_link(source, &staged)
            {
                tracing::info!(dataset = %name, error = %e, "cannot hard-link raw files; copying");
                std::fs::copy(source, &staged).map_err(error("cannot copy", source))?;
            }
            dir
        };
        mounts.push(RawMount {
            host,
            guest: format!("{RAW_FILES_ROOT}/{name}"),
        });
    }
    Ok(mounts)
}

/// The host paths of every dataset's files, for refusing volumes that would
/// expose them.
fn dataset_paths(config: &DataConfig) -> Vec<(String, PathBuf)> {
    config
        .datasets
        .iter()
        .filter_map(|d| match &d.source {
            SourceConfig::Csv(path) | SourceConfig::Parquet(path) => {
                Some((d.name.clone(), path.clone()))
            }
            SourceConfig::Postgres { .. } => None,
        })
        .collect()
}

/// The dataset whose files a host directory or file would expose (the
/// directory holds them, or is inside a dataset directory, or the file is
/// one of them), comparing canonical paths so that symlinks do not hide an
/// overlap, and for a file its device and inode so that a hard link does
/// not either.
pub fn exposed_dataset(config: &DataConfig, host: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let canonical = host.canonicalize().ok()?;
    let inode = std::fs::metadata(&canonical)
        .ok()
        .filter(|m| m.is_file())
        .map(|m| (m.dev(), m.ino()));
    dataset_paths(config).into_iter().find_map(|(name, path)| {
        let path = path.canonicalize().unwrap_or(path);
        let same_file = inode.is_some_and(|inode| {
            std::fs::metadata(&path).is_ok_and(|m| (m.dev(), m.ino()) == inode)
        });
        (same_file || path.starts_with(&canonical) || canonical.starts_with(&path)).then_some(name)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DatasetConfig, DisclosurePolicy};

    fn config(dir: &Path, raw: bool) -> DataConfig {
        std::fs::create_dir_all(dir.join("srv")).unwrap();
        std::fs::write(dir.join("srv/p.csv"), "a\n1\n").unwrap();
        std::fs::write(dir.join("srv/other.csv"), "secret\n").unwrap();
        DataConfig {
            datasets: vec![DatasetConfig {
                name: "p".into(),
                source: SourceConfig::Csv(dir.join("srv/p.csv")),
                policy: DisclosurePolicy {
                    raw_files: raw,
                    ..DisclosurePolicy::default()
                },
            }],
            default_grants: Default::default(),
        }
    }

    #[test]
    fn a_raw_file_gets_a_directory_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path(), true);
        let staging = dir.path().join("staging");
        let mounts = raw_file_mounts(&config, &["p".into()], &staging).unwrap();
        assert_eq!(mounts.len(), 1);
        assert_eq!(mounts[0].guest, "/data/p");
        let names: Vec<_> = std::fs::read_dir(&mounts[0].host)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["p.csv"]);
        // Staging twice (a restarted container) is fine.
        raw_file_mounts(&config, &["p".into()], &staging).unwrap();
        // Not granted, or not allowed: nothing.
        assert!(raw_file_mounts(&config, &[], &staging).unwrap().is_empty());
        let closed = super::tests::config(dir.path(), false);
        assert!(
            raw_file_mounts(&closed, &["p".into()], &staging)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn host_directories_that_hold_or_sit_in_dataset_files_are_found() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path(), false);
        assert_eq!(exposed_dataset(&config, dir.path()).as_deref(), Some("p"));
        assert_eq!(
            exposed_dataset(&config, &dir.path().join("srv")).as_deref(),
            Some("p")
        );
        std::fs::create_dir(dir.path().join("elsewhere")).unwrap();
        assert_eq!(
            exposed_dataset(&config, &dir.path().join("elsewhere")),
            None
        );
        std::os::unix::fs::symlink(dir.path().join("srv"), dir.path().join("link")).unwrap();
        assert_eq!(
            exposed_dataset(&config, &dir.path().join("link")).as_deref(),
            Some("p")
        );
    }
}
