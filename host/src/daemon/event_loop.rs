//! The event loop's state and what each source of the loop does.
//!
//! A probe event is attributed to its service through the inventory,
//! recorded in the service view, and turned into a job for the service's
//! policy with the service's state (aggregate included); the answer comes
//! back from the policy workers and goes to the actuator. Inventory changes tell
//! the probe what to track; policy changes re-check the services that use
//! the policy.
//!
//! In multi-node mode ([`Loop::set_cluster`]) events come from every node
//! through the decider endpoint ([`Loop::on_remote_event`]), inventory
//! changes become each node's tracking set, and nothing is decided or
//! written unless this manager leads.
//!
//! The loop's own state and the sources every mode has are here; what it
//! checks and says about each service is in `examine.rs`, multi-node
//! mode's sources in `remote.rs`, and the outside parts it drives (probe,
//! Swarm writer, scale to zero's I/O) are the traits of `outside.rs`, so
//! that `tests.rs` drives the whole loop with fakes.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::multi_node::ClusterTracking;
use super::policy_workers::{Decided, Job, PolicyWorkers};
use super::service_view::ServiceView;
use super::zero::{self, Zero};
use crate::cluster::ZeroCommand;
use crate::metrics::Metrics;
use crate::model::{self, Event, SettingValue, State};
use crate::policy::{PolicyError, PolicySet};
use crate::probe::{ProbeEvent, Signal};
use crate::replay::Recorder;
use crate::status::{Board, Cooldowns};
use crate::swarm::inventory::{self, Notice, ServiceEntry};
use crate::swarm::{Actuator, Inventory, Request};

mod examine;
mod outside;
mod remote;
#[cfg(test)]
mod tests;

pub use outside::{Outside, Real, Tracker, ZeroRunner};

/// How a service's labels fit its policy's declaration, for one version of
/// that policy.
#[derive(Debug, Clone)]
struct TypedSettings {
    /// The policy version (SHA-256) this was checked against.
    sha256: String,
    /// The typed settings, or `None` when they do not fit (already logged).
    typed: Option<Arc<[Option<SettingValue>]>>,
}

/// The event loop's state; each `on_*` handles one select branch. `O`
/// names its outside parts: [`Real`] in the daemon, fakes in tests.
pub struct Loop<O: Outside = Real> {
    /// Services and containers, from Docker's events.
    inventory: Inventory,
    /// The latest readings of every replica.
    view: ServiceView,
    /// How long a replica's reading counts in the view.
    view_window: Duration,
    /// The running probe: told what to track.
    probe: O::Probe,
    /// Loaded policies by name.
    policies: PolicySet,
    /// Applies decisions under the guardrails.
    actuator: Actuator<O::Writer>,
    /// One thread per policy.
    policy_workers: PolicyWorkers,
    /// Services at zero: frozen replicas, removed services.
    zero: Zero,
    /// Carries out what `zero` asks for.
    zero_io: O::Zero,
    /// Each service's settings checked against its policy, by service id.
    typed_settings: HashMap<String, TypedSettings>,
    /// (service id, policy) pairs already warned about (quarantine), so
    /// each is logged once.
    warned: HashSet<(String, String)>,
    /// Counters and histograms for the metrics endpoint.
    metrics: Arc<Metrics>,
    /// Every service's state for `host status` and `/status`.
    board: Arc<Board>,
    /// The last line logged about each service, by id: a service is
    /// described once per change, not once per event.
    said: HashMap<String, String>,
    /// Events from containers the inventory does not know (yet).
    unknown_containers: u64,
    /// Whether a first full read of Docker was applied: later ones follow
    /// a reconnection.
    resynced: bool,
    /// When the view last started empty (a full read of Docker, a change
    /// of leadership), CLOCK_MONOTONIC ns: for one view window after it,
    /// a replica may not have reported yet.
    view_since_ns: u64,
    /// `--record`: every call a policy answered, with its event and state.
    recorder: Option<Recorder>,
    /// Why each policy that is not loaded is not: the last rejection of its
    /// file, or its deletion. Named wherever a service that uses it is.
    not_loaded: HashMap<String, String>,
    /// Multi-node mode: the decider endpoint, leadership, each node's set.
    cluster: Option<ClusterTracking>,
    /// Events that arrived while this manager did not lead, or that a node
    /// sent for a container the inventory places elsewhere.
    ignored_remote: u64,
    /// Whether this manager led at the last leadership change.
    leading: bool,
}

