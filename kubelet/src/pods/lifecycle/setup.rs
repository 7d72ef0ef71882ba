//! What one run of a container is given: the pod's ConfigMaps, Secrets and
//! service-account tokens, its volumes on the host, the container's env,
//! arguments and mounts, its limits and granted datasets, all put into a
//! `RunPlan`, and the log the run writes.
//!
//! This module owns turning a container of a [`PodPlan`] into a
//! [`RunSetup`], and how soon a configuration that failed is tried again
//! ([`config_retry_delay`]). It grants nothing the plan does not: mounts
//! are read-only as admission decided, datasets are the pod's granted ones
//! behind the audit trail and the privacy budget. It must never pass on
//! anything of the host's environment.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::Api;
use kube::runtime::events::EventType;
use sandlet_data::{Budget, DataAccess, GrantedDatasets, NoDatasets, raw_file_mounts};
use sandlet_runtime::limits::Limits;
use sandlet_runtime::plan::RunPlanBuilder;
use sandlet_runtime::{DirAccess, ModuleKind, OutputSinks, PreparedModule, RunPlan};

use super::sealing::{SealedLog, run_sinks};
use super::worker::{Slot, Worker};
use crate::pods::admission::{ContainerPlan, PodPlan};
use crate::pods::env::{
    ConfigError, DownwardFacts, PodObjects, expand, referenced_objects, resolve_env,
};
use crate::pods::file_mounts::{self, FileMount, StagedFiles};
use crate::pods::logs::{log_path, open_sinks};
use crate::pods::objects::ReadError;
use crate::pods::volumes::{
    HostVolume, Tokens, VolumeInputs, bound_token_request, materialize, token_audiences,
};

/// How long a pod container may run: pods have no sandbox timeout of their
/// own (`activeDeadlineSeconds` bounds a pod), so this only keeps the
/// engine's deadline arithmetic finite.
const POD_RUN_TIMEOUT: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// How often a container whose configuration cannot be built (a missing
/// ConfigMap, say) is tried again, at most.
const CONFIG_RETRY: Duration = Duration::from_secs(2);

/// The first retry of a container's configuration. Right after a pod is
/// bound, the API server's NodeRestriction admission may not yet know the
/// pod is on this node and refuses the node its tokens for a moment (its
/// pod cache trails the binding by a few milliseconds); quick retries,
/// doubling from this, ride that out.
const CONFIG_FIRST_RETRY: Duration = Duration::from_millis(10);

/// How long a container's configuration may keep failing before the error
/// is reported (status `CreateContainerConfigError` and an Event); the
/// retries until then are quiet, and the last one is timed to land on it.
const CONFIG_QUIET: Duration = Duration::from_millis(750);

/// The wait before configuration attempt `failures + 1`, the failures
/// having gone on for `failing_for`: 10 ms after the first, doubling up to
/// 2 s, and never past the end of the quiet period (750 ms), so that a
/// lasting error is reported about when that period ends. The load
/// benchmark's reference kubelet retries its token requests on the same
/// schedule.
pub fn config_retry_delay(failures: u32, failing_for: Duration) -> Duration {
    let delay = CONFIG_FIRST_RETRY
        .saturating_mul(1 << (failures.max(1) - 1).min(16))
        .min(CONFIG_RETRY);
    match CONFIG_QUIET.checked_sub(failing_for) {
        Some(left) if !left.is_zero() => delay.min(left),
        _ => delay,
    }
}

/// A container's configuration failures in a row, and since when.
#[derive(Debug, Default)]
pub(super) struct ConfigRetries {
    failures: u32,
    since: Option<Instant>,
}

/// One run of a container, ready to start.
pub(super) struct RunSetup {
    /// What the sandbox grants the guest.
    pub(super) plan: RunPlan,
    /// Where the guest's output goes.
    pub(super) sinks: OutputSinks,
    /// Single-file mounts, written back when the run ends.
    pub(super) staged: StagedFiles,
    /// For a pod whose log is sealed: what to seal into the log file.
    pub(super) sealed_log: Option<SealedLog>,
}

impl Worker {
    /// Notes a failed configuration: quietly at first, then (from
    /// [`CONFIG_QUIET`] on) as `CreateContainerConfigError` with an Event;
    /// waits for the next attempt. True if the pod was stopped meanwhile.
    pub(super) async fn config_failed(
        &self,
        slot: Slot,
        retries: &mut ConfigRetries,
        error: ConfigError,
    ) -> bool {
        retries.failures += 1;
        let failing_for = retries.since.get_or_insert_with(Instant::now).elapsed();
        tracing::debug!(pod = %self.name, %error, attempt = retries.failures, "container configuration failed");
        if failing_for >= CONFIG_QUIET {
            self.set_waiting(slot, "CreateContainerConfigError", Some(error.0.clone()));
            self.event(EventType::Warning, "Failed", format!("Error: {}", error.0));
            self.publish().await;
        }
        let delay = config_retry_delay(retries.failures, failing_for);
        self.sleep_or_stop(delay).await
    }

