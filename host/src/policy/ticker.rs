//! The epoch ticker: advances the engine's epoch while policy calls run, so
//! that a call past its deadline is interrupted.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::Engine;

/// Granularity of the epoch ticker; time limits are rounded up to it.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Advances the engine epoch every [`EPOCH_TICK`] while at least one call
/// is running, and sleeps otherwise so that an idle daemon costs nothing.
pub struct EpochTicker {
    /// Calls in flight.
    active: AtomicUsize,
    /// Set on drop of the runtime to end the thread.
    stop: AtomicBool,
    thread: std::sync::OnceLock<JoinHandle<()>>,
}

impl EpochTicker {
    /// Start the ticker thread for `engine`.
    pub fn start(engine: Engine) -> Arc<Self> {
        let ticker = Arc::new(EpochTicker {
            active: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            thread: std::sync::OnceLock::new(),
        });
        let weak = Arc::downgrade(&ticker);
        let handle = std::thread::Builder::new().name("epoch-ticker".into()).spawn(move || {
            loop {
                let Some(t) = weak.upgrade() else { return };
                if t.stop.load(Ordering::Relaxed) {
                    return;
                }
                let idle = t.active.load(Ordering::Acquire) == 0;
                drop(t);
                if idle {
                    std::thread::park_timeout(Duration::from_millis(250));
                } else {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            }
        });
        match handle {
            Ok(handle) => {
                let _ = ticker.thread.set(handle);
            }
            // Without the thread deadlines never fire: say so loudly.
            Err(err) => tracing::error!("could not start the epoch ticker, policy time limits are not enforced: {err}"),
        }
        ticker
    }

    /// Mark a call as running until the guard drops.
    pub fn enter(&self) -> TickerGuard<'_> {
        if self.active.fetch_add(1, Ordering::AcqRel) == 0
            && let Some(thread) = self.thread.get()
        {
            thread.thread().unpark();
        }
        TickerGuard(self)
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.get() {
            thread.thread().unpark();
        }
    }
}

pub struct TickerGuard<'a>(&'a EpochTicker);

impl Drop for TickerGuard<'_> {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}
