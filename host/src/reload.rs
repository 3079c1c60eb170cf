//! The policies folder: the set of loaded policies by name, kept in step
//! with the `*.wasm` files in the folder while the daemon runs.
//!
//! - [`watch`] keeps a [`PolicySet`] (the registry the event loop asks for
//!   a policy by name) in step with the folder. It follows the folder with
//!   `notify` and reads it only through a `cap-std` [`Dir`]: only regular
//!   `*.wasm` files directly in it, never a path that leads outside (a
//!   symlink out of the folder is refused), never a file over the size cap.
//!   Compiles run on the blocking pool.
//! - Writes are debounced per file. A file that is still open for writing is
//!   not read until the writer closes it (inotify's close-after-write), so a
//!   writer that pauses mid-file is never loaded half-written; a file renamed
//!   into place is complete when it appears. Unchanged bytes (same SHA-256)
//!   are skipped.
//! - A file that fails to load leaves the previous good version running;
//!   deleting a file unloads its policy.
//! - Nothing in the folder can block the loop: files are opened with
//!   `O_NONBLOCK` and anything but a regular file is refused (a FIFO named
//!   `x.wasm` would otherwise block `open` forever); compiles run on the
//!   blocking pool, at most [`PARALLEL_LOADS`] at once, each bounded by the
//!   runtime's compile limits, so one slow file never holds up the others.
//! - The folder itself is followed: if it is deleted and recreated, or a
//!   symlink to it is pointed elsewhere, the watcher notices within
//!   [`FOLDER_CHECK`], warns, and switches to the new folder, whose files
//!   then define the policies. While the folder is missing, the loaded
//!   policies keep running.
//!
//! Invariant: this module knows files and policies, not services; it
//! reports what changed on a channel and the event loop decides what that
//! means for the services that use a policy.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use cap_std::fs::{Dir, MetadataExt as _, OpenOptions, OpenOptionsExt as _};
use notify::event::{AccessKind, AccessMode, EventKind};
use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::policy::{PolicySet, Runtime};

/// Files loaded at the same time (each may be compiling in a child).
pub const PARALLEL_LOADS: usize = 2;
/// How often the watcher checks that the folder is still the one it follows.
pub const FOLDER_CHECK: Duration = Duration::from_millis(500);

/// What happened to a policy, as reported to the event loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A policy name was loaded for the first time.
    Loaded(String),
    /// A new version replaced a running one.
    Reloaded(String),
    /// A file was refused or failed; the previous version, if any, runs on.
    Rejected {
        /// The policy name (file stem).
        name: String,
        /// Why, for the log.
        error: String,
    },
    /// A policy was removed because its file was deleted.
    Unloaded(String),
}

/// Settings of the folder watcher; defaults in [`Default`].
#[derive(Debug, Clone)]
pub struct ReloadSettings {
    /// Largest component accepted, in bytes (default 64 MiB).
    pub max_file_size: u64,
    /// Quiet time after the last event on a file before it is read
    /// (default 50 ms). Close-after-write and rename skip the wait.
    pub debounce: Duration,
    /// A file still open for writing this long is read anyway (default 10 s),
    /// for writers whose close the watcher never sees.
    pub open_write_timeout: Duration,
}

impl Default for ReloadSettings {
    fn default() -> Self {
        ReloadSettings {
            max_file_size: 64 << 20,
            debounce: Duration::from_millis(50),
            open_write_timeout: Duration::from_secs(10),
        }
    }
}

/// Why a file in the folder was not read.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// Not a regular file (a folder named `x.wasm`, a device, ...).
    #[error("{path}: not a regular file; only regular *.wasm files directly in the folder are loaded")]
    NotRegular { path: PathBuf },
    /// Over the size cap.
    #[error("{path}: {size} bytes is over the {limit}-byte limit (--policy-max-file-size)")]
    TooLarge { path: PathBuf, size: u64, limit: u64 },
    /// cap-std refused the path (a symlink leading out of the folder) or reading failed.
    #[error("{path}: cannot be read inside the policies folder ({source}); symlinks must not lead outside it")]
    Io { path: PathBuf, source: std::io::Error },
}

