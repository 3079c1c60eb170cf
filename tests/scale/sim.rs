//! The scale harness (issue 25): a simulated swarm around the real daemon.
//!
//! - the fake engine ([`super::engine`]) plays the Swarm manager the daemon
//!   talks to (`DOCKER_HOST=unix://…`);
//! - the real `host` binary runs in multi-node mode as the leader, with its
//!   real policies (the cgroupfs probe: it measures nothing here, the
//!   readings come from the agents);
//! - every simulated node is the real agent ([`host::cluster::AgentHandle`]),
//!   many in this process, connected over the real channel with the token;
//!   each sends one reading a second for every container the decider told
//!   it to track, plus crossings for the services under test.
//!
//! A crossing is sent for every replica of one service at a time; the
//! latency is from that moment to the fake engine accepting the service's
//! update (the spec written).

// Shared by the CI test (tests/scale.rs) and the benchmark (benches/scale.rs);
// each reads part of the report.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{Read, Write as _};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use host::cluster::wire::WireEvent;
use host::cluster::{AgentHandle, ChannelSettings, Token};
use host::model::{Crossing, Direction, EventKind, Metric, Unit, monotonic_ns};
use host::probe::{ProbeEvent, Reading};

use super::engine::{FakeEngine, SwarmShape};

/// The run to make.
#[derive(Debug, Clone)]
pub struct Run {
    /// Worker nodes (each one simulated agent).
    pub nodes: usize,
    /// Autoscaled services.
    pub services: usize,
    /// Replicas of each at start.
    pub replicas: usize,
    /// Load phase.
    pub duration: Duration,
    /// Services sent a crossing, one after the other, during the load.
    pub crossings: usize,
    /// The fake engine's delay from an update to its tasks.
    pub task_delay: Duration,
    /// The `host` binary.
    pub host: PathBuf,
    /// The daemon's compile cache (kept between runs: compiling the
    /// policies is not what is measured).
    pub cache_dir: PathBuf,
    /// Sample the daemon's RSS this often during the load (zero: only at
    /// the end); the samples give the memory slope of a long run.
    pub rss_every: Duration,
}

/// What a run measured.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Readings the agents handed to their channel.
    pub sent: u64,
    /// Readings the agents forwarded.
    pub forwarded: u64,
    /// Dropped by the agents (their counters).
    pub agent_dropped: u64,
    /// `autoscaler_cluster_decider_events_total` at the end.
    pub decider_events: f64,
    /// `autoscaler_cluster_decider_dropped_events_total`.
    pub decider_dropped: f64,
    /// `autoscaler_probe_dropped_events_total` + `…_unknown_metric_total`.
    pub other_dropped: f64,
    /// Readings the decider took per second over the load phase.
    pub events_per_sec: f64,
    /// `autoscaler_kernel_to_decision_seconds` p50 and p99 (bucket bounds), ms.
    pub decision_ms: (f64, f64),
    /// Crossing -> spec written, ms, p50 and p99, and how many crossings got a write.
    pub write_ms: (f64, f64),
    /// Crossings sent, and crossings whose service was written.
    pub crossings: (usize, usize),
    /// The daemon's CPU over the load phase, in cores.
    pub cpu_cores: f64,
    /// Its RSS at the end, and its peak, MiB.
    pub rss_mib: (f64, f64),
    /// Channel payload, bytes per second (agents to decider, estimated from
    /// the encoded size of the readings sent).
    pub channel_bytes_per_sec: f64,
    /// Task listings per second served to the daemon, tasks and KiB per second.
    pub task_reads: (f64, f64, f64),
    /// Time to set up: daemon start to every agent holding its set, ms.
    pub setup_ms: f64,
    /// Requests the fake engine could not serve.
    pub unknown_requests: BTreeMap<String, u64>,
    /// (seconds into the load, RSS MiB) every `Run::rss_every`.
    pub rss_samples: Vec<(f64, f64)>,
    /// Replicas in the fake swarm at the end (crossings add some).
    pub replicas_end: usize,
}