impl<O: Outside> std::fmt::Debug for Loop<O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loop")
            .field("services", &self.inventory.active().count())
            .field("typed_settings", &self.typed_settings.len())
            .field("unknown_containers", &self.unknown_containers)
            .finish_non_exhaustive()
    }
}

/// The parts the loop drives, built by [`super::run`].
#[derive(Debug)]
pub struct Parts<O: Outside = Real> {
    /// The running probe.
    pub probe: O::Probe,
    /// Loaded policies by name.
    pub policies: PolicySet,
    /// Applies decisions under the guardrails.
    pub actuator: Actuator<O::Writer>,
    /// One thread per policy.
    pub policy_workers: PolicyWorkers,
    /// Scale to zero.
    pub zero: Zero,
    /// Its I/O.
    pub zero_io: O::Zero,
    /// Counters and histograms.
    pub metrics: Arc<Metrics>,
    /// Every service's state for `host status`.
    pub board: Arc<Board>,
    /// How long a replica's reading counts in the view.
    pub view_window: Duration,
}

impl<O: Outside> Loop<O> {
    /// The loop's state, empty until the first inventory resync.
    pub fn new(parts: Parts<O>) -> Loop<O> {
        let Parts { probe, policies, actuator, policy_workers, zero, zero_io, metrics, board, view_window } = parts;
        Loop {
            inventory: Inventory::default(),
            view: ServiceView::default(),
            view_window,
            probe,
            policies,
            actuator,
            policy_workers,
            zero,
            zero_io,
            typed_settings: HashMap::new(),
            warned: HashSet::new(),
            metrics,
            board,
            said: HashMap::new(),
            unknown_containers: 0,
            resynced: false,
            view_since_ns: model::monotonic_ns(),
            recorder: None,
            not_loaded: HashMap::new(),
            cluster: None,
            ignored_remote: 0,
            leading: false,
        }
    }

    /// Multi-node mode: track through each node's agent, decide only while
    /// leading.
    pub fn set_cluster(&mut self, cluster: ClusterTracking) {
        self.cluster = Some(cluster);
        self.zero.refuse_cluster();
    }

    /// Carry out what scale to zero asked for. In multi-node mode a
    /// replica is frozen, thawed and recovered by its node's agent.
    fn drive_zero(&mut self) {
        for work in self.zero.take_work() {
            if let Some(cluster) = &self.cluster {
                let command = match &work {
                    zero::Work::Freeze { container } => Some(ZeroCommand::Freeze { container_id: container.clone() }),
                    zero::Work::Thaw { container } => Some(ZeroCommand::Thaw { container_id: container.clone() }),
                    zero::Work::Recover { container, .. } => {
                        Some(ZeroCommand::Recover { container_id: container.clone() })
                    }
                    _ => None,
                };
                if let Some(command) = command {
                    let container = match &command {
                        ZeroCommand::Freeze { container_id }
                        | ZeroCommand::Thaw { container_id }
                        | ZeroCommand::Recover { container_id } => container_id.clone(),
                    };
                    let node = self.inventory.container(&container).map(|c| c.node_id.clone());
                    if !node.as_deref().is_some_and(|node| cluster.send_zero(node, command)) {
                        self.zero_io.unreachable(work, node.as_deref());
                    }
                    continue;
                }
            }
            self.zero_io.run(work, &mut self.actuator);
        }
    }

    /// When scale to zero waits for time next (a restored service's ports
    /// looked at for a listener), if it does.
    pub fn zero_deadline(&self) -> Option<tokio::time::Instant> {
        self.zero.next_tick()
    }

    /// That time came.
    pub fn on_zero_tick(&mut self) {
        self.zero.tick();
        self.drive_zero();
    }

    /// Record every call a policy answers to `recorder` (`--record`).
    pub fn record_to(&mut self, recorder: Recorder) {
        self.recorder = Some(recorder);
    }

