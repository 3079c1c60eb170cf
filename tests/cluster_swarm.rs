//! The cluster module against a real multi-node Swarm: the test cluster of
//! tests/cluster/up.sh (three engines in network namespaces of their own,
//! node1 and node2 managers, node3 a worker).
//!
//! These tests check what the channel learns from Swarm, on real engines:
//! a node's identity and the managers its engine lists (a worker too),
//! which manager is the Raft leader and how that changes on `docker node
//! demote`, and the decider lease moving from a manager whose daemon
//! stopped to another within the expiry, with no moment where two hold it.
//! Then the whole daemon on every node: a service on the worker scaled out
//! and in, a service judged by its aggregate over two nodes, and decisions
//! moving to another manager when the deciding daemon dies (lease) and when
//! the Raft leader's engine is demoted (raft), each transition applied once;
//! a daemon whose node changed role ends so that it restarts in the new one.
//!
//! Two managers are enough for the demotion: Swarm first hands Raft
//! leadership to the other manager, then removes the demoted one from a
//! Raft group of two (the remaining one is a quorum of one).
//!
//! Root and a running test cluster are needed (`tests/cluster/up.sh 3`), so
//! a plain `cargo test` leaves them out (ignored, with the reason);
//! tests/run.sh starts the cluster and runs them with `--ignored`. Run so
//! without a cluster, each test says loudly why it skips. They change the cluster's
//! leadership and services, so they run one at a time, and they leave two
//! managers and a worker and no service behind (either manager may lead).

mod common;

use std::time::{Duration, Instant};

use bollard::Docker;
use common::cluster::{Cluster, applied, connected, token_file};
use common::{Daemon, Load, Service, http_get, unix_ms, wait_until};
use host::cluster::docker::{EngineManagers, identity, leadership};
use host::cluster::lease::{HOLDER, LeaseTiming, watch_lease};
use host::cluster::{DEFAULT_PORT, ManagerSource};

async fn engine(cluster: &Cluster, k: u32) -> Docker {
    Docker::connect_with_host(cluster.docker_host(k))
        .expect("client")
        .negotiate_version()
        .await
        .expect("engine answers")
}

