//! The daemon: connects to Swarm, loads the policies folder, starts the
//! probe, and runs the event loop until shutdown.
//!
//! The loop is one `tokio::select!` over five sources:
//! - shutdown;
//! - probe events: container -> service lookup in the [`Inventory`], the
//!   service's [`State`], then a job for the deciders;
//! - inventory changes from Docker's event stream: containers to track or
//!   untrack in the probe, services to log about or retire;
//! - decisions coming back from the deciders: handed to the actuator;
//! - policy folder changes from the hot-reload watcher.
//!
//! Policies run on [`Deciders`]: a few dedicated threads, never on tokio's
//! workers (wasmtime's sync calls block for up to the policy time limit).
//! Each service always goes to the same decider thread, so one service's
//! events are decided in order, and a slow policy only delays the services
//! that share its thread.

use std::collections::HashSet;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::sync::mpsc;

use crate::config::DaemonArgs;
use crate::metrics::Metrics;
use crate::model::{self, Decision, Event, State};
use crate::policy::{PolicyError, PolicySet, PolicySlot, ReloadStats, Runtime};
use crate::probe::{self, ProbeEvent, ProbeHandle};
use crate::reload;
use crate::swarm::inventory::{self, Notice};
use crate::swarm::{Actuator, Audit, DockerWriter, Inventory, Limits, Request};

/// Probe events buffered between the probe and the loop; beyond this the
/// probe drops (and counts) events rather than wait.
const PROBE_CHANNEL: usize = 4096;
/// Jobs buffered per decider thread; beyond this events are dropped (and
/// counted) rather than delay the loop.
const DECIDER_QUEUE: usize = 1024;
/// Decider threads.
const DECIDERS: usize = 2;

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
    let dir = args.policies.clone();
    if !dir.is_dir() {
        bail!(
            "policies folder {} does not exist or is not a folder; build the shipped policies with policies/build.sh or pass --policies DIR",
            dir.display()
        );
    }
    // Swarm first: without a manager there is nothing to do, say so at once.
    let swarm = crate::swarm::connect().await?;
    tracing::info!(endpoint = %swarm.endpoint, node = %swarm.node_id, "connected to the swarm manager ({})", swarm.version);

    let policies = PolicySet::default();
    let (policy_changes_tx, mut policy_changes) = mpsc::unbounded_channel();
    // Hot reload: loads the folder now, then follows it until dropped.
    let _reload = reload::watch(Arc::new(runtime), &dir, policies.clone(), args.reload_settings(), policy_changes_tx)
        .await
        .context("loading the policies folder")?;
    tracing::info!(policies = ?policies.names(), folder = %args.policies.display(), "policies loaded");

    let metrics = Arc::new(Metrics::default());
    let _metrics_server = match args.metrics_addr()? {
        Some(addr) => {
            let (bound, task) = crate::metrics::serve(addr, metrics.clone()).await?;
            tracing::info!(address = %bound, "prometheus metrics on http://{bound}/metrics");
            Some(AbortOnDrop(task))
        }
        None => None,
    };
    let audit = Arc::new(
        match &args.audit_log {
            Some(path) => Audit::to_file(path)?,
            None => Audit::log_only(),
        }
        .with_metrics(metrics.clone()),
    );
    let options = args.actuator_options();
    if options.dry_run {
        tracing::info!("dry run: decisions are judged and logged, nothing is written to swarm");
    }
    let actuator = Actuator::new(DockerWriter { docker: swarm.docker.clone() }, options, audit);

    let (probe_tx, mut probe_events) = mpsc::channel(PROBE_CHANNEL);
    let probe = probe::start(args.probe.settings(), probe_tx).await.context("starting the probe")?;

    export_owned_counters(&metrics, &probe, &policies);

    let (inventory_tx, mut inventory_changes) = mpsc::channel(256);
    let watcher = AbortOnDrop(tokio::spawn(inventory::watch(swarm.docker.clone(), inventory_tx)));

    let (decided_tx, mut decided) = mpsc::channel(DECIDER_QUEUE);
    let deciders = Deciders::start(DECIDERS, decided_tx)?;

    let mut state = Loop {
        inventory: Inventory::default(),
        probe,
        policies,
        actuator,
        deciders,
        warned: HashSet::new(),
        metrics,
        dropped_jobs: 0,
        unknown_containers: 0,
    };
    tracing::info!("autoscaler running");
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(event) = probe_events.recv() => state.on_probe_event(event),
            Some(change) = inventory_changes.recv() => state.on_inventory_change(change),
            Some(done) = decided.recv() => state.on_decided(done),
            Some(change) = policy_changes.recv() => state.on_policy_change(change),
        }
    }
    let stats = state.probe.stats();
    tracing::info!(
        probe_events = stats.events,
        probe_dropped = stats.dropped,
        decider_dropped = state.dropped_jobs,
        unknown_containers = state.unknown_containers,
        "shutting down"
    );
    drop(watcher);
    Ok(())
}

