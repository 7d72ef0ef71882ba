//! The pieces of a station that commands run on this host share: the
//! sandbox engine of a one-off run, modules pulled into the store and
//! started through the precompile cache, and the audit trail and privacy
//! budget that every local query is held to (the `@local` account).
//!
//! It owns what "local" means (this host's name, the `@local` namespace);
//! it never lets a query run without its audit trail.

use std::path::Path;
use std::sync::Arc;

use sandlet_audit::Caller;
use sandlet_core::Digest;
use sandlet_data::{AuditTrail, Budget, open_audit_log};
use sandlet_privacy::Ledger;
use sandlet_registry::allow_list::AllowList;
use sandlet_registry::oci::PulledModule;
use sandlet_registry::store::ModuleStore;
use sandlet_runtime::precompiled::PrecompileCache;
use sandlet_runtime::{EngineOptions, PreparedModule, SandboxEngine};
use sandlet_station::defaults::precompile_cache_dir;

use crate::args::{RegistryClientArgs, StoreArgs};
use crate::error::CliError;

/// Runs of `sandlet run`: one at a time, so the pool needs one slot; a
/// second keeps a stray instance from failing the run.
const CLI_POOL_SLOTS: u32 = 2;

/// The engine of a command that runs or checks one module.
pub fn engine() -> Result<SandboxEngine, CliError> {
    Ok(SandboxEngine::new(EngineOptions {
        max_concurrent_runs: CLI_POOL_SLOTS,
    })?)
}

/// This host's name, the default node name (as the kubelet's).
pub fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_lowercase())
        .filter(|s| !s.is_empty())
}

/// The station name on this host's audit records.
pub fn station_name() -> String {
    host_name().unwrap_or_else(|| "localhost".to_owned())
}

/// The audit trail of this host's queries: `<state dir>/audit`, on the
/// record as `caller`.
pub fn audit_trail(store: &StoreArgs, caller: Caller) -> Result<AuditTrail, CliError> {
    let log = open_audit_log(&store.state_dir()?).map_err(|e| {
        CliError::step(
            "the data-access audit log cannot be opened, so no query may run",
            e,
        )
    })?;
    Ok(AuditTrail {
        log: Arc::new(log),
        station: station_name(),
        caller,
        counters: None,
    })
}

/// The privacy budget account of this host's runs and queries: the
/// `@local` namespace of `<state dir>/privacy`.
pub fn local_budget(store: &StoreArgs) -> Result<Budget, CliError> {
    let ledger = Ledger::open(&store.state_dir()?).map_err(|e| {
        CliError::step(
            "the privacy budget ledger cannot be opened, so no query may run",
            e,
        )
    })?;
    Ok(Budget {
        ledger: Arc::new(ledger),
        namespace: Budget::LOCAL.to_owned(),
    })
}

/// Pulls `reference` into `store` if the allow-list admits it.
pub async fn pull_into(
    args: &RegistryClientArgs,
    reference: &str,
    store: &ModuleStore,
    allow: &AllowList,
) -> Result<PulledModule, CliError> {
    let (registry, credentials) = args.connect()?;
    Ok(registry.pull(reference, &credentials, store, allow).await?)
}

/// The stored module `digest`, through the precompile cache in `state_dir`.
pub fn precompiled(
    engine: &SandboxEngine,
    store: &ModuleStore,
    state_dir: &Path,
    digest: &Digest,
) -> Result<PreparedModule, CliError> {
    let bytes = store
        .get(digest)?
        .ok_or_else(|| CliError::Failed(format!("{digest} vanished from the store")))?;
    let cache = PrecompileCache::open(&precompile_cache_dir(state_dir), engine)?;
    let (module, _) = cache.load_or_compile(engine, digest, &bytes)?;
    Ok(module)
}
