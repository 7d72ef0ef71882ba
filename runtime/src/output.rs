//! Where a guest's stdout and stderr go, and the bound on how much it may
//! write.
//!
//! The caller of a run picks an [`OutputSink`] for each stream (the terminal
//! for `sandlet run`, log files for the node, memory in tests). This module
//! wraps the sinks in the WASI stream types and charges every byte against
//! one budget shared by both streams. The write that crosses the budget
//! stores what still fits and then traps the guest with
//! [`LimitExceeded::Output`]; nothing past the limit ever reaches a sink.

use std::io::{self, Write};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};

use crate::limits::LimitExceeded;

/// Largest single write a guest is allowed to request at once. The WASI
/// streams convention is about 64 KiB, and it bounds the host buffer a guest
/// can make us allocate in one call.
const WRITE_PERMIT_BYTES: usize = 64 * 1024;

/// Destination of one guest output stream. Writes are small (at most
/// 64 KiB) and synchronous; a sink that cannot keep up slows the guest,
/// which is the intended back-pressure.
pub trait OutputSink: Send + Sync + 'static {
    /// Stores all of `bytes`, or fails; an error ends the guest's write
    /// with a stream error.
    fn write_all(&self, bytes: &[u8]) -> io::Result<()>;
}

/// The host process's own stdout, for `sandlet run`.
#[derive(Debug, Default, Clone, Copy)]
pub struct HostStdout;

impl OutputSink for HostStdout {
    fn write_all(&self, bytes: &[u8]) -> io::Result<()> {
        let mut out = io::stdout().lock();
        out.write_all(bytes)?;
        out.flush()
    }
}

/// The host process's own stderr, for `sandlet run`.
#[derive(Debug, Default, Clone, Copy)]
pub struct HostStderr;

impl OutputSink for HostStderr {
    fn write_all(&self, bytes: &[u8]) -> io::Result<()> {
        io::stderr().lock().write_all(bytes)
    }
}

/// Keeps everything in memory; for tests and for callers that post-process.
#[derive(Debug, Default, Clone)]
pub struct MemorySink(Arc<Mutex<Vec<u8>>>);

impl MemorySink {
    /// An empty sink.
    pub fn new() -> Self {
        Self::default()
    }

    /// A copy of what was written so far.
    pub fn contents(&self) -> Vec<u8> {
        self.0.lock().expect("memory sink poisoned").clone()
    }

    /// What was written so far as text, invalid UTF-8 replaced by `�`.
    pub fn contents_lossy(&self) -> String {
        String::from_utf8_lossy(&self.contents()).into_owned()
    }
}

impl OutputSink for MemorySink {
    fn write_all(&self, bytes: &[u8]) -> io::Result<()> {
        self.0
            .lock()
            .expect("memory sink poisoned")
            .extend_from_slice(bytes);
        Ok(())
    }
}

/// Appends to a file (the node's container logs).
#[derive(Debug)]
pub struct FileSink(Mutex<std::fs::File>);

impl FileSink {
    /// Writes to `file`, which should be opened for appending.
    pub fn new(file: std::fs::File) -> Self {
        FileSink(Mutex::new(file))
    }
}

impl OutputSink for FileSink {
    fn write_all(&self, bytes: &[u8]) -> io::Result<()> {
        self.0.lock().expect("file sink poisoned").write_all(bytes)
    }
}

/// Discards everything (still counted against the budget).
#[derive(Debug, Default, Clone, Copy)]
pub struct NullSink;

impl OutputSink for NullSink {
    fn write_all(&self, _bytes: &[u8]) -> io::Result<()> {
        Ok(())
    }
}

/// The sinks of one run.
#[derive(Clone)]
pub struct OutputSinks {
    /// Where the guest's stdout goes.
    pub stdout: Arc<dyn OutputSink>,
    /// Where the guest's stderr goes.
    pub stderr: Arc<dyn OutputSink>,
}

