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
//!
//! Invariant: this module knows files and policies, not services; it
//! reports what changed on a channel and the event loop decides what that
//! means for the services bound to a policy.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use cap_std::fs::Dir;
use notify::event::{AccessKind, AccessMode, EventKind};
use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::policy::{PolicySet, Runtime};

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

    /// The bytes of `file`, refusing anything but a regular file within the
    /// size cap inside the folder.
    fn read(&self, file: &str) -> Result<Vec<u8>, FileError> {
        let path = self.path.join(file);
        let io = |source| FileError::Io { path: path.clone(), source };
        let handle = self.dir.open(file).map_err(io)?;
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
        if set.remove(&name) {
            stats.unloads.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(policy = %name, file = %folder.path.join(file).display(), "policy unloaded: its file was deleted");
            return Some(Change::Unloaded(name));
        }
        return None;
    }
    let reject = |error: String| {
        stats.rejections.fetch_add(1, Ordering::Relaxed);
        let kept = if set.get(&name).is_some() { "; the previous version keeps running" } else { "" };
        tracing::error!(policy = %name, "policy rejected: {error}{kept}");
        Some(Change::Rejected { name: name.clone(), error })
    };
    let bytes = match folder.read(file) {
        Ok(bytes) => bytes,
        Err(err) => return reject(err.to_string()),
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
            let ms = started.elapsed().as_secs_f64() * 1e3;
            if replaced {
                stats.reloads.fetch_add(1, Ordering::Relaxed);
                tracing::info!(policy = %name, sha256 = %&sha256[..12], ?origin, ms, "policy reloaded");
                Some(Change::Reloaded(name))
            } else {
                stats.loads.fetch_add(1, Ordering::Relaxed);
                tracing::info!(policy = %name, sha256 = %&sha256[..12], ?origin, ms, "policy loaded");
                Some(Change::Loaded(name))
            }
        }
        Err(err) => reject(format!("{}: {err}", folder.path.join(file).display())),
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

/// Apply every policy file in `folder` to `set`; the changes, in file order.
fn apply_all(runtime: &Runtime, folder: &Folder, set: &PolicySet) -> anyhow::Result<Vec<Change>> {
    let mut changes = Vec::new();
    for file in folder.wasm_names()? {
        changes.extend(apply(runtime, folder, set, &file));
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

/// Handle to a running folder watcher. Dropping it stops the watcher.
#[derive(Debug)]
pub struct WatchHandle {
    _watcher: notify::RecommendedWatcher,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for WatchHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
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
    let task = tokio::spawn(follow(runtime, folder, set, settings, raw_rx, changes));
    Ok(WatchHandle { _watcher: watcher, task })
}

/// The watcher loop: debounce file events, then apply them one at a time.
async fn follow(
    runtime: Arc<Runtime>,
    folder: Arc<Folder>,
    set: PolicySet,
    settings: ReloadSettings,
    mut raw: mpsc::UnboundedReceiver<notify::Result<notify::Event>>,
    changes: mpsc::UnboundedSender<Change>,
) {
    let mut pending: HashMap<String, Pending> = HashMap::new();
    loop {
        let next_due = pending
            .values()
            .map(|p| if p.open_for_write { p.write_started + settings.open_write_timeout } else { p.due })
            .min();
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
                    Ok(event) => note(&mut pending, &folder, &event, &settings),
                    Err(err) => tracing::warn!(folder = %folder.path.display(), "policies folder watcher error: {err}"),
                }
            }
            () = sleep => {
                let now = Instant::now();
                let ready: Vec<String> = pending
                    .iter()
                    .filter(|(_, p)| if p.open_for_write { now >= p.write_started + settings.open_write_timeout } else { now >= p.due })
                    .map(|(file, _)| file.clone())
                    .collect();
                for file in ready {
                    if pending.remove(&file).is_some_and(|p| p.open_for_write) {
                        tracing::warn!(file = %folder.path.join(&file).display(),
                            "file still open for writing after {:?}; reading it anyway", settings.open_write_timeout);
                    }
                    let (runtime, folder2, set2) = (runtime.clone(), folder.clone(), set.clone());
                    let file2 = file.clone();
                    match tokio::task::spawn_blocking(move || apply(&runtime, &folder2, &set2, &file2)).await {
                        Ok(Some(change)) => { let _ = changes.send(change); }
                        Ok(None) => {}
                        Err(err) => tracing::error!(file = %folder.path.join(&file).display(), "policy load task failed: {err}"),
                    }
                }
            }
        }
    }
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