async fn wait_for(within: Duration, what: &str, mut check: impl AsyncFnMut() -> bool) -> Duration {
    let start = Instant::now();
    loop {
        if check().await {
            return start.elapsed();
        }
        assert!(start.elapsed() < within, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
#[ignore = "needs the 3-node test swarm: tests/cluster/up.sh; tests/run.sh runs them with --ignored"]
async fn every_node_knows_itself_and_finds_the_managers() {
    let Some((_serial, cluster)) = Cluster::take_async().await else { return };
    let mut ids = Vec::new();
    for k in 1..=3 {
        let docker = engine(&cluster, k).await;
        let me = identity(&docker).await.expect("identity");
        assert_eq!(me.hostname, cluster.var(k, "HOSTNAME"));
        assert_eq!(me.is_manager, k <= 2, "node{k}");
        ids.push(me.node_id);
        // A worker cannot list nodes, but its engine lists the managers.
        let mut managers = EngineManagers { docker, port: DEFAULT_PORT }.managers().await;
        managers.sort();
        let want = vec![format!("{}:{DEFAULT_PORT}", cluster.addr(1)), format!("{}:{DEFAULT_PORT}", cluster.addr(2))];
        assert_eq!(managers, want, "managers seen from node{k}");
    }
    ids.dedup();
    assert_eq!(ids.len(), 3, "three distinct node ids");
}

/// Promotes a demoted manager again when dropped, even after a failed
/// assertion: the cluster must stay `up.sh 3` for the next test.
struct Promote<'a> {
    cluster: &'a Cluster,
    node_id: String,
    /// Which NODEk it is: the guard waits until its engine is a manager.
    k: usize,
}

impl Drop for Promote<'_> {
    fn drop(&mut self) {
        // Promoting before the demotion has finished leaves a worker behind:
        // wait until the node's engine no longer acts as a manager.
        let host = self.cluster.docker_host(self.k as u32);
        for _ in 0..600 {
            let out = std::process::Command::new("docker")
                .args(["info", "--format", "{{.Swarm.ControlAvailable}}"])
                .env("DOCKER_HOST", host)
                .output();
            if out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "false") {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        for k in 1..=2 {
            let ok = std::process::Command::new("docker")
                .args(["node", "promote", &self.node_id])
                .env("DOCKER_HOST", self.cluster.docker_host(k))
                .output()
                .is_ok_and(|o| o.status.success());
            if ok {
                // Swarm's role manager first finishes the demotion, then
                // promotes (here a round trip took up to ~30 s): wait until
                // the node is a reachable manager again.
                let host = self.cluster.docker_host(self.k as u32);
                let manager = self.cluster.docker_host(k);
                let query = |host: &str, args: &[&str]| {
                    std::process::Command::new("docker")
                        .args(args)
                        .env("DOCKER_HOST", host)
                        .output()
                        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
                        .unwrap_or_default()
                };
                let format = "{{if .ManagerStatus}}{{.ManagerStatus.Reachability}}{{end}}";
                for _ in 0..1200 {
                    let reachable =
                        query(manager, &["node", "inspect", &self.node_id, "--format", format]) == "reachable";
                    if reachable && query(host, &["info", "--format", "{{.Swarm.ControlAvailable}}"]) == "true" {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                eprintln!("node{} promoted but not a reachable manager after 120 s", self.k);
                return;
            }
        }
        eprintln!("could not promote {} again: run tests/cluster/down.sh and up.sh 3", self.node_id);
    }
}

#[tokio::test]
#[ignore = "needs the 3-node test swarm: tests/cluster/up.sh; tests/run.sh runs them with --ignored"]
async fn leadership_follows_a_demotion_of_the_leader() {
    let Some((_serial, cluster)) = Cluster::take_async().await else { return };
    let engines = [engine(&cluster, 1).await, engine(&cluster, 2).await];
    let n3 = engine(&cluster, 3).await;
    let mut views = Vec::new();
    for docker in &engines {
        views.push(leadership(docker, DEFAULT_PORT).await.expect("a manager's view"));
    }
    let leaders: Vec<usize> = (0..2).filter(|&i| views[i].is_leader).collect();
    assert_eq!(leaders.len(), 1, "exactly one of the two managers leads: {views:?}");
    let (l, o) = (leaders[0], 1 - leaders[0]);
    let leader_addr = format!("{}:{DEFAULT_PORT}", cluster.addr(l as u32 + 1));
    assert_eq!(views[o].leader_addr.as_deref(), Some(leader_addr.as_str()), "the standby knows where the leader is");
    assert!(!leadership(&n3, DEFAULT_PORT).await.expect("node3").is_leader, "a worker never leads");

    // Demote the leader: the other manager takes over once Swarm has moved
    // Raft leadership, which its role manager does with some delay.
    let leader_id = identity(&engines[l]).await.expect("identity").node_id;
    let demoted = Instant::now();
    cluster.cli(o as u32 + 1, &["node", "demote", &leader_id]);
    let _promote = Promote { cluster: &cluster, node_id: leader_id, k: l + 1 };
    let standby = &engines[o];
    wait_for(Duration::from_secs(120), "the standby leads", async || {
        leadership(standby, DEFAULT_PORT).await.is_ok_and(|l| l.is_leader)
    })
    .await;
    eprintln!(
        "raft leadership moved to node{} {:.1}s after `docker node demote` of node{}",
        o + 1,
        demoted.elapsed().as_secs_f64(),
        l + 1
    );
    // Mid-demotion the engine may refuse manager calls: that reads as "not
    // the leader" too (watch_leadership treats an error so).
    let old = leadership(&engines[l], DEFAULT_PORT).await;
    assert!(old.as_ref().map_or(true, |l| !l.is_leader), "a demoted leader stops leading: {old:?}");
}

#[tokio::test]
#[ignore = "needs the 3-node test swarm: tests/cluster/up.sh; tests/run.sh runs them with --ignored"]
async fn the_lease_moves_when_its_holder_stops_and_is_never_held_twice() {
    let Some((_serial, cluster)) = Cluster::take_async().await else { return };
    let (n1, n2) = (engine(&cluster, 1).await, engine(&cluster, 2).await);
    let (id1, id2) = (identity(&n1).await.expect("id").node_id, identity(&n2).await.expect("id").node_id);
    let service = "cluster-lease-test";
    let _ = std::process::Command::new("docker")
        .args(["service", "rm", service])
        .env("DOCKER_HOST", cluster.docker_host(1))
        .output();
    // A service that runs nothing: only its labels matter.
    cluster.cli(
        1,
        &[
            "service",
            "create",
            "--detach",
            "--quiet",
            "--name",
            service,
            "--replicas",
            "0",
            "swarm-autoscaler-demo:local",
        ],
    );

    let timing = LeaseTiming { renew: Duration::from_millis(500), expire: Duration::from_millis(1500) };
    let first = watch_lease(n1.clone(), service.into(), id1.clone(), DEFAULT_PORT, timing);
    wait_for(Duration::from_secs(10), "node1 takes the free lease", async || first.borrow().is_leader).await;
    let second = watch_lease(n2.clone(), service.into(), id2.clone(), DEFAULT_PORT, timing);
    // node2 waits while node1 renews, and knows where the holder listens.
    let mut both = 0;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        both += usize::from(first.borrow().is_leader && second.borrow().is_leader);
    }
    assert_eq!(both, 0, "never two holders");
    assert!(first.borrow().is_leader && !second.borrow().is_leader);
    let holder_addr = format!("{}:{DEFAULT_PORT}", cluster.addr(1));
    assert_eq!(second.borrow().leader_addr.as_deref(), Some(holder_addr.as_str()));

    // node1's daemon stops (its watcher ends with its receiver).
    let stopped = Instant::now();
    drop(first);
    wait_for(Duration::from_secs(10), "node2 takes over", async || second.borrow().is_leader).await;
    let took = stopped.elapsed();
    eprintln!("decider lease moved to node2 {:.2}s after node1's daemon stopped (expiry 1.5 s)", took.as_secs_f64());
    assert!(took >= timing.expire - timing.renew, "not before the expiry: {took:?}");
    let labels = cluster.cli(1, &["service", "inspect", service, "--format", "{{json .Spec.Labels}}"]);
    assert!(labels.contains(&format!(r#""{HOLDER}":"{id2}""#)), "{labels}");
    drop(second);
    cluster.cli(1, &["service", "rm", service]);
}

// ---------------------------------------------------------------------------
// The whole daemon on every node (`host --cluster`), against the same
// cluster: each node's daemon runs in that node's network namespace against
// that node's engine, with the eBPF probe and the shipped policies, as the
// global service of deploy/stack.yml would run it. Load comes from this
// process over the bridge to the node's address (10.77.0.K+1), where the
// demo's host-network replicas listen.
// ---------------------------------------------------------------------------

/// A demo service `name` on the test cluster on `port` (host network),
/// `replicas` tasks where `placement` allows, with `labels`.
fn service(
    cluster: &Cluster,
    name: &str,
    port: u16,
    replicas: u32,
    placement: &[&str],
    labels: &[(&str, &str)],
) -> Service {
    Service::spec(name).on(cluster).port(port).replicas(replicas).args(placement).labels(labels).create()
}

/// The daemons with their node numbers (`nodes[i]` runs on node `i + 1`).
fn numbered(nodes: &[Daemon]) -> Vec<(u32, &Daemon)> {
    nodes.iter().enumerate().map(|(i, d)| (i as u32 + 1, d)).collect()
}

/// Labels of a threshold service.
fn labels<'a>(max: &'a str, upper: &'a str, cooldown_up: &'a str, cooldown_down: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("autoscale.enable", "true"),
        ("autoscale.policy", "threshold"),
        ("autoscale.min", "1"),
        ("autoscale.max", max),
        ("autoscale.cpu.upper", upper),
        ("autoscale.cpu.lower", "0.15"),
        ("autoscale.cooldown.up", cooldown_up),
        ("autoscale.cooldown.down", cooldown_down),
        ("autoscale.warmup", "2s"),
    ]
}

/// How many replicas the service's last decision counted in its cpu
/// aggregate, from its `/status/NAME` entry.
fn cpu_reporting(service: &serde_json::Value) -> Option<u64> {
    let metrics = service["metrics"].as_array()?;
    metrics.iter().find(|m| m["metric"] == "cpu").and_then(|m| m["reporting"].as_u64())
}

/// Whether a `/status` says its daemon decides.
fn deciding(status: &serde_json::Value) -> bool {
    status["cluster"]["deciding"] == true
}

#[test]
#[ignore = "needs the 3-node test swarm: tests/cluster/up.sh; tests/run.sh runs them with --ignored"]
fn a_service_on_the_worker_scales_out_when_loaded_and_back_in_when_idle() {
    let Some((_serial, cluster)) = Cluster::take_for_daemons() else { return };
    let work = tempfile::tempdir().expect("tempdir");
    let token = token_file(work.path());
    let mut nodes = cluster.start_all(&token, &[]);
    let web = service(
        &cluster,
        "cluster-e2e-worker",
        18201,
        1,
        &["--constraint", "node.hostname==node3"],
        &labels("3", "0.6", "1s", "3s"),
    );
    wait_until("the replica to run on node3", Duration::from_secs(60), || web.running_on() == ["node3"]);
    let leader = nodes.iter().position(Daemon::deciding).expect("a deciding manager");
    nodes[leader].wait_autoscaled(&web.name);
    // The worker's probe found the container under its engine's cgroup parent.
    nodes[2].wait_status("node3's tracking set to hold the replica", Duration::from_secs(30), |s| {
        s["cluster"]["tracking"].as_u64() >= Some(1)
    });
    std::thread::sleep(Duration::from_secs(3)); // past the warm-up

    let node3 = cluster.addr(3).to_string();
    let load_start = unix_ms();
    let load = Load::on(&node3, web.port, 4, 50, 0);
    wait_until("a scale-out of the worker's service", Duration::from_secs(90), || web.replicas() >= 2);
    let refs = numbered(&nodes);
    let ups = applied(&refs, &web.name);
    let (k, first) = ups.first().expect("an applied scale-out in a manager's audit");
    assert!([1, 2].contains(k), "only a manager writes; node{k} did");
    assert!(first["reason"].as_str().is_some_and(|r| r.contains(">= cpu.upper")), "{first}");
    let spec_ms = first["time_unix_ms"].as_u64().unwrap_or(0).saturating_sub(load_start);
    eprintln!(
        "cluster e2e: service on worker node3, decided on node{k}: load start -> spec updated {spec_ms} ms (kernel event -> spec updated {} us)",
        first["event_to_outcome_us"]
    );
    wait_until("the new replicas to run on node3", Duration::from_secs(60), || {
        let on = web.running_on();
        on.len() >= 2 && on.iter().all(|n| n == "node3")
    });
    assert!(load.stop() > 0, "the load got no answers");

    let idle = Instant::now();
    wait_until("a scale-in back to 1 once idle", Duration::from_secs(90), || web.replicas() == 1);
    eprintln!("cluster e2e: back to 1 replica {:.1} s after the load stopped", idle.elapsed().as_secs_f64());
    let all = applied(&refs, &web.name);
    assert!(all.iter().all(|(k, _)| *k == all[0].0), "one manager decided throughout: {all:?}");
    assert!(all.iter().any(|(_, r)| r["to"].as_u64() < r["from"].as_u64()), "a scale-in was applied: {all:?}");
    assert_eq!(nodes[2].count("no autoscaler decider reachable"), 0, "the worker never lost the decider");
}

#[test]
#[ignore = "needs the 3-node test swarm: tests/cluster/up.sh; tests/run.sh runs them with --ignored"]
fn a_service_on_two_nodes_loaded_on_one_is_judged_by_its_aggregate() {
    let Some((_serial, cluster)) = Cluster::take_for_daemons() else { return };
    let work = tempfile::tempdir().expect("tempdir");
    let token = token_file(work.path());
    let nodes = cluster.start_all(&token, &[]);
    // One replica on node2 (a manager), one on node3 (the worker).
    let web = service(
        &cluster,
        "cluster-e2e-spread",
        18221,
        2,
        &["--constraint", "node.hostname!=node1", "--replicas-max-per-node", "1"],
        // min 2: idle before the load starts, the pair must not scale in.
        &labels("3", "0.8", "1s", "60s")
            .into_iter()
            .map(|(k, v)| if k == "autoscale.min" { (k, "2") } else { (k, v) })
            .collect::<Vec<_>>(),
    );
    wait_until("a replica on node2 and one on node3", Duration::from_secs(60), || {
        web.running_on() == ["node2", "node3"]
    });
    // node3's replica saturated (about 1.0 of its 0.5 CPU), node2's lightly
    // loaded (about 0.2): a node-local view of node3 would scale out, the
    // aggregate (mean about 0.6, under 0.8) must not.
    let (node2, node3) = (cluster.addr(2).to_string(), cluster.addr(3).to_string());
    // The light load first: node2's replica reports, both are past the
    // warm-up, before node3's crossing asks for a decision.
    let light = Load::on(&node2, web.port, 1, 10, 90);
    // Both replicas in the aggregate the policy last decided on (not a fixed
    // sleep: on a loaded machine a replica's first readings can come late,
    // and a replica that has not reported yet is out of the mean).
    wait_until("both replicas counted in the service's cpu aggregate", Duration::from_secs(30), || {
        nodes.iter().filter_map(|d| d.service(&web.name)).any(|s| cpu_reporting(&s) == Some(2))
    });
    let heavy = Load::on(&node3, web.port, 2, 50, 0);
    let watched = Instant::now();
    while watched.elapsed() < Duration::from_secs(25) {
        assert_eq!(web.replicas(), 2, "scaled on one node's load while the aggregate is under cpu.upper");
        std::thread::sleep(Duration::from_millis(500));
    }
    let refs = numbered(&nodes);
    assert!(applied(&refs, &web.name).is_empty());

    // Both loaded: the aggregate crosses cpu.upper, one scale-out.
    let heavy2 = Load::on(&node2, web.port, 2, 50, 0);
    wait_until("a scale-out once both nodes are loaded", Duration::from_secs(60), || web.replicas() >= 3);
    let ups = applied(&refs, &web.name);
    let reason = ups[0].1["reason"].as_str().unwrap_or_default().to_string();
    eprintln!("cluster e2e: aggregate over node2 and node3: {reason}");
    assert!(reason.starts_with("cpu mean"), "decided on the mean over both nodes: {reason}");
    for load in [heavy, light, heavy2] {
        assert!(load.stop() > 0, "a load got no answers");
    }
}

#[test]
#[ignore = "needs the 3-node test swarm: tests/cluster/up.sh; tests/run.sh runs them with --ignored"]
fn decisions_move_when_the_deciding_daemon_dies_and_agents_come_back() {
    let Some((_serial, cluster)) = Cluster::take_for_daemons() else { return };
    let work = tempfile::tempdir().expect("tempdir");
    let token = token_file(work.path());
    // The lease lives on a service of its own, as the stack's service would hold it.
    let lease = service(&cluster, "cluster-e2e-lease", 18240, 0, &[], &[]);
    let lease_args = ["--cluster-leadership", "lease", "--cluster-service", "cluster-e2e-lease"];
    let mut nodes = cluster.start_all(&token, &lease_args);
    let web = service(
        &cluster,
        "cluster-e2e-failover",
        18241,
        1,
        &["--constraint", "node.hostname==node3"],
        &labels("4", "0.6", "2s", "120s"),
    );
    wait_until("the replica to run on node3", Duration::from_secs(60), || web.running_on() == ["node3"]);
    std::thread::sleep(Duration::from_secs(3)); // tracked and past the warm-up
    let load = Load::on(cluster.addr(3), web.port, 4, 50, 0);
    wait_until("a first scale-out", Duration::from_secs(90), || web.replicas() >= 2);
    let first = {
        let refs = numbered(&nodes);
        applied(&refs, &web.name)
    };
    let holder = first.first().expect("an applied scale-out").0 as usize - 1;
    let standby = 1 - holder;

    // The deciding daemon dies; its engine, and Raft leadership, stay.
    let killed = Instant::now();
    nodes[holder].signal(libc::SIGKILL);
    let took = nodes[standby].wait_status("the standby to take the lease", Duration::from_secs(20), deciding);
    eprintln!(
        "cluster e2e: node{} decides {:.1} s after node{}'s daemon was killed",
        standby + 1,
        took.as_secs_f64(),
        holder + 1
    );
    assert!(took < Duration::from_secs(10), "decisions moved only after {took:?}");
    let before = web.replicas();
    wait_until("a scale-out decided by the standby", Duration::from_secs(60), || {
        !nodes[standby].audit_for(&web.name, "applied").is_empty()
    });
    eprintln!(
        "cluster e2e: first decision of node{} {:.1} s after the kill ({} -> {})",
        standby + 1,
        killed.elapsed().as_secs_f64(),
        before,
        web.replicas()
    );

    // No manager left: the worker keeps measuring, says so once, and
    // resumes when a manager's daemon is back.
    nodes[standby].signal(libc::SIGTERM);
    nodes[2].wait_status("the worker's agent to lose the decider", Duration::from_secs(10), |s| !connected(s));
    wait_until("the worker to say it lost the decider", Duration::from_secs(10), || {
        nodes[2].count("no autoscaler decider reachable") > 0
    });
    let measured = |d: &Daemon| d.metric("autoscaler_probe_events_total").expect("worker metrics");
    let at_outage = measured(&nodes[2]);
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(nodes[2].count("no autoscaler decider reachable"), 1, "one line for the outage:\n{}", nodes[2].log());
    assert_eq!(nodes[2].metric("autoscaler_cluster_agent_connected"), Some(0.0));
    let during = measured(&nodes[2]) - at_outage;
    assert!(during > 0.0, "the worker's probe kept measuring while no decider answered");
    let mut back = cluster.spawn_daemon(holder as u32 + 1, &token, &lease_args);
    back.wait_status("the restarted daemon to take the lease", Duration::from_secs(30), deciding);
    nodes[2].wait_status("the worker's agent to reach a decider again", Duration::from_secs(20), connected);
    let resumed =
        nodes[2].log().lines().find(|l| l.contains("decider reachable again")).unwrap_or_default().to_string();
    eprintln!("cluster e2e: worker measured {during} events in 6 s without a decider; then: {resumed}");
    wait_until("a scale-out decided by the restarted daemon", Duration::from_secs(60), || {
        !back.audit_for(&web.name, "applied").is_empty()
    });
    assert!(load.stop() > 0);

    // Every transition applied once, across the three deciders' audits.
    let mut refs = numbered(&nodes);
    refs.push((holder as u32 + 1, &back));
    let all = applied(&refs, &web.name);
    for pair in all.windows(2) {
        assert_eq!(pair[1].1["from"], pair[0].1["to"], "a decision applied twice or lost: {all:?}");
    }
    assert_eq!(all.last().map(|(_, r)| r["to"].as_u64()), Some(Some(u64::from(web.replicas()))), "{all:?}");
    drop(lease);
}

#[test]
#[ignore = "needs the 3-node test swarm: tests/cluster/up.sh; tests/run.sh runs them with --ignored"]
fn decisions_follow_raft_leadership_when_the_leader_is_demoted() {
    let Some((_serial, cluster)) = Cluster::take_for_daemons() else { return };
    let work = tempfile::tempdir().expect("tempdir");
    let token = token_file(work.path());
    // `--cluster-leadership raft`, the default: decisions follow Swarm's leader.
    let mut nodes = cluster.start_all(&token, &[]);
    wait_until("a manager's daemon to follow the raft leader", Duration::from_secs(10), || {
        nodes[..2].iter().any(Daemon::deciding)
    });
    let leader = nodes[..2].iter().position(Daemon::deciding).expect("a deciding manager");
    let standby = 1 - leader;
    let (leader_k, standby_k) = (leader as u32 + 1, standby as u32 + 1);
    let web = service(
        &cluster,
        "cluster-e2e-demote",
        18261,
        1,
        &["--constraint", "node.hostname==node3"],
        // A long cooldown down: between the two loads nothing scales in.
        &labels("4", "0.6", "1s", "120s"),
    );
    wait_until("the replica to run on node3", Duration::from_secs(60), || web.running_on() == ["node3"]);
    std::thread::sleep(Duration::from_secs(3)); // tracked and past the warm-up
    let load = Load::on(cluster.addr(3), web.port, 4, 50, 0);
    wait_until("a first scale-out", Duration::from_secs(90), || web.replicas() >= 2);
    assert!(load.stop() > 0, "the first load got no answers");
    let refs = numbered(&nodes);
    let first = applied(&refs, &web.name);
    assert_eq!(first.first().map(|(k, _)| *k), Some(leader_k), "the raft leader's daemon decided: {first:?}");

    // Demote the leader's engine (from the standby, which stays a manager).
    let leader_id = cluster.docker_on(leader_k, &["info", "--format", "{{.Swarm.NodeID}}"]).expect("node id");
    let demote_ms = unix_ms();
    let demoted = Instant::now();
    cluster.cli(standby_k, &["node", "demote", &leader_id]);
    let promote = Promote { cluster: &cluster, node_id: leader_id, k: leader as usize + 1 };
    // Watch Swarm's leader and both daemons at once, to split the handover
    // into Swarm's part (demote -> raft leader moved) and ours (raft leader
    // moved -> the new leader's daemon decides).
    let is_leader = "{{.ManagerStatus.Leader}}";
    let (mut raft_moved, mut taken, mut released) = (None, None, None);
    while raft_moved.is_none() || taken.is_none() || released.is_none() {
        assert!(
            demoted.elapsed() < Duration::from_secs(120),
            "within 120 s of the demotion: raft moved {raft_moved:?}, node{standby_k} deciding {taken:?}, node{leader_k} stopped {released:?}"
        );
        if raft_moved.is_none()
            && cluster.docker_on(standby_k, &["node", "inspect", "self", "--format", is_leader]).as_deref()
                == Some("true")
        {
            raft_moved = Some(demoted.elapsed());
        }
        if taken.is_none() && nodes[standby].deciding() {
            taken = Some(demoted.elapsed());
        }
        if released.is_none() && nodes[leader].cluster().is_some_and(|c| c["deciding"] == false) {
            released = Some(demoted.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let (raft_moved, taken, released) =
        (raft_moved.unwrap_or_default(), taken.unwrap_or_default(), released.unwrap_or_default());
    // The CLI's answer takes a few tens of ms: the daemon may see the move first.
    let handover = taken.saturating_sub(raft_moved);
    eprintln!(
        "cluster e2e: `docker node demote` of node{leader_k}: raft leader on node{standby_k} after {:.2} s, its daemon deciding after {:.2} s (handover {:.2} s after swarm moved), node{leader_k}'s daemon stopped deciding after {:.2} s",
        raft_moved.as_secs_f64(),
        taken.as_secs_f64(),
        handover.as_secs_f64(),
        released.as_secs_f64()
    );
    assert!(
        handover < Duration::from_secs(3),
        "the new leader's daemon took {handover:?} after swarm moved leadership"
    );
    // The demoted node's daemon ends, saying why, and (as the stack's restart
    // policy would) starts again as a worker's agent.
    // It ends once its engine stops calling itself a manager, which Swarm
    // does some seconds after leadership moved (6-9 s here).
    let status = nodes[leader].wait_exit(Duration::from_secs(30)).expect("the demoted daemon exits");
    eprintln!(
        "cluster e2e: node{leader_k}'s daemon ended {:.1} s after the demotion: {}",
        demoted.elapsed().as_secs_f64(),
        nodes[leader].log().lines().rfind(|l| l.contains("demoted this node")).unwrap_or_default()
    );
    assert!(!status.success(), "a role change ends the daemon with a failure status: {status}");
    assert_eq!(nodes[leader].count("demoted this node to a worker"), 1, "{}", nodes[leader].log());
    let mut restarted = cluster.spawn_daemon(leader_k, &token, &[]);
    restarted.wait_ready(Duration::from_secs(30));
    restarted.wait_status("the restarted daemon to run as a worker", Duration::from_secs(10), |s| {
        s["cluster"]["role"] == "worker"
    });
    // Every agent, the restarted node's and the worker's, finds the new leader.
    let new_decider = format!("{}:{}", cluster.addr(standby_k), host::cluster::DEFAULT_PORT);
    let connected = |d: &Daemon| d.decider().as_deref() == Some(new_decider.as_str());
    let joined = wait_until("every agent connected to the new leader", Duration::from_secs(20), || {
        connected(&nodes[standby]) && connected(&nodes[2]) && connected(&restarted)
    });
    eprintln!("cluster e2e: every agent connected to node{standby_k} {:.2} s later", joined.as_secs_f64());

    // Load again: the new leader decides, from what the worker now sends it.
    let before = web.replicas();
    let again = Instant::now();
    let load = Load::on(cluster.addr(3), web.port, 4, 50, 0);
    wait_until("a scale-out decided by the new leader", Duration::from_secs(60), || {
        !nodes[standby].audit_for(&web.name, "applied").is_empty()
    });
    eprintln!(
        "cluster e2e: node{standby_k} applied its first decision {:.1} s after the load resumed ({before} -> {})",
        again.elapsed().as_secs_f64(),
        web.replicas(),
    );
    assert!(load.stop() > 0, "the second load got no answers");
    assert_eq!(nodes[2].count("no autoscaler decider reachable"), 0, "a leadership move is not an outage");

    // The demoted manager applied nothing after the demotion, and every
    // transition was applied once across both managers' audits.
    let refs = numbered(&nodes);
    let all = applied(&refs, &web.name);
    let late: Vec<_> =
        all.iter().filter(|(k, r)| *k == leader_k && r["time_unix_ms"].as_u64() > Some(demote_ms)).collect();
    assert!(late.is_empty(), "node{leader_k} applied decisions after its demotion: {late:?}");
    for pair in all.windows(2) {
        assert_eq!(pair[1].1["from"], pair[0].1["to"], "a decision applied twice or lost: {all:?}");
    }
    assert_eq!(all.last().map(|(_, r)| r["to"].as_u64()), Some(Some(u64::from(web.replicas()))), "{all:?}");
    // The demoted daemon's actuator, its reads refused by an engine that is
    // no longer a manager, backs off instead of retrying in a busy loop.
    let refused = nodes[leader].count("cannot read the service");
    assert!(refused < 20, "node{leader_k} logged {refused} refused reads after its demotion");

    // Promoted again (the guard waits until it is a reachable manager), the
    // node's worker daemon ends too, to come back with a decider.
    let promoting = Instant::now();
    drop(promote);
    let status = restarted.wait_exit(Duration::from_secs(30)).expect("the promoted worker's daemon exits");
    assert!(!status.success(), "{status}");
    assert_eq!(restarted.count("promoted this node to a manager"), 1, "{}", restarted.log());
    eprintln!(
        "cluster e2e: node{leader_k} promoted again; its worker daemon ended {:.1} s after `docker node promote`",
        promoting.elapsed().as_secs_f64()
    );
    drop(web);
}

/// Scale to zero on a worker: the leader decides, node3's agent freezes
/// its own replica with its own engine and arms its own probe's wake; a
/// connection to node3 is woken there at once (no round trip to the
/// leader) and answered; the leader audits both; node3's daemon thaws what
/// it froze when it stops.
#[test]
#[ignore = "needs the 3-node test swarm: tests/cluster/up.sh; tests/run.sh runs them with --ignored"]
fn a_min_zero_replica_on_the_worker_is_frozen_and_woken_by_its_own_node() {
    let Some((_serial, cluster)) = Cluster::take_for_daemons() else { return };
    let work = tempfile::tempdir().expect("tempdir");
    let token = token_file(work.path());
    let mut nodes = cluster.start_all(&token, &[]);
    let mut labels = labels("2", "0.6", "1s", "1s");
    labels.retain(|(k, _)| *k != "autoscale.min");
    labels.extend([("autoscale.min", "0"), ("autoscale.idle", "3s")]);
    let web = service(
        &cluster,
        "cluster-e2e-zero",
        18251,
        1,
        &["--constraint", "node.hostname==node3", "--no-healthcheck"],
        &labels,
    );
    wait_until("the replica to run on node3", Duration::from_secs(60), || web.running_on() == ["node3"]);
    let filter = format!("label=com.docker.swarm.service.name={}", web.name);
    let container = cluster.docker_on(3, &["ps", "-q", "--no-trunc", "--filter", &filter]).unwrap_or_default();
    assert_eq!(container.lines().count(), 1, "one replica on node3: {container:?}");
    let paused =
        || cluster.docker_on(3, &["inspect", "--format", "{{.State.Paused}}", &container]).as_deref() == Some("true");
    let leader = nodes.iter().position(Daemon::deciding).expect("a deciding manager");
    let took = wait_until("the idle replica on node3 to be frozen", Duration::from_secs(40), paused);
    let frozen = nodes[leader].zero_records(&web.name, "frozen");
    assert_eq!(frozen.first().map(|r| r["container"].clone()), Some(serde_json::json!(container)), "{frozen:?}");

    let node3 = cluster.addr(3).to_string();
    let start = Instant::now();
    let body = http_get(&node3, web.port, "/", Duration::from_secs(15)).map(|(_, body)| body);
    let answered = start.elapsed();
    assert!(body.as_deref().is_some_and(|b| b.starts_with("ok")), "the frozen replica answers: {body:?}");
    assert!(!paused(), "woken");
    wait_until("node3 to say it woke the replica itself", Duration::from_secs(10), || {
        nodes[2].count("on this node: connection to unpaused in") > 0
    });
    wait_until("the wake in the leader's audit", Duration::from_secs(10), || {
        !nodes[leader].zero_records(&web.name, "woken").is_empty()
    });
    let woken = nodes[leader].zero_records(&web.name, "woken");
    let wake_ms = woken[0]["wake_us"].as_u64().expect("wake latency") as f64 / 1000.0;
    eprintln!(
        "cluster e2e zero: replica on node3 frozen {:.1} s after it ran; connect -> answer {answered:?}; kernel connection -> unpaused on node3 {wake_ms:.1} ms",
        took.as_secs_f64()
    );
    assert!(answered < Duration::from_secs(2), "the wake needs no round trip: {answered:?}");

    // Frozen again; node3's daemon stops and thaws what it froze.
    wait_until("the replica to be frozen again", Duration::from_secs(40), paused);
    nodes[2].signal(libc::SIGTERM);
    assert!(!paused(), "node3's daemon left its replica frozen when it stopped:\n{}", nodes[2].log());
}
