//! An open-loop HTTP/1.1 client on loopback and the comparison of what it
//! saw with the probe's demand samples: shared by the truth test
//! (`tests/demand_truth.rs`) and the probe benchmark.
//!
//! Requests are scheduled at fixed times (`rate` per second), whatever the
//! server answers: a scheduler thread waits for each time (sleep, then spin
//! the last 200 us) and starts the request on the tokio runtime. Each
//! request's latency is counted from its scheduled time to the first byte
//! of its answer, so a server that falls behind is charged for it
//! (no coordinated omission). One request per connection
//! (`Connection: close`), or keep-alive: a request takes an idle connection
//! of the pool, or opens one when none is idle (the kernel sees every
//! request the moment the client sends it; none waits in the client).
//! The first byte's time is the kernel's receive timestamp of the answer
//! on the client's socket (`SO_TIMESTAMPNS`), not when the client's task
//! woke up to read it: on a busy machine a wake-up takes milliseconds.

#![allow(dead_code, reason = "shared by the test and the benchmark, each uses a part")]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use host::model::{EventKind, monotonic_ns};
use host::probe::ProbeEvent;
use std::os::fd::AsRawFd;

use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::TcpStream;

/// What the client saw of one request (CLOCK_MONOTONIC ns).
#[derive(Debug, Clone, Copy)]
pub struct Outcome {
    /// When it was due.
    pub scheduled_ns: u64,
    /// When its last byte was written; 0 if it failed before.
    pub sent_ns: u64,
    /// When the first byte of the answer came; 0 if none came.
    pub first_byte_ns: u64,
}

impl Outcome {
    /// Scheduled time to first byte, ns.
    pub fn latency_ns(&self) -> Option<u64> {
        (self.first_byte_ns > 0).then(|| self.first_byte_ns - self.scheduled_ns)
    }
}

