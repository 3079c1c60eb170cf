//! Chaos on the 3-node test swarm of tests/cluster/up.sh (node1 and node2
//! managers, node3 a worker), with the whole daemon on every node as in
//! tests/cluster_swarm.rs:
//!
//! - node3 cut off from both managers by a firewall rule in its network
//!   namespace, then healed;
//! - the deciding daemon SIGKILLed in the middle of a scale-out, then
//!   started again on the same audit file;
//! - node3's dockerd restarted while its replica is frozen (scale to zero);
//! - the deciding daemon's audit log on a full file system.
//!
//! Each checks: no replica count outside the service's bounds (watched the
//! whole time), no decision applied twice (the applied records chain, each
//! `from` the previous `to`, and end at the spec's replicas), no frozen
//! replica left frozen under load, nothing lost from the audit without a
//! count, and one line for what happened.
//!
//! Root and a running test cluster are needed; tests/run.sh starts it and
//! runs these with `--ignored`. They leave no service, rule or mount behind.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::cluster::{Cluster, applied, connected, token_file};
use common::{Daemon, Load, Service, http_get, wait_until};
use serde_json::Value;

/// A threshold service on node3 (host network, `port`), one replica.
fn on_node3(cluster: &Cluster, name: &str, port: u16, labels: &[(&str, &str)], extra: &[&str]) -> Service {
    let mut args = vec!["--constraint", "node.hostname==node3"];
    args.extend_from_slice(extra);
    Service::spec(name).on(cluster).port(port).replicas(1).args(&args).labels(labels).create()
}

fn threshold<'a>(min: &'a str, max: &'a str, cooldown_down: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("autoscale.enable", "true"),
        ("autoscale.policy", "threshold"),
        ("autoscale.min", min),
        ("autoscale.max", max),
        ("autoscale.cpu.upper", "0.6"),
        ("autoscale.cpu.lower", "0.15"),
        ("autoscale.cooldown.up", "1s"),
        ("autoscale.cooldown.down", cooldown_down),
        ("autoscale.warmup", "2s"),
    ]
}

