//! Per-instance store data: the deny-by-default WASI context, the memory
//! limiter, captured guest output and the `host` import that policies call.
//!
//! Invariant: a policy gets no capability that is not created here. There
//! are no preopened directories, no environment variables, no arguments, no
//! sockets and no name lookups; stdout and stderr go to a bounded buffer that
//! the runtime drains into the daemon's log after every call.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::{v0_1, v0_2};

/// Longest single `log` message kept; the rest is cut with a marker.
const MAX_LOG_MESSAGE: usize = 4096;
/// `log` calls kept per `decide` call; further ones are counted and dropped.
const MAX_LOG_LINES_PER_CALL: u32 = 64;

/// The data of one policy instance's `Store`.
pub struct Sandbox {
    /// The policy's name, for every log line it causes.
    policy: Arc<str>,
    /// Deny-by-default WASI context (no dirs, env, args, network).
    wasi: WasiCtx,
    /// WASI resources the guest opened (streams for stdio).
    table: ResourceTable,
    /// Enforces the memory cap and records that it was hit.
    pub limits: MemoryCap,
    /// Guest stdout and stderr, bounded, drained after every call.
    pub output: CapturedOutput,
    /// `log` calls made during the current `decide` call.
    log_lines: u32,
    /// `log` calls dropped during the current call because of the bound.
    log_dropped: u32,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox").field("policy", &self.policy).finish_non_exhaustive()
    }
}

impl Sandbox {
    /// A fresh sandbox for one instance of `policy`.
    pub fn new(policy: Arc<str>, memory_limit: usize, output_limit: usize) -> Self {
        let output = CapturedOutput::new(output_limit);
        let wasi = WasiCtx::builder()
            .stdout(output.clone())
            .stderr(output.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .socket_addr_check(|_, _| Box::pin(async { false }))
            .build();
        Sandbox {
            policy,
            wasi,
            table: ResourceTable::new(),
            limits: MemoryCap { limit: memory_limit, hit: false },
            output,
            log_lines: 0,
            log_dropped: 0,
        }
    }

    /// Reset per-call bookkeeping before a call.
    pub fn begin_call(&mut self) {
        self.limits.hit = false;
        self.log_lines = 0;
        self.log_dropped = 0;
    }

    /// Emit what the guest wrote to stdout/stderr during the call, one log
    /// line per line of output, and report dropped `log` calls.
    pub fn finish_call(&mut self) {
        let (text, truncated) = self.output.take();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            tracing::info!(target: "policy", policy = %self.policy, stream = "output", "{line}");
        }
        if truncated > 0 {
            tracing::warn!(target: "policy", policy = %self.policy,
                "policy output cut: {truncated} bytes over the per-call limit were dropped");
        }
        if self.log_dropped > 0 {
            tracing::warn!(target: "policy", policy = %self.policy,
                "{} log lines over the per-call limit of {MAX_LOG_LINES_PER_CALL} were dropped",
                self.log_dropped);
        }
    }
}

