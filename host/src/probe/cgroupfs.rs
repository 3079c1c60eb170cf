//! The pull probe: reads every tracked container's cgroup files on an
//! interval and computes the same events the kernel pushes.
//!
//! It serves hosts where the daemon has no BPF rights, and it is the
//! pull-based baseline the benchmarks compare the push probe with. What it
//! measures differs from the eBPF probe in the ways a pull probe must:
//! - CPU utilisation is averaged over the whole interval, not a window;
//! - open connections are the ESTABLISHED TCP sockets held by the
//!   container's processes on a port one of them listens on, i.e. accepted
//!   connections (`/proc/<pid>/fd` matched against
//!   `/proc/<pid>/net/tcp{,6}`), read at each tick;
//! - accepted connections are not counted (nothing in cgroupfs says so).
//!
//! Like the kernel program, it measures each metric with code of its own
//! (`cpu`, `memory`, `connections`); units and bands come from the
//! metrics table.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::model::{EventKind, Metric, Thresholds, monotonic_ns};

use super::cgroup::ContainerCgroup;
use super::crossing::BandState;
use super::{Backend, ProbeSettings, Reading, Shared, Signal};

/// The cgroupfs probe's half that the manager task drives.
#[derive(Debug, Clone)]
pub(super) struct CgroupfsProbe {
    /// Tracked containers by container id, shared with the reading task.
    entries: Arc<Mutex<HashMap<String, Entry>>>,
}

/// One tracked container and what the previous reading left.
#[derive(Debug)]
struct Entry {
    cgroup: ContainerCgroup,
    thresholds: Thresholds,
    /// (monotonic ns, cumulative CPU ns) of the previous reading.
    last_cpu: Option<(u64, u64)>,
    cpu: BandState,
    memory: BandState,
    connections: BandState,
    /// When the last periodic sample went out.
    last_sample_ns: u64,
}

impl CgroupfsProbe {
    /// Start reading every `interval`; returns the probe and its task.
    pub(super) fn spawn(
        interval: Duration,
        settings: &ProbeSettings,
        shared: Arc<Shared>,
    ) -> (CgroupfsProbe, tokio::task::JoinHandle<()>) {
        let probe = CgroupfsProbe { entries: Arc::new(Mutex::new(HashMap::new())) };
        let entries = probe.entries.clone();
        let sample_ns = settings.sample_interval.as_nanos() as u64;
        let interval = interval.max(Duration::from_millis(10));
        let task = tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                let entries = entries.clone();
                let shared = shared.clone();
                // File reads block: keep them off the runtime's workers.
                let done = tokio::task::spawn_blocking(move || read_all(&entries, &shared, sample_ns)).await;
                if let Err(err) = done {
                    tracing::error!(error = %err, "cgroupfs probe read failed");
                }
            }
        });
        (probe, task)
    }
}

impl Backend for CgroupfsProbe {
    fn add(&mut self, cgroup: ContainerCgroup, thresholds: Thresholds) -> anyhow::Result<()> {
        let mut entries = lock(&self.entries);
        match entries.get_mut(&cgroup.container_id) {
            // Same container, new thresholds: keep the previous reading.
            Some(entry) if entry.cgroup == cgroup => entry.thresholds = thresholds,
            _ => {
                let entry = Entry {
                    cgroup: cgroup.clone(),
                    thresholds,
                    last_cpu: None,
                    cpu: BandState::default(),
                    memory: BandState::default(),
                    connections: BandState::default(),
                    last_sample_ns: 0,
                };
                entries.insert(cgroup.container_id, entry);
            }
        }
        Ok(())
    }

