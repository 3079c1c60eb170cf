//! Where a container's cgroups live, detected once at startup.
//!
//! Two layouts are supported:
//! - hybrid (cgroup v1 controllers plus a v2 hierarchy at
//!   `/sys/fs/cgroup/unified`), as Docker's cgroupfs driver makes them:
//!   `/sys/fs/cgroup/<controller>/docker/<id>` and
//!   `/sys/fs/cgroup/unified/docker/<id>`;
//! - pure cgroup v2, with systemd (`system.slice/docker-<id>.scope`) or with
//!   Docker's cgroupfs driver (`docker/<id>`).
//!
//! An engine started with `--cgroup-parent` (or a container created with
//! one) puts containers elsewhere: `/n3/<id>`, `my.slice/docker-<id>.scope`.
//! Those are found where the kernel has them: when the usual places are
//! empty, the v2 hierarchy is searched (a few levels deep, a bounded
//! number of directories) for the container's directory, in either
//! driver's naming, and the same relative path is used in the v1
//! controllers of a hybrid host.
//!
//! A cgroup's id is the inode number of its directory. The key the probes
//! use for a container is the id of its cgroup in the v2 (default)
//! hierarchy: it is what the kernel finds at `task->cgroups->dfl_cgrp` and at
//! `sk->sk_cgrp_data.cgroup` in both layouts, so one map key serves CPU,
//! memory and sockets.
//!
//! This module knows paths and files, not Docker: it never talks to dockerd.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Where the cgroup hierarchies are mounted on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// cgroup v1 controllers under `root/<controller>` and the v2 hierarchy
    /// at `root/unified`.
    Hybrid {
        /// Usually `/sys/fs/cgroup`.
        root: PathBuf,
    },
    /// Only the v2 hierarchy, mounted at `root`.
    Unified {
        /// Usually `/sys/fs/cgroup`.
        root: PathBuf,
    },
}

/// Why a layout or a container's cgroup could not be found.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// No cgroup v2 hierarchy is mounted: the probes key containers on it.
    #[error(
        "no cgroup v2 hierarchy under {0} (looked for cgroup.controllers there and in unified/); mount cgroup2 or boot with a hybrid or unified cgroup layout"
    )]
    NoV2Hierarchy(PathBuf),
    /// The container's cgroup directory does not exist (yet).
    #[error("cgroup of container {container} not found (looked at {looked}); is the container running on this node?")]
    NotFound {
        /// The container id asked for.
        container: String,
        /// The directories tried, comma separated.
        looked: String,
    },
    /// The container id cannot be part of a path.
    #[error("container id {0:?} is not a docker container id (expected hex characters)")]
    BadId(String),
    /// Reading a cgroup file failed.
    #[error("reading {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// The cgroup files of one container, resolved for this layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerCgroup {
    /// Docker container id.
    pub container_id: String,
    /// Inode of the container's v2 cgroup directory: the probes' map key.
    pub id: u64,
    /// The container's v2 cgroup directory.
    pub v2_dir: PathBuf,
    /// Where CPU usage and CPU limit files are, and in which format.
    pub cpu: Files,
    /// Where memory usage and limit files are, and in which format.
    pub memory: Files,
}

/// A controller directory and the cgroup version of its files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Files {
    /// cgroup v1 files (`cpuacct.usage`, `cpu.cfs_quota_us`,
    /// `memory.usage_in_bytes`, ...). CPU usage lives in the cpuacct
    /// hierarchy, the quota in the cpu one: both directories are kept.
    V1 {
        /// Controller directory (cpu or memory).
        dir: PathBuf,
        /// cpuacct directory, for CPU usage (same as `dir` for memory).
        acct: PathBuf,
    },
    /// cgroup v2 files (`cpu.stat`, `cpu.max`, `memory.current`, ...).
    V2(PathBuf),
}

impl Layout {
    /// Detect the layout under `/sys/fs/cgroup`.
    pub fn detect() -> Result<Layout, CgroupError> {
        Layout::detect_at(Path::new("/sys/fs/cgroup"))
    }

    /// Detect the layout under `root` (tests pass a fake tree).
    pub fn detect_at(root: &Path) -> Result<Layout, CgroupError> {
        if root.join("cgroup.controllers").exists() {
            Ok(Layout::Unified { root: root.to_path_buf() })
        } else if root.join("unified/cgroup.controllers").exists() {
            Ok(Layout::Hybrid { root: root.to_path_buf() })
        } else {
            Err(CgroupError::NoV2Hierarchy(root.to_path_buf()))
        }
    }

