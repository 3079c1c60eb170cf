//! Every node's side of multi-node mode: the agent that forwards the local
//! probe's events and drives the probe with the decider's tracking set,
//! and scale to zero by freezing carried out on this node, for its own
//! replicas, with its own engine and probe.

use super::*;

/// The agent of this node and the local probe it drives.
#[derive(Debug)]
pub struct NodeIo {
    /// The agent (its counters are logged when a worker stops).
    pub(super) agent: Arc<AgentHandle>,
    tracking: watch::Receiver<TrackingSet>,
    probe: ProbeHandle,
    /// What the local probe was told to track, by container id.
    current: HashMap<String, Tracked>,
    /// The decider's scale-to-zero commands.
    commands: Option<mpsc::UnboundedReceiver<ZeroCommand>>,
    /// Scale to zero on this node.
    zero: LocalZero,
    /// How many containers `current` holds, for `/status`.
    tracked: Arc<AtomicU64>,
}

/// Where one of this node's containers stands with scale to zero; a
/// container not frozen by this node has no entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Local {
    /// The pause is in flight; `wake_ns`: a connection came meanwhile;
    /// `thaw`: the decider asked for a thaw meanwhile.
    Freezing { wake_ns: Option<u64>, thaw: bool },
    /// Paused, the wake armed.
    Frozen,
    /// The unpause is in flight.
    Thawing,
}

/// Freezing and thawing this node's containers: the decider commands, the
/// node carries out and reports; a wake is handled here.
#[derive(Debug, Clone)]
struct LocalZero {
    freezer: Freezer,
    probe: ProbeHandle,
    agent: Arc<AgentHandle>,
    /// This node's containers frozen or on their way, by id.
    state: Arc<Mutex<HashMap<String, Local>>>,
}

/// How long a stopping node waits for its thaws.
const THAW_GRACE: Duration = Duration::from_secs(5);

impl NodeIo {
    /// Start the agent of `node`; the local probe is `probe`.
    pub fn start(node: &Node, probe: ProbeHandle) -> NodeIo {
        let settings = node.args.settings();
        let managers = if node.args.cluster_managers.is_empty() {
            Managers::Engine(EngineManagers { docker: node.swarm.docker.clone(), port: settings.listen.port() })
        } else {
            Managers::Fixed(node.args.cluster_managers.clone())
        };
        let agent = AgentHandle::spawn(
            settings,
            node.credentials.clone(),
            node.me.node_id.clone(),
            node.me.hostname.clone(),
            managers,
        );
        let tracking = agent.tracking();
        let commands = agent.take_zero_commands();
        let agent = Arc::new(agent);
        let zero = LocalZero {
            freezer: Freezer { docker: node.swarm.docker.clone() },
            probe: probe.clone(),
            agent: agent.clone(),
            state: Arc::default(),
        };
        NodeIo { agent, tracking, probe, current: HashMap::new(), commands, zero, tracked: Arc::default() }
    }

    /// A local measurement: to the decider; the first connection to a
    /// replica this node froze is handled here instead.
    pub fn forward(&self, event: ProbeEvent) {
        if let ProbeEvent::Signal(Signal::Wake { container_id, timestamp_ns }) = &event
            && self.zero.on_wake(container_id, *timestamp_ns)
        {
            return;
        }
        self.agent.forward(event);
    }

    /// The decider's scale-to-zero commands for this node, for
    /// [`NodeIo::on_zero_command`]; `None` after the first call.
    pub fn take_zero_commands(&mut self) -> Option<mpsc::UnboundedReceiver<ZeroCommand>> {
        self.commands.take()
    }

    /// Carry out a scale-to-zero command with this node's engine and probe.
    pub fn on_zero_command(&self, command: ZeroCommand) {
        self.zero.command(command);
    }

    /// The daemon stops: thaw what this node froze, within a grace period.
    pub async fn thaw_all(&self) {
        self.zero.thaw_all().await;
    }

    /// Resolves when the decider sent a new tracking set.
    pub async fn tracking_changed(&mut self) {
        if self.tracking.changed().await.is_err() {
            // The agent is gone (shutdown): nothing will change again.
            std::future::pending::<()>().await;
        }
    }

