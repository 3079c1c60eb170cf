//! Per-instance store data: the deny-by-default WASI context, the resource
//! caps, captured guest output and the `host` import that policies call.
//!
//! Invariant: a policy gets no capability that is not created here. There
//! are no preopened directories, no environment variables, no arguments, no
//! sockets and no name lookups; stdout and stderr go to a bounded buffer that
//! the runtime drains into the policy log after every call.
//!
//! Invariant: no host call blocks past the call's deadline. The only WASI
//! functions that wait are `wasi:io/poll.poll` and `pollable.block` (a
//! `sleep` is a clock pollable plus `block`); [`add_to_linker`] replaces
//! them with versions that wait at most until the deadline and then fail
//! the call as a timeout. Streams cannot wait: stdin is closed, stdout and
//! stderr always accept, and no file or socket can be opened.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime::component::{HasData, Linker, Resource, ResourceTable};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{DynPollable, OutputStream, Pollable, StreamResult};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::v1;
use super::limits::{MAX_HOST_RESOURCES, StoreCaps};
use super::log::{LogBudget, LogSink};

/// Longest single `log` message kept; the rest is cut with a marker.
const MAX_LOG_MESSAGE: usize = 4096;
/// `log` calls kept per `decide` call; further ones are counted and dropped.
const MAX_LOG_LINES_PER_CALL: u32 = 64;
/// Most bytes of a failed call's last words (its log lines and output)
/// put into its error; the end is kept, where a traceback names the error.
pub const MAX_LAST_WORDS: usize = 4096;
/// Log lines of a call kept for its last words.
const LAST_LOG_LINES: usize = 16;
/// Largest `wasi:random` request served (wasmtime's default is 64 MiB of
/// host memory per call, outside the instance's memory cap).
const MAX_RANDOM_BYTES: u64 = 64 << 10;

/// Everything an instance's sandbox needs from its policy.
#[derive(Debug, Clone)]
pub struct SandboxSettings {
    /// The policy's name, for every log line it causes.
    pub policy: Arc<str>,
    /// Cap on the sum of the instance's linear memories, in bytes.
    pub memory_limit: usize,
    /// Guest stdout+stderr kept per call, in bytes.
    pub output_limit: usize,
    /// The policy's log budget, shared by its instances.
    pub budget: Arc<LogBudget>,
    /// Where log lines go, without blocking.
    pub sink: LogSink,
}

/// The data of one policy instance's `Store`.
pub struct Sandbox {
    /// Name, budget and sink of the policy.
    settings: SandboxSettings,
    /// Deny-by-default WASI context (no dirs, env, args, network).
    wasi: WasiCtx,
    /// WASI resources the guest opened (streams for stdio, pollables).
    table: ResourceTable,
    /// Enforces the memory, table and count caps and records a hit.
    pub limits: StoreCaps,
    /// Guest stdout and stderr, bounded, drained after every call.
    pub output: CapturedOutput,
    /// `log` calls made during the current `decide` call.
    log_lines: u32,
    /// `log` calls dropped during the current call because of the bound.
    log_dropped: u32,
    /// The last `log` lines of the current call, for its error if it fails.
    call_log: std::collections::VecDeque<String>,
    /// What a failed call logged and printed, bounded; empty otherwise.
    pub last_words: String,
    /// When the current call must end; host waits never pass it.
    deadline: Instant,
    /// Set when a host wait was cut at the deadline during this call.
    pub waited_out: bool,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox").field("policy", &self.settings.policy).finish_non_exhaustive()
    }
}

impl Sandbox {
    /// A fresh sandbox for one instance.
    pub fn new(settings: SandboxSettings) -> Self {
        let output = CapturedOutput::new(settings.output_limit);
        let wasi = WasiCtx::builder()
            .stdout(output.clone())
            .stderr(output.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .socket_addr_check(|_, _| Box::pin(async { false }))
            .max_random_size(MAX_RANDOM_BYTES)
            .build();
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_HOST_RESOURCES);
        Sandbox {
            limits: StoreCaps::new(settings.memory_limit),
            settings,
            wasi,
            table,
            output,
            log_lines: 0,
            log_dropped: 0,
            call_log: std::collections::VecDeque::new(),
            last_words: String::new(),
            deadline: Instant::now(),
            waited_out: false,
        }
    }

    /// Reset per-call bookkeeping before a call that must end by `deadline`.
    pub fn begin_call(&mut self, deadline: Instant) {
        self.limits.hit = None;
        self.log_lines = 0;
        self.log_dropped = 0;
        self.call_log.clear();
        self.last_words.clear();
        self.deadline = deadline;
        self.waited_out = false;
    }