    /// A probe event: find the service, update its view, queue a decision.
    pub fn on_probe_event(&mut self, event: ProbeEvent) {
        self.metrics.event_received(event.name());
        let container_id = match &event {
            ProbeEvent::Reading(reading) => reading.container_id.as_str(),
            ProbeEvent::Signal(Signal::Accepted { container_id, .. } | Signal::MemoryLimit { container_id, .. }) => {
                container_id.as_str()
            }
            ProbeEvent::Signal(signal) => {
                // Scale to zero's own signals, handled at once: a frozen
                // replica's first connection (thaw), a connection attempt to
                // a removed service's port (restore), a socket listening on
                // it again (unpark).
                match *signal {
                    Signal::Wake { ref container_id, timestamp_ns } => self.zero.on_wake(container_id, timestamp_ns),
                    Signal::PortSyn { port, timestamp_ns } => self.zero.on_port_attempt(port, timestamp_ns),
                    Signal::PortListen { port, .. } => self.zero.on_port_listen(port),
                    Signal::Accepted { .. } | Signal::MemoryLimit { .. } => {}
                }
                self.drive_zero();
                return;
            }
        };
        let Some(container) = self.inventory.container(container_id) else {
            self.unknown_containers += 1;
            return;
        };
        let (service_id, started_ns) = (container.service_id.clone(), container.started_ns);
        let Some(service) = self.inventory.service(&service_id) else { return };
        let Some(config) = service.config().cloned() else { return };
        let (name, replicas) = (service.name.clone(), service.replicas);
        if let Some(zero) = config.zero {
            let running: Vec<String> = self.inventory.containers_of(&service_id).map(|c| c.id.clone()).collect();
            self.zero.observe((&service_id, &name), &config, zero, (replicas, &running), &event);
            self.drive_zero();
            if event.container_id().is_some_and(|id| self.zero.holds(id)) {
                return; // a frozen or removed replica's readings are not the service's load
            }
        }
        // Only a reading goes on to a policy (a memory limit stays in the view).
        let Some(event) = self.view.admit(&service_id, started_ns, event) else { return };
        // A policy that is not loaded was reported when the service was
        // examined (and is again when the folder changes).
        let Some(slot) = self.policies.get(&config.policy) else { return };
        let Some(typed) = self.settings_for(&service_id) else { return };
        let now_ns = model::monotonic_ns();
        if self.awaiting_first_readings(&service_id, config.warmup, now_ns) {
            return;
        }
        let history = self.actuator.history(&service_id);
        let options = self.actuator.options();
        let clock = Cooldowns {
            up: config.cooldown_up.unwrap_or(options.cooldown_up),
            down: config.cooldown_down.unwrap_or(options.cooldown_down),
            last_scale_ns: history.last_scale_ns(),
        };
        let state = State {
            service_id: service_id.clone(),
            service_name: name.clone(),
            settings: typed,
            current_replicas: replicas,
            min_replicas: config.min,
            max_replicas: config.max,
            now_ns,
            last_scale_up_ns: history.last_up_ns,
            last_scale_down_ns: history.last_down_ns,
            hold_until_ns: history.hold_until_ns.filter(|until| *until > now_ns),
            metrics: self.view.aggregates(&service_id, now_ns, config.warmup, self.view_window),
        };
        self.show_reading(&service_id, replicas, clock, &event, &state);
        let event = Event {
            metric: event.metric,
            value: event.value,
            unit: event.unit,
            kind: event.kind,
            container_id: event.container_id,
            service_id,
            service_name: name,
            timestamp_ns: event.timestamp_ns,
        };
        let job = Job { slot, policy: config.policy.clone(), config, event, state };
        if let Err(err) = self.policy_workers.submit(job) {
            tracing::error!("{err:#}");
        }
    }

    /// Whether a running replica of `service_id` past its warm-up has not
    /// reported since the view started, while the view is younger than its
    /// window. Right after the daemon starts (or Docker comes back, or this
    /// manager begins leading) the first readings arrive one replica at a
    /// time: a policy asked on the first, idle one alone would see an idle
    /// service and scale in while its other replicas are saturated. The
    /// wait ends with every replica's first reading, or after one window
    /// (a replica silent that long drops out of the view anyway).
    fn awaiting_first_readings(&self, service_id: &str, warmup: Duration, now_ns: u64) -> bool {
        let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        if now_ns.saturating_sub(self.view_since_ns) >= nanos(self.view_window) {
            return false;
        }
        self.inventory
            .containers_of(service_id)
            .any(|c| now_ns.saturating_sub(c.started_ns) >= nanos(warmup) && !self.view.has_reading(service_id, &c.id))
    }