/// Raise the soft limit of open files to the hard one: an open-loop client
/// above saturation holds thousands of connections.
pub fn raise_nofile() {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: plain syscalls on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// Send `rate` requests per second for `duration` to 127.0.0.1:`port` and
/// wait for every answer (at most `duration + 30 s`).
pub async fn run(port: u16, rate: f64, duration: Duration, keep_alive: bool) -> Vec<Outcome> {
    run_path(port, "/", rate, duration, keep_alive).await
}

/// [`run`], each request a `GET` of `path`.
pub async fn run_path(port: u16, path: &str, rate: f64, duration: Duration, keep_alive: bool) -> Vec<Outcome> {
    let connection = if keep_alive { "" } else { "Connection: close\r\n" };
    let request: Arc<[u8]> = format!("GET {path} HTTP/1.1\r\nHost: demand\r\n{connection}\r\n").into_bytes().into();
    let n = (rate * duration.as_secs_f64()).round() as usize;
    let pool: Arc<Mutex<Vec<TcpStream>>> = Arc::new(Mutex::new(Vec::new()));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let rt = tokio::runtime::Handle::current();
    let start = monotonic_ns() + 20_000_000;
    let scheduler = std::thread::spawn(move || {
        for i in 0..n {
            let at = start + (i as f64 * 1e9 / rate) as u64;
            loop {
                let now = monotonic_ns();
                if now >= at {
                    break;
                }
                if at - now > 300_000 {
                    std::thread::sleep(Duration::from_nanos(at - now - 200_000));
                } else {
                    std::hint::spin_loop();
                }
            }
            let _ = tx.send(rt.spawn(one(at, port, keep_alive, pool.clone(), request.clone())));
        }
    });
    let mut out = Vec::with_capacity(n);
    let deadline = tokio::time::Instant::now() + duration + Duration::from_secs(30);
    while let Some(task) = rx.recv().await {
        match tokio::time::timeout_at(deadline, task).await {
            Ok(Ok(outcome)) => out.push(outcome),
            _ => out.push(Outcome { scheduled_ns: 0, sent_ns: 0, first_byte_ns: 0 }),
        }
    }
    let _ = scheduler.join();
    out
}

async fn one(at: u64, port: u16, keep_alive: bool, pool: Arc<Mutex<Vec<TcpStream>>>, request: Arc<[u8]>) -> Outcome {
    let mut outcome = Outcome { scheduled_ns: at, sent_ns: 0, first_byte_ns: 0 };
    let idle = if keep_alive { pool.lock().ok().and_then(|mut p| p.pop()) } else { None };
    let mut stream = match idle {
        Some(s) => s,
        None => match TcpStream::connect(("127.0.0.1", port)).await {
            Ok(s) => s,
            Err(_) => return outcome,
        },
    };
    let _ = stream.set_nodelay(true);
    let one: libc::c_int = 1;
    // SAFETY: setsockopt on an open socket with a valid int option.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
    if stream.write_all(&request).await.is_err() {
        return outcome;
    }
    outcome.sent_ns = monotonic_ns();
    let mut buf = Vec::with_capacity(128);
    let mut chunk = [0u8; 256];
    let fd = stream.as_raw_fd();
    loop {
        if stream.readable().await.is_err() {
            return outcome;
        }
        match stream.try_io(Interest::READABLE, || recv_stamped(fd, &mut chunk)) {
            Ok((0, _)) => return outcome,
            Ok((k, stamp)) => {
                if outcome.first_byte_ns == 0 {
                    outcome.first_byte_ns = stamp.unwrap_or_else(monotonic_ns);
                }
                buf.extend_from_slice(&chunk[..k]);
                if answer_complete(&buf) {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(_) => return outcome,
        }
    }
    if keep_alive && let Ok(mut p) = pool.lock() {
        p.push(stream);
    }
    outcome
}

/// Whether `buf` holds a whole answer: its head and `Content-Length` bytes
/// of body.
fn answer_complete(buf: &[u8]) -> bool {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else { return false };
    let head = String::from_utf8_lossy(&buf[..end]);
    let length = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    buf.len() >= end + 4 + length
}

/// `recvmsg` with the kernel's receive timestamp of what it read, turned
/// from CLOCK_REALTIME into CLOCK_MONOTONIC ns.
fn recv_stamped(fd: std::os::fd::RawFd, buf: &mut [u8]) -> std::io::Result<(usize, Option<u64>)> {
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    let mut control = [0u64; 16];
    // SAFETY: an all-zero msghdr is valid; the pointers set below outlive
    // the call; CMSG_* walk only the control buffer the kernel filled.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control);
        let n = libc::recvmsg(fd, &mut msg, 0);
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mono = monotonic_ns();
        let mut real = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        libc::clock_gettime(libc::CLOCK_REALTIME, &mut real);
        let ns = |t: libc::timespec| t.tv_sec as i128 * 1_000_000_000 + t.tv_nsec as i128;
        let mut stamp = None;
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                let at = ns(ts) - (ns(real) - mono as i128);
                stamp = u64::try_from(at).ok().filter(|t| *t <= mono);
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
        Ok((n as usize, stamp))
    }
}

/// Nearest-rank percentile (`p` in 0..=100) of sorted values.
pub fn nearest_rank(sorted: &[u64], p: u64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (sorted.len() as u64 * p).div_ceil(100).max(1) as usize;
    sorted[rank - 1]
}

/// The probe's demand samples of one container at one close.
#[derive(Debug, Clone, Copy, Default)]
pub struct KernelSample {
    /// Kernel timestamp of the close, ns.
    pub at_ns: u64,
    pub queue: f64,
    pub inflight: f64,
    /// Per second.
    pub rate: f64,
    /// Seconds; `None` when no request was answered since the previous sample.
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
}

/// Group a container's demand samples by their close.
pub fn kernel_samples(events: &[ProbeEvent], container_id: &str) -> Vec<KernelSample> {
    let mut out: Vec<KernelSample> = Vec::new();
    let readings = events.iter().filter_map(|e| match e {
        ProbeEvent::Reading(r) if r.container_id == container_id && r.kind == EventKind::Sample => Some(r),
        _ => None,
    });
    for ev in readings {
        let name = ev.metric.name();
        if !matches!(
            name,
            "queue" | "inflight" | "request-rate" | "response-time-p50" | "response-time-p95" | "response-time-p99"
        ) {
            continue;
        }
        if out.last().is_none_or(|s| s.at_ns != ev.timestamp_ns) {
            out.push(KernelSample { at_ns: ev.timestamp_ns, ..Default::default() });
        }
        let s = out.last_mut().expect("pushed above");
        match name {
            "queue" => s.queue = ev.value,
            "inflight" => s.inflight = ev.value,
            "request-rate" => s.rate = ev.value,
            "response-time-p50" => s.p50 = Some(ev.value),
            "response-time-p95" => s.p95 = Some(ev.value),
            _ => s.p99 = Some(ev.value),
        }
    }
    out
}

/// One sample window compared: the kernel's figures beside the client's.
#[derive(Debug, Clone, Copy)]
pub struct Row {
    /// Start and end of the window (two consecutive closes), ns.
    pub from_ns: u64,
    pub to_ns: u64,
    /// Requests the client saw answered in the window (first byte).
    pub answered: usize,
    /// Requests the client sent in the window, per second / the kernel's.
    pub client_rate: f64,
    pub kernel_rate: f64,
    /// Client p50/p99 (scheduled time to first byte) / the kernel's, seconds.
    pub client_p50: f64,
    pub client_p99: f64,
    pub kernel_p50: Option<f64>,
    pub kernel_p99: Option<f64>,
    /// The client's own lag, seconds: the most any request answered in the
    /// window was sent after its scheduled time (connect included). It is
    /// in the client's latency and before the request reaches the server's
    /// kernel, which cannot see it.
    pub client_lag: f64,
    /// Client's outstanding requests within 2 ms of the close: the least
    /// counted from the send, the most counted from the scheduled time.
    pub outstanding_lo: usize,
    pub outstanding_hi: usize,
    pub kernel_inflight: f64,
    pub kernel_queue: f64,
}

impl Row {
    /// Whether a kernel percentile is within 10% (or 1 ms) of the client's,
    /// the client's own lag aside (it can only make the client's figure
    /// larger).
    pub fn close_enough(&self, kernel: Option<f64>, client: f64) -> bool {
        let tolerance = (0.1 * client).max(0.001);
        kernel.is_some_and(|k| k <= client + tolerance && k + tolerance + self.client_lag >= client)
    }

    /// Whether in-flight is within the client's outstanding range, give or
    /// take one.
    pub fn inflight_ok(&self) -> bool {
        self.kernel_inflight + 1.0 >= self.outstanding_lo as f64
            && self.kernel_inflight <= self.outstanding_hi as f64 + 1.0
    }
}

/// Compare every window between two closes that lies inside the client's
/// run (`from_ns`..`to_ns`, its first scheduled time to its last answer).
pub fn compare(outcomes: &[Outcome], samples: &[KernelSample]) -> Vec<Row> {
    let from = outcomes.iter().map(|o| o.scheduled_ns).filter(|t| *t > 0).min().unwrap_or(0);
    let to = outcomes.iter().map(|o| o.first_byte_ns).max().unwrap_or(0);
    let outstanding = |t: u64, by_send: bool| {
        outcomes
            .iter()
            .filter(|o| {
                let start = if by_send { o.sent_ns } else { o.scheduled_ns };
                start > 0 && start <= t && (o.first_byte_ns == 0 || o.first_byte_ns > t)
            })
            .count()
    };
    let mut rows = Vec::new();
    for pair in samples.windows(2) {
        let (a, b) = (pair[0].at_ns, pair[1].at_ns);
        if a < from || b > to {
            continue;
        }
        let answered: Vec<&Outcome> = outcomes.iter().filter(|o| o.first_byte_ns > a && o.first_byte_ns <= b).collect();
        let mut lat: Vec<u64> = answered.iter().filter_map(|o| o.latency_ns()).collect();
        let lag = answered.iter().map(|o| o.sent_ns.saturating_sub(o.scheduled_ns)).max().unwrap_or(0);
        lat.sort_unstable();
        let sent = outcomes.iter().filter(|o| o.sent_ns > a && o.sent_ns <= b).count();
        let (mut lo, mut hi) = (usize::MAX, 0);
        let mut t = b.saturating_sub(2_000_000);
        while t <= b + 2_000_000 {
            lo = lo.min(outstanding(t, true));
            hi = hi.max(outstanding(t, false));
            t += 100_000;
        }
        rows.push(Row {
            from_ns: a,
            to_ns: b,
            answered: lat.len(),
            client_rate: sent as f64 * 1e9 / (b - a) as f64,
            kernel_rate: pair[1].rate,
            client_p50: nearest_rank(&lat, 50) as f64 / 1e9,
            client_p99: nearest_rank(&lat, 99) as f64 / 1e9,
            kernel_p50: pair[1].p50,
            kernel_p99: pair[1].p99,
            client_lag: lag as f64 / 1e9,
            outstanding_lo: lo,
            outstanding_hi: hi,
            kernel_inflight: pair[1].inflight,
            kernel_queue: pair[1].queue,
        });
    }
    rows
}

/// One line per row, for the test's messages and the benchmark.
pub fn describe(label: &str, rows: &[Row]) -> String {
    let ms = |v: f64| format!("{:.3}", v * 1e3);
    let opt = |v: Option<f64>| v.map_or("-".to_string(), ms);
    rows.iter()
        .map(|r| {
            format!(
                "{label} answered={} rate client={:.0} kernel={:.0} p50_ms client={} kernel={} p99_ms client={} kernel={} client_lag_ms={} outstanding={}..{} inflight={} queue={}",
                r.answered,
                r.client_rate,
                r.kernel_rate,
                ms(r.client_p50),
                opt(r.kernel_p50),
                ms(r.client_p99),
                opt(r.kernel_p99),
                ms(r.client_lag),
                r.outstanding_lo,
                r.outstanding_hi,
                r.kernel_inflight,
                r.kernel_queue
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}
