//! The policy runtime: loads WebAssembly components of world
//! `autoscaler:policy/policy` and runs their `decide` in a sandbox.
//!
//! - Sandbox: deny-by-default WASI (see [`sandbox`]): no files, environment,
//!   arguments or sockets; guest output goes to the log, bounded.
//! - Time: every call gets an epoch deadline; a ticker thread advances the
//!   engine's epoch while calls are running, so a looping policy traps.
//!   Host calls that could wait (sleep, `wasi:io/poll`) end at the same
//!   deadline (see [`sandbox`]), so no way into the host outlasts a call.
//! - Memory: a cap on the sum of an instance's memories and fixed caps on
//!   its instances, memories and tables (see [`limits`]).
//! - Text: a decision's reason is cut to [`MAX_REASON_BYTES`]; log lines pass
//!   a per-policy rate budget and never block (see [`log`]).
//! - Compilation: optionally in a child process bounded in time and memory
//!   (see [`compile`]), so that a compile bomb fails alone.
//! - Contract: one version, `autoscaler:policy@1.0.0` (see [`bindings`]);
//!   a call is self-contained (event and state, the service's settings
//!   parsed), so a policy keeps no table of services. A component built for
//!   another version is refused at load, naming both versions.
//! - Failure: a failed call poisons its instance; the next call starts a
//!   fresh one from the pre-instantiated [`PolicyPre`]. After
//!   [`RuntimeConfig::max_consecutive_failures`] failures in a row a policy is
//!   quarantined until it is loaded again (its file changes).
//! - Cache: compiled code is cached by content hash, in memory and on disk.
//!
//! Invariant: this module knows nothing about Docker, eBPF or files on disk
//! other than its own cache; it turns bytes into a [`LoadedPolicy`] and
//! `(Event, State)` into `Option<Decision>`.

mod bindings;
mod cache;
pub mod compile;
mod error;
pub mod health;
pub mod limits;
mod loaded;
mod log;
pub mod registry;
mod sandbox;
mod ticker;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use wasmtime::component::{Component, Linker, types::ComponentItem};
use wasmtime::{Config, Engine};

use bindings::v1;
pub use bindings::{CONTRACT_VERSION, WORLD};
pub use cache::{Origin, content_hash};
pub use compile::CompilerSettings;
pub use error::{Inspection, PolicyError, cause_chain};
use loaded::Pre;
pub use loaded::{LoadedPolicy, PolicyStatus};
pub use log::LogRate;
use log::{LogBudget, LogSink};
pub use registry::{PolicySet, PolicySlot, ReloadStats};
use sandbox::Sandbox;
use ticker::EpochTicker;

/// Longest decision reason passed on (it is copied into every audit record).
pub use crate::model::MAX_REASON_BYTES;

/// Least time given to creating an instance (its start code), when the call
/// limit is shorter: a Python policy needs about 1 ms on an idle machine and
/// ten times that on a busy one.
pub const MIN_INSTANTIATE_TIME: Duration = Duration::from_millis(100);

/// Limits and locations for the runtime. Defaults are in [`Default`].
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Wall-clock budget of one `decide` call (default 10 ms).
    pub time_limit: Duration,
    /// Largest sum of the linear memories of one instance, in bytes
    /// (default 64 MiB).
    pub memory_limit: usize,
    /// Guest stdout+stderr kept per call, in bytes (default 16 KiB).
    pub output_limit: usize,
    /// Failed calls in a row before a policy is quarantined (default 5).
    pub max_consecutive_failures: u32,
    /// Disk tier of the compile cache; `None` keeps it in memory only.
    pub cache_dir: Option<PathBuf>,
    /// Largest size of the disk tier, in bytes (default 512 MiB).
    pub cache_max_bytes: u64,
    /// Log lines per policy, across calls (default 20 lines, 16 KiB per second).
    pub log_rate: LogRate,
    /// Compile in a child process with these bounds; `None` compiles in
    /// this process without bounds (tests, tools).
    pub compiler: Option<CompilerSettings>,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            time_limit: Duration::from_millis(10),
            memory_limit: 64 << 20,
            output_limit: 16 << 10,
            max_consecutive_failures: 5,
            cache_dir: None,
            cache_max_bytes: 512 << 20,
            log_rate: LogRate::default(),
            compiler: None,
        }
    }
}

/// The engine settings, shared by the daemon and its compiler child (a
/// compiled artifact loads only into an engine with the same settings).
fn engine() -> anyhow::Result<Engine> {
    let mut wasm = Config::new();
    wasm.wasm_component_model(true)
        .epoch_interruption(true)
        // Component-model async makes every call about 3x slower and
        // policies do not use it.
        .concurrency_support(false)
        .max_wasm_stack(1 << 20);
    Engine::new(&wasm).map_err(|e| anyhow::anyhow!("creating the wasm engine: {e}"))
}

