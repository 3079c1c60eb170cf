//! `loadgen`: open-loop HTTP load from a trace, as wrk2 does it: requests
//! are sent on a schedule whatever the answers do, and each latency counts
//! from the request's scheduled time, so a request that waited for a free
//! connection, or behind a slow one, carries that wait (coordinated
//! omission cannot hide queueing).
//!
//! ```text
//! loadgen --trace FILE --target NAME:PORT [--path /] [--time-scale 1]
//!         [--rate-scale 1] [--workers 256] [--timeout-ms 5000] [--out FILE.csv]
//! ```
//!
//! The trace: lines `SECONDS RATE` (requests per second), `#` comments;
//! the rate is linear between points, and two points at the same second
//! make a step. Arrivals are evenly spaced at the current rate.
//! `--time-scale 0.5` plays it in half the time (same rates);
//! `--rate-scale` multiplies every rate. The target is resolved like the
//! application's callers do (every address of the name, re-resolved each
//! second, requests spread round robin on keep-alive connections).
//!
//! Output (`--out`, else stdout): `# t0_unix_ms=T` (the wall clock of the
//! schedule's zero), then `sched_ms,latency_ms,status` per request in
//! schedule order; status 0 is a failure (connection refused or reset, or
//! no answer within `--timeout-ms`).

use std::collections::VecDeque;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use app::{Upstream, call};

struct Args {
    trace: String,
    target: String,
    path: String,
    time_scale: f64,
    rate_scale: f64,
    workers: usize,
    timeout: Duration,
    out: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        trace: String::new(),
        target: String::new(),
        path: "/".into(),
        time_scale: 1.0,
        rate_scale: 1.0,
        workers: 256,
        timeout: Duration::from_secs(5),
        out: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--trace" => a.trace = value()?,
            "--target" => a.target = value()?,
            "--path" => a.path = value()?,
            "--time-scale" => a.time_scale = value()?.parse().map_err(|e| format!("--time-scale: {e}"))?,
            "--rate-scale" => a.rate_scale = value()?.parse().map_err(|e| format!("--rate-scale: {e}"))?,
            "--workers" => a.workers = value()?.parse().map_err(|e| format!("--workers: {e}"))?,
            "--timeout-ms" => {
                a.timeout = Duration::from_millis(value()?.parse().map_err(|e| format!("--timeout-ms: {e}"))?)
            }
            "--out" => a.out = Some(value()?),
            "-h" | "--help" => return Err(String::new()),
            _ => return Err(format!("unknown argument {flag}")),
        }
    }
    if a.trace.is_empty() || a.target.is_empty() {
        return Err("--trace and --target are needed".into());
    }
    if !(a.time_scale > 0.0 && a.rate_scale > 0.0 && a.workers > 0) {
        return Err("--time-scale, --rate-scale and --workers must be above 0".into());
    }
    Ok(a)
}

/// The trace's points `(seconds, rate)`, in order.
fn read_trace(path: &str) -> Result<Vec<(f64, f64)>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let mut points = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let mut f = line.split_whitespace().map(str::parse::<f64>);
        match (f.next(), f.next()) {
            (Some(Ok(t)), Some(Ok(r))) if t >= 0.0 && r >= 0.0 => points.push((t, r)),
            _ => return Err(format!("{path}:{}: want `SECONDS RATE`", n + 1)),
        }
    }
    if points.len() < 2 || points.windows(2).any(|w| w[1].0 < w[0].0) {
        return Err(format!("{path}: want two points or more, in time order"));
    }
    Ok(points)
}

/// The rate at `t` (linear between points; the later point of a step wins).
fn rate_at(points: &[(f64, f64)], t: f64) -> f64 {
    for w in points.windows(2) {
        let ((t0, r0), (t1, r1)) = (w[0], w[1]);
        if t >= t0 && t < t1 {
            return r0 + (r1 - r0) * (t - t0) / (t1 - t0);
        }
    }
    points.last().map_or(0.0, |p| p.1)
}

/// Scheduled send times, seconds from zero.
fn schedule(points: &[(f64, f64)], time_scale: f64, rate_scale: f64) -> Vec<f64> {
    let end = points.last().map_or(0.0, |p| p.0);
    let mut out = Vec::new();
    let mut t = 0.0;
    while t < end {
        let r = rate_at(points, t) * rate_scale;
        if r <= 0.0 {
            t += 0.01;
            continue;
        }
        out.push(t * time_scale);
        t += 1.0 / r / time_scale;
    }
    out
}