    /// Bring the local probe in line with the decider's latest set.
    pub fn apply_tracking(&mut self) {
        let Some(set) = self.tracking.borrow_and_update().clone() else { return };
        let (track, untrack) = crate::cluster::diff(&self.current, &set);
        if !track.is_empty() || !untrack.is_empty() {
            tracing::info!(
                tracking = set.len(),
                added = track.len(),
                removed = untrack.len(),
                "cluster: new tracking set"
            );
        }
        for id in untrack {
            self.probe.untrack(&id);
            self.current.remove(&id);
        }
        for tracked in track {
            self.current.insert(tracked.container_id.clone(), tracked.clone());
            self.probe.track(tracked);
        }
        self.tracked.store(self.current.len() as u64, Ordering::Relaxed);
    }

    /// Show this node's role, its agent's decider and what it measures on
    /// `board` (`/status`, `host status`); a manager (`tracking`) also
    /// whether it decides and how many agents it serves. Read when asked.
    pub fn show_on(&self, board: &Board, tracking: Option<&ClusterTracking>) {
        let (agent, tracked) = (self.agent.clone(), self.tracked.clone());
        let manager = tracking.map(|t| (t.decider.clone(), t.leadership.clone()));
        board.set_cluster(move || {
            let (role, deciding, agents, nodes) = match &manager {
                Some((decider, leadership)) => {
                    let nodes = decider
                        .live_nodes()
                        .into_iter()
                        .map(|(id, hostname)| crate::status::ClusterNode { id, hostname })
                        .collect();
                    ("manager", leadership.borrow().is_leader, Some(decider.stats().connected), nodes)
                }
                None => ("worker", false, None, Vec::new()),
            };
            ClusterStatus {
                role: role.to_string(),
                deciding,
                decider: agent.stats().connected_to,
                tracking: tracked.load(Ordering::Relaxed),
                agents,
                nodes,
            }
        });
    }
}

impl LocalZero {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Local>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn command(&self, command: ZeroCommand) {
        match command {
            ZeroCommand::Freeze { container_id } => self.freeze(container_id),
            ZeroCommand::Thaw { container_id } => {
                let mut state = self.lock();
                match state.get(&container_id).copied() {
                    Some(Local::Frozen) | None => {
                        // Not frozen here: a replica left paused before this
                        // daemon; unpausing it is what the decider wants.
                        state.insert(container_id.clone(), Local::Thawing);
                        drop(state);
                        self.thaw(container_id, None);
                    }
                    Some(Local::Freezing { wake_ns, .. }) => {
                        state.insert(container_id, Local::Freezing { wake_ns, thaw: true });
                    }
                    Some(Local::Thawing) => {}
                }
            }
            ZeroCommand::Recover { container_id } => {
                if self.lock().contains_key(&container_id) {
                    return;
                }
                let this = self.clone();
                tokio::spawn(async move {
                    if let Ok(true) = this.freezer.is_paused(&container_id).await {
                        let unpaused = this.freezer.thaw(&container_id).await;
                        let (took_us, error) = match unpaused {
                            Ok(took) => (Some(took.as_micros() as u64), None),
                            Err(reason) => (None, Some(reason)),
                        };
                        this.agent.report(ZeroReport::FoundPaused { container_id, took_us, error });
                    }
                });
            }
        }
    }

    fn freeze(&self, container_id: String) {
        {
            let mut state = self.lock();
            match state.get(&container_id) {
                Some(Local::Frozen) => {
                    drop(state);
                    self.agent.report(ZeroReport::Frozen { container_id, took_us: 0, already: true });
                    return;
                }
                Some(_) => return,
                None => {
                    state.insert(container_id.clone(), Local::Freezing { wake_ns: None, thaw: false });
                }
            }
        }
        let this = self.clone();
        tokio::spawn(async move {
            // Paused already, by a daemon of this node that was killed: keep
            // it so, with the wake armed this time.
            if let Ok(true) = this.freezer.is_paused(&container_id).await
                && this.probe.set_wake(&container_id, true).await.is_ok()
            {
                this.lock().insert(container_id.clone(), Local::Frozen);
                this.agent.report(ZeroReport::Frozen { container_id, took_us: 0, already: true });
                return;
            }
            let done = crate::daemon::zero::freeze(&this.freezer, &this.probe, container_id.clone()).await;
            let report = match done {
                crate::daemon::zero::Done::Frozen { took, .. } => {
                    let next = {
                        let mut state = this.lock();
                        match state.get(&container_id).copied() {
                            Some(Local::Freezing { wake_ns, thaw }) if wake_ns.is_some() || thaw => {
                                state.insert(container_id.clone(), Local::Thawing);
                                Some(wake_ns)
                            }
                            _ => {
                                state.insert(container_id.clone(), Local::Frozen);
                                None
                            }
                        }
                    };
                    let took_us = took.as_micros() as u64;
                    this.agent.report(ZeroReport::Frozen {
                        container_id: container_id.clone(),
                        took_us,
                        already: false,
                    });
                    if let Some(wake_ns) = next {
                        this.thaw(container_id, wake_ns);
                    }
                    return;
                }
                crate::daemon::zero::Done::Busy { .. } => ZeroReport::Busy { container_id: container_id.clone() },
                crate::daemon::zero::Done::NotFrozen { outcome, reason, .. } => ZeroReport::NotFrozen {
                    container_id: container_id.clone(),
                    refused: outcome == ZeroOutcome::Refused,
                    reason,
                },
                other => {
                    tracing::warn!("unexpected end of a freeze: {other:?}");
                    return;
                }
            };
            this.lock().remove(&container_id);
            this.agent.report(report);
        });
    }

