//! A parked port is the service's port on this host, not the port number
//! everywhere: two network namespaces joined by a bridge (as containers
//! on a Docker bridge are) still connect to each other on that port, a
//! host listener on another port is untouched, and an attempt to the port
//! on one of this host's addresses (here the bridge's, as a container
//! reaching a published port through its gateway) is still held and wakes
//! the service. Included by `probe_ebpf.rs` (root, a real kernel).

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd as _;
use std::process::Command;
use std::time::{Duration, Instant};

use host::probe;

use super::{free_port, held, is_port, root_or_skip, start_ebpf, until};

/// Two network namespaces, `a` (10.77.x.1) and `b` (10.77.x.2), each with a
/// veth whose host end is a port of one bridge that has the host's address
/// 10.77.x.254. Removed on drop.
struct Bridged {
    tag: String,
    subnet: u8,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip").args(args).output().map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if !out.status.success() {
        return Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(())
}

impl Bridged {
    fn new() -> Result<Bridged, String> {
        let pid = std::process::id();
        let b = Bridged { tag: format!("pk{}", pid % 100_000), subnet: (pid % 200) as u8 + 20 };
        let (t, s) = (&b.tag, b.subnet);
        let br = format!("{t}br");
        ip(&["link", "add", &br, "type", "bridge"])?;
        // With br_netfilter, bridged frames meet Docker's FORWARD drop
        // policy: let this bridge's own traffic through (DOCKER-USER is the
        // chain Docker leaves to users; the rule goes with the bridge).
        if let Err(why) = firewall("-I", &br) {
            eprintln!("(no firewall rule for {br}: {why})");
        }
        ip(&["addr", "add", &format!("10.77.{s}.254/24"), "dev", &br])?;
        ip(&["link", "set", &br, "up"])?;
        for (side, last) in [("a", 1), ("b", 2)] {
            let ns = format!("{t}{side}");
            let (host_end, ns_end) = (format!("{t}{side}0"), format!("{t}{side}1"));
            ip(&["netns", "add", &ns])?;
            ip(&["link", "add", &host_end, "type", "veth", "peer", "name", &ns_end])?;
            ip(&["link", "set", &ns_end, "netns", &ns])?;
            ip(&["link", "set", &host_end, "master", &br])?;
            ip(&["link", "set", &host_end, "up"])?;
            ip(&["-n", &ns, "addr", "add", &format!("10.77.{s}.{last}/24"), "dev", &ns_end])?;
            ip(&["-n", &ns, "link", "set", &ns_end, "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(b)
    }

    fn addr(&self, last: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 77, self.subnet, last)
    }

    /// Run `f` on a thread inside namespace `side`.
    fn run_in<T: Send + 'static>(&self, side: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/var/run/netns/{}{side}", self.tag);
        std::thread::spawn(move || {
            let ns = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            // SAFETY: setns on this thread only, with a namespace fd we hold.
            let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .expect("namespace thread")
    }
}

/// Insert (`-I`) or delete (`-D`) the rule that accepts `bridge`'s own
/// forwarded traffic.
fn firewall(op: &str, bridge: &str) -> Result<(), String> {
    let chain = if Command::new("iptables")
        .args(["-w", "-n", "-L", "DOCKER-USER"])
        .output()
        .is_ok_and(|o| o.status.success())
    {
        "DOCKER-USER"
    } else {
        "FORWARD"
    };
    let out = Command::new("iptables")
        .args(["-w", op, chain, "-i", bridge, "-o", bridge, "-j", "ACCEPT"])
        .output()
        .map_err(|e| format!("iptables: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    Ok(())
}

impl Drop for Bridged {
    fn drop(&mut self) {
        let t = &self.tag;
        let _ = firewall("-D", &format!("{t}br"));
        for side in ["a", "b"] {
            let _ = ip(&["netns", "del", &format!("{t}{side}")]);
            let _ = ip(&["link", "del", &format!("{t}{side}0")]);
        }
        let _ = ip(&["link", "del", &format!("{t}br")]);
    }
}

/// From namespace `a`, connect to `to` within `timeout`.
fn connect_from_a(net: &Bridged, to: SocketAddr, timeout: Duration) -> std::io::Result<TcpStream> {
    net.run_in("a", move || TcpStream::connect_timeout(&to, timeout))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ebpf_a_parked_port_holds_only_what_is_addressed_to_this_host() {
    if !root_or_skip() {
        return;
    }
    let net = match Bridged::new() {
        Ok(net) => net,
        Err(why) => panic!("cannot build two namespaces joined by a bridge (needs ip and root): {why}"),
    };
    let port = free_port();
    let server: SocketAddr = (net.addr(2), port).into();
    // A server in `b` on the port, accepting whatever comes.
    let listener = net.run_in("b", move || TcpListener::bind(server).expect("bind in b"));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            drop(stream);
        }
    });
    // Without parking, a and b talk through the bridge (else the host's
    // firewall is in the way, and the test would say nothing).
    if let Err(e) = connect_from_a(&net, server, Duration::from_secs(3)) {
        eprintln!(
            "\n*** SKIPPING ebpf_park_scope: namespaces joined by a bridge cannot connect here even unparked ({e}): br_netfilter and a FORWARD drop policy? ***\n"
        );
        return;
    }
    let other = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("a host listener");
    let other_addr = other.local_addr().expect("addr");

    let (handle, mut rx) = start_ebpf().await;
    let mut seen = Vec::new();
    handle.park(port, probe::ParkMode::Hold).await.expect("parking works as root");

    // (a) Bridged traffic between two other namespaces is not this host's.
    let t = Instant::now();
    let bridged = connect_from_a(&net, server, Duration::from_secs(3));
    assert!(bridged.is_ok(), "a connection through the bridge to a server on the parked port: {bridged:?}");
    assert!(t.elapsed() < Duration::from_millis(900), "held, then let through a retransmit: {:?}", t.elapsed());

    // (b) A host listener on another port is untouched.
    TcpStream::connect_timeout(&other_addr, Duration::from_secs(1)).expect("a host listener on another port");

    // (c) The port on one of this host's addresses (the bridge's, as a
    // container reaching a published port through its gateway), and on
    // 127.0.0.1, is held and wakes the service.
    let gateway: SocketAddr = (net.addr(254), port).into();
    let from_a = std::thread::spawn({
        let path = format!("/var/run/netns/{}a", net.tag);
        move || {
            let ns = std::fs::File::open(&path).expect("netns a");
            // SAFETY: setns on this thread only, with a namespace fd we hold.
            let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns {path}");
            let t = Instant::now();
            let r = TcpStream::connect_timeout(&gateway, Duration::from_millis(1500));
            (r.map(drop), t.elapsed())
        }
    });
    until(&mut rx, &mut seen, Duration::from_secs(3), |e| is_port(e, "port-syn", port))
        .await
        .unwrap_or_else(|| panic!("no wake for an attempt to the host's own address on the bridge; events: {seen:?}"));
    let (result, took) = from_a.join().expect("thread");
    assert!(
        matches!(&result, Err(e) if e.kind() == std::io::ErrorKind::TimedOut),
        "an attempt to the host's address was answered ({result:?} after {took:?}), not held"
    );
    let local: SocketAddr = (Ipv4Addr::LOCALHOST, port).into();
    let on_lo = held(local, Duration::from_millis(300)).await;
    on_lo.abort();
    handle.unpark(port).await.expect("unpark");
    println!("parked port {port}: bridged connection passed, host-addressed attempts held");
}
