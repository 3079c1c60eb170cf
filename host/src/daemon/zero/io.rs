//! The I/O of scale to zero: the [`Work`] the state machine asks for, the
//! [`Done`] that comes back, and [`ZeroIo`], which carries the work out
//! (Docker's pause and unpause, the probe's wake and parked ports, spec
//! writes through the actuator).

use super::*;

/// One piece of I/O the state machine asks for; its end comes back as a
/// [`Done`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Work {
    /// Check the replica's health check, arm its wake, count its
    /// connections, pause it: [`Done::Frozen`], [`Done::Busy`] or
    /// [`Done::NotFrozen`].
    Freeze {
        /// The replica.
        container: String,
    },
    /// Unpause the replica, then disarm its wake: [`Done::Thawed`] or
    /// [`Done::ThawFailed`].
    Thaw {
        /// The replica.
        container: String,
    },
    /// A replica first followed: if paused, unpause it
    /// ([`Done::FoundPaused`]).
    Recover {
        /// The replica.
        container: String,
        /// Its service's id.
        service_id: String,
        /// Its service's name.
        service: String,
    },
    /// Park the ports in `mode`, then count `count`'s open connections:
    /// [`Done::Parked`].
    Park {
        /// The service.
        service_id: String,
        /// Its ports.
        ports: Vec<u16>,
        /// How.
        mode: ParkMode,
        /// The replica whose open connections to count (a removal).
        count: Option<String>,
    },
    /// Unpark the ports: [`Done::Unparked`].
    Unpark {
        /// The service.
        service_id: String,
        /// Its ports.
        ports: Vec<u16>,
    },
    /// A scale-to-zero spec write through the actuator: [`Done::Written`].
    Write {
        /// The service.
        service_id: String,
        /// Its name.
        service: String,
        /// 0 (from 1) or 1 (from 0).
        to: u32,
    },
    /// Whether a socket listens on any of the ports: [`Done::Listening`].
    CheckListening {
        /// The service.
        service_id: String,
        /// Its ports.
        ports: Vec<u16>,
    },
}

/// The end of a [`Work`], sent back to the event loop.
#[derive(Debug)]
pub enum Done {
    /// Paused.
    Frozen {
        /// The replica.
        container: String,
        /// Docker's pause.
        took: Duration,
    },
    /// A connection was open when the wake was armed: not now.
    Busy {
        /// The replica.
        container: String,
    },
    /// Not paused: refused for good (health check, probe) or failed.
    NotFrozen {
        /// The replica.
        container: String,
        /// [`ZeroOutcome::Refused`] or [`ZeroOutcome::Failed`].
        outcome: ZeroOutcome,
        /// Why.
        reason: String,
    },
    /// Unpaused.
    Thawed {
        /// The replica.
        container: String,
        /// Docker's unpause.
        took: Duration,
    },
    /// Found paused when first followed (left by an earlier daemon), and
    /// unpaused, or not.
    FoundPaused {
        /// The replica.
        container: String,
        /// Its service's id.
        service_id: String,
        /// Its service's name.
        service: String,
        /// Docker's unpause: how long it took, or why it failed.
        unpaused: Result<Duration, String>,
    },
    /// The unpause failed.
    ThawFailed {
        /// The replica.
        container: String,
        /// Docker's answer.
        reason: String,
    },
    /// Ports parked (with the counted replica's open connections, 0 when
    /// none was counted), or not.
    Parked {
        /// The service.
        service_id: String,
        /// Its ports.
        ports: Vec<u16>,
        /// The mode asked for.
        mode: ParkMode,
        /// Open connections, or why parking failed.
        result: Result<i64, String>,
    },
    /// Ports unparked.
    Unparked {
        /// The service.
        service_id: String,
    },
    /// A scale-to-zero spec write ended.
    Written {
        /// The service.
        service_id: String,
        /// 0 or 1.
        to: u32,
        /// What the actuator did.
        outcome: ZeroWritten,
    },
    /// Multi-node mode: a connection woke a replica on its node, and that
    /// node's agent thawed it at once.
    WokenOnNode {
        /// The replica.
        container: String,
        /// Its service's id, and name (from the inventory).
        service: (String, String),
        /// Docker's unpause on the node.
        took: Duration,
        /// From the kernel's connection to the unpause returning.
        wake: Duration,
    },
    /// The answer of a [`Work::CheckListening`].
    Listening {
        /// The service.
        service_id: String,
        /// Whether a socket listens on one of its ports.
        listening: bool,
    },
}

/// Carries out [`Work`]: Docker's pause and unpause, the probe's wake and
/// parked ports, spec writes through the actuator, each on a task of its
/// own that reports a [`Done`].
#[derive(Debug, Clone)]
pub struct ZeroIo {
    freezer: Freezer,
    probe: ProbeHandle,
    done: mpsc::UnboundedSender<Done>,
}