    /// The mount point of the v2 hierarchy.
    pub fn v2_root(&self) -> PathBuf {
        match self {
            Layout::Hybrid { root } => root.join("unified"),
            Layout::Unified { root } => root.clone(),
        }
    }

    /// Resolve a container's cgroup directories and id.
    pub fn container(&self, container_id: &str) -> Result<ContainerCgroup, CgroupError> {
        if container_id.is_empty() || !container_id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(CgroupError::BadId(container_id.to_string()));
        }
        // Docker's two cgroup drivers: cgroupfs (`docker/<id>`) and systemd
        // (`system.slice/docker-<id>.scope`), in either layout.
        let relatives = [
            PathBuf::from(format!("docker/{container_id}")),
            PathBuf::from(format!("system.slice/docker-{container_id}.scope")),
        ];
        let v2_root = self.v2_root();
        let mut looked = Vec::new();
        let found = relatives.iter().find(|rel| v2_root.join(rel).is_dir()).cloned();
        // Not where the engine puts them by default: an engine or a
        // container with a cgroup parent of its own. Ask the tree.
        let searched = match found {
            Some(_) => None,
            None => find_container_dir(&v2_root, container_id),
        };
        for rel in relatives.iter().chain(searched.iter()) {
            let v2_dir = v2_root.join(rel);
            looked.push(v2_dir.display().to_string());
            if !v2_dir.is_dir() {
                continue;
            }
            let (cpu, memory) = match self {
                Layout::Unified { .. } => (Files::V2(v2_dir.clone()), Files::V2(v2_dir.clone())),
                Layout::Hybrid { root } => {
                    let cpu = root.join("cpu").join(rel);
                    let acct = root.join("cpuacct").join(rel);
                    let mem = root.join("memory").join(rel);
                    (Files::V1 { dir: cpu, acct }, Files::V1 { dir: mem.clone(), acct: mem })
                }
            };
            return Ok(ContainerCgroup {
                container_id: container_id.to_string(),
                id: cgroup_id(&v2_dir)?,
                v2_dir,
                cpu,
                memory,
            });
        }
        looked.push(format!("{} searched {SEARCH_DEPTH} levels deep", v2_root.display()));
        Err(CgroupError::NotFound { container: container_id.to_string(), looked: looked.join(", ") })
    }

    /// A cgroup that is not a Docker container, given by its path relative
    /// to the v2 root (and to each v1 controller root on a hybrid host).
    /// Tests and benchmarks use it for cgroups they create themselves; the
    /// "container id" reported in events is `name`.
    pub fn named(&self, name: &str, relative: &Path) -> Result<ContainerCgroup, CgroupError> {
        let v2_dir = self.v2_root().join(relative);
        let (cpu, memory) = match self {
            Layout::Unified { .. } => (Files::V2(v2_dir.clone()), Files::V2(v2_dir.clone())),
            Layout::Hybrid { root } => (
                Files::V1 { dir: root.join("cpu").join(relative), acct: root.join("cpuacct").join(relative) },
                Files::V1 { dir: root.join("memory").join(relative), acct: root.join("memory").join(relative) },
            ),
        };
        Ok(ContainerCgroup { container_id: name.to_string(), id: cgroup_id(&v2_dir)?, v2_dir, cpu, memory })
    }
}

/// How deep below the v2 root a container's directory is searched for:
/// `parent/<id>` is 2, `a.slice/b.slice/docker-<id>.scope` is 3.
pub const SEARCH_DEPTH: usize = 4;
/// Most directories one search reads, so that a host with a huge cgroup
/// tree cannot make tracking one container expensive.
const SEARCH_BUDGET: usize = 20_000;

/// The directory of container `id` below `v2_root`, relative to it, named
/// as either of Docker's cgroup drivers names it (`<id>` or
/// `docker-<id>.scope`), breadth first, at most [`SEARCH_DEPTH`] levels.
fn find_container_dir(v2_root: &Path, id: &str) -> Option<PathBuf> {
    let scope = format!("docker-{id}.scope");
    let mut level = vec![PathBuf::new()];
    let mut budget = SEARCH_BUDGET;
    for _ in 0..SEARCH_DEPTH {
        let mut next = Vec::new();
        for rel in &level {
            let Ok(entries) = std::fs::read_dir(v2_root.join(rel)) else { continue };
            for entry in entries.flatten() {
                if budget == 0 {
                    return None;
                }
                budget -= 1;
                if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                let name = entry.file_name();
                let child = rel.join(&name);
                if name.to_str().is_some_and(|n| n == id || n == scope) {
                    return Some(child);
                }
                next.push(child);
            }
        }
        level = next;
    }
    None
}