    /// A change from Docker: update the inventory and act on its effects.
    pub fn on_inventory_change(&mut self, change: inventory::Change) {
        let resync = matches!(change, inventory::Change::Resync { .. });
        if resync {
            if self.resynced {
                self.start_over();
            }
            self.resynced = true;
            self.view_since_ns = model::monotonic_ns();
            self.board.inventory_read();
        }
        let (died, touched) = match &change {
            inventory::Change::ContainerDied { id } => (Some(id.clone()), Vec::new()),
            inventory::Change::Service(info) => (None, vec![info.id.clone()]),
            inventory::Change::Resync { services, .. } => (None, services.iter().map(|s| s.id.clone()).collect()),
            _ => (None, Vec::new()),
        };
        let effects = self.inventory.apply(change);
        if let Some(id) = died {
            self.view.forget_container(&id);
            self.zero.forget(&id);
            self.drive_zero();
        }
        for tracked in &effects.track {
            // A replica left paused by an earlier daemon has no wake armed.
            if let Some(service) = self.inventory.service_of(&tracked.container_id)
                && service.config().is_some_and(|c| c.zero.is_some())
            {
                let (id, name) = (service.id.clone(), service.name.clone());
                self.zero.recover((&id, &name), &tracked.container_id);
            }
        }
        match self.cluster.as_mut() {
            Some(cluster) => cluster.sync(&self.inventory),
            None => {
                for tracked in effects.track {
                    self.probe.track(tracked);
                }
                for container in &effects.untrack {
                    self.probe.untrack(container);
                }
            }
        }
        if self.cluster.is_some() {
            // A node's containers that went away, seen by the re-read of
            // the swarm's tasks rather than a container event.
            for container in &effects.untrack {
                self.zero.forget(container);
            }
        }
        for container in &effects.untrack {
            self.view.forget_container(container);
        }
        for service_id in &effects.retired {
            self.actuator.retire(service_id);
            self.view.forget_service(service_id);
            self.board.remove(service_id);
            self.typed_settings.remove(service_id);
            self.warned.retain(|(id, _)| id != service_id);
            if self.inventory.service(service_id).is_none() {
                self.said.remove(service_id);
            }
        }
        for notice in effects.notices {
            if let Notice::Disabled { service } = notice {
                tracing::info!(service = %service, "service {service} is no longer autoscaled");
            }
        }
        // Every service Docker told about is examined; a line is logged
        // only when what there is to say about it changed.
        for id in touched {
            self.examine(&id);
        }
        if resync {
            let inventory = &self.inventory;
            self.said.retain(|id, _| inventory.service(id).is_some());
            self.board.set_ready(true);
        }
        // Services found at zero replicas, frozen or removed services whose
        // labels changed, removed replicas gone.
        self.zero.reconcile(&self.inventory);
        self.drive_zero();
    }

    /// A piece of scale to zero's I/O ended.
    pub fn on_zero_done(&mut self, done: zero::Done) {
        self.zero.on_done(done);
        self.drive_zero();
    }

    /// Docker was away (restarted, say): what the loop derived from it may
    /// be stale (containers that died unseen, replicas restarted under new
    /// ids, readings of either). Forget it all and let the resync that
    /// follows rebuild it, the probe tracking every container anew. What
    /// was said about each service is kept: an unchanged service is not
    /// described again.
    fn start_over(&mut self) {
        // In multi-node mode the resync that follows sends each node its
        // new set, which replaces the old one.
        if self.cluster.is_none() {
            for container in self.inventory.tracked_ids() {
                self.probe.untrack(&container);
            }
        }
        self.inventory = Inventory::default();
        self.view = ServiceView::default();
        self.zero.reset();
        self.typed_settings.clear();
        self.warned.clear();
        self.board.clear();
    }

