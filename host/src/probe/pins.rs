//! Pins of the park classifier's TCX links in bpffs, and who owns them.
//!
//! A running probe pins its link on an interface as
//! `park-<pid>-s<start>-<n>-<interface>`: its process id, the process's
//! start time (clock ticks after boot, field 22 of `/proc/<pid>/stat`) and
//! a counter that tells apart the probes of one process. A probe that
//! stops cleanly renames its pins `orphan-…`. A pin is *left behind* when
//! it is an orphan, or when no process with that id and that start time
//! runs: a pid the kernel gave to another process since (pid reuse) no
//! longer passes for the daemon, nor does a daemon of another pid
//! namespace whose pid happens to run here.
//!
//! Every start path releases what a stopped daemon left
//! ([`left_behind_in`] over [`swept_dirs`]: the configured pin directory
//! and the default one): the eBPF probe after [`super::INHERITED_GRACE`]
//! (it parks again on first sight what is still at zero), whether it pins
//! its own links or not; the cgroupfs probe at once, since it cannot park
//! and a held client would wait for a daemon that cannot wake its service
//! ([`release_left_behind`]).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::Context;
use aya::programs::links::{FdLink, PinnedLink};

/// `statfs` magic of bpffs.
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// Pins of this probe's classifier links in a bpffs directory.
#[derive(Debug)]
pub(super) struct Pins {
    dir: PathBuf,
    /// `<pid>-s<start>-<n>`.
    owner: String,
}

impl Pins {
    /// Use `dir`, creating it if its parent is a bpffs mount.
    pub(super) fn open(dir: &Path) -> Result<Pins, String> {
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
        let pid = std::process::id();
        let start = start_time(pid).ok_or_else(|| format!("cannot read /proc/{pid}/stat"))?;
        let owner = format!("{pid}-s{start}-{}", NEXT.fetch_add(1, Ordering::Relaxed));
        Ok(Pins { dir: dir.to_path_buf(), owner })
    }

    /// Where this probe pins its link on `interface`: `state` is `park`
    /// while it runs, `orphan` once it stopped.
    fn path(&self, state: &str, interface: &str) -> PathBuf {
        self.dir.join(format!("{state}-{}-{interface}", self.owner))
    }

    /// Pin a just attached TCX link on `interface`.
    pub(super) fn pin(&self, link: FdLink, interface: &str) -> anyhow::Result<PinnedLink> {
        let path = self.path("park", interface);
        // A pin left under this very name is stale.
        let _ = std::fs::remove_file(&path);
        link.pin(&path).with_context(|| format!("pinning it at {}", path.display()))
    }

    /// Rename this probe's pin on `interface` to its orphan name.
    pub(super) fn orphan(&self, interface: &str) {
        let from = self.path("park", interface);
        if let Err(err) = std::fs::rename(&from, self.path("orphan", interface)) {
            tracing::warn!(pin = %from.display(), error = %err, "cannot hand a classifier link over");
        }
    }
}

/// The directories a starting probe looks in for pins a stopped daemon
/// left: the configured one and the default, so that turning pinning off
/// (`--bpf-pin-dir ""`) or moving it still releases what the last daemon
/// pinned in the default place.
pub fn swept_dirs(pin_dir: Option<&Path>) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = pin_dir.map(Path::to_path_buf).into_iter().collect();
    let default = PathBuf::from(super::DEFAULT_PIN_DIR);
    if !dirs.contains(&default) {
        dirs.push(default);
    }
    dirs
}

/// Pins a stopped daemon left in `dirs`, sorted.
pub(super) fn left_behind_in(dirs: &[PathBuf]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else { continue };
        found.extend(
            entries.flatten().filter(|e| left_behind(&e.file_name().to_string_lossy(), start_time)).map(|e| e.path()),
        );
    }
    found.sort();
    found
}