    /// Pass what the guest wrote to stdout/stderr during the call to the
    /// policy log, one line per line of output, and report dropped lines.
    /// When the call `failed`, its log lines and output become
    /// [`Sandbox::last_words`] instead (a Python traceback, a JS stack, a
    /// Rust panic message), for the call's error.
    pub fn finish_call(&mut self, failed: bool) {
        let (text, truncated) = self.output.take();
        if failed {
            self.last_words = self.last_words(&text, truncated);
            self.log_dropped = 0;
            return;
        }
        let SandboxSettings { policy, budget, sink, .. } = &self.settings;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            sink.send(budget, policy, tracing::Level::INFO, "output", truncate(line, MAX_LOG_MESSAGE).into_owned());
        }
        let mut notes = Vec::new();
        if truncated > 0 {
            notes.push(format!("{truncated} bytes of output over the per-call limit were dropped"));
        }
        if self.log_dropped > 0 {
            notes.push(format!(
                "{} log lines over the per-call limit of {MAX_LOG_LINES_PER_CALL} were dropped",
                self.log_dropped
            ));
        }
        if !notes.is_empty() {
            sink.send_unbudgeted(policy, tracing::Level::WARN, "runtime", notes.join("; "));
        }
    }
}

impl Sandbox {
    /// The call's log lines and `output`, one per line, at most
    /// [`MAX_LAST_WORDS`] bytes (the end kept), charged to the policy's
    /// log budget like any line; says what was cut.
    fn last_words(&mut self, output: &str, output_dropped: usize) -> String {
        let mut lines: Vec<String> = self.call_log.drain(..).collect();
        lines.extend(output.lines().filter(|l| !l.trim().is_empty()).map(|l| format!("output: {l}")));
        if lines.is_empty() {
            return String::new();
        }
        let mut kept = Vec::new();
        let mut used = 0;
        for line in lines.iter().rev() {
            if used + line.len() + 1 > MAX_LAST_WORDS {
                break;
            }
            used += line.len() + 1;
            kept.push(line.as_str());
        }
        kept.reverse();
        let mut notes = Vec::new();
        let cut = lines.len() - kept.len();
        if cut > 0 {
            notes.push(format!("{cut} earlier lines not shown"));
        }
        if output_dropped > 0 {
            notes.push(format!("{output_dropped} bytes of output over the per-call limit dropped"));
        }
        if self.log_dropped > 0 {
            notes.push(format!("{} log lines over the per-call limit dropped", self.log_dropped));
        }
        if !self.settings.budget.admit(used) {
            return format!("({} lines over the policy's log rate not shown)", lines.len());
        }
        let mut text = kept.join("\n");
        if !notes.is_empty() {
            text = format!("({})\n{text}", notes.join("; "));
        }
        text
    }
}

impl WasiView for Sandbox {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl Sandbox {
    /// A `host.log` call: bounded, then logged
    /// with the policy's name.
    fn log_line(&mut self, level: tracing::Level, message: &str) {
        self.log_lines += 1;
        if self.log_lines > MAX_LOG_LINES_PER_CALL {
            self.log_dropped += 1;
            return;
        }
        let message = truncate(message, MAX_LOG_MESSAGE).into_owned();
        if self.call_log.len() == LAST_LOG_LINES {
            self.call_log.pop_front();
        }
        let level_name = level.as_str().to_ascii_lowercase();
        self.call_log.push_back(format!("log {level_name}: {}", truncate(&message, MAX_LAST_WORDS / 4)));
        let SandboxSettings { policy, budget, sink, .. } = &self.settings;
        sink.send(budget, policy, level, "log", message);
    }
}

/// The `host` interface of a contract version, generated with its own
/// `level` enum; it ends in [`Sandbox::log_line`]. (A macro so that a 2.0
/// contract, with the 1.x bindings kept beside it, adds one line.)
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

host_interface!(v1);

/// Cut `text` to at most `max` bytes on a character boundary, marking the cut.
pub fn truncate(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if text.len() <= max {
        return text.into();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes cut)", &text[..end], text.len() - end).into()
}

/// Link everything a policy may import into `linker`: WASI p2 with its
/// waiting functions bounded by the call deadline, and the `host` interface.
pub fn add_to_linker(linker: &mut Linker<Sandbox>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_sync(linker)?;
    // Replace wasi:io/poll (the only way to wait) with the bounded version.
    linker.allow_shadowing(true);
    wasmtime_wasi::p2::bindings::sync::io::poll::add_to_linker::<Sandbox, BoundedPollData>(linker, |s| BoundedPoll {
        table: &mut s.table,
        deadline: s.deadline,
        waited_out: &mut s.waited_out,
    })?;
    linker.allow_shadowing(false);
    v1::Policy::add_to_linker::<Sandbox, wasmtime::component::HasSelf<Sandbox>>(linker, |s| s)
}

/// `wasi:io/poll` for one call: waits end at the call's deadline.
struct BoundedPoll<'a> {
    table: &'a mut ResourceTable,
    deadline: Instant,
    waited_out: &'a mut bool,
}