    fn remove(&mut self, container_id: &str) {
        lock(&self.entries).remove(container_id);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind: keep going.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One pass over every tracked container.
fn read_all(entries: &Mutex<HashMap<String, Entry>>, shared: &Shared, sample_ns: u64) {
    let mut entries = lock(entries);
    // Containers that share a network namespace (host networking, or tasks
    // of one pod-like group) share one read of its TCP tables per pass.
    let mut tables = TcpTables::default();
    for entry in entries.values_mut() {
        if let Err(err) = read_one(entry, shared, sample_ns, &mut tables) {
            // The container may have just stopped; the daemon untracks it.
            tracing::debug!(container = %entry.cgroup.container_id, error = %err, "cgroupfs read failed");
        }
    }
}

fn read_one(entry: &mut Entry, shared: &Shared, sample_ns: u64, tables: &mut TcpTables) -> anyhow::Result<()> {
    let reading = entry.cgroup.read()?;
    let now = monotonic_ns();
    let id = entry.cgroup.container_id.clone();
    let sample = now.saturating_sub(entry.last_sample_ns) >= sample_ns;
    let thresholds = entry.thresholds;
    // `of_limit`: the value is a fraction of the container's limit.
    let emit = |metric: Metric, value: f64, of_limit: bool, hysteresis: f64, state: &mut BandState, in_sample: bool| {
        let Some(def) = metric.def() else { return };
        let unit = def.unit.unit(of_limit);
        let reading = |kind| Reading {
            container_id: id.clone(),
            metric: metric.clone(),
            value,
            unit: unit.clone(),
            kind,
            timestamp_ns: now,
        };
        for crossing in state.update_with_hysteresis(&thresholds.band_of(def), value, hysteresis) {
            shared.emit(reading(EventKind::Crossing(crossing)).into());
        }
        if in_sample {
            shared.emit(reading(EventKind::Sample).into());
        }
    };

    // CPU needs two readings; the first one only sets the baseline.
    if let Some((then, cpu_then)) = entry.last_cpu {
        let elapsed = now.saturating_sub(then).max(1);
        let cores = reading.cpu_ns.saturating_sub(cpu_then) as f64 / elapsed as f64;
        // Never above the limit: more is quota that CFS handed out in
        // slices straddling the edge of the reading (as in the kernel probe).
        let value = reading.cpu_limit_cores.map_or(cores, |limit| (cores / limit).min(1.0));
        emit(Metric::CPU, value, reading.cpu_limit_cores.is_some(), 0.0, &mut entry.cpu, sample);
    }
    entry.last_cpu = Some((now, reading.cpu_ns));

    emit(Metric::MEMORY, reading.memory_bytes as f64, false, 0.0, &mut entry.memory, sample);
    if sample && let Some(limit) = reading.memory_limit {
        shared.emit(Signal::MemoryLimit { container_id: id.clone(), bytes: limit, timestamp_ns: now }.into());
    }

    let open = established_connections(&entry.cgroup.pids()?, tables);
    let hysteresis = thresholds.bounds.connection_hysteresis_for(&thresholds.band(&Metric::CONNECTIONS));
    emit(Metric::CONNECTIONS, open as f64, false, hysteresis, &mut entry.connections, sample);
    if sample {
        entry.last_sample_ns = now;
    }
    Ok(())
}

/// One row of a `/proc/net/tcp`-style table: what the connection count needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TcpRow {
    /// Local port (hex, as in the table).
    port: u32,
    /// State 0A: a listening socket.
    listening: bool,
    /// State 01: an established connection.
    established: bool,
    /// Socket inode.
    inode: u64,
}

/// The TCP tables (v4 and v6) of each network namespace met during one
/// pass, read once each.
#[derive(Debug, Default)]
pub struct TcpTables {
    by_netns: HashMap<std::path::PathBuf, Vec<TcpRow>>,
}

impl TcpTables {
    /// The rows of the network namespace `pid` lives in.
    fn rows_of(&mut self, pid: u32) -> Option<&[TcpRow]> {
        let netns = std::fs::read_link(format!("/proc/{pid}/ns/net")).ok()?;
        let rows = self.by_netns.entry(netns).or_insert_with(|| {
            ["tcp", "tcp6"]
                .iter()
                .filter_map(|table| {
                    std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("net").join(table)).ok()
                })
                .flat_map(|text| parse_rows(&text))
                .collect()
        });
        Some(rows)
    }
}

/// Accepted TCP connections (v4 and v6) held open by any of `pids`:
/// ESTABLISHED sockets of theirs whose local port one of them listens on.
pub fn established_connections(pids: &[u32], tables: &mut TcpTables) -> usize {
    let mut inodes = HashSet::new();
    for pid in pids {
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { continue };
        for fd in fds.flatten() {
            if let Ok(target) = std::fs::read_link(fd.path())
                && let Some(inode) =
                    target.to_str().and_then(|t| t.strip_prefix("socket:[")).and_then(|t| t.strip_suffix(']'))
                && let Ok(inode) = inode.parse::<u64>()
            {
                inodes.insert(inode);
            }
        }
    }
    if inodes.is_empty() {
        return 0;
    }
    // Each network namespace once, through the first pid that lives in it.
    let mut seen = HashSet::new();
    let mut count = 0;
    for pid in pids {
        let Ok(netns) = std::fs::read_link(format!("/proc/{pid}/ns/net")) else { continue };
        if !seen.insert(netns) {
            continue;
        }
        if let Some(rows) = tables.rows_of(*pid) {
            count += count_accepted(rows, &inodes);
        }
    }
    count
}

/// Parse the rows of a `/proc/net/tcp`-style table.
fn parse_rows(text: &str) -> Vec<TcpRow> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let port = u32::from_str_radix(cols.get(1)?.rsplit(':').next()?, 16).ok()?;
            let inode = cols.get(9)?.parse::<u64>().ok()?;
            let state = *cols.get(3)?;
            Some(TcpRow { port, listening: state == "0A", established: state == "01", inode })
        })
        .collect()
}

/// Established rows with an inode in `inodes` on a local port where a socket
/// with an inode in `inodes` listens: connections the container accepted.
fn count_accepted(rows: &[TcpRow], inodes: &HashSet<u64>) -> usize {
    let listening: HashSet<u32> =
        rows.iter().filter(|r| r.listening && inodes.contains(&r.inode)).map(|r| r.port).collect();
    rows.iter().filter(|r| r.established && inodes.contains(&r.inode) && listening.contains(&r.port)).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_only_accepted_established_rows_of_our_inodes() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 111 1 0 100 0 0 10 0
   1: 0100007F:1F90 0100007F:D2F0 01 00000000:00000000 00:00000000 00000000     0        0 222 1 0 20 4 30 10 -1
   2: 0100007F:1F90 0100007F:D2F2 01 00000000:00000000 00:00000000 00000000     0        0 333 1 0 20 4 30 10 -1
   3: 0100007F:D2F4 0100007F:1F90 06 00000000:00000000 03:00000000 00000000     0        0 0 3 0 0 0 0 0 0
";
        // 111 listens on 1F90; 222 was accepted on it; 444 is our client
        // side of another connection; 333 is someone else's.
        let table = format!(
            "{table}   4: 0100007F:D2F6 0100007F:0050 01 00000000:00000000 00:00000000 00000000     0        0 444 1 0 20 4 30 10 -1\n"
        );
        let ours: HashSet<u64> = [111, 222, 444].into_iter().collect();
        assert_eq!(count_accepted(&parse_rows(&table), &ours), 1);
    }
}