/// The wasmtime engine, linker and compile cache shared by all policies.
pub struct Runtime {
    engine: Engine,
    linker: Linker<Sandbox>,
    cache: cache::CompileCache,
    config: RuntimeConfig,
    ticker: Arc<EpochTicker>,
    /// Policy log lines go here, never blocking a call.
    sink: LogSink,
    /// Set by [`Runtime::cancel_compiles`]: compiles in flight stop.
    cancel: AtomicBool,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Runtime {
    /// Build the engine (Cranelift, epoch interruption, no component-model
    /// concurrency), the linker (deny-by-default WASI and the `host` import)
    /// and the cache.
    pub fn new(config: RuntimeConfig) -> anyhow::Result<Self> {
        let engine = engine()?;
        let mut linker = Linker::new(&engine);
        sandbox::add_to_linker(&mut linker).map_err(|e| anyhow::anyhow!("linking WASI and the host interface: {e}"))?;
        let cache = cache::CompileCache::new(&engine, config.cache_dir.as_deref(), config.cache_max_bytes);
        let ticker = EpochTicker::start(engine.clone());
        let sink = LogSink::start();
        Ok(Runtime { engine, linker, cache, config, ticker, sink, cancel: AtomicBool::new(false) })
    }

    /// Stop every compile in flight and refuse new ones (at shutdown).
    pub fn cancel_compiles(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }

    /// Keep the log lines of every policy of this runtime instead of
    /// logging them (`host policy run` prints them beside the decision).
    pub fn capture_policy_log(&self) {
        self.sink.capture();
    }

    /// The policy log lines kept since [`Runtime::capture_policy_log`].
    pub fn captured_policy_log(&self) -> Vec<String> {
        self.sink.take_captured()
    }

    /// Policy log lines dropped because the log thread fell behind.
    pub fn log_overflow(&self) -> u64 {
        self.sink.overflow.load(Ordering::Relaxed)
    }

    /// The limits in force.
    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }

    /// How many times a component was really compiled (not served by a cache).
    pub fn compiles(&self) -> u64 {
        self.cache.compiles()
    }

    /// Compile (or fetch from cache) and validate `bytes` as policy `name`,
    /// then instantiate it once so that a component that traps at start-up is
    /// rejected here rather than on the event path.
    pub fn load(&self, name: &str, bytes: &[u8]) -> Result<LoadedPolicy, PolicyError> {
        let (component, hash, origin) = self.compile(name, bytes)?;
        let pre = self.validate(name, &component)?;
        let mut policy = self.loaded(name, hex::encode(hash), origin, pre);
        policy.live = Some(policy.instantiate()?);
        policy.declare()?;
        Ok(policy)
    }

    /// Describe `bytes` for `host policy check`, validating it like [`Runtime::load`].
    pub fn inspect(&self, name: &str, bytes: &[u8]) -> Result<(Inspection, Result<(), PolicyError>), PolicyError> {
        let started = Instant::now();
        let (component, hash, origin) = self.compile(name, bytes)?;
        let load_ms = started.elapsed().as_secs_f64() * 1e3;
        let ty = component.component_type();
        let imports: Vec<String> = ty.imports(&self.engine).map(|(n, _)| n.to_string()).collect();
        let exports: Vec<String> = ty
            .exports(&self.engine)
            .map(|(n, item)| match item.ty {
                ComponentItem::ComponentFunc(_) => format!("{n} (function)"),
                _ => n.to_string(),
            })
            .collect();
        let runnable = self.validate(name, &component).and_then(|pre| {
            let mut policy = self.loaded(name, hex::encode(hash), origin, pre);
            policy.live = Some(policy.instantiate()?);
            policy.declare()?;
            Ok(policy)
        });
        // The version it runs on; else the one its imports name.
        let contract_version = match &runnable {
            Ok(policy) => Some(policy.contract_version().to_string()),
            Err(_) => imported_version(imports.iter().map(String::as_str)).map(str::to_string),
        };
        let settings = runnable.as_ref().map(|p| p.settings().to_vec()).unwrap_or_default();
        let inspection = Inspection {
            contract_version,
            settings,
            imports,
            exports,
            sha256: hex::encode(hash),
            origin: match origin {
                Origin::Memory => "memory cache",
                Origin::Disk => "disk cache",
                Origin::Compiled => "compiled",
            },
            load_ms,
        };
        Ok((inspection, runnable.map(drop)))
    }

