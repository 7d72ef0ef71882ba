//! Defaults a station shares between its commands: where its state lives,
//! how a state directory is laid out, and how large its module store may
//! grow. `sandlet node`, `sandlet run`, `sandlet pull` and `sandlet query`
//! all take them from here, so the same state directory means the same
//! store and cache, with the same bound, whichever command opens it.
//!
//! The defaults of the station file's own fields (a dataset's disclosure
//! policy, its privacy block) live with the types that validate them, in
//! `sandlet_data::DisclosurePolicy` and `sandlet_privacy::PrivacyPolicy`.

use std::path::{Path, PathBuf};

use sandlet_registry::store::{ModuleStore, StoreError};

/// Bound on the module store (`<state dir>/modules`): room for hundreds of
/// typical algorithms (a few MiB each; an 18 MB Python component is among
/// the largest) while leaving a small data station's disk to its data. The
/// least recently used modules not in use are evicted past it.
pub const STORE_BYTES: u64 = 10 * 1024 * 1024 * 1024;

/// The module store of `state_dir` (`<state dir>/modules`), opened (or
/// created) with the bound [`STORE_BYTES`].
pub fn module_store(state_dir: &Path) -> Result<ModuleStore, StoreError> {
    ModuleStore::open(&state_dir.join("modules"), STORE_BYTES)
}

/// Where `state_dir` keeps precompiled artifacts (`<state dir>/compiled`).
pub fn precompile_cache_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("compiled")
}

/// The state directory when none is given: `$SANDLET_STATE_DIR`, else
/// `~/.local/share/sandlet`; `None` when neither is set (no `HOME`).
pub fn state_dir() -> Option<PathBuf> {
    match (
        std::env::var_os("SANDLET_STATE_DIR"),
        std::env::var_os("HOME"),
    ) {
        (Some(dir), _) => Some(PathBuf::from(dir)),
        (None, Some(home)) => Some(PathBuf::from(home).join(".local/share/sandlet")),
        (None, None) => None,
    }
}
