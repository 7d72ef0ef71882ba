//! Dataset files, read through a cap-std directory handle.
//!
//! Each CSV or Parquet dataset gets an object store of its own, registered
//! in its run's DataFusion session under `sandlet-dataset://<name>/`. The
//! store holds one [`cap_std::fs::Dir`]: the dataset's directory, or the
//! directory that holds its file, opened once with ambient authority when
//! the session starts. Every read after that goes through the handle, which
//! refuses absolute paths, `..` and symlinks that lead out of it; the store
//! cannot write, copy, rename or delete.

use std::fmt;
use std::io;
use std::ops::Range;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use cap_std::ambient_authority;
use cap_std::fs::Dir;
use datafusion::object_store::path::Path;
use datafusion::object_store::{
    Attributes, CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload,
    ObjectMeta, ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};
use futures_util::StreamExt;
use futures_util::stream::BoxStream;

/// The URL scheme of dataset stores.
pub(crate) const SCHEME: &str = "sandlet-dataset";

/// A read-only object store over one dataset's directory.
#[derive(Debug)]
pub(crate) struct DatasetFiles {
    name: String,
    dir: Arc<Dir>,
}

impl fmt::Display for DatasetFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SCHEME}://{}/", self.name)
    }
}

impl DatasetFiles {
    /// Opens the directory of a dataset's files and returns the store with
    /// the URL of the dataset in it: `sandlet-dataset://<name>/<file>`, or
    /// `sandlet-dataset://<name>/` for a directory of files.
    pub fn open(name: &str, source: &FsPath) -> io::Result<(DatasetFiles, String)> {
        let (dir, url) = if source.is_dir() {
            (source, format!("{SCHEME}://{name}/"))
        } else {
            let parent = source
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(FsPath::new("."));
            let file = source
                .file_name()
                .ok_or_else(|| io::Error::other("the source names no file"))?
                .to_str()
                .ok_or_else(|| io::Error::other("the file name is not UTF-8"))?;
            (parent, format!("{SCHEME}://{name}/{}", encode(file)))
        };
        let dir = Dir::open_ambient_dir(dir, ambient_authority())?;
        Ok((
            DatasetFiles {
                name: name.to_owned(),
                dir: Arc::new(dir),
            },
            url,
        ))
    }

    fn error(&self, location: &Path, error: io::Error) -> datafusion::object_store::Error {
        if error.kind() == io::ErrorKind::NotFound {
            datafusion::object_store::Error::NotFound {
                path: location.to_string(),
                source: Box::new(error),
            }
        } else {
            datafusion::object_store::Error::Generic {
                store: "sandlet-dataset",
                source: Box::new(error),
            }
        }
    }

    fn meta(&self, location: &Path, metadata: &cap_std::fs::Metadata) -> ObjectMeta {
        let modified = metadata
            .modified()
            .map(|t| t.into_std())
            .unwrap_or(std::time::UNIX_EPOCH);
        ObjectMeta {
            location: location.clone(),
            last_modified: chrono::DateTime::<chrono::Utc>::from(modified),
            size: metadata.len(),
            e_tag: None,
            version: None,
        }
    }

    /// Every file under `prefix`, recursively, in name order.
    fn walk(&self, prefix: Option<&Path>) -> Vec<Result<ObjectMeta>> {
        let mut out = Vec::new();
        let mut pending: Vec<Path> = vec![prefix.cloned().unwrap_or_default()];
        while let Some(path) = pending.pop() {
            match self.children(&path) {
                Ok((files, dirs)) => {
                    out.extend(files.into_iter().map(Ok));
                    pending.extend(dirs.into_iter().rev());
                }
                Err(e) => out.push(Err(e)),
            }
        }
        out
    }