/// Requests waiting for a worker: `(index, scheduled seconds)`.
struct Queue {
    items: Mutex<VecDeque<(usize, f64)>>,
    ready: Condvar,
    done: AtomicBool,
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!(
                "{e}\nusage: loadgen --trace FILE --target NAME:PORT [--path /] [--time-scale F] [--rate-scale F] [--workers N] [--timeout-ms MS] [--out FILE]"
            );
            std::process::exit(2);
        }
    };
    let points = match read_trace(&args.trace) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("loadgen: {e}");
            std::process::exit(2);
        }
    };
    let times = schedule(&points, args.time_scale, args.rate_scale);
    let target = Upstream::new(&args.target);
    let wait = Instant::now();
    while target.is_empty() && wait.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!(
        "loadgen: {} requests over {:.0} s to {} ({} addresses), {} workers",
        times.len(),
        points.last().map_or(0.0, |p| p.0) * args.time_scale,
        args.target,
        target.len(),
        args.workers
    );
    let queue =
        Arc::new(Queue { items: Mutex::new(VecDeque::new()), ready: Condvar::new(), done: AtomicBool::new(false) });
    let (tx, rx) = mpsc::channel::<(usize, f64, u16)>();
    let start = Instant::now();
    let t0_unix_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis();
    for _ in 0..args.workers {
        let (queue, tx, target, path) = (Arc::clone(&queue), tx.clone(), Arc::clone(&target), args.path.clone());
        let timeout = args.timeout;
        std::thread::Builder::new()
            .stack_size(256 << 10)
            .spawn(move || {
                loop {
                    let job = {
                        let mut items = queue.items.lock().unwrap_or_else(|e| e.into_inner());
                        loop {
                            if let Some(job) = items.pop_front() {
                                break Some(job);
                            }
                            if queue.done.load(Ordering::Acquire) {
                                break None;
                            }
                            items = queue.ready.wait(items).unwrap_or_else(|e| e.into_inner());
                        }
                    };
                    let Some((i, sched)) = job else { return };
                    let status = call(&target, &path, timeout).unwrap_or(0);
                    let latency = start.elapsed().as_secs_f64() - sched;
                    let status = if latency > timeout.as_secs_f64() { 0 } else { status };
                    if tx.send((i, latency, status)).is_err() {
                        return;
                    }
                }
            })
            .expect("spawn worker");
    }
    drop(tx);
    for (i, &sched) in times.iter().enumerate() {
        let due = start + Duration::from_secs_f64(sched);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        queue.items.lock().unwrap_or_else(|e| e.into_inner()).push_back((i, sched));
        queue.ready.notify_one();
    }
    queue.done.store(true, Ordering::Release);
    queue.ready.notify_all();
    // Collect until every request answered or the last one timed out.
    let mut results: Vec<Option<(f64, u16)>> = vec![None; times.len()];
    let mut got = 0;
    let deadline = Instant::now() + args.timeout + Duration::from_secs(2);
    while got < times.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((i, latency, status)) => {
                results[i] = Some((latency, status));
                got += 1;
            }
            Err(_) => break,
        }
    }
    let end = start.elapsed().as_secs_f64();
    let mut text = format!("# t0_unix_ms={t0_unix_ms}\nsched_ms,latency_ms,status\n");
    let (mut failed, mut lat) = (0usize, Vec::with_capacity(times.len()));
    for (i, &sched) in times.iter().enumerate() {
        let (latency, status) = results[i].unwrap_or((end - sched, 0));
        if status != 200 {
            failed += 1;
        }
        lat.push(latency);
        text.push_str(&format!("{:.1},{:.2},{status}\n", sched * 1000.0, latency * 1000.0));
    }
    lat.sort_by(f64::total_cmp);
    let q = |p: f64| lat.get(((lat.len() as f64 * p).ceil() as usize).saturating_sub(1)).copied().unwrap_or(0.0);
    eprintln!(
        "loadgen: {} requests, {failed} failed, p50 {:.1} ms, p99 {:.1} ms, p99.9 {:.1} ms",
        times.len(),
        q(0.5) * 1000.0,
        q(0.99) * 1000.0,
        q(0.999) * 1000.0
    );
    let written = match &args.out {
        Some(path) => std::fs::write(path, text),
        None => std::io::stdout().write_all(text.as_bytes()),
    };
    if let Err(e) = written {
        eprintln!("loadgen: cannot write the results: {e}");
        std::process::exit(1);
    }
    // Workers still blocked on a hung connection are left to the exit.
    std::process::exit(0);
}
