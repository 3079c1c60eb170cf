//! Parked ports: the kernel half of `autoscale.zero=remove`.
//!
//! A service scaled to zero replicas has nothing listening on its port.
//! While the daemon has the port *parked*, the tc classifier
//! `on_tc_ingress` of `ebpf/probe.bpf.c` drops every connection attempt
//! (a bare SYN) to it without an answer, so the client's TCP retransmits
//! the SYN about a second later instead of being refused, and the first
//! attempt pushes a [`super::PORT_SYN_METRIC`] event that makes the daemon
//! scale the service back to one replica. A socket that starts listening
//! on a parked port pushes a [`super::PORT_LISTEN_METRIC`] event.
//!
//! The classifier is loaded at the first park (loading a tc program needs
//! `CAP_NET_ADMIN`; without it parking fails with a message that says so,
//! and freezing still works) and attached to the ingress of `lo` (every
//! local client, including those connecting to the host's own other
//! addresses) and of every other Ethernet-like interface (clients
//! elsewhere), only while at least one port is parked: with nothing
//! parked it costs nothing. On Linux 6.6+ each attachment is a TCX link
//! owned by this process, detached when it exits, even by `SIGKILL`; on
//! older kernels it is a netlink filter under a `clsact` qdisc, which this
//! module adds if missing, and a filter left by a killed daemon is removed
//! before attaching again. Interfaces that appear while a port is parked
//! are attached at the next [`Parking::maintain`].
//!
//! What it reads: Ethernet frames carrying IPv4 (options included) or
//! IPv6 (no extension headers before TCP). Interfaces without an Ethernet
//! header (`tun`, WireGuard, IP-in-IP) are not attached: their clients'
//! first connection to a removed service is refused.

use std::collections::HashMap;

use anyhow::{Context, bail};
use aya::Ebpf;
use aya::maps::{HashMap as BpfHashMap, MapData};
use aya::programs::tc::{self, SchedClassifier, SchedClassifierLinkId, TcAttachType};
use aya::util::KernelVersion;

/// The classifier's name in `ebpf/probe.bpf.c`.
pub(super) const PROGRAM: &str = "on_tc_ingress";

/// Least time between two [`super::PORT_SYN_METRIC`] events of one port:
/// a burst of connection attempts, and their retransmits, is one event.
pub const PORT_SYN_GAP: std::time::Duration =
    std::time::Duration::from_nanos(super::ebpf::abi::PROBE_PARK_EVENT_GAP_NS);

/// How a parked port treats a connection attempt (`PROBE_PARK_*` of
/// `ebpf/probe.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParkMode {
    /// Hold every attempt, even one a listening socket would take: the
    /// service's last replica is being removed, and a connection it
    /// accepted now would be reset when it stops.
    Hold,
    /// Hold only the attempts no socket would take; once the service
    /// listens again (its new replica), they pass.
    Lookup,
}

impl ParkMode {
    fn value(self) -> u32 {
        match self {
            ParkMode::Hold => super::ebpf::abi::PROBE_PARK_HOLD as u32,
            ParkMode::Lookup => super::ebpf::abi::PROBE_PARK_LOOKUP as u32,
        }
    }
}

/// The `parked` map, the classifier's state and its links.
pub(super) struct Parking {
    /// Port (host order) -> `PROBE_PARK_*`.
    map: BpfHashMap<MapData, u16, u32>,
    /// What is parked now.
    ports: HashMap<u16, ParkMode>,
    /// The classifier is loaded into the kernel.
    loaded: bool,
    /// Interface name -> its attachment, while any port is parked.
    links: HashMap<String, SchedClassifierLinkId>,
}

impl std::fmt::Debug for Parking {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parking").field("ports", &self.ports).field("links", &self.links.len()).finish()
    }
}

impl Parking {
    pub(super) fn new(map: BpfHashMap<MapData, u16, u32>) -> Parking {
        Parking { map, ports: HashMap::new(), loaded: false, links: HashMap::new() }
    }

    /// Whether any port is parked.
    pub(super) fn active(&self) -> bool {
        !self.ports.is_empty()
    }

