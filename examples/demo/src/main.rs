//! `demo`: the workload the autoscaler scales in the demo and the Swarm
//! end-to-end tests. A tiny HTTP/1.1 server, std only, one thread per
//! connection, built statically for a `FROM scratch` image.
//!
//! Routes (GET; query parameters optional):
//! - `/` and `/healthz`: `ok <replica>` (the short container id), so a
//!   client sees which replica answered.
//! - `/burn?ms=N`: spin on the CPU for N ms of wall time (default 100, at
//!   most 10000), then answer. Under a CPU limit the spin is throttled, so
//!   N ms of load keeps the container at its limit for N ms.
//! - `/hold?mb=N&ms=M`: allocate and touch N MiB (default 64, at most 4096),
//!   keep them for M ms (default 1000, at most 60000), then free them.
//!
//! With `SLOT_PORT_BASE` and `SLOT` set, each replica also listens on its
//! own port `SLOT_PORT_BASE + SLOT`, so that a test can load one replica.
//!
//! The socket is bound with `SO_REUSEPORT`: the demo stack runs every replica
//! on the host network (Swarm's ingress mesh needs IPVS, which hosts like
//! the CI machines lack), all on the same port, and the kernel spreads new
//! connections over them. Connections are kept alive unless the client sends
//! `Connection: close` (the load generators send it so that every request
//! may land on another replica). SIGTERM exits at once: a Swarm scale-down
//! should not wait for the stop grace period.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::FromRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Most connections served at once; more get `503` and are closed.
const MAX_CONNECTIONS: usize = 512;
/// Longest request head accepted, in bytes.
const MAX_HEAD: usize = 16 * 1024;

fn main() {
    exit_on_sigterm();
    let port = std::env::var("PORT").ok().and_then(|p| p.parse::<u16>().ok()).unwrap_or(8080);
    let listener = match listen_reuseport(port) {
        Ok(l) => l,
        Err(err) => {
            eprintln!("demo: cannot listen on port {port}: {err}");
            std::process::exit(1);
        }
    };
    let host = hostname();
    eprintln!("demo: {host} listening on :{port}");
    let open = Arc::new(AtomicUsize::new(0));
    // A replica's own port, `SLOT_PORT_BASE + SLOT` (Swarm fills SLOT from
    // `--env SLOT={{.Task.Slot}}`): lets a test load one replica and not
    // the others, which the shared port cannot do.
    let own_port = std::env::var("SLOT_PORT_BASE")
        .ok()
        .and_then(|b| b.parse::<u16>().ok())
        .zip(std::env::var("SLOT").ok().and_then(|s| s.parse::<u16>().ok()))
        .and_then(|(base, slot)| base.checked_add(slot));
    if let Some(own) = own_port {
        match listen_reuseport(own) {
            Ok(listener) => {
                eprintln!("demo: {host} also listening on its own port :{own}");
                let (open, host) = (Arc::clone(&open), host.clone());
                std::thread::spawn(move || accept_loop(&listener, &host, &open));
            }
            Err(err) => eprintln!("demo: cannot listen on its own port {own}: {err}"),
        }
    }
    accept_loop(&listener, &host, &open);
}

/// Accept connections and serve each on a thread of its own, at most
/// `MAX_CONNECTIONS` at once across every listener.
fn accept_loop(listener: &TcpListener, host: &str, open: &Arc<AtomicUsize>) {
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        if open.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
            open.fetch_sub(1, Ordering::AcqRel);
            let mut stream = stream;
            let _ = respond(&mut stream, 503, "busy\n", false);
            continue;
        }
        let open = Arc::clone(open);
        let host = host.to_string();
        std::thread::spawn(move || {
            let _ = serve(stream, &host);
            open.fetch_sub(1, Ordering::AcqRel);
        });
    }
}

/// Serve requests on one connection until the client closes it or asks to.
fn serve(stream: TcpStream, host: &str) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    loop {
        let Some(request) = read_head(&mut reader)? else { return Ok(()) };
        let keep_alive = request.keep_alive;
        let (status, body) = route(&request, host);
        respond(&mut writer, status, &body, keep_alive)?;
        if !keep_alive {
            return Ok(());
        }
    }
}

/// The parts of a request head the routes use.
#[derive(Debug)]
struct Request {
    /// `GET`, `HEAD`, ...
    method: String,
    /// Path without the query.
    path: String,
    /// Query string after `?`, or empty.
    query: String,
    /// Whether to keep the connection open after answering.
    keep_alive: bool,
}

