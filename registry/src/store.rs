//! The content-addressed module store under the node's state directory.
//!
//! It owns the bytes of every module sandlet has fetched, keyed by their
//! sha256 digest, and the precompiled artifacts made from them, keyed by
//! digest and engine configuration. Guarantees:
//!
//! - nothing enters the store unless its bytes hash to the digest it is
//!   stored under, and every read is checked again, so a corrupt file is
//!   dropped and reported missing, never returned;
//! - writes go to a temporary file in the same directory and are renamed into
//!   place, so a crash or a full disk leaves no partial entry;
//! - concurrent requests for one digest share one download ([`ModuleStore::fetch_once`]),
//!   which is written and hashed in a single pass;
//! - the store stays under its capacity by evicting the least recently used
//!   modules that no run holds ([`ModuleStore::pin`]).
//!
//! Precompiled artifacts are checked the same way (their own sha256 is part
//! of their file name), because wasmtime runs a deserialized artifact's
//! machine code as is.
//!
//! It never decides whether a module may run: that is the allow-list's job.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub use sandlet_core::digest::{Digest, DigestError};
use sandlet_core::state_file::{AtomicFile, is_partial, is_stale_partial, write_atomically};

/// Why the store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The bytes do not hash to the digest they were stored under; nothing
    /// was kept.
    #[error("digest mismatch: expected {expected}, the bytes hash to {actual}")]
    Mismatch {
        /// The digest the module was to be stored under.
        expected: Digest,
        /// The digest of the bytes received.
        actual: Digest,
    },
    /// The module is larger than the whole store.
    #[error(
        "module {digest} is {size} bytes, more than the store's whole capacity of {capacity} bytes"
    )]
    TooLarge {
        /// The module's digest.
        digest: Digest,
        /// Its size in bytes (of a download, what had arrived when it went
        /// over).
        size: u64,
        /// The store's capacity in bytes.
        capacity: u64,
    },
    /// The download stream failed part way; nothing was kept.
    #[error("download failed: {0}")]
    Download(String),
    /// A file or directory of the store could not be read or written.
    #[error("module store {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

#[derive(Debug)]
struct Entry {
    size: u64,
    /// Logical clock of the last use; smaller is older.
    last_used: u64,
    /// Runs holding the module; a pinned module is never evicted.
    pins: usize,
}

#[derive(Debug, Default)]
struct Index {
    entries: HashMap<Digest, Entry>,
    total: u64,
    clock: u64,
}

impl Index {
    /// Records a new entry as the most recently used.
    fn add(&mut self, digest: Digest, size: u64) {
        self.clock += 1;
        self.total += size;
        self.entries.insert(
            digest,
            Entry {
                size,
                last_used: self.clock,
                pins: 0,
            },
        );
    }

    fn touch(&mut self, digest: &Digest) {
        self.clock += 1;
        if let Some(entry) = self.entries.get_mut(digest) {
            entry.last_used = self.clock;
        }
    }
}

/// The module store. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct ModuleStore {
    blobs: PathBuf,
    capacity: u64,
    index: Mutex<Index>,
    /// One lock per digest being fetched, so concurrent pulls of a digest
    /// download once.
    fetching: Mutex<HashMap<Digest, Arc<tokio::sync::Mutex<()>>>>,
}

/// Keeps a module from eviction while a run uses it.
#[derive(Debug)]
pub struct Pin {
    store: Arc<ModuleStore>,
    digest: Digest,
}

impl Drop for Pin {
    fn drop(&mut self) {
        let mut index = self.store.index.lock().expect("store index poisoned");
        if let Some(entry) = index.entries.get_mut(&self.digest) {
            entry.pins = entry.pins.saturating_sub(1);
        }
    }
}

