//! Single host files given to a guest: hostPath volumes of type `File` or
//! `FileOrCreate` (or untyped ones that name a file).
//!
//! A WASI guest is given directories only (preopens), so a file mounted at
//! `/app/task/input` is given as a directory of this module's, mounted at
//! `/app/task`, that holds `input` and nothing else (other file mounts of
//! the same guest directory go in the same one). The file is copied in
//! when the container starts; for a read-write mount, what the guest left
//! there is written back into the host file, in place, when the container
//! ends and before it is reported terminated, so that whoever waits for
//! the pod to finish reads the final content. A read-only mount's file is
//! never written back: the host file cannot change, whatever the guest
//! does to its copy.
//!
//! This module owns the staging directories (under the pod's directory, so
//! that they go with it) and the copies in both directions. It never
//! follows a link the guest made: a staged file that is no longer a regular
//! file when the container ends is not written back. Which files a pod may
//! mount was decided before ([`crate::pods::volumes`] checks the hostPath and
//! that it is no dataset's file); the sandbox enforces the directory's
//! access.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::pods::env::ConfigError;

/// One file a container mounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileMount {
    /// The host file (a hostPath).
    pub(crate) host: PathBuf,
    /// Where the guest sees it: an absolute path, not `/`.
    pub(crate) guest_path: String,
    pub(crate) read_only: bool,
}

/// A staged directory to preopen for the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StagedDir {
    pub(crate) host: PathBuf,
    pub(crate) guest: String,
    /// Read-write when any file in it is mounted read-write.
    pub(crate) read_only: bool,
}

/// The staged copies of one container run's file mounts.
#[derive(Debug, Default)]
pub(crate) struct StagedFiles {
    pub(crate) dirs: Vec<StagedDir>,
    /// Read-write files: (staged copy, host file).
    write_back: Vec<(PathBuf, PathBuf)>,
}

/// Splits `/a/b/name` into (`/a/b`, `name`).
fn split(guest_path: &str) -> Option<(String, String)> {
    let trimmed = guest_path.trim_end_matches('/');
    let (parent, name) = trimmed.rsplit_once('/')?;
    if name.is_empty() || name == "." || name == ".." {
        return None;
    }
    let parent = if parent.is_empty() { "/" } else { parent };
    Some((parent.to_owned(), name.to_owned()))
}

fn normalized(path: &str) -> &str {
    match path.trim_end_matches('/') {
        "" => "/",
        p => p,
    }
}

/// Copies each file into `staging/<n>/` (emptied first), one directory per
/// guest directory. `dir_mounts` are the guest paths of the container's
/// directory mounts: a file's guest directory may not be one of them (the
/// guest would see one of the two, not both), nor may a file's path.
pub(crate) fn stage(
    staging: &Path,
    mounts: &[FileMount],
    dir_mounts: &[&str],
) -> Result<StagedFiles, ConfigError> {
    let mut groups: BTreeMap<String, Vec<(String, &FileMount)>> = BTreeMap::new();
    for mount in mounts {
        let (parent, name) = split(&mount.guest_path).ok_or_else(|| {
            ConfigError(format!(
                "mountPath {:?} cannot hold a file: it names no file",
                mount.guest_path
            ))
        })?;
        for dir in dir_mounts.iter().map(|d| normalized(d)) {
            if dir == parent || dir == normalized(&mount.guest_path) {
                return Err(ConfigError(format!(
                    "mountPath {:?}: a file is mounted in (or at) {dir:?}, which is also a \
                     directory mount; wasm guests cannot see both",
                    mount.guest_path
                )));
            }
        }
        let group = groups.entry(parent).or_default();
        if group.iter().any(|(n, _)| *n == name) {
            return Err(ConfigError(format!(
                "mountPath {:?} is mounted twice",
                mount.guest_path
            )));
        }
        group.push((name, mount));
    }
    if staging.exists() {
        std::fs::remove_dir_all(staging)
            .map_err(|e| ConfigError(format!("cannot empty {}: {e}", staging.display())))?;
    }
    let mut staged = StagedFiles::default();
    for (n, (guest, files)) in groups.into_iter().enumerate() {
        let dir = staging.join(n.to_string());
        std::fs::create_dir_all(&dir)
            .map_err(|e| ConfigError(format!("cannot create {}: {e}", dir.display())))?;
        for (name, mount) in &files {
            let copy = dir.join(name);
            std::fs::copy(&mount.host, &copy).map_err(|e| {
                ConfigError(format!(
                    "cannot copy hostPath {} for mountPath {:?}: {e}",
                    mount.host.display(),
                    mount.guest_path
                ))
            })?;
            if !mount.read_only {
                staged.write_back.push((copy, mount.host.clone()));
            }
        }
        staged.dirs.push(StagedDir {
            host: dir,
            guest,
            read_only: files.iter().all(|(_, m)| m.read_only),
        });
    }
    Ok(staged)
}

