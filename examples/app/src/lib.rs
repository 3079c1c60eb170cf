//! What the application's services and the load generator share: a DNS
//! lookup that returns every address of a name (Swarm's `dnsrr` endpoint
//! mode answers with one address per task), a caller that spreads its
//! requests over those addresses on keep-alive connections and re-resolves
//! the name every second (so new replicas get traffic and removed ones stop
//! getting it), a minimal HTTP/1.1 server, and CPU work measured in CPU
//! time of the calling thread.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, ToSocketAddrs, UdpSocket};
use std::os::fd::FromRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// Longest request or response head accepted, in bytes.
const MAX_HEAD: usize = 16 * 1024;

/// The IPv4 addresses of `name`: an IP literal as it is, else an `A` query
/// to the first nameserver of /etc/resolv.conf (Docker's embedded DNS,
/// 127.0.0.11, in a container on an overlay network), else the system
/// resolver. A static glibc binary in a `FROM scratch` image cannot rely on
/// NSS, hence the query of its own.
pub fn resolve(name: &str) -> Vec<Ipv4Addr> {
    if let Ok(ip) = name.parse::<Ipv4Addr>() {
        return vec![ip];
    }
    let server = std::fs::read_to_string("/etc/resolv.conf")
        .ok()
        .and_then(|conf| {
            conf.lines()
                .filter_map(|l| l.trim().strip_prefix("nameserver"))
                .find_map(|ip| ip.trim().parse::<Ipv4Addr>().ok())
        })
        .unwrap_or(Ipv4Addr::LOCALHOST);
    match query_a(server, name) {
        Some(found) if !found.is_empty() => found,
        _ => (name, 0)
            .to_socket_addrs()
            .map(|it| {
                it.filter_map(|a| match a {
                    SocketAddr::V4(v4) => Some(*v4.ip()),
                    SocketAddr::V6(_) => None,
                })
                .collect()
            })
            .unwrap_or_default(),
    }
}

/// One `A` query over UDP; `None` on any failure.
fn query_a(server: Ipv4Addr, name: &str) -> Option<Vec<Ipv4Addr>> {
    let socket = UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
    let id = (std::process::id() as u16) ^ (Instant::now().elapsed().subsec_nanos() as u16);
    let mut q = Vec::with_capacity(64);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]); // RD, one question
    for label in name.trim_end_matches('.').split('.') {
        q.push(u8::try_from(label.len()).ok()?);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]); // root, type A, class IN
    socket.send_to(&q, (server, 53)).ok()?;
    let mut buf = [0u8; 4096];
    let n = socket.recv(&mut buf).ok()?;
    let r = &buf[..n];
    if r.len() < 12 || r[..2] != id.to_be_bytes() || r[3] & 0x0f != 0 {
        return None;
    }
    let qd = u16::from_be_bytes([r[4], r[5]]);
    let an = u16::from_be_bytes([r[6], r[7]]);
    let mut at = 12;
    for _ in 0..qd {
        at = skip_name(r, at)? + 4;
    }
    let mut out = Vec::new();
    for _ in 0..an {
        at = skip_name(r, at)?;
        let head = r.get(at..at + 10)?;
        let (kind, len) = (u16::from_be_bytes([head[0], head[1]]), u16::from_be_bytes([head[8], head[9]]) as usize);
        let data = r.get(at + 10..at + 10 + len)?;
        if kind == 1 && len == 4 {
            out.push(Ipv4Addr::new(data[0], data[1], data[2], data[3]));
        }
        at += 10 + len;
    }
    Some(out)
}

/// The offset just past a (possibly compressed) name at `at`.
fn skip_name(r: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let len = *r.get(at)?;
        if len & 0xc0 == 0xc0 {
            return Some(at + 2);
        }
        if len == 0 {
            return Some(at + 1);
        }
        at += 1 + len as usize;
    }
}

/// A service called by name: its addresses, refreshed every second by a
/// thread of its own, and a round-robin cursor over them.
pub struct Upstream {
    /// `name:port` as given.
    pub name: String,
    port: u16,
    addrs: RwLock<Vec<SocketAddr>>,
    next: AtomicUsize,
}

