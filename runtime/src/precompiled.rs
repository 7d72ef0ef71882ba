//! The precompile cache: native artifacts of modules, so that a module
//! compiled once starts without compiling again.
//!
//! Artifacts live in `<dir>/<engine>/<module digest>.<artifact digest>.cwasm`,
//! where `<engine>` hashes the engine's compilation settings (wasmtime
//! version, target, tunables): an engine configured differently never sees
//! another's artifacts. Before an artifact is deserialized its bytes are
//! checked against the digest in its name, because wasmtime runs the machine
//! code of a deserialized artifact as is; an artifact that fails the check,
//! or that wasmtime refuses, is deleted and the module recompiled. Writes are
//! atomic (temporary file and rename).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sha2::{Digest as _, Sha256};

use crate::engine::{ModuleError, PreparedModule, SandboxEngine};
use sandlet_core::Digest;

/// How a module was obtained from the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// The module was already prepared in this process.
    InMemory,
    /// A valid artifact was loaded; nothing was compiled.
    Hit,
    /// No artifact existed; the module was compiled and the artifact stored.
    Compiled,
    /// An artifact existed but was corrupt or stale; it was replaced.
    Recompiled,
}

/// Precompiled artifacts for one engine configuration.
#[derive(Debug)]
pub struct PrecompileCache {
    dir: PathBuf,
    /// Modules already prepared in this process: a second start neither
    /// reads nor deserializes anything.
    prepared: Mutex<HashMap<Digest, PreparedModule>>,
    /// One lock per digest being compiled, so concurrent starts of a new
    /// module compile it once.
    compiling: Mutex<HashMap<Digest, Arc<Mutex<()>>>>,
}

/// Feeds `Hash` output into sha256, so the engine key is the same in every
/// process and Rust release (unlike `DefaultHasher`).
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        let hash = self.0.clone().finalize();
        u64::from_le_bytes(hash[..8].try_into().expect("sha256 has 32 bytes"))
    }
}