impl ModuleStore {
    /// Opens (or creates) the store in `dir`, holding at most `capacity`
    /// bytes of modules. Leftover temporary files from an interrupted write
    /// are removed once stale (another process may be writing one now).
    pub fn open(dir: &Path, capacity: u64) -> Result<Self, StoreError> {
        let blobs = dir.join("sha256");
        std::fs::create_dir_all(&blobs).map_err(io(&blobs))?;
        let mut index = Index::default();
        for item in std::fs::read_dir(&blobs).map_err(io(&blobs))? {
            let item = item.map_err(io(&blobs))?;
            let path = item.path();
            let name = item.file_name().to_string_lossy().into_owned();
            match format!("sha256:{name}").parse::<Digest>() {
                Ok(digest) => {
                    let size = item.metadata().map_err(io(&path))?.len();
                    index.add(digest, size);
                }
                // A temporary file of a write that never finished; one of
                // another process's write in progress is left alone.
                Err(_) if is_partial(&name) && !is_stale_partial(&path, &name) => {}
                Err(_) => std::fs::remove_file(&path).map_err(io(&path))?,
            }
        }
        Ok(ModuleStore {
            blobs,
            capacity,
            index: Mutex::new(index),
            fetching: Mutex::new(HashMap::new()),
        })
    }

    fn path_of(&self, digest: &Digest) -> PathBuf {
        self.blobs.join(digest.hex())
    }

    /// Bytes of all stored modules.
    pub fn size(&self) -> u64 {
        self.index.lock().expect("store index poisoned").total
    }

    /// Whether the module `digest` is stored (its bytes are not checked).
    pub fn contains(&self, digest: &Digest) -> bool {
        self.index
            .lock()
            .expect("store index poisoned")
            .entries
            .contains_key(digest)
    }