    /// Park `port` in `mode` (or change its mode), attaching the classifier
    /// first if it is not.
    pub(super) fn park(&mut self, ebpf: &mut Ebpf, port: u16, mode: ParkMode) -> anyhow::Result<()> {
        let most = super::ebpf::abi::PROBE_MAX_PARKED as usize;
        if !self.ports.contains_key(&port) && self.ports.len() >= most {
            bail!("port {port}: {most} ports are parked already, the most the probe holds");
        }
        if self.links.is_empty() {
            self.attach(ebpf)?;
        }
        if let Err(err) = self.map.insert(port, mode.value(), 0) {
            if self.ports.is_empty() {
                self.detach(ebpf);
            }
            return Err(err).context("writing the eBPF parked map");
        }
        self.ports.insert(port, mode);
        Ok(())
    }

    /// Unpark `port`; with nothing left parked, detach the classifier.
    pub(super) fn unpark(&mut self, ebpf: &mut Ebpf, port: u16) -> anyhow::Result<()> {
        if self.ports.remove(&port).is_some() {
            // Missing from the map means already gone: nothing to undo.
            let _ = self.map.remove(&port);
        }
        if self.ports.is_empty() {
            self.detach(ebpf);
        }
        Ok(())
    }

    /// While parked: attach to interfaces that appeared since, forget
    /// those that went away.
    pub(super) fn maintain(&mut self, ebpf: &mut Ebpf) {
        if self.ports.is_empty() {
            return;
        }
        let now = match interfaces() {
            Ok(now) => now,
            Err(err) => {
                tracing::debug!(error = %format!("{err:#}"), "cannot list network interfaces");
                return;
            }
        };
        self.links.retain(|name, _| now.contains(name));
        if let Err(err) = self.attach(ebpf) {
            tracing::warn!(error = %format!("{err:#}"), "cannot attach the tc classifier to a new interface");
        }
    }

    /// Load the classifier if needed and attach it to every interface it
    /// is not attached to. Fails if `lo` cannot be attached.
    fn attach(&mut self, ebpf: &mut Ebpf) -> anyhow::Result<()> {
        let caps = super::ebpf::effective_caps();
        if !has_net_admin(caps) {
            bail!(
                "holding connections for a service at zero replicas (autoscale.zero=remove) needs CAP_NET_ADMIN besides CAP_BPF and CAP_PERFMON (effective capabilities {caps:#x}): run the daemon as root or grant it (setcap cap_bpf,cap_perfmon,cap_net_admin+ep host), or use autoscale.zero=freeze"
            );
        }
        let prog: &mut SchedClassifier = ebpf
            .program_mut(PROGRAM)
            .with_context(|| format!("the {PROGRAM} program is missing from the eBPF object; rebuild the host"))?
            .try_into()
            .with_context(|| format!("{PROGRAM} is not a tc classifier"))?;
        if !self.loaded {
            prog.load().with_context(|| format!("loading the {PROGRAM} tc classifier"))?;
            self.loaded = true;
        }
        let tcx = KernelVersion::current().is_ok_and(|v| v >= KernelVersion::new(6, 6, 0));
        let mut failed = Vec::new();
        for name in interfaces()? {
            if self.links.contains_key(&name) {
                continue;
            }
            if !tcx {
                // Netlink: the clsact qdisc must be there (EEXIST is fine),
                // and a filter a killed daemon left behind goes first.
                let _ = tc::qdisc_add_clsact(&name);
                let _ = tc::qdisc_detach_program(&name, TcAttachType::Ingress, PROGRAM);
            }
            match prog.attach(&name, TcAttachType::Ingress) {
                Ok(link) => {
                    self.links.insert(name, link);
                }
                Err(err) if name == "lo" => {
                    return Err(err).context("attaching the tc classifier to the ingress of lo");
                }
                Err(err) => failed.push(format!("{name}: {err}")),
            }
        }
        if !failed.is_empty() {
            tracing::warn!(
                "tc classifier not attached to {} (clients arriving there are refused while their service is at zero)",
                failed.join("; ")
            );
        }
        tracing::debug!(interfaces = self.links.len(), "tc classifier attached");
        Ok(())
    }