impl StagedFiles {
    /// Writes each read-write file's staged copy back into its host file
    /// (truncated and rewritten in place: same inode, owner and mode).
    /// Returns what could not be written back, one line each; the others
    /// are written whatever happened to one.
    pub(crate) fn write_back(&self) -> Vec<String> {
        let mut failed = Vec::new();
        for (copy, host) in &self.write_back {
            if let Err(e) = write_back_one(copy, host) {
                failed.push(format!("{}: {e}", host.display()));
            }
        }
        failed
    }
}

fn write_back_one(copy: &Path, host: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    // The guest could have replaced its copy with a link to anything the
    // node can read, or with a fifo that would block the node: look at
    // what is there without following it, then make sure that is what was
    // opened. (The guest has ended: nothing changes it meanwhile.)
    let seen = match std::fs::symlink_metadata(copy) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(std::io::Error::other(
                "the guest removed the file; the host file is unchanged",
            ));
        }
        Err(e) => return Err(e),
    };
    if seen.file_type().is_symlink() {
        return Err(std::io::Error::other(
            "the guest replaced the file with a link; the host file is unchanged",
        ));
    }
    if !seen.is_file() {
        return Err(std::io::Error::other(
            "the guest replaced the file with something else; the host file is unchanged",
        ));
    }
    let mut source = std::fs::File::open(copy)?;
    let opened = source.metadata()?;
    if (opened.dev(), opened.ino()) != (seen.dev(), seen.ino()) {
        return Err(std::io::Error::other(
            "the file changed while it was opened; the host file is unchanged",
        ));
    }
    let mut target = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(host)?;
    std::io::copy(&mut source, &mut target)?;
    target.flush()?;
    target.sync_data()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(dir: &Path, name: &str, content: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, content).unwrap();
        path
    }

    #[test]
    fn files_of_one_guest_directory_share_a_staged_directory_and_only_rw_ones_go_back() {
        let host = tempfile::tempdir().unwrap();
        let staging = tempfile::tempdir().unwrap();
        let input = file(host.path(), "in", "question");
        let output = file(host.path(), "out", "");
        let other = file(host.path(), "other", "x");
        let mounts = [
            FileMount {
                host: input.clone(),
                guest_path: "/app/task/input".into(),
                read_only: true,
            },
            FileMount {
                host: output.clone(),
                guest_path: "/app/task/output/".into(),
                read_only: false,
            },
            FileMount {
                host: other.clone(),
                guest_path: "/etc/other".into(),
                read_only: true,
            },
        ];
        let staging_dir = staging.path().join("c");
        let staged = stage(&staging_dir, &mounts, &["/app/task/session", "/data"]).unwrap();
        assert_eq!(staged.dirs.len(), 2);
        let task = staged.dirs.iter().find(|d| d.guest == "/app/task").unwrap();
        assert!(!task.read_only);
        let mut names: Vec<_> = std::fs::read_dir(&task.host)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["input", "output"]);
        assert_eq!(
            std::fs::read_to_string(task.host.join("input")).unwrap(),
            "question"
        );
        let etc = staged.dirs.iter().find(|d| d.guest == "/etc").unwrap();
        assert!(etc.read_only);

        // The guest writes both; only the read-write one reaches the host,
        // into the same inode.
        use std::os::unix::fs::MetadataExt;
        let inode = std::fs::metadata(&output).unwrap().ino();
        std::fs::write(task.host.join("input"), "changed").unwrap();
        std::fs::write(task.host.join("output"), "answer").unwrap();
        assert!(staged.write_back().is_empty());
        assert_eq!(std::fs::read_to_string(&input).unwrap(), "question");
        assert_eq!(std::fs::read_to_string(&output).unwrap(), "answer");
        assert_eq!(std::fs::metadata(&output).unwrap().ino(), inode);

        // A second run starts from the host files again.
        let again = stage(&staging_dir, &mounts, &[]).unwrap();
        let task = again.dirs.iter().find(|d| d.guest == "/app/task").unwrap();
        assert_eq!(
            std::fs::read_to_string(task.host.join("input")).unwrap(),
            "question"
        );
        assert_eq!(
            std::fs::read_to_string(task.host.join("output")).unwrap(),
            "answer"
        );
    }

    #[test]
    fn a_guest_cannot_turn_its_copy_into_a_way_to_other_host_files() {
        let host = tempfile::tempdir().unwrap();
        let staging = tempfile::tempdir().unwrap();
        let secret = file(host.path(), "secret", "the node's key");
        let output = file(host.path(), "out", "before");
        let mounts = [FileMount {
            host: output.clone(),
            guest_path: "/task/output".into(),
            read_only: false,
        }];
        let staged_at = |staged: &StagedFiles| staged.dirs[0].host.join("output");

        // A symlink to another host file in place of the copy.
        let staged = stage(&staging.path().join("a"), &mounts, &[]).unwrap();
        std::fs::remove_file(staged_at(&staged)).unwrap();
        std::os::unix::fs::symlink(&secret, staged_at(&staged)).unwrap();
        let failed = staged.write_back();
        assert_eq!(failed.len(), 1, "{failed:?}");
        assert!(failed[0].contains("with a link"), "{failed:?}");
        assert_eq!(std::fs::read_to_string(&output).unwrap(), "before");

        // A hard link to it is a regular file the guest could not have
        // made (its sandbox has no path to the secret); a directory, a
        // fifo or nothing at all are refused.
        let staged = stage(&staging.path().join("b"), &mounts, &[]).unwrap();
        std::fs::remove_file(staged_at(&staged)).unwrap();
        std::fs::create_dir(staged_at(&staged)).unwrap();
        assert!(staged.write_back()[0].contains("something else"));
        let staged = stage(&staging.path().join("c"), &mounts, &[]).unwrap();
        std::fs::remove_file(staged_at(&staged)).unwrap();
        let made = std::process::Command::new("mkfifo")
            .arg(staged_at(&staged))
            .status()
            .unwrap();
        assert!(made.success());
        assert!(staged.write_back()[0].contains("something else"));
        let staged = stage(&staging.path().join("d"), &mounts, &[]).unwrap();
        std::fs::remove_file(staged_at(&staged)).unwrap();
        assert!(staged.write_back()[0].contains("removed"));
        assert_eq!(std::fs::read_to_string(&output).unwrap(), "before");

        // A host file gone meanwhile is not created again.
        let staged = stage(&staging.path().join("e"), &mounts, &[]).unwrap();
        std::fs::remove_file(&output).unwrap();
        assert_eq!(staged.write_back().len(), 1);
        assert!(!output.exists());
    }

    #[test]
    fn clashing_mount_paths_are_named() {
        let host = tempfile::tempdir().unwrap();
        let staging = tempfile::tempdir().unwrap();
        let f = file(host.path(), "f", "");
        let mount = |guest: &str| FileMount {
            host: f.clone(),
            guest_path: guest.into(),
            read_only: true,
        };
        let cases: [(&[FileMount], &[&str], &str); 5] = [
            (
                &[mount("/task/input")],
                &["/task"],
                "also a directory mount",
            ),
            (
                &[mount("/task/input")],
                &["/task/"],
                "also a directory mount",
            ),
            (
                &[mount("/task/input")],
                &["/task/input"],
                "also a directory mount",
            ),
            // A directory mounted deeper is a preopen of its own: fine.
            (&[mount("/task/input")], &["/task/session", "/"], ""),
            (
                &[mount("/task/input"), mount("/task/input/")],
                &[],
                "mounted twice",
            ),
        ];
        for (n, (mounts, dirs, error)) in cases.into_iter().enumerate() {
            let result = stage(&staging.path().join(n.to_string()), mounts, dirs);
            if error.is_empty() {
                assert!(result.is_ok(), "{n}");
            } else {
                let e = result.unwrap_err();
                assert!(e.0.contains(error), "{n}: {e}");
            }
        }
        for bad in ["/", "/task/..", "/task/."] {
            let e = stage(&staging.path().join("x"), &[mount(bad)], &[]).unwrap_err();
            assert!(e.0.contains("names no file"), "{bad}: {e}");
        }
    }
}