    /// Builds the run plan and log sinks of one container run: env,
    /// volumes, limits, datasets.
    pub(super) async fn prepare_run(
        &self,
        plan: &PodPlan,
        slot: Slot,
        module: &PreparedModule,
    ) -> Result<RunSetup, ConfigError> {
        let container = self.container_plan(plan, slot);
        let (env, volumes) = self.env_and_volumes(plan, container).await?;
        let pod_dir = self.entry.dir.clone();
        let args: Vec<String> = container.args.iter().map(|a| expand(a, &env)).collect();
        let (mut builder, raw_paths) = self.entry_point(plan, container, module, args)?;
        for (key, value) in env {
            builder = builder.env(key, value);
        }
        let (mut builder, staged) =
            mount_volumes(builder, container, &volumes, &raw_paths, &pod_dir)?;
        let mut limits = Limits {
            timeout: POD_RUN_TIMEOUT,
            ..Limits::default()
        };
        if let Some(memory) = container.memory_limit {
            limits.memory_bytes = memory;
        }
        builder = builder.limits(limits);
        let run_plan = builder
            .data(self.data_access(plan, module)?)
            .build()
            .map_err(|e| ConfigError(e.to_string()))?;
        let restart_count = self.container_mut(slot, |c| c.restart_count);
        let file = open_sinks(&log_path(&pod_dir, &container.name, restart_count))
            .map_err(|e| ConfigError(format!("cannot create the container log: {e}")))?;
        let (sinks, sealed_log) = run_sinks(plan, file);
        Ok(RunSetup {
            plan: run_plan,
            sinks,
            staged,
            sealed_log,
        })
    }

    /// The container's env and the pod's volumes. The volumes are made
    /// once, by the first container to get here; the others wait for them.
    async fn env_and_volumes(
        &self,
        plan: &PodPlan,
        container: &ContainerPlan,
    ) -> Result<(Vec<(String, String)>, Arc<BTreeMap<String, HostVolume>>), ConfigError> {
        let mut made = self.volumes.lock().await;
        // The objects the pod references and its tokens are independent
        // reads: both in flight at once, one round trip to wait for.
        let (objects, tokens) = if made.is_none() {
            tokio::try_join!(self.fetch_objects(), self.fetch_tokens(plan))?
        } else {
            (self.fetch_objects().await?, Tokens::new())
        };
        let host_ip = self.ctx.identity.internal_ip();
        let facts = DownwardFacts {
            pod: &self.pod,
            node_name: &self.ctx.identity.name,
            host_ip: &host_ip,
            node_cpu: f64::from(self.ctx.identity.cpus),
            node_memory: self.ctx.identity.memory_bytes as f64,
        };
        let env = resolve_env(&facts, &container.spec, &objects)?;
        let volumes = match &*made {
            Some(dirs) => dirs.clone(),
            None => {
                let dirs = Arc::new(materialize(
                    &self.ctx.pod_dirs(&self.uid),
                    &plan.volumes,
                    &VolumeInputs {
                        facts: facts.clone(),
                        objects: &objects,
                        tokens: &tokens,
                        data: self.ctx.data.as_deref(),
                    },
                )?);
                *made = Some(dirs.clone());
                dirs
            }
        };
        Ok((env, volumes))
    }

    /// A builder that starts the module as its kind says: an algorithm
    /// with its input (the first argument), a command with its arguments
    /// and the raw files of granted datasets that allow them (their guest
    /// paths returned).
    fn entry_point(
        &self,
        plan: &PodPlan,
        container: &ContainerPlan,
        module: &PreparedModule,
        args: Vec<String>,
    ) -> Result<(RunPlanBuilder, Vec<String>), ConfigError> {
        let mut builder = RunPlan::builder(container.name.clone());
        let mut raw_paths = Vec::new();
        match module.kind() {
            ModuleKind::Algorithm => {
                builder = builder.input(args.first().cloned().unwrap_or_else(|| "{}".to_owned()));
            }
            ModuleKind::Command => {
                builder = builder.args(args);
                if let Some(config) = &self.ctx.data {
                    let raw = raw_file_mounts(config, &plan.datasets, &self.entry.dir.join("raw"))
                        .map_err(|e| ConfigError(e.to_string()))?;
                    for mount in raw {
                        raw_paths.push(mount.guest.clone());
                        builder = builder.dir(mount.host, mount.guest, DirAccess::ReadOnly);
                    }
                }
            }
        }
        Ok((builder, raw_paths))
    }

    /// The pod's granted datasets, each query on the audit trail and
    /// private ones charged to the namespace's budget; none if it has none.
    fn data_access(
        &self,
        plan: &PodPlan,
        module: &PreparedModule,
    ) -> Result<Arc<dyn DataAccess>, ConfigError> {
        Ok(match (&self.ctx.data, plan.datasets.is_empty()) {
            (Some(config), false) => Arc::new(
                GrantedDatasets::new(config, &plan.datasets)
                    .map_err(|e| ConfigError(e.to_string()))?
                    .audited(self.audit_trail(plan, module))
                    .budgeted(Budget {
                        ledger: Arc::clone(&self.ctx.ledger),
                        namespace: self.namespace.clone(),
                    }),
            ),
            _ => Arc::new(NoDatasets),
        })
    }

