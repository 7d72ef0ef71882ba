//! Resource limits of one run: memory, wall-clock time and output bytes.
//!
//! This module owns the numbers (each default is a named constant with the
//! reason for its value; sizes and durations are parsed by
//! [`sandlet_core::quantity`]), the [`ResourceLimiter`] that wasmtime consults whenever a guest
//! grows a memory or table, and the [`Usage`] a run reports while it runs. It never decides *whether* a run may start; that
//! is the plan's job ([`crate::plan`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use wasmtime::ResourceLimiter;

pub use sandlet_core::quantity::{
    DurationText, MAX_MEMORY_BYTES, ParseLimitError, Size, parse_memory_limit, parse_size,
    parse_timeout,
};

/// Default memory limit of a run: 256 MiB holds a typical analysis
/// algorithm's working set (DataFusion results arrive through the host, not
/// guest memory) while letting a data station run dozens of pods at once.
pub const DEFAULT_MEMORY_BYTES: u64 = 256 * 1024 * 1024;

/// Default wall-clock limit: five minutes fits the partial step of a
/// federated analysis, and keeps a forgotten loop from holding a slot forever.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// Default bound on stdout plus stderr: 16 MiB is far more than any log a
/// person reads, yet small enough that a guest printing in a loop cannot fill
/// a data station's disk.
pub const DEFAULT_OUTPUT_BYTES: u64 = 16 * 1024 * 1024;

/// Elements a guest's table may hold: generous for indirect-call tables of
/// large programs (rustc emits a few thousand), small enough that each
/// pooled table slot reserves under 1 MiB of address space.
pub const MAX_TABLE_ELEMENTS: usize = 100_000;

/// Instances, memories and tables per store. A component built by
/// `wasm32-wasip2` uses a handful of core instances; 64 leaves room for
/// composed components without letting a guest exhaust the pool.
pub const MAX_INSTANCES_PER_RUN: usize = 64;

/// Limits of one run, already validated: every value is non-zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of linear memory the guest may hold, over all its memories.
    pub memory_bytes: u64,
    /// Wall-clock time from instantiation to the guest's return.
    pub timeout: Duration,
    /// Bytes the guest may write to stdout and stderr together.
    pub output_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: DEFAULT_MEMORY_BYTES,
            timeout: DEFAULT_TIMEOUT,
            output_bytes: DEFAULT_OUTPUT_BYTES,
        }
    }
}

/// Which limit a run hit, with the value it had. The `Display` form is the
/// one-line reason users see.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitExceeded {
    /// The guest grew its linear memory past the memory limit.
    #[error("memory limit of {} exceeded (the guest asked for {})", Size(*.limit), Size(*.requested))]
    Memory {
        /// The limit, in bytes.
        limit: u64,
        /// The memory the guest would have held after growing, in bytes.
        requested: u64,
    },
    /// The run was still going when its wall-clock limit (held) ran out.
    #[error("timeout of {} exceeded", DurationText(*.0))]
    Timeout(Duration),
    /// The guest wrote more than the output limit (held, in bytes) to
    /// stdout and stderr together.
    #[error("output limit of {} exceeded (stdout and stderr together)", Size(*.0))]
    Output(u64),
    /// The guest grew a table past [`MAX_TABLE_ELEMENTS`]; holds the
    /// number of elements it asked for.
    #[error("table limit of {MAX_TABLE_ELEMENTS} elements exceeded (the guest asked for {0})")]
    Table(usize),
}

/// Enforces a run's memory and table limits; wasmtime calls it whenever the
/// guest creates or grows a memory or table.
///
/// Growth past the limit traps at once with [`LimitExceeded`] instead of
/// returning `-1` to the guest: an allocator that sees `-1` aborts with a
/// message about the guest's own heap, which hides the real reason, while the
/// trap names the limit and its value.
#[derive(Debug)]
pub struct RunLimiter {
    memory_limit: u64,
    /// Bytes currently held by each memory, summed on growth.
    memory_in_use: u64,
    usage: Arc<Usage>,
}

impl RunLimiter {
    /// A limiter for a run with `limits`, holding no memory yet.
    pub(crate) fn new(limits: &Limits) -> Self {
        RunLimiter {
            memory_limit: limits.memory_bytes,
            memory_in_use: 0,
            usage: Arc::default(),
        }
    }

    /// Reports the memory in use to `usage` from now on.
    pub(crate) fn report_to(&mut self, usage: Arc<Usage>) {
        usage
            .memory_bytes
            .store(self.memory_in_use, Ordering::Relaxed);
        self.usage = usage;
    }
}

/// What a run has used so far, readable while it runs (for metrics):
/// the guest's linear memory (wasm memory never shrinks, so this is also
/// its peak) and the time its thread spent running it.
#[derive(Debug, Default)]
pub struct Usage {
    memory_bytes: AtomicU64,
    cpu_nanos: AtomicU64,
}

impl Usage {
    /// Bytes of linear memory the guest holds.
    pub fn memory_bytes(&self) -> u64 {
        self.memory_bytes.load(Ordering::Relaxed)
    }

    /// Time spent running the guest (and the host calls it made on its
    /// thread); not the time it waited.
    pub fn cpu(&self) -> Duration {
        Duration::from_nanos(self.cpu_nanos.load(Ordering::Relaxed))
    }

    pub(crate) fn add_cpu(&self, spent: Duration) {
        self.cpu_nanos
            .fetch_add(spent.as_nanos() as u64, Ordering::Relaxed);
    }
}

impl ResourceLimiter for RunLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let growth = (desired - current) as u64;
        let total = self.memory_in_use.saturating_add(growth);
        if total > self.memory_limit {
            return Err(wasmtime::Error::new(LimitExceeded::Memory {
                limit: self.memory_limit,
                requested: total,
            }));
        }
        self.memory_in_use = total;
        self.usage.memory_bytes.store(total, Ordering::Relaxed);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > MAX_TABLE_ELEMENTS {
            return Err(wasmtime::Error::new(LimitExceeded::Table(desired)));
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES_PER_RUN
    }

    fn tables(&self) -> usize {
        MAX_INSTANCES_PER_RUN
    }

    fn memories(&self) -> usize {
        MAX_INSTANCES_PER_RUN
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_messages_name_the_limit_and_its_value() {
        let memory = LimitExceeded::Memory {
            limit: 64 << 20,
            requested: 65 << 20,
        };
        assert_eq!(
            memory.to_string(),
            "memory limit of 64Mi exceeded (the guest asked for 65Mi)"
        );
        assert_eq!(
            LimitExceeded::Timeout(Duration::from_millis(1500)).to_string(),
            "timeout of 1500ms exceeded"
        );
        assert_eq!(
            LimitExceeded::Output(1 << 20).to_string(),
            "output limit of 1Mi exceeded (stdout and stderr together)"
        );
    }

    #[test]
    fn limiter_counts_growth_across_memories() {
        let limits = Limits {
            memory_bytes: 10 << 16,
            ..Limits::default()
        };
        let mut limiter = RunLimiter::new(&limits);
        assert!(limiter.memory_growing(0, 6 << 16, None).unwrap());
        assert!(limiter.memory_growing(0, 4 << 16, None).unwrap());
        let err = limiter.memory_growing(4 << 16, 5 << 16, None).unwrap_err();
        assert!(err.downcast_ref::<LimitExceeded>().is_some());
    }
}