impl WasiView for Sandbox {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl Sandbox {
    /// A `host.log` call of either contract version: bounded, then logged
    /// with the policy's name.
    fn log_line(&mut self, level: tracing::Level, message: &str) {
        self.log_lines += 1;
        if self.log_lines > MAX_LOG_LINES_PER_CALL {
            self.log_dropped += 1;
            return;
        }
        let message = truncate(message, MAX_LOG_MESSAGE);
        let policy = &*self.policy;
        match level {
            tracing::Level::TRACE => tracing::trace!(target: "policy", policy, "{message}"),
            tracing::Level::DEBUG => tracing::debug!(target: "policy", policy, "{message}"),
            tracing::Level::INFO => tracing::info!(target: "policy", policy, "{message}"),
            tracing::Level::WARN => tracing::warn!(target: "policy", policy, "{message}"),
            _ => tracing::error!(target: "policy", policy, "{message}"),
        }
    }
}

/// The `host` interface of each contract version, generated with its own
/// `level` enum; both end in [`Sandbox::log_line`].
macro_rules! host_interface {
    ($version:ident) => {
        impl $version::autoscaler::policy::host::Host for Sandbox {
            fn log(&mut self, level: $version::autoscaler::policy::host::Level, message: String) {
                use $version::autoscaler::policy::host::Level;
                let level = match level {
                    Level::Trace => tracing::Level::TRACE,
                    Level::Debug => tracing::Level::DEBUG,
                    Level::Info => tracing::Level::INFO,
                    Level::Warn => tracing::Level::WARN,
                    Level::Error => tracing::Level::ERROR,
                };
                self.log_line(level, &message);
            }
        }

        impl $version::autoscaler::policy::types::Host for Sandbox {}
    };
}

host_interface!(v0_1);
host_interface!(v0_2);

/// Cut `text` to at most `max` bytes on a character boundary.
fn truncate(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if text.len() <= max {
        return text.into();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes cut)", &text[..end], text.len() - end).into()
}

/// Memory cap for one instance, enforced by wasmtime through
/// [`wasmtime::ResourceLimiter`]: growth past the cap is refused and recorded
/// so that the resulting trap can be reported as a memory failure.
#[derive(Debug)]
pub struct MemoryCap {
    /// Largest linear memory allowed, in bytes.
    limit: usize,
    /// Set when a growth past `limit` was refused during the current call.
    pub hit: bool,
}

/// Table growth cap: far above what a policy needs, low enough to bound memory.
const MAX_TABLE_ELEMENTS: usize = 1 << 20;

impl wasmtime::ResourceLimiter for MemoryCap {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.hit = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }

    // Interpreted languages (componentize-py) bring many core instances.
    fn instances(&self) -> usize {
        1000
    }
    fn memories(&self) -> usize {
        1000
    }
    fn tables(&self) -> usize {
        1000
    }
}

/// A bounded sink for guest stdout/stderr. Writes never fail or block the
/// guest: bytes past the limit are dropped and counted.
#[derive(Clone, Debug)]
pub struct CapturedOutput {
    inner: Arc<Mutex<OutputBuffer>>,
}

#[derive(Debug, Default)]
struct OutputBuffer {
    bytes: Vec<u8>,
    limit: usize,
    dropped: usize,
}

impl CapturedOutput {
    fn new(limit: usize) -> Self {
        CapturedOutput { inner: Arc::new(Mutex::new(OutputBuffer { limit, ..Default::default() })) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, OutputBuffer> {
        // A poisoned lock only means a writer panicked mid-append; the bytes
        // are still a valid Vec, so keep going.
        self.inner.lock().unwrap_or_else(|poison| poison.into_inner())
    }

    fn append(&self, data: &[u8]) {
        let mut buf = self.lock();
        let room = buf.limit.saturating_sub(buf.bytes.len());
        let kept = room.min(data.len());
        buf.bytes.extend_from_slice(&data[..kept]);
        buf.dropped += data.len() - kept;
    }

    /// Take the captured text and the number of bytes dropped.
    pub fn take(&self) -> (String, usize) {
        let mut buf = self.lock();
        if buf.bytes.is_empty() && buf.dropped == 0 {
            return (String::new(), 0);
        }
        let text = String::from_utf8_lossy(&buf.bytes).into_owned();
        buf.bytes.clear();
        let dropped = std::mem::take(&mut buf.dropped);
        (text, dropped)
    }
}

impl IsTerminal for CapturedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CapturedOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CapturedOutput {
    async fn ready(&mut self) {}
}

#[wasmtime_wasi::async_trait]
impl OutputStream for CapturedOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.append(&bytes);
        Ok(())
    }
    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }
    fn check_write(&mut self) -> StreamResult<usize> {
        // Always accept: excess is dropped in `append`, never an error.
        Ok(64 * 1024)
    }
}

impl AsyncWrite for CapturedOutput {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.append(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_bounded_and_counts_drops() {
        let out = CapturedOutput::new(8);
        out.append(b"hello ");
        out.append(b"world\n");
        let (text, dropped) = out.take();
        assert_eq!(text, "hello wo");
        assert_eq!(dropped, 4);
        assert_eq!(out.take(), (String::new(), 0));
    }

    #[test]
    fn truncate_keeps_char_boundaries() {
        assert_eq!(truncate("short", 10), "short");
        let cut = truncate("ééééé", 3);
        assert!(cut.starts_with('é'), "{cut}");
        assert!(cut.contains("bytes cut"), "{cut}");
    }
}