impl OutputSinks {
    /// The host process's stdout and stderr.
    pub fn host() -> Self {
        OutputSinks {
            stdout: Arc::new(HostStdout),
            stderr: Arc::new(HostStderr),
        }
    }

    /// Both streams discarded.
    pub fn null() -> Self {
        OutputSinks {
            stdout: Arc::new(NullSink),
            stderr: Arc::new(NullSink),
        }
    }
}

/// Bytes left for one run's stdout and stderr together.
#[derive(Debug)]
pub(crate) struct OutputBudget {
    limit: u64,
    remaining: AtomicU64,
}

impl OutputBudget {
    pub(crate) fn new(limit: u64) -> Arc<Self> {
        Arc::new(OutputBudget {
            limit,
            remaining: AtomicU64::new(limit),
        })
    }

    /// Takes up to `wanted` bytes from the budget and returns how many were
    /// granted.
    fn take(&self, wanted: u64) -> u64 {
        let mut granted = 0;
        let _ = self
            .remaining
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| {
                granted = left.min(wanted);
                Some(left - granted)
            });
        granted
    }
}

/// One guest stream: a sink plus the shared budget.
#[derive(Clone)]
pub(crate) struct GuestOutput {
    sink: Arc<dyn OutputSink>,
    budget: Arc<OutputBudget>,
}

impl GuestOutput {
    pub(crate) fn new(sink: Arc<dyn OutputSink>, budget: Arc<OutputBudget>) -> Self {
        GuestOutput { sink, budget }
    }

    /// Writes what the budget allows; `Err(LimitExceeded)` if that was not
    /// everything.
    fn write_bounded(&self, bytes: &[u8]) -> Result<(), WriteError> {
        let granted = self.budget.take(bytes.len() as u64) as usize;
        if granted > 0 {
            self.sink
                .write_all(&bytes[..granted])
                .map_err(WriteError::Sink)?;
        }
        if granted < bytes.len() {
            return Err(WriteError::Limit(LimitExceeded::Output(self.budget.limit)));
        }
        Ok(())
    }
}

enum WriteError {
    Limit(LimitExceeded),
    Sink(io::Error),
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[async_trait::async_trait]
impl Pollable for GuestOutput {
    async fn ready(&mut self) {}
}

#[async_trait::async_trait]
impl OutputStream for GuestOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        match self.write_bounded(&bytes) {
            Ok(()) => Ok(()),
            // Trap: the guest must not get to carry on past its limit.
            Err(WriteError::Limit(limit)) => Err(StreamError::Trap(wasmtime::Error::new(limit))),
            Err(WriteError::Sink(e)) => {
                Err(StreamError::LastOperationFailed(wasmtime::Error::new(e)))
            }
        }
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_PERMIT_BYTES)
    }
}

impl AsyncWrite for GuestOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(match self.write_bounded(buf) {
            Ok(()) => Ok(buf.len()),
            Err(WriteError::Limit(limit)) => Err(io::Error::other(limit)),
            Err(WriteError::Sink(e)) => Err(e),
        })
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_is_shared_and_cuts_at_the_limit() {
        let budget = OutputBudget::new(10);
        let out_sink = MemorySink::new();
        let err_sink = MemorySink::new();
        let out = GuestOutput::new(Arc::new(out_sink.clone()), budget.clone());
        let err = GuestOutput::new(Arc::new(err_sink.clone()), budget);
        assert!(out.write_bounded(b"123456").is_ok());
        match err.write_bounded(b"abcdef") {
            Err(WriteError::Limit(LimitExceeded::Output(10))) => {}
            _ => panic!("expected the output limit"),
        }
        assert_eq!(out_sink.contents(), b"123456");
        assert_eq!(err_sink.contents(), b"abcd");
        assert!(matches!(out.write_bounded(b"x"), Err(WriteError::Limit(_))));
    }
}