/// The spec's replica count, watched every 200 ms on a thread of its own:
/// the lowest and highest seen, and how many times its version changed
/// (every write to the spec changes it; writes come at least a cooldown,
/// 1 s, apart, so none is missed).
struct Bounds {
    stop: Arc<AtomicBool>,
    low: Arc<AtomicU32>,
    high: Arc<AtomicU32>,
    writes: Arc<AtomicU32>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Bounds {
    fn watch(cluster: &Cluster, service: &str) -> Bounds {
        let (stop, low, high) =
            (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU32::new(u32::MAX)), Arc::new(AtomicU32::new(0)));
        let writes = Arc::new(AtomicU32::new(0));
        let (s, l, h, w) = (stop.clone(), low.clone(), high.clone(), writes.clone());
        let host = cluster.docker_host(1).to_string();
        let service = service.to_string();
        let thread = std::thread::spawn(move || {
            let mut version: Option<String> = None;
            while !s.load(Ordering::Relaxed) {
                let format = "{{.Spec.Mode.Replicated.Replicas}} {{.Version.Index}}";
                let out = Command::new("docker")
                    .args(["service", "inspect", &service, "--format", format])
                    .env("DOCKER_HOST", &host)
                    .output()
                    .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
                    .unwrap_or_default();
                if let Some((n, v)) = out.split_once(' ')
                    && let Ok(n) = n.parse::<u32>()
                {
                    l.fetch_min(n, Ordering::Relaxed);
                    h.fetch_max(n, Ordering::Relaxed);
                    if version.as_deref().is_some_and(|old| old != v) {
                        w.fetch_add(1, Ordering::Relaxed);
                    }
                    version = Some(v.to_string());
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        Bounds { stop, low, high, writes, thread: Some(thread) }
    }

    /// Stop watching; panics if a count outside `min..=max` was seen. The
    /// spec writes seen.
    fn check(mut self, min: u32, max: u32) -> u32 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let (low, high) = (self.low.load(Ordering::Relaxed), self.high.load(Ordering::Relaxed));
        assert!(low >= min && high <= max, "replicas went to {low}..={high}, outside {min}..={max}");
        self.writes.load(Ordering::Relaxed)
    }
}

/// Each applied record's `from` is the previous one's `to` (none applied
/// twice, none missing), and the last `to` is the spec's replicas.
fn chained(all: &[Value], replicas: u32) {
    for pair in all.windows(2) {
        assert_eq!(pair[1]["from"], pair[0]["to"], "a decision applied twice or lost: {all:?}");
    }
    assert_eq!(all.last().and_then(|r| r["to"].as_u64()), Some(u64::from(replicas)), "{all:?}");
}

/// Wait (up to 5 s) until the last applied record's `to` is the spec's
/// replicas: a write and its record are two reads apart.
fn settled(read: impl Fn() -> Vec<Value>, web: &Service) -> Vec<Value> {
    let start = Instant::now();
    loop {
        let all = read();
        let last = all.last().and_then(|r| r["to"].as_u64());
        if last.is_none() || last == Some(u64::from(web.replicas())) || start.elapsed() > Duration::from_secs(5) {
            return all;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The applied records of `service` in `daemons`' audits, by time.
fn applied_in(daemons: &[&Daemon], service: &str) -> Vec<Value> {
    let refs: Vec<(u32, &Daemon)> = daemons.iter().enumerate().map(|(i, d)| (i as u32 + 1, *d)).collect();
    applied(&refs, service).into_iter().map(|(_, r)| r).collect()
}

/// A firewall rule pair in node `k`'s network namespace dropping all
/// traffic to and from `peers`; removed on drop.
struct Cut {
    k: u32,
    peers: Vec<String>,
}

impl Cut {
    fn new(k: u32, peers: &[&str]) -> Cut {
        let cut = Cut { k, peers: peers.iter().map(|p| p.to_string()).collect() };
        for peer in &cut.peers {
            cut.iptables(&["-I", "INPUT", "-s", peer, "-j", "DROP"]);
            cut.iptables(&["-I", "OUTPUT", "-d", peer, "-j", "DROP"]);
        }
        cut
    }

    fn iptables(&self, args: &[&str]) -> bool {
        Command::new("nsenter")
            .arg(format!("--net=/var/run/netns/sacl-n{}", self.k))
            .arg("iptables")
            .args(args)
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for Cut {
    fn drop(&mut self) {
        for peer in &self.peers {
            self.iptables(&["-D", "INPUT", "-s", peer, "-j", "DROP"]);
            self.iptables(&["-D", "OUTPUT", "-d", peer, "-j", "DROP"]);
        }
    }
}

/// node3 cut off from both managers for 8 s: longer than its agent's
/// session silence (3 heartbeats, 3 s), the decider's node timeout (5 s)
/// and one connection attempt to each manager (3 s), so every timeout on
/// both sides fires; shorter than Swarm's own node-down grace (3 x its 5 s
/// heartbeat), so Swarm keeps the replica where it is and the test watches
/// the autoscaler, not a rescheduling.
#[test]
#[ignore = "needs the 3-node test swarm: tests/cluster/up.sh; tests/run.sh runs them with --ignored"]
fn a_worker_cut_off_from_the_managers_comes_back_and_nothing_is_applied_twice() {
    let Some((_serial, cluster)) = Cluster::take_for_daemons() else { return };
    let work = tempfile::tempdir().expect("tempdir");
    let token = token_file(work.path());
    let mut nodes = cluster.start_all(&token, &[]);
    let web = on_node3(&cluster, "chaos-partition", 18301, &threshold("1", "3", "120s"), &[]);
    wait_until("the replica to run on node3", Duration::from_secs(60), || web.running_on() == ["node3"]);
    let leader = nodes.iter().position(Daemon::deciding).expect("a deciding manager");
    nodes[leader].wait_autoscaled(&web.name);
    std::thread::sleep(Duration::from_secs(3)); // tracked and past the warm-up
    let bounds = Bounds::watch(&cluster, &web.name);

    let cut_at = Instant::now();
    let cut = Cut::new(3, &[cluster.addr(1), cluster.addr(2)]);
    wait_until("node3 to say no decider is reachable", Duration::from_secs(15), || {
        nodes[2].count("no autoscaler decider reachable") > 0
    });
    wait_until("the decider to say node3 went silent", Duration::from_secs(15), || {
        nodes[leader].count("cluster: node silent for") > 0
    });
    let remaining = Duration::from_secs(8).saturating_sub(cut_at.elapsed());
    std::thread::sleep(remaining);
    drop(cut);
    let healed = Instant::now();
    nodes[2].wait_status("node3's agent to reach the decider again", Duration::from_secs(30), connected);
    eprintln!("chaos: node3 cut off for 8 s; its agent back {:.1} s after the heal", healed.elapsed().as_secs_f64());
    wait_until("node3 to say the decider is back", Duration::from_secs(10), || {
        nodes[2].count("decider reachable again") > 0
    });

    // It decides on node3's readings again: a scale-out under load.
    let load = Load::on(cluster.addr(3), web.port, 4, 50, 0);
    wait_until("a scale-out after the heal", Duration::from_secs(60), || web.replicas() >= 2);
    assert!(load.stop() > 0, "the load got no answers");
    let writes = bounds.check(1, 3);

    let refs: Vec<&Daemon> = nodes.iter().collect();
    let all = settled(|| applied_in(&refs, &web.name), &web);
    chained(&all, web.replicas());
    assert!(writes as usize <= all.len(), "{writes} spec writes for {} applied decisions", all.len());
    // The outage is measured from the session's loss, not from the line.
    let back =
        nodes[2].log().lines().find(|l| l.contains("decider reachable again after")).unwrap_or_default().to_string();
    let secs: f64 = back
        .split("reachable again after ")
        .nth(1)
        .and_then(|t| t.split('s').next())
        .and_then(|t| t.parse().ok())
        .unwrap_or(0.0);
    assert!(secs >= 5.0, "an 8 s cut reported as a {secs} s outage: {back}");
    // One line each: the worker's outage and its end, the decider's loss.
    for (d, line) in [
        (&nodes[2], "no autoscaler decider reachable"),
        (&nodes[2], "decider reachable again"),
        (&nodes[leader], "cluster: node silent for"),
    ] {
        assert_eq!(d.count(line), 1, "one line `{line}` from {}:\n{}", d.name, d.log());
    }
    for line in nodes[2].log().lines().chain(nodes[leader].log().lines()) {
        if line.contains("decider reachable") || line.contains("node silent") {
            eprintln!("chaos: {line}");
        }
    }
}

/// The deciding daemon SIGKILLed as its first scale-out lands, and started
/// again on the same node with the same audit file: the load goes on, the
/// restarted daemon takes over from the spec it finds, and the audit trail
/// across both lives chains with nothing applied twice.
#[test]
#[ignore = "needs the 3-node test swarm: tests/cluster/up.sh; tests/run.sh runs them with --ignored"]
fn the_deciding_daemon_killed_in_a_scale_out_restarts_and_nothing_is_applied_twice() {
    let Some((_serial, cluster)) = Cluster::take_for_daemons() else { return };
    let work = tempfile::tempdir().expect("tempdir");
    let token = token_file(work.path());
    let mut nodes = cluster.start_all(&token, &[]);
    let web = on_node3(&cluster, "chaos-kill", 18311, &threshold("1", "4", "120s"), &[]);
    wait_until("the replica to run on node3", Duration::from_secs(60), || web.running_on() == ["node3"]);
    let leader = nodes.iter().position(Daemon::deciding).expect("a deciding manager");
    let leader_k = leader as u32 + 1;
    nodes[leader].wait_autoscaled(&web.name);
    std::thread::sleep(Duration::from_secs(3));
    let bounds = Bounds::watch(&cluster, &web.name);

    let load = Load::on(cluster.addr(3), web.port, 4, 50, 0);
    wait_until("the first scale-out", Duration::from_secs(60), || web.replicas() >= 2);
    nodes[leader].signal(libc::SIGKILL);
    let at_kill = web.replicas();
    let audit = nodes[leader].audit_path.clone();
    let mut restarted = cluster.spawn_daemon_with(leader_k, &token, &[], Daemon::builder().audit_log(&audit));
    restarted.wait_ready(Duration::from_secs(60));
    let took = restarted
        .wait_status("the restarted daemon to decide", Duration::from_secs(30), |s| s["cluster"]["deciding"] == true);
    eprintln!("chaos: node{leader_k}'s daemon killed at {at_kill} replicas; restarted, deciding {took:?} after ready");
    wait_until("a scale-out by the restarted daemon", Duration::from_secs(60), || web.replicas() > at_kill);
    assert!(load.stop() > 0, "the load got no answers");
    let writes = bounds.check(1, 4);

    // Both lives wrote to the same file: one chain across the kill, and
    // no more writes to the spec than applied records.
    let other = &nodes[1 - leader];
    let all = settled(|| applied_in(&[&restarted, other], &web.name), &web);
    chained(&all, web.replicas());
    assert!(writes as usize <= all.len(), "{writes} spec writes for {} applied decisions: {all:?}", all.len());
    eprintln!("chaos: {} decisions applied across the kill, {writes} spec writes seen", all.len());
    // The worker saw its session end and found the restarted decider.
    nodes[2].wait_status("node3's agent back with a decider", Duration::from_secs(20), connected);
    let ended = nodes[2].count("session with the decider ended");
    assert_eq!(ended, 1, "node3 says once its session ended:\n{}", nodes[2].log());
    assert!(nodes[2].count("no autoscaler decider reachable") <= 1, "{}", nodes[2].log());
}

/// node3's dockerd restarted (SIGTERM, started again by up.sh) while its
/// replica of a `min=0` service is frozen: the engine's restart ends the
/// paused container and Swarm starts a new one; under load it answers and
/// is never left paused, the spec stays within its bounds, and the decider
/// says once (and audits) that the frozen replica is gone.
#[test]
#[ignore = "needs the 3-node test swarm: tests/cluster/up.sh; tests/run.sh runs them with --ignored"]
fn a_frozen_replica_whose_engine_restarts_answers_under_load() {
    let Some((_serial, cluster)) = Cluster::take_for_daemons() else { return };
    let work = tempfile::tempdir().expect("tempdir");
    let token = token_file(work.path());
    let nodes = cluster.start_all(&token, &[]);
    // No scale-in while the test looks: the spec moves only up.
    let mut labels = threshold("0", "2", "120s");
    labels.push(("autoscale.idle", "3s"));
    let web = on_node3(&cluster, "chaos-engine", 18321, &labels, &["--no-healthcheck"]);
    wait_until("the replica to run on node3", Duration::from_secs(60), || web.running_on() == ["node3"]);
    let filter = format!("label=com.docker.swarm.service.name={}", web.name);
    let paused = || {
        let ids = cluster.docker_on(3, &["ps", "-q", "--no-trunc", "--filter", &filter]).unwrap_or_default();
        ids.lines().any(|id| {
            cluster.docker_on(3, &["inspect", "--format", "{{.State.Paused}}", id]).as_deref() == Some("true")
        })
    };
    wait_until("the idle replica on node3 to be frozen", Duration::from_secs(40), paused);
    let bounds = Bounds::watch(&cluster, &web.name);

    // Restart node3's engine: SIGTERM by its pidfile, then up.sh starts it.
    let pidfile = std::path::Path::new("/var/lib/swarm-autoscaler-cluster/n3/run/docker.pid");
    let pid: i32 = std::fs::read_to_string(pidfile).expect("node3's pidfile").trim().parse().expect("pid");
    let restarted = Instant::now();
    // SAFETY: signalling node3's dockerd, which up.sh started for these tests.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    wait_until("node3's dockerd to end", Duration::from_secs(30), || {
        // SAFETY: probing the pid only.
        unsafe { libc::kill(pid, 0) != 0 }
    });
    let up = Command::new(common::repo().join("tests/cluster/up.sh")).arg("3").output().expect("up.sh");
    assert!(up.status.success(), "up.sh: {}", String::from_utf8_lossy(&up.stderr));
    wait_until("the replica to run on node3 again", Duration::from_secs(60), || web.running_on() == ["node3"]);
    eprintln!("chaos: node3's engine restarted, replica running {:.1} s later", restarted.elapsed().as_secs_f64());

    // Under load it answers, and nothing of it stays paused meanwhile.
    let node3 = cluster.addr(3).to_string();
    let body = http_get(&node3, web.port, "/", Duration::from_secs(15)).map(|(_, b)| b);
    assert!(body.as_deref().is_some_and(|b| b.starts_with("ok")), "the replica answers: {body:?}");
    let load = Load::on(&node3, web.port, 2, 20, 0);
    let watched = Instant::now();
    while watched.elapsed() < Duration::from_secs(6) {
        assert!(!paused(), "a replica frozen under load after its engine restarted");
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(load.stop() > 0, "the load got no answers");
    let writes = bounds.check(0, 2);
    let refs: Vec<&Daemon> = nodes.iter().collect();
    let all = settled(|| applied_in(&refs, &web.name), &web);
    if !all.is_empty() {
        chained(&all, web.replicas());
    }
    assert!(writes as usize <= all.len(), "{writes} spec writes for {} applied decisions", all.len());
    // The decider says once that the frozen replica went with its engine,
    // and audits it: no thaw will ever be recorded for it.
    let leader = nodes.iter().position(Daemon::deciding).expect("a deciding manager");
    let gone = nodes[leader].zero_records(&web.name, "gone");
    assert_eq!(gone.len(), 1, "one gone record: {:?}", nodes[leader].audit());
    assert_eq!(nodes[leader].count("is gone: its container ended while frozen"), 1, "{}", nodes[leader].log());
    eprintln!(
        "chaos: {}",
        nodes[leader].log().lines().find(|l| l.contains("is gone: its container ended")).unwrap_or_default()
    );
}

/// The deciding daemon's audit log on a 64 KiB tmpfs, filled: decisions go
/// on, every record lost is counted (`/metrics`, `host status`) and said in
/// one line; freed, one line says so and a `lost` record marks the gap.
#[test]
#[ignore = "needs the 3-node test swarm: tests/cluster/up.sh; tests/run.sh runs them with --ignored"]
fn the_audit_log_on_a_full_disk_loses_nothing_silently() {
    let Some((_serial, cluster)) = Cluster::take_for_daemons() else { return };
    let work = tempfile::tempdir().expect("tempdir");
    let token = token_file(work.path());
    let disk = Tmpfs::mount(&work.path().join("audit"));
    // Both managers log to the small file system: whichever decides.
    let mut nodes: Vec<Daemon> = (1..=2)
        .map(|k| {
            let audit = disk.path.join(format!("node{k}.jsonl"));
            cluster.spawn_daemon_with(k, &token, &[], Daemon::builder().audit_log(&audit))
        })
        .collect();
    for d in &mut nodes {
        d.wait_ready(Duration::from_secs(90));
    }
    nodes.push(cluster.spawn_daemon(3, &token, &[]));
    for d in &mut nodes {
        d.wait_ready(Duration::from_secs(90));
        d.wait_status("its agent to connect", Duration::from_secs(90), connected);
    }
    let web = on_node3(&cluster, "chaos-audit", 18331, &threshold("1", "3", "3s"), &[]);
    wait_until("the replica to run on node3", Duration::from_secs(60), || web.running_on() == ["node3"]);
    let leader = nodes.iter().position(Daemon::deciding).expect("a deciding manager");
    nodes[leader].wait_autoscaled(&web.name);
    std::thread::sleep(Duration::from_secs(3));
    let bounds = Bounds::watch(&cluster, &web.name);

    disk.fill();
    let load = Load::on(cluster.addr(3), web.port, 4, 50, 0);
    wait_until("a scale-out to 3 on the full disk", Duration::from_secs(60), || web.replicas() >= 3);
    assert!(load.stop() > 0, "the load got no answers");
    let lost = nodes[leader].metric("autoscaler_audit_records_lost_total").unwrap_or(0.0);
    assert!(lost >= 2.0, "both scale-outs counted lost: {lost}");
    let (_, status) = nodes[leader].host_status(None);
    assert!(status.contains("record(s) lost (failing now: No space left on device"), "{status}");
    assert_eq!(nodes[leader].count("cannot be written"), 1, "one line for the full disk:\n{}", nodes[leader].log());

    // Freed: the scale-in back to 1 is written after a record of the gap.
    disk.free();
    wait_until("a scale-in once idle", Duration::from_secs(60), || web.replicas() == 1);
    wait_until("the gap marked in the file", Duration::from_secs(10), || {
        nodes[leader].audit().iter().any(|r| r["audit"] == "lost")
    });
    let _ = bounds.check(1, 3);
    let records = nodes[leader].audit();
    let gap = records.iter().find(|r| r["audit"] == "lost").expect("a lost record");
    let lost = nodes[leader].metric("autoscaler_audit_records_lost_total").unwrap_or(0.0);
    assert_eq!(gap["records"].as_f64(), Some(lost), "the gap counts every lost record: {gap}");
    assert_eq!(nodes[leader].count("writable again"), 1, "one line for the recovery:\n{}", nodes[leader].log());
    let line = nodes[leader].log().lines().find(|l| l.contains("cannot be written")).unwrap_or_default().to_string();
    eprintln!("chaos: {line}");
    eprintln!("chaos: {}", nodes[leader].log().lines().find(|l| l.contains("writable again")).unwrap_or_default());
    // What was written still chains up to the gap and after it.
    let after: Vec<Value> = records
        .iter()
        .skip_while(|r| r["audit"] != "lost")
        .filter(|r| r["service"] == web.name.as_str() && r["outcome"] == "applied")
        .cloned()
        .collect();
    chained(&after, web.replicas());
}

/// A tmpfs of 64 KiB mounted for the test (unmounted on drop), and a filler
/// file that takes all of its space.
struct Tmpfs {
    path: std::path::PathBuf,
}

impl Tmpfs {
    fn mount(path: &std::path::Path) -> Tmpfs {
        std::fs::create_dir_all(path).expect("mount point");
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64k,mode=0700", "chaos-audit"])
            .arg(path)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "mount a tmpfs on {}", path.display());
        Tmpfs { path: path.to_path_buf() }
    }

    fn fill(&self) {
        use std::io::Write as _;
        let mut filler = std::fs::File::create(self.path.join("filler")).expect("filler");
        let block = [0u8; 4096];
        while filler.write_all(&block).is_ok() {}
        let _ = filler.flush();
    }

    fn free(&self) {
        std::fs::remove_file(self.path.join("filler")).expect("remove the filler");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.path).status();
    }
}