/// Remove `pins`: their links detach. Each is opened first, so that the
/// last reference is this process's descriptor and the link detaches when
/// it closes, at once (the kernel defers freeing a link whose last
/// reference was its pin). Returns how many went.
pub(super) fn release(pins: Vec<PathBuf>) -> usize {
    let mut released = 0;
    for pin in pins {
        let gone = match PinnedLink::from_pin(&pin) {
            Ok(link) => link.unpin().map(drop),
            Err(_) => std::fs::remove_file(&pin),
        };
        match gone {
            Ok(()) => {
                released += 1;
                tracing::debug!(pin = %pin.display(), "released a classifier link an earlier daemon left");
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => tracing::warn!(pin = %pin.display(), error = %err, "cannot remove a classifier link's pin"),
        }
    }
    released
}

/// For a probe that cannot park (the cgroupfs probe): release at once
/// every link a stopped daemon left holding ports, and say so.
pub fn release_left_behind(pin_dir: Option<&Path>) {
    let left = left_behind_in(&swept_dirs(pin_dir));
    if left.is_empty() {
        return;
    }
    let released = release(left);
    tracing::warn!(
        links = released,
        "released the classifier links a stopped daemon left holding the ports of services at zero replicas: \
         this probe cannot hold or wake them (autoscale.zero=remove needs the eBPF probe); their clients are refused \
         until someone scales them up"
    );
}

/// Whether the pin `name` was left by a daemon that stopped;
/// `start_of(pid)` is the start time of the process `pid`, if one runs.
fn left_behind(name: &str, start_of: impl Fn(u32) -> Option<u64>) -> bool {
    if name.starts_with("orphan-") {
        return true;
    }
    let Some(rest) = name.strip_prefix("park-") else { return false };
    let mut fields = rest.split('-');
    let Some(pid) = fields.next().and_then(|p| p.parse::<u32>().ok()) else { return false };
    match fields.next().and_then(|s| s.strip_prefix('s')).map(str::parse::<u64>) {
        Some(Ok(start)) => start_of(pid) != Some(start),
        Some(Err(_)) => false,
        // An older daemon's name, without its start time: by pid alone.
        None => pid != std::process::id() && start_of(pid).is_none(),
    }
}

/// Start time of process `pid`, clock ticks after boot; `None` when no
/// such process runs (in this pid namespace).
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command's closing parenthesis: field 3 onward; the start
    // time is field 22.
    let rest = stat.rsplit_once(')')?.1;
    rest.split_whitespace().nth(19)?.parse().ok()
}

pub(super) fn is_bpffs(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt as _;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else { return false };
    // SAFETY: `c` is a valid C string; `buf` is written by statfs only.
    let mut buf: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut buf) };
    rc == 0 && buf.f_type as i64 == BPF_FS_MAGIC
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_of_stopped_daemons_are_left_behind_and_live_ones_are_not() {
        let me = std::process::id();
        // Process 4242 runs, started at tick 777.
        let runs = |pid: u32| (pid == 4242).then_some(777);
        assert!(left_behind("orphan-4242-s777-0-lo", runs), "a clean exit hands over, whoever it was");
        assert!(left_behind(&format!("orphan-{me}-s1-1-eth0"), runs), "even a probe of this process");
        assert!(left_behind("park-999999-s5-0-lo", runs), "a crashed daemon's");
        assert!(!left_behind("park-4242-s777-0-lo", runs), "a running daemon's");
        assert!(!left_behind("park-4242-s777-0-br-0a1b2c", runs), "an interface name with dashes");
        assert!(left_behind("park-4242-s776-0-lo", runs), "its pid now another process's: pid reuse");
        assert!(!left_behind("park-x-s1-0-lo", runs) && !left_behind("something-else", runs));
        assert!(!left_behind("park-4242-sx-0-lo", runs), "not a name of ours");
        // An older daemon's names: by pid alone.
        assert!(left_behind("park-999999-0-lo", runs));
        assert!(!left_behind("park-4242-0-lo", runs));
        assert!(!left_behind(&format!("park-{me}-3-lo"), |_| None), "this process's own");
    }

    #[test]
    fn this_process_passes_for_itself_and_no_other() {
        let me = std::process::id();
        let start = start_time(me).expect("our own start time");
        assert!(!left_behind(&format!("park-{me}-s{start}-0-lo"), start_time));
        assert!(left_behind(&format!("park-{me}-s{}-0-lo", start + 1), start_time));
        assert_eq!(start_time(u32::MAX), None);
    }

    #[test]
    fn the_default_dir_is_always_swept() {
        let default = PathBuf::from(crate::probe::DEFAULT_PIN_DIR);
        assert_eq!(swept_dirs(None), vec![default.clone()]);
        assert_eq!(swept_dirs(Some(&default)), vec![default.clone()]);
        assert_eq!(swept_dirs(Some(Path::new("/mnt/bpf/x"))), vec![PathBuf::from("/mnt/bpf/x"), default]);
    }

    #[test]
    fn only_a_bpffs_mount_takes_pins() {
        assert!(!is_bpffs(Path::new("/proc")));
        assert!(Pins::open(Path::new("/proc/swarm-autoscaler")).is_err());
    }
}