impl Upstream {
    /// `spec` is `name:port`. Starts the re-resolving thread.
    pub fn new(spec: &str) -> Arc<Upstream> {
        let (host, port) = spec.rsplit_once(':').unwrap_or((spec, "8080"));
        let up = Arc::new(Upstream {
            name: spec.to_string(),
            port: port.parse().unwrap_or(8080),
            addrs: RwLock::new(Vec::new()),
            next: AtomicUsize::new(0),
        });
        up.refresh(host);
        let (weak, host) = (Arc::downgrade(&up), host.to_string());
        std::thread::spawn(move || {
            while let Some(up) = weak.upgrade() {
                up.refresh(&host);
                drop(up);
                std::thread::sleep(Duration::from_secs(1));
            }
        });
        up
    }

    fn refresh(&self, host: &str) {
        let mut found: Vec<SocketAddr> =
            resolve(host).into_iter().map(|ip| SocketAddr::from((ip, self.port))).collect();
        if found.is_empty() {
            return; // keep the last answer through a failed lookup
        }
        found.sort();
        *self.addrs.write().unwrap_or_else(|e| e.into_inner()) = found;
    }

    /// The next address, round robin; `None` before any lookup answered.
    pub fn pick(&self) -> Option<SocketAddr> {
        let addrs = self.addrs.read().unwrap_or_else(|e| e.into_inner());
        if addrs.is_empty() {
            return None;
        }
        Some(addrs[self.next.fetch_add(1, Ordering::Relaxed) % addrs.len()])
    }

    /// How many addresses the name has now.
    pub fn len(&self) -> usize {
        self.addrs.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether no address is known.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

thread_local! {
    /// This thread's keep-alive connections, one per address.
    static POOL: RefCell<HashMap<SocketAddr, BufReader<TcpStream>>> = RefCell::new(HashMap::new());
}

/// `GET path` on the next address of `up`, on this thread's keep-alive
/// connection to it (opened if needed). A failure on a reused connection
/// (the replica went away, or closed it) is retried once on a new
/// connection to the next address. Returns the status code.
pub fn call(up: &Upstream, path: &str, timeout: Duration) -> std::io::Result<u16> {
    let mut last = std::io::Error::other(format!("{}: no address", up.name));
    for attempt in 0..2 {
        let Some(addr) = up.pick() else { break };
        let pooled = POOL.with(|p| p.borrow_mut().remove(&addr));
        let reused = pooled.is_some();
        let conn = match pooled {
            Some(c) => Ok(c),
            None => connect(addr, timeout),
        };
        let result = conn.and_then(|mut c| exchange(&mut c, path).map(|status| (status, c)));
        match result {
            Ok((status, c)) => {
                POOL.with(|p| p.borrow_mut().insert(addr, c));
                return Ok(status);
            }
            Err(err) => {
                // A timeout is not retried: the replica may still be working
                // on the request, and a retry would double its load.
                let timed_out = matches!(err.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut);
                last = err;
                if timed_out || (!reused && attempt > 0) {
                    break;
                }
            }
        }
    }
    Err(last)
}

fn connect(addr: SocketAddr, timeout: Duration) -> std::io::Result<BufReader<TcpStream>> {
    let stream = TcpStream::connect_timeout(&addr, timeout.min(Duration::from_secs(2)))?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    Ok(BufReader::new(stream))
}

/// One request and its response on an open connection.
fn exchange(conn: &mut BufReader<TcpStream>, path: &str) -> std::io::Result<u16> {
    let head = format!("GET {path} HTTP/1.1\r\nHost: app\r\n\r\n");
    conn.get_mut().write_all(head.as_bytes())?;
    let mut line = String::new();
    if conn.read_line(&mut line)? == 0 {
        return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed"));
    }
    let status = line.split_whitespace().nth(1).and_then(|s| s.parse::<u16>().ok()).unwrap_or(0);
    let mut length = 0usize;
    let mut close = false;
    let mut size = line.len();
    loop {
        let mut h = String::new();
        if conn.read_line(&mut h)? == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed in head"));
        }
        size += h.len();
        if size > MAX_HEAD {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "head too large"));
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().unwrap_or(0);
            } else if k.eq_ignore_ascii_case("connection") && v.trim().eq_ignore_ascii_case("close") {
                close = true;
            }
        }
    }
    let mut body = vec![0u8; length];
    conn.read_exact(&mut body)?;
    if close {
        return Err(std::io::Error::new(std::io::ErrorKind::ConnectionAborted, "server closed"));
    }
    Ok(status)
}