/// Export counters that the probe and the policy set keep themselves; they
/// are read at scrape time.
fn export_owned_counters(metrics: &Metrics, probe: &ProbeHandle, policies: &PolicySet) {
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
    type Counter = fn(&ReloadStats) -> &std::sync::atomic::AtomicU64;
    let counters: [(&str, &str, Counter); 4] = [
        ("autoscaler_policy_loads_total", "Policies loaded for the first time.", |s| &s.loads),
        ("autoscaler_policy_reloads_total", "New versions of loaded policies swapped in.", |s| &s.reloads),
        ("autoscaler_policy_rejections_total", "Policy files refused or failed to load.", |s| &s.rejections),
        ("autoscaler_policy_unloads_total", "Policies unloaded because their file was deleted.", |s| &s.unloads),
    ];
    for (name, help, counter) in counters {
        let set = policies.clone();
        metrics.set_source(name, help, "counter", move || {
            counter(set.stats()).load(std::sync::atomic::Ordering::Relaxed) as f64
        });
    }
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

/// The event loop's state; each `on_*` handles one select branch.
struct Loop {
    /// Services and containers, from Docker's events.
    inventory: Inventory,
    /// The running probe: told what to track.
    probe: ProbeHandle,
    /// Loaded policies by name.
    policies: PolicySet,
    /// Applies decisions under the guardrails.
    actuator: Actuator<DockerWriter>,
    /// Threads that run the policies.
    deciders: Deciders,
    /// (service id, policy) pairs already warned about (missing policy or
    /// quarantine), so each is logged once.
    warned: HashSet<(String, String)>,
    /// Counters and histograms for the metrics endpoint.
    metrics: Arc<Metrics>,
    /// Events dropped because a decider queue was full.
    dropped_jobs: u64,
    /// Events from containers the inventory does not know (yet).
    unknown_containers: u64,
}

impl Loop {
    /// A probe event: find the service, build its state, queue a decision.
    fn on_probe_event(&mut self, event: ProbeEvent) {
        self.metrics.event_received(event.metric.name());
        let Some(service) = self.inventory.service_of(&event.container_id) else {
            self.unknown_containers += 1;
            return;
        };
        let Some(config) = service.config() else { return };
        let Some(slot) = self.policies.get(&config.policy) else {
            if self.warned.insert((service.id.clone(), config.policy.clone())) {
                tracing::warn!(
                    service = %service.name, policy = %config.policy,
                    "service {} is bound to policy {}, which is not loaded; it is left alone until {}.wasm appears in the policies folder",
                    service.name, config.policy, config.policy
                );
            }
            return;
        };
        let job = Job {
            slot,
            policy: config.policy.clone(),
            limits: Limits::new(config, self.actuator.options()),
            event: Event {
                metric: event.metric,
                value: event.value,
                unit: event.unit,
                kind: event.kind,
                container_id: event.container_id,
                service_id: service.id.clone(),
                service_name: service.name.clone(),
                timestamp_ns: event.timestamp_ns,
            },
            state: State {
                current_replicas: service.replicas,
                min_replicas: config.min,
                max_replicas: config.max,
                last_scale_ns: self.actuator.last_scale_ns(&service.id),
                settings: config.settings.clone(),
            },
        };
        if !self.deciders.submit(job) {
            self.dropped_jobs += 1;
            if self.dropped_jobs.is_power_of_two() {
                tracing::warn!(dropped = self.dropped_jobs, "policies cannot keep up; events dropped");
            }
        }
    }

    /// A change from Docker: update the inventory and act on its effects.
    fn on_inventory_change(&mut self, change: inventory::Change) {
        let effects = self.inventory.apply(change);
        for tracked in effects.track {
            self.probe.track(tracked);
        }
        for container in &effects.untrack {
            self.probe.untrack(container);
        }
        for service_id in &effects.retired {
            self.actuator.retire(service_id);
            self.warned.retain(|(id, _)| id != service_id);
        }
        for notice in effects.notices {
            match notice {
                Notice::Enabled { service, config } => {
                    let t = &config.thresholds;
                    tracing::info!(
                        service = %service, policy = %config.policy,
                        "service {service} autoscaled by policy {} within {}..={} replicas (cpu {:?}, memory {:?}, connections {:?})",
                        config.policy, config.min, config.max, t.cpu, t.memory, t.connections
                    );
                }
                Notice::Invalid { service, errors } => {
                    for error in &errors.0 {
                        tracing::warn!(service = %service, label = %error.label, "{error}");
                    }
                }
                Notice::NotReplicated { service } => tracing::warn!(
                    service = %service,
                    "service {service} has autoscale.enable=true but is not a replicated service (global or job mode); it is left alone"
                ),
                Notice::Disabled { service } => {
                    tracing::info!(service = %service, "service {service} is no longer autoscaled")
                }
            }
        }
    }

    /// A policy answered: hand its decision to the actuator.
    fn on_decided(&mut self, done: Decided) {
        let Decided { job, result, decided_ns, took } = done;
        let service_id = &job.event.service_id;
        self.metrics.observe_decide(took);
        let outcome = match &result {
            Ok(None) => "none",
            Ok(Some(_)) => "decision",
            Err(err) => {
                self.metrics.policy_failure(&job.policy, err.kind());
                "error"
            }
        };
        self.metrics.decision(&job.policy, outcome);
        match result {
            Ok(None) => {}
            Ok(Some(decision)) => {
                self.metrics.observe_kernel_to_decision(Duration::from_nanos(
                    decided_ns.saturating_sub(job.event.timestamp_ns),
                ));
                // The service may have been removed or relabelled meanwhile.
                let current = self.inventory.service(service_id).and_then(|s| s.config());
                if current.is_none_or(|c| c.policy != job.policy) {
                    return;
                }
                self.actuator.submit(Request {
                    service_id: service_id.clone(),
                    service_name: job.event.service_name.clone(),
                    policy: job.policy,
                    seen: job.state.current_replicas,
                    limits: job.limits,
                    decision,
                    event: job.event,
                    decided_ns,
                });
            }
            Err(err @ PolicyError::Quarantined { .. }) => {
                if self.warned.insert((service_id.clone(), job.policy.clone())) {
                    tracing::error!(
                        service = %job.event.service_name, policy = %job.policy,
                        "{err}; service {} keeps its replicas", job.event.service_name
                    );
                }
            }
            Err(err) => tracing::warn!(
                service = %job.event.service_name, policy = %job.policy, kind = err.kind(),
                "{err}; service {} keeps its replicas", job.event.service_name
            ),
        }
    }

    /// The policies folder changed.
    fn on_policy_change(&mut self, change: reload::Change) {
        match change {
            reload::Change::Loaded(name) | reload::Change::Reloaded(name) => {
                // A (re)loaded policy gets a fresh chance: warn again if it fails.
                self.warned.retain(|(_, policy)| *policy != name);
            }
            reload::Change::Unloaded(name) => {
                let bound: Vec<&str> = self
                    .inventory
                    .active()
                    .filter(|s| s.config().is_some_and(|c| c.policy == name))
                    .map(|s| s.name.as_str())
                    .collect();
                if !bound.is_empty() {
                    tracing::warn!(
                        policy = %name,
                        "policy {name} was unloaded; services left at their current replicas: {}",
                        bound.join(", ")
                    );
                }
            }
            reload::Change::Rejected { .. } => {}
        }
    }
}

/// One event to decide on, with what the actuator needs afterwards.
struct Job {
    /// The service's policy.
    slot: Arc<PolicySlot>,
    /// Its name.
    policy: String,
    /// The service's guardrails at the time of the event.
    limits: Limits,
    /// The event, attributed to its service.
    event: Event,
    /// The service's state.
    state: State,
}

/// A policy's answer to a [`Job`].
struct Decided {
    /// The job, minus nothing: the actuator needs its event and state.
    job: Job,
    /// What the policy said.
    result: Result<Option<Decision>, PolicyError>,
    /// CLOCK_MONOTONIC ns when it answered.
    decided_ns: u64,
    /// Time spent in `decide`.
    took: Duration,
}

/// Threads that call policies, one queue each; a service always maps to
/// the same thread.
struct Deciders {
    /// One queue per thread.
    queues: Vec<mpsc::Sender<Job>>,
}

impl Deciders {
    /// Start `n` threads that send their answers to `answers`.
    fn start(n: usize, answers: mpsc::Sender<Decided>) -> anyhow::Result<Deciders> {
        let mut queues = Vec::with_capacity(n);
        for i in 0..n {
            let (tx, mut rx) = mpsc::channel::<Job>(DECIDER_QUEUE);
            let answers = answers.clone();
            std::thread::Builder::new()
                .name(format!("decider-{i}"))
                .spawn(move || {
                    while let Some(job) = rx.blocking_recv() {
                        let span = tracing::debug_span!(
                            "decide", service = %job.event.service_name, policy = %job.policy,
                            metric = %job.event.metric, value = job.event.value
                        );
                        let started = Instant::now();
                        let result = span.in_scope(|| job.slot.decide(&job.event, &job.state));
                        let decided_ns = model::monotonic_ns();
                        let took = started.elapsed();
                        if took > Duration::from_millis(50) {
                            tracing::debug!(policy = %job.policy, ?took, "slow decide");
                        }
                        // The loop is gone: shutting down.
                        if answers.blocking_send(Decided { job, result, decided_ns, took }).is_err() {
                            return;
                        }
                    }
                })
                .context("starting a decider thread")?;
            queues.push(tx);
        }
        Ok(Deciders { queues })
    }

    /// Queue a job on its service's thread; false if that queue is full.
    fn submit(&self, job: Job) -> bool {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        job.event.service_id.hash(&mut hasher);
        let index = (hasher.finish() % self.queues.len() as u64) as usize;
        self.queues[index].try_send(job).is_ok()
    }
}