    /// Detach from every interface.
    fn detach(&mut self, ebpf: &mut Ebpf) {
        let links = std::mem::take(&mut self.links);
        let Some(prog) = ebpf.program_mut(PROGRAM).and_then(|p| <&mut SchedClassifier>::try_from(p).ok()) else {
            return;
        };
        for (name, link) in links {
            // An interface that went away took its link with it.
            if let Err(err) = prog.detach(link) {
                tracing::debug!(interface = %name, error = %err, "detaching the tc classifier");
            }
        }
    }
}

/// CAP_NET_ADMIN (a tc program's load and attach), or CAP_SYS_ADMIN.
fn has_net_admin(caps: u64) -> bool {
    const CAP_NET_ADMIN: u64 = 12;
    const CAP_SYS_ADMIN: u64 = 21;
    caps & (1 << CAP_NET_ADMIN) != 0 || caps & (1 << CAP_SYS_ADMIN) != 0
}

/// The interfaces of this network namespace with an Ethernet header
/// (Ethernet, veth, bridges) and the loopback, by name. Read with
/// getifaddrs (netlink), not from /sys/class/net, which shows the
/// namespace /sys was mounted in.
fn interfaces() -> anyhow::Result<Vec<String>> {
    const ARPHRD_ETHER: u16 = 1;
    const ARPHRD_LOOPBACK: u16 = 772;
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs writes a list head we free below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(std::io::Error::last_os_error()).context("listing the network interfaces (getifaddrs)");
    }
    let mut names = Vec::new();
    let mut cursor = head;
    while !cursor.is_null() {
        // SAFETY: a node of the list getifaddrs returned, valid until freed.
        let entry = unsafe { &*cursor };
        cursor = entry.ifa_next;
        if entry.ifa_addr.is_null() || entry.ifa_name.is_null() {
            continue;
        }
        // SAFETY: ifa_addr points at a sockaddr of the family it names.
        let family = unsafe { (*entry.ifa_addr).sa_family };
        if i32::from(family) != libc::AF_PACKET {
            continue;
        }
        // SAFETY: an AF_PACKET address is a sockaddr_ll.
        let hatype = unsafe { (*entry.ifa_addr.cast::<libc::sockaddr_ll>()).sll_hatype };
        if hatype != ARPHRD_ETHER && hatype != ARPHRD_LOOPBACK {
            continue;
        }
        // SAFETY: a NUL-terminated name owned by the list.
        let name = unsafe { std::ffi::CStr::from_ptr(entry.ifa_name) }.to_string_lossy().into_owned();
        if !names.contains(&name) {
            names.push(name);
        }
    }
    // SAFETY: the list getifaddrs allocated, freed once.
    unsafe { libc::freeifaddrs(head) };
    names.sort();
    Ok(names)
}

/// Whether a TCP socket of this network namespace listens on `port` (IPv4
/// or IPv6, any address), from `/proc/net/tcp` and `/proc/net/tcp6`.
pub fn listening(port: u16) -> bool {
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .any(|file| std::fs::read_to_string(file).is_ok_and(|text| lists_listener(&text, port)))
}

/// Whether a `/proc/net/tcp{,6}` text has a socket in state LISTEN (0A)
/// whose local port is `port`.
fn lists_listener(text: &str, port: u16) -> bool {
    let wanted = format!(":{port:04X}");
    text.lines().skip(1).any(|line| {
        let mut fields = line.split_whitespace();
        let (Some(_), Some(local), Some(_), Some(state)) = (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return false;
        };
        state == "0A" && local.ends_with(&wanted)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listeners_are_found_by_port_and_state() {
        let text = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0\n   1: 0100007F:1F91 0100007F:A2B4 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0 20 4 30 10 -1\n";
        assert!(lists_listener(text, 8080));
        assert!(!lists_listener(text, 8081), "an established socket is no listener");
        assert!(!lists_listener(text, 80));
        let v6 = "  sl  local_address                         remote_address                        st\n   0: 00000000000000000000000000000000:46B4 00000000000000000000000000000000:0000 0A 0\n";
        assert!(lists_listener(v6, 18100));
    }

    #[test]
    fn net_admin_or_sys_admin() {
        assert!(has_net_admin(1 << 12));
        assert!(has_net_admin(1 << 21));
        assert!(!has_net_admin((1 << 38) | (1 << 39)));
    }

    #[test]
    fn the_loopback_is_an_interface() {
        assert!(interfaces().expect("getifaddrs").contains(&"lo".to_string()));
    }
}
