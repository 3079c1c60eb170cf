//! Parked ports: the kernel half of `autoscale.zero=remove`.
//!
//! A service scaled to zero replicas has nothing listening on its port.
//! While the daemon has the port *parked*, the tc classifier
//! `on_tc_ingress` of `ebpf/park.h` drops every connection attempt
//! (a bare SYN) to it without an answer, so the client's TCP retransmits
//! the SYN about a second later instead of being refused, and the first
//! attempt pushes a [`super::Signal::PortSyn`] that makes the daemon
//! scale the service back to one replica. A socket that starts listening
//! on a parked port pushes a [`super::Signal::PortListen`].
//!
//! The classifier is loaded at the first park (loading a tc program needs
//! `CAP_NET_ADMIN`; without it parking fails with a message that says so,
//! and freezing still works) and attached to the ingress of `lo` (every
//! local client, including those connecting to the host's own other
//! addresses) and of every other Ethernet-like interface (clients
//! elsewhere), only while at least one port is parked: with nothing
//! parked it costs nothing. Interfaces that appear while a port is parked
//! are attached at the next [`Parking::maintain`].
//!
//! A daemon that stops while a port is parked must not leave its clients
//! refused until the next daemon parks the port again. On Linux 6.6+ each
//! attachment is a TCX link; with a bpffs directory to pin them in
//! ([`super::ProbeSettings::pin_dir`]) the links are pinned there, so they
//! outlive the process (a clean exit, a crash or `SIGKILL` alike) and the
//! old classifier, with its own map of parked ports, keeps holding
//! connection attempts while no daemon runs. The next daemon finds those
//! pins (`pins.rs`; also in the default directory, and whether or
//! not this probe pins its own) and leaves them for [`INHERITED_GRACE`], its
//! first look at the services: a port it parks again is held by its own
//! classifier, attached *first* in each interface's TCX chain (so it sees
//! those attempts and pushes their events; attempts to ports it did not
//! park pass on to the old one). Then it removes the old pins, which
//! detaches the old links. Without
//! a pin directory each link is owned by this process and detached when it
//! exits. On older kernels an attachment is a netlink filter under a
//! `clsact` qdisc (added if missing), which outlives the process by itself;
//! one left by an earlier daemon is replaced before attaching again.
//!
//! Only what is the service's: a SYN is held only if it is addressed to
//! one of this host's own addresses (the published port, through any
//! address of the host) or arrives on `lo`. The addresses are kept in the
//! classifier's `park_local` map ([`Parking::maintain`] refreshes it every
//! few seconds); traffic the host forwards or bridges (containers talking
//! to each other through a bridge and its veths, to whatever listens on
//! the same port number) passes untouched.
//!
//! What it reads: Ethernet frames carrying IPv4 (options included) or
//! IPv6 (no extension headers before TCP). Interfaces without an Ethernet
//! header (`tun`, WireGuard, IP-in-IP) are not attached: their clients'
//! first connection to a removed service is refused.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use aya::Ebpf;
use aya::maps::{HashMap as BpfHashMap, MapData};
use aya::programs::LinkOrder;
use aya::programs::links::{FdLink, PinnedLink};
use aya::programs::tc::{self, SchedClassifier, SchedClassifierLinkId, TcAttachOptions, TcAttachType};
use aya::util::KernelVersion;

use super::pins::{self, Pins};

/// The classifier's name in `ebpf/park.h` (part of `ebpf/probe.bpf.c`).
pub(super) const PROGRAM: &str = "on_tc_ingress";

/// Least time between two [`super::Signal::PortSyn`]s of one port:
/// a burst of connection attempts, and their retransmits, is one event.
pub const PORT_SYN_GAP: std::time::Duration = std::time::Duration::from_nanos(super::abi::PROBE_PARK_EVENT_GAP_NS);

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
            ParkMode::Hold => super::abi::PROBE_PARK_HOLD as u32,
            ParkMode::Lookup => super::abi::PROBE_PARK_LOOKUP as u32,
        }
    }
}

/// How long links a stopped daemon left pinned keep holding their ports
/// after this daemon's probe starts: long enough for its first look at
/// the services, which parks again the ports of those still at zero.
pub const INHERITED_GRACE: Duration = Duration::from_secs(10);

/// One attachment of the classifier.
enum Link {
    /// Owned by this process (detached when it exits), or a netlink filter.
    Owned(SchedClassifierLinkId),
    /// A TCX link pinned in bpffs: attached until its pin is removed.
    Pinned(PinnedLink),
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
    links: HashMap<String, Link>,
    /// The classifier's `park_local` map (taken at the first attach) and
    /// what it holds: this host's addresses, IPv4 as `::ffff:a.b.c.d`.
    local: Option<BpfHashMap<MapData, [u8; 16], u8>>,
    local_now: HashSet<[u8; 16]>,
    /// Where links are pinned; `None` without a usable bpffs directory.
    pins: Option<Pins>,
    /// Pins an earlier daemon left, still holding its ports, and when they
    /// are removed at the latest.
    inherited: Vec<PathBuf>,
    inherited_until: Instant,
}