    /// The module's bytes, checked against its digest. A file that no longer
    /// matches is removed and reported as missing.
    pub fn get(&self, digest: &Digest) -> Result<Option<Vec<u8>>, StoreError> {
        if !self.contains(digest) {
            return Ok(None);
        }
        let path = self.path_of(digest);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.forget(digest);
                return Ok(None);
            }
            Err(e) => return Err(io(&path)(e)),
        };
        if Digest::of(&bytes) != *digest {
            tracing::warn!(%digest, "stored module is corrupt; removing it");
            let _ = std::fs::remove_file(&path);
            self.forget(digest);
            return Ok(None);
        }
        self.index
            .lock()
            .expect("store index poisoned")
            .touch(digest);
        Ok(Some(bytes))
    }

    fn forget(&self, digest: &Digest) {
        let mut index = self.index.lock().expect("store index poisoned");
        if let Some(entry) = index.entries.remove(digest) {
            index.total -= entry.size;
        }
    }

    /// Stores `bytes` under `expected` if they hash to it; evicts least
    /// recently used, unpinned modules to stay under capacity.
    pub fn insert(&self, expected: &Digest, bytes: &[u8]) -> Result<(), StoreError> {
        let actual = Digest::of(bytes);
        if actual != *expected {
            return Err(StoreError::Mismatch {
                expected: *expected,
                actual,
            });
        }
        let size = bytes.len() as u64;
        if size > self.capacity {
            return Err(StoreError::TooLarge {
                digest: actual,
                size,
                capacity: self.capacity,
            });
        }
        if self.contains(expected) {
            self.index
                .lock()
                .expect("store index poisoned")
                .touch(expected);
            return Ok(());
        }
        self.make_room(size)?;
        let path = self.path_of(expected);
        write_atomically(&path, bytes).map_err(io(&path))?;
        self.index
            .lock()
            .expect("store index poisoned")
            .add(*expected, size);
        Ok(())
    }

    /// Evicts least recently used, unpinned modules until `incoming` more
    /// bytes fit. If pinned modules alone exceed the capacity, the store
    /// goes over it rather than fail a module that is needed now.
    fn make_room(&self, incoming: u64) -> Result<(), StoreError> {
        let mut index = self.index.lock().expect("store index poisoned");
        while index.total + incoming > self.capacity {
            let victim = index
                .entries
                .iter()
                .filter(|(_, entry)| entry.pins == 0)
                .min_by_key(|(_, entry)| entry.last_used)
                .map(|(digest, _)| *digest);
            let Some(victim) = victim else { break };
            let path = self.path_of(&victim);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(&path)(e)),
            }
            let entry = index.entries.remove(&victim).expect("victim is indexed");
            index.total -= entry.size;
            tracing::info!(digest = %victim, bytes = entry.size, "evicted module from the store");
        }
        Ok(())
    }

    /// Keeps `digest` from eviction until the returned guard is dropped.
    pub fn pin(self: &Arc<Self>, digest: &Digest) -> Pin {
        let mut index = self.index.lock().expect("store index poisoned");
        index.touch(digest);
        if let Some(entry) = index.entries.get_mut(digest) {
            entry.pins += 1;
        }
        Pin {
            store: self.clone(),
            digest: *digest,
        }
    }

    /// Makes sure `digest` is stored, streaming it from `open` if it is
    /// not. The download is written to a temporary file while its digest is
    /// computed (one pass over the bytes), checked, synced and renamed into
    /// place; on any failure nothing is stored. Concurrent callers for one
    /// digest wait for the first download instead of starting their own.
    /// Returns whether this call downloaded.
    pub async fn fetch_once<F, Fut, S, E>(&self, digest: &Digest, open: F) -> Result<bool, E>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<S, E>>,
        S: futures_util::Stream<Item = std::io::Result<bytes::Bytes>>,
        E: From<StoreError>,
    {
        if self.contains(digest) {
            return Ok(false);
        }
        let lock = {
            let mut fetching = self.fetching.lock().expect("fetch table poisoned");
            fetching.entry(*digest).or_default().clone()
        };
        let _guard = lock.lock().await;
        // Someone may have finished the download while we waited.
        let result = if self.contains(digest) {
            Ok(false)
        } else {
            match open().await {
                Ok(stream) => self
                    .insert_stream(digest, stream)
                    .await
                    .map(|()| true)
                    .map_err(E::from),
                Err(e) => Err(e),
            }
        };
        self.fetching
            .lock()
            .expect("fetch table poisoned")
            .remove(digest);
        result
    }

    /// Writes `stream` under `expected` if its bytes hash to it.
    async fn insert_stream<S>(&self, expected: &Digest, stream: S) -> Result<(), StoreError>
    where
        S: futures_util::Stream<Item = std::io::Result<bytes::Bytes>>,
    {
        use futures_util::StreamExt;
        use sha2::Digest as _;
        let mut stream = std::pin::pin!(stream);
        let path = self.path_of(expected);
        let mut temp = AtomicFile::create(&path).map_err(io(&self.blobs))?;
        let partial = temp.temporary_path().to_owned();
        let mut hasher = sha2::Sha256::new();
        let mut size: u64 = 0;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| StoreError::Download(e.to_string()))?;
            size += chunk.len() as u64;
            if size > self.capacity {
                return Err(StoreError::TooLarge {
                    digest: *expected,
                    size,
                    capacity: self.capacity,
                });
            }
            hasher.update(&chunk);
            temp.write_all(&chunk).map_err(io(&partial))?;
        }
        let actual = Digest::from_sha256(hasher.finalize().into());
        if actual != *expected {
            return Err(StoreError::Mismatch {
                expected: *expected,
                actual,
            });
        }
        self.make_room(size)?;
        temp.commit().map_err(io(&path))?;
        self.index
            .lock()
            .expect("store index poisoned")
            .add(*expected, size);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn only_bytes_matching_their_digest_are_stored() {
        let dir = tempfile::tempdir().unwrap();
        let store = ModuleStore::open(dir.path(), 1 << 20).unwrap();
        let digest = Digest::of(b"module");
        let err = store.insert(&digest, b"tampered").unwrap_err();
        assert!(matches!(err, StoreError::Mismatch { .. }), "{err}");
        assert!(store.get(&digest).unwrap().is_none());
        assert_eq!(
            std::fs::read_dir(dir.path().join("sha256"))
                .unwrap()
                .count(),
            0
        );
        store.insert(&digest, b"module").unwrap();
        assert_eq!(store.get(&digest).unwrap().unwrap(), b"module");
    }

    #[test]
    fn a_corrupted_file_is_dropped_not_returned() {
        let dir = tempfile::tempdir().unwrap();
        let store = ModuleStore::open(dir.path(), 1 << 20).unwrap();
        let digest = Digest::of(b"module");
        store.insert(&digest, b"module").unwrap();
        std::fs::write(dir.path().join("sha256").join(digest.hex()), b"modulX").unwrap();
        assert!(store.get(&digest).unwrap().is_none());
        assert!(!store.contains(&digest));
        assert_eq!(store.size(), 0);
    }

    #[test]
    fn reopening_keeps_entries_and_removes_partial_writes() {
        let dir = tempfile::tempdir().unwrap();
        let digest = Digest::of(b"kept");
        {
            let store = ModuleStore::open(dir.path(), 1 << 20).unwrap();
            store.insert(&digest, b"kept").unwrap();
        }
        let blobs = dir.path().join("sha256");
        // A write that died two hours ago, and one another process is
        // making now (a concurrent `sandlet pull` sharing the store).
        let dead = blobs.join(".partial-dead");
        std::fs::write(&dead, b"half").unwrap();
        let two_hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
        std::fs::File::options()
            .write(true)
            .open(&dead)
            .unwrap()
            .set_modified(two_hours_ago)
            .unwrap();
        let live = blobs.join(".partial-live");
        std::fs::write(&live, b"being written").unwrap();
        let store = ModuleStore::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(store.get(&digest).unwrap().unwrap(), b"kept");
        assert!(!dead.exists());
        assert!(live.exists());
        assert_eq!(store.size(), 4, "a write in progress is not a module");
    }

    #[test]
    fn least_recently_used_unpinned_modules_are_evicted() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(ModuleStore::open(dir.path(), 30).unwrap());
        let [a, b, c, d] = [b"aaaaaaaaaa", b"bbbbbbbbbb", b"cccccccccc", b"dddddddddd"];
        let (da, db, dc, dd) = (Digest::of(a), Digest::of(b), Digest::of(c), Digest::of(d));
        store.insert(&da, a).unwrap();
        store.insert(&db, b).unwrap();
        store.insert(&dc, c).unwrap();
        let _pin = store.pin(&da); // oldest, but in use
        store.get(&dc).unwrap(); // c is now more recent than b
        store.insert(&dd, d).unwrap();
        assert!(store.contains(&da), "a pinned module is never evicted");
        assert!(
            !store.contains(&db),
            "b was the least recently used unpinned module"
        );
        assert!(store.contains(&dc) && store.contains(&dd));
        assert_eq!(store.size(), 30);
        let big = vec![0u8; 31];
        assert!(matches!(
            store.insert(&Digest::of(&big), &big),
            Err(StoreError::TooLarge { .. })
        ));
    }

    fn chunks(
        parts: &[&'static [u8]],
    ) -> impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + use<> {
        futures_util::stream::iter(
            parts
                .iter()
                .map(|p| Ok(bytes::Bytes::from_static(p)))
                .collect::<Vec<_>>(),
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_fetches_of_one_digest_download_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(ModuleStore::open(dir.path(), 1 << 20).unwrap());
        let downloads = Arc::new(AtomicUsize::new(0));
        let digest = Digest::of(b"shared module");
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let store = store.clone();
            let downloads = downloads.clone();
            tasks.push(tokio::spawn(async move {
                store
                    .fetch_once(&digest, || async {
                        downloads.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        Ok::<_, StoreError>(chunks(&[b"shared ", b"module"]))
                    })
                    .await
            }));
        }
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        assert_eq!(downloads.load(Ordering::SeqCst), 1);
        assert_eq!(store.get(&digest).unwrap().unwrap(), b"shared module");
    }

    #[tokio::test]
    async fn a_fetch_that_returns_the_wrong_bytes_stores_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = ModuleStore::open(dir.path(), 1 << 20).unwrap();
        let digest = Digest::of(b"expected");
        let result = store
            .fetch_once(&digest, || async {
                Ok::<_, StoreError>(chunks(&[b"expec"]))
            })
            .await;
        assert!(
            matches!(result, Err(StoreError::Mismatch { .. })),
            "{result:?}"
        );
        assert!(!store.contains(&digest));
        // A download that breaks off leaves nothing either.
        let broken = futures_util::stream::iter(vec![
            Ok(bytes::Bytes::from_static(b"exp")),
            Err(std::io::Error::other("connection reset")),
        ]);
        let result = store
            .fetch_once(&digest, || async { Ok::<_, StoreError>(broken) })
            .await;
        assert!(matches!(result, Err(StoreError::Download(_))), "{result:?}");
        assert_eq!(
            std::fs::read_dir(dir.path().join("sha256"))
                .unwrap()
                .count(),
            0
        );
    }
}