/// The id of the cgroup at `dir`: its inode number.
pub fn cgroup_id(dir: &Path) -> Result<u64, CgroupError> {
    std::fs::metadata(dir).map(|m| m.ino()).map_err(|source| CgroupError::Io { path: dir.to_path_buf(), source })
}

/// One reading of a container's cgroup files.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    /// Total CPU time used, nanoseconds.
    pub cpu_ns: u64,
    /// CPU limit in cores, if any.
    pub cpu_limit_cores: Option<f64>,
    /// Memory in use, bytes.
    pub memory_bytes: u64,
    /// Memory limit, bytes, if any.
    pub memory_limit: Option<u64>,
}

impl ContainerCgroup {
    /// CPU limit in cores (`cpu.max` or `cpu.cfs_quota_us / period`), if any.
    pub fn cpu_limit_cores(&self) -> Result<Option<f64>, CgroupError> {
        match &self.cpu {
            Files::V2(dir) => {
                let path = dir.join("cpu.max");
                // A missing cpu.max means the cpu controller is not enabled
                // for this cgroup: no limit can apply.
                let Ok(text) = std::fs::read_to_string(&path) else { return Ok(None) };
                Ok(parse_cpu_max(&text))
            }
            Files::V1 { dir, .. } => {
                let quota = read_trimmed(&dir.join("cpu.cfs_quota_us"))?;
                let period = read_trimmed(&dir.join("cpu.cfs_period_us"))?;
                Ok(quota_over_period(&quota, &period))
            }
        }
    }

    /// Read CPU time, memory usage and limits now.
    pub fn read(&self) -> Result<Reading, CgroupError> {
        let cpu_ns = match &self.cpu {
            Files::V2(dir) => {
                let path = dir.join("cpu.stat");
                let text = read_trimmed(&path)?;
                let usec = text
                    .lines()
                    .find_map(|l| l.strip_prefix("usage_usec "))
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .ok_or_else(|| bad(&path, "no usage_usec line"))?;
                usec.saturating_mul(1000)
            }
            Files::V1 { acct, .. } => parse_u64(&acct.join("cpuacct.usage"))?,
        };
        let (memory_bytes, memory_limit) = match &self.memory {
            Files::V2(dir) => {
                let usage = parse_u64(&dir.join("memory.current"))?;
                let limit = read_trimmed(&dir.join("memory.max"))?;
                (usage, limit.parse::<u64>().ok())
            }
            Files::V1 { dir, .. } => {
                let usage = parse_u64(&dir.join("memory.usage_in_bytes"))?;
                let limit = parse_u64(&dir.join("memory.limit_in_bytes"))?;
                // v1 reports "no limit" as PAGE_COUNTER_MAX pages in bytes.
                (usage, (limit < (1 << 60)).then_some(limit))
            }
        };
        Ok(Reading { cpu_ns, cpu_limit_cores: self.cpu_limit_cores()?, memory_bytes, memory_limit })
    }

    /// Pids of the processes in this cgroup (v2 `cgroup.procs`).
    pub fn pids(&self) -> Result<Vec<u32>, CgroupError> {
        let path = self.v2_dir.join("cgroup.procs");
        Ok(read_trimmed(&path)?.lines().filter_map(|l| l.trim().parse().ok()).collect())
    }
}

fn read_trimmed(path: &Path) -> Result<String, CgroupError> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|source| CgroupError::Io { path: path.to_path_buf(), source })
}

fn parse_u64(path: &Path) -> Result<u64, CgroupError> {
    read_trimmed(path)?.parse().map_err(|_| bad(path, "not a number"))
}

fn bad(path: &Path, what: &str) -> CgroupError {
    CgroupError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string()),
    }
}

/// `cpu.max`: "max 100000" (no limit) or "50000 100000" (half a core).
fn parse_cpu_max(text: &str) -> Option<f64> {
    let mut parts = text.split_whitespace();
    let quota = parts.next()?;
    let period = parts.next().unwrap_or("100000");
    quota_over_period(quota, period)
}