    /// A wake event for `container`: whether this node handles it (it froze
    /// the container), thawing it at once.
    fn on_wake(&self, container: &str, kernel_ns: u64) -> bool {
        let mut state = self.lock();
        match state.get(container).copied() {
            Some(Local::Frozen) => {
                state.insert(container.to_string(), Local::Thawing);
                drop(state);
                self.thaw(container.to_string(), Some(kernel_ns));
                true
            }
            Some(Local::Freezing { thaw, .. }) => {
                state.insert(container.to_string(), Local::Freezing { wake_ns: Some(kernel_ns), thaw });
                true
            }
            Some(Local::Thawing) => true,
            None => false,
        }
    }

    /// Unpause `container` (marked thawing), disarm its wake, report.
    fn thaw(&self, container_id: String, wake_ns: Option<u64>) {
        let this = self.clone();
        tokio::spawn(async move {
            let result = this.freezer.thaw(&container_id).await;
            let _ = this.probe.set_wake(&container_id, false).await;
            this.lock().remove(&container_id);
            let report = match result {
                Ok(took) => {
                    let wake = wake_ns.map(|ns| Duration::from_nanos(crate::model::monotonic_ns().saturating_sub(ns)));
                    if let Some(wake) = wake {
                        tracing::info!(
                            container = %container_id,
                            "woke replica {} on this node: connection to unpaused in {:.1} ms",
                            &container_id[..container_id.len().min(12)],
                            wake.as_secs_f64() * 1000.0
                        );
                    }
                    ZeroReport::Thawed {
                        container_id,
                        took_us: took.as_micros() as u64,
                        wake_us: wake.map(|w| w.as_micros() as u64),
                    }
                }
                Err(reason) => ZeroReport::ThawFailed { container_id, reason },
            };
            this.agent.report(report);
        });
    }

    async fn thaw_all(&self) {
        let frozen: Vec<String> = {
            let mut state = self.lock();
            let ids: Vec<String> =
                state.iter().filter(|(_, l)| **l == Local::Frozen).map(|(id, _)| id.clone()).collect();
            for id in &ids {
                state.insert(id.clone(), Local::Thawing);
            }
            ids
        };
        for id in frozen {
            self.thaw(id, None);
        }
        let deadline = tokio::time::Instant::now() + THAW_GRACE;
        while !self.lock().is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let left: Vec<String> = self.lock().keys().cloned().collect();
        if !left.is_empty() {
            tracing::error!("replicas still frozen at shutdown (run docker unpause on them): {}", left.join(", "));
        }
    }
}

impl NodeIo {
    /// Export the agent's counters.
    pub fn export_counters(&self, metrics: &Metrics) {
        type Read = fn(&AgentStats) -> f64;
        let counters: [(&str, &str, &'static str, Read); 3] = [
            (
                "autoscaler_cluster_forwarded_events_total",
                "Events this node's agent sent to the decider.",
                "counter",
                |s| s.forwarded as f64,
            ),
            (
                "autoscaler_cluster_agent_dropped_events_total",
                "Events this node's agent dropped: queue full (no decider) or too old to send.",
                "counter",
                |s| s.dropped as f64,
            ),
            ("autoscaler_cluster_agent_connected", "1 while this node's agent has a decider session.", "gauge", |s| {
                f64::from(u8::from(s.connected_to.is_some()))
            }),
        ];
        for (name, help, kind, read) in counters {
            let agent = self.agent.clone();
            metrics.set_source(name, help, kind, move || read(&agent.stats()));
        }
    }
}
