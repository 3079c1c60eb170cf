//! Closed-loop load on the demo workload: clients each asking for some
//! milliseconds of CPU burn, one connection per request (so the kernel
//! spreads them over the replicas), until stopped.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use super::http_get;

/// A running load; stopped on drop.
#[derive(Debug)]
pub struct Load {
    stop: Arc<AtomicBool>,
    served: Arc<AtomicU64>,
    threads: Vec<JoinHandle<()>>,
}

impl Load {
    /// `threads` clients on 127.0.0.1:`port`, 50 ms of CPU per request, no pause.
    pub fn start(port: u16, threads: usize) -> Load {
        Load::on("127.0.0.1", port, threads, 50, 0)
    }

    /// `threads` clients on `addr:port` asking for `burn_ms` of CPU each,
    /// pausing `pause_ms` after each answer.
    pub fn on(addr: &str, port: u16, threads: usize, burn_ms: u64, pause_ms: u64) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicU64::new(0));
        let threads = (0..threads)
            .map(|_| {
                let (stop, served, addr) = (stop.clone(), served.clone(), addr.to_string());
                std::thread::spawn(move || {
                    let path = format!("/burn?ms={burn_ms}");
                    while !stop.load(Ordering::Relaxed) {
                        match http_get(&addr, port, &path, Duration::from_secs(15)) {
                            Some(_) => {
                                served.fetch_add(1, Ordering::Relaxed);
                                std::thread::sleep(Duration::from_millis(pause_ms));
                            }
                            None => std::thread::sleep(Duration::from_millis(20)),
                        }
                    }
                })
            })
            .collect();
        Load { stop, served, threads }
    }

    /// Stop; the requests answered.
    pub fn stop(mut self) -> u64 {
        self.halt();
        self.served.load(Ordering::Relaxed)
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.halt();
    }
}