impl FileError {
    /// A short stable label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            FileError::NotRegular { .. } => "not-regular-file",
            FileError::TooLarge { .. } => "too-large",
            FileError::Io { .. } => "unreadable",
        }
    }
}

/// Read-only access to the policies folder through a capability handle.
#[derive(Debug)]
struct Folder {
    /// The folder as the user named it, for messages.
    path: PathBuf,
    /// Capability on the folder: paths cannot escape it.
    dir: Dir,
    /// Size cap.
    max_file_size: u64,
}

impl Folder {
    fn open(path: &Path, max_file_size: u64) -> anyhow::Result<Self> {
        let dir = Dir::open_ambient_dir(path, cap_std::ambient_authority())
            .with_context(|| format!("opening the policies folder {}", path.display()))?;
        Ok(Folder { path: path.to_path_buf(), dir, max_file_size })
    }

    /// Names of the `*.wasm` entries directly in the folder.
    fn wasm_names(&self) -> anyhow::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in self.dir.entries().with_context(|| format!("listing {}", self.path.display()))? {
            let entry = entry.with_context(|| format!("listing {}", self.path.display()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if is_policy_file_name(&name) {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    fn exists(&self, file: &str) -> bool {
        self.dir.symlink_metadata(file).is_ok()
    }

    /// Device and inode of the open folder.
    fn identity(&self) -> Option<(u64, u64)> {
        self.dir.dir_metadata().ok().map(|m| (m.dev(), m.ino()))
    }

    /// Whether the folder's path still leads to the folder we have open.
    fn is_current(&self) -> bool {
        use std::os::unix::fs::MetadataExt as _;
        let at_path = std::fs::metadata(&self.path).ok().map(|m| (m.dev(), m.ino()));
        at_path.is_some() && at_path == self.identity()
    }

    /// The bytes of `file`, refusing anything but a regular file within the
    /// size cap inside the folder. Never blocks on a FIFO or device.
    fn read(&self, file: &str) -> Result<Vec<u8>, FileError> {
        let path = self.path.join(file);
        let io = |source| FileError::Io { path: path.clone(), source };
        let mut options = OpenOptions::new();
        options.read(true).custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY);
        let handle = self.dir.open_with(file, &options).map_err(io)?;
        let meta = handle.metadata().map_err(io)?;
        if !meta.is_file() {
            return Err(FileError::NotRegular { path });
        }
        if meta.len() > self.max_file_size {
            return Err(FileError::TooLarge { path, size: meta.len(), limit: self.max_file_size });
        }
        let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
        // Bound the read too: the file may grow between metadata and read.
        handle.take(self.max_file_size + 1).read_to_end(&mut bytes).map_err(io)?;
        if bytes.len() as u64 > self.max_file_size {
            return Err(FileError::TooLarge { path, size: bytes.len() as u64, limit: self.max_file_size });
        }
        Ok(bytes)
    }
}

fn is_policy_file_name(name: &str) -> bool {
    name.len() > ".wasm".len() && name.ends_with(".wasm") && !name.starts_with('.')
}

fn policy_name_of(file: &str) -> &str {
    file.strip_suffix(".wasm").unwrap_or(file)
}

/// Load or reload `file` from the folder into `set`. Blocking: compiles.
fn apply(runtime: &Runtime, folder: &Folder, set: &PolicySet, file: &str) -> Option<Change> {
    let name = policy_name_of(file).to_string();
    let stats = set.stats();
    if !folder.exists(file) {
        if !folder.is_current() {
            // The folder itself went away or was replaced: keep the last
            // good state; the watcher resynchronises with the new folder.
            return None;
        }
        if set.remove(&name) {
            stats.unloads.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(policy = %name, file = %folder.path.join(file).display(), "policy unloaded: its file was deleted");
            return Some(Change::Unloaded(name));
        }
        return None;
    }
    let reject = |error: String, cause: &str| {
        stats.rejected(&name, cause);
        let kept = if set.get(&name).is_some() { "; the previous version keeps running" } else { "" };
        tracing::error!(policy = %name, "policy rejected: {error}{kept}");
        Some(Change::Rejected { name: name.clone(), error })
    };
    let bytes = match folder.read(file) {
        Ok(bytes) => bytes,
        Err(err) => return reject(err.to_string(), err.kind()),
    };
    let sha256 = hex::encode(crate::policy::content_hash(&bytes));
    if set.get(&name).is_some_and(|slot| slot.sha256() == sha256) {
        stats.unchanged.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(policy = %name, "file event without a content change; nothing to do");
        return None;
    }
    let started = std::time::Instant::now();
    match runtime.load(&name, &bytes) {
        Ok(policy) => {
            let origin = policy.origin();
            let replaced = set.install(policy);
            let took = crate::units::human_duration(started.elapsed());
            let from = match origin {
                crate::policy::Origin::Memory => "from memory",
                crate::policy::Origin::Disk => "from the compile cache",
                crate::policy::Origin::Compiled => "compiled",
            };
            let version = &sha256[..12];
            if replaced {
                stats.reloads.fetch_add(1, Ordering::Relaxed);
                tracing::info!(policy = %name, sha256 = %version, "policy {name} reloaded: version {version}, {from} in {took}");
                Some(Change::Reloaded(name))
            } else {
                stats.loads.fetch_add(1, Ordering::Relaxed);
                tracing::info!(policy = %name, sha256 = %version, "policy {name} loaded: version {version}, {from} in {took}");
                Some(Change::Loaded(name))
            }
        }
        Err(err) => reject(format!("{}: {err}", folder.path.join(file).display()), err.kind()),
    }
}

/// Load every policy file in `dir` into `set` (blocking; compiles). A bad
/// file is logged and counted, never fatal.
pub fn load_folder(
    runtime: &Runtime,
    dir: &Path,
    set: &PolicySet,
    settings: &ReloadSettings,
) -> anyhow::Result<Vec<Change>> {
    apply_all(runtime, &Folder::open(dir, settings.max_file_size)?, set)
}

/// Apply every policy file in `folder` to `set`, [`PARALLEL_LOADS`] at a
/// time, and unload policies whose file is not in it (after the folder was
/// replaced); the changes, in file order.
fn apply_all(runtime: &Runtime, folder: &Folder, set: &PolicySet) -> anyhow::Result<Vec<Change>> {
    let files = folder.wasm_names()?;
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Mutex<Vec<(usize, Change)>> = Mutex::default();
    std::thread::scope(|scope| {
        for _ in 0..PARALLEL_LOADS.min(files.len()) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(file) = files.get(i) else { return };
                    if let Some(change) = apply(runtime, folder, set, file) {
                        results.lock().unwrap_or_else(|p| p.into_inner()).push((i, change));
                    }
                }
            });
        }
    });
    let mut results = results.into_inner().unwrap_or_else(|p| p.into_inner());
    results.sort_by_key(|(i, _)| *i);
    let mut changes: Vec<Change> = results.into_iter().map(|(_, c)| c).collect();
    let present: HashSet<&str> = files.iter().map(|f| policy_name_of(f)).collect();
    for name in set.names() {
        if !present.contains(name.as_str()) && set.remove(&name) {
            set.stats().unloads.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(policy = %name, folder = %folder.path.display(), "policy unloaded: the folder has no file for it");
            changes.push(Change::Unloaded(name));
        }
    }
    Ok(changes)
}

