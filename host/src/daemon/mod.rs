//! The daemon: connects to Swarm, loads the policies folder, starts the
//! probe, and runs the event loop until shutdown; then drains.
//!
//! - [`event_loop`]: the one `tokio::select!` over the sources (shutdown,
//!   probe events, inventory changes, decisions coming back, policy folder
//!   changes) and what each does;
//! - [`service_view`]: the aggregate over a service's replicas that policies
//!   decide on;
//! - [`checks`]: everything wrong with a service's labels, at once, in one
//!   line;
//! - [`policy_workers`]: one thread per policy, coalescing per service, never on
//!   tokio's workers (wasmtime's sync calls block for up to the time limit);
//! - [`zero`]: scale to zero, a frozen replica woken by the kernel on its
//!   first connection;
//! - [`multi_node`]: multi-node mode (`--cluster`): every node's agent, and on
//!   managers the decider endpoint, the swarm-wide inventory and the
//!   leadership gate.
//!
//! Shutdown, like mini-redis: the loop stops taking events, the policy workers
//! are closed (a call in progress ends within its time limit), then the
//! actuator closes its mailboxes and waits for the updates in flight within
//! a grace period, and names what was left.

pub mod checks;
pub mod event_loop;
pub mod multi_node;
pub mod policy_workers;
pub mod service_view;
#[cfg(test)]
pub(crate) mod testing;
pub mod zero;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::sync::{mpsc, watch};

use crate::config::DaemonArgs;
use crate::metrics::Metrics;
use crate::policy::{PolicySet, ReloadStats, Runtime};
use crate::probe::{self, ProbeHandle};
use crate::reload;
use crate::replay::Recorder;
use crate::status::Board;
use crate::swarm::{Actuator, Audit, DockerWriter, Freezer, inventory};
use event_loop::Loop;
use policy_workers::PolicyWorkers;

/// Probe events buffered between the probe and the loop; beyond this the
/// probe drops (and counts) events rather than wait.
const PROBE_CHANNEL: usize = 4096;
/// Answers buffered between the policy workers and the loop.
const ANSWER_CHANNEL: usize = 1024;
/// How long shutdown waits for the policy workers to finish their calls.
const WORKER_GRACE: Duration = Duration::from_secs(2);
/// How long shutdown waits for Swarm updates in flight.
const ACTUATOR_GRACE: Duration = Duration::from_secs(5);
/// The same after a demotion, when no write can land (idle workers end at
/// once; one retrying a refused read is cancelled and named).
const DEMOTED_ACTUATOR_GRACE: Duration = Duration::from_secs(1);
/// Multi-node mode: how often a manager re-reads the swarm's running tasks
/// (Docker's event stream has no task events; see `inventory::Scope`).
const CLUSTER_TASK_REFRESH: Duration = Duration::from_secs(1);

/// A future that only resolves when there is one: for `select!` branches
/// of sources that exist only in some modes.
async fn maybe<F: Future>(future: Option<F>) -> F::Output {
    match future {
        Some(future) => future.await,
        None => std::future::pending().await,
    }
}