fn quota_over_period(quota: &str, period: &str) -> Option<f64> {
    let quota: i64 = quota.parse().ok()?;
    let period: i64 = period.parse().ok()?;
    (quota > 0 && period > 0).then(|| quota as f64 / period as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_max_parses_limits_and_max() {
        assert_eq!(parse_cpu_max("max 100000\n"), None);
        assert_eq!(parse_cpu_max("50000 100000"), Some(0.5));
        assert_eq!(parse_cpu_max("200000 100000"), Some(2.0));
        assert_eq!(quota_over_period("-1", "100000"), None);
    }

    #[test]
    fn detects_both_layouts_and_finds_containers() {
        let id = "ab".repeat(32);
        let tmp = tempfile::tempdir().expect("tempdir");
        let hybrid = tmp.path().join("hybrid");
        std::fs::create_dir_all(hybrid.join("unified/docker").join(&id)).expect("mkdir");
        std::fs::write(hybrid.join("unified/cgroup.controllers"), "").expect("write");
        let layout = Layout::detect_at(&hybrid).expect("hybrid");
        assert!(matches!(layout, Layout::Hybrid { .. }));
        let cg = layout.container(&id).expect("found");
        assert_eq!(cg.id, cgroup_id(&hybrid.join("unified/docker").join(&id)).expect("ino"));
        assert_eq!(
            cg.memory,
            Files::V1 { dir: hybrid.join("memory/docker").join(&id), acct: hybrid.join("memory/docker").join(&id) }
        );

        let v2 = tmp.path().join("v2");
        std::fs::create_dir_all(v2.join("system.slice").join(format!("docker-{id}.scope"))).expect("mkdir");
        std::fs::write(v2.join("cgroup.controllers"), "cpu memory").expect("write");
        let layout = Layout::detect_at(&v2).expect("v2");
        let cg = layout.container(&id).expect("found");
        assert_eq!(cg.cpu, Files::V2(v2.join("system.slice").join(format!("docker-{id}.scope"))));

        assert!(matches!(layout.container("cd"), Err(CgroupError::NotFound { .. })));

        // An engine with --cgroup-parent /n3 (the test cluster's nodes), on
        // the hybrid host: found by the search, v1 paths follow.
        let other = "cd".repeat(32);
        std::fs::create_dir_all(hybrid.join("unified/n3").join(&other)).expect("mkdir");
        let cg = hybrid.join("unified").join("n3");
        let layout = Layout::detect_at(&hybrid).expect("hybrid");
        let found = layout.container(&other).expect("found under /n3");
        assert_eq!(found.v2_dir, cg.join(&other));
        assert_eq!(
            found.cpu,
            Files::V1 { dir: hybrid.join("cpu/n3").join(&other), acct: hybrid.join("cpuacct/n3").join(&other) }
        );
        // A systemd parent slice, pure v2.
        let deep = v2.join("tenant.slice/apps.slice").join(format!("docker-{other}.scope"));
        std::fs::create_dir_all(&deep).expect("mkdir");
        let layout = Layout::detect_at(&v2).expect("v2");
        assert_eq!(layout.container(&other).expect("found in a slice").v2_dir, deep);
        assert!(matches!(layout.container("../etc"), Err(CgroupError::BadId(_))));
        assert!(matches!(Layout::detect_at(tmp.path()), Err(CgroupError::NoV2Hierarchy(_))));
    }

    #[test]
    fn reads_v2_files() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_path_buf();
        std::fs::write(dir.join("cpu.stat"), "usage_usec 1500\nuser_usec 1000\n").expect("write");
        std::fs::write(dir.join("cpu.max"), "50000 100000\n").expect("write");
        std::fs::write(dir.join("memory.current"), "4096\n").expect("write");
        std::fs::write(dir.join("memory.max"), "max\n").expect("write");
        let cg = ContainerCgroup {
            container_id: "x".into(),
            id: 1,
            v2_dir: dir.clone(),
            cpu: Files::V2(dir.clone()),
            memory: Files::V2(dir),
        };
        let r = cg.read().expect("read");
        assert_eq!(
            r,
            Reading { cpu_ns: 1_500_000, cpu_limit_cores: Some(0.5), memory_bytes: 4096, memory_limit: None }
        );
    }
}