/// Read one request head; `None` at a clean end of the connection.
fn read_head(reader: &mut BufReader<TcpStream>) -> std::io::Result<Option<Request>> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("/");
    let version = parts.next().unwrap_or("HTTP/1.0");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut keep_alive = version == "HTTP/1.1";
    let mut size = line.len();
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 {
            return Ok(None);
        }
        size += header.len();
        if size > MAX_HEAD {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "request head too large"));
        }
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("connection")
        {
            let value = value.trim();
            if value.eq_ignore_ascii_case("close") {
                keep_alive = false;
            } else if value.eq_ignore_ascii_case("keep-alive") {
                keep_alive = true;
            }
        }
    }
    Ok(Some(Request { method, path: path.to_string(), query: query.to_string(), keep_alive }))
}

/// Answer one request: status and body.
fn route(request: &Request, host: &str) -> (u16, String) {
    if request.method != "GET" && request.method != "HEAD" {
        return (405, "only GET\n".into());
    }
    match request.path.as_str() {
        "/" | "/healthz" => (200, format!("ok {host}\n")),
        "/burn" => {
            let ms = param(&request.query, "ms").unwrap_or(100).min(10_000);
            let spins = burn(Duration::from_millis(ms));
            (200, format!("burned {ms} ms on {host} ({spins} spins)\n"))
        }
        "/hold" => {
            let mb = param(&request.query, "mb").unwrap_or(64).min(4096);
            let ms = param(&request.query, "ms").unwrap_or(1000).min(60_000);
            let mut block = vec![0u8; (mb as usize) << 20];
            // Touch every page so the memory is really charged to the cgroup.
            for page in block.chunks_mut(4096) {
                page[0] = 1;
            }
            std::thread::sleep(Duration::from_millis(ms));
            let touched = std::hint::black_box(&block).iter().step_by(4096).filter(|b| **b == 1).count();
            drop(block);
            (200, format!("held {mb} MiB ({touched} pages) for {ms} ms on {host}\n"))
        }
        _ => (404, "routes: / /healthz /burn?ms=N /hold?mb=N&ms=M\n".into()),
    }
}

/// Spin until `wall` has passed; returns the number of iterations.
fn burn(wall: Duration) -> u64 {
    let start = Instant::now();
    let mut spins: u64 = 0;
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    while start.elapsed() < wall {
        for _ in 0..1000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
        }
        spins += 1;
    }
    std::hint::black_box(x);
    spins
}

/// The numeric value of `key` in a query string.
fn param(query: &str, key: &str) -> Option<u64> {
    query.split('&').filter_map(|kv| kv.split_once('=')).find(|(k, _)| *k == key).and_then(|(_, v)| v.parse().ok())
}

fn respond(stream: &mut TcpStream, status: u16, body: &str, keep_alive: bool) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Service Unavailable",
    };
    let connection = if keep_alive { "keep-alive" } else { "close" };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: {connection}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    stream.flush()
}

/// A name for this replica: `DEMO_NAME` if set, else the short container id
/// from `/proc/self/cgroup` (replicas on the host network share the host's
/// hostname), else the hostname.
fn hostname() -> String {
    let from_cgroup = || {
        let cgroup = std::fs::read_to_string("/proc/self/cgroup").ok()?;
        cgroup
            .split(['/', '\n', '-', '.'])
            .find(|part| part.len() == 64 && part.bytes().all(|b| b.is_ascii_hexdigit()))
            .map(|id| id[..12].to_string())
    };
    std::env::var("DEMO_NAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(from_cgroup)
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// Listen on `0.0.0.0:port` with `SO_REUSEPORT`, so that several replicas
/// on the host network share the port and the kernel balances between them.
fn listen_reuseport(port: u16) -> std::io::Result<TcpListener> {
    let last_error = || std::io::Error::last_os_error();
    // SAFETY: plain socket syscalls on a descriptor this function owns; it is
    // handed to `TcpListener` (which closes it) or closed on every error path.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(last_error());
        }
        let one: libc::c_int = 1;
        let size = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        let opt = |name| libc::setsockopt(fd, libc::SOL_SOCKET, name, (&one as *const libc::c_int).cast(), size);
        let addr = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr { s_addr: libc::INADDR_ANY },
            sin_zero: [0; 8],
        };
        let addr_len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        if opt(libc::SO_REUSEADDR) != 0
            || opt(libc::SO_REUSEPORT) != 0
            || libc::bind(fd, (&addr as *const libc::sockaddr_in).cast(), addr_len) != 0
            || libc::listen(fd, 1024) != 0
        {
            let err = last_error();
            libc::close(fd);
            return Err(err);
        }
        Ok(TcpListener::from_raw_fd(fd))
    }
}

/// As PID 1 in a container, SIGTERM is ignored unless handled: exit at once.
fn exit_on_sigterm() {
    extern "C" fn on_term(_: libc::c_int) {
        // SAFETY: `_exit` is async-signal-safe and touches no Rust state.
        unsafe { libc::_exit(0) }
    }
    // SAFETY: installs a handler that only calls `_exit`; the cast is the
    // documented way to pass a handler function to `signal`.
    unsafe {
        libc::signal(libc::SIGTERM, on_term as *const () as libc::sighandler_t);
    }
}
