//! The one place where a guest is given capabilities.
//!
//! Everything a guest can touch is granted here, from a [`RunPlan`] and
//! nothing else: argv, the environment, preopened directories with their
//! permissions, the output streams with their shared byte budget, and the
//! data capability. Whatever is not named here is denied by the defaults of
//! `WasiCtxBuilder`, and we restate the network denials explicitly so a
//! future default change cannot open them: no TCP, no UDP, no name lookup, no
//! address passes the socket check. There is no stdin.

use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::limits::RunLimiter;
use crate::output::{GuestOutput, OutputBudget, OutputSinks};
use crate::plan::{DirAccess, RunPlan};
use sandlet_core::data::DataAccess;

/// A preopened directory that could not be opened when the run started
/// (it was removed after the plan was validated, say).
#[derive(Debug, thiserror::Error)]
#[error("cannot open directory {host} for the guest: {reason}")]
pub struct SandboxError {
    host: String,
    reason: String,
}

/// The store data of a component run (command or algorithm).
pub(crate) struct ComponentState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: RunLimiter,
    pub(crate) data: Arc<dyn DataAccess>,
}

/// The store data of a preview 1 core module run.
pub(crate) struct CoreState {
    wasi: WasiP1Ctx,
    limiter: RunLimiter,
}

impl CoreState {
    /// The preview 1 context, for the linker's host functions.
    pub(crate) fn wasi(&mut self) -> &mut WasiP1Ctx {
        &mut self.wasi
    }
}

/// Store data of any run: gives the engine the run's limiter.
pub(crate) trait RunState: Send + 'static {
    fn limiter(&mut self) -> &mut RunLimiter;
}

impl RunState for ComponentState {
    fn limiter(&mut self) -> &mut RunLimiter {
        &mut self.limiter
    }
}

impl RunState for CoreState {
    fn limiter(&mut self) -> &mut RunLimiter {
        &mut self.limiter
    }
}

impl WasiView for ComponentState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Builds the WASI context that `plan` describes.
fn wasi_builder(plan: &RunPlan, sinks: &OutputSinks) -> Result<WasiCtxBuilder, SandboxError> {
    let budget = OutputBudget::new(plan.limits.output_bytes);
    let mut builder = WasiCtxBuilder::new();
    builder
        .args(&plan.args)
        .envs(&plan.env)
        .stdout(GuestOutput::new(sinks.stdout.clone(), budget.clone()))
        .stderr(GuestOutput::new(sinks.stderr.clone(), budget))
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .socket_addr_check(|_, _| Box::pin(async { false }));
    for preopen in &plan.preopens {
        let perms = match preopen.access {
            DirAccess::ReadOnly => FsPerms::ReadOnly,
            DirAccess::ReadWrite => FsPerms::ReadWrite,
        };
        builder
            .preopened_dir(&preopen.host, &preopen.guest, perms)
            .map_err(|e| SandboxError {
                host: preopen.host.display().to_string(),
                reason: format!("{e:#}"),
            })?;
    }
    Ok(builder)
}

pub(crate) fn component_state(
    plan: &RunPlan,
    sinks: &OutputSinks,
) -> Result<ComponentState, SandboxError> {
    Ok(ComponentState {
        wasi: wasi_builder(plan, sinks)?.build(),
        table: ResourceTable::new(),
        limiter: RunLimiter::new(&plan.limits),
        data: plan.data.clone(),
    })
}

pub(crate) fn core_state(plan: &RunPlan, sinks: &OutputSinks) -> Result<CoreState, SandboxError> {
    Ok(CoreState {
        wasi: wasi_builder(plan, sinks)?.build_p1(),
        limiter: RunLimiter::new(&plan.limits),
    })
}
