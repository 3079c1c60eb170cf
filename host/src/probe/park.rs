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
//! pins ([`Pins::inherited`]) and leaves them for [`INHERITED_GRACE`], its
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
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use aya::Ebpf;
use aya::maps::{HashMap as BpfHashMap, MapData};
use aya::programs::LinkOrder;
use aya::programs::links::{FdLink, PinnedLink};
use aya::programs::tc::{self, SchedClassifier, SchedClassifierLinkId, TcAttachOptions, TcAttachType};
use aya::util::KernelVersion;

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
        let inherited = pins.as_ref().map(Pins::inherited).unwrap_or_default();
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

    /// Remove the pins an earlier daemon left: their links detach. Each is
    /// opened first, so that the last reference is this process's
    /// descriptor and the link detaches when it closes, at once (the kernel
    /// defers freeing a link whose last reference was its pin).
    fn release_inherited(&mut self) {
        for pin in std::mem::take(&mut self.inherited) {
            let released = match PinnedLink::from_pin(&pin) {
                Ok(link) => link.unpin().map(drop),
                Err(_) => std::fs::remove_file(&pin),
            };
            match released {
                Ok(()) => tracing::debug!(pin = %pin.display(), "released a classifier link an earlier daemon left"),
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => tracing::warn!(pin = %pin.display(), error = %err, "cannot remove a classifier link's pin"),
            }
        }
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
                        (Some(pins), true) => pins.pin(prog, &name, link),
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

/// Pins of this process's classifier links in a bpffs directory:
/// `park-<pid>-<n>-<interface>` while it runs (`n` tells apart the probes
/// of one process), `orphan-<pid>-<n>-<interface>` once it stopped cleanly.
struct Pins {
    dir: PathBuf,
    /// `<pid>-<n>`.
    owner: String,
}

/// `statfs` magic of bpffs.
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

impl Pins {
    /// Use `dir`, creating it if its parent is a bpffs mount.
    fn open(dir: &Path) -> Result<Pins, String> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let parent = dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("/"));
        if !is_bpffs(parent) {
            return Err(format!("{} is not a bpffs mount (mount -t bpf bpf {})", parent.display(), parent.display()));
        }
        if let Err(err) = std::fs::create_dir(dir)
            && err.kind() != std::io::ErrorKind::AlreadyExists
        {
            return Err(format!("cannot create {}: {err}", dir.display()));
        }
        let owner = format!("{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        Ok(Pins { dir: dir.to_path_buf(), owner })
    }

    /// Where this probe pins its link on `interface`: `state` is `park`
    /// while it runs, `orphan` once it stopped.
    fn path(&self, state: &str, interface: &str) -> PathBuf {
        self.dir.join(format!("{state}-{}-{interface}", self.owner))
    }

    /// Pin a just attached TCX link (taken from `prog`).
    fn pin(&self, prog: &mut SchedClassifier, interface: &str, link: SchedClassifierLinkId) -> anyhow::Result<Link> {
        let path = self.path("park", interface);
        let link = prog.take_link(link).context("taking the tc link")?;
        let link: FdLink = link.try_into().context("a TCX link")?;
        // A pin left under this very name (a reused pid) is stale.
        let _ = std::fs::remove_file(&path);
        let pinned = link.pin(&path).with_context(|| format!("pinning it at {}", path.display()))?;
        Ok(Link::Pinned(pinned))
    }

    /// Rename this probe's pin on `interface` to its orphan name.
    fn orphan(&self, interface: &str) {
        let from = self.path("park", interface);
        if let Err(err) = std::fs::rename(&from, self.path("orphan", interface)) {
            tracing::warn!(pin = %from.display(), error = %err, "cannot hand a classifier link over");
        }
    }

    /// Pins an earlier daemon left: every `orphan-*`, and the `park-*` of a
    /// process that no longer runs (a crash or `SIGKILL`).
    fn inherited(&self) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return Vec::new() };
        let mut found: Vec<PathBuf> = entries
            .flatten()
            .filter(|e| {
                left_behind(&e.file_name().to_string_lossy(), |pid| Path::new(&format!("/proc/{pid}")).exists())
            })
            .map(|e| e.path())
            .collect();
        found.sort();
        found
    }
}

/// Whether the pin `name` was left by a daemon that stopped; `alive` says
/// whether a process id runs.
fn left_behind(name: &str, alive: impl Fn(u32) -> bool) -> bool {
    if name.starts_with("orphan-") {
        return true;
    }
    let Some(rest) = name.strip_prefix("park-") else { return false };
    let pid = rest.split('-').next().and_then(|p| p.parse::<u32>().ok());
    pid.is_some_and(|pid| pid != std::process::id() && !alive(pid))
}

fn is_bpffs(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt as _;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else { return false };
    // SAFETY: `c` is a valid C string; `buf` is written by statfs only.
    let mut buf: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut buf) };
    rc == 0 && buf.f_type as i64 == BPF_FS_MAGIC
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
    fn pins_of_stopped_daemons_are_left_behind_and_live_ones_are_not() {
        let me = std::process::id();
        let alive = |pid: u32| pid == 4242;
        assert!(left_behind("orphan-4242-0-lo", alive), "a clean exit hands over, whoever it was");
        assert!(left_behind(&format!("orphan-{me}-1-eth0"), alive), "even a probe of this process");
        assert!(left_behind("park-999999-0-lo", alive), "a crashed daemon's");
        assert!(!left_behind("park-4242-0-lo", alive), "a running daemon's");
        assert!(!left_behind(&format!("park-{me}-3-lo"), |_| false), "this process's own");
        assert!(!left_behind("park-x-0-lo", alive) && !left_behind("something-else", alive));
    }

    #[test]
    fn only_a_bpffs_mount_takes_pins() {
        assert!(!is_bpffs(Path::new("/proc")));
        assert!(Pins::open(Path::new("/proc/swarm-autoscaler")).is_err());
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
