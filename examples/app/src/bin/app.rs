//! `app`: every service of the evaluation application, one binary whose
//! environment says what a request costs and whom it calls. `GET /` (any
//! path but `/healthz`) does, in order:
//!
//! - `CPU_MS` milliseconds of CPU time (CPU time of the serving thread, so
//!   a CPU limit's throttling lengthens the wall time, not the cost); while
//!   a burst is on (`BURST_PERIOD_S` > 0: the first `BURST_LEN_S` seconds
//!   of every `BURST_PERIOD_S` of the wall clock, the same on every replica)
//!   `BURST_CPU_MS` instead;
//! - keeps `KEEP_KB` KiB allocated and touched for `KEEP_S` seconds (a
//!   session cache: memory that grows with the request rate);
//! - calls each service of `CALLS` (`name:port,...`) in turn, `GET /`, over
//!   keep-alive connections spread round robin over every address the name
//!   resolves to (Swarm's `dnsrr`), re-resolved every second; a failed or
//!   non-200 call answers 502.
//!
//! The CPU work runs on at most `WORKERS` (2) requests at once per replica;
//! the others wait their turn, as in a server with a worker pool.
//! `STORE_MB` MiB are allocated and touched at start (a resident working
//! set). `/healthz` answers at once. Listens on `PORT` (8080).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use app::{Slots, Upstream, burn, call, env_or, exit_on_sigterm, serve};

/// The session cache: blocks kept with the time they were made.
type Sessions = Mutex<VecDeque<(Instant, Vec<u8>)>>;

fn main() {
    exit_on_sigterm();
    // Blocks of the session cache are given back to the kernel when freed:
    // without a fixed mmap threshold glibc raises it and keeps them.
    // SAFETY: mallopt only sets an allocator parameter.
    unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, 64 * 1024) };
    let port: u16 = env_or("PORT", 8080);
    let cpu = Duration::from_secs_f64(env_or("CPU_MS", 1.0f64) / 1000.0);
    let burst_cpu = Duration::from_secs_f64(env_or("BURST_CPU_MS", 0.0f64) / 1000.0);
    let burst_period: u64 = env_or("BURST_PERIOD_S", 0);
    let burst_len: u64 = env_or("BURST_LEN_S", 0);
    let keep_kb: usize = env_or("KEEP_KB", 0);
    let keep = Duration::from_secs_f64(env_or("KEEP_S", 0.0f64));
    let timeout = Duration::from_millis(env_or("CALL_TIMEOUT_MS", 3000));
    let slots = Slots::new(env_or("WORKERS", 2));
    let store_mb: usize = env_or("STORE_MB", 0);
    let store: Vec<u8> = vec![1u8; store_mb << 20];
    std::hint::black_box(&store);
    let calls: Vec<Arc<Upstream>> = std::env::var("CALLS")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(Upstream::new)
        .collect();
    let sessions: Arc<Sessions> = Arc::new(Mutex::new(VecDeque::new()));
    if keep_kb > 0 {
        let sessions = Arc::clone(&sessions);
        std::thread::spawn(move || {
            loop {
                std::thread::sleep(Duration::from_millis(500));
                expire(&sessions, keep);
            }
        });
    }
    eprintln!(
        "app: :{port} cpu {cpu:?} burst {burst_cpu:?} {burst_len}/{burst_period}s keep {keep_kb}KiB {keep:?} store {store_mb}MiB calls {:?}",
        calls.iter().map(|c| c.name.as_str()).collect::<Vec<_>>()
    );
    let handler = move |req: &app::Request| -> (u16, String) {
        if req.path == "/healthz" {
            return (200, "ok\n".into());
        }
        let bursting = burst_period > 0 && {
            let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
            now % burst_period < burst_len
        };
        slots.with(|| burn(if bursting { burst_cpu } else { cpu }));
        if keep_kb > 0 {
            let block = vec![1u8; keep_kb << 10];
            let mut s = sessions.lock().unwrap_or_else(|e| e.into_inner());
            s.push_back((Instant::now(), block));
        }
        for up in &calls {
            match call(up, "/", timeout) {
                Ok(200) => {}
                Ok(status) => return (502, format!("{} answered {status}\n", up.name)),
                Err(err) => return (502, format!("{}: {err}\n", up.name)),
            }
        }
        (200, "ok\n".into())
    };
    if let Err(err) = serve(port, handler) {
        eprintln!("app: cannot listen on :{port}: {err}");
        std::process::exit(1);
    }
}

/// Drop the session blocks older than `keep`.
fn expire(sessions: &Sessions, keep: Duration) {
    let mut s = sessions.lock().unwrap_or_else(|e| e.into_inner());
    while s.front().is_some_and(|(t, _)| t.elapsed() > keep) {
        s.pop_front();
    }
}