/// Least-squares slope of RSS over the samples after `warmup` seconds, in
/// MiB per hour, with the number of samples used; `None` under 3 samples.
pub fn rss_slope(samples: &[(f64, f64)], warmup: f64) -> Option<(f64, usize)> {
    let kept: Vec<(f64, f64)> = samples.iter().copied().filter(|(t, _)| *t >= warmup).collect();
    let n = kept.len() as f64;
    if kept.len() < 3 {
        return None;
    }
    let (mt, mr) = (kept.iter().map(|s| s.0).sum::<f64>() / n, kept.iter().map(|s| s.1).sum::<f64>() / n);
    let cov: f64 = kept.iter().map(|(t, r)| (t - mt) * (r - mr)).sum();
    let var: f64 = kept.iter().map(|(t, _)| (t - mt) * (t - mt)).sum();
    (var > 0.0).then(|| (cov / var * 3600.0, kept.len()))
}

struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // SAFETY: our own child, by its pid.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

fn metrics(port: u16) -> String {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else { return String::new() };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = write!(stream, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut text = String::new();
    let _ = stream.read_to_string(&mut text);
    text
}

/// Sum of every series of `name` (all labels).
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.split([' ', '{']).next() == Some(name))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}

/// The bucket bound under which `q` of a histogram's observations fall, ms.
fn quantile_ms(text: &str, name: &str, q: f64) -> f64 {
    let bucket = format!("{name}_bucket");
    let mut buckets: Vec<(f64, f64)> = text
        .lines()
        .filter(|l| l.starts_with(&bucket))
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?;
            let le = if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? };
            Some((le, l.rsplit(' ').next()?.parse().ok()?))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = buckets.last().map_or(0.0, |b| b.1);
    if total == 0.0 {
        return f64::NAN;
    }
    buckets.iter().find(|(_, n)| *n >= q * total).map_or(f64::NAN, |(le, _)| le * 1000.0)
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// (CPU seconds, RSS MiB, peak RSS MiB) of `pid`.
fn usage(pid: u32) -> (f64, f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let cpu = (ticks(11) + ticks(12)) / hz;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (cpu, kib("VmRSS:") / 1024.0, kib("VmHWM:") / 1024.0)
}

const LABELS: &[(&str, &str)] = &[
    ("autoscale.enable", "true"),
    ("autoscale.policy", "threshold"),
    ("autoscale.min", "1"),
    ("autoscale.max", "1000"),
    ("autoscale.cpu.upper", "0.7"),
    ("autoscale.cpu.lower", "0.05"),
    ("autoscale.cooldown.up", "1s"),
    ("autoscale.cooldown.down", "1h"),
    ("autoscale.warmup", "0s"),
];

fn reading(container: &str, value: f64, crossing: bool) -> ProbeEvent {
    let kind = if crossing {
        EventKind::Crossing(Crossing { threshold: 0.7, direction: Direction::Up })
    } else {
        EventKind::Sample
    };
    ProbeEvent::Reading(Reading {
        container_id: container.to_string(),
        metric: Metric::CPU,
        value,
        unit: Unit::FractionOfLimit,
        kind,
        timestamp_ns: monotonic_ns(),
    })
}

/// The simulated swarm, started: the daemon deciding, every agent holding
/// its tracking set.
struct Started {
    /// Holds the daemon's socket, token and log until the end.
    _dir: tempfile::TempDir,
    engine: FakeEngine,
    daemon: Daemon,
    agents: Vec<Arc<AgentHandle>>,
    metrics_port: u16,
    setup_ms: f64,
}

fn fail(what: String, daemon: &Daemon) -> String {
    format!("{what}\n--- daemon log ---\n{}", daemon.log_tail())
}