/// Resolves on Ctrl-C or SIGTERM: the shutdown signal `main` passes to [`run`].
pub async fn ctrl_c() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sig) => {
                sig.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

/// Run the daemon until `shutdown` resolves.
pub async fn run(args: DaemonArgs, runtime: Runtime, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    // Multi-node mode: every node's engine, workers included; a worker only
    // measures and forwards.
    let node = if args.cluster.cluster {
        let node = multi_node::join(&args.cluster).await?;
        if !node.me.is_manager {
            return multi_node::run_worker(node, args.probe.settings(), args.metrics_addr()?, shutdown).await;
        }
        Some(node)
    } else {
        None
    };
    let dir = args.policies.clone();
    if !dir.is_dir() {
        bail!(
            "policies folder {} does not exist or is not a folder; build the shipped policies with policies/build.sh or pass --policies DIR",
            dir.display()
        );
    }
    // Swarm first: without a manager there is nothing to do, say so at once.
    let swarm = match &node {
        Some(node) => node.swarm.clone(),
        None => crate::swarm::connect().await?,
    };
    tracing::info!(endpoint = %swarm.endpoint, node = %swarm.node_id, "connected to the swarm manager ({})", swarm.version);

    let policies = PolicySet::default();
    let (policy_changes_tx, mut policy_changes) = mpsc::unbounded_channel();
    // Hot reload: loads the folder now, then follows it until dropped.
    let _reload = reload::watch(Arc::new(runtime), &dir, policies.clone(), args.reload_settings(), policy_changes_tx)
        .await
        .context("loading the policies folder")?;
    tracing::info!(policies = %policies.names().join(", "), folder = %args.policies.display(), "policies loaded");

    let metrics = Arc::new(Metrics::default());
    let board = Arc::new(Board::default());
    board.set_policies(policies.names());
    let _metrics_server = match args.metrics_addr()? {
        Some(addr) => {
            let (bound, task) = crate::metrics::serve(addr, metrics.clone(), board.clone()).await?;
            tracing::info!(address = %bound, "prometheus metrics on http://{bound}/metrics, service status on http://{bound}/status");
            Some(AbortOnDrop(task))
        }
        None => None,
    };
    let audit = Arc::new(
        match &args.audit_log {
            Some(path) => Audit::to_file_capped(path, args.audit_log_max_size)?,
            None => Audit::log_only(),
        }
        .with_metrics(metrics.clone())
        .with_board(board.clone()),
    );
    let options = args.actuator_options();
    if options.dry_run {
        tracing::info!("dry run: decisions are judged and logged, nothing is written to swarm");
    }
    let dry_run = options.dry_run;
    let recorder = match &args.record {
        Some(path) => Some(Recorder::create(path, &options)?),
        None => None,
    };
    let actuator = Actuator::new(DockerWriter { docker: swarm.docker.clone() }, options, audit.clone());

    let (probe_tx, mut probe_events) = mpsc::channel(PROBE_CHANNEL);
    let probe = probe::start(args.probe.settings(), probe_tx).await.context("starting the probe")?;

    // In multi-node mode the leader's inventory covers every node's tasks,
    // and every local event takes the agent's path, like any node's.
    let scope = match &node {
        Some(_) => inventory::Scope::Swarm { refresh: CLUSTER_TASK_REFRESH },
        None => inventory::Scope::ThisNode,
    };
    let (inventory_tx, mut inventory_changes) = mpsc::channel(256);
    let watcher = AbortOnDrop(tokio::spawn(inventory::watch(swarm.docker.clone(), inventory_tx, scope)));

    let (mut io, tracking, inputs) = match &node {
        Some(node) => {
            let (tracking, inputs) = multi_node::ClusterTracking::start(node).await?;
            (Some(multi_node::NodeIo::start(node, probe.clone())), Some(tracking), Some(inputs))
        }
        None => (None, None, None),
    };

    let (decided_tx, mut decided) = mpsc::channel(ANSWER_CHANNEL);
    let policy_workers = PolicyWorkers::new(decided_tx);
    export_owned_counters(&metrics, &probe, &policies, &policy_workers);

    let freezer = Freezer { docker: swarm.docker.clone() };
    let zero = zero::Zero::new(audit, metrics.clone(), dry_run);
    let (zero_io, mut zero_done) = zero::ZeroIo::new(freezer, probe.clone());
    let state_metrics = metrics.clone();
    let view_window = args.probe.view_window();
    if let Some(io) = &io {
        io.show_on(&board, tracking.as_ref());
    }
    let mut state: Loop = Loop::new(event_loop::Parts {
        probe,
        policies,
        actuator,
        policy_workers,
        zero,
        zero_io,
        metrics,
        board,
        view_window,
    });
    if let Some(recorder) = recorder {
        if let Some(path) = &args.record {
            tracing::info!(trace = %path.display(), "recording every decided event to the trace");
        }
        state.record_to(recorder);
    }
    let mut leadership = tracking.as_ref().map(multi_node::ClusterTracking::leadership);
    let (mut remote_events, rest) = inputs.map(|i| (i.events, (i.membership, i.zero))).unzip();
    let (mut membership, mut zero_reports) = rest.unzip();
    let mut zero_commands = io.as_mut().and_then(multi_node::NodeIo::take_zero_commands);
    if let Some(tracking) = tracking {
        tracking.export_counters(&state_metrics);
        state.set_cluster(tracking);
    }
    if let Some(io) = &io {
        io.export_counters(&state_metrics);
    }
    tracing::info!("autoscaler running");
    let mut shutdown = std::pin::pin!(shutdown);
    // Multi-node mode: a demotion ends this manager's daemon (after the
    // usual drain), to be started again as a worker's agent.
    let mut role = std::pin::pin!(maybe(node.as_ref().map(multi_node::role_changed)));
    let ended = loop {
        tokio::select! {
            () = &mut shutdown => break Ok(()),
            err = &mut role => break Err(err),
            Some(event) = probe_events.recv() => match &io {
                Some(io) => io.forward(event),
                None => state.on_probe_event(event),
            },
            Some(change) = inventory_changes.recv() => state.on_inventory_change(change),
            Some(done) = decided.recv() => state.on_decided(done),
            Some(change) = policy_changes.recv() => state.on_policy_change(change),
            Some(done) = zero_done.recv() => state.on_zero_done(done),
            () = maybe(state.zero_deadline().map(tokio::time::sleep_until)) => state.on_zero_tick(),
            () = maybe(io.as_mut().map(multi_node::NodeIo::tracking_changed)) => {
                if let Some(io) = io.as_mut() { io.apply_tracking() }
            }
            Some(remote) = maybe(remote_events.as_mut().map(mpsc::Receiver::recv)) => state.on_remote_event(remote),
            Some(change) = maybe(membership.as_mut().map(mpsc::UnboundedReceiver::recv)) => state.on_membership(change),
            Ok(()) = maybe(leadership.as_mut().map(watch::Receiver::changed)) => state.on_leadership_change(),
            Some(report) = maybe(zero_reports.as_mut().map(crate::cluster::ZeroReports::recv)) => state.on_remote_zero(report),
            Some(command) = maybe(zero_commands.as_mut().map(mpsc::UnboundedReceiver::recv)) => {
                if let Some(io) = &io { io.on_zero_command(command) }
            }
        }
    };
    drop(watcher);
    // A demoted engine refuses every write: an update in flight cannot
    // land, so it gets a short grace, not the full one.
    let actuator_grace = if ended.is_err() { DEMOTED_ACTUATOR_GRACE } else { ACTUATOR_GRACE };
    state.shut_down(decided, zero_done, WORKER_GRACE, actuator_grace).await;
    // This node's agent thaws what it froze; other nodes' agents keep their
    // frozen replicas' wakes.
    if let Some(io) = &io {
        io.thaw_all().await;
    }
    ended
}

/// Export counters that the probe and the policy set keep themselves; they
/// are read at scrape time.
fn export_owned_counters(metrics: &Metrics, probe: &ProbeHandle, policies: &PolicySet, policy_workers: &PolicyWorkers) {
    export_probe_counters(metrics, probe);
    export_policy_counters(metrics, policies, policy_workers);
}

/// The probe's own counters (every node, workers included).
fn export_probe_counters(metrics: &Metrics, probe: &ProbeHandle) {
    let p = probe.clone();
    metrics.set_source("autoscaler_probe_events_total", "Events the probe produced.", "counter", move || {
        p.stats().events as f64
    });
    let p = probe.clone();
    metrics.set_source(
        "autoscaler_probe_dropped_events_total",
        "Events lost: ring-buffer reserve failures in the kernel plus events dropped on a full channel.",
        "counter",
        move || p.stats().dropped as f64,
    );
    let p = probe.clone();
    metrics.set_source(
        "autoscaler_probe_parked_syns_total",
        "Connection attempts to the ports of services at zero replicas (autoscale.zero=remove) the kernel held: dropped without an answer, retransmitted by the client.",
        "counter",
        move || p.stats().parked_syns as f64,
    );
    let p = probe.clone();
    metrics.set_source(
        "autoscaler_probe_refused_containers_total",
        "Containers the probe refused to track because it already tracked as many as it holds (4,096 on one host); each refusal is logged.",
        "counter",
        move || p.stats().refused as f64,
    );
}

/// The policy set's and the policy workers' own counters.
fn export_policy_counters(metrics: &Metrics, policies: &PolicySet, policy_workers: &PolicyWorkers) {
    type Counter = fn(&ReloadStats) -> &std::sync::atomic::AtomicU64;
    // Rejections are rendered by policy and cause from the failure source.
    let counters: [(&str, &str, Counter); 3] = [
        ("autoscaler_policy_loads_total", "Policies loaded for the first time.", |s| &s.loads),
        ("autoscaler_policy_reloads_total", "New versions of loaded policies swapped in.", |s| &s.reloads),
        ("autoscaler_policy_unloads_total", "Policies unloaded because their file was deleted.", |s| &s.unloads),
    ];
    for (name, help, counter) in counters {
        let set = policies.clone();
        metrics.set_source(name, help, "counter", move || {
            counter(set.stats()).load(std::sync::atomic::Ordering::Relaxed) as f64
        });
    }
    // Files refused at load, by policy and cause, beside the call failures.
    let set = policies.clone();
    metrics.set_failure_source(move || set.stats().rejections_by_cause());
    let coalesced = policy_workers.coalesced();
    metrics.set_source(
        "autoscaler_events_coalesced_total",
        "Decisions not asked for because a newer event of the same service replaced the waiting one.",
        "counter",
        move || coalesced.load(std::sync::atomic::Ordering::Relaxed) as f64,
    );
    let set = policies.clone();
    metrics.set_source(
        "autoscaler_policies_quarantined",
        "Loaded policies currently quarantined.",
        "gauge",
        move || set.quarantined() as f64,
    );
}

/// Aborts a task when dropped: the inventory watcher ends with the loop.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