impl std::fmt::Debug for Parking {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parking")
            .field("ports", &self.ports)
            .field("links", &self.links.len())
            .field("inherited", &self.inherited.len())
            .finish()
    }
}

impl Parking {
    /// `pin_dir`: where to pin links (created if its parent is a bpffs
    /// mount), `None` not to pin.
    pub(super) fn new(map: BpfHashMap<MapData, u16, u32>, pin_dir: Option<&Path>) -> Parking {
        let pins = pin_dir.and_then(|dir| match Pins::open(dir) {
            Ok(pins) => Some(pins),
            Err(why) => {
                tracing::info!(
                    "classifier links will not be pinned ({why}): if the daemon stops while a service is at zero \
                     replicas (autoscale.zero=remove), its clients are refused until the next daemon starts"
                );
                None
            }
        });
        // Also without pinning, and in the default directory: whatever
        // the last daemon was told, what it left is found.
        let inherited = pins::left_behind_in(&pins::swept_dirs(pin_dir));
        if !inherited.is_empty() {
            tracing::info!(
                links = inherited.len(),
                "a stopped daemon left its parked ports held (pinned classifier links); they hold for {} s \
                 more while this daemon parks its own",
                INHERITED_GRACE.as_secs()
            );
        }
        Parking {
            map,
            ports: HashMap::new(),
            loaded: false,
            local: None,
            local_now: HashSet::new(),
            links: HashMap::new(),
            pins,
            inherited,
            inherited_until: Instant::now() + INHERITED_GRACE,
        }
    }

    /// Whether any port is parked, or links an earlier daemon left still
    /// wait for their release: [`Parking::maintain`] has work.
    pub(super) fn active(&self) -> bool {
        !self.ports.is_empty() || !self.inherited.is_empty()
    }

    /// Remove the pins an earlier daemon left: their links detach.
    fn release_inherited(&mut self) {
        pins::release(std::mem::take(&mut self.inherited));
    }

    /// Park `port` in `mode` (or change its mode), attaching the classifier
    /// first if it is not.
    pub(super) fn park(&mut self, ebpf: &mut Ebpf, port: u16, mode: ParkMode) -> anyhow::Result<()> {
        let most = super::abi::PROBE_MAX_PARKED as usize;
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
        if !self.inherited.is_empty() && Instant::now() >= self.inherited_until {
            tracing::info!(
                links = self.inherited.len(),
                "released the classifier links a stopped daemon left: this daemon's own hold what is still at zero"
            );
            self.release_inherited();
        }
        if self.ports.is_empty() {
            return;
        }
        if let Err(err) = self.sync_local(ebpf) {
            tracing::warn!(error = %format!("{err:#}"), "cannot refresh the host's addresses for the tc classifier");
        }
        let now = match interfaces() {
            Ok(now) => now,
            Err(err) => {
                tracing::debug!(error = %format!("{err:#}"), "cannot list network interfaces");
                return;
            }
        };
        let gone: Vec<String> = self.links.keys().filter(|name| !now.contains(name)).cloned().collect();
        for name in gone {
            // The interface took its link with it; a pin would outlive both.
            if let Some(Link::Pinned(link)) = self.links.remove(&name) {
                let _ = link.unpin();
            }
        }
        if let Err(err) = self.attach(ebpf) {
            tracing::warn!(error = %format!("{err:#}"), "cannot attach the tc classifier to a new interface");
        }
    }