/// Per-file state of the debouncer.
#[derive(Debug)]
struct Pending {
    /// When to read the file, unless more events arrive.
    due: Instant,
    /// A writer has it open (data written, close not seen yet).
    open_for_write: bool,
    /// When the current write began, to bound waiting for a close.
    write_started: Instant,
}

/// Handle to a running folder watcher. Dropping it stops the watcher and
/// any compile in flight.
#[derive(Debug)]
pub struct WatchHandle {
    runtime: Arc<Runtime>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for WatchHandle {
    fn drop(&mut self) {
        self.runtime.cancel_compiles();
        self.task.abort();
    }
}

/// The folder being followed and the inotify watch on it.
struct Followed {
    folder: Arc<Folder>,
    watcher: notify::RecommendedWatcher,
    /// Set while the folder's path leads nowhere, to warn once.
    missing: bool,
}

/// Load the folder, then follow it: every change is applied to `set` and
/// reported on `changes`. Must be called inside a tokio runtime.
pub async fn watch(
    runtime: Arc<Runtime>,
    dir: &Path,
    set: PolicySet,
    settings: ReloadSettings,
    changes: mpsc::UnboundedSender<Change>,
) -> anyhow::Result<WatchHandle> {
    let folder = Arc::new(Folder::open(dir, settings.max_file_size)?);
    let (raw_tx, raw_rx) = mpsc::unbounded_channel::<notify::Result<notify::Event>>();
    // Start watching before the initial scan so no change falls in between.
    let mut watcher = notify::recommended_watcher(move |event| {
        let _ = raw_tx.send(event);
    })
    .context("starting the policies folder watcher (inotify)")?;
    watcher.watch(dir, RecursiveMode::NonRecursive).with_context(|| format!("watching {}", dir.display()))?;

    let initial = {
        let (runtime, folder, set) = (runtime.clone(), folder.clone(), set.clone());
        tokio::task::spawn_blocking(move || apply_all(&runtime, &folder, &set))
            .await
            .context("initial load of the policies folder")??
    };
    for change in initial {
        let _ = changes.send(change);
    }
    let followed = Followed { folder, watcher, missing: false };
    let task = tokio::spawn(follow(runtime.clone(), followed, set, settings, raw_rx, changes));
    Ok(WatchHandle { runtime, task })
}

/// The watcher loop: debounce file events, then apply them, at most
/// [`PARALLEL_LOADS`] at once and never two for the same file; check every
/// [`FOLDER_CHECK`] that the folder was not replaced.
async fn follow(
    runtime: Arc<Runtime>,
    mut followed: Followed,
    set: PolicySet,
    settings: ReloadSettings,
    mut raw: mpsc::UnboundedReceiver<notify::Result<notify::Event>>,
    changes: mpsc::UnboundedSender<Change>,
) {
    let mut pending: HashMap<String, Pending> = HashMap::new();
    let mut busy: HashSet<String> = HashSet::new();
    let mut loads: tokio::task::JoinSet<(String, Option<Change>)> = tokio::task::JoinSet::new();
    let mut check = tokio::time::interval(FOLDER_CHECK);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let next_due = pending
            .iter()
            .filter(|(file, _)| !busy.contains(*file))
            .map(|(_, p)| if p.open_for_write { p.write_started + settings.open_write_timeout } else { p.due })
            .min()
            .filter(|_| busy.len() < PARALLEL_LOADS);
        let sleep = async {
            match next_due {
                Some(due) => tokio::time::sleep_until(due).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            event = raw.recv() => {
                let Some(event) = event else { return };
                match event {
                    Ok(event) => note(&mut pending, &followed.folder, &event, &settings),
                    Err(err) => tracing::warn!(folder = %followed.folder.path.display(), "policies folder watcher error: {err}"),
                }
            }
            Some(done) = loads.join_next() => match done {
                Ok((file, change)) => {
                    busy.remove(&file);
                    if let Some(change) = change {
                        let _ = changes.send(change);
                    }
                }
                Err(err) => {
                    tracing::error!("policy load task failed: {err}");
                    busy.clear();
                }
            },
            _ = check.tick() => {
                if let Some(resync) = refollow(&mut followed, &settings) {
                    pending.clear();
                    let (runtime, folder, set) = (runtime.clone(), resync, set.clone());
                    match tokio::task::spawn_blocking(move || apply_all(&runtime, &folder, &set)).await {
                        Ok(Ok(found)) => found.into_iter().for_each(|c| { let _ = changes.send(c); }),
                        Ok(Err(err)) => tracing::error!("reading the replaced policies folder: {err:#}"),
                        Err(err) => tracing::error!("policy load task failed: {err}"),
                    }
                }
            }
            () = sleep => {
                let now = Instant::now();
                let ready: Vec<String> = pending
                    .iter()
                    .filter(|(file, _)| !busy.contains(*file))
                    .filter(|(_, p)| if p.open_for_write { now >= p.write_started + settings.open_write_timeout } else { now >= p.due })
                    .map(|(file, _)| file.clone())
                    .take(PARALLEL_LOADS - busy.len())
                    .collect();
                for file in ready {
                    let folder = followed.folder.clone();
                    if pending.remove(&file).is_some_and(|p| p.open_for_write) {
                        tracing::warn!(file = %folder.path.join(&file).display(),
                            "file still open for writing after {}; reading it anyway", crate::units::human_duration(settings.open_write_timeout));
                    }
                    busy.insert(file.clone());
                    let (runtime, set) = (runtime.clone(), set.clone());
                    loads.spawn_blocking(move || {
                        let change = apply(&runtime, &folder, &set, &file);
                        (file, change)
                    });
                }
            }
        }
    }
}

/// If the folder's path no longer leads to the folder being followed,
/// switch to the new one (with a warning) and return it for a full resync.
fn refollow(followed: &mut Followed, settings: &ReloadSettings) -> Option<Arc<Folder>> {
    let path = followed.folder.path.clone();
    if followed.folder.is_current() {
        followed.missing = false;
        return None;
    }
    let folder = match Folder::open(&path, settings.max_file_size) {
        Ok(folder) => folder,
        Err(err) => {
            if !followed.missing {
                followed.missing = true;
                tracing::warn!(folder = %path.display(),
                    "the policies folder is gone ({err:#}); the loaded policies keep running until it comes back");
            }
            return None;
        }
    };
    let _ = followed.watcher.unwatch(&path);
    if let Err(err) = followed.watcher.watch(&path, RecursiveMode::NonRecursive) {
        tracing::warn!(folder = %path.display(), "cannot watch the replaced policies folder yet: {err}");
        return None;
    }
    tracing::warn!(folder = %path.display(),
        "the policies folder was replaced (deleted and created again, or its symlink points elsewhere); following the new folder");
    followed.missing = false;
    followed.folder = Arc::new(folder);
    Some(followed.folder.clone())
}

/// Record one notify event in the debouncer.
fn note(pending: &mut HashMap<String, Pending>, folder: &Folder, event: &notify::Event, settings: &ReloadSettings) {
    tracing::trace!(kind = ?event.kind, paths = ?event.paths, "policies folder event");
    let now = Instant::now();
    for path in &event.paths {
        let Some(file) = path.file_name().map(|f| f.to_string_lossy().into_owned()) else { continue };
        // The watch is not recursive: every path is directly in the folder.
        // Opens and reads (including our own) change nothing; only writes,
        // closes after writing, renames and removals do.
        let relevant = match event.kind {
            EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
            EventKind::Access(_) => false,
            _ => true,
        };
        if !relevant || !is_policy_file_name(&file) {
            continue;
        }
        // Only a regular file can be open for writing; a symlink or a folder
        // named `x.wasm` just settles and is then refused with a reason.
        let regular = folder.dir.symlink_metadata(&file).is_ok_and(|m| m.is_file());
        let entry = pending.entry(file).or_insert(Pending { due: now, open_for_write: false, write_started: now });
        match event.kind {
            // The writer closed the file: it is complete now.
            EventKind::Access(AccessKind::Close(AccessMode::Write)) => {
                entry.open_for_write = false;
                entry.due = now;
            }
            // Data written: wait for the close.
            EventKind::Modify(notify::event::ModifyKind::Data(_)) | EventKind::Create(_) if regular => {
                if !entry.open_for_write {
                    entry.write_started = now;
                }
                entry.open_for_write = true;
                entry.due = now + settings.debounce;
            }
            // Renamed into place: complete on arrival.
            EventKind::Modify(notify::event::ModifyKind::Name(
                notify::event::RenameMode::To | notify::event::RenameMode::Both,
            )) => {
                entry.open_for_write = false;
                entry.due = now;
            }
            // Removed, renamed away, metadata: settle briefly.
            _ => {
                entry.open_for_write = false;
                entry.due = now + settings.debounce;
            }
        }
    }
}

#[cfg(test)]
mod tests;