/// A request as the server sees it.
pub struct Request {
    /// Path without the query.
    pub path: String,
    /// Query string, or empty.
    pub query: String,
}

/// Serve `handler` on `0.0.0.0:port` (SO_REUSEPORT), one thread per
/// connection, keep-alive unless the client says `Connection: close`.
pub fn serve<F>(port: u16, handler: F) -> std::io::Result<()>
where
    F: Fn(&Request) -> (u16, String) + Send + Sync + 'static,
{
    let listener = listen_reuseport(port)?;
    let handler = Arc::new(handler);
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let handler = Arc::clone(&handler);
        let _ = std::thread::Builder::new().stack_size(256 << 10).spawn(move || {
            let _ = connection(stream, &*handler);
        });
    }
    Ok(())
}

fn connection(stream: TcpStream, handler: &dyn Fn(&Request) -> (u16, String)) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(120)))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let mut parts = line.split_whitespace();
        let _method = parts.next();
        let target = parts.next().unwrap_or("/").to_string();
        let mut keep_alive = parts.next() == Some("HTTP/1.1");
        let mut size = line.len();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h)? == 0 {
                return Ok(());
            }
            size += h.len();
            if size > MAX_HEAD {
                return Ok(());
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':')
                && k.eq_ignore_ascii_case("connection")
            {
                keep_alive = !v.trim().eq_ignore_ascii_case("close");
            }
        }
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        let (status, body) = handler(&Request { path: path.to_string(), query: query.to_string() });
        let reason = if status == 200 { "OK" } else { "Error" };
        let conn = if keep_alive { "keep-alive" } else { "close" };
        let head = format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: {conn}\r\n\r\n",
            body.len()
        );
        writer.write_all(head.as_bytes())?;
        writer.write_all(body.as_bytes())?;
        if !keep_alive {
            return Ok(());
        }
    }
}

/// Listen on `0.0.0.0:port` with `SO_REUSEPORT` (replicas sharing the host
/// network share the port; harmless on an overlay network).
pub fn listen_reuseport(port: u16) -> std::io::Result<TcpListener> {
    let last_error = std::io::Error::last_os_error;
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
            || libc::listen(fd, 4096) != 0
        {
            let err = last_error();
            libc::close(fd);
            return Err(err);
        }
        Ok(TcpListener::from_raw_fd(fd))
    }
}

/// CPU time this thread has used.
pub fn thread_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// At most `n` holders at once; the others wait in turn (a replica's
/// worker pool: a saturated replica queues requests instead of sharing its
/// CPU limit among ever more threads).
pub struct Slots {
    free: std::sync::Mutex<usize>,
    freed: std::sync::Condvar,
}

impl Slots {
    /// `n` slots (at least one).
    pub fn new(n: usize) -> Slots {
        Slots { free: std::sync::Mutex::new(n.max(1)), freed: std::sync::Condvar::new() }
    }

    /// Run `f` holding a slot.
    pub fn with<T>(&self, f: impl FnOnce() -> T) -> T {
        {
            let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
            while *free == 0 {
                free = self.freed.wait(free).unwrap_or_else(|e| e.into_inner());
            }
            *free -= 1;
        }
        let out = f();
        *self.free.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.freed.notify_one();
        out
    }
}

/// Spin until this thread has used `cpu` more CPU time: the cost is CPU
/// time, whatever the CPU limit's throttling does to the wall time.
pub fn burn(cpu: Duration) {
    let end = thread_cpu() + cpu;
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    while thread_cpu() < end {
        for _ in 0..200 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
        }
    }
    std::hint::black_box(x);
}

/// As PID 1 in a container, SIGTERM is ignored unless handled: exit at once.
pub fn exit_on_sigterm() {
    extern "C" fn on_term(_: libc::c_int) {
        // SAFETY: `_exit` is async-signal-safe and touches no Rust state.
        unsafe { libc::_exit(0) }
    }
    // SAFETY: installs a handler that only calls `_exit`.
    unsafe {
        libc::signal(libc::SIGTERM, on_term as *const () as libc::sighandler_t);
    }
}

/// An environment variable parsed, or `default`.
pub fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key).ok().and_then(|v| v.trim().parse().ok()).unwrap_or(default)
}