    /// A validated policy with no instance yet and a clean failure record.
    fn loaded(&self, name: &str, sha256: String, origin: Origin, pre: Pre) -> LoadedPolicy {
        LoadedPolicy {
            name: Arc::from(name),
            sha256,
            origin,
            pre,
            settings: Arc::from([]),
            live: None,
            config: self.config.clone(),
            ticker: self.ticker.clone(),
            status: Arc::default(),
            recent: health::Recent::default(),
            quarantine: None,
            budget: Arc::new(LogBudget::new(self.config.log_rate)),
            sink: self.sink.clone(),
            args: bindings::Args::default(),
        }
    }

    fn compile(&self, name: &str, bytes: &[u8]) -> Result<(Component, cache::ContentHash, Origin), PolicyError> {
        check_component_header(bytes)
            .map_err(|reason| PolicyError::NotAComponent { policy: name.to_string(), reason })?;
        let policy = || name.to_string();
        let precompile = |bytes: &[u8]| match &self.config.compiler {
            Some(settings) => compile::compile_in_child(settings, bytes, &self.cancel),
            None => {
                self.engine.precompile_component(bytes).map_err(|e| compile::CompileFailure::Invalid(cause_chain(&e)))
            }
        };
        self.cache.get_or_compile(&self.engine, bytes, precompile).map_err(|err| match err {
            cache::CompileError::Failed(compile::CompileFailure::Invalid(reason)) => {
                PolicyError::Compile { policy: policy(), reason }
            }
            cache::CompileError::Failed(compile::CompileFailure::Limit(reason)) => {
                PolicyError::CompileLimit { policy: policy(), reason }
            }
            cache::CompileError::Failed(compile::CompileFailure::Cancelled) => {
                PolicyError::CompileLimit { policy: policy(), reason: "cancelled: the daemon is shutting down".into() }
            }
            cache::CompileError::Failed(compile::CompileFailure::Spawn(reason)) => {
                PolicyError::Compile { policy: policy(), reason }
            }
            cache::CompileError::Load(e) => PolicyError::Compile {
                policy: policy(),
                reason: format!("the compiled code could not be loaded: {}", cause_chain(&e)),
            },
        })
    }

    /// Check that `component` was built for this contract and fits its
    /// world. A component whose imports name another version of the
    /// package is refused with both versions named, before its exports are
    /// looked at.
    fn validate(&self, name: &str, component: &Component) -> Result<Pre, PolicyError> {
        let wrong = |reason: String| PolicyError::WrongWorld { policy: name.to_string(), reason };
        let ty = component.component_type();
        let imports: Vec<String> = ty.imports(&self.engine).map(|(import, _)| import.to_string()).collect();
        if let Some(version) = imported_version(imports.iter().map(String::as_str))
            && !bindings::runs(version)
        {
            return Err(PolicyError::OtherContract { policy: name.to_string(), built_for: version.to_string() });
        }
        let instance_pre = self.linker.instantiate_pre(component).map_err(|e| wrong(cause_chain(&e)))?;
        v1::PolicyPre::new(instance_pre).map(Pre::new).map_err(|e| wrong(cause_chain(&e)))
    }
}

/// The contract version a component's imports name (`autoscaler:policy/host@1.0.0`
/// or the types interface); `None` when it imports nothing of the package.
fn imported_version<'a>(mut imports: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    imports.find_map(|import| import.strip_prefix(bindings::PACKAGE_PREFIX)?.split_once('@').map(|(_, v)| v))
}

/// Reject anything that is not a component before handing it to Cranelift,
/// with a message that says what it is instead.
fn check_component_header(bytes: &[u8]) -> Result<(), String> {
    const MAGIC: &[u8] = b"\0asm";
    if bytes.len() < 8 || &bytes[..4] != MAGIC {
        return Err(format!("file does not start with the WebAssembly magic bytes ({} bytes long)", bytes.len()));
    }
    // Bytes 4..8: version (u16) and layer (u16); layer 1 is a component.
    match (u16::from_le_bytes([bytes[4], bytes[5]]), u16::from_le_bytes([bytes[6], bytes[7]])) {
        (_, 1) => Ok(()),
        (1, 0) => Err("it is a core WebAssembly module; turn it into a component \
                       (cargo build --target wasm32-wasip2, or wasm-tools component new)"
            .to_string()),
        (version, layer) => Err(format!("unknown WebAssembly version {version} layer {layer}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_check_names_what_the_file_is() {
        assert!(check_component_header(b"").expect_err("empty").contains("magic"));
        let core = b"\0asm\x01\0\0\0";
        assert!(check_component_header(core).expect_err("core module").contains("core WebAssembly module"));
        let component = b"\0asm\x0d\0\x01\0";
        assert!(check_component_header(component).is_ok());
    }
}