    /// Load the classifier if needed and attach it to every interface it
    /// is not attached to. Fails if `lo` cannot be attached.
    fn attach(&mut self, ebpf: &mut Ebpf) -> anyhow::Result<()> {
        let caps = super::abi::effective_caps();
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
        // The addresses first: attached without them, it would hold nothing
        // but what arrives on lo.
        self.sync_local(ebpf)?;
        let Some(prog) = ebpf.program_mut(PROGRAM).and_then(|p| <&mut SchedClassifier>::try_from(p).ok()) else {
            bail!("the {PROGRAM} program is missing from the eBPF object; rebuild the host");
        };
        let tcx = KernelVersion::current().is_ok_and(|v| v >= KernelVersion::new(6, 6, 0));
        let mut failed = Vec::new();
        let mut pin_failed = false;
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
            // First in the TCX chain: ahead of any classifier an earlier
            // daemon left, which then sees nothing until it is released.
            let attached = if tcx {
                prog.attach_with_options(&name, TcAttachType::Ingress, TcAttachOptions::TcxOrder(LinkOrder::first()))
            } else {
                prog.attach(&name, TcAttachType::Ingress)
            };
            match attached {
                Ok(link) => {
                    let link = match (&self.pins, tcx) {
                        (Some(pins), true) => prog
                            .take_link(link)
                            .context("taking the tc link")
                            .and_then(|link| FdLink::try_from(link).context("a TCX link"))
                            .and_then(|link| pins.pin(link, &name))
                            .map(Link::Pinned),
                        _ => Ok(Link::Owned(link)),
                    };
                    match link {
                        Ok(link) => {
                            self.links.insert(name, link);
                        }
                        Err(err) => {
                            // The link went with the failed pin: attach again, unpinned.
                            tracing::warn!(error = %format!("{err:#}"), "cannot pin the tc classifier's link; not pinning any more");
                            pin_failed = true;
                            break;
                        }
                    }
                }
                Err(err) if name == "lo" => {
                    return Err(err).context("attaching the tc classifier to the ingress of lo");
                }
                Err(err) => failed.push(format!("{name}: {err}")),
            }
        }
        if pin_failed {
            self.pins = None;
            return self.attach(ebpf);
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

    /// Bring the classifier's `park_local` map in line with this host's
    /// addresses now.
    fn sync_local(&mut self, ebpf: &mut Ebpf) -> anyhow::Result<()> {
        if self.local.is_none() {
            let map = ebpf.take_map("park_local").context("the park_local map is missing; rebuild the host")?;
            self.local = Some(BpfHashMap::try_from(map).context("park_local is not a hash map")?);
        }
        let Some(map) = self.local.as_mut() else { return Ok(()) };
        let now = local_addresses()?;
        for gone in self.local_now.difference(&now) {
            let _ = map.remove(gone);
        }
        let most = PARK_MAX_LOCAL;
        let mut kept = HashSet::new();
        for addr in now.into_iter().take(most) {
            if !self.local_now.contains(&addr) {
                map.insert(addr, 1u8, 0).context("writing the eBPF park_local map")?;
            }
            kept.insert(addr);
        }
        self.local_now = kept;
        Ok(())
    }

    /// Detach from every interface.
    fn detach(&mut self, ebpf: &mut Ebpf) {
        let links = std::mem::take(&mut self.links);
        let Some(prog) = ebpf.program_mut(PROGRAM).and_then(|p| <&mut SchedClassifier>::try_from(p).ok()) else {
            return;
        };
        for (name, link) in links {
            match link {
                // An interface that went away took its link with it.
                Link::Owned(link) => {
                    if let Err(err) = prog.detach(link) {
                        tracing::debug!(interface = %name, error = %err, "detaching the tc classifier");
                    }
                }
                // Removing the pin and dropping the link detaches it.
                Link::Pinned(link) => {
                    if let Err(err) = link.unpin() {
                        tracing::warn!(interface = %name, error = %err, "cannot remove the tc classifier link's pin");
                    }
                }
            }
        }
    }
}

impl Drop for Parking {
    /// The daemon stops (or its probe): pinned links stay attached, holding
    /// the ports still parked, and are renamed so that the next daemon,
    /// even one in this same process, takes them over.
    fn drop(&mut self) {
        let Some(pins) = &self.pins else { return };
        for (interface, link) in &self.links {
            if matches!(link, Link::Pinned(_)) {
                pins.orphan(interface);
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

/// `PARK_MAX_LOCAL` of `ebpf/park.h`: the most addresses the classifier
/// knows (a host with more holds connection attempts to the first only).
const PARK_MAX_LOCAL: usize = 1024;

/// The addresses of this network namespace's interfaces, as the
/// classifier's keys: IPv6 as is, IPv4 as `::ffff:a.b.c.d`.
fn local_addresses() -> anyhow::Result<HashSet<[u8; 16]>> {
    let mut found = HashSet::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs writes a list head we free below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(std::io::Error::last_os_error()).context("listing the network addresses (getifaddrs)");
    }
    let mut cursor = head;
    while !cursor.is_null() {
        // SAFETY: a node of the list getifaddrs returned, valid until freed.
        let entry = unsafe { &*cursor };
        cursor = entry.ifa_next;
        if entry.ifa_addr.is_null() {
            continue;
        }
        // SAFETY: ifa_addr points at a sockaddr of the family it names.
        let family = i32::from(unsafe { (*entry.ifa_addr).sa_family });
        if family == libc::AF_INET {
            // SAFETY: an AF_INET address is a sockaddr_in.
            let v4 = unsafe { (*entry.ifa_addr.cast::<libc::sockaddr_in>()).sin_addr.s_addr };
            found.insert(std::net::Ipv4Addr::from(u32::from_be(v4)).to_ipv6_mapped().octets());
        } else if family == libc::AF_INET6 {
            // SAFETY: an AF_INET6 address is a sockaddr_in6.
            let v6 = unsafe { (*entry.ifa_addr.cast::<libc::sockaddr_in6>()).sin6_addr.s6_addr };
            found.insert(v6);
        }
    }
    // SAFETY: the list getifaddrs allocated, freed once.
    unsafe { libc::freeifaddrs(head) };
    Ok(found)
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
    fn the_hosts_addresses_are_keys_the_classifier_reads() {
        let found = local_addresses().expect("getifaddrs");
        let lo4 = std::net::Ipv4Addr::LOCALHOST.to_ipv6_mapped().octets();
        assert!(found.contains(&lo4), "127.0.0.1 as ::ffff:127.0.0.1: {found:?}");
        assert!(!found.contains(&std::net::Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped().octets()));
    }

    #[test]
    fn the_loopback_is_an_interface() {
        assert!(interfaces().expect("getifaddrs").contains(&"lo".to_string()));
    }
}