impl ZeroIo {
    /// The I/O of scale to zero; what ends goes to the receiver, for
    /// [`Zero::on_done`].
    pub fn new(freezer: Freezer, probe: ProbeHandle) -> (ZeroIo, mpsc::UnboundedReceiver<Done>) {
        let (done, rx) = mpsc::unbounded_channel();
        (ZeroIo { freezer, probe, done }, rx)
    }

    /// Multi-node mode: `work` was for a node whose agent cannot be
    /// reached; end it as failed.
    pub fn unreachable(&self, work: Work, node: Option<&str>) {
        let why = match node {
            Some(node) => format!("node {node}'s autoscaler agent is not connected to this decider"),
            None => "the inventory places it on no node".to_string(),
        };
        let done = match work {
            Work::Freeze { container } => {
                Done::NotFrozen { container, outcome: ZeroOutcome::Failed, reason: format!("cannot freeze: {why}") }
            }
            Work::Thaw { container } => Done::ThawFailed { container, reason: format!("cannot thaw: {why}") },
            _ => return,
        };
        let _ = self.done.send(done);
    }

    /// Start one piece of work.
    pub fn run(&self, work: Work, actuator: &mut Actuator<DockerWriter>) {
        let (freezer, probe, done) = (self.freezer.clone(), self.probe.clone(), self.done.clone());
        match work {
            Work::Freeze { container } => {
                tokio::spawn(async move {
                    let _ = done.send(freeze(&freezer, &probe, container).await);
                });
            }
            Work::Thaw { container } => {
                tokio::spawn(async move {
                    let result = freezer.thaw(&container).await;
                    // After the unpause, so the wake path waits for nothing; a
                    // wake already fired has disarmed itself.
                    let _ = probe.set_wake(&container, false).await;
                    let _ = done.send(match result {
                        Ok(took) => Done::Thawed { container, took },
                        Err(reason) => Done::ThawFailed { container, reason },
                    });
                });
            }
            Work::Recover { container, service_id, service } => {
                tokio::spawn(async move {
                    if let Ok(true) = freezer.is_paused(&container).await {
                        let unpaused = freezer.thaw(&container).await;
                        let _ = done.send(Done::FoundPaused { container, service_id, service, unpaused });
                    }
                });
            }
            Work::Park { service_id, ports, mode, count } => {
                tokio::spawn(async move {
                    let mut result = Ok(0);
                    for port in &ports {
                        if let Err(reason) = probe.park(*port, mode).await {
                            result = Err(reason);
                            break;
                        }
                    }
                    if let (Ok(_), Some(container)) = (&result, count) {
                        result = probe.open_connections(&container).await;
                    }
                    let _ = done.send(Done::Parked { service_id, ports, mode, result });
                });
            }
            Work::Unpark { service_id, ports } => {
                tokio::spawn(async move {
                    for port in ports {
                        if let Err(reason) = probe.unpark(port).await {
                            tracing::warn!("cannot unpark port {port}: {reason}");
                        }
                    }
                    let _ = done.send(Done::Unparked { service_id });
                });
            }
            Work::Write { service_id, service, to } => {
                let (reply, answer) = oneshot::channel();
                actuator.write_zero(ZeroWrite { service_id: service_id.clone(), service_name: service, to, reply });
                tokio::spawn(async move {
                    let outcome = answer.await.unwrap_or_else(|_| ZeroWritten::Failed("the actuator stopped".into()));
                    let _ = done.send(Done::Written { service_id, to, outcome });
                });
            }
            Work::CheckListening { service_id, ports } => {
                tokio::spawn(async move {
                    let listening =
                        tokio::task::spawn_blocking(move || ports.iter().any(|p| crate::probe::listening(*p)))
                            .await
                            .unwrap_or(false);
                    let _ = done.send(Done::Listening { service_id, listening });
                });
            }
        }
    }
}

/// Check, arm, pause; see the module doc. Also what a node's agent runs
/// for a [`crate::cluster::ZeroCommand::Freeze`].
pub(crate) async fn freeze(freezer: &Freezer, probe: &ProbeHandle, container: String) -> Done {
    let refused = |outcome, reason: String| Done::NotFrozen { container: container.clone(), outcome, reason };
    match freezer.health_check(&container).await {
        Ok(None) => {}
        Ok(Some(test)) => {
            return refused(
                ZeroOutcome::Refused,
                format!(
                    "it has a health check ({}): Docker fails every check of a paused container and Swarm would replace it as unhealthy (moby/moby#46203); start the service with --no-healthcheck, or drop autoscale.min=0",
                    test.join(" ")
                ),
            );
        }
        Err(reason) => return refused(ZeroOutcome::Failed, reason),
    }
    match probe.set_wake(&container, true).await {
        Err(reason) => return refused(ZeroOutcome::Refused, reason),
        Ok(open) if open > 0 => {
            let _ = probe.set_wake(&container, false).await;
            return Done::Busy { container };
        }
        Ok(_) => {}
    }
    match freezer.freeze(&container).await {
        Ok(took) => Done::Frozen { container, took },
        Err(reason) => {
            let _ = probe.set_wake(&container, false).await;
            refused(ZeroOutcome::Failed, reason)
        }
    }
}