    /// A policy answered: hand its decision to the actuator.
    pub fn on_decided(&mut self, done: Decided) {
        let Decided { job, result, decided_ns, took } = done;
        // Recorded here, not where the job is queued: a job replaced in its
        // policy's queue by a newer one (coalescing) was never decided on.
        // Buffered, and it never fails the loop.
        if let Some(recorder) = &mut self.recorder {
            let answer = result.as_ref().ok().and_then(Option::as_ref);
            recorder.record(&job.policy, &job.config.settings, &job.event, &job.state, decided_ns, answer);
        }
        let service_id = &job.event.service_id;
        self.metrics.observe_decide(&job.policy, took);
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
            // No decision: the policy kept the count it saw, which the
            // scale-down stabilisation window counts (swarm::guardrails).
            Ok(None) => self.actuator.kept(service_id, decided_ns, job.state.current_replicas),
            Ok(Some(_)) if !self.deciding() => {
                // Leadership moved while the policy ran: the new leader
                // decides on what its agents send; applying this one too
                // could apply a decision twice.
                tracing::info!(service = %job.event.service_name, "cluster: not leading any more; decision for {} dropped", job.event.service_name);
            }
            Ok(Some(decision)) => {
                self.metrics.observe_kernel_to_decision(Duration::from_nanos(
                    decided_ns.saturating_sub(job.event.timestamp_ns),
                ));
                // The service may have been removed or relabelled meanwhile.
                let current = self.inventory.service(service_id).and_then(ServiceEntry::config).cloned();
                let Some(config) = current.filter(|c| c.policy == job.policy) else { return };
                if let (Some(0), Some(zero)) = (decision.target(), config.zero) {
                    let replicas = self.inventory.service(service_id).map_or(0, |s| s.replicas);
                    if replicas <= 1 {
                        let running: Vec<String> =
                            self.inventory.containers_of(service_id).map(|c| c.id.clone()).collect();
                        let service = (service_id.as_str(), job.event.service_name.as_str());
                        self.zero.policy_zero(service, &config, zero, (replicas, &running), &decision.reason);
                        self.drive_zero();
                        return;
                    }
                }
                let request = Request {
                    policy: job.policy,
                    seen: job.state.current_replicas,
                    decision,
                    event: job.event,
                    decided_ns,
                };
                self.actuator.submit(request, config);
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

    /// Shutdown: thaw every frozen replica and undo parks that have not led
    /// to a removal, within a grace period; removed services stay at zero.
    async fn settle_zero(&mut self, done: &mut mpsc::UnboundedReceiver<zero::Done>) {
        self.zero.begin_shutdown();
        self.drive_zero();
        let deadline = tokio::time::Instant::now() + zero::SHUTDOWN_GRACE;
        while self.zero.settling() {
            match tokio::time::timeout_at(deadline, done.recv()).await {
                Ok(Some(finished)) => self.on_zero_done(finished),
                Ok(None) => break,
                Err(_) => {
                    tracing::error!(
                        "replicas still frozen at shutdown (run docker unpause on them): {}",
                        self.zero.still_frozen().join(", ")
                    );
                    break;
                }
            }
        }
    }

    /// Drain: stop the policy workers (answers still in the channel are applied,
    /// the rest dropped), then let the actuator finish its updates.
    pub async fn shut_down(
        mut self,
        mut answers: mpsc::Receiver<Decided>,
        mut zero_done: mpsc::UnboundedReceiver<zero::Done>,
        worker_grace: Duration,
        actuator_grace: Duration,
    ) {
        let stats = self.probe.stats();
        tracing::info!(
            probe_events = stats.events,
            probe_dropped = stats.dropped,
            unknown_containers = self.unknown_containers,
            ignored_remote = self.ignored_remote,
            "shutting down"
        );
        let policy_workers = std::mem::replace(&mut self.policy_workers, PolicyWorkers::new(mpsc::channel(1).0));
        tokio::task::spawn_blocking(move || policy_workers.shutdown(worker_grace)).await.ok();
        answers.close();
        while let Ok(done) = answers.try_recv() {
            self.on_decided(done);
        }
        self.settle_zero(&mut zero_done).await;
        self.actuator.shutdown(actuator_grace).await;
        tracing::info!("stopped");
    }
}