    /// The files and directories directly in `path`.
    fn children(&self, path: &Path) -> Result<(Vec<ObjectMeta>, Vec<Path>)> {
        let relative = if path.as_ref().is_empty() {
            "."
        } else {
            path.as_ref()
        };
        let entries = self
            .dir
            .read_dir(relative)
            .map_err(|e| self.error(path, e))?;
        let mut files = Vec::new();
        let mut dirs = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| self.error(path, e))?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            let child = path.clone().join(name.as_str());
            let metadata = entry.metadata().map_err(|e| self.error(&child, e))?;
            if metadata.is_dir() {
                dirs.push(child);
            } else if metadata.is_file() {
                files.push(self.meta(&child, &metadata));
            }
        }
        files.sort_by(|a, b| a.location.cmp(&b.location));
        dirs.sort();
        Ok((files, dirs))
    }
}

/// Percent-encodes what a URL path may not hold as is.
fn encode(file: &str) -> String {
    Path::from(file).to_string()
}

fn read_only() -> datafusion::object_store::Error {
    datafusion::object_store::Error::NotSupported {
        source: "dataset files are read-only".into(),
    }
}

#[async_trait::async_trait]
impl ObjectStore for DatasetFiles {
    async fn put_opts(&self, _: &Path, _: PutPayload, _: PutOptions) -> Result<PutResult> {
        Err(read_only())
    }

    async fn put_multipart_opts(
        &self,
        _: &Path,
        _: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        Err(read_only())
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let file = self
            .dir
            .open(location.as_ref())
            .map_err(|e| self.error(location, e))?;
        let metadata = file.metadata().map_err(|e| self.error(location, e))?;
        if !metadata.is_file() {
            return Err(self.error(location, io::Error::other("not a file")));
        }
        let meta = self.meta(location, &metadata);
        options.check_preconditions(&meta)?;
        let range: Range<u64> =
            match &options.range {
                Some(range) => range.as_range(meta.size).map_err(|e| {
                    datafusion::object_store::Error::Generic {
                        store: "sandlet-dataset",
                        source: Box::new(e),
                    }
                })?,
                None => 0..meta.size,
            };
        Ok(GetResult {
            payload: GetResultPayload::File(
                file.into_std(),
                PathBuf::from(format!("{self}{location}")),
            ),
            meta,
            range,
            attributes: Attributes::default(),
        })
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        locations.map(|_| Err(read_only())).boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        futures_util::stream::iter(self.walk(prefix)).boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let path = prefix.cloned().unwrap_or_default();
        let (objects, common_prefixes) = self.children(&path)?;
        Ok(ListResult {
            common_prefixes,
            objects,
        })
    }

    async fn copy_opts(&self, _: &Path, _: &Path, _: CopyOptions) -> Result<()> {
        Err(read_only())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::object_store::ObjectStoreExt;

    #[tokio::test]
    async fn reads_stay_inside_the_dataset_directory() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("data")).unwrap();
        std::fs::write(root.path().join("data/p.csv"), "a\n1\n2\n").unwrap();
        std::fs::write(root.path().join("secret.txt"), "no").unwrap();
        std::os::unix::fs::symlink(
            root.path().join("secret.txt"),
            root.path().join("data/link.txt"),
        )
        .unwrap();
        let (store, url) = DatasetFiles::open("p", &root.path().join("data/p.csv")).unwrap();
        assert_eq!(url, "sandlet-dataset://p/p.csv");
        let bytes = store
            .get(&Path::from("p.csv"))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(&bytes[..], b"a\n1\n2\n");
        let part = store.get_range(&Path::from("p.csv"), 2..5).await.unwrap();
        assert_eq!(&part[..], b"1\n2");
        for outside in ["../secret.txt", "link.txt"] {
            assert!(store.get(&Path::from(outside)).await.is_err(), "{outside}");
        }
        assert!(
            store
                .put(&Path::from("new.csv"), PutPayload::from("x"))
                .await
                .is_err()
        );
        assert!(store.delete(&Path::from("p.csv")).await.is_err());
        assert!(root.path().join("data/p.csv").exists());
    }
}