    /// The ConfigMaps and Secrets the pod references, all read at once.
    async fn fetch_objects(&self) -> Result<PodObjects, ConfigError> {
        use futures_util::future::try_join_all;
        let (config_maps, secrets) = referenced_objects(&self.pod);
        let reader = &self.ctx.objects;
        let namespace = self.namespace.as_str();
        let (config_maps, secrets) = tokio::try_join!(
            try_join_all(config_maps.into_iter().map(|name| async move {
                let found = reader.config_map(namespace, &name).await?;
                Ok::<_, ReadError>((name, found))
            })),
            try_join_all(secrets.into_iter().map(|name| async move {
                let found = reader.secret(namespace, &name).await?;
                Ok::<_, ReadError>((name, found))
            })),
        )
        .map_err(|e| ConfigError(e.to_string()))?;
        Ok(PodObjects {
            config_maps: config_maps.into_iter().collect(),
            secrets: secrets.into_iter().collect(),
        })
    }

    /// Service-account tokens for projected volumes, bound to this pod.
    async fn fetch_tokens(&self, plan: &PodPlan) -> Result<Tokens, ConfigError> {
        let mut tokens = Tokens::new();
        let audiences = token_audiences(&plan.volumes);
        if audiences.is_empty() {
            return Ok(tokens);
        }
        let accounts: Api<ServiceAccount> =
            Api::namespaced(self.ctx.client.clone(), &self.namespace);
        for (audience, expiration) in audiences {
            let request = bound_token_request(&self.name, &self.uid, &audience, expiration);
            let response = accounts
                .create_token_request(&plan.service_account, &Default::default(), &request)
                .await
                .map_err(|e| {
                    ConfigError(format!(
                        "cannot get a token for service account {:?}: {e}",
                        plan.service_account
                    ))
                })?;
            let token = response
                .status
                .and_then(|s| s.token)
                .ok_or_else(|| ConfigError("the token request returned no token".to_owned()))?;
            tokens.insert(audience, token);
        }
        Ok(tokens)
    }
}

/// The container's volume mounts given to the builder: directories as
/// preopens (a subPath made if missing), single files staged in
/// directories of their own beside the other mounts (`dir_paths`: the
/// guest directories already given).
fn mount_volumes(
    mut builder: RunPlanBuilder,
    container: &ContainerPlan,
    volumes: &BTreeMap<String, HostVolume>,
    raw_paths: &[String],
    pod_dir: &Path,
) -> Result<(RunPlanBuilder, StagedFiles), ConfigError> {
    let access = |read_only: bool| {
        if read_only {
            DirAccess::ReadOnly
        } else {
            DirAccess::ReadWrite
        }
    };
    let mut files = Vec::new();
    let mut dir_paths: Vec<&str> = raw_paths.iter().map(String::as_str).collect();
    for mount in &container.mounts {
        let volume = &volumes[&mount.volume];
        if volume.file {
            if mount.sub_path.is_some() {
                return Err(ConfigError(format!(
                    "volume {:?} is a single file: a subPath of it cannot be mounted",
                    mount.volume
                )));
            }
            files.push(FileMount {
                host: volume.path.clone(),
                guest_path: mount.guest_path.clone(),
                read_only: mount.read_only,
            });
            continue;
        }
        dir_paths.push(&mount.guest_path);
        let mut host = volume.path.clone();
        if let Some(sub) = &mount.sub_path {
            host = host.join(sub);
            std::fs::create_dir_all(&host).map_err(|e| {
                ConfigError(format!("subPath {sub:?} of volume {:?}: {e}", mount.volume))
            })?;
        }
        builder = builder.dir(host, mount.guest_path.clone(), access(mount.read_only));
    }
    let staged = file_mounts::stage(
        &pod_dir.join("files").join(&container.name),
        &files,
        &dir_paths,
    )?;
    for dir in &staged.dirs {
        builder = builder.dir(dir.host.clone(), dir.guest.clone(), access(dir.read_only));
    }
    Ok((builder, staged))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configuration_retries_start_quick_and_report_after_the_quiet_period() {
        let ms = Duration::from_millis;
        // Doubling from 10 ms while early failures leave quiet time over.
        assert_eq!(config_retry_delay(1, ms(0)), ms(10));
        assert_eq!(config_retry_delay(2, ms(15)), ms(20));
        assert_eq!(config_retry_delay(5, ms(200)), ms(160));
        // The last quiet retry lands at the end of the quiet period.
        assert_eq!(config_retry_delay(7, ms(700)), ms(50));
        // After it, doubling on up to CONFIG_RETRY.
        assert_eq!(config_retry_delay(8, ms(760)), ms(1280));
        assert_eq!(config_retry_delay(12, ms(9000)), CONFIG_RETRY);
    }
}
