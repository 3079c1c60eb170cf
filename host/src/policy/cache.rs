//! Compiled-code cache: an unchanged component is never compiled twice, in
//! this process (memory) or across restarts (disk).
//!
//! Keys are the SHA-256 of the component bytes; the disk layout is
//! `<dir>/<engine-hash>/<sha256>.cwasm`, where `<engine-hash>` is derived from
//! `Engine::precompile_compatibility_hash` so that a daemon with another
//! wasmtime version or other settings never loads incompatible code.
//!
//! Invariant: only this daemon writes the cache directory. Loading a `.cwasm`
//! maps machine code into the process, so the directory must be owned by the
//! daemon's user and not writable by anyone else; otherwise the disk tier is
//! switched off with a warning and only the memory tier is used.

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Compiled components kept in memory; older ones are evicted first.
const MEMORY_ENTRIES: usize = 64;

/// SHA-256 of a component's bytes.
pub type ContentHash = [u8; 32];

/// Hash component bytes for the cache key.
pub fn content_hash(bytes: &[u8]) -> ContentHash {
    Sha256::digest(bytes).into()
}

/// Where a compiled component came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Already compiled in this process.
    Memory,
    /// Loaded from the disk cache.
    Disk,
    /// Compiled now.
    Compiled,
}

/// Two-tier cache of compiled components.
#[derive(Debug)]
pub struct CompileCache {
    /// `<dir>/<engine-hash>`, or `None` when the disk tier is off.
    disk: Option<PathBuf>,
    /// Compiled components by content hash, with insertion order for eviction.
    memory: Mutex<(HashMap<ContentHash, Component>, VecDeque<ContentHash>)>,
    /// How many times Cranelift actually ran (tests and benchmarks read it).
    compiles: AtomicU64,
}

impl CompileCache {
    /// A cache for `engine`, with a disk tier under `dir` when given.
    pub fn new(engine: &Engine, dir: Option<&Path>) -> Self {
        let disk = dir.and_then(|dir| {
            let path = dir.join(engine_hash(engine));
            match prepare_dir(&path) {
                Ok(()) => Some(path),
                Err(err) => {
                    tracing::warn!(dir = %path.display(),
                        "compile cache on disk disabled: {err}; components will be compiled at every start");
                    None
                }
            }
        });
        CompileCache { disk, memory: Mutex::new((HashMap::new(), VecDeque::new())), compiles: AtomicU64::new(0) }
    }

    /// Number of real compilations so far.
    pub fn compiles(&self) -> u64 {
        self.compiles.load(Ordering::Relaxed)
    }

    /// The compiled component for `bytes`, compiling only on a miss in both tiers.
    pub fn get_or_compile(&self, engine: &Engine, bytes: &[u8]) -> wasmtime::Result<(Component, ContentHash, Origin)> {
        let hash = content_hash(bytes);
        if let Some(component) = self.lock().0.get(&hash) {
            return Ok((component.clone(), hash, Origin::Memory));
        }
        if let Some(component) = self.load_from_disk(engine, &hash) {
            self.remember(hash, component.clone());
            return Ok((component, hash, Origin::Disk));
        }
        let serialized = engine.precompile_component(bytes)?;
        self.compiles.fetch_add(1, Ordering::Relaxed);
        // SAFETY: `serialized` was produced by `precompile_component` on this
        // very engine a moment ago.
        let component = unsafe { Component::deserialize(engine, &serialized)? };
        self.store_on_disk(&hash, &serialized);
        self.remember(hash, component.clone());
        Ok((component, hash, Origin::Compiled))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (HashMap<ContentHash, Component>, VecDeque<ContentHash>)> {
        // The map is always consistent between statements; poisoning carries no meaning here.
        self.memory.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn remember(&self, hash: ContentHash, component: Component) {
        let mut guard = self.lock();
        let (map, order) = &mut *guard;
        if map.insert(hash, component).is_none() {
            order.push_back(hash);
        }
        while order.len() > MEMORY_ENTRIES {
            if let Some(old) = order.pop_front() {
                map.remove(&old);
            }
        }
    }

    fn entry_path(&self, hash: &ContentHash) -> Option<PathBuf> {
        self.disk.as_ref().map(|dir| dir.join(format!("{}.cwasm", hex::encode(hash))))
    }

    fn load_from_disk(&self, engine: &Engine, hash: &ContentHash) -> Option<Component> {
        let path = self.entry_path(hash)?;
        if !path.exists() {
            return None;
        }
        // Read into memory rather than mmap the file: a mapped file that is
        // truncated behind our back would turn into SIGBUS later.
        let serialized = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(err) => {
                tracing::warn!(file = %path.display(), "cannot read compile cache entry: {err}");
                return None;
            }
        };
        // SAFETY: the file lives in a directory only this daemon's user can
        // write (checked in `prepare_dir`) and was written by `store_on_disk`
        // from `precompile_component` output of an engine with the same
        // compatibility hash (part of the path). wasmtime still checks the
        // header and version and rejects what it cannot load.
        match unsafe { Component::deserialize(engine, &serialized) } {
            Ok(component) => Some(component),
            Err(err) => {
                tracing::warn!(file = %path.display(), "discarding unusable compile cache entry: {err}");
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    fn store_on_disk(&self, hash: &ContentHash, serialized: &[u8]) {
        let Some(path) = self.entry_path(hash) else { return };
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let result = (|| -> std::io::Result<()> {
            let mut file =
                std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
            file.write_all(serialized)?;
            file.sync_all()?;
            std::fs::rename(&tmp, &path)
        })();
        if let Err(err) = result {
            let _ = std::fs::remove_file(&tmp);
            tracing::warn!(file = %path.display(), "could not write compile cache entry: {err}");
        }
    }
}

/// Create `path` (0700) if needed and check nobody else can write it.
fn prepare_dir(path: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(path)?;
    for dir in [path, path.parent().unwrap_or(path)] {
        let meta = std::fs::metadata(dir)?;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let euid = unsafe { libc::geteuid() };
        if meta.uid() != euid || meta.permissions().mode() & 0o022 != 0 {
            return Err(std::io::Error::other(format!(
                "{} must be owned by uid {euid} and not writable by group or others",
                dir.display()
            )));
        }
    }
    Ok(())
}

/// A stable hex digest of the engine's compatibility hash.
fn engine_hash(engine: &Engine) -> String {
    struct Sha(Sha256);
    impl Hasher for Sha {
        fn write(&mut self, bytes: &[u8]) {
            self.0.update(bytes);
        }
        fn finish(&self) -> u64 {
            0 // unused: the digest is read directly below
        }
    }
    let mut hasher = Sha(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hex::encode(&hasher.0.finalize()[..8])
}