impl PrecompileCache {
    /// The cache under `root` for `engine`'s configuration.
    pub fn open(root: &Path, engine: &SandboxEngine) -> Result<Self, ModuleError> {
        let mut hasher = Sha256Hasher(Sha256::new());
        engine
            .wasmtime()
            .precompile_compatibility_hash()
            .hash(&mut hasher);
        let dir = root.join(format!("{:016x}", hasher.finish()));
        std::fs::create_dir_all(&dir).map_err(|e| cache_error(&dir, e))?;
        // Temporary files of writes that never finished (not those of
        // another process writing now: they are younger).
        for entry in std::fs::read_dir(&dir).map_err(|e| cache_error(&dir, e))? {
            let entry = entry.map_err(|e| cache_error(&dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if sandlet_core::state_file::is_stale_partial(&entry.path(), &name) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(PrecompileCache {
            dir,
            prepared: Mutex::new(HashMap::new()),
            compiling: Mutex::new(HashMap::new()),
        })
    }

    /// The module for `bytes` (whose digest is `digest`): prepared already
    /// in this process, loaded from a stored artifact when a valid one
    /// exists, else compiled and stored. Concurrent calls for one digest
    /// compile once. Compiling blocks: call it off the async executor.
    ///
    /// `engine` must be the engine the cache was opened for.
    pub fn load_or_compile(
        &self,
        engine: &SandboxEngine,
        digest: &Digest,
        bytes: &[u8],
    ) -> Result<(PreparedModule, CacheOutcome), ModuleError> {
        if let Some(module) = self.prepared.lock().expect("cache poisoned").get(digest) {
            return Ok((module.clone(), CacheOutcome::InMemory));
        }
        let lock = self
            .compiling
            .lock()
            .expect("cache poisoned")
            .entry(*digest)
            .or_default()
            .clone();
        let _guard = lock.lock().expect("compile lock poisoned");
        if let Some(module) = self.prepared.lock().expect("cache poisoned").get(digest) {
            return Ok((module.clone(), CacheOutcome::InMemory));
        }
        let (module, outcome) = self.load_or_compile_uncached(engine, digest, bytes)?;
        self.prepared
            .lock()
            .expect("cache poisoned")
            .insert(*digest, module.clone());
        self.compiling
            .lock()
            .expect("cache poisoned")
            .remove(digest);
        Ok((module, outcome))
    }

    /// The module if it is already prepared in this process: a start that
    /// needs neither the module's bytes nor the disk.
    pub fn prepared(&self, digest: &Digest) -> Option<PreparedModule> {
        self.prepared
            .lock()
            .expect("cache poisoned")
            .get(digest)
            .cloned()
    }

    /// Forgets the prepared module (e.g. when the store evicts it).
    pub fn forget(&self, digest: &Digest) {
        self.prepared.lock().expect("cache poisoned").remove(digest);
    }

    /// [`PrecompileCache::load_or_compile`] past the in-process map: a
    /// stored artifact when a valid one exists, else a fresh compile.
    #[allow(unsafe_code)] // loads only artifacts it wrote and verified; see SAFETY below.
    fn load_or_compile_uncached(
        &self,
        engine: &SandboxEngine,
        digest: &Digest,
        bytes: &[u8],
    ) -> Result<(PreparedModule, CacheOutcome), ModuleError> {
        let mut outcome = CacheOutcome::Compiled;
        if let Some((path, artifact_digest)) = self.find(digest)? {
            match std::fs::read(&path) {
                Ok(artifact) if Digest::of(&artifact) == artifact_digest => {
                    // SAFETY: the bytes are exactly those this cache wrote
                    // (their digest is in the file name, written by
                    // `store_artifact`) for an engine with this
                    // configuration (the directory is keyed by it).
                    match unsafe { engine.deserialize(&artifact) } {
                        Ok(compiled) => {
                            return Ok((engine.prepare(compiled, *digest)?, CacheOutcome::Hit));
                        }
                        Err(error) => tracing::warn!(%digest, %error, "stale precompiled artifact"),
                    }
                }
                Ok(_) => tracing::warn!(%digest, "corrupt precompiled artifact"),
                Err(error) => tracing::warn!(%digest, %error, "unreadable precompiled artifact"),
            }
            let _ = std::fs::remove_file(&path);
            outcome = CacheOutcome::Recompiled;
        }
        if Digest::of(bytes) != *digest {
            return Err(ModuleError::Compile(format!(
                "the module's bytes do not match its digest {digest}"
            )));
        }
        let artifact = engine.precompile(bytes)?;
        self.store_artifact(digest, &artifact)?;
        // SAFETY: made by this engine a line above.
        let compiled = unsafe { engine.deserialize(&artifact) }?;
        Ok((engine.prepare(compiled, *digest)?, outcome))
    }

    /// The stored artifact of `digest`, with the digest its name claims.
    fn find(&self, digest: &Digest) -> Result<Option<(PathBuf, Digest)>, ModuleError> {
        let prefix = format!("{}.", digest.hex());
        let entries = std::fs::read_dir(&self.dir).map_err(|e| cache_error(&self.dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| cache_error(&self.dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(rest) = name.strip_prefix(&prefix) else {
                continue;
            };
            let claimed = rest
                .strip_suffix(".cwasm")
                .and_then(|hex| format!("sha256:{hex}").parse::<Digest>().ok());
            match claimed {
                Some(claimed) => return Ok(Some((entry.path(), claimed))),
                // Not a name this cache writes: drop it.
                None => {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        Ok(None)
    }

    fn store_artifact(&self, digest: &Digest, artifact: &[u8]) -> Result<(), ModuleError> {
        let name = format!("{}.{}.cwasm", digest.hex(), Digest::of(artifact).hex());
        let path = self.dir.join(name);
        sandlet_core::state_file::write_atomically(&path, artifact)
            .map_err(|e| cache_error(&path, e))
    }
}

fn cache_error(path: &Path, error: std::io::Error) -> ModuleError {
    ModuleError::Engine(format!("precompile cache {}: {error}", path.display()))
}