/// Start the fake engine, the daemon and the agents; wait until every
/// agent holds its set.
async fn start(run: &Run) -> Result<Started, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let socket = dir.path().join("docker.sock");
    let token_file = dir.path().join("token");
    let secret = b"scale harness token, 32 bytes..";
    std::fs::write(&token_file, secret).map_err(|e| e.to_string())?;
    let channel = free_port();
    let metrics_port = free_port();
    let manager_addr = format!("127.0.0.1:{channel}");
    let labels = LABELS.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let shape = SwarmShape {
        nodes: run.nodes,
        services: run.services,
        replicas: run.replicas,
        labels,
        task_delay: run.task_delay,
        manager_addr: manager_addr.clone(),
    };
    let engine = FakeEngine::start(&socket, shape).await.map_err(|e| format!("fake engine: {e}"))?;
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let log = dir.path().join("host.log");
    let started = Instant::now();
    let child = Command::new(&run.host)
        .current_dir(&repo)
        .env("DOCKER_HOST", format!("unix://{}", socket.display()))
        .env("RUST_LOG", "warn")
        .args(["--cluster", "--probe", "cgroupfs", "--policies", "./policies"])
        // The simulated nodes have no swarm certificates: the shared token.
        .args(["--cluster-auth", "token"])
        .arg("--cluster-token-file")
        .arg(&token_file)
        .args(["--cluster-listen", &manager_addr, "--metrics-addr", &format!("127.0.0.1:{metrics_port}")])
        .arg("--audit-log")
        .arg(dir.path().join("audit.jsonl"))
        .arg("--cache-dir")
        .arg(&run.cache_dir)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log).map_err(|e| e.to_string())?)
        .stderr(std::fs::File::create(dir.path().join("host.err")).map_err(|e| e.to_string())?)
        .spawn()
        .map_err(|e| format!("starting {}: {e}", run.host.display()))?;
    let daemon = Daemon { child, log };

    let settings = ChannelSettings { listen: "127.0.0.1:0".parse().expect("addr"), ..ChannelSettings::default() };
    let token = Token::new(secret).map_err(|_| "token".to_string())?;
    let agents: Vec<Arc<AgentHandle>> = (0..run.nodes)
        .map(|i| {
            let node = format!("node{i}");
            Arc::new(AgentHandle::spawn(
                settings.clone(),
                token.clone(),
                node.clone(),
                node,
                vec![manager_addr.clone()],
            ))
        })
        .collect();
    let expected = run.services * run.replicas;
    let tracked = |agents: &[Arc<AgentHandle>]| -> usize {
        agents.iter().map(|a| a.tracking().borrow().as_ref().map_or(0, |s| s.len())).sum()
    };
    while tracked(&agents) < expected {
        if started.elapsed() > Duration::from_secs(60) {
            return Err(fail(
                format!("agents track {} of {expected} containers after 60 s", tracked(&agents)),
                &daemon,
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let setup_ms = started.elapsed().as_secs_f64() * 1000.0;
    Ok(Started { _dir: dir, engine, daemon, agents, metrics_port, setup_ms })
}

/// Make the run; `Err` says what went wrong, with the daemon's log.
pub async fn run(run: &Run) -> Result<Report, String> {
    let Started { _dir, engine, daemon, agents, metrics_port, setup_ms } = start(run).await?;

    // Load: every node sends one reading a second per container it tracks,
    // spread over the second; crossings for one service at a time.
    let before = metrics(metrics_port);
    let served_before = engine.served();
    let (cpu0, _, _) = usage(daemon.child.id());
    let load_start = Instant::now();
    let sampler = (!run.rss_every.is_zero()).then(|| {
        let (pid, every, duration) = (daemon.child.id(), run.rss_every, run.duration);
        tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut tick = tokio::time::interval(every);
            while load_start.elapsed() < duration {
                tick.tick().await;
                samples.push((load_start.elapsed().as_secs_f64(), usage(pid).1));
            }
            samples
        })
    });
    let hot: Arc<std::sync::Mutex<Option<Vec<String>>>> = Arc::default();
    let mut senders = Vec::new();
    let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
    for (i, agent) in agents.iter().enumerate() {
        let (agent, hot, sent, duration) = (agent.clone(), hot.clone(), sent.clone(), run.duration);
        let offset = Duration::from_secs(1).mul_f64(i as f64 / run.nodes.max(1) as f64);
        senders.push(tokio::spawn(async move {
            tokio::time::sleep(offset).await;
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            while load_start.elapsed() < duration {
                tick.tick().await;
                let set = agent.tracking().borrow().clone().unwrap_or_default();
                let hot = hot.lock().map(|h| h.clone()).unwrap_or_default().unwrap_or_default();
                for t in set.iter() {
                    let high = hot.contains(&t.container_id);
                    agent.forward(reading(&t.container_id, if high { 0.95 } else { 0.3 }, false));
                }
                sent.fetch_add(set.len() as u64, std::sync::atomic::Ordering::Relaxed);
            }
        }));
    }
    let mut latencies = Vec::new();
    let mut crossings = (0, 0);
    let spacing = run.duration.saturating_sub(Duration::from_secs(3)) / run.crossings.max(1) as u32;
    tokio::time::sleep(Duration::from_secs(1)).await;
    for k in 0..run.crossings {
        let name = format!("svc{:04}", (k * 7919) % run.services);
        let (_, containers) = engine.services().get(&name).cloned().unwrap_or_default();
        let writes_before = engine.writes().iter().filter(|w| w.service == name).count();
        let t0 = Instant::now();
        for (container, node) in &containers {
            let Some(i) = node.strip_prefix("node").and_then(|n| n.parse::<usize>().ok()) else { continue };
            agents[i].forward(reading(container, 0.95, true));
            sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        if let Ok(mut h) = hot.lock() {
            *h = Some(containers.iter().map(|(c, _)| c.clone()).collect());
        }
        crossings.0 += 1;
        let deadline = t0 + spacing.max(Duration::from_secs(5));
        loop {
            let written = engine.writes().into_iter().filter(|w| w.service == name).nth(writes_before);
            if let Some(w) = written {
                latencies.push(w.at.duration_since(t0).as_secs_f64() * 1000.0);
                crossings.1 += 1;
                break;
            }
            if Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        if let Ok(mut h) = hot.lock() {
            *h = None;
        }
        let next = t0 + spacing;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            tokio::time::sleep(wait).await;
        }
    }
    for s in senders {
        let _ = s.await;
    }
    let elapsed = load_start.elapsed().as_secs_f64();
    let rss_samples = match sampler {
        Some(s) => s.await.unwrap_or_default(),
        None => Vec::new(),
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (cpu1, rss, hwm) = usage(daemon.child.id());
    let after = metrics(metrics_port);
    if after.is_empty() {
        return Err(fail("no metrics from the daemon".into(), &daemon));
    }
    let served = engine.served();
    latencies.sort_by(f64::total_cmp);
    let stats: Vec<_> = agents.iter().map(|a| a.stats()).collect();
    let one = serde_json::to_vec(&WireEvent::from_probe(&reading(&format!("{:064x}", 1), 0.3, false), monotonic_ns()))
        .map_or(0, |v| v.len() + 1);
    let forwarded: u64 = stats.iter().map(|s| s.forwarded).sum();
    let d = |name: &str| metric(&after, name) - metric(&before, name);
    let events = metric(&after, "autoscaler_cluster_decider_events_total");
    Ok(Report {
        sent: sent.load(std::sync::atomic::Ordering::Relaxed),
        forwarded,
        agent_dropped: stats.iter().map(|s| s.dropped).sum(),
        decider_events: events,
        decider_dropped: metric(&after, "autoscaler_cluster_decider_dropped_events_total"),
        other_dropped: metric(&after, "autoscaler_probe_dropped_events_total")
            + metric(&after, "autoscaler_cluster_decider_unknown_metric_total"),
        events_per_sec: d("autoscaler_cluster_decider_events_total") / elapsed,
        decision_ms: (
            quantile_ms(&after, "autoscaler_kernel_to_decision_seconds", 0.5),
            quantile_ms(&after, "autoscaler_kernel_to_decision_seconds", 0.99),
        ),
        write_ms: (percentile(&latencies, 0.5), percentile(&latencies, 0.99)),
        crossings,
        cpu_cores: (cpu1 - cpu0) / elapsed,
        rss_mib: (rss, hwm),
        channel_bytes_per_sec: (forwarded as f64 * one as f64) / elapsed,
        task_reads: (
            (served.task_lists - served_before.task_lists) as f64 / elapsed,
            (served.tasks - served_before.tasks) as f64 / elapsed,
            (served.task_bytes - served_before.task_bytes) as f64 / 1024.0 / elapsed,
        ),
        setup_ms,
        unknown_requests: served.unknown,
        rss_samples,
        replicas_end: engine.services().values().map(|(_, c)| c.len()).sum(),
    })
}

/// What a flood from one peer did to the daemon.
#[derive(Debug, Clone, Default)]
pub struct Flood {
    /// Readings sent, each with a metric name of its own.
    pub names: usize,
    /// Scale-to-zero reports sent.
    pub reports: usize,
    /// The daemon's RSS before and after, MiB.
    pub rss_mib: (f64, f64),
    /// `/metrics` size before and after, bytes.
    pub metrics_bytes: (usize, usize),
    /// `autoscaler_cluster_decider_unknown_metric_total` after.
    pub unknown_metric: f64,
    /// Series (lines that are not comments) in `/metrics` before and after.
    pub series: (usize, usize),
}

/// Start the swarm of `run` (no load), then have one node's agent send
/// `names` readings, each with a distinct metric name the daemon's table
/// does not know, for a container it tracks, and `reports` scale-to-zero
/// reports; measure the daemon's RSS and `/metrics` before and after.
pub async fn flood(run: &Run, names: usize, reports: usize) -> Result<Flood, String> {
    let Started { _dir, engine: _engine, daemon, agents, metrics_port, .. } = start(run).await?;
    let agent = agents.first().ok_or("no agent")?.clone();
    let container = agent.tracking().borrow().as_ref().and_then(|s| s.first().map(|t| t.container_id.clone()));
    let container = container.ok_or("the first node tracks nothing")?;
    let series = |text: &str| text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()).count();
    // Settle first: the daemon's first look at every service is done.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = metrics(metrics_port);
    let (_, rss_before, _) = usage(daemon.child.id());
    for i in 0..names {
        let mut event = reading(&container, 0.3, false);
        if let ProbeEvent::Reading(r) = &mut event {
            r.metric = Metric::named(&format!("flood-{i:06}"));
        }
        agent.forward(event);
        // The agent's queue is bounded: let its session keep up.
        if i % 1024 == 1023 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    for i in 0..reports {
        agent.report(host::cluster::ZeroReport::Busy { container_id: format!("{i:064x}") });
        if i % 512 == 511 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    // Every reading written to the channel (whatever the daemon makes of
    // them), then time for the daemon to take them all.
    let deadline = Instant::now() + Duration::from_secs(60);
    while agent.stats().forwarded < names as u64 {
        if Instant::now() > deadline {
            return Err(fail(format!("the agent forwarded {} of {names} in 60 s", agent.stats().forwarded), &daemon));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = metrics(metrics_port);
    let (_, rss_after, _) = usage(daemon.child.id());
    if agent.stats().dropped > 0 {
        return Err(format!("the agent dropped {} readings: not all were sent", agent.stats().dropped));
    }
    Ok(Flood {
        names,
        reports,
        rss_mib: (rss_before, rss_after),
        metrics_bytes: (before.len(), after.len()),
        unknown_metric: metric(&after, "autoscaler_cluster_decider_unknown_metric_total"),
        series: (series(&before), series(&after)),
    })
}