struct BoundedPollData;

impl HasData for BoundedPollData {
    type Data<'a> = BoundedPoll<'a>;
}

/// Why a host wait ended the call.
#[derive(Debug, thiserror::Error)]
#[error("the policy waited in a host call (sleep or wasi:io/poll) past its time limit")]
pub struct WaitedPastDeadline;

/// Run a host wait, giving up at `deadline`.
fn bounded<T>(
    deadline: Instant,
    waited_out: &mut bool,
    wait: impl std::future::Future<Output = wasmtime::Result<T>>,
) -> wasmtime::Result<T> {
    let left = deadline.saturating_duration_since(Instant::now());
    match wasmtime_wasi::runtime::in_tokio(async { tokio::time::timeout(left, wait).await }) {
        Ok(result) => result,
        Err(_elapsed) => {
            *waited_out = true;
            Err(wasmtime::Error::new(WaitedPastDeadline))
        }
    }
}

impl wasmtime_wasi::p2::bindings::sync::io::poll::Host for BoundedPoll<'_> {
    fn poll(&mut self, pollables: Vec<Resource<DynPollable>>) -> wasmtime::Result<Vec<u32>> {
        use wasmtime_wasi::p2::bindings::io::poll::Host as AsyncPoll;
        let BoundedPoll { table, deadline, waited_out } = self;
        bounded(*deadline, waited_out, AsyncPoll::poll(&mut **table, pollables))
    }
}

impl wasmtime_wasi::p2::bindings::sync::io::poll::HostPollable for BoundedPoll<'_> {
    fn ready(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<bool> {
        use wasmtime_wasi::p2::bindings::io::poll::HostPollable as AsyncPollable;
        wasmtime_wasi::runtime::in_tokio(AsyncPollable::ready(&mut *self.table, pollable))
    }

    fn block(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        use wasmtime_wasi::p2::bindings::io::poll::HostPollable as AsyncPollable;
        let BoundedPoll { table, deadline, waited_out } = self;
        bounded(*deadline, waited_out, AsyncPollable::block(&mut **table, pollable))
    }

    fn drop(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        wasmtime_wasi::p2::bindings::io::poll::HostPollable::drop(&mut *self.table, pollable)
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

    fn sandbox(rate: super::super::log::LogRate) -> Sandbox {
        Sandbox::new(SandboxSettings {
            policy: Arc::from("p"),
            memory_limit: 1 << 20,
            output_limit: 1 << 20,
            budget: Arc::new(LogBudget::new(rate)),
            sink: LogSink::start(),
        })
    }

    #[test]
    fn a_failed_calls_last_words_keep_the_end_and_say_what_was_cut() {
        let mut sandbox = sandbox(super::super::log::LogRate { lines_per_sec: 100, bytes_per_sec: 1 << 20 });
        sandbox.begin_call(Instant::now());
        sandbox.log_line(tracing::Level::INFO, "about to fail");
        let frames: String = (0..2000).map(|i| format!("frame {i}\n")).collect();
        sandbox.output.append(frames.as_bytes());
        sandbox.output.append(b"ValueError: boom\n");
        sandbox.finish_call(true);
        let words = sandbox.last_words.clone();
        assert!(words.len() <= MAX_LAST_WORDS + 100, "{} bytes", words.len());
        assert!(words.ends_with("output: ValueError: boom"), "{words}");
        assert!(words.starts_with('(') && words.contains("earlier lines not shown"), "{words}");
        assert!(!words.contains("about to fail"), "the earliest line is the one cut: {words}");
        sandbox.begin_call(Instant::now());
        assert!(sandbox.last_words.is_empty(), "a new call starts without last words");
        sandbox.log_line(tracing::Level::WARN, "fine");
        sandbox.finish_call(false);
        assert!(sandbox.last_words.is_empty(), "a call that succeeds has none");
    }

    #[test]
    fn last_words_over_the_log_rate_are_counted_not_shown() {
        let mut sandbox = sandbox(super::super::log::LogRate { lines_per_sec: 100, bytes_per_sec: 10 });
        sandbox.begin_call(Instant::now());
        sandbox.output.append(b"a long traceback line\n");
        sandbox.finish_call(true);
        assert_eq!(sandbox.last_words, "(1 lines over the policy's log rate not shown)");
    }

    #[test]
    fn truncate_keeps_char_boundaries() {
        assert_eq!(truncate("short", 10), "short");
        let cut = truncate("ééééé", 3);
        assert!(cut.starts_with('é'), "{cut}");
        assert!(cut.contains("bytes cut"), "{cut}");
    }
}
